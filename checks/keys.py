"""Key management: custody in the HSM, no key elsewhere, keys read at start, rotations.

The page promises (section "Key management" and the overview) that every key
of its table lives, namespaced, in hardware-backed storage; that no key is in
source code, configuration files or environment variables on disk; that keys
are read only through the secure storage interface at process start; and that
each key can be rotated as the table says, without service interruption.

Collect, then judge: the ``observe_*`` functions and fixtures do the I/O (HSM
listing, key search, process inspection, canary traffic, operator commands);
the ``*_verdict`` functions are pure and unit-tested on hand-made observations.
Key values read from the HSM are registered in KnownSecrets when read and
never appear in evidence; fingerprints name them.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
import redis
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import BaseModel, ConfigDict, Field
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.evidence import EvidenceRecorder
from harness.keysearch import KeyHit, KeySearcher, KeySearchResult, SearchSettings, search_target
from harness.load import LoadCall, LoadReport, SteadyLoad
from harness.outcomes import ProbeError, Verdict
from harness.policy import Policy
from harness.probes import docker_engine
from harness.probes import hsm as hsm_probe
from harness.probes.api import VotrizApi
from harness.probes.database import DatabaseProbe
from harness.probes.hsm import KeyValues, TokenListing
from harness.probes.outbound import CanaryAccount
from harness.probes.processes import ProcessObservation, observe_docker, observe_local
from harness.profile import Hsm, ProfileError, TargetProfile
from harness.redaction import KnownSecrets, fingerprint
from harness.tomlfile import load_toml_model

KEY_CLASSES_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "policy" / "key-classes.toml"

# Seconds of steady load before the rotation starts (the latency baseline) and
# after it ends (requests served by the rolled workers).
BASELINE_S = 3.0
TAIL_S = 2.0
TIMELINE_BUCKET_S = 0.5
SEED_PARALLELISM = 8
# One seeded channel in WRITE_EVERY receives writes under load; the rest keep
# their seeded tokens, so only the rotation can re-encrypt them.
WRITE_EVERY = 10
PLATFORMS = ("instagram", "linkedin", "twitter", "tiktok", "youtube")


# --------------------------------------------------------------------------
# The data file: key classes of the page's table and their expected labels.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class KeyClass(_Strict):
    """One row of the page's key table.

    Attributes:
        name: the row, in the page's words.
        labels: glob patterns of HSM labels, relative to ``hsm.key_namespace``.
    """

    name: str
    labels: tuple[str, ...]


class ProofLabels(_Strict):
    """Labels (relative to the namespace) and names the proofs and rotations use.

    Attributes:
        jwt_signing: the JWT signing secret.
        token_key_prefix: token-encryption key versions are PREFIX + version.
        db_password, redis_password: the passwords rotated.
        db_app_role: the application's database role.
        roll_grace_s: how long after a rotation command the old secret may still work.
    """

    jwt_signing: str = "jwt-signing"
    token_key_prefix: str = "token-encryption/v"
    db_password: str = "db/password"
    redis_password: str = "redis/password"
    db_app_role: str = "votriz_app"
    roll_grace_s: float = Field(10.0, ge=0)


class KeyClasses(_Strict):
    """``fixtures/policy/key-classes.toml``.

    Attributes:
        schema_version: version of the file format.
        classes: the page's key table.
        proof: labels used to prove which keys are in use and to rotate.
        search: settings of the key search.
    """

    schema_version: int = 1
    classes: tuple[KeyClass, ...] = Field(alias="class")
    proof: ProofLabels = ProofLabels()
    search: SearchSettings = SearchSettings()


def load_key_classes(path: Path | None = None) -> KeyClasses:
    """Read and validate the key classes (the default file when ``path`` is None).

    Raises:
        ProbeError: the file is unreadable or invalid, naming the file and key.
    """
    return load_toml_model(path or KEY_CLASSES_PATH, KeyClasses, what="key classes", error=ProbeError)


# --------------------------------------------------------------------------
# Proofs that the HSM's keys are the ones in use.


@dataclass(frozen=True)
class JwtProof:
    """Whether a JWT the service issued verifies under the HSM's signing secret.

    Attributes:
        verified: True / False; None when it could not be tried.
        detail: what was tried, in one sentence.
    """

    verified: bool | None
    detail: str


@dataclass(frozen=True)
class ChannelRow:
    """One ``channels`` row as the auditor reads it (ciphertexts only).

    Attributes:
        id: the row id.
        brand_id: its brand.
        access_token_enc, refresh_token_enc: the stored Fernet tokens (None if NULL).
    """

    id: int
    brand_id: int
    access_token_enc: str | None
    refresh_token_enc: str | None


@dataclass(frozen=True)
class RingProof:
    """Whether stored channel tokens decrypt under the HSM's token key ring.

    Attributes:
        sampled: rows tried.
        decrypted: rows whose every token decrypted.
        undecryptable: ids of rows with a token that did not.
        detail: one sentence.
    """

    sampled: int
    decrypted: int
    undecryptable: tuple[int, ...]
    detail: str


def prove_jwt(token: str, key: bytes | None, *, label: str, now: float | None = None) -> JwtProof:
    """Verify an HS256 JWT under ``key`` (the HSM's value), without printing either."""
    if key is None:
        return JwtProof(None, f"the HSM value of {label} could not be read")
    try:
        jwt.decode(token, key, algorithms=["HS256"],
                   options={"verify_exp": now is None, "verify_aud": False})
    except jwt.InvalidSignatureError:
        return JwtProof(False, f"a JWT issued by POST /login does not verify under {label}")
    except jwt.InvalidTokenError as exc:
        return JwtProof(False, f"a JWT issued by POST /login is invalid under {label}: "
                               f"{type(exc).__name__}")
    return JwtProof(True, f"a JWT issued by POST /login verifies (HS256) under {label}")


def token_ring(values: KeyValues, prefix: str) -> list[tuple[int, str, bytes]]:
    """(version, label, value) of every token-encryption key, highest version first."""
    pattern = re.compile(re.escape(prefix) + r"([0-9]+)$")
    ring = []
    for label, value in values.items():
        match = pattern.match(label)
        if match:
            ring.append((int(match.group(1)), label, value))
    return sorted(ring, reverse=True)


def fernet_of(values: Sequence[bytes]) -> MultiFernet:
    """A MultiFernet over raw 32-byte keys (the Fernet key is their urlsafe base64)."""
    return MultiFernet([Fernet(base64.urlsafe_b64encode(value)) for value in values])


def _decrypts(fernet: MultiFernet | Fernet, token: str | None) -> bytes | None:
    if token is None:
        return None
    try:
        return fernet.decrypt(token.encode())
    except (InvalidToken, ValueError, TypeError, binascii.Error):
        return None


def prove_token_ring(rows: Sequence[ChannelRow], ring: Sequence[bytes]) -> RingProof:
    """Try every token of ``rows`` under the ring."""
    if not ring:
        return RingProof(len(rows), 0, tuple(r.id for r in rows),
                         "no token-encryption key could be read from the HSM")
    fernet = fernet_of(ring)
    bad = tuple(row.id for row in rows
                if any(tok is not None and _decrypts(fernet, tok) is None
                       for tok in (row.access_token_enc, row.refresh_token_enc)))
    return RingProof(len(rows), len(rows) - len(bad), bad,
                     f"{len(rows) - len(bad)} of {len(rows)} sampled channels rows decrypt under "
                     f"the HSM's token key ring ({len(ring)} version(s))")


# --------------------------------------------------------------------------
# keys.hsm_custody


def _matches(label: str, namespace: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(label, namespace + pattern) for pattern in patterns)


def hsm_custody_verdict(listing: TokenListing, classes: KeyClasses, namespace: str,
                        jwt_proof: JwtProof | None, ring_proof: RingProof | None) -> Verdict:
    """Every key class is on the token, namespaced, TOKEN and PRIVATE; the keys are in use."""
    present: dict[str, list[str]] = {}
    missing: list[str] = []
    problems: list[str] = []
    for key_class in classes.classes:
        labels = [obj.label for obj in listing.objects
                  if _matches(obj.label, namespace, key_class.labels)]
        present[key_class.name] = labels
        if not labels:
            expected = ", ".join(namespace + p for p in key_class.labels)
            missing.append(f"{key_class.name} (expected {expected})")
    for obj in listing.objects:
        in_table = any(_matches(obj.label, namespace, c.labels) for c in classes.classes)
        if in_table and (obj.token is not True or obj.private is not True):
            problems.append(f"{obj.label} has TOKEN={obj.token}, PRIVATE={obj.private}")
    outside = [obj.label or "(no label)" for obj in listing.objects
               if obj.object_class in ("SECRET_KEY", "PRIVATE_KEY")
               and not obj.label.startswith(namespace)]
    extractable = [obj.label for obj in listing.objects if obj.can_leave_token]
    details: dict[str, Any] = {
        "token": f"{listing.token_label} (serial {listing.token_serial}, {listing.library})",
        "namespace": namespace,
        "objects": [obj.as_evidence() for obj in listing.objects],
        "classes": present,
        "extractable": extractable,
        "extractable_note": ("reported, not failed: the page allows keys to be read through the "
                             "secure storage interface at process start, which needs them readable"),
        "jwt_proof": jwt_proof.detail if jwt_proof else "not tried (no [api] section)",
        "token_ring_proof": ring_proof.detail if ring_proof else "not tried (no [database] section)",
    }
    if missing:
        return Verdict.failed(f"Not in the HSM: {'; '.join(missing)}.", **details)
    if problems:
        return Verdict.failed(f"Keys not kept as private token objects: {'; '.join(problems)}.",
                              **details)
    if outside:
        return Verdict.failed(f"Keys outside the namespace {namespace!r}: {', '.join(outside)}.",
                              **details)
    if jwt_proof is not None and jwt_proof.verified is False:
        return Verdict.failed(f"The service signs sessions with another key: {jwt_proof.detail}.",
                              **details)
    if ring_proof is not None and ring_proof.undecryptable:
        ids = ", ".join(map(str, ring_proof.undecryptable[:10]))
        return Verdict.failed(f"Channel tokens are encrypted under a key not in the HSM: "
                              f"{ring_proof.detail}; e.g. rows {ids}.", **details)
    if jwt_proof is not None and jwt_proof.verified is None:
        return Verdict.error(f"Cannot prove the JWT secret in use: {jwt_proof.detail}.", **details)
    proofs = "; ".join(p.detail for p in (jwt_proof, ring_proof) if p is not None)
    note = f" {len(extractable)} key(s) are readable or extractable (reported, allowed by the page)." \
        if extractable else ""
    return Verdict.passed(
        f"All {len(classes.classes)} key classes are private token objects under {namespace!r}"
        + (f"; {proofs}" if proofs else "") + "." + note, **details)


# --------------------------------------------------------------------------
# keys.no_key_elsewhere


def no_key_elsewhere_verdict(result: KeySearchResult, key_labels: Sequence[str],
                             unsearchable_images: Sequence[str] = ()) -> Verdict:
    """Any failing hit FAILS naming the place; an incomplete search is ERROR."""
    details: dict[str, Any] = {
        "keys_searched": list(key_labels),
        "hits": [hit.describe() for hit in result.hits],
        "reported_not_failed": [hit.describe() for hit in result.hits if not hit.fails],
        "coverage": result.coverage(),
    }
    failing = result.failing
    if failing:
        places = "; ".join(hit.describe() for hit in failing[:8])
        more = f" (and {len(failing) - 8} more)" if len(failing) > 8 else ""
        return Verdict.failed(f"Keys found outside the HSM: {places}{more}.", **details)
    if not key_labels:
        return Verdict.error("No key value could be read from the HSM to search for.", **details)
    if result.errors:
        return Verdict.error(f"The search is incomplete: {'; '.join(result.errors[:5])}.", **details)
    if result.files_searched == 0 and not result.processes_searched:
        return Verdict.error("Nothing was searched: the profile names no scan paths, logs or "
                             "processes.", **details)
    # A key past the size bound, or in a file that looked binary, would not have been
    # seen: a partial search is never a PASS.
    gaps = [f"searched only the first {_size(limit)} of {path}" for path, limit in result.truncated_at]
    gaps += [f"searched only part of {path}" for path in result.truncated
             if path not in {p for p, _ in result.truncated_at}]
    gaps += [f"skipped {path} (binary file)" for path in result.binary_skipped]
    gaps += [f"could not read the layers of image {image}" for image in unsearchable_images]
    if gaps:
        more = f" (and {len(gaps) - 5} more)" if len(gaps) > 5 else ""
        return Verdict.error(f"The search is incomplete: {'; '.join(gaps[:5])}{more}.", **details)
    if not result.processes_searched:
        # The files were searched, the environments were not: that part needs a human.
        return Verdict.manual(
            f"None of {len(key_labels)} HSM keys (raw, base64, hex) nor any key-shaped string was "
            f"found in {result.files_searched} files, but the environments of the service's "
            "processes could not be inspected from here. By hand: on each service host, check that "
            "no service process's environment (/proc/PID/environ, docker inspect) holds a key.",
            **details)
    return Verdict.passed(
        f"None of {len(key_labels)} HSM keys (raw, base64, hex) nor any key-shaped string was found "
        f"in {result.files_searched} files or the environment of "
        f"{len(result.processes_searched)} processes.", **details)


def _size(limit: int) -> str:
    return f"{limit / (1 << 20):g} MiB" if limit >= 1 << 20 else f"{limit} bytes"


# --------------------------------------------------------------------------
# keys.read_at_start


def read_at_start_verdict(processes: Sequence[ProcessObservation], env_hits: Sequence[KeyHit],
                          token_dir: Path | None, hsm_process_names: Sequence[str],
                          pin_file: Path | None = None) -> Verdict:
    """No PIN or key in a service process's environment; only the HSM holds token files
    (or the PIN file) open after start-up."""
    holders: list[str] = []
    unreadable: list[str] = []
    for process in processes:
        if is_hsm_process(process.name, hsm_process_names):
            continue
        if process.fd_error:
            unreadable.append(f"{process.where}: {process.fd_error}")
        if token_dir is not None:
            root = str(token_dir).rstrip("/") + "/"
            for target in process.open_files:
                if target.startswith(root) or target == str(token_dir):
                    holders.append(f"{process.where} holds {target}")
        if pin_file is not None and str(pin_file) in process.open_files:
            holders.append(f"{process.where} holds the PIN file {pin_file}")
        if process.environ_error:
            unreadable.append(f"{process.where}: {process.environ_error}")
    details: dict[str, Any] = {
        "processes": [p.where for p in processes],
        "environment_variables": {p.where: list(p.variable_names()) for p in processes},
        "token_dir": str(token_dir) if token_dir else None,
        "env_hits": [hit.describe() for hit in env_hits],
        "token_file_holders": holders,
    }
    if not processes:
        return Verdict.error("No service process was found to inspect.", **details)
    if env_hits:
        return Verdict.failed("Secrets in the environment of service processes: "
                              + "; ".join(hit.describe() for hit in env_hits[:8]) + ".", **details)
    if holders:
        return Verdict.failed("Service processes keep the HSM's files open after start: "
                              + "; ".join(holders[:8]) + ".", **details)
    if unreadable:
        return Verdict.error("Cannot inspect every service process: " + "; ".join(unreadable[:5]) + ".",
                             **details)
    if token_dir is None:
        return Verdict.manual(f"No PIN and no key in the environment of {len(processes)} service "
                              "processes, but the HSM's token files are not visible from here, so "
                              "open files were not judged. By hand: on the HSM host, check that no "
                              "service process keeps a token file open after start "
                              "(ls -l /proc/PID/fd).", **details)
    return Verdict.passed(f"No PIN and no key in the environment of {len(processes)} service "
                          f"processes; none holds a file under {token_dir} open.", **details)


# --------------------------------------------------------------------------
# Operator commands.


@dataclass(frozen=True)
class CommandResult:
    """One run of an operator command.

    Attributes:
        argv: the command.
        returncode: its exit status (None when it timed out and was killed).
        duration_s: how long it ran.
        timed_out: whether it was killed at the timeout.
        lines: (seconds since start, stdout line) as it printed them.
        stderr_tail: the last lines of its standard error.
        timeout_s: the harness's limit it ran under (None: not recorded).
    """

    argv: tuple[str, ...]
    returncode: int | None
    duration_s: float
    timed_out: bool
    lines: tuple[tuple[float, str], ...] = ()
    stderr_tail: tuple[str, ...] = ()
    timeout_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def unfinished(self) -> str:
        """Why the harness stopped the command ('' when it ran to its end).

        The harness's own time limit says nothing about the system: a command it
        killed is a check that could not finish (ERROR), never a broken promise.
        """
        if not self.timed_out:
            return ""
        limit = self.timeout_s if self.timeout_s is not None else self.duration_s
        return (f"{' '.join(self.argv)} did not finish within {limit:g} s "
                "(killed by the harness's timeout)")

    def describe(self) -> str:
        if self.timed_out:
            return f"{' '.join(self.argv)} did not finish in time (killed after {self.duration_s:.0f} s)"
        last = (self.stderr_tail[-1] if self.stderr_tail else
                (self.lines[-1][1] if self.lines else ""))
        return f"{' '.join(self.argv)} exited {self.returncode} after {self.duration_s:.1f} s" + (
            f": {last}" if last and not self.ok else "")

    def as_evidence(self) -> dict[str, Any]:
        return {"argv": list(self.argv), "returncode": self.returncode,
                "duration_s": round(self.duration_s, 3), "timed_out": self.timed_out,
                "stdout": [{"t_s": round(t, 3), "line": line} for t, line in self.lines],
                "stderr_tail": list(self.stderr_tail)}


def run_operation(argv: Sequence[str], timeout_s: float,
                  on_line: Callable[[str], None] | None = None) -> CommandResult:
    """Run an operator command without a shell, streaming its output lines.

    Raises:
        ProbeError: the command cannot be started.
    """
    started = time.monotonic()
    try:
        process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, text=True, errors="replace")
    except OSError as exc:
        raise ProbeError(f"cannot run {' '.join(argv)}: {exc.strerror}") from None
    lines: list[tuple[float, str]] = []
    errors: list[str] = []

    def read_stdout() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))
            if on_line is not None:
                on_line(line.rstrip("\n"))

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            errors.append(line.rstrip("\n"))

    readers = [threading.Thread(target=read_stdout, daemon=True),
               threading.Thread(target=read_stderr, daemon=True)]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        process.kill()  # our own child, started above
        process.wait()
    for reader in readers:
        reader.join(5)
    return CommandResult(tuple(argv), None if timed_out else process.returncode,
                         time.monotonic() - started, timed_out, tuple(lines), tuple(errors[-20:]),
                         timeout_s)


