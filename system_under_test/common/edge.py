"""The TLS edge's configuration (nginx in front of the API's unix socket), for both backends.

Clean configuration: TLS 1.3 only; HSTS for a year with includeSubDomains;
CSP, nosniff, frame denial, Referrer-Policy and Permissions-Policy on every
response (``always``, so error pages too); no version banner; the plaintext
port answers every request with a bodiless 301 to https. Each edge fault of
``system_under_test/faults.py`` changes exactly the lines that break its promise.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Collection
from pathlib import Path

from system_under_test.common.pki import EDGE_HOST, Pki

HSTS_CLEAN = "max-age=31536000; includeSubDomains"
HSTS_SHORT = "max-age=86400"
CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
EDGE_FAULTS = frozenset({
    "tls12-accepted", "hsts-missing", "hsts-short", "security-headers-missing",
    "http-serves-content",
})


def _security_headers(faults: Collection[str]) -> list[str]:
    headers: list[tuple[str, str]] = []
    if "hsts-short" in faults:
        headers.append(("Strict-Transport-Security", HSTS_SHORT))
    elif "hsts-missing" not in faults:
        headers.append(("Strict-Transport-Security", HSTS_CLEAN))
    if "security-headers-missing" not in faults:
        headers.append(("Content-Security-Policy", CSP))
        headers.append(("X-Frame-Options", "DENY"))
    headers += [
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"),
    ]
    return [f'        add_header {name} "{value}" always;' for name, value in headers]


def _proxy_location() -> str:
    # One upstream connection per request, closed by the API after its answer
    # ("Connection: close", nginx's default): no idle connection is kept that a
    # gunicorn worker leaving after a HUP (or its keep-alive timeout) may close
    # while nginx is writing the next request into it. nginx cannot replay a
    # POST that it has already sent, so such a race would be a 502. On the
    # unix socket a new connection per request costs next to nothing.
    return (
        "        location / {\n"
        "            proxy_pass http://votriz_api;\n"
        "            proxy_http_version 1.1;\n"
        "            proxy_set_header Connection close;\n"
        "            proxy_set_header Host $host;\n"
        "            proxy_set_header X-Forwarded-For $remote_addr;\n"
        "            proxy_set_header X-Forwarded-Proto $scheme;\n"
        "        }\n"
    )


def render_config(state_dir: Path, pki: Pki, *, https_port: int, http_port: int,
                  faults: Collection[str] = (), listen_address: str = "127.0.0.1",
                  listen_ports: tuple[int, int] | None = None) -> str:
    """The nginx configuration text for this stack and these edge faults.

    ``https_port`` is the public port (used in redirects). ``listen_address``
    and ``listen_ports`` (https, http) are where nginx itself listens; they
    default to 127.0.0.1 and the public ports. The Docker backend sets them
    (``0.0.0.0``, 443/80 inside the container, published on other host ports).
    """
    run, logs, work = state_dir / "run", state_dir / "logs", state_dir / "nginx"
    listen_https, listen_http = listen_ports or (https_port, http_port)
    protocols = "TLSv1.2 TLSv1.3" if "tls12-accepted" in faults else "TLSv1.3"
    tokens = "on" if "security-headers-missing" in faults else "off"
    public = f"https://{EDGE_HOST}:{https_port}$request_uri"
    if "http-serves-content" in faults:
        plaintext_body = _proxy_location()
    else:
        # "return 301" alone would send nginx's HTML page along; redirecting
        # the error page to an empty file keeps the Location and drops the body.
        plaintext_body = (
            f"        location / {{ return 301 {public}; }}\n"
            "        error_page 301 /__votriz_empty;\n"
            "        location = /__votriz_empty {\n"
            "            internal;\n"
            "            etag off;\n"
            "            default_type text/plain;\n"
            f"            alias {work / 'empty'};\n"
            "        }\n"
        )
    headers = "\n".join(_security_headers(faults))
    return f"""# Written by system_under_test.local.nginx; faults: {sorted(faults) or 'none'}.
daemon off;
worker_processes 1;
pid {run / 'nginx.pid'};
error_log {logs / 'error.log'} warn;

events {{
    worker_connections 256;
}}

http {{
    server_tokens {tokens};
    default_type application/octet-stream;
    access_log {logs / 'access.log'};
    client_body_temp_path {work / 'client_body'};
    proxy_temp_path {work / 'proxy'};
    fastcgi_temp_path {work / 'fastcgi'};
    uwsgi_temp_path {work / 'uwsgi'};
    scgi_temp_path {work / 'scgi'};

    upstream votriz_api {{
        server unix:{run / 'api.sock'};
    }}

    server {{
        listen {listen_address}:{listen_http};
        server_name {EDGE_HOST};
{plaintext_body}    }}

    server {{
        listen {listen_address}:{listen_https} ssl;
        server_name {EDGE_HOST};
        ssl_certificate {pki.edge_cert};
        ssl_certificate_key {pki.edge_key};
        ssl_protocols {protocols};
        ssl_prefer_server_ciphers off;
        ssl_session_tickets off;
{headers}
{_proxy_location()}    }}
}}
"""


def tls_handshake_ok(port: int, ca_file: Path) -> bool:
    """Whether a verified TLS handshake for ``votriz.test`` succeeds on ``port``."""
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as raw, \
                context.wrap_socket(raw, server_hostname=EDGE_HOST):
            return True
    except OSError:
        return False
