#!/usr/bin/env bash
# The GPU path in a few minutes: every defense trained on CUDA and on the CPU (same seed) and
# compared, 1,000 stimuli made on both and compared, and an `ours` epoch timed on full-size
# batches. Writes a report folder (--out DIR) and exits 1 if a comparison is out of tolerance.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}"
exec "$PYTHON" bench/gpu_check.py --device "${DEVICE:-cuda}" "$@"
