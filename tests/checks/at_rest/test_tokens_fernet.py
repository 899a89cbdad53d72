"""at_rest.tokens_fernet on hand-made observations: both sides, outcome and message."""

from __future__ import annotations

import pytest

from checks.at_rest.tokens_fernet import tokens_fernet_unavailable, tokens_fernet_verdict
from harness.canaries import PLATFORMS
from harness.column_scans import DuplicateCounter, FernetColumnScan, FernetTally
from harness.formats.fernet import FernetKey, encrypt_fernet_token
from harness.outcomes import Outcome
from harness.probes.stored_tokens import CanaryTokenResult, TokenObservation
from harness.profile import parse_profile

KEY = FernetKey(b"k" * 32, "votriz/token-encryption/v1")
DATABASE = '[database]\ndsn = "host=db dbname=votriz user=votriz_auditor"\n'
HSM = '[hsm]\nmodule = "/usr/lib/p11.so"\ntoken_label = "votriz"\npin = { prompt = true }\n'


def _profile(extra: str = "") -> object:
    return parse_profile(f'name = "t"\n[edge]\nhost = "votriz.test"\n{extra}')


def _tokens(**changes: object) -> TokenObservation:
    base = dict(ring=("votriz/token-encryption/v1",),
                columns=(FernetColumnScan("channels.access_token_enc", 10, 10, {}, (),
                                          {"votriz/token-encryption/v1": 10}),),
                shared_iv_cells=0, shared_iv_groups=0, shared_ciphertext_cells=0,
                canary=tuple(CanaryTokenResult(p, k, "matches") for p in PLATFORMS
                             for k in ("access", "refresh")))
    base.update(changes)
    return TokenObservation(**base)  # type: ignore[arg-type]


def test_tokens_pass() -> None:
    verdict = tokens_fernet_verdict(_tokens())
    assert verdict.outcome is Outcome.PASS
    assert "All 10 token cells" in verdict.message
    assert "canary's 10 tokens (5 platforms) decrypt to exactly what was handed in" in verdict.message


def test_tokens_fail_on_plaintext_rows_and_canary() -> None:
    scan = FernetColumnScan("channels.access_token_enc", 10, 8, {"not_base64": 2},
                            ("row 4: not_base64", "row 9: not_base64"), {})
    canary = (CanaryTokenResult("tiktok", "access", "not_base64"),)
    verdict = tokens_fernet_verdict(_tokens(columns=(scan,), canary=canary))
    assert verdict.outcome is Outcome.FAIL
    assert "2 of 10 cells of channels.access_token_enc are not Fernet tokens" in verdict.message
    assert "tiktok access (not_base64)" in verdict.message


def test_tokens_fail_on_shared_iv() -> None:
    verdict = tokens_fernet_verdict(_tokens(shared_iv_cells=20, shared_iv_groups=1))
    assert verdict.outcome is Outcome.FAIL
    assert "20 token cells share an IV with another cell (1 IV used more than once)" in \
        verdict.message


def test_token_failures_are_named_by_platform() -> None:
    good = encrypt_fernet_token(b"t", KEY, now=1_000_000)
    tally = FernetTally([KEY], now=1_000_000, max_clock_skew_s=300,
                        duplicates=DuplicateCounter(),
                        parts=(*PLATFORMS, "other"), part_of=str)
    rows = [(1, p, good) for p in PLATFORMS] + [(2, "tiktok", "canary.at.tiktok.x")]
    tally.add(rows, 2, 1)
    merged = tally.scan("channels.access_token_enc")
    assert (merged.rows, merged.valid) == (6, 5)
    assert merged.by_platform["tiktok"] == {"rows": 2, "valid": 1}
    assert merged.examples == ("row 2: not_base64 (tiktok)",)
    verdict = tokens_fernet_verdict(_tokens(columns=(merged,)))
    assert verdict.outcome is Outcome.FAIL
    assert "by platform: tiktok 1 of 2" in verdict.message


@pytest.mark.parametrize(("sections", "missing"), [
    ("", "no [database] section and no [hsm] section"),
    (HSM, "no [database] section"),
    (DATABASE, "no [hsm] section"),
])
def test_tokens_without_database_or_hsm_are_manual_not_na(sections: str, missing: str) -> None:
    verdict = tokens_fernet_unavailable(_profile(sections))  # type: ignore[arg-type]
    assert verdict is not None and verdict.outcome is Outcome.MANUAL
    assert verdict.message.startswith(f"The profile has {missing}, so the token columns cannot")
    assert "By hand: on the service's database run `SELECT id, platform, access_token_enc" in \
        verdict.message
    assert "MultiFernet" in verdict.message


def test_tokens_with_database_and_hsm_run() -> None:
    assert tokens_fernet_unavailable(_profile(DATABASE + HSM)) is None  # type: ignore[arg-type]
