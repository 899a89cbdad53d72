"""The fakes' capture API: what the harness's fakes of the service's upstreams received.

The fakes (``profile.capture``) stand in for Anthropic, Resend and the social
platforms. Their capture API lists every request they received, with the
listener it arrived on (TLS or the plaintext decoy; never header values or
bodies, which carry keys), and every mail they were asked to send. This is the
one client of that API: the outbound probe reads the requests
(:meth:`CaptureClient.requests_since`), the canaries read the mails
(:meth:`CaptureClient.mails_to`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from harness.deadline import DeadlineTransport, expired_exchange
from harness.outcomes import ProbeError
from harness.policy import Policy
from harness.probes.tls import edge_tls_context
from harness.profile import Capture, TargetProfile


@dataclass(frozen=True)
class CapturedRequest:
    """One request the fakes received.

    Attributes:
        seq: the fakes' sequence number.
        listener: ``tls`` or ``plaintext`` (the decoy).
        method: HTTP method.
        path: request path.
        host: Host header value.
        headers_present: names of the headers sent (never their values).
    """

    seq: int
    listener: str
    method: str
    path: str
    host: str
    headers_present: tuple[str, ...] = ()


class CaptureClient:
    """The fakes' capture API, over TLS verified with the profile's trust anchor.

    The one client of that API: the outbound probe reads the requests the fakes
    received (:meth:`requests_since`), the canaries read the mails they were
    sent (:meth:`mails_to`).
    """

    def __init__(self, capture: Capture, profile: TargetProfile, policy: Policy) -> None:
        self._base = capture.url.rstrip("/")
        self._extensions = capture.request_extensions
        self._edge = profile.edge
        self._timeout = httpx.Timeout(policy.timeouts.request_s, connect=policy.timeouts.connect_s)
        self._request_s = policy.timeouts.request_s
        self._client = self._new_client()

    def _new_client(self) -> httpx.Client:
        # Each call, body included, ends within timeouts.request_s as a whole.
        transport = DeadlineTransport(verify=edge_tls_context(self._edge), seconds=self._request_s,
                                      peer="the capture API")
        return httpx.Client(transport=transport, trust_env=False, timeout=self._timeout)

    def reconnect(self) -> None:
        """Drop kept-alive connections and carry on with fresh ones (a new TLS context too)."""
        self._client.close()
        self._client = self._new_client()

    def close(self) -> None:
        self._client.close()

    def mails_to(self, address: str) -> list[dict[str, Any]]:
        """Every captured mail to ``address``, oldest first.

        All mails are fetched and filtered here rather than with ``?to=ADDR``, so
        the address never appears in the fakes' access log, which the plaintext
        sweep may read.

        Raises:
            ProbeError: the capture API is unreachable or answers something unexpected.
        """
        url = f"{self._base}/_capture/mail"
        try:
            response = self._client.get(url, extensions=self._extensions)
        except httpx.HTTPError as exc:
            raise ProbeError(f"GET {url}: {_reason(exc)}") from None
        if response.status_code != 200:
            raise ProbeError(f"GET {url}: HTTP {response.status_code}")
        try:
            mails = response.json()["mails"]
            wanted = address.lower()
            return sorted((m for m in mails if str(m.get("to", "")).lower() == wanted),
                          key=lambda m: int(m.get("seq", 0)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProbeError(f"GET {url}: unexpected answer ({type(exc).__name__})") from None

    def requests_since(self, seq: int) -> tuple[CapturedRequest, ...]:
        """Every request the fakes received with a sequence number above ``seq``.

        Raises:
            ProbeError: the capture API is unreachable or answers something unexpected.
        """
        url = f"{self._base}/_capture/requests"
        try:
            response = self._client.get(url, params={"since": seq}, extensions=self._extensions)
        except httpx.TimeoutException as exc:
            expired = expired_exchange(exc)
            raise ProbeError(f"GET {url}: {expired.expired_sentence() if expired else 'no answer in time'}"
                             ) from None
        except httpx.HTTPError as exc:
            raise ProbeError(f"GET {url}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise ProbeError(f"GET {url}: HTTP {response.status_code}")
        try:
            items: Any = response.json()["requests"]
            return tuple(CapturedRequest(int(item["seq"]), str(item["listener"]), str(item["method"]),
                                         str(item["path"]), str(item.get("host", "")),
                                         tuple(item.get("headers_present", ())))
                         for item in items if int(item["seq"]) > seq)
        except (ValueError, KeyError, TypeError) as exc:
            raise ProbeError(f"GET {url}: unexpected answer ({type(exc).__name__}: {exc})") from None

    def last_seq(self) -> int:
        """The highest sequence number received so far (0 when none)."""
        return max((item.seq for item in self.requests_since(0)), default=0)


def _reason(exc: httpx.HTTPError) -> str:
    """The error's class, or the deadline's sentence when the deadline ended the call."""
    expired = expired_exchange(exc)
    return expired.expired_sentence() if expired is not None else type(exc).__name__
