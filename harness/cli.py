"""The ``votriz-audit`` command line.

Exit codes of ``run`` (a release gate reads these; the promise is the unit):

====  =====================================================================
0     no promise broken, nothing unverifiable, and at least one promise was
      verified by a check (the rest N/A, MANUAL or WAIVED); a partial run
      (``--only``) says "partial: N of M promises" but can still exit 0
1     at least one check FAILED: a promise is broken
2     no FAIL, but some check could not verify (ERROR); or nothing was
      verified (no check collected, all deselected, or every check N/A or
      MANUAL); or, with ``--require-attestations`` (policy
      ``gate.require_attestations``), a promise needs an attestation and has
      none; or the reference service could not be started
3     usage error: bad command line, profile, policy, waiver file or report
      dir; an input that is not a regular file or is too large; a secret
      file that is a symbolic link or readable by group/others; a signing
      key that cannot sign; a missing trust anchor, secret file or
      attestation; a report dir without space. All checked before any check
      runs (before the reference service is stood up, for the outputs)
4     the harness found one of the secrets it knows in its own output; the
      output must not be distributed
5     the evidence bundle is incomplete: results or report not written
      (e.g. disk full), or the bundle not signed; one line says what, and
      what the gate's verdict was
====  =====================================================================

The report directory is created 0700 and its files are left 0600: evidence
about a system's security is for the auditor. A team that shares reports
grants access after the run (``chmod -R g+rX DIR``); the signature covers
the files' content, not their modes.

``diff OLD NEW`` exits 1 on a regression: a finding or promise that newly
FAILs, newly cannot be verified, or was judged in OLD and is gone in NEW.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import getpass
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from harness import __version__, init_profile
from harness.checkdir import ACCESS, CHECKS_DIR, check_areas, declared_checks
from harness.cli_output import add_examples, aligned, checks_document
from harness.cli_run import (
    CHECKS_INI,
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_INCOMPLETE,
    EXIT_LEAK,
    EXIT_PASS,
    EXIT_USAGE,
    run_checks,
    selected_paths,
    stand_up,
    take_down,
    tell,
)
from harness.inputs import AuditInputs, AuditRules, InputError, load_inputs, load_rules
from harness.policy import PolicyError
from harness.preflight import PreflightError, check_outputs, check_profile, signing_key_problems
from harness.profile import ProfileError, SecretSource, TargetProfile
from harness.reference import ReferenceBackend, ReferenceNotInstalled, all_faults, reference_backends
from harness.report import commands as report_commands
from harness.report.seal import copy_unsealed
from harness.report_directory import create_private, refused_report_dir
from harness.results import results_schema

#: Standard output was closed before the command finished writing (``votriz-audit schema | head -1``):
#: the exit status a shell reports for a process ended by SIGPIPE, 128 + 13, so a pipeline under
#: ``set -o pipefail`` sees the output was cut short, as it would for ``cat``.
EXIT_CLOSED_OUTPUT = 141
#: The command line's public names; the exit codes and the run's parts live in :mod:`harness.cli_run`.
__all__ = ["CHECKS_DIR", "CHECKS_INI", "EXIT_CLOSED_OUTPUT", "EXIT_ERROR", "EXIT_FAIL", "EXIT_INCOMPLETE",
           "EXIT_LEAK", "EXIT_PASS", "EXIT_USAGE", "UsageError", "ask_prompted_secrets", "main",
           "selected_paths"]
#: The module docstring's table of exit codes, shown by ``--help`` and ``run --help``.
EXIT_CODES_HELP = (__doc__ or "").split("\n", 2)[2].strip()
CLOSED_OUTPUT_HELP = (f"{EXIT_CLOSED_OUTPUT}   standard output was closed early "
                      f"(`votriz-audit schema | head -1`):\n      the command stops quietly, as one "
                      f"ended by SIGPIPE would")
DESCRIPTION = ("Audit whether a running system keeps the security promises of its published "
               "Encryption page, and seal the evidence in a report an auditor can re-check.")
DEFAULT_STATE_DIR = Path(".state")
INIT_EXIT_CODES = ("exit codes: 0 the draft was written (each '# FILL IN' line says what to add); "
                   f"{EXIT_USAGE} nothing\nwritten: no Docker engine or no such Compose project, or FILE "
                   "exists (--force replaces it)")
STATE_DIR_HELP = "state directory of the reference service (default .state/BACKEND)"


class UsageError(Exception):
    """A bad command line or input file: one line, exit code 3."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="votriz-audit", description=DESCRIPTION,
                     epilog=f"{EXIT_CODES_HELP}\n\n{CLOSED_OUTPUT_HELP}",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"votriz-audit {__version__}")
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="audit a target (or stand up the reference service and audit it)",
                         epilog=f"{EXIT_CODES_HELP}\n\n{CLOSED_OUTPUT_HELP}",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    where = run.add_mutually_exclusive_group()
    where.add_argument("--target", type=Path, metavar="PROFILE",
                       help="audit this running system (read-only apart from canary data)")
    where.add_argument("--backend", choices=["local", "docker"],
                       help="stand up the reference service on this backend, audit it, tear it down "
                            "(without it or --target: docker where it can run, else local)")
    run.add_argument("--report-dir", type=Path, metavar="DIR",
                     help="where to write results (default reports/<UTC time>; must be new or empty)")
    run.add_argument("--only", action="append", metavar="AREA", default=[],
                     help=f"run only this promise area (repeatable): {', '.join(check_areas())}")
    run.add_argument("--check", action="append", metavar="ID", default=[],
                     help="run only this check (repeatable; with --only: these and the areas' checks); "
                          "`votriz-audit checks` lists them")
    run.add_argument("--policy", type=Path, metavar="FILE",
                     help="audit policy (TOML, the bundled one by default: fixtures/policy/default.toml)")
    run.add_argument("--waivers", type=Path, metavar="FILE", help="waiver file (TOML)")
    run.add_argument("--signing-key", type=Path, metavar="FILE|URI",
                     help="Ed25519 or ECDSA P-256 private key (PEM) or pkcs11: URI of a key in your "
                          "token, sealing the evidence bundle "
                          "(default: a throwaway key, which verify does not trust)")
    run.add_argument("--against", type=Path, metavar="OLD",
                     help="an earlier report directory: the report shows what changed")
    run.add_argument("--require-attestations", action="store_true",
                     help="exit 2 when a promise needs a human attestation and the profile names none "
                          "(policy key gate.require_attestations)")
    run.add_argument("--jobs", type=int, metavar="N",
                     help="worker processes reading each large table's token and hash columns "
                          "(0: one per core; overrides the policy's scan.jobs)")
    run.add_argument("--sample", type=int, metavar="N",
                     help="judge a uniform random sample of about N rows per table, not every row; the "
                          "verdicts say SAMPLED and the bound it supports (policy scan.sample_rows)")
    run.add_argument("--fault", action="append", metavar="NAME", default=[],
                     help="with --backend: start the reference service with this fault (repeatable)")
    run.add_argument("--state-dir", type=Path, metavar="DIR",
                     help=STATE_DIR_HELP)
    run.add_argument("--keep-up", action="store_true",
                     help="with --backend: leave the reference service running after the audit")

    up = sub.add_parser("up", help="start the reference service and write its target profile")
    up.add_argument("--backend", choices=["local", "docker"], default=None,
                    help="default: docker where an engine answers (as for run), else local")
    up.add_argument("--fault", action="append", metavar="NAME", default=[],
                    help="break one promise (repeatable); see `votriz-audit faults`")
    up.add_argument("--state-dir", type=Path, metavar="DIR", help=STATE_DIR_HELP)

    down = sub.add_parser("down", help="stop the reference service and remove its data")
    down.add_argument("--backend", choices=["local", "docker"], default=None,
                      help="default: whichever backend made the state directory (without "
                           "--state-dir: every default one that exists)")
    down.add_argument("--state-dir", type=Path, metavar="DIR", help=STATE_DIR_HELP)

    sub.add_parser("faults", help="list the reference service's fault switches: the promises each breaks "
                                  "and the backends that can apply it")
    checks = sub.add_parser("checks", help="list the checks: the promises each verifies and the access "
                                           "it needs on the target")
    checks.add_argument("--json", action="store_true", help="one JSON document, for machines")

    cal = sub.add_parser("calibrate", help="run the reference service with each fault, and with each "
                                           "violation applied while it runs: does its check fail?")
    cal.add_argument("--backend", choices=["local", "docker"], default=None,
                     help="default: docker where an engine answers (as for run), else local")
    cal.add_argument("--fault", action="append", metavar="NAME", default=[],
                     help="calibrate this fault (repeatable; with neither --fault nor --violation: "
                          "every fault and every violation of the backend)")
    cal.add_argument("--violation", action="append", metavar="NAME", default=[],
                     help="calibrate this violation, applied to the running service after up (repeatable)")
    cal.add_argument("--out", type=Path, metavar="DIR",
                     help="where runs and calibration.json go (default reports/calibration-<UTC time>)")
    sub.add_parser("schema", help="print the JSON schema of results.json")
    init = sub.add_parser("init", help="write a draft target profile of a deployment on this host, from what "
                                       "runs there (a Compose project, or local processes)",
                          epilog=INIT_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    init_profile.configure_parser(init)
    report_commands.add_subcommands(sub)
    add_examples(sub.choices)
    return parser


def _state_dir(args: argparse.Namespace, backend: str) -> Path:
    return (args.state_dir or DEFAULT_STATE_DIR / backend).resolve()


def _backends() -> dict[str, ReferenceBackend]:
    """The reference service's backends (entry points); UsageError saying how to install it if absent."""
    try:
        return reference_backends()
    except ReferenceNotInstalled as exc:
        raise UsageError(str(exc)) from None


def _backend_module(backend: str) -> ReferenceBackend:
    """The reference service's backend: ``up``, ``down``, ``StackError`` (one interface, every backend)."""
    backends = _backends()
    if backend not in backends:
        raise UsageError(f"unknown backend {backend}; installed: {', '.join(sorted(backends))}")
    return backends[backend]


def _check_report_dir(report_dir: Path) -> None:
    if refused := refused_report_dir(report_dir, "--report-dir"):
        raise UsageError(refused)
    try:
        create_private(report_dir)  # evidence about a system's security is for the auditor
        probe = report_dir / ".writable"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{report_dir}: cannot write there: {exc.strerror}") from None


def _load_rules(args: argparse.Namespace) -> AuditRules:
    """Load policy, catalogue and waivers, and check ``--only``, before anything starts, so a bad
    one costs nothing (the loaded rules are the run's: nothing loads them again)."""
    try:
        rules = load_rules(args.policy, args.waivers)
        # The command line's --jobs and --sample override the policy file's [scan].
        rules = dataclasses.replace(rules, policy=rules.policy.with_scan(jobs=args.jobs,
                                                                         sample_rows=args.sample))
    except (InputError, PolicyError) as exc:
        raise UsageError(str(exc)) from None
    unknown = [area for area in args.only if area not in check_areas()]
    if unknown:
        raise UsageError(f"unknown area(s) {', '.join(unknown)}; known: {', '.join(check_areas())}")
    known_checks = declared_checks()
    unknown = [ident for ident in args.check if ident not in known_checks]
    if unknown:
        raise UsageError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(known_checks)}")
    return rules


