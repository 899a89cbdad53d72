"""Key rotations as the auditor sees them: run the operator's command, watch what changes.

Each ``observe_*`` function runs one rotation command of the profile
(``operations.rotate_*``) with :func:`~harness.commands.run_operation` and
returns a frozen observation of what happened around it: for the token key,
live load on a canary's channels and every ``channels`` row before and after;
for the JWT secret, the fate of a session issued before; for a password, the
old and the new one tried at the store, and the service used afterwards.

Each asks first whether the service and its dependencies are healthy
(:func:`harness.health.before_destructive`): when not, or when an outage was
seen earlier in the run, the command is not run and the observation says why.
Right after the command and what follows it, the health is asked again, so a
verdict can tell a failure explained by a dependency's outage (ERROR) from a
broken promise (FAIL). The canary accounts are removed on every path; one that
could not be removed stays open in the run's canary ledger
(:mod:`harness.canary_ledger`), which tries once more at the end of the run and
reports it as ``harness.cleanup`` ERROR by its address.

The verdicts are the checks' (``checks/keys/*_rotation.py``), except the
password rotations' (:func:`password_rotation_verdict`), which the database and
the Redis password checks share.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.canaries import canary_account, create_canary
from harness.commands import CommandResult, run_operation
from harness.health import HealthAround, after_operation, before_destructive, explained_failure
from harness.key_classes import KeyClasses
from harness.load import LoadCall, LoadReport, SteadyLoad
from harness.operations import command_timeout
from harness.outcomes import ProbeError, Verdict
from harness.policy import Policy
from harness.probes import hsm as hsm_probe
from harness.probes.api import VotrizApi
from harness.probes.channel_load import CANARY_PURPOSE, RotationCanary, load_call, seed_channels
from harness.probes.channels import read_channel_rows
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets
from harness.token_ring import decrypts, fernet_of, ring_fingerprints, single_fernet, token_ring

# Steady load before the rotation starts (the latency baseline) and after it ends
# (requests served by the rolled workers) lasts until enough answers came, within
# bounds: a fixed 3 s + 2 s was a third of the check's time, and at the load's usual
# rate (100-300 answers a second) 200 answers give a p99 and 50 reach both workers.
BASELINE_ANSWERS = 200
BASELINE_S = (1.0, 3.0)
TAIL_ANSWERS = 50
TAIL_S = (0.5, 2.0)
#: How often the answers are counted while waiting.
POLL_S = 0.05
#: The load's markers around the rotation command.
ROTATION_STARTED = "rotation started"
ROTATION_FINISHED = "rotation finished"


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
        health: the service's health before and right after the rotation.
        read_after: whether the key ring and the rows were read after the rotation
            (not when a dependency was unavailable right after it).
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
    health: HealthAround = field(default_factory=HealthAround)
    read_after: bool = True

    @classmethod
    def not_run(cls, command: Sequence[str], health: HealthAround) -> TokenRotationObservation:
        """The rotation was not run (``health.not_run`` says why)."""
        return cls(CommandResult.never_started(command), LoadReport((), (), 0.0, 0), (), (), (), (),
                   (), (), 0, (), 0, 0, health, read_after=False)


@dataclass(frozen=True)
class JwtRotationObservation:
    """A session token's fate across a JWT secret rotation.

    Attributes:
        command: the rotation command's run.
        status_before: answer to the old token before the rotation.
        status_after: the last answer to the old token after the rotation (0: no answer).
        refused_after_s: seconds after the command until the old token was refused (None: never).
        new_login: '' when a new login worked, else why not.
        new_token_status: answer to the new token.
        secret_changed: whether the HSM's signing secret changed (None: unknown).
        health: the service's health before and right after the rotation.
    """

    command: CommandResult
    status_before: int
    status_after: int
    refused_after_s: float | None
    new_login: str
    new_token_status: int | None
    secret_changed: bool | None
    health: HealthAround = field(default_factory=HealthAround)

    @classmethod
    def not_run(cls, command: Sequence[str], health: HealthAround) -> JwtRotationObservation:
        """The rotation was not run (``health.not_run`` says why)."""
        return cls(CommandResult.never_started(command), 0, 0, None, "", None, None, health)


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
        health: the service's health before and right after the rotation.
    """

    what: str
    command: CommandResult
    old_accepted_before: str
    old_after: str
    new_after: str
    changed_in_hsm: bool | None
    service_after: str
    health: HealthAround = field(default_factory=HealthAround)

    @classmethod
    def not_run(cls, what: str, command: Sequence[str],
                health: HealthAround) -> PasswordRotationObservation:
        """The rotation was not run (``health.not_run`` says why)."""
        return cls(what, CommandResult.never_started(command), "", "", "", None, "", health)


