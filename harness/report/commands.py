"""The report subcommands of ``votriz-audit`` and the end-of-run finalisation.

``harness/cli.py`` wires them in::

    from harness.report import commands as report_commands
    report_commands.add_subcommands(sub)      # after the other sub.add_parser(...) calls
    COMMANDS.update(report_commands.COMMANDS)

Exit codes, as the rest of the CLI: 0 ok, 1 verification failed or regression,
3 usage (not a report directory, bad key file), 4 signing refused because the
directory holds a secret.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.redaction import KnownSecrets
from harness.report.bundle import BundleError, BundleRefused, SignedBundle, sign_bundle, verify
from harness.report.calibration import CalibrationError
from harness.report.diff import diff_dirs, diff_text
from harness.report.html import write_report
from harness.report.layout import ReportDirError, load_results
from harness.report.oscal import OscalUnavailable, write_oscal
from harness.report.sarif import write_sarif

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LEAK = 0, 1, 3, 4


@dataclass(frozen=True)
class Finalized:
    """What :func:`finalize` wrote.

    Attributes:
        report_html, sarif: the rendered report and the SARIF export.
        oscal: the OSCAL export, or None when it was skipped.
        oscal_skipped: why the OSCAL export was skipped, if it was.
        bundle: the signed manifest.
    """

    report_html: Path
    sarif: Path
    oscal: Path | None
    oscal_skipped: str | None
    bundle: SignedBundle


def render_outputs(report_dir: Path, *, known_secrets: KnownSecrets | None = None,
                   against: Path | None = None, now: dt.datetime | None = None
                   ) -> tuple[Path, Path, Path | None, str | None]:
    """Render report.html (with a diff section when ``against`` names an earlier run), the SARIF
    export and the OSCAL export (skipped, with the reason, when compliance-trestle is missing).

    Raises:
        ReportDirError, CalibrationError: the directory's inputs are unusable.
    """
    diff = diff_dirs(against, report_dir) if against is not None else None
    html = write_report(report_dir, diff=diff, known_secrets=known_secrets, now=now)
    run = load_results(report_dir)
    sarif = write_sarif(run, report_dir)
    try:
        return html, sarif, write_oscal(run, report_dir), None
    except OscalUnavailable as exc:
        return html, sarif, None, str(exc)


def finalize(report_dir: Path, known_secrets: KnownSecrets | None, signing_key: Path | None = None, *,
             against: Path | None = None, now: dt.datetime | None = None) -> Finalized:
    """At the end of a run: render report.html, results.sarif and the OSCAL export, then write and
    sign manifest.json (with a throwaway key when ``signing_key`` is None).

    The outputs are rendered even when the run leaked (so the operator can look
    locally), but the bundle is then never signed.

    Raises:
        BundleRefused: LEAKS.txt exists or a known secret appears in any file.
        BundleError: the signing key cannot be used.
        ReportDirError, CalibrationError: the directory's inputs are unusable.
    """
    html, sarif, oscal, skipped = render_outputs(report_dir, known_secrets=known_secrets, against=against,
                                                 now=now)
    bundle = sign_bundle(report_dir, known_secrets=known_secrets, key_path=signing_key, now=now)
    return Finalized(html, sarif, oscal, skipped, bundle)


def _usage(message: str) -> int:
    print(f"votriz-audit: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_report(args: argparse.Namespace) -> int:
    """``report DIR [--against OLD]``: re-render report.html and the exports (does not re-sign)."""
    try:
        html, sarif, oscal, skipped = render_outputs(args.dir, against=args.against)
    except (ReportDirError, CalibrationError) as exc:
        return _usage(str(exc))
    print(html)
    print(sarif)
    print(oscal if oscal else f"OSCAL export skipped: {skipped}")
    if (args.dir / "manifest.json").exists():
        print("note: the files changed since the bundle was signed; run `votriz-audit sign DIR` again",
              file=sys.stderr)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    """``verify DIR [--public-key F]``: exit 0 when every file matches the signed manifest."""
    if not args.dir.is_dir():
        return _usage(f"{args.dir}: not a directory")
    if args.public_key is not None and not args.public_key.is_file():
        return _usage(f"{args.public_key}: no such public key file")
    report = verify(args.dir, args.public_key)
    print(report.text(), end="")
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_diff(args: argparse.Namespace) -> int:
    """``diff OLD NEW``: exit 1 when NEW regressed (a new FAIL, a newly unverifiable check, or a
    finding or promise of OLD that is gone in NEW)."""
    try:
        diff = diff_dirs(args.old, args.new)
    except ReportDirError as exc:
        return _usage(str(exc))
    print(diff_text(diff), end="")
    return EXIT_FAILED if diff.regression else EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    """``sign DIR [--key F]``: (re)write and sign manifest.json.

    The run's secrets are gone by now, so only LEAKS.txt can refuse here; the
    end-of-run :func:`finalize` also scans with the run's known secrets.
    """
    if not args.dir.is_dir():
        return _usage(f"{args.dir}: not a directory")
    try:
        bundle = sign_bundle(args.dir, key_path=args.key)
    except BundleRefused as exc:
        print(f"votriz-audit: {exc}", file=sys.stderr)
        for place in exc.places:
            print(f"  {place}", file=sys.stderr)
        return EXIT_LEAK
    except (BundleError, ReportDirError) as exc:
        return _usage(str(exc))
    print(f"{bundle.manifest_path}: {len(bundle.manifest.files)} files, signed "
          f"({'THROWAWAY key, public key in ' if bundle.throwaway else 'public key in '}"
          f"{bundle.public_key_path.name})")
    return EXIT_OK


Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Handler] = {"report": cmd_report, "verify": cmd_verify, "diff": cmd_diff,
                                "sign": cmd_sign}


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``report``, ``verify``, ``diff`` and ``sign`` to the CLI's subparsers.

    Each parser also gets ``handler`` as a default, for a CLI that dispatches on it.
    """
    report = subparsers.add_parser("report", help="re-render report.html, SARIF and OSCAL from a report dir")
    report.add_argument("dir", type=Path, metavar="DIR")
    report.add_argument("--against", type=Path, metavar="OLD",
                        help="an earlier report dir: add a 'compared with an earlier run' section")
    report.set_defaults(handler=cmd_report)

    check = subparsers.add_parser("verify", help="check a report dir against its signed manifest")
    check.add_argument("dir", type=Path, metavar="DIR")
    check.add_argument("--public-key", type=Path, metavar="FILE",
                       help="Ed25519 public key (PEM) you trust; default: the one next to the manifest")
    check.set_defaults(handler=cmd_verify)

    diff = subparsers.add_parser("diff", help="compare two report dirs; exit 1 on a regression")
    diff.add_argument("old", type=Path, metavar="OLD")
    diff.add_argument("new", type=Path, metavar="NEW")
    diff.set_defaults(handler=cmd_diff)

    sign = subparsers.add_parser("sign", help="write and sign manifest.json for a report dir")
    sign.add_argument("dir", type=Path, metavar="DIR")
    sign.add_argument("--key", type=Path, metavar="FILE",
                      help="Ed25519 private key (PEM); default: a throwaway key, clearly marked")
    sign.set_defaults(handler=cmd_sign)
