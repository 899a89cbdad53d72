"""The report subcommands of ``votriz-audit`` and the end-of-run finalisation.

``harness/cli.py`` wires them in::

    from harness.report import commands as report_commands
    report_commands.add_subcommands(sub)      # after the other sub.add_parser(...) calls
    COMMANDS.update(report_commands.COMMANDS)

Exit codes, as the rest of the CLI: 0 ok (``verify``: verified under a key you
named), 1 verification failed or regression, 2 (``verify``) intact but signed by
a key you did not name, 3 usage (not a report directory, bad key file), 4
signing refused because the directory holds a secret.

``verify`` imports only :mod:`harness.report.seal` and what it needs (no pytest,
no report renderer): the rest is imported by the commands that use it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.report.seal import (
    Sealed,
    SignerFacts,
    copy_unsealed,
    is_sealed,
    signer_facts,
    trusted_keys,
    verify,
)
from harness.signing import SigningError

if TYPE_CHECKING:
    from harness.redaction import KnownSecrets

EXIT_OK, EXIT_FAILED, EXIT_UNTRUSTED, EXIT_USAGE, EXIT_LEAK = 0, 1, 2, 3, 4
#: ``verify --help``'s exit codes (SealReport.exit_code and the usage errors).
VERIFY_EXIT_CODES = (f"exit codes:\n"
                     f"{EXIT_OK}     intact and signed by a key you named (intact, with --allow-untrusted)\n"
                     f"{EXIT_FAILED}     not intact: a file changed, added or missing, or a broken seal\n"
                     f"{EXIT_UNTRUSTED}     intact, but signed by a key you did not name\n"
                     f"{EXIT_USAGE}     the directory or a key file cannot be read")


@dataclass(frozen=True)
class Finalized:
    """What :func:`finalize` wrote.

    Attributes:
        report_html, sarif: the rendered report and the SARIF export.
        oscal: the OSCAL export, or None when it was skipped.
        oscal_skipped: why the OSCAL export was skipped, if it was.
        bundle: the seal.
    """

    report_html: Path
    sarif: Path
    oscal: Path | None
    oscal_skipped: str | None
    bundle: Sealed


def render_outputs(report_dir: Path, *, known_secrets: KnownSecrets | None = None,
                   against: Path | None = None, now: dt.datetime | None = None,
                   signer: SignerFacts | None = None) -> tuple[Path, Path, Path | None, str | None]:
    """Render report.html (with a diff section when ``against`` names an earlier run, and the
    fingerprint of ``signer``, the key that will seal the directory), the SARIF export and the
    OSCAL export (skipped, with the reason, when compliance-trestle is missing).

    Raises:
        BundleSealed: the directory is sealed (it is never changed).
        ReportDirError, CalibrationError: the directory's inputs are unusable.
    """
    from harness.report.bundle import BundleSealed
    from harness.report.diff import diff_dirs
    from harness.report.html import write_report
    from harness.report.layout import load_results
    from harness.report.oscal import OscalUnavailable, write_oscal
    from harness.report.sarif import write_sarif

    if is_sealed(report_dir):
        raise BundleSealed(f"{report_dir}: sealed; a sealed directory is never re-rendered")
    diff = diff_dirs(against, report_dir) if against is not None else None
    html = write_report(report_dir, diff=diff, known_secrets=known_secrets, now=now, signer=signer)
    run = load_results(report_dir)
    sarif = write_sarif(run, report_dir)
    try:
        return html, sarif, write_oscal(run, report_dir), None
    except OscalUnavailable as exc:
        return html, sarif, None, str(exc)


def finalize(report_dir: Path, known_secrets: KnownSecrets | None, signing_key: str | Path | None = None,
             *, against: Path | None = None, now: dt.datetime | None = None,
             deadline: tuple[float, str] | None = None) -> Finalized:
    """At the end of a run: render report.html, results.sarif and the OSCAL export, then seal the
    directory (with a throwaway key when ``signing_key`` is None). ``deadline`` (seconds, policy
    key) bounds each call into a PKCS#11 token.

    The key is opened first, so a token that is missing or refuses the PIN costs no rendering.
    The outputs are rendered even when the run leaked (so the operator can look locally), but
    the bundle is then never signed.

    Raises:
        BundleSealed: the directory is already sealed.
        BundleRefused: LEAKS.txt exists or a known secret appears in any file.
        BundleError: the signing key cannot be used.
        ReportDirError, CalibrationError: the directory's inputs are unusable.
    """
    from harness.report.bundle import load_signing_key, sign_bundle
    from harness.signing import throwaway_signer

    signer = load_signing_key(signing_key, deadline) if signing_key is not None else throwaway_signer()
    html, sarif, oscal, skipped = render_outputs(report_dir, known_secrets=known_secrets, against=against,
                                                 now=now, signer=signer_facts(signer))
    bundle = sign_bundle(report_dir, known_secrets=known_secrets, signer=signer, now=now)
    return Finalized(html, sarif, oscal, skipped, bundle)


def _usage(message: str) -> int:
    print(f"votriz-audit: {message}", file=sys.stderr)
    return EXIT_USAGE


def _new_dir(sealed: Path, out: Path | None, what: str) -> Path:
    """Where a sealed directory's re-rendering or re-signing goes: ``--out`` or a sibling named by time."""
    new = out or sealed.with_name(f"{sealed.name}-{what}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}")
    copy_unsealed(sealed, new)
    print(f"votriz-audit: {sealed} is sealed and stays as it is; {what} into {new}", file=sys.stderr)
    return new


