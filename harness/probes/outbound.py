"""Outbound calls of the service, as seen by the harness's fakes of its upstreams.

The fakes (``profile.capture``) stand in for Anthropic, Resend and the others.
They listen twice: once over TLS and once on a plaintext decoy port, and their
capture API lists every request with the listener it arrived on (never header
values or bodies: those carry keys). A canary account drives the API to call
its upstreams; the capture API then says which listener each call reached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from harness.canaries import CanaryAccount, create_canary
from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes.api import VotrizApi
from harness.probes.capture import CaptureClient, CapturedRequest
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

# The upstream calls the page promises are HTTPS ("API-to-LLM and API-to-Resend
# calls are HTTPS"), by the path prefix under which the fakes serve them.
PROMISED_UPSTREAMS: dict[str, str] = {
    "LLM (Anthropic)": "/anthropic/",
    "Resend": "/resend/",
}

# How often the capture API is polled while waiting for asynchronous calls (mail).
POLL_INTERVAL_S = 0.2


@dataclass(frozen=True)
class ExerciseStep:
    """One API call the canary made to trigger an upstream call.

    Attributes:
        action: what was asked (``POST /brands/{id}/captions``).
        status: the API's HTTP status.
        upstream: the upstream it should reach.
    """

    action: str
    status: int
    upstream: str


@dataclass(frozen=True)
class OutboundExercise:
    """What the fakes received while a canary drove the API.

    Attributes:
        since_seq: the fakes' last sequence number before the exercise.
        steps: the API calls made.
        captured: every request the fakes received after ``since_seq``.
        waited_s: how long the probe waited for the calls to arrive.
        canary_removed: whether the canary account was deleted afterwards.
        cleanup_error: why it could not be deleted, if so.
    """

    since_seq: int
    steps: tuple[ExerciseStep, ...]
    captured: tuple[CapturedRequest, ...]
    waited_s: float
    canary_removed: bool = False
    cleanup_error: str | None = None


def _wanted_seen(captured: tuple[CapturedRequest, ...]) -> bool:
    return all(any(r.path.startswith(prefix) for r in captured) for prefix in PROMISED_UPSTREAMS.values())


def exercise_outbound(api: VotrizApi, canary: CanaryAccount, capture: CaptureClient,
                      policy: Policy) -> OutboundExercise:
    """Make the API call the LLM and Resend, and collect what the fakes received.

    The caption call is synchronous; the recovery mail may be sent after the
    answer, so the capture API is polled until both upstreams were reached or
    ``policy.timeouts.request_s`` has passed.
    """
    since = capture.last_seq()
    steps = []
    brand_id = api.create_brand("votriz-audit canary brand", "audit")
    answer = api.create_caption(brand_id, "votriz-audit canary: one short caption, please")
    steps.append(ExerciseStep(f"POST /brands/{brand_id}/captions", answer.status, "LLM (Anthropic)"))
    answer = api.request_recovery(canary.email)
    steps.append(ExerciseStep("POST /recovery/request", answer.status, "Resend"))
    started = time.monotonic()
    captured = capture.requests_since(since)
    while not _wanted_seen(captured) and time.monotonic() - started < policy.timeouts.request_s:
        time.sleep(POLL_INTERVAL_S)
        captured = capture.requests_since(since)
    return OutboundExercise(since, tuple(steps), captured, round(time.monotonic() - started, 3))


def observe_outbound(profile: TargetProfile, policy: Policy,
                     known_secrets: KnownSecrets) -> OutboundExercise:
    """Create a canary, make the API call its upstreams, read the capture, remove the canary.

    The canary is removed (``DELETE /account``) whatever happens after it was
    created; a failed removal is recorded in the observation rather than hiding
    what was observed.

    Raises:
        ProbeError: the profile lacks ``capture`` or ``api``, or the API or the
            capture API cannot be driven.
    """
    if profile.capture is None:
        raise ProbeError("the profile has no [capture] section (fakes of the upstreams)")
    capture = CaptureClient(profile.capture, profile, policy)
    api = VotrizApi(profile, timeout_s=policy.timeouts.request_s)
    try:
        canary = create_canary(api, known_secrets, "transit")
        exercise: OutboundExercise | None = None
        try:
            exercise = exercise_outbound(api, canary, capture, policy)
        finally:
            cleanup_error = canary.remove(api, known_secrets) or None
            removed = cleanup_error is None
            if exercise is None and cleanup_error is not None:
                # The exercise itself failed; its ProbeError is propagating. Say that
                # the canary is left behind too, since nobody will read the observation.
                import warnings

                warnings.warn(f"canary {canary.email} could not be removed: {cleanup_error}",
                              stacklevel=1)
        return replace(exercise, canary_removed=removed, cleanup_error=cleanup_error)
    finally:
        api.close()
        capture.close()
