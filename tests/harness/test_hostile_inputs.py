"""Issue 16: hostile files and half-failed runs. Each measured defect, reproduced so it cannot come back.

Every input the user names (profile, policy, waivers, secret files, signing key,
``verify``'s manifest and signature) is made a FIFO, a device, a symbolic link to
``/dev/zero``, a directory or a huge file: the command line refuses it in one line
with exit 3 (``verify``: names it, exit 1), and never hangs. A secret file that is
a symbolic link or readable by others is refused before a byte reaches a (fake,
hostile) PostgreSQL server; a two-line secret file sends its first line only. A run
whose bundle could not be written or signed never exits 0, and the report is private.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from harness.cli import EXIT_INCOMPLETE, EXIT_USAGE, main
from harness.safe_files import Cap

REPO = Path(__file__).resolve().parents[2]
# Nothing here may hang: a regression fails at the marker's limit, not at the suite's.
pytestmark = pytest.mark.timeout(60)

# --- hostile files ------------------------------------------------------------------------------

Maker = Callable[[Path], Path]


def _fifo(tmp: Path) -> Path:
    path = tmp / "fifo"
    os.mkfifo(path)
    return path


def _dev_zero_link(tmp: Path) -> Path:
    path = tmp / "zero-link"
    path.symlink_to("/dev/zero")
    return path


def _directory(tmp: Path) -> Path:
    path = tmp / "a-directory"
    path.mkdir()
    return path


def _huge(tmp: Path) -> Path:
    path = tmp / "huge"
    with path.open("wb") as handle:
        handle.truncate(Cap.MANIFEST + 1)  # sparse: larger than any cap, costs no disk
    return path


HOSTILE: dict[str, tuple[Maker, str]] = {
    "fifo": (_fifo, "it is a FIFO, not a regular file"),
    "dev-zero": (lambda tmp: Path("/dev/zero"), "it is a character device, not a regular file"),
    "symlink-to-dev-zero": (_dev_zero_link, "it is a character device, not a regular file"),
    "directory": (_directory, "it is a directory, not a regular file"),
    "huge": (_huge, "more than the"),
}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _profile(tmp: Path, extra: str = "", port: int | None = None) -> Path:
    port = port or _closed_port()
    path = tmp / "target.toml"
    path.write_text(f'name = "hostile"\n[edge]\nhost = "votriz.test"\naddress = "127.0.0.1"\n'
                    f"https_port = {port}\nhttp_port = {port}\n{extra}")
    return path


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("option", ["--target", "--policy", "--waivers", "--signing-key"])
def test_a_hostile_input_file_is_one_line_and_exit_3(option: str, kind: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # Given a FIFO, a device, a link to /dev/zero, a directory or a huge file as one input
    make, reason = HOSTILE[kind]
    hostile = make(tmp_path)
    argv = ["run", "--report-dir", str(tmp_path / "r"), option, str(hostile)]
    if option != "--target":
        argv += ["--target", str(_profile(tmp_path))]
    # When the audit is started
    code, err = _cli(argv, capsys)
    # Then it is refused at once, naming the file and why, and nothing was run
    assert code == EXIT_USAGE, err
    assert str(hostile) in err and reason in err, err
    assert not (tmp_path / "r" / "results.json").exists()


# --- a hostile PostgreSQL server: what reaches it ------------------------------------------------


class FakePostgres:
    """A PostgreSQL server on loopback that asks for a cleartext password and records every byte."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.received = bytearray()
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    self._session(conn)

    def _message(self, conn: socket.socket, typed: bool) -> bytes:
        header = self._exactly(conn, 5 if typed else 4)
        length = struct.unpack("!I", header[-4:])[0]
        return header + self._exactly(conn, length - 4)

    def _exactly(self, conn: socket.socket, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = conn.recv(count - len(data))
            if not chunk:
                raise OSError("closed")
            data += chunk
            self.received += chunk
        return data

    def _session(self, conn: socket.socket) -> None:
        while True:
            startup = self._message(conn, typed=False)
            code = struct.unpack("!I", startup[4:8])[0]
            if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not offered
                conn.sendall(b"N")
                continue
            break
        conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
        self._message(conn, typed=True)
        body = b"SFATAL\0C28P01\0Mpassword authentication failed\0\0"
        conn.sendall(b"E" + struct.pack("!I", len(body) + 4) + body)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=5)


