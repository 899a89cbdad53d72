"""Shared fixtures: real local stacks of the reference service.

``clean_stack`` is one fault-free stack for the whole session (started on
first use, torn down at the end); ``stack_factory`` starts a stack with the
faults a test asks for and tears it down when the ``with`` block ends; a module
with a private stack of its own uses ``audit_cli.running_stack`` as both do. Each
stack lives in its own state directory under /tmp (``sut-stack-*``), which
the unprivileged service user can reach, unlike pytest's private tmp tree.
Tests that use them are marked ``@pytest.mark.integration``.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from audit_cli import running_stack

from harness.checkdir import MARKERS
from harness.profile import Hsm, SecretSource
from system_under_test.local.stack import StackInfo


def pytest_configure(config: pytest.Config) -> None:
    """The checks' own markers: the harness's tests import check modules without the plugin
    (which registers them for an audit run), so they are registered here too. The harness's
    memory between runs (its ledger of its own drills) is the test session's own, not the
    user's: the audits tests run (in this process or a CLI child) never count in a real one's."""
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    if "VOTRIZ_AUDIT_STATE_DIR" not in os.environ:
        os.environ["VOTRIZ_AUDIT_STATE_DIR"] = tempfile.mkdtemp(prefix="votriz-audit-state-")


P11_KIT_CLIENT = Path("/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so")
#: Where a stack's API writes gunicorn's and the application's log (local, Docker).
API_LOGS = ("logs/api.log", "logs/api/api.log")
API_LOG_LINES = 40
API_LOG_TAIL_BYTES = 64 << 10


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A failed test that used a stack shows the end of that stack's API log with its failure:
    an API that stopped (a worker that failed to boot stops gunicorn) says why there, and the
    state directory is gone once the stack is taken down. Only gunicorn's lines and
    tracebacks: the application's JSON lines are left out, since violations plant secrets
    there (a bearer header, the JWT secret) and a test's output must hold none."""
    report: pytest.TestReport = yield
    if report.failed and call.when == "call":
        for name, value in getattr(item, "funcargs", {}).items():
            try:
                state_dir = getattr(value, "state_dir", None)
            except Exception:  # a fixture's own __getattr__: never the reporting's problem
                continue
            for log in (Path(state_dir) / rel for rel in API_LOGS) if isinstance(state_dir, Path) else ():
                try:
                    with log.open("rb") as stream:
                        stream.seek(max(0, stream.seek(0, 2) - API_LOG_TAIL_BYTES))
                        lines = [line for line in stream.read().decode("utf-8", errors="replace").splitlines()
                                 if not line.lstrip().startswith("{")]
                except OSError:
                    continue
                report.sections.append((f"API log of {name} (last {API_LOG_LINES} lines of {log})",
                                        "\n".join(lines[-API_LOG_LINES:])))
    return report



@pytest.fixture(scope="session")
def clean_stack() -> Iterator[StackInfo]:
    """One clean stack shared by every test of the session."""
    with running_stack() as info:
        yield info


StackFactory = Callable[..., AbstractContextManager[StackInfo]]


@pytest.fixture
def stack_factory() -> StackFactory:
    """``with stack_factory("hsts-missing", ...) as info:`` starts a stack with those faults."""

    def start(*faults: str) -> AbstractContextManager[StackInfo]:
        return running_stack(faults)

    return start


@pytest.fixture
def mute_hsm(tmp_path: Path) -> Iterator[Hsm]:
    """p11-kit's client module pointed at a socket that accepts connections and never answers
    (an HSM container that is frozen): p11-kit blocks in C_Initialize for ever."""
    if not P11_KIT_CLIENT.exists():
        pytest.skip("p11-kit-modules not installed")
    directory = Path(tempfile.mkdtemp(prefix="mute-hsm-", dir="/tmp"))  # a unix socket path is short
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(directory / "sock"))
    server.listen(16)
    (tmp_path / "mute-hsm-pin").write_text("user-pin-4711\n")
    (tmp_path / "mute-hsm-pin").chmod(0o600)
    try:
        yield Hsm(module=P11_KIT_CLIENT, token_label="votriz",
                  pin=SecretSource(file=tmp_path / "mute-hsm-pin"),
                  env={"P11_KIT_SERVER_ADDRESS": f"unix:path={directory / 'sock'}"})
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)
