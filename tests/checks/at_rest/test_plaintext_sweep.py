"""at_rest.plaintext_sweep on hand-made observations (PASS, FAIL, ERROR, MANUAL), and on a real
local stack: clean, then secrets planted by hand (SQL, Redis, the API log)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from verdict_asserts import assert_verdict

from checks.at_rest.data_inventory import data_inventory_verdict
from checks.at_rest.plaintext_sweep import SWEEP_AREAS, plaintext_sweep_verdict
from harness.inventory_rules import load_inventory_rules
from harness.outcomes import Outcome
from harness.policy import load_policy
from harness.probes.inventory import observe_inventory
from harness.probes.plaintext import SweepArea, SweepObservation, observe_sweep
from harness.profile import load_profile
from harness.redaction import KnownSecrets
from harness.shape_sweep import ShapeHit
from harness.sweep import SweepHit


def _areas(*hits: SweepHit, problem: str = "", backups: bool = True,
           canary_secrets: int = 8) -> SweepObservation:
    return SweepObservation(12, 50, (
        SweepArea("database", True, 39, 7000, tuple(h for h in hits if
                                                     h.location.startswith("postgres:")),
                  sum(1 for h in hits if h.location.startswith("postgres:"))),
        SweepArea("redis", True, 2, 100, problem=problem),
        SweepArea("logs", True, 9, 9000, tuple(h for h in hits if h.location.endswith(".log")),
                  sum(1 for h in hits if h.location.endswith(".log"))),
        SweepArea("backups", True, 3, 30000) if backups
        else SweepArea("backups", False, note="no operations.backup_dir in the profile")),
        canary_secrets, "" if canary_secrets else "the profile has no [api] section")


def test_sweep_pass_names_what_was_searched() -> None:
    verdict = plaintext_sweep_verdict(_areas())
    assert verdict.outcome is Outcome.PASS
    assert "None of 12 known secrets (8 of them the canary's; 50 encoded forms" in verdict.message
    assert "backups (3 places, 30000 bytes)." in verdict.message
    assert "not searched" not in verdict.message


def test_sweep_pass_says_how_many_short_secrets_it_did_not_search() -> None:
    obs = dataclasses.replace(_areas(), short_secrets=2)
    verdict = plaintext_sweep_verdict(obs)
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.endswith("(2 known secrets of 4 or 5 bytes not searched: as "
                                    "substrings they would match by chance)")
    assert verdict.details["short_secrets_not_swept"] == 2


def test_sweep_with_an_area_not_named_by_the_profile_is_manual_not_pass() -> None:
    verdict = plaintext_sweep_verdict(_areas(backups=False))
    assert verdict.outcome is Outcome.MANUAL
    assert "No known secret was found in database (39 places, 7000 bytes), redis" in \
        verdict.message
    assert "but these areas were not searched: backups (no operations.backup_dir in the " \
        "profile). By hand (needles.txt:" in verdict.message
    assert "backups: take a fresh backup and search it" in verdict.message
    # An area missing from the observation altogether counts as not searched too.
    partial = SweepObservation(12, 50, _areas().areas[:1], 8)
    verdict = plaintext_sweep_verdict(partial)
    assert verdict.outcome is Outcome.MANUAL
    assert "not searched: redis (not observed); logs (not observed); backups (not observed)" \
        in verdict.message


def test_sweep_with_nothing_named_is_manual_with_every_area() -> None:
    nothing = SweepObservation(3, 9, tuple(SweepArea(name, False, note=f"no {name} in the profile")
                                          for name in SWEEP_AREAS), 3)
    verdict = plaintext_sweep_verdict(nothing)
    assert verdict.outcome is Outcome.MANUAL
    assert verdict.message.startswith("These areas were not searched: database (no database in "
                                      "the profile); redis")
    assert "redis: list every key (`redis-cli --scan`)" in verdict.message


def test_sweep_without_a_canary_secret_is_manual_not_pass() -> None:
    verdict = plaintext_sweep_verdict(_areas(canary_secrets=0))
    assert verdict.outcome is Outcome.MANUAL
    assert verdict.message.startswith("No canary secret was registered (the profile has no [api] "
                                      "section), so the sweep of database (39 places")
    assert "looked only for 12 other known secrets" in verdict.message
    assert "By hand: plant a test account through the API" in verdict.message


def test_sweep_hit_is_fail_even_with_partial_coverage_and_no_canary() -> None:
    hit = SweepHit("database password (raw)", "/state/logs/api.log", 7)
    verdict = plaintext_sweep_verdict(_areas(hit, backups=False, canary_secrets=0))
    assert verdict.outcome is Outcome.FAIL
    assert "/state/logs/api.log (1 occurrence, first at offset 7: database password)" in \
        verdict.message


def test_sweep_fail_names_places_never_secrets() -> None:
    hits = (SweepHit("canary password (raw)", "/state/logs/api.log", 1234),
            SweepHit("canary e-mail (raw)", "postgres:users.contact_email", 0))
    verdict = plaintext_sweep_verdict(_areas(*hits))
    assert verdict.outcome is Outcome.FAIL
    assert "(2 occurrences in 2 places)" in verdict.message
    assert "/state/logs/api.log (1 occurrence, first at offset 1234: canary password)" in \
        verdict.message
    assert "postgres:users.contact_email (1 occurrence: canary e-mail)" in verdict.message


def test_sweep_error_when_an_area_could_not_be_read() -> None:
    verdict = plaintext_sweep_verdict(_areas(problem="Redis refused the password"))
    assert verdict.outcome is Outcome.ERROR
    assert "redis: Redis refused the password" in verdict.message
    both = plaintext_sweep_verdict(_areas(problem="Redis refused", backups=False))
    assert both.outcome is Outcome.ERROR
    assert "Not searched at all: backups (no operations.backup_dir in the profile)." in \
        both.message


def _with_shapes(*shapes: ShapeHit) -> SweepObservation:
    obs = _areas()
    areas = tuple(dataclasses.replace(a, shape_rows=11 if a.name == "database" else 0,
                                      shape_hits=tuple(s for s in shapes if s.location.startswith(
                                          {"database": "postgres:", "redis": "redis:",
                                           "logs": "/state/logs", "backups": "/state/backups"}[a.name])),
                                      shape_hits_total=sum(1 for s in shapes if s.location.startswith(
                                          {"database": "postgres:", "redis": "redis:",
                                           "logs": "/state/logs", "backups": "/state/backups"}[a.name])))
                  for a in obs.areas)
    return dataclasses.replace(obs, areas=areas, shape_rules=32)


def test_pass_says_what_the_shape_scan_covered() -> None:
    assert_verdict(plaintext_sweep_verdict(_with_shapes()), Outcome.PASS, ends=(
        " No secret-shaped value (32 rules: prefixed provider tokens, values of access_token/"
        "refresh_token/id_token/client_secret fields, JWTs, Authorization headers, private keys, "
        "high-entropy cells that are not Fernet tokens in ciphertext columns; an unprefixed token "
        "outside such a field has no shape to recognise) in every row of the database's text "
        "columns (11 rows), every Redis value (with its hash fields and JSON keys named email, "
        "new_password, password, secret, token holding no Fernet token or bcrypt hash), every "
        "log line, the backup files."))


def test_pass_names_the_backups_not_searched_for_shapes() -> None:
    obs = _with_shapes()
    areas = tuple(dataclasses.replace(a, shape_opaque=("/b/1.enc", "/b/2.enc"))
                  if a.name == "backups" else a for a in obs.areas)
    verdict = plaintext_sweep_verdict(dataclasses.replace(obs, areas=areas))
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.endswith(
        "every log line, the backup files but 2 ciphertext-like files (high-entropy binary at "
        "start, middle and end: no shape to recognise; searched for the known secrets only).")


def test_a_secret_shape_fails_naming_kind_place_and_fingerprint_even_without_a_canary_hit() -> None:
    shapes = (ShapeHit("google-oauth-access-token", "Google/YouTube OAuth access token",
                       "postgres:channels.external_account", "hmac:0123456789ab", row="1"),
              ShapeHit("jwt", "JSON Web Token", "redis:votriz:cache", "hmac:ba9876543210", offset=20),
              ShapeHit("authorization-header", "HTTP Authorization header with credentials",
                       "/state/logs/api.log", "hmac:aaaaaaaaaaaa", line=57, offset=9000))
    verdict = plaintext_sweep_verdict(_with_shapes(*shapes))
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == (
        "Secret-shaped values the audit did not plant are stored in plaintext (3 values): "
        "Google/YouTube OAuth access token at postgres:channels.external_account row 1 "
        "(hmac:0123456789ab); JSON Web Token at redis:votriz:cache offset 20 (hmac:ba9876543210); "
        "HTTP Authorization header with credentials at /state/logs/api.log line 57 "
        "(hmac:aaaaaaaaaaaa).")
    database = verdict.details["areas"][0]
    assert database["shape_hits"] == [{"rule": "google-oauth-access-token",
                                       "kind": "Google/YouTube OAuth access token",
                                       "place": "postgres:channels.external_account row 1",
                                       "fingerprint": "hmac:0123456789ab"}]


def test_canary_hits_and_shapes_are_both_named() -> None:
    obs = _with_shapes(ShapeHit("jwt", "JSON Web Token", "/state/logs/api.log", "hmac:x", line=2))
    hit = SweepHit("canary session token (raw)", "/state/logs/api.log", 7)
    areas = tuple(dataclasses.replace(a, hits=(hit,), hits_total=1) if a.name == "logs" else a
                  for a in obs.areas)
    verdict = plaintext_sweep_verdict(dataclasses.replace(obs, areas=areas))
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message.startswith("Known secrets are stored in plaintext (1 occurrences in 1 place)")
    assert "Secret-shaped values the audit did not plant are stored in plaintext (1 value): JSON " \
        "Web Token at /state/logs/api.log line 2 (hmac:x)." in verdict.message


# --- on a real local stack: clean, then secrets planted by hand ----------------------------



def _redis_delete(state_dir: Path, key: str) -> None:
    # In a child process: the stack's Redis password is read from its HSM, and PKCS#11
    # is initialised once per process, for one stack.
    code = ("import sys\nfrom system_under_test.violations.stack import RunningStack\n"
            "client = RunningStack.open(sys.argv[1]).redis()\nclient.delete(sys.argv[2])\n")
    subprocess.run([sys.executable, "-c", code, str(state_dir), key], check=True, timeout=60)


@pytest.fixture
def planted(clean_stack: Any) -> Iterator[Any]:
    """The clean stack, restored as found after the test planted something in it."""
    from system_under_test.violations.plaintext import REDIS_KEY
    from system_under_test.violations.stack import RunningStack

    stack = RunningStack.open(clean_stack.state_dir)
    channels = stack.sql("SELECT id, external_account FROM channels ORDER BY id LIMIT 1")
    captions = stack.sql("SELECT id, caption_enc FROM captions ORDER BY id LIMIT 1")
    log_size = stack.api_log.stat().st_size
    try:
        yield clean_stack
    finally:
        for row_id, value in channels:
            stack.sql("UPDATE channels SET external_account = %s WHERE id = %s", (value, row_id))
        for row_id, value in captions:
            stack.sql("UPDATE captions SET caption_enc = %s WHERE id = %s", (value, row_id))
        with stack.api_log.open("r+b") as log:
            log.truncate(log_size)
        _redis_delete(clean_stack.state_dir, REDIS_KEY)


def _apply(info: Any, name: str) -> None:
    from system_under_test.backends import BACKENDS

    BACKENDS["local"].apply_violation(info.state_dir, name)


def _sweep(info: Any) -> Any:
    return plaintext_sweep_verdict(observe_sweep(load_profile(info.profile_path), load_policy(),
                                                 KnownSecrets()))


def _sweep_fails_after(info: Any, violation: str) -> Any:
    """The sweep's verdict after ``violation`` was applied to the running stack: a FAIL."""
    _apply(info, violation)
    verdict = _sweep(info)
    assert verdict.outcome is Outcome.FAIL, verdict.message
    return verdict


