"""``python -m system_under_test.ops COMMAND --state-dir STATE``: one JSON line on stdout.

On failure: one line ``error: ...`` on stderr and exit status 1. Every run is
also appended to ``STATE/logs/ops.log`` (the same JSON, never a secret).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from system_under_test.api.config import ConfigError
from system_under_test.api.keyring import KeyringError
from system_under_test.ops.context import OpsContext, OpsError

DEFAULT_STATE_DIR = ".state/local"


def _iso(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return int(text)


def parser() -> argparse.ArgumentParser:
    """The command-line parser (one sub-command per operation)."""
    top = argparse.ArgumentParser(prog="python -m system_under_test.ops",
                                  description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, type=Path)
        return p

    command("migrate", "apply schema.sql (idempotent)")
    command("seed-demo", "demo user, brands, channels and counters")
    command("seed-channels", "bulk channels for rotation tests").add_argument(
        "--count", type=_positive, required=True)
    command("rotate-token-key", "new token-encryption key, rewrite every row").add_argument(
        "--batch-size", type=_positive, default=None, help="rows per transaction (default 500)")
    command("rotate-jwt-secret", "new JWT secret: every session becomes invalid")
    command("rotate-db-password", "new password for votriz_app")
    command("rotate-redis-password", "new Redis password")
    command("backup", "encrypted pg_dump into STATE/backups")
    command("prune-backups", "delete backups older than 30 days").add_argument(
        "--now", type=_iso, default=None)
    command("restore-drill", "restore the newest backup into a scratch database")
    return top


def _ops(name: str) -> ModuleType:
    """``system_under_test.ops.NAME``, imported when a command needs it.

    A command imports only what it uses: each is a ``docker exec`` of its own, and importing
    every module (psycopg, redis, httpx) cost each one ~0.4 s at idle (``-X importtime``), on
    the critical path of every rotation, backup and drill an audit runs.
    """
    return importlib.import_module(f"system_under_test.ops.{name}")


COMMANDS: dict[str, Callable[[OpsContext, argparse.Namespace], dict[str, object]]] = {
    "migrate": lambda ctx, a: _ops("seeding").migrate(ctx),
    "seed-demo": lambda ctx, a: _ops("seeding").seed_demo(ctx),
    "seed-channels": lambda ctx, a: _ops("seeding").seed_channels(ctx, a.count),
    "rotate-token-key": lambda ctx, a: _ops("rotation").rotate_token_key(
        ctx, **({"batch_size": a.batch_size} if a.batch_size else {})),
    "rotate-jwt-secret": lambda ctx, a: _ops("rotation").rotate_jwt_secret(ctx),
    "rotate-db-password": lambda ctx, a: _ops("rotation").rotate_db_password(ctx),
    "rotate-redis-password": lambda ctx, a: _ops("rotation").rotate_redis_password(ctx),
    "backup": lambda ctx, a: _ops("backups").backup(ctx),
    "prune-backups": lambda ctx, a: _ops("backups").prune_backups(ctx, now=a.now),
    "restore-drill": lambda ctx, a: _ops("backups").restore_drill(ctx),
}


def _expected_errors() -> tuple[type[BaseException], ...]:
    """The failures that are one ``error:`` line: the commands' own, and those of the database
    and Redis clients when the command imported them (a command that did not cannot meet them)."""
    kinds: list[type[BaseException]] = [OpsError, ConfigError, KeyringError, OSError]
    for module, name in (("psycopg", "Error"), ("redis", "RedisError")):
        if module in sys.modules:
            kinds.append(getattr(sys.modules[module], name))
    return tuple(kinds)


def _log(state_dir: Path, entry: dict[str, object]) -> None:
    logs = state_dir / "logs"
    if logs.is_dir():
        with open(logs / "ops.log", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one operator command; print its JSON line; 0 on success, 1 on failure."""
    args = parser().parse_args(argv)
    started = datetime.now(UTC).isoformat()
    try:
        ctx = OpsContext.open(args.state_dir)
        result = COMMANDS[args.command](ctx, args)
    except Exception as exc:
        if not isinstance(exc, _expected_errors()):
            raise
        # Library messages name objects and roles, never a password; one line of it is enough.
        text = str(exc).strip()
        message = text.splitlines()[0] if text else type(exc).__name__
        if not isinstance(exc, OpsError | ConfigError | KeyringError):
            message = f"{type(exc).__name__}: {message}"
        print(f"error: {args.command}: {message}", file=sys.stderr)
        _log(args.state_dir, {"time": started, "command": args.command, "ok": False,
                              "error": message})
        return 1
    line = json.dumps(result, default=str)
    print(line)
    _log(ctx.state_dir, {"time": started, "ok": True, **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
