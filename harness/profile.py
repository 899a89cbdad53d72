"""Target profiles: where the audited system is and how the harness may touch it.

A profile is a TOML file. ``votriz-audit up`` writes one for the reference
service; security teams write their own for a real deployment. It never holds
a secret inline: passwords and PINs come from files (or a prompt) that it names.

Every validation error is reported as one precise line naming the file and the
key path, e.g. ``target.toml: edge.https_port: Input should be a valid integer``.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from harness.probes.containers import ContainerSelector
from harness.safe_files import FileRefused, read_secret_line
from harness.tomlfile import load_toml_model, parse_toml_model

PROFILE_SCHEMA_VERSION = 1


class ProfileError(Exception):
    """The profile (or a file it names) is missing, malformed or inconsistent."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretSource(_Strict):
    """Where a secret comes from. Exactly one of ``file`` or ``prompt``.

    Attributes:
        file: a file holding the secret: its first line, whitespace stripped. It must be a
            regular file named directly (a symbolic link is not followed) that only its
            owner can read (mode 0600 or stricter), as ssh demands of private keys.
        prompt: ask on the terminal (never echoed); for interactive runs only. Asked once:
            the answer is held in memory for the run (never written), and every later read
            returns it.
    """

    file: Path | None = None
    prompt: bool = False
    _answer: str | None = PrivateAttr(default=None)

    def model_post_init(self, __context: object) -> None:
        if (self.file is None) == (not self.prompt):
            raise ValueError("give exactly one of 'file' or 'prompt = true'")

    def read(self, what: str, *, ask: Callable[[str], str] = getpass.getpass) -> str:
        """Return the secret; ProfileError with the path and the reason if it cannot be read
        or is refused (:func:`harness.safe_files.read_secret_line`), never with its content."""
        if self.file is not None:
            try:
                return read_secret_line(self.file, what)
            except FileRefused as exc:
                raise ProfileError(f"{what}: cannot read {self.file}: {exc.reason}") from None
        # The command line asks before the first check; each probe that reads the secret later
        # gets the same answer instead of a prompt of its own.
        if self._answer is None:
            self._answer = ask(f"{what}: ")
        return self._answer

    @property
    def answered(self) -> bool:
        """A prompted secret that has been asked for (and is held in memory)."""
        return self._answer is not None


# How a profile says the edge serves no plain HTTP: ``http_port = "none"``.
NO_HTTP_PORT = "none"


class Edge(_Strict):
    """The TLS edge in front of the service.

    Attributes:
        host: the public host name (SNI, certificate name, Host header).
        address: the IP address to connect to (defaults to resolving ``host``).
        https_port: TLS port of the edge.
        http_port: plaintext port that must only redirect. Its refusing connections shows that
            nothing serves plain HTTP only when it is port 80, where browsers go (another port that
            turns connections away is ERROR: the profile is to be checked). None when the profile says the
            edge serves no plain HTTP, written ``http_port = "none"`` in TOML (which has no
            null); ``transit.http_redirect_only`` then still looks at port 80, since the
            profile's word is not an observation.
        trust_anchor: PEM file of the CA the certificate must chain to; None
            means the system trust store.
        sample_paths: paths fetched to check headers on every response.
    """

    host: str
    address: str | None = None
    https_port: int = Field(443, ge=1, le=65535)
    http_port: int | None = Field(80, ge=1, le=65535)
    trust_anchor: Path | None = None
    sample_paths: tuple[str, ...] = ("/", "/healthz", "/api/v1/brands", "/does-not-exist")

    @field_validator("http_port", mode="before")
    @classmethod
    def _port_or_none(cls, value: object) -> object:
        # TOML has no null, so "none" is how a profile says the edge has no plaintext port.
        # Any other word (and a boolean, which pydantic would take for 0 or 1) is refused
        # rather than read as a port.
        if value == NO_HTTP_PORT:
            return None
        if isinstance(value, bool) or (isinstance(value, str) and not value.strip().isdigit()):
            raise ValueError(f'give a port number (1-65535), or "{NO_HTTP_PORT}" when the edge '
                             "serves no plain HTTP")
        return value

    @property
    def connect_address(self) -> str:
        return self.address or self.host

    @property
    def base_url(self) -> str:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{self.host}{port}"


