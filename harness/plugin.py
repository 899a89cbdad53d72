"""The votriz-audit pytest plugin: runs the checks, maps them to claims, writes results.

Asked for, never automatic: pytest loads it with ``-p harness.plugin`` (as ``-p pytester``
loads pytest's own opt-in plugin), which ``votriz-audit run`` passes. Loaded, it adds only
``--votriz-…`` options, and it stays inert unless ``--votriz-target`` is given. With it:

- takes the profile, policy, claims catalogue and waivers from the command line
  (:class:`harness.run_state.PreloadedInputs`), or loads them itself when started as
  ``pytest -p harness.plugin --votriz-target PROFILE`` (a bad file is a usage error
  naming the file and key); without paths it runs every check of ``checks/`` (not the
  ``testpaths`` of ``pyproject.toml``, nor the current directory);
- collects ``checks/<area>/<name>.py`` and its ``check_<name>`` (:mod:`harness.checkdir`);
- gives checks the fixtures ``profile``, ``policy``, ``platform`` (where the target runs:
  :mod:`harness.platform`), ``known_secrets``, ``evidence`` and ``report_dir``;
- turns what happened in each check into one of the six outcomes, each with a reason
  (:mod:`harness.check_endings`); a check that ends without a verdict is ERROR, never PASS;
- at the end writes results.json and junit.xml, searches them for every secret it knows,
  renders the report and seals the bundle (:mod:`harness.run_end`).
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Generator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from harness import checkdir
from harness.check_endings import PYTEST_OUTCOME, finish_check, run_error, verdict_of_phase
from harness.cli_output import printable
from harness.evidence import EvidenceRecorder
from harness.inputs import InputError, load_inputs
from harness.outcomes import CheckOutcome, Verdict
from harness.platform import Platform, platform_for
from harness.policy import Policy
from harness.preflight import PreflightError, check_profile
from harness.profile import TargetProfile
from harness.report_directory import create_private, refused_report_dir
from harness.run_end import finish_run, plain_pytest_exit_status
from harness.run_state import (
    RUN_STATE,
    PreloadedInputs,
    RunState,
    check_id_of,
    claims_of,
    run_state,
    say,
)

#: The name pytest knows this plugin by (``-p harness.plugin``).
PLUGIN_NAME = "harness.plugin"
#: The ``pytest11`` entry point under which an earlier installation loaded this module into every
#: pytest run; see :func:`plugin_args`.
OLD_ENTRY_POINT = "votriz_audit"


def plugin_args() -> tuple[str, ...]:
    """pytest's arguments that ask for this plugin: ``-p harness.plugin``.

    An environment installed while the plugin was still the ``pytest11`` entry point
    ``votriz_audit`` would load the same module twice (pluggy refuses that): there, the entry
    point is blocked too (``-p no:votriz_audit``), so the plugin is loaded once, when asked.
    """
    installed = any(ep.name == OLD_ENTRY_POINT and ep.value == PLUGIN_NAME
                    for ep in metadata.entry_points(group="pytest11"))
    return ("-p", f"no:{OLD_ENTRY_POINT}", "-p", PLUGIN_NAME) if installed else ("-p", PLUGIN_NAME)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("votriz-audit", "votriz-audit: audit a running system (-p harness.plugin)")
    group.addoption("--votriz-target", metavar="PROFILE",
                    help="target profile (TOML) of the system to audit; without it the plugin does nothing")
    group.addoption("--votriz-policy", metavar="FILE", help="audit policy (default: the bundled policy)")
    group.addoption("--votriz-report-dir", metavar="DIR",
                    help="where results and evidence are written (default reports/latest)")
    group.addoption("--votriz-waivers", metavar="FILE", help="waiver file (TOML)")
    group.addoption("--votriz-claims", metavar="FILE", help="claims catalogue (default: the bundled one)")
    group.addoption("--votriz-signing-key", metavar="FILE",
                    help="Ed25519 or ECDSA P-256 private key (PEM) or pkcs11: URI signing the evidence "
                         "bundle (default: a throwaway key)")
    group.addoption("--votriz-against", metavar="DIR", help="an earlier report directory to compare with")
    group.addoption("--votriz-require-attestations", action="store_true", default=False,
                    help="a promise that needs a human attestation and has none fails the gate (exit 2)")


def pytest_configure(config: pytest.Config) -> None:
    for marker in checkdir.MARKERS:
        config.addinivalue_line("markers", marker)
    target = config.getoption("--votriz-target", None)
    if not target:
        return
    report_dir = Path(config.getoption("--votriz-report-dir") or "reports/latest")
    preloaded = [p for p in config.pluginmanager.get_plugins() if isinstance(p, PreloadedInputs)]
    if preloaded:
        inputs = preloaded[0].inputs
    else:
        try:
            inputs = load_inputs(Path(target), policy=_path_option(config, "--votriz-policy"),
                                 waivers=_path_option(config, "--votriz-waivers"),
                                 claims=_path_option(config, "--votriz-claims"))
        except InputError as exc:
            raise pytest.UsageError(str(exc)) from None
        try:  # started as plain pytest: the command line's preflight did not run
            check_profile(inputs.profile, target, _path_option(config, "--votriz-signing-key"))
        except PreflightError as exc:
            raise pytest.UsageError(str(exc)) from None
        refused = refused_report_dir(report_dir, "--votriz-report-dir")  # the command line checked its own
        if refused:
            raise pytest.UsageError(refused)
    _collect_the_checks(config)
    create_private(report_dir)  # 0700 from the start; its files are left 0600 at the end
    config.stash[RUN_STATE] = RunState(
        inputs, report_dir, require_attestations=bool(config.getoption("--votriz-require-attestations"))
        or inputs.rules.policy.gate.require_attestations)
    config.pluginmanager.register(_CollectionWatch(config.stash[RUN_STATE]), "votriz-audit-collection")


def _collect_the_checks(config: pytest.Config) -> None:
    """Collect the checks' layout whatever the configuration pytest found: ``check_*`` functions
    in the modules of ``checks/<area>/``. Without a path on the command line, all of ``checks/``,
    wherever pytest was started (the repository's root or a subdirectory, a directory with no
    pytest configuration or a bare ``pyproject.toml``): never the configured ``testpaths`` (in
    the repository, ``pyproject.toml`` names the harness's own tests), nor the current directory.
    Only a directory with a pytest configuration of its own (``pytest.ini``, a ``[tool.pytest…]``
    table) is collected as it says.
    """
    config.addinivalue_line("python_files", f"{checkdir.CHECKS_DIR.name}/*/*.py")
    config.addinivalue_line("python_functions", f"{checkdir.CHECK_PREFIX}*")
    sources = pytest.Config.ArgsSource
    configured_elsewhere = config.args_source == sources.INVOCATION_DIR and _configures_pytest(config.inipath)
    if config.args_source != sources.ARGS and not configured_elsewhere:
        config.args[:] = [str(checkdir.CHECKS_DIR)]


def _configures_pytest(inipath: Path | None) -> bool:
    """Whether ``inipath``, the configuration file pytest found, is another project's pytest
    configuration: not this repository's own ``pyproject.toml`` (found from any of its
    subdirectories), and not a ``pyproject.toml`` without a ``[tool.pytest…]`` table, which
    pytest >= 8.1 takes for one although it configures nothing."""
    if inipath is None or inipath == checkdir.CHECKS_DIR.parent / "pyproject.toml":
        return False
    if inipath.name != "pyproject.toml":
        return True  # pytest.ini, tox.ini, setup.cfg: pytest took it for its section
    try:
        with inipath.open("rb") as file:
            return "pytest" in tomllib.load(file).get("tool", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False


def _path_option(config: pytest.Config, name: str) -> Path | None:
    value = config.getoption(name)
    return Path(value) if value else None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    state = run_state(config)
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
    items[:] = observing_first(items)


#: The ``access`` a check declares when it changes the system: rotations, restarts, backups, drills.
CHANGES_THE_SYSTEM = "destructive"


def observing_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """The checks that only observe, then those that change the system, each in their order.

    Observe before you act, across checks too: a rotation replaces the secret the key search
    would find in a log or an environment (a copy of the JWT secret pasted into a log is found
    by its value, which after ``keys.jwt_rotation`` is no longer the HSM's), and a fresh
    backup or drill adds to what the sweeps would judge as found.
    """
    def changes(item: pytest.Item) -> bool:
        marker = item.get_closest_marker("access")
        return marker is not None and CHANGES_THE_SYSTEM in marker.args

    return [item for item in items if not changes(item)] + [item for item in items if changes(item)]


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Count deselected checks, so a run that deselected everything says so."""
    if items:
        state = run_state(items[0].config)
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
    state = run_state(session.config)
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


# Fixtures. They fail loudly when used without --votriz-target (only checks use them).


def _require_state(request: pytest.FixtureRequest) -> RunState:
    state = run_state(request.config)
    if state is None:
        raise pytest.UsageError("votriz-audit fixtures need --votriz-target PROFILE")
    return state


def _run_fixture(name: str, doc: str) -> Any:
    """A session fixture ``name``: the run's attribute of that name (:class:`RunState`)."""

    def fixture(request: pytest.FixtureRequest) -> Any:
        return getattr(_require_state(request), name)

    fixture.__doc__ = doc
    return pytest.fixture(scope="session", name=name)(fixture)


profile = _run_fixture("profile", "The target profile of the system under audit.")
policy = _run_fixture("policy", "The audit policy.")
known_secrets = _run_fixture("known_secrets",
                             "The run's registry of secrets; register every secret the moment it is known.")
report_dir = _run_fixture("report_dir", "The directory the run writes to.")


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


# Each check's run: its start, the verdict of each phase, its result.


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    state = run_state(item.config)
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
    state = run_state(item.config)
    if state is None:
        return
    report: pytest.TestReport = outcome.get_result()
    verdict = verdict_of_phase(state, item, call)
    if verdict is None:
        return
    verdict = verdict.model_copy(update={"message": state.known_secrets.redact(verdict.message)})
    state.pending[item.nodeid] = verdict
    report.outcome = PYTEST_OUTCOME[verdict.outcome]  # type: ignore[assignment]
    said = f"{verdict.outcome.value}: {printable(verdict.message)}"  # pytest prints it in its summary
    report.longrepr = said if report.outcome != "passed" else None
    if report.outcome == "skipped":
        # pytest expects (path, lineno, reason) for skipped reports.
        report.longrepr = (str(item.path), 0, said)


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
        run_error(self.state, f"harness.collection/{where}",
                  f"the checks in {where} could not be loaded: {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, None]:
    """After setup, call and teardown of a check: record its result (interrupted: for how long)."""
    outcome = yield
    state = run_state(item.config)
    if state is None:
        return
    if isinstance(outcome.exception, (KeyboardInterrupt, pytest.exit.Exception)):
        ran_s = time.monotonic() - state.started.get(item.nodeid, time.monotonic())
        state.pending.setdefault(item.nodeid, Verdict.error(f"interrupted after {ran_s:.1f} s"))
    result = finish_check(state, item)
    state.finished.add(item.nodeid)
    state.results.append(result)
    # The message may quote the audited system (a header, a certificate's name): escaped, so that
    # no terminal code it holds reaches the reader's terminal or log.
    say(item.config, f"  {result.outcome.value:<14} {result.check_id:<34} {result.duration_s:6.2f}s  "
                     f"{printable(result.message)[:160]}")


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """With --votriz-target, the plugin prints one line per check itself; pytest prints no letters."""
    if run_state(config) is None:
        return None
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return None
    return report.outcome, "", ""


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = run_state(session.config)
    if state is None:
        return
    finish_run(session, state, exitstatus, signing_key=session.config.getoption("--votriz-signing-key"),
               against=session.config.getoption("--votriz-against"))
    if not any(isinstance(p, PreloadedInputs) for p in session.config.pluginmanager.get_plugins()):
        # Started as plain pytest: its exit status is the gate's, as `votriz-audit run`'s is
        # (that command reads the results itself and keeps pytest's own status).
        session.exitstatus = plain_pytest_exit_status(state, session.config, exitstatus)
