"""The key classes file holds the page's key table."""

from __future__ import annotations

from harness.key_classes import load_key_classes


def test_key_classes_file_names_every_row_of_the_page() -> None:
    names = [c.name for c in load_key_classes().classes]
    assert names == ["JWT signing secret", "Token encryption key", "API key: Anthropic",
                     "API key: fal.ai", "API key: Resend", "API key: Stripe", "Database password",
                     "Redis password"]
