"""Shared by the container checks' tests: hand-made topologies, and a check's conclusion."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.evidence import EvidenceRecorder
from harness.outcomes import CheckOutcome, Verdict
from harness.probes.containers import ContainerTopology, ContainerView, NetworkAttachment, PublishedPort
from harness.redaction import KnownSecrets

PUBLIC = NetworkAttachment("votriz_public", "bridge", internal=False, user_defined=True, scope="local")
INTERNAL = NetworkAttachment("votriz_internal", "bridge", internal=True, user_defined=True, scope="local")


def container(name: str, role: str, published=(), networks=(INTERNAL,), network_mode="votriz_internal",
              pid_mode="", privileged=False) -> ContainerView:
    return ContainerView(name, "img", role, tuple(published), tuple(networks), network_mode, pid_mode,
                         privileged)


def clean() -> ContainerTopology:
    edge = container("edge", "edge", [PublishedPort("443/tcp", "127.0.0.1", 49153),
                                      PublishedPort("80/tcp", "127.0.0.1", 49154)], [PUBLIC, INTERNAL])
    return ContainerTopology("votriz", "host1", False, (edge, container("db", "db"), container("api", "api")))


def conclude(check: Callable[..., None], tmp_path: Path,
             **fixtures: object) -> tuple[Verdict, EvidenceRecorder]:
    """Run ``check`` with ``fixtures``; its verdict, whether it ended early or concluded PASS."""
    recorder = EvidenceRecorder("containers.x", tmp_path, KnownSecrets())
    try:
        check(evidence=recorder, **fixtures)
    except CheckOutcome as ended:
        return ended.verdict, recorder
    assert recorder.verdict is not None
    return recorder.verdict, recorder

