"""PAC's zero-inserted forms (the strided input gradients, the transposed forward): one kernel
over the zero-inserted grid against the output phases (``torch_bridge.ops.pac.run_taps``),
interleaved in one process, 1 thread, medians of 11 of the process CPU time (on a shared
machine wall time also counts the waits for a core).

    PYTHONPATH=. python3 benchmarks/bench_pac_phases.py [static|generic]

Phases are forced at every zero insertion here (``PHASE_MIN_ZERO_INSERTION`` 2 for both forms), to measure
where they pay.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

os.environ["TVM_NUM_THREADS"] = "1"  # read when TVM's pool starts

import torch  # noqa: E402

from dynfilter_tvm import dispatch  # noqa: E402
from torch_bridge.ops import pac as P  # noqa: E402
from torch_bridge.runtime import run  # noqa: E402

SHAPES = [(2, 32, 56, 3, 2), (2, 32, 56, 5, 2), (2, 16, 57, 5, 3)]  # N, C, H, k, stride


def _zero_inserted(kernel, p, dtype, device, src, K, Wt, out):  # what run_taps runs below its threshold
    run("pac", kernel, p, dtype, device, *((src, K, out) if Wt is None else (src, K, Wt, out)))


def _phases(*args):
    saved, P.PHASE_MIN_ZERO_INSERTION = P.PHASE_MIN_ZERO_INSERTION, {"conv": 2, "pool": 2}
    try:
        _ORIG(*args)
    finally:
        P.PHASE_MIN_ZERO_INSERTION = saved


_ORIG = P.run_taps


def bench(mode: str, label: str, fn) -> None:
    ways = {"zero-inserted": _zero_inserted, "phases": _phases}
    times = {w: [] for w in ways}
    try:
        for impl in ways.values():  # builds, warm-up
            P.run_taps = impl
            fn()
        for _ in range(11):
            for w, impl in ways.items():
                P.run_taps = impl
                t0 = time.process_time()
                fn()
                times[w].append(time.process_time() - t0)
    finally:
        P.run_taps = _ORIG
    a, b = (statistics.median(times[w]) * 1e3 for w in ways)
    print(f"{mode} {label:44s} zero-inserted {a:8.2f} ms  phases {b:8.2f} ms  speedup {a / b:.2f}", flush=True)


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "static"
    torch.set_num_threads(1)
    dispatch.set_shape_mode(mode)
    for N, C, H, k, s in SHAPES:
        p = k // 2
        Ho = (H + 2 * p - k) // s + 1
        x, g = torch.randn(N, C, H, H), torch.randn(N, C, Ho, Ho)
        w = torch.randn(C, C, k, k)
        K = torch.rand(N, 1, k, k, Ho, Ho)
        bench(mode, f"pacconv2d dX {N}x{C}x{H}² k{k} s{s}", lambda: P.conv_grad_input_op(g, x, K, w, s, p, 0, 1, False))
        Ht = (Ho - 1) * s - 2 * p + k + (s - 1)
        Kt = torch.rand(N, 1, k, k, Ht, Ht)
        bench(mode, f"pacconv_transpose2d fwd {N}x{C}x{Ho}² k{k} s{s}",
              lambda: P.conv_op(g, Kt, w, None, s, p, s - 1, 1, True))
        Kp = torch.rand(N, C, k, k, Ho, Ho)
        bench(mode, f"pacpool2d dX {N}x{C}x{H}² k{k} s{s} G=C",
              lambda: P.pool_grad_input_op(g, x, Kp, k, s, p, 0, 1, False))
    dispatch.set_shape_mode(None)


if __name__ == "__main__":
    main()
