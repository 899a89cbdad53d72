"""The SoftHSM2 token ``votriz`` and every key object of CONTRACT.md's HSM table.

SoftHSM reads ``SOFTHSM2_CONF`` once, when the PKCS#11 library is
initialised, and python-pkcs11 keeps one initialised library per process.
One process may bring up several stacks (the test session does), so every
PKCS#11 operation here runs in a short child process
(``python -m system_under_test.common.softhsm ...``) with that stack's
``SOFTHSM2_CONF``. Values travel back over a pipe, never through a file.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import string
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from system_under_test.common.host import StackError, base_environment, find_binary, write_secret

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN_LABEL = "votriz"
KEY_NAMESPACE = "votriz/"

TOKEN_KEY_V1 = "votriz/token-encryption/v1"
JWT_SIGNING = "votriz/jwt-signing"
# Not in CONTRACT.md's table: the API keeps the e-mail lookup HMAC key
# separate from the JWT secret (api/keyring.py), so that a JWT rotation does
# not break logins. Provisioned here because the API refuses to start without it.
EMAIL_INDEX = "votriz/index/email-hmac"
ANTHROPIC = "votriz/api/anthropic"
FAL = "votriz/api/fal"
RESEND = "votriz/api/resend"
STRIPE = "votriz/api/stripe"
DB_PASSWORD = "votriz/db/password"
REDIS_PASSWORD = "votriz/redis/password"
BACKUP_KEY = "votriz/backup/key"

ALL_LABELS: tuple[str, ...] = (
    TOKEN_KEY_V1, JWT_SIGNING, EMAIL_INDEX, ANTHROPIC, FAL, RESEND, STRIPE,
    DB_PASSWORD, REDIS_PASSWORD, BACKUP_KEY,
)

_ALNUM = string.ascii_letters + string.digits
# Bound on any one PKCS#11 child process; SoftHSM answers in milliseconds.
CHILD_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class HsmToken:
    """Where a stack's token lives and how to open it.

    Attributes:
        conf: the ``softhsm2.conf`` naming the token directory (a path, not a secret).
        module: the PKCS#11 module.
        label: the token label.
        pin_file: file holding the user PIN (0600).
        so_pin_file: file holding the security officer PIN (0600).
        token_dir: SoftHSM's object store for this stack.
    """

    conf: Path
    module: Path
    label: str
    pin_file: Path
    so_pin_file: Path
    token_dir: Path

    def environment(self) -> dict[str, str]:
        """The environment a PKCS#11 user of this token needs: only the config path."""
        return {"SOFTHSM2_CONF": str(self.conf)}

    @classmethod
    def of_stack(cls, state_dir: Path) -> HsmToken:
        """The token of the stack in ``state_dir`` (where ``init_token`` puts it)."""
        return cls(conf=state_dir / "softhsm2.conf", module=MODULE, label=TOKEN_LABEL,
                   pin_file=state_dir / "secrets" / "hsm-pin",
                   so_pin_file=state_dir / "secrets" / "hsm-so-pin", token_dir=state_dir / "tokens")


