"""The service's health before and after a destructive operation, and the run's memory of outages."""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from audit_cli import closed_port

from harness import health
from harness.health import (
    API,
    DATABASE,
    REDIS,
    DependencyHealth,
    HealthAround,
    HealthObservation,
    Outage,
    before_destructive,
    explained_failure,
    observe_health,
    refuse_after_outage,
)
from harness.outcomes import ProbeError
from harness.policy import load_policy
from harness.profile import TargetProfile, parse_profile

AT = dt.datetime(2026, 12, 7, 5, 12, 3, tzinfo=dt.UTC)
POLICY = load_policy()
TIGHT = POLICY.model_copy(update={"timeouts": POLICY.timeouts.model_copy(update={"request_s": 1.0})})


def observation(*down: str) -> HealthObservation:
    """Every part available except ``down`` (which did not answer)."""
    parts = tuple(DependencyHealth(name, where, name not in down,
                                   "no answer within 2 s" if name in down else "", 0.1)
                  for name, where in ((API, "https://votriz.test/healthz"), (DATABASE, "127.0.0.1:5432"),
                                      (REDIS, "127.0.0.1:6379")))
    return HealthObservation(AT, parts)


def test_an_unavailable_part_is_an_outage_named_with_its_place_time_and_reason() -> None:
    outage = observation(DATABASE).outage(seen_by="a test")
    assert outage == Outage(DATABASE, AT, "127.0.0.1:5432: no answer within 2 s", "a test")
    assert outage.not_run() == ("not run: the database was unavailable at 05:12:03 UTC "
                                "(127.0.0.1:5432: no answer within 2 s)")
    assert observation().healthy and observation().outage() is None
    assert not observation(REDIS).healthy


def test_only_a_dependency_explains_failures_after_an_operation() -> None:
    # The database or Redis down right after a rotation explains what failed then
    assert HealthAround(after=observation(DATABASE)).explaining_outage().dependency == DATABASE
    assert HealthAround(after=observation(REDIS)).explaining_outage().dependency == REDIS
    # The API itself down right after its own rotation is what the promise is about: no excuse
    assert HealthAround(after=observation(API)).explaining_outage() is None
    assert HealthAround(after=observation()).explaining_outage() is None
    assert HealthAround().explaining_outage() is None


def test_the_explained_failure_names_dependency_time_reason_and_what_failed() -> None:
    outage = Outage(DATABASE, AT, "127.0.0.1:5432: no answer within 2 s")
    assert explained_failure(outage, "Redis password rotation", ["the service: POST /signup: got 503"]) == (
        "The database was unavailable right after the Redis password rotation (127.0.0.1:5432: no answer "
        "within 2 s, at 05:12:03 UTC), which explains what failed: the service: POST /signup: got 503. "
        "Not judged as a broken promise.")


@pytest.fixture
def target() -> Iterator[TargetProfile]:
    profile = parse_profile(f'name = "health-test-{time.monotonic_ns()}"\n[edge]\nhost = "votriz.test"\n'
                            f'address = "127.0.0.1"\nhttps_port = {closed_port()}\n[api]\n')
    yield profile
    health.RUN_OUTAGES.forget(profile)


