"""The two files ``up`` writes for others: ``STATE/api.toml`` and ``STATE/target.toml``.

``api.toml`` is the API's and the ops commands' configuration (CONTRACT.md);
``target.toml`` is a harness ``TargetProfile`` (harness/profile.py) that
points the auditor at this stack. Neither holds a secret in the clean
configuration; the ``key-in-config`` fault is the one deliberate exception.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from system_under_test.faults import FAULTS, Layer
from system_under_test.local import postgres, softhsm
from system_under_test.local.pki import EDGE_HOST, LOOPBACK

# Operator commands, by the profile's ``operations`` field name.
OPERATIONS: dict[str, str] = {
    "rotate_token_key": "rotate-token-key",
    "rotate_jwt_secret": "rotate-jwt-secret",
    "rotate_db_password": "rotate-db-password",
    "rotate_redis_password": "rotate-redis-password",
    "backup": "backup",
    "prune_backups": "prune-backups",
    "restore_drill": "restore-drill",
}


@dataclass(frozen=True)
class Ports:
    """The TCP ports one stack uses, all on 127.0.0.1.

    Attributes:
        https: the edge's TLS port.
        http: the edge's plaintext (redirect-only) port.
        postgres: PostgreSQL.
        redis: Redis.
        fakes: the fakes' TLS port (and capture API).
        fakes_plaintext: the fakes' plaintext decoy.
        api_plaintext: the API's own TCP port under ``api-plaintext-exposed``, else None.
    """

    https: int
    http: int
    postgres: int
    redis: int
    fakes: int
    fakes_plaintext: int
    api_plaintext: int | None = None


def api_faults(faults: Collection[str]) -> list[str]:
    """The faults the API and the ops commands apply themselves (their api.toml list)."""
    return sorted(f for f in faults if FAULTS[f].layer in (Layer.API, Layer.OPS))


def render_api_config(state_dir: Path, ports: Ports, faults: Collection[str], *,
                      redis_password_file: Path | None = None,
                      stripe_api_key: str | None = None,
                      hosts: Mapping[str, str] | None = None,
                      hsm_module: Path = softhsm.MODULE) -> str:
    """The text of ``api.toml``.

    ``redis_password_file`` is set under ``key-not-in-hsm``; ``stripe_api_key``
    only under ``key-in-config``. ``hosts`` maps ``postgres``, ``redis`` and
    ``fakes`` to the address the API reaches them at (default 127.0.0.1; the
    Docker backend gives container names), and ``hsm_module`` replaces
    SoftHSM's module (the Docker backend's API uses p11-kit's client).
    """
    hosts = hosts or {}
    fakes_host = hosts.get("fakes", LOOPBACK)
    fakes_tls = f"https://{fakes_host}:{ports.fakes}"
    fakes_plain = f"http://{fakes_host}:{ports.fakes_plaintext}"
    config: dict[str, object] = {
        "state_dir": str(state_dir),
        "listen": f"unix:{state_dir / 'run' / 'api.sock'}",
        "public_url": f"https://{EDGE_HOST}:{ports.https}",
        "database_dsn": (f"host={hosts.get('postgres', LOOPBACK)} port={ports.postgres} "
                         f"dbname={postgres.DATABASE} user={postgres.APP_ROLE}"),
        "redis_host": hosts.get("redis", LOOPBACK),
        "redis_port": ports.redis,
        "hsm_module": str(hsm_module),
        "hsm_token_label": softhsm.TOKEN_LABEL,
        "llm_base_url": f"{fakes_plain if 'llm-plaintext' in faults else fakes_tls}/anthropic",
        "resend_base_url": f"{fakes_plain if 'resend-plaintext' in faults else fakes_tls}/resend",
        "platform_base_url": f"{fakes_tls}/platforms",
        "upstream_ca_file": str(state_dir / "pki" / "ca.pem"),
        "faults": api_faults(faults),
    }
    if redis_password_file is not None:
        config["redis_password_file"] = str(redis_password_file)
    if stripe_api_key is not None:
        config["stripe_api_key"] = stripe_api_key
    header = "# Written by system_under_test.local (CONTRACT.md, api.toml).\n"
    return header + tomli_w.dumps(config)


def render_target_profile(state_dir: Path, ports: Ports, pid_files: Mapping[str, Path],
                          *, nginx_config: Path) -> str:
    """The text of ``target.toml``: a harness TargetProfile for this stack."""
    package_dir = Path(__file__).resolve().parents[1]

    def ops(command: str) -> list[str]:
        return [sys.executable, "-m", "system_under_test.ops", command,
                "--state-dir", str(state_dir)]

    profile: dict[str, object] = {
        "schema_version": 1,
        "name": "votriz-reference-local",
        "backend": "local",
        "edge": {
            "host": EDGE_HOST,
            "address": LOOPBACK,
            "https_port": ports.https,
            "http_port": ports.http,
            "trust_anchor": str(state_dir / "pki" / "ca.pem"),
        },
        "api": {"base_path": "/api/v1", "canaries": True},
        "database": {
            "dsn": (f"host={LOOPBACK} port={ports.postgres} dbname={postgres.DATABASE} "
                    f"user={postgres.AUDITOR_ROLE}"),
            "password": {"file": str(state_dir / "secrets" / "auditor-password")},
        },
        "hsm": {
            "module": str(softhsm.MODULE),
            "token_label": softhsm.TOKEN_LABEL,
            "pin": {"file": str(state_dir / "secrets" / "hsm-pin")},
            "env": {"SOFTHSM2_CONF": str(state_dir / "softhsm2.conf")},
            "key_namespace": softhsm.KEY_NAMESPACE,
        },
        "redis": {
            "host": LOOPBACK,
            "port": ports.redis,
            # What the published page promises, also under key-not-in-hsm:
            # the auditor must find the label missing.
            "password_hsm_label": softhsm.REDIS_PASSWORD,
        },
        "capture": {"url": f"https://{LOOPBACK}:{ports.fakes}",
                    "plaintext_port": ports.fakes_plaintext},
        "local": {
            "processes": [{"name": name, "pid_file": str(path), "include_children": True}
                          for name, path in pid_files.items()],
            "log_dir": str(state_dir / "logs"),
        },
        "scan": {
            "source_paths": [str(package_dir)],
            "config_paths": [str(state_dir / "api.toml"), str(nginx_config),
                             str(state_dir / "softhsm2.conf")],
        },
        "operations": {
            "allow_destructive": True,
            **{field: ops(command) for field, command in OPERATIONS.items()},
            "backup_dir": str(state_dir / "backups"),
            "drill_log": str(state_dir / "drills.log"),
        },
    }
    header = "# Target profile of a local Votriz reference stack (written by `up`).\n"
    return header + tomli_w.dumps(profile)
