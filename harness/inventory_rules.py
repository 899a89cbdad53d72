"""The data inventory's rules: how each stored column must be classified.

``fixtures/policy/inventory.toml`` names, by glob over ``table.column``, the
class each column must be (Fernet, bcrypt, keyed index, enum, metadata, or on
the page's plaintext list); :class:`ColumnTally` holds every cell of a column
(or, for a table over the rules' ``full_scan_max_rows``, a random sample of its
rows, said so with the bound it supports) to its rule, or classifies the column
from its content when no rule names it. It counts the offending rows and keeps a
few of their ids, never a value.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.bundled import bundled
from harness.formats.bcrypt_hash import HashScheme, classify_stored_hash
from harness.formats.fernet import has_fernet_structure
from harness.outcomes import ProbeError
from harness.probes.database import ColumnInfo
from harness.tomlfile import load_toml_model

INVENTORY_PATH = bundled("policy", "inventory.toml")


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
        full_scan_max_rows: every row of a table up to this many rows is judged; a
            larger table is judged on a random sample (the time budget of the check).
        sample_rows: rows sampled (at random) from a table over ``full_scan_max_rows``.
        column: the rules, first match wins.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    metadata_types: tuple[str, ...]
    full_scan_max_rows: int = Field(5_000_000, ge=1)
    sample_rows: int = Field(200_000, ge=1)
    column: tuple[ColumnRule, ...] = ()

    def rule_for(self, name: str) -> ColumnRule | None:
        return next((r for r in self.column if fnmatch.fnmatchcase(name, r.match)), None)


def load_inventory_rules(path: Path = INVENTORY_PATH) -> InventoryRules:
    """Read the rules; ProbeError naming the file and key on any problem."""
    return load_toml_model(path, InventoryRules, what="inventory rules", error=ProbeError)


#: Row ids a finding names per problem (never values).
EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class ColumnFinding:
    """How one column was classified, and whether its content agrees.

    Attributes:
        column: ``table.column``.
        data_type: its SQL type.
        category: ``fernet``, ``bcrypt``, ``keyed_index``, ``enum``, ``metadata``,
            ``listed_plaintext``, ``empty``, or ``plaintext`` (not allowed).
        basis: why (the rule, the type, or the content).
        cells: non-NULL cells judged (0 when the class needs no content).
        ok: whether the column keeps the promise.
        problem: what is wrong, when not ok.
        bad_rows: rows whose cell breaks the column's class.
        examples: ids of a few of those rows (never their values).
        rows_total: the table's rows (None when the content was not read).
        sample_of: when the table was sampled: the rows read at random (else None).
    """

    column: str
    data_type: str
    category: str
    basis: str
    cells: int
    ok: bool
    problem: str = ""
    bad_rows: int = 0
    examples: tuple[str, ...] = ()
    rows_total: int | None = None
    sample_of: int | None = None

    @property
    def coverage(self) -> str:
        """``every row (N)`` or ``sampled N of M rows``, for messages."""
        if self.rows_total is None:
            return ""
        if self.sample_of is None:
            return f"every row ({self.rows_total})"
        return f"sampled {self.sample_of} of {self.rows_total} rows"


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _is_bcrypt(value: str) -> bool:
    return classify_stored_hash(value).scheme is HashScheme.BCRYPT


def unkeyed_digests(value: str) -> set[str]:
    """Hex digests anyone can compute from ``value`` (as given and lower-cased)."""
    found = set()
    for text in {value, value.strip().lower()}:
        for name in ("md5", "sha1", "sha256", "sha512"):
            found.add(hashlib.new(name, text.encode("utf-8")).hexdigest())
    return found


def needs_content(info: ColumnInfo, rules: InventoryRules) -> bool:
    """Whether the column's class is judged on its cells (else on its rule or type alone)."""
    rule = rules.rule_for(info.name)
    if rule is not None:
        return rule.class_ in ("fernet", "bcrypt", "keyed_index", "enum")
    return info.data_type not in rules.metadata_types


class _Failing:
    """Rows failing one test: a count and the first few ids."""

    def __init__(self, test: Callable[[str], bool]) -> None:
        self.test = test
        self.count = 0
        self.examples: list[str] = []

    def add(self, key: Any, value: str) -> None:
        if not self.test(value):
            self.count += 1
            if len(self.examples) < EXAMPLE_ROWS:
                self.examples.append(str(key))


