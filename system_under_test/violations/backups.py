"""Violations of the backup store: files planted beside the service's encrypted backups.

A check that judges only the backup the audit takes, or that runs the prune
before it looks, cannot see either of these; one that judges the store as
found can.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta

from system_under_test.ops.backups import backup_name, backup_time, pg_binary
from system_under_test.violations import Violation
from system_under_test.violations.stack import TIMEOUT_S, RunningStack, StackError

#: The file name of the planted plain dump: not the service's pattern.
PLAIN_DUMP_NAME = "votriz-manual.dump"
#: How old the planted backup copy is: past the 30-day retention and its tolerance.
AGED_DAYS = 40


def plain_dump(stack: RunningStack) -> None:
    """A real ``pg_dump -Fc`` of the service's database, run as the superuser, written into
    the backup store beside the encrypted backups."""
    target = stack.backup_dir / PLAIN_DUMP_NAME
    stack.backup_dir.mkdir(mode=0o700, exist_ok=True)
    # pg_dump takes a conninfo string as its database name.
    done = subprocess.run([pg_binary("pg_dump"), "-Fc", "--no-password", "-f", str(target),
                           "-d", stack._superuser_conninfo()],
                          capture_output=True, text=True, timeout=TIMEOUT_S * 4, check=False,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise StackError(f"pg_dump failed: {done.stderr.strip()[-300:]}")


def _newest_backup(stack: RunningStack) -> str | None:
    names = [name for name in os.listdir(stack.backup_dir) if backup_time(name) is not None] \
        if stack.backup_dir.is_dir() else []
    return max(names, key=lambda name: backup_time(name) or datetime.min.replace(tzinfo=UTC),
               default=None)


def aged_backup(stack: RunningStack) -> None:
    """A copy of the newest encrypted backup (one is taken with the operator's command if the
    store holds none), named and dated 40 days ago (its modification time set by ``os.utime``)."""
    newest = _newest_backup(stack)
    if newest is None:
        argv = [str(part) for part in stack.profile["operations"]["backup"]]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S * 8,
                              check=False, stdin=subprocess.DEVNULL)
        newest = _newest_backup(stack)
        if done.returncode != 0 or newest is None:
            raise StackError(f"no backup to copy, and the backup command failed: "
                             f"{done.stderr.strip()[-300:]}")
    then = datetime.now(UTC) - timedelta(days=AGED_DAYS)
    target = stack.backup_dir / backup_name(then)
    if target.exists():
        raise StackError(f"{target.name} already exists in the backup store")
    shutil.copyfile(stack.backup_dir / newest, target)
    stamp = time.time() - AGED_DAYS * 86400
    os.utime(target, (stamp, stamp))


VIOLATIONS = (
    Violation("backup-store-plain-dump", "a plain pg_dump -Fc of the service's database, taken "
              "as the superuser, is written into the backup store beside the encrypted backups",
              plain_dump),
    Violation("backup-store-aged-copy", "a copy of an encrypted backup, named and dated "
              f"{AGED_DAYS} days ago, is placed in the backup store", aged_backup),
)
