"""The bare read of a key range, for bench_columns.py's "limit in the same run".

A module of its own, so that the worker processes that run it import no more than the
check's workers do (the database probe), not the benchmark with its seeding and sweep.
"""

from __future__ import annotations

from harness.policy import Policy
from harness.probes.database import DatabaseProbe
from harness.profile import TargetProfile


def drain_range(profile: TargetProfile, policy: Policy, table: str, columns: tuple[str, ...],
                low: int | None, high: int | None, null_key: bool = False) -> tuple[int, int]:
    """One key range of a table (or its rows whose key is NULL) read as the scans read it (one
    read-only ``COPY`` in blocks), drained without parsing: (bytes, rows)."""
    size = rows = 0
    with DatabaseProbe(profile, policy) as db:
        for block in db.copy_rows(table, columns, low=low, high=high, stored_bytes=True,
                                  null_key=null_key):
            size += len(block)
            rows += block.count(b"\n")
    return size, rows
