"""Two distributions from one repository: the auditor (votriz-audit) and the reference service
(votriz-reference). The auditor's runtime needs no web server and not the reference service."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
#: What serves the reference service, and the reference service itself.
NOT_THE_AUDITOR_S = frozenset({"starlette", "uvicorn", "uvicorn-worker", "gunicorn", "pyotp",
                               "votriz-reference"})


def _project(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def test_the_auditor_depends_on_no_web_server_and_not_on_the_reference_service() -> None:
    project = _project(ROOT / "pyproject.toml")
    names = {canonicalize_name(Requirement(line).name) for line in project["project"]["dependencies"]}
    assert names and names.isdisjoint(NOT_THE_AUDITOR_S)
    assert project["project"]["scripts"] == {"votriz-audit": "harness.cli:main"}


def test_the_auditor_lists_every_package_of_harness_and_checks_and_ships_fixtures_as_its_data() -> None:
    # The packages are listed (a find directive cannot add harness._bundled, which is fixtures/):
    # a package added to harness/ or checks/ and not to pyproject.toml would be left out of the wheel
    setuptools = _project(ROOT / "pyproject.toml")["tool"]["setuptools"]
    code = {".".join(init.parent.relative_to(ROOT).parts) for top in ("harness", "checks")
            for init in (ROOT / top).rglob("__init__.py") if "target" not in init.parts}
    listed = set(setuptools["packages"])
    assert code <= listed, sorted(code - listed)
    assert setuptools["package-dir"] == {"harness._bundled": "fixtures"}
    # every other listed package is a folder of data in the tree (harness._bundled.* in fixtures/)
    for package in sorted(listed - code):
        parts = package.split(".")
        folder = ROOT.joinpath("fixtures", *parts[2:]) if parts[:2] == ["harness", "_bundled"] else ROOT.joinpath(*parts)
        assert folder.is_dir() and not (folder / "__init__.py").exists(), package
    assert not (ROOT / "harness" / "_bundled").exists()  # harness/bundled.py would read it, not fixtures/


def test_the_reference_service_is_its_own_distribution_with_its_own_dependencies() -> None:
    project = _project(ROOT / "system_under_test" / "pyproject.toml")
    assert project["project"]["name"] == "votriz-reference"
    assert project["tool"]["setuptools"]["package-dir"] == {"system_under_test": "."}
    names = {canonicalize_name(Requirement(line).name) for line in project["project"]["dependencies"]}
    assert {"starlette", "uvicorn", "uvicorn-worker", "gunicorn", "pyotp"} <= names
    assert "votriz-audit" not in names
    # Its packages are listed too: every folder holding an __init__.py, and the images' folders
    package = ROOT / "system_under_test"
    folders = {init.parent for init in package.rglob("__init__.py")} | set(package.glob("docker/images/*/"))
    expected = {".".join(("system_under_test", *folder.relative_to(package).parts)) for folder in folders
                if ".egg-info" not in folder.as_posix()}
    assert expected - set(project["tool"]["setuptools"]["packages"]) == set()


def test_every_bundled_file_is_found_through_harness_bundled_and_exists() -> None:
    # In a checkout the data is fixtures/ (an installed wheel's harness/_bundled/ is
    # tests/test_installed_distributions.py's); each reader's default path is under it
    from harness import bundled, calibrate, claims, inventory_rules, key_classes, policy
    from harness.formats import secret_patterns

    assert bundled.DATA_DIR == ROOT / "fixtures"
    defaults = [claims.CLAIMS_DIR, claims.DEFAULT_CATALOGUE, policy.DEFAULT_POLICY_PATH, key_classes.KEY_CLASSES_PATH,
                inventory_rules.INVENTORY_PATH, calibrate.CALIBRATION_FILE, secret_patterns.SECRET_RULES_PATH]
    for path in defaults:
        assert path.is_relative_to(bundled.DATA_DIR) and path.exists(), path
    # and no module of harness/ or checks/ looks for fixtures/ beside itself any more
    for module in [*ROOT.joinpath("harness").rglob("*.py"), *ROOT.joinpath("checks").rglob("*.py")]:
        if module.name != "bundled.py":
            assert '/ "fixtures"' not in module.read_text(encoding="utf-8"), module