class AnswerCount:
    """A load call that counts the answers it returns, and a wait for a number of them.

    Attributes:
        answered: calls that returned so far (answered or failed, not raised).
    """

    def __init__(self, call: Callable[[int, int], LoadCall], *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._call = call
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.answered = 0

    def __call__(self, worker: int, iteration: int) -> LoadCall:
        result = self._call(worker, iteration)
        with self._lock:
            self.answered += 1
        return result

    def wait_for(self, answers: int, least_s: float, most_s: float) -> float:
        """Wait until ``answers`` more calls returned, at least ``least_s`` and at most ``most_s``.

        Returns the seconds waited.
        """
        started = self._clock()
        target = self.answered + answers
        while True:
            waited = self._clock() - started
            if waited >= most_s or (waited >= least_s and self.answered >= target):
                return waited
            self._sleep(min(POLL_S, max(0.0, most_s - waited)))



#: A run of key-like characters in a command's output line: a key the rotation just made is not
#: a known secret yet, so it is masked before the line is cut for the timeline (a cut copy would
#: escape both the redaction and the final leak scan).
_KEY_LIKE = re.compile(r"[A-Za-z0-9+/=_-]{20,}")


def timeline_words(line: str, limit: int = 120) -> str:
    """A command's output line as the load timeline shows it: key-like runs masked, then cut."""
    return _KEY_LIKE.sub("[…]", line)[:limit]

def observe_token_key_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                               key_classes: KeyClasses, command: Sequence[str]) -> TokenRotationObservation:
    """Ask the service's health; seed canary channels, rotate under steady load, ask the
    health again and, when every dependency answers, read everything back."""
    assert profile.hsm is not None
    what = "token-key rotation"
    around = before_destructive(profile, policy, what, known_secrets)
    if around.not_run is not None:
        return TokenRotationObservation.not_run(command, around)
    prefix = profile.hsm.key_namespace + key_classes.proof.token_key_prefix
    canary = RotationCanary(profile, policy, known_secrets)
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
        answers = AnswerCount(load_call(canary, channel_ids, expected, uncertain, writes,
                                        lambda: clock_holder[0].elapsed(), concurrency))
        load = SteadyLoad(answers, concurrency, stop_timeout_s=policy.timeouts.request_s + 5)
        clock_holder.append(load)
        load.start()
        try:
            answers.wait_for(BASELINE_ANSWERS, *BASELINE_S)
            load.mark(ROTATION_STARTED)
            result = run_operation(command, command_timeout(profile, policy),
                                   on_line=lambda line: load.mark(f"output: {timeline_words(line)}"),
                                   known_secrets=known_secrets)
            load.mark(ROTATION_FINISHED)
            # Calls in flight at the end may have started before it: they do not count.
            answers.wait_for(TAIL_ANSWERS + concurrency, *TAIL_S)
        finally:
            report = load.stop()
        around = after_operation(profile, policy, around, what, known_secrets)
        # With a dependency down, reading the ring and every row would only meet the outage
        # again (each read waiting for its deadline); what failed is judged as its effect.
        read_after = around.explaining_outage() is None
        ring_after: list[tuple[int, str, bytes]] = []
        rows_after = []
        if read_after:
            snap_after = hsm_probe.snapshot(profile.hsm, known_secrets, read_prefix=prefix,
                                            timeout_s=policy.timeouts.request_s)
            ring_after = token_ring(snap_after.values, prefix)
            rows_after = read_channel_rows(profile, policy, known_secrets)
    except BaseException as exc:
        left = canary.release()
        if left and isinstance(exc, ProbeError):
            raise ProbeError(f"{exc}; {left}") from None
        raise
    canary.release()
    new_ring = fernet_of([v for _, _, v in ring_after])
    new_versions = {v for v, _, _ in ring_after} - {v for v, _, _ in ring_before}
    retired = ring_before[0][2] if ring_before else None
    undecryptable, with_retired = [], []
    retired_fernet = single_fernet(retired) if retired is not None else None
    for row in rows_after:
        tokens = [t for t in (row.access_token_enc, row.refresh_token_enc) if t is not None]
        if ring_after and any(decrypts(new_ring, t) is None for t in tokens):
            undecryptable.append(row.id)
        if retired_fernet is not None and new_versions and any(
                decrypts(retired_fernet, t) is not None for t in tokens):
            with_retired.append(row.id)
    by_id = {row.id: row for row in rows_after}
    mismatches = []
    for channel, (access, refresh) in expected.items():
        if channel in uncertain or not read_after:
            continue
        stored = by_id.get(channel)
        if stored is None or decrypts(new_ring, stored.access_token_enc) != access.encode() or \
                decrypts(new_ring, stored.refresh_token_enc) != refresh.encode():
            mismatches.append(channel)
    start, end = report.phase(ROTATION_STARTED, ROTATION_FINISHED)
    return TokenRotationObservation(
        command=result, load=report,
        ring_before=ring_fingerprints(ring_before), ring_after=ring_fingerprints(ring_after),
        rows_before=tuple(r.id for r in rows_before), rows_after=tuple(r.id for r in rows_after),
        undecryptable_after=tuple(undecryptable), readable_with_retired=tuple(with_retired),
        canary_rows=sum(1 for r in rows_after if r.brand_id == canary.brand_id),
        canary_mismatches=tuple(sorted(mismatches)),
        writes_during_rotation=sum(1 for t, _ in writes if start <= t < end),
        writes_checked=len(expected) - len(uncertain & set(expected)),
        health=around, read_after=read_after)