@pytest.mark.integration
def test_clean_stack_passes_with_every_row_and_no_secret_shape(clean_stack: Any,
                                                               tmp_path: Path) -> None:
    from audit_cli import run_cli

    run = run_cli(clean_stack.profile_path, tmp_path / "report", only=["at_rest"], limit_s=600)
    outcome, message = run.results["at_rest.plaintext_sweep"]
    assert outcome == "PASS", message
    assert "No secret-shaped value (" in message and "every Redis value (with its hash fields" \
        in message and "every log line" in message
    outcome, message = run.results["at_rest.data_inventory"]
    assert outcome == "PASS", message
    assert "every row of the" in message and "sampled" not in message
    print(f"at_rest area {run.seconds:.1f} s; plaintext_sweep "
          f"{run.durations['at_rest.plaintext_sweep']:.2f} s; data_inventory "
          f"{run.durations['at_rest.data_inventory']:.2f} s")


@pytest.mark.integration
def test_an_oauth_token_in_a_plaintext_column_of_a_non_canary_row_fails(planted: Any) -> None:
    # Given a Google OAuth access token written by SQL into the oldest channel's public handle,
    # When the sweep runs, Then it FAILs naming the kind, the column and the row, not the value
    verdict = _sweep_fails_after(planted, "row-oauth-token-in-handle")
    row = planted_row(planted, "channels")
    assert (f"Google/YouTube OAuth access token at postgres:channels.external_account row {row} "
            "(hmac:") in verdict.message
    assert "ya29." not in verdict.message and "ya29." not in str(verdict.details)


