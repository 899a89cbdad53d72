"""containers.isolation on hand-made topologies."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.containers.isolation import check_isolation, isolation_verdict
from harness.outcomes import Outcome
from harness.probes.containers import ContainerTopology, ContainerView

from .conftest import clean, conclude, container


def test_clean_topology_passes() -> None:
    assert isolation_verdict(clean()).outcome is Outcome.PASS


def test_no_containers_is_an_error_not_a_pass() -> None:
    assert isolation_verdict(ContainerTopology("votriz", "h", False, ())).outcome is Outcome.ERROR


@pytest.mark.parametrize(("container", "message"), [
    (container("api", "api", privileged=True), "api runs privileged"),
    (container("api", "api", pid_mode="host"), "shares the host's PID namespace"),
    (container("api", "api", network_mode="host"), "shares the host's network namespace"),
])
def test_isolation_faults_fail(container: ContainerView, message: str) -> None:
    verdict = isolation_verdict(ContainerTopology("v", "h", False, (container,)))
    assert verdict.outcome is Outcome.FAIL and message in verdict.message


def test_the_check_fails_naming_the_escape(tmp_path: Path) -> None:
    topology = ContainerTopology("v", "h", False, (container("api", "api", privileged=True),))
    verdict, _ = conclude(check_isolation, tmp_path, docker_topology=topology)
    assert verdict.outcome is Outcome.FAIL and "api runs privileged" in verdict.message
