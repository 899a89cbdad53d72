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


def test_a_run_s_figures_name_its_phases_and_slowest_checks() -> None:
    import datetime as dt

    # Given a run started at 12:00:00 whose checks ran from 12:00:06 to 12:00:36, 40 s in all
    results = {"started_at": "2026-12-07T12:00:06+00:00", "finished_at": "2026-12-07T12:00:36+00:00",
               "summary": {"checks": {"PASS": 3}},
               "results": [{"check_id": f"keys.c{n}", "duration_s": n} for n in range(1, 7)]
               + [{"check_id": "transit.hsts", "duration_s": 9.0}]}
    figures = bench_e2e.run_figures(results, 40.0, dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC))
    # Then stand-up, checks and what came after them are told apart, with the slowest five checks
    assert (figures["stand_up_s"], figures["checks_s"], figures["after_checks_s"]) == (6.0, 30.0, 4.0)
    assert figures["per_area_s"] == {"keys": 21.0, "transit": 9.0}
    assert figures["slowest_check"] == {"check_id": "transit.hsts", "seconds": 9.0}
    assert list(figures["slowest_checks"]) == ["transit.hsts", "keys.c6", "keys.c5", "keys.c4", "keys.c3"]
