"""The data inventory's rules: how each stored column must be classified.

``fixtures/policy/inventory.toml`` names, by glob over ``table.column``, the
class each column must be (Fernet, bcrypt, keyed index, enum, metadata, or on
the page's plaintext list); :func:`classify_column` holds a column's type and
sampled content to its rule, or classifies it from its content when no rule
names it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.formats.bcrypt_hash import HashScheme, classify_stored_hash
from harness.formats.fernet import FernetTokenError, parse_fernet_token
from harness.outcomes import ProbeError
from harness.probes.database import ColumnInfo
from harness.tomlfile import load_toml_model

INVENTORY_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "policy" / "inventory.toml"


ColumnClass = Literal["fernet", "bcrypt", "keyed_index", "enum", "metadata", "listed_plaintext"]


class ColumnRule(BaseModel):
    """One classification rule of ``fixtures/policy/inventory.toml``.

    Attributes:
        match: glob over ``table.column``.
        class_: the class the column must be (TOML key ``class``).
        why: the reason, shown in the inventory.
        page_item: for ``listed_plaintext``: the page's list item that allows it.
        values: for ``enum``: the allowed values.
        format: for ``keyed_index``: ``hex64``.
        canary: for ``keyed_index``: the canary value it is derived from (``email``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    match: str
    class_: ColumnClass = Field(alias="class")
    why: str = ""
    page_item: str = ""
    values: tuple[str, ...] = ()
    format: Literal["hex64"] | None = None
    canary: Literal["email"] | None = None


class InventoryRules(BaseModel):
    """The whole rules file.

    Attributes:
        schema_version: version of the file format.
        metadata_types: data types that cannot hold free text.
        sample_rows: cells sampled per column for content checks.
        column: the rules, first match wins.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    metadata_types: tuple[str, ...]
    sample_rows: int = Field(200, ge=1)
    column: tuple[ColumnRule, ...] = ()

    def rule_for(self, name: str) -> ColumnRule | None:
        return next((r for r in self.column if fnmatch.fnmatchcase(name, r.match)), None)


def load_inventory_rules(path: Path = INVENTORY_PATH) -> InventoryRules:
    """Read the rules; ProbeError naming the file and key on any problem."""
    return load_toml_model(path, InventoryRules, what="inventory rules", error=ProbeError)


@dataclass(frozen=True)
class ColumnFinding:
    """How one column was classified, and whether its content agrees.

    Attributes:
        column: ``table.column``.
        data_type: its SQL type.
        category: ``fernet``, ``bcrypt``, ``keyed_index``, ``enum``, ``metadata``,
            ``listed_plaintext``, ``empty``, or ``plaintext`` (not allowed).
        basis: why (the rule, the type, or the content).
        sampled: cells sampled.
        ok: whether the column keeps the promise.
        problem: what is wrong, when not ok.
    """

    column: str
    data_type: str
    category: str
    basis: str
    sampled: int
    ok: bool
    problem: str = ""


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _is_fernet(value: str) -> bool:
    try:
        parse_fernet_token(value)
    except FernetTokenError:
        return False
    return True


def _is_bcrypt(value: str) -> bool:
    return classify_stored_hash(value).scheme is HashScheme.BCRYPT


def unkeyed_digests(value: str) -> set[str]:
    """Hex digests anyone can compute from ``value`` (as given and lower-cased)."""
    found = set()
    for text in {value, value.strip().lower()}:
        for name in ("md5", "sha1", "sha256", "sha512"):
            found.add(hashlib.new(name, text.encode("utf-8")).hexdigest())
    return found


def classify_column(info: ColumnInfo, rules: InventoryRules, samples: Sequence[str],
                    canary_cell: tuple[str, str] | None = None) -> ColumnFinding:
    """Classify one column from the rules, its type and its sampled content.

    ``canary_cell`` is (canary value, the column's cell on the canary's row) for
    keyed indexes derived from a canary value.
    """
    name, sampled = info.name, len(samples)

    def finding(category: str, basis: str, problem: str = "") -> ColumnFinding:
        return ColumnFinding(name, info.data_type, category, basis, sampled, not problem, problem)

    def count_bad(test: Callable[[str], bool]) -> int:
        return sum(1 for value in samples if not test(value))

    rule = rules.rule_for(name)
    if rule is not None:
        basis = f"rule {rule.match!r}" + (f": {rule.why}" if rule.why else "")
        if rule.class_ == "fernet":
            bad = count_bad(_is_fernet)
            return finding("fernet", basis, f"{bad} of {sampled} sampled cells are not Fernet "
                           "tokens: stored in plaintext" if bad else "")
        if rule.class_ == "bcrypt":
            bad = count_bad(_is_bcrypt)
            return finding("bcrypt", basis, f"{bad} of {sampled} sampled cells are not bcrypt "
                           "hashes" if bad else "")
        if rule.class_ == "keyed_index":
            bad = count_bad(lambda v: bool(_HEX64.fullmatch(v))) if rule.format else 0
            if bad:
                return finding("keyed_index", basis, f"{bad} of {sampled} sampled cells are not "
                               "64 hex digits")
            if canary_cell is not None and canary_cell[1] in unkeyed_digests(canary_cell[0]):
                return finding("keyed_index", basis, "the canary's cell is an unkeyed digest of "
                               "its plaintext (anyone can compute it): not a keyed index")
            note = "; canary cell is not an unkeyed digest" if canary_cell is not None else ""
            return finding("keyed_index", basis + note)
        if rule.class_ == "enum":
            allowed = set(rule.values)
            odd = sorted({v for v in samples if v not in allowed})
            return finding("enum", basis, f"{len(odd)} sampled values are outside the allowed "
                           f"set {sorted(allowed)}" if odd else "")
        if rule.class_ == "listed_plaintext":
            return finding("listed_plaintext", f"the page's list: {rule.page_item!r}"
                           + (f" ({rule.why})" if rule.why else ""))
        return finding("metadata", basis)
    if info.data_type in rules.metadata_types:
        kind = ("foreign key" if info.is_foreign_key else "primary key" if info.is_primary_key
                else info.data_type)
        return finding("metadata", f"type {info.data_type} ({kind}): holds no text")
    if not samples:
        return finding("empty", "no non-NULL cell to classify at audit time")
    if count_bad(_is_fernet) == 0:
        return finding("fernet", "content: every sampled cell is a Fernet token")
    if count_bad(_is_bcrypt) == 0:
        return finding("bcrypt", "content: every sampled cell is a bcrypt hash")
    return finding("plaintext", f"content of {sampled} sampled cells",
                   "stored in plaintext and not on the page's list")
