"""Unit tests of the operator commands' pure parts: the backup stream format, backup names,
pruning by the time in the name, and finding gunicorn's workers."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tomli_w
from cryptography.fernet import Fernet, InvalidToken

from system_under_test.api.config import parse_config
from system_under_test.ops import backups
from system_under_test.ops.__main__ import main, parser
from system_under_test.ops.context import OpsContext
from system_under_test.ops.workers import worker_pids

SAMPLE_CONFIG: dict[str, object] = {
    "state_dir": "/tmp/x", "listen": "unix:/tmp/x/run/api.sock",
    "public_url": "https://votriz.test:8443",
    "database_dsn": "host=127.0.0.1 port=1 dbname=votriz user=votriz_app",
    "redis_host": "127.0.0.1", "redis_port": 6379,
    "hsm_module": "/usr/lib/softhsm/libsofthsm2.so", "hsm_token_label": "votriz",
    "llm_base_url": "https://h/anthropic", "resend_base_url": "https://h/resend",
    "platform_base_url": "https://h/platforms", "upstream_ca_file": "/tmp/x/ca.pem",
}


def stream(fernet: Fernet, payloads: list[bytes]) -> bytes:
    out = io.BytesIO()
    writer = backups.ChunkWriter(fernet, out)
    for payload in payloads:
        writer.write(payload)
    writer.write(b"", last=True)
    return out.getvalue()


def test_chunk_stream_round_trip() -> None:
    fernet = Fernet(Fernet.generate_key())
    payloads = [b"manifest", b"x" * 1000, b""]
    data = stream(fernet, payloads)
    assert b"manifest" not in data
    assert list(backups.read_chunks(fernet, io.BytesIO(data))) == [*payloads, b""]


def test_truncated_stream_is_refused() -> None:
    fernet = Fernet(Fernet.generate_key())
    lines = stream(fernet, [b"a", b"b"]).splitlines(keepends=True)
    with pytest.raises(backups.BackupFormatError, match="truncated"):
        list(backups.read_chunks(fernet, io.BytesIO(b"".join(lines[:-1]))))


def test_reordered_stream_is_refused() -> None:
    fernet = Fernet(Fernet.generate_key())
    lines = stream(fernet, [b"a", b"b"]).splitlines(keepends=True)
    lines[0], lines[1] = lines[1], lines[0]
    with pytest.raises(backups.BackupFormatError):
        list(backups.read_chunks(fernet, io.BytesIO(b"".join(lines))))


def test_other_key_or_altered_chunk_is_refused() -> None:
    fernet = Fernet(Fernet.generate_key())
    data = stream(fernet, [b"a"])
    with pytest.raises(InvalidToken):
        list(backups.read_chunks(Fernet(Fernet.generate_key()), io.BytesIO(data)))
    altered = data[:40] + (b"A" if data[40:41] != b"A" else b"B") + data[41:]
    with pytest.raises(InvalidToken):
        list(backups.read_chunks(fernet, io.BytesIO(altered)))


def test_backup_names_round_trip() -> None:
    moment = datetime(2026, 11, 30, 21, 5, 9, tzinfo=UTC)
    assert backups.backup_name(moment) == "votriz-20261130T210509Z.dump.enc"
    assert backups.backup_time(backups.backup_name(moment)) == moment
    assert backups.backup_time("votriz-2026.dump.enc") is None
    assert backups.backup_time("notes.txt") is None


def make_backups(state_dir: Path, now: datetime, ages_days: list[float]) -> list[str]:
    (state_dir / "backups").mkdir(parents=True)
    names = []
    for age in ages_days:
        name = backups.backup_name(now - timedelta(days=age))
        (state_dir / "backups" / name).write_bytes(b"x")
        names.append(name)
    (state_dir / "backups" / "README").write_text("not a backup")
    return names


@pytest.mark.parametrize(("faults", "deleted_ages"), [([], [30.5, 90]),
                                                      (["backup-retention-broken"], [])])
def test_prune_deletes_backups_older_than_30_days(tmp_path: Path, faults: list[str],
                                                  deleted_ages: list[float]) -> None:
    now = datetime(2026, 12, 31, tzinfo=UTC)
    ages = [0, 1, 29.9, 30.5, 90]
    names = make_backups(tmp_path, now, ages)
    ctx = OpsContext(tmp_path, parse_config({**SAMPLE_CONFIG, "faults": faults}), tmp_path / "pin")
    result = backups.prune_backups(ctx, now=now)
    expected_deleted = [n for n, age in zip(names, ages, strict=True) if age in deleted_ages]
    assert sorted(result["deleted"]) == sorted(expected_deleted)
    left = {p.name for p in (tmp_path / "backups").iterdir()}
    assert left == ({*names} - {*expected_deleted}) | {"README"}


def test_prune_cli_takes_now(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime(2026, 12, 31, tzinfo=UTC)
    make_backups(tmp_path, now, [40])
    (tmp_path / "api.toml").write_text(tomli_w.dumps({**SAMPLE_CONFIG, "faults": []}))
    assert main(["prune-backups", "--state-dir", str(tmp_path), "--now",
                 "2026-12-31T00:00:00Z"]) == 0
    assert '"deleted": ["votriz-20261121T000000Z.dump.enc"]' in capsys.readouterr().out


def test_cli_fails_with_one_line_without_a_stack(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backup", "--state-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: backup:") and "\n" not in err


def test_cli_refuses_bad_arguments() -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["seed-channels", "--count", "-3"])
    with pytest.raises(SystemExit):
        parser().parse_args(["prune-backups", "--now", "yesterday"])


def test_worker_pids_are_the_children_of_the_master() -> None:
    code = "import subprocess, sys, time; [subprocess.Popen([sys.executable, '-c', " \
           "'import time; time.sleep(30)']) for _ in range(2)]; time.sleep(30)"
    master = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while len(worker_pids(master.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        children = worker_pids(master.pid)
        assert len(children) == 2 and master.pid not in children
    finally:
        for pid in worker_pids(master.pid):
            subprocess.run(["kill", str(pid)], check=False)
        master.kill()
        master.wait()


def test_a_command_imports_only_the_clients_it_uses(tmp_path: Path) -> None:
    # Given a stack's state directory (prune-backups needs its config and backups, no server)
    make_backups(tmp_path, datetime(2026, 12, 31, tzinfo=UTC), [40])
    (tmp_path / "api.toml").write_text(tomli_w.dumps({**SAMPLE_CONFIG, "faults": []}))
    code = ("import sys\n"
            "from system_under_test.ops.__main__ import main\n"
            "assert main(['prune-backups', '--state-dir', sys.argv[1], '--now', '2026-12-31T00:00:00Z']) == 0\n"
            "print(sorted(m for m in ('psycopg', 'redis', 'httpx') if m in sys.modules))\n")
    # When it runs in an interpreter of its own
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                          timeout=60, check=True)
    # Then it pruned without importing the database's, Redis's or an HTTP client
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_client_errors_are_one_line_once_their_client_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg
    import redis

    from system_under_test.ops import __main__ as ops_main

    kinds = ops_main._expected_errors()
    assert psycopg.Error in kinds and redis.RedisError in kinds and OSError in kinds
    monkeypatch.delitem(sys.modules, "redis")
    assert redis.RedisError not in ops_main._expected_errors()
