"""Generic (symbolic batch and size) against static kernels, interleaved in one process.

    python3 benchmarks/bench_generic.py --op ddf|pac|acda [--threads 1] [--repeats 7] [--declare B,H,W]
                                        [--thread-time]

Per family (``torch_bridge.app.bench``): its ``generic_cases`` at its CPU_SHAPES (DDF: the op;
PAC, ACDA: the layer), forward and forward+backward, switching ``dispatch`` shape modes
(``harness.generic_vs_static``). ``--declare`` sets the op module's ``SYMBOLIC`` for this run,
to measure kernels the op does not declare. ``--thread-time`` (1 thread only): the calling
thread's CPU time (TVM's pool, torch's ops and CPU autograd run there) instead of wall time,
which other processes on a loaded machine inflate. Prints generic/static ratios.
"""
from __future__ import annotations

import argparse
import importlib
import os


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--op", required=True)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for torch and TVM (default 1)")
    ap.add_argument("--declare", default="", help="comma-separated SYMBOLIC names to set for this run")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--thread-time", action="store_true", help="time the calling thread's CPU time (1 thread)")
    args = ap.parse_args()
    if args.thread_time and args.threads != 1:
        ap.error("--thread-time measures the calling thread only: use it with --threads 1")
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's pool starts
    import torch

    from torch_bridge.app.bench import families
    from torch_bridge.app.bench.harness import generic_vs_static

    torch.set_num_threads(args.threads)
    found = families()
    if args.op not in found:
        ap.error(f"--op must be one of {sorted(found)}")
    if args.declare:
        importlib.import_module(f"dynfilter_tvm.ops.{args.op}").SYMBOLIC = tuple(args.declare.split(","))
    import time

    clock = {"clock": time.thread_time} if args.thread_time else {}
    for r in generic_vs_static(found[args.op], torch.device("cpu"), repeats=args.repeats, **clock):
        print(f"{args.op} {r['shape']:22s} {r['pass']:17s} static {r['static_ms']:8.3f} ms  "
              f"generic {r['generic_ms']:8.3f} ms  ratio {r['ratio']:.2f}", flush=True)


if __name__ == "__main__":
    main()