@pytest.mark.integration
def test_an_api_key_in_a_ciphertext_column_fails_the_sweep_and_the_inventory(planted: Any) -> None:
    # Given an Anthropic API key written by SQL, in plaintext, into the oldest caption_enc
    verdict = _sweep_fails_after(planted, "row-api-key-in-caption")
    row = planted_row(planted, "captions")
    assert f"Anthropic API key at postgres:captions.caption_enc row {row} (hmac:" in verdict.message
    profile = load_profile(planted.profile_path)
    inventory = data_inventory_verdict(observe_inventory(profile, load_policy(), KnownSecrets(),
                                                         None, load_inventory_rules()))
    assert inventory.outcome is Outcome.FAIL, inventory.message
    assert "captions.caption_enc (text): 1 of " in inventory.message
    assert f"cells are not Fernet tokens: stored in plaintext (rows {row})" in inventory.message
    assert "sk-ant-" not in verdict.message + inventory.message


@pytest.mark.integration
def test_a_jwt_stored_as_a_redis_value_fails(planted: Any) -> None:
    from system_under_test.violations.plaintext import REDIS_KEY

    verdict = _sweep_fails_after(planted, "redis-session-jwt")
    assert f"JSON Web Token at redis:{REDIS_KEY} offset " in verdict.message


