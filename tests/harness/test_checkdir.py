"""The checks' layout: areas are folders, a check's id is ``<area>.<name>``, a module outside
every area is found as stray rather than taken for an area."""

from __future__ import annotations

from pathlib import Path

from harness.checkdir import (
    ACCESS,
    CHECKS_DIR,
    area_path,
    check_areas,
    check_id,
    check_modules,
    declared_checks,
    stray_modules,
)

CHECK = 'import pytest\n\n\n@pytest.mark.claims("C-1", "C-2")\ndef check_{name}() -> None:\n    pass\n'


def _tree(root: Path) -> Path:
    checks = root / "checks"
    for area, names in {"transit": ("hsts", "tls_versions"), "keys": ("read_at_start",)}.items():
        (checks / area).mkdir(parents=True)
        (checks / area / "__init__.py").write_text('"""An area."""\n')
        (checks / area / "conftest.py").write_text("")
        for name in names:
            (checks / area / f"{name}.py").write_text(CHECK.format(name=name))
    (checks / "__init__.py").write_text("")
    (checks / "notes").mkdir()  # a folder without __init__.py is no area
    return checks


def test_areas_are_package_folders_and_modules_are_their_checks(tmp_path: Path) -> None:
    checks = _tree(tmp_path)
    assert check_areas(checks) == ["keys", "transit"]
    assert area_path("keys", checks) == checks / "keys"
    assert [p.relative_to(checks).as_posix() for p in check_modules(checks)] == [
        "keys/read_at_start.py", "transit/hsts.py", "transit/tls_versions.py"]
    declared = declared_checks(checks)
    assert list(declared) == ["keys.read_at_start", "transit.hsts", "transit.tls_versions"]
    assert declared["transit.hsts"].claims == ("C-1", "C-2")
    assert check_id(checks / "transit" / "hsts.py", "check_hsts") == "transit.hsts"


def test_a_module_directly_in_checks_is_stray_not_an_area(tmp_path: Path) -> None:
    # Given an old-style area module beside the folders
    checks = _tree(tmp_path)
    (checks / "containers.py").write_text(CHECK.format(name="isolation"))
    # Then it is no area and holds no declared check, and it is reported as stray
    assert "containers" not in check_areas(checks)
    assert not any(ident.startswith("containers.") for ident in declared_checks(checks))
    assert stray_modules(checks) == [checks / "containers.py"]


def test_the_repository_has_no_stray_check_module() -> None:
    assert stray_modules(CHECKS_DIR) == []
    assert check_areas() == ["at_rest", "containers", "keys", "transit"]


def test_access_is_read_from_the_source_beside_the_claims(tmp_path: Path) -> None:
    checks = _tree(tmp_path)
    (checks / "keys" / "read_at_start.py").write_text(
        'import pytest\n\n\n@pytest.mark.claims("C-1")\n@pytest.mark.access("hsm", "processes")\n'
        'def check_read_at_start() -> None:\n    pass\n')
    declared = declared_checks(checks)
    assert declared["keys.read_at_start"].access == ("hsm", "processes")
    assert declared["keys.read_at_start"].claims == ("C-1",)
    assert declared["transit.hsts"].access == ()
    assert declared["transit.hsts"].area == "transit"


def test_every_check_declares_the_access_it_needs() -> None:
    declared = declared_checks()
    assert [ident for ident, check in declared.items() if not check.access] == []
    unknown = {ident: [kind for kind in check.access if kind not in ACCESS]
               for ident, check in declared.items()}
    assert {ident: kinds for ident, kinds in unknown.items() if kinds} == {}
    assert all(len(set(check.access)) == len(check.access) for check in declared.values())
    # The access a check needs follows from what it reaches: spot checks on each kind.
    assert declared["transit.tls_versions"].access == ("edge",)
    assert "docker" in declared["containers.isolation"].access
    assert "destructive" in declared["keys.token_key_rotation"].access
    assert "hsm" in declared["keys.hsm_custody"].access
    assert "database" in declared["at_rest.postgres_version"].access
