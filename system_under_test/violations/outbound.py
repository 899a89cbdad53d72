"""Violations of the outbound calls: a plaintext upstream URL configured into the running API.

An operator's mistaken edit: ``api.toml``'s ``llm_base_url`` (or ``resend_base_url``)
becomes ``http://`` to the fakes' plaintext listener, and the API's workers are
rolled the way the reference rolls them for a key rotation (``ops.workers``: new
workers read ``api.toml`` and the HSM as they start, then the old ones leave). No
fault switch is set: ``faults`` in ``api.toml`` stays as it was.

The file is rewritten in place, not replaced by rename: the Docker backend
bind-mounts this one file into the API container, and a rename would leave the
container the old file.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from system_under_test.docker import topology
from system_under_test.ops.context import OpsContext
from system_under_test.ops.workers import ROLL_TIMEOUT_S, roll_workers
from system_under_test.violations import Violation
from system_under_test.violations.stack import RunningStack, StackError

_ROLL_IN_CONTAINER = (
    "from system_under_test.ops.context import OpsContext;"
    "from system_under_test.ops.workers import roll_workers;"
    f"roll_workers(OpsContext.open({str(topology.CONTAINER_STATE)!r}))")


def api_config_path(stack: RunningStack) -> Path:
    """The running API's ``api.toml``, as a host path."""
    return stack.state_dir / ("api.toml" if stack.backend == "local" else "docker/api.toml")


def plaintext_url(text: str, key: str, plaintext_port: int) -> str:
    """``text`` (``api.toml``) with ``key``'s ``https://HOST:PORT/PATH`` made ``http://HOST:PLAIN/PATH``."""
    pattern = re.compile(rf'^({key}\s*=\s*")https://([^/":]+):\d+(/[^"]*)?"', re.MULTILINE)
    edited, count = pattern.subn(lambda m: f'{m.group(1)}http://{m.group(2)}:{plaintext_port}'
                                 f'{m.group(3) or ""}"', text)
    if count != 1:
        raise StackError(f"api.toml has no https:// {key} to change")
    return edited


def roll_api_workers(stack: RunningStack) -> None:
    """New API workers (which read ``api.toml`` as they start), then the old ones retired."""
    if stack.backend == "local":
        roll_workers(OpsContext.open(stack.state_dir))
        return
    container = stack.containers["api"]
    done = subprocess.run(["docker", "exec", container, "python", "-c", _ROLL_IN_CONTAINER],
                          capture_output=True, text=True, timeout=ROLL_TIMEOUT_S + 15, check=False)
    if done.returncode != 0:
        raise StackError(f"rolling the API's workers in {container} failed: "
                         f"{(done.stderr.strip().splitlines() or ['no message'])[-1]}")


def _plaintext_upstream(key: str) -> Callable[[RunningStack], None]:
    def apply(stack: RunningStack) -> None:
        port = stack.profile.get("capture", {}).get("plaintext_port")
        if not isinstance(port, int):
            raise StackError("the stack's profile names no plaintext port of the fakes")
        path = api_config_path(stack)
        edited = plaintext_url(path.read_text(encoding="utf-8"), key, port)
        with path.open("r+", encoding="utf-8") as config:
            config.write(edited)
            config.truncate()
        roll_api_workers(stack)

    return apply


VIOLATIONS = (
    Violation("api-llm-url-plaintext", "the running API's llm_base_url is edited to http:// on the "
              "fakes' plaintext port and its workers rolled (no fault switch)",
              _plaintext_upstream("llm_base_url")),
    Violation("api-resend-url-plaintext", "the running API's resend_base_url is edited to http:// on "
              "the fakes' plaintext port and its workers rolled (no fault switch)",
              _plaintext_upstream("resend_base_url")),
)
