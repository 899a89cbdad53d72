"""What the command line prints besides a run's results: an example per command at the end of
its ``--help``, the listings of ``faults`` and ``checks`` in aligned columns, and the document
``checks --json`` prints, and :func:`printable`, which every line of a run's output passes
through before it reaches a terminal or a pipe."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence

from harness import __version__
from harness.checkdir import ACCESS, DeclaredCheck

#: One example or more per subcommand, shown at the end of its ``--help``.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "run": ("votriz-audit run                     # stand up the reference service, audit it, tear it down",
            "votriz-audit run --target prod.toml --signing-key auditor.pem",
            "votriz-audit run --backend local --fault hsts-missing --only transit",
            "votriz-audit run --target prod.toml --check transit.hsts --check keys.hsm_custody",
            "votriz-audit run --target prod.toml --jobs 8 --sample 1000000   # a large database, sampled"),
    "up": ("votriz-audit up --backend local --fault hsts-missing   # prints the target profile's path",),
    "down": ("votriz-audit down --backend local",),
    "faults": ("votriz-audit faults",),
    "checks": ("votriz-audit checks", "votriz-audit checks --json"),
    "calibrate": ("votriz-audit calibrate --backend local --fault hsts-missing",),
    "schema": ("votriz-audit schema > results.schema.json",),
    "init": ("votriz-audit init --docker-project votriz --output prod.toml   # then fill in '# FILL IN'",
             "votriz-audit init --local > local.toml"),
    "report": ("votriz-audit report reports/20260101T000000Z --against reports/20251201T000000Z",),
    "verify": ("votriz-audit verify reports/20260101T000000Z --public-key auditor.pub",),
    "diff": ("votriz-audit diff reports/20251201T000000Z reports/20260101T000000Z",),
    "sign": ("votriz-audit sign reports/20260101T000000Z --signing-key auditor.pem",),
}


def add_examples(parsers: Mapping[str, argparse.ArgumentParser]) -> None:
    """Put each command's examples (:data:`EXAMPLES`) before its epilog, laid out as written."""
    for name, parser in parsers.items():
        examples = EXAMPLES.get(name, ())
        if not examples:
            continue
        lines = "\n".join(f"  {example}" for example in examples)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        heading = "examples" if len(examples) > 1 else "example"
        parser.epilog = "\n\n".join(part for part in (f"{heading}:\n{lines}", parser.epilog) if part)


def aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """``rows`` as lines of columns, each as wide as its widest cell, two spaces apart; the
    last column is not padded (it may be long)."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]])
            for row in rows]


def checks_document(declared: dict[str, DeclaredCheck]) -> dict[str, object]:
    """What ``checks --json`` prints: every check with its claims and access, and what each kind
    of access means."""
    return {"tool_version": __version__, "access": ACCESS,
            "checks": [{"check_id": check.check_id, "area": check.area, "claims": list(check.claims),
                        "access": list(check.access)} for check in declared.values()]}


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def toml_escaped(char: str) -> str:
    """``char`` as a TOML basic string's escape (``\\u001B``), which reads back as ``char``."""
    code = ord(char)
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def printable(text: str, escape: Callable[[str], str] = _escaped) -> str:
    """``text`` with every character that is not printable shown escaped (ESC as ``\\x1b``, CR as
    ``\\x0d``; with ``escape=toml_escaped`` as TOML's ``\\u001B``): C0, DEL and C1, tab and
    newline included, the line and paragraph separators, bidi and other format controls.

    A check's message quotes what the audited system sent (a ``Server`` header, a certificate's
    name); written raw, a hostile edge's escape sequences would move the cursor, erase lines
    or retitle the terminal of whoever reads the run.
    """
    return "".join(char if char.isprintable() else escape(char) for char in text)
