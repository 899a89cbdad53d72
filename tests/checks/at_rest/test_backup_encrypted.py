"""at_rest.backup_encrypted on hand-made inspections and stores, and real compressed dumps."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from checks.at_rest.backup_encrypted import backup_encrypted_verdict
from harness.outcomes import Outcome
from harness.policy import load_policy
from harness.probes import backup_store as backup_probe
from harness.probes import backups
from harness.probes.backup_store import (
    SERVICE_FORMAT,
    BackupInspection,
    StoreEntry,
    StoreObservation,
    inspect_backup,
)
from harness.probes.backups import BackupObservation, CommandRun, observe_backup
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.sweep import SecretSweep, SweepHit

OK_RUN = CommandRun("backup", 0, 1.0, '{"ok": true}', "")
NOW = 1_800_000_000.0
EMPTY_STORE = StoreObservation("/backups", NOW, ())


def _inspection(**changes: object) -> BackupInspection:
    base = dict(name="votriz-1.dump.enc", size=40000, sampled=40000, markers=(),
                encoding="base64 lines", entropy_bits=7.98, secret_hits=(),
                format=SERVICE_FORMAT)
    base.update(changes)
    return BackupInspection(**base)  # type: ignore[arg-type]


def test_backup_encrypted_both_sides() -> None:
    ok = backup_encrypted_verdict(BackupObservation(OK_RUN, _inspection(), EMPTY_STORE))
    assert ok.outcome is Outcome.PASS and "7.98 bits per byte (base64 lines)" in ok.message
    plain = _inspection(markers=("pg_dump custom-format header (PGDMP)",), encoding="binary",
                        format="unknown",
                        entropy_bits=6.1, secret_hits=(SweepHit("canary e-mail (raw)", "f", 9),))
    bad = backup_encrypted_verdict(BackupObservation(OK_RUN, plain, EMPTY_STORE))
    assert bad.outcome is Outcome.FAIL
    assert "it shows pg_dump custom-format header (PGDMP)" in bad.message
    assert "canary e-mail (raw) at offset 9" in bad.message
    assert "6.10 bits per byte (binary), below the 7.5 of ciphertext" in bad.message
    failed = CommandRun("backup", 1, 0.2, "", "pg_dump failed: boom")
    assert backup_encrypted_verdict(BackupObservation(failed, None, EMPTY_STORE)).outcome is \
        Outcome.ERROR


DUMP = b"PGDMP\x01\x0e\x00" + b"COPY public.users (id, email) FROM stdin;\n" * 200


@pytest.mark.parametrize("compression", ["gzip", "bzip2", "xz", "zip"])
def test_compressed_dump_backup_fails_and_says_what_is_inside(tmp_path: Path,
                                                               compression: str) -> None:
    import bz2
    import gzip
    import lzma
    import os
    import zipfile

    # Given a pg_dump piped through a compressor, padded with random bytes so that
    # its entropy alone would look like ciphertext
    dump = DUMP + os.urandom(64 * 1024)
    path = tmp_path / f"votriz-20260101T000000Z.dump.{compression}"
    if compression == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("votriz.dump", dump)
    else:
        compress: dict[str, Callable[[bytes], bytes]] = {
            "gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}
        path.write_bytes(compress[compression](dump))
    # When it is inspected and judged
    found = inspect_backup(path, SecretSweep.from_known(KnownSecrets()))
    verdict = backup_encrypted_verdict(BackupObservation(OK_RUN, found, EMPTY_STORE))
    # Then the compression is seen through: FAIL, naming the format and the dump inside
    assert found.compression == compression and not found.markers
    assert found.decompressed_markers[0] == "pg_dump custom-format header (PGDMP)"
    assert verdict.outcome is Outcome.FAIL
    assert f"it is compressed, not encrypted ({compression}); its first" in verdict.message
    assert "decompressed bytes show pg_dump custom-format header (PGDMP)" in verdict.message


def test_compression_magic_alone_fails_even_when_not_decompressible() -> None:
    # zstd has no decoder in the standard library: the magic number alone is enough.
    zstd = _inspection(compression="zstd", decompressed=0, encoding="binary", entropy_bits=7.99,
                       format="zstd")
    verdict = backup_encrypted_verdict(BackupObservation(OK_RUN, zstd, EMPTY_STORE))
    assert verdict.outcome is Outcome.FAIL
    assert "it is compressed, not encrypted (zstd); its content could not be decompressed here" \
        in verdict.message
    assert backup_probe.compression_of(b"\x28\xb5\x2f\xfd\x00rest") == "zstd"
    assert backup_probe.compression_of(b"\xfd7zXZ\x00rest") == "xz"
    assert backup_probe.compression_of(b"gAAAAABk") == ""


def test_encrypted_backup_still_passes_and_says_no_compression() -> None:
    verdict = backup_encrypted_verdict(BackupObservation(OK_RUN, _inspection(), EMPTY_STORE))
    assert verdict.outcome is Outcome.PASS
    assert "shows no dump header, no compression magic number and no known secret" in \
        verdict.message


def test_backup_too_small_to_sample_is_error_not_pass() -> None:
    tiny = _inspection(size=300, sampled=300, entropy_bits=7.9, format="unknown")
    verdict = backup_encrypted_verdict(BackupObservation(OK_RUN, tiny, EMPTY_STORE))
    assert verdict.outcome is Outcome.ERROR
    assert "is only 300 bytes, too small (under 1024)" in verdict.message
    # A marker seen in a small file is still an observed FAIL.
    marked = _inspection(size=300, sampled=300, markers=("SQL COPY statement",))
    assert backup_encrypted_verdict(BackupObservation(OK_RUN, marked, EMPTY_STORE)).outcome is \
        Outcome.FAIL


# --- the store as found ----------------------------------------------------------------------


def _file(path: str, **changes: object) -> StoreEntry:
    return StoreEntry(path, "file", 40000, NOW - 3600, None,
                      content=_inspection(name=path, **changes))


def _verdict(*entries: StoreEntry, **store: object) -> tuple[Outcome, str]:
    observed = StoreObservation("/backups", NOW, entries, **store)  # type: ignore[arg-type]
    verdict = backup_encrypted_verdict(BackupObservation(OK_RUN, _inspection(), observed))
    return verdict.outcome, verdict.message


def test_store_of_encrypted_backups_passes_and_counts_them() -> None:
    outcome, message = _verdict(_file("votriz-20260101T000000Z.dump.enc"),
                                _file("votriz-20260102T000000Z.dump.enc"),
                                StoreEntry("old", "directory", 4096, NOW))
    assert outcome is Outcome.PASS
    assert message.startswith("As found, the backup store held 2 files: 2 in the service's "
                              "format (Fernet token lines).")
    assert "The fresh backup votriz-1.dump.enc" in message


def test_plain_dump_in_store_fails_naming_it_beside_a_good_fresh_backup() -> None:
    dump = _file("manual.dump", format="PostgreSQL custom-format dump (PGDMP)",
                 markers=("pg_dump custom-format header (PGDMP)",), encoding="binary",
                 entropy_bits=5.2)
    outcome, message = _verdict(_file("votriz-20260101T000000Z.dump.enc"), dump)
    assert outcome is Outcome.FAIL
    assert message.startswith("The backup store as found holds 1 file that is not an encrypted "
                              "backup: manual.dump: it is a PostgreSQL custom-format dump (PGDMP)")
    assert "5.20 bits per byte (binary), below the 7.5 of ciphertext" in message


def test_store_rules_each_fail() -> None:
    cases: dict[str, tuple[dict[str, object], str]] = {
        "text": (dict(format="text", encoding="binary", entropy_bits=4.4), "it is plain text"),
        "sql": (dict(format="plain SQL dump", markers=("SQL COPY statement",), entropy_bits=4.9),
                "it is a plain SQL dump; it shows SQL COPY statement"),
        "tar": (dict(format="tar", encoding="binary"), "it is archived, not encrypted (tar)"),
        "gz": (dict(format="gzip", compression="gzip", decompressed=900,
                    decompressed_markers=("SQL COPY statement",)),
               "it is compressed, not encrypted (gzip); its first 900 decompressed bytes show "
               "SQL COPY statement"),
        "secret": (dict(secret_hits=(SweepHit("canary password (raw)", "secret", 77),)),
                   "it holds known secrets in plaintext: canary password (raw) at offset 77"),
        "lowentropy": (dict(format="unknown", encoding="binary", entropy_bits=6.0),
                       "its bytes carry 6.00 bits per byte (binary)"),
    }
    for name, (changes, phrase) in cases.items():
        outcome, message = _verdict(_file(name, **changes))
        assert outcome is Outcome.FAIL, name
        assert f"{name}: {phrase}" in message, (name, message)


def test_store_entries_that_cannot_be_judged_are_error_not_pass() -> None:
    outcome, message = _verdict(
        _file("votriz-20260101T000000Z.dump.enc"),
        StoreEntry("link", "symlink", 10, NOW, link_target="/elsewhere/dump"),
        StoreEntry("pipe", "fifo", 0, NOW),
        StoreEntry("locked", "file", 10, NOW, error="Permission denied"),
        _file("small", format="unknown", size=300, sampled=300, encoding="binary"))
    assert outcome is Outcome.ERROR
    assert message.startswith("4 entries of the store could not be judged: link: a symlink to "
                              "/elsewhere/dump (not followed); pipe: a fifo, not a file (not "
                              "opened); locked: unreadable (Permission denied); small: only 300")
    outcome, message = _verdict(truncated=True)
    assert outcome is Outcome.ERROR and "the walk stopped at its bound" in message
    outcome, message = _verdict(error="/backups cannot be listed: Permission denied")
    assert outcome is Outcome.ERROR and "the store could not be read" in message


def test_a_fail_in_the_store_outranks_what_could_not_be_judged() -> None:
    outcome, message = _verdict(_file("a.sql", format="text", entropy_bits=4.0),
                                StoreEntry("pipe", "fifo", 0, NOW))
    assert outcome is Outcome.FAIL
    assert "a.sql: it is plain text" in message and "1 entry of the store could not be judged: pipe" \
        in message


def test_other_encrypted_formats_and_ciphertext_looking_bytes_pass_and_say_so() -> None:
    outcome, message = _verdict(_file("x.age", format="age", encoding="binary"),
                                _file("blob", format="unknown", encoding="binary"),
                                _file("empty", format="empty", size=0, sampled=0,
                                      entropy_bits=0.0))
    assert outcome is Outcome.PASS
    assert ("held 3 files: 0 in the service's format (Fernet token lines), 1 in another "
            "encrypted format, 1 in no recognised format whose bytes read as ciphertext, "
            "1 empty.") in message


def test_many_bad_files_are_named_up_to_the_bound() -> None:
    files = [_file(f"dump{i:02d}", format="text", entropy_bits=4.0) for i in range(13)]
    outcome, message = _verdict(*files)
    assert outcome is Outcome.FAIL
    assert "13 files that are not encrypted backups" in message
    assert "dump09" in message and "dump10" not in message
    assert "and 3 more (listed in the evidence)" in message


def test_the_evidence_records_the_store_as_found_first() -> None:
    verdict = backup_encrypted_verdict(BackupObservation(
        OK_RUN, _inspection(), StoreObservation("/backups", NOW, (_file("a"),))))
    assert next(iter(verdict.details)) == "store_as_found"
    assert verdict.details["store_as_found"]["entries"][0]["path"] == "a"


def test_an_empty_or_missing_store_says_so() -> None:
    assert _verdict()[1].startswith("As found, the backup store was empty. The fresh backup")
    outcome, message = _verdict(missing=True)
    assert outcome is Outcome.PASS
    assert message.startswith("The backup store /backups did not exist before the audit's backup.")


def _backup_by(job: str, store: Path, known: KnownSecrets) -> BackupObservation:
    """What the check's probe observes when the profile's backup is ``python -c JOB STORE``."""
    store.mkdir(exist_ok=True)
    profile = TargetProfile.model_validate({
        "name": "t", "backend": "remote", "edge": {"host": "votriz.test"},
        "operations": {"allow_destructive": True, "backup": [sys.executable, "-c", job, str(store)],
                       "backup_dir": str(store)}})
    return observe_backup(profile, load_policy(), known)


@pytest.mark.parametrize("staged", ["votriz-2.sql", "staging/2026-12/votriz.sql"], ids=["beside", "below"])
def test_a_plaintext_staging_dump_left_in_the_store_fails(tmp_path: Path, staged: str) -> None:
    # Given a backup job that encrypts its dump but leaves the plaintext staging dump beside it, or
    # in a subdirectory (the newer file is the encrypted one), and a canary e-mail the run knows
    job = ("import os, pathlib, sys, time; d = pathlib.Path(sys.argv[1]);"
           f"s = d / {staged!r}; s.parent.mkdir(parents=True, exist_ok=True);"
           "s.write_text('COPY public.users (email) FROM stdin;\\ncanary-7@audit.test\\n');"
           "time.sleep(0.05);"
           "(d / 'votriz-2.sql.enc').write_bytes(os.urandom(30000))")
    known = KnownSecrets()
    known.add("canary-7@audit.test", "canary e-mail")
    # When the check's probe takes a backup and the verdict judges it
    verdict = backup_encrypted_verdict(_backup_by(job, tmp_path / "backups", known))
    # Then the staging dump fails it, named by its path in the store with what it shows
    assert verdict.outcome is Outcome.FAIL, verdict.message
    assert ("The backup also left 1 file beside votriz-2.sql.enc that holds the data in the clear: "
            f"{staged}: ") in verdict.message
    assert "canary e-mail (raw) at offset" in verdict.message
    assert [f["name"] for f in verdict.details["also_left"]] == [staged]


def test_a_manifest_and_a_checksum_written_after_the_backup_are_no_finding(tmp_path: Path) -> None:
    # Given a backup job that writes the encrypted file, then a JSON manifest and a checksum
    job = ("import hashlib, json, os, pathlib, sys, time; d = pathlib.Path(sys.argv[1]);"
           "data = os.urandom(30000); (d / 'votriz-3.sql.enc').write_bytes(data); time.sleep(0.05);"
           "(d / 'votriz-3.manifest.json').write_text(json.dumps({'name': 'votriz-3.sql.enc', 'size': 30000}));"
           "(d / 'votriz-3.sql.enc.sha256').write_text(hashlib.sha256(data).hexdigest() + '\\n')")
    # When the check's probe takes a backup and the verdict judges it
    obs = _backup_by(job, tmp_path / "backups", KnownSecrets())
    verdict = backup_encrypted_verdict(obs)
    # Then the backup judged is the encrypted file (the largest), and the text beside it is no finding
    assert obs.inspection is not None and obs.inspection.name == "votriz-3.sql.enc"
    assert sorted(o.name for o in obs.others) == ["votriz-3.manifest.json", "votriz-3.sql.enc.sha256"]
    assert verdict.outcome is Outcome.PASS, verdict.message


def test_a_file_the_backup_rewrites_in_place_is_judged_as_new(tmp_path: Path) -> None:
    # Given a store holding a small staging file from an earlier run
    store = tmp_path / "backups"
    store.mkdir()
    (store / "staging.sql").write_text("-- staged\n")
    os.utime(store / "staging.sql", (1, 1))
    # When the backup rewrites it in place with a plain dump and writes its encrypted file
    job = ("import os, pathlib, sys; d = pathlib.Path(sys.argv[1]);"
           "(d / 'staging.sql').write_text('-- PostgreSQL database dump\\n' * 20);"
           "(d / 'votriz-5.sql.enc').write_bytes(os.urandom(30000))")
    verdict = backup_encrypted_verdict(_backup_by(job, store, KnownSecrets()))
    # Then the rewritten file is judged as one the backup left: a dump header beside the backup
    assert verdict.outcome is Outcome.FAIL, verdict.message
    assert "votriz-5.sql.enc that holds the data in the clear: staging.sql: " in verdict.message


def test_a_store_larger_than_the_listing_is_never_a_pass(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a store holding more entries than the harness lists (a bound of 2 here)
    monkeypatch.setattr(backups, "walk_store", functools.partial(backups.walk_store, max_entries=2))
    store = tmp_path / "backups"
    store.mkdir()
    for n in range(3):
        (store / f"b-{n}.enc").write_bytes(os.urandom(4000))
    # When a backup that is fine on its own is taken, listed first or beyond the bound
    for name, says in (("a.enc", "more entries than the harness lists"),
                       ("z.enc", "among the entries the harness lists (the store holds more)")):
        job = ("import os, pathlib, sys;"
               f"(pathlib.Path(sys.argv[1]) / '{name}').write_bytes(os.urandom(30000))")
        obs = _backup_by(job, store, KnownSecrets())
        verdict = backup_encrypted_verdict(obs)
        # Then the verdict says what could not be seen: never PASS
        assert obs.listing_cut
        assert verdict.outcome is Outcome.ERROR, verdict.message
        assert says in verdict.message
