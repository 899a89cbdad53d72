"""transit.outbound_https: the API calls the LLM and Resend over TLS, never the plaintext decoy."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from harness.evidence import EvidenceRecorder
from harness.outcomes import Verdict
from harness.policy import Policy
from harness.probes.outbound import PROMISED_UPSTREAMS, OutboundExercise, observe_outbound
from harness.profile import TargetProfile
from harness.redaction import KnownSecrets

OUTBOUND_ATTESTATION = (
    "No capture of the upstream calls is configured (profile [capture]). Attest that the API "
    "calls the LLM provider (Anthropic) and Resend only over https:// with certificate "
    "verification: show the configured upstream base URLs and an egress log or proxy capture "
    "showing TLS connections to both.")


def outbound_https_verdict(exercise: OutboundExercise) -> Verdict:
    """The LLM and Resend calls both reached the fakes' TLS listener, and nothing at all
    reached the plaintext decoy."""
    details: dict[str, Any] = {
        "steps": [dataclasses.asdict(s) for s in exercise.steps],
        "captured": [dataclasses.asdict(r) for r in exercise.captured],
        "since_seq": exercise.since_seq, "waited_s": exercise.waited_s,
        "canary_removed": exercise.canary_removed, "canary_cleanup_error": exercise.cleanup_error,
    }
    plaintext, unseen, over_tls = [], [], []
    for upstream, prefix in PROMISED_UPSTREAMS.items():
        calls = [r for r in exercise.captured if r.path.startswith(prefix)]
        clear = [r for r in calls if r.listener != "tls"]
        if clear:
            plaintext.append(f"the {upstream} call ({clear[0].method} {clear[0].path}) arrived on "
                             f"the {clear[0].listener} listener")
        elif not calls:
            unseen.append(upstream)
        else:
            over_tls.append(upstream)
    promised = tuple(PROMISED_UPSTREAMS.values())
    others = [r for r in exercise.captured if r.listener != "tls" and not r.path.startswith(promised)]
    plaintext += [f"{r.method} {r.path} arrived on the {r.listener} listener" for r in others]
    note = ("" if exercise.canary_removed
            else f" (The canary account could not be removed: {exercise.cleanup_error}.)")
    if plaintext:
        return Verdict.failed("Outbound calls went out without TLS: " + "; ".join(plaintext) + "."
                              + note, **details)
    if unseen:
        return Verdict.error(f"The {' and '.join(unseen)} call never reached the fakes within "
                             f"{exercise.waited_s:g}s, so its transport could not be observed." + note,
                             **details)
    return Verdict.passed(f"The {' and '.join(over_tls)} calls arrived over TLS and nothing reached "
                          "the plaintext decoy." + note, **details)


@pytest.mark.claims("INTERNAL-OUTBOUND-HTTPS")
@pytest.mark.access("api", "capture")
def check_outbound_https(profile: TargetProfile, policy: Policy, known_secrets: KnownSecrets,
                         evidence: EvidenceRecorder) -> None:
    if profile.capture is None:
        evidence.manual(OUTBOUND_ATTESTATION)
    if profile.api is None or not profile.api.canaries:
        evidence.manual("The profile does not allow canary accounts through the API (api.canaries), "
                        "so the upstream calls cannot be triggered. " + OUTBOUND_ATTESTATION)
    verdict = outbound_https_verdict(observe_outbound(profile, policy, known_secrets))
    evidence.attach("outbound-calls", verdict.details)
    evidence.conclude(verdict)
