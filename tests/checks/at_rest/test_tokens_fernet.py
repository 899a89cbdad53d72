"""at_rest.tokens_fernet on hand-made observations (both sides, outcome and message), and on a
running local stack: clean PASS, then an authentic but badly padded token planted by SQL FAILs."""

from __future__ import annotations

from typing import Any

import pytest

from checks.at_rest.tokens_fernet import tokens_fernet_unavailable, tokens_fernet_verdict
from harness.canaries import PLATFORMS
from harness.column_scans import DuplicateCounter, FernetColumnScan, FernetTally
from harness.formats.fernet import FernetKey, encrypt_fernet_token
from harness.outcomes import Outcome
from harness.probes.stored_tokens import CanaryTokenResult, TokenObservation
from harness.profile import parse_profile
from harness.sampling import SampleNote

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
    assert "and whose decrypted padding is correct" in verdict.message
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


def test_authentic_but_badly_padded_cells_fail_with_their_count_and_rows() -> None:
    scan = FernetColumnScan("channels.access_token_enc", 10, 8, {"bad_padding": 2},
                            ("row 3: bad_padding (tiktok)", "row 7: bad_padding (youtube)"),
                            {"votriz/token-encryption/v1": 8},
                            {"tiktok": {"rows": 5, "valid": 4}, "youtube": {"rows": 5, "valid": 4}},
                            ("row 3 (tiktok)", "row 7 (youtube)"))
    verdict = tokens_fernet_verdict(_tokens(columns=(scan,)))
    assert verdict.outcome is Outcome.FAIL
    assert ("2 of 10 cells of channels.access_token_enc are not Fernet tokens that verify and "
            "decrypt under the HSM key ring (bad_padding 2; by platform: tiktok 1 of 5, "
            "youtube 1 of 5") in verdict.message
    assert ("2 cells of channels.access_token_enc are authentic but badly padded (the HMAC "
            "verifies under the HSM key ring, but the decrypted plaintext's PKCS#7 padding is "
            "broken") in verdict.message
    assert "is not a correct Fernet implementation (row 3 (tiktok), row 7 (youtube))" in \
        verdict.message
    assert list(verdict.details["columns"][0]["badly_padded"]) == ["row 3 (tiktok)", "row 7 (youtube)"]


def test_badly_padded_rows_beyond_the_examples_are_counted_not_all_named() -> None:
    rows = tuple(f"row {i}" for i in range(10))
    scan = FernetColumnScan("channels.refresh_token_enc", 50, 25, {"bad_padding": 25},
                            tuple(f"{r}: bad_padding" for r in rows), {}, {}, rows)
    verdict = tokens_fernet_verdict(_tokens(columns=(scan,)))
    assert verdict.outcome is Outcome.FAIL
    assert "25 cells of channels.refresh_token_enc are authentic but badly padded" in \
        verdict.message
    assert "(the first 10: row 0, row 1," in verdict.message


def test_a_real_badly_padded_token_fails_through_the_tally() -> None:
    # Given a token made by hand with the ring's key (AES-CBC with no padding, then the HMAC)
    import base64
    import hashlib
    import hmac

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.AES(KEY.encryption_key), modes.CBC(bytes(16))).encryptor()
    body = (b"\x80" + (1_000_000).to_bytes(8, "big") + bytes(16)
            + encryptor.update(b"unpadded-secret!") + encryptor.finalize())
    token = base64.urlsafe_b64encode(
        body + hmac.new(KEY.signing_key, body, hashlib.sha256).digest()).decode()
    good = encrypt_fernet_token(b"t", KEY, now=1_000_000)
    tally = FernetTally([KEY], now=1_000_000, max_clock_skew_s=300,
                        duplicates=DuplicateCounter(), parts=(*PLATFORMS, "other"), part_of=str)
    # When it is scanned among valid tokens
    tally.add([(1, "tiktok", good), (2, "tiktok", token), (3, "youtube", good)], 2, 1)
    verdict = tokens_fernet_verdict(_tokens(columns=(tally.scan("channels.access_token_enc"),)))
    # Then the check FAILs naming the row, never the value
    assert verdict.outcome is Outcome.FAIL
    assert "1 cell of channels.access_token_enc is authentic but badly padded" in verdict.message
    assert "(row 2 (tiktok))" in verdict.message
    assert token not in verdict.message and token not in str(verdict.details)


