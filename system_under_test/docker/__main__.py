"""``python -m system_under_test.docker up|down|status|images [--state-dir D] [--fault NAME ...]``.

Prints one JSON object (no secrets) and exits non-zero with one line on
failure, like ``python -m system_under_test.local``. ``images`` builds
(or finds) every image and prints their tags, sizes and build times.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

DEFAULT_STATE_DIR = Path(".state/docker")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; see the module docstring."""
    from system_under_test.docker import images, stack

    parser = argparse.ArgumentParser(prog="python -m system_under_test.docker")
    parser.add_argument("command", choices=("up", "down", "status", "images"))
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--fault", action="append", default=[], metavar="NAME")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            print(stack.up(args.state_dir, args.fault).to_json(), end="")
        elif args.command == "down":
            stack.down(args.state_dir)
            print(json.dumps({"down": str(args.state_dir.resolve())}))
        elif args.command == "status":
            print(json.dumps(asdict(stack.status(args.state_dir)), default=str))
        else:
            client = stack.docker_client()
            try:
                built = images.ensure_images(client)
            finally:
                client.close()
            print(json.dumps({part: asdict(result) for part, result in built.items()}, indent=2))
    except (stack.StackError, images.ImageError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
