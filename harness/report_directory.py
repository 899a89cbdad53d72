"""The report directory's privacy: created 0700, its files left 0600.

Evidence about a system's security is for the auditor. The directory is made
0700 before anything is written into it, so nobody else can reach a file in it
while the run writes; at the end every file is left 0600 and every directory
0700, so a copy that keeps modes (``cp -p``, ``rsync -a``) stays private too. A
team that shares reports grants access after the run (``chmod -R g+rX DIR``):
the signature covers the files' content, not their modes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def refused_report_dir(report_dir: Path, option: str) -> str | None:
    """Why ``report_dir`` cannot take a run (None: it is new or empty); ``option`` names the
    command-line option that chose it. Evidence is never overwritten: a second run into the
    same directory would replace the results.json of a sealed bundle."""
    if not report_dir.exists():
        return None
    if not report_dir.is_dir():
        return f"{report_dir}: exists and is not a directory ({option})"
    if any(report_dir.iterdir()):
        return f"{report_dir}: already holds files; evidence is never overwritten (choose another {option})"
    return None


def create_private(report_dir: Path) -> None:
    """Create ``report_dir`` (and missing parents) and make it 0700, also when it existed empty.

    Raises:
        OSError: it cannot be created or its mode cannot be set.
    """
    report_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    report_dir.chmod(0o700)


def make_private(report_dir: Path) -> None:
    """Leave every file under ``report_dir`` 0600 and every directory 0700 (symbolic links untouched)."""
    for root, dirs, files in os.walk(report_dir):
        for name, mode in [*((d, 0o700) for d in dirs), *((f, 0o600) for f in files)]:
            path = Path(root) / name
            if not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.chmod(mode)
