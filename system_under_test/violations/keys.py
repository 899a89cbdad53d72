"""Violations of "never stored in source code, configuration files, or environment variables".

An operator debugging the running service writes a key where the page says it
must never be: the current JWT signing secret, hex-encoded, in a line of the
API's log. Hex has no upper-case letters, so no key-shaped rule can tell it
from a digest: only the secret's value, read from the HSM *before* the audit's
own JWT rotation replaces it, finds it.
"""

from __future__ import annotations

import json
import time

from system_under_test.common import softhsm
from system_under_test.violations import Violation
from system_under_test.violations.stack import RunningStack


def jwt_secret_in_api_log(stack: RunningStack) -> None:
    """The current JWT signing secret, hex, in a debug line of the API's log."""
    secret = stack.hsm_value(softhsm.JWT_SIGNING)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    stack.append_api_log(json.dumps({"time": stamp, "level": "debug", "logger": "votriz.api",
                                     "message": "session signer ready", "signer": secret.hex()}))


VIOLATIONS = (
    Violation("log-jwt-secret-hex", "the current JWT signing secret, hex-encoded, is appended to "
              "the API's log in a debug line", jwt_secret_in_api_log),
)