def test_an_outage_seen_once_refuses_every_later_operation_without_asking_again(
        target: TargetProfile, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def fake_observe(profile: TargetProfile, policy: object, known: object = None) -> HealthObservation:
        asked.append(profile.name)
        return observation(DATABASE) if len(asked) == 2 else observation()

    monkeypatch.setattr(health, "observe_health", fake_observe)
    # Given a first operation on a healthy service: it may run
    first = before_destructive(target, POLICY, "JWT rotation")
    assert first.not_run is None and first.before is not None and first.before.healthy
    refuse_after_outage(target)
    # When the second health check sees the database down
    second = before_destructive(target, POLICY, "Redis password rotation")
    assert second.not_run is not None and second.not_run.dependency == DATABASE
    assert second.not_run.seen_by == "health check before the Redis password rotation"
    # Then every later operation is refused with that first outage, without asking again
    third = before_destructive(target, POLICY, "token-key rotation")
    assert third == HealthAround(before=None, not_run=second.not_run)
    assert len(asked) == 2
    with pytest.raises(ProbeError, match=r"^not run: the database was unavailable at 05:12:03 UTC"):
        refuse_after_outage(target)
    # And another target in the same process is not affected
    other = target.model_copy(update={"name": target.name + "-other"})
    assert health.RUN_OUTAGES.seen(other) is None


def test_the_api_down_before_an_operation_refuses_it(target: TargetProfile,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "observe_health", lambda *a, **k: observation(API))
    refused = before_destructive(target, POLICY, "JWT rotation")
    assert refused.not_run is not None and refused.not_run.dependency == API


@pytest.fixture
def mute_port() -> Iterator[int]:
    """A loopback port whose connections are accepted (by the kernel) and never answered."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_observed_parts_that_refuse_or_never_answer_are_unavailable_within_the_deadline(
        mute_port: int, tmp_path: Path) -> None:
    # Given an edge nobody listens on, a database that accepts and never answers (a frozen
    # PostgreSQL), and a Redis that accepts and never answers
    (tmp_path / "pw").write_text("auditor-password-of-the-test\n")
    (tmp_path / "pw").chmod(0o600)
    edge_port = closed_port()
    profile = parse_profile(tomli_w.dumps({
        "name": "down", "edge": {"host": "votriz.test", "address": "127.0.0.1", "https_port": edge_port},
        "api": {},
        "database": {"dsn": f"host=127.0.0.1 port={mute_port} dbname=votriz user=votriz_auditor",
                     "password": {"file": str(tmp_path / "pw")}},
        "redis": {"host": "127.0.0.1", "port": mute_port}}))
    # When the health is observed with a 1 s request deadline (libpq waits at least 2 s)
    started = time.monotonic()
    seen = observe_health(profile, TIGHT, now=lambda: AT)
    seconds = time.monotonic() - started
    # Then every part is unavailable, each with its reason, asked in parallel
    by_name = {part.name: part for part in seen.parts}
    assert not seen.healthy and seen.at == AT
    assert by_name[API].where == f"https://votriz.test:{edge_port}/healthz"
    assert "cannot reach" in by_name[API].reason and not by_name[API].available
    assert (by_name[DATABASE].available, by_name[DATABASE].reason) == (
        False, "the database did not complete the connection (after 2 s: the policy's timeouts.request_s "
               "is 1 s, and libpq waits whole seconds, at least 2)")
    assert (by_name[REDIS].available, by_name[REDIS].reason) == (
        False, "Redis did not answer within the policy's 1 s (timeouts.request_s)")
    assert seconds < 5, seconds
    # And no credential is in what the observation would write
    assert "auditor-password" not in str(seen.as_evidence())


def test_a_profile_without_database_or_redis_asks_only_the_api() -> None:
    profile = parse_profile(f'name = "t"\n[edge]\nhost = "votriz.test"\naddress = "127.0.0.1"\n'
                            f'https_port = {closed_port()}\n[api]\n')
    assert [part.name for part in observe_health(profile, TIGHT).parts] == [API]


@pytest.mark.integration
def test_the_clean_stack_is_healthy_and_a_frozen_database_is_not(clean_stack) -> None:
    import os
    import signal

    from harness.profile import load_profile

    profile = load_profile(clean_stack.profile_path)
    seen = observe_health(profile, TIGHT)
    assert seen.healthy, seen.as_evidence()
    assert [part.name for part in seen.parts] == [API, DATABASE, REDIS]
    postgres = int((clean_stack.state_dir / "run" / "postgres.pid").read_text().split()[0])
    os.kill(postgres, signal.SIGSTOP)
    try:
        frozen = observe_health(profile, TIGHT)
    finally:
        os.kill(postgres, signal.SIGCONT)
    outage = frozen.outage()
    assert outage is not None and outage.dependency == DATABASE, frozen.as_evidence()
    assert outage.reason.endswith("the database did not complete the connection (after 2 s: the policy's "
                                  "timeouts.request_s is 1 s, and libpq waits whole seconds, at least 2)")


def test_no_operator_command_gets_a_time_limit_after_an_outage_of_its_target(target: TargetProfile) -> None:
    from harness.operations import command_timeout

    # Given a target whose database was seen down earlier in the run
    assert command_timeout(target, POLICY) == 300.0
    health.RUN_OUTAGES.record(target, Outage(DATABASE, AT, "127.0.0.1:5432: no answer within 2 s"))
    # Then every operator command (a backup or prune of the at-rest checks included) is refused
    with pytest.raises(ProbeError) as refused:
        command_timeout(target, POLICY)
    assert str(refused.value) == ("not run: the database was unavailable at 05:12:03 UTC "
                                  "(127.0.0.1:5432: no answer within 2 s)")