def _alnum(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def generate_values() -> dict[str, bytes]:
    """Fresh values for every label, with the shapes the real providers use."""
    return {
        TOKEN_KEY_V1: secrets.token_bytes(32),
        JWT_SIGNING: secrets.token_bytes(32),
        EMAIL_INDEX: secrets.token_bytes(32),
        ANTHROPIC: f"sk-ant-api03-{secrets.token_urlsafe(70)[:93]}AA".encode("ascii"),
        FAL: f"fal_{_alnum(40)}".encode("ascii"),
        RESEND: f"re_{_alnum(8)}_{_alnum(24)}".encode("ascii"),
        STRIPE: f"sk_live_{_alnum(99)}".encode("ascii"),
        # Hex needs no quoting in a libpq conninfo, a SQL literal or a Redis config line.
        DB_PASSWORD: secrets.token_hex(24).encode("ascii"),
        REDIS_PASSWORD: secrets.token_hex(24).encode("ascii"),
        BACKUP_KEY: secrets.token_bytes(32),
    }


def key_id(label: str) -> bytes:
    """CKA_ID of a label: the version as ASCII for token-encryption keys, else empty."""
    prefix = "votriz/token-encryption/v"
    return label[len(prefix):].encode("ascii") if label.startswith(prefix) else b""


def write_config(state_dir: Path) -> Path:
    """Write ``STATE/softhsm2.conf`` with the token directory ``STATE/tokens``."""
    token_dir = state_dir / "tokens"
    token_dir.mkdir(mode=0o700, exist_ok=True)
    conf = state_dir / "softhsm2.conf"
    conf.write_text(
        "# SoftHSM2 configuration of one local Votriz stack (written by system_under_test.local).\n"
        f"directories.tokendir = {token_dir}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n",
        encoding="ascii",
    )
    return conf


def init_token(state_dir: Path, *, search_path: Sequence[str] | None = None) -> HsmToken:
    """Write the config and initialise token ``votriz`` with random SO and user PINs."""
    write_config(state_dir)
    (state_dir / "secrets").mkdir(mode=0o700, exist_ok=True)
    token = HsmToken.of_stack(state_dir)
    if not MODULE.is_file():
        raise StackError(f"{MODULE} not found: apt-get install softhsm2")
    util = find_binary("softhsm2-util", search_path)
    pin, so_pin = _alnum(24), _alnum(24)
    write_secret(token.pin_file, pin)
    write_secret(token.so_pin_file, so_pin)
    # softhsm2-util takes the PINs only as arguments; the command line of this
    # short-lived child is the one place they appear outside the 0600 files.
    result = subprocess.run(
        [util, "--init-token", "--free", "--label", TOKEN_LABEL, "--so-pin", so_pin, "--pin", pin],
        env=base_environment(**token.environment()), capture_output=True, text=True,
        timeout=CHILD_TIMEOUT_S, check=False,
    )
    if result.returncode != 0:
        raise StackError(f"softhsm2-util --init-token failed: {result.stderr.strip()[:200]}")
    return token


def _run_child(token: HsmToken, args: Sequence[str], stdin: str = "") -> str:
    repo_root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "system_under_test.common.softhsm", *args,
         "--module", str(token.module), "--label", token.label, "--pin-file", str(token.pin_file)],
        env=base_environment(PYTHONPATH=str(repo_root), **token.environment()),
        input=stdin, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise StackError(f"HSM {args[0]} failed: {last[:200]}")
    return result.stdout


def provision_keys(token: HsmToken, values: Mapping[str, bytes]) -> list[str]:
    """Create one secret key object per label in ``values``; return the labels created."""
    payload = json.dumps({label: base64.b64encode(value).decode() for label, value in values.items()})
    return list(json.loads(_run_child(token, ["provision"], stdin=payload)))


def read_values(token: HsmToken, labels: Iterable[str]) -> dict[str, bytes]:
    """Read the values of ``labels`` (absent labels are left out of the answer)."""
    answer = json.loads(_run_child(token, ["read", *labels]))
    return {label: base64.b64decode(value) for label, value in answer.items()}


def inspect_objects(token: HsmToken) -> list[dict[str, object]]:
    """Every object on the token with its class, type and flags; never its value."""
    return list(json.loads(_run_child(token, ["inspect"])))


@dataclass(frozen=True)
class StackSecrets:
    """What a backend needs, once, from the token it has just provisioned for a stack.

    Attributes:
        token: the token.
        db_password: the application role's password (from the HSM).
        redis_password: Redis's password (from the HSM, or its file under ``key-not-in-hsm``).
        stripe_key: the Stripe key (written into api.toml only under ``key-in-config``).
        token_key: the first token-encryption key's value (given out only by key faults).
        auditor_password: the read-only role's password (also in ``secrets/auditor-password``).
    """

    token: HsmToken
    db_password: str
    redis_password: str
    stripe_key: str
    token_key: bytes
    auditor_password: str = field(repr=False)

    def pin(self) -> str:
        """The user PIN, read from its file (for the ``pin-in-env`` fault only)."""
        return self.token.pin_file.read_text(encoding="ascii").strip()


