"""The token probe: the HSM key ring read whole or not at all, the canary's tokens read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import token_ring
from harness.canaries import Canary, CanaryChannel
from harness.formats.fernet import FernetKey, encrypt_fernet_token
from harness.policy import load_policy
from harness.probes.stored_tokens import canary_token_results, observe_tokens
from harness.profile import parse_profile
from harness.redaction import KnownSecrets
from harness.token_ring import fernet_key_ring

POLICY = load_policy()
KEY = FernetKey(b"k" * 32, "votriz/token-encryption/v1")
OTHER = FernetKey(b"o" * 32, "other")
DATABASE = '[database]\ndsn = "host=db dbname=votriz user=votriz_auditor"\n'
HSM = '[hsm]\nmodule = "/usr/lib/p11.so"\ntoken_label = "votriz"\npin = { prompt = true }\n'


def _profile(extra: str = "") -> object:
    return parse_profile(f'name = "t"\n[edge]\nhost = "votriz.test"\n{extra}')


PREFIX = "votriz/token-encryption/"


def test_key_ring_with_an_unreadable_key_is_error_naming_the_label() -> None:
    from harness.outcomes import ProbeError
    from harness.probes.hsm import KeyValues

    # Given a ring of two keys, one of which the HSM will not hand out
    values = KeyValues({"votriz/token-encryption/v1": b"k" * 32},
                       {"votriz/token-encryption/v2": "the value is sensitive (CKA_SENSITIVE) "
                                                      "and cannot be read"})
    # When the ring is assembled, Then the check cannot judge (ERROR), naming the key
    with pytest.raises(ProbeError) as error:
        fernet_key_ring(PREFIX, values)
    assert str(error.value) == (
        "the token-encryption key ring under 'votriz/token-encryption/' cannot be read whole from "
        "the HSM ('votriz/token-encryption/v2': the value is sensitive (CKA_SENSITIVE) and cannot "
        "be read), so tokens under that key could not be verified")


def test_key_ring_read_whole_is_used() -> None:
    from harness.outcomes import ProbeError
    from harness.probes.hsm import KeyValues

    ring = fernet_key_ring(PREFIX, KeyValues({
"votriz/token-encryption/v1": b"k" * 32, "votriz/token-encryption/v2": b"o" * 32}))
    assert [k.label for k in ring] == ["votriz/token-encryption/v1", "votriz/token-encryption/v2"]
    with pytest.raises(ProbeError, match="no token-encryption key under"):
        fernet_key_ring(PREFIX, KeyValues({}))


def test_tokens_check_is_error_not_fail_when_a_ring_key_is_unreadable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.outcomes import ProbeError
    from harness.probes.hsm import KeyValues

    # Given an HSM whose ring has one readable and one unreadable key
    class _Snapshot:
        values = KeyValues({"votriz/token-encryption/v1": b"k" * 32},
                           {"votriz/token-encryption/v2": "2 objects share this label"})

    monkeypatch.setattr(token_ring.hsm_probe, "snapshot", lambda *a, **k: _Snapshot())
    profile = _profile(DATABASE + HSM)
    # When the observation starts, Then it stops before any cell is judged, naming the key
    with pytest.raises(ProbeError, match="'votriz/token-encryption/v2': 2 objects share"):
        observe_tokens(profile, POLICY, KnownSecrets(), None)  # type: ignore[arg-type]


def test_canary_tokens_read_back() -> None:
    channel = CanaryChannel("tiktok", 7, "canary.at.tiktok.x", "canary.rt.tiktok.y")
    canary = Canary("run", "canary+run@audit.invalid", "pw", channels=(channel,))
    stored = {7: (encrypt_fernet_token(b"canary.at.tiktok.x", KEY), "canary.rt.tiktok.y")}
    results = canary_token_results(canary, stored, [KEY], now=2e9, max_clock_skew_s=1e10)
    assert [(r.kind, r.result) for r in results] == [("access", "matches"),
                                                      ("refresh", "not_base64")]
    assert canary_token_results(canary, {}, [KEY], now=0, max_clock_skew_s=0)[0].result \
        == "row missing"
