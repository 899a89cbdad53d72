"""The two distributions as pip installs them: wheels built offline from this tree, installed
into a fresh virtualenv and run from a directory outside the checkout (issue 14).

Before harness/bundled.py the installed auditor stopped at its first command that reads data
("<site-packages>/fixtures/policy/default.toml: cannot read the policy"), and no test saw it:
every other test imports the checkout. The wheels are built with this virtualenv's setuptools
(``--no-build-isolation --no-index``: nothing is downloaded); the fresh virtualenv borrows
this one's third-party packages through a .pth file naming a directory of links to them,
leaving out this project's own packages and their editable finders, so ``harness``, ``checks``
and ``system_under_test`` can only come from the wheels. Building both wheels and the two
virtualenvs takes ~10 s; the reference's stand-up, transit audit and take-down ~15 s more.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from audit_cli import new_state_dir

from harness.checkdir import declared_checks
from system_under_test.docker import images

ROOT = Path(__file__).resolve().parents[1]
#: What the auditor's wheel is built from (nothing else of the tree may be needed).
AUDITOR_SOURCES = ("pyproject.toml", "README.md", "harness", "checks", "fixtures")
#: This project's packages, distributions and editable finders: never borrowed from this venv.
OURS = ("harness", "checks", "system_under_test", "votriz_audit", "votriz_reference", "__editable__")
_SKIPPED_IN_COPIES = shutil.ignore_patterns("__pycache__", "*.pyc", "target", "build", "*.egg-info", ".state")

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Installed:
    """A fresh virtualenv with wheels of this tree installed.

    Attributes:
        venv: its directory.
        workdir: an empty directory outside the checkout, where its commands run.
    """

    venv: Path
    workdir: Path

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``votriz-audit ARGS`` of this virtualenv, in :attr:`workdir`, with no path to the checkout."""
        return self._in_venv("votriz-audit", *args, timeout=timeout)

    def python(self, code: str) -> list[str]:
        """The lines ``code`` prints, run by this virtualenv's Python as :meth:`run` runs commands."""
        done = self._in_venv("python", "-c", code, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    def _in_venv(self, program: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        env = {name: value for name, value in os.environ.items()
               if name not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        return subprocess.run([str(self.venv / "bin" / program), *args], cwd=self.workdir, env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    @property
    def site_packages(self) -> Path:
        return self.venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def _offline_wheel(sources: Path, out: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(out), str(sources)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    return wheel


@dataclass(frozen=True)
class Wheels:
    """Attributes: auditor, reference (the two wheels); image_tags (the Docker images the
    checkout's reference would run, from the sources the wheel was built from)."""

    auditor: Path
    reference: Path
    image_tags: dict[str, str]


def build_wheels(scratch: Path) -> Wheels:
    """The auditor's and the reference's wheels, built from copies of this tree (a build writes
    build/ and *.egg-info beside its sources: never in the shared checkout)."""
    version = importlib.metadata.version("setuptools")
    if int(version.split(".")[0]) < 70 and importlib.util.find_spec("wheel") is None:
        pytest.fail(f"setuptools {version} cannot build a wheel offline (bdist_wheel needs >= 70.1): "
                    "run ./dev install (the dev extra installs it)")
    auditor = scratch / "auditor-src"
    auditor.mkdir()
    for name in AUDITOR_SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, auditor / name, ignore=_SKIPPED_IN_COPIES)
        else:
            shutil.copy2(source, auditor / name)
    image_tags = images.planned_tags(images.PARTS, ())
    reference = Path(shutil.copytree(ROOT / "system_under_test", scratch / "reference-src",
                                     ignore=_SKIPPED_IN_COPIES))
    return Wheels(_offline_wheel(auditor, scratch / "wheels-auditor"),
                  _offline_wheel(reference, scratch / "wheels-reference"), image_tags)


def _borrowed_dependencies(scratch: Path) -> Path:
    """A directory of links to this virtualenv's third-party packages (not ours, no .pth)."""
    links = scratch / "dependencies"
    if not links.exists():
        links.mkdir()
        for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
            if entry.name.startswith(OURS) or entry.suffix == ".pth" or entry.name == "__pycache__":
                continue
            (links / entry.name).symlink_to(entry)
    return links


def install(scratch: Path, name: str, wheels: Sequence[Path]) -> Installed:
    """A new virtualenv ``scratch/name`` with ``wheels`` installed (no dependency resolved, nothing
    downloaded) and this virtualenv's third-party packages importable."""
    venv = scratch / name
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    installed = Installed(venv, scratch / f"{name}-workdir")
    installed.workdir.mkdir()
    (installed.site_packages / "borrowed-dependencies.pth").write_text(f"{_borrowed_dependencies(scratch)}\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                           "--no-deps", "--no-index", *map(str, wheels)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return installed


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Wheels:
    return build_wheels(tmp_path_factory.mktemp("wheels"))


@pytest.fixture(scope="module")
def auditor(wheels: Wheels, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The auditor's wheel alone, as a security team installs it."""
    return install(tmp_path_factory.mktemp("installed"), "auditor", [wheels.auditor])


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _unreachable_edge_profile(directory: Path) -> Path:
    profile = directory / "absent-edge.toml"
    profile.write_text(f"""schema_version = 1
name = "absent-edge"
backend = "remote"

[edge]
host = "edge.votriz.test"
address = "127.0.0.1"
https_port = {_closed_port()}
http_port = {_closed_port()}
""", encoding="utf-8")
    return profile


def _report_bundles(directory: Path) -> dict[str, Path]:
    """A fault run and a clean run of one target, finalised and sealed (a throwaway key) by the
    report tests' builders (tests/harness/report/conftest.py), with the checkout's code."""
    spec = importlib.util.spec_from_file_location("report_runs", ROOT / "tests" / "harness" / "report" / "conftest.py")
    assert spec is not None and spec.loader is not None
    runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runs)
    from harness.report.commands import finalize

    bundles = {}
    for name, fault in (("clean", False), ("fault", True)):
        bundles[name] = directory / name
        runs.build_run(bundles[name], fault=fault)
        finalize(bundles[name], known_secrets=None, now=runs.T0)
    return bundles


def test_the_installed_auditor_is_the_wheel_and_ships_its_data_not_the_test_vectors(auditor: Installed) -> None:
    harness_init, checks_init, data_dir, reference = auditor.python(
        "import importlib.util, checks, harness, harness.bundled as b; print(harness.__file__); "
        "print(checks.__file__); print(b.DATA_DIR); print(importlib.util.find_spec('system_under_test'))")
    assert reference == "None"
    assert Path(harness_init).is_relative_to(auditor.site_packages)
    assert Path(checks_init).is_relative_to(auditor.site_packages)
    assert Path(data_dir) == auditor.site_packages / "harness" / "_bundled"
    # The data: every file of fixtures/ but the test vectors, and nothing in <site-packages>/fixtures
    assert _files(Path(data_dir)) == {name for name in _files(ROOT / "fixtures") if not name.startswith("vectors/")}
    assert not (auditor.site_packages / "fixtures").exists()
    # The code and what it reads: every file of harness/ and checks/ (the Rust crate's build output aside)
    for package in ("harness", "checks"):
        shipped = {name for name in _files(auditor.site_packages / package) if not name.startswith("_bundled/")}
        assert shipped == _files(ROOT / package), package


def _files(root: Path) -> set[str]:
    """Files under ``root``, relative to it, without bytecode, build output and .gitignore files."""
    return {path.relative_to(root).as_posix() for path in root.rglob("*")
            if path.is_file() and path.name != ".gitignore" and path.suffix != ".pyc"
            and not {"__pycache__", "target"} & set(path.relative_to(root).parts)}


def test_the_installed_auditor_lists_every_check(auditor: Installed) -> None:
    done = auditor.run("checks", "--json")
    assert done.returncode == 0, done.stderr
    listed = {check["check_id"]: check["claims"] for check in json.loads(done.stdout)["checks"]}
    assert listed.keys() == declared_checks().keys()
    assert all(listed.values())


def test_the_installed_auditor_audits_an_absent_target_with_its_bundled_policy_and_catalogue(
        auditor: Installed) -> None:
    # Given a profile whose edge listens nowhere
    report = auditor.workdir / "absent-run"
    # When the installed auditor runs it from a directory outside the checkout
    done = auditor.run("run", "--target", str(_unreachable_edge_profile(auditor.workdir)),
                       "--report-dir", str(report))
    # Then it loads the bundled policy and catalogue and ends as an unreachable target does:
    # ERROR (exit 2), every check judged, the edge's checks ERROR, the rest not PASS
    assert "cannot read" not in done.stderr and "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((report / "results.json").read_text(encoding="utf-8"))
    bundled = auditor.site_packages / "harness" / "_bundled"
    assert results["policy"]["path"] == str(bundled / "policy" / "default.toml")
    assert results["policy"]["name"] == "votriz-default"
    assert results["catalogue"]["page"] == "encryption-page.md"
    outcomes = {row["check_id"]: row["outcome"] for row in results["results"]}
    assert set(outcomes) == set(declared_checks())
    assert outcomes["transit.tls_versions"] == outcomes["transit.hsts"] == "ERROR"
    assert "PASS" not in outcomes.values()
    assert (report / "report.html").is_file() and (report / "audit.intoto.jsonl").is_file()


def test_the_installed_auditor_verifies_rerenders_and_diffs_sealed_bundles(
        auditor: Installed, tmp_path: Path) -> None:
    bundles = _report_bundles(tmp_path)
    # verify: intact (signed by a throwaway key, so only with --allow-untrusted), then altered
    intact = auditor.run("verify", "--allow-untrusted", str(bundles["fault"]))
    assert intact.returncode == 0 and "intact" in intact.stdout, intact.stdout + intact.stderr
    # report: the sealed run re-rendered elsewhere, compared with the clean run
    rendered = tmp_path / "rerendered"
    again = auditor.run("report", str(bundles["fault"]), "--against", str(bundles["clean"]), "--out", str(rendered))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "compared with an earlier run" in (rendered / "report.html").read_text(encoding="utf-8").lower()
    # diff: clean -> fault is a regression (exit 1), fault -> clean is not (exit 0)
    worse = auditor.run("diff", str(bundles["clean"]), str(bundles["fault"]))
    better = auditor.run("diff", str(bundles["fault"]), str(bundles["clean"]))
    assert (worse.returncode, better.returncode) == (1, 0), worse.stdout + worse.stderr + better.stderr
    assert "clean0000001" in worse.stdout and "fault0000001" in worse.stdout
    # verify again once a file of the bundle is altered: not intact, a non-zero exit, no traceback
    (bundles["fault"] / "results.json").write_text("{}", encoding="utf-8")
    altered = auditor.run("verify", "--allow-untrusted", str(bundles["fault"]))
    assert altered.returncode != 0 and "Traceback" not in altered.stderr, altered.stdout + altered.stderr


def test_the_installed_auditor_without_the_reference_says_how_to_install_it(auditor: Installed) -> None:
    done = auditor.run("up", "--backend", "local")
    assert done.returncode == 3
    assert "votriz-reference" in done.stderr and "pip install" in done.stderr


@pytest.fixture(scope="module")
def auditor_and_reference(wheels: Wheels, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Both wheels, as an operator installs them to calibrate."""
    return install(tmp_path_factory.mktemp("installed-both"), "both", [wheels.auditor, wheels.reference])


@pytest.fixture
def reference_stack(auditor_and_reference: Installed) -> Iterator[Path]:
    """The installed reference service stood up on the local backend by the installed ``up``."""
    state = new_state_dir()
    up = auditor_and_reference.run("up", "--backend", "local", "--state-dir", str(state))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield Path(up.stdout.strip().splitlines()[-1])
    finally:
        down = auditor_and_reference.run("down", "--backend", "local", "--state-dir", str(state))
        shutil.rmtree(state, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.mark.integration
def test_the_installed_reference_stands_up_from_its_own_package_and_is_audited(
        auditor_and_reference: Installed, reference_stack: Path) -> None:
    # The reference's wheel holds every file of system_under_test/ but its own packaging
    installed = _files(auditor_and_reference.site_packages / "system_under_test")
    assert installed == {name for name in _files(ROOT / "system_under_test")
                         if name != "pyproject.toml" and ".egg-info/" not in name}
    # and its data (faults.toml, schema.sql, its PKI, the HSM child) is read from there
    faults = auditor_and_reference.run("faults")
    assert faults.returncode == 0 and "hsts-missing" in faults.stdout, faults.stderr
    assert reference_stack.is_file()
    done = auditor_and_reference.run("run", "--target", str(reference_stack), "--only", "transit",
                                     "--report-dir", str(auditor_and_reference.workdir / "transit-run"))
    results = json.loads((auditor_and_reference.workdir / "transit-run" / "results.json").read_text())
    outcomes = {row["check_id"]: row["outcome"] for row in results["results"]}
    assert outcomes["transit.tls_versions"] == outcomes["transit.hsts"] == "PASS", done.stdout[-3000:]
    assert "FAIL" not in outcomes.values() and "ERROR" not in outcomes.values(), outcomes


def test_the_installed_reference_would_run_the_docker_images_its_checkout_runs(
        wheels: Wheels, auditor_and_reference: Installed) -> None:
    # The images' tags hash the reference's sources (system_under_test/docker/images.py): read
    # from the installed package they are the checkout's, so `up --backend docker` from the wheel
    # uses the images already built (no Docker engine is asked here)
    (tags,) = auditor_and_reference.python("import json, system_under_test.docker.images as images; "
                                           "print(json.dumps(images.planned_tags(images.PARTS, ())))")
    assert json.loads(tags) == wheels.image_tags
    (package,) = auditor_and_reference.python("import system_under_test; print(system_under_test.__file__)")
    assert Path(package).is_relative_to(auditor_and_reference.site_packages)
