"""Reliability when the system under audit changes under the harness's feet.

- The Docker engine is gone, refuses, hangs, or hangs up half-way through an
  observation: a fake engine on a unix socket (``DOCKER_HOST``) stands in for
  it, so the real engine, which others use, is never touched. The probe says
  which engine, which step and what happened, within the policy's timeout;
  through the real command line the container checks are ERROR with that
  reason, the report is written, and the run ends in bounded time. Against a
  real service described as a Docker deployment, every check that asks the
  engine is ERROR and every other check judges the service as it is.
- The reference service's API (and once its edge) is stopped just before a
  check and started again right after it, during a full audit through the
  command line: the checks that ran while it was down are ERROR with the
  precise reason, no other check is misled into FAIL, the report is written and
  signed, and the run ends in bounded time.
- An edge, a Redis or a database that accepts TCP and never says a word: the
  checks that need it are ERROR naming it, within about the policy's timeout
  (no client library's retries multiplying it).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import socketserver
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from audit_cli import closed_port, run_cli

from harness.cli import EXIT_ERROR
from harness.outcomes import ProbeError
from harness.probes.containers import docker_client, observe_topology
from harness.profile import Hsm
from system_under_test.local.api_server import healthz_ok

REPO = Path(__file__).resolve().parents[2]
PROJECT = "votriz-reliability"
API_VERSION = "1.43"

# --- a fake Docker engine on a unix socket --------------------------------------------------------

# What the fake engine does with one request: answer this JSON, answer this HTTP status
# (an ``int``), never answer ("hang"), or close the connection without answering ("close").
Action = Any
Script = Callable[[str], Action]


class _EngineHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _FakeEngine

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        action = self.server.script(self.path)
        if action == "hang":
            self.server.stopping.wait(600)
            self.close_connection = True
            return
        if action == "close":
            self.close_connection = True
            return
        status, payload = (action, {"message": f"fake engine says {action}"}) if isinstance(action, int) \
            else (200, action)
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        return "fake-engine-client"


class _FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, script: Script) -> None:
        super().__init__(str(path), _EngineHandler)
        self.script = script
        self.stopping = threading.Event()
        self.requests: list[str] = []


def healthy_until(step: str, then: Action) -> Script:
    """An engine that answers like an empty Docker engine until a request whose path holds
    ``step`` (``/version``, ``/info``, ``/containers/json``, ``/networks/``), then does ``then``
    for it and every later request: the engine going away in the middle of an observation."""
    broken = threading.Event()

    def script(path: str) -> Action:
        if step in path:
            broken.set()
        if broken.is_set():
            return then
        if path.endswith("/version"):
            return {"ApiVersion": API_VERSION, "Version": "24.0.0", "MinAPIVersion": "1.12"}
        if path.endswith("/info"):
            return {"Name": "fake-engine", "Swarm": {"LocalNodeState": "inactive"}}
        if "/containers/json" in path:
            return [{"Id": "c0ffee"}]
        if "/containers/c0ffee/json" in path:
            return {"Id": "c0ffee", "Name": "/votriz-edge", "State": {"Status": "running"},
                    "Config": {"Image": "edge", "Labels": {"votriz.role": "edge"}},
                    "HostConfig": {"NetworkMode": "votriz_public"},
                    "NetworkSettings": {"Ports": {}, "Networks": {"votriz_public": {"NetworkID": "n1"}}}}
        if "/networks/" in path:
            return {"Name": "votriz_public", "Driver": "bridge", "Scope": "local", "Internal": False}
        return 404

    return script


@dataclass
class Engine:
    """A fake engine's address and what it was asked.

    Attributes:
        host: the ``DOCKER_HOST`` value reaching it.
        server: the server (None when nothing listens there).
    """

    host: str
    server: _FakeEngine | None

    @property
    def requests(self) -> list[str]:
        return self.server.requests if self.server else []


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a unix socket's path may not exceed 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="fake-engine-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_engine(short_dir: Path) -> Iterator[Callable[[Script], Engine]]:
    """``fake_engine(script)`` serves a fake engine on a fresh socket until the test ends."""
    started: list[tuple[_FakeEngine, threading.Thread]] = []

    def start(script: Script) -> Engine:
        path = short_dir / f"engine{len(started)}.sock"
        server = _FakeEngine(path, script)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        started.append((server, thread))
        return Engine(f"unix://{path}", server)

    yield start
    for server, thread in started:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def dead_socket(where: Path) -> str:
    """A socket file nobody listens on (an engine that died and left its socket behind)."""
    path = where / "dead.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
    return f"unix://{path}"


def _observe(monkeypatch: pytest.MonkeyPatch, host: str, timeout_s: float = 1.0,
             budget_s: float | None = None) -> tuple[str, float]:
    """Observe the project through ``host``; return the ProbeError's message and the seconds taken."""
    monkeypatch.setenv("DOCKER_HOST", host)
    start = time.monotonic()
    with pytest.raises(ProbeError) as raised:
        observe_topology(PROJECT, timeout_s=timeout_s, budget_s=budget_s)
    return str(raised.value), time.monotonic() - start


