"""The claims catalogue covers the whole published page, and checks and claims agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.claims import CLAIMS_DIR, CatalogueError, load_catalogue, page_statements, uncovered_statements
from harness.checkdir import declared_checks

PAGE = (CLAIMS_DIR / "encryption-page.md").read_text(encoding="utf-8")


def _declared_checks() -> dict[str, tuple[str, ...]]:
    """check id -> claims of its marker, read from the source of the check modules."""
    return {ident: check.claims for ident, check in declared_checks().items()}


def test_the_bundled_page_is_the_published_page() -> None:
    published = Path(__file__).resolve().parents[3] / "shared" / "published" / "encryption-page.md"
    if not published.exists():
        pytest.skip("shared/ is not beside the checkout")
    assert published.read_text(encoding="utf-8") == PAGE


def test_every_promise_of_the_page_has_a_claim() -> None:
    assert page_statements(PAGE), "the page parser found no statements"
    assert uncovered_statements(PAGE, load_catalogue()) == []


def test_a_promise_missing_from_the_catalogue_is_reported() -> None:
    # Given the page with one more promise than the catalogue knows
    page = PAGE.replace("### Key management", "Logs are encrypted with AES-256.\n\n### Key management")
    # Then that sentence is reported, and only it
    assert uncovered_statements(page, load_catalogue()) == ["Logs are encrypted with AES-256."]


def test_every_check_named_by_a_claim_exists() -> None:
    declared = _declared_checks()
    missing = sorted(load_catalogue().check_ids() - declared.keys())
    assert missing == [], f"claims name checks that do not exist: {missing}"


def test_every_check_names_known_claims_and_the_catalogue_lists_it() -> None:
    catalogue = load_catalogue()
    known = catalogue.by_id()
    for check_id, claims in _declared_checks().items():
        assert claims, f"{check_id} has no claims marker"
        for claim in claims:
            assert claim in known, f"{check_id} names unknown claim {claim}"
            assert check_id in known[claim].checks, f"{claim} does not list {check_id}"


def test_a_claim_without_checks_needs_a_manual_attestation(tmp_path: Path) -> None:
    bad = tmp_path / "claims.toml"
    bad.write_text('page = "p.md"\ntitle = "t"\n[[claim]]\nid = "X-Y"\nsection = "s"\ntext = "t"\n')
    with pytest.raises(CatalogueError, match="neither checks nor a manual attestation"):
        load_catalogue(bad)


def test_duplicate_claim_ids_are_refused(tmp_path: Path) -> None:
    claim = '[[claim]]\nid = "X-Y"\nsection = "s"\ntext = "t"\nchecks = ["a.b"]\n'
    bad = tmp_path / "claims.toml"
    bad.write_text('page = "p.md"\ntitle = "t"\n' + claim + claim)
    with pytest.raises(CatalogueError, match="X-Y appears twice"):
        load_catalogue(bad)
