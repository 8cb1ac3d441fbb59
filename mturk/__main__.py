"""`python -m mturk` is the `mturk` command."""

import sys

from mturk.cli import main

sys.exit(main())
