"""The end of an audit run: every check listed, results.json and junit.xml written, the output
searched for every known secret, the report rendered and the evidence bundle sealed.

Called by the pytest plugin's ``pytest_sessionfinish`` (:mod:`harness.plugin`). The gate
over promises is :func:`harness.results.summarise`: a run that verified no promise,
because nothing was collected, everything was deselected or every check ended N/A or
MANUAL, is ``vacuous``, never passed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from harness.canary_ledger import cleanup_results
from harness.check_endings import finish_check, run_error
from harness.cli_output import printable
from harness.leaks import scan_for_leaks
from harness.outcomes import Verdict
from harness.profile import TargetProfile
from harness.report.bundle import BundleError, BundleRefused
from harness.report.commands import finalize
from harness.report.first_screen import run_provenance
from harness.report_directory import make_private
from harness.results import Attestation, RunResults, claim_results, summarise, write_junit, write_results_json
from harness.run_state import RUN_RESULTS, PreloadedInputs, RunState, say
from harness.safe_files import Cap, FileRefused, read_bytes


def _attestations(profile: TargetProfile) -> dict[str, Attestation]:
    """The profile's attestation files that can be read (:mod:`harness.safe_files`), by claim id,
    with their SHA-256."""
    found = {}
    for claim_id, path in profile.attestations.items():
        try:
            content = read_bytes(path, f"attestation for {claim_id}", Cap.ATTESTATION)
        except FileRefused:
            continue
        found[claim_id] = Attestation(path=str(path), sha256=hashlib.sha256(content).hexdigest())
    return found


def build_results(state: RunState, finished_at: dt.datetime | None = None) -> RunResults:
    """Assemble results.json's content from what the run concluded."""
    profile, rules = state.profile, state.inputs.rules
    claims = claim_results(rules.catalogue, state.results, _attestations(profile))
    return RunResults(
        run_id=state.run_id,
        started_at=state.started_at,
        finished_at=finished_at or dt.datetime.now(dt.UTC),
        target={"name": profile.name, "backend": profile.backend, "edge": profile.edge.base_url,
                **run_provenance()},
        policy={"path": str(rules.policy_path), **rules.policy.model_dump(mode="json")},
        catalogue={"title": rules.catalogue.title, "page": rules.catalogue.page},
        summary=summarise(state.results, claims, require_attestations=state.require_attestations,
                          deselected=state.deselected),
        results=tuple(state.results),
        claims=tuple(claims),
    )


def finish_run(session: pytest.Session, state: RunState, exitstatus: int, *,
               signing_key: str | None, against: str | None) -> None:
    """List every check (one not run says why), write the results, search them for secrets,
    render, seal; say the gate's headline in the run's output."""
    # No check collected is not an incomplete run: the gate calls it vacuous, with its reason.
    completed = (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED)
    why = "interrupted" if exitstatus == pytest.ExitCode.INTERRUPTED else "the run stopped early"
    for item in (unfinished := [i for i in getattr(session, "items", []) if i.nodeid not in state.finished]):
        state.pending[item.nodeid] = Verdict.error(f"not run: {why}")  # listed, never absent
        state.results.append(finish_check(state, item))
    if exitstatus not in completed and not state.run_errors and not unfinished:
        run_error(state, "harness.run", f"the run did not complete (pytest exit status {int(exitstatus)})")
    state.run_errors.extend(cleanup_results(state.canary_ledger, state.profile, state.policy,
                                            state.known_secrets, state.report_dir))
    state.results.extend(state.run_errors)
    state.run_errors.clear()
    config = session.config
    _release_service(config)
    run = build_results(state)
    try:
        write_results_json(run, state.report_dir / "results.json")
        write_junit(run, state.report_dir / "junit.xml")
    except OSError as exc:
        # A full disk must not end in a traceback; the command line finds no complete bundle.
        state.bundle_problem = f"results not written to {state.report_dir}: {exc.strerror or exc}"
        say(config, f"votriz-audit: {printable(state.bundle_problem)}")
        make_private(state.report_dir)
        _tell_command_line(config, state)
        return
    state.leaks = scan_for_leaks(state.report_dir, state.known_secrets)
    if state.leaks:
        _write_leaks(state)
    try:
        bundle_note = _finalize_bundle(state, signing_key, against)
    finally:
        make_private(state.report_dir)
    _tell_command_line(config, state)
    config.stash[RUN_RESULTS] = run
    say(config, f"votriz-audit: {printable(run.summary.headline)}")
    say(config, f"votriz-audit: results in {state.report_dir}")
    say(config, f"votriz-audit: {printable(bundle_note)}")
    for leak in state.leaks:
        say(config, f"votriz-audit: SECRET FOUND IN OUTPUT {leak}")


