#!/usr/bin/env bash
# The whole job on the embedded defaults (mnist-5k, SQLite, CPU): train, attack,
# build the stimulus bundle, import it as a study and serve the labeling page.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=model scripts/install.sh
exec .venv/bin/advcritic quickstart "$@"
