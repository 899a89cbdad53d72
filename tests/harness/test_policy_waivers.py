"""Policies and waiver files: the default loads, contradictions and bad files are refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from harness.policy import PolicyError, load_policy
from harness.waivers import WaiverError, load_waivers


def test_default_policy_holds_the_page_to_its_words() -> None:
    policy = load_policy()
    assert policy.tls.allowed_versions == ("TLSv1.3",)
    assert policy.bcrypt.cost == 12
    assert policy.backups.retention_days == 30
    assert policy.hsts.min_max_age_s >= 31536000


@pytest.mark.parametrize(("body", "message"), [
    ('[tls]\nallowed_versions = []\n', "no TLS version could ever pass"),
    ('[timeouts]\nconnect_s = 30\nrequest_s = 10\n', "connect_s is longer than timeouts.request_s"),
    ('[tls]\nallowed_versions = ["TLSv1.4"]\n', "tls.allowed_versions[0]: Input should be"),
    ('[bcrypt]\ncost = "twelve"\n', "bcrypt.cost: Input should be a valid integer"),
    ('[hsts]\nmax_age = 1\n', "hsts.max_age: unknown key"),
    ('[timeouts]\ncommand_s = inf\n',
     "timeouts.command_s: Input should be a finite number (allowed: a finite number > 0 and <= 86400)"),
    ('[timeouts]\ncommand_s = nan\n', "timeouts.command_s: Input should be a finite number"),
    ('[timeouts]\ncommand_s = 1e300\nrun_s = 1e300\n',
     "timeouts.command_s: Input should be less than or equal to 86400 (allowed: a finite number > 0 "
     "and <= 86400)"),
    ('[timeouts]\nrun_s = 86401\n', "timeouts.run_s: Input should be less than or equal to 86400"),
    ('[backups]\nretention_days = 1e300\n', "backups.retention_days:"),
    ('[rotation]\nseed_channels = 100000000000000000000\n', "rotation.seed_channels:"),
    ('[fernet]\nmax_clock_skew_s = -1\n',
     "fernet.max_clock_skew_s: Input should be greater than or equal to 0 (allowed: a finite number "
     ">= 0 and <= 86400)"),
    ('[waivers]\nmax_days_ahead = 0\n', "waivers.max_days_ahead: Input should be greater than"),
])
def test_bad_policies_are_refused_with_the_key(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('name = "p"\nversion = "1"\n' + body)
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    assert str(path) in str(exc.value) and message in str(exc.value)


WAIVER = """
[[waiver]]
check = "transit.hsts"
justification = "Accepted until the edge migration, SEC-42"
approved_by = "CISO"
expires = 2027-01-31
"""


def test_waiver_applies_until_its_last_day(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text(WAIVER)
    waiver = load_waivers(path, known_checks={"transit.hsts"}).for_check("transit.hsts")
    assert waiver is not None
    assert waiver.is_current(dt.date(2027, 1, 31)) and not waiver.is_current(dt.date(2027, 2, 1))


@pytest.mark.parametrize(("text", "message"), [
    (WAIVER.replace('justification = "Accepted until the edge migration, SEC-42"\n', ""),
     "waiver[0].justification: Field required"),
    (WAIVER.replace("2027-01-31", '"next month"'), "waiver[0].expires:"),
    (WAIVER.replace("transit.hsts", "transit.nope"), "waiver[0].check: unknown check 'transit.nope'"),
    (WAIVER.replace('"Accepted until the edge migration, SEC-42"', '"          "'),
     "waiver[0].justification: Value error, is blank"),
    (WAIVER.replace('"Accepted until the edge migration, SEC-42"', '"  too short  "'),
     "waiver[0].justification: Value error, must say why in at least 10 characters"),
    (WAIVER.replace('"CISO"', '" "'), "waiver[0].approved_by: Value error, is blank"),
    (WAIVER.replace('"CISO"', '"\\t\\n"'), "waiver[0].approved_by: Value error, is blank"),
    (WAIVER.replace('"transit.hsts"', '"   "'), "waiver[0].check: Value error, is blank"),
    ("[[waiver]\n", "not valid TOML"),
])
def test_bad_waiver_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "w.toml"
    path.write_text(text)
    with pytest.raises(WaiverError) as exc:
        load_waivers(path, known_checks={"transit.hsts"})
    assert message in str(exc.value)


def test_every_policy_number_is_bounded() -> None:
    from harness.policy import Policy
    from harness.tomlfile import field_range

    # Every numeric field of every section states both ends of its range.
    for section, info in Policy.model_fields.items():
        model = info.annotation
        for name, field in getattr(model, "model_fields", {}).items():
            if field.annotation in (int, float):
                bounds = field_range(Policy, (section, name))
                assert ("<=" in bounds or "<" in bounds) and (">" in bounds), (section, name, bounds)


def test_a_waiver_further_ahead_than_the_policy_allows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text(WAIVER)
    today = dt.date(2026, 12, 7)
    # 2027-01-31 is 55 days after 2026-12-07
    assert load_waivers(path, known_checks={"transit.hsts"}, max_days_ahead=55, today=today).waiver
    with pytest.raises(WaiverError) as exc:
        load_waivers(path, known_checks={"transit.hsts"}, max_days_ahead=54, today=today)
    assert str(exc.value) == (f"{path}: waiver[0].expires: 2027-01-31 is more than 54 days ahead "
                              "(latest accepted 2027-01-30; policy waivers.max_days_ahead)")


def test_a_waiver_keeps_its_fields_without_surrounding_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text(WAIVER.replace('"CISO"', '"  CISO  "'))
    waiver = load_waivers(path, known_checks={"transit.hsts"}).for_check("transit.hsts")
    assert waiver is not None and waiver.approved_by == "CISO"


EXAMPLE_WAIVERS = Path(__file__).resolve().parents[2] / "fixtures" / "waivers" / "example.toml"


def test_the_example_waiver_file_is_accepted_as_the_run_loads_it() -> None:
    from harness.inputs import load_rules

    # When `run --waivers fixtures/waivers/example.toml` loads it (known checks, the policy's limit)
    rules = load_rules(waivers=EXAMPLE_WAIVERS)
    # Then both of its waivers are there, each for a check the catalogue links
    assert [w.check for w in rules.waivers.waiver] == ["transit.outbound_https", "at_rest.backup_retention"]
    assert {w.check for w in rules.waivers.waiver} <= rules.catalogue.check_ids()
    # And each applies until its last day only (as dated on the day the file was written)
    written = dt.date(2026, 12, 7)
    for waiver in rules.waivers.waiver:
        assert waiver.is_current(written) and waiver.is_current(waiver.expires)
        assert not waiver.is_current(waiver.expires + dt.timedelta(days=1))
    assert load_waivers(EXAMPLE_WAIVERS, known_checks=rules.catalogue.check_ids(),
                        max_days_ahead=rules.policy.waivers.max_days_ahead, today=written) == rules.waivers
