"""The data inventory as the auditor role sees it: every visible column, classified
from its type and its content (``harness/inventory_rules.py``).

The content is every row: each table whose columns need it is read once,
streamed through a server-side cursor (memory bounded by a batch, not by the
table), every cell held to its column's rule. A table over the rules'
``full_scan_max_rows`` (the check's time budget) is read as a random sample
of about ``sample_rows`` rows instead, and its findings say so.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.canaries import Canary
from harness.inventory_rules import ColumnFinding, ColumnTally, InventoryRules, needs_content
from harness.policy import Policy
from harness.probes.database import ColumnInfo, DatabaseProbe, open_database
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


@dataclass(frozen=True)
class InventoryObservation:
    """Everything at_rest.data_inventory judges.

    Attributes:
        columns: one finding per readable column.
        unreadable_tables: tables the auditor role cannot read (not classified).
    """

    columns: tuple[ColumnFinding, ...]
    unreadable_tables: tuple[str, ...] = ()


def _row_key(infos: list[ColumnInfo]) -> str:
    """The column that names a row: the single-column primary key, else its physical place."""
    primary = [c.column for c in infos if c.is_primary_key]
    return primary[0] if len(primary) == 1 else "ctid"


def _judge_table(db: DatabaseProbe, schema: str, table: str, infos: list[ColumnInfo], key: str,
                 rules: InventoryRules, rows_total: int) -> tuple[dict[str, ColumnTally], int | None]:
    """Every cell of the table's columns that need content, in one streamed read (or a
    random sample of the rows when the table is over the budget); the tallies by column
    name and the rows sampled (None: every row was read)."""
    tallies = {c.column: ColumnTally(c, rules) for c in infos}
    columns = list(tallies)
    where: str | None = None
    params: tuple[float, ...] = ()
    sampled: int | None = None
    if rows_total > rules.full_scan_max_rows:
        # A Bernoulli sample: each row is read with the same probability.
        where, params = "random() < %s", (rules.sample_rows / rows_total,)
        sampled = 0
    for batch in db.stream_rows(table, columns, schema=schema, key=key,
                                where=where, params=params):
        for row in batch:
            key = row[0]
            for index, column in enumerate(columns):
                tallies[column].add(key, row[index + 1])
        if sampled is not None:
            sampled += len(batch)
    return tallies, sampled


def observe_inventory(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                      canary: Canary | None, rules: InventoryRules) -> InventoryObservation:
    """Classify every column the auditor role sees, holding every row to its rule."""
    findings = []
    with open_database(profile, policy, known) as db:
        seen = db.visible_tables()
        tables: dict[tuple[str, str], list[ColumnInfo]] = {}
        for info in seen.columns:
            tables.setdefault((info.schema, info.table), []).append(info)
        for (schema, table), infos in tables.items():
            rows_total = seen.row_counts.get(f"{schema}.{table}", 0)
            content = [c for c in infos if needs_content(c, rules)]
            tallies, sampled = (_judge_table(db, schema, table, content, _row_key(infos), rules,
                                             rows_total) if content else ({}, None))
            for info in infos:
                canary_cell = None
                rule = rules.rule_for(info.name)
                if (rule is not None and rule.canary == "email" and canary is not None
                        and canary.user_id is not None and info.schema == "public"):
                    cells = [v for batch in db.stream_column(info.table, info.column,
                                                             where="id = %s",
                                                             params=(canary.user_id,))
                             for _, v in batch]
                    if cells and isinstance(cells[0], str):
                        canary_cell = (canary.email, cells[0])
                tally = tallies.get(info.column) or ColumnTally(info, rules)
                findings.append(tally.finding(
                    canary_cell, rows_total=rows_total if info.column in tallies else None,
                    sample_of=sampled if info.column in tallies else None))
    return InventoryObservation(tuple(findings), seen.unreadable_tables)