@pytest.fixture
def fake_postgres() -> Iterator[FakePostgres]:
    server = FakePostgres()
    try:
        yield server
    finally:
        server.close()


SECRET = "hostile-test-password-5e1f"


def _database_profile(tmp: Path, server: FakePostgres, password_file: Path) -> Path:
    return _profile(tmp, f'[database]\ndsn = "host=127.0.0.1 port={server.port} dbname=votriz '
                         f'user=votriz_auditor sslmode=disable"\n'
                         f'password = {{ file = "{password_file}" }}\n')


def _secret_file(tmp: Path, content: str, mode: int = 0o600) -> Path:
    path = tmp / "real-password"
    path.write_text(content)
    path.chmod(mode)
    return path


def test_a_symlinked_password_file_is_refused_and_nothing_is_sent(
        tmp_path: Path, fake_postgres: FakePostgres, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a password file that is a symbolic link (to a 0600 file: /etc/shadow in the measurement)
    link = tmp_path / "password"
    link.symlink_to(_secret_file(tmp_path, SECRET + "\nsecond line\n"))
    profile = _database_profile(tmp_path, fake_postgres, link)
    # When the at-rest checks are started against the fake server
    code, err = _cli(["run", "--target", str(profile), "--only", "at_rest",
                      "--report-dir", str(tmp_path / "r")], capsys)
    # Then the run is refused before any check, and the server received nothing at all
    assert code == EXIT_USAGE
    assert f"database.password.file: {link}" in err and "symbolic link" in err
    assert fake_postgres.connections == 0 and fake_postgres.received == b""
    assert SECRET not in err


@pytest.mark.parametrize(("mode", "shown"), [(0o644, "0644"), (0o660, "0660")])
def test_a_password_file_others_may_read_is_refused(tmp_path: Path, fake_postgres: FakePostgres,
                                                    capsys: pytest.CaptureFixture[str],
                                                    mode: int, shown: str) -> None:
    secret = _secret_file(tmp_path, SECRET + "\n", mode)
    code, err = _cli(["run", "--target", str(_database_profile(tmp_path, fake_postgres, secret)),
                      "--report-dir", str(tmp_path / "r")], capsys)
    assert code == EXIT_USAGE
    assert f"its mode is {shown}: group or others may read it (chmod 600 {secret})" in err
    assert fake_postgres.received == b"" and SECRET not in err


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory", "huge"])
def test_a_hostile_password_file_is_refused_without_waiting(kind: str, tmp_path: Path,
                                                            fake_postgres: FakePostgres,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # (A FIFO password file made each database check wait for the 360 s backstop.)
    make, reason = HOSTILE[kind]
    hostile = make(tmp_path)
    if kind == "huge":
        hostile.chmod(0o600)  # private, so that its size is what is refused
    code, err = _cli(["run", "--target", str(_database_profile(tmp_path, fake_postgres, hostile)),
                      "--report-dir", str(tmp_path / "r")], capsys)
    assert code == EXIT_USAGE and reason in err
    assert fake_postgres.received == b""


def test_a_two_line_password_file_sends_its_first_line_only(tmp_path: Path,
                                                           fake_postgres: FakePostgres) -> None:
    from harness.outcomes import ProbeError
    from harness.policy import load_policy
    from harness.probes.database import database_server
    from harness.profile import load_profile
    from harness.redaction import KnownSecrets

    # Given a 0600 password file of two lines
    secret = _secret_file(tmp_path, SECRET + "\nthe second line is no part of the password\n")
    profile = load_profile(_database_profile(tmp_path, fake_postgres, secret))
    # When the database probe logs in to the server that asks for a cleartext password
    with pytest.raises(ProbeError, match="password authentication failed"):
        database_server(profile, load_policy(), KnownSecrets())
    # Then the password message holds the first line, and nothing of the second
    password_message = b"p" + struct.pack("!I", 4 + len(SECRET) + 1) + SECRET.encode() + b"\0"
    assert password_message in fake_postgres.received
    assert b"second line" not in fake_postgres.received


@pytest.mark.parametrize(("line", "key"), [
    ('trust_anchor = "{tmp}/absent-ca.pem"', "edge.trust_anchor"),
    ('[database]\ndsn = "host=127.0.0.1 dbname=v user=a"\npassword = {{ file = "{tmp}/absent" }}',
     "database.password.file"),
    ('[hsm]\nmodule = "{tmp}/absent.so"\ntoken_label = "t"\npin = {{ prompt = true }}', "hsm.module"),
    ('[attestations]\nKEYS-HSM = "{tmp}/absent.txt"', "attestations.KEYS-HSM"),
])
def test_a_missing_file_the_profile_names_is_refused_up_front(tmp_path: Path, line: str, key: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # (A missing trust anchor or password file made the checks ERROR and the run exit 2.)
    extra = line.format(tmp=tmp_path)
    if key == "edge.trust_anchor":
        profile = tmp_path / "target.toml"
        profile.write_text(f'name = "x"\n[edge]\nhost = "votriz.test"\n{extra}\n')
    else:
        profile = _profile(tmp_path, extra + "\n")
    code, err = _cli(["run", "--target", str(profile), "--report-dir", str(tmp_path / "r")], capsys)
    assert code == EXIT_USAGE
    assert f"{profile}: {key}: " in err and "No such file or directory" in err
    assert not (tmp_path / "r" / "results.json").exists()


def test_a_trust_anchor_without_a_certificate_is_refused(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    profile = tmp_path / "target.toml"
    profile.write_text(f'name = "x"\n[edge]\nhost = "votriz.test"\ntrust_anchor = "{tmp_path}/ca.pem"\n')
    code, err = _cli(["run", "--target", str(profile), "--report-dir", str(tmp_path / "r")], capsys)
    assert code == EXIT_USAGE and "holds no PEM certificate" in err


# --- policy and waivers ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "message"), [
    ("inf", "Input should be a finite number"),
    ("nan", "Input should be a finite number"),
    ("1e300", "Input should be less than or equal to 86400"),
])
def test_an_unbounded_policy_number_is_one_line_and_exit_3(tmp_path: Path, value: str, message: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    # (timeouts.command_s = 1e300 or inf passed, then pytest printed an INTERNALERROR, exit 2.)
    policy = tmp_path / "policy.toml"
    policy.write_text(f'name = "p"\nversion = "1"\n[timeouts]\ncommand_s = {value}\nrun_s = 86400\n')
    code, err = _cli(["run", "--target", str(_profile(tmp_path)), "--policy", str(policy),
                      "--report-dir", str(tmp_path / "r")], capsys)
    assert code == EXIT_USAGE
    assert err.strip() == (f"votriz-audit: {policy}: timeouts.command_s: {message} (allowed: a finite "
                           "number > 0 and <= 86400)")


WAIVER = ('[[waiver]]\ncheck = "transit.hsts"\njustification = "{justification}"\n'
          'approved_by = "{approver}"\nexpires = {expires}\n')
SOON = dt.date.today() + dt.timedelta(days=30)


@pytest.mark.parametrize(("fields", "message"), [
    ({"justification": " " * 10}, "waiver[0].justification: Value error, is blank"),
    ({"approver": " "}, "waiver[0].approved_by: Value error, is blank"),
    ({"expires": SOON + dt.timedelta(days=3650)}, "waiver[0].expires: "),
])
def test_a_blank_or_endless_waiver_is_refused(tmp_path: Path, fields: dict[str, object], message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # (A justification of ten spaces and an approver of one space were accepted.)
    values: dict[str, object] = {"justification": "Accepted until the edge migration, SEC-42",
                                 "approver": "CISO", "expires": SOON, **fields}
    waivers = tmp_path / "waivers.toml"
    waivers.write_text(WAIVER.format(**values))
    code, err = _cli(["run", "--target", str(_profile(tmp_path)), "--waivers", str(waivers),
                      "--report-dir", str(tmp_path / "r")], capsys)
    assert code == EXIT_USAGE and message in err


# --- the signing key: checked before anything runs --------------------------------------------------


def _rsa_key(tmp: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp / "rsa.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


@pytest.mark.parametrize(("make", "message"), [
    (_rsa_key, "the signing key must be Ed25519 or ECDSA P-256, not RSAPrivateKey"),
    (lambda tmp: tmp / "absent.pem", "cannot read the signing key: No such file or directory"),
])
def test_an_unusable_signing_key_stops_the_run_before_any_check(
        tmp_path: Path, make: Maker, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    # (The key was read only after the whole audit: "evidence bundle not signed", exit 0.)
    # Given an edge that listens, so that a check that ran would have connected to it
    with socket.create_server(("127.0.0.1", 0)) as edge:
        edge.settimeout(0.5)
        profile = _profile(tmp_path, port=int(edge.getsockname()[1]))
        # When the run is started with an RSA key, or a key that does not exist
        code, err = _cli(["run", "--target", str(profile), "--only", "transit",
                          "--signing-key", str(make(tmp_path)), "--report-dir", str(tmp_path / "r")],
                         capsys)
        # Then it exits 3 naming the key, and no check touched the edge
        assert code == EXIT_USAGE and message in err
        with pytest.raises(TimeoutError):
            edge.accept()
    assert not (tmp_path / "r").exists()


# --- verify's inputs ---------------------------------------------------------------------------------


def _signed_bundle(tmp: Path) -> tuple[Path, list[str]]:
    """A signed bundle of one file, and the names of the files signing added (the seal)."""
    from harness.report.bundle import sign_bundle

    bundle = tmp / "bundle"
    bundle.mkdir()
    (bundle / "results.txt").write_text("evidence\n")
    sign_bundle(bundle)
    return bundle, sorted(path.name for path in bundle.iterdir() if path.name != "results.txt")


@pytest.mark.parametrize("kind", ["fifo", "symlink-to-dev-zero", "huge", "directory"])
def test_verify_survives_every_seal_file_made_hostile(tmp_path: Path, kind: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # (A FIFO manifest or signature hung verify; a link to /dev/zero ended in a traceback.)
    bundle, seal_files = _signed_bundle(tmp_path)
    assert seal_files
    make, _ = HOSTILE[kind]
    linked = make(tmp_path) if kind in ("symlink-to-dev-zero", "huge") else None
    for name in seal_files:
        # Given a bundle whose seal file NAME is a FIFO, a device, a huge file or a directory
        target = bundle / name
        original = target.read_bytes()
        target.unlink()
        if kind == "fifo":
            os.mkfifo(target)
        elif kind == "directory":
            target.mkdir()
        else:
            assert linked is not None
            target.symlink_to(linked)
        # When it is verified (in-process: a blocking read would trip the timeout marker)
        code = main(["verify", str(bundle)])
        out, err = capsys.readouterr()
        # Then verify ends, not verified, without a traceback
        assert code != 0, (name, out)
        assert "Traceback" not in out + err, (name, err)
        if target.is_dir() and not target.is_symlink():
            target.rmdir()
        else:
            target.unlink()
        target.write_bytes(original)


# --- a run whose bundle is incomplete; the report's privacy ---------------------------------------

DISK_FULL = """
import errno, sys
from pathlib import Path
import harness.report.html as html

def write_report(report_dir, **kwargs):
    # The disk fills after 4,096 bytes of report.html, as measured.
    (Path(report_dir) / "report.html").write_bytes(b"<!doctype html>" + b" " * 4081)
    raise OSError(errno.ENOSPC, "No space left on device")

html.write_report = write_report  # before anything imports it by name
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run_child(argv: list[str], script: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", script, *argv] if script else [sys.executable, "-m", "harness", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=150, cwd=REPO)


def test_a_disk_full_report_never_exits_0(tmp_path: Path) -> None:
    # Given a report directory whose disk fills while report.html is written
    report = tmp_path / "r"
    # When a run completes its checks (an unreachable edge: the gate alone would say 2)
    proc = _run_child(["run", "--target", str(_profile(tmp_path)), "--only", "transit",
                       "--report-dir", str(report)], DISK_FULL)
    # Then it exits 5 with one line saying what is missing and what the gate said
    assert proc.returncode == EXIT_INCOMPLETE, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "evidence bundle incomplete" in line]
    assert len(lines) == 1, proc.stderr
    assert "report not rendered (OSError: [Errno 28] No space left on device)" in lines[0]
    assert "the bundle is not signed" in lines[0] and "(the gate said exit 2: gate ERROR" in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
    # Nothing was sealed: the report directory holds the results and the truncated report only
    assert (report / "report.html").stat().st_size == 4096
    assert (report / "results.json").is_file() and not list(report.glob("*.sig")) \
        and not list(report.glob("*intoto*")) and not (report / "manifest.json").exists()


def test_the_report_directory_is_private(tmp_path: Path) -> None:
    # Given an ordinary run (an unreachable edge)
    report = tmp_path / "r"
    proc = _run_child(["run", "--target", str(_profile(tmp_path)), "--only", "transit",
                       "--report-dir", str(report)])
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    # Then the directory is 0700 and every file in it 0600, the signed bundle included
    assert stat.S_IMODE(report.stat().st_mode) == 0o700
    modes = {path.relative_to(report).as_posix(): stat.S_IMODE(path.stat().st_mode)
             for path in report.rglob("*")}
    assert {"report.html", "results.json", "junit.xml"} <= set(modes) and len(modes) > 5
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o700 if (report / name).is_dir() else 0o600)}
    assert wrong == {}


# --- files the profile names that the probes read: pid files, SOFTHSM2_CONF -----------------------


def _local_profile(pid_file: Path):  # type: ignore[no-untyped-def]
    from harness.profile import TargetProfile

    return TargetProfile.model_validate({
        "name": "hostile-pid", "backend": "local",
        "edge": {"host": "votriz.test", "address": "127.0.0.1", "https_port": _closed_port()},
        "local": {"processes": [{"name": "api", "pid_file": pid_file}]}})


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("make", "reason"), [
    (_fifo, "the pid file was not read: it is a FIFO, not a regular file"),
    (_directory, "the pid file was not read: it is a directory, not a regular file"),
    (_dev_zero_link, "the pid file was not read: it is a character device, not a regular file"),
    (lambda tmp: (tmp / "empty.pid", (tmp / "empty.pid").write_text(""))[0], "holds no pid (it is empty)"),
    (lambda tmp: (tmp / "blank.pid", (tmp / "blank.pid").write_text(" \n\n"))[0], "holds no pid (it is empty)"),
    (lambda tmp: (tmp / "word.pid", (tmp / "word.pid").write_text("nginx\n"))[0],
     "holds no pid (its first word is not a process id)"),
])
def test_a_hostile_pid_file_is_one_probe_error_naming_it(make: Maker, reason: str, tmp_path: Path) -> None:
    from harness.outcomes import ProbeError
    from harness.policy import load_policy
    from harness.probes.listeners import survey_origin

    # Given a profile whose process's pid file is a FIFO (a read would block), a device, a
    # directory, empty or garbled
    pid_file = make(tmp_path)
    # When the listeners of the profile's processes are surveyed
    with pytest.raises(ProbeError) as raised:
        survey_origin(_local_profile(pid_file), load_policy())
    # Then it is one line naming the process, the file and why (an ERROR of the check), at once
    message = str(raised.value)
    assert message.startswith("process api: ") and str(pid_file) in message and message.endswith(reason), \
        message
    assert "\n" not in message


@pytest.mark.timeout(30)
def test_a_fifo_softhsm2_conf_is_one_probe_error_naming_it(tmp_path: Path) -> None:
    from harness import profile as profiles
    from harness.outcomes import ProbeError
    from harness.probes import hsm as hsm_probe
    from harness.redaction import KnownSecrets

    # Given an [hsm] whose SOFTHSM2_CONF (read by SoftHSM when loaded, and by the checks for its
    # token directory) is a FIFO without a writer
    fifo = _fifo(tmp_path)
    hsm = profiles.Hsm.model_validate({
        "module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "votriz",
        "pin": {"file": str(_secret_file(tmp_path, "1234-pin-of-the-test\n"))},
        "env": {"SOFTHSM2_CONF": str(fifo)}})
    expected = (f"HSM: hsm.env SOFTHSM2_CONF: {fifo}: the SoftHSM configuration was not read: "
                "it is a FIFO, not a regular file")
    # When the token directory is looked up, and the token listed
    with pytest.raises(ProbeError) as token_dir:
        hsm_probe.softhsm_token_dir(hsm)
    with pytest.raises(ProbeError) as listing:
        hsm_probe.list_objects(hsm, KnownSecrets(), timeout_s=20)
    # Then each is one line naming the file and why, well before the listing's deadline
    assert str(token_dir.value) == expected
    assert str(listing.value) == expected