def ask_prompted_secrets(profile: TargetProfile, ask: Callable[[str], str] = getpass.getpass) -> list[str]:
    """Ask for every ``prompt = true`` secret of the profile once, now, before the run; return the
    keys asked for. The answers stay in memory, in the profile's secret sources, so that no
    check asks again (:meth:`harness.profile.SecretSource.read`).

    Raises:
        UsageError: no answer could be read (no terminal), or it was empty.
    """
    sources: list[tuple[str, SecretSource | None]] = [
        ("database.password", profile.database.password if profile.database else None),
        ("hsm.pin", profile.hsm.pin if profile.hsm else None),
        ("redis.password", profile.redis.password if profile.redis else None)]
    asked = []
    for key, source in sources:
        if source is None or not source.prompt or source.answered:
            continue
        try:
            answer = source.read(f"{key} of {profile.name}", ask=ask)
        except (EOFError, OSError, ProfileError):
            raise UsageError(f"{key}: prompt = true, but no answer could be read (no terminal?); "
                             f"give {key}.file instead") from None
        if not answer:
            raise UsageError(f"{key}: prompt = true, but the answer was empty")
        asked.append(key)
    return asked


def _load_target(profile_path: Path, rules: AuditRules) -> AuditInputs:
    """Load the profile and check the files it names (:func:`harness.preflight.check_profile`)."""
    try:
        inputs = load_inputs(profile_path, rules)
        check_profile(inputs.profile, profile_path)
    except (InputError, PreflightError) as exc:
        raise UsageError(str(exc)) from None
    return inputs


