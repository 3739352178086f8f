"""Each PAC kernel alone: its generic build (N, H, W, Ho, Wo symbolic) against its static
build at one size, interleaved, 1 thread, medians of 7 of the process CPU time, and the
largest difference of their outputs (float32).

    PYTHONPATH=. python3 benchmarks/bench_generic_pac_kernels.py N C H k [kernel,...]

Kernels at stride 1, 'same' size (Ho = H), C = O = G (the ``g`` names: G = C, and the
adjoint for pool); ``conva``: conv's adjoint form (the input gradient).
"""
from __future__ import annotations

import os
import statistics
import sys
import time

os.environ["TVM_NUM_THREADS"] = "1"  # read when TVM's pool starts

import torch  # noqa: E402

from dynfilter_tvm.build import build  # noqa: E402
from dynfilter_tvm.target import cpu_target  # noqa: E402
from dynfilter_tvm.workload import Workload  # noqa: E402

ALL = "conv,conva,conv_dk,conv_dw,pool,poolg,pool_dk,pool_dkg,dist,distg,dist_df,dist_dfg,dist_df0,dist_df0g"


def cases(C: int, k: int) -> dict:
    g = dict(k=k, s=1, p=k // 2, d=1)
    return {"conv": ("conv", dict(g, C=C, O=C, z=1, a=0)), "conva": ("conv", dict(g, C=C, O=C, z=1, a=1)),
            "conv_dk": ("conv_dk", dict(g, C=C, O=C, z=1)), "conv_dw": ("conv_dw", dict(g, C=C, O=C, z=1)),
            "pool": ("pool", dict(g, C=C, G=1, z=1, a=0)), "poolg": ("pool", dict(g, C=C, G=C, z=1, a=1)),
            "pool_dk": ("pool_dk", dict(g, C=C, G=1, z=1)), "pool_dkg": ("pool_dk", dict(g, C=C, G=C, z=1)),
            "dist": ("dist", dict(g, C=C, G=1, asym=0)), "distg": ("dist", dict(g, C=C, G=C, asym=1)),
            "dist_df": ("dist_df", dict(g, C=C, G=1, asym=0)), "dist_dfg": ("dist_df", dict(g, C=C, G=C, asym=1)),
            "dist_df0": ("dist_df0", dict(g, C=C, G=1, asym=0)),
            "dist_df0g": ("dist_df0", dict(g, C=C, G=C, asym=1))}


def shapes(kernel: str, p: dict, N: int, H: int):
    img, kern = (N, p["C"], H, H), (N, p.get("G", 1), p["k"], p["k"], H, H)
    wt = (p.get("O", 1), p["C"], p["k"], p["k"])
    return {"conv": [img, kern, wt, img], "pool": [img, kern, img], "conv_dk": [img, img, wt, kern],
            "conv_dw": [img, kern, img, wt], "pool_dk": [img, img, kern], "dist": [img, img, kern],
            "dist_df": [kern, img, img, img], "dist_df0": [kern, img, img, img]}[kernel]


def main() -> None:
    N, C, H, k = (int(a) for a in sys.argv[1:5])
    names = (sys.argv[5] if len(sys.argv) > 5 else ALL).split(",")
    torch.set_num_threads(1)
    target = cpu_target()
    for name in names:
        kernel, params = cases(C, k)[name]
        sym = build(Workload.make("pac", kernel, dict(params, N=None, H=None, W=None, Ho=None, Wo=None), "float32"),
                    target).mod[f"pac_{kernel}"]
        static = build(Workload.make("pac", kernel, dict(params, N=N, H=H, W=H, Ho=H, Wo=H), "float32"),
                       target).mod[f"pac_{kernel}"]
        args = [torch.randn(*s) for s in shapes(kernel, params, N, H)]
        static(*args)
        want = args[-1].clone()
        args[-1].fill_(float("nan"))
        sym(*args)
        err = (args[-1] - want).abs().max().item()
        times = {f: [] for f in (static, sym)}
        for _ in range(7):
            for f in times:
                t0 = time.process_time()
                f(*args)
                f(*args)
                times[f].append((time.process_time() - t0) / 2)
        s, g = (statistics.median(times[f]) * 1e3 for f in (static, sym))
        print(f"{name:10s} {N}x{C}x{H}² k{k}  static {s:8.3f} ms  generic {g:8.3f} ms  ratio {g / s:5.2f}  "
              f"max diff {err:.1e}", flush=True)


if __name__ == "__main__":
    main()
