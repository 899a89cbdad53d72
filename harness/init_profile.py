"""``votriz-audit init``: a draft target profile for a deployment running on this host.

Discovery (:mod:`harness.probes.discovery`) observes the deployment; this
module writes what it found as a profile: every section it could fill in, and
for each thing it could not find (secret files above all) a TOML comment that
says what to put there and names the checks that need it. The draft validates
as written, and needs no secret to run: a section that cannot work without a
secret file (database, HSM, Redis) is written commented out, ready to be
uncommented once its file exists. The file is written 0600 and never over an
existing one unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import tomli_w

from harness.checkdir import declared_checks
from harness.cli_output import printable as shown_printable
from harness.cli_output import toml_escaped
from harness.profile import NO_HTTP_PORT, ProfileError, parse_profile

if TYPE_CHECKING:
    from harness.probes.discovery import Discovery

#: Exit code of a usage error (README's table): bad input, nothing to discover, a refused output file.
EXIT_USAGE = 3
#: The PKCS#11 module a host uses to reach a p11-kit server's socket.
P11_KIT_CLIENT = Path("/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so")
#: What the Votriz contract names: the database, its read-only role, the token and its Redis label.
CONTRACT_DATABASE, CONTRACT_AUDITOR_ROLE = "votriz", "votriz_auditor"
CONTRACT_TOKEN_LABEL, CONTRACT_REDIS_LABEL = "votriz", "votriz/redis/password"
#: The checks that read the canary's recovery mail from ``[mailbox]`` (no access marker names it yet).
RECOVERY_MAIL_CHECKS = ("at_rest.recovery_tokens",)
#: Operator commands of the ``operations`` section, with what each does.
OPERATION_COMMANDS = {
    "rotate_token_key": "re-encrypt every channel row under a new key",
    "rotate_jwt_secret": "replace the JWT signing secret",
    "rotate_db_password": "rotate the database password (applied by restart)",
    "rotate_redis_password": "rotate the Redis password (applied by restart)",
    "backup": "take one encrypted backup",
    "prune_backups": "apply the retention policy",
    "restore_drill": "restore the newest backup into a scratch database and check it",
}


class OutputRefused(Exception):
    """The profile was not written: the output file exists (without ``--force``) or cannot be written."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``init``'s options to ``parser``."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--docker-project", metavar="NAME",
                       help="the Compose project: its containers carry com.docker.compose.project=NAME")
    which.add_argument("--local", action="store_true",
                       help="the service's processes on this host (nginx, postgres, redis, p11-kit, "
                       "gunicorn)")
    parser.add_argument("--edge-port", type=int, metavar="PORT",
                        help="with --local: the edge's TLS port, when several deployments run here")
    parser.add_argument("--output", "-o", type=Path, metavar="FILE",
                        help="write the profile here (mode 0600) instead of standard output")
    parser.add_argument("--force", action="store_true", help="replace FILE if it exists")
    parser.add_argument("--name", help="the profile's name in reports (default: the project's name)")


def run(args: argparse.Namespace) -> int:
    """Discover, write the draft profile, say in one line what was found; the exit code."""
    # Imported here, not at the top: every command of the CLI builds this parser, and the
    # discovery probes (HTTP, listeners, Docker) cost half a second of imports.
    from harness.probes.discovery import DiscoveryError, discover_compose
    from harness.probes.local_discovery import discover_local

    try:
        if args.docker_project is not None:
            discovery = discover_compose(args.docker_project)
        else:
            discovery = discover_local(edge_port=args.edge_port)
    except DiscoveryError as exc:
        print(f"votriz-audit init: {exc}", file=sys.stderr)
        return EXIT_USAGE
    name = args.name or discovery.project or "votriz-local"
    text = render_profile(discovery, name=name, now=datetime.now(UTC))
    # The draft must load as it is: a profile init cannot parse is a defect here, not the user's,
    # and is said in one line rather than written.
    try:
        parse_profile(text, source="<init draft>")
    except ProfileError as exc:
        print(f"votriz-audit init: the draft does not load, nothing written: {printable(str(exc))}",
              file=sys.stderr)
        return EXIT_USAGE
    if args.output is None:
        sys.stdout.write(text)
    else:
        try:
            write_new_file(args.output, text, force=args.force)
        except OutputRefused as exc:
            print(f"votriz-audit init: {exc}", file=sys.stderr)
            return EXIT_USAGE
    to_fill = text.count("\n# FILL IN")
    print(f"votriz-audit init: {summary(discovery)}; {to_fill} thing(s) to fill in "
          f"(lines '# FILL IN'){'' if args.output is None else f'; written to {args.output}'}",
          file=sys.stderr)
    return 0


