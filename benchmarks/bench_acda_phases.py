"""ACDA's strided input gradient: the dx kernel over the zero-inserted grid against the input
phases (``torch_bridge.ops.acda._dx_by_phase``), interleaved in one process, 1 thread,
medians of 11 of the process CPU time (on a shared machine wall time also counts the waits
for a core).

    PYTHONPATH=. python3 benchmarks/bench_acda_phases.py [generic|static]

Both ways are forced here, whatever ``DX_PHASE_MIN_TAPS`` says, to measure where phases pay.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

os.environ["TVM_NUM_THREADS"] = "1"  # read when TVM's pool starts

import torch  # noqa: E402

from dynfilter_tvm import dispatch  # noqa: E402
from dynfilter_tvm.ops.common import conv_out_size  # noqa: E402
from torch_bridge.ops import acda as A  # noqa: E402

# N, C, H, M, T, k, s: Ad-ResNet's strided 7x7 layers (stages 2-4 at 56 and 28 pixels) and others
SHAPES = [(2, 64, 56, 6, 18, 7, 2), (2, 128, 28, 6, 18, 7, 2), (2, 64, 57, 6, 12, 5, 2),
          (2, 32, 48, 4, 8, 5, 3), (2, 64, 56, 6, 6, 3, 2), (2, 32, 48, 4, 8, 5, 4), (2, 32, 48, 4, 8, 7, 4)]


def _forced(min_taps: int):
    def run(fn):
        saved = A.DX_PHASE_MIN_TAPS
        A.DX_PHASE_MIN_TAPS = min_taps
        try:
            return fn()
        finally:
            A.DX_PHASE_MIN_TAPS = saved
    return run


def bench(mode: str, label: str, fn) -> None:
    ways = {"zero-inserted": _forced(10 ** 6), "phases": _forced(0)}
    outs = {w: way(fn) for w, way in ways.items()}  # builds, warm-up
    err = ((outs["phases"] - outs["zero-inserted"]).abs().max() / outs["zero-inserted"].abs().max()).item()
    times = {w: [] for w in ways}
    for _ in range(11):
        for w, way in ways.items():
            t0 = time.process_time()
            way(fn)
            times[w].append(time.process_time() - t0)
    a, b = (statistics.median(times[w]) * 1e3 for w in ways)
    print(f"{mode} {label:36s} zero-inserted {a:8.2f} ms  phases {b:8.2f} ms  phases / zero-inserted {b / a:.2f}"
          f"  (largest difference {err:.1e} of the largest value)", flush=True)


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "generic"
    torch.set_num_threads(1)
    dispatch.set_shape_mode(mode)
    for N, C, H, M, T, k, s in SHAPES:
        p = k // 2
        Ho = conv_out_size(H, k, s, p, 1)
        x, a, b = torch.randn(N, C, H, H), torch.randn(N, M * T, Ho, Ho), torch.randn(T, k, k)
        g = torch.randn(N, C * M, Ho, Ho)
        bench(mode, f"acda dX {N}x{C}x{H}² M{M} T{T} k{k} s{s}",
              lambda: A.grad_input_op(g, x, a, b, s, p, 1))
    dispatch.set_shape_mode(None)


if __name__ == "__main__":
    main()