class ColumnTally:
    """Every cell of one column, held to its rule as it streams past (flat memory).

    Feed ``(row id, value)`` pairs with :meth:`add` (NULLs are skipped), then ask
    for the :meth:`finding`.
    """

    def __init__(self, info: ColumnInfo, rules: InventoryRules) -> None:
        self.info = info
        self.rules = rules
        self.rule = rules.rule_for(info.name)
        self.cells = 0
        tests: dict[str, Callable[[str], bool]] = {}
        if self.rule is None:
            tests = {"fernet": has_fernet_structure, "bcrypt": _is_bcrypt}
        elif self.rule.class_ == "fernet":
            tests = {"fernet": has_fernet_structure}
        elif self.rule.class_ == "bcrypt":
            tests = {"bcrypt": _is_bcrypt}
        elif self.rule.class_ == "keyed_index" and self.rule.format:
            tests = {"hex64": lambda v: bool(_HEX64.fullmatch(v))}
        elif self.rule.class_ == "enum":
            allowed = frozenset(self.rule.values)
            tests = {"enum": lambda v: v in allowed}
        self._failing = {name: _Failing(test) for name, test in tests.items()}

    def add(self, key: Any, value: Any) -> None:
        """One cell (``value`` None: NULL, not counted)."""
        if value is None:
            return
        text = value if isinstance(value, str) else str(value)
        self.cells += 1
        for failing in self._failing.values():
            failing.add(key, text)

    def add_rows(self, rows: Iterable[tuple[Any, Any]]) -> ColumnTally:
        """Every ``(row id, value)`` pair of ``rows``."""
        for key, value in rows:
            self.add(key, value)
        return self

    def finding(self, canary_cell: tuple[str, str] | None = None, *, rows_total: int | None = None,
                sample_of: int | None = None) -> ColumnFinding:
        """The column's classification over what was fed.

        ``canary_cell`` is (canary value, the column's cell on the canary's row) for
        keyed indexes derived from a canary value; ``rows_total`` the table's rows;
        ``sample_of`` the rows read when the table was sampled.
        """
        info, rules, rule = self.info, self.rules, self.rule
        scope = (f" (sampled {sample_of} of {rows_total} rows at random)"
                 if sample_of is not None and rows_total is not None else "")

        def finding(category: str, basis: str, problem: str = "",
                    failing: _Failing | None = None) -> ColumnFinding:
            bad = failing.count if failing is not None and problem else 0
            examples = tuple(failing.examples) if failing is not None and problem else ()
            if examples:
                problem += f" (rows {', '.join(examples)}{', ...' if bad > len(examples) else ''})"
            return ColumnFinding(info.name, info.data_type, category, basis, self.cells,
                                 not problem, problem + (scope if problem else ""), bad, examples,
                                 rows_total, sample_of)

        def bad_rows(name: str, what: str) -> tuple[str, _Failing]:
            failing = self._failing[name]
            if not failing.count:
                return "", failing
            return f"{failing.count} of {self.cells} cells {what}", failing

        if rule is not None:
            basis = f"rule {rule.match!r}" + (f": {rule.why}" if rule.why else "")
            if rule.class_ == "fernet":
                problem, failing = bad_rows("fernet", "are not Fernet tokens: stored in plaintext")
                return finding("fernet", basis, problem, failing)
            if rule.class_ == "bcrypt":
                problem, failing = bad_rows("bcrypt", "are not bcrypt hashes")
                return finding("bcrypt", basis, problem, failing)
            if rule.class_ == "keyed_index":
                if "hex64" in self._failing:
                    problem, failing = bad_rows("hex64", "are not 64 hex digits")
                    if problem:
                        return finding("keyed_index", basis, problem, failing)
                if canary_cell is not None and canary_cell[1] in unkeyed_digests(canary_cell[0]):
                    return finding("keyed_index", basis, "the canary's cell is an unkeyed digest of "
                                   "its plaintext (anyone can compute it): not a keyed index")
                note = "; canary cell is not an unkeyed digest" if canary_cell is not None else ""
                return finding("keyed_index", basis + note)
            if rule.class_ == "enum":
                problem, failing = bad_rows("enum", "hold values outside the allowed set "
                                            f"{sorted(rule.values)}")
                return finding("enum", basis, problem, failing)
            if rule.class_ == "listed_plaintext":
                return finding("listed_plaintext", f"the page's list: {rule.page_item!r}"
                               + (f" ({rule.why})" if rule.why else ""))
            return finding("metadata", basis)
        if info.data_type in rules.metadata_types:
            kind = ("foreign key" if info.is_foreign_key else "primary key" if info.is_primary_key
                    else info.data_type)
            return finding("metadata", f"type {info.data_type} ({kind}): holds no text")
        if not self.cells:
            return finding("empty", "no non-NULL cell to classify at audit time")
        if not self._failing["fernet"].count:
            return finding("fernet", f"content: every one of {self.cells} cells is a Fernet token"
                           + scope)
        if not self._failing["bcrypt"].count:
            return finding("bcrypt", f"content: every one of {self.cells} cells is a bcrypt hash"
                           + scope)
        # Neither class: the rows that are not Fernet tokens are the plaintext ones.
        failing = self._failing["fernet"]
        return finding("plaintext", f"content of {self.cells} cells",
                       f"stored in plaintext and not on the page's list: {failing.count} of "
                       f"{self.cells} cells are neither Fernet tokens nor bcrypt hashes", failing)


def classify_column(info: ColumnInfo, rules: InventoryRules, cells: Iterable[tuple[Any, Any]],
                    canary_cell: tuple[str, str] | None = None, *, rows_total: int | None = None,
                    sample_of: int | None = None) -> ColumnFinding:
    """Classify one column from the rules, its type and its ``(row id, value)`` cells."""
    return ColumnTally(info, rules).add_rows(cells).finding(canary_cell, rows_total=rows_total,
                                                            sample_of=sample_of)
