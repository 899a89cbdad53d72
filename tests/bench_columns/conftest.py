"""What the benchmark tests share: a directory a kept cluster may live in."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A directory under /tmp that the service user (the cluster's owner) can reach."""
    folder = Path(tempfile.mkdtemp(prefix="bench-kept-test-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
