"""``python -m system_under_test.local up|down|status [--state-dir D] [--fault NAME ...]``.

Prints one JSON object (no secrets) and exits non-zero with one line on failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from system_under_test.local.processes import StackError
from system_under_test.local.stack import down, status, up

DEFAULT_STATE_DIR = Path(".state/local")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m system_under_test.local")
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--fault", action="append", default=[], metavar="NAME")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            print(up(args.state_dir, args.fault).to_json(), end="")
        elif args.command == "down":
            down(args.state_dir)
            print(json.dumps({"down": str(args.state_dir.resolve())}))
        else:
            print(json.dumps(asdict(status(args.state_dir)), default=str))
    except (StackError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
