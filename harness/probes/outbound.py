"""Outbound calls of the service, seen on the wire in the API's network namespace.

A canary account drives the API to call its upstreams (a caption: the LLM; a
recovery request: Resend) while :mod:`harness.probes.wire` captures, in the
API's own network namespace, every TCP flow the API's processes open as
clients and what each flow's first client bytes are. Each step records when
it was sent and answered, so the check can tell which flows carried which
call. No fake, no proxy and no configuration of the service is needed: only
the public API and this host's view of the API's processes.

When the profile has a ``[capture]`` section (the reference's fakes of the
upstreams), what the fakes received is read too, as a second source for the
evidence; the verdict rests on the wire.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from harness.canaries import create_canary
from harness.outcomes import ProbeError
from harness.platform.base import OutOfReach
from harness.policy import Policy
from harness.probes.api import ApiResponse, VotrizApi
from harness.probes.capture import CaptureClient, CapturedRequest
from harness.probes.wire import ApiProcesses, WireCapture, find_api_processes, watching_the_wire
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

# The upstream calls the page promises are HTTPS ("API-to-LLM and API-to-Resend calls are
# HTTPS"), and the path prefix under which the reference's fakes serve them (read only in the
# second source, the fakes' capture).
PROMISED_UPSTREAMS: dict[str, str] = {
    "LLM (Anthropic)": "/anthropic/",
    "Resend": "/resend/",
}
LLM, RESEND = tuple(PROMISED_UPSTREAMS)

#: After the last step, how long the capture goes on for calls the API makes after answering
#: (a mail queued and sent a moment later).
SETTLE_S = 1.5
#: With the fakes' capture (``[capture]``), the settling ends sooner: once the fakes hold a
#: request of every promised upstream made since the exercise began (what the settling waits
#: for has then arrived), this much later, so that the wire capture's child has read what the
#: kernel already holds of those flows (it reads as packets come, ~every 0.05 s). The
#: reference's calls are made before it answers: the 1.5 s settle was a wait for nothing.
CAPTURED_MARGIN_S = 0.25
#: How often the fakes' capture is asked while settling.
CAPTURE_POLL_S = 0.05


@dataclass(frozen=True)
class ExerciseStep:
    """One API call the canary made to trigger an upstream call.

    Attributes:
        action: what was asked (``POST /brands/{id}/captions``).
        status: the API's HTTP status.
        upstream: the upstream it should reach.
        sent_at: ``time.monotonic()`` when the request was about to be sent.
        answered_at: when its answer had arrived (the window of this step's upstream call
            ends :data:`SETTLE_S` later for the last step).
    """

    action: str
    status: int
    upstream: str
    sent_at: float = 0.0
    answered_at: float = 0.0


@dataclass(frozen=True)
class OutboundExercise:
    """What the wire showed while a canary drove the API.

    Attributes:
        steps: the API calls made, in order, with their times.
        wire: the capture of the API's client flows (the verdict's source).
        window_end: when the last step's window closes (its answer plus :data:`SETTLE_S`).
        expected_names: the server names the upstreams may be asked for in a ClientHello,
            when the profile says (the ``[capture]`` fakes' name); None when not known.
        controls: API calls that make no upstream call (``GET /mfa``), made before each step:
            the peers the API sends to during them are its stores, not an upstream.
        stores: the stores the profile names (its database's and Redis's ``host:port`` and host
            names): a store the API touches only while calling an upstream is no upstream either.
        captured: what the fakes received meanwhile (second source; empty without ``[capture]``).
        capture_error: why the fakes' capture could not be read, if it could not.
        canary_removed: whether the canary account was deleted afterwards.
        cleanup_error: why it could not be deleted, if so.
    """

    steps: tuple[ExerciseStep, ...]
    wire: WireCapture
    window_end: float
    expected_names: frozenset[str] | None = None
    controls: tuple[ExerciseStep, ...] = ()
    stores: frozenset[str] = frozenset()
    captured: tuple[CapturedRequest, ...] = ()
    capture_error: str | None = None
    canary_removed: bool = False
    cleanup_error: str | None = None


def outbound_reach(profile: TargetProfile, policy: Policy) -> ApiProcesses | OutOfReach:
    """The API's processes whose flows the check judges, or why they are out of reach.

    Raises:
        ProbeError: the API's process or container is named but cannot be found running.
    """
    return find_api_processes(profile, policy)


def expected_server_names(profile: TargetProfile) -> frozenset[str] | None:
    """The names a ClientHello to the upstreams may carry, when the profile knows them: the
    ``[capture]`` fakes' ``server_name`` or host name (an IP address: no name is sent)."""
    if profile.capture is None:
        return None
    if profile.capture.server_name:
        return frozenset({profile.capture.server_name.lower()})
    host = urlsplit(profile.capture.url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return frozenset({host.lower()}) if host else None
    return None


def store_names(profile: TargetProfile) -> frozenset[str]:
    """``host:port`` and host name of each store the profile names (its database over TCP, its
    Redis), as a flow's peer or a ClientHello's server name would show them."""
    found: set[str] = set()
    if profile.redis is not None:
        found |= {f"{profile.redis.host}:{profile.redis.port}", profile.redis.host.lower()}
    if profile.database is not None:
        try:
            params = conninfo_to_dict(profile.database.dsn)
        except psycopg.Error:
            params = {}
        host, port = str(params.get("host") or ""), str(params.get("port") or "5432")
        for name in host.split(","):
            if name and not name.startswith("/"):
                found |= {f"{name}:{port}", name.lower()}
    return frozenset(found)


def _timed(action: str, upstream: str, call: Callable[[], ApiResponse]) -> ExerciseStep:
    sent = time.monotonic()
    status = call().status
    return ExerciseStep(action, status, upstream, sent, time.monotonic())


#: What a control call is named in the evidence (no upstream is expected of it).
CONTROL = ""


def _exercise(api: VotrizApi, email: str) -> tuple[tuple[ExerciseStep, ...], tuple[ExerciseStep, ...]]:
    """The upstream calls, each preceded by a control call that reaches only the API's stores."""
    brand_id = api.create_brand("votriz-audit canary brand", "audit")
    # Whatever it answers, the call went through the API's session and its stores.
    def control() -> ApiResponse:
        return api.request("GET", "/mfa")

    first_control = _timed("GET /mfa", CONTROL, control)
    llm = _timed(f"POST /brands/{brand_id}/captions", LLM,
                 lambda: api.create_caption(brand_id, "votriz-audit canary: one short caption, please"))
    second_control = _timed("GET /mfa", CONTROL, control)
    mail = _timed("POST /recovery/request", RESEND, lambda: api.request_recovery(email))
    return (llm, mail), (first_control, second_control)


def _settled(capture: CaptureClient | None, since: int | None, latest: float) -> float:
    """Let the capture go on until ``latest`` (monotonic), or until the fakes' capture holds a
    request of every promised upstream since ``since`` plus :data:`CAPTURED_MARGIN_S`; when
    the window ended. A capture that cannot be asked leaves the full settling time (its error
    is reported when it is read after the exercise)."""
    while capture is not None and since is not None and time.monotonic() < latest:
        try:
            paths = [request.path for request in capture.requests_since(since)]
        except ProbeError:
            break
        if all(any(path.startswith(prefix) for path in paths) for prefix in PROMISED_UPSTREAMS.values()):
            latest = min(latest, time.monotonic() + CAPTURED_MARGIN_S)
            break
        time.sleep(min(CAPTURE_POLL_S, max(0.0, latest - time.monotonic())))
    time.sleep(max(0.0, latest - time.monotonic()))
    return latest


def observe_outbound(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                     target: ApiProcesses) -> OutboundExercise:
    """Capture the API's flows while a canary makes it call the LLM and Resend; remove the canary.

    The capture starts before the canary is created, so every flow of the exercise is seen
    from its first byte; the canary is removed (``DELETE /account``) after the capture
    stopped, whatever happened; a failed removal is recorded in the observation rather than
    hiding what was observed, and the run's canary ledger reports the account.

    Raises:
        ProbeError: the capture could not run, or the API could not be driven.
    """
    capture = CaptureClient(profile.capture, profile, policy) if profile.capture is not None else None
    api = VotrizApi(profile, timeout_s=policy.timeouts.request_s)
    since, capture_error = None, None
    canary = None
    try:
        # Signup, login (bcrypt), a brand, two controls, two calls and the settling time, each
        # bounded by request_s.
        with watching_the_wire(target, 8 * policy.timeouts.request_s + SETTLE_S) as watch:
            canary = create_canary(api, known_secrets, "transit")
            if capture is not None:
                try:
                    since = capture.last_seq()
                except ProbeError as exc:
                    capture_error = str(exc)
            steps, controls = _exercise(api, canary.email)
            window_end = _settled(capture, since, steps[-1].answered_at + SETTLE_S)
        assert watch.capture is not None
        exercise = OutboundExercise(steps, watch.capture, window_end, expected_server_names(profile),
                                    controls, store_names(profile))
        if capture is not None and since is not None:
            try:
                exercise = replace(exercise, captured=capture.requests_since(since))
            except ProbeError as exc:
                capture_error = str(exc)
        exercise = replace(exercise, capture_error=capture_error)
    finally:
        # One left behind (also when the exercise failed and nobody reads the observation)
        # stays open in the run's canary ledger, which reports it at the end of the run.
        cleanup_error = (canary.remove(api, known_secrets) or None) if canary is not None else None
        api.close()
        if capture is not None:
            capture.close()
    return replace(exercise, canary_removed=cleanup_error is None, cleanup_error=cleanup_error)
