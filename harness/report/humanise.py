"""Words for the report: promises as plain sentences, field names in words, numbers with units.

The report shows a reviewer the page's promises and the evidence behind them; the
catalogue holds the page's words as written (Markdown, table rows, sentence
fragments) and evidence files hold machine keys (``short_secrets_not_swept``) and raw
numbers (``1528251563``). These functions turn both into plain text; the raw data
stays in the evidence files the report links to.
"""

from __future__ import annotations

import math
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)([^*]+?)(?<!\s)\*(?![\w*])")
_SNAKE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
#: Key suffixes that carry a unit: the unit is said in words after the name.
_UNITS = {"ms": "ms", "s": "s", "bytes": "bytes", "days": "days", "pct": "%"}
#: Keys whose numbers are identifiers or codes, never counts: no thousands separators.
_IDENTIFIER_KEY = re.compile(r"(^|_)(port|pid|uid|gid|status|code|line|version|year|id|exit)s?($|_)")
#: Words spelled out where a key is an abbreviation or a term of art.
_KEY_WORDS = {"t_s": "time (s)", "p50_ms": "median latency (ms)", "p99_ms": "99th percentile latency (ms)",
              "max_ms": "slowest (ms)", "ok": "succeeded", "errors": "failed",
              "value_len": "value length (bytes)",
              "class": "object class", "key_type": "key type", "dns_names": "DNS names",
              "pid": "process id", "ms": "duration (ms)", "url": "URL", "id": "id",
              "ip_addresses": "IP addresses", "sha256_fingerprint": "SHA-256 fingerprint",
              "sni_host": "SNI host name"}
_ISO_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]00:00)")


def plain_markdown(text: str) -> str:
    """``text`` without Markdown syntax: backticks, emphasis markers and link targets removed."""
    text = _LINK.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = _ITALIC.sub(r"\1", text)
    return text.replace("`", "").strip()


def _lower_first(text: str) -> str:
    """The text with a lower-case first letter, unless its first word is an abbreviation (``HSM``)."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?:" else text + "."


@dataclass(frozen=True)
class PageTable:
    """A table of the published page, to read a catalogued row or cell in words.

    Attributes:
        headers: the column names.
        rows: each row's cells, the first naming what the row is about.
    """

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def page_tables(markdown: str) -> list[PageTable]:
    """The Markdown tables of a page (``| a | b |`` rows under a header and a ``|---|`` rule)."""
    tables: list[PageTable] = []
    lines = [line.strip() for line in markdown.splitlines()]
    index = 0
    while index < len(lines) - 1:
        line, rule = lines[index], lines[index + 1]
        if line.startswith("|") and re.fullmatch(r"\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?", rule):
            headers = tuple(_cells(line))
            rows = []
            index += 2
            while index < len(lines) and lines[index].startswith("|"):
                rows.append(tuple(_cells(lines[index])))
                index += 1
            tables.append(PageTable(headers, tuple(rows)))
        else:
            index += 1
    return tables


def _cells(row: str) -> list[str]:
    return [plain_markdown(cell) for cell in row.strip().strip("|").split("|")]


def _labelled(header: str, value: str) -> str:
    """One cell in words: ``stored in hardware-backed …`` for a storage column, else ``rotation: …``."""
    if header.lower() == "storage":
        return f"stored in {_lower_first(value)}"
    return f"{header.lower()}: {_lower_first(value)}" if header else _lower_first(value)


@dataclass(frozen=True)
class PlainPromise:
    """A promise of the page as plain text.

    Attributes:
        lead: words of the page around it that make it a sentence (shown muted), or ``""``.
        words: the promise itself, without Markdown, ending as a sentence.
    """

    lead: str
    words: str

    @property
    def text(self) -> str:
        """Lead and words as one line."""
        return f"{self.lead} {self.words}" if self.lead else self.words


def plain_promise(text: str, *, before: Sequence[str] = (), tables: Sequence[PageTable] = (),
                  heading: str = "") -> PlainPromise:
    """One catalogued promise as a sentence a reviewer reads.

    Args:
        text: the catalogue's words (the page's, Markdown included).
        before: the earlier promises of the same section, nearest last: a fragment
            (``runs on encrypted volumes.``) is led by the start of its sentence.
        tables: the page's tables: a row (``A | B | C``) is read with its column names,
            a lone cell with its row's name and column.
        heading: the section's last heading: a promise that is only the heading says so.
    """
    if "|" in text:
        cells = [plain_markdown(cell) for cell in text.split("|")]
        headers: tuple[str, ...] = ()
        for table in tables:
            if any(row and row[0] == cells[0] for row in table.rows):
                headers = table.headers
        parts = [_labelled(headers[i] if i < len(headers) else "", cell)
                 for i, cell in enumerate(cells[1:], 1)]
        return PlainPromise("", _sentence(f"{cells[0]}: " + "; ".join(parts)))
    words = plain_markdown(text)
    for table in tables:
        for row in table.rows:
            if words in row[1:]:
                column = table.headers[row.index(words)] if row.index(words) < len(table.headers) else ""
                return PlainPromise(f"{row[0]},", _sentence(_labelled(column, words)))
    if heading and words.lower() == heading.lower():
        return PlainPromise("", f"{words}: a heading of the page with no text under it.")
    if words[:1].islower():
        # A fragment continues the sentence the promises before it began.
        lead: list[str] = []
        for earlier in reversed(before):
            earlier_words = plain_markdown(earlier).rstrip(".")
            lead.insert(0, earlier_words)
            if earlier_words[:1].isupper():
                break
        return PlainPromise(" ".join(lead) + " …" if lead else "", _sentence(words))
    return PlainPromise("", _sentence(_upper_first(words)))


def plain_promises(claims: Sequence[Any], page_markdown: str = "") -> dict[str, PlainPromise]:
    """Every claim's promise in plain words, by claim id (``claims``: id, section, text each)."""
    tables = page_tables(page_markdown)
    found: dict[str, PlainPromise] = {}
    earlier: dict[str, list[str]] = {}
    for claim in claims:
        seen = earlier.setdefault(claim.section, [])
        found[claim.id] = plain_promise(claim.text, before=seen, tables=tables,
                                        heading=claim.section.rsplit("/", 1)[-1].strip())
        seen.append(claim.text)
    return found