def _prepare_outputs(report_dir: Path, signing_key: Path | None, rules: AuditRules) -> None:
    """Create the report directory (0700) and check it and the signing key (a token within the
    policy's request deadline), before the run."""
    key_problems = signing_key_problems(signing_key, (rules.policy.timeouts.request_s, "timeouts.request_s"))
    if key_problems:
        raise UsageError("\n".join(key_problems))
    _check_report_dir(report_dir)
    try:
        check_outputs(report_dir, None)
    except PreflightError as exc:
        raise UsageError(str(exc)) from None


def _default_report_dir() -> Path:
    return Path("reports") / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _cmd_run(args: argparse.Namespace) -> int:
    rules = _load_rules(args)
    report_dir = (args.report_dir or _default_report_dir()).resolve()
    if args.target is not None:
        inputs = _load_target(args.target, rules)
        if args.fault or args.keep_up or args.state_dir:
            raise UsageError("--fault, --keep-up and --state-dir only apply when standing up the "
                             "reference service (without --target)")
        _prepare_outputs(report_dir, args.signing_key, rules)
        ask_prompted_secrets(inputs.profile)
        tell(f"votriz-audit: auditing {args.target} -> {report_dir}")
        return run_checks(inputs, report_dir, only=args.only, checks=args.check,
                          signing_key=args.signing_key, against=args.against,
                          require_attestations=args.require_attestations)
    backend = _chosen_backend(args)
    stack = _backend_module(backend)
    _check_fault_names(args.fault, backend)
    _prepare_outputs(report_dir, args.signing_key, rules)
    state_dir = _state_dir(args, backend)
    try:
        info = stand_up(stack, state_dir, args.fault)
    except stack.StackError as exc:
        print(f"votriz-audit: could not start the reference service ({backend}): {exc}", file=sys.stderr)
        if args.backend is None and backend == "docker":
            print("votriz-audit: --backend local runs it as local processes instead", file=sys.stderr)
        if state_dir.exists():
            print(f"votriz-audit: its logs are kept in {state_dir}; `votriz-audit down --backend {backend} "
                  f"--state-dir {state_dir}` removes them", file=sys.stderr)
        return EXIT_ERROR
    def down() -> None:
        if not args.keep_up:
            take_down(stack, state_dir)

    try:
        tell(f"votriz-audit: reference service up ({backend}), auditing -> {report_dir}")
        inputs = _load_target(info.profile_path, rules)
        ask_prompted_secrets(inputs.profile)
    except BaseException:
        down()
        raise
    # Taken down after the checks and before the verdict, which stays the last line.
    return run_checks(inputs, report_dir, only=args.only, checks=args.check, signing_key=args.signing_key,
                      against=args.against, require_attestations=args.require_attestations, then=down)