class Api(_Strict):
    """The public API behind the edge, driven with canary accounts.

    Attributes:
        base_path: prefix of the JSON API (e.g. ``/api/v1``).
        canaries: whether the harness may create canary accounts and data
            through the API (tagged, removed at the end).
    """

    base_path: str = "/api/v1"
    canaries: bool = True


class Database(_Strict):
    """A read-only auditor connection to the service's PostgreSQL.

    Attributes:
        dsn: libpq connection string without a password.
        password: where the auditor role's password comes from.
        allow_write_role: accept a role that can write the service's tables.
        app_role: the application's own role (whose password rotation is checked);
            None means the key-classes default (``votriz_app``).
    """

    dsn: str
    password: SecretSource | None = None
    allow_write_role: bool = False
    app_role: str | None = None

    @field_validator("dsn")
    @classmethod
    def _no_inline_password(cls, value: str) -> str:
        lowered = value.lower()
        if "password=" in lowered or ("://" in value and "@" in value.split("://", 1)[1]
                                      and ":" in value.split("://", 1)[1].split("@", 1)[0]):
            raise ValueError("the DSN must not hold a password; use database.password.file")
        return value


class Hsm(_Strict):
    """The PKCS#11 token that holds the keys.

    Attributes:
        module: path of the PKCS#11 module (.so).
        token_label: label of the token.
        pin: where the user PIN comes from.
        env: environment the module needs (e.g. SOFTHSM2_CONF, P11_KIT_SERVER_ADDRESS);
            paths and addresses only, never secrets.
        key_namespace: prefix every key label of the service starts with.
    """

    module: Path
    token_label: str
    pin: SecretSource
    env: dict[str, str] = Field(default_factory=dict)
    key_namespace: str = "votriz/"


class Redis(_Strict):
    """The service's Redis (for the plaintext sweep).

    Attributes:
        host: address of Redis.
        port: its port.
        password_hsm_label: label of the HSM object holding its password.
        password: alternatively, a file holding its password.
    """

    host: str = "127.0.0.1"
    port: int = Field(6379, ge=1, le=65535)
    password_hsm_label: str | None = None
    password: SecretSource | None = None


class Capture(_Strict):
    """HTTPS fakes of the third-party services, under the harness's control.

    Attributes:
        url: base URL of the fakes' capture API (lists requests and mails received).
        server_name: the name its certificate is verified for (and sent as SNI)
            when ``url`` names an address, like ``curl --resolve``; None: the
            URL's own host.
        plaintext_port: port of the fakes' plaintext decoy listener.
    """

    url: str
    server_name: str | None = None
    plaintext_port: int | None = None

    @property
    def request_extensions(self) -> dict[str, str]:
        """httpx request extensions: httpcore verifies the certificate for the SNI name given."""
        return {"sni_hostname": self.server_name} if self.server_name else {}


class Mailbox(_Strict):
    """A mailbox the audit team controls, read over IMAP with TLS (for the canary's mails).

    The canary signs up as ``LOCAL+canary-<runid>@DOMAIN`` for ``address =
    "LOCAL@DOMAIN"``: the mail server must deliver plus-addressed mail to the
    mailbox itself (Dovecot's and Postfix's ``recipient_delimiter``, Gmail and
    Microsoft 365 do), so that each run's mails are told apart by their
    recipient, which the service sets, and never by a subject, which it words.

    Attributes:
        host: the IMAP server's host name or address.
        port: its IMAPS port (TLS from the first byte; STARTTLS is not offered).
        server_name: the name its certificate is verified for (and sent as SNI)
            when ``host`` is an address; None: ``host`` itself.
        user: the IMAP login.
        password: where its password comes from (a 0600 file, or a prompt).
        folder: the folder the mails arrive in.
        address: the mailbox's address, ``LOCAL@DOMAIN`` (no ``+`` in LOCAL).
        trust_anchor: PEM file of the CA its certificate must chain to; None: the
            edge's trust anchor, or the system trust store when that is None too.
    """

    host: str = Field(min_length=1)
    port: int = Field(993, ge=1, le=65535)
    server_name: str | None = None
    user: str = Field(min_length=1)
    password: SecretSource
    folder: str = Field("INBOX", min_length=1)
    address: str
    trust_anchor: Path | None = None

    @field_validator("address")
    @classmethod
    def _plain_address(cls, value: str) -> str:
        local, _, domain = value.partition("@")
        if not local or not domain or "+" in local or any(c.isspace() or c in "<>\"'@"
                                                           for c in domain + local):
            raise ValueError("give the mailbox's own address, LOCAL@DOMAIN, without '+' or spaces")
        return value.lower()

    def plus_address(self, tag: str) -> str:
        """``LOCAL+TAG@DOMAIN``: an address that reaches this mailbox, tagged."""
        local, _, domain = self.address.partition("@")
        return f"{local}+{tag.lower()}@{domain}"


