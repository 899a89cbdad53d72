"""The container selector: profile section -> one set of engine filters, used by every engine query."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.outcomes import ProbeError
from harness.probes import containers as containers_probe
from harness.probes import docker_engine
from harness.probes.containers import ContainerSelector, ContainerTopology, observe_topology, selector_of
from harness.probes.processes import observe_docker
from harness.profile import Docker, ProfileError, parse_profile

EDGE = '[edge]\nhost = "votriz.test"\n'


def docker_section(body: str) -> Docker:
    profile = parse_profile(f'name = "t"\nbackend = "docker"\n{EDGE}[docker]\n{body}\n', source="t.toml")
    assert profile.docker is not None
    return profile.docker


@pytest.mark.parametrize(("body", "filters", "words"), [
    ('compose_project = "shop"', {"label": ["com.docker.compose.project=shop"]},
     "the label com.docker.compose.project=shop"),
    ('labels = { "tier" = "prod", "app" = "votriz" }', {"label": ["app=votriz", "tier=prod"]},
     "the labels app=votriz and tier=prod"),
    # The deprecated spelling keeps selecting by the harness's own label
    ('project = "votriz-abc"', {"label": ["votriz.project=votriz-abc"]}, "the label votriz.project=votriz-abc"),
])
def test_each_spelling_of_the_docker_section_is_one_set_of_engine_filters(
        body: str, filters: dict[str, list[str]], words: str) -> None:
    selector = docker_section(body).project
    assert selector.engine_filters() == filters
    assert selector.described == words


@pytest.mark.parametrize(("body", "reason"), [
    ("", "give exactly one of 'compose_project', 'labels' or (deprecated) 'project'"),
    ('compose_project = "a"\nproject = "b"', "not compose_project and project"),
    ("labels = {}", "a container selector needs at least one label"),
    ('labels = { "a=b" = "c" }', "label key 'a=b' is not a Docker label key"),
    ('compose_project = ""', "docker.compose_project: String should have at least 1 character"),
    ('labels = { "a" = "x\\ny" }', "the value of label 'a' holds a control character"),
])
def test_a_section_that_selects_nothing_or_ambiguously_is_refused_in_one_line(body: str, reason: str) -> None:
    with pytest.raises(ProfileError) as refused:
        docker_section(body)
    assert reason in str(refused.value)
    assert str(refused.value).startswith("t.toml: docker")


@given(st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=20), max_size=40))
def test_a_selector_from_any_labels_is_made_or_refused_with_a_value_error(labels: dict[str, str]) -> None:
    try:
        selector = ContainerSelector.of(labels)
    except ValueError:
        return
    # Every label becomes one filter the engine must match, each key once
    assert sorted(selector.engine_filters()["label"]) == sorted(f"{k}={v}" for k, v in labels.items())
    assert [f.split("=", 1)[0] for f in selector.engine_filters()["label"]] == sorted(labels)


class RecordingEngine:
    """An engine that records the filters of every container listing and lists ``listed``."""

    def __init__(self, listed: list[Any]) -> None:
        self.filters: list[dict[str, list[str]]] = []
        self.listed = listed
        self.containers = SimpleNamespace(list=self.list)
        self.api = SimpleNamespace(timeout=5)
        self.networks = SimpleNamespace(get=lambda name: SimpleNamespace(
            attrs={"Driver": "bridge", "Internal": True, "Scope": "local"}))

    def list(self, all: bool, filters: dict[str, list[str]], ignore_removed: bool) -> list[Any]:
        # Every container the selector names, whatever its state: one that is down is seen
        assert all is True and ignore_removed is True
        self.filters.append(filters)
        return self.listed

    def info(self) -> dict[str, object]:
        return {"Name": "host1", "Swarm": {"LocalNodeState": "inactive"}}

    def close(self) -> None:
        pass


def container(name: str) -> SimpleNamespace:
    return SimpleNamespace(name=name, attrs={
        "Config": {"Image": "votriz/api", "Labels": {"votriz.role": "api"}, "Env": ["A=b"]},
        "HostConfig": {"NetworkMode": "shop_internal"}, "State": {"Status": "running", "Pid": 0},
        "NetworkSettings": {"Networks": {"shop_internal": {"NetworkID": "n1"}}, "Ports": {}}})


def test_containers_processes_and_topology_ask_the_engine_with_the_same_filters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a Compose-selected section and an engine running one of its containers
    selector = docker_section('compose_project = "shop"').project
    engine = RecordingEngine([container("shop-api-1")])
    monkeypatch.setattr(containers_probe, "docker_client", lambda timeout_s: engine)
    # When the containers, their processes and the topology are observed
    assert [c.name for c in docker_engine.project_containers(selector, engine)] == ["shop-api-1"]
    observe_docker(selector, client=engine, proc=tmp_path)
    topology = observe_topology(selector, timeout_s=1.0)
    # Then every listing asked the engine for exactly the Compose project's containers
    assert engine.filters == [{"label": ["com.docker.compose.project=shop"]}] * 3
    assert topology.project == selector and [c.name for c in topology.containers] == ["shop-api-1"]
    assert topology.summary()["project"] == "com.docker.compose.project=shop"


def test_no_selected_container_names_the_selector() -> None:
    selector = ContainerSelector.of({"app": "votriz", "tier": "prod"})
    with pytest.raises(ProbeError, match=r"^docker: no running container is labelled app=votriz, tier=prod$"):
        docker_engine.project_containers(selector, RecordingEngine([]))
    empty = ContainerTopology(selector, "host1", False, ())
    assert empty.nothing_to_judge() == ("no running container carries the labels app=votriz and tier=prod: "
                                        "nothing to judge")


def test_a_bare_name_is_the_harness_label() -> None:
    assert selector_of("votriz") == ContainerSelector.votriz_project("votriz")
    assert selector_of(ContainerSelector.compose_project("x")) == ContainerSelector.compose_project("x")


def test_a_compose_container_without_the_harness_label_has_its_service_as_role(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a Compose deployment's db container: Compose labels only
    db = container("shop-db-1")
    db.attrs["Config"]["Labels"] = {"com.docker.compose.project": "shop", "com.docker.compose.service": "db"}
    engine = RecordingEngine([db, container("shop-api-1")])
    monkeypatch.setattr(containers_probe, "docker_client", lambda timeout_s: engine)
    # Then its role is its service (so the data-service rules apply to it); the harness's label wins
    roles = {c.name: c.role for c in observe_topology(ContainerSelector.compose_project("shop")).containers}
    assert roles == {"shop-db-1": "db", "shop-api-1": "api"}


def test_a_selected_container_that_is_down_is_an_error_naming_it_and_a_finished_one_off_is_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a project whose API has ended (gunicorn halted), whose worker restarts after being
    # killed for memory, and a one-off `compose run` container that finished
    api, worker, migrate, db = (container(f"shop-{name}-1") for name in ("api", "worker", "migrate", "db"))
    api.attrs["State"] = {"Status": "exited", "ExitCode": 3, "FinishedAt": "2026-12-07T19:52:01.123Z"}
    worker.attrs["State"] = {"Status": "restarting", "ExitCode": 137, "OOMKilled": True,
                             "FinishedAt": "2026-12-07T19:53:00Z"}
    migrate.attrs["State"] = {"Status": "exited", "ExitCode": 0}
    migrate.attrs["Config"]["Labels"]["com.docker.compose.oneoff"] = "True"
    selector = ContainerSelector.compose_project("shop")
    # When the project's containers are listed (for processes, listeners, logs, layers, topology)
    with pytest.raises(ProbeError) as raised:
        docker_engine.project_containers(selector, RecordingEngine([db, api, worker, migrate]))
    # Then it is an error that names each part that is down, never a survey of the rest
    assert str(raised.value) == (
        "docker: 2 of the 4 containers labelled com.docker.compose.project=shop are not running: "
        "shop-api-1 is exited (exit code 3 at 2026-12-07T19:52:01Z); shop-worker-1 is restarting "
        "(exit code 137, killed for want of memory at 2026-12-07T19:53:00Z). A part of the service "
        "that is down cannot be observed: start it and audit again (a service that runs to "
        "completion, such as a migration, goes in the profile's docker.finished_services)")
    # And the finished one-off container alone is not down: listed, for its output,
    # environment and image to be searched
    listed = docker_engine.project_containers(selector, RecordingEngine([db, migrate]))
    assert [c.name for c in listed] == ["shop-db-1", "shop-migrate-1"]
    created = container("shop-edge-1")
    created.attrs["State"] = {"Status": "created", "ExitCode": 0}
    monkeypatch.setattr(containers_probe, "docker_client", lambda timeout_s: RecordingEngine([db, created]))
    # (the topology of the container checks lists them the same way)
    with pytest.raises(ProbeError, match=r"1 of the 2 containers .* is not running: shop-edge-1 is created\. "):
        observe_topology(selector, timeout_s=1.0)


def test_a_service_the_profile_says_runs_to_completion_is_down_only_when_it_failed() -> None:
    # Given a Compose service (not a one-off) that migrates the database and exits, and a
    # profile that names it
    migrate = container("shop-migrate-1")
    migrate.attrs["Config"]["Labels"]["com.docker.compose.service"] = "migrate"
    migrate.attrs["State"] = {"Status": "exited", "ExitCode": 0}
    selector = docker_section('compose_project = "shop"\nfinished_services = ["migrate"]').project
    assert selector.finished == ("migrate",)
    # Then, exited with code 0, it is not down (and still listed, for its logs, environment
    # and image); unnamed, it is a part that is down
    assert [c.name for c in docker_engine.project_containers(selector, RecordingEngine(
        [container("shop-api-1"), migrate]))] == ["shop-api-1", "shop-migrate-1"]
    with pytest.raises(ProbeError, match=r"shop-migrate-1 is exited \(exit code 0\)"):
        docker_engine.project_containers(ContainerSelector.compose_project("shop"),
                                         RecordingEngine([container("shop-api-1"), migrate]))
    # And named but failed (exit code 1) it is down: the job did not complete
    migrate.attrs["State"] = {"Status": "exited", "ExitCode": 1}
    with pytest.raises(ProbeError, match=r"shop-migrate-1 is exited \(exit code 1\)"):
        docker_engine.project_containers(selector, RecordingEngine([migrate]))