def observe_jwt_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                         key_classes: KeyClasses, command: Sequence[str]) -> JwtRotationObservation:
    """Ask the service's health; log in, rotate the JWT secret, see what happens to the old and
    a new session, ask the health again, and remove the canary on every path."""
    what = "JWT rotation"
    around = before_destructive(profile, policy, what, known_secrets)
    if around.not_run is not None:
        return JwtRotationObservation.not_run(command, around)
    label = (profile.hsm.key_namespace if profile.hsm else "votriz/") + key_classes.proof.jwt_signing
    before = (hsm_probe.read_values(profile.hsm, [label], known_secrets,
                                    timeout_s=policy.timeouts.request_s).get(label)
              if profile.hsm else None)
    with VotrizApi(profile, timeout_s=policy.timeouts.request_s) as api:
        canary = create_canary(api, known_secrets, CANARY_PURPOSE)
        with canary.removed_on_failure(api, known_secrets):
            old = api.token
            assert old is not None
            status_before = api.request("GET", "/brands", token=old).status
            result = run_operation(command, command_timeout(profile, policy),
                                   known_secrets=known_secrets)
            done = time.monotonic()
            refused_after: float | None = None
            status_after = status_before
            while True:
                # After the command, a call without an answer is an observation (status 0), not
                # the end of the check: the health asked below may explain it.
                try:
                    status_after = api.request("GET", "/brands", token=old).status
                except ProbeError:
                    status_after = 0
                if status_after == 401:
                    refused_after = time.monotonic() - done
                    break
                if time.monotonic() - done > key_classes.proof.roll_grace_s:
                    break
                time.sleep(POLL_S * 2)
            new_login, new_status = "", None
            try:
                new = api.login(canary.email, canary.password)
                known_secrets.add(new, "canary session token")
                new_status = api.request("GET", "/brands", token=new).status
            except ProbeError as exc:
                new_login = str(exc)
            around = after_operation(profile, policy, around, what, known_secrets)
        # Removed on every path: also when the new login failed (its session is then the old,
        # refused one, and remove() logs in again); one left stays open in the run's ledger.
        canary.remove(api, known_secrets)
    after = (hsm_probe.read_values(profile.hsm, [label], known_secrets,
                                   timeout_s=policy.timeouts.request_s).get(label)
             if profile.hsm else None)
    changed = None if before is None or after is None else before != after
    return JwtRotationObservation(result, status_before, status_after, refused_after, new_login,
                                  new_status, changed, around)