def _command_timeout(profile: TargetProfile, policy: Policy) -> float:
    return min(profile.operations.timeout_s, policy.timeouts.command_s)


# --------------------------------------------------------------------------
# keys.token_key_rotation


@dataclass(frozen=True)
class TokenRotationObservation:
    """Everything seen around one token-key rotation under load.

    Attributes:
        command: the rotation command's run.
        load: the load report (every request, markers ``rotation started/finished``).
        ring_before, ring_after: (version, label, fingerprint) of the key ring.
        rows_before, rows_after: ids of all channels rows.
        undecryptable_after: ids of rows not readable with the new key ring.
        readable_with_retired: ids of rows still readable with the retired key alone.
        canary_rows: rows seeded for the canary.
        canary_mismatches: canary channel ids whose tokens differ from what the
            harness last stored (or do not decrypt).
        writes_during_rotation: successful writes started while the command ran.
        writes_checked: canary channels whose final tokens were compared.
    """

    command: CommandResult
    load: LoadReport
    ring_before: tuple[tuple[int, str, str], ...]
    ring_after: tuple[tuple[int, str, str], ...]
    rows_before: tuple[int, ...]
    rows_after: tuple[int, ...]
    undecryptable_after: tuple[int, ...]
    readable_with_retired: tuple[int, ...]
    canary_rows: int
    canary_mismatches: tuple[int, ...]
    writes_during_rotation: int
    writes_checked: int


