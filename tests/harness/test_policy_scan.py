"""The policy's [scan] section and its override point for the CLI (--jobs, --sample)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.parallel_scan import scan_jobs
from harness.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy


def test_the_default_reads_every_row_on_every_core() -> None:
    policy = load_policy()
    assert policy.scan.jobs == 0 and policy.scan.sample_rows is None
    assert scan_jobs(policy) >= 1


def test_the_override_is_validated_and_leaves_the_rest() -> None:
    policy = load_policy()
    changed = policy.with_scan(jobs=3, sample_rows=1_000_000)
    assert (changed.scan.jobs, changed.scan.sample_rows) == (3, 1_000_000)
    assert scan_jobs(changed) == 3 and changed.timeouts == policy.timeouts
    assert policy.with_scan(jobs=1).scan.sample_rows is None
    with pytest.raises(PolicyError, match=r"^scan.jobs: Input should be greater than or equal to 0$"):
        policy.with_scan(jobs=-1)
    with pytest.raises(PolicyError, match=r"^scan.sample_rows: "):
        policy.with_scan(sample_rows=0)


def test_a_policy_file_may_ask_for_a_sample(tmp_path: Path) -> None:
    text = DEFAULT_POLICY_PATH.read_text()
    path = tmp_path / "policy.toml"
    path.write_text(text.replace("# sample_rows = 1000000", "sample_rows = 5000"))
    assert load_policy(path).scan.sample_rows == 5000
    path.write_text(text.replace("jobs = 0", "jobs = -2"))
    with pytest.raises(PolicyError):
        load_policy(path)
