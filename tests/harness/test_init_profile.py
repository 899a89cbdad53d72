"""``votriz-audit init``: the draft profile (validates as written, comments what it lacks and the
checks that need it), the output file (0600, never over an existing one without --force), one-line
refusals with exit 3, and, against a real Docker reference stack, a draft that already observes the
edge and container promises."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from harness import init_profile
from harness.probes import local_discovery
from harness.probes.discovery import (
    BindMount,
    Discovery,
    EdgeCertificate,
    FoundContainer,
    FoundEdge,
    FoundListener,
    edge_certificate,
)
from harness.profile import load_profile, parse_profile

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
NEEDS = {"transit.certificate": ("edge",), "at_rest.tokens_fernet": ("api", "database", "hsm"),
         "at_rest.plaintext_sweep": ("api", "database", "redis", "files"),
         "keys.token_key_rotation": ("database", "hsm", "destructive"),
         "at_rest.volume_encryption": ("attestation",)}


def parse_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="votriz-audit init")
    init_profile.configure_parser(parser)
    return parser.parse_args(list(argv))


def docker_discovery(tmp_path: Path) -> Discovery:
    return Discovery(
        backend="docker", project="votriz",
        containers=(FoundContainer("votriz-edge-1", "edge", "edge:1", (("127.0.0.1", 8443, "443/tcp"),),
                                   (BindMount(tmp_path / "logs" / "edge", "/var/log/nginx", True),)),
                    FoundContainer("votriz-api-1", "api", "api:1", (), ())),
        edge=FoundEdge("votriz-edge-1", "127.0.0.1", 8443, 8080,
                       EdgeCertificate(("app.votriz.example",), "CN=Votriz CA", False, tmp_path / "ca.pem")),
        postgres_sockets=(FoundListener(str(tmp_path / "pg" / ".s.PGSQL.5433"), None, "postgres", "votriz-db-1"),),
        p11_sockets=(FoundListener(str(tmp_path / "p11" / "sock"), None, "p11-kit-server", "votriz-hsm-1"),),
        redis=(FoundListener("172.30.0.4", 6379, "redis-server", "votriz-redis-1"),),
        hsm_env=(("SOFTHSM2_CONF", str(tmp_path / "softhsm2.conf")),),
        log_dirs=(tmp_path / "logs" / "api", tmp_path / "logs" / "edge"),
        config_paths=(tmp_path / "api.toml",), backup_dir=tmp_path / "backups")


def uncommented(text: str) -> str:
    """The draft with its commented-out sections switched on, as an operator does once the secret
    files exist (the explanatory comments above each section stay comments)."""
    lines, active = [], False
    for line in text.splitlines():
        if line in ("# [database]", "# [hsm]", "# [redis]", "# [mailbox]"):
            active = True
        if active and line.startswith("# "):
            lines.append(line[2:])
            continue
        active = active and line != ""
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_docker_draft_validates_with_every_found_section_and_secret_sections_commented(tmp_path: Path) -> None:
    text = init_profile.render_profile(docker_discovery(tmp_path), name="votriz", now=NOW, checks=NEEDS)
    profile = parse_profile(text, source="draft")
    # What was observed is written as found:
    assert (profile.edge.host, profile.edge.address, profile.edge.https_port, profile.edge.http_port) == \
        ("app.votriz.example", "127.0.0.1", 8443, 8080)
    assert profile.edge.trust_anchor == tmp_path / "ca.pem"
    assert profile.capture is None and profile.backend == "docker"
    assert profile.docker is not None and profile.docker.compose_project == "votriz"
    assert profile.docker.edge_container == "votriz-edge-1" and profile.docker.log_dir == tmp_path / "logs"
    assert profile.scan.config_paths == (tmp_path / "api.toml",)
    assert profile.operations.backup_dir == tmp_path / "backups"
    assert profile.operations.allow_destructive is False
    # what needs a secret file is commented out, saying what to fill in and the checks that need it:
    assert profile.database is None and profile.hsm is None and profile.redis is None
    assert "# Needed by: at_rest.plaintext_sweep, at_rest.tokens_fernet, keys.token_key_rotation." in text
    assert "# FILL IN: the read-only auditor role's password in a file (chmod 600), then uncomment." in text
    assert "# FILL IN: the token's user PIN in a file (chmod 600), then uncomment." in text
    assert "needed by keys.token_key_rotation." in text  # the operations commands
    assert "# Needed by: at_rest.volume_encryption." in text
    # and once those sections are switched on, they are the found sockets and addresses.
    filled = parse_profile(uncommented(text), source="filled")
    assert filled.database is not None
    assert filled.database.dsn == f"host={tmp_path / 'pg'} port=5433 dbname=votriz user=votriz_auditor"
    assert filled.database.password is not None and filled.database.password.file == Path("secrets/auditor-password")
    assert filled.hsm is not None and filled.hsm.env == {
        "P11_KIT_SERVER_ADDRESS": f"unix:path={tmp_path / 'p11' / 'sock'}",
        "SOFTHSM2_CONF": str(tmp_path / "softhsm2.conf")}
    assert filled.redis is not None and (filled.redis.host, filled.redis.port) == ("172.30.0.4", 6379)
    assert filled.mailbox is not None and filled.mailbox.password.file == Path("secrets/mailbox-password")
    assert "read over IMAP with TLS" in text and "Needed by at_rest.recovery_tokens." in text


def test_the_checks_named_for_the_mailbox_are_checks() -> None:
    from harness.checkdir import declared_checks

    assert set(init_profile.RECOVERY_MAIL_CHECKS) <= set(declared_checks())


def test_a_draft_of_nothing_found_still_validates_and_says_what_is_missing() -> None:
    text = init_profile.render_profile(Discovery(backend="local", project=None), name="bare", now=NOW,
                                       checks=NEEDS)
    profile = parse_profile(text, source="draft")
    assert profile.edge.host == "edge.invalid" and profile.local is not None and profile.local.processes == ()
    assert "# FILL IN: no published port of the deployment completed a TLS handshake." in text
    assert "# Needed by: transit.certificate." in text
    # No edge, so nothing is known of its plaintext port: the default stays, the other spelling shown
    assert profile.edge.http_port == 80
    assert '# http_port = 80  # or "none" when the edge serves no plain HTTP' in text
    assert "# FILL IN [database]: no PostgreSQL socket is reachable from this host." in text
    assert "# FILL IN: no log directory was found; needed by at_rest.plaintext_sweep." in text


def test_local_draft_lists_processes_with_verified_pid_files_and_names_the_rest(tmp_path: Path) -> None:
    found = Discovery(backend="local", project=None,
                      processes=(("edge", 10, tmp_path / "nginx.pid"), ("api", 11, None)),
                      edge=FoundEdge("edge", "127.0.0.1", 8443, None,
                                     EdgeCertificate(("*.votriz.example",), "CN=Public CA", True)))
    text = init_profile.render_profile(found, name="local", now=NOW, checks=NEEDS)
    profile = parse_profile(text, source="draft")
    assert profile.local is not None and [(p.name, p.pid_file) for p in profile.local.processes] == \
        [("edge", tmp_path / "nginx.pid")]
    assert "no pid file verified for api (pid 11)" in text
    # A wildcard-only certificate gives no host name: said, not guessed; the system store trusts it.
    assert "# FILL IN: the certificate names no host init can use (*.votriz.example)" in text
    assert profile.edge.trust_anchor is None and "trust_anchor" not in text.split("[api]")[0]
    # No other port of the edge answered plain HTTP: the draft says it serves none, in the one
    # spelling a profile has for it, and says that the check looks at port 80 all the same
    assert profile.edge.http_port is None
    assert 'http_port = "none"  # the edge serves no plain HTTP' in text
    assert "# No plaintext port of the edge was found (edge has no other port init could see)." in text
    assert "# transit.http_redirect_only still looks at port 80 of the host" in text


@pytest.mark.parametrize(("tried", "said"), [
    ((8080,), "port 8080 of votriz-edge-1 did not answer plain HTTP"),
    ((80, 8080), "ports 80, 8080 of votriz-edge-1 did not answer plain HTTP"),
])
def test_a_draft_names_the_ports_asked_for_plain_http_before_saying_none(
        tmp_path: Path, tried: tuple[int, ...], said: str) -> None:
    found = docker_discovery(tmp_path)
    assert found.edge is not None
    edge = dataclasses.replace(found.edge, http_port=None, http_ports_tried=tried)
    text = init_profile.render_profile(dataclasses.replace(found, edge=edge), name="votriz", now=NOW,
                                       checks=NEEDS)
    assert parse_profile(text, source="draft").edge.http_port is None
    assert f"# No plaintext port of the edge was found ({said})." in text


def test_output_file_is_new_0600_and_not_overwritten_without_force(tmp_path: Path) -> None:
    target = tmp_path / "draft.toml"
    old_umask = os.umask(0)
    try:
        init_profile.write_new_file(target, "one\n", force=False)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "one\n"
    with pytest.raises(init_profile.OutputRefused, match="exists; not overwritten"):
        init_profile.write_new_file(target, "two\n", force=False)
    assert target.read_text() == "one\n"
    init_profile.write_new_file(target, "two\n", force=True)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "two\n"


def test_a_symbolic_link_at_the_output_is_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    link = tmp_path / "draft.toml"
    link.symlink_to(victim)
    with pytest.raises(init_profile.OutputRefused):
        init_profile.write_new_file(link, "x\n", force=False)
    init_profile.write_new_file(link, "x\n", force=True)  # replaces the link itself
    assert victim.read_text() == "keep\n" and not link.is_symlink() and link.read_text() == "x\n"
    with pytest.raises(init_profile.OutputRefused, match="is a directory"):
        init_profile.write_new_file(tmp_path, "x\n", force=True)
    with pytest.raises(init_profile.OutputRefused, match="cannot be written: No such file or directory"):
        init_profile.write_new_file(tmp_path / "absent" / "draft.toml", "x\n", force=False)


def test_no_engine_is_one_line_and_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/no-such-docker-engine.sock")
    code = init_profile.run(parse_args("--docker-project", "votriz", "--output", str(tmp_path / "p.toml")))
    captured = capsys.readouterr()
    assert code == 3 and captured.out == "" and not (tmp_path / "p.toml").exists()
    assert captured.err.count("\n") == 1 and captured.err.startswith("votriz-audit init: --docker-project")
    assert "no-such-docker-engine.sock" in captured.err


def test_the_parser_wants_exactly_one_kind_of_deployment() -> None:
    with pytest.raises(SystemExit):
        parse_args()
    with pytest.raises(SystemExit):
        parse_args("--local", "--docker-project", "votriz")
    assert parse_args("--local").local is True


# --- against a real Docker reference stack ----------------------------------------------------

@pytest.fixture(scope="module")
def docker_reference() -> Iterator[object]:
    from system_under_test.docker import engine, stack

    try:
        client = engine.docker_client()
    except stack.StackError as exc:
        pytest.fail(f"this test needs a Docker engine: {exc}")
    # A short path under /tmp: the auditor's p11-kit and PostgreSQL sockets live below it.
    state_dir = Path(tempfile.mkdtemp(prefix="h18a-init-", dir="/tmp")) / "state"
    try:
        yield stack.up(state_dir, client=client)
    finally:
        stack.down(state_dir, client=client)
        state_dir.parent.rmdir()
        client.close()


@pytest.mark.integration
@pytest.mark.slow
def test_init_against_the_docker_reference_writes_a_profile_that_observes_edge_and_containers(
        docker_reference, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from audit_cli import run_cli

    info = docker_reference
    target = tmp_path / "draft.toml"
    # Given the reference running as Compose project P, when init is pointed at P,
    code = init_profile.run(parse_args("--docker-project", info.project, "--output", str(target)))
    err = capsys.readouterr().err
    assert code == 0, err
    # (the fakes stand in for the internet in a Compose project of their own: not the deployment's)
    assert "found 5 container(s)" in err and info.containers["fakes"] not in target.read_text()
    # then it wrote 0600 a profile that loads as is and holds what the stack's own profile says,
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    draft, own = load_profile(target), load_profile(info.profile_path)
    assert draft.edge.host == own.edge.host and draft.edge.address == own.edge.address
    assert (draft.edge.https_port, draft.edge.http_port) == (own.edge.https_port, own.edge.http_port)
    assert draft.edge.trust_anchor == own.edge.trust_anchor
    assert draft.docker is not None and own.docker is not None
    assert (draft.docker.compose_project, draft.docker.edge_container, draft.docker.log_dir) == \
        (own.docker.compose_project, own.docker.edge_container, own.docker.log_dir)
    assert draft.capture is None and draft.database is None and draft.hsm is None
    text = target.read_text()
    assert own.database is not None and own.database.dsn.split(" user=")[0].split("host=")[1] in text
    assert own.hsm is not None and own.hsm.env["P11_KIT_SERVER_ADDRESS"] in text
    # it is never written over without --force (one line, exit 3), and is with it;
    assert init_profile.run(parse_args("--docker-project", info.project, "--output", str(target))) == 3
    assert capsys.readouterr().err.count("\n") == 1
    assert init_profile.run(parse_args("--docker-project", info.project, "--output", str(target),
                                       "--force")) == 0
    # and run as is, it observes the edge and container promises: every check PASSes.
    run = run_cli(target, tmp_path / "report", only=("transit", "containers"))
    assert run.returncode == 0, run.output[-3000:]
    outcomes = {check: outcome for check, (outcome, _) in run.results.items()}
    assert outcomes and set(outcomes.values()) == {"PASS"}, run.output[-3000:]
    assert {"transit.certificate", "transit.tls_versions", "containers.published_ports",
            "containers.isolation"} <= set(outcomes)


@pytest.mark.integration
def test_no_such_project_is_one_line_and_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception as exc:  # no engine here: this test is about a running one
        pytest.skip(f"no Docker engine: {exc}")
    assert init_profile.run(parse_args("--docker-project", "no-such-project-h18a")) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no running container is labelled com.docker.compose.project=no-such-project-h18a" in err


@pytest.mark.integration
def test_init_local_against_the_local_reference_observes_the_edge(clean_stack, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from audit_cli import run_cli

    own = load_profile(clean_stack.profile_path)
    target = tmp_path / "draft.toml"
    # Given the local reference among whatever else runs on this host, when init is given its edge port,
    code = init_profile.run(parse_args("--local", "--edge-port", str(own.edge.https_port),
                                       "--output", str(target)))
    assert code == 0, capsys.readouterr().err
    # then the draft loads, names its edge as its own profile does, and lists its processes;
    draft = load_profile(target)
    assert (draft.edge.host, draft.edge.https_port, draft.edge.http_port, draft.edge.trust_anchor) == \
        (own.edge.host, own.edge.https_port, own.edge.http_port, own.edge.trust_anchor)
    assert draft.local is not None and {p.name for p in draft.local.processes} >= {"edge", "api", "postgres"}
    # and run as is, the edge's promises are observed.
    run = run_cli(target, tmp_path / "report", only=("transit",))
    outcomes = {check: outcome for check, (outcome, _) in run.results.items()}
    for check in ("transit.certificate", "transit.tls_versions", "transit.hsts", "transit.http_redirect_only"):
        assert outcomes[check] == "PASS", run.output[-3000:]
    assert "ERROR" not in outcomes.values(), run.output[-3000:]


# --- what was observed cannot write the draft (review #6) ------------------------------------------

HOSTILE = 'Evil CA\nhttp_port = 18080\nsample_paths = []\n" ] \x1b[2K\u2028# x'


def hostile_certificate() -> x509.Certificate:
    """A self-signed certificate whose subject and issuer common name hold newlines, quotes and a
    terminal escape, as an edge can present one."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, HOSTILE)])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))


