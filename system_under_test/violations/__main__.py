"""``python -m system_under_test.violations apply NAME --state-dir STATE``: apply one violation.

Run as a child process by ``system_under_test.backends`` (PKCS#11 is
initialised once per process, for one stack's HSM). Exit 0 when applied;
otherwise exit 1 with one line on stderr naming the violation and the cause.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from system_under_test.violations import VIOLATIONS, RunningStack


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and apply the violation."""
    parser = argparse.ArgumentParser(prog="python -m system_under_test.violations")
    commands = parser.add_subparsers(dest="command", required=True)
    apply = commands.add_parser("apply", help="apply one violation to a running stack")
    apply.add_argument("name", choices=sorted(VIOLATIONS))
    apply.add_argument("--state-dir", type=Path, required=True)
    commands.add_parser("list", help="name, backends and description of every violation")
    args = parser.parse_args(argv)
    if args.command == "list":
        for violation in VIOLATIONS.values():
            print(f"{violation.name}\t{','.join(violation.backends)}\t{violation.description}")
        return 0
    violation = VIOLATIONS[args.name]
    try:
        stack = RunningStack.open(args.state_dir)
        if stack.backend not in violation.backends:
            raise ValueError(f"not applicable to the {stack.backend} backend")
        violation.apply(stack)
    except Exception as exc:  # one line for the caller, whatever the part that refused
        print(f"{violation.name}: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