def service_works(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                  grace_s: float) -> str:
    """'' when a fresh canary can sign up, log in and list brands (DB and Redis), else why not."""
    deadline = time.monotonic() + grace_s
    while True:
        try:
            with VotrizApi(profile, timeout_s=policy.timeouts.request_s) as api, \
                    canary_account(api, known_secrets, CANARY_PURPOSE):
                api.expect(200, "GET", "/brands")
            return ""
        except ProbeError as exc:
            if time.monotonic() > deadline:
                return str(exc)
            time.sleep(POLL_S * 4)


def observe_password_rotation(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                              key_classes: KeyClasses, command: Sequence[str], label: str,
                              attempt: Callable[[str], str], what: str) -> PasswordRotationObservation:
    """Ask the service's health; read the password from the HSM, rotate, try the old and new
    ones, use the service, and ask the health again.

    ``attempt`` tries one password at the store (:mod:`harness.probes.credentials`).
    """
    assert profile.hsm is not None
    operation = f"{what} password rotation"
    around = before_destructive(profile, policy, operation, known_secrets)
    if around.not_run is not None:
        return PasswordRotationObservation.not_run(what, command, around)
    old = hsm_probe.read_values(profile.hsm, [label], known_secrets,
                                timeout_s=policy.timeouts.request_s).require(label).decode()
    before = attempt(old)
    if before != "accepted":
        return PasswordRotationObservation(what, CommandResult.never_started(command), before, "", "",
                                           None, "", around)
    result = run_operation(command, command_timeout(profile, policy), known_secrets=known_secrets)
    old_after = attempt(old)
    new_value = hsm_probe.read_values(profile.hsm, [label], known_secrets,
                                      timeout_s=policy.timeouts.request_s).get(label)
    new_after = attempt(new_value.decode()) if new_value is not None else "not readable from the HSM"
    service = service_works(profile, policy, known_secrets, key_classes.proof.roll_grace_s)
    around = after_operation(profile, policy, around, operation, known_secrets)
    return PasswordRotationObservation(what, result, "", old_after, new_after,
                                       None if new_value is None else new_value.decode() != old,
                                       service, around)


def not_run_verdict(health: HealthAround, command: CommandResult) -> Verdict | None:
    """ERROR when the operation was not run because of an outage (None when it ran)."""
    if health.not_run is None:
        return None
    return Verdict.error(health.not_run.not_run() + f"; {' '.join(command.argv)} was not started.",
                         command=command.as_evidence(), health=health.as_evidence())


def password_rotation_verdict(obs: PasswordRotationObservation) -> Verdict:
    """The old password is refused afterwards and the service still works.

    Shared by ``keys.db_password_rotation`` and ``keys.redis_password_rotation``: the
    promise is the same. Not run because of an outage, or failed while a dependency was
    unavailable right after the rotation: ERROR naming it, never FAIL.
    """
    not_run = not_run_verdict(obs.health, obs.command)
    if not_run is not None:
        return not_run
    details: dict[str, Any] = {
        "command": obs.command.as_evidence(), "old_before": obs.old_accepted_before or "accepted",
        "old_after": obs.old_after, "new_after": obs.new_after, "changed_in_hsm": obs.changed_in_hsm,
        "service_after": obs.service_after or "ok", "health": obs.health.as_evidence()}
    if obs.old_accepted_before:
        return Verdict.error(f"Cannot test the {obs.what} password rotation: the password read from "
                             f"the HSM did not work before it ({obs.old_accepted_before}).", **details)
    failures = []
    if not obs.command.ok:
        failures.append(f"the rotation command: {obs.command.unfinished() or obs.command.describe()}")
    if obs.old_after not in ("refused", "accepted"):
        failures.append(f"the old password: {obs.old_after}")
    if obs.new_after != "accepted":
        failures.append(f"the new password: {obs.new_after or 'not tried'}")
    if obs.service_after:
        failures.append(f"the service: {obs.service_after}")
    outage = obs.health.explaining_outage()
    if outage is not None and failures:
        return Verdict.error(explained_failure(outage, f"{obs.what} password rotation", failures),
                             **details)
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