def test_observed_names_and_paths_stay_in_their_comments_and_values(tmp_path: Path) -> None:
    # Given a certificate observed the way init observes one (nothing verifies it on port 9: refused)
    cert = edge_certificate("127.0.0.1", 9, hostile_certificate(), [], 0.5)
    assert "\n" in cert.issuer and '"' in cert.issuer
    # ... and hostile paths and names everywhere else init writes what it saw
    bad = tmp_path / 'logs\nhttp_port = 1\n"quoted"'
    found = Discovery(
        backend="local", project=None,
        processes=(("nginx\n[edge]", 10, bad / "nginx.pid"), ("gunicorn\x1b[1A", 11, None)),
        edge=FoundEdge("nginx\nhost = 'x'", "127.0.0.1", 8443, None, cert),
        postgres_sockets=(FoundListener(f"{bad}/.s.PGSQL.5432", None, "postgres", "pg\nx = 1"),),
        p11_sockets=(FoundListener(f"{bad}/p11\n", None, "p11-kit-server", "p11"),),
        redis=(FoundListener("127.0.0.1", 6379, "redis-server", "redis\r\n[scan]"),),
        hsm_env=(("SOFTHSM2_CONF", f"{bad}/softhsm2.conf"), ('K = 1 }\n[x]\n', "v")),
        log_dirs=(bad / "api",), config_paths=(bad / "api.toml",), backup_dir=bad / "backups")
    # When the draft is rendered
    text = init_profile.render_profile(found, name="hostile\nname", now=NOW, checks=NEEDS)
    # Then every line is printable (no control character, no terminal escape), and the draft parses
    assert all(line.isprintable() for line in text.splitlines())
    assert "\x1b" not in text and "\r" not in text and "\u2028" not in text
    profile = parse_profile(text, source="draft")
    # ... with the observed values as they were, and no key the observation tried to set
    assert profile.edge.http_port is None and profile.edge.sample_paths != []
    # ... and a certificate name that is no host name is not taken for the host
    assert profile.edge.host == "edge.invalid" and "# FILL IN: the certificate names no host" in text
    assert profile.name == "hostile\nname" and profile.log_dir == bad / "api"
    assert [p.pid_file for p in profile.local.processes] == [bad / "nginx.pid"]
    # ... and the commented-out sections, switched on, read back the hostile values too
    switched = parse_profile(uncommented(text), source="draft")
    assert switched.hsm is not None and dict(switched.hsm.env)['K = 1 }\n[x]\n'] == "v"


def test_a_draft_that_does_not_load_is_one_line_and_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    # Given discovery that reports a plain HTTP port no profile accepts (0)
    found = Discovery(backend="local", project=None, processes=(("nginx", 10, None),),
                      edge=FoundEdge("nginx", "127.0.0.1", 8443, 0, None))
    monkeypatch.setattr(local_discovery, "discover_local", lambda edge_port: found)
    # When init runs
    code = init_profile.run(parse_args("--local", "--output", str(tmp_path / "p.toml")))
    # Then it says so in one line, exits 3 and writes nothing
    captured = capsys.readouterr()
    assert code == 3 and captured.out == "" and not (tmp_path / "p.toml").exists()
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("votriz-audit init: the draft does not load, nothing written:")
