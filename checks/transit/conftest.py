"""The in-transit area's shared observations: one TLS scan and one round of HTTPS samples."""

from __future__ import annotations

import pytest

from harness.policy import Policy
from harness.probes.http import EdgeSamples, fetch_samples
from harness.probes.tls import TlsScan, scan_tls
from harness.profile import TargetProfile


@pytest.fixture(scope="session")
def tls_scan(profile: TargetProfile, policy: Policy) -> TlsScan:
    """The single sslyze scan of the edge, shared by the TLS checks."""
    return scan_tls(profile.edge, policy)


@pytest.fixture(scope="session")
def https_samples(profile: TargetProfile, policy: Policy) -> EdgeSamples:
    """The edge's HTTPS answers to every sampled path, shared by the header checks."""
    return fetch_samples(profile.edge, policy, "https")