_DOTTED_ID = re.compile(r"\b[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+\b")
_WHOLE_ID = re.compile(r"[A-Za-z0-9_.:/@-]*_[A-Za-z0-9_.:/@-]*")


def is_identifier(text: str) -> bool:
    """Whether ``text`` is one machine identifier (a column ``password_hash``, a check id): shown as an id."""
    return bool(_WHOLE_ID.fullmatch(text)) and len(text) <= 120


_ID_OR_PATH = re.compile(r"(?P<path>(?<![\w.:/])/(?:[\w.@+-]+/)+[\w.@+-]+)|" + _DOTTED_ID.pattern)


def mark_identifiers(text: str) -> Markup:
    """``text`` escaped, with each dotted identifier in it (``transit.http_redirect_only``,
    ``headers.frame_protection``) set as a monospace id, and each absolute path shortened
    (:func:`shown_path`; the whole path in its tooltip): prose keeps the ids and files it names,
    marked as such, and the auditor machine's directories stay out of the text."""

    def marked(match: re.Match[str]) -> str:
        found = match.group(0)
        if match.group("path") and is_file_path(found):
            return f'<span class="mono id" title="{escape(found)}">{escape(shown_path(found))}</span>'
        if match.group("path"):
            return str(escape(found))
        return f'<span class="mono id">{escape(found)}</span>' if "_" in found else str(escape(found))

    # Matched on the raw text and escaped piece by piece, so no markup is ever matched.
    pieces, last = [], 0
    for match in _ID_OR_PATH.finditer(text):
        pieces += [str(escape(text[last:match.start()])), marked(match)]
        last = match.end()
    pieces.append(str(escape(text[last:])))
    return Markup("".join(pieces))


def field_words(key: str) -> str:
    """A field name in words: ``short_secrets_not_swept`` → ``short secrets not swept``,
    ``duration_s`` → ``duration (s)``."""
    if key in _KEY_WORDS:
        return _KEY_WORDS[key]
    if "_" not in key:
        return key
    head, _, last = key.rpartition("_")
    if head and last in _UNITS:
        return f"{head.replace('_', ' ')} ({_UNITS[last]})"
    return key.replace("_", " ")


