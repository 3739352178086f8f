#!/usr/bin/env bash
# The GPU suite (README "GPU suite") on a lent GPU machine: TVM from .device/ as
# ../shared/device/README.md says, then `python3 -m torch_bridge.app.gpu_suite "$@"`.
#
#   here, once:          bash scripts/gpu_suite.sh --prepare   (.device/: TVM bundles + pytest)
#   device run 1, carry .device/full1:  mkdir -p /root/tvm-stage && cp .device/full1/part1 /root/tvm-stage/
#   device run 2, carry .device/full2 and .device/py, at once:
#                        bash scripts/gpu_suite.sh --out "$OUT/gpu-suite"
#
# Tuning and the JIT builds need TVM's compiler (full1 + full2); with only .device/rt the AOT
# step runs and the others record their failure. Without .device/ the local TVM is used.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then
    bash ../shared/device/tvm-bundle.sh
    # pytest for the device (pure Python; it has no registry): copied from this Python
    rm -rf .device/py && mkdir -p .device/py
    for m in pytest _pytest pluggy iniconfig packaging; do
        src=$(python3 -c "import importlib.util as u, os; print(os.path.dirname(u.find_spec('$m').origin))")
        cp -r "$src" .device/py/
    done
    find .device/py -name __pycache__ -prune -exec rm -rf {} +
    du -sh .device/*
    exit 0
fi
if [ ! -d /tmp/tvm-site/tvm ]; then
    if [ -f .device/full2/install.sh ]; then
        bash .device/full2/install.sh || echo "gpu_suite.sh: full TVM not installed (see above)" >&2
    elif [ -f .device/rt/install.sh ]; then
        bash .device/rt/install.sh
    fi
fi
extra=$PWD
[ -d /tmp/tvm-site/tvm ] && extra=/tmp/tvm-site:$extra
python3 -c "import pytest" 2>/dev/null || { [ -d .device/py ] && extra=$extra:$PWD/.device/py; }
export PYTHONPATH=$extra${PYTHONPATH:+:$PYTHONPATH}
exec python3 -m torch_bridge.app.gpu_suite "$@"
