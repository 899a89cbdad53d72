"""at_rest.data_inventory: columns classified by the inventory rules, and the verdict over them."""

from __future__ import annotations

import bcrypt

from checks.at_rest.data_inventory import data_inventory_unavailable, data_inventory_verdict
from harness.formats.fernet import FernetKey, encrypt_fernet_token
from harness.inventory_rules import classify_column, load_inventory_rules
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


def test_inventory_classifies_the_reference_schema() -> None:
    findings = [
        classify_column(_col("users", "email_enc"), RULES, [FERNET]),
        classify_column(_col("users", "password_hash"), RULES, [H12]),
        classify_column(_col("users", "email_index"), RULES, ["a" * 64],
                        ("canary+x@audit.invalid", "b" * 64)),
        classify_column(_col("channels", "platform"), RULES, ["tiktok"]),
        classify_column(_col("brands", "name"), RULES, []),
        classify_column(_col("channels", "brand_id", "bigint", is_foreign_key=True),
                        RULES, []),
        classify_column(_col("users", "notes"), RULES, []),
    ]
    assert [f.category for f in findings] == ["fernet", "bcrypt", "keyed_index", "enum",
                                               "listed_plaintext", "metadata", "empty"]
    assert all(f.ok for f in findings)
    assert "foreign key" in findings[5].basis
    verdict = data_inventory_verdict(InventoryObservation(tuple(findings)))
    assert verdict.outcome is Outcome.PASS
    assert verdict.message.startswith("All 7 columns are accounted for")


def test_inventory_fails_on_a_plaintext_email_column() -> None:
    finding = classify_column(_col("users", "contact_email"), RULES,
                              ["canary+x@audit.invalid"])
    assert (finding.category, finding.ok) == ("plaintext", False)
    verdict = data_inventory_verdict(InventoryObservation((finding,)))
    assert verdict.outcome is Outcome.FAIL
    assert "users.contact_email (text): stored in plaintext and not on the page's list" in \
        verdict.message


def test_inventory_fails_on_unkeyed_index_and_non_fernet_enc_column() -> None:
    import hashlib

    email = "canary+x@audit.invalid"
    unkeyed = hashlib.sha256(email.encode()).hexdigest()
    finding = classify_column(_col("users", "email_index"), RULES, [unkeyed],
                              (email, unkeyed))
    assert not finding.ok and "unkeyed digest" in finding.problem
    finding = classify_column(_col("captions", "prompt_enc"), RULES, ["hello", FERNET])
    assert not finding.ok and finding.problem.startswith("1 of 2 sampled cells are not Fernet")


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
