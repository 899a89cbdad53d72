"""The checks run with plain pytest, as the README says: ``pytest -p harness.plugin
--votriz-target=PROFILE`` from the repository's root (every check of ``checks/``, not the
harness's own tests that ``pyproject.toml`` names), and from any other directory with the
checks' path. Real subprocesses, against a target whose edge refuses every connection: each
check that needs the edge ends ERROR, never PASS."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from pytester_checks import unreachable_target

from harness.checkdir import CHECKS_DIR
from harness.plugin import plugin_args

ROOT = CHECKS_DIR.parent


#: pytest as a user starts it: the console script (the interpreter's path is not the checkout's).
PYTEST = [str(Path(sys.executable).parent / "pytest")]


def _pytest(cwd: Path, *args: str, pytest: Sequence[str] = PYTEST) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*pytest, *plugin_args(), "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def _results(report: Path) -> dict[str, dict]:
    return {r["check_id"]: r for r in json.loads((report / "results.json").read_text())["results"]}


@pytest.mark.parametrize("started_as", [PYTEST, [sys.executable, "-m", "pytest"]], ids=["pytest", "python-m"])
def test_from_the_repository_root_plain_pytest_runs_the_checks_not_the_tests(
        tmp_path: Path, started_as: list[str]) -> None:
    # Given a target whose edge refuses connections
    profile, report = unreachable_target(tmp_path), tmp_path / "report"
    # When pytest is started in the repository's root with the plugin asked for and no path
    # (pyproject.toml's testpaths would collect tests/), only the HSTS check selected
    proc = _pytest(ROOT, f"--votriz-target={profile}", f"--votriz-report-dir={report}", "-k", "hsts",
                   pytest=started_as)
    # Then the checks of checks/ were collected, none of the harness's tests, and no import failed
    assert "ImportError" not in proc.stdout + proc.stderr
    results = _results(report)
    assert list(results) == ["transit.hsts"], proc.stdout[-2000:]
    # And the check could not verify an edge it cannot reach: ERROR with why, and pytest says failed
    assert results["transit.hsts"]["outcome"] == "ERROR"
    assert "127.0.0.1" in results["transit.hsts"]["message"]
    # And pytest's exit status is the gate's, as `votriz-audit run`'s (ERROR: 2)
    assert "votriz-audit: gate ERROR (exit 2)" in proc.stdout
    assert proc.returncode == 2


def test_from_another_directory_plain_pytest_runs_the_checks_it_is_given(tmp_path: Path) -> None:
    profile, report = unreachable_target(tmp_path), tmp_path / "report"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # When pytest is started outside the repository on the transit area's folder
    proc = _pytest(elsewhere, f"--votriz-target={profile}", f"--votriz-report-dir={report}",
                   str(CHECKS_DIR / "transit"))
    # Then every transit check ran, by its id, and none passed against an edge that is not there
    results = _results(report)
    assert results and all(ident.startswith("transit.") for ident in results), proc.stdout[-2000:]
    assert "transit.hsts" in results and "transit.tls_versions" in results
    assert not [ident for ident, r in results.items() if r["outcome"] == "PASS"]
    assert proc.returncode == 2


def test_from_a_directory_without_pytest_configuration_it_runs_the_checks_not_that_directory(
        tmp_path: Path) -> None:
    profile, report = unreachable_target(tmp_path), tmp_path / "report"
    home = tmp_path / "home"
    home.mkdir()
    (home / "test_unrelated.py").write_text("def test_unrelated():\n    raise AssertionError('collected')\n")
    # When pytest is started there without a path, the HSTS check selected
    proc = _pytest(home, f"--votriz-target={profile}", f"--votriz-report-dir={report}", "-k", "hsts or unrelated")
    # Then it ran the check, not the directory's own test
    assert list(_results(report)) == ["transit.hsts"], proc.stdout[-2000:]
    assert "collected')" not in proc.stdout


def test_a_bad_profile_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    # When the profile named does not exist
    proc = _pytest(ROOT, f"--votriz-target={tmp_path / 'missing.toml'}")
    # Then pytest stops with a usage error naming it, in one line
    assert proc.returncode == 4
    assert f"{tmp_path / 'missing.toml'}: cannot read the profile" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("where", ["bare-pyproject", "repository-subdirectory"])
def test_without_a_path_it_runs_the_checks_wherever_it_is_started(tmp_path: Path, where: str) -> None:
    profile, report = unreachable_target(tmp_path), tmp_path / "report"
    if where == "bare-pyproject":
        # Given a project directory whose pyproject.toml says nothing of pytest (pytest >= 8.1
        # still takes it for its configuration file), and a test of its own
        start = tmp_path / "project"
        start.mkdir()
        (start / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "1"\n')
        (start / "test_app.py").write_text("def test_app():\n    raise AssertionError('collected')\n")
    else:
        # Given the repository's harness/ folder (the repository's pyproject.toml is found above it)
        start = ROOT / "harness"
    # When pytest is started there without a path, the HSTS check selected
    proc = _pytest(start, f"--votriz-target={profile}", f"--votriz-report-dir={report}", "-k", "hsts or app")
    # Then the check of checks/ ran, and nothing of the directory
    assert list(_results(report)) == ["transit.hsts"], proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "collected')" not in proc.stdout and "has no @pytest.mark.claims" not in proc.stdout + proc.stderr
    assert proc.returncode == 2


def test_the_exit_status_follows_a_gate_that_verified_nothing(tmp_path: Path) -> None:
    profile, report = unreachable_target(tmp_path), tmp_path / "report"
    # When only checks that end N/A or MANUAL run (no outbound proxy, no origin named)
    proc = _pytest(ROOT, f"--votriz-target={profile}", f"--votriz-report-dir={report}",
                   "-k", "origin_not_plaintext or outbound")
    # Then pytest exits as `votriz-audit run` does: 2 (nothing verified), not 0
    assert "gate VACUOUS (exit 2)" in proc.stdout, proc.stdout[-2000:]
    assert proc.returncode == 2


def test_a_report_directory_holding_a_run_is_never_overwritten(tmp_path: Path) -> None:
    profile, report = unreachable_target(tmp_path), tmp_path / "report"
    argv = (f"--votriz-target={profile}", f"--votriz-report-dir={report}", "-k", "hsts")
    # Given a first run's sealed results
    first = _pytest(ROOT, *argv)
    assert first.returncode == 2, first.stdout[-2000:]
    written = (report / "results.json").read_bytes()
    # When a second run is pointed at the same directory
    second = _pytest(ROOT, *argv)
    # Then it stops before any check, in one line, and the first run's results stand
    assert second.returncode == pytest.ExitCode.USAGE_ERROR
    assert f"{report}: already holds files; evidence is never overwritten" in second.stderr
    assert "Traceback" not in second.stdout + second.stderr
    assert (report / "results.json").read_bytes() == written
