"""Flower configuration for Conveyor (kept for ``--conf=deploy/flowerconfig.py``).

Since ``celery -A worker.app flower`` already uses Conveyor's configuration and refuses to run
without authentication (see ``config/flower.py``), passing this file is optional. It sets the
same options: ``CONVEYOR_FLOWER_BASIC_AUTH=user:password[,…]`` (required, every password at
least 12 characters), ``CONVEYOR_FLOWER_ADDRESS``, ``CONVEYOR_FLOWER_PORT``, and for HTTPS
``CONVEYOR_FLOWER_TLS_CERT`` and ``CONVEYOR_FLOWER_TLS_KEY``.
"""

from __future__ import annotations

import os
import sys

from config.basic_auth import BasicAuthError, parse_basic_auth
from config.flower import AUTH_VARIABLE, config_values

try:
    parse_basic_auth(AUTH_VARIABLE, os.environ.get(AUTH_VARIABLE))
except BasicAuthError as exc:
    print(
        f"flower: error: {exc}; Conveyor's Flower does not run without authentication",
        file=sys.stderr,
    )
    raise SystemExit(2) from None

_values = config_values(dict(os.environ))
basic_auth = _values["basic_auth"]
address = _values["address"]
port = _values["port"]
natural_time = _values["natural_time"]
purge_offline_workers = _values["purge_offline_workers"]
if "certfile" in _values:
    certfile = _values["certfile"]
if "keyfile" in _values:
    keyfile = _values["keyfile"]
