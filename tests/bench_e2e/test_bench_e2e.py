"""The end-to-end benchmark's reading of a fresh first run's time-stamped output."""

from __future__ import annotations

from bench import bench_e2e


def test_phases_are_read_off_the_first_run_output() -> None:
    lines = [(0.1, "dev: installing Python packages into .venv (log: .venv/pip.log)"),
             (70.2, "images: edge: waiting for base"),
             (95.0, "images: base: built in 24.8 s"),
             (180.4, "images: api: built in 41.0 s"),
             (150.0, "images: still working: api (docker build, 60 s)"),
             (190.9, "votriz-audit: reference service up (docker), auditing -> report"),
             (240.5, "votriz-audit: verdict PASS, exit 0 (all 36 promises): ..."),
             (243.0, "votriz-audit: taking the reference service down (docker): done after 2.5 s")]
    assert bench_e2e.fresh_phases(lines) == {"install_done_s": 70.2, "images_done_s": 180.4,
                                         "stand_up_done_s": 190.9, "verdict_s": 240.5}


def test_a_run_that_stopped_early_has_no_later_phases() -> None:
    lines = [(0.1, "dev: installing Python packages into .venv (log: .venv/pip.log)"),
             (3.0, "dev: pip install failed (full log: .venv/pip.log)")]
    assert bench_e2e.fresh_phases(lines) == {"install_done_s": None, "images_done_s": None,
                                         "stand_up_done_s": None, "verdict_s": None}
