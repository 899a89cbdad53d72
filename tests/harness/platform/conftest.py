"""Hand-made profiles for the platform tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness.profile import TargetProfile


@pytest.fixture
def make_profile() -> Callable[..., TargetProfile]:
    """``make_profile(backend, **sections)``: a profile of ``backend`` with those sections and an edge."""

    def make(backend: str, **sections: Any) -> TargetProfile:
        return TargetProfile.model_validate({"name": "t", "backend": backend,
                                             "edge": {"host": "votriz.test", "address": "127.0.0.1"},
                                             **sections})

    return make
