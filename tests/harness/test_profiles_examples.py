"""The example profiles in ``fixtures/profiles/`` validate as written, with their secret files in place."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.preflight import profile_problems
from harness.profile import SecretSource, TargetProfile, load_profile

PROFILES = Path(__file__).resolve().parents[2] / "fixtures" / "profiles"


def secret_sources(profile: TargetProfile) -> list[SecretSource]:
    sources = [profile.database.password if profile.database else None,
               profile.hsm.pin if profile.hsm else None,
               profile.redis.password if profile.redis else None,
               profile.mailbox.password if profile.mailbox else None]
    return [source for source in sources if source is not None]


def load_with_placeholder_secrets(name: str, directory: Path) -> TargetProfile:
    """The profile copied into ``directory``, each secret file it names written there (0600)."""
    shutil.copy(PROFILES / name, directory / name)
    profile = load_profile(directory / name)
    for source in secret_sources(profile):
        if source.file is not None and source.file.is_relative_to(directory):
            source.file.parent.mkdir(parents=True, exist_ok=True)
            source.file.write_text("placeholder-not-a-secret\n", encoding="ascii")
            source.file.chmod(0o600)
    return profile


@pytest.mark.parametrize("name", sorted(p.name for p in PROFILES.glob("*.toml")))
def test_every_example_profile_validates_and_names_no_secret_inline(name: str, tmp_path: Path) -> None:
    profile = load_with_placeholder_secrets(name, tmp_path)
    # Then every secret comes from a file beside the profile (or a prompt), and each is usable
    for source in secret_sources(profile):
        assert source.prompt or (source.file is not None and source.file.is_relative_to(tmp_path))
    assert [p for p in profile_problems(profile) if not p.startswith(("hsm.module", "edge.trust"))] == []


def test_the_customer_profile_has_only_the_edge(tmp_path: Path) -> None:
    profile = load_with_placeholder_secrets("customer-edge-only.toml", tmp_path)
    assert profile.backend == "remote"
    assert (profile.api, profile.database, profile.hsm, profile.redis, profile.capture, profile.local,
            profile.docker) == (None,) * 7
    assert profile.scan.source_paths == profile.scan.config_paths == ()
    assert profile.operations.allow_destructive is False and profile.attestations == {}
    # Nothing to prepare: no secret file, no trust anchor beyond the system store
    assert secret_sources(profile) == [] and profile_problems(profile) == []


def test_the_operator_profile_selects_by_compose_project_without_capture(tmp_path: Path) -> None:
    profile = load_with_placeholder_secrets("operator-docker-host.toml", tmp_path)
    assert profile.backend == "docker" and profile.capture is None
    assert profile.docker is not None and profile.docker.compose_project == "votriz"
    assert profile.docker.project.engine_filters() == {"label": ["com.docker.compose.project=votriz"]}
    # The database, the HSM and Redis as the host's operator reaches them
    assert profile.database is not None and profile.database.dsn.startswith("host=/")
    assert profile.hsm is not None and "P11_KIT_SERVER_ADDRESS" in profile.hsm.env
    assert profile.redis is not None and profile.redis.password_hsm_label == "votriz/redis/password"
    # Every operator command is named; running them is the operator's choice
    commands = ("rotate_token_key", "rotate_jwt_secret", "rotate_db_password", "rotate_redis_password",
                "backup", "prune_backups", "restore_drill")
    assert all(getattr(profile.operations, name) for name in commands)
    assert profile.operations.backup_dir is not None and profile.operations.drill_log is not None
    # The canary's mail reaches the team's own mailbox, read over IMAPS, plus-addressed per run
    assert profile.mailbox is not None and profile.mailbox.port == 993
    assert profile.mailbox.plus_address("canary-0a1b") == "audit+canary-0a1b@audit.votriz.example"


#: What a message must name for each access a check may lack (the profile section, the
#: operations setting, or the backend that cannot reach it).
ACCESS_WORDS = ("[api]", "api.canaries", "[database]", "database", "[hsm]", "HSM read", "[redis]", "[docker]",
                "[local]", "processes", "operations.", "allow_destructive", "[attestations]", "attestation")
EDGE_CHECKS = ("transit.tls_versions", "transit.certificate", "transit.hsts", "transit.security_headers",
               "transit.http_redirect_only")


def test_with_only_the_edge_every_promise_out_of_reach_says_which_access_it_lacks(
        clean_stack: Any, tmp_path: Path) -> None:
    from tests.audit_cli import run_cli

    # Given the customer's profile pointed at the clean stack's edge and its trust anchor
    edge = load_profile(clean_stack.profile_path).edge
    text = (PROFILES / "customer-edge-only.toml").read_text(encoding="utf-8")
    text = text.replace('host = "app.votriz.example"', f'host = "{edge.host}"\naddress = "{edge.address}"')
    text = text.replace("https_port = 443", f"https_port = {edge.https_port}")
    text = text.replace("http_port = 80 ", f"http_port = {edge.http_port} ")
    text = text.replace('# trust_anchor = "ca.pem"', f'trust_anchor = "{edge.trust_anchor}"')
    profile = tmp_path / "customer.toml"
    profile.write_text(text, encoding="utf-8")
    pointed = load_profile(profile).edge
    assert (pointed.host, pointed.address, pointed.https_port, pointed.http_port, pointed.trust_anchor) == (
        edge.host, edge.address, edge.https_port, edge.http_port, edge.trust_anchor)
    # When the whole audit runs with it
    run = run_cli(profile, tmp_path / "r")
    # Then what the network shows is verified, nothing else passes, nothing is an error
    assert {check: run.outcome(check) for check in EDGE_CHECKS} == dict.fromkeys(EDGE_CHECKS, "PASS"), run.output
    rest = {check: result for check, result in run.results.items() if check not in EDGE_CHECKS}
    assert len(rest) >= 25 and {outcome for outcome, _ in rest.values()} <= {"MANUAL", "NOT_APPLICABLE"}, rest
    # And every other check says which access it lacks
    for check, (_, message) in rest.items():
        assert any(word in message for word in ACCESS_WORDS), (check, message)
    # The HSM checks say it is HSM read they lack, each with its own work by hand
    for check, by_hand in (("keys.hsm_hardware", "KEYS-HSM"), ("keys.no_key_elsewhere", "image layers"),
                           ("keys.read_at_start", "token file open"), ("keys.hsm_custody", "namespace")):
        assert run.message(check).startswith("This check needs HSM read"), run.message(check)
        assert by_hand in run.message(check)
    # A rotation names both what is not allowed and what is not named
    assert ("(operations.allow_destructive = false), and the profile names no operations.rotate_jwt_secret "
            "command") in run.message("keys.jwt_rotation")
    assert run.returncode == 0, run.output[-2000:]
