"""The votriz-audit pytest plugin: runs checks, maps them to claims, writes results.

Loaded through the ``pytest11`` entry point, it stays inert unless ``--target``
is given, so it never changes an ordinary pytest run. With ``--target`` it:

- takes the profile, policy, claims catalogue and waivers from the command line
  (:class:`PreloadedInputs`), or loads them itself when started as ``pytest
  --target PROFILE`` (a bad file is a usage error naming the file and key);
- gives checks the fixtures ``profile``, ``policy``, ``platform`` (where the
  target runs: :mod:`harness.platform`), ``known_secrets``, ``evidence`` and
  ``report_dir``;
- turns what happened in each check into one of the six outcomes, each with
  a reason; a check that ends without a verdict is ERROR, never PASS;
- writes ``results.json`` and ``junit.xml`` into the report directory, then
  searches everything it wrote for every secret it knows;
- decides the gate over promises (:func:`harness.results.summarise`): a run
  that verified no promise, because nothing was collected, everything was
  deselected or every check ended N/A or MANUAL, is ``vacuous``, never passed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness import checkdir
from harness.canary_ledger import CanaryLedger, cleanup_results, start_run_ledger
from harness.evidence import EvidenceRecorder
from harness.inputs import AuditInputs, InputError, load_inputs
from harness.leaks import scan_for_leaks
from harness.outcomes import CheckOutcome, Outcome, ProbeError, Verdict
from harness.platform import Platform, platform_for
from harness.policy import Policy
from harness.preflight import PreflightError, check_profile
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.report.bundle import BundleError, BundleRefused
from harness.report.commands import finalize
from harness.report.first_screen import run_provenance
from harness.report_directory import create_private, make_private
from harness.results import (
    Attestation,
    CheckResult,
    RunResults,
    WaiverNote,
    claim_results,
    summarise,
    write_junit,
    write_results_json,
)
from harness.safe_files import Cap, FileRefused, read_bytes


@dataclass(frozen=True, eq=False)  # pluggy keeps plugins in sets: hashed by identity
class PreloadedInputs:
    """Handed to ``pytest.main(..., plugins=[...])`` by the command line, which loaded the inputs.

    Attributes:
        inputs: the run's profile, policy, catalogue and waivers.
        bundle_problems: filled by the run: why its evidence bundle is incomplete (results
            not written, report not rendered, bundle not signed); empty when it is whole.
    """

    inputs: AuditInputs
    bundle_problems: list[str] = field(default_factory=list)


@dataclass
class RunState:
    """What one audit run knows and has concluded so far.

    Attributes:
        inputs: profile, policy, catalogue and waivers, loaded once at start.
        report_dir: where everything is written.
        known_secrets: every secret learnt during the run.
        results: one per check, in run order.
        recorders: the evidence recorder of each running check, by node id.
        started: start of each check, by node id (monotonic seconds).
        today: the date waivers are judged against.
        deselected: checks collected but deselected (``-k``, ``-m``).
        require_attestations: a missing attestation blocks the gate (option or policy).
        bundle_problem: why the evidence bundle is incomplete, once the run knows it.
        finished: node ids of the checks whose result is recorded.
        canary_ledger: every canary account the run made (a fresh ledger, current for the run).
    """

    inputs: AuditInputs
    report_dir: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    known_secrets: KnownSecrets = field(default_factory=KnownSecrets)
    results: list[CheckResult] = field(default_factory=list)
    recorders: dict[str, EvidenceRecorder] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    pending: dict[str, Verdict] = field(default_factory=dict)
    today: dt.date = field(default_factory=lambda: dt.datetime.now(dt.UTC).date())
    monotonic_start: float = field(default_factory=time.monotonic)
    leaks: list[str] = field(default_factory=list)
    run_errors: list[CheckResult] = field(default_factory=list)
    deselected: int = 0
    require_attestations: bool = False
    bundle_problem: str | None = None
    finished: set[str] = field(default_factory=set)
    canary_ledger: CanaryLedger = field(default_factory=start_run_ledger)

    @property
    def profile(self) -> TargetProfile:
        return self.inputs.profile

    @property
    def policy(self) -> Policy:
        return self.inputs.rules.policy


RUN_STATE = pytest.StashKey[RunState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("votriz-audit", "votriz-audit: audit a running system")
    group.addoption("--target", metavar="PROFILE", help="target profile (TOML) of the system to audit")
    group.addoption("--policy", metavar="FILE", help="audit policy (default: the bundled policy)")
    group.addoption("--report-dir", metavar="DIR", help="where results and evidence are written")
    group.addoption("--waivers", metavar="FILE", help="waiver file (TOML)")
    group.addoption("--claims", metavar="FILE", help="claims catalogue (default: the bundled one)")
    group.addoption("--signing-key", metavar="FILE",
                    help="Ed25519 private key (PEM) signing the evidence bundle (default: a throwaway key)")
    group.addoption("--against", metavar="DIR", help="an earlier report directory to compare with")
    group.addoption("--require-attestations", action="store_true", default=False,
                    help="a promise that needs a human attestation and has none fails the gate (exit 2)")


def check_id_of(item: pytest.Item) -> str:
    """``<area>.<name>`` for the function ``check_<name>`` in ``checks/<area>/<name>.py``."""
    return checkdir.check_id(Path(str(item.path)), getattr(item, "originalname", item.name))


def claims_of(item: pytest.Item) -> tuple[str, ...]:
    marker = item.get_closest_marker("claims")
    return tuple(marker.args) if marker else ()


def _state(config: pytest.Config) -> RunState | None:
    return config.stash.get(RUN_STATE, None)


def pytest_configure(config: pytest.Config) -> None:
    for marker in checkdir.MARKERS:
        config.addinivalue_line("markers", marker)
    target = config.getoption("--target", None)
    if not target:
        return
    preloaded = [p for p in config.pluginmanager.get_plugins() if isinstance(p, PreloadedInputs)]
    if preloaded:
        inputs = preloaded[0].inputs
    else:
        try:
            inputs = load_inputs(Path(target), policy=_path_option(config, "--policy"),
                                 waivers=_path_option(config, "--waivers"),
                                 claims=_path_option(config, "--claims"))
        except InputError as exc:
            raise pytest.UsageError(str(exc)) from None
        try:  # started as `pytest --target`: the command line's preflight did not run
            check_profile(inputs.profile, target, _path_option(config, "--signing-key"))
        except PreflightError as exc:
            raise pytest.UsageError(str(exc)) from None
    report_dir = Path(config.getoption("--report-dir") or "reports/latest")
    create_private(report_dir)  # 0700 from the start; its files are left 0600 at the end
    config.stash[RUN_STATE] = RunState(
        inputs, report_dir, require_attestations=bool(config.getoption("--require-attestations"))
        or inputs.rules.policy.gate.require_attestations)
    config.pluginmanager.register(_CollectionWatch(config.stash[RUN_STATE]), "votriz-audit-collection")


def _path_option(config: pytest.Config, name: str) -> Path | None:
    value = config.getoption(name)
    return Path(value) if value else None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    state = _state(config)
    if state is None:
        return
    known = state.inputs.rules.catalogue.by_id()
    for item in items:
        unknown = [claim for claim in claims_of(item) if claim not in known]
        if unknown:
            raise pytest.UsageError(
                f"{item.nodeid}: names unknown claim(s) {', '.join(unknown)} "
                f"(not in the claims catalogue)")
        if not claims_of(item):
            raise pytest.UsageError(f"{item.nodeid}: has no @pytest.mark.claims(...) marker")
        if config.pluginmanager.has_plugin("timeout") and item.get_closest_marker("timeout") is None:
            # A backstop for a check whose own timeouts failed it: it ends as ERROR.
            item.add_marker(pytest.mark.timeout(state.policy.timeouts.command_s + 60))


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Count deselected checks, so a run that deselected everything says so."""
    if items:
        state = _state(items[0].config)
        if state is not None:
            state.deselected += len(items)


