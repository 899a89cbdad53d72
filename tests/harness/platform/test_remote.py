"""RemotePlatform: nothing but the network and the paths the profile names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.platform import OutOfReach, RemotePlatform, ServiceArtifacts, ServiceLogs
from harness.policy import load_policy
from harness.profile import TargetProfile

POLICY = load_policy()
MakeProfile = Callable[..., TargetProfile]


@pytest.mark.parametrize("backend", ["remote", "docker"])
def test_processes_listeners_and_topology_are_out_of_reach(make_profile: MakeProfile, backend: str) -> None:
    platform = RemotePlatform(make_profile(backend), POLICY)
    assert platform.listeners() == OutOfReach(
        f"backend {backend!r}, no [local] processes or [docker] project")
    processes = platform.processes()
    assert isinstance(processes, OutOfReach) and f"backend {backend!r}" in processes.reason
    assert platform.topology() == OutOfReach(
        f"the target runs as a {backend} deployment, not as Docker containers described by a [docker] "
        "profile section")


def test_the_profiles_paths_are_still_read_here(make_profile: MakeProfile, tmp_path: Path) -> None:
    platform = RemotePlatform(make_profile("remote", local={"log_dir": str(tmp_path)},
                                      scan={"config_paths": [str(tmp_path / "etc")]}), POLICY)
    assert platform.logs(10) == ServiceLogs(tmp_path, ())
    assert platform.artifacts() == ServiceArtifacts((), (tmp_path / "etc",), None)
    assert isinstance(RemotePlatform(make_profile("remote"), POLICY).logs(10), OutOfReach)
