"""The fault switches turned into one provisioning plan, which each backend only carries out.

``plan(faults, backend)`` validates the names and decides, once, everything
the faults change in how a stack is set up: the edge's configuration, the
faults the API and the ops commands apply themselves (``api.toml``), the
edge certificate's lifetime, where the Redis password lives, which secrets
the API is given outside the HSM, and the container topology's switches. A
backend reads the plan's fields and never tests a fault name itself.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from system_under_test.common.pki import DEFAULT_LEAF_LIFETIME, EXPIRING_LEAF_LIFETIME
from system_under_test.faults import FAULTS, Layer, api_layer_faults, validate_faults


@dataclass(frozen=True)
class ProvisioningPlan:
    """How one stack is set up, decided from its faults.

    Attributes:
        backend: the backend that carries it out (``local`` or ``docker``).
        faults: the faults switched on, deduplicated and sorted.
        edge_faults: those nginx's configuration applies.
        api_faults: those the API and the ops commands apply (``api.toml``'s list).
        edge_lifetime: how long the edge certificate is valid.
        redis_password_in_file: the Redis password goes to ``secrets/redis-password``
            instead of the HSM (``key-not-in-hsm``).
        stripe_key_in_config: the Stripe key is written into ``api.toml`` (``key-in-config``).
        token_key_in_env: the token key is given to the API in its environment (``key-in-env``).
        pin_in_env: the HSM PIN is given to the API in its environment (``pin-in-env``).
        token_key_in_image: the API runs from an image with the token key in a layer
            (``key-in-image``, Docker only).
        api_plaintext_port: the API also listens on a plaintext TCP port (``api-plaintext-exposed``).
        llm_plaintext: the API calls the LLM over plaintext http (``llm-plaintext``).
        resend_plaintext: the API calls Resend over plaintext http (``resend-plaintext``).
        redirects_http: port 80 answers with a redirect (false under ``http-serves-content``).
        db_port_published: the database container publishes 5432 and joins the public
            network (``db-port-published``, Docker only).
        hsm_on_host_network: the HSM container runs on the host's network (``host-network``,
            Docker only).
    """

    backend: str
    faults: tuple[str, ...]
    edge_faults: tuple[str, ...]
    api_faults: tuple[str, ...]
    edge_lifetime: dt.timedelta
    redis_password_in_file: bool
    stripe_key_in_config: bool
    token_key_in_env: bool
    pin_in_env: bool
    token_key_in_image: bool
    api_plaintext_port: bool
    llm_plaintext: bool
    resend_plaintext: bool
    redirects_http: bool
    db_port_published: bool
    hsm_on_host_network: bool

    def api_secret_environment(self, token_key: bytes, pin: str) -> dict[str, str]:
        """What ``key-in-env`` and ``pin-in-env`` deliberately add to the API's environment."""
        env: dict[str, str] = {}
        if self.token_key_in_env:
            env["VOTRIZ_TOKEN_ENCRYPTION_KEY"] = base64.urlsafe_b64encode(token_key).decode()
        if self.pin_in_env:
            env["VOTRIZ_HSM_PIN"] = pin
        return env


# The operator commands a stand-up runs after seeding (both backends): a deployment has its
# monthly restore drill on record, so a fresh stack's drill log holds one drill of a real
# backup, as the audit's at_rest.restore_drill expects of an operator.
DRILL_ON_RECORD: tuple[str, ...] = ("backup", "restore-drill")


def plan(faults: Sequence[str], backend: str) -> ProvisioningPlan:
    """The plan for ``faults`` on ``backend``.

    Raises:
        ValueError: a fault is unknown, or ``backend`` cannot apply it.
    """
    chosen = validate_faults(faults, backend)
    return ProvisioningPlan(
        backend=backend,
        faults=chosen,
        edge_faults=tuple(f for f in chosen if FAULTS[f].layer is Layer.EDGE),
        api_faults=tuple(api_layer_faults(chosen)),
        edge_lifetime=EXPIRING_LEAF_LIFETIME if "cert-expiring" in chosen else DEFAULT_LEAF_LIFETIME,
        redis_password_in_file="key-not-in-hsm" in chosen,
        stripe_key_in_config="key-in-config" in chosen,
        token_key_in_env="key-in-env" in chosen,
        pin_in_env="pin-in-env" in chosen,
        token_key_in_image="key-in-image" in chosen,
        api_plaintext_port="api-plaintext-exposed" in chosen,
        llm_plaintext="llm-plaintext" in chosen,
        resend_plaintext="resend-plaintext" in chosen,
        redirects_http="http-serves-content" not in chosen,
        db_port_published="db-port-published" in chosen,
        hsm_on_host_network="host-network" in chosen,
    )