#: The check that reads every byte of every image layer of a Docker target.
LAYER_SEARCH_CHECK = "keys.no_key_elsewhere"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start now, in the background, what later checks would otherwise wait for.

    The process the HSM probe forks its children from (:func:`harness.probes.hsm.start_child_server`)
    when the profile has an HSM; on a Docker target whose layers will be searched, the disk
    reads (:func:`harness.probes.docker_engine.warm_image_layers`). Both then overlap the
    checks that come first, and nothing else changes.
    """
    state = _state(session.config)
    if state is None:
        return
    if state.profile.hsm is not None and session.items:
        from harness.probes import hsm as hsm_probe

        hsm_probe.start_child_server()
    if state.profile.docker is None or state.profile.backend != "docker":
        return
    if any(check_id_of(item) == LAYER_SEARCH_CHECK for item in session.items):
        from harness.probes import docker_engine

        docker_engine.warm_image_layers(state.profile.docker.project, state.policy)


# Fixtures. They fail loudly when used without --target (only checks use them).


def _require_state(request: pytest.FixtureRequest) -> RunState:
    state = _state(request.config)
    if state is None:
        raise pytest.UsageError("votriz-audit fixtures need --target PROFILE")
    return state


@pytest.fixture(scope="session")
def profile(request: pytest.FixtureRequest) -> TargetProfile:
    """The target profile of the system under audit."""
    return _require_state(request).profile


@pytest.fixture(scope="session")
def policy(request: pytest.FixtureRequest) -> Policy:
    """The audit policy."""
    return _require_state(request).policy


@pytest.fixture(scope="session")
def known_secrets(request: pytest.FixtureRequest) -> KnownSecrets:
    """The run's registry of secrets; register every secret the moment it is known."""
    return _require_state(request).known_secrets


