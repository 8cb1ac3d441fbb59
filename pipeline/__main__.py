"""`python -m pipeline` is the `advcritic` command."""

import sys

from pipeline.cli import main

sys.exit(main())
