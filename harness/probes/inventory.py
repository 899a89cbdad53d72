"""The data inventory as the auditor role sees it: every visible column, classified
from its type and a sample of its content (``harness/inventory_rules.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.canaries import Canary
from harness.inventory_rules import ColumnFinding, InventoryRules, classify_column
from harness.policy import Policy
from harness.probes.database import open_database
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


def observe_inventory(profile: TargetProfile, policy: Policy, known: KnownSecrets,
                      canary: Canary | None, rules: InventoryRules) -> InventoryObservation:
    """Classify every column the auditor role sees, sampling the content its rule needs."""
    findings = []
    with open_database(profile, policy, known) as db:
        seen = db.visible_tables()
        for info in seen.columns:
            rule = rules.rule_for(info.name)
            needs_content = (rule is not None and rule.class_ in ("fernet", "bcrypt",
                                                                  "keyed_index", "enum")) or \
                (rule is None and info.data_type not in rules.metadata_types)
            samples = db.sample_column(info, rules.sample_rows) if needs_content else ()
            canary_cell = None
            if (rule is not None and rule.canary == "email" and canary is not None
                    and canary.user_id is not None and info.schema == "public"):
                cells = [v for batch in db.stream_column(info.table, info.column,
                                                         where="id = %s",
                                                         params=(canary.user_id,))
                         for _, v in batch]
                if cells and isinstance(cells[0], str):
                    canary_cell = (canary.email, cells[0])
            findings.append(classify_column(info, rules, samples, canary_cell))
    return InventoryObservation(tuple(findings), seen.unreadable_tables)
