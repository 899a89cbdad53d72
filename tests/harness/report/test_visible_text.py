"""What a reviewer reads in report.html: plain words, never machine syntax.

The rule, applied to the page's visible text (the stdlib HTMLParser's text, without
``<head>``, ``<style>``, ``<script>``, the tooltips of SVG charts (``<title>``/``<desc>``)
and attributes such as ``title``; folded ``<details>`` count as visible):

- no snake_case token (``\\b[a-z]+_[a-z_]+\\b``), except inside an element of class ``id``
  (a monospace check, claim, finding or fault id, shown as the id it is) and in the appendix
  (``id="appendix"``);
- no Markdown syntax: backticks, ``**``, table pipes ``|``;
- no JSON (``{"``);
- no path of the auditor's machine (the report directory, the repository checkout, the
  temporary directory, the home directory) outside the appendix.

It is checked on the hand-made fault and clean runs, and on a real run of the transit
checks against the shared clean reference stack.
"""

from __future__ import annotations

import re
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.report.html import write_report
from harness.report.humanise import field_words, marker_words, number_words, plain_promises, short_id
from harness.report.seal import SignerFacts

SNAKE = re.compile(r"\b[a-z]+_[a-z_]+\b")
MARKDOWN = re.compile(r"`|\*\*|\|")
JSON = re.compile(r'\{"')
REPO = Path(__file__).resolve().parents[3]
_SKIPPED = {"head", "style", "script", "title", "desc"}
_VOID = {"br", "img", "meta", "link", "hr", "input", "wbr", "col", "source"}


