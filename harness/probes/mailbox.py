"""A real mailbox over IMAP with TLS: where the canary's mails arrive (profile ``[mailbox]``).

A team that audits its production receives the canary's mails the way it
receives any mail: at an address it controls. The canary signs up as
``LOCAL+canary-<runid>@DOMAIN`` (:meth:`harness.profile.Mailbox.plus_address`),
so its mails are told apart from every other mail by their recipient;
:meth:`MailboxClient.mails_to` lists them, :meth:`MailboxClient.delete_mails_to`
removes them once read.

Every call is one IMAP session (connect, TLS verified against the profile's
trust anchor for ``server_name``, login, select, the command, logout) that
ends within the policy's ``timeouts.request_s`` as a whole: a server that
trickles its answers is cut at the deadline (:func:`harness.deadline.watchdog`
shuts the socket down), and the error says so in one line.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import imaplib
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any, TypeVar

from harness.deadline import Deadline, shutdown_socket, watchdog
from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes.trust_store import trust_anchor_pem
from harness.profile import Mailbox, ProfileError, TargetProfile

#: At most this many bytes of one mail are fetched (a recovery mail is a few hundred).
MAIL_BYTES = 256 * 1024
#: At most this many mails to one address are read in one call (the newest ones).
MAILS_READ = 50
_T = TypeVar("_T")


class _Imap(imaplib.IMAP4_SSL):
    """IMAP4_SSL that connects to ``address`` but verifies the certificate for ``server_name``
    (like ``curl --resolve``), and says which socket it opened, so the deadline can end it."""

    def __init__(self, address: str, port: int, server_name: str, context: ssl.SSLContext,
                 deadline: Deadline, connect_s: float, opened: Callable[[socket.socket], None]) -> None:
        self._server_name = server_name
        self._context = context
        self._opened = opened
        self._left: Callable[[], float] = lambda: max(deadline.remaining(), 0.01)
        timeout = deadline.clamp(connect_s)
        super().__init__(address, port, ssl_context=context, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        raw = socket.create_connection((self.host, self.port), timeout)
        self._opened(raw)
        # From here on every wait (the TLS handshake, each answer) may take what is left of
        # the exchange's deadline, and the watchdog ends the exchange at it.
        raw.settimeout(self._left())
        wrapped = self._context.wrap_socket(raw, server_hostname=self._server_name)
        # Wrapping detached ``raw``: the deadline must now end the wrapped socket (same descriptor).
        self._opened(wrapped)
        return wrapped


def _tls_context(box: Mailbox, profile: TargetProfile) -> ssl.SSLContext:
    """Certificate and host name verified, TLS 1.2 or newer, against the profile's trust anchor."""
    anchor = box.trust_anchor or profile.edge.trust_anchor
    # With an anchor, only it is trusted (read once with the safe reader); PROTOCOL_TLS_CLIENT
    # verifies the certificate and the host name.
    context = (ssl.create_default_context() if anchor is None
               else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if anchor is not None:
        context.load_verify_locations(cadata=trust_anchor_pem(anchor))
    return context


def _text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    try:
        content = body.get_content()
    except (LookupError, ValueError):
        return ""
    return content if isinstance(content, str) else ""


def _recipients(message: EmailMessage) -> set[str]:
    fields = [str(value) for name in ("to", "cc", "delivered-to") for value in message.get_all(name, [])]
    return {address.lower() for _, address in getaddresses(fields) if address}


class MailboxClient:
    """The profile's ``[mailbox]``, read over IMAPS, one session a call.

    Raises (every method):
        ProbeError: the profile has no ``[mailbox]``, or the server cannot be reached,
            refuses TLS, the certificate, the login or the folder, or does not finish
            within the policy's ``timeouts.request_s``; one line, never the password.
    """

    def __init__(self, profile: TargetProfile, policy: Policy) -> None:
        if profile.mailbox is None:
            raise ProbeError("the profile has no [mailbox] section: cannot read the canary's mail")
        self._box = profile.mailbox
        self._profile = profile
        self._policy = policy
        self._peer = f"the mailbox {self._box.host}:{self._box.port}"

    @property
    def box(self) -> Mailbox:
        """The profile's ``[mailbox]`` section."""
        return self._box

    def reconnect(self) -> None:
        """Nothing is kept open between calls (each is one IMAP session)."""

    def close(self) -> None:
        """Nothing is kept open between calls (each is one IMAP session)."""

    def mails_to(self, address: str) -> list[dict[str, Any]]:
        """The mails in the folder addressed to exactly ``address``, oldest first (at most
        the :data:`MAILS_READ` newest), each ``{"uid", "to", "subject", "text"}``."""
        wanted = address.lower()

        def read(imap: imaplib.IMAP4_SSL) -> list[dict[str, Any]]:
            mails = []
            for uid in self._uids_to(imap, wanted)[-MAILS_READ:]:
                status, data = imap.uid("FETCH", uid, f"(BODY.PEEK[]<0.{MAIL_BYTES}>)")
                raw = next((part[1] for part in data if isinstance(part, tuple)), None)
                if status != "OK" or not isinstance(raw, bytes):
                    continue  # Expunged in between by someone else: not there any more.
                message = email.message_from_bytes(raw, policy=email.policy.default)
                assert isinstance(message, EmailMessage)
                # SEARCH TO matches a substring: keep only mails to this very address.
                if wanted in _recipients(message):
                    mails.append({"uid": int(uid), "to": wanted, "subject": str(message.get("subject", "")),
                                  "text": _text_of(message)})
            return mails

        return self._session(read, "read the mails to the canary")

    def delete_mails_to(self, address: str) -> int:
        """Delete (flag and expunge) every mail to ``address``; how many there were."""
        wanted = address.lower()

        def delete(imap: imaplib.IMAP4_SSL) -> int:
            uids = self._uids_to(imap, wanted)
            if not uids:
                return 0
            joined = ",".join(uids)
            self._ok(imap.uid("STORE", joined, "+FLAGS.SILENT", r"(\Deleted)"), "flag the mails deleted")
            if "UIDPLUS" in imap.capabilities:
                self._ok(imap.uid("EXPUNGE", joined), "expunge the mails")
            else:
                self._ok(imap.expunge(), "expunge the mails")
            return len(uids)

        return self._session(delete, "delete the mails to the canary")

    def _uids_to(self, imap: imaplib.IMAP4_SSL, address: str) -> list[str]:
        quoted = '"' + address.replace("\\", "\\\\").replace('"', '\\"') + '"'
        data = self._ok(imap.uid("SEARCH", "TO", quoted), "search the folder")
        words = b" ".join(part for part in data if isinstance(part, bytes)).split()
        return [word.decode("ascii") for word in words if re.fullmatch(rb"[0-9]+", word)]

    def _ok(self, answer: tuple[str, list[Any]], doing: str) -> list[Any]:
        status, data = answer
        if status != "OK":
            raise ProbeError(f"{self._peer}: could not {doing}: {status} {_said(data)}")
        return data

    def _session(self, work: Callable[[imaplib.IMAP4_SSL], _T], doing: str) -> _T:
        deadline = Deadline(self._policy.timeouts.request_s, "timeouts.request_s")
        opened: list[socket.socket] = []

        def cut() -> None:
            for sock in opened:
                if sock.fileno() >= 0:
                    shutdown_socket(sock.fileno())

        with watchdog(deadline, cut) as watch:
            try:
                with self._logged_in(deadline, opened.append) as imap:
                    return work(imap)
            except ProbeError:
                raise
            except (OSError, imaplib.IMAP4.error, EOFError, ValueError) as exc:
                # A wait cut by the deadline (the watchdog, or a timeout that was what was left).
                if watch.fired or deadline.remaining() < 0.1:
                    raise ProbeError(f"{self._peer} did not let the audit {doing} within "
                                     f"{deadline.limit()}") from None
                raise ProbeError(f"{self._peer}: could not {doing}: {_reason(exc)}") from None

    @contextmanager
    def _logged_in(self, deadline: Deadline,
                   opened: Callable[[socket.socket], None]) -> Iterator[imaplib.IMAP4_SSL]:
        box = self._box
        try:
            password = box.password.read("mailbox.password")
        except ProfileError as exc:
            raise ProbeError(str(exc)) from None
        context = _tls_context(box, self._profile)
        imap = _Imap(box.host, box.port, box.server_name or box.host, context, deadline,
                     self._policy.timeouts.connect_s, opened)
        try:
            try:
                imap.login(box.user, password)
            except imaplib.IMAP4.error as exc:
                if isinstance(exc, imaplib.IMAP4.abort):
                    raise  # The connection broke (or the deadline cut it): not a refusal.
                raise ProbeError(f"{self._peer} refused the login of {box.user!r}: {_reason(exc)}") from None
            status, data = imap.select(_quoted_folder(box.folder))
            if status != "OK":
                raise ProbeError(f"{self._peer}: no folder {box.folder!r} to select ({_said(data)})")
            yield imap
        finally:
            # The answers are in hand; a server that drops the logout changes nothing.
            with contextlib.suppress(OSError, imaplib.IMAP4.error, EOFError):
                imap.logout()


def _quoted_folder(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(data: list[Any]) -> str:
    text = " ".join(part.decode("utf-8", "replace") if isinstance(part, bytes) else str(part)
                    for part in data if part is not None)
    return text[:200] or "no reason given"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its certificate was refused ({exc.verify_message})"
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
