"""The Starlette application: accounts, MFA, recovery, brands, channels, captions.

The routes of ``accounts`` (accounts, MFA, recovery) and ``brands`` (brands,
channels, captions, analytics), each behind ``calls.endpoint``, which checks
the request before the blocking handler runs in the thread pool; the access
log; the services one worker opens (``build_services``).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable

import httpx
import redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from system_under_test.api.accounts import (
    delete_account,
    login,
    mfa_setup,
    mfa_status,
    recovery_confirm,
    recovery_request,
    redeem_backup_code,
    signup,
)
from system_under_test.api.brands import (
    brand_analytics,
    create_brand,
    create_caption,
    create_channel,
    list_brands,
    list_channels,
    sync_channel,
    update_channel_tokens,
)
from system_under_test.api.calls import Handler, Services, configure_logging, endpoint, log
from system_under_test.api.config import ApiConfig
from system_under_test.api.db import FAULT_COLUMNS, ConnectionPool, apply_fault_columns
from system_under_test.api.keyring import KeyRing, load_keyring
from system_under_test.api.validation import ApiError


async def healthz(request: Request) -> Response:
    """Liveness of this worker (no dependency is checked: workers must answer fast)."""
    return JSONResponse({"status": "ok"})


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


def _routes() -> list[Route]:
    def r(path: str, handler: Handler, method: str, auth: bool = True) -> Route:
        return Route(f"/api/v1{path}", endpoint(handler, auth=auth), methods=[method])

    return [
        Route("/healthz", healthz, methods=["GET"]),
        r("/signup", signup, "POST", auth=False),
        r("/login", login, "POST", auth=False),
        r("/account", delete_account, "DELETE"),
        r("/mfa/setup", mfa_setup, "POST"),
        r("/mfa", mfa_status, "GET"),
        r("/mfa/backup-codes/redeem", redeem_backup_code, "POST"),
        r("/recovery/request", recovery_request, "POST", auth=False),
        r("/recovery/confirm", recovery_confirm, "POST", auth=False),
        r("/brands", create_brand, "POST"),
        r("/brands", list_brands, "GET"),
        r("/brands/{brand_id}/channels", create_channel, "POST"),
        r("/brands/{brand_id}/channels", list_channels, "GET"),
        r("/channels/{channel_id}/tokens", update_channel_tokens, "PUT"),
        r("/channels/{channel_id}/sync", sync_channel, "POST"),
        r("/brands/{brand_id}/captions", create_caption, "POST"),
        r("/brands/{brand_id}/analytics", brand_analytics, "GET"),
    ]


async def _log_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                        ) -> Response:
    """One access line per request: method, path, status, milliseconds. No body, no query."""
    started = time.perf_counter()
    response = await call_next(request)
    log.info("request", extra={"fields": {
        "method": request.method, "path": request.url.path, "status": response.status_code,
        "ms": round((time.perf_counter() - started) * 1000, 1)}})
    return response


def build_services(config: ApiConfig, keyring: KeyRing | None = None) -> Services:
    """Read the keys (unless given) and open the clients one worker needs."""
    keyring = keyring if keyring is not None else load_keyring(config)
    tls = ssl.create_default_context(cafile=config.upstream_ca_file)
    return Services(
        config=config,
        keyring=keyring,
        pool=ConnectionPool(config.database_dsn, keyring.db_password),
        redis=redis.Redis(host=config.redis_host, port=config.redis_port,
                          password=keyring.redis_password, socket_timeout=3,
                          socket_connect_timeout=3),
        http=httpx.Client(verify=tls, timeout=10.0),
    )


def create_app(config: ApiConfig, services: Services | None = None) -> Starlette:
    """The ASGI application. Without ``services``, keys come from the HSM right now."""
    configure_logging()
    services = services if services is not None else build_services(config)
    if FAULT_COLUMNS.keys() & config.faults:
        # Plaintext columns of the faults that are on, in case migrate ran without them.
        with services.pool.connection() as conn:
            apply_fault_columns(conn, config.faults)
    app = Starlette(
        routes=_routes(),
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=_log_requests)],
        exception_handlers={ApiError: api_error, HTTPException: http_error},
    )
    app.state.services = services
    log.info("api started", extra={"fields": {
        "token_key_versions": sorted(services.keyring.token_keys),
        "token_key_primary": services.keyring.primary_token_version,
        "token_key_decrypt_only": sorted(services.keyring.token_decrypt_only),
        "faults": sorted(config.faults)}})
    return app
