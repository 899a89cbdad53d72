"""A client for the audited service's public JSON API, through the TLS edge.

Used to drive the service with canary accounts: sign up, log in, set up MFA,
add channels, trigger calls to upstreams. Every call, its answer's body
included, ends within its timeout as a whole (a peer that trickles its answer
is cut there); a connection or TLS failure becomes a :class:`ProbeError`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from harness.deadline import DeadlineTransport, expired_exchange
from harness.outcomes import ProbeError
from harness.probes.tls import edge_tls_context
from harness.profile import TargetProfile


@dataclass(frozen=True)
class ApiResponse:
    """One answer of the API.

    Attributes:
        status: HTTP status code.
        body: the decoded JSON body (``{}`` when there is none or it is not JSON).
        headers: response headers, lower-case names.
    """

    status: int
    body: Any
    headers: dict[str, str]


def edge_ssl_context(profile: TargetProfile) -> ssl.SSLContext:
    """A client TLS context trusting the profile's anchor (or the system store)."""
    return edge_tls_context(profile.edge)


class VotrizApi:
    """The service's API at the profile's edge.

    The connection goes to ``edge.address`` while SNI, certificate checking and
    the Host header use ``edge.host``, so no DNS entry is needed for a test host.
    """

    def __init__(self, profile: TargetProfile, *, timeout_s: float = 15.0) -> None:
        if profile.api is None:
            raise ProbeError("the profile has no [api] section")
        self.profile = profile
        edge = profile.edge
        self._base = edge.base_url + profile.api.base_path
        transport = DeadlineTransport(verify=edge_ssl_context(profile), seconds=timeout_s,
                                      peer="the edge")
        self._client = httpx.Client(
            transport=_PinnedAddressTransport(transport, edge.host, edge.connect_address),
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            headers={"user-agent": "votriz-audit"},
        )
        self.token: str | None = None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> VotrizApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, json: Any = None, *, auth: bool = True,
                token: str | None = None) -> ApiResponse:
        """Send one request; ``path`` is relative to the API base path, or, written ``//path``,
        relative to the edge's root (e.g. ``//healthz``)."""
        url = (self.profile.edge.base_url + path[1:]) if path.startswith("//") else self._base + path
        headers = {}
        bearer = token or (self.token if auth else None)
        if bearer:
            headers["authorization"] = f"Bearer {bearer}"
        try:
            response = self._client.request(method, url, json=json, headers=headers)
        except httpx.TimeoutException as exc:
            expired = expired_exchange(exc)
            if expired is not None and expired.received:
                raise ProbeError(f"{method} {path}: {expired.expired_sentence()}") from None
            raise ProbeError(
                f"{method} {path}: no answer from {self.profile.edge.base_url} in time") from None
        except httpx.HTTPError as exc:
            raise ProbeError(f"{method} {path}: cannot reach {self.profile.edge.base_url}: "
                             f"{type(exc).__name__}") from None
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {}
        return ApiResponse(response.status_code, body,
                           {k.lower(): v for k, v in response.headers.items()})

    def expect(self, status: int | tuple[int, ...], method: str, path: str, json: Any = None,
               **kwargs: Any) -> ApiResponse:
        """Like :meth:`request`, but a different status is a ProbeError naming the call."""
        wanted = (status,) if isinstance(status, int) else status
        answer = self.request(method, path, json, **kwargs)
        if answer.status not in wanted:
            error = answer.body.get("error") if isinstance(answer.body, dict) else None
            raise ProbeError(f"{method} {path}: expected HTTP {'/'.join(map(str, wanted))}, "
                             f"got {answer.status}" + (f" ({error})" if error else ""))
        return answer

    # The service's operations, named as the contract names them.
    def signup(self, email: str, password: str) -> ApiResponse:
        return self.expect(201, "POST", "/signup", {"email": email, "password": password}, auth=False)

    def login(self, email: str, password: str) -> str:
        answer = self.expect(200, "POST", "/login", {"email": email, "password": password}, auth=False)
        token = answer.body.get("token") if isinstance(answer.body, dict) else None
        if not isinstance(token, str):
            raise ProbeError("POST /login: the answer holds no token")
        self.token = token
        return token

    # In-transit checks (transit.outbound_https): calls that make the API reach its upstreams.
    def create_brand(self, name: str, industry: str) -> int:
        """Create a brand for the logged-in account; returns its id."""
        answer = self.expect(201, "POST", "/brands", {"name": name, "industry": industry})
        brand_id = answer.body.get("id") if isinstance(answer.body, dict) else None
        if not isinstance(brand_id, int):
            raise ProbeError("POST /brands: the answer holds no id")
        return brand_id

    def create_caption(self, brand_id: int, prompt: str) -> ApiResponse:
        """Ask for a caption: the API calls the LLM upstream."""
        return self.expect(201, "POST", f"/brands/{brand_id}/captions", {"prompt": prompt})

    def request_recovery(self, email: str) -> ApiResponse:
        """Ask for a recovery mail: the API calls Resend (always 202)."""
        return self.expect(202, "POST", "/recovery/request", {"email": email}, auth=False)

    def delete_account(self) -> ApiResponse:
        """Remove the logged-in account and everything it owns (canary clean-up)."""
        return self.expect((200, 202, 204), "DELETE", "/account")


    # At-rest checks (canaries for at_rest.*): MFA, channels and recovery.
    def login_with_totp(self, email: str, password: str, totp: str) -> str:
        """Log in to an account with MFA on; returns (and keeps) the session token."""
        answer = self.expect(200, "POST", "/login",
                             {"email": email, "password": password, "totp": totp}, auth=False)
        token = answer.body.get("token") if isinstance(answer.body, dict) else None
        if not isinstance(token, str):
            raise ProbeError("POST /login: the answer holds no token")
        self.token = token
        return token

    def mfa_setup(self) -> ApiResponse:
        """Enable MFA: the answer holds the TOTP secret and the backup codes, this once."""
        return self.expect(201, "POST", "/mfa/setup")

    def mfa_status(self) -> ApiResponse:
        """``GET /mfa``: whether MFA is on and how many backup codes remain."""
        return self.expect(200, "GET", "/mfa")

    def redeem_backup_code(self, code: str) -> ApiResponse:
        """Try one backup code; the status is the observation (200 once, then refused)."""
        return self.request("POST", "/mfa/backup-codes/redeem", {"code": code})

    def create_channel(self, brand_id: int, platform: str, access_token: str,
                       refresh_token: str) -> int:
        """Connect a platform account to a brand with the given OAuth tokens; returns its id."""
        answer = self.expect(201, "POST", f"/brands/{brand_id}/channels",
                             {"platform": platform, "access_token": access_token,
                              "refresh_token": refresh_token})
        channel_id = answer.body.get("id") if isinstance(answer.body, dict) else None
        if not isinstance(channel_id, int):
            raise ProbeError(f"POST /brands/{brand_id}/channels: the answer holds no id")
        return channel_id

    def confirm_recovery(self, email: str, token: str) -> ApiResponse:
        """Exchange a recovery token for a session; the status is the observation."""
        return self.request("POST", "/recovery/confirm", {"email": email, "token": token},
                            auth=False)


class _PinnedAddressTransport(httpx.BaseTransport):
    """Connect to a fixed address while keeping the URL's host for SNI and Host."""

    def __init__(self, inner: httpx.BaseTransport, host: str, address: str) -> None:
        self._inner = inner
        self._host = host
        self._address = address

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == self._host and self._address != self._host:
            request.extensions = {**request.extensions, "sni_hostname": self._host}
            request.headers["host"] = request.url.netloc.decode()
            request.url = request.url.copy_with(host=self._address)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()
