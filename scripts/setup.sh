#!/usr/bin/env bash
# One-time set-up on a fresh machine (idempotent): install dynfilter-tvm and its pins into the
# current Python. torch first, pinned to the 2.13.0 CPU wheel, unless a torch is already
# installed (GPU machines bring their own CUDA build): an unpinned torch pulls GBs of CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[test]"
