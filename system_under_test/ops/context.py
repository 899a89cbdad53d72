"""What every operator command starts from: the state directory, its config, HSM and database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pkcs11

from system_under_test.api.config import ApiConfig, load_config
from system_under_test.api.keyring import (
    DB_PASSWORD_LABEL,
    PIN_FILE_ENV,
    KeyRing,
    hsm_session,
    keyring_from_secrets,
    read_decrypt_only,
    read_pin,
    read_secrets,
)

if TYPE_CHECKING:
    import psycopg


class OpsError(RuntimeError):
    """An operator command failed; the message is the one line it prints."""


@dataclass(frozen=True)
class OpsContext:
    """One stack, as an operator command sees it.

    Attributes:
        state_dir: the stack's state directory.
        config: its ``api.toml``.
        pin_file: the HSM PIN file (``VOTRIZ_HSM_PIN_FILE`` or ``STATE/secrets/hsm-pin``).
    """

    state_dir: Path
    config: ApiConfig
    pin_file: Path

    @classmethod
    def open(cls, state_dir: str | Path) -> OpsContext:
        """Read ``STATE/api.toml`` and point the PKCS#11 module at ``STATE/softhsm2.conf``."""
        state = Path(state_dir).resolve()
        config_path = state / "api.toml"
        if not config_path.is_file():
            raise OpsError(f"{config_path} not found: is the stack up?")
        # A path, not a secret; the module reads it when first loaded.
        conf = state / "softhsm2.conf"
        if conf.is_file():
            os.environ["SOFTHSM2_CONF"] = str(conf)
        pin_file = Path(os.environ.get(PIN_FILE_ENV) or state / "secrets" / "hsm-pin")
        return cls(state, load_config(config_path), pin_file)

    def has_fault(self, name: str) -> bool:
        """Whether fault ``name`` is switched on in ``api.toml``."""
        return self.config.has_fault(name)

    @contextmanager
    def hsm(self, *, rw: bool = False) -> Iterator[pkcs11.Session]:
        """A logged-in HSM session; after a writing session, new object files get the owner
        of the token directory, so that API workers running as the service user can read them.
        """
        with hsm_session(self.config, read_pin(self.pin_file), rw=rw) as session:
            yield session
        if rw:
            self._give_token_files_to_owner()

    def _give_token_files_to_owner(self) -> None:
        token_dir = self.state_dir / "tokens"
        if os.geteuid() != 0 or not token_dir.is_dir():
            return
        owner = token_dir.stat()
        for path in token_dir.rglob("*"):
            info = path.lstat()
            if (info.st_uid, info.st_gid) != (owner.st_uid, owner.st_gid):
                os.lchown(path, owner.st_uid, owner.st_gid)

    def secrets(self) -> dict[str, bytes]:
        """Every secret on the token by label (read, then the session is closed)."""
        with self.hsm() as session:
            return read_secrets(session)

    def keyring(self) -> KeyRing:
        """The API's key ring, read now (staged decrypt-only token keys marked as such)."""
        with self.hsm() as session:
            values = read_secrets(session)
            decrypt_only = read_decrypt_only(session)
        return keyring_from_secrets(values, self.config, decrypt_only)

    def db_password(self) -> str:
        """The password of ``votriz_app`` as the HSM holds it now."""
        values = self.secrets()
        if DB_PASSWORD_LABEL not in values:
            raise OpsError(f"HSM object {DB_PASSWORD_LABEL!r} is missing")
        return values[DB_PASSWORD_LABEL].decode("ascii")

    def connect(self, *, dbname: str | None = None, password: str | None = None,
                autocommit: bool = True) -> psycopg.Connection:
        """A connection as ``votriz_app`` (to ``dbname`` if given instead of the configured one)."""
        import psycopg  # here: the commands that never connect do not import it

        extra = {"dbname": dbname} if dbname else {}
        try:
            return psycopg.connect(self.config.database_dsn,
                                   password=password if password is not None else self.db_password(),
                                   autocommit=autocommit, connect_timeout=10,
                                   application_name="votriz-ops", **extra)
        except psycopg.OperationalError as exc:
            raise OpsError(f"cannot connect to PostgreSQL: {str(exc).strip().splitlines()[-1]}") \
                from None
