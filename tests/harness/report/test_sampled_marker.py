"""A check that judged a sample of rows is marked SAMPLED in results.json and the report."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

from harness.outcomes import Outcome
from harness.report.html import write_report
from harness.results import CheckResult, RunResults, write_results_json
from harness.sampling import SampleNote

NOTE = SampleNote("channels", "TABLESAMPLE BERNOULLI", 1.0, 20_000_000, False, 200_123)


def test_details_that_say_sampling_mark_the_result_whoever_builds_it() -> None:
    # Given a result built as the plugin builds it (details only)
    result = CheckResult(finding_id="at_rest.tokens_fernet/REST-TOKENS-FERNET",
                         check_id="at_rest.tokens_fernet", claims=("REST-TOKENS-FERNET",),
                         outcome=Outcome.PASS, message="SAMPLED ...",
                         details={"sampling": NOTE.evidence()})
    # Then it is marked, with the bound, and the mark survives results.json
    assert result.sampled is not None and result.sampled.rows_sampled == 200_123
    assert result.sampled.violating_fraction_below == NOTE.bound
    again = CheckResult.model_validate_json(result.model_dump_json())
    assert again.sampled == result.sampled
    # And a full scan is not marked
    full = result.model_copy(update={"details": {}, "sampled": None})
    assert CheckResult.model_validate(full.model_dump() | {"sampled": None}).sampled is None


def test_the_report_shows_a_sampled_check_as_sampled_with_its_bound(
        make_run: Callable[..., RunResults], tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", fault=False)
    results = [r if r.check_id != "at_rest.tokens_fernet" else CheckResult.model_validate(
        r.model_dump() | {"message": "SAMPLED, not every row: all sampled cells are Fernet.",
                          "details": {"sampling": NOTE.evidence()}}) for r in run.results]
    write_results_json(RunResults.model_validate(run.model_dump() | {"results": results}),
                       tmp_path / "run" / "results.json")
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    marked = [r for r in on_disk["results"] if r.get("sampled")]
    assert [r["check_id"] for r in marked] == ["at_rest.tokens_fernet"]
    html = write_report(tmp_path / "run",
                        now=dt.datetime(2026, 11, 30, 22, 0, tzinfo=dt.UTC)).read_text()
    assert html.count('<span class="sampled"') == 1
    assert "200123 of about 20000000 rows of <span class=\"mono\">channels</span>" in html
    # 1 - 0.01 ** (1 / 200123) = 2.3e-05: 0.0023% of the rows
    assert "fewer than 0.0023% of the rows violate" in html
