"""The patterns names and ARNs must match, shared by every job model.

Every pattern is ASCII-only and used with ``fullmatch``: ``^...$`` with ``match`` accepts a
trailing newline (``"web\\n"``), and ``\\w`` without ``re.ASCII`` accepts any Unicode letter,
either of which would let two spellings of one service take two queues.
"""

from __future__ import annotations

import re

_A = re.ASCII

# ECS names (clusters, services, containers, families): 1-255 letters, digits, '-' and '_'.
ECS_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}", _A)
# Any ARN; the resource part is printable ASCII without spaces.
ARN = re.compile(r"arn:aws[a-zA-Z-]*:[a-z0-9-]+:[a-z0-9-]*:[0-9]{12}:[\x21-\x7e]+", _A)
ROLE_ARN = re.compile(r"arn:aws[a-zA-Z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}", _A)
SECRET_REF = re.compile(r"arn:aws[a-zA-Z-]*:(ssm|secretsmanager):[a-z0-9-]+:[0-9]{12}:\S+", _A)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}", _A)
SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8,17}", _A)
SECURITY_GROUP_ID = re.compile(r"sg-[0-9a-f]{8,17}", _A)
RESOURCE_NAME = re.compile(r"[A-Za-z0-9][\w .:/=+@-]{0,254}", _A)
TARGET_GROUP_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?", _A)


def account_of_arn(arn: str) -> str | None:
    """The account id in an ARN (its fifth field), or None when it has none."""
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and parts[4] else None
