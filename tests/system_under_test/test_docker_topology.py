"""The Docker backend's definitions, without an engine: topology, faults, image inputs, profile."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from harness.profile import parse_profile
from system_under_test.docker import images, topology
from system_under_test.docker.stack import validate_faults
from system_under_test.docker.target_profile import render_docker_profile
from system_under_test.docker.topology import StackPaths, services
from system_under_test.faults import FAULTS
from system_under_test.provision import plan

STATE = Path("/tmp/votriz-state")


def by_role(faults=(), **kwargs):
    return {spec.role: spec for spec in services(StackPaths.under(STATE), plan(faults, "docker"), **kwargs)}


def test_clean_topology_only_edge_publishes_and_data_is_internal() -> None:
    # Given the clean topology
    specs = by_role()
    # Then every role is there once, only the edge publishes (443 and 80, on loopback)
    assert set(specs) == {"edge", "api", "db", "redis", "hsm", "fakes"}
    assert {role for role, spec in specs.items() if spec.ports} == {"edge"}
    assert specs["edge"].ports == {"443/tcp": "127.0.0.1", "80/tcp": "127.0.0.1"}
    # And the edge is on both networks, everyone else only on the internal one
    assert specs["edge"].networks == (topology.PUBLIC, topology.INTERNAL)
    for role in ("api", "db", "redis", "hsm", "fakes"):
        assert specs[role].networks == (topology.INTERNAL,) and specs[role].network_mode is None


def test_containers_carry_the_standard_compose_labels_and_their_own() -> None:
    from system_under_test.docker.engine import stack_labels

    # Every service container: the Compose project, its service, not a one-off, replica 1
    for role in set(by_role()) - {"fakes"}:
        assert stack_labels("abc", role) == {
            "votriz.project": "votriz-abc", "votriz.role": role, "votriz.stack": "abc",
            "com.docker.compose.project": "votriz-abc", "com.docker.compose.service": role,
            "com.docker.compose.oneoff": "False", "com.docker.compose.container-number": "1"}
    # The fakes stand in for the internet: a Compose project of their own, outside the service's
    fakes = stack_labels("abc", "fakes")
    assert fakes["com.docker.compose.project"] == "votriz-abc-upstream"
    assert (fakes["votriz.project"], fakes["com.docker.compose.service"]) == ("votriz-abc", "fakes")
    # The one-shot ops container is a one-off of the same project, as `docker compose run` makes
    assert stack_labels("abc", "ops")["com.docker.compose.oneoff"] == "True"
    # Networks and volumes belong to the project
    assert stack_labels("abc", "network")["com.docker.compose.project"] == "votriz-abc"
    assert "com.docker.compose.service" not in stack_labels("abc", "volume")


def test_api_gets_the_socket_and_pin_file_but_no_token_files() -> None:
    paths = StackPaths.under(STATE)
    api = by_role()["api"]
    sources = {mount.source for mount in api.mounts if mount.source}
    # The token directory and SoftHSM's config go to the HSM container only.
    assert paths.tokens_dir not in sources and paths.softhsm_conf not in sources
    assert paths.tokens_dir in {m.source for m in by_role()["hsm"].mounts}
    pin = [m for m in api.mounts if m.target == topology.PIN_SECRET]
    assert len(pin) == 1 and pin[0].read_only and pin[0].source == paths.pin_file
    assert any(m.volume == "p11" for m in api.mounts)
    # Only paths and a socket address in its environment.
    assert api.environment == {"VOTRIZ_CONFIG": "/var/lib/votriz/api.toml",
                               "VOTRIZ_HSM_PIN_FILE": "/run/secrets/hsm-pin",
                               "P11_KIT_SERVER_ADDRESS": "unix:path=/run/p11/sock"}


def test_container_faults_change_only_their_service() -> None:
    clean = by_role()
    # db-port-published: the db publishes 5432 and joins the public network, where the binding is live.
    published = by_role(["db-port-published"])
    assert published["db"].ports == {"5432/tcp": "127.0.0.1"}
    assert published["db"].networks == (topology.INTERNAL, topology.PUBLIC)
    # host-network: the HSM shares the host's network namespace.
    host = by_role(["host-network"])
    assert host["hsm"].network_mode == "host"
    for role in ("edge", "api", "redis", "fakes"):
        assert published[role] == clean[role] and host[role] == clean[role]
    # key-in-env: the secret the stack hands over appears in the API's environment only.
    keyed = by_role(["key-in-env"], api_secrets={"VOTRIZ_TOKEN_ENCRYPTION_KEY": "k"})
    assert keyed["api"].environment["VOTRIZ_TOKEN_ENCRYPTION_KEY"] == "k"


def test_api_plaintext_fault_adds_a_tcp_bind() -> None:
    assert "0.0.0.0:8000" not in topology.api_command(plan((), "docker"))
    assert "0.0.0.0:8000" in topology.api_command(plan(["api-plaintext-exposed"], "docker"))


def test_fault_registry_knows_which_backend_applies_what() -> None:
    assert FAULTS["db-port-published"].backends == ("docker",)
    assert FAULTS["host-network"].backends == ("docker",)
    assert validate_faults(["host-network", "tls12-accepted", "host-network"]) == (
        "host-network", "tls12-accepted")
    with pytest.raises(ValueError, match="cannot be applied by the docker backend"):
        validate_faults(["rotation-drops-requests"])
    with pytest.raises(ValueError, match="unknown fault"):
        validate_faults(["no-such-fault"])


def test_mirrors_are_read_from_deb822(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb\n# a comment\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n", encoding="utf-8")
    # One line per suite: in the one-line format a second suite would be read as a component.
    assert images.mirror_uris(sources) == (
        "deb http://deb.example/debian bookworm main",
        "deb http://deb.example/debian bookworm-updates main",
        "deb http://sec.example/debian-security bookworm-security main")


def test_mirrors_missing_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(images.ImageError, match="cannot read"):
        images.mirror_uris(tmp_path / "absent.sources")


def test_image_tag_follows_its_inputs(tmp_path: Path) -> None:
    # Given a copy of the edge's build inputs
    directory = tmp_path / "edge"
    shutil.copytree(images.IMAGES_DIR / "edge", directory)
    spec = images.ImageSpec("edge", directory, ("nginx-light",), ())
    before = images.image_hash(spec, "votriz-audit/base-edge:1")
    # Then the hash is stable, and changes with the Dockerfile and with the base
    assert images.image_hash(spec, "votriz-audit/base-edge:1") == before
    assert images.image_hash(spec, "votriz-audit/base-edge:2") != before
    (directory / "Dockerfile").write_text((directory / "Dockerfile").read_text() + "# changed\n")
    assert images.image_hash(spec, "votriz-audit/base-edge:1") != before
    mirrors = ("deb http://deb.example/debian bookworm main",)
    assert images.base_hash(spec, mirrors) != images.base_hash(
        images.ImageSpec("edge", directory, ("nginx-light", "curl"), ()), mirrors)


def test_every_image_has_a_dockerfile_from_an_overridable_base() -> None:
    for name, parent in images.PARENTS.items():
        spec = images.load_spec(name)
        text = spec.dockerfile.read_text(encoding="utf-8")
        # The base's children default to Debian's image; api and fakes to the python image
        default = "debian:bookworm-slim" if parent == "base" else "votriz-audit/python"
        assert f"ARG BASE={default}\n" in text and "FROM ${BASE}" in text, name
        assert "install-packages.sh" in text and spec.packages, name
        assert bool(spec.requirements) == (name == images.PYTHON_IMAGE)
    assert images.load_spec("base").packages == ("ca-certificates",)


def test_a_parent_change_gives_its_children_new_tags(tmp_path: Path, monkeypatch) -> None:
    mirrors = ("deb http://deb.example/debian bookworm main",)
    before = images.planned_tags(images.PARTS, mirrors)
    # Given a copy of the images directory whose python image names one more requirement
    copy = tmp_path / "images"
    shutil.copytree(images.IMAGES_DIR, copy)
    with (copy / "python" / "requirements.txt").open("a", encoding="utf-8") as file:
        file.write("six==1.17.0\n")
    monkeypatch.setattr(images, "IMAGES_DIR", copy)
    after = images.planned_tags(images.PARTS, mirrors)
    # Then python and its children get new tags, the others keep theirs
    assert {name for name in after if after[name] != before[name]} == {"python", "api", "fakes"}
    assert images.planned_tags(images.PARTS, (*mirrors, "deb http://x/debian bookworm main"))["edge"] \
        != before["edge"]


def _pins(lines) -> dict[str, str]:
    """``name==version`` lines as {normalised name: version} (extras and comments dropped)."""
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name.split("[")[0])] = version
    return pins


def test_images_run_the_versions_the_local_backend_runs() -> None:
    # Given the host's pins (constraints.txt, what ./dev installs) and each image's requirements
    root = Path(__file__).resolve().parents[2]
    host = _pins((root / "constraints.txt").read_text(encoding="utf-8").splitlines())
    for part in [images.PYTHON_IMAGE]:
        spec = images.load_spec(part)
        image = _pins(spec.requirements)
        # Then every requirement of an image is pinned, at the version the host runs, except
        # what only Debian's Python 3.11.2 needs (the host's newer 3.11 does not install it)
        assert all(image.values()), (part, spec.requirements)
        shared = {name: version for name, version in image.items() if name in host}
        assert shared == {name: host[name] for name in shared}, part
        assert set(image) - set(host) <= {"async-timeout"}, part


def test_rendered_profile_is_a_valid_docker_profile(tmp_path: Path) -> None:
    containers = {role: f"votriz-abc-{role}" for role in ("edge", "api", "db", "redis", "hsm", "fakes")}
    text = render_docker_profile(tmp_path, "votriz-abc", containers, https_port=40443, http_port=40080,
                                 redis_address="172.30.0.4", fakes_address="172.30.0.5")
    profile = parse_profile(text, source="target.toml")
    assert profile.backend == "docker"
    # The stack is selected as a Compose deployment would be: by its Compose project
    assert profile.docker is not None and profile.docker.compose_project == "votriz-abc"
    assert profile.docker.project.engine_filters() == {"label": ["com.docker.compose.project=votriz-abc"]}
    assert profile.docker.edge_container == "votriz-abc-edge"
    assert (profile.edge.address, profile.edge.https_port, profile.edge.http_port) == ("127.0.0.1", 40443, 40080)
    # The auditor reaches what publishes nothing from the Docker host: PostgreSQL and the
    # HSM through host-side sockets, Redis and the fakes at their internal addresses
    assert profile.database is not None and f"host={tmp_path / 'run' / 'pg'} " in profile.database.dsn
    assert profile.hsm is not None and profile.hsm.module.name == "p11-kit-client.so"
    assert profile.hsm.env["P11_KIT_SERVER_ADDRESS"] == f"unix:path={tmp_path / 'run' / 'p11-audit' / 'sock'}"
    assert profile.hsm.pin.file == tmp_path / "secrets" / "hsm-pin"
    assert profile.redis is not None and (profile.redis.host, profile.redis.port) == ("172.30.0.4", 6379)
    assert profile.capture is not None and profile.capture.url == "https://172.30.0.5:8443"
    assert profile.capture.server_name == "fakes.votriz.test"
    assert profile.operations.drill_log == tmp_path / "drills.log"
    assert profile.operations.rotate_token_key == (
        "docker", "exec", "-e", "VOTRIZ_AUDIT_RUN", "votriz-abc-api", "python", "-m", "system_under_test.ops",
        "rotate-token-key",
        "--state-dir", "/var/lib/votriz")


def test_stale_images_of_the_parts_are_pruned_and_images_in_use_kept() -> None:
    from types import SimpleNamespace

    from docker.errors import APIError

    tags = ["votriz-audit/api:new", "votriz-audit/api:old", "votriz-audit/base-api:old",
            "votriz-audit/hsm:in-use", "votriz-audit/api-key-in-image:abc123", "votriz-audit/base-api:new"]
    removed_calls: list[str] = []

    def remove(tag: str, noprune: bool) -> None:
        removed_calls.append(tag)
        if tag == "votriz-audit/hsm:in-use":
            raise APIError("conflict: image is being used by running container")

    client = SimpleNamespace(images=SimpleNamespace(
        list=lambda name: [SimpleNamespace(tags=[tag]) for tag in tags], remove=remove))
    removed = images.prune_stale_images(client, {"votriz-audit/api:new", "votriz-audit/base-api:new"})
    assert removed == ["votriz-audit/api:old", "votriz-audit/base-api:old"]
    # A fault's per-stack image is left to its stack's down; a refused removal is no error
    assert "votriz-audit/api-key-in-image:abc123" not in removed_calls
    assert "votriz-audit/hsm:in-use" in removed_calls
