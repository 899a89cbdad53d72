"""containers.bridge_networks on hand-made topologies."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.containers.bridge_networks import bridge_networks_verdict, check_bridge_networks
from harness.outcomes import Outcome
from harness.platform import OutOfReach
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


def test_off_docker_the_check_is_not_applicable_with_the_platforms_reason(tmp_path: Path) -> None:
    reason = OutOfReach("the target runs as a remote deployment, not as Docker containers described by "
                        "a [docker] profile section")
    verdict, recorder = conclude(check_bridge_networks, tmp_path, topology=reason)
    assert verdict.outcome is Outcome.NOT_APPLICABLE and verdict.message == reason.reason
    assert recorder.attachments == []