def default_backend() -> tuple[str, str]:
    """``docker`` where its backend says it can run here (an engine answers, root, mmdebstrap),
    else ``local``; and why (the docker backend's reason)."""
    docker = _backends().get("docker")
    if docker is None:
        return "local", "the reference service has no docker backend"
    available = docker.availability()
    return ("docker" if available.ok else "local"), available.reason


def _check_fault_names(names: Sequence[str], backend: str) -> None:
    faults = {fault.name: fault for fault in all_faults(_backends().values())}
    unknown = [name for name in names if name not in faults]
    if unknown:
        raise UsageError(f"unknown fault(s) {', '.join(unknown)}; `votriz-audit faults` lists them")
    elsewhere = [name for name in names if backend not in faults[name].backends]
    if elsewhere:
        raise UsageError(f"fault(s) {', '.join(elsewhere)} cannot be applied by the {backend} backend "
                         f"(--backend {faults[elsewhere[0]].backends[0]})")


def _chosen_backend(args: argparse.Namespace) -> str:
    """``--backend``, or :func:`default_backend`'s choice, said on stderr."""
    if args.backend is not None:
        return str(args.backend)
    backend, why = default_backend()
    print(f"votriz-audit: backend {backend} ({why}; --backend chooses)", file=sys.stderr)
    return backend


