"""The backend registry: every entry imports, carries its module's marker, and is what the
auditor finds through the entry-point group; the faults become one provisioning plan."""

from __future__ import annotations

import importlib
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from system_under_test.backends import BACKENDS, Availability
from system_under_test.faults import FAULTS
from system_under_test.provision import plan

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "system_under_test"


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_backend_imports_and_carries_its_module_s_marker(name: str) -> None:
    backend = BACKENDS[name]
    module = importlib.import_module(backend.module)  # type: ignore[attr-defined]
    assert backend.name == name
    assert backend.marker == module.MARKER
    assert callable(module.up) and callable(module.down)
    assert issubclass(module.StackError, backend.StackError)


def test_the_entry_points_are_the_registry() -> None:
    found = {entry.name: entry.load() for entry in entry_points(group="votriz_audit.reference_backends")}
    assert found == BACKENDS
    declared = tomllib.loads((PACKAGE_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    assert set(declared["project"]["entry-points"]["votriz_audit.reference_backends"]) == set(BACKENDS)


def test_each_fault_is_applied_by_the_backends_it_names() -> None:
    for name, backend in BACKENDS.items():
        assert [fault.name for fault in backend.faults()] == [
            fault.name for fault in FAULTS.values() if name in fault.backends]
    assert {fault.name for backend in BACKENDS.values() for fault in backend.faults()} == set(FAULTS)


def test_local_is_always_available_and_docker_says_why() -> None:
    assert BACKENDS["local"].availability().ok
    docker = BACKENDS["docker"].availability()
    assert isinstance(docker, Availability) and docker.reason and "\n" not in docker.reason


def test_the_distribution_lists_every_package() -> None:
    declared = tomllib.loads((PACKAGE_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    packages = set(declared["tool"]["setuptools"]["packages"])
    on_disk = {".".join(("system_under_test", *init.parent.relative_to(PACKAGE_DIR).parts))
               for init in PACKAGE_DIR.rglob("__init__.py")}
    assert on_disk <= packages, sorted(on_disk - packages)
    # the others are the images' data folders (listed so the wheel carries them)
    for extra in sorted(packages - on_disk):
        folder = PACKAGE_DIR.joinpath(*extra.split(".")[1:])
        assert folder.is_dir() and not (folder / "__init__.py").exists(), extra


def test_the_plan_decides_every_fault_once() -> None:
    clean = plan([], "local")
    assert clean.faults == () and clean.edge_faults == () and clean.api_faults == ()
    assert clean.redirects_http and not clean.redis_password_in_file
    faulty = plan(["key-in-env", "hsts-missing", "token-plaintext", "key-in-env", "cert-expiring"], "local")
    assert faulty.faults == ("cert-expiring", "hsts-missing", "key-in-env", "token-plaintext")
    assert faulty.edge_faults == ("hsts-missing",) and faulty.api_faults == ("token-plaintext",)
    assert faulty.edge_lifetime < clean.edge_lifetime
    assert faulty.api_secret_environment(b"k" * 32, "") == {
        "VOTRIZ_TOKEN_ENCRYPTION_KEY": "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="}
    assert plan(["pin-in-env"], "docker").api_secret_environment(b"", "4711") == {"VOTRIZ_HSM_PIN": "4711"}
    assert plan(["db-port-published", "host-network"], "docker").db_port_published
    with pytest.raises(ValueError, match="cannot be applied by the local backend"):
        plan(["host-network"], "local")
    with pytest.raises(ValueError, match="unknown fault"):
        plan(["no-such-fault"], "docker")
