"""The backups probe: backup files inspected, aged names, operator commands run and redacted."""

from __future__ import annotations

from pathlib import Path

from harness.formats.fernet import FernetKey, encrypt_fernet_token
from harness.probes.backups import (
    aged_backup_name,
    inspect_backup,
    shannon_entropy,
)
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
    assert missing.exit_code is None and "cannot start /nonexistent/tool" in missing.error
