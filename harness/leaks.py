"""Finding the run's own secrets in what it wrote.

The plugin searches the report directory at the end of a run, and the bundle
searches it again before signing: both ask :func:`scan_for_leaks`, which names
where a secret appears (file, offset and the secret's label), never the value.
"""

from __future__ import annotations

from pathlib import Path

from harness.redaction import KnownSecrets


def scan_for_leaks(directory: Path, secrets: KnownSecrets) -> list[str]:
    """Every place under ``directory`` where a known secret appears (label and file, never the value)."""
    leaks = []
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            for label, offset in secrets.find_in(path.read_bytes()):
                leaks.append(f"{path.relative_to(directory)}:{offset}: {label}")
    return leaks
