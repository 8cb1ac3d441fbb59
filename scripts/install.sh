#!/usr/bin/env bash
# Set up .venv from scratch: CPU PyTorch first (so pip never pulls a multi-GB CUDA build),
# then the project with the extras named in $EXTRAS (default: model).
# With WITH_SYSTEM_PACKAGES=1 it also installs Debian's Chromium (browser tests), Caddy (the
# HTTPS front, tests/server/test_https.py) and Fashion-MNIST when they are missing (needs root
# and the Debian mirror).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EXTRAS:-model}"
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

if [[ "${WITH_SYSTEM_PACKAGES:-0}" == 1 ]]; then
    missing=()
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    command -v caddy >/dev/null || missing+=(caddy)
    [[ -d /usr/share/datasets/fashion-mnist ]] || missing+=(dataset-fashion-mnist)
    if (( ${#missing[@]} )); then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
fi
"$VENV/bin/python" -m pip install -q -e ".[${EXTRAS}]"
