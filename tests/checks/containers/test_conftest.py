"""The containers area's shared fixture: the topology a check judges, or NOT_APPLICABLE off Docker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checks.containers.conftest import judged_topology
from harness.evidence import EvidenceRecorder
from harness.outcomes import CheckOutcome, Outcome
from harness.platform import OutOfReach
from harness.redaction import KnownSecrets

from .conftest import clean


@pytest.mark.parametrize("reason", [
    "the target runs as local processes, not as Docker containers described by a [docker] profile section",
    "the target runs as a remote deployment, not as Docker containers described by a [docker] profile "
    "section",
])
def test_off_docker_the_check_is_not_applicable_with_the_platforms_reason(reason: str, tmp_path: Path) -> None:
    recorder = EvidenceRecorder("containers.x", tmp_path, KnownSecrets())
    with pytest.raises(CheckOutcome) as ended:
        judged_topology(OutOfReach(reason), recorder)
    assert ended.value.verdict.outcome is Outcome.NOT_APPLICABLE
    assert ended.value.verdict.message == reason
    assert recorder.attachments == []


def test_the_topology_is_recorded_before_it_is_judged(tmp_path: Path) -> None:
    recorder = EvidenceRecorder("containers.x", tmp_path, KnownSecrets())
    assert judged_topology(clean(), recorder) == clean()
    assert recorder.attachments == ["topology.json"]
    assert json.loads((tmp_path / "topology.json").read_text()) == {
        "project": "votriz", "engine_host": "host1", "swarm_active": False,
        "containers": ["edge", "db", "api"]}