def state_dir_backend(state_dir: Path) -> str | None:
    """The backend whose ``up`` made ``state_dir`` (by the marker it leaves), or None."""
    for backend in _backends().values():
        if (state_dir / backend.marker).exists():
            return backend.name
    return None


def _cmd_up(args: argparse.Namespace) -> int:
    backend = _chosen_backend(args)
    stack = _backend_module(backend)
    _check_fault_names(args.fault, backend)
    try:
        # The profile's path is the output (`PROFILE=$(votriz-audit up)`): the progress goes to stderr.
        info = stand_up(stack, _state_dir(args, backend), args.fault, sys.stderr)
    except stack.StackError as exc:
        print(f"votriz-audit: could not start the reference service ({backend}): {exc}",
              file=sys.stderr)
        return EXIT_ERROR
    print(info.profile_path)
    return EXIT_PASS


def _cmd_down(args: argparse.Namespace) -> int:
    _backends()  # without the reference service there is nothing to take down: say how to install it
    if args.backend is not None:
        pairs = [(str(args.backend), _state_dir(args, args.backend))]
    elif args.state_dir is not None:
        state_dir = args.state_dir.resolve()
        made_by = state_dir_backend(state_dir)
        if made_by is None:
            if state_dir.exists() and any(state_dir.iterdir()):
                raise UsageError(f"{state_dir} was not made by `votriz-audit up`: not removing it")
            return EXIT_PASS
        pairs = [(made_by, state_dir)]
    else:
        pairs = [(backend, _state_dir(args, backend)) for backend in ("docker", "local")
                 if _state_dir(args, backend).exists()]
    for backend, state_dir in pairs:
        stack = _backend_module(backend)
        try:
            stack.down(state_dir)
        except stack.StackError as exc:
            print(f"votriz-audit: could not take down {state_dir} ({backend}): {exc}",
                  file=sys.stderr)
            return EXIT_ERROR
        print(f"votriz-audit: {backend} stack in {state_dir} is down", file=sys.stderr)
    return EXIT_PASS


def _cmd_faults(args: argparse.Namespace) -> int:
    rows = [("FAULT", "BACKENDS", "BREAKS", "WHAT THE SERVICE DOES WRONG")]
    rows += [(fault.name, ",".join(fault.backends), ",".join(fault.claims), fault.description)
             for fault in all_faults(_backends().values())]
    for line in aligned(rows):
        print(line)
    return EXIT_PASS


