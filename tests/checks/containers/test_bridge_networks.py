"""containers.bridge_networks on hand-made topologies."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.containers.bridge_networks import bridge_networks_verdict, check_bridge_networks
from harness.outcomes import Outcome
from harness.probes.containers import ContainerTopology, ContainerView, NetworkAttachment

from .conftest import PUBLIC, clean, conclude, container


def test_clean_topology_passes() -> None:
    assert bridge_networks_verdict(clean()).outcome is Outcome.PASS


def test_no_containers_is_an_error_not_a_pass() -> None:
    assert bridge_networks_verdict(ContainerTopology("votriz", "h", False, ())).outcome is Outcome.ERROR


@pytest.mark.parametrize(("container", "message"), [
    (container("db", "db", networks=[PUBLIC]), "db (db) is on votriz_public, which has a route outside"),
    (container("api", "api", networks=[], network_mode="host"), "api uses network mode host"),
    (container("api", "api", networks=[NetworkAttachment("bridge", "bridge", False, False, "local")]),
     "Docker default network"),
    (container("api", "api", networks=[NetworkAttachment("o", "overlay", False, True, "swarm")]),
     "driver overlay, scope swarm"),
])
def test_networking_faults_fail(container: ContainerView, message: str) -> None:
    verdict = bridge_networks_verdict(ContainerTopology("v", "h", False, (container,)))
    assert verdict.outcome is Outcome.FAIL and message in verdict.message


def test_the_check_fails_naming_the_network(tmp_path: Path) -> None:
    topology = ContainerTopology("v", "h", False, (container("db", "db", networks=[PUBLIC]),))
    verdict, _ = conclude(check_bridge_networks, tmp_path, docker_topology=topology)
    assert verdict.outcome is Outcome.FAIL and "which has a route outside" in verdict.message
