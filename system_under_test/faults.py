"""Fault switches: each makes the reference service break exactly one promise.

``votriz-audit up --fault NAME`` starts the service with a fault on. The
registry says what each fault breaks in the service's own words (the claims of
the published page, the layer that applies it); it names no check of the
auditor. Which checks are expected to FAIL under which fault is the auditor's
business: ``fixtures/calibration.toml``, read by ``votriz-audit calibrate``.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass


class Layer(enum.StrEnum):
    """Which part of the reference service applies a fault."""

    EDGE = "edge"  # nginx configuration
    API = "api"  # the application (api.toml ``faults``)
    OPS = "ops"  # rotation, backup and drill commands
    STACK = "stack"  # how the backend starts processes or containers


@dataclass(frozen=True)
class Fault:
    """One way to break one promise.

    Attributes:
        name: the switch, as given to ``up --fault``.
        claims: ids of the claims (fixtures/claims) it breaks.
        layer: which part applies it.
        description: what the service does wrong, in one sentence.
        backends: backends on which it can be applied.
    """

    name: str
    claims: tuple[str, ...]
    layer: Layer
    description: str
    backends: tuple[str, ...] = ("local", "docker")


def _fault(name: str, claims: str, layer: Layer, description: str,
           backends: tuple[str, ...] = ("local", "docker")) -> Fault:
    return Fault(name, tuple(claims.split()), layer, description, backends)


FAULTS: dict[str, Fault] = {
    fault.name: fault
    for fault in (
        # In transit.
        _fault("tls12-accepted", "TRANSIT-TLS13", Layer.EDGE,
               "The edge also accepts TLS 1.2."),
        _fault("hsts-missing", "TRANSIT-HSTS", Layer.EDGE,
               "The edge sends no Strict-Transport-Security header."),
        _fault("hsts-short", "TRANSIT-HSTS", Layer.EDGE,
               "HSTS max-age is one day and lacks includeSubDomains."),
        _fault("security-headers-missing", "TRANSIT-SECURITY-HEADERS",
               Layer.EDGE, "The edge drops CSP and frame protection and shows its version banner."),
        _fault("cert-expiring", "TRANSIT-CERT-RENEWED", Layer.STACK,
               "The edge certificate expires in two days."),
        _fault("http-serves-content", "TRANSIT-NO-PLAINTEXT-ORIGIN",
               Layer.EDGE, "Port 80 proxies to the API instead of redirecting to https."),
        _fault("api-plaintext-exposed", "TRANSIT-NO-PLAINTEXT-ORIGIN",
               Layer.STACK, "The API also listens on a plaintext TCP port."),
        _fault("llm-plaintext", "INTERNAL-OUTBOUND-HTTPS", Layer.API,
               "API-to-LLM calls go to a plaintext http:// upstream."),
        _fault("resend-plaintext", "INTERNAL-OUTBOUND-HTTPS", Layer.API,
               "API-to-Resend calls go to a plaintext http:// upstream."),
        # At rest.
        _fault("token-plaintext", "REST-TOKENS-FERNET", Layer.API,
               "OAuth tokens of new TikTok channels are stored in plaintext."),
        _fault("token-fixed-iv", "REST-TOKENS-FERNET", Layer.API,
               "Fernet tokens are made with one fixed IV, so rows share IVs."),
        _fault("fernet-other-library", "REST-TOKENS-LIBRARY", Layer.API,
               "The API encrypts and decrypts OAuth tokens with pycryptodomex's AES "
               "(the same Fernet format) instead of the cryptography library."),
        _fault("bcrypt-cost-10", "REST-PASSWORDS-BCRYPT12", Layer.API,
               "Passwords are hashed with bcrypt cost 10."),
        _fault("backup-codes-reusable", "REST-MFA-BACKUP-CODES", Layer.API,
               "A backup code keeps working after it was used."),
        _fault("backup-codes-shown-again", "REST-MFA-BACKUP-CODES", Layer.API,
               "GET /mfa returns the backup codes again (kept in plaintext)."),
        _fault("recovery-token-plaintext", "REST-MFA-RECOVERY-TOKENS",
               Layer.API, "Recovery tokens are stored in plaintext."),
        _fault("recovery-token-reusable", "REST-MFA-RECOVERY-TOKENS",
               Layer.API, "A recovery token keeps working after it was used."),
        _fault("secrets-in-logs", "OVERVIEW-NO-PLAINTEXT", Layer.API,
               "The API logs request bodies, passwords and tokens included."),
        _fault("email-plaintext", "SCOPE-ONLY-LISTED-PLAINTEXT", Layer.API,
               "Users' e-mail addresses are also kept in a plaintext column."),
        _fault("backup-plaintext", "REST-BACKUPS-ENCRYPTED", Layer.OPS,
               "Backups are written as plain pg_dump output."),
        _fault("backup-retention-broken", "REST-BACKUPS-RETENTION",
               Layer.OPS, "Pruning keeps backups older than 30 days."),
        _fault("restore-drill-broken", "REST-BACKUPS-DRILL", Layer.OPS,
               "The restore drill reports success without restoring the data."),
        # Keys.
        _fault("key-in-env", "KEYS-NOT-ON-DISK", Layer.STACK,
               "The token-encryption key is also given to the API in an environment variable."),
        _fault("key-in-config", "KEYS-NOT-ON-DISK", Layer.STACK,
               "The Stripe API key is written into api.toml."),
        _fault("key-not-in-hsm", "KEYS-HSM", Layer.STACK,
               "The Redis password is not provisioned in the HSM (read from a file instead)."),
        _fault("pin-in-env", "KEYS-READ-AT-START", Layer.STACK,
               "The HSM PIN is passed to the API in an environment variable."),
        # Local only: in a container the hard restart would stop the API container
        # itself (gunicorn is its main process) and nothing would start it again.
        _fault("rotation-drops-requests", "KEYS-ROTATION-NO-DOWNTIME",
               Layer.OPS, "Key rotation restarts the API hard instead of rolling its workers.",
               backends=("local",)),
        _fault("rotation-leaves-rows", "REST-TOKENS-ROTATION", Layer.OPS,
               "Key rotation skips the last batch of rows, leaving them under the old key."),
        _fault("jwt-rotation-keeps-sessions", "KEYS-JWT-ROTATION", Layer.API,
               "After a JWT secret rotation the API still accepts tokens signed with the old secret."),
        _fault("db-password-rotation-ignored", "KEYS-DB-PASSWORD-ROTATION",
               Layer.OPS, "Database password rotation leaves the old password valid."),
        _fault("redis-password-rotation-ignored", "KEYS-REDIS-PASSWORD-ROTATION", Layer.OPS,
               "Redis password rotation leaves the old password valid."),
        # Container topology (Docker backend only). Docker publishes nothing for a
        # container that is only on an internal network, so the published db also
        # sits on the public network: it breaks the bridge-network promise too.
        _fault("db-port-published", "INTERNAL-ONLY-80-443 INTERNAL-BRIDGE-NETWORK", Layer.STACK,
               "The database container publishes 5432 (and is on the public network).",
               backends=("docker",)),
        _fault("key-in-image", "KEYS-NOT-ON-DISK", Layer.STACK,
               "The API runs from an image with the token-encryption key baked into a layer.",
               backends=("docker",)),
        _fault("host-network", "INTERNAL-BRIDGE-NETWORK",
               Layer.STACK, "The HSM container runs on the host's network instead of a bridge network.",
               backends=("docker",)),
    )
}


def api_layer_faults(faults: Collection[str]) -> list[str]:
    """The faults the API and the ops commands apply themselves (api.toml's list), sorted."""
    return sorted(f for f in faults if FAULTS[f].layer in (Layer.API, Layer.OPS))


def validate_faults(faults: Sequence[str], backend: str) -> tuple[str, ...]:
    """The faults, deduplicated and sorted; ValueError naming the known ones, or those the backend
    cannot apply, otherwise."""
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(sorted(FAULTS))}")
    not_here = sorted(f for f in set(faults) if backend not in FAULTS[f].backends)
    if not_here:
        raise ValueError(f"fault(s) {', '.join(not_here)} cannot be applied by the {backend} backend")
    return tuple(sorted(set(faults)))
