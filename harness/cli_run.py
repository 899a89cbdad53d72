"""Running the checks for ``votriz-audit run``: pytest in this process, the plugin asked for
(:mod:`harness.plugin`), live progress (:mod:`harness.progress`), and the exit code and
verdict line from what the run wrote (the table of exit codes is :mod:`harness.cli`'s)."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from harness.checkdir import CHECKS_DIR, area_path, declared_checks
from harness.cli_output import printable
from harness.inputs import AuditInputs
from harness.reference import ReferenceBackend, StartedStack

if TYPE_CHECKING:
    from harness.progress import LiveProgress

EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_USAGE, EXIT_LEAK, EXIT_INCOMPLETE = 0, 1, 2, 3, 4, 5
CHECKS_INI = Path(__file__).resolve().parent / "checks.ini"


def selected_paths(only: Sequence[str] = (), checks: Sequence[str] = ()) -> list[str]:
    """What pytest collects: the areas of ``only`` and the checks of ``checks`` (a check in one of
    those areas once), or every check when neither names anything."""
    declared = declared_checks()
    chosen = [declared[ident] for ident in dict.fromkeys(checks) if declared[ident].area not in only]
    paths = [str(area_path(area)) for area in only] + [f"{check.path}::{check.function}" for check in chosen]
    return paths or [str(CHECKS_DIR)]


def tell(line: str) -> None:
    """Print ``line`` on stdout before the run; a reader that went away (``run | head -1``) does not
    stop the audit: it runs, writes and seals its results, and its verdict line, which fails to be
    written in turn, ends the command with 141 (:func:`harness.cli.main`)."""
    with contextlib.suppress(BrokenPipeError):
        print(line, flush=True)


def run_checks(inputs: AuditInputs, report_dir: Path, *, only: Sequence[str] = (),
               checks: Sequence[str] = (), signing_key: Path | None = None, against: Path | None = None,
               require_attestations: bool = False, then: Callable[[], None] | None = None) -> int:
    """Run the checks with pytest, in this process, on the loaded inputs; return the exit code.

    ``then`` runs after the checks, however they ended, and before the verdict line (the
    reference service's take-down: its own lines come before the verdict). A gate that is
    neither pass, fail nor error (nothing verified; attestations missing) is said in one
    line on stderr, as is a run that wrote no results. The last line on stdout is
    the verdict: the gate's headline, or why the exit code is not the gate's.
    """
    from harness.progress import LiveProgress  # with pytest and rich: only for a run

    # The take-down starts as soon as the run asks nothing more of the service, and runs while
    # the report is rendered and sealed; not when the bundle is signed with a PKCS#11 key,
    # which may live on the reference service's own HSM.
    early = (_EarlyTakeDown(then) if then is not None and not str(signing_key or "").startswith("pkcs11:")
             else None)
    try:
        with LiveProgress() as live:
            code, headline = _run_pytest(inputs, report_dir, live, only=only, checks=checks,
                                         signing_key=signing_key, against=against,
                                         require_attestations=require_attestations,
                                         service_released=early.start if early is not None else None)
    finally:
        if early is not None and early.started:
            early.finish()
        elif then is not None:
            then()
    print(f"votriz-audit: verdict {printable(headline)}", flush=True)
    return code


class _EarlyTakeDown:
    """``then`` (the reference service's take-down), run in a thread of its own from the moment
    the run releases the service (:attr:`PreloadedInputs.service_released`); its line is said
    when it is joined, where ``then`` would have said it, and its error raised there."""

    def __init__(self, then: Callable[[], None]) -> None:
        self._then = then
        self._thread: threading.Thread | None = None
        self._lines: list[str] = []
        self._error: BaseException | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="votriz-take-down", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        _DEFERRED.lines = self._lines
        try:
            self._then()
        except BaseException as exc:  # raised again where the run waits for it
            self._error = exc

    def finish(self) -> None:
        """Wait for the take-down; say its line; raise what it raised."""
        assert self._thread is not None
        self._thread.join()
        for line in self._lines:
            tell(line)
        if self._error is not None:
            raise self._error


#: Set in :class:`_EarlyTakeDown`'s thread: :func:`take_down` collects its line there instead of
#: drawing progress beside the run's own output.
_DEFERRED = threading.local()


def _run_pytest(inputs: AuditInputs, report_dir: Path, live: LiveProgress, *, only: Sequence[str],
                checks: Sequence[str], signing_key: Path | None, against: Path | None,
                require_attestations: bool,
                service_released: Callable[[], None] | None = None) -> tuple[int, str]:
    """The exit code and the verdict of one run of the checks, in words (pytest prints no summary
    of its own: ``checks.ini``)."""
    # pytest and the plugin load only for a run: `verify` and the other commands start without them.
    import pytest

    from harness.plugin import plugin_args
    from harness.progress import CheckProgress
    from harness.run_state import PreloadedInputs

    args = [*selected_paths(only, checks), "-c", str(CHECKS_INI), "--rootdir", str(CHECKS_DIR.parent),
            *plugin_args(), "--votriz-target", str(inputs.profile_path),
            "--votriz-report-dir", str(report_dir)]
    if signing_key is not None:
        args += ["--votriz-signing-key", str(signing_key)]
    if against is not None:
        args += ["--votriz-against", str(against)]
    if require_attestations:
        args.append("--votriz-require-attestations")
    preloaded = PreloadedInputs(inputs, service_released=service_released)
    code = pytest.main(args, plugins=[preloaded, CheckProgress(live)])
    if code == pytest.ExitCode.USAGE_ERROR:
        return EXIT_USAGE, f"exit {EXIT_USAGE}: the checks could not start (said above); nothing was judged"
    results_path = report_dir / "results.json"
    if not results_path.exists():
        if preloaded.bundle_problems:
            print(f"votriz-audit: evidence bundle incomplete: {printable(preloaded.bundle_problems[0])}",
                  file=sys.stderr)
            return EXIT_INCOMPLETE, f"exit {EXIT_INCOMPLETE}: evidence bundle incomplete: no results written"
        print(f"votriz-audit: no results were written (pytest exit {int(code)})", file=sys.stderr)
        return EXIT_ERROR, f"exit {EXIT_ERROR}: no results were written; nothing was verified"
    results = json.loads(results_path.read_text())
    summary = results["summary"]
    gate = int(summary["exit_code"])
    said = f"{str(summary['gate']).upper()}, exit {gate}"
    headline = f"{said} ({summary['scope']}): {summary['reason']}"
    leaks_path = report_dir / "LEAKS.txt"
    if leaks_path.exists():
        return EXIT_LEAK, (f"exit {EXIT_LEAK}: a secret the run knows is in its own output (LEAKS.txt "
                           f"names where), do not distribute it; the gate alone said {said}")
    if preloaded.bundle_problems:
        # Whatever the gate says, a bundle that cannot be handed over is no release evidence.
        problem = printable(preloaded.bundle_problems[0])
        print(f"votriz-audit: evidence bundle incomplete: {problem} (the gate "
              f"said exit {gate}: {summary.get('headline', summary['gate'])})", file=sys.stderr)
        return EXIT_INCOMPLETE, (f"exit {EXIT_INCOMPLETE}: evidence bundle incomplete; "
                                 f"the gate alone said {said}")
    if summary["gate"] in ("vacuous", "unattested"):
        print(f"votriz-audit: {summary['reason']}", file=sys.stderr)
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and gate == EXIT_PASS:
        # pytest itself did not complete (a module failed to load, an internal error):
        # whatever results.json says, nothing may pass on an incomplete run.
        print(f"votriz-audit: the run did not complete (pytest exit {int(code)})", file=sys.stderr)
        return EXIT_ERROR, f"exit {EXIT_ERROR}: the run did not complete; the gate alone said {said}"
    return gate, headline


def stand_up(stack: ReferenceBackend, state_dir: Path, faults: Sequence[str],
             stream: TextIO | None = None) -> StartedStack:
    """``stack.up`` with a live status and its elapsed time (on ``stream``, default stdout), which
    ends in one line saying how long it took; the stand-up's own errors pass through."""
    from harness.progress import LiveProgress

    with LiveProgress(stream) as live, live.stage(f"standing up the reference service ({stack.name})"):
        return stack.up(state_dir, faults)


def take_down(stack: ReferenceBackend, state_dir: Path) -> None:
    """``stack.down`` with a live status, as :func:`stand_up` (in :class:`_EarlyTakeDown`'s thread,
    only the line that ends it, said when the run joins it)."""
    from harness.progress import LiveProgress

    what = f"taking the reference service down ({stack.name})"
    lines: list[str] | None = getattr(_DEFERRED, "lines", None)
    if lines is not None:
        started, ok = time.monotonic(), False
        try:
            stack.down(state_dir)
            ok = True
        finally:
            lines.append(f"votriz-audit: {what}: {'done' if ok else 'stopped'} after "
                         f"{time.monotonic() - started:.1f} s")
        return
    with LiveProgress() as live, live.stage(what):
        stack.down(state_dir)
