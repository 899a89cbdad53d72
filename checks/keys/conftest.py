"""Session fixtures shared by the key checks."""

from __future__ import annotations

import pytest

from harness.key_classes import KeyClasses, load_key_classes


@pytest.fixture(scope="session")
def key_classes() -> KeyClasses:
    """The page's key table and the labels the proofs use (``fixtures/policy/key-classes.toml``)."""
    return load_key_classes()