#: The exit statuses of ``votriz-audit run`` beyond the gate's own (:mod:`harness.cli_run`): a known
#: secret in the output, an evidence bundle that could not be completed.
EXIT_LEAK, EXIT_INCOMPLETE = 4, 5


def plain_pytest_exit_status(state: RunState, config: pytest.Config, exitstatus: int) -> int:
    """The exit status of a run started as plain pytest, as ``votriz-audit run`` would give it: the
    gate's (0 pass, 1 fail, 2 error, vacuous or unattested), 4 when a known secret is in the output,
    5 when the bundle is incomplete; pytest's own when the checks could not start (a usage or
    internal error)."""
    if exitstatus in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR):
        return exitstatus
    if state.leaks:
        return EXIT_LEAK
    run = config.stash.get(RUN_RESULTS, None)
    if state.bundle_problem is not None or run is None:
        return EXIT_INCOMPLETE
    return run.summary.exit_code


def _release_service(config: pytest.Config) -> None:
    """Tell the command line that started the run that the audited service is no longer needed."""
    for plugin in config.pluginmanager.get_plugins():
        if isinstance(plugin, PreloadedInputs) and plugin.service_released is not None:
            plugin.service_released()


def _tell_command_line(config: pytest.Config, state: RunState) -> None:
    """Hand an incomplete bundle's reason to the command line that started the run (exit 5)."""
    if state.bundle_problem is None:
        return
    for plugin in config.pluginmanager.get_plugins():
        if isinstance(plugin, PreloadedInputs):
            plugin.bundle_problems.append(state.bundle_problem)


def _write_leaks(state: RunState) -> None:
    # Names where, never what: the file lists labels and offsets only.
    (state.report_dir / "LEAKS.txt").write_text("\n".join(state.leaks) + "\n", encoding="utf-8")


def _finalize_bundle(state: RunState, key: str | None, against: str | None) -> str:
    """Render report.html and the exports, then sign the bundle; say what happened in one line.

    The known secrets exist only inside this process, so the last scan of every
    rendered file happens here, before the manifest is signed.
    """
    try:
        done = finalize(state.report_dir, state.known_secrets, key or None,
                        against=Path(against) if against else None,
                        deadline=(state.policy.timeouts.request_s, "timeouts.request_s"))
    except BundleRefused as exc:
        state.leaks = sorted(set(state.leaks) | set(exc.places))
        _write_leaks(state)
        state.bundle_problem = "evidence bundle NOT signed: a known secret is in the output (see LEAKS.txt)"
        return state.bundle_problem
    except BundleError as exc:
        state.bundle_problem = f"evidence bundle not signed: {exc}"
        return state.bundle_problem
    except Exception as exc:  # a rendering defect must not hide the results already written
        # (a full disk included: the report is truncated and nothing is signed)
        state.bundle_problem = (f"report not rendered ({type(exc).__name__}: {exc}); results.json and "
                                f"junit.xml stand, the bundle is not signed")
        return state.bundle_problem
    signer = done.bundle.signer
    who = ("a THROWAWAY key, which verify does not trust" if signer.kind == "throwaway"
           else f"{signer.kind} key {signer.fingerprint}")
    oscal = "" if done.oscal else f"; OSCAL skipped: {done.oscal_skipped}"
    return f"report {done.report_html.name}, sealed {done.bundle.seal_path.name} ({who}){oscal}"
