"""`python -m markets.mturk` is the `mturk` command."""

import sys

from markets.mturk.cli import main

sys.exit(main())
