"""Rolling the API's workers against a stand-in for gunicorn's master: every old worker is
replaced although the master takes two signals of one kind, sent close together, as one."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from system_under_test.api.config import parse_config
from system_under_test.ops import workers
from system_under_test.ops.context import OpsContext

# Like gunicorn's master, it takes signals only between naps of its loop, so two TTIN sent
# within one nap are one pending signal: one new worker. On TTIN it starts a worker (which
# logs gunicorn's "Application startup complete" line), on TTOU it stops the oldest.
FAKE_MASTER = r"""
import signal, socket, subprocess, sys, time
log, nap, listen = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "listen"
kinds = {signal.SIGTTIN, signal.SIGTTOU}
pending = []
for kind in kinds:
    signal.signal(kind, lambda number, frame: pending.append(number))
# With "listen", the workers share the master's listening socket, close it first on TERM and
# leave a while later (gunicorn's workers finishing the requests they have).
listener = socket.create_server(("127.0.0.1", 0)) if listen else None
WORKER = ("import os, signal, sys, time\n"
          "fd = int(sys.argv[2])\n"
          "def leave(*_):\n"
          "    if fd >= 0: os.close(fd)\n"
          "    time.sleep(0.3); os._exit(0)\n"
          "signal.signal(signal.SIGTERM, leave)\n"
          "open(sys.argv[1], 'a').write(f'[{os.getpid()}] [INFO] Application startup complete\\n')\n"
          "time.sleep(120)\n")
workers, leaving = [], []
def spawn():
    fd = listener.fileno() if listener else -1
    workers.append(subprocess.Popen([sys.executable, "-c", WORKER, log, str(fd)],
                                    pass_fds=(fd,) if listener else ()))
spawn(); spawn()
print("ready", flush=True)
while True:
    signal.pthread_sigmask(signal.SIG_BLOCK, kinds)
    time.sleep(nap)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, kinds)
    while pending:
        if pending.pop(0) == signal.SIGTTIN:
            spawn()
        else:
            leaving.append(workers.pop(0))
            leaving[-1].terminate()
    leaving = [worker for worker in leaving if worker.poll() is None]  # reaped, as gunicorn does
"""


@pytest.fixture(params=["listen", "no-listener"])
def fake_master(tmp_path: Path, request: pytest.FixtureRequest):
    (tmp_path / "run").mkdir()
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "api.log"
    log.write_bytes(b"")
    master = subprocess.Popen([sys.executable, "-c", FAKE_MASTER, str(log), "0.15", request.param],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert master.stdout is not None and master.stdout.readline().strip() == "ready"
        (tmp_path / "run" / "gunicorn.pid").write_text(f"{master.pid}\n")
        yield master
    finally:
        for pid in workers.worker_pids(master.pid):
            subprocess.run(["kill", str(pid)], check=False)
        master.kill()
        master.wait()


def test_a_roll_replaces_every_worker_when_signals_sent_together_would_count_once(
        tmp_path: Path, fake_master: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.system_under_test.test_ops_units import SAMPLE_CONFIG

    # Given a master with two workers that takes a burst of one signal as one
    monkeypatch.setattr(workers, "api_answers", lambda ctx: True)
    ctx = OpsContext(tmp_path, parse_config({**SAMPLE_CONFIG, "faults": []}), tmp_path / "pin")
    old = workers.worker_pids(fake_master.pid)
    assert len(old) == 2
    # When the workers are rolled twice
    started = time.monotonic()
    first = workers.roll_workers(ctx, timeout_s=20)
    second = workers.roll_workers(ctx, timeout_s=20)
    # Then each roll left two workers, none of them one from before it
    assert len(first.new_workers) == 2 and not set(first.new_workers) & old
    assert len(second.new_workers) == 2 and not set(second.new_workers) & set(first.new_workers)
    assert workers.worker_pids(fake_master.pid) == set(second.new_workers)
    # (each roll waits for the master's naps, not for fixed pauses of its own)
    assert time.monotonic() - started < 10


def test_a_master_that_starts_no_worker_is_one_error_line(
        tmp_path: Path, fake_master: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.system_under_test.test_ops_units import SAMPLE_CONFIG

    # Given a master that takes TTIN but starts no worker (stopped: it takes no signal at all)
    ctx = OpsContext(tmp_path, parse_config({**SAMPLE_CONFIG, "faults": []}), tmp_path / "pin")
    fake_master.send_signal(19)  # SIGSTOP
    try:
        # When the workers are rolled, Then the roll ends at its deadline with one line
        with pytest.raises(workers.OpsError, match="started no new worker within"):
            workers.roll_workers(ctx, timeout_s=1.0)
    finally:
        fake_master.send_signal(18)  # SIGCONT
