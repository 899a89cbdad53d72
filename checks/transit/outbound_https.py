"""transit.outbound_https: the API's own flows to the LLM and Resend begin with a TLS ClientHello,
and no plaintext HTTP request leaves its network namespace."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from harness.details import plural
from harness.evidence import EvidenceRecorder
from harness.outcomes import Verdict
from harness.platform.base import OutOfReach
from harness.policy import Policy
from harness.probes.outbound import OutboundExercise, observe_outbound, outbound_reach
from harness.probes.wire import WireFlow
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

OUTBOUND_ATTESTATION = (
    "Attest that the API calls the LLM provider (Anthropic) and Resend only over https:// with "
    "certificate verification: show the configured upstream base URLs and an egress log or proxy "
    "capture showing TLS connections to both.")

# Flow starts that can carry an upstream call (to a peer the API does not use for a control call).
TLS_STARTS = ("tls-client-hello", "tls-records")
# What a flow neither TLS nor HTTP may be without leaving an upstream call unexplained
# (harness.probes.flow_start names them): a store's own protocol.
STORE_PROTOCOLS = ("PostgreSQL", "Redis protocol")


def _flow_words(flow: WireFlow) -> str:
    if flow.start.kind == "tls-client-hello":
        named = f"for {flow.start.server_name!r}" if flow.start.server_name else "without a server name"
        return f"{flow.server} (ClientHello {named})"
    return f"{flow.server} ({flow.start.note or flow.start.kind})"


def _plaintext(flows: tuple[WireFlow, ...]) -> list[str]:
    found = []
    for flow in flows:
        if flow.start.kind == "http-request":
            found.append(f"{flow.start.request} to {flow.server} in plaintext")
        found += [f"{request} to {flow.server} in plaintext" for request in flow.requests]
    return found


def outbound_https_verdict(exercise: OutboundExercise) -> Verdict:
    """Every flow the API opened during the exercise that carried an HTTP request began with a
    TLS ClientHello (naming an expected server, when the profile knows the names), and each
    promised upstream call had such a flow while it was made.

    FAIL on any plaintext HTTP request from the API, or a ClientHello for a name the profile does
    not expect; ERROR when a call produced no TLS flow, or the kernel dropped packets, so
    nothing would be proven.
    """
    wire = exercise.wire
    flows = wire.flows
    details: dict[str, Any] = {
        "api": {"where": wire.api.where, "root_pids": list(wire.api.root_pids),
                "namespace": str(wire.api.namespace)},
        "steps": [dataclasses.asdict(s) for s in exercise.steps],
        "flows": [dataclasses.asdict(f) for f in flows],
        "window_end": exercise.window_end, "expected_server_names": (
            sorted(exercise.expected_names) if exercise.expected_names is not None else None),
        "packets": wire.packets, "dropped": wire.dropped, "other_flows": wire.other_flows,
        "flows_not_followed": wire.flows_not_followed,
        "capture_second_source": [dataclasses.asdict(r) for r in exercise.captured],
        "capture_error": exercise.capture_error,
        "canary_removed": exercise.canary_removed, "canary_cleanup_error": exercise.cleanup_error,
    }
    note = ("" if exercise.canary_removed
            else f" (The canary account could not be removed: {exercise.cleanup_error}.)")
    plaintext = _plaintext(flows)
    expected = exercise.expected_names
    misnamed = [f"{flow.server} asked for {flow.start.server_name or 'no server name'!r}"
                for flow in flows
                if expected is not None and flow.start.kind == "tls-client-hello"
                and flow.start.server_name not in expected]
    if plaintext or misnamed:
        said = []
        if plaintext:
            said.append("the API sent plaintext HTTP: " + "; ".join(plaintext))
        if misnamed:
            said.append(f"a ClientHello named another server than {sorted(expected or ())}: "
                        + "; ".join(misnamed))
        return Verdict.failed("On the wire in the API's network namespace, " + " and ".join(said)
                              + "." + note, **details)
    if wire.dropped or wire.flows_not_followed:
        return Verdict.error(f"The capture lost {wire.dropped} packets and did not follow "
                             f"{wire.flows_not_followed} flows, so a plaintext request could have "
                             "gone unseen." + note, **details)
    infrastructure = infrastructure_peers(exercise)
    details["infrastructure_peers"] = sorted(infrastructure)
    seen, unseen, unexplained = [], [], []
    for index, step in enumerate(exercise.steps):
        end = (exercise.steps[index + 1].sent_at if index + 1 < len(exercise.steps)
               else exercise.window_end)
        new_peers = [f for f in flows
                     if f.server not in infrastructure and f.active_between(step.sent_at, end)]
        carried = [f for f in new_peers if f.start.kind in TLS_STARTS]
        unexplained += [f"{_flow_words(f)} during the {step.upstream} call" for f in new_peers
                        if f.start.kind == "other" and not f.start.note.startswith(STORE_PROTOCOLS)]
        if carried:
            seen.append(f"the {step.upstream} call ({step.action}, answered {step.status}) over "
                        + ", ".join(_flow_words(f) for f in carried))
        else:
            unseen.append(f"the {step.upstream} call ({step.action}, answered {step.status})")
    controls = " and ".join(sorted({c.action for c in exercise.controls})) or "no control call"
    stores = (f" (flows to {plural(len(infrastructure), 'peer')} of its stores, sent to for {controls}, "
              "which makes no upstream call, or named by the profile, were not counted: "
              f"{', '.join(sorted(infrastructure))})" if infrastructure else "")
    if unseen:
        return Verdict.error(f"No TLS flow of the API carried {' or '.join(unseen)} while it was made "
                             f"({len(flows)} client flows of {wire.api.where} seen{stores}), so its "
                             "transport could not be observed." + note, **details)
    if unexplained:
        return Verdict.error("While the upstream calls were made the API also sent, to peers it did not "
                             f"use for {controls}, bytes that are neither TLS, HTTP nor a store's "
                             "protocol: " + "; ".join(unexplained) + ". A call could have left over "
                             "one of them in plaintext, so the transport could not be shown to be TLS."
                             + note, **details)
    return Verdict.passed(f"On the wire in the API's network namespace ({wire.api.where}): "
                          + "; ".join(seen) + f"{stores}. No plaintext HTTP request among the "
                          f"{len(flows)} client flows of the API followed." + note, **details)


def infrastructure_peers(exercise: OutboundExercise) -> frozenset[str]:
    """The peers (``address:port``) the API sent to during a control call (``GET /mfa``: its
    session store and database, no upstream), and those of the stores the profile names: a
    flow to one of them during an upstream call is no evidence of how the call itself
    travelled, TLS or not. An upstream the API called earlier (a welcome mail at signup) is no
    such peer: it is not called for a control. A store the API touches only while calling an
    upstream, and that the profile does not name, cannot be told from one."""
    stores = exercise.stores
    return frozenset(f.server for f in exercise.wire.flows
                     if any(f.active_between(c.sent_at, c.answered_at) for c in exercise.controls)
                     or f.server in stores or (f.start.server_name or "").lower() in stores)


@pytest.mark.claims("INTERNAL-OUTBOUND-HTTPS")
@pytest.mark.access("api", "processes")
def check_outbound_https(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                         evidence: EvidenceRecorder) -> None:
    if profile.api is None or not profile.api.canaries:
        evidence.manual("The profile does not allow canary accounts through the API (api.canaries), "
                        "so the upstream calls cannot be triggered. " + OUTBOUND_ATTESTATION)
    target = outbound_reach(profile, policy)
    if isinstance(target, OutOfReach):
        evidence.manual(f"The API's outbound flows cannot be observed: {target.reason}. "
                        + OUTBOUND_ATTESTATION)
        return
    verdict = outbound_https_verdict(observe_outbound(profile, policy, known_secrets, target))
    evidence.attach("outbound-flows", verdict.details)
    evidence.conclude(verdict)
