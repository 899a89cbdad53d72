"""Run the fakes inside their container: ``system_under_test.fakes`` on every address.

The fakes bind 127.0.0.1 when run as local processes; in a container the API
reaches them over the internal network, so the same servers listen on
0.0.0.0 of the container (which only that network can reach).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from system_under_test.fakes.__main__ import main as fakes_main

CONTAINER_ADDRESS = "0.0.0.0"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the same arguments as ``python -m system_under_test.fakes`` and serve until stopped."""
    return fakes_main(argv, prog="python -m system_under_test.docker.fakes_server", host=CONTAINER_ADDRESS)


if __name__ == "__main__":
    sys.exit(main())
