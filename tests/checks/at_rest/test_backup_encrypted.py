"""at_rest.backup_encrypted on hand-made inspections and real compressed dumps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from checks.at_rest.backup_encrypted import backup_encrypted_verdict
from harness.outcomes import Outcome
from harness.probes import backups as backup_probe
from harness.probes.backups import (
    BackupInspection,
    BackupObservation,
    CommandRun,
    inspect_backup,
)
from harness.redaction import KnownSecrets
from harness.sweep import SecretSweep, SweepHit

OK_RUN = CommandRun("backup", 0, 1.0, '{"ok": true}', "")


def _inspection(**changes: object) -> BackupInspection:
    base = dict(name="votriz-1.dump.enc", size=40000, sampled=40000, markers=(),
                encoding="base64 lines", entropy_bits=7.98, secret_hits=())
    base.update(changes)
    return BackupInspection(**base)  # type: ignore[arg-type]


def test_backup_encrypted_both_sides() -> None:
    ok = backup_encrypted_verdict(BackupObservation(OK_RUN, _inspection()))
    assert ok.outcome is Outcome.PASS and "7.98 bits per byte (base64 lines)" in ok.message
    plain = _inspection(markers=("pg_dump custom-format header (PGDMP)",), encoding="binary",
                        entropy_bits=6.1, secret_hits=(SweepHit("canary e-mail (raw)", "f", 9),))
    bad = backup_encrypted_verdict(BackupObservation(OK_RUN, plain))
    assert bad.outcome is Outcome.FAIL
    assert "it shows pg_dump custom-format header (PGDMP)" in bad.message
    assert "canary e-mail (raw) at offset 9" in bad.message
    assert "6.10 bits per byte (binary), below the 7.5 of ciphertext" in bad.message
    failed = CommandRun("backup", 1, 0.2, "", "pg_dump failed: boom")
    assert backup_encrypted_verdict(BackupObservation(failed, None)).outcome is \
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
    verdict = backup_encrypted_verdict(BackupObservation(OK_RUN, found))
    # Then the compression is seen through: FAIL, naming the format and the dump inside
    assert found.compression == compression and not found.markers
    assert found.decompressed_markers[0] == "pg_dump custom-format header (PGDMP)"
    assert verdict.outcome is Outcome.FAIL
    assert f"it is compressed, not encrypted ({compression}); its first" in verdict.message
    assert "decompressed bytes show pg_dump custom-format header (PGDMP)" in verdict.message


def test_compression_magic_alone_fails_even_when_not_decompressible() -> None:
    # zstd has no decoder in the standard library: the magic number alone is enough.
    zstd = _inspection(compression="zstd", decompressed=0, encoding="binary", entropy_bits=7.99)
    verdict = backup_encrypted_verdict(BackupObservation(OK_RUN, zstd))
    assert verdict.outcome is Outcome.FAIL
    assert "it is compressed, not encrypted (zstd); its content could not be decompressed here" \
        in verdict.message
    assert backup_probe.compression_of(b"\x28\xb5\x2f\xfd\x00rest") == "zstd"
    assert backup_probe.compression_of(b"\xfd7zXZ\x00rest") == "xz"
    assert backup_probe.compression_of(b"gAAAAABk") == ""


def test_encrypted_backup_still_passes_and_says_no_compression() -> None:
    verdict = backup_encrypted_verdict(BackupObservation(OK_RUN, _inspection()))
    assert verdict.outcome is Outcome.PASS
    assert "shows no dump header, no compression magic number and no known secret" in \
        verdict.message


def test_backup_too_small_to_sample_is_error_not_pass() -> None:
    tiny = _inspection(size=300, sampled=300, entropy_bits=7.9)
    verdict = backup_encrypted_verdict(BackupObservation(OK_RUN, tiny))
    assert verdict.outcome is Outcome.ERROR
    assert "is only 300 bytes, too small (under 1024)" in verdict.message
    # A marker seen in a small file is still an observed FAIL.
    marked = _inspection(size=300, sampled=300, markers=("SQL COPY statement",))
    assert backup_encrypted_verdict(BackupObservation(OK_RUN, marked)).outcome is \
        Outcome.FAIL
