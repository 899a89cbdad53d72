"""The fakes' ASGI application: third-party APIs plus the capture API.

One ``Capture`` is shared by two listeners (TLS and the plaintext decoy);
each listener gets its own app instance that stamps its name on what it
records. The capture keeps what an auditor needs to judge a call (which
listener, method, path, Host and which headers were present) and never a
header value or a body, because those carry the callers' API keys.

Answers, for the API engineer and the harness:

- ``POST /anthropic/v1/messages`` (needs ``x-api-key``) → an Anthropic
  Messages answer: ``{"id", "type": "message", "role": "assistant", "model",
  "content": [{"type": "text", "text": CAPTION}], "stop_reason", "usage"}``.
- ``POST /resend/emails`` (needs ``Authorization: Bearer``) with
  ``{from, to, subject, text|html}`` → ``{"id"}``; the mail is kept for
  ``/_capture/mail`` and, when the fakes are given an LMTP socket, delivered
  to each recipient there (the reference's real IMAP mailbox,
  ``system_under_test.common.mailbox``), as Resend delivers to the Internet.
- ``GET /platforms/{platform}/me`` (needs ``Authorization: Bearer``) →
  ``{"platform", "id", "username"}``, ``username`` derived from the token so
  that different tokens give different accounts.
- ``/fal/...`` and ``/stripe/...`` (any method, need a key) → a small JSON object.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import itertools
import smtplib
import sys
import threading
import uuid
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

PLATFORMS = frozenset({"instagram", "linkedin", "twitter", "tiktok", "youtube"})
TLS = "tls"
PLAINTEXT = "plaintext"


@dataclass(frozen=True)
class CapturedRequest:
    """One request a fake received.

    Attributes:
        seq: increasing number, shared by both listeners.
        time: when it arrived (ISO 8601, UTC).
        listener: ``tls`` or ``plaintext``.
        method: HTTP method.
        path: the path, without the query string.
        host: the Host header.
        headers_present: lower-case names of the headers sent (never their values).
    """

    seq: int
    time: str
    listener: str
    method: str
    path: str
    host: str
    headers_present: list[str]


@dataclass(frozen=True)
class CapturedMail:
    """One mail sent through the Resend fake, per recipient.

    Attributes:
        seq: increasing number.
        time: when it was sent (ISO 8601, UTC).
        to: the recipient.
        subject: the subject.
        text: the text body (or the HTML body when no text was given).
    """

    seq: int
    time: str
    to: str
    subject: str
    text: str


class Capture:
    """What both listeners received, in memory (thread-safe, process lifetime).

    Attributes:
        requests: captured requests in arrival order.
        mails: captured mails in arrival order.
    """

    def __init__(self) -> None:
        self.requests: list[CapturedRequest] = []
        self.mails: list[CapturedMail] = []
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    @staticmethod
    def _now() -> str:
        return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")

    def record_request(self, listener: str, request: Request) -> None:
        """Keep the shape of ``request``, not its secrets."""
        with self._lock:
            self.requests.append(CapturedRequest(
                seq=next(self._counter), time=self._now(), listener=listener,
                method=request.method, path=request.url.path,
                host=request.headers.get("host", ""),
                headers_present=sorted({name.lower() for name in request.headers}),
            ))

    def record_mail(self, to: str, subject: str, text: str) -> None:
        """Keep one mail for one recipient."""
        with self._lock:
            self.mails.append(CapturedMail(seq=next(self._counter), time=self._now(), to=to,
                                           subject=subject, text=text))


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"type": "error", "error": {"type": kind, "message": message}},
                        status_code=status)


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    if value.lower().startswith("bearer ") and value[7:].strip():
        return value[7:].strip()
    return None


async def _json_body(request: Request) -> dict[str, object] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def anthropic_messages(request: Request) -> JSONResponse:
    """A Messages API answer whose text is a caption made from the prompt's length."""
    if not request.headers.get("x-api-key"):
        return _error(401, "authentication_error", "x-api-key header is required")
    body = await _json_body(request)
    if body is None or not isinstance(body.get("messages"), list):
        return _error(400, "invalid_request_error", "messages: field required")
    prompt_chars = sum(len(str(m.get("content", ""))) for m in body["messages"]
                       if isinstance(m, dict))
    caption = "Fresh from the studio: crafted with care. #votriz"
    return JSONResponse({
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": str(body.get("model", "claude-sonnet-4-5")),
        "content": [{"type": "text", "text": caption}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": max(1, prompt_chars // 4), "output_tokens": len(caption) // 4},
    })


#: How long one LMTP delivery may take before it is given up (and logged).
LMTP_TIMEOUT_S = 5.0


def deliver_by_lmtp(lmtp_socket: Path, sender: str, recipient: str, subject: str, text: str) -> str:
    """Deliver one mail to ``recipient`` through the LMTP server at ``lmtp_socket``.

    Returns '' once delivered, else why not (a refused recipient, a server that is down),
    in one line: the fake, like Resend, has accepted the mail already.
    """
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = make_msgid(domain="fakes.votriz.test")
    message.set_content(text)
    try:
        with smtplib.LMTP(str(lmtp_socket), timeout=LMTP_TIMEOUT_S) as lmtp:
            refused = lmtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = exc.recipients
    except (OSError, smtplib.SMTPException) as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return "; ".join(f"{code} {reply.decode(errors='replace')}" for code, reply in refused.values())


def resend_emails(capture: Capture, lmtp_socket: Path | None = None):  # type: ignore[no-untyped-def]
    """Handler factory: accept a mail, keep it per recipient (and deliver it over LMTP when a
    socket is given), answer with an id."""

    async def handler(request: Request) -> JSONResponse:
        if _bearer(request) is None:
            return JSONResponse({"name": "missing_api_key", "message": "Missing API key"},
                                status_code=401)
        body = await _json_body(request)
        if body is None or not body.get("to") or not body.get("subject"):
            return JSONResponse({"name": "validation_error", "message": "to and subject required"},
                                status_code=422)
        recipients = body["to"] if isinstance(body["to"], list) else [body["to"]]
        text = str(body.get("text") or body.get("html") or "")
        sender = str(body.get("from") or "noreply@votriz.test")
        for recipient in recipients:
            capture.record_mail(str(recipient), str(body["subject"]), text)
            if lmtp_socket is not None:
                left = await asyncio.to_thread(deliver_by_lmtp, lmtp_socket, sender, str(recipient),
                                               str(body["subject"]), text)
                if left:
                    # Only the reply code or the error's kind: the server's words name the
                    # recipient, which may be a canary's secret address that the sweep looks for.
                    print(f"resend fake: a mail was not delivered to the mailbox ({left.split()[0]})",
                          file=sys.stderr)
        return JSONResponse({"id": str(uuid.uuid4())})

    return handler


async def platform_me(request: Request) -> JSONResponse:
    """The account behind a bearer token, as a social platform would describe it."""
    platform = request.path_params["platform"]
    if platform not in PLATFORMS:
        return JSONResponse({"error": "unknown platform"}, status_code=404)
    token = _bearer(request)
    if token is None:
        return JSONResponse({"error": "invalid_token"}, status_code=401)
    digest = hashlib.sha256(token.encode()).hexdigest()
    return JSONResponse({"platform": platform, "id": digest[:16],
                         "username": f"{platform}-user-{digest[:8]}"})


async def keyed_json(request: Request) -> JSONResponse:
    """fal.ai and Stripe: any path, any method, answered once a key is presented."""
    if _bearer(request) is None and not request.headers.get("authorization"):
        return JSONResponse({"error": "missing credentials"}, status_code=401)
    service = request.url.path.split("/")[1]
    return JSONResponse({"service": service, "id": f"{service}_{uuid.uuid4().hex[:16]}",
                         "status": "ok"})


def capture_requests(capture: Capture):  # type: ignore[no-untyped-def]
    """Handler factory for ``GET /_capture/requests?since=N``."""

    async def handler(request: Request) -> JSONResponse:
        try:
            since = int(request.query_params.get("since", "0"))
        except ValueError:
            return JSONResponse({"error": "since must be an integer"}, status_code=400)
        return JSONResponse({"requests": [asdict(r) for r in list(capture.requests)
                                          if r.seq > since]})

    return handler


def capture_mail(capture: Capture):  # type: ignore[no-untyped-def]
    """Handler factory for ``GET /_capture/mail?to=ADDR``."""

    async def handler(request: Request) -> JSONResponse:
        to = request.query_params.get("to", "").strip().lower()
        mails = [asdict(m) for m in list(capture.mails) if not to or m.to.lower() == to]
        return JSONResponse({"mails": mails})

    return handler


def create_app(capture: Capture, listener: str, lmtp_socket: Path | None = None) -> ASGIApp:
    """The app for one listener; the capture API exists on the TLS listener only; mails are
    delivered to ``lmtp_socket`` when one is given."""
    any_method = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    routes = [
        Route("/anthropic/v1/messages", anthropic_messages, methods=["POST"]),
        Route("/resend/emails", resend_emails(capture, lmtp_socket), methods=["POST"]),
        Route("/platforms/{platform}/me", platform_me, methods=["GET"]),
        Route("/fal/{rest:path}", keyed_json, methods=any_method),
        Route("/stripe/{rest:path}", keyed_json, methods=any_method),
    ]
    if listener == TLS:
        routes += [
            Route("/_capture/requests", capture_requests(capture), methods=["GET"]),
            Route("/_capture/mail", capture_mail(capture), methods=["GET"]),
        ]
    app = Starlette(routes=routes)

    async def recording_app(scope: Scope, receive: Receive, send: Send) -> None:
        # The capture API's own traffic is the auditor's, not the service's.
        if scope["type"] == "http" and not scope["path"].startswith("/_capture/"):
            capture.record_request(listener, Request(scope))
        await app(scope, receive, send)

    return recording_app
