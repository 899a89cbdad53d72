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
    ("[[waiver]\n", "not valid TOML"),
])
def test_bad_waiver_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "w.toml"
    path.write_text(text)
    with pytest.raises(WaiverError) as exc:
        load_waivers(path, known_checks={"transit.hsts"})
    assert message in str(exc.value)