def byte_size(count: int) -> str:
    """A size in bytes, in binary units: ``1,843,221 bytes (1.8 MiB)``."""
    if count < 1024:
        return f"{count:,} bytes"
    value, units = float(count) / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{count:,} bytes ({value:.1f} {units[0]})"


def number_words(value: int | float, key: str = "") -> str:
    """A number for reading: thousands separators, bytes in KiB/MiB, seconds and milliseconds
    rounded; identifiers (ports, process ids, status codes, versions) as they are."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    name = key.lower()
    if _IDENTIFIER_KEY.search(name):
        return str(value)
    if isinstance(value, int) and name.endswith(("bytes", "size")):
        return byte_size(int(value))
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,}"
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.1f}"
    return f"{value:,}"


def time_words(text: str) -> str:
    """An ISO 8601 UTC time as people write it: ``2026-12-07 05:13:37 UTC``; other text unchanged."""
    return _ISO_TIME.sub(lambda m: f"{m.group(1)} {m.group(2)} UTC", text)


#: The top directories of a file system path (FHS, and macOS's): a path under one of them is a file
#: (shortened); any other absolute path (``/api/v1/account``) is a URL path, shown as it is.
_FILE_SYSTEM_ROOTS = {"tmp", "home", "root", "work", "var", "srv", "opt", "usr", "etc", "run", "mnt", "media",
                      "proc", "dev", "sys", "nix", "private", "Users", "Volumes"}


def _machine_roots() -> frozenset[str]:
    """The top directories where this run's own files live (the checkout, the interpreter, the
    working and temporary directories, home): a CI checkout under ``/check/work`` is a file too."""
    places = (Path(__file__).resolve(), Path(sys.prefix), Path(sys.executable), Path.cwd(),
              Path(tempfile.gettempdir()), Path.home())
    return frozenset(place.parts[1] for place in places if len(place.parts) > 1)


_MACHINE_ROOTS = _machine_roots()


def is_file_path(text: str) -> bool:
    """Whether ``text`` is an absolute file system path (not a URL path like ``/api/health``)."""
    parts = text.split("/")
    return (text.startswith("/") and len(parts) > 2 and " " not in text
            and (parts[1] in _FILE_SYSTEM_ROOTS or parts[1] in _MACHINE_ROOTS))


def shown_path(path: str) -> str:
    """A file system path shortened to its last two parts (``…/votriz/.env``; ``/tmp/x`` → ``…/x``),
    so that no directory of the auditor's machine shows; anything else as it is."""
    parts = [part for part in path.split("/") if part]
    if not is_file_path(path):
        return path
    return "…/" + "/".join(parts[-2:] if len(parts) > 2 else parts[-1:])


def looks_like_json(text: str) -> bool:
    """Whether ``text`` is (or holds) a JSON object or array rather than words."""
    stripped = text.strip()
    return '{"' in stripped or (stripped.startswith(("{", "[{", '["')) and stripped.endswith(("}", "]")))


def marker_words(marker: str, limit: int = 60) -> str:
    """A timeline marker in words: a command's JSON output is cut at its first brace."""
    cut = marker.find("{")
    if cut >= 0 and looks_like_json(marker[cut:]):
        marker = marker[:cut].rstrip(" :") + " (in the evidence file)"
    return marker if len(marker) <= limit else marker[:limit - 1] + "…"


def short_id(finding_id: str, limit: int = 48) -> str:
    """A finding id short enough to read: the check id and the first claim, ``…`` for the rest."""
    if len(finding_id) <= limit:
        return finding_id
    check, _, rest = finding_id.partition("/")
    first = re.split(r"[+/]", rest, maxsplit=1)[0]
    shortened = f"{check}/{first}…"
    return shortened if len(shortened) <= limit + 1 else finding_id[:limit - 1] + "…"


def join_words(items: Sequence[str], conjunction: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {conjunction} " + items[-1]


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 promise``, ``3 promises``."""
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"


def keys_in_words(data: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping with its keys in words (values unchanged)."""
    return {field_words(str(key)): value for key, value in data.items()}