def _phase_windows(load: LoadReport) -> tuple[float, float]:
    start = load.marker("rotation started")
    end = load.marker("rotation finished")
    return (start if start is not None else 0.0,
            end if end is not None else load.duration_s)


def rotation_timeline(load: LoadReport) -> dict[str, Any]:
    """The evidence: per-bucket timeline and totals before, during and after the rotation."""
    start, end = _phase_windows(load)
    return {
        "bucket_s": TIMELINE_BUCKET_S,
        "timeline": [{"t_s": b.start_s, "requests": b.requests, "errors": b.errors,
                      "p50_ms": b.p50_ms, "p99_ms": b.p99_ms, "markers": list(b.markers)}
                     for b in load.timeline(TIMELINE_BUCKET_S)],
        "before": load.window(0, start).as_evidence(),
        "during": load.window(start, end).as_evidence(),
        "after": load.window(end).as_evidence(),
        "total": load.totals().as_evidence(),
        "concurrency": load.concurrency,
        "duration_s": round(load.duration_s, 3),
        "first_failures": load.failures(),
        "harness_defects": list(load.defects),
    }


def token_key_rotation_verdict(obs: TokenRotationObservation, policy: Policy) -> Verdict:
    """Zero failed requests; every row under the new ring only; no row or token lost or changed."""
    start, end = _phase_windows(obs.load)
    totals = obs.load.totals()
    before, during = obs.load.window(0, start), obs.load.window(start, end)
    new_versions = {v for v, _, _ in obs.ring_after} - {v for v, _, _ in obs.ring_before}
    lost = sorted(set(obs.rows_before) - set(obs.rows_after))
    details: dict[str, Any] = {
        "command": obs.command.as_evidence(),
        "ring_before": [f"{label} {fp}" for _, label, fp in obs.ring_before],
        "ring_after": [f"{label} {fp}" for _, label, fp in obs.ring_after],
        "rows_before": len(obs.rows_before), "rows_after": len(obs.rows_after),
        "rows_lost": lost[:50], "canary_rows": obs.canary_rows,
        "undecryptable_after": list(obs.undecryptable_after[:50]),
        "readable_with_retired_key": list(obs.readable_with_retired[:50]),
        "canary_mismatches": list(obs.canary_mismatches[:50]),
        "writes_during_rotation": obs.writes_during_rotation, "writes_checked": obs.writes_checked,
        "requests": totals.as_evidence(),
        "p50_p99_before_ms": [before.p50_ms, before.p99_ms],
        "p50_p99_during_ms": [during.p50_ms, during.p99_ms],
        # Latency is evidence, not the promise: the page promises no interruption, and a
        # slower answer during a rotation is not one (the benchmark tracks the ratio).
        "p99_ratio_during_over_before": (round(during.p99_ms / before.p99_ms, 2)
                                         if before.p99_ms and during.p99_ms else None),
    }
    # Every broken criterion is named, most specific first: a row left under the
    # old key also makes reads fail, and the row is the root cause.
    reasons: list[str] = []
    if obs.command.timed_out:
        pass  # Judged below: the harness stopped the command, so nothing here is a verdict.
    elif not obs.command.ok:
        reasons.append(f"the rotation command failed: {obs.command.describe()}")
    elif not new_versions:
        reasons.append("the rotation added no new token-encryption key to the HSM")
    if obs.undecryptable_after:
        reasons.append(f"{len(obs.undecryptable_after)} channels rows are not readable with the new "
                       f"key ring (e.g. ids {', '.join(map(str, obs.undecryptable_after[:5]))})")
    if obs.readable_with_retired:
        reasons.append(f"{len(obs.readable_with_retired)} channels rows are still encrypted under the "
                       f"retired key (e.g. ids {', '.join(map(str, obs.readable_with_retired[:5]))})")
    if lost:
        reasons.append(f"{len(lost)} channels rows disappeared during the rotation")
    if obs.canary_mismatches:
        reasons.append(f"{len(obs.canary_mismatches)} canary channels hold other tokens than the last "
                       f"ones stored (e.g. ids {', '.join(map(str, obs.canary_mismatches[:5]))})")
    if totals.errors:
        kinds = ", ".join(f"{n} x {kind}" for kind, n in sorted(totals.error_kinds.items()))
        reasons.append(f"{totals.errors} of {totals.requests} requests failed during the rotation "
                       f"window ({totals.connection_errors} without any answer: {kinds})")
    if obs.load.defects:
        # The load's own code broke: its counts are not the service's answers.
        seen = f" Also seen: {'; '.join(reasons)}." if reasons else ""
        return Verdict.error("The harness's load generator hit a defect in its own code (not a "
                             f"failed request of the service): {'; '.join(obs.load.defects[:3])}."
                             + seen, harness_defects=list(obs.load.defects), **details)
    if obs.command.timed_out:
        seen = f" Also seen after it was stopped: {'; '.join(reasons)}." if reasons else ""
        return Verdict.error(f"The rotation command {obs.command.unfinished()}, so the rotation "
                             f"could not be judged.{seen}", **details)
    if reasons:
        text = "; ".join(reasons)
        return Verdict.failed(text[0].upper() + text[1:] + ".", **details)
    if totals.requests == 0 or during.requests == 0:
        return Verdict.error("No request was made while the rotation ran: the load did not run.",
                             **details)
    return Verdict.passed(
        f"Token key rotated to v{max(new_versions)} in {obs.command.duration_s:.1f} s under load: "
        f"{totals.requests} requests, 0 failed (p99 {before.p99_ms} ms before, {during.p99_ms} ms "
        f"during); all {len(obs.rows_after)} rows readable with the new ring and none with the "
        f"retired key; {obs.canary_rows} canary channels and {obs.writes_during_rotation} writes "
        f"made during the rotation intact.", **details)


