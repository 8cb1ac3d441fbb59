#!/usr/bin/env bash
# Install everything from scratch (CPU torch first) and run the test suite CI runs:
# everything but the tests marked slow. PostgreSQL must listen on 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=model,peers,dev WITH_SYSTEM_PACKAGES=1 scripts/install.sh
exec .venv/bin/python -m pytest -m "not slow" "$@"
