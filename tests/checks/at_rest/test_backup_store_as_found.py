"""The backup store judged as found, on a RUNNING local stack, through the real CLI.

Violations are planted by hand into the stack's backup directory (as calibrate
applies them: a real ``pg_dump -Fc`` taken as the superuser, and a copy of an
encrypted backup named and dated 40 days ago), then ``votriz-audit run
--target --only at_rest`` runs. ``backup_encrypted`` must FAIL naming the
dump, ``backup_retention`` must FAIL naming the aged copy, and the aged copy
must still be in the store after the run: the audit never destroys the
evidence it reports. The planted files are removed afterwards, so the shared
clean stack is left as found.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from audit_cli import run_cli

from harness.calibrate import load_violation_expectations
from system_under_test.backends import BACKENDS
from system_under_test.violations import backups as backup_violations
from system_under_test.violations.stack import RunningStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXPECTED = load_violation_expectations()


def test_each_backup_violation_has_its_calibration_table() -> None:
    for violation in backup_violations.VIOLATIONS:
        assert violation.name in EXPECTED, violation.name
        assert EXPECTED[violation.name].description == violation.description
    assert EXPECTED["backup-store-plain-dump"].checks == ("at_rest.backup_encrypted",)
    assert EXPECTED["backup-store-aged-copy"].checks == ("at_rest.backup_retention",)


def test_clean_store_passes(clean_stack: Any, tmp_path: Path) -> None:
    run = run_cli(clean_stack.profile_path, tmp_path / "clean", only=["at_rest"], limit_s=600)
    for check in ("at_rest.backup_encrypted", "at_rest.backup_retention",
                  "at_rest.restore_drill"):
        assert run.outcome(check) == "PASS", (check, run.message(check))
    assert run.message("at_rest.backup_encrypted").startswith("As found, the backup store ")
    assert "Pruning removed a backup older than 30 days" in \
        run.message("at_rest.backup_retention")


def test_planted_dump_and_aged_copy_fail_and_the_aged_copy_stays(clean_stack: Any,
                                                                 tmp_path: Path) -> None:
    stack = RunningStack.open(clean_stack.state_dir)
    store = stack.backup_dir
    before = {p.name for p in store.iterdir()} if store.is_dir() else set()
    stale = time.time() - 86400
    dump = backup_violations.PLAIN_DUMP_NAME
    try:
        # Given a plain dump and a 40-day-old copy planted by hand beside the encrypted backups
        for name in ("backup-store-plain-dump", "backup-store-aged-copy"):
            BACKENDS["local"].apply_violation(clean_stack.state_dir, name)
        aged = [p.name for p in store.iterdir() if p.stat().st_mtime < stale]
        assert len(aged) == 1 and aged[0].endswith(".dump.enc"), aged
        assert (store / dump).read_bytes()[:5] == b"PGDMP"
        # When the at-rest area is audited through the CLI
        run = run_cli(clean_stack.profile_path, tmp_path / "planted", only=["at_rest"],
                      limit_s=600)
        # Then backup_encrypted FAILs naming the dump, retention FAILs naming the aged copy
        encrypted = run.message("at_rest.backup_encrypted")
        assert run.outcome("at_rest.backup_encrypted") == "FAIL", encrypted
        assert (f"The backup store as found holds 1 file that is not an encrypted backup: "
                f"{dump}: it is a PostgreSQL custom-format dump (PGDMP)") in encrypted
        retention = run.message("at_rest.backup_retention")
        assert run.outcome("at_rest.backup_retention") == "FAIL", retention
        assert f"{aged[0]} (40.0 days by" in retention
        assert "The audit did not run the prune, so it is still in the store." in retention
        # And the evidence is still there: the audit deleted neither planted file
        assert (store / aged[0]).is_file() and (store / dump).is_file()
        assert run.outcome("at_rest.restore_drill") == "PASS", run.message("at_rest.restore_drill")
        assert run.returncode == 1
    finally:
        # Leave the shared stack as found: the planted files go (the audit's own fresh
        # backups stay, as after any run).
        for path in store.iterdir():
            if path.name not in before and (path.name == dump or path.stat().st_mtime < stale):
                path.unlink()