# --------------------------------------------------------------------------
# keys.jwt_rotation


@dataclass(frozen=True)
class JwtRotationObservation:
    """A session token's fate across a JWT secret rotation.

    Attributes:
        command: the rotation command's run.
        status_before: answer to the old token before the rotation.
        status_after: the last answer to the old token after the rotation.
        refused_after_s: seconds after the command until the old token was refused (None: never).
        new_login: '' when a new login worked, else why not.
        new_token_status: answer to the new token.
        secret_changed: whether the HSM's signing secret changed (None: unknown).
    """

    command: CommandResult
    status_before: int
    status_after: int
    refused_after_s: float | None
    new_login: str
    new_token_status: int | None
    secret_changed: bool | None


def jwt_rotation_verdict(obs: JwtRotationObservation, grace_s: float) -> Verdict:
    """The old session is refused (401) after the rotation; a new login works."""
    details = {"command": obs.command.as_evidence(), "status_before": obs.status_before,
               "status_after": obs.status_after, "refused_after_s": obs.refused_after_s,
               "grace_s": grace_s, "new_login": obs.new_login or "ok",
               "new_token_status": obs.new_token_status, "secret_changed": obs.secret_changed}
    if obs.status_before != 200:
        return Verdict.error(f"The canary session was not accepted before the rotation "
                             f"(HTTP {obs.status_before}).", **details)
    if obs.command.timed_out:
        return Verdict.error(f"The JWT rotation command {obs.command.unfinished()}.", **details)
    if not obs.command.ok:
        return Verdict.failed(f"The JWT rotation command failed: {obs.command.describe()}.", **details)
    if obs.refused_after_s is None and obs.status_after == 200:
        return Verdict.failed(f"A session token issued before the rotation is still accepted "
                              f"(HTTP {obs.status_after}) {grace_s:g} s after it.", **details)
    if obs.refused_after_s is None:
        # Neither accepted nor refused (a 5xx, a gateway error): nothing was observed
        # about the old session, so the check could not judge it.
        return Verdict.error(f"Cannot tell whether a session token issued before the rotation is "
                             f"refused: {grace_s:g} s after it the service answered HTTP "
                             f"{obs.status_after}, neither 200 nor 401.", **details)
    if obs.new_login or obs.new_token_status != 200:
        return Verdict.failed(f"After the rotation, a new login does not work: "
                              f"{obs.new_login or f'HTTP {obs.new_token_status}'}.", **details)
    return Verdict.passed(f"After the JWT secret rotation the old session was refused "
                          f"(HTTP {obs.status_after}, {obs.refused_after_s:.1f} s after the command) "
                          f"and a new login worked.", **details)


# --------------------------------------------------------------------------
# keys.db_password_rotation, keys.redis_password_rotation


@dataclass(frozen=True)
class PasswordRotationObservation:
    """A password's fate across its rotation.

    Attributes:
        what: ``database`` or ``Redis``.
        command: the rotation command's run.
        old_accepted_before: the old password worked before the rotation ('' ok, else why not).
        old_after: ``refused``, ``accepted`` or an error description.
        new_after: ``accepted``, ``refused`` or an error description ('' when not tried).
        changed_in_hsm: whether the HSM holds a different value afterwards.
        service_after: '' when an API call touching it worked, else why not.
    """

    what: str
    command: CommandResult
    old_accepted_before: str
    old_after: str
    new_after: str
    changed_in_hsm: bool | None
    service_after: str


