"""Docker stacks on the real engine: images built offline, a clean topology, the container faults, down.

The clean stack is shared by the module; the two topology faults share a
second stack, which the last test also takes down. Each stack has its own
id, so these tests can run next to other stacks.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from audit_cli import run_cli

from checks.containers.bridge_networks import bridge_networks_verdict
from checks.containers.isolation import isolation_verdict
from checks.containers.published_ports import published_ports_verdict
from harness.outcomes import Outcome
from harness.probes.containers import observe_topology
from harness.profile import load_profile
from system_under_test.docker import engine as docker_engine
from system_under_test.docker import images, stack, topology
from system_under_test.docker.stack import StackInfo

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOST = "votriz.test"


@pytest.fixture(scope="module")
def client():
    try:
        engine = docker_engine.docker_client()
    except stack.StackError as exc:
        pytest.fail(f"these tests need a Docker engine: {exc}")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def clean_stack(client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    state_dir = tmp_path_factory.mktemp("docker-clean") / "state"
    try:
        yield stack.up(state_dir, client=client)
    finally:
        stack.down(state_dir, client=client)


def tls_get(info: StackInfo, path: str, *, version: ssl.TLSVersion | None = None) -> tuple[str, bytes]:
    """GET ``path`` through the published 443 with SNI votriz.test; the TLS version and the answer."""
    context = ssl.create_default_context(cafile=str(info.ca_file))
    if version is not None:
        context.minimum_version = context.maximum_version = version
    with socket.create_connection(("127.0.0.1", info.https_port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=HOST) as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
        return str(tls.version()), answer


def test_images_are_built_from_local_bases(client, clean_stack: StackInfo) -> None:
    # Given the images the stack runs
    built = images.ensure_images(client)
    # Then each is tagged by its input hash, is cached now, and was built FROM its parent:
    # api and fakes on the python image, every image on the one imported base
    shared_base = None
    for part in images.PARTS:
        result = built[part]
        assert result.tag == clean_stack.images[part] and not result.built
        parent = images.PARENTS[part]
        assert result.base_tag.startswith(f"{images.REPOSITORY}/{parent}:")
        history = {layer["Id"] for layer in client.images.get(result.tag).history()}
        assert client.images.get(result.base_tag).id in history, f"{part} is not built on {result.base_tag}"
        roots = {layer["Id"] for layer in client.images.get(result.tag).history()
                 if any(t.startswith(f"{images.REPOSITORY}/base:") for t in (layer.get("Tags") or []))}
        assert len(roots) == 1, part
        shared_base = shared_base or roots
        assert roots == shared_base, f"{part} is not on the shared base"


def test_the_service_modules_are_compiled_in_the_image(clean_stack: StackInfo) -> None:
    # Given the API container (PYTHONDONTWRITEBYTECODE=1: no interpreter caches at run time)
    api = clean_stack.containers["api"]
    # When an ops command's modules are imported, verbosely
    result = subprocess.run(["docker", "exec", api, "python", "-v", "-c",
                             "import system_under_test.ops.__main__, system_under_test.ops.rotation"],
                            capture_output=True, text=True, timeout=60, check=True)
    # Then each module of /opt/votriz/src came from the image's .pyc, none compiled from its source
    used = [line for line in result.stderr.splitlines() if "/opt/votriz/src/" in line and " matches " in line]
    compiled = [line for line in result.stderr.splitlines() if line.startswith("# code object from")
                and "/opt/votriz/src/" in line and line.endswith(".py'")]
    assert len(used) >= 10 and compiled == [], compiled[:3]


def test_each_stack_makes_its_own_cluster_at_its_start(client, clean_stack: StackInfo) -> None:
    # Given the db image: it holds no cluster (one made at build would give every stack of the
    # image the same system identifier and mock authentication nonce: the reviewer's finding)
    image = clean_stack.images["db"]
    assert client.containers.run(image, ["sh", "-c", "ls -A /var/lib/votriz/pgdata | wc -l"],
                                 remove=True).strip() == b"0"
    # Then the stack's database runs on a volume of its own, its cluster made there at start
    db = client.containers.get(clean_stack.containers["db"])
    mount = next(m for m in db.attrs["Mounts"] if m["Destination"] == "/var/lib/votriz/pgdata")
    assert mount["Type"] == "volume" and clean_stack.stack_id in mount["Name"]
    # and its roles were made at start: the image's cluster has none but the superuser
    roles = subprocess.run(["docker", "exec", db.name, "psql", "-h", "/var/run/votriz-pg", "-U", "postgres",
                            "-Atc", "SELECT rolname FROM pg_roles WHERE rolname LIKE 'votriz%' ORDER BY 1"],
                           capture_output=True, text=True, timeout=30, check=True).stdout.split()
    assert roles and all(role.startswith("votriz_") for role in roles)


def test_the_db_image_makes_a_cluster_in_an_empty_data_directory(client, clean_stack: StackInfo,
                                                                  tmp_path: Path) -> None:
    # Given an empty data directory of the service user's (a bind mount: Docker copies nothing in)
    data = tmp_path / "pgdata"
    data.mkdir(mode=0o700)
    data.chmod(0o700)
    os.chown(data, topology.SERVICE_UID, topology.SERVICE_GID)
    # When the db image starts on it
    hba = clean_stack.state_dir / "docker" / "pg_hba.conf"
    container = client.containers.run(clean_stack.images["db"], detach=True, network_mode="none",
                                      volumes={str(data): {"bind": "/var/lib/votriz/pgdata", "mode": "rw"},
                                               str(hba): {"bind": "/etc/votriz/pg_hba.conf", "mode": "ro"}})
    try:
        deadline = time.monotonic() + 60
        while b"ready to accept connections" not in container.logs() and time.monotonic() < deadline:
            time.sleep(0.2)
        # Then start.sh made the cluster there and PostgreSQL runs on it
        assert b"ready to accept connections" in container.logs(), container.logs()[-500:]
        assert (data / "PG_VERSION").read_text().strip() == "15"
    finally:
        container.remove(force=True)


def test_tls13_handshake_on_published_443_reaches_the_api(clean_stack: StackInfo) -> None:
    version, answer = tls_get(clean_stack, "/healthz")
    assert version == "TLSv1.3"
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status":"ok"}')
    with pytest.raises(ssl.SSLError):
        tls_get(clean_stack, "/healthz", version=ssl.TLSVersion.TLSv1_2)


def test_status_reports_every_container_running(client, clean_stack: StackInfo) -> None:
    current = stack.status(clean_stack.state_dir, client=client)
    assert current.healthy and set(current.running) == {"edge", "api", "db", "redis", "hsm", "fakes"}


def test_only_the_edge_publishes_and_only_on_loopback(client, clean_stack: StackInfo) -> None:
    for role, name in clean_stack.containers.items():
        ports = client.containers.get(name).attrs["NetworkSettings"]["Ports"] or {}
        bindings = {port: b for port, b in ports.items() if b}
        if role == "edge":
            assert set(bindings) == {"443/tcp", "80/tcp"}
            assert {b["HostIp"] for bs in bindings.values() for b in bs} == {"127.0.0.1"}
        else:
            assert bindings == {}, f"{name} publishes {bindings}"


def test_container_checks_pass_on_the_clean_topology(clean_stack: StackInfo) -> None:
    # Given the profile up wrote
    profile = load_profile(clean_stack.profile_path)
    assert profile.backend == "docker" and profile.docker is not None
    # When the harness's probe observes the project
    observed = observe_topology(profile.docker.project)
    # Then the service's five containers carry their roles (the fakes, the internet's stand-in, are
    # a Compose project of their own) and every container check passes
    assert sorted(c.role for c in observed.containers) == ["api", "db", "edge", "hsm", "redis"]
    assert published_ports_verdict(observed, profile.docker.edge_container).outcome is Outcome.PASS
    assert bridge_networks_verdict(observed).outcome is Outcome.PASS
    assert isolation_verdict(observed).outcome is Outcome.PASS


def test_api_container_has_no_token_files_and_no_secret_in_its_environment(
        client, clean_stack: StackInfo) -> None:
    api = client.containers.get(clean_stack.containers["api"])
    env = dict(item.split("=", 1) for item in api.attrs["Config"]["Env"])
    pin = (clean_stack.state_dir / "secrets" / "hsm-pin").read_text(encoding="ascii").strip()
    # Only paths and the p11-kit socket address: no PIN, no key, whatever the variable's name.
    assert env["P11_KIT_SERVER_ADDRESS"] == "unix:path=/run/p11/sock"
    assert env["VOTRIZ_HSM_PIN_FILE"] == "/run/secrets/hsm-pin"
    assert not any(pin in value for value in env.values())
    assert not {"VOTRIZ_HSM_PIN", "VOTRIZ_TOKEN_ENCRYPTION_KEY", "SOFTHSM2_CONF"} & set(env)
    # No SoftHSM token files anywhere in the container, and the PIN file is a read-only mount.
    # (No -xdev: a bind-mounted token directory is exactly what must not be found.)
    found = api.exec_run(["sh", "-c", "find / \\( -path /proc -o -path /sys \\) -prune -o "
                                      "-name '*.object' -print 2>/dev/null; test -e "
                                      f"{clean_stack.state_dir / 'tokens'} && echo tokens-dir"])
    assert found.output.decode().strip() == ""
    mounts = {m["Destination"]: m for m in api.attrs["Mounts"]}
    assert mounts["/run/secrets/hsm-pin"]["RW"] is False
    assert str(clean_stack.state_dir / "tokens") not in {m["Source"] for m in api.attrs["Mounts"]}
    # While the HSM container does hold the token.
    hsm = client.containers.get(clean_stack.containers["hsm"])
    assert hsm.exec_run(["sh", "-c", f"ls {clean_stack.state_dir / 'tokens'}/*/token.object"]).exit_code == 0


def test_operations_of_the_profile_run_in_the_api_container(clean_stack: StackInfo) -> None:
    # Given the profile's operator commands (docker exec into the API container)
    operations = load_profile(clean_stack.profile_path).operations
    assert operations.backup is not None and operations.restore_drill is not None
    # When a backup and a restore drill run
    for argv in (operations.backup, operations.restore_drill):
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stderr[-300:]
    # Then the encrypted backup and the drill's log are on the host where the profile says
    assert operations.backup_dir is not None and list(operations.backup_dir.glob("votriz-*.dump.enc"))
    assert operations.drill_log is not None
    assert json.loads(operations.drill_log.read_text(encoding="utf-8").splitlines()[-1])["ok"] is True


def test_api_reaches_the_hsm_through_p11_kit(client, clean_stack: StackInfo) -> None:
    # The API came up, so its workers read their keys; show the path explicitly too.
    api = client.containers.get(clean_stack.containers["api"])
    listing = api.exec_run(["python", "-c",
                            "import pkcs11; lib = pkcs11.lib('/usr/lib/x86_64-linux-gnu/pkcs11/"
                            "p11-kit-client.so'); print([t.label for t in lib.get_tokens()])"])
    assert listing.exit_code == 0 and b"'votriz'" in listing.output


@pytest.fixture(scope="module")
def faulty_stack(client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    state_dir = tmp_path_factory.mktemp("docker-faults") / "state"
    try:
        # Faults with independent symptoms share one stack: two container faults,
        # an edge fault (the nginx configuration is the local backend's), key-in-env,
        # key-in-image and api-plaintext-exposed.
        yield stack.up(state_dir, ["db-port-published", "host-network", "tls12-accepted", "key-in-env",
                                   "key-in-image", "api-plaintext-exposed"], client=client)
    finally:
        stack.down(state_dir, client=client)


def test_container_checks_fail_with_db_port_published_and_host_network(faulty_stack: StackInfo) -> None:
    # Given a stack whose db publishes 5432 and whose HSM runs on the host's network
    observed = observe_topology(faulty_stack.project)
    db, hsm = faulty_stack.containers["db"], faulty_stack.containers["hsm"]
    # Then the published-ports check names the db
    ports = published_ports_verdict(observed, faulty_stack.edge_container)
    assert ports.outcome is Outcome.FAIL
    assert f"{db} publishes 5432/tcp on 127.0.0.1:" in ports.message
    assert "(only the edge may publish ports)" in ports.message
    # And the bridge-network check names the HSM's host network (and the db on a routable network)
    networks = bridge_networks_verdict(observed)
    assert networks.outcome is Outcome.FAIL
    assert f"{hsm} uses network mode host" in networks.message
    assert f"{db} (db) is on {faulty_stack.project}-public" in networks.message
    isolation = isolation_verdict(observed)
    assert isolation.outcome is Outcome.FAIL and f"{hsm} shares the host's network namespace" in isolation.message


def test_faulty_stack_still_serves(faulty_stack: StackInfo) -> None:
    # The HSM's socket does not depend on its network, so the API still has its keys.
    version, answer = tls_get(faulty_stack, "/healthz")
    assert version == "TLSv1.3" and answer.startswith(b"HTTP/1.1 200")


def test_edge_and_env_faults_apply_in_docker(client, faulty_stack: StackInfo) -> None:
    # tls12-accepted: the edge now completes a TLS 1.2 handshake.
    version, answer = tls_get(faulty_stack, "/healthz", version=ssl.TLSVersion.TLSv1_2)
    assert version == "TLSv1.2" and answer.startswith(b"HTTP/1.1 200")
    # key-in-env: the token-encryption key is in the API container's environment.
    env = client.containers.get(faulty_stack.containers["api"]).attrs["Config"]["Env"]
    assert any(item.startswith("VOTRIZ_TOKEN_ENCRYPTION_KEY=") and len(item) > 60 for item in env)


def test_full_audit_of_the_clean_topology_observes_every_promise(clean_stack: StackInfo,
                                                                 tmp_path: Path) -> None:
    # When the whole audit runs against the Docker topology through its profile
    run = run_cli(clean_stack.profile_path, tmp_path / "report", limit_s=600)
    # Then the gate passes, and every check observed the system: only the volume
    # encryption (invisible from any connection) and the plaintext sweep's
    # unsearchable areas may need a human; nothing is N/A or an error
    by_outcome: dict[str, list[str]] = {}
    for check_id, (outcome, _) in run.results.items():
        by_outcome.setdefault(outcome, []).append(check_id)
    assert run.returncode == 0, by_outcome
    assert set(by_outcome) <= {"PASS", "MANUAL"}, by_outcome
    # (and keys.hsm_hardware: the token is SoftHSM2, a software token, without an attestation)
    assert sorted(by_outcome["MANUAL"]) == ["at_rest.volume_encryption", "keys.hsm_hardware"], by_outcome
    assert len(by_outcome["PASS"]) == len(run.results) - 2
    # The database, HSM, Redis and capture were all reached from the host
    for check_id in ("at_rest.tokens_fernet", "keys.hsm_custody", "keys.redis_password_rotation",
                     "transit.outbound_https", "transit.origin_not_plaintext", "keys.no_key_elsewhere"):
        assert run.outcome(check_id) == "PASS", run.message(check_id)


def test_an_operator_profile_without_capture_follows_the_canary_through_the_mailbox(
        clean_stack: StackInfo, tmp_path: Path) -> None:
    # Given the stack's profile as an operator has it: no [capture], containers by Compose project,
    # the canary's mail read from the mailbox (Dovecot in the fakes' container) over IMAPS
    data = tomllib.loads(clean_stack.profile_path.read_text(encoding="utf-8"))
    del data["capture"]
    assert "compose_project" in data["docker"] and data["mailbox"]["server_name"] == "fakes.votriz.test"
    (tmp_path / "target.toml").write_text(tomli_w.dumps(data), encoding="utf-8")
    # When the at-rest area runs
    run = run_cli(tmp_path / "target.toml", tmp_path / "report", only=("at_rest",), limit_s=600)
    # Then the canary's checks observe (none MANUAL for want of the fakes), the recovery token
    # taken from the mail that reached the mailbox
    checks = ("at_rest.backup_codes", "at_rest.recovery_tokens", "at_rest.plaintext_sweep")
    assert {c: run.outcome(c) for c in checks} == dict.fromkeys(checks, "PASS"), \
        {c: run.message(c) for c in checks}
    assert "reached the canary only in the mail link" in run.message("at_rest.recovery_tokens")


def test_docker_probes_fail_on_their_faults_through_the_cli(faulty_stack: StackInfo, tmp_path: Path) -> None:
    run = run_cli(faulty_stack.profile_path, tmp_path / "report", only=("keys", "transit"), limit_s=600)
    assert run.returncode == 1
    # key-in-image and key-in-env: the token key found by its value in the layer the fault
    # added and in the API container's environment
    outcome, message = run.results["keys.no_key_elsewhere"]
    assert outcome == "FAIL", message
    assert "votriz/token-encryption/v1 (base64" in message
    assert " in image votriz-audit/api-key-in-image:" in message
    assert "/etc/votriz/token.key@0" in message
    assert "$VOTRIZ_TOKEN_ENCRYPTION_KEY" in message
    # api-plaintext-exposed: the API container's extra listener answers plain HTTP on its address
    outcome, message = run.results["transit.origin_not_plaintext"]
    assert outcome == "FAIL", message
    assert f"{faulty_stack.containers['api']} (" in message
    assert ":8000 answers plain HTTP with 'HTTP/1.1 " in message
    # tls12-accepted
    assert run.outcome("transit.tls_versions") == "FAIL"


def test_a_key_the_hsm_no_longer_holds_is_still_found_in_the_environment_and_the_image(
        faulty_stack: StackInfo, tmp_path: Path) -> None:
    # Given the faulty stack after a token-key rotation: the key that key-in-env put in the API's
    # environment and key-in-image in a layer is a retired version, no longer on the token
    rotate = load_profile(faulty_stack.profile_path).operations.rotate_token_key
    assert rotate is not None
    subprocess.run(list(rotate), check=True, capture_output=True, timeout=300)
    # When the key search and the environment check run
    run = run_cli(faulty_stack.profile_path, tmp_path / "report",
                  checks=("keys.no_key_elsewhere", "keys.read_at_start"), limit_s=600)
    # Then both still FAIL: the copies are found by their shape, each named with its place
    outcome, message = run.results["keys.no_key_elsewhere"]
    assert outcome == "FAIL", message
    assert "fernet-key in env " in message and "$VOTRIZ_TOKEN_ENCRYPTION_KEY" in message
    assert "fernet-key in image votriz-audit/api-key-in-image:" in message, message
    assert "/etc/votriz/token.key@0" in message
    outcome, message = run.results["keys.read_at_start"]
    assert outcome == "FAIL" and "$VOTRIZ_TOKEN_ENCRYPTION_KEY" in message, message


def test_a_service_container_that_is_down_is_an_error_not_a_survey_of_the_rest(
        client, faulty_stack: StackInfo, tmp_path: Path) -> None:
    # Given the faulty stack's API container ended (as gunicorn halts on a worker's boot error),
    # its plaintext listener gone with it
    api = client.containers.get(faulty_stack.containers["api"])
    api.kill()
    api.wait(timeout=30)
    # When the container-reading checks run
    run = run_cli(faulty_stack.profile_path, tmp_path / "report", only=("transit", "keys"), limit_s=600)
    # Then the listener survey and the environment search say the API is down: ERROR, never a
    # PASS about the containers still running (CI once saw "None of the 4 TCP listeners of db,
    # edge, hsm, redis serves plain HTTP" with the API gone)
    for check_id in ("transit.origin_not_plaintext", "keys.read_at_start", "transit.outbound_https"):
        outcome, message = run.results[check_id]
        assert outcome == "ERROR", (check_id, message)
        assert f"{api.name} is exited (exit code 137 at " in message, (check_id, message)
    assert run.returncode != 0


def test_down_removes_containers_networks_volumes_and_state(client, faulty_stack: StackInfo) -> None:
    # Given the stack's objects exist
    before = docker_engine.stack_objects(faulty_stack.stack_id, client=client)
    assert len(before["containers"]) == 6 and len(before["networks"]) == 2
    assert len(before["volumes"]) == len(topology.VOLUMES)
    assert before["images"] == [f"votriz-audit/api-key-in-image:{faulty_stack.stack_id}"]
    # When it is taken down (twice: down is idempotent)
    stack.down(faulty_stack.state_dir, client=client)
    stack.down(faulty_stack.state_dir, client=client)
    # Then nothing labelled with its id is left, nor its state directory
    assert docker_engine.stack_objects(faulty_stack.stack_id, client=client) == {
        "containers": [], "networks": [], "volumes": [], "images": []}
    assert not faulty_stack.state_dir.exists()


def test_down_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious").write_text("keep me", encoding="utf-8")
    with pytest.raises(stack.StackError, match="not created by"):
        stack.down(tmp_path)
    assert (tmp_path / "precious").exists()


def test_failed_up_removes_what_it_created_and_the_secrets(client, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an up whose API step fails after every other container started
    def broken(*args, **kwargs):
        raise stack.StackError("ops migrate failed: simulated")

    monkeypatch.setattr(docker_engine, "run_ops_container", broken)
    state_dir = tmp_path / "state"
    with pytest.raises(stack.StackError, match="simulated"):
        stack.up(state_dir, client=client)
    # Then no object of that stack is left, the secrets and token are gone, the logs stay
    stack_id = (state_dir / stack.MARKER).read_text(encoding="ascii").strip()
    assert docker_engine.stack_objects(stack_id, client=client) == {"containers": [], "networks": [], "volumes": [],
                                                            "images": []}
    assert not (state_dir / "secrets").exists() and not (state_dir / "tokens").exists()
    assert (state_dir / "logs").is_dir()
    stack.down(state_dir, client=client)
    assert not state_dir.exists()
