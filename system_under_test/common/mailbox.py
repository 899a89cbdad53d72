"""The auditor's mailbox in the reference: a real IMAP server (Debian's Dovecot).

In production the canary's recovery mail reaches a mailbox the audit team
controls, read over IMAP with TLS. In the reference the fake Resend delivers
each mail it is asked to send into this Dovecot over LMTP (a unix socket),
and the harness reads it over IMAPS exactly as it would a real provider's.

Dovecot runs without root (its "rootless" mode) as the stack's service user,
everything under ``MAIL``: configuration, the one user ``audit`` (a salted
SHA-512 password; the harness's copy is ``STATE/secrets/mailbox-password``,
0600), its Maildir, runtime sockets and its own log (``MAIL/dovecot.log``,
not among the service's logs: the mailbox is the auditor's, not the
service's). Plus addressing (``audit+tag@…``) delivers to ``audit``; mail for
any other user is refused at LMTP's RCPT. The TLS certificate is the fakes'
(``fakes.votriz.test`` and 127.0.0.1, from the stack's CA); plaintext IMAP is off.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from system_under_test.common.host import write_secret

USER = "audit"
ADDRESS = f"{USER}@mail.votriz.test"
FOLDER = "INBOX"
#: Dovecot's IMAPS port inside the fakes container (any port: it runs without root).
CONTAINER_PORT = 9993


@dataclass(frozen=True)
class MailboxLayout:
    """Where the mailbox's files are, as Dovecot sees them (``base``) and on the host (``host``).

    Attributes:
        host: ``STATE/mail`` on the host.
        base: the same directory as Dovecot sees it (``host`` itself for the local backend,
            its mount point in the fakes container for Docker).
    """

    host: Path
    base: Path

    @property
    def config(self) -> Path:
        """``MAIL/dovecot.conf`` on the host."""
        return self.host / "dovecot.conf"

    @property
    def lmtp_socket(self) -> Path:
        """Dovecot's LMTP socket, as Dovecot and the fakes see it."""
        return self.base / "run" / "lmtp"

    @property
    def log_file(self) -> Path:
        """Dovecot's log on the host."""
        return self.host / "dovecot.log"


def _ssha512(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "{SSHA512}" + base64.b64encode(digest + salt).decode("ascii")


def render_config(layout: MailboxLayout, *, user: str, group: str, listen: str, port: int,
                  cert: Path, key: Path) -> str:
    """The text of ``dovecot.conf`` (every path as Dovecot sees it)."""
    base = layout.base
    return f"""# Written by system_under_test.common.mailbox: the auditor's mailbox of the reference.
protocols = imap lmtp
instance_name = votriz-mailbox
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
listen = {listen}
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain
auth_username_format = %Ln
recipient_delimiter = +
lmtp_save_to_detail_mailbox = no
passdb {{
  driver = passwd-file
  args = scheme=SSHA512 username_format=%Ln {base}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%Ln {base}/users
  default_fields = uid={user} gid={group} home={base}/home/%Ln
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
}}
service anvil {{
  chroot =
}}
"""


def prepare(layout: MailboxLayout, password_file: Path, *, uid: int, gid: int, user: str, group: str,
            listen: str, port: int, cert: Path, key: Path, copy_tls_from: tuple[Path, Path] | None = None
            ) -> None:
    """Write the mailbox's files under ``layout.host``, owned by ``uid:gid``, and the harness's
    copy of the password to ``password_file`` (0600).

    ``copy_tls_from`` (certificate, key) copies them into the mailbox directory first (the
    local backend, whose Dovecot runs as a user that cannot read the stack's own key);
    ``cert`` and ``key`` then name the copies.
    """
    host = layout.host
    for name in ("", "run", "state", "home"):
        (host / name).mkdir(mode=0o700, exist_ok=True)
    if copy_tls_from is not None:
        shutil.copyfile(copy_tls_from[0], host / "tls.pem")
        write_secret(host / "tls.key", copy_tls_from[1].read_text(encoding="ascii").strip())
    password = secrets.token_urlsafe(24)
    write_secret(password_file, password)
    write_secret(host / "users", f"{USER}:{_ssha512(password)}::::::")
    layout.config.write_text(render_config(layout, user=user, group=group, listen=listen, port=port,
                                           cert=cert, key=key), encoding="utf-8")
    for path in [host, *host.rglob("*")]:
        os.lchown(path, uid, gid)


def profile_section(*, host: str, port: int, password_file: Path, trust_anchor: Path,
                    server_name: str | None = None) -> dict[str, object]:
    """The target profile's ``[mailbox]`` for this mailbox."""
    section: dict[str, object] = {"host": host, "port": port, "user": USER,
                                  "password": {"file": str(password_file)}, "folder": FOLDER,
                                  "address": ADDRESS, "trust_anchor": str(trust_anchor)}
    if server_name is not None:
        section["server_name"] = server_name
    return section
