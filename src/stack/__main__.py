"""`python3 -m stack`, which scripts/stack runs."""

import sys

from stack.cli import run

sys.exit(run())
