"""In transit: the edge's TLS, its headers, no plaintext way in, HTTPS to upstreams.

The page promises "TLS 1.3", "HSTS enforced", "Certificate auto-renewed",
"No traffic reaches the origin server unencrypted" and "API-to-LLM and
API-to-Resend calls are HTTPS"; its "Security headers" section is empty, so
the harness holds the edge to the modern set in the policy.

Each check is a pure ``<name>_verdict(observation, policy)`` over frozen
observations from ``harness/probes/{tls,http,listeners,outbound}.py``. The TLS
stage is one sslyze scan and the HTTPS samples one round of GETs, both
session-scoped fixtures (``conftest.py``) shared by the checks that read them.
"""
