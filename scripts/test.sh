#!/usr/bin/env bash
# Install everything from scratch (CPU torch first) and run the test suite CI runs:
# everything but the tests marked slow. PostgreSQL must listen on 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=model,peers,dev WITH_SYSTEM_PACKAGES=1 scripts/install.sh
# One intra-op thread per torch process: the suite runs servers, browsers and training
# side by side on two cores, where torch's default thread pool oversubscribes them badly.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/python -m pytest -m "not slow" "$@"