@pytest.fixture(scope="session")
def report_dir(request: pytest.FixtureRequest) -> Path:
    """The directory the run writes to."""
    return _require_state(request).report_dir


@pytest.fixture(scope="session")
def platform(profile: TargetProfile, policy: Policy) -> Platform:
    """Where the target runs (:func:`harness.platform.platform_for`): its processes, logs,
    listeners, artifacts and topology, or why each is out of reach."""
    return platform_for(profile, policy)


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> EvidenceRecorder:
    """The evidence recorder of the running check."""
    state = _require_state(request)
    check_id = check_id_of(request.node)
    recorder = EvidenceRecorder(check_id, state.report_dir / "evidence" / check_id,
                                state.known_secrets)
    state.recorders[request.node.nodeid] = recorder
    return recorder


# Turning what happened into outcomes.


def _verdict_from_exception(excinfo: pytest.ExceptionInfo[BaseException], phase: str) -> Verdict:
    exc = excinfo.value
    if isinstance(exc, CheckOutcome):
        return exc.verdict
    if isinstance(exc, ProbeError):
        return Verdict.error(str(exc))
    if excinfo.errisinstance(pytest.skip.Exception):
        return Verdict.not_applicable(str(getattr(exc, "msg", exc)) or "skipped")
    # Anything else is a defect in the harness or a surprise from the target: it
    # could not verify, so ERROR, with the exception's type and first line.
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    where = "while preparing the check" if phase == "setup" else "in the check"
    return Verdict.error(f"{type(exc).__name__} {where}: {first_line}".rstrip(": "))


def _apply_waiver(state: RunState, check_id: str, verdict: Verdict) -> tuple[Verdict, WaiverNote | None]:
    waiver = state.inputs.rules.waivers.for_check(check_id)
    if waiver is None:
        return verdict, None
    current = waiver.is_current(state.today)
    applies = current and verdict.outcome in (Outcome.FAIL, Outcome.ERROR)
    note = WaiverNote(applied=applies, original_outcome=verdict.outcome,
                      justification=waiver.justification, approved_by=waiver.approved_by,
                      expires=waiver.expires)
    if applies:
        return verdict.model_copy(update={
            "outcome": Outcome.WAIVED,
            "message": f"{verdict.message} (waived until {waiver.expires}: {waiver.justification})",
        }), note
    if not current:
        return verdict.model_copy(update={
            "message": f"{verdict.message} (a waiver for this check expired on {waiver.expires}; "
                       f"evaluated normally)"}), note
    return verdict, note


