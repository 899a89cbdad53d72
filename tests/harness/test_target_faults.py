"""Faults of the AUDITED system: each ends as ERROR with a precise reason, never as PASS.

Every test runs ``python -m harness run --target COPY --only AREA`` in a child
process, as a release pipeline would, against a copy of a private stack's
profile with one thing broken (a wrong password, a closed port, a missing HSM
token, a mail capture that stays empty, an operator command that fails or
never ends) or against a tiny local server that answers too slowly. Each
asserts the outcome and its reason, that results.json and report.html are
still written, that the run ends within a bounded time, and that no
traceback reaches the output. The last test checks that a FAILED run leaves
no canary account behind in the database.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
import tomli_w
from audit_cli import CliRun, closed_port, run_cli, running_stack, send_body
from fake_votriz_api import CanaryOnlyApi

from harness.canaries import CanaryAccount
from harness.cli import EXIT_ERROR, EXIT_FAIL
from harness.key_classes import load_key_classes
from harness.outcomes import ProbeError
from harness.policy import load_policy
from harness.probes import channel_load
from harness.probes import rotation as keys_checks
from harness.probes.api import ApiResponse, VotrizApi
from harness.profile import parse_profile
from harness.redaction import KnownSecrets
from system_under_test.common import pki
from system_under_test.local.stack import StackInfo

# Every test but the one unit test below needs the reference service.
integration = pytest.mark.integration

# The fault that makes a check FAIL in the last test; it touches nothing the other tests judge.
FAILING_FAULT = "backup-codes-reusable"
# Small timeouts, so every fault below costs seconds, not the default minutes.
TIGHT_POLICY = """\
schema_version = 1
name = "target-faults"
version = "test"
[timeouts]
connect_s = 2.0
request_s = {request_s}
command_s = 30.0
run_s = 600.0
"""


# --- the private stack and profile copies ------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> Iterator[StackInfo]:
    """One private stack for the module, with a fault that only the last test judges."""
    with running_stack((FAILING_FAULT,)) as info:
        yield info


def profile_copy(info: StackInfo, where: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the stack's profile in ``where``, changed by ``edit``; the stack's own file is untouched."""
    data = tomllib.loads(info.profile_path.read_text())
    edit(data)
    where.mkdir(parents=True, exist_ok=True)
    path = where / "target.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def without_canaries_or_operations(data: dict[str, Any]) -> None:
    """Keep a run to the checks a fault is about: no canary account, no backups."""
    data["api"]["canaries"] = False
    data["operations"] = {"allow_destructive": False}


def policy_file(where: Path, request_s: float = 15.0) -> Path:
    path = where / "policy.toml"
    path.write_text(TIGHT_POLICY.format(request_s=request_s))
    return path


def run_audit(profile: Path, area: str, report: Path, policy: Path, *, limit_s: float = 150) -> CliRun:
    """Run one area against ``profile``; the report must be written and carry no traceback."""
    return run_cli(profile, report, policy, only=(area,), limit_s=limit_s)


def auditor_query(info: StackInfo, query: str) -> int:
    """One number from the stack's database, read as its auditor role (the password stays in memory)."""
    profile = tomllib.loads(info.profile_path.read_text())["database"]
    password = Path(profile["password"]["file"]).read_text().strip()
    with psycopg.connect(profile["dsn"], password=password, connect_timeout=5) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def user_count(info: StackInfo) -> int:
    return auditor_query(info, "SELECT count(*) FROM users")


# --- 1, 2: the database ------------------------------------------------------------------------


def assert_database_checks_error(run: CliRun, *phrases: str, within_s: float) -> None:
    """The run could not verify: every check that needs the database is ERROR with each of
    ``phrases`` in its message, nothing else PASSed, and the run ended within ``within_s``."""
    assert run.returncode == EXIT_ERROR, run.output[-3000:]
    for check in ("at_rest.postgres_version", "at_rest.tokens_fernet", "at_rest.password_hashes",
                  "at_rest.data_inventory"):
        assert run.outcome(check) == "ERROR", (check, run.results[check])
        for phrase in phrases:
            assert phrase in run.message(check), (check, run.results[check])
    # at_rest.tokens_library reads the API's processes, not the database: the one check that may PASS.
    assert {check for check, (outcome, _) in run.results.items() if outcome == "PASS"} <= {"at_rest.tokens_library"}
    assert run.seconds < within_s


