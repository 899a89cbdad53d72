"""A seeded PostgreSQL 15 cluster kept in a directory, for bench_columns.py's ``--cluster-dir``.

Seeding tens of millions of rows takes longer than measuring them (20M channel rows and
20M users: half an hour or more on a shared 2-core machine), so the cluster can be kept and
measured again by later runs. The directory holds the data directory, the server log, the
unix socket and two files written only once the seeding has ended: ``bench-seed.json`` (what
was seeded, how, and how long it took) and ``bench-key`` (the benchmark's own random Fernet
key, mode 0600, never printed). A directory without them is new, or holds a seeding that did
not finish; only an empty or missing directory is seeded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from system_under_test.local.processes import free_port, service_user
from tests.scratch_postgres import PG_BIN, ScratchPostgres, as_service_user

MARKER = "bench-seed.json"
KEY_FILE = "bench-key"


class ClusterRefused(Exception):
    """The directory cannot be used as asked (one line, for the command line)."""


@dataclass(frozen=True)
class KeptCluster:
    """A started cluster in ``directory``; ``seeded`` is its marker (None: seed it now)."""

    cluster: ScratchPostgres
    directory: Path
    seeded: dict[str, Any] | None


def wanted(rows: int, users: int, tokens_by: str) -> dict[str, Any]:
    """What a run needs the kept cluster to hold."""
    return {"rows": rows, "users": users, "tokens_by": tokens_by}


def read_marker(directory: Path, want: dict[str, Any]) -> dict[str, Any] | None:
    """The directory's seeding record if it matches ``want``; None if the directory is new or
    empty; ClusterRefused if it holds another seeding, an unfinished one or something else."""
    if not directory.exists() or (directory.is_dir() and not any(directory.iterdir())):
        return None
    if not directory.is_dir():
        raise ClusterRefused(f"--cluster-dir {directory} is not a directory")
    marker = directory / MARKER
    if not marker.is_file() or not (directory / KEY_FILE).is_file():
        raise ClusterRefused(f"--cluster-dir {directory} is not empty and holds no finished "
                             f"seeding ({MARKER}): remove it or name another directory")
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        held = {name: record[name] for name in want}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ClusterRefused(f"--cluster-dir {directory}: unreadable {MARKER} ({error})") from None
    if held != want:
        raise ClusterRefused(
            f"--cluster-dir {directory} holds a cluster seeded with "
            + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in held.items())
            + "; this run asks for "
            + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in want.items()))
    return dict(record)


def read_key(directory: Path) -> bytes:
    key = bytes.fromhex((directory / KEY_FILE).read_text(encoding="ascii").strip())
    if len(key) != 32:
        raise ClusterRefused(f"--cluster-dir {directory}: {KEY_FILE} is not a 32-byte key")
    return key


def write_marker(directory: Path, record: dict[str, Any], raw_key: bytes) -> None:
    """Record a finished seeding (the key first: a marker always has its key)."""
    key_file = directory / KEY_FILE
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(raw_key.hex() + "\n")
    temporary = directory / f".{MARKER}.tmp"
    temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    temporary.replace(directory / MARKER)


def _run(directory: Path, argv: list[str], timeout: float) -> None:
    """``argv`` as the service user; its failure as one line (ClusterRefused)."""
    try:
        subprocess.run(as_service_user(argv), check=True, capture_output=True, timeout=timeout)
    except subprocess.CalledProcessError as failed:
        said = (failed.stderr or b"").decode(errors="replace").strip().splitlines()
        raise ClusterRefused(f"--cluster-dir {directory}: {Path(argv[0]).name} failed: "
                             f"{said[-1] if said else f'exit {failed.returncode}'}") from None


@contextmanager
def kept_postgres(directory: Path, want: dict[str, Any], *, settings: Sequence[str] = (),
                  seeding_settings: Sequence[str] = (),
                  stop_timeout_s: float = 300) -> Iterator[KeptCluster]:
    """The cluster kept in ``directory``, started on a free port: made (initdb, a ``votriz``
    database, started with ``settings`` and ``seeding_settings``) if the directory is new or
    empty, else the one seeded there as ``want`` (started with ``settings`` only). Stopped
    (``fast``) at the end and kept; a new cluster whose seeding did not finish is removed."""
    seeded = read_marker(directory, want)
    directory.mkdir(parents=True, exist_ok=True)
    directory = directory.resolve()
    data = directory / "data"
    try:
        if seeded is None:
            service_user().chown(directory)
            _run(directory, [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                             "--auth=trust"], timeout=300)
        port = free_port()
        options = " ".join([f"-p {port} -k {directory} -c listen_addresses=''",
                            *(f"-c {s}" for s in settings),
                            *(f"-c {s}" for s in (seeding_settings if seeded is None else ()))])
        _run(directory, [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(directory / "pg.log"),
                         "-w", "-t", "600", "start", "-o", options], timeout=660)
        cluster = ScratchPostgres(directory, port)
        if seeded is None:
            cluster.psql("CREATE DATABASE votriz", dbname="postgres")
        yield KeptCluster(cluster, directory, seeded)
    finally:
        if data.exists():
            subprocess.run(as_service_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m",
                                            "fast", "-w", "-t", str(int(stop_timeout_s)),
                                            "stop"]),
                           capture_output=True, timeout=stop_timeout_s + 30)
        if not (directory / MARKER).exists():  # made here, its seeding unfinished
            shutil.rmtree(directory, ignore_errors=True)


def seeded_record(want: dict[str, Any], seed_figures: dict[str, Any],
                  load_before: list[float], load_after: list[float]) -> dict[str, Any]:
    """The marker's content: what was asked, what was seeded, when, and the load around it."""
    return {**want, "seed": seed_figures, "seeded_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                      time.gmtime()),
            "load_before": load_before, "load_after": load_after}
