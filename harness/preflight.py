"""Preflight: what a run needs from its inputs, checked before it touches the target.

An audit that stands up a stack, rotates keys and then finds it cannot sign its
bundle, or reads its password file only when the fourth database check runs,
has spent the target's time for nothing. ``votriz-audit run`` therefore checks,
before any check runs (and, for the outputs, before standing anything up):

- the signing key: readable, an unencrypted PEM Ed25519 or ECDSA P-256 private key, or a pkcs11: URI;
- the report directory: writable (the command line creates it, 0700) and with
  at least :data:`MIN_FREE_BYTES` free;
- the profile's files: the trust anchor (a PEM certificate), every secret file
  (:func:`harness.safe_files.read_secret_line`: regular, not a symbolic link,
  mode 0600 or stricter, first line not blank), the PKCS#11 module and every
  attestation (regular files).

Each problem is one line naming the file and the key; a run with any of them
exits 3 (usage).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cryptography import x509

from harness.profile import SecretSource, TargetProfile
from harness.report.bundle import BundleError, load_signing_key
from harness.safe_files import Cap, FileRefused, check_file, read_bytes, read_secret_line

#: Free space the report directory needs before a run starts: its evidence, report and
#: exports took 2-12 MB on the reference service; the margin covers a large target.
MIN_FREE_BYTES = 64 << 20
#: A PKCS#11 module is a shared object; its size is only bounded to refuse absurd paths.
MODULE_CAP = 512 << 20


class PreflightError(Exception):
    """An input a run needs is unusable: one line per problem, each naming the file and the key."""


def signing_key_problems(signing_key: Path | None, deadline: tuple[float, str] | None = None) -> list[str]:
    """Why ``signing_key`` cannot sign the bundle (none without a key: a throwaway key signs);
    ``deadline`` (seconds, policy key) bounds each call into a token."""
    if signing_key is None:
        return []
    try:
        load_signing_key(signing_key, deadline)
    except BundleError as exc:
        return [f"--signing-key: {exc}"]
    return []


def report_dir_problems(report_dir: Path, *, min_free: int = MIN_FREE_BYTES) -> list[str]:
    """Why the (existing) report directory cannot take a run's output: not writable, too little space."""
    if not os.access(report_dir, os.W_OK | os.X_OK):
        return [f"{report_dir}: the report directory is not writable"]
    try:
        free = shutil.disk_usage(report_dir).free
    except OSError as exc:
        return [f"{report_dir}: cannot tell the free space of the report directory: {exc.strerror}"]
    if free < min_free:
        return [f"{report_dir}: {free // (1 << 20)} MiB free, the report needs at least "
                f"{min_free // (1 << 20)} MiB"]
    return []


def _secret_problem(key: str, source: SecretSource | None) -> str | None:
    if source is None or source.file is None:
        return None
    try:
        read_secret_line(source.file, key)
    except FileRefused as exc:
        return f"{key}.file: {exc}"
    return None


def _trust_anchor_problem(anchor: Path, key: str = "edge.trust_anchor") -> str | None:
    try:
        data = read_bytes(anchor, "trust anchor", Cap.TOML)
    except FileRefused as exc:
        return f"{key}: {exc}"
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        return f"{key}: {anchor}: holds no PEM certificate"
    return None


def profile_problems(profile: TargetProfile) -> list[str]:
    """Why the files the profile names cannot serve the run, one line each (empty: all usable).

    Reads each secret file to validate it and keeps nothing of its content.
    """
    problems: list[str | None] = []
    if profile.edge.trust_anchor is not None:
        problems.append(_trust_anchor_problem(profile.edge.trust_anchor))
    if profile.database is not None:
        problems.append(_secret_problem("database.password", profile.database.password))
    if profile.redis is not None:
        problems.append(_secret_problem("redis.password", profile.redis.password))
    if profile.hsm is not None:
        problems.append(_secret_problem("hsm.pin", profile.hsm.pin))
        try:
            check_file(profile.hsm.module, "PKCS#11 module", MODULE_CAP)
        except FileRefused as exc:
            problems.append(f"hsm.module: {exc}")
    if profile.mailbox is not None:
        problems.append(_secret_problem("mailbox.password", profile.mailbox.password))
        if profile.mailbox.trust_anchor is not None:
            problems.append(_trust_anchor_problem(profile.mailbox.trust_anchor, "mailbox.trust_anchor"))
    for claim_id, path in profile.attestations.items():
        try:
            check_file(path, f"attestation for {claim_id}", Cap.ATTESTATION)
        except FileRefused as exc:
            problems.append(f"attestations.{claim_id}: {exc}")
    return [problem for problem in problems if problem]


def check_outputs(report_dir: Path, signing_key: Path | None) -> None:
    """Refuse a run whose bundle could not be signed or written (before anything is stood up).

    Raises:
        PreflightError: one line per problem.
    """
    problems = signing_key_problems(signing_key) + report_dir_problems(report_dir)
    if problems:
        raise PreflightError("\n".join(problems))


def check_profile(profile: TargetProfile, source: Path | str = "profile",
                  signing_key: Path | None = None) -> None:
    """Refuse a profile whose files cannot serve the run, or a signing key that cannot sign
    (before any check runs).

    Raises:
        PreflightError: one line per problem, each of the profile prefixed with ``source``.
    """
    problems = [f"{source}: {problem}" for problem in profile_problems(profile)]
    problems += signing_key_problems(signing_key)
    if problems:
        raise PreflightError("\n".join(problems))
