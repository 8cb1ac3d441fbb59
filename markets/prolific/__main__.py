"""`python -m markets.prolific` is the `prolific` command."""

import sys

from markets.prolific.cli import main

sys.exit(main())
