"""The local backend: the whole reference service as processes under one state directory.

``up(state_dir, faults)`` starts it and returns a ``StackInfo``;
``down(state_dir)`` stops it and removes the directory; ``status(state_dir)``
says what is running. The modules, one per part: ``pki`` (CA and
certificates), ``softhsm`` (token and keys), ``postgres``, ``redis``,
``nginx`` (the TLS edge), ``api_server`` (gunicorn and the ops commands),
``target_profile`` (api.toml and target.toml), ``processes`` (starting,
waiting, stopping) and ``stack`` (the order of it all).
"""

from system_under_test.local.processes import StackError
from system_under_test.local.stack import StackInfo, StackStatus, down, status, up

__all__ = ["StackError", "StackInfo", "StackStatus", "down", "status", "up"]
