"""LocalPlatform on hand-made profiles: what it sees, and what is out of reach."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.platform import LocalPlatform, OutOfReach, ServiceArtifacts, ServiceLogs
from harness.platform import local as local_platform
from harness.policy import load_policy
from harness.probes.listeners import OriginSurvey
from harness.profile import TargetProfile

POLICY = load_policy()
MakeProfile = Callable[..., TargetProfile]


def test_without_processes_processes_and_listeners_are_out_of_reach(make_profile: MakeProfile) -> None:
    platform = LocalPlatform(make_profile("local"), POLICY)
    assert platform.listeners() == OutOfReach("backend 'local', no [local] processes or [docker] project")
    processes = platform.processes()
    assert isinstance(processes, OutOfReach) and "backend 'local'" in processes.reason
    empty = LocalPlatform(make_profile("local", local={"processes": []}), POLICY)
    assert isinstance(empty.processes(), OutOfReach) and isinstance(empty.listeners(), OutOfReach)


def test_processes_are_read_through_the_pid_files(make_profile: MakeProfile, tmp_path: Path) -> None:
    # Given a pid file naming this very process
    pid_file = tmp_path / "me.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    platform = LocalPlatform(make_profile("local", local={"processes": [
        {"name": "me", "pid_file": str(pid_file), "include_children": False}]}), POLICY)
    # When its processes are asked for
    processes = platform.processes()
    # Then it is found, as a typed observation
    assert not isinstance(processes, OutOfReach)
    assert [(p.name, p.pid) for p in processes] == [("me", os.getpid())]


def test_listeners_are_the_origin_survey(make_profile: MakeProfile, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    api = {"name": "api", "pid_file": str(tmp_path / "api.pid")}
    target = make_profile("local", local={"processes": [api]})
    survey = OriginSurvey(("api",), ())
    asked: list[Any] = []
    monkeypatch.setattr(local_platform, "survey_origin",
                        lambda p, policy: asked.append((p, policy)) or survey)
    assert LocalPlatform(target, POLICY).listeners() is survey
    assert asked == [(target, POLICY)]


def test_logs_are_the_log_directory(make_profile: MakeProfile, tmp_path: Path) -> None:
    with_dir = LocalPlatform(make_profile("local", local={"log_dir": str(tmp_path)}), POLICY)
    assert with_dir.logs(1024) == ServiceLogs(tmp_path, ())
    assert LocalPlatform(make_profile("local"), POLICY).logs(1024) == OutOfReach(
        "no log directory (local.log_dir, docker.log_dir) or [docker] project in the profile")


def test_artifacts_are_the_scan_paths_without_layers(make_profile: MakeProfile, tmp_path: Path) -> None:
    platform = LocalPlatform(make_profile("local", scan={"source_paths": [str(tmp_path / "src")],
                                                    "config_paths": [str(tmp_path / "etc")]}), POLICY)
    assert platform.artifacts() == ServiceArtifacts((tmp_path / "src",), (tmp_path / "etc",), None)


def test_the_topology_is_out_of_reach(make_profile: MakeProfile) -> None:
    assert LocalPlatform(make_profile("local"), POLICY).topology() == OutOfReach(
        "the target runs as local processes, not as Docker containers described by a [docker] "
        "profile section")
