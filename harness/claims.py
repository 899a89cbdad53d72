"""The claims catalogue: every promise of the published page, with a stable id.

A claim is verified by automated checks, by a human attestation (``manual``),
or by both (a check that sees part of it, and an attestation for the rest).

The catalogue file holds the page's words, the ``manual`` attestations and the
notes. Which checks verify a claim is said once, by each check's
``@pytest.mark.claims(...)`` marker: :func:`load_catalogue` reads the markers
(:func:`harness.checkdir.declared_checks`, without importing any check) and
fills each claim's ``checks`` from them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.bundled import bundled
from harness.checkdir import declared_checks
from harness.tomlfile import load_toml_model

CLAIMS_DIR = bundled("claims")
DEFAULT_CATALOGUE = CLAIMS_DIR / "encryption-page.toml"
_CLAIM_ID = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$")


class CatalogueError(Exception):
    """The catalogue is missing or malformed, a check names a claim it lacks, or a claim is unverified."""


class Claim(BaseModel):
    """One promise of the page.

    Attributes:
        id: stable id (e.g. ``TRANSIT-TLS13``).
        section: where on the page it stands.
        text: the page's own words.
        also: further page text this claim covers (bullets under it).
        checks: ids of the checks that verify it, from their ``claims`` markers (never from the file).
        manual: what a human must attest, where no machine can see it all.
        note: what the report should say about the claim itself.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    section: str
    text: str
    also: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    manual: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _well_formed(self) -> Claim:
        if not _CLAIM_ID.match(self.id):
            raise ValueError(f"claim id {self.id!r} is not of the form AREA-NAME")
        return self


class Catalogue(BaseModel):
    """The claims of one published page, in the page's order.

    Attributes:
        schema_version: version of the file format.
        page: the page's file name, beside the catalogue.
        title: the page's title.
        not_promises: page text that promises nothing.
        claim: the claims.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = 1
    page: str
    title: str
    not_promises: tuple[str, ...] = ()
    claim: tuple[Claim, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        seen: set[str] = set()
        for claim in self.claim:
            if claim.id in seen:
                raise ValueError(f"claim id {claim.id} appears twice")
            seen.add(claim.id)
        return self

    def by_id(self) -> dict[str, Claim]:
        return {claim.id: claim for claim in self.claim}

    def check_ids(self) -> set[str]:
        return {check for claim in self.claim for check in claim.checks}

    def claims_of_check(self, check_id: str) -> tuple[str, ...]:
        return tuple(claim.id for claim in self.claim if check_id in claim.checks)


def declared_claims() -> dict[str, tuple[str, ...]]:
    """Check id → the claims its marker names, for every check of ``checks/``."""
    return {ident: check.claims for ident, check in declared_checks().items()}


def link_checks(catalogue: Catalogue, declared: Mapping[str, Sequence[str]], *, source: str) -> Catalogue:
    """The catalogue with each claim's ``checks``: the checks whose marker names it, by check id.

    Raises:
        CatalogueError: a check names a claim the catalogue lacks, or a claim is
            served by no check and covered by no ``manual`` attestation.
    """
    known = catalogue.by_id()
    for check_id, claims in sorted(declared.items()):
        unknown = [claim for claim in claims if claim not in known]
        if unknown:
            raise CatalogueError(f"{check_id}: names unknown claim(s) {', '.join(unknown)} "
                                 f"(not in {source})")
    linked = tuple(claim.model_copy(update={"checks": tuple(
        check_id for check_id in sorted(declared) if claim.id in declared[check_id])})
        for claim in catalogue.claim)
    for index, claim in enumerate(linked):
        if not claim.checks and not claim.manual:
            raise CatalogueError(f"{source}: claim[{index}]: claim {claim.id} has neither checks "
                                 f"(no check's claims marker names it) nor a manual attestation")
    return catalogue.model_copy(update={"claim": linked})


def load_catalogue(path: Path = DEFAULT_CATALOGUE,
                   declared: Mapping[str, Sequence[str]] | None = None) -> Catalogue:
    """Read and validate a claims catalogue, its claims linked to the checks that declare them.

    ``declared`` (check id → claims of its marker) defaults to the markers of ``checks/``.

    Raises:
        CatalogueError: one line per problem, naming the file (or the check).
    """
    catalogue = load_toml_model(path, Catalogue, what="catalogue", error=CatalogueError)
    for index, claim in enumerate(catalogue.claim):
        if "checks" in claim.model_fields_set:
            raise CatalogueError(f"{path}: claim[{index}].checks: the checks of a claim are declared "
                                 f"by their @pytest.mark.claims(...) markers, not in the catalogue")
    return link_checks(catalogue, declared_claims() if declared is None else declared, source=str(path))


def _normalise(text: str) -> str:
    text = text.replace("`", "").replace("\u2019", "'")
    return re.sub(r"\s+", " ", text).strip()


def page_statements(page_markdown: str) -> list[str]:
    """The page's statements: paragraphs, bullets and table rows of its body.

    Headings, table headers, separators and editorial notes in parentheses
    (added by whoever captured the page) are left out.
    """
    body = page_markdown.split("## Encryption", 1)[-1]
    statements: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            statements.append(_normalise(" ".join(paragraph)))
            paragraph.clear()

    for raw in body.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line == "---":
            flush()
        elif line.startswith("|"):
            flush()
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if not all(set(cell) <= set("-: ") for cell in cells) and cells != ["Key", "Storage", "Rotation"]:
                statements.append(_normalise(" | ".join(cells)))
        elif line.startswith("- "):
            flush()
            paragraph.append(line[2:])
        else:
            paragraph.append(line)
    flush()
    return [s for s in statements if not s.startswith("(")]


def uncovered_statements(page_markdown: str, catalogue: Catalogue) -> list[str]:
    """Statements of the page with words that no claim (and no not-promise) covers."""
    fragments = [_normalise(text) for text in catalogue.not_promises]
    for claim in catalogue.claim:
        fragments.append(_normalise(claim.text))
        fragments.extend(_normalise(text) for text in claim.also)
    fragments.sort(key=len, reverse=True)
    uncovered = []
    for statement in page_statements(page_markdown):
        rest = statement
        for fragment in fragments:
            rest = rest.replace(fragment, " ")
        if re.search(r"[A-Za-z0-9]", rest):
            uncovered.append(statement)
    return uncovered
