"""harness.safe_files: regular files only, size-capped, never blocking; secrets unfollowed and private."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.safe_files import Cap, FileRefused, check_file, read_bytes, read_secret_line, read_text

# A FIFO that blocked would hang the test: a regression fails at 10 s instead.
pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def _refused(call: object, *args: object) -> FileRefused:
    with pytest.raises(FileRefused) as exc:
        call(*args)  # type: ignore[operator]
    return exc.value


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b'name = "p"\n')
    assert read_bytes(path, "policy", Cap.TOML) == b'name = "p"\n'
    assert read_text(path, "policy", Cap.TOML) == 'name = "p"\n'
    check_file(path, "policy", Cap.TOML)


@pytest.mark.parametrize("call", [read_bytes, read_text, check_file])
def test_a_fifo_is_refused_without_blocking(fifo: Path, call: object) -> None:
    refused = _refused(call, fifo, "policy", Cap.TOML)
    assert str(refused) == f"{fifo}: the policy was not read: it is a FIFO, not a regular file"


def test_a_fifo_secret_is_refused_without_blocking(fifo: Path) -> None:
    assert _refused(read_secret_line, fifo, "database.password").reason == "it is a FIFO, not a regular file"


@pytest.mark.parametrize(("path", "kind"), [(Path("/dev/zero"), "a character device"),
                                             (Path("/dev/null"), "a character device"),
                                             (Path("/"), "a directory")])
def test_devices_and_directories_are_refused(path: Path, kind: str) -> None:
    assert _refused(read_bytes, path, "profile", Cap.TOML).reason == f"it is {kind}, not a regular file"


def test_a_symlink_to_dev_zero_is_refused_as_a_device(tmp_path: Path) -> None:
    link = tmp_path / "manifest.json"
    link.symlink_to("/dev/zero")
    assert _refused(read_bytes, link, "manifest", Cap.MANIFEST).reason == "it is a character device, not a regular file"


def test_a_file_over_its_cap_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    with path.open("wb") as handle:
        handle.truncate(Cap.TOML + 1)  # sparse: costs no disk
    refused = _refused(read_bytes, path, "profile", Cap.TOML)
    assert refused.reason == f"it holds {Cap.TOML + 1} bytes, more than the {Cap.TOML} accepted"


def test_a_missing_file_names_the_reason(tmp_path: Path) -> None:
    assert _refused(read_bytes, tmp_path / "absent", "waivers", Cap.TOML).reason == "No such file or directory"


def test_text_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes(b"\xff\xfe")
    assert _refused(read_text, path, "policy", Cap.TOML).reason == "it is not UTF-8 text"


def _secret(tmp_path: Path, content: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(content)
    path.chmod(mode)
    return path


def test_a_secret_is_its_first_line(tmp_path: Path) -> None:
    assert read_secret_line(_secret(tmp_path, b"s3cret\r\nline two\n"), "pw") == "s3cret"
    assert read_secret_line(_secret(tmp_path, b"no newline", 0o400), "pw") == "no newline"


def test_a_secret_others_may_read_is_refused_naming_the_mode(tmp_path: Path) -> None:
    path = _secret(tmp_path, b"s3cret\n", 0o644)
    refused = _refused(read_secret_line, path, "database.password")
    assert refused.reason == f"its mode is 0644: group or others may read it (chmod 600 {path})"
    assert "s3cret" not in str(refused)


def test_a_symlinked_secret_is_not_followed(tmp_path: Path) -> None:
    target = _secret(tmp_path, b"s3cret\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    refused = _refused(read_secret_line, link, "database.password")
    assert "symbolic link" in refused.reason
    # The same file named directly is fine: only the link is refused.
    assert read_secret_line(target, "database.password") == "s3cret"


def test_a_huge_secret_file_is_refused(tmp_path: Path) -> None:
    path = _secret(tmp_path, b"")
    with path.open("wb") as handle:
        handle.truncate(Cap.SECRET + 1)
    assert "more than the" in _refused(read_secret_line, path, "pin").reason


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_secret_bytes_give_a_line_or_a_refusal(tmp_path_factory: pytest.TempPathFactory,
                                                   content: bytes) -> None:
    path = _secret(tmp_path_factory.mktemp("s"), content)
    try:
        value = read_secret_line(path, "pin")
    except FileRefused as exc:
        # The refusal says why in fixed words, never what the file holds.
        assert exc.reason in ("its first line is empty", "its first line is not UTF-8 text")
        assert str(exc) == f"{path}: the pin was not read: {exc.reason}"
        return
    assert value and "\n" not in value and value == value.strip()