def _cmd_checks(args: argparse.Namespace) -> int:
    declared = declared_checks()
    if args.json:
        print(json.dumps(checks_document(declared), indent=2))
        return EXIT_PASS
    rows = [("CHECK", "NEEDS", "VERIFIES")]
    rows += [(check.check_id, ",".join(check.access), ", ".join(check.claims)) for check in declared.values()]
    for line in aligned(rows):
        print(line)
    print()
    for line in aligned([(f"{kind}:", meaning) for kind, meaning in ACCESS.items()]):
        print(line)
    print(f"{len(declared)} checks; `votriz-audit run --check ID` runs one, `--only AREA` an area")
    return EXIT_PASS


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from harness.calibrate import CLEAN, calibrate

    backend = _chosen_backend(args)
    stack = _backend_module(backend)
    _check_fault_names(args.fault, backend)
    offered = [violation.name for violation in stack.violations()]
    unknown = [name for name in args.violation if name not in offered]
    if unknown:
        raise UsageError(f"the {backend} backend has no violation {', '.join(unknown)}; "
                         f"it has: {', '.join(offered) or 'none'}")
    out = (args.out or Path("reports") / dt.datetime.now(dt.UTC).strftime("calibration-%Y%m%dT%H%M%SZ"))
    _check_report_dir(out.resolve())
    # OUT holds the stacks' state directories (OUT/state/NAME), which the local backend's
    # unprivileged service user must reach; each run's evidence (OUT/runs/NAME) stays 0700.
    out.resolve().chmod(0o755)
    # Nothing selected: every fault and every violation; otherwise exactly what was named.
    chosen = bool(args.fault or args.violation)
    calibration = calibrate(out.resolve(), stack, args.fault if chosen else None,
                            args.violation if chosen else None)
    # The clean run's report shows the matrix: the clean run's bundle is sealed and stays as it is,
    # so its files and the matrix are rendered and sealed anew in OUT/matrix.
    clean = out.resolve() / "runs" / CLEAN
    if (clean / "results.json").exists():
        matrix = copy_unsealed(clean, out.resolve() / "matrix")
        (matrix / "calibration.json").write_text((out / "calibration.json").read_text())
        report_commands.finalize(matrix, None)
        print(f"votriz-audit: detection matrix in {matrix / 'report.html'}")
    missed = calibration.missed
    print(f"votriz-audit: {len(calibration.rows) - len(missed)} of {len(calibration.rows)} expectations met "
          f"({len(calibration.of_kind('fault'))} fault, {len(calibration.of_kind('violation'))} violation, "
          f"{len(calibration.of_kind('clean'))} clean)"
          + (f"; missed: {', '.join(f'{r.fault}->{r.expected_check}' for r in missed)}" if missed else ""))
    clean_failures = [row for row in calibration.unexpected_failures if row.kind == "clean"]
    for row in calibration.unexpected_failures:
        print(f"votriz-audit: {row.kind} {row.fault}: also FAILED {', '.join(row.other_failures)}")
    return EXIT_FAIL if missed or clean_failures else EXIT_PASS


def _cmd_init(args: argparse.Namespace) -> int:
    return init_profile.run(args)


def _cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(results_schema(), indent=2))
    return EXIT_PASS


COMMANDS = {"run": _cmd_run, "up": _cmd_up, "down": _cmd_down, "faults": _cmd_faults,
            "checks": _cmd_checks, "calibrate": _cmd_calibrate, "schema": _cmd_schema, "init": _cmd_init,
            **report_commands.COMMANDS}


def _interrupted(signum: int, _frame: object) -> None:
    """SIGTERM or SIGHUP (a pipeline cancelled, a terminal closed) ends a run as Ctrl-C does: the
    running check's clean-up and an operator command's process group go with it."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``votriz-audit``; returns the exit code."""
    previous = ({signum: signal.signal(signum, _interrupted) for signum in (signal.SIGTERM, signal.SIGHUP)}
                if threading.current_thread() is threading.main_thread() else {})
    try:
        return _main(argv)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = _build_parser().parse_args(argv)
        try:
            code = COMMANDS[args.command](args)
        except UsageError as exc:
            print(f"votriz-audit: {exc}", file=sys.stderr)
            code = EXIT_USAGE
        except KeyboardInterrupt:
            print("votriz-audit: interrupted", file=sys.stderr)
            code = EXIT_ERROR
        # Written out here, inside the handler: a pipe closed early fails this flush, not the
        # interpreter's at exit.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as the Python documentation recommends
        # (docs.python.org/3/library/signal.html, "Note on SIGPIPE"): point stdout at devnull so
        # the interpreter's last flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_CLOSED_OUTPUT


if __name__ == "__main__":
    sys.exit(main())
