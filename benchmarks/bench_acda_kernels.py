"""ACDA kernels alone, static against generic builds, on the CPU (1 thread), interleaved.

    DYNFILTER_TVM_CACHE=off PYTHONPATH=. python3 benchmarks/bench_acda_kernels.py \
        [--kernels fwd,dx,datoms] [--shapes 2x64x56x56x7,2x64x28x28x7] [--repeats 15] [--mcpu haswell]

Shapes are N x C x H x W x k, with M = 6 atoms, T = (k // 2) * M bases, stride 1, padding
k // 2 (the layer's defaults). Each kernel is built static and generic (N, H, W symbolic),
both called in turn ``--repeats`` times; the time is the calling thread's CPU time
(``time.thread_time``: TVM runs a 1-thread pool in the caller), its minimum over the
repeats. On the shared 2-core machines wall-clock times swung 2-3x between runs; CPU time
of the thread gave ratios that agree within a few percent. ``--mcpu``: build for another
CPU of the same instruction set family (an AVX2-only one on an AVX-512 host), run here.
Prints generic / static.
"""
from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", default="fwd,dx,datoms")
    ap.add_argument("--shapes", default="2x64x56x56x7,2x64x28x28x7")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--mcpu", default=None, help="LLVM CPU to build for (default: this one)")
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = "1"  # read when TVM's pool starts
    import numpy as np
    import tvm

    from dynfilter_tvm.build import build
    from dynfilter_tvm.ops.common import conv_out_size
    from dynfilter_tvm.target import cpu_target
    from dynfilter_tvm.workload import Workload

    target, dev = cpu_target(mcpu=args.mcpu), tvm.cpu()
    for shape in args.shapes.split(","):
        N, C, H, W, k = map(int, shape.split("x"))
        M, T, s, d, p = 6, (k // 2) * 6, 1, 1, k // 2
        Ho, Wo = conv_out_size(H, k, s, p, d), conv_out_size(W, k, s, p, d)
        rng = np.random.default_rng(0)

        def t(*sh, rng=rng):
            return tvm.runtime.tensor(rng.standard_normal(sh).astype("float32"), dev)

        X, A, P, dO = t(N, C, H, W), t(N, M, T, Ho, Wo), t(T, k, k), t(N, C, M, Ho, Wo)
        call_args = {"fwd": [X, A, P, t(N, C, M, Ho, Wo)], "dx": [dO, A, P, t(N, C, H, W)],
                     "datoms": [dO, X, t(N, M, k, k, Ho, Wo)]}
        fns = {}
        for kernel in args.kernels.split(","):
            wl = Workload.make("acda", kernel, dict(N=N, C=C, H=H, W=W, M=M, T=T, k=k, s=s, d=d, p=p), "float32")
            for kind, w in (("static", wl), ("generic", wl.with_symbolic(("N", "H", "W")))):
                fns[kernel, kind] = build(w, target).mod["acda_" + kernel]
        times = {key: [] for key in fns}
        for (kernel, _), f in fns.items():
            f(*call_args[kernel])  # warm up
        for _ in range(args.repeats):
            for (kernel, kind), f in fns.items():
                t0 = time.thread_time()
                f(*call_args[kernel])
                times[kernel, kind].append(time.thread_time() - t0)
        for kernel in args.kernels.split(","):
            st, ge = (min(times[kernel, kind]) * 1e3 for kind in ("static", "generic"))
            print(f"acda.{kernel:7s} {shape:16s} static {st:8.3f} ms  generic {ge:8.3f} ms  ratio {ge / st:.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
