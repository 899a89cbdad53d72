"""ASGI entry point for gunicorn: ``system_under_test.api.asgi:app``.

Each worker imports this module, so each worker reads the keys from the HSM
itself (gunicorn must not ``--preload``, or new workers would inherit old keys).
"""

from __future__ import annotations

import os

from system_under_test.api.app import create_app
from system_under_test.api.config import load_config

app = create_app(load_config(os.environ["VOTRIZ_CONFIG"]))
