"""The two files ``up`` writes for others: ``STATE/api.toml`` and ``STATE/target.toml``.

``api.toml`` is the API's and the ops commands' configuration (CONTRACT.md);
``target.toml`` is a harness ``TargetProfile`` (harness/profile.py) that
points the auditor at a stack. Both backends write them through this module:
the local one with :func:`render_target_profile`, the Docker one with the
addresses its containers have (``system_under_test.docker.target_profile``).
Neither file holds a secret in the clean configuration; the ``key-in-config``
fault is the one deliberate exception.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from system_under_test.common import mailbox, postgres_roles, softhsm
from system_under_test.common.pki import EDGE_HOST, LOOPBACK
from system_under_test.provision import ProvisioningPlan

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
        mailbox: the auditor's mailbox (Dovecot's IMAPS), or None for a stack without one.
    """

    https: int
    http: int
    postgres: int
    redis: int
    fakes: int
    fakes_plaintext: int
    api_plaintext: int | None = None
    mailbox: int | None = None


def render_api_config(state_dir: Path, ports: Ports, plan: ProvisioningPlan, *,
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
                         f"dbname={postgres_roles.DATABASE} user={postgres_roles.APP_ROLE}"),
        "redis_host": hosts.get("redis", LOOPBACK),
        "redis_port": ports.redis,
        "hsm_module": str(hsm_module),
        "hsm_token_label": softhsm.TOKEN_LABEL,
        "llm_base_url": f"{fakes_plain if plan.llm_plaintext else fakes_tls}/anthropic",
        "resend_base_url": f"{fakes_plain if plan.resend_plaintext else fakes_tls}/resend",
        "platform_base_url": f"{fakes_tls}/platforms",
        "upstream_ca_file": str(state_dir / "pki" / "ca.pem"),
        "faults": list(plan.api_faults),
    }
    if redis_password_file is not None:
        config["redis_password_file"] = str(redis_password_file)
    if stripe_api_key is not None:
        config["stripe_api_key"] = stripe_api_key
    header = "# Written by system_under_test.local (CONTRACT.md, api.toml).\n"
    return header + tomli_w.dumps(config)


@dataclass(frozen=True)
class ProfileFacts:
    """What differs between the backends' target profiles; the rest is the same for both.

    Attributes:
        name: the profile's ``name``.
        backend: ``local`` or ``docker``.
        header: the comment line the file starts with.
        https_port: the edge's TLS port on 127.0.0.1.
        http_port: the edge's plaintext port on 127.0.0.1.
        database_host: host (or unix socket directory) of PostgreSQL, as the auditor reaches it.
        database_port: its port.
        hsm_module: the PKCS#11 module the auditor loads.
        pin_file: the HSM PIN's file.
        hsm_env: the module's environment (paths and addresses only).
        redis_host: Redis, as the auditor reaches it.
        redis_port: its port.
        capture: the ``capture`` section (the fakes' capture API).
        runtime: the backend's own section, ``(name, table)``: ``local`` or ``docker``.
        config_paths: configuration files the key search reads.
        ops: the operator command line of one ``ops`` command.
        backup_dir: where backups land.
        drill_log: the restore drill's log.
        mailbox: the ``mailbox`` section (the auditor's IMAP mailbox), or None.
    """

    name: str
    backend: str
    header: str
    https_port: int
    http_port: int
    database_host: str
    database_port: int
    hsm_module: Path
    pin_file: Path
    hsm_env: Mapping[str, str]
    redis_host: str
    redis_port: int
    capture: Mapping[str, object]
    runtime: tuple[str, Mapping[str, object]]
    config_paths: Sequence[Path]
    ops: Callable[[str], list[str]]
    backup_dir: Path
    drill_log: Path
    mailbox: Mapping[str, object] | None = None


def render_profile(state_dir: Path, facts: ProfileFacts) -> str:
    """The text of ``target.toml``: a harness TargetProfile for one stack."""
    package_dir = Path(__file__).resolve().parents[1]
    runtime_name, runtime = facts.runtime
    profile: dict[str, object] = {
        "schema_version": 1,
        "name": facts.name,
        "backend": facts.backend,
        "edge": {
            "host": EDGE_HOST,
            "address": LOOPBACK,
            "https_port": facts.https_port,
            "http_port": facts.http_port,
            "trust_anchor": str(state_dir / "pki" / "ca.pem"),
        },
        "api": {"base_path": "/api/v1", "canaries": True},
        "database": {
            "dsn": (f"host={facts.database_host} port={facts.database_port} "
                    f"dbname={postgres_roles.DATABASE} user={postgres_roles.AUDITOR_ROLE}"),
            "password": {"file": str(state_dir / "secrets" / "auditor-password")},
        },
        "hsm": {
            "module": str(facts.hsm_module),
            "token_label": softhsm.TOKEN_LABEL,
            "pin": {"file": str(facts.pin_file)},
            "env": dict(facts.hsm_env),
            "key_namespace": softhsm.KEY_NAMESPACE,
        },
        "redis": {
            "host": facts.redis_host,
            "port": facts.redis_port,
            # What the published page promises, also under key-not-in-hsm:
            # the auditor must find the label missing.
            "password_hsm_label": softhsm.REDIS_PASSWORD,
        },
        "capture": dict(facts.capture),
        **({"mailbox": dict(facts.mailbox)} if facts.mailbox is not None else {}),
        runtime_name: dict(runtime),
        "scan": {
            "source_paths": [str(package_dir)],
            "config_paths": [str(path) for path in facts.config_paths],
        },
        "operations": {
            "allow_destructive": True,
            **{field: facts.ops(command) for field, command in OPERATIONS.items()},
            "backup_dir": str(facts.backup_dir),
            "drill_log": str(facts.drill_log),
        },
    }
    return facts.header + tomli_w.dumps(profile)


def render_target_profile(state_dir: Path, ports: Ports, pid_files: Mapping[str, Path],
                          *, nginx_config: Path) -> str:
    """The text of ``target.toml`` of a local stack."""

    def ops(command: str) -> list[str]:
        return [sys.executable, "-m", "system_under_test.ops", command,
                "--state-dir", str(state_dir)]

    return render_profile(state_dir, ProfileFacts(
        name="votriz-reference-local", backend="local",
        header="# Target profile of a local Votriz reference stack (written by `up`).\n",
        https_port=ports.https, http_port=ports.http,
        database_host=LOOPBACK, database_port=ports.postgres,
        hsm_module=softhsm.MODULE, pin_file=state_dir / "secrets" / "hsm-pin",
        hsm_env={"SOFTHSM2_CONF": str(state_dir / "softhsm2.conf")},
        redis_host=LOOPBACK, redis_port=ports.redis,
        capture={"url": f"https://{LOOPBACK}:{ports.fakes}", "plaintext_port": ports.fakes_plaintext},
        mailbox=None if ports.mailbox is None else mailbox.profile_section(
            host=LOOPBACK, port=ports.mailbox, password_file=state_dir / "secrets" / "mailbox-password",
            trust_anchor=state_dir / "pki" / "ca.pem"),
        runtime=("local", {
            "processes": [{"name": name, "pid_file": str(path), "include_children": True}
                          for name, path in pid_files.items()],
            "log_dir": str(state_dir / "logs"),
        }),
        config_paths=[state_dir / "api.toml", nginx_config, state_dir / "softhsm2.conf"],
        ops=ops, backup_dir=state_dir / "backups", drill_log=state_dir / "drills.log",
    ))
