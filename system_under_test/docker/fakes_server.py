"""Run the fakes inside their container: ``system_under_test.fakes`` on every address.

The fakes bind 127.0.0.1 when run as local processes; in a container the API
reaches them over the internal network, so the same servers listen on
0.0.0.0 of the container (which only that network can reach).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from system_under_test.fakes.__main__ import build_servers, serve

CONTAINER_ADDRESS = "0.0.0.0"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the same arguments as ``python -m system_under_test.fakes`` and serve until stopped."""
    parser = argparse.ArgumentParser(prog="python -m system_under_test.docker.fakes_server")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plaintext-port", type=int, required=True)
    args = parser.parse_args(argv)
    servers = build_servers(args.state_dir.resolve(), args.port, args.plaintext_port)
    for server in servers:
        server.config.host = CONTAINER_ADDRESS
    asyncio.run(serve(servers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