# --- the probe, against each way of going away ----------------------------------------------------


STEP_VERSION = "asking for its API version"
STEP_LIST = f"listing the containers labelled votriz.project={PROJECT}"

ENGINE_FAULTS: dict[str, tuple[str, Action, str, str]] = {
    # name: (the request at which it breaks, what it does then, the reason, the step)
    "hangs from the start": ("/version", "hang", "no answer within 1 s (policy timeouts.request_s)",
                             STEP_VERSION),
    "hangs up from the start": ("/version", "close", "it closed the connection without answering",
                                STEP_VERSION),
    "stops answering mid-observation": ("/containers/json", "hang",
                                        "no answer within 1 s (policy timeouts.request_s)", STEP_LIST),
    "hangs up mid-observation": ("/containers/json", "close", "it closed the connection without answering",
                                 STEP_LIST),
    "answers 500 mid-observation": ("/info", 500, "answered HTTP 500 (fake engine says 500)",
                                    "asking for its host name and swarm state"),
    "forgets a network it listed": ("/networks/", 404, "answered 404: it no longer knows an object it had "
                                    "just listed (is the project being restarted?)",
                                    "inspecting network votriz_public"),
}


@pytest.mark.parametrize("fault", list(ENGINE_FAULTS))
def test_engine_going_away_is_a_probe_error_naming_engine_step_and_reason(
        fault: str, fake_engine: Callable[[Script], Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an engine that breaks at one request of the observation
    at, then, reason, step = ENGINE_FAULTS[fault]
    engine = fake_engine(healthy_until(at, then))
    # When the project's topology is observed with a 1 s timeout
    message, seconds = _observe(monkeypatch, engine.host)
    # Then the error names the engine, what happened and the step, within about one timeout
    assert message == f"Docker engine at {engine.host}: {reason}, while {step}", message
    assert seconds < 5, seconds
    assert any(at in path for path in engine.requests), engine.requests


def test_engine_not_running_is_a_probe_error_at_once(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message, seconds = _observe(monkeypatch, f"unix://{short_dir}/no-such.sock")
    assert message == (f"Docker engine at unix://{short_dir}/no-such.sock: its socket does not exist "
                       f"(the engine is not running), while {STEP_VERSION}")
    assert seconds < 2


def test_engine_that_died_leaving_its_socket_is_refused(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = dead_socket(short_dir)
    message, seconds = _observe(monkeypatch, host)
    assert message == (f"Docker engine at {host}: connection refused (nothing listens there), "
                       f"while {STEP_VERSION}")
    assert seconds < 2


def test_engine_answering_every_call_just_in_time_is_bounded_as_a_whole(
        fake_engine: Callable[[Script], Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an engine that answers every call correctly, but each 0.6 s late
    healthy = healthy_until("never", None)

    def slow(path: str) -> Action:
        time.sleep(0.6)
        return healthy(path)

    engine = fake_engine(slow)
    # When the topology is observed with a 1 s timeout per call and 1 s for the whole
    message, seconds = _observe(monkeypatch, engine.host, timeout_s=1.0, budget_s=1.0)
    # Then it gives up at the first step past the budget, saying so, instead of summing timeouts
    assert message == (f"Docker engine at {engine.host}: the observation took longer than 1 s in all; "
                       f"gave up before {STEP_LIST}"), message
    assert seconds < 3, seconds


def test_healthy_fake_engine_is_observed(fake_engine: Callable[[Script], Engine],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake engine is a faithful enough Docker API: without a fault, the probe reads it.
    engine = fake_engine(healthy_until("never", None))
    monkeypatch.setenv("DOCKER_HOST", engine.host)
    topology = observe_topology(PROJECT, timeout_s=1.0)
    assert topology.engine_host == "fake-engine"
    assert [(c.name, c.role, [n.name for n in c.networks]) for c in topology.containers] == \
        [("votriz-edge", "edge", ["votriz_public"])]


def test_every_sdk_client_has_the_timeout_it_was_given(fake_engine: Callable[[Script], Engine],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    engine = fake_engine(healthy_until("never", None))
    monkeypatch.setenv("DOCKER_HOST", engine.host)
    client = docker_client(2.5)
    try:
        assert client.api.timeout == 2.5
    finally:
        client.close()


# Where the harness may make a Docker client itself: docker_client, and the command line's
# choice of backend for the reference service (it asks the local engine, with its own 5 s
# timeout, whether to stand the service up there; it observes no audited system).
OWN_CLIENTS = {"harness/probes/containers.py", "harness/cli.py"}


def test_every_docker_client_that_observes_a_target_is_made_by_docker_client() -> None:
    # A client made anywhere else would have the SDK's default timeout (60 s), not the policy's.
    makers = re.compile(r"docker\.from_env\(|DockerClient\(|APIClient\(")
    elsewhere = [f"{path.relative_to(REPO)}:{number}"
                 for folder in ("harness", "checks") for path in sorted((REPO / folder).rglob("*.py"))
                 if str(path.relative_to(REPO)) not in OWN_CLIENTS
                 for number, line in enumerate(path.read_text().splitlines(), 1) if makers.search(line)]
    assert elsewhere == []


# --- through the real command line: the container checks against a dead engine -------------------


TIGHT_POLICY = """\
schema_version = 1
name = "reliability"
version = "test"
[timeouts]
connect_s = 1.0
request_s = 2.0
command_s = 30.0
run_s = 300.0
"""


def docker_profile(where: Path) -> Path:
    """A profile of a Docker deployment whose edge is closed: only the engine is asked anything."""
    path = where / "target.toml"
    path.write_text(tomli_w.dumps({
        "name": "dead-engine", "backend": "docker",
        "edge": {"host": "votriz.test", "address": "127.0.0.1", "https_port": closed_port()},
        "docker": {"project": PROJECT}}))
    return path


CONTAINER_CHECKS = ("containers.published_ports", "containers.bridge_networks", "containers.isolation")


@pytest.mark.parametrize("how", ["stops answering mid-run", "not running"])
def test_container_checks_against_a_dead_engine_are_errors_in_bounded_time(
        how: str, fake_engine: Callable[[Script], Engine], short_dir: Path, tmp_path: Path) -> None:
    # Given a Docker profile whose engine answers the version handshake, then never again
    # (or whose socket is gone), and a policy with a 2 s request timeout
    if how == "not running":
        host, reason = f"unix://{short_dir}/gone.sock", "its socket does not exist (the engine is not running)"
    else:
        host = fake_engine(healthy_until("/info", "hang")).host
        reason = "no answer within 2 s (policy timeouts.request_s)"
    policy = tmp_path / "policy.toml"
    policy.write_text(TIGHT_POLICY)
    # When the container checks run through the command line
    run = run_cli(docker_profile(tmp_path), tmp_path / "r", policy, only=("containers",),
                  env={"DOCKER_HOST": host})
    # Then each is ERROR naming the engine, the reason and the step; the gate says "could not verify"
    assert run.returncode == EXIT_ERROR, run.output[-3000:]
    assert set(run.results) == set(CONTAINER_CHECKS)
    for check in CONTAINER_CHECKS:
        outcome, message = run.results[check]
        assert outcome == "ERROR", (check, outcome, message)
        assert f"Docker engine at {host}: {reason}, while " in message, (check, message)
    # And it ended in about one timeout (plus the interpreter's start), not the SDK's default 60 s
    assert run.seconds < 30, run.seconds


# Every check that asks the engine about a Docker target.
ENGINE_CHECKS = ("containers.published_ports", "containers.bridge_networks", "containers.isolation",
                 "keys.no_key_elsewhere", "keys.read_at_start", "transit.origin_not_plaintext",
                 "at_rest.plaintext_sweep")


@pytest.mark.integration
@pytest.mark.slow
def test_engine_gone_mid_run_makes_every_engine_check_an_error_and_misleads_no_other(
        stack_factory: Any, fake_engine: Callable[[Script], Engine], tmp_path: Path) -> None:
    # Given a real service (database, HSM, Redis, edge, API all reachable) described as a Docker
    # deployment, whose engine answers the version handshake and its info, then no question about
    # a container ever again (every observation of the run meets it so); the default policy with
    # 6 s per request (the canary's MFA setup hashes ten codes with bcrypt-12, which a loaded
    # machine does not finish in 2 s; each engine check waits one such deadline)
    engine = fake_engine(healthy_until("/containers/", "hang"))
    policy = tmp_path / "policy.toml"
    policy.write_text((REPO / "fixtures" / "policy" / "default.toml").read_text().replace(
        "request_s = 15.0", "request_s = 6.0", 1))
    with stack_factory() as info:
        data = tomllib.loads(info.profile_path.read_text())
        data.update(backend="docker", docker={"project": PROJECT})
        data["operations"]["allow_destructive"] = False
        profile = tmp_path / "target.toml"
        profile.write_text(tomli_w.dumps(data))
        # When every area is audited through the command line
        run = run_cli(profile, tmp_path / "r", policy, only=(), env={"DOCKER_HOST": engine.host}, limit_s=400)
    # Then every check that needed the engine could not verify, naming the engine and the timeout
    for check in ENGINE_CHECKS:
        outcome, message = run.results[check]
        assert outcome == "ERROR", (check, outcome, message)
        assert f"Docker engine at {engine.host}: no answer within 6 s (policy timeouts.request_s)" in message, \
            (check, message)
    # And the others judged the service as it is: nothing FAILed, the database, HSM and edge
    # checks passed, and the operations stayed MANUAL (not allowed on this target)
    outcomes = {check: outcome for check, (outcome, _) in run.results.items()}
    assert "FAIL" not in outcomes.values(), run.results
    for check in ("at_rest.postgres_version", "at_rest.data_inventory", "transit.tls_versions",
                  "transit.certificate", "transit.hsts"):
        assert outcomes[check] == "PASS", (check, run.results[check])
    assert outcomes["keys.token_key_rotation"] == "MANUAL"
    assert run.returncode == EXIT_ERROR, run.output[-3000:]
    # And each engine check took one 6 s timeout plus its own work, never the SDK's default of
    # 60 s, nor the plugin's backstop
    for check in ENGINE_CHECKS:
        assert run.durations[check] < 40, (check, run.durations[check])
    assert run.seconds < 300, run.seconds


# --- the system restarted in the middle of a run -------------------------------------------------

# Loaded into the audit's own pytest (PYTEST_PLUGINS), it stops processes of the stack just
# before chosen checks and starts them again, exactly as they were, right after: a check runs
# while they are down, the next one against freshly started processes. Deterministic, unlike a
# restart at a random moment, and through the real command line and plugin.
RESTART_PLUGIN = '''
"""Stops processes of a local stack around chosen checks (VOTRIZ_RESTART_PLAN), then restarts them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from system_under_test.local.api_server import healthz_ok

PLAN = json.loads(os.environ["VOTRIZ_RESTART_PLAN"])
STATE = Path(PLAN["state_dir"])
PID_FILES = {"api": STATE / "run" / "gunicorn.pid", "edge": STATE / "run" / "nginx.pid"}
EVENTS = Path(PLAN["events"])
_stopped: dict[str, dict[str, Any]] = {}


def _record(**event: Any) -> None:
    with EVENTS.open("a") as out:
        out.write(json.dumps({"t": time.time(), **event}) + "\\n")


def _check_id(item: pytest.Item) -> str:
    # checks/<area>/<name>.py holds check_<name>: the id is <area>.<name>
    return f"{Path(str(item.path)).parent.name}.{getattr(item, 'originalname', item.name).removeprefix('check_')}"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _edge_answers() -> bool:
    import socket
    try:
        with socket.create_connection(("127.0.0.1", PLAN["https_port"]), timeout=1):
            return True
    except OSError:
        return False


def _healthy(name: str) -> bool:
    return healthz_ok(STATE / "run" / "api.sock") if name == "api" else _edge_answers()


def stop(name: str, check: str) -> None:
    pid = int(PID_FILES[name].read_text().strip())
    proc = Path(f"/proc/{pid}")
    argv = [a.decode() for a in (proc / "cmdline").read_bytes().rstrip(b"\\0").split(b"\\0")]
    if argv[0].startswith("nginx: master process "):
        # nginx rewrites its title; the command it was started with follows it.
        argv = argv[0].removeprefix("nginx: master process ").split()
    status = (proc / "status").read_text()
    _stopped[name] = dict(
        argv=argv, cwd=os.readlink(proc / "cwd"),
        env=dict(item.decode().split("=", 1) for item in (proc / "environ").read_bytes().split(b"\\0")
                 if b"=" in item),
        uid=int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))),
        gid=int(next(line.split()[1] for line in status.splitlines() if line.startswith("Gid:"))))
    os.kill(pid, signal.SIGQUIT)  # quick shutdown (gunicorn); graceful (nginx)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    _record(check=check, process=name, event="down", pid=pid, stopped=not _alive(pid), healthy=_healthy(name))


def start(name: str, check: str) -> None:
    saved = _stopped.pop(name)
    as_other = os.geteuid() == 0 and saved["uid"] != 0
    log_file = STATE / "logs" / ("api.log" if name == "api" else "restarted-nginx.log")
    with open(log_file, "ab") as log:
        child = subprocess.Popen(saved["argv"], cwd=saved["cwd"], env=saved["env"], stdout=log,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                 user=saved["uid"] if as_other else None,
                                 group=saved["gid"] if as_other else None,
                                 extra_groups=[] if as_other else None)
    deadline = time.monotonic() + 60
    while not _healthy(name) and time.monotonic() < deadline:
        time.sleep(0.1)
    _record(check=check, process=name, event="up", pid=child.pid, healthy=_healthy(name))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for name in PLAN["down_during"].get(_check_id(item), []):
        stop(name, _check_id(item))


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    for name in PLAN["down_during"].get(_check_id(item), []):
        start(name, _check_id(item))
'''

# Check -> the processes that are down while it runs, and what it must then say.
DOWN_DURING: dict[str, tuple[list[str], str]] = {
    # The canary's MFA setup goes through the edge to the API, which is not there.
    "at_rest.backup_codes": (["api"], "GET /mfa: expected HTTP 200, got 502"),
    # The keys-read-at-start check follows the API's processes from their pid file; gunicorn
    # removed it as it stopped.
    "keys.read_at_start": (["api"], "gunicorn.pid: the pid file was not read: No such file or directory"),
    # The whole front (edge and API) is down while the TLS scan runs: it is made once per run
    # (checks/transit/conftest.py) for the first check that needs it, transit.certificate.
    "transit.certificate": (["edge", "api"], "cannot connect (Connection refused)"),
}
# What the clean reference service gets for the checks that are not PASS there.
CLEAN_NOT_PASS = {"containers.published_ports": "NOT_APPLICABLE", "containers.bridge_networks": "NOT_APPLICABLE",
                  "containers.isolation": "NOT_APPLICABLE", "at_rest.volume_encryption": "MANUAL",
                  "keys.hsm_hardware": "MANUAL"}  # SoftHSM2 reports itself as a software token


@pytest.mark.integration
@pytest.mark.slow
def test_a_restart_in_the_middle_of_a_run_gives_errors_with_reasons_not_hangs(
        stack_factory: Any, tmp_path: Path) -> None:
    # Given a private reference stack, and a plugin in the audit that stops the API (and for one
    # check the edge too) just before three checks and starts them again right after each
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "restart_between_checks.py").write_text(RESTART_PLUGIN)
    events = tmp_path / "events.jsonl"
    with stack_factory() as info:
        plan = {"state_dir": str(info.state_dir), "https_port": info.ports.https, "events": str(events),
                "down_during": {check: names for check, (names, _) in DOWN_DURING.items()}}
        env = {"PYTEST_PLUGINS": "restart_between_checks", "VOTRIZ_RESTART_PLAN": json.dumps(plan),
               "PYTHONPATH": os.pathsep.join([str(tmp_path / "plugin"), str(REPO)])}
        # When every area is audited through the command line (rotations and backups included)
        run = run_cli(info.profile_path, tmp_path / "r", REPO / "fixtures" / "policy" / "default.toml",
                      only=(), env=env, limit_s=600)
        # Then each restart happened as planned: down during its check, healthy again after it
        done = [json.loads(line) for line in events.read_text().splitlines()]
        for check, (names, _) in DOWN_DURING.items():
            for name in names:
                down, up = (next(e for e in done if (e["check"], e["process"], e["event"]) == (check, name, kind))
                            for kind in ("down", "up"))
                assert down["stopped"] and not down["healthy"], down
                assert up["healthy"], up
        stack_still_serves = healthz_ok(info.api_socket)
    assert stack_still_serves
    # And each check run while the system was down could not verify, saying exactly why
    for check, (_, reason) in DOWN_DURING.items():
        outcome, message = run.results[check]
        assert outcome == "ERROR", (check, outcome, message)
        assert reason in message, (check, message)
    # And no other check was misled: each has its clean outcome, or is ERROR with a reason
    # (a session observation made while the system was down stays unverified for all its checks);
    # nothing FAILed, as the system kept every promise throughout
    for check, (outcome, message) in run.results.items():
        assert outcome in (CLEAN_NOT_PASS.get(check, "PASS"), "ERROR"), (check, outcome, message)
        if outcome == "ERROR":
            assert message.strip(), check
    assert run.returncode == EXIT_ERROR, run.output[-3000:]
    # And the run ended in bounded time, its report and signed bundle written
    assert (tmp_path / "r" / "audit.intoto.jsonl").is_file()
    assert run.seconds < 400, run.seconds


# --- an edge that accepts TCP but never speaks, through the command line -------------------------


@pytest.fixture
def mute_ports() -> Iterator[tuple[int, int]]:
    """Two loopback ports whose connections are accepted (by the kernel) and never answered."""
    sockets = []
    for _ in range(2):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sockets.append(sock)
    try:
        yield sockets[0].getsockname()[1], sockets[1].getsockname()[1]
    finally:
        for sock in sockets:
            sock.close()


def test_mute_edge_makes_every_transit_check_an_error_in_bounded_time(mute_ports: tuple[int, int],
                                                                      tmp_path: Path) -> None:
    # Given an edge whose HTTPS and HTTP ports accept connections and never say anything
    https_port, http_port = mute_ports
    profile = tmp_path / "target.toml"
    profile.write_text(tomli_w.dumps({
        "name": "mute-edge",
        "edge": {"host": "votriz.test", "address": "127.0.0.1", "https_port": https_port,
                 "http_port": http_port}}))
    policy = tmp_path / "policy.toml"
    policy.write_text(TIGHT_POLICY)
    # When the in-transit checks run through the command line with a 2 s request timeout
    run = run_cli(profile, tmp_path / "r", policy, only=("transit",), env={})
    # Then every check that needs an answer from the edge could not verify, and none passed
    assert run.returncode == EXIT_ERROR, run.output[-3000:]
    tls = "does not speak TLS"
    http = "no answer within the policy's timeouts (connect 1s, request 2s)"
    for check, reason in (("transit.tls_versions", tls), ("transit.certificate", tls), ("transit.hsts", http),
                          ("transit.security_headers", http), ("transit.http_redirect_only", http)):
        outcome, message = run.results[check]
        assert outcome == "ERROR", (check, outcome, message)
        assert reason in message, (check, message)
    assert "PASS" not in {outcome for outcome, _ in run.results.values()}
    # And it ended within a few timeouts, not at the plugin's backstop
    assert run.seconds < 60, run.seconds


# --- a Redis that accepts and never answers --------------------------------------------------------


def test_mute_redis_is_a_probe_error_within_one_timeout(mute_ports: tuple[int, int], tmp_path: Path) -> None:
    # Given a Redis whose port accepts connections and never answers, and a 1 s request timeout
    from harness.policy import load_policy
    from harness.probes.redis_store import redis_contents
    from harness.profile import parse_profile
    from harness.redaction import KnownSecrets

    (tmp_path / "redis-password").write_text("redis-password-of-the-test\n")
    (tmp_path / "redis-password").chmod(0o600)
    profile = parse_profile(tomli_w.dumps({
        "name": "mute-redis", "edge": {"host": "votriz.test"},
        "redis": {"host": "127.0.0.1", "port": mute_ports[0],
                  "password": {"file": str(tmp_path / "redis-password")}}}))
    (tmp_path / "policy.toml").write_text(TIGHT_POLICY.replace("request_s = 2.0", "request_s = 1.0"))
    policy = load_policy(tmp_path / "policy.toml")
    # When its contents are read for the plaintext sweep
    start = time.monotonic()
    with pytest.raises(ProbeError) as raised:
        list(redis_contents(profile, policy, KnownSecrets()))
    # Then it is a ProbeError saying so after about one timeout, not after the Redis client's own
    # retries (redis-py retries a timed-out command, multiplying the policy's timeout; at 15 s a
    # run met the plugin's 90 s backstop instead)
    assert str(raised.value) == f"Redis at 127.0.0.1:{mute_ports[0]} did not answer in time"
    assert time.monotonic() - start < 3


def test_mute_database_makes_the_database_checks_errors_within_the_connect_timeout(
        mute_ports: tuple[int, int], tmp_path: Path) -> None:
    # Given a database port that accepts connections and never answers (a hung PostgreSQL)
    port = mute_ports[0]
    (tmp_path / "password").write_text("auditor-password-of-the-test\n")
    (tmp_path / "password").chmod(0o600)
    profile = tmp_path / "target.toml"
    dsn = f"host=127.0.0.1 port={port} dbname=votriz user=votriz_auditor"
    profile.write_text(tomli_w.dumps({
        "name": "mute-db", "edge": {"host": "votriz.test", "address": "127.0.0.1", "https_port": closed_port()},
        "database": {"dsn": dsn, "password": {"file": str(tmp_path / "password")}}}))
    policy = tmp_path / "policy.toml"
    policy.write_text(TIGHT_POLICY)
    # When the at-rest checks run through the command line
    run = run_cli(profile, tmp_path / "r", policy, only=("at_rest",), env={})
    # Then each database check could not verify, saying the connection timed out, each within
    # about the policy's connect timeout (1 s)
    assert run.returncode == EXIT_ERROR, run.output[-3000:]
    for check in ("at_rest.password_hashes", "at_rest.data_inventory", "at_rest.postgres_version"):
        outcome, message = run.results[check]
        assert outcome == "ERROR", (check, outcome, message)
        assert message.startswith(f"cannot connect to the database ({dsn}): connection timeout expired"), message
        assert run.durations[check] < 10, (check, run.durations[check])
    assert "PASS" not in {outcome for outcome, _ in run.results.values()}


# --- an HSM that accepts and never answers, through the command line -------------------------------


def test_mute_hsm_makes_the_hsm_checks_errors_within_the_timeout(mute_hsm: Hsm, tmp_path: Path) -> None:
    # Given an HSM reached through p11-kit whose server socket accepts connections and never
    # answers (a frozen HSM container: p11-kit's client blocks in C_Initialize for ever)
    assert mute_hsm.pin.file is not None
    profile = tmp_path / "target.toml"
    address = mute_hsm.env["P11_KIT_SERVER_ADDRESS"]
    profile.write_text(tomli_w.dumps({
        "name": "mute-hsm", "edge": {"host": "votriz.test", "address": "127.0.0.1", "https_port": closed_port()},
        "hsm": {"module": str(mute_hsm.module), "token_label": mute_hsm.token_label,
                "pin": {"file": str(mute_hsm.pin.file)}, "env": dict(mute_hsm.env)}}))
    policy = tmp_path / "policy.toml"
    policy.write_text(TIGHT_POLICY)
    # When the key checks run through the command line with a 2 s request timeout
    run = run_cli(profile, tmp_path / "r", policy, only=("keys",), env={})
    # Then each check that looks at the token could not verify, saying the HSM did not answer,
    # each within about the timeout; none passed, and the run ended with the report written
    assert run.returncode == EXIT_ERROR, run.output[-3000:]
    reason = (f"HSM: PKCS#11 module {mute_hsm.module} (server {address}) "
              "did not answer within 2 s (token 'votriz')")
    looked = [check for check, (_, message) in run.results.items() if reason in message]
    assert "keys.hsm_custody" in looked, run.results
    for check in looked:
        assert run.results[check][0] == "ERROR" and run.durations[check] < 10, (check, run.results[check])
    assert "PASS" not in {outcome for outcome, _ in run.results.values()}
    assert run.seconds < 90, run.seconds


# --- the database frozen in the middle of a run: no FAIL, no rotation after the outage -------------

# Loaded into the audit's own pytest (PYTEST_PLUGINS): freezes the stack's PostgreSQL (SIGSTOP on
# its postmaster: connections are accepted by the kernel and never answered, as with a hung
# server) just before one check, and records when. The test resumes it (SIGCONT) in a finally.
FREEZE_PLUGIN = '''
"""Freezes PostgreSQL before one check (VOTRIZ_FREEZE_PLAN); the test resumes it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

PLAN = json.loads(os.environ["VOTRIZ_FREEZE_PLAN"])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    path = Path(str(item.path))
    if f"{path.parent.name}.{path.stem}" == PLAN["freeze_before"]:
        os.kill(PLAN["postgres_pid"], signal.SIGSTOP)
        with open(PLAN["events"], "a") as out:
            out.write(json.dumps({"event": "frozen", "t": time.time()}) + "\\n")
'''

# Every operator command the profile names runs through this wrapper, which logs it first, and
# freezes PostgreSQL as it starts the command named ``freeze_on`` (the database going away in the
# middle of a rotation).
OPERATION_LOG_WRAPPER = """#!/bin/sh
printf '%s %s\\n' "$(date +%s.%N)" "$*" >> "{log}"
case "$*" in *"{freeze_on}"*) kill -STOP {postgres} ;; esac
exec "$@"
"""

ROTATION_CHECKS = ("keys.db_password_rotation", "keys.jwt_rotation", "keys.redis_password_rotation",
                   "keys.token_key_rotation")
FREEZE_POLICY = """\
schema_version = 1
name = "database-frozen"
version = "test"
[rotation]
seed_channels = 200
[timeouts]
connect_s = 2.0
request_s = 5.0
command_s = 30.0
run_s = 600.0
"""
NOT_RUN = "not run: the database was unavailable at "


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("when", ["before keys.jwt_rotation", "during the JWT rotation command"])
def test_database_frozen_mid_run_gives_errors_not_fails_and_runs_no_rotation_after_the_outage(
        stack_factory: Any, tmp_path: Path, when: str) -> None:
    import signal

    import psycopg

    # Given a private stack whose profile logs every operator command it runs; its PostgreSQL is
    # frozen either just before keys.jwt_rotation (by a plugin in the audit) or as the JWT
    # rotation command starts (by the wrapper); keys.db_password_rotation, the first rotation,
    # runs on a healthy service
    during = when.startswith("during")
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "freeze_database.py").write_text(FREEZE_PLUGIN)
    events, op_log = tmp_path / "events.jsonl", tmp_path / "operations.log"
    policy = tmp_path / "policy.toml"
    policy.write_text(FREEZE_POLICY)

    def users(data: dict[str, Any]) -> int:
        password = Path(data["database"]["password"]["file"]).read_text().strip()
        with psycopg.connect(data["database"]["dsn"], password=password, connect_timeout=10) as conn:
            row = conn.execute("SELECT count(*) FROM users").fetchone()
        assert row is not None
        return int(row[0])

    with stack_factory() as info:
        postgres = info.pids["postgres"]
        wrapper = tmp_path / "logged-operation"
        wrapper.write_text(OPERATION_LOG_WRAPPER.format(
            log=op_log, postgres=postgres, freeze_on="rotate-jwt-secret" if during else "never"))
        wrapper.chmod(0o755)
        data = tomllib.loads(info.profile_path.read_text())
        for name, argv in list(data["operations"].items()):
            if isinstance(argv, list):
                data["operations"][name] = [str(wrapper), *argv]
        profile = tmp_path / "target.toml"
        profile.write_text(tomli_w.dumps(data))
        users_before = users(data)
        plan = {"postgres_pid": postgres, "events": str(events),
                "freeze_before": "never" if during else "keys.jwt_rotation"}
        env = {"PYTEST_PLUGINS": "freeze_database", "VOTRIZ_FREEZE_PLAN": json.dumps(plan),
               "PYTHONPATH": os.pathsep.join([str(tmp_path / "plugin"), str(REPO)])}
        try:
            # When the key checks are audited through the command line
            run = run_cli(profile, tmp_path / "r", policy, only=("keys",), env=env, limit_s=400)
        finally:
            os.kill(postgres, signal.SIGCONT)
        time.sleep(2)  # requests that waited on the frozen database end before anything is counted
        users_after = users(data)
        # the accounts of the run's ledger still in the database, asked as the superuser
        named, made = _canaries_named_and_made(tmp_path / "r")
        with psycopg.connect(f"host={info.state_dir / 'run'} port={info.ports.postgres} dbname=votriz "
                             "user=postgres", connect_timeout=10) as conn:
            ids = [account["user_id"] for account in made if account["user_id"] is not None]
            present = {row[0] for row in conn.execute("SELECT id FROM users WHERE id = ANY(%s)", (ids,))}
    ran = [line.split(" ", 1) for line in op_log.read_text().splitlines()]
    frozen_at = (next(float(t) for t, argv in ran if "rotate-jwt-secret" in argv) if during else
                 json.loads(events.read_text().splitlines()[0])["t"])
    # Then nothing FAILed: the system broke no promise, its database was down
    assert "FAIL" not in {outcome for outcome, _ in run.results.values()}, run.results
    assert run.returncode == EXIT_ERROR, run.output[-3000:]
    # And the first rotation, on the healthy service, was judged as usual
    assert run.outcome("keys.db_password_rotation") == "PASS", run.results["keys.db_password_rotation"]
    # And the JWT rotation is ERROR naming the database: not run, or its failures explained
    jwt = run.message("keys.jwt_rotation")
    assert run.outcome("keys.jwt_rotation") == "ERROR"
    assert jwt.startswith("The database was unavailable right after the JWT rotation (" if during
                          else NOT_RUN), jwt
    # (the reason names the database and the policy's deadline it missed)
    assert "the database did not complete the connection (the policy's 5 s" in jwt, jwt
    # And every later rotation was not run, refused by the outage seen (without asking again)
    for check in ROTATION_CHECKS[2:]:
        outcome, message = run.results[check]
        assert (outcome, message.startswith(NOT_RUN)) == ("ERROR", True), (check, outcome, message)
        recorded = json.loads(next((tmp_path / "r" / "evidence" / check).glob("*rotation.json")).read_text())
        assert recorded["command"]["started"] is False, (check, recorded)
        assert run.durations[check] < 5, (check, run.durations[check])
    # And the operation log shows no rotation started after the outage: the database password's
    # before it, the JWT secret's as it began (when frozen during it), nothing else
    started = [argv.split(" -m system_under_test.ops ")[1].split()[0] for _, argv in ran]
    assert started == (["rotate-db-password", "rotate-jwt-secret"] if during else ["rotate-db-password"])
    assert all(float(t) <= frozen_at for t, _ in ran), (ran, frozen_at)
    # And no canary is left unreported: each account of the run's ledger is gone from the database
    # (asked as the superuser once PostgreSQL answers again) or named in a harness.cleanup ERROR
    assert made and all(account["account"] in named for account in made
                        if account["user_id"] in present or account["state"] in ("created", "signup sent")), \
        (made, named, present)
    assert users_after - users_before <= len(named), (users_before, users_after, named)
    if during:
        # the JWT rotation's canary (its login after the rotation failed) is one of them, by address
        jwt = [message for message in named.values() if "made by keys.jwt_rotation" in message]
        assert len(jwt) == 1 and re.fullmatch(
            r"the canary account canary\+keys-[0-9a-f]+@audit\.invalid \(keys, made by keys\.jwt_rotation "
            r"at .+ UTC, created\) could not be removed: .+; delete it by hand", jwt[0]), jwt
        assert users_after == users_before + 1
    else:
        assert named == {} and users_after == users_before
    # And the run ended in bounded time
    assert run.seconds < 300, run.seconds


def _canaries_named_and_made(report: Path) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The accounts named by harness.cleanup ERRORs (account -> message), and the run's ledger."""
    results = json.loads((report / "results.json").read_text())["results"]
    named = {r["finding_id"].split("/", 1)[1]: r["message"] for r in results
             if r["check_id"] == "harness.cleanup" and r["outcome"] == "ERROR"}
    ledger = report / "evidence" / "harness.cleanup" / "ledger.json"
    made = json.loads(ledger.read_text())["accounts"] if ledger.exists() else []
    return named, made
