"""The bound a uniform sample with no violation supports."""

from __future__ import annotations

import math
import random

import pytest

from harness.sampling import SampleNote, percent_text, violation_bound


@pytest.mark.parametrize("sampled", [1, 10, 459, 1_000_000])
def test_the_bound_is_the_fraction_a_sample_that_size_misses_one_time_in_a_hundred(
        sampled: int) -> None:
    bound = violation_bound(sampled)
    assert bound == pytest.approx(1 - 0.01 ** (1 / sampled), rel=1e-9)
    # At the bound, n draws all miss the violating rows with probability exactly 1%.
    assert (1 - bound) ** sampled == pytest.approx(0.01, rel=1e-6)
    assert violation_bound(sampled + 1) < bound


def test_the_bound_for_a_million_rows_and_for_none() -> None:
    assert violation_bound(1_000_000) == pytest.approx(4.6e-6, rel=1e-2)  # "fewer than 0.00046%"
    assert percent_text(violation_bound(1_000_000)) == "0.00046%"
    assert violation_bound(0) == 1.0 and percent_text(1.0) == "100%"


def test_the_bound_holds_by_simulation() -> None:
    # Given a table in which exactly the bound's fraction of rows violate, When 300 samples
    # of n rows are drawn, Then about 1% of them (never many) see no violation.
    rng = random.Random(3)
    n = 200
    bound = violation_bound(n)
    table = 100_000
    violating = set(rng.sample(range(table), math.ceil(bound * table)))
    missed = sum(1 for _ in range(2_000)
                 if not violating.intersection(rng.sample(range(table), n)))
    assert missed <= 2_000 * 0.02


def test_the_note_states_its_method_and_formula() -> None:
    note = SampleNote("channels", "TABLESAMPLE BERNOULLI", 5.0, 20_000, True, 1_000)
    assert note.evidence()["violating_fraction_below"] == note.bound
    assert note.sentence("token cells").startswith("SAMPLED, not every row: 1000 of 20000 rows "
                                                   "of channels (TABLESAMPLE BERNOULLI)")
    assert "(1 - 0.01^(1/1000))" in note.sentence("token cells")
