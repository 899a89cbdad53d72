"""The loaded-libraries probe: the maps parser on crafted text, a crafted /proc, and real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.platform import platform_for
from harness.platform.base import OutOfReach
from harness.policy import load_policy
from harness.probes import loaded_libraries
from harness.probes.loaded_libraries import (
    AES_TABLES,
    Mapping,
    loaded_libraries_of,
    observe_loaded_libraries,
    package_of,
    parse_maps,
    short_path,
    tables_in,
)
from harness.probes.processes import ProcessObservation, observe_pid
from harness.profile import parse_profile

SITE = "/opt/votriz/lib/python3.11/site-packages"
MAPS = f"""\
55d0c0a00000-55d0c0a2c000 r--p 00000000 fe:00 131 /usr/bin/python3.11
55d0c1e4a000-55d0c20b7000 rw-p 00000000 00:00 0 [heap]
7f00aa000000-7f00aa100000 r--p 00000000 fe:00 201 {SITE}/cryptography/hazmat/bindings/_rust.abi3.so
7f00aa100000-7f00aa400000 r-xp 00100000 fe:00 201 {SITE}/cryptography/hazmat/bindings/_rust.abi3.so
7f00ab000000-7f00ab001000 r--p 00000000 fe:00 202 {SITE}/Cryptodome/Cipher/_raw_aes.abi3.so
7f00ac000000-7f00ac001000 r--p 00000000 fe:00 203 /tmp/with space/mod.so (deleted)
7f00ad000000-7f00ad001000 r--p 00000000 fe:00 204 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f00ae000000-7f00ae021000 rw-p 00000000 00:00 0
7ffd1b1f4000-7ffd1b1f6000 r-xp 00000000 00:00 0 [vdso]
"""


def test_parse_maps_keeps_file_mappings_with_their_paths() -> None:
    found = parse_maps(MAPS)
    assert [m.path for m in found] == [
        "/usr/bin/python3.11", f"{SITE}/cryptography/hazmat/bindings/_rust.abi3.so",
        f"{SITE}/cryptography/hazmat/bindings/_rust.abi3.so", f"{SITE}/Cryptodome/Cipher/_raw_aes.abi3.so",
        "/tmp/with space/mod.so", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"]
    assert found[1] == Mapping("7f00aa000000", "7f00aa100000", 201,
                               f"{SITE}/cryptography/hazmat/bindings/_rust.abi3.so")
    assert found[4].deleted and not found[3].deleted


@given(st.text(max_size=400))
def test_parse_maps_never_crashes(text: str) -> None:
    for mapping in parse_maps(text):
        assert mapping.path.startswith("/") and mapping.inode > 0


def test_package_and_short_path() -> None:
    path = f"{SITE}/Cryptodome/Cipher/_raw_aes.abi3.so"
    assert package_of(path) == "Cryptodome"
    assert short_path(path) == "Cryptodome/Cipher/_raw_aes.abi3.so"
    assert package_of("/srv/app/aes.so") == "/srv/app"


@pytest.mark.parametrize("split", [1, 7, 15, 16, 17])
def test_a_table_split_across_two_reads_is_found(split: int) -> None:
    data = b"\0" * 100 + AES_TABLES["the AES S-box"] + b"PyInit_x"
    at = 100 + split
    found, total, pyinit = tables_in(iter([data[:at], data[at:]]))
    assert found == {"the AES S-box"} and total == len(data) and pyinit


def _process(name: str, pid: int) -> ProcessObservation:
    return ProcessObservation(name=name, pid=pid, ppid=1, comm="gunicorn", environ=())


def _fake_proc(tmp_path: Path, pid: int, modules: dict[str, bytes], *, dist_info: str = "") -> Path:
    """A /proc with one process mapping ``modules`` (path -> content), read through its root."""
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    lines = []
    for inode, (path, content) in enumerate(modules.items(), start=300):
        lines.append(f"7f{inode:010x}-7f{inode + 1:010x} r--p 00000000 fe:00 {inode} {path}")
        file = proc / str(pid) / "root" / path.lstrip("/")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(content)
    (proc / str(pid) / "maps").write_text("\n".join(lines) + "\n")
    if dist_info:
        (proc / str(pid) / "root" / SITE.lstrip("/") / dist_info).mkdir(parents=True)
    return proc


def test_crafted_proc_names_the_binding_its_version_and_another_aes(tmp_path: Path) -> None:
    modules = {
        f"{SITE}/cryptography/hazmat/bindings/_rust.abi3.so": b"PyInit__rust" + AES_TABLES["the AES S-box"],
        f"{SITE}/Cryptodome/Cipher/_raw_aes.abi3.so": b"\x7fELF" + AES_TABLES["the AES T-table Te4"],
        f"{SITE}/psycopg_binary/_psycopg.cpython-311-x86_64-linux-gnu.so": b"PyInit__psycopg",
        "/usr/lib/softhsm/libsofthsm2.so": AES_TABLES["the AES S-box"],  # not a Python module
        "/usr/lib/x86_64-linux-gnu/libcrypto.so.3": AES_TABLES["the AES S-box"],  # versioned: not read
    }
    proc = _fake_proc(tmp_path, 42, modules, dist_info="cryptography-46.0.7.dist-info")
    obs = observe_loaded_libraries([_process("api", 42)], proc=proc)
    (seen,) = obs.processes
    assert seen.python and seen.cryptography_version == "46.0.7"
    assert seen.cryptography == f"{SITE}/cryptography/hazmat/bindings/_rust.abi3.so"
    assert [m.describe() for m in seen.other_aes] == [
        "Cryptodome/Cipher/_raw_aes.abi3.so (package Cryptodome: the AES T-table Te4, "
        "its file name names AES or Fernet)"]
    assert seen.native_modules == 3 and seen.unexamined == ()
    # cryptography's binding is known by its path and not read; libsofthsm2.so is read once.
    assert obs.modules_read == 3


def test_vanished_unreadable_and_configuration_entries(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, 7, {f"{SITE}/x/_speedups.cpython-311-x86_64-linux-gnu.so": b"PyInit_x"})
    (proc / "8").mkdir()
    (proc / "8" / "maps").mkdir()  # reading it fails with EISDIR
    (proc / "9").mkdir()
    (proc / "9" / "maps").write_text("")  # a zombie's maps are empty
    config = _process("api/config", 0)
    obs = observe_loaded_libraries([config, _process("api", 7), _process("w", 8), _process("z", 9),
                                    _process("gone", 10)], proc=proc)
    assert [p.where for p in obs.processes] == ["api[pid 7 gunicorn]"]
    assert obs.processes[0].python and obs.processes[0].cryptography is None
    assert obs.vanished == ("z[pid 9 gunicorn]", "gone[pid 10 gunicorn]")
    assert obs.unreadable == ("w[pid 8 gunicorn]: cannot read /proc/8/maps: Is a directory",)


def test_a_module_that_cannot_be_opened_is_unexamined(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, 5, {f"{SITE}/x/_c.abi3.so": b"PyInit__c"})
    (proc / "5" / "root" / SITE.lstrip("/") / "x" / "_c.abi3.so").unlink()
    (seen,) = observe_loaded_libraries([_process("api", 5)], proc=proc).processes
    assert seen.unexamined == ("x/_c.abi3.so: cannot open: No such file or directory",)


def test_a_module_longer_than_the_bound_is_noted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loaded_libraries, "MAX_MODULE_BYTES", 64)
    proc = _fake_proc(tmp_path, 5, {f"{SITE}/x/_c.abi3.so": b"PyInit__c" + bytes(100)})
    (seen,) = observe_loaded_libraries([_process("api", 5)], proc=proc).processes
    assert seen.unexamined == ("x/_c.abi3.so: examined only its first 64 bytes",)


def test_a_remote_profile_is_out_of_reach() -> None:
    profile = parse_profile('name = "t"\nbackend = "remote"\n[edge]\nhost = "votriz.test"\n')
    found = loaded_libraries_of(platform_for(profile, load_policy()))
    assert isinstance(found, OutOfReach) and "cannot inspect the service's processes" in found.reason


def _python(code: str) -> subprocess.Popen[bytes]:
    child = subprocess.Popen([sys.executable, "-c", f"{code}; print('ready', flush=True); "
                              "import time; time.sleep(30)"], stdout=subprocess.PIPE,
                             start_new_session=True)
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    return child


def _stop(child: subprocess.Popen[bytes]) -> None:
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def test_real_processes_one_with_cryptography_one_with_pycryptodomex() -> None:
    # Given two real interpreters: one that imported cryptography's Fernet, one pycryptodomex's AES
    clean = _python("import cryptography.fernet, ssl, hashlib")
    other = _python("import cryptography.fernet; from Cryptodome.Cipher import AES")
    try:
        processes = [p for p in (observe_pid("clean", clean.pid), observe_pid("other", other.pid)) if p]
        # When the probe reads their maps
        start = time.monotonic()
        obs = observe_loaded_libraries(processes)
        seconds = time.monotonic() - start
    finally:
        _stop(clean)
        _stop(other)
    # Then both have cryptography's binding with its version; only the second another AES
    first, second = obs.processes
    assert first.python and first.cryptography_version and first.other_aes == ()
    assert {m.package for m in second.other_aes} == {"Cryptodome"}
    assert any("the AES T-table" in s for m in second.other_aes for s in m.signs)
    assert seconds < 5, seconds


def test_an_aes_inside_a_module_whose_name_does_not_say_so_is_found_by_its_tables() -> None:
    # nassl (sslyze's) links its own OpenSSL statically into _nassl*.so.
    child = _python("import nassl._nassl")
    try:
        process = observe_pid("other", child.pid)
        assert process is not None
        (seen,) = observe_loaded_libraries([process]).processes
    finally:
        _stop(child)
    (module,) = seen.other_aes
    assert module.package == "nassl" and "its file name names AES or Fernet" not in module.signs
    assert any(sign.startswith("the AES") for sign in module.signs)