# --- on a real local stack: clean, then an authentic but unpadded token planted by SQL ---------


@pytest.mark.integration
def test_an_authentic_badly_padded_token_planted_in_the_running_stack_fails(clean_stack: object) -> None:
    from harness.formats.fernet_engine import engine_name
    from harness.policy import load_policy
    from harness.probes.stored_tokens import observe_tokens
    from harness.profile import load_profile
    from harness.redaction import KnownSecrets
    from system_under_test.backends import BACKENDS
    from system_under_test.violations.stack import RunningStack

    info: Any = clean_stack
    profile = load_profile(info.profile_path)

    def judged() -> Any:
        return tokens_fernet_verdict(observe_tokens(profile, load_policy(), KnownSecrets(), None,
                                                    "no canary in this test"))

    stack = RunningStack.open(info.state_dir)
    as_found = stack.sql("SELECT id, refresh_token_enc FROM channels ORDER BY id LIMIT 1")
    assert as_found, "the clean stack holds no channel row"
    row_id = as_found[0][0]
    # Given the clean stack, on which every token (the service's own) is valid, padding included
    clean = judged()
    assert clean.outcome is Outcome.PASS, clean.message
    assert "and whose decrypted padding is correct" in clean.message
    # And the evidence says which engine judged the cells (native where ./dev install built it)
    assert {column["engine"] for column in clean.details["columns"]} == {engine_name()}
    try:
        # When the oldest channel's refresh token is replaced by SQL with a token made with the
        # current key from the HSM (authentic) but with no padding, as calibrate applies it
        BACKENDS["local"].apply_violation(info.state_dir, "row-token-bad-padding")
        planted = stack.sql("SELECT refresh_token_enc FROM channels WHERE id = %s", (row_id,))[0][0]
        verdict = judged()
    finally:
        stack.sql("UPDATE channels SET refresh_token_enc = %s WHERE id = %s",
                  (as_found[0][1], row_id))
    # Then the check FAILs naming the count and the row, never the value
    assert planted != as_found[0][1]
    assert verdict.outcome is Outcome.FAIL, verdict.message
    assert "1 cell of channels.refresh_token_enc is authentic but badly padded" in verdict.message
    assert f"(row {row_id} (" in verdict.message
    assert "bad_padding 1" in verdict.message
    assert planted not in verdict.message and planted not in str(verdict.details)


SAMPLE = SampleNote("channels", "TABLESAMPLE BERNOULLI", 0.5, 2_000_000, False, 10)


def test_a_sampled_pass_says_sampled_with_its_bound_and_what_it_did_not_look_at() -> None:
    verdict = tokens_fernet_verdict(_tokens(sample=SAMPLE))
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.startswith("SAMPLED, not every row: 10 of about 2000000 rows of "
                                      "channels")
    # 1 - 0.01 ** (1 / 10) = 0.369
    assert "with 99% confidence fewer than 37% of the token cells violate" in verdict.message
    assert "shared IVs were looked for among the sampled cells only" in verdict.message
    assert verdict.details["sampling"]["rows_sampled"] == 10


def test_a_violation_in_a_sample_is_still_fail_marked_sampled() -> None:
    scan = FernetColumnScan("channels.access_token_enc", 10, 9, {"not_base64": 1},
                            ("row 4: not_base64",), {})
    verdict = tokens_fernet_verdict(_tokens(columns=(scan,), sample=SAMPLE))
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message.startswith("SAMPLED (a uniform sample, not every row): OAuth tokens "
                                      "are not all encrypted")
    assert "Found among 10 rows of channels drawn at random" in verdict.message