def password_rotation_verdict(obs: PasswordRotationObservation) -> Verdict:
    """The old password is refused afterwards and the service still works."""
    details = {"command": obs.command.as_evidence(), "old_before": obs.old_accepted_before or "accepted",
               "old_after": obs.old_after, "new_after": obs.new_after,
               "changed_in_hsm": obs.changed_in_hsm, "service_after": obs.service_after or "ok"}
    if obs.old_accepted_before:
        return Verdict.error(f"Cannot test the {obs.what} password rotation: the password read from "
                             f"the HSM did not work before it ({obs.old_accepted_before}).", **details)
    if obs.command.timed_out:
        return Verdict.error(f"The {obs.what} password rotation command "
                             f"{obs.command.unfinished()}.", **details)
    if not obs.command.ok:
        return Verdict.failed(f"The {obs.what} password rotation failed: {obs.command.describe()}.",
                              **details)
    if obs.old_after == "accepted":
        return Verdict.failed(f"The old {obs.what} password still works after the rotation.",
                              **details)
    if obs.old_after != "refused":
        return Verdict.error(f"Cannot tell whether the old {obs.what} password is refused: "
                             f"{obs.old_after}.", **details)
    if obs.service_after:
        return Verdict.failed(f"The service does not work after the {obs.what} password rotation: "
                              f"{obs.service_after}.", **details)
    if obs.changed_in_hsm is False:
        return Verdict.failed(f"The HSM still holds the old {obs.what} password after the "
                              "rotation: the new password is not kept in the HSM.", **details)
    if obs.changed_in_hsm is None or obs.new_after != "accepted":
        why = obs.new_after or "not tried"
        return Verdict.error(f"Cannot confirm that the new {obs.what} password from the HSM is the "
                             f"one in use: {why}.", **details)
    return Verdict.passed(f"After the rotation the old {obs.what} password is refused, the new one "
                          f"from the HSM works, and the service still works "
                          f"({obs.command.duration_s:.1f} s).", **details)


# ==========================================================================
# Collection (I/O) and the checks.


@pytest.fixture(scope="session")
def key_classes() -> KeyClasses:
    return load_key_classes()


def _require_hsm(profile: TargetProfile, evidence: EvidenceRecorder) -> Hsm:
    if profile.hsm is None:
        evidence.manual("The profile has no [hsm] section: attest by hand that every key of the "
                        "page's table is kept in the HSM under its namespace.")
        raise AssertionError("unreachable")  # manual() always raises
    return profile.hsm


def read_channel_rows(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                      *, brand_id: int | None = None, limit: int | None = None) -> list[ChannelRow]:
    """Channels rows as the auditor role (all, one brand's, or the first ``limit``)."""
    query = "SELECT id, brand_id, access_token_enc, refresh_token_enc FROM channels"
    params: tuple[Any, ...] = ()
    if brand_id is not None:
        query += " WHERE brand_id = %s"
        params = (brand_id,)
    query += " ORDER BY id"
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    with DatabaseProbe(profile, policy, known_secrets=known_secrets) as probe:
        try:
            with probe.connection.cursor() as cursor:
                cursor.execute(query, params)
                rows = cursor.fetchall()
        except psycopg.Error as exc:
            raise ProbeError(f"cannot read the channels table: {type(exc).__name__}") from None
    return [ChannelRow(int(r[0]), int(r[1]), r[2], r[3]) for r in rows]


@pytest.mark.claims("KEYS-HSM", "KEYS-NAMESPACED", "KEYS-JWT-HSM", "KEYS-TOKEN-KEY-HSM",
                    "KEYS-API-KEYS-HSM", "KEYS-DB-PASSWORD-ROTATION",
                    "KEYS-REDIS-PASSWORD-ROTATION", "REST-TOKENS-KEY-HSM")
def check_hsm_custody(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                      evidence: EvidenceRecorder, key_classes: KeyClasses) -> None:
    hsm = _require_hsm(profile, evidence)
    ns = hsm.key_namespace
    snap = hsm_probe.snapshot(hsm, known_secrets, read_prefix=ns,
                              timeout_s=policy.timeouts.request_s)
    jwt_label = ns + key_classes.proof.jwt_signing
    jwt_proof: JwtProof | None = None
    if profile.api is not None:
        with VotrizApi(profile, timeout_s=policy.timeouts.request_s) as api:
            create_canary(api, known_secrets)
            try:
                assert api.token is not None
                jwt_proof = prove_jwt(api.token, snap.values.get(jwt_label), label=jwt_label)
            finally:
                _delete_account(api)
    ring_proof: RingProof | None = None
    if profile.database is not None:
        rows = read_channel_rows(profile, policy, known_secrets, limit=200)
        ring = [v for _, _, v in token_ring(snap.values, ns + key_classes.proof.token_key_prefix)]
        ring_proof = prove_token_ring(rows, ring) if rows else RingProof(
            0, 0, (), "no channels rows to sample")
    evidence.attach("hsm-objects", [obj.as_evidence() for obj in snap.listing.objects])
    evidence.conclude(hsm_custody_verdict(snap.listing, key_classes, ns, jwt_proof, ring_proof))


def _delete_account(api: VotrizApi) -> None:
    # Canary clean-up; a failure here is reported by the API probe's ProbeError.
    api.expect((200, 202, 204), "DELETE", "/account")


def _remove_canary_account(api: VotrizApi, canary: CanaryAccount, known_secrets: KnownSecrets) -> str:
    """Delete the canary's account, logging in again if its session is no longer valid.

    Returns '' once the account is gone, else why it could not be removed (never raises).
    """
    try:
        if api.request("DELETE", "/account").status in (200, 202, 204):
            return ""
        known_secrets.add(api.login(canary.email, canary.password), "canary session token")
        _delete_account(api)
    except ProbeError as exc:
        return str(exc)
    return ""


def create_canary(api: VotrizApi, known_secrets: KnownSecrets) -> CanaryAccount:
    """Sign up and log in a fresh canary account, never leaving it behind unsaid.

    If the login fails after the signup, the account exists already: it is
    removed (logging in again), and the ProbeError says whether that worked, with
    the account's address when it must be deleted by hand.

    Raises:
        ProbeError: the signup or the login failed.
    """
    tag = secrets.token_hex(6)
    # A reserved TLD (RFC 6761), like the other canaries: no mail can ever leave.
    canary = CanaryAccount(email=f"canary+keys-{tag}@audit.invalid",
                           password=secrets.token_urlsafe(24))
    known_secrets.add(canary.password, "canary password")
    api.signup(canary.email, canary.password)
    try:
        known_secrets.add(api.login(canary.email, canary.password), "canary session token")
    except ProbeError as exc:
        left = _remove_canary_account(api, canary, known_secrets)
        fate = ("it was removed" if not left else
                f"it could not be removed ({left}): delete {canary.email} by hand")
        raise ProbeError(f"{exc}; the canary account had been created, {fate}") from None
    return canary


def observe_service_processes(profile: TargetProfile, policy: Policy) -> list[ProcessObservation] | None:
    """The service's processes (local backend), or None when the harness cannot see them."""
    if profile.backend == "local" and profile.local is not None and profile.local.processes:
        return observe_local(profile.local)
    if profile.backend == "docker" and profile.docker is not None:
        return observe_docker(profile.docker.project, timeout_s=policy.timeouts.request_s)
    return None


@dataclass(frozen=True)
class DockerArtifacts:
    """What the engine holds about the service's containers, for the key search.

    Attributes:
        logs: (``docker logs NAME``, bytes, truncated) per container.
        layers: (name, directory) per distinct layer of the containers' images.
        images: the images whose layers were listed.
        unsearchable: images whose layers could not be read, with why.
    """

    logs: tuple[tuple[str, bytes, bool], ...] = ()
    layers: tuple[tuple[str, Path], ...] = ()
    images: tuple[str, ...] = ()
    unsearchable: tuple[str, ...] = ()

    def as_evidence(self) -> dict[str, Any]:
        return {"images": list(self.images), "layers": [label for label, _ in self.layers],
                "container_logs": [name for name, _, _ in self.logs],
                "unsearchable": list(self.unsearchable)}