def cmd_report(args: argparse.Namespace) -> int:
    """``report DIR [--against OLD] [--out NEW]``: re-render report.html and the exports; a sealed
    DIR is left as it is and the rendering goes to a new, unsealed directory."""
    from harness.report.calibration import CalibrationError
    from harness.report.layout import ReportDirError
    from harness.report.seal import SealError

    try:
        target = _new_dir(args.dir, args.out, "rerendered") if is_sealed(args.dir) else args.dir
        html, sarif, oscal, skipped = render_outputs(target, against=args.against)
    except (ReportDirError, CalibrationError, SealError, OSError) as exc:
        return _usage(str(exc))
    print(html)
    print(sarif)
    print(oscal if oscal else f"OSCAL export skipped: {skipped}")
    print(f"note: {target} is not sealed; `votriz-audit sign {target}` seals it", file=sys.stderr)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    """``verify DIR [--public-key F]... [--allow-untrusted]``: 0 only when every file is as signed and
    the signature holds under a key named here; 2 intact but signed by another key; 1 otherwise."""
    if not args.dir.is_dir():
        return _usage(f"{args.dir}: not a directory")
    try:
        keys = trusted_keys([*args.public_key, *args.trust_file])
    except SigningError as exc:
        return _usage(str(exc))
    report = verify(args.dir, keys)
    print(report.text(args.allow_untrusted), end="")
    return report.exit_code(args.allow_untrusted)


