"""DockerPlatform on a hand-made engine: which probe answers what, with the one selector and the timeouts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.platform import DockerPlatform, ServiceArtifacts, ServiceLogs
from harness.platform import docker as docker_platform
from harness.policy import load_policy
from harness.probes.containers import ContainerSelector, ContainerTopology
from harness.probes.docker_engine import ContainerLog, ImageLayers
from harness.probes.listeners import OriginSurvey
from harness.profile import TargetProfile

POLICY = load_policy()
PROFILE = TargetProfile.model_validate({
    "name": "t", "backend": "docker", "edge": {"host": "votriz.test"},
    "docker": {"compose_project": "votriz", "log_dir": "/var/log/votriz"},
    "scan": {"source_paths": ["/srv/api"]}})
SELECTOR = ContainerSelector.compose_project("votriz")


@pytest.fixture
def platform() -> DockerPlatform:
    assert PROFILE.docker is not None
    return DockerPlatform(PROFILE, POLICY, PROFILE.docker)


class FakeEngine:
    """Stands in for docker_engine: one client, the project's containers, their logs and layers."""

    def __init__(self) -> None:
        self.closed = 0
        self.asked: list[str] = []
        self.client = SimpleNamespace(close=self.close)

    def close(self) -> None:
        self.closed += 1

    def docker_client(self, policy: Any) -> Any:
        self.asked.append(f"client {policy.timeouts.request_s:g}")
        return self.client

    def project_containers(self, project: ContainerSelector, client: Any) -> list[str]:
        self.asked.append(f"containers labelled {project}")
        return ["votriz-api"]

    def container_logs(self, containers: list[str], max_bytes: int) -> list[ContainerLog]:
        self.asked.append(f"logs of {containers} up to {max_bytes}")
        return [ContainerLog("votriz-api", b"started\n")]

    def image_layers(self, containers: list[str], client: Any) -> ImageLayers:
        return ImageLayers((("votriz/api layer 1", Path("/layers/1")),), ("votriz/api",))


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine()
    for name in ("docker_client", "project_containers", "container_logs", "image_layers"):
        monkeypatch.setattr(docker_platform.docker_engine, name, getattr(fake, name))
    return fake


def test_logs_are_the_log_directory_and_every_containers_output(platform: DockerPlatform,
                                                                 engine: FakeEngine) -> None:
    logs = platform.logs(4096)
    assert logs == ServiceLogs(Path("/var/log/votriz"), (ContainerLog("votriz-api", b"started\n"),))
    assert engine.asked == [f"client {POLICY.timeouts.request_s:g}", "containers labelled com.docker.compose.project=votriz",
                            "logs of ['votriz-api'] up to 4096"]
    assert engine.closed == 1


def test_artifacts_are_the_scan_paths_and_the_image_layers(platform: DockerPlatform,
                                                            engine: FakeEngine) -> None:
    artifacts = platform.artifacts()
    assert artifacts == ServiceArtifacts((Path("/srv/api"),), (), ImageLayers(
        (("votriz/api layer 1", Path("/layers/1")),), ("votriz/api",)))
    assert engine.closed == 1


def test_processes_listeners_and_topology_come_from_their_probes(platform: DockerPlatform,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, Any]] = []
    topology = ContainerTopology(SELECTOR, "host", False, ())
    survey = OriginSurvey(("votriz-api",), ())
    monkeypatch.setattr(docker_platform, "observe_docker",
                        lambda project, timeout_s: asked.append(("processes", (project, timeout_s))) or [])
    monkeypatch.setattr(docker_platform, "observe_topology",
                        lambda project, timeout_s: asked.append(("topology", (project, timeout_s)))
                        or topology)
    monkeypatch.setattr(docker_platform, "survey_docker_origin",
                        lambda p, policy: asked.append(("listeners", (p, policy))) or survey)
    assert platform.processes() == ()
    assert platform.topology() is topology
    assert platform.listeners() is survey
    timeout = POLICY.timeouts.request_s
    # Every engine query selects the same containers: the profile's Compose project
    assert asked == [("processes", (SELECTOR, timeout)), ("topology", (SELECTOR, timeout)),
                     ("listeners", (PROFILE, POLICY))]
    assert PROFILE.docker is not None and PROFILE.docker.project == SELECTOR
