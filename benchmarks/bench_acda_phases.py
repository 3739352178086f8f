"""ACDA's strided input gradient: the dx kernel over the zero-inserted grid against the input
phases (``torch_bridge.ops.acda._dx_by_phase``), interleaved in one process. CPU: 1 thread,
medians of 11 of the process CPU time (on a shared machine wall time also counts the waits
for a core). CUDA: batch x4, medians of 21 wall-clock times between device synchronisations
(CUDA keeps the grid by default, ``DX_PHASE_DEVICES``: this measures that choice).

    PYTHONPATH=. python3 benchmarks/bench_acda_phases.py [generic|static] [--device cpu|cuda]

Both ways are forced here, whatever ``DX_PHASE_MIN_TAPS`` and ``DX_PHASE_DEVICES`` say, to
measure where phases pay.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ["TVM_NUM_THREADS"] = "1"  # read when TVM's pool starts

import torch  # noqa: E402

from dynfilter_tvm import dispatch  # noqa: E402
from dynfilter_tvm.ops.common import conv_out_size  # noqa: E402
from torch_bridge.ops import acda as A  # noqa: E402

# N, C, H, M, T, k, s: Ad-ResNet's strided 7x7 layers (stages 2-4 at 56 and 28 pixels) and others
SHAPES = [(2, 64, 56, 6, 18, 7, 2), (2, 128, 28, 6, 18, 7, 2), (2, 64, 57, 6, 12, 5, 2),
          (2, 32, 48, 4, 8, 5, 3), (2, 64, 56, 6, 6, 3, 2), (2, 32, 48, 4, 8, 5, 4), (2, 32, 48, 4, 8, 7, 4)]


def _forced(min_taps: float, device: str):
    def run(fn):
        saved = A.DX_PHASE_MIN_TAPS, A.DX_PHASE_DEVICES
        A.DX_PHASE_MIN_TAPS, A.DX_PHASE_DEVICES = min_taps, (device,)
        try:
            return fn()
        finally:
            A.DX_PHASE_MIN_TAPS, A.DX_PHASE_DEVICES = saved
    return run


def _timer(device: str):
    """(clock, repeats): process CPU time on the CPU; wall time between synchronisations on CUDA."""
    if device == "cpu":
        return time.process_time, 11

    def clock() -> float:
        torch.cuda.synchronize()
        return time.perf_counter()
    return clock, 21


def bench(mode: str, device: str, label: str, fn) -> None:
    ways = {"zero-inserted": _forced(10 ** 6, device), "phases": _forced(0, device)}
    outs = {w: way(fn) for w, way in ways.items()}  # builds, warm-up
    err = ((outs["phases"] - outs["zero-inserted"]).abs().max() / outs["zero-inserted"].abs().max()).item()
    clock, repeats = _timer(device)
    times = {w: [] for w in ways}
    for _ in range(repeats):
        for w, way in ways.items():
            t0 = clock()
            way(fn)
            times[w].append(clock() - t0)
    a, b = (statistics.median(times[w]) * 1e3 for w in ways)
    print(f"{mode} {device} {label:36s} zero-inserted {a:8.3f} ms  phases {b:8.3f} ms  phases / zero-inserted "
          f"{b / a:.2f}  (largest difference {err:.1e} of the largest value)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", default="generic", choices=("generic", "static"))
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_acda_phases.py: --device cuda needs a CUDA GPU (none found)")
    torch.set_num_threads(1)
    dispatch.set_shape_mode(args.mode)
    scale = 4 if args.device == "cuda" else 1
    for N, C, H, M, T, k, s in SHAPES:
        N, p = N * scale, k // 2
        Ho = conv_out_size(H, k, s, p, 1)
        x, a, b = (torch.randn(*shape, device=args.device)
                   for shape in ((N, C, H, H), (N, M * T, Ho, Ho), (T, k, k)))
        g = torch.randn(N, C * M, Ho, Ho, device=args.device)
        bench(args.mode, args.device, f"acda dX {N}x{C}x{H}² M{M} T{T} k{k} s{s}",
              lambda: A.grad_input_op(g, x, a, b, s, p, 1))
    dispatch.set_shape_mode(None)


if __name__ == "__main__":
    main()
