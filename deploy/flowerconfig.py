"""Flower configuration for Conveyor (kept for ``--conf=deploy/flowerconfig.py``).

Since ``celery -A worker.app flower`` already uses Conveyor's configuration and refuses to run
without authentication (see ``config/flower.py``), passing this file is optional. It sets the
same options: ``CONVEYOR_FLOWER_BASIC_AUTH=user:password[,…]`` (required),
``CONVEYOR_FLOWER_ADDRESS`` and ``CONVEYOR_FLOWER_PORT``.
"""

from __future__ import annotations

import os

from config.flower import REFUSAL, config_values

_values = config_values(dict(os.environ))
if "basic_auth" not in _values:
    raise SystemExit(REFUSAL)

basic_auth = _values["basic_auth"]
address = _values["address"]
port = _values["port"]
natural_time = _values["natural_time"]
purge_offline_workers = _values["purge_offline_workers"]
