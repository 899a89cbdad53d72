"""The report's first screen in words: summary, scope and limits, who/where, signer and recipe."""

from __future__ import annotations

import re
from pathlib import Path

from harness.outcomes import Outcome
from harness.report.first_screen import executive_summary, provenance_of, run_provenance, scope_of
from harness.report.html import write_report
from harness.report.humanise import plain_promises
from harness.report.layout import load_results
from harness.report.seal import SignerFacts


def test_the_summary_says_what_held_broke_could_not_be_verified_and_needs_a_human(fault_run: Path) -> None:
    run = load_results(fault_run)

    lines = executive_summary(run, plain_promises(run.claims))

    assert lines[0].startswith("This audit checked the bundled reference service “votriz-reference-local”")
    assert "all 36 promises were judged, by 30 check results in 1 min 35 s" in lines[0]
    assert any(line.startswith("7 promises broke: “Keys are never stored in source code") for line in lines)
    assert any(line.startswith("1 promise could not be verified") for line in lines)
    assert "5 promises need a human attestation that no machine can give and have none; 1 has one supplied." in lines
    assert lines[-1].startswith("The target is the reference service shipped with the tool")


def test_a_deployment_is_not_called_the_reference(make_run, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", fault=False)
    deployment = run.model_copy(update={"target": {"name": "votriz-production", "backend": "remote",
                                                   "edge": "https://votriz.example"}})

    scope = scope_of(deployment)

    assert not scope.reference and scope.kind.startswith("a deployment described by the auditor's profile")
    assert not any("reference" in line for line in executive_summary(deployment, {}))


def test_scope_groups_the_promises_out_of_reach_by_their_reason(fault_run: Path) -> None:
    scope = scope_of(load_results(fault_run))

    manual = [o for o in scope.out_of_reach if o.outcome is Outcome.MANUAL]
    not_applicable = [o for o in scope.out_of_reach if o.outcome is Outcome.NOT_APPLICABLE]
    assert sum(len(o.claims) for o in manual) == 5 and all(o.reason for o in manual)
    assert [c.id for o in not_applicable for c in o.claims] == ["INTERNAL-BRIDGE-NETWORK", "INTERNAL-ONLY-80-443"]
    assert scope.areas_run == {"at_rest": (12, 12), "containers": (3, 3), "keys": (8, 8), "transit": (7, 7)}


def test_the_run_records_who_ran_it_where_and_the_tool_commit() -> None:
    recorded = run_provenance()

    assert recorded["run_by"]["user"] and recorded["run_by"]["host"]
    assert re.fullmatch(r"[0-9a-f]{40}", recorded["tool_commit"] or "")
    assert "/" not in recorded["run_by"]["user"] + recorded["run_by"]["host"]


def test_the_first_screen_names_the_signer_and_how_to_verify(fault_run: Path) -> None:
    run = load_results(fault_run)
    (fault_run / "results.json").write_text(run.model_copy(update={"target": {
        **run.target, "run_by": {"user": "auditor", "host": "audit-01"}, "tool_commit": "ab" * 20}}
    ).model_dump_json())
    signer = SignerFacts("file", "ed25519", "sha256:" + "3c" * 32, "audit.public-key.pem")

    html = write_report(fault_run, signer=signer).read_text()
    first = html[:html.index('id="limits-h"')]

    assert provenance_of(load_results(fault_run)).commit == "ab" * 20
    assert "auditor on host audit-01" in first and ">abababababab</span>" in first
    assert "a file key (ed25519), fingerprint" in first and "sha256:" + "3c" * 32 in first
    assert "votriz-audit verify DIR --public-key AUDITOR.pem" in first and "VERIFY.md" in first
    # Without the signer, the page says where the seal names it.
    html = write_report(fault_run).read_text()
    assert "the sealing key's fingerprint is in VERIFY.md and audit.intoto.jsonl" in html