@integration
def test_wrong_auditor_password_is_an_error_naming_authentication(stack: StackInfo, tmp_path: Path) -> None:
    # Given a profile copy whose auditor password file holds a wrong password
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-auditor-password-" + secrets.token_hex(8) + "\n")
    wrong.chmod(0o600)

    def edit(data: dict[str, Any]) -> None:
        without_canaries_or_operations(data)
        data["database"]["password"]["file"] = str(wrong)

    # When the at-rest checks run
    run = run_audit(profile_copy(stack, tmp_path / "p", edit), "at_rest", tmp_path / "r",
                    policy_file(tmp_path))
    # Then every check that needs the database could not verify, and says authentication failed
    assert_database_checks_error(run, "password authentication failed", within_s=90)


@integration
def test_unreachable_database_is_an_error_quickly(stack: StackInfo, tmp_path: Path) -> None:
    # Given a profile copy whose DSN names a closed port
    port = closed_port()

    def edit(data: dict[str, Any]) -> None:
        without_canaries_or_operations(data)
        data["database"]["dsn"] = re.sub(r"port=\d+", f"port={port}", data["database"]["dsn"])

    # When the at-rest checks run
    run = run_audit(profile_copy(stack, tmp_path / "p", edit), "at_rest", tmp_path / "r",
                    policy_file(tmp_path))
    # Then the database checks are ERROR naming the refused connection, and quickly so
    assert_database_checks_error(run, "cannot connect to the database", f"port {port} failed: Connection refused",
                                 within_s=60)


# --- 3: the HSM ---------------------------------------------------------------------------------


def _wrong_pin(data: dict[str, Any], where: Path) -> None:
    pin = where / "pin"
    pin.write_text("000000\n")
    pin.chmod(0o600)  # a secret file others may read is refused before the audit starts
    data["hsm"]["pin"].update(file=str(pin))


HSM_FAULTS: dict[str, tuple[Callable[[dict[str, Any], Path], None], str]] = {
    "PIN wrong": (
        _wrong_pin,
        "HSM: the PIN was refused by token 'votriz' (PIN from {where}/pin)"),
    "token missing": (
        lambda data, where: data["hsm"].update(token_label="no-such-token"),
        "HSM: no token labelled 'no-such-token' in"),
}


@integration
@pytest.mark.parametrize("fault", list(HSM_FAULTS))
def test_hsm_faults_are_errors_with_the_precise_reason(stack: StackInfo, tmp_path: Path, fault: str) -> None:
    # Given a profile copy with the HSM fault, that may not rotate anything
    change, expected = HSM_FAULTS[fault]
    where = tmp_path / "p"
    where.mkdir()

    def edit(data: dict[str, Any]) -> None:
        data["operations"]["allow_destructive"] = False
        change(data, where)

    # When the key checks run
    run = run_audit(profile_copy(stack, where, edit), "keys", tmp_path / "r", policy_file(tmp_path))
    # Then every check that reads the HSM could not verify, and says exactly why
    assert run.returncode == EXIT_ERROR, run.output[-3000:]
    for check in ("keys.hsm_custody", "keys.no_key_elsewhere", "keys.read_at_start"):
        assert run.outcome(check) == "ERROR", (check, run.results[check])
        assert expected.format(where=where) in run.message(check), (check, run.results[check])
    # And nothing was rotated: the destructive checks name what to do by hand
    assert run.outcome("keys.token_key_rotation") == "MANUAL"
    assert "PASS" not in {outcome for outcome, _ in run.results.values()}
    assert run.seconds < 60


