"""Registers, spills and theoretical occupancy of the CUDA conv kernels of PAC (ptxas, no GPU):
the generic (N, H, W symbolic) and static builds, forward (a = 0) and adjoint (a = 1), over
kernel sizes, dtypes and archs. Needs nvcc.

    PYTHONPATH=. python3 benchmarks/cuda_registers.py [--k 1 2 3 5 7] [--dtype float32 float64]
        [--arch sm_90 sm_80] [--channels 64] [--size 16 56]

The static build is at batch x size² ("--size"), C = O = channels, 'same' padding.
"""
from __future__ import annotations

import argparse

from dynfilter_tvm.gpu_report import launch_resources
from dynfilter_tvm.workload import Workload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 5, 7])
    ap.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    ap.add_argument("--arch", nargs="+", default=["sm_90", "sm_80"])
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--size", type=int, nargs=2, default=[16, 56], metavar=("BATCH", "PIXELS"))
    args = ap.parse_args()
    N, S, C = args.size[0], args.size[1], args.channels
    print("| build | dtype | k | a | arch | threads | registers | spill B | shared B | occupancy |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for dtype in args.dtype:
        for k in args.k:
            for a in (0, 1):
                geo = dict(C=C, O=C, k=k, s=1, z=1, p=k // 2, d=1, a=a)
                for kind, sizes in (("generic", dict(N=None, H=None, W=None, Ho=None, Wo=None)),
                                    ("static", dict(N=N, H=S, W=S, Ho=S, Wo=S))):
                    wl = Workload.make("pac", "conv", dict(geo, **sizes), dtype)
                    for arch in args.arch:
                        try:
                            launches = launch_resources(wl, arch)
                        except (RuntimeError, ValueError) as e:
                            print(f"| {kind} | {dtype} | {k} | {a} | {arch} | build failed: {str(e).splitlines()[-1][:80]} |")
                            continue
                        r = next(r for r in launches if r["launch"] == "pac_conv_kernel")
                        print(f"| {kind} | {dtype} | {k} | {a} | {arch} | {r['threads']} | {r['regs']} | {r['spill']} | "
                              f"{r['smem']:,} | {r['occupancy']:.1%} |", flush=True)

if __name__ == "__main__":
    main()
