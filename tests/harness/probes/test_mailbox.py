"""The IMAP mailbox probe against a real Dovecot (the reference's mailbox, started here), mail
delivered by the fake Resend's own LMTP code; a silent and a trickling server for the deadline."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.outcomes import ProbeError
from harness.policy import Policy, TimeoutsPolicy, load_policy
from harness.probes.mailbox import MailboxClient
from harness.profile import SecretSource, TargetProfile
from system_under_test.common import mailbox
from system_under_test.common.pki import FAKES_HOST, build_pki
from system_under_test.fakes.app import deliver_by_lmtp
from system_under_test.local.processes import free_port, service_user, stop_process, sweep
from system_under_test.local.stack import spawn_mailbox, wait_for_mailbox

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Dovecot:
    """A running mailbox: its state directory, IMAPS port and the profile that reads it."""

    state_dir: Path
    port: int
    profile: TargetProfile

    @property
    def lmtp(self) -> Path:
        return self.state_dir / "mail" / "run" / "lmtp"

    def with_box(self, **changes: object) -> TargetProfile:
        assert self.profile.mailbox is not None
        return self.profile.model_copy(update={"mailbox": self.profile.mailbox.model_copy(update=changes)})


#: Dovecot delays its answer to a failed login by 2 s (auth_failure_delay): room for that.
PATIENT = load_policy().model_copy(update={"timeouts": TimeoutsPolicy(connect_s=2.0, request_s=8.0)})


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    # Under /tmp, not pytest's 0700 directory: Dovecot runs as the service user and must reach it.
    state = Path(tempfile.mkdtemp(prefix="votriz-mailbox-", dir="/tmp"))
    state.chmod(0o711)
    for name in ("run", "secrets"):
        (state / name).mkdir(mode=0o755 if name == "run" else 0o700)
    pki = build_pki(state / "pki")
    port = free_port()
    pid = spawn_mailbox(state, port, pki, service_user())
    try:
        wait_for_mailbox(state, port, pid)
        profile = TargetProfile.model_validate({
            "name": "t", "edge": {"host": "votriz.test", "trust_anchor": str(pki.ca_cert)},
            "mailbox": mailbox.profile_section(host="127.0.0.1", port=port, server_name=FAKES_HOST,
                                               password_file=state / "secrets" / "mailbox-password",
                                               trust_anchor=pki.ca_cert)})
        yield Dovecot(state, port, profile)
    finally:
        stop_process(pid, state)
        # Whatever still works inside the directory (a Dovecot child) is ours to stop.
        sweep(state)
        shutil.rmtree(state)


def test_the_canary_reads_only_its_own_mails_then_deletes_them(dovecot: Dovecot, fast_policy: Policy) -> None:
    # Given mails delivered by the fake Resend's LMTP code: two to this run's canary, one to another
    mine, other = mailbox.ADDRESS.replace("@", "+canary-run1@"), mailbox.ADDRESS.replace("@", "+canary-run11@")
    for to, text in ((mine, "first https://votriz.test/r?token=t1"), (other, "not mine"),
                     (mine, "second https://votriz.test/r?token=t2")):
        assert deliver_by_lmtp(dovecot.lmtp, "noreply@votriz.test", to, "Recover", text) == ""
    # And a recipient the mailbox does not hold is refused at RCPT, in one line
    assert deliver_by_lmtp(dovecot.lmtp, "a@b", "someone@audit.invalid", "x", "y").startswith(
        "550 5.1.1 <someone@audit.invalid> User doesn't exist")
    client = MailboxClient(dovecot.profile, fast_policy)
    # When the canary's mails are read (SEARCH TO matches a substring: run11 contains run1)
    mails = client.mails_to(mine.upper())
    # Then only its own two, oldest first, with subject and text
    assert [(m["subject"], m["text"].split()[0]) for m in mails] == [("Recover", "first"), ("Recover", "second")]
    # And deleting them leaves the other run's mail alone
    assert client.delete_mails_to(mine) == 2
    assert client.mails_to(mine) == []
    assert [m["text"].strip() for m in client.mails_to(other)] == ["not mine"]
    assert client.delete_mails_to(other) == 1


def test_a_wrong_password_is_one_line_without_it(dovecot: Dovecot, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password-4711\n")
    wrong.chmod(0o600)
    profile = dovecot.with_box(password=SecretSource(file=wrong))
    with pytest.raises(ProbeError) as raised:
        MailboxClient(profile, PATIENT).mails_to(mailbox.ADDRESS)
    message = str(raised.value)
    assert message.startswith(f"the mailbox 127.0.0.1:{dovecot.port} refused the login of 'audit': ")
    assert "not-the-password-4711" not in message and "\n" not in message


def test_a_password_file_others_can_read_is_refused(dovecot: Dovecot, fast_policy: Policy, tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.write_text("whatever\n")
    loose.chmod(0o644)
    profile = dovecot.with_box(password=SecretSource(file=loose))
    with pytest.raises(ProbeError, match=r"^mailbox.password: cannot read .*loose"):
        MailboxClient(profile, fast_policy).mails_to(mailbox.ADDRESS)


def test_a_certificate_from_another_ca_or_for_another_name_is_refused(dovecot: Dovecot, fast_policy: Policy,
                                                                      tmp_path: Path) -> None:
    other = build_pki(tmp_path / "other")
    for changes in ({"trust_anchor": other.ca_cert}, {"server_name": "imap.elsewhere.test"}):
        with pytest.raises(ProbeError, match=r"its certificate was refused"):
            MailboxClient(dovecot.with_box(**changes), fast_policy).mails_to(mailbox.ADDRESS)


def test_a_folder_that_does_not_exist_is_named(dovecot: Dovecot) -> None:
    with pytest.raises(ProbeError, match=r"no folder 'Audit/Nowhere' to select"):
        MailboxClient(dovecot.with_box(folder="Audit/Nowhere"), PATIENT).mails_to(mailbox.ADDRESS)


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "trickling"])
def test_a_server_that_never_finishes_is_cut_at_the_deadline(dovecot: Dovecot, fast_policy: Policy,
                                                             trickle: bool) -> None:
    # Given a server that accepts and then says nothing, or completes TLS (with the mailbox's
    # own certificate) and sends its greeting one byte every 0.2 s for ever
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(dovecot.state_dir / "pki" / "fakes.pem", dovecot.state_dir / "pki" / "fakes.key")

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            peer = tls.wrap_socket(connection, server_side=True) if trickle else connection
            while not stop.wait(0.2):
                if trickle:
                    peer.sendall(b"*")
        except OSError:
            return
        finally:
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    profile = dovecot.with_box(port=listener.getsockname()[1])
    started = time.monotonic()
    try:
        # When the mailbox is read
        with pytest.raises(ProbeError) as raised:
            MailboxClient(profile, fast_policy).mails_to(mailbox.ADDRESS)
    finally:
        stop.set()
        listener.close()
    # Then the whole exchange ends by the policy's deadline (2 s), in one line that says so
    assert time.monotonic() - started < 4.0
    assert "within the policy's 2 s (timeouts.request_s)" in str(raised.value)


def test_without_a_mailbox_section_the_client_says_so(fast_policy: Policy) -> None:
    bare = TargetProfile.model_validate({"name": "t", "edge": {"host": "votriz.test"}})
    with pytest.raises(ProbeError, match=r"no \[mailbox\] section"):
        MailboxClient(bare, fast_policy)


def test_the_mailbox_files_are_the_service_users_and_the_password_copy_is_0600(dovecot: Dovecot) -> None:
    user = service_user()
    for path in (dovecot.state_dir / "mail" / "users", dovecot.state_dir / "mail" / "tls.key"):
        info = path.stat()
        assert (info.st_uid, info.st_mode & 0o777) == (user.uid, 0o600)
    assert (dovecot.state_dir / "secrets" / "mailbox-password").stat().st_mode & 0o777 == 0o600
    # The user file holds a salted hash, never the password itself
    password = (dovecot.state_dir / "secrets" / "mailbox-password").read_text().strip()
    assert password not in (dovecot.state_dir / "mail" / "users").read_text()
    assert "{SSHA512}" in (dovecot.state_dir / "mail" / "users").read_text()
    assert os.path.isdir(dovecot.state_dir / "mail" / "home")