def cmd_diff(args: argparse.Namespace) -> int:
    """``diff OLD NEW``: exit 1 when NEW regressed (a new FAIL, a newly unverifiable check, or a
    finding or promise of OLD that is gone in NEW)."""
    from harness.report.diff import diff_dirs, diff_text
    from harness.report.layout import ReportDirError

    try:
        diff = diff_dirs(args.old, args.new)
    except ReportDirError as exc:
        return _usage(str(exc))
    print(diff_text(diff), end="")
    return EXIT_FAILED if diff.regression else EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    """``sign DIR [--signing-key F|URI] [--out NEW]``: seal DIR; a sealed DIR is left as it is and a copy of
    its files, without its seal, is sealed in a new directory.

    The run's secrets are gone by now, so only LEAKS.txt can refuse here; the
    end-of-run :func:`finalize` also scans with the run's known secrets.
    """
    from harness.report.bundle import BundleError, BundleRefused, sign_bundle
    from harness.report.layout import ReportDirError
    from harness.report.seal import SealError

    if not args.dir.is_dir():
        return _usage(f"{args.dir}: not a directory")
    try:
        target = _new_dir(args.dir, args.out, "resigned") if is_sealed(args.dir) else args.dir
        bundle = sign_bundle(target, key_path=args.signing_key)
    except BundleRefused as exc:
        print(f"votriz-audit: {exc}", file=sys.stderr)
        for place in exc.places:
            print(f"  {place}", file=sys.stderr)
        return EXIT_LEAK
    except (BundleError, ReportDirError, SealError, OSError) as exc:
        return _usage(str(exc))
    signer = bundle.signer
    print(f"{bundle.seal_path}: {bundle.subjects} files sealed by {signer.fingerprint} "
          f"({'THROWAWAY key, which verify does not trust' if signer.kind == 'throwaway' else signer.kind}; "
          f"public key in {bundle.public_key_path.name})")
    return EXIT_OK


class DeprecatedAlias(argparse.Action):
    """An option's old name: still works, and says on stderr which name replaced it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        new = "--" + self.dest.replace("_", "-")
        print(f"votriz-audit: {option_string} is deprecated; use {new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Handler] = {"report": cmd_report, "verify": cmd_verify, "diff": cmd_diff,
                                "sign": cmd_sign}


def add_subcommands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``report``, ``verify``, ``diff`` and ``sign`` to the CLI's subparsers.

    Each parser also gets ``handler`` as a default, for a CLI that dispatches on it.
    """
    report = subparsers.add_parser("report", help="re-render report.html, SARIF and OSCAL from a report dir "
                                                  "(a sealed one into a new dir)")
    report.add_argument("dir", type=Path, metavar="DIR", help="a report directory written by run")
    report.add_argument("--against", type=Path, metavar="OLD",
                        help="an earlier report dir: add a 'compared with an earlier run' section")
    report.add_argument("--out", type=Path, metavar="NEW",
                        help="where a sealed DIR's re-rendering goes (default: DIR-rerendered-<UTC time>)")
    report.set_defaults(handler=cmd_report)

    check = subparsers.add_parser("verify", help="check a sealed report dir (exit 0: under a key you name)",
                                  epilog=VERIFY_EXIT_CODES)
    check.add_argument("dir", type=Path, metavar="DIR", help="the sealed report directory to check")
    check.add_argument("--public-key", type=Path, metavar="FILE", action="append", default=[],
                       help="a public key (PEM) you trust (repeatable); the bundle's copy is never trusted")
    check.add_argument("--trust-file", type=Path, metavar="FILE", action="append", default=[],
                       help="a file of PEM public keys you trust")
    check.add_argument("--allow-untrusted", action="store_true",
                       help="exit 0 for an intact bundle signed by a key you did not name (says so loudly)")
    check.set_defaults(handler=cmd_verify)

    diff = subparsers.add_parser("diff", help="compare two report dirs; exit 1 on a regression")
    diff.add_argument("old", type=Path, metavar="OLD", help="the earlier report directory")
    diff.add_argument("new", type=Path, metavar="NEW", help="the later report directory")
    diff.set_defaults(handler=cmd_diff)

    sign = subparsers.add_parser("sign", help="seal a report dir (a sealed one: seal a copy in a new dir)")
    sign.add_argument("dir", type=Path, metavar="DIR", help="the report directory to seal")
    sign.add_argument("--signing-key", metavar="FILE|URI",
                      help="Ed25519 or ECDSA P-256 private key (PEM) or pkcs11: URI of a key in your token; "
                           "default: a throwaway key, which verify does not trust")
    sign.add_argument("--key", dest="signing_key", action=DeprecatedAlias, help=argparse.SUPPRESS)
    sign.add_argument("--out", type=Path, metavar="NEW",
                      help="where a sealed DIR's copy is sealed (default: DIR-resigned-<UTC time>)")
    sign.set_defaults(handler=cmd_sign)
