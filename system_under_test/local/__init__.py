"""The local backend: the whole reference service as processes under one state directory.

``up(state_dir, faults)`` starts it and returns a ``StackInfo``;
``down(state_dir)`` stops it and removes the directory; ``status(state_dir)``
says what is running. The modules, one per part: ``pki`` (CA and
certificates), ``softhsm`` (token and keys), ``postgres``, ``redis``,
``nginx`` (the TLS edge), ``api_server`` (gunicorn and the ops commands),
``target_profile`` (api.toml and target.toml), ``processes`` (starting,
waiting, stopping) and ``stack`` (the order of it all).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from system_under_test.local.processes import StackError
    from system_under_test.local.stack import StackInfo, StackStatus, down, status, up

__all__ = ["StackError", "StackInfo", "StackStatus", "down", "status", "up"]

_HOMES = {"StackError": "processes", "StackInfo": "stack", "StackStatus": "stack",
          "down": "stack", "status": "stack", "up": "stack"}


def __getattr__(name: str) -> Any:
    # Imported on first use: the short PKCS#11 child processes
    # (``python -m system_under_test.local.softhsm``) load this package too,
    # and must not pay for psycopg, Starlette and the rest on every start.
    if name in _HOMES:
        return getattr(importlib.import_module(f"system_under_test.local.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'system_under_test.local' has no attribute {name!r}")