@pytest.mark.integration
def test_an_authorization_header_in_the_api_log_fails_naming_the_line(planted: Any) -> None:
    log = Path(planted.state_dir) / "logs" / "api.log"
    lines = log.read_bytes().count(b"\n")
    verdict = _sweep_fails_after(planted, "log-bearer-header")
    assert (f"HTTP Authorization header with credentials at {log} line {lines + 1} (hmac:"
            in verdict.message)


def planted_row(info: Any, table: str) -> int:
    from system_under_test.violations.stack import RunningStack

    return int(RunningStack.open(info.state_dir).sql(f"SELECT min(id) FROM {table}")[0][0])


def _redis_run(state_dir: Path, code: str, *args: str) -> None:
    # In a child process, as _redis_delete: PKCS#11 is initialised once per process.
    prelude = ("import sys\nfrom system_under_test.violations.stack import RunningStack\n"
               "client = RunningStack.open(sys.argv[1]).redis()\n")
    subprocess.run([sys.executable, "-c", prelude + code, str(state_dir), *args], check=True,
                   timeout=60)


@pytest.mark.integration
def test_plaintext_fields_in_a_redis_hash_and_a_json_value_fail_naming_key_and_field(
        clean_stack: Any) -> None:
    import json
    import secrets

    # Given, planted by hand: a hash with a plaintext password and a bcrypt hash, and a JSON
    # string whose "email" is plaintext and whose "token" is a Fernet-shaped value
    password, email = secrets.token_urlsafe(12), f"user-{secrets.token_hex(4)}@example.com"
    document = json.dumps({"user": {"email": email, "token": "gAAAAAB" + "x" * 90}})
    hash_key, json_key = "votriz-audit:test:hash", "votriz-audit:test:json"
    try:
        _redis_run(clean_stack.state_dir,
                   "client.hset(sys.argv[2], mapping={'password': sys.argv[3], 'secret': "
                   "'$2b$12$' + 'a' * 53, 'name': 'x'})\nclient.set(sys.argv[4], sys.argv[5])\n",
                   hash_key, password, json_key, document)
        # When the sweep runs
        verdict = _sweep(clean_stack)
        # Then it FAILs naming each key and field, never the values
        assert verdict.outcome is Outcome.FAIL, verdict.message
        assert f"field named 'password' at redis:{hash_key} field password (hmac:" \
            in verdict.message
        assert f"field named 'email' at redis:{json_key} field user.email (hmac:" \
            in verdict.message
        assert "field secret" not in verdict.message and "field user.token" not in verdict.message
        assert password not in str(verdict) and email not in str(verdict)
    finally:
        _redis_run(clean_stack.state_dir, "client.delete(sys.argv[2], sys.argv[3])\n",
                   hash_key, json_key)
