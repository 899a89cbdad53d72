"""The plaintext probe: which areas it searches, and how many secrets are the canary's."""

from __future__ import annotations

from harness.policy import load_policy
from harness.probes.plaintext import observe_sweep
from harness.profile import parse_profile
from harness.redaction import KnownSecrets

POLICY = load_policy()


def _profile(extra: str = "") -> object:
    return parse_profile(f'name = "t"\n[edge]\nhost = "votriz.test"\n{extra}')


def test_sweep_counts_canary_secrets_by_label() -> None:
    known = KnownSecrets()
    known.add("canary+x@audit.invalid", "canary e-mail")
    known.add("db-password-value", "database password")
    profile = _profile()
    obs = observe_sweep(profile, POLICY, known, "no [api]")  # type: ignore[arg-type]
    assert (obs.secrets, obs.canary_secrets, obs.canary_note) == (2, 1, "no [api]")
    assert [a.searched for a in obs.areas] == [False] * 4
