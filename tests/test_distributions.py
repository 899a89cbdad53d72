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
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["harness*", "checks*"]
    assert project["project"]["scripts"] == {"votriz-audit": "harness.cli:main"}


def test_the_reference_service_is_its_own_distribution_with_its_own_dependencies() -> None:
    project = _project(ROOT / "system_under_test" / "pyproject.toml")
    assert project["project"]["name"] == "votriz-reference"
    assert project["tool"]["setuptools"]["package-dir"] == {"system_under_test": "."}
    names = {canonicalize_name(Requirement(line).name) for line in project["project"]["dependencies"]}
    assert {"starlette", "uvicorn", "uvicorn-worker", "gunicorn", "pyotp"} <= names
    assert "votriz-audit" not in names
