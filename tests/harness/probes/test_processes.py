"""The process probe on real child processes and a stand-in Docker client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.outcomes import ProbeError
from harness.probes.processes import observe_docker, observe_local, observe_process
from harness.profile import Local, Process


def test_process_children_environment_and_open_files(tmp_path: Path) -> None:
    held = tmp_path / "held.txt"
    held.write_text("x")
    script = (f"import subprocess,sys,time; f=open({str(held)!r}); "
              "subprocess.Popen([sys.executable,'-c','import time; time.sleep(30)']); time.sleep(30)")
    # A session of its own, so that the test ends exactly the two processes it started.
    parent = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                              env={"PATH": os.environ.get("PATH", ""), "MARKER": "m1"})
    try:
        time.sleep(0.5)
        pid_file = tmp_path / "app.pid"
        pid_file.write_text(f"{parent.pid}\n")
        seen = observe_local(Local(processes=(Process(name="api", pid_file=pid_file),)))
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    assert [p.name for p in seen] == ["api", "api/child"]
    assert seen[0].pid == parent.pid and seen[1].ppid == parent.pid
    assert ("MARKER", b"m1") in seen[0].environ and "m1" not in repr(seen[0])
    assert str(held) in seen[0].open_files


def test_missing_or_stale_pid_file_is_a_probe_error(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match=r"^process api: .*none.pid: the pid file was not read: "):
        observe_process(Process(name="api", pid_file=tmp_path / "none.pid"))
    stale = tmp_path / "stale.pid"
    stale.write_text("999999999\n")
    with pytest.raises(ProbeError, match=r"pid 999999999 .* is not running"):
        observe_process(Process(name="api", pid_file=stale))


def test_docker_containers_config_env_and_processes() -> None:
    container = SimpleNamespace(name="votriz-api", attrs={
        "Config": {"Env": ["A=1", "SECRET=zz"]}, "State": {"Status": "running", "Pid": os.getpid()}})
    client = SimpleNamespace(containers=SimpleNamespace(list=lambda all, filters, ignore_removed: [container]))
    seen = observe_docker("votriz", client=client)
    assert seen[0].where == "votriz-api/config[container config]"
    assert seen[0].environ == (("A", b"1"), ("SECRET", b"zz"))
    assert seen[1].pid == os.getpid()
    empty = SimpleNamespace(containers=SimpleNamespace(list=lambda all, filters, ignore_removed: []))
    with pytest.raises(ProbeError, match=r"no running container is labelled votriz.project=votriz"):
        observe_docker("votriz", client=empty)
