"""The key search's places: taken from the platform, what is out of reach kept with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.outcomes import ProbeError
from harness.platform import OutOfReach, RemotePlatform, ServiceArtifacts, ServiceLogs
from harness.policy import load_policy
from harness.probes.deployment import SearchPlaces, observe_search_places
from harness.probes.docker_engine import ContainerLog, ImageLayers
from harness.probes.processes import ProcessObservation
from harness.profile import TargetProfile

API = ProcessObservation("api", 10, 1, "gunicorn", (("PATH", b"/bin"),))


class HandMadePlatform:
    """A Docker-like platform that answers from what it was given, and records each question."""

    kind = "docker"

    def __init__(self, processes: object = (API,), logs: object = None,
                 artifacts: ServiceArtifacts | None = None) -> None:
        self._processes = processes
        self._logs = logs if logs is not None else ServiceLogs(
            Path("/s/logs"), (ContainerLog("api", b"started\n", True),))
        self._artifacts = artifacts or ServiceArtifacts(
            (Path("/s/src"),), (Path("/s/api.toml"),),
            ImageLayers((("votriz-api layer 1 (abc)", Path("/l/abc/diff")),), ("votriz-api",),
                        ("votriz-edge: layer directory /l/x is not readable from this host",)))
        self.asked: list[str] = []

    def processes(self) -> object:
        self.asked.append("processes")
        if isinstance(self._processes, Exception):
            raise self._processes
        return self._processes

    def logs(self, max_bytes: int) -> object:
        self.asked.append(f"logs({max_bytes})")
        return self._logs

    def artifacts(self) -> ServiceArtifacts:
        self.asked.append("artifacts")
        return self._artifacts


def test_everything_in_reach_is_taken_from_the_platform() -> None:
    platform = HandMadePlatform()
    places = observe_search_places(platform, 1024)  # type: ignore[arg-type]
    assert platform.asked == ["processes", "logs(1024)", "artifacts"]
    assert places == SearchPlaces(
        (Path("/s/src"),), (Path("/s/api.toml"),), Path("/s/logs"), (API,), None,
        (("docker logs api", b"started\n", True),), (("votriz-api layer 1 (abc)", Path("/l/abc/diff")),),
        ("votriz-api",), ("votriz-edge: layer directory /l/x is not readable from this host",))
    assert places.images_evidence() == {
        "images": ["votriz-api"], "layers": ["votriz-api layer 1 (abc)"],
        "container_logs": ["docker logs api"],
        "unsearchable": ["votriz-edge: layer directory /l/x is not readable from this host"]}


def test_what_is_out_of_reach_is_not_searched_and_keeps_its_reason() -> None:
    platform = HandMadePlatform(processes=OutOfReach("backend 'remote': no processes"),
                                logs=OutOfReach("no log directory"),
                                artifacts=ServiceArtifacts((Path("/s/src"),)))
    places = observe_search_places(platform, 1024)  # type: ignore[arg-type]
    assert places.processes is None
    assert places.processes_out_of_reach == OutOfReach("backend 'remote': no processes")
    assert places.log_dir is None and places.container_logs == ()
    assert places.layers == () and places.images_evidence()["images"] == []


def test_a_remote_target_gives_its_scan_paths_and_log_dir_only() -> None:
    profile = TargetProfile.model_validate({
        "name": "t", "backend": "remote", "edge": {"host": "votriz.test"},
        "scan": {"source_paths": ["/s/src"], "config_paths": ["/s/etc"]}})
    places = observe_search_places(RemotePlatform(profile, load_policy()), 1024)
    assert places.source_paths == (Path("/s/src"),) and places.config_paths == (Path("/s/etc"),)
    assert places.processes is None
    assert places.processes_out_of_reach is not None
    assert "cannot inspect the service's processes" in places.processes_out_of_reach.reason


def test_a_platform_that_cannot_observe_what_is_in_reach_raises() -> None:
    platform = HandMadePlatform(processes=ProbeError("docker: no running container is labelled x"))
    with pytest.raises(ProbeError, match="no running container"):
        observe_search_places(platform, 1024)  # type: ignore[arg-type]
