"""The violation registry: every area module imports, names are unique, the child CLI lists them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from system_under_test.backends import BACKENDS
from system_under_test.violations import BACKENDS as VIOLATION_BACKENDS
from system_under_test.violations import VIOLATIONS, Violation
from system_under_test.violations.stack import RunningStack, StackError


def test_every_entry_is_a_violation_under_its_own_name() -> None:
    assert VIOLATIONS, "no violation registered"
    for name, violation in VIOLATIONS.items():
        assert isinstance(violation, Violation)
        assert violation.name == name
        assert violation.description.strip()
        assert callable(violation.apply)
        assert set(violation.backends) <= set(VIOLATION_BACKENDS)


def test_each_backend_lists_the_violations_it_applies() -> None:
    for backend in BACKENDS.values():
        names = [entry.name for entry in backend.violations()]
        assert names == [v.name for v in VIOLATIONS.values() if backend.name in v.backends]


def test_apply_violation_refuses_an_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown violation"):
        BACKENDS["local"].apply_violation(tmp_path, "no-such-violation")


def test_apply_violation_says_in_one_line_why_a_directory_holds_no_stack(tmp_path: Path) -> None:
    name = next(iter(VIOLATIONS))
    with pytest.raises(StackError, match=f"violation {name} not applied: .*holds no reference stack"):
        BACKENDS["local"].apply_violation(tmp_path, name)


def test_open_refuses_a_directory_without_a_stack(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="no backend marker"):
        RunningStack.open(tmp_path)


def test_the_child_lists_every_violation() -> None:
    done = subprocess.run([sys.executable, "-m", "system_under_test.violations", "list"],
                          capture_output=True, text=True, check=True, timeout=60)
    assert [line.split("\t")[0] for line in done.stdout.splitlines()] == list(VIOLATIONS)
