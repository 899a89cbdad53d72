"""transit.origin_not_plaintext: no listener of the service's processes serves plain HTTP.

The listeners come from the platform the profile describes (``harness/platform``):
local processes or Docker containers; elsewhere a human attests (MANUAL).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from harness.details import counts
from harness.evidence import EvidenceRecorder
from harness.outcomes import Verdict
from harness.platform import OutOfReach, platform_for
from harness.policy import Policy
from harness.probes.http import PlainHttpAnswer
from harness.probes.listeners import OriginSurvey, SkipReason
from harness.profile import TargetProfile


def _no_answer_observed(answer: PlainHttpAnswer) -> bool:
    """Whether the probe ended without seeing the listener's behaviour: the connection was
    not made, or nothing came back before the harness's timeout."""
    return not answer.connected or (answer.error or "").startswith("no answer within")


def origin_not_plaintext_verdict(survey: OriginSurvey) -> Verdict:
    """No listener of the service's processes answers plain HTTP with anything but a redirect
    to https (a TLS listener that rejects plain HTTP with a 4xx is fine). A listener whose
    probe saw nothing (no connection, no answer in time) is unverified, never fine."""
    rows, exposed, unverified = [], [], []
    for probed in survey.listeners:
        sock, answer = probed.socket, probed.answer
        where = f"{sock.process} ({sock.command}, pid {sock.pid}) on {sock.address}:{sock.port}"
        row: dict[str, Any] = {"process": sock.process, "pid": sock.pid, "command": sock.command,
                               "address": sock.address, "port": sock.port}
        if answer is None:
            row["judgement"] = f"not probed: {probed.skipped}"
            if probed.reason not in (SkipReason.JUDGED_ELSEWHERE, SkipReason.HARNESS_FAKE,
                                     SkipReason.CONTAINER_LOCAL):
                unverified.append(f"{where}: {probed.skipped or 'not probed'}")
        elif _no_answer_observed(answer):
            row["judgement"] = f"unverified: {answer.error or 'no connection'}"
            unverified.append(f"{where}: {answer.error or 'no connection'}")
        elif not answer.answered_http:
            row["judgement"] = ("does not speak plain HTTP ("
                                + (answer.error or f"answered {answer.first_line!r}") + ")")
        elif (answer.status is not None and 300 <= answer.status < 400 and answer.location
              and answer.location.lower().startswith("https://")):
            row["judgement"] = f"redirects to {answer.location}"
        elif answer.speaks_tls and answer.status is not None and 400 <= answer.status < 500:
            row["judgement"] = f"a TLS listener; rejects plain HTTP with {answer.status}"
        else:
            row["judgement"] = f"SERVES PLAIN HTTP: {answer.first_line}"
            exposed.append(f"{where} answers plain HTTP with {answer.first_line!r}")
        rows.append(row)
    details = {"processes": list(survey.processes), "listeners": rows,
               "unreadable": list(survey.unreadable)}
    if exposed:
        return Verdict.failed("The origin is reachable without TLS: " + "; ".join(exposed) + ".", **details)
    if unverified:
        return Verdict.error("Some listeners could not be verified: " + "; ".join(unverified) + ".",
                             **details)
    if survey.unreadable:
        return Verdict.error("Some of the processes' sockets could not be read, so a listener may "
                             "have been missed: " + "; ".join(survey.unreadable[:5]) + ".", **details)
    if not survey.listeners:
        return Verdict.error(f"No TCP listener was found for {', '.join(survey.processes)}, so "
                             "nothing was probed.", **details)
    probed_count = sum(1 for p in survey.listeners if p.answer is not None)
    skipped = Counter(str(p.reason) for p in survey.listeners if p.answer is None)
    return Verdict.passed(f"None of the {probed_count} TCP listeners of "
                          f"{', '.join(survey.processes)} serves plain HTTP"
                          + (f" (not probed: {counts(dict(skipped))})" if skipped else "") + ".",
                          **details)


@pytest.mark.claims("TRANSIT-NO-PLAINTEXT-ORIGIN")
@pytest.mark.access("processes")
def check_origin_not_plaintext(profile: TargetProfile, policy: Policy, evidence: EvidenceRecorder) -> None:
    survey = platform_for(profile, policy).listeners()
    if isinstance(survey, OutOfReach):
        evidence.manual(f"The harness cannot list the origin's listeners on this target ({survey.reason}). "
                        "By hand: list every TCP listener of the service's hosts (ss -ltnp) and show that "
                        "none but the edge's 443 and its redirecting 80 answers plain HTTP.")
        return
    verdict = origin_not_plaintext_verdict(survey)
    evidence.attach("origin-listeners", verdict.details)
    evidence.conclude(verdict)
