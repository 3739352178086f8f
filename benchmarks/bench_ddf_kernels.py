"""DDF CPU kernels one by one: static and generic builds and depthwise conv2d, interleaved.

    python3 benchmarks/bench_ddf_kernels.py [--threads 1] [--repeats 7] [--shapes BxCxHxWxk[xs],...]
                                            [--kernels fwd,dx,ds,dc] [--no-generic] [--thread-time]

Per shape: each kernel's default schedule built for the exact shape (static) and with B, H, W
symbolic (generic), called on the same torch tensors, and oneDNN's depthwise conv2d forward
of the same input (stride s, the cost floor), all timed interleaved in one process
(``harness.time_interleaved``: medians). Prints milliseconds, generic/static and each
kernel's time over the depthwise conv2d's. ``--thread-time`` (1 thread only): CPU time of the
calling thread (where TVM's and torch's single-thread work runs) instead of wall time, which
other processes on a loaded machine inflate. The bench of the torch op (bridge included) is
``bench_generic.py --op ddf``; this one isolates the kernels.
"""
from __future__ import annotations

import argparse
import os

DEFAULT = "2x64x56x56x3,2x128x28x28x3,2x256x14x14x3,2x64x56x56x7,2x64x56x56x3x2"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--shapes", default=DEFAULT)
    ap.add_argument("--kernels", default="fwd,dx,ds,dc")
    ap.add_argument("--no-generic", action="store_true")
    ap.add_argument("--thread-time", action="store_true", help="time the calling thread's CPU time (1 thread)")
    args = ap.parse_args()
    if args.thread_time and args.threads != 1:
        ap.error("--thread-time measures the calling thread only: use it with --threads 1")
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import torch

    from dynfilter_tvm.build import build
    from dynfilter_tvm.target import cpu_target
    from dynfilter_tvm.workload import Workload
    from torch_bridge.app.bench.harness import time_interleaved

    torch.set_num_threads(args.threads)
    target = cpu_target()
    dev = torch.device("cpu")
    for spec in args.shapes.split(","):
        B, C, H, W, k, *rest = (int(v) for v in spec.split("x"))
        s = rest[0] if rest else 1
        Ho, Wo = -(-H // s), -(-W // s)
        p = dict(B=B, C=C, H=H, W=W, G=1, k=k, s=s, d=1, combine="mul")
        t = {n: torch.randn(*shape) for n, shape in (
            ("X", (B, 1, C, H, W)), ("S", (B, 1, k, k, Ho, Wo)), ("C", (B, 1, C, k, k)),
            ("dO", (B, 1, C, Ho, Wo)), ("dS", (B, 1, k, k, Ho, Wo)), ("dC", (B, 1, C, k, k)))}
        io = {"fwd": ("X", "S", "C", "dO"), "dx": ("dO", "S", "C", "X"),
              "ds": ("dO", "X", "C", "dS"), "dc": ("dO", "X", "S", "dC")}
        fns = {}
        for kern in args.kernels.split(","):
            wl = Workload.make("ddf", kern, p, "float32")
            tensors = [t[n] for n in io[kern]]
            kinds = [("static", wl)] + ([] if args.no_generic else [("generic", wl.with_symbolic(("B", "H", "W")))])
            for kind, w in kinds:
                f = build(w, target)
                fns[f"{kern} {kind}"] = lambda f=f, a=tensors: f(*a)
        x4 = t["X"].reshape(B, C, H, W)
        wdw = torch.randn(C, 1, k, k)
        fns["dwconv"] = lambda: torch.nn.functional.conv2d(x4, wdw, stride=s, padding=k // 2, groups=C)
        with torch.no_grad():
            ms = time_interleaved(fns, dev, repeats=args.repeats, **_clock(args.thread_time))
        for kern in args.kernels.split(","):
            st = ms[f"{kern} static"]
            line = f"{spec:18s} {kern:3s} static {st:8.3f} ms ({st / ms['dwconv']:5.2f}x dwconv)"
            if not args.no_generic:
                ge = ms[f"{kern} generic"]
                line += f"  generic {ge:8.3f} ms ({ge / ms['dwconv']:5.2f}x dwconv)  generic/static {ge / st:5.2f}"
            print(line, flush=True)
        print(f"{spec:18s} dwconv {ms['dwconv']:8.3f} ms", flush=True)


def _clock(thread_time: bool) -> dict:
    """time_interleaved's clock: the calling thread's CPU time (1 thread), else wall time."""
    import time

    return {"clock": time.thread_time, "min_time": 0.03} if thread_time else {}


if __name__ == "__main__":
    main()