def provision_stack_token(state_dir: Path, *, redis_password_file: Path | None,
                          search_path: Sequence[str] | None = None) -> StackSecrets:
    """Initialise the token, create every key, and read back what the stack's set-up needs.

    Under ``key-not-in-hsm`` (``redis_password_file`` given) the Redis password
    goes to that file instead of the token. The values are read back through
    PKCS#11, as the launcher of a real deployment would. The auditor's database
    password is made here too and written to ``secrets/auditor-password``.
    """
    token = init_token(state_dir, search_path=search_path)
    values = generate_values()
    if redis_password_file is not None:
        write_secret(redis_password_file, values.pop(REDIS_PASSWORD).decode())
    provision_keys(token, values)
    del values
    from_hsm = read_values(token, [DB_PASSWORD, REDIS_PASSWORD, STRIPE, TOKEN_KEY_V1])
    redis_password = (redis_password_file.read_text(encoding="ascii").strip()
                      if redis_password_file else from_hsm[REDIS_PASSWORD].decode())
    auditor_password = secrets.token_hex(24)
    write_secret(state_dir / "secrets" / "auditor-password", auditor_password)
    return StackSecrets(token=token, db_password=from_hsm[DB_PASSWORD].decode(),
                        redis_password=redis_password, stripe_key=from_hsm[STRIPE].decode(),
                        token_key=from_hsm[TOKEN_KEY_V1], auditor_password=auditor_password)


# Everything below runs in the child process only.

def _open_session(module: str, label: str, pin_file: str, rw: bool):  # type: ignore[no-untyped-def]
    import pkcs11

    pin = Path(pin_file).read_text(encoding="ascii").strip()
    token = pkcs11.lib(module).get_token(token_label=label)
    return token.open(user_pin=pin, rw=rw)


def _child_provision(args: argparse.Namespace) -> None:
    from pkcs11 import Attribute

    from system_under_test.api.keyring import secret_template

    values = {label: base64.b64decode(value) for label, value in json.load(sys.stdin).items()}
    session = _open_session(args.module, args.label, args.pin_file, rw=True)
    try:
        for label, value in values.items():
            # SIGN/VERIFY let an auditor prove which key is in use with an
            # HMAC computed inside the token, without reading the value.
            template = secret_template(label, value) | {Attribute.SIGN: True, Attribute.VERIFY: True}
            if key_id(label):
                template[Attribute.ID] = key_id(label)
            session.create_object(template)
    finally:
        session.close()
    json.dump(sorted(values), sys.stdout)


def _child_read(args: argparse.Namespace) -> None:
    from pkcs11 import Attribute, ObjectClass

    answer: dict[str, str] = {}
    session = _open_session(args.module, args.label, args.pin_file, rw=False)
    try:
        for label in args.labels:
            for obj in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY,
                                            Attribute.LABEL: label}):
                answer[label] = base64.b64encode(bytes(obj[Attribute.VALUE])).decode()
    finally:
        session.close()
    json.dump(answer, sys.stdout)


def _child_inspect(args: argparse.Namespace) -> None:
    from pkcs11 import Attribute

    flags = ("TOKEN", "PRIVATE", "SENSITIVE", "EXTRACTABLE", "SIGN", "VERIFY")
    rows: list[dict[str, object]] = []
    session = _open_session(args.module, args.label, args.pin_file, rw=False)
    try:
        for obj in session.get_objects():
            row: dict[str, object] = {
                "label": obj[Attribute.LABEL],
                "class": obj[Attribute.CLASS].name,
                "key_type": obj[Attribute.KEY_TYPE].name,
                "id": bytes(obj[Attribute.ID]).decode("ascii", errors="replace"),
                "value_len": int(obj[Attribute.VALUE_LEN]),
            }
            for flag in flags:
                row[flag.lower()] = bool(obj[getattr(Attribute, flag)])
            rows.append(row)
    finally:
        session.close()
    json.dump(rows, sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the PKCS#11 child process (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m system_under_test.common.softhsm")
    parser.add_argument("command", choices=("provision", "read", "inspect"))
    parser.add_argument("labels", nargs="*")
    parser.add_argument("--module", required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--pin-file", required=True)
    args = parser.parse_args(argv)
    {"provision": _child_provision, "read": _child_read, "inspect": _child_inspect}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