def observe_docker_artifacts(profile: TargetProfile, policy: Policy, max_log_bytes: int) -> DockerArtifacts:
    """The containers' logs and image layers (Docker backend), else nothing."""
    if profile.backend != "docker" or profile.docker is None:
        return DockerArtifacts()
    client = docker_engine.docker_client(policy)
    try:
        containers = docker_engine.project_containers(profile.docker.project, client)
        logs = docker_engine.container_logs(containers, max_log_bytes)
        layers = docker_engine.image_layers(containers, client)
    finally:
        client.close()
    return DockerArtifacts(tuple((log.where, log.data, log.truncated) for log in logs),
                           layers.layers, layers.images, layers.unsearchable)


def is_hsm_process(name: str, hsm_names: Sequence[str]) -> bool:
    """Whether a profile process (or container) name marks the HSM itself."""
    base = name.split("/")[0]
    return base in hsm_names or any(base.endswith(f"-{hsm}") for hsm in hsm_names)


def _search_excludes(profile: TargetProfile, report_dir: Path) -> list[Path]:
    excludes = [report_dir]
    if profile.hsm is not None:
        token_dir = hsm_probe.softhsm_token_dir(profile.hsm)
        if token_dir is not None:
            excludes.append(token_dir)
    return excludes


@pytest.mark.claims("KEYS-NOT-ON-DISK")
def check_no_key_elsewhere(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                           evidence: EvidenceRecorder, report_dir: Path,
                           key_classes: KeyClasses) -> None:
    hsm = _require_hsm(profile, evidence)
    snap = hsm_probe.snapshot(hsm, known_secrets, read_prefix=hsm.key_namespace,
                              timeout_s=policy.timeouts.request_s)
    processes = observe_service_processes(profile, policy)
    images = observe_docker_artifacts(profile, policy, key_classes.search.max_log_bytes)
    result = search_target(profile.scan.source_paths, profile.scan.config_paths,
                           profile.log_dir, processes, snap.values.items(), key_classes.search,
                           exclude=_search_excludes(profile, report_dir),
                           container_logs=images.logs, image_layers=images.layers)
    evidence.attach("search", {"hits": [hit.describe() for hit in result.hits],
                               "coverage": result.coverage(), "images": images.as_evidence(),
                               "keys": snap.values.fingerprints()})
    evidence.conclude(no_key_elsewhere_verdict(result, snap.values.labels(), images.unsearchable))


@pytest.mark.claims("KEYS-READ-AT-START")
def check_read_at_start(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                        evidence: EvidenceRecorder, key_classes: KeyClasses) -> None:
    hsm = _require_hsm(profile, evidence)
    processes = observe_service_processes(profile, policy)
    if processes is None:
        evidence.manual("The harness cannot inspect the service's processes on this backend: attest "
                        "that no service process holds the HSM PIN or a key in its environment "
                        "and that only the HSM keeps the token files open.")
        return
    snap = hsm_probe.snapshot(hsm, known_secrets, read_prefix=hsm.key_namespace,
                              timeout_s=policy.timeouts.request_s)
    try:
        pin = hsm.pin.read("HSM user PIN")
    except ProfileError as exc:
        raise ProbeError(str(exc)) from None
    values = [*snap.values.items(), ("HSM user PIN", pin.encode())]
    service = [p for p in processes
               if not is_hsm_process(p.name, key_classes.search.hsm_process_names)]
    env = KeySearcher(values, key_classes.search).search_processes(service)
    verdict = read_at_start_verdict(processes, env.hits, hsm_probe.softhsm_token_dir(hsm),
                                    key_classes.search.hsm_process_names, hsm.pin.file)
    evidence.attach("processes", verdict.details)
    evidence.conclude(verdict)


def _manual_unless_destructive(profile: TargetProfile, evidence: EvidenceRecorder,
                               command: tuple[str, ...] | None, name: str, by_hand: str) -> tuple[str, ...]:
    if not profile.operations.allow_destructive:
        evidence.manual(f"Destructive checks are not allowed on this target "
                        f"(operations.allow_destructive = false). By hand: {by_hand}")
    if command is None:
        evidence.manual(f"The profile names no operations.{name} command. By hand: {by_hand}")
    assert command is not None
    return command


class _Canary:
    """A canary account with one brand, driven from several threads (one client each)."""

    def __init__(self, profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets) -> None:
        self.profile = profile
        self.policy = policy
        self.known_secrets = known_secrets
        self._local = threading.local()
        self._clients: list[VotrizApi] = []
        self._lock = threading.Lock()
        self.api = VotrizApi(profile, timeout_s=policy.timeouts.request_s)
        create_canary(self.api, known_secrets)
        try:
            assert self.api.token is not None
            self.token: str = self.api.token
            self.brand_id = _brand(self.api)
        except BaseException:
            # The account exists already: remove it rather than leave it in the target.
            self.close()
            raise
        self.token_secret = secrets.token_urlsafe(18)
        known_secrets.add(self.token_secret, "canary channel tokens (shared part)")

    def client(self) -> VotrizApi:
        api: VotrizApi | None = getattr(self._local, "api", None)
        if api is None:
            api = VotrizApi(self.profile, timeout_s=self.policy.timeouts.request_s)
            api.token = self.token
            self._local.api = api
            with self._lock:
                self._clients.append(api)
        return api

    def fresh_tokens(self, tag: str) -> tuple[str, str]:
        """A new (access, refresh) pair, each starting with the run's shared secret part.

        Registering thousands of tokens one by one would make every redaction
        pass slow; one registered secret at the start of every token covers
        them all: raw, hex, URL-encoded, and base64 (the part is 24 characters,
        a multiple of 3, so its base64 is a prefix of the token's).
        """
        access = f"{self.token_secret}.at.{tag}.{secrets.token_urlsafe(6)}"
        refresh = f"{self.token_secret}.rt.{tag}.{secrets.token_urlsafe(6)}"
        return access, refresh

    def close(self) -> None:
        try:
            _delete_account(self.api)
        finally:
            self.api.close()
            for api in self._clients:
                api.close()


def _brand(api: VotrizApi) -> int:
    answer = api.expect(201, "POST", "/brands", {"name": "votriz-audit canary", "industry": "audit"})
    brand_id = answer.body.get("id") if isinstance(answer.body, dict) else None
    if not isinstance(brand_id, int):
        raise ProbeError("POST /brands: the answer holds no id")
    return brand_id


def seed_channels(canary: _Canary, count: int) -> dict[int, tuple[str, str]]:
    """Create ``count`` channels through the API in parallel; channel id -> its tokens."""
    def one(index: int) -> tuple[int, tuple[str, str]]:
        tokens = canary.fresh_tokens(f"s{index}")
        answer = canary.client().expect(201, "POST", f"/brands/{canary.brand_id}/channels", {
            "platform": PLATFORMS[index % len(PLATFORMS)],
            "access_token": tokens[0], "refresh_token": tokens[1]})
        channel_id = answer.body.get("id") if isinstance(answer.body, dict) else None
        if not isinstance(channel_id, int):
            raise ProbeError("POST /brands/{id}/channels: the answer holds no id")
        return channel_id, tokens

    with ThreadPoolExecutor(SEED_PARALLELISM) as pool:
        return dict(pool.map(one, range(count)))