class VisibleText(HTMLParser):
    """The page's text, each piece marked as exempt (inside an id element or the appendix) or not."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, bool]] = []  # tag, skipped, exempt
        self.pieces: list[tuple[str, bool]] = []
        self.appendix: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            return
        named = dict(attrs)
        classes = (named.get("class") or "").split()
        parent_skipped, parent_exempt = (self.stack[-1][1], self.stack[-1][2]) if self.stack else (False, False)
        skipped = parent_skipped or tag in _SKIPPED or "hidden" in named
        exempt = parent_exempt or "id" in classes or named.get("id") == "appendix"
        self.stack.append((tag, skipped, exempt))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                return

    def handle_data(self, data: str) -> None:
        skipped, exempt = (self.stack[-1][1], self.stack[-1][2]) if self.stack else (False, False)
        if not skipped and data.strip():
            self.pieces.append((data, exempt))


def problems_in(html: str, auditor_paths: list[str]) -> list[str]:
    """Every visible piece of text that breaks the rule, with what it breaks."""
    parser = VisibleText()
    parser.feed(html)
    found = []
    for text, exempt in parser.pieces:
        if exempt:
            continue
        for name, pattern in (("snake_case", SNAKE), ("Markdown", MARKDOWN), ("JSON", JSON)):
            if match := pattern.search(text):
                found.append(f"{name} {match.group(0)!r} in {text.strip()[:160]!r}")
        found += [f"auditor path {path!r} in {text.strip()[:160]!r}" for path in auditor_paths if path in text]
    return found


def _auditor_paths(*extra: Path) -> list[str]:
    return [str(p) for p in (REPO, Path(tempfile.gettempdir()), Path.home(), *extra) if str(p) != "/"]


_SIGNER = SignerFacts("throwaway", "ed25519", "sha256:" + "0f" * 32, "audit.THROWAWAY-public-key.pem")


@pytest.mark.parametrize("run", ["fault_run", "clean_run"])
def test_the_visible_text_of_a_hand_made_run_is_plain_words(run: str, request: pytest.FixtureRequest) -> None:
    report_dir: Path = request.getfixturevalue(run)
    html = write_report(report_dir, signer=_SIGNER).read_text()

    assert problems_in(html, _auditor_paths(report_dir)) == []
    # The appendix keeps what the page leaves out: the policy file's path and the full finding ids.
    appendix = html[html.index('id="appendix"'):]
    assert "fixtures/policy/default.toml" in appendix and "keys.hsm_custody/KEYS-HSM" in appendix


def test_the_rule_finds_each_kind_of_machine_syntax() -> None:
    page = ('<html><head><title>a_b</title><style>.x_y {}</style></head><body><p>short_secrets_not_swept</p>'
            '<p>`x`</p><p>A | B</p><p>{"a": 1}</p><p>/tmp/k</p><span class="mono id">keys.hsm_custody</span>'
            '<svg><title>raw_label</title></svg><section id="appendix"><p>/tmp/x and a_b</p></section></body></html>')

    found = problems_in(page, ["/tmp"])

    assert [f.split(" ")[0] for f in found] == ["snake_case", "Markdown", "Markdown", "JSON", "auditor"]


def test_promises_read_as_plain_sentences() -> None:
    from harness.claims import CLAIMS_DIR, load_catalogue

    catalogue = load_catalogue()
    promises = plain_promises(catalogue.claim, (CLAIMS_DIR / catalogue.page).read_text())

    assert promises["KEYS-TOKEN-KEY-HSM"].text == ("Token encryption key: stored in hardware-backed secure storage "
                                                   "(HSM); rotation: rewrite all channels rows with the new key.")
    assert promises["KEYS-JWT-ROTATION"].text == ("JWT signing secret, rotation: on compromise — invalidates all "
                                                  "sessions.")
    assert promises["REST-TOKENS-LIBRARY"].text == "Implementation: the Python cryptography library."
    assert promises["REST-DB-ENCRYPTED-VOLUMES"].text == "PostgreSQL 15 … runs on encrypted volumes."
    assert promises["TRANSIT-HSTS"].text == "HSTS enforced (Strict-Transport-Security header)."
    for promise in promises.values():
        assert not MARKDOWN.search(promise.text) and promise.words[-1] in ".!?", promise


def test_fields_numbers_markers_and_ids_in_words() -> None:
    assert field_words("short_secrets_not_swept") == "short secrets not swept"
    assert field_words("duration_s") == "duration (s)" and field_words("p99_ms") == "99th percentile latency (ms)"
    assert number_words(1528251563) == "1,528,251,563" and number_words(1843221, "bytes") == (
        "1,843,221 bytes (1.8 MiB)")
    assert number_words(8443, "port") == "8443" and number_words(0.123456, "p50_ms") == "0.123"
    assert marker_words('output: {"command": "rotate-token-key", "rows": 3}') == (
        "output (in the evidence file)")
    long_id = "at_rest.plaintext_sweep/" + "+".join(["OVERVIEW-NO-PLAINTEXT"] * 7)
    assert short_id(long_id) == "at_rest.plaintext_sweep/OVERVIEW-NO-PLAINTEXT…" and len(long_id) > 150


@pytest.mark.integration
@pytest.mark.slow
def test_the_visible_text_of_a_real_transit_run_is_plain_words(tmp_path: Path, clean_stack) -> None:
    from audit_cli import run_cli

    # Given a real run of the transit checks against the shared clean reference stack ...
    report_dir = tmp_path / "report"
    run = run_cli(clean_stack.profile_path, report_dir, only=["transit"])
    assert run.returncode == 0, run.output[-2000:]
    html = (report_dir / "report.html").read_text()

    # ... its report reads in words, says who ran it where with which commit, and names the target
    # as the reference service.
    assert problems_in(html, _auditor_paths(report_dir, clean_stack.profile_path.parent)) == []
    first = html[:html.index('id="glance"')]
    assert "the bundled reference service" in first and "not recorded by this run" not in first
    assert re.search(r"commit <span class=\"mono\" title=\"[0-9a-f]{40}\">[0-9a-f]{12}</span>", first)


@pytest.mark.integration
@pytest.mark.slow
def test_the_visible_text_of_a_real_fault_run_of_the_keys_area_is_plain_words(tmp_path: Path,
                                                                               stack_factory) -> None:
    from audit_cli import run_cli

    # Given the reference service started with a rotation that drops requests, audited by the keys checks
    # (the HSM object list, the rotation timeline with its command markers, the key search) ...
    report_dir = tmp_path / "report"
    with stack_factory("rotation-drops-requests") as info:
        run = run_cli(info.profile_path, report_dir, only=["keys"], limit_s=600)
        state_dir = info.profile_path.parent
    assert run.outcome("keys.token_key_rotation") == "FAIL", run.output[-2000:]
    html = (report_dir / "report.html").read_text()

    # ... then its report reads in words too: the broken promise is named in the summary.
    assert problems_in(html, _auditor_paths(report_dir, state_dir)) == []
    summary = html[html.index('id="summary-h"'):html.index('id="about-h"')]
    assert "broke: “Key rotation is supported without service interruption”" in summary
    assert "Objects on the token" in html and "Load timeline" in html


def test_file_paths_are_shortened_url_paths_are_not() -> None:
    from harness.report.humanise import mark_identifiers, shown_path

    assert shown_path("/tmp/sut-stack-x/tokens") == "…/sut-stack-x/tokens" and shown_path("/api/health") == "/api/health"
    marked = mark_identifiers("DELETE /api/v1/account: got 500; under /home/auditor/state/tokens")
    assert "DELETE /api/v1/account: got 500" in marked and "/home/auditor" not in marked.striptags()


def test_a_path_under_the_checkouts_own_top_directory_is_shortened_whatever_its_name() -> None:
    from harness.report.humanise import shown_path

    # CI checks out under /check/work/main: its interpreter's path must not show whole.
    interpreter = str(REPO / ".venv" / "bin" / "python")
    assert shown_path(interpreter) == "…/bin/python"
    assert shown_path("/check-not-a-directory-here/v1/account") == "/check-not-a-directory-here/v1/account"
