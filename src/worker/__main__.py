"""`python -m worker` is the `payment-worker` command."""

import sys

from worker.cli import main

sys.exit(main())