def _load_call(canary: _Canary, channel_ids: Sequence[int], expected: dict[int, tuple[str, str]],
               uncertain: set[int], writes: list[tuple[float, int]], load_clock: Callable[[], float],
               concurrency: int) -> Callable[[int, int], LoadCall]:
    """Alternate reads that decrypt (sync) and writes that encrypt (new tokens)."""
    lock = threading.Lock()

    def call(worker: int, iteration: int) -> LoadCall:
        api = canary.client()
        if iteration % 2 == 0:
            channel = channel_ids[(worker * 7919 + iteration * 31) % len(channel_ids)]
            try:
                answer = api.request("POST", f"/channels/{channel}/sync", {})
            except ProbeError as exc:
                return LoadCall("sync", False, None, _error_kind(str(exc)))
            return LoadCall("sync", answer.status == 200, answer.status,
                            "" if answer.status == 200 else f"HTTP {answer.status}")
        # Each worker writes only its own share of the written channels, so the
        # last successful write of a channel is known exactly. Nine channels in
        # ten are never written: a write re-encrypts its row under the new key
        # and would hide rows the rotation itself left behind.
        own = channel_ids[::WRITE_EVERY][worker::concurrency]
        if not own:
            return call(worker, iteration + 1)  # fewer written channels than workers: read
        channel = own[(iteration // 2) % len(own)]
        tokens = canary.fresh_tokens(f"w{worker}-{iteration}")
        started = load_clock()
        try:
            answer = api.request("PUT", f"/channels/{channel}/tokens",
                                 {"access_token": tokens[0], "refresh_token": tokens[1]})
        except ProbeError as exc:
            with lock:
                uncertain.add(channel)
            return LoadCall("write", False, None, _error_kind(str(exc)))
        with lock:
            if answer.status == 200:
                expected[channel] = tokens
                writes.append((started, channel))
            else:
                uncertain.add(channel)
        return LoadCall("write", answer.status == 200, answer.status,
                        "" if answer.status == 200 else f"HTTP {answer.status}")

    return call


def _error_kind(message: str) -> str:
    # The API probe's messages name the failure's type last ("...: ConnectError").
    if "no answer" in message:
        return "timeout"
    return message.rsplit(": ", 1)[-1] if ": " in message else message


def _ring_fingerprints(ring: Sequence[tuple[int, str, bytes]]) -> tuple[tuple[int, str, str], ...]:
    return tuple((v, label, fingerprint(value)) for v, label, value in ring)


def observe_token_key_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                               key_classes: KeyClasses, command: Sequence[str]) -> TokenRotationObservation:
    """Seed canary channels, rotate under steady load, and read everything back."""
    assert profile.hsm is not None
    prefix = profile.hsm.key_namespace + key_classes.proof.token_key_prefix
    canary = _Canary(profile, policy, known_secrets)
    try:
        seeded = seed_channels(canary, policy.rotation.seed_channels)
        ring_before = token_ring(hsm_probe.snapshot(
            profile.hsm, known_secrets, read_prefix=prefix,
            timeout_s=policy.timeouts.request_s).values, prefix)
        rows_before = read_channel_rows(profile, policy, known_secrets)
        channel_ids = sorted(seeded)
        expected = dict(seeded)
        uncertain: set[int] = set()
        writes: list[tuple[float, int]] = []
        concurrency = policy.rotation.load_concurrency
        load: SteadyLoad
        clock_holder: list[SteadyLoad] = []
        call = _load_call(canary, channel_ids, expected, uncertain, writes,
                          lambda: clock_holder[0].elapsed(), concurrency)
        load = SteadyLoad(call, concurrency, stop_timeout_s=policy.timeouts.request_s + 5)
        clock_holder.append(load)
        load.start()
        try:
            time.sleep(BASELINE_S)
            load.mark("rotation started")
            result = run_operation(command, _command_timeout(profile, policy),
                                   on_line=lambda line: load.mark(f"output: {line[:120]}"))
            load.mark("rotation finished")
            time.sleep(TAIL_S)
        finally:
            report = load.stop()
        snap_after = hsm_probe.snapshot(profile.hsm, known_secrets, read_prefix=prefix,
                                        timeout_s=policy.timeouts.request_s)
        ring_after = token_ring(snap_after.values, prefix)
        rows_after = read_channel_rows(profile, policy, known_secrets)
    finally:
        canary.close()
    new_ring = fernet_of([v for _, _, v in ring_after])
    new_versions = {v for v, _, _ in ring_after} - {v for v, _, _ in ring_before}
    retired = ring_before[0][2] if ring_before else None
    undecryptable, with_retired = [], []
    retired_fernet = Fernet(base64.urlsafe_b64encode(retired)) if retired is not None else None
    for row in rows_after:
        tokens = [t for t in (row.access_token_enc, row.refresh_token_enc) if t is not None]
        if ring_after and any(_decrypts(new_ring, t) is None for t in tokens):
            undecryptable.append(row.id)
        if retired_fernet is not None and new_versions and any(
                _decrypts(retired_fernet, t) is not None for t in tokens):
            with_retired.append(row.id)
    by_id = {row.id: row for row in rows_after}
    mismatches = []
    for channel, (access, refresh) in expected.items():
        if channel in uncertain:
            continue
        stored = by_id.get(channel)
        if stored is None or _decrypts(new_ring, stored.access_token_enc) != access.encode() or \
                _decrypts(new_ring, stored.refresh_token_enc) != refresh.encode():
            mismatches.append(channel)
    start, end = _phase_windows(report)
    return TokenRotationObservation(
        command=result, load=report,
        ring_before=_ring_fingerprints(ring_before), ring_after=_ring_fingerprints(ring_after),
        rows_before=tuple(r.id for r in rows_before), rows_after=tuple(r.id for r in rows_after),
        undecryptable_after=tuple(undecryptable), readable_with_retired=tuple(with_retired),
        canary_rows=sum(1 for r in rows_after if r.brand_id == canary.brand_id),
        canary_mismatches=tuple(sorted(mismatches)),
        writes_during_rotation=sum(1 for t, _ in writes if start <= t < end),
        writes_checked=len(expected) - len(uncertain & set(expected)))


@pytest.mark.claims("KEYS-ROTATION-NO-DOWNTIME", "KEYS-TOKEN-KEY-HSM", "REST-TOKENS-ROTATION")
def check_token_key_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                             evidence: EvidenceRecorder, key_classes: KeyClasses) -> None:
    by_hand = ("rotate the token-encryption key while traffic runs, watch the error rate, and "
               "confirm every channels row decrypts only under the new key.")
    command = _manual_unless_destructive(profile, evidence, profile.operations.rotate_token_key,
                                         "rotate_token_key", by_hand)
    if profile.hsm is None or profile.api is None or profile.database is None:
        evidence.manual("This check needs the [hsm], [api] and [database] sections. By hand: "
                        + by_hand)
    obs = observe_token_key_rotation(profile, policy, known_secrets, key_classes, command)
    evidence.attach("timeline", rotation_timeline(obs.load))
    verdict = token_key_rotation_verdict(obs, policy)
    evidence.attach("rotation", verdict.details)
    evidence.conclude(verdict)


