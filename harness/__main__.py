"""``python -m harness`` is ``votriz-audit``."""

import sys

from harness.cli import main

sys.exit(main())