class Process(_Strict):
    """A process of the service, found through its pid file (local backend).

    Attributes:
        name: a short name (``api``, ``postgres`` ...).
        pid_file: file holding its pid.
        include_children: also inspect its children (gunicorn workers).
    """

    name: str
    pid_file: Path
    include_children: bool = True


class Local(_Strict):
    """How to inspect a service running as local processes.

    Attributes:
        processes: the service's processes.
        log_dir: directory of the service's logs.
    """

    processes: tuple[Process, ...] = ()
    log_dir: Path | None = None


class Docker(_Strict):
    """How to inspect a service running as Docker containers.

    Which containers are the service is given by exactly one selector:
    ``compose_project`` (a Compose deployment), ``labels`` (any labels), or the
    deprecated ``project``.

    Attributes:
        compose_project: the Compose project's name: every container labelled
            ``com.docker.compose.project=NAME`` (one-off ``run`` containers included).
        labels: a label selector: every container carrying all of these labels,
            each with exactly that value.
        votriz_project: written ``project`` in the profile; deprecated: the value of
            the harness's own ``votriz.project`` label, which only containers
            ``votriz-audit up`` made before the reference carried Compose labels have.
        edge_container: name of the only container allowed to publish ports.
        log_dir: host directory of the log files the containers write to bind
            mounts (their standard output is read from the engine regardless).
        finished_services: services (Compose service names, else container names) that
            run to completion, such as a migration: exited with code 0, they are not down.
            Every other selected container must be running, or the checks that read
            containers are ERROR.
    """

    compose_project: str | None = Field(None, min_length=1, max_length=256)
    labels: dict[str, str] | None = None
    votriz_project: str | None = Field(None, alias="project", min_length=1, max_length=256)
    edge_container: str | None = None
    log_dir: Path | None = None
    finished_services: tuple[Annotated[str, Field(min_length=1, max_length=256)], ...] = Field(
        (), max_length=64)

    @model_validator(mode="after")
    def _one_selector(self) -> Docker:
        given = [name for name, value in (("compose_project", self.compose_project), ("labels", self.labels),
                                          ("project", self.votriz_project)) if value is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'compose_project', 'labels' or (deprecated) 'project'"
                             + (f", not {' and '.join(given)}" if given else ""))
        # A selector the engine cannot take is refused as the profile loads, not mid-run.
        _ = self.project
        return self

    @property
    def project(self) -> ContainerSelector:
        """The selector every query to the engine uses (containers, logs, layers, listeners, topology)."""
        if self.compose_project is not None:
            selector = ContainerSelector.compose_project(self.compose_project)
        elif self.labels is not None:
            selector = ContainerSelector.of(self.labels)
        else:
            assert self.votriz_project is not None  # the validator demands one of the three
            selector = ContainerSelector.votriz_project(self.votriz_project)
        return dataclasses.replace(selector, finished=self.finished_services)


class Scan(_Strict):
    """Files searched for keys that must live only in the HSM.

    Attributes:
        source_paths: source trees of the service.
        config_paths: configuration files and directories.
    """

    source_paths: tuple[Path, ...] = ()
    config_paths: tuple[Path, ...] = ()


