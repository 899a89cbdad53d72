"""at_rest.data_inventory: columns classified by the inventory rules over every row, and the
verdict over them."""

from __future__ import annotations

import hashlib

import bcrypt

from checks.at_rest.data_inventory import data_inventory_unavailable, data_inventory_verdict
from harness.formats.fernet import FernetKey, encrypt_fernet_token
from harness.inventory_rules import ColumnTally, classify_column, load_inventory_rules
from harness.outcomes import Outcome
from harness.probes.database import ColumnInfo
from harness.probes.inventory import InventoryObservation
from harness.profile import parse_profile

KEY = FernetKey(b"k" * 32, "votriz/token-encryption/v1")
DATABASE = '[database]\ndsn = "host=db dbname=votriz user=votriz_auditor"\n'
H12 = bcrypt.hashpw(b"pw", bcrypt.gensalt(12)).decode()
RULES = load_inventory_rules()
FERNET = encrypt_fernet_token(b"x", KEY)


def _profile(extra: str = "") -> object:
    return parse_profile(f'name = "t"\n[edge]\nhost = "votriz.test"\n{extra}')


def _col(table: str, column: str, data_type: str = "text", **kw: bool) -> ColumnInfo:
    return ColumnInfo("public", table, column, data_type, **kw)


def _rows(*values: str) -> list[tuple[int, str]]:
    return [(i + 1, v) for i, v in enumerate(values)]


def test_inventory_classifies_the_reference_schema() -> None:
    findings = [
        classify_column(_col("users", "email_enc"), RULES, _rows(FERNET), rows_total=1),
        classify_column(_col("users", "password_hash"), RULES, _rows(H12), rows_total=1),
        classify_column(_col("users", "email_index"), RULES, _rows("a" * 64),
                        ("canary+x@audit.invalid", "b" * 64), rows_total=1),
        classify_column(_col("channels", "platform"), RULES, _rows("tiktok"), rows_total=1),
        classify_column(_col("brands", "name"), RULES, []),
        classify_column(_col("channels", "brand_id", "bigint", is_foreign_key=True),
                        RULES, []),
        classify_column(_col("users", "notes"), RULES, [], rows_total=0),
    ]
    assert [f.category for f in findings] == ["fernet", "bcrypt", "keyed_index", "enum",
                                               "listed_plaintext", "metadata", "empty"]
    assert all(f.ok for f in findings)
    assert "foreign key" in findings[5].basis
    verdict = data_inventory_verdict(InventoryObservation(tuple(findings)))
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.startswith("All 7 columns are accounted for")
    assert "every row of the 5 columns judged on content was read (4 cells)" in verdict.message
    assert "sampled" not in verdict.message


def test_one_plaintext_row_among_many_fails_with_its_row_id_never_its_value() -> None:
    # Given 100,000 Fernet cells and one plaintext token in the middle (a 200-cell random
    # sample finds it with probability 0.2%)
    cells = [(i, FERNET) for i in range(1, 100_001)]
    cells[54_320] = (54_321, "IGQVJ-plaintext-token-of-an-existing-row")
    # When every row is judged
    finding = classify_column(_col("channels", "access_token_enc"), RULES, cells,
                              rows_total=100_000)
    verdict = data_inventory_verdict(InventoryObservation((finding,)))
    # Then the column FAILs naming the count and the row, not the value
    assert verdict.outcome is Outcome.FAIL
    assert ("channels.access_token_enc (text): 1 of 100000 cells are not Fernet tokens: stored "
            "in plaintext (rows 54321)") in verdict.message
    assert "IGQVJ" not in verdict.message and "IGQVJ" not in str(verdict.details)
    assert (finding.bad_rows, finding.examples, finding.cells) == (1, ("54321",), 100_000)


def test_inventory_fails_on_a_plaintext_email_column() -> None:
    finding = classify_column(_col("users", "contact_email"), RULES,
                              _rows("canary+x@audit.invalid", FERNET), rows_total=2)
    assert (finding.category, finding.ok) == ("plaintext", False)
    verdict = data_inventory_verdict(InventoryObservation((finding,)))
    assert verdict.outcome is Outcome.FAIL
    assert ("users.contact_email (text): stored in plaintext and not on the page's list: 1 of 2 "
            "cells are neither Fernet tokens nor bcrypt hashes (rows 1)") in verdict.message
    assert "canary+x" not in verdict.message


def test_inventory_fails_on_unkeyed_index_and_non_fernet_enc_column() -> None:
    email = "canary+x@audit.invalid"
    unkeyed = hashlib.sha256(email.encode()).hexdigest()
    finding = classify_column(_col("users", "email_index"), RULES, _rows(unkeyed),
                              (email, unkeyed))
    assert not finding.ok and "unkeyed digest" in finding.problem
    finding = classify_column(_col("captions", "prompt_enc"), RULES, _rows("hello", FERNET))
    assert not finding.ok and finding.problem.startswith("1 of 2 cells are not Fernet")


def test_enum_names_the_rows_outside_the_set_and_more_than_five_are_elided() -> None:
    cells = [(i, "myspace" if i % 2 else "tiktok") for i in range(1, 21)]
    finding = classify_column(_col("channels", "platform"), RULES, cells, rows_total=20)
    assert finding.problem.startswith("10 of 20 cells hold values outside the allowed set")
    assert finding.problem.endswith("(rows 1, 3, 5, 7, 9, ...)")
    assert "myspace" not in finding.problem


def test_a_sampled_table_says_so_with_the_bound_it_supports() -> None:
    tally = ColumnTally(_col("channels", "access_token_enc"), RULES)
    tally.add_rows((i, FERNET) for i in range(3000))
    finding = tally.finding(rows_total=9_000_000, sample_of=3000)
    assert finding.ok and finding.coverage == "sampled 3000 of 9000000 rows"
    verdict = data_inventory_verdict(InventoryObservation((finding,)))
    assert verdict.outcome is Outcome.PASS
    assert ("sampled, not read whole (over the inventory's full_scan_max_rows): "
            "channels.access_token_enc: sampled 3000 of 9000000 rows, none offending, so with "
            "95% confidence fewer than 0.100% of its rows do") in verdict.message
    bad = ColumnTally(_col("channels", "access_token_enc"), RULES).add_rows([(7, "plain")])
    failed = bad.finding(rows_total=9_000_000, sample_of=1)
    assert failed.problem.endswith("(rows 7) (sampled 1 of 9000000 rows at random)")


def test_nulls_are_not_cells() -> None:
    finding = classify_column(_col("users", "notes"), RULES, [(1, None), (2, None)], rows_total=2)
    assert (finding.category, finding.cells, finding.ok) == ("empty", 0, True)


def test_inventory_error_on_blind_spots() -> None:
    finding = classify_column(_col("brands", "name"), RULES, [])
    verdict = data_inventory_verdict(InventoryObservation((finding,), ("public.secret",)))
    assert verdict.outcome is Outcome.ERROR
    assert "cannot read public.secret" in verdict.message


def test_inventory_without_database_is_manual_not_na() -> None:
    verdict = data_inventory_unavailable(_profile())  # type: ignore[arg-type]
    assert verdict is not None and verdict.outcome is Outcome.MANUAL
    assert verdict.message.startswith("The profile has no [database] section, so no inventory")
    assert "information_schema.columns" in verdict.message
    assert data_inventory_unavailable(_profile(DATABASE)) is None  # type: ignore[arg-type]
