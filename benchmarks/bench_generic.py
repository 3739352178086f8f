"""Generic (symbolic B, H, W) against static kernels, interleaved in one process, 1 thread.

    PYTHONPATH=. python3 benchmarks/bench_generic.py --op ddf [--declare B,H,W]

Per family (``torch_bridge.app.bench.families()``): its CPU_SHAPES, forward and forward+backward,
switching with ``dispatch.set_shape_mode``. ``--declare`` sets the op module's ``SYMBOLIC`` for
this run (to measure a family that does not declare it yet). Prints generic/static ratios.
"""
from __future__ import annotations

import argparse
import importlib
import os

os.environ.setdefault("TVM_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)

from dynfilter_tvm import dispatch  # noqa: E402
from torch_bridge.app.bench import families  # noqa: E402
from torch_bridge.app.bench.harness import time_interleaved  # noqa: E402


def ddf_cases(family):
    from torch_bridge.functional import ddf

    for B, C, H, W, k in family.CPU_SHAPES:
        x, cf, sf = torch.randn(B, C, H, W), torch.randn(B, C, k, k), torch.randn(B, k * k, H, W)
        leaves = [t.requires_grad_() for t in (x, cf, sf)]

        def fwd():
            with torch.no_grad():
                return ddf(x, cf, sf, k)

        def fwd_bwd():
            for t in leaves:
                t.grad = None
            ddf(*leaves, k).sum().backward()

        yield f"{B}x{C}x{H}x{W} k{k}", {"forward": fwd, "forward+backward": fwd_bwd}


CASES = {"ddf": ddf_cases}  # the PAC/ACDA families add theirs


def moded(fn, mode):
    def run():
        dispatch.set_shape_mode(mode)
        return fn()
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--op", required=True, choices=sorted(CASES))
    ap.add_argument("--declare", default="", help="comma-separated SYMBOLIC names to set for this run")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    if args.declare:
        module = importlib.import_module(f"dynfilter_tvm.ops.{args.op}")
        module.SYMBOLIC = tuple(args.declare.split(","))
    family = families()[args.op]
    for shape, passes in CASES[args.op](family):
        for label, fn in passes.items():
            t = time_interleaved({m: moded(fn, m) for m in dispatch.MODES}, torch.device("cpu"), args.repeats)
            print(f"{args.op} {shape:22s} {label:17s} static {t['static']:8.3f} ms  generic {t['generic']:8.3f} ms"
                  f"  ratio {t['generic'] / t['static']:.2f}", flush=True)
    dispatch.set_shape_mode(None)


if __name__ == "__main__":
    main()