class Operations(_Strict):
    """Commands that act on the service, and whether the harness may run them.

    Each command is an argv list run without a shell. A missing command makes
    the checks that need it MANUAL, with what to do by hand.

    Attributes:
        allow_destructive: permit rotations, restarts and drills against this target.
        rotate_token_key: re-encrypt every channel row under a new key.
        rotate_jwt_secret: replace the JWT signing secret.
        rotate_db_password: rotate the database password (applied by restart).
        rotate_redis_password: rotate the Redis password (applied by restart).
        backup: take one encrypted backup.
        prune_backups: apply the retention policy.
        restore_drill: restore the newest backup into a scratch database and check it.
        backup_dir: where backups are kept.
        drill_log: the restore drill log.
        timeout_s: upper bound for any one command.
    """

    allow_destructive: bool = False
    rotate_token_key: tuple[str, ...] | None = None
    rotate_jwt_secret: tuple[str, ...] | None = None
    rotate_db_password: tuple[str, ...] | None = None
    rotate_redis_password: tuple[str, ...] | None = None
    backup: tuple[str, ...] | None = None
    prune_backups: tuple[str, ...] | None = None
    restore_drill: tuple[str, ...] | None = None
    backup_dir: Path | None = None
    drill_log: Path | None = None
    timeout_s: float = Field(300.0, gt=0)


class TargetProfile(_Strict):
    """Everything the harness needs to know to audit one deployment.

    Attributes:
        schema_version: version of this file format.
        name: a short name for reports.
        backend: how the service runs: local processes, Docker containers, or
            a remote deployment the harness can only reach over the network.
        edge, api, database, hsm, redis, capture, mailbox, local, docker, scan, operations:
            the sections above; any may be absent, and the checks that need an
            absent section report NOT_APPLICABLE or MANUAL accordingly.
        attestations: claim id -> file holding a human attestation.
    """

    schema_version: Literal[1] = 1
    name: str
    backend: Literal["local", "docker", "remote"] = "remote"
    edge: Edge
    api: Api | None = None
    database: Database | None = None
    hsm: Hsm | None = None
    redis: Redis | None = None
    capture: Capture | None = None
    mailbox: Mailbox | None = None
    local: Local | None = None
    docker: Docker | None = None
    scan: Scan = Scan()
    operations: Operations = Operations()
    attestations: dict[str, Path] = Field(default_factory=dict)

    @property
    def log_dir(self) -> Path | None:
        """The service's log directory on this host (``local.log_dir`` or ``docker.log_dir``)."""
        for section in (self.local, self.docker):
            if section is not None and section.log_dir is not None:
                return section.log_dir
        return None


def parse_profile(text: str, *, source: str = "<profile>", base_dir: Path | None = None) -> TargetProfile:
    """Parse and validate a profile from TOML text.

    Raises:
        ProfileError: with one line per problem, each naming the key path.
    """
    profile = parse_toml_model(text, TargetProfile, source=source, error=ProfileError)
    if base_dir is not None:
        profile = _anchor_paths(profile, base_dir)
    return profile


def _anchor_paths(profile: TargetProfile, base_dir: Path) -> TargetProfile:
    """Make relative paths relative to the profile's folder, not the current directory."""

    def fix(value: object) -> object:
        if isinstance(value, Path) and not value.is_absolute():
            return base_dir / value
        if isinstance(value, BaseModel):
            updates = {name: fix(getattr(value, name)) for name in type(value).model_fields}
            return value.model_copy(update=updates)
        if isinstance(value, tuple):
            return tuple(fix(item) for item in value)
        if isinstance(value, dict):
            return {key: fix(item) for key, item in value.items()}
        return value

    fixed = fix(profile)
    assert isinstance(fixed, TargetProfile)
    return fixed


def load_profile(path: Path) -> TargetProfile:
    """Read and validate the profile at ``path``.

    Raises:
        ProfileError: the file cannot be read or does not validate.
    """
    profile = load_toml_model(path, TargetProfile, what="profile", error=ProfileError)
    return _anchor_paths(profile, path.parent.resolve())


def hsm_environment(hsm: Hsm) -> dict[str, str]:
    """The process environment a PKCS#11 module needs, merged over ours."""
    env = dict(os.environ)
    env.update(hsm.env)
    return env