@integration
def test_a_missing_pkcs11_module_is_refused_before_any_check_runs(stack: StackInfo, tmp_path: Path) -> None:
    # Given a profile copy whose HSM module path names no file
    where = tmp_path / "p"
    where.mkdir()

    def edit(data: dict[str, Any]) -> None:
        data["hsm"].update(module=str(where / "no-such-pkcs11.so"))

    profile = profile_copy(stack, where, edit)
    # When the key checks are asked for
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--target", str(profile), "--only", "keys",
                           "--report-dir", str(tmp_path / "r")], capture_output=True, text=True, timeout=60)
    # Then the preflight refuses the profile with one line naming the key and the file (exit 3),
    # before anything touches the target: no check ran, no result was written
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"hsm.module: {where}/no-such-pkcs11.so: the PKCS#11 module was not read: No such file or directory" \
        in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "r" / "results.json").exists()


# --- 4: a slow API ------------------------------------------------------------------------------


def _certificates(where: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf for votriz.test signed by it, made as the reference service makes its own:
    (ca.pem, leaf.pem, leaf.key)."""
    ca_cert, ca_key = pki.create_ca(where)
    pki.issue_server_cert(where, "leaf", ca_cert=ca_cert, ca_key=ca_key, dns_names=["votriz.test"],
                          ip_addresses=[], lifetime=dt.timedelta(days=60))
    return where / "ca.pem", where / "leaf.pem", where / "leaf.key"


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request, but only after the server's delay (or when the server stops)."""

    server: _SlowTlsServer

    def do_GET(self) -> None:
        self.server.stopping.wait(self.server.delay_s)
        send_body(self, 200, b"slow\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _SlowTlsServer(http.server.ThreadingHTTPServer):
    """HTTPS on loopback; the TLS handshake happens in each connection's own thread."""

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext, delay_s: float) -> None:
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        self.context = context
        self.delay_s = delay_s
        self.stopping = threading.Event()

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a scanner's refused handshake
        try:
            super().finish_request(tls, client_address)
        except OSError:
            pass
        finally:
            tls.close()


@pytest.fixture
def slow_api(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS server for votriz.test that answers each request 30 s late: (port, CA file)."""
    ca, leaf, key = _certificates(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(leaf, key)
    server = _SlowTlsServer(context, delay_s=30.0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], ca
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@integration
def test_slow_api_is_an_error_within_bounded_time(slow_api: tuple[int, Path], tmp_path: Path) -> None:
    # Given an edge that completes TLS handshakes but answers every request later than
    # the policy's request timeout (2 s)
    port, ca = slow_api
    profile = tmp_path / "target.toml"
    profile.write_text(tomli_w.dumps({
        "name": "slow-api", "edge": {"host": "votriz.test", "address": "127.0.0.1", "https_port": port,
                                     "http_port": closed_port(), "trust_anchor": str(ca)}}))
    # When the in-transit checks run
    run = run_audit(profile, "transit", tmp_path / "r", policy_file(tmp_path, request_s=2.0))
    # Then the checks that need an answer could not verify, say it was too slow, and the run
    # ends long before the server would have answered all of them
    assert run.returncode == EXIT_ERROR, run.output[-3000:]
    for check in ("transit.hsts", "transit.security_headers"):
        assert run.outcome(check) == "ERROR", (check, run.results[check])
        assert "no answer within the policy's timeouts" in run.message(check), (check, run.results[check])
    assert run.seconds < 60


# --- 5: an empty mail capture -------------------------------------------------------------------


class _EmptyCapture(http.server.BaseHTTPRequestHandler):
    """The fakes' capture API, holding no mail at all."""

    def do_GET(self) -> None:
        send_body(self, 200 if self.path.startswith("/_capture/mail") else 404,
                  json.dumps({"mails": []}).encode(), "application/json")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def empty_capture() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EmptyCapture)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@integration
def test_mail_capture_receiving_nothing_makes_recovery_tokens_an_error(
        stack: StackInfo, empty_capture: str, tmp_path: Path) -> None:
    # Given a profile copy whose mail capture answers an empty list of mails
    def edit(data: dict[str, Any]) -> None:
        data["capture"]["url"] = empty_capture
        data["operations"] = {"allow_destructive": False}

    users_before = user_count(stack)
    # When the at-rest checks run (the canary is planted, but its recovery mail never shows up)
    run = run_audit(profile_copy(stack, tmp_path / "p", edit), "at_rest", tmp_path / "r",
                    policy_file(tmp_path))
    # Then the recovery-token check could not verify, and says no mail came
    assert run.outcome("at_rest.recovery_tokens") == "ERROR", run.results["at_rest.recovery_tokens"]
    assert "no recovery mail reached the capture" in run.message("at_rest.recovery_tokens")
    assert run.returncode == EXIT_ERROR, run.output[-3000:]
    assert run.seconds < 90
    # And the half-planted canary was removed again
    assert user_count(stack) == users_before


# --- 6: operator commands that fail or never end ------------------------------------------------


def _processes_with_argv(argv: list[str]) -> list[int]:
    wanted = ("\0".join(argv) + "\0").encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == wanted:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _unique_argument() -> str:
    """An argument no other process has, so that a command can be found by its argv."""
    return f"0.{secrets.randbelow(10**9):09d}"


@integration
@pytest.mark.parametrize(("argv", "operations", "named"), [
    (["false", _unique_argument()], {}, "backup exited 1"),
    (["sleep", "3600", _unique_argument()], {"timeout_s": 2.0}, "backup: did not finish within 2 s (killed)"),
], ids=["exits-1", "never-finishes"])
def test_failing_backup_command_is_an_error_naming_it(stack: StackInfo, tmp_path: Path, argv: list[str],
                                                      operations: dict[str, float], named: str) -> None:
    # Given a profile copy whose backup, prune and drill commands all exit 1, or all never
    # finish within the operations' timeout
    def edit(data: dict[str, Any]) -> None:
        data["api"]["canaries"] = False
        for name in ("backup", "prune_backups", "restore_drill"):
            data["operations"][name] = argv
        data["operations"].update(operations)

    # When the at-rest checks run
    run = run_audit(profile_copy(stack, tmp_path / "p", edit), "at_rest", tmp_path / "r",
                    policy_file(tmp_path))
    # Then the backup checks could not verify, and name the command and how it failed
    assert run.returncode == EXIT_ERROR, run.output[-3000:]
    for check in ("at_rest.backup_encrypted", "at_rest.backup_retention", "at_rest.restore_drill"):
        assert run.outcome(check) == "ERROR", (check, run.results[check])
        # (Retention takes a fresh backup to plant its aged copies beside: that fails first.)
        assert named in run.message(check), (check, run.results[check])
    assert run.seconds < 60
    # And no such command is left running
    assert _processes_with_argv(argv) == []


# --- 7: a FAILED run leaves no harness data behind ----------------------------------------------


@integration
def test_a_failed_run_leaves_no_canary_in_the_database(stack: StackInfo, tmp_path: Path) -> None:
    # Given the stack's fault that makes the backup-code check fail
    def edit(data: dict[str, Any]) -> None:
        data["operations"] = {"allow_destructive": False}

    users_before = user_count(stack)
    brands_before = auditor_query(stack, "SELECT count(*) FROM brands")
    # When the at-rest checks run with a canary account
    run = run_audit(profile_copy(stack, tmp_path / "p", edit), "at_rest", tmp_path / "r",
                    policy_file(tmp_path))
    # Then the run failed for the fault's check
    assert run.returncode == EXIT_FAIL, run.output[-3000:]
    assert run.outcome("at_rest.backup_codes") == "FAIL", run.results["at_rest.backup_codes"]
    # And the canary account, its brand and everything it planted are gone again
    assert user_count(stack) == users_before
    assert auditor_query(stack, "SELECT count(*) FROM brands") == brands_before
    assert os.path.exists(tmp_path / "r" / "results.json")


# --- a rotation command that cannot start leaves no canary behind (harness defect, fixed) ------


@integration
def test_rotation_command_that_cannot_start_is_an_error_and_leaves_no_canary(stack: StackInfo,
                                                                              tmp_path: Path) -> None:
    # Given a profile copy whose only rotation command does not exist
    missing = str(tmp_path / "no-such-rotate-jwt-secret")

    def edit(data: dict[str, Any]) -> None:
        data["operations"] = {"allow_destructive": True, "rotate_jwt_secret": [missing]}

    users_before = user_count(stack)
    # When the key checks run (the JWT check signs a canary up before it rotates)
    run = run_audit(profile_copy(stack, tmp_path / "p", edit), "keys", tmp_path / "r", policy_file(tmp_path))
    # Then the JWT rotation could not verify, naming the command, and its canary is gone again
    assert run.returncode == EXIT_ERROR, run.output[-3000:]
    assert run.outcome("keys.jwt_rotation") == "ERROR", run.results["keys.jwt_rotation"]
    assert f"cannot run {missing}: No such file or directory" in run.message("keys.jwt_rotation")
    assert user_count(stack) == users_before
    assert run.seconds < 60


class _FakeApi(CanaryOnlyApi):
    """Just enough of VotrizApi for observe_jwt_rotation: one account, deletable once."""

    instances: ClassVar[list[_FakeApi]] = []

    def expect(self, status: Any, method: str, path: str, json: Any = None, **kwargs: Any) -> ApiResponse:
        return self.request(method, path, json)

    create_brand = VotrizApi.create_brand
    delete_account = VotrizApi.delete_account


def test_jwt_rotation_removes_its_canary_when_the_command_cannot_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an API whose canary signs up, and a rotation command that cannot be started
    def fake_create_canary(api: _FakeApi, known: KnownSecrets, purpose: str) -> CanaryAccount:
        api.account_exists, api.token = True, "session-token-of-the-canary"
        return CanaryAccount(email="canary+transit-x@audit.invalid", password="pw-of-the-canary")

    def cannot_start(argv: Any, timeout_s: float, on_line: Any = None, **kwargs: Any) -> Any:
        raise ProbeError("cannot run /no/such/rotate: No such file or directory")

    _FakeApi.instances.clear()
    monkeypatch.setattr(keys_checks, "VotrizApi", _FakeApi)
    monkeypatch.setattr(keys_checks, "create_canary", fake_create_canary)
    monkeypatch.setattr(keys_checks, "run_operation", cannot_start)
    monkeypatch.setattr(keys_checks, "before_destructive", lambda *a, **k: keys_checks.HealthAround())
    profile = parse_profile('name = "t"\n[edge]\nhost = "votriz.test"\n[api]\n')
    # When the JWT rotation is observed
    with pytest.raises(ProbeError, match="cannot run /no/such/rotate"):
        keys_checks.observe_jwt_rotation(profile, load_policy(None), KnownSecrets(),
                                         load_key_classes(), ["/no/such/rotate"])
    # Then the canary account it made was deleted before the error went up
    assert [api.account_exists for api in _FakeApi.instances] == [False]


def test_rotation_canary_is_removed_when_its_brand_cannot_be_made(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an API whose canary signs up but whose POST /brands answers no id
    def fake_create_canary(api: _FakeApi, known: KnownSecrets, purpose: str) -> CanaryAccount:
        api.account_exists, api.token = True, "session-token-of-the-canary"
        return CanaryAccount(email="canary+transit-y@audit.invalid", password="pw-of-the-canary")

    _FakeApi.instances.clear()
    monkeypatch.setattr(channel_load, "VotrizApi", _FakeApi)
    monkeypatch.setattr(channel_load, "create_canary", fake_create_canary)
    profile = parse_profile('name = "t"\n[edge]\nhost = "votriz.test"\n[api]\n')
    # When the token-key rotation's canary is made
    with pytest.raises(ProbeError, match="POST /brands: the answer holds no id"):
        channel_load.RotationCanary(profile, load_policy(None), KnownSecrets())
    # Then the account it signed up was deleted before the error went up
    assert [api.account_exists for api in _FakeApi.instances] == [False]
