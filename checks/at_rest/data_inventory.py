"""at_rest.data_inventory: every stored column is encrypted, hashed, keyed, metadata,
or on the page's list of what is not encrypted.

Columns are classified by ``harness/inventory_rules.py`` from
``fixtures/policy/inventory.toml``; ``harness/probes/inventory.py`` reads every
row of every column whose class is judged on its content (a table over the
rules' time budget is sampled at random, and the verdict says so with the
bound the sample supports).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from harness.details import plain, plural
from harness.evidence import EvidenceRecorder
from harness.inventory_rules import ColumnFinding, load_inventory_rules
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.canary_account import canary_data_and_note
from harness.probes.inventory import InventoryObservation, observe_inventory
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets


def data_inventory_unavailable(profile: TargetProfile) -> Verdict | None:
    """MANUAL when the profile names no database for at_rest.data_inventory, else None."""
    if profile.database is not None:
        return None
    return Verdict.manual(
        "The profile has no [database] section, so no inventory of the stored columns can be "
        "taken. By hand: list every column with `SELECT table_schema, table_name, column_name, "
        "data_type FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', "
        "'information_schema')` as a role that can read every table, and show for each that it "
        "is Fernet-encrypted, a bcrypt hash, a keyed index, an enum or metadata, or on the page's "
        "list of what is not encrypted (fixtures/policy/inventory.toml), with sample cells of "
        "every text column.", missing=["no [database] section"])


def sample_bound(finding: ColumnFinding) -> str:
    """What a clean random sample of a column supports (the rule of three: no offending cell
    in n random rows bounds the offending share below 3/n with 95% confidence)."""
    n = finding.sample_of or 0
    if n == 0:
        return f"{finding.column}: sampled 0 of {finding.rows_total} rows, so nothing is known"
    return (f"{finding.column}: {finding.coverage}, none offending, so with 95% confidence fewer "
            f"than {3 / n:.3%} of its rows do")


def data_inventory_verdict(obs: InventoryObservation) -> Verdict:
    """Every column is encrypted, hashed, keyed, metadata, or on the page's plaintext list."""
    table = [plain(c) for c in obs.columns]
    details: dict[str, Any] = {"inventory": table, "unreadable_tables": list(obs.unreadable_tables),
                               "categories": dict(Counter(c.category for c in obs.columns))}
    bad = [c for c in obs.columns if not c.ok]
    if bad:
        return Verdict.failed(
            f"{plural(len(bad), 'column')} of {len(obs.columns)} hold data the page does not "
            "allow in plaintext: " + "; ".join(f"{c.column} ({c.data_type}): {c.problem}"
                                                for c in bad) + ".", **details)
    if obs.unreadable_tables:
        return Verdict.error(
            f"The auditor role cannot read {', '.join(obs.unreadable_tables)}, so the inventory "
            "is incomplete: grant it SELECT on every table.", **details)
    if not obs.columns:
        return Verdict.error("The auditor role sees no column at all.", **details)
    judged = [c for c in obs.columns if c.rows_total is not None]
    whole = [c for c in judged if c.sample_of is None]
    sampled = [c for c in judged if c.sample_of is not None]
    read = (f"; every row of the {plural(len(whole), 'column')} judged on content was read "
            f"({plural(sum(c.cells for c in whole), 'cell')})" if whole else "")
    bounds = ("; sampled, not read whole (over the inventory's full_scan_max_rows): "
              + "; ".join(sample_bound(c) for c in sampled) if sampled else "")
    return Verdict.passed(
        f"All {len(obs.columns)} columns are accounted for: "
        + ", ".join(f"{n} {k}" for k, n in sorted(details["categories"].items()))
        + read + bounds + "; none holds plaintext outside the page's list.", **details)


@pytest.mark.claims("SCOPE-ONLY-LISTED-PLAINTEXT", "OVERVIEW-NO-PLAINTEXT")
@pytest.mark.access("api", "database")
def check_data_inventory(request: pytest.FixtureRequest, profile: TargetProfile, policy: Policy,
                         known_secrets: KnownSecrets, evidence: EvidenceRecorder) -> None:
    unavailable = data_inventory_unavailable(profile)
    if unavailable is not None:
        evidence.conclude(unavailable)
    rules = load_inventory_rules()
    canary, _ = canary_data_and_note(request, profile)
    obs = observe_inventory(profile, policy, known_secrets, canary, rules)
    verdict = data_inventory_verdict(obs)
    evidence.attach("inventory", verdict.details)
    evidence.conclude(verdict)
