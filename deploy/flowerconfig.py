"""Flower configuration for Conveyor: authentication is not optional.

Run: ``celery -A worker.app flower --conf=deploy/flowerconfig.py``, with
``CONVEYOR_FLOWER_BASIC_AUTH=user:password`` (several pairs separated by commas). Flower refuses
to start without it, rather than serve the task API (which shows job payloads) to anyone.
"""

from __future__ import annotations

import os

_auth = os.environ.get("CONVEYOR_FLOWER_BASIC_AUTH", "")
if not _auth or any(":" not in pair for pair in _auth.split(",")):
    raise SystemExit(
        "CONVEYOR_FLOWER_BASIC_AUTH must be set to user:password[,user2:password2]; "
        "Conveyor's Flower does not run without authentication"
    )

basic_auth = _auth.split(",")
address = os.environ.get("CONVEYOR_FLOWER_ADDRESS", "127.0.0.1")
port = int(os.environ.get("CONVEYOR_FLOWER_PORT", "5555"))
# Task arguments and results are deployment ids; still, keep them out of the UI by default.
natural_time = True
purge_offline_workers = 300
