"""containers.published_ports on hand-made topologies."""

from __future__ import annotations

from pathlib import Path

from checks.containers.published_ports import check_published_ports, published_ports_verdict
from harness.outcomes import Outcome
from harness.probes.containers import ContainerTopology, PublishedPort
from harness.profile import TargetProfile

from .conftest import PUBLIC, clean, conclude, container

LOCAL = TargetProfile.model_validate({"name": "t", "backend": "local", "edge": {"host": "votriz.test"}})


def test_clean_topology_passes() -> None:
    assert published_ports_verdict(clean(), None).outcome is Outcome.PASS


def test_published_database_port_fails_naming_container_and_port() -> None:
    topo = clean()
    db = container("db", "db", [PublishedPort("5432/tcp", "0.0.0.0", 5432)])
    verdict = published_ports_verdict(ContainerTopology("votriz", "h", False, (topo.containers[0], db)), None)
    assert verdict.outcome is Outcome.FAIL
    assert "db publishes 5432/tcp on 0.0.0.0:5432 (only the edge may publish ports)" in verdict.message


def test_edge_publishing_another_port_fails() -> None:
    edge = container("edge", "edge", [PublishedPort("8080/tcp", "0.0.0.0", 8080)], [PUBLIC])
    verdict = published_ports_verdict(ContainerTopology("v", "h", False, (edge,)), None)
    assert verdict.outcome is Outcome.FAIL and "only 80/tcp and 443/tcp" in verdict.message


def test_no_containers_is_an_error_not_a_pass() -> None:
    empty = ContainerTopology("votriz", "h", False, ())
    verdict = published_ports_verdict(empty, "edge")
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == "no running container carries the label votriz.project=votriz: nothing to judge"


def test_the_check_judges_the_topology_with_the_profiles_edge(tmp_path: Path) -> None:
    verdict, _ = conclude(check_published_ports, tmp_path, docker_topology=clean(), profile=LOCAL)
    assert verdict.outcome is Outcome.PASS and "only the edge (edge) publishes ports" in verdict.message
