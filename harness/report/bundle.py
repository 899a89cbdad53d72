"""The signed bundle: a report directory sealed by an in-toto statement in a DSSE envelope.

:func:`sign_bundle` summarises the run (:func:`run_predicate`) and seals the
directory with :func:`harness.report.seal.seal`: ``audit.intoto.jsonl`` (every
file with its SHA-256, signed), the signer's public key, ``files.sha256`` and
``VERIFY.md`` (the openssl + sha256sum recipe).

Signing refuses, with a typed error, a directory whose run found one of its
secrets in its own output (``LEAKS.txt``), or in which a scan with the run's
:class:`~harness.redaction.KnownSecrets` finds one now: such a bundle must not
leave the machine, and a signature would only make it look trustworthy. It also
refuses a directory that is already sealed: a sealed directory is never changed.

Keys (:mod:`harness.signing`): an Ed25519 PEM file, a ``pkcs11:`` URI naming a
key in the auditor's own token, or, without either, a **throwaway** key made for
this bundle only, which shows that nothing changed since signing, never who
signed: :func:`harness.report.seal.verify` does not trust it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from harness import __version__
from harness.leaks import scan_for_leaks
from harness.redaction import KnownSecrets
from harness.report.layout import LEAKS_TXT, RESULTS_JSON, load_results
from harness.report.seal import Sealed, SealError, is_sealed, seal
from harness.results import RunResults
from harness.safe_files import Cap, FileRefused, read_bytes
from harness.signing import Signer, SigningError, open_signer


class BundleError(Exception):
    """The bundle cannot be signed: bad key, sealed or unreadable directory (one line, safe to print)."""


class BundleRefused(BundleError):
    """Signing was refused because the directory holds, or may hold, a secret.

    Attributes:
        places: where (file and offset, with the secret's label, never its value).
    """

    def __init__(self, message: str, places: list[str]) -> None:
        super().__init__(message)
        self.places = places


class BundleSealed(BundleError):
    """The directory is already sealed; it is never changed (write a new one)."""


def load_signing_key(signing_key: str | Path, deadline: tuple[float, str] | None = None) -> Signer:
    """The signer ``--signing-key`` names (a PEM file or a ``pkcs11:`` URI), checked now;
    ``deadline`` (seconds, policy key) bounds each call into a token.

    Raises:
        BundleError: the key cannot be used (one line, never the PIN).
    """
    try:
        return open_signer(signing_key, deadline)
    except SigningError as exc:
        raise BundleError(str(exc)) from None


def check_no_secrets(report_dir: Path, known_secrets: KnownSecrets | None) -> None:
    """Refuse a directory whose run reported a leak, or where a known secret appears now.

    Raises:
        BundleRefused: naming the places (labels and offsets only).
    """
    leaks = report_dir / LEAKS_TXT
    if leaks.exists():
        try:
            text = read_bytes(leaks, "leak list", Cap.MANIFEST).decode("utf-8", errors="replace")
        except FileRefused as exc:
            text = f"{LEAKS_TXT} unreadable: {exc.reason}"
        places = [line for line in text.splitlines() if line]
        raise BundleRefused(f"{report_dir}: the run found its own secrets in its output ({LEAKS_TXT}: "
                            f"{len(places)} place(s)); this bundle must not be signed or distributed", places)
    if known_secrets is not None and len(known_secrets):
        places = scan_for_leaks(report_dir, known_secrets)
        if places:
            raise BundleRefused(f"{report_dir}: {len(places)} known secret(s) found in the output "
                                f"(first: {places[0]}); refusing to sign", places)


def _tool_commit() -> str | None:
    """The git commit of the harness's source, when it runs from a checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) == 40 else None


def _policy_digest(run: RunResults) -> dict[str, Any]:
    canonical = json.dumps(run.policy, sort_keys=True, separators=(",", ":"), default=str).encode()
    digest: dict[str, Any] = {"as_recorded_sha256": hashlib.sha256(canonical).hexdigest()}
    path = run.policy.get("path")
    if isinstance(path, str):
        try:
            digest["file_sha256"] = hashlib.sha256(read_bytes(Path(path), "policy", Cap.TOML)).hexdigest()
        except FileRefused:
            digest["file_sha256"] = None
    return digest


def run_predicate(run: RunResults | None) -> dict[str, Any]:
    """The statement's predicate: what a reviewer needs at a glance (no secret: ids and outcomes)."""
    tool = {"name": "votriz-audit", "version": __version__, "commit": _tool_commit()}
    if run is None:
        return {"tool": tool, "run_id": None, "note": f"no {RESULTS_JSON}: not an audit run's directory"}
    return {
        "tool": {**tool, "version": run.tool_version},
        "run_id": run.run_id,
        "target": run.target.get("name"),
        "policy": {"name": run.policy.get("name"), "version": run.policy.get("version"),
                   **_policy_digest(run)},
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat(),
        "gate": {"result": run.summary.gate, "exit_code": run.summary.exit_code,
                 "reason": run.summary.reason, "scope": run.summary.scope,
                 "partial": run.summary.partial},
        "promises": {claim.id: claim.outcome.value if claim.outcome else "NOT_RUN" for claim in run.claims},
        "results_schema_version": run.schema_version,
    }


def sign_bundle(report_dir: Path, *, known_secrets: KnownSecrets | None = None,
                key_path: str | Path | None = None, signer: Signer | None = None,
                now: dt.datetime | None = None) -> Sealed:
    """Seal ``report_dir`` with ``signer`` (or the key ``key_path`` names; a throwaway key without).

    Raises:
        BundleSealed: the directory is already sealed.
        BundleRefused: ``LEAKS.txt`` exists, or a known secret appears in a file.
        BundleError: the key cannot be used, or the directory holds a symbolic link.
    """
    if not report_dir.is_dir():
        raise BundleError(f"{report_dir}: not a directory")
    if is_sealed(report_dir):
        raise BundleSealed(f"{report_dir}: already sealed; a sealed directory is never changed "
                           f"(a new one is written instead)")
    check_no_secrets(report_dir, known_secrets)
    if signer is None:
        signer = load_signing_key(key_path) if key_path is not None else open_signer(None)
    run = load_results(report_dir) if (report_dir / RESULTS_JSON).is_file() else None
    try:
        return seal(report_dir, signer, run_predicate(run), now=now)
    except (SealError, SigningError) as exc:
        raise BundleError(str(exc)) from None
