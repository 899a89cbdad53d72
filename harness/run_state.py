"""What one audit run, as the pytest plugin (:mod:`harness.plugin`) runs it, knows so far.

The plugin keeps one :class:`RunState` in the config's stash; the command line hands
the inputs it already loaded in a :class:`PreloadedInputs`. The run's other parts (the
outcome of each check: :mod:`harness.check_endings`; the end of the run:
:mod:`harness.run_end`) read and fill the same state.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from harness import checkdir
from harness.canary_ledger import CanaryLedger, start_run_ledger
from harness.evidence import EvidenceRecorder
from harness.inputs import AuditInputs
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.results import CheckResult, RunResults
from harness.trickling_peers import RUN_TRICKLERS


@dataclass(frozen=True, eq=False)  # pluggy keeps plugins in sets: hashed by identity
class PreloadedInputs:
    """Handed to ``pytest.main(..., plugins=[...])`` by the command line, which loaded the inputs.

    Attributes:
        inputs: the run's profile, policy, catalogue and waivers.
        bundle_problems: filled by the run: why its evidence bundle is incomplete (results
            not written, report not rendered, bundle not signed); empty when it is whole.
        service_released: called by the end of the run (:func:`harness.run_end.finish_run`)
            once nothing more is asked of the audited service (every check ended, the
            run's canaries removed), before the report is rendered and sealed; the command
            line takes the reference service down meanwhile.
    """

    inputs: AuditInputs
    bundle_problems: list[str] = field(default_factory=list)
    service_released: Callable[[], None] | None = None


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

    def __post_init__(self) -> None:
        # A run starts knowing no slow peer: what an earlier run in this process saw trickle
        # (harness.cli.main called twice) may answer at once now, and must be asked again.
        RUN_TRICKLERS.forget()

    @property
    def profile(self) -> TargetProfile:
        return self.inputs.profile

    @property
    def policy(self) -> Policy:
        return self.inputs.rules.policy


RUN_STATE = pytest.StashKey[RunState]()
RUN_RESULTS = pytest.StashKey[RunResults]()


def run_state(config: pytest.Config) -> RunState | None:
    """The run's state, or None when the plugin was not asked to audit (no ``--votriz-target``)."""
    return config.stash.get(RUN_STATE, None)


def check_id_of(item: pytest.Item) -> str:
    """``<area>.<name>`` for the function ``check_<name>`` in ``checks/<area>/<name>.py``."""
    return checkdir.check_id(Path(str(item.path)), getattr(item, "originalname", item.name))


def claims_of(item: pytest.Item) -> tuple[str, ...]:
    """The claim ids of the check's ``claims`` marker."""
    marker = item.get_closest_marker("claims")
    return tuple(marker.args) if marker else ()


class RunOutput(Protocol):
    """Where the run's own lines go when the command line shows live progress
    (:class:`harness.progress.LiveProgress`)."""

    def line(self, text: str) -> None: ...


RUN_OUTPUT = pytest.StashKey[RunOutput]()


def say(config: pytest.Config, line: str) -> None:
    """Write one line of the run's own output: through the command line's live progress
    (:data:`RUN_OUTPUT`) when it shows one, else through pytest's terminal."""
    output = config.stash.get(RUN_OUTPUT, None)
    if output is not None:
        output.line(line)
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
