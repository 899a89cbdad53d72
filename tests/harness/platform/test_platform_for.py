"""platform_for: the one place that reads the profile's backend."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.platform import DockerPlatform, LocalPlatform, RemotePlatform, platform_for
from harness.policy import load_policy
from harness.profile import TargetProfile

POLICY = load_policy()
MakeProfile = Callable[..., TargetProfile]


@pytest.mark.parametrize(("backend", "sections", "expected"), [
    ("docker", {"docker": {"project": "votriz"}}, DockerPlatform),
    ("docker", {}, RemotePlatform),  # no [docker] section: nothing says which containers
    ("local", {"local": {"processes": [{"name": "api", "pid_file": "/run/api.pid"}]}}, LocalPlatform),
    ("local", {}, LocalPlatform),
    ("remote", {}, RemotePlatform),
    # A section of another backend does not change what the profile says the target is.
    ("remote", {"docker": {"project": "votriz"}}, RemotePlatform),
    ("local", {"docker": {"project": "votriz"}}, LocalPlatform),
])
def test_the_profile_chooses_the_platform(make_profile: MakeProfile, backend: str,
                                          sections: dict[str, object],
                                          expected: type) -> None:
    platform = platform_for(make_profile(backend, **sections), POLICY)
    assert type(platform) is expected
    kinds = {DockerPlatform: "docker", LocalPlatform: "local", RemotePlatform: "remote"}
    assert platform.kind == kinds[expected]


def test_a_docker_platform_carries_its_section(make_profile: MakeProfile) -> None:
    docker = {"project": "p", "edge_container": "p-edge"}
    platform = platform_for(make_profile("docker", docker=docker), POLICY)
    assert isinstance(platform, DockerPlatform)
    assert str(platform.docker.project) == "votriz.project=p" and platform.docker.edge_container == "p-edge"
