"""keys.redis_password_rotation: the shared password verdict, for Redis, on hand-made observations
(the measured case: the database down after a Redis rotation made the service answer 503)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from checks.keys import db_password_rotation, redis_password_rotation
from harness import password_rotation_entry
from harness.evidence import EvidenceRecorder
from harness.outcomes import CheckOutcome, Outcome, Verdict
from harness.probes import rotation
from harness.probes.rotation import PasswordRotationObservation, password_rotation_verdict
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

from .conftest import CLASSES, POLICY
from .test_db_password_rotation import DB_DOWN_AFTER, DB_DOWN_BEFORE, NOT_RUN_MESSAGE, pw


def redis(**changes) -> PasswordRotationObservation:
    return pw("Redis", **changes)


def test_the_checks_share_one_entry_and_the_verdict_kept_beside_the_observation() -> None:
    # No check borrows from another check: both password checks go through the one entry, a
    # store each, which judges with the probe module's verdict
    assert password_rotation_entry.password_rotation_verdict is rotation.password_rotation_verdict
    assert (db_password_rotation.conclude_password_rotation is redis_password_rotation.conclude_password_rotation
            is password_rotation_entry.conclude_password_rotation)
    assert db_password_rotation.DATABASE_PASSWORD is password_rotation_entry.DATABASE_PASSWORD
    assert redis_password_rotation.REDIS_PASSWORD is password_rotation_entry.REDIS_PASSWORD


def _profile(**changes: Any) -> TargetProfile:
    data: dict[str, Any] = {
        "name": "t", "backend": "remote", "edge": {"host": "votriz.test"}, "api": {},
        "database": {"dsn": "host=db dbname=votriz user=votriz_auditor", "app_role": "app"},
        "hsm": {"module": "/p11.so", "token_label": "votriz", "pin": {"prompt": True}},
        "redis": {"host": "redis.test", "port": 6380},
        "operations": {"allow_destructive": True, "rotate_db_password": ["rotate-db"],
                       "rotate_redis_password": ["rotate-redis"]}}
    data.update(changes)
    return TargetProfile.model_validate(data)


def _run(check: Any, profile: TargetProfile, tmp_path: Path) -> Verdict:
    recorder = EvidenceRecorder("keys.x", tmp_path, KnownSecrets())
    try:
        check(profile=profile, policy=POLICY, known_secrets=KnownSecrets(), evidence=recorder,
              key_classes=CLASSES)
    except CheckOutcome as outcome:
        return outcome.verdict
    assert recorder.verdict is not None
    return recorder.verdict


@pytest.mark.parametrize(("check", "what", "command", "label", "evidence", "role"), [
    (db_password_rotation.check_db_password_rotation, "database", ("rotate-db",),
     "votriz/" + CLASSES.proof.db_password, "db-password-rotation.json", "app"),
    (redis_password_rotation.check_redis_password_rotation, "Redis", ("rotate-redis",),
     "votriz/" + CLASSES.proof.redis_password, "redis-password-rotation.json", None),
])
def test_each_check_rotates_its_own_store(monkeypatch, tmp_path: Path, check: Any, what: str,
                                          command: tuple[str, ...], label: str, evidence: str,
                                          role: str | None) -> None:
    seen: list[tuple[Any, ...]] = []

    def observe(profile, policy, known, key_classes, argv, hsm_label, attempt, store):
        seen.append((tuple(argv), hsm_label, store))
        return pw(store)

    monkeypatch.setattr(password_rotation_entry, "observe_password_rotation", observe)
    verdict = _run(check, _profile(), tmp_path)
    assert verdict.outcome is Outcome.PASS, verdict.message
    assert verdict.message.startswith(f"After the rotation the old {what} password is refused")
    assert seen == [(command, label, what)]
    attached = json.loads((tmp_path / evidence).read_text())
    assert attached.get("role") == role and attached["command"]["argv"] == ["rotate"]


def test_each_check_names_its_own_section_and_command_when_missing(tmp_path: Path) -> None:
    no_redis = _run(redis_password_rotation.check_redis_password_rotation, _profile(redis=None), tmp_path)
    assert (no_redis.outcome, no_redis.message) == (Outcome.MANUAL, (
        "This check needs the [hsm], [redis] and [api] sections. By hand: rotate the Redis password, "
        "confirm AUTH with the old one fails and the service still works."))
    no_command = _run(db_password_rotation.check_db_password_rotation,
                      _profile(operations={"allow_destructive": True}), tmp_path)
    assert (no_command.outcome, no_command.message) == (Outcome.MANUAL, (
        "The profile names no operations.rotate_db_password command. By hand: rotate the database "
        "password, confirm the old one is refused by PostgreSQL and the service still works."))


def test_redis_rotation_passes_and_fails_while_healthy() -> None:
    assert password_rotation_verdict(redis()).outcome is Outcome.PASS
    # (a) Healthy around it, and the old password still works: a broken promise
    kept = password_rotation_verdict(redis(old_after="accepted"))
    assert (kept.outcome, kept.message) == (Outcome.FAIL,
                                            "The old Redis password still works after the rotation.")
    broken = password_rotation_verdict(redis(service_after="POST /signup: expected HTTP 201, got 503"))
    assert broken.outcome is Outcome.FAIL


def test_redis_rotation_with_the_database_down_after_it_is_error_not_fail() -> None:
    # (b) Redis rotated fine, but the service answered 503 because the database was down
    verdict = password_rotation_verdict(redis(service_after="POST /signup: expected HTTP 201, got 503",
                                              health=DB_DOWN_AFTER))
    assert verdict.outcome is Outcome.ERROR
    assert verdict.message == (
        "The database was unavailable right after the Redis password rotation (127.0.0.1:5432: no "
        "answer within 2 s, at 05:12:03 UTC), which explains what failed: the service: POST /signup: "
        "expected HTTP 201, got 503. Not judged as a broken promise.")


def test_redis_rotation_not_run_after_an_outage() -> None:
    # (c) Unhealthy before: not run, ERROR naming the database
    verdict = password_rotation_verdict(PasswordRotationObservation.not_run("Redis", ("rotate",),
                                                                            DB_DOWN_BEFORE))
    assert (verdict.outcome, verdict.message) == (Outcome.ERROR, NOT_RUN_MESSAGE)
