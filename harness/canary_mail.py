"""Where the canary's mails are read, and what its recovery mail holds.

The place is chosen in this order:

- ``[capture]``: the reference's fakes, which keep every mail they were asked
  to send (:class:`MailCapture`); the address is ``canary+<runid>@audit.invalid``.
  Only a harness-controlled stack has it, and there it sees each mail at once;
- ``[mailbox]``: a real mailbox over IMAP with TLS (:mod:`harness.probes.mailbox`),
  as a team auditing its production receives mail; the canary's address is
  then ``LOCAL+canary-<runid>@DOMAIN`` of that mailbox, and each mail is
  deleted once read (the reference's profile names one too: without its
  ``[capture]`` it is read as production's would be);
- neither: the canary is still made through the API (its password, TOTP
  secret, backup codes and OAuth tokens need no mail), without a recovery mail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes.capture import CaptureClient
from harness.probes.mailbox import MailboxClient
from harness.profile import TargetProfile

CANARY_DOMAIN = "audit.invalid"


class CanaryMailReader(Protocol):
    """What the canary needs of a place its mails arrive in."""

    def mails_to(self, address: str) -> list[dict[str, Any]]:
        """Every mail to ``address``, oldest first, each with ``subject`` and ``text``."""
        ...

    def reconnect(self) -> None:
        """Carry on with fresh connections."""
        ...

    def close(self) -> None:
        """Release what is held open."""
        ...


@runtime_checkable
class DeletesMail(Protocol):
    """A reader whose mails are the team's (a real mailbox): read, they are removed."""

    def delete_mails_to(self, address: str) -> int:
        """Remove the mails to ``address``; how many were removed."""
        ...


def mail_place(mail: CanaryMailReader) -> str:
    """Where the reader's mails are, in words: ``the mailbox`` or ``the capture``."""
    return "the mailbox" if isinstance(mail, MailboxClient) else "the capture"


@dataclass(frozen=True)
class RecoveryMail:
    """The recovery mail the service sent to the canary.

    Attributes:
        subject: its subject.
        link_host: scheme and host of the recovery link (no query: it holds the token).
        token: the token from the link (a secret); None if the mail holds no link.
        mails_seen: how many mails to the canary the mailbox (or the capture) held.
    """

    subject: str
    link_host: str
    token: str | None = field(repr=False)
    mails_seen: int


class MailCapture(CaptureClient):
    """The fakes' capture API at the profile's ``[capture]`` URL, for the canary's mails
    (:meth:`~harness.probes.capture.CaptureClient.mails_to`).

    Raises:
        ProbeError: the profile has no ``[capture]`` section.
    """

    def __init__(self, profile: TargetProfile, policy: Policy) -> None:
        if profile.capture is None:
            raise ProbeError("the profile has no [capture] section: cannot read the recovery mail")
        super().__init__(profile.capture, profile, policy)


def canary_mail_reader(profile: TargetProfile, policy: Policy) -> CanaryMailReader | None:
    """The fakes' capture, else the profile's mailbox, else None (no mail can be read)."""
    if profile.capture is not None:
        return MailCapture(profile, policy)
    if profile.mailbox is not None:
        return MailboxClient(profile, policy)
    return None


def canary_address(profile: TargetProfile, run_id: str) -> str:
    """The canary's address for a run (lower case: services lower-case addresses): one that
    reaches the profile's mailbox when its mail is read there (:func:`canary_mail_reader`),
    else one under a reserved TLD (RFC 6761), from which no mail can ever leave."""
    if profile.capture is None and profile.mailbox is not None:
        return profile.mailbox.plus_address(f"canary-{run_id}")
    return f"canary+{run_id.lower()}@{CANARY_DOMAIN}"


def recovery_mail_unavailable(profile: TargetProfile) -> str | None:
    """Why the canary's recovery mail cannot be read through this profile, or None."""
    if profile.mailbox is None and profile.capture is None:
        return ("the profile names no [mailbox] (an IMAP mailbox the canary's mail reaches) to "
                "read the canary's recovery mail from")
    return None


def recovery_token_from_mail(text: str) -> tuple[str, str | None]:
    """(scheme://host of the first link with a ``token`` parameter, that token)."""
    for word in text.split():
        if "://" not in word:
            continue
        parts = urlsplit(word.strip("<>()\"'"))
        tokens = parse_qs(parts.query).get("token")
        if tokens:
            return f"{parts.scheme}://{parts.netloc}", tokens[0]
    return "", None
