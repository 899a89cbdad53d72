"""The backups probes: the store as found, backup files inspected, aged names, the prune held
back where it could delete what the audit did not plant, operator commands run and redacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.formats.fernet import FernetKey, encrypt_fernet_token
from harness.key_needles import shannon_entropy
from harness.probes.backup_store import (
    SERVICE_FORMAT,
    inspect_backup,
    observe_store,
)
from harness.probes.backups import aged_backup_name
from harness.redaction import KnownSecrets
from harness.sweep import SecretSweep


def test_inspect_backup_reads_markers_and_entropy(tmp_path: Path) -> None:
    import os

    known = KnownSecrets()
    known.add("canary+x@audit.invalid", "canary e-mail")
    plain = tmp_path / "votriz-20260101T000000Z.dump.enc"
    plain.write_bytes(b"PGDMP\x01\x0e" + b"users canary+x@audit.invalid " * 100)
    found = inspect_backup(plain, SecretSweep.from_known(known))
    assert found.markers == ("pg_dump custom-format header (PGDMP)",)
    assert found.secret_hits and found.entropy_bits < 6
    key = FernetKey(os.urandom(32))
    enc = tmp_path / "enc"
    enc.write_text("\n".join(encrypt_fernet_token(os.urandom(3000), key) for _ in range(5)) + "\n")
    found = inspect_backup(enc, SecretSweep.from_known(known))
    assert found.encoding == "base64 lines" and found.entropy_bits > 7.5 and not found.markers


def test_entropy_and_aged_names() -> None:
    assert shannon_entropy(b"") == 0.0 and shannon_entropy(bytes(range(256))) == 8.0
    assert aged_backup_name("votriz-20261130T220000Z.dump.enc", 40, 1_764_540_000) == \
        "votriz-20251021T220000Z.dump.enc"
    assert aged_backup_name("nightly.tar", 1, 0).startswith("aged-19691231T000000Z-")


def test_run_command_redacts_and_reports_failure_and_timeout() -> None:
    from harness.probes.backups import run_command

    known = KnownSecrets()
    known.add("s3cret-value-xyz", "backup key")
    done = run_command("backup", ["sh", "-c", "echo key=s3cret-value-xyz; echo boom >&2; exit 3"],
                       10, known)
    assert done.exit_code == 3 and not done.succeeded
    assert "s3cret-value-xyz" not in done.stdout and "[REDACTED backup key" in done.stdout
    assert done.describe() == "backup exited 3: boom"
    slow = run_command("prune_backups", ["sleep", "5"], 0.2, known)
    assert slow.exit_code is None and "did not finish within 0.2 s" in slow.describe()
    missing = run_command("backup", ["/nonexistent/tool"], 1, known)
    assert missing.exit_code is None and "cannot run /nonexistent/tool" in missing.error


def _fernet_lines(n: int = 5, size: int = 3000) -> bytes:
    import os

    key = FernetKey(os.urandom(32))
    return ("\n".join(encrypt_fernet_token(os.urandom(size), key) for _ in range(n))
            + "\n").encode()


def test_store_as_found_classifies_every_entry_without_opening_what_is_not_a_file(
        tmp_path: Path) -> None:
    import gzip
    import io
    import os
    import tarfile
    import time

    # Given a store with the service's backups beside a plain dump, gzip, tar, random bytes,
    # SQL text, a known secret, a FIFO, a symlink and a subdirectory
    known = KnownSecrets()
    known.add("hunter2-canary-password", "canary password")
    store = tmp_path / "backups"
    store.mkdir()
    (store / "votriz-20261201T000000Z.dump.enc").write_bytes(_fernet_lines())
    (store / "manual.dump").write_bytes(b"PGDMP\x01\x0e\x00" + os.urandom(4000))
    (store / "dump.sql.gz").write_bytes(gzip.compress(b"COPY public.users (id) FROM stdin;\n" * 50))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("toc.dat")
        info.size = 2000
        archive.addfile(info, io.BytesIO(os.urandom(2000)))
    (store / "dump.tar").write_bytes(buffer.getvalue())
    (store / "random.bin").write_bytes(os.urandom(8192))
    (store / "plain.sql").write_text("--\n-- PostgreSQL database dump\n--\n" + "x;\n" * 500)
    (store / "leak.enc").write_bytes(os.urandom(2000) + b"hunter2-canary-password" + os.urandom(9))
    os.mkfifo(store / "pipe")
    (store / "link").symlink_to("/etc/hostname")
    (store / "nested").mkdir()
    (store / "nested" / "old.dump").write_bytes(b"PGDMP" + bytes(3000))
    # When it is observed (a FIFO opened by mistake would block here)
    started = time.monotonic()
    found = observe_store(store, known, now=1_800_000_000.0)
    assert time.monotonic() - started < 10
    # Then every entry is recorded, with its kind, and the files with their formats
    kinds = {e.path: e.kind for e in found.entries}
    assert kinds == {"votriz-20261201T000000Z.dump.enc": "file", "manual.dump": "file",
                     "dump.sql.gz": "file", "dump.tar": "file", "random.bin": "file",
                     "plain.sql": "file", "leak.enc": "file", "pipe": "fifo", "link": "symlink",
                     "nested": "directory", "nested/old.dump": "file"}
    formats = {e.path: e.content.format for e in found.files if e.content is not None}
    assert formats == {"votriz-20261201T000000Z.dump.enc": SERVICE_FORMAT,
                       "manual.dump": "PostgreSQL custom-format dump (PGDMP)",
                       "dump.sql.gz": "gzip", "dump.tar": "tar", "random.bin": "unknown",
                       "plain.sql": "plain SQL dump", "leak.enc": "unknown",
                       "nested/old.dump": "PostgreSQL custom-format dump (PGDMP)"}
    by_path = {e.path: e for e in found.entries}
    assert by_path["link"].link_target == "/etc/hostname" and by_path["link"].content is None
    assert by_path["votriz-20261201T000000Z.dump.enc"].name_time == 1_796_083_200.0
    gz = by_path["dump.sql.gz"].content
    assert gz is not None and gz.decompressed_markers == ("SQL COPY statement",)
    leak = by_path["leak.enc"].content
    assert leak is not None and [h.label for h in leak.secret_hits] == ["canary password (raw)"]
    assert leak.secret_hits[0].location == "leak.enc" and leak.secret_hits[0].offset == 2000
    service = by_path["votriz-20261201T000000Z.dump.enc"].content
    assert service is not None and service.entropy_bits > 7.5
    assert "hunter2" not in repr(found)


def test_store_reads_are_bounded_and_a_missing_store_is_empty(tmp_path: Path) -> None:
    import os

    store = tmp_path / "backups"
    store.mkdir()
    big = store / "big.bin"
    with big.open("wb") as out:
        out.write(os.urandom(3 * 1024 * 1024))
    known = KnownSecrets()
    known.add("needle-secret-value", "token")
    found = observe_store(store, known, sample_bytes=64 * 1024, secret_scan_bytes=1024 * 1024)
    content = found.files[0].content
    assert content is not None
    assert content.sampled == 64 * 1024 and content.secrets_searched == 1024 * 1024
    assert found.secret_scan_bytes == 1024 * 1024
    # A cut sample of Fernet lines is still the service's format.
    (store / "votriz-x.dump.enc").write_bytes(_fernet_lines(3, 200_000))
    cut = observe_store(store, known, sample_bytes=300_000)
    enc = {e.path: e.content for e in cut.files}["votriz-x.dump.enc"]
    assert enc is not None and enc.format == SERVICE_FORMAT and enc.sampled == 300_000
    missing = observe_store(tmp_path / "nowhere", known)
    assert missing.missing and missing.entries == () and not missing.error
    many = observe_store(store, known, max_entries=1)
    assert many.truncated and len(many.entries) == 1


def test_fernet_lines_are_checked_token_by_token() -> None:
    from harness.probes.backup_store import format_of

    good = _fernet_lines(2, 100)
    assert format_of(good, cut=False) == SERVICE_FORMAT
    # Base64 text that only looks like tokens is not the service's format.
    assert format_of(b"gAAAAAhello\n", cut=False) != SERVICE_FORMAT
    assert format_of(good[:-1], cut=False) != SERVICE_FORMAT  # a whole file ends with a newline
    assert format_of(good[:-10], cut=True) == SERVICE_FORMAT
    assert format_of(b"", cut=False) == "empty"


#: A backup command: 20 kB of random bytes under a timestamped name at the store's top level.
BACKUP_TO = "head -c 20000 /dev/urandom > {}/votriz-$(date -u +%Y%m%dT%H%M%SZ)-$$.dump.enc"


def _ops_profile(store: Path, prune: str, backup: str | None = None) -> object:
    from types import SimpleNamespace

    from harness.profile import Operations

    return SimpleNamespace(operations=Operations(
        allow_destructive=True, backup=("sh", "-c", backup or BACKUP_TO.format(store)),
        prune_backups=("sh", "-c", prune), backup_dir=store))


def test_prune_is_not_run_while_the_store_holds_an_aged_entry(tmp_path: Path) -> None:
    import os
    import time

    from harness.policy import load_policy
    from harness.probes.backups import observe_retention

    # Given a store with a fresh backup and a copy aged 40 days by its modification time,
    # and a prune that would delete every file
    store = tmp_path / "backups"
    store.mkdir()
    (store / "votriz-20261201T000000Z.dump.enc").write_bytes(_fernet_lines())
    aged = store / "copy.dump.enc"
    aged.write_bytes(_fernet_lines())
    stamp = time.time() - 40 * 86400
    os.utime(aged, (stamp, stamp))
    profile = _ops_profile(store, f"rm -f {store}/*")
    # When retention is observed
    found = observe_retention(profile, load_policy(), KnownSecrets())  # type: ignore[arg-type]
    # Then the prune was not run, the aged copy is named and still in the store
    assert found.trial is None and found.prunable == ("copy.dump.enc",)
    assert "the prune was not run, so that they stay as evidence" in found.not_run
    assert aged.exists() and len(list(store.iterdir())) == 2


def test_prune_runs_on_planted_copies_and_sees_what_else_it_deleted(tmp_path: Path) -> None:
    from harness.policy import load_policy
    from harness.probes.backups import observe_retention

    store = tmp_path / "backups"
    store.mkdir()
    real = store / "votriz-20261201T000000Z.dump.enc"
    real.write_bytes(_fernet_lines())
    # A prune that keeps to the retention by modification time: only the planted old copy goes.
    keeps = _ops_profile(store, f"find {store} -maxdepth 1 -type f -mtime +30 -delete")
    found = observe_retention(keeps, load_policy(), KnownSecrets())  # type: ignore[arg-type]
    assert found.trial is not None and found.trial.prune.succeeded
    assert found.trial.old_removed and found.trial.young_kept and found.trial.newest_kept
    assert found.trial.others_deleted == ()
    # The planted copies are gone; the operator's backup and the audit's fresh one stay.
    assert sorted(p.name for p in store.iterdir()) == sorted([real.name, found.trial.newest_name])
    # A prune that deletes everything deletes what the audit did not plant: seen and named.
    wipes = _ops_profile(store, f"rm -f {store}/*")
    found = observe_retention(wipes, load_policy(), KnownSecrets())  # type: ignore[arg-type]
    assert found.trial is not None and not found.trial.young_kept and not found.trial.newest_kept
    assert real.name in found.trial.others_deleted
    assert found.trial.newest_name not in found.trial.others_deleted


@pytest.mark.parametrize("layout", ["staging-below", "log-beside", "dated-folders"])
def test_the_copies_are_planted_beside_a_fresh_backup_wherever_the_command_writes_it(
        tmp_path: Path, layout: str) -> None:
    from harness.policy import load_policy
    from harness.probes.backups import observe_retention

    # Given a store where a backup is not the newest file (a staging dump below it, a log beside
    # it) or lives in a dated folder, and a prune that looks where the backups are
    store = tmp_path / "backups"
    store.mkdir()
    folder = store / "2026-12-01" if layout == "dated-folders" else store
    backup = BACKUP_TO.format(folder).replace("head", f"mkdir -p {folder}; head")
    if layout == "staging-below":
        backup += f"; mkdir -p {store}/staging; echo PGDMP > {store}/staging/votriz.dump"
    if layout == "log-beside":
        backup += f"; echo done >> {store}/backup.log"
    prune = f"find {store} {'' if layout == 'dated-folders' else '-maxdepth 1'} -name 'votriz-*.enc' -mtime +30 -delete"
    found = observe_retention(_ops_profile(store, prune, backup), load_policy(), KnownSecrets())  # type: ignore[arg-type]
    # Then the copies were planted from the backup the command wrote, beside it, and the prune
    # removed the old one and kept the rest
    assert found.trial is not None, found.not_run
    assert found.trial.newest_name.endswith(".dump.enc")
    assert found.trial.newest_name.startswith("2026-12-01/" if layout == "dated-folders" else "votriz-")
    assert found.trial.old_removed and found.trial.young_kept and found.trial.newest_kept


def test_format_and_inspection_never_crash_on_any_bytes(tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from harness.probes.backup_store import (
        CONTAINER_FORMATS,
        OTHER_ENCRYPTED_MAGIC,
        PLAIN_FORMATS,
        format_of,
    )

    known_formats = {SERVICE_FORMAT, *PLAIN_FORMATS, *CONTAINER_FORMATS, *OTHER_ENCRYPTED_MAGIC,
                     "empty", "unknown"}
    prefixes = st.sampled_from([b"", b"PGDMP", b"\x1f\x8b", b"PK\x03\x04", b"BZh", b"\xfd7zXZ\x00",
                                b"gAAAAA", b"-- PostgreSQL database dump\n"])

    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(prefix=prefixes, body=st.binary(max_size=4096), cut=st.booleans())
    def never_crashes(prefix: bytes, body: bytes, cut: bool) -> None:
        data = prefix + body
        assert format_of(data, cut=cut) in known_formats
        path = tmp_path / "sample"
        path.write_bytes(data)
        found = inspect_backup(path, SecretSweep.from_known(KnownSecrets()), sample_bytes=1024)
        assert found.size == len(data) and found.sampled == min(len(data), 1024)
        assert 0.0 <= found.entropy_bits <= 8.0

    never_crashes()


def test_a_file_that_vanishes_during_the_walk_is_left_out(tmp_path: Path) -> None:
    from unittest import mock

    from harness.probes import backup_store

    store = tmp_path / "backups"
    store.mkdir()
    (store / "a").write_bytes(b"x" * 10)
    (store / "b").write_bytes(b"y" * 10)
    real = backup_store.inspect_backup

    def vanish(path: Path, *args: object, **kwargs: object) -> object:
        if path.name == "a":
            path.unlink()
            raise FileNotFoundError(2, "No such file or directory")
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    with mock.patch.object(backup_store, "inspect_backup", vanish):
        found = observe_store(store, KnownSecrets())
    assert [e.path for e in found.entries] == ["b"] and not found.error


def test_drill_log_is_read_safely_and_a_missing_log_records_no_drill(tmp_path: Path) -> None:
    import os

    import pytest

    from harness.outcomes import ProbeError
    from harness.policy import load_policy
    from harness.probes.backups import observe_drill, read_drill_log
    from harness.profile import Operations
    from harness.safe_files import FileRefused

    # A missing log: no drill recorded, not an error.
    assert read_drill_log(tmp_path / "missing.log").absent
    log = tmp_path / "drills.log"
    log.write_text('{"time": "2026-11-01T00:00:00+00:00", "ok": true}\nnot json\n[1]\n'
                   + "[" * 100_000 + "\n")
    assert [e["ok"] for e in read_drill_log(log).entries] == [True]
    # A directory and a FIFO are refused without blocking, naming what they are.
    with pytest.raises(FileRefused, match="a directory"):
        read_drill_log(tmp_path)
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    with pytest.raises(FileRefused, match="a FIFO"):
        read_drill_log(fifo)
    # The drill is not run on a FIFO log: ERROR (ProbeError) naming it.
    from types import SimpleNamespace

    profile = SimpleNamespace(operations=Operations(
        allow_destructive=True, backup=("false",), restore_drill=("false",), drill_log=fifo))
    with pytest.raises(ProbeError, match=r"fifo.log could not be read: it is a FIFO"):
        observe_drill(profile, load_policy(), KnownSecrets(), None)  # type: ignore[arg-type]
