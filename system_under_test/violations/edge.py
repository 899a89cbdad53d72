"""Violations of the running edge: its nginx configuration edited, then nginx reloaded.

Each one changes the live configuration the way an operator's mistaken edit
would, through :meth:`RunningStack.edit_edge_config` (edit, SIGHUP, wait for
a new worker), so the check sees a reloaded edge, not a restarted one.
"""

from __future__ import annotations

import re

from system_under_test.violations import Violation
from system_under_test.violations.stack import RunningStack, StackError

_PROTOCOLS = re.compile(r"^(\s*)ssl_protocols\s+[^;]*;", re.MULTILINE)
_HSTS = re.compile(r"^\s*add_header\s+Strict-Transport-Security\b[^\n]*\n", re.MULTILINE)
_CSP = re.compile(r"^\s*add_header\s+Content-Security-Policy\b[^\n]*\n", re.MULTILINE)


def _only_edit(pattern: re.Pattern[str], replacement: str, what: str):  # type: ignore[no-untyped-def]
    def transform(text: str) -> str:
        edited, count = pattern.subn(replacement, text)
        if count == 0:
            raise StackError(f"the edge configuration has no {what} to change")
        return edited

    return transform


def accept_tls12(stack: RunningStack) -> None:
    """The HTTPS server's ``ssl_protocols`` becomes ``TLSv1.2 TLSv1.3``."""
    stack.edit_edge_config(_only_edit(_PROTOCOLS, r"\1ssl_protocols TLSv1.2 TLSv1.3;",
                                      "ssl_protocols line"))


def remove_hsts(stack: RunningStack) -> None:
    """Every ``add_header Strict-Transport-Security`` line is deleted."""
    stack.edit_edge_config(_only_edit(_HSTS, "", "Strict-Transport-Security header"))


def remove_csp(stack: RunningStack) -> None:
    """Every ``add_header Content-Security-Policy`` line is deleted."""
    stack.edit_edge_config(_only_edit(_CSP, "", "Content-Security-Policy header"))


VIOLATIONS = (
    Violation("edge-reload-tls12", "the running edge's ssl_protocols is edited to accept "
              "TLS 1.2 as well as 1.3, and nginx reloaded", accept_tls12),
    Violation("edge-reload-no-hsts", "the Strict-Transport-Security header is deleted from the "
              "running edge's configuration, and nginx reloaded", remove_hsts),
    Violation("edge-reload-no-csp", "the Content-Security-Policy header is deleted from the "
              "running edge's configuration, and nginx reloaded", remove_csp),
)