def summary(discovery: Discovery) -> str:
    """What was found, in one line."""
    parts = ([f"{len(discovery.containers)} container(s)"] if discovery.backend == "docker"
             else [f"{len(discovery.processes)} process(es)"])
    if discovery.edge is not None:
        parts.append(f"edge on {discovery.edge.address}:{discovery.edge.https_port}")
    parts += [f"{len(discovery.postgres_sockets)} PostgreSQL socket(s)",
              f"{len(discovery.p11_sockets)} p11-kit socket(s)", f"{len(discovery.log_dirs)} log dir(s)"]
    return "found " + ", ".join(parts)


def write_new_file(path: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``path`` with mode 0600: a new file, or (``force``) a replacement made
    beside it and renamed over it, so no reader sees half a profile and no link is followed.

    Raises:
        OutputRefused: ``path`` exists and ``force`` is false, or it cannot be written.
    """
    data = text.encode("utf-8")
    try:
        if not force:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            return
        if path.is_dir():
            raise OutputRefused(f"{path}: is a directory; name a file")
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except FileExistsError:
        raise OutputRefused(f"{path}: exists; not overwritten (--force replaces it)") from None
    except OSError as exc:
        raise OutputRefused(f"{path}: cannot be written: {exc.strerror or type(exc).__name__}") from None


# --- rendering ------------------------------------------------------------------------------------

#: A DNS host name, as a certificate names one (letters, digits, hyphens, dots).
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
#: A key TOML reads without quotes.
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def printable(text: str) -> str:
    """``text`` with every character that is not printable (newlines, escapes, bidi controls)
    written as a ``\\uXXXX`` escape: one line that cannot move a terminal's cursor. Inside a
    TOML basic string the escape reads back as the same character, so the draft's values keep
    their meaning; in a comment it is text."""
    return shown_printable(text, toml_escaped)


def _value(value: object) -> str:
    """One TOML value (strings quoted and escaped by tomli_w, keys quoted unless bare)."""
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(str(key))} = {_value(item)}" for key, item in value.items()) + " }"
    if isinstance(value, list | tuple):
        # One line whatever its length (tomli_w breaks long arrays over lines).
        return "[" + ", ".join(_value(item) for item in value) + "]"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _value(key)


def _line(key: str, value: object, note: str = "") -> str:
    return f"{key} = {_value(value)}" + (f"  # {note}" if note else "")


def checks_needing(kind: str, checks: Mapping[str, Sequence[str]]) -> str:
    """The checks whose access marker names ``kind``, as a comma-separated list."""
    return ", ".join(sorted(check for check, access in checks.items() if kind in access)) or "none"


def _commented(lines: Sequence[str]) -> list[str]:
    return [f"# {line}" if line else "#" for line in lines]


def render_profile(discovery: Discovery, *, name: str, now: datetime,
                   checks: Mapping[str, Sequence[str]] | None = None) -> str:
    """The draft profile's text: found sections active, the rest commented with what needs them.

    Args:
        discovery: what was found.
        name: the profile's ``name``.
        now: when it was found (the header says so).
        checks: check id -> access kinds (default: every check's ``access`` marker).
    """
    needs = checks if checks is not None else {c.check_id: c.access for c in declared_checks().values()}
    how = (f"--docker-project {discovery.project}" if discovery.backend == "docker" else "--local")
    out = [f"# Draft target profile written by `votriz-audit init {how}` at {now:%Y-%m-%d %H:%M} UTC",
           "# from what runs on this host. Each value was observed (the comment beside it says how);",
           "# each '# FILL IN' names what init could not find and the checks that need it. No secret is",
           "# written here: passwords and PINs come from files (mode 0600) that only you can read.",
           "# No [capture]: a production deployment has no harness-controlled fakes.",
           _line("schema_version", 1), _line("name", name), _line("backend", discovery.backend), ""]
    out += _edge(discovery, needs)
    out += ["", "[api]", _line("base_path", "/api/v1", "the JSON API's prefix behind the edge"),
            _line("canaries", True, "one tagged canary account and its data, removed at the end"),
            f"# (false: {checks_needing('api', needs)} cannot observe and are MANUAL)", ""]
    out += ["# FILL IN [mailbox]: a mailbox your team controls, read over IMAP with TLS, where the canary's",
            "# recovery mail arrives; not part of the deployment, so init cannot find it. Needed by "
            f"{', '.join(RECOVERY_MAIL_CHECKS)}.",
            *_commented(["[mailbox]", _line("host", "imap.example.com"), _line("port", 993),
                         _line("user", "audit"), _line("password", {"file": "secrets/mailbox-password"}),
                         _line("address", "audit@example.com", "plus-addressed mail must reach it"),
                         _line("folder", "INBOX")]), ""]
    for section in (_database, _hsm_and_redis, _runtime, _scan, _operations):
        out += [*section(discovery, needs), ""]
    out += ["[attestations]", "# What no machine can see from here: a human attests it (its SHA-256 is "
            "pinned in the results).", f"# Needed by: {checks_needing('attestation', needs)}.",
            '# "REST-DB-ENCRYPTED-VOLUMES" = "attestations/volume-encryption.txt"',
            '# "KEYS-HSM" = "attestations/hsm-hardware.txt"   # when the token is not a hardware module']
    # What was observed (certificate names, paths, process and container names) is the
    # deployment's to choose: each line is made one printable line, so nothing observed can
    # end a comment and write a key of its own.
    return "\n".join(printable(line) for line in out) + "\n"


def _edge(discovery: Discovery, needs: Mapping[str, Sequence[str]]) -> list[str]:
    edge = discovery.edge
    if edge is None:
        return ["[edge]", "# FILL IN: no published port of the deployment completed a TLS handshake.",
                f"# Needed by: {checks_needing('edge', needs)}.",
                _line("host", "edge.invalid", "the public host name (SNI, certificate name)"),
                "# https_port = 443",
                f'# http_port = 80  # or "{NO_HTTP_PORT}" when the edge serves no plain HTTP']
    lines = ["[edge]", f"# A TLS handshake completed on {edge.address}:{edge.https_port} ({edge.owner})."]
    cert = edge.certificate
    names = cert.names if cert is not None else ()
    # Only a name that is a host name becomes [edge] host (no wildcard, nothing an edge made up).
    host = next((n for n in names if _HOST_NAME.fullmatch(n)), None)
    if host is None:
        lines += ["# FILL IN: the certificate names no host init can use"
                  + (f" ({', '.join(names)})" if names else "") + ": give the public host name."]
    else:
        lines.append(f"# Its certificate names {', '.join(names)}; issued by {cert.issuer if cert else '?'}.")
    lines += [_line("host", host or "edge.invalid"),
              _line("address", edge.address, "where this host reaches the edge; delete to resolve host"),
              _line("https_port", edge.https_port)]
    if edge.http_port is not None:
        lines.append(_line("http_port", edge.http_port, "answered plain HTTP (it must only redirect)"))
    else:
        ports = edge.http_ports_tried
        tried = (f"port{'s' if len(ports) > 1 else ''} {', '.join(map(str, ports))} of {edge.owner} "
                 "did not answer plain HTTP" if ports else f"{edge.owner} has no other port init could see")
        lines += [f"# No plaintext port of the edge was found ({tried}).",
                  "# transit.http_redirect_only still looks at port 80 of the host: refused (a TCP reset)",
                  "# while HTTPS answers passes, no answer is ERROR (waive it if a firewall drops port 80),",
                  "# an answer there is judged like any plaintext port.",
                  _line("http_port", NO_HTTP_PORT, "the edge serves no plain HTTP")]
    if cert is not None and cert.trust_anchor is not None:
        lines.append(_line("trust_anchor", str(cert.trust_anchor),
                           "a verifying handshake completed with this CA as the only anchor"))
    elif cert is not None and not cert.system_trusted:
        lines.append("# FILL IN: the system trust store does not verify the certificate and no CA file "
                     "that does was found beside the service's mounted files:")
        lines.append("# trust_anchor = \"ca.pem\"   # the CA the certificate must chain to")
    return lines


def _database(discovery: Discovery, needs: Mapping[str, Sequence[str]]) -> list[str]:
    head = f"# Needed by: {checks_needing('database', needs)}."
    if not discovery.postgres_sockets:
        return ["# FILL IN [database]: no PostgreSQL socket is reachable from this host.", head,
                "# [database]", '# dsn = "host=HOST port=5432 dbname=votriz user=votriz_auditor"',
                '# password = { file = "secrets/auditor-password" }']
    sock = discovery.postgres_sockets[0]
    directory, _, port = sock.where.rpartition("/.s.PGSQL.")
    section = ["[database]",
               _line("dsn", f"host={directory} port={port} dbname={CONTRACT_DATABASE} "
                     f"user={CONTRACT_AUDITOR_ROLE}"),
               _line("password", {"file": "secrets/auditor-password"}),
               _line("allow_write_role", False)]
    return [f"# PostgreSQL listens on {sock.where} ({sock.owner}); database and role as the contract "
            "names them.",
            "# FILL IN: the read-only auditor role's password in a file (chmod 600), then uncomment.",
            head, *_commented(section)]


def _hsm_and_redis(discovery: Discovery, needs: Mapping[str, Sequence[str]]) -> list[str]:
    lines: list[str] = []
    if discovery.p11_sockets:
        sock = discovery.p11_sockets[0]
        others = [s.where for s in discovery.p11_sockets[1:]]
        lines += [f"# A p11-kit server listens on {sock.where} ({sock.owner})"
                  + (f"; also on {', '.join(others)}." if others else "."),
                  "# FILL IN: the token's user PIN in a file (chmod 600), then uncomment.",
                  f"# Needed by: {checks_needing('hsm', needs)}."]
        module_note = "" if P11_KIT_CLIENT.exists() else "not on this host: apt-get install p11-kit-modules"
        lines += _commented(["[hsm]", _line("module", str(P11_KIT_CLIENT), module_note),
                             _line("token_label", CONTRACT_TOKEN_LABEL),
                             _line("pin", {"file": "secrets/hsm-pin"}),
                             _line("env", {"P11_KIT_SERVER_ADDRESS": f"unix:path={sock.where}",
                                           **dict(discovery.hsm_env)})])
    else:
        lines += ["# FILL IN [hsm]: no p11-kit server's socket is reachable from this host.",
                  f"# Needed by: {checks_needing('hsm', needs)}."]
    lines.append("")
    if discovery.redis:
        redis = discovery.redis[0]
        lines += [f"# Redis listens on {redis.where}:{redis.port} ({redis.owner}); its password is "
                  "read from the HSM: uncomment with [hsm].",
                  f"# Needed by: {checks_needing('redis', needs)}."]
        lines += _commented(["[redis]", _line("host", redis.where), _line("port", redis.port),
                             _line("password_hsm_label", CONTRACT_REDIS_LABEL)])
    else:
        lines += ["# FILL IN [redis]: no Redis listener was found.",
                  f"# Needed by: {checks_needing('redis', needs)}."]
    return lines


def _log_dir(dirs: Sequence[Path]) -> Path | None:
    """One directory for the profile: the only one, or the parent all share (if not shallower than
    two levels)."""
    if not dirs:
        return None
    common = Path(os.path.commonpath([str(d) for d in dirs]))
    return common if len(common.parts) > 2 else dirs[0]


def _runtime(discovery: Discovery, needs: Mapping[str, Sequence[str]]) -> list[str]:
    log_dir = _log_dir(discovery.log_dirs)
    log_lines = ([_line("log_dir", str(log_dir), "the service writes its logs below it: "
                        + ", ".join(str(d) for d in discovery.log_dirs))] if log_dir else
                 [f"# FILL IN: no log directory was found; needed by {checks_needing('files', needs)}.",
                  '# log_dir = "/srv/votriz/logs"'])
    if discovery.backend == "docker":
        edge = discovery.edge
        return (["[docker]", _line("compose_project", discovery.project,
                                   f"{len(discovery.containers)} running containers carry its label: "
                                   + ", ".join(c.name for c in discovery.containers))]
                + ([_line("edge_container", edge.owner, "the container behind the TLS port")]
                   if edge else ["# edge_container = \"NAME\"   # FILL IN: the only container allowed to "
                                 "publish ports"]) + log_lines)
    lines = ["[local]"]
    found = [(n, f) for n, _, f in discovery.processes if f is not None]
    missing = [f"{n} (pid {p})" for n, p, f in discovery.processes if f is None]
    if found:
        lines.append("processes = [")
        lines += [f"    {_value({'name': n, 'pid_file': str(f), 'include_children': True})},"
                  for n, f in found]
        lines.append("]")
    if missing:
        lines.append(f"# FILL IN: no pid file verified for {', '.join(missing)}; add "
                     "{ name = ..., pid_file = ... } for each. Needed by "
                     f"{checks_needing('processes', needs)}.")
    return lines + log_lines


def _scan(discovery: Discovery, needs: Mapping[str, Sequence[str]]) -> list[str]:
    lines = ["[scan]", "# The key search (keys.no_key_elsewhere) reads these files for keys that must "
             "live only in the HSM.",
             "# FILL IN: the service's source trees (init cannot tell them from the images).",
             '# source_paths = ["/srv/votriz/src"]']
    if discovery.config_paths:
        lines.append(_line("config_paths", [str(p) for p in discovery.config_paths]) +
                     "  # mounted read-only with a configuration suffix")
    else:
        lines.append('# config_paths = ["/srv/votriz/api.toml"]   # FILL IN: no configuration file found')
    return lines


def _operations(discovery: Discovery, needs: Mapping[str, Sequence[str]]) -> list[str]:
    lines = ["[operations]",
             "# Rotations (under live load), backups, pruning and the restore drill change the target:",
             "# set true in a maintenance window. While false, the checks that need them are MANUAL.",
             _line("allow_destructive", False),
             f"# FILL IN: the operator's command (an argv list, no shell) for each; needed by "
             f"{checks_needing('destructive', needs)}."]
    lines += [f'# {field} = ["..."]   # {what}' for field, what in OPERATION_COMMANDS.items()]
    lines.append(_line("backup_dir", str(discovery.backup_dir), "a writable mount named *backup*")
                 if discovery.backup_dir else '# backup_dir = "/srv/votriz/backups"   # FILL IN')
    lines.append(_line("drill_log", str(discovery.drill_log), "a writable mounted file named *drill*")
                 if discovery.drill_log else '# drill_log = "/srv/votriz/drills.log"   # FILL IN')
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m harness.init_profile``: the command on its own, until the CLI wires it."""
    parser = argparse.ArgumentParser(prog="votriz-audit init", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