def observe_jwt_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                         key_classes: KeyClasses, command: Sequence[str]) -> JwtRotationObservation:
    """Log in, rotate the JWT secret, and see what happens to the old and a new session."""
    label = (profile.hsm.key_namespace if profile.hsm else "votriz/") + key_classes.proof.jwt_signing
    before = (hsm_probe.read_values(profile.hsm, [label], known_secrets,
                                    timeout_s=policy.timeouts.request_s).get(label)
              if profile.hsm else None)
    with VotrizApi(profile, timeout_s=policy.timeouts.request_s) as api:
        canary = create_canary(api, known_secrets)
        try:
            old = api.token
            assert old is not None
            status_before = api.request("GET", "/brands", token=old).status
            result = run_operation(command, _command_timeout(profile, policy))
            done = time.monotonic()
            refused_after: float | None = None
            status_after = status_before
            while True:
                status_after = api.request("GET", "/brands", token=old).status
                if status_after == 401:
                    refused_after = time.monotonic() - done
                    break
                if time.monotonic() - done > key_classes.proof.roll_grace_s:
                    break
                time.sleep(0.25)
        except BaseException as exc:
            # Whatever stopped the check (a command that cannot start, an edge that stops
            # answering), the canary account must not stay behind in the audited system.
            left = _remove_canary_account(api, canary, known_secrets)
            if left and isinstance(exc, ProbeError):
                raise ProbeError(f"{exc}; the canary account could not be removed either: {left}") from None
            raise
        new_login, new_status = "", None
        try:
            new = api.login(canary.email, canary.password)
            known_secrets.add(new, "canary session token")
            new_status = api.request("GET", "/brands", token=new).status
            _delete_account(api)
        except ProbeError as exc:
            new_login = str(exc)
    after = (hsm_probe.read_values(profile.hsm, [label], known_secrets,
                                   timeout_s=policy.timeouts.request_s).get(label)
             if profile.hsm else None)
    changed = None if before is None or after is None else before != after
    return JwtRotationObservation(result, status_before, status_after, refused_after, new_login,
                                  new_status, changed)


@pytest.mark.claims("KEYS-JWT-ROTATION")
def check_jwt_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                       evidence: EvidenceRecorder, key_classes: KeyClasses) -> None:
    by_hand = "log in, rotate the JWT secret, confirm the old session gets 401 and a new login works."
    command = _manual_unless_destructive(profile, evidence, profile.operations.rotate_jwt_secret,
                                         "rotate_jwt_secret", by_hand)
    if profile.api is None:
        evidence.manual("This check needs the [api] section. By hand: " + by_hand)
    obs = observe_jwt_rotation(profile, policy, known_secrets, key_classes, command)
    verdict = jwt_rotation_verdict(obs, key_classes.proof.roll_grace_s)
    evidence.attach("jwt-rotation", verdict.details)
    evidence.conclude(verdict)


def _service_works(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                   grace_s: float) -> str:
    """'' when a fresh canary can sign up, log in and list brands (DB and Redis), else why not."""
    deadline = time.monotonic() + grace_s
    while True:
        try:
            with VotrizApi(profile, timeout_s=policy.timeouts.request_s) as api:
                create_canary(api, known_secrets)
                try:
                    api.expect(200, "GET", "/brands")
                finally:
                    _delete_account(api)
                return ""
        except ProbeError as exc:
            if time.monotonic() > deadline:
                return str(exc)
            time.sleep(0.5)


def _try_postgres(dsn: str, role: str, password: str, timeout_s: float) -> str:
    """``accepted``, ``refused``, or what else happened (never the password)."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    try:
        conn = psycopg.connect(host=params.get("host", "127.0.0.1"), port=params.get("port", 5432),
                               dbname=params.get("dbname", "postgres"), user=role,
                               password=password, connect_timeout=max(1, round(timeout_s)),
                               sslmode=params.get("sslmode", "prefer"))
    except psycopg.OperationalError as exc:
        text = str(exc)
        if "password authentication failed" in text or "authentication failed" in text:
            return "refused"
        return f"connection failed: {text.splitlines()[0] if text else type(exc).__name__}"
    conn.close()
    return "accepted"


def _try_redis(host: str, port: int, password: str, timeout_s: float) -> str:
    # No retry: redis-py would repeat a timed-out command, multiplying the policy's timeout.
    client = redis.Redis(host=host, port=port, password=password, socket_timeout=timeout_s,
                         socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    except redis.AuthenticationError:
        return "refused"
    except redis.ResponseError as exc:
        return "refused" if "WRONGPASS" in str(exc) or "invalid password" in str(exc) else \
            f"unexpected answer: {type(exc).__name__}"
    except redis.RedisError as exc:
        return f"connection failed: {type(exc).__name__}"
    finally:
        client.close()
    return "accepted"


def observe_password_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                              key_classes: KeyClasses, command: Sequence[str], label: str,
                              attempt: Callable[[str], str], what: str) -> PasswordRotationObservation:
    """Read the password from the HSM, rotate, try the old and new ones, use the service."""
    assert profile.hsm is not None
    old = hsm_probe.read_values(profile.hsm, [label], known_secrets,
                                timeout_s=policy.timeouts.request_s).require(label).decode()
    before = attempt(old)
    if before != "accepted":
        return PasswordRotationObservation(what, CommandResult(tuple(command), None, 0.0, False),
                                           before, "", "", None, "")
    result = run_operation(command, _command_timeout(profile, policy))
    old_after = attempt(old)
    new_value = hsm_probe.read_values(profile.hsm, [label], known_secrets,
                                      timeout_s=policy.timeouts.request_s).get(label)
    new_after = attempt(new_value.decode()) if new_value is not None else "not readable from the HSM"
    service = _service_works(profile, policy, known_secrets, key_classes.proof.roll_grace_s)
    return PasswordRotationObservation(what, result, "", old_after, new_after,
                                       None if new_value is None else new_value.decode() != old,
                                       service)


@pytest.mark.claims("KEYS-DB-PASSWORD-ROTATION")
def check_db_password_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                               evidence: EvidenceRecorder, key_classes: KeyClasses) -> None:
    by_hand = ("rotate the database password, confirm the old one is refused by PostgreSQL and the "
               "service still works.")
    command = _manual_unless_destructive(profile, evidence, profile.operations.rotate_db_password,
                                         "rotate_db_password", by_hand)
    if profile.hsm is None or profile.database is None or profile.api is None:
        evidence.manual("This check needs the [hsm], [database] and [api] sections. By hand: "
                        + by_hand)
    assert profile.hsm is not None and profile.database is not None
    dsn = profile.database.dsn
    role = profile.database.app_role or key_classes.proof.db_app_role
    obs = observe_password_rotation(
        profile, policy, known_secrets, key_classes, command,
        profile.hsm.key_namespace + key_classes.proof.db_password,
        lambda password: _try_postgres(dsn, role, password, policy.timeouts.connect_s), "database")
    verdict = password_rotation_verdict(obs)
    evidence.attach("db-password-rotation", {**verdict.details, "role": role})
    evidence.conclude(verdict)


@pytest.mark.claims("KEYS-REDIS-PASSWORD-ROTATION")
def check_redis_password_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                                  evidence: EvidenceRecorder, key_classes: KeyClasses) -> None:
    by_hand = ("rotate the Redis password, confirm AUTH with the old one fails and the service "
               "still works.")
    command = _manual_unless_destructive(profile, evidence, profile.operations.rotate_redis_password,
                                         "rotate_redis_password", by_hand)
    if profile.hsm is None or profile.redis is None or profile.api is None:
        evidence.manual("This check needs the [hsm], [redis] and [api] sections. By hand: " + by_hand)
    assert profile.hsm is not None and profile.redis is not None
    target = profile.redis
    label = target.password_hsm_label or profile.hsm.key_namespace + key_classes.proof.redis_password
    obs = observe_password_rotation(
        profile, policy, known_secrets, key_classes, command, label,
        lambda password: _try_redis(target.host, target.port, password, policy.timeouts.connect_s),
        "Redis")
    verdict = password_rotation_verdict(obs)
    evidence.attach("redis-password-rotation", verdict.details)
    evidence.conclude(verdict)