_PYTEST_OUTCOME = {
    Outcome.PASS: "passed",
    Outcome.WAIVED: "passed",
    Outcome.FAIL: "failed",
    Outcome.ERROR: "failed",
    Outcome.NOT_APPLICABLE: "skipped",
    Outcome.MANUAL: "skipped",
}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    state = _state(item.config)
    if state is None:
        return
    state.started[item.nodeid] = time.monotonic()
    state.canary_ledger.current_check = check_id_of(item)  # the check that makes a canary, by name
    # A whole run has an upper bound: past it, the remaining checks are not run
    # and say so (ERROR, since nothing was verified), instead of the gate hanging.
    limit = state.policy.timeouts.run_s
    if state.started[item.nodeid] - state.monotonic_start > limit:
        raise CheckOutcome(Verdict.error(f"not run: the run's time limit of {limit:g} s "
                                         f"(policy timeouts.run_s) was reached"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    state = _state(item.config)
    if state is None:
        return
    report: pytest.TestReport = outcome.get_result()
    verdict: Verdict | None = None
    if call.when == "setup" and call.excinfo is not None:
        verdict = _verdict_from_exception(call.excinfo, "setup")
    elif call.when == "call":
        if call.excinfo is not None:
            verdict = _verdict_from_exception(call.excinfo, "call")
        else:
            recorder = state.recorders.get(item.nodeid)
            verdict = recorder.verdict if recorder else None
            if verdict is None:
                verdict = Verdict.error("the check ended without reaching a verdict")
    elif call.when == "teardown" and call.excinfo is not None:
        # A failing clean-up (e.g. canary removal) may leave harness data in the audited
        # system: its own finding, whatever the check concluded (a session fixture's
        # clean-up runs in the teardown of whichever check happens to be last).
        extra = _verdict_from_exception(call.excinfo, "teardown")
        check_id = check_id_of(item)
        _run_error(state, f"harness.cleanup/{check_id}",
                   f"clean-up after {check_id} failed: {extra.message} (the audited system may still "
                   f"hold harness data)")
        return
    if verdict is None:
        return
    verdict = verdict.model_copy(update={"message": state.known_secrets.redact(verdict.message)})
    state.pending[item.nodeid] = verdict
    report.outcome = _PYTEST_OUTCOME[verdict.outcome]  # type: ignore[assignment]
    report.longrepr = f"{verdict.outcome.value}: {verdict.message}" if report.outcome != "passed" else None
    if report.outcome == "skipped":
        # pytest expects (path, lineno, reason) for skipped reports.
        report.longrepr = (str(item.path), 0, f"{verdict.outcome.value}: {verdict.message}")


def _finish_check(state: RunState, item_nodeid: str, item: pytest.Item) -> CheckResult:
    check_id = check_id_of(item)
    verdict = state.pending.pop(item_nodeid, None) or Verdict.error("the check did not run")
    verdict, waiver = _apply_waiver(state, check_id, verdict)
    recorder = state.recorders.pop(item_nodeid, None)
    evidence = tuple(f"evidence/{check_id}/{name}" for name in (recorder.attachments if recorder else []))
    claims = claims_of(item)
    subject = f"/{verdict.subject}" if verdict.subject else ""
    # Details reach results.json, junit.xml, SARIF and the HTML report: redact them as a whole.
    details = json.loads(state.known_secrets.redact(json.dumps(verdict.details, default=str)))
    return CheckResult(
        finding_id=f"{check_id}/{'+'.join(claims)}{subject}",
        check_id=check_id,
        claims=claims,
        outcome=verdict.outcome,
        message=verdict.message,
        details=details,
        evidence=evidence,
        duration_s=round(time.monotonic() - state.started.pop(item_nodeid, time.monotonic()), 3),
        waiver=waiver,
    )



def _run_error(state: RunState, finding_id: str, message: str) -> None:
    """A run-level ERROR that belongs to no check (a module that did not load, a failed clean-up)."""
    state.run_errors.append(CheckResult(
        finding_id=finding_id, check_id=finding_id.split("/", 1)[0], claims=(), outcome=Outcome.ERROR,
        message=state.known_secrets.redact(message)))


class _CollectionWatch:
    """Registered for a run: a checks module that cannot be collected is an ERROR, never a silent pass.

    (``pytest_collectreport`` receives no config, so the run's state travels with this object.)
    """

    def __init__(self, state: RunState) -> None:
        self.state = state

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if not report.failed:
            return
        lines = [line for line in str(report.longrepr).splitlines() if line.strip()]
        reason = next((line[1:].strip() for line in reversed(lines) if line.startswith("E ")),
                      lines[-1].strip() if lines else "unknown error")
        where = report.nodeid or str(report.fspath)
        _run_error(self.state, f"harness.collection/{where}",
                   f"the checks in {where} could not be loaded: {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, None]:
    """After setup, call and teardown of a check: record its result (interrupted: for how long)."""
    outcome = yield
    state = _state(item.config)
    if state is None:
        return
    if isinstance(outcome.exception, (KeyboardInterrupt, pytest.exit.Exception)):
        ran_s = time.monotonic() - state.started.get(item.nodeid, time.monotonic())
        state.pending.setdefault(item.nodeid, Verdict.error(f"interrupted after {ran_s:.1f} s"))
    result = _finish_check(state, item.nodeid, item)
    state.finished.add(item.nodeid)
    state.results.append(result)
    reporter = item.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"  {result.outcome.value:<14} {result.check_id:<34} {result.duration_s:6.2f}s  "
            f"{result.message[:160]}")


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """With --target, the plugin prints one line per check itself; pytest prints no letters."""
    if _state(config) is None:
        return None
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return None
    return report.outcome, "", ""


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if state is None:
        return
    # No check collected is not an incomplete run: the gate calls it vacuous, with its reason.
    completed = (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED)
    why = "interrupted" if exitstatus == pytest.ExitCode.INTERRUPTED else "the run stopped early"
    for item in (unfinished := [i for i in getattr(session, "items", []) if i.nodeid not in state.finished]):
        state.pending[item.nodeid] = Verdict.error(f"not run: {why}")  # listed, never absent
        state.results.append(_finish_check(state, item.nodeid, item))
    if exitstatus not in completed and not state.run_errors and not unfinished:
        _run_error(state, "harness.run", f"the run did not complete (pytest exit status {int(exitstatus)})")
    state.run_errors.extend(cleanup_results(state.canary_ledger, state.profile, state.policy,
                                            state.known_secrets, state.report_dir))
    state.results.extend(state.run_errors)
    state.run_errors.clear()
    run = build_results(state)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    try:
        write_results_json(run, state.report_dir / "results.json")
        write_junit(run, state.report_dir / "junit.xml")
    except OSError as exc:
        # A full disk must not end in a traceback; the command line finds no complete bundle.
        state.bundle_problem = f"results not written to {state.report_dir}: {exc.strerror or exc}"
        if reporter is not None:
            reporter.write_line(f"votriz-audit: {state.bundle_problem}")
        make_private(state.report_dir)
        _tell_command_line(session.config, state)
        return
    state.leaks = scan_for_leaks(state.report_dir, state.known_secrets)
    if state.leaks:
        _write_leaks(state)
    try:
        bundle_note = _finalize_bundle(session.config, state)
    finally:
        make_private(state.report_dir)
    _tell_command_line(session.config, state)
    session.config.stash[RUN_RESULTS] = run
    if reporter is not None:
        reporter.write_line(f"votriz-audit: {run.summary.headline}")
        reporter.write_line(f"votriz-audit: results in {state.report_dir}")
        reporter.write_line(f"votriz-audit: {bundle_note}")
        for leak in state.leaks:
            reporter.write_line(f"votriz-audit: SECRET FOUND IN OUTPUT {leak}")


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


def _finalize_bundle(config: pytest.Config, state: RunState) -> str:
    """Render report.html and the exports, then sign the bundle; say what happened in one line.

    The known secrets exist only inside this process, so the last scan of every
    rendered file happens here, before the manifest is signed.
    """
    key = config.getoption("--signing-key")
    against = config.getoption("--against")
    try:
        done = finalize(state.report_dir, state.known_secrets, key or None,
                        against=Path(against) if against else None)
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


RUN_RESULTS = pytest.StashKey[RunResults]()
