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


def test_a_gap_both_scans_met_is_named_once(tmp_path) -> None:
    import os

    from harness.formats.secret_patterns import ShapeFinder
    from harness.probes.plaintext import _area
    from harness.sweep import files_under

    # Given a log directory holding a FIFO, listed by the known-secret sweep's walk and the shape scan alike
    os.mkfifo(tmp_path / "pipe")

    def run(report, shapes) -> None:
        list(files_under([tmp_path], report))
        shapes.scan_files([tmp_path], report.unreadable)

    area = _area("logs", run, ShapeFinder(key=b"k" * 32), KnownSecrets())
    # Then the area is not clean and names the FIFO once
    assert area.problem.startswith("unreadable (1): ") and area.problem.count("pipe") == 1, area.problem
