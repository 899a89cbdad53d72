"""The claims catalogue covers the whole published page, and checks and claims agree.

The catalogue holds the page's words; the links from claims to checks are the checks'
``claims`` markers, read from their source.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.checkdir import declared_checks
from harness.claims import (
    CLAIMS_DIR,
    DEFAULT_CATALOGUE,
    CatalogueError,
    load_catalogue,
    page_statements,
    uncovered_statements,
)

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


def test_the_links_are_the_markers_of_the_checks() -> None:
    # Every claim lists exactly the checks whose marker names it, in check id order
    declared = _declared_checks()
    for claim in load_catalogue().claim:
        assert claim.checks == tuple(sorted(i for i, claims in declared.items() if claim.id in claims))
    # And the catalogue file itself names no check
    assert "checks = " not in DEFAULT_CATALOGUE.read_text(encoding="utf-8")


def test_a_claim_without_checks_needs_a_manual_attestation(tmp_path: Path) -> None:
    bad = tmp_path / "claims.toml"
    bad.write_text('page = "p.md"\ntitle = "t"\n[[claim]]\nid = "X-Y"\nsection = "s"\ntext = "t"\n')
    with pytest.raises(CatalogueError, match=r"neither checks .* nor a manual attestation"):
        load_catalogue(bad, declared={})
    # Given a check whose marker names it, the same claim is verifiable
    assert load_catalogue(bad, declared={"a.b": ("X-Y",)}).claim[0].checks == ("a.b",)


def test_a_check_naming_an_unknown_claim_is_refused(tmp_path: Path) -> None:
    catalogue = tmp_path / "claims.toml"
    catalogue.write_text('page = "p.md"\ntitle = "t"\n[[claim]]\nid = "X-Y"\nsection = "s"\ntext = "t"\n'
                         'manual = "attest"\n')
    with pytest.raises(CatalogueError, match=r"a\.b: names unknown claim\(s\) NO-SUCH"):
        load_catalogue(catalogue, declared={"a.b": ("X-Y", "NO-SUCH")})


def test_a_catalogue_naming_checks_is_refused(tmp_path: Path) -> None:
    # The links are the markers' alone: a catalogue that lists checks too would be a second source
    bad = tmp_path / "claims.toml"
    bad.write_text('page = "p.md"\ntitle = "t"\n[[claim]]\nid = "X-Y"\nsection = "s"\ntext = "t"\n'
                   'checks = ["a.b"]\n')
    with pytest.raises(CatalogueError, match=r"claim\[0\]\.checks: the checks of a claim are declared by"):
        load_catalogue(bad, declared={"a.b": ("X-Y",)})


def test_duplicate_claim_ids_are_refused(tmp_path: Path) -> None:
    claim = '[[claim]]\nid = "X-Y"\nsection = "s"\ntext = "t"\nmanual = "attest"\n'
    bad = tmp_path / "claims.toml"
    bad.write_text('page = "p.md"\ntitle = "t"\n' + claim + claim)
    with pytest.raises(CatalogueError, match="X-Y appears twice"):
        load_catalogue(bad)
