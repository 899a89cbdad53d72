"""Run the fakes: ``python -m system_under_test.fakes --state-dir STATE --port N --plaintext-port M``.

One process, two uvicorn servers sharing one ``Capture``: HTTPS on
``--port`` with ``STATE/pki/fakes.pem``, and the plaintext decoy on
``--plaintext-port``. Both bind 127.0.0.1 only. With ``--lmtp-socket``, the
Resend fake also delivers every mail to that LMTP server (the reference's mailbox).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from system_under_test.fakes.app import PLAINTEXT, TLS, Capture, create_app


def build_servers(state_dir: Path, port: int, plaintext_port: int,
                  lmtp_socket: Path | None = None) -> list[uvicorn.Server]:
    """The TLS server and the plaintext decoy, not yet started."""
    capture = Capture()
    pki = state_dir / "pki"
    common = {"host": "127.0.0.1", "log_level": "info", "lifespan": "off",
              "proxy_headers": False, "server_header": False}
    tls = uvicorn.Config(create_app(capture, TLS, lmtp_socket), port=port,
                         ssl_certfile=str(pki / "fakes.pem"), ssl_keyfile=str(pki / "fakes.key"),
                         **common)
    plaintext = uvicorn.Config(create_app(capture, PLAINTEXT, lmtp_socket), port=plaintext_port, **common)
    return [uvicorn.Server(tls), uvicorn.Server(plaintext)]


async def serve(servers: Sequence[uvicorn.Server]) -> None:
    """Run the servers until a signal stops them.

    Each server installs its own SIGTERM/SIGINT handler and restores the
    previous one on exit, re-raising the signal; so one SIGTERM stops the
    last-started server, whose exit passes the signal on to the other.
    """
    await asyncio.gather(*(server.serve() for server in servers))


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m system_under_test.fakes",
         host: str | None = None) -> int:
    """Parse the arguments and serve until stopped, on ``host`` when one is given."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plaintext-port", type=int, required=True)
    parser.add_argument("--lmtp-socket", type=Path, default=None,
                        help="deliver the Resend fake's mails to this LMTP server's unix socket")
    args = parser.parse_args(argv)
    servers = build_servers(args.state_dir.resolve(), args.port, args.plaintext_port, args.lmtp_socket)
    if host is not None:
        for server in servers:
            server.config.host = host
    asyncio.run(serve(servers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
