"""Tuned against default schedules, kernel by kernel, for every kernel of a tuning log.

    python benchmarks/bench_tuned.py [--log tuning_logs/llvm-znver4-1c] [--threads 1] [--repeats 9]

Both schedules of each kernel are built here and timed on the same random inputs,
interleaved round by round (``torch_bridge.app.bench.harness.time_interleaved``: this machine's
timings drift), medians reported.
The tuning log's own figures (measured while tuning, with its budget and time spent) are
printed beside them. CPU logs only (a GPU log is timed the same way on its GPU by ``--device cuda``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _no_log_help(err, target, threads: int, tuning_log) -> str:
    """What to do when the log cannot be used here: the error, the logs there are (in the search
    roots: ``$DYNFILTER_TVM_TUNING_LOGS``, then the shipped ``tuning_logs/``), and the ``tune``
    command that writes one for this CPU (or GPU)."""
    want = tuning_log.log_name(target)
    found = []
    for root in tuning_log.search_roots():
        if root.is_dir():
            found += [str(d) for d in sorted(root.iterdir()) if (d / "manifest.json").is_file()]
    where = f"--target llvm --threads {threads}" if target.kind.name == "llvm" else \
        f"--target {target.attrs.get('arch')}"
    return "\n".join([
        f"bench_tuned.py: error: {err}",
        f"this machine needs a log named {want}; logs found: {', '.join(found) if found else 'none'}",
        "tune one for this machine (the DDF benchmark shapes; README: Tuning), then run this again:",
        f"  dynfilter-tvm tune --op ddf --input 2x64x56x56 --kernel-size 3 {where} --trials 64",
        "or time another log with --log DIR (on the CPU and core count it was tuned for)",
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", help="tuning log directory (default: the shipped log for this CPU and --threads)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=9, help="interleaved rounds per kernel")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # before TVM's pool starts

    import numpy as np
    import torch
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from dynfilter_tvm import build, tuning_log
    from dynfilter_tvm.target import cpu_target, cuda_target, local_cuda_arch
    from torch_bridge.app.bench.harness import time_interleaved

    try:
        target = cpu_target(num_cores=args.threads) if args.device == "cpu" else cuda_target(local_cuda_arch())
    except RuntimeError as err:  # --device cuda without a GPU
        print(f"bench_tuned.py: error: {err}", file=sys.stderr)
        return 2
    path = Path(args.log) if args.log else tuning_log.default_root() / tuning_log.log_name(target)
    try:
        tl = tuning_log.TuningLog.load(path)
        tl.check_compatible(target)
    except tuning_log.TuningLogError as err:
        print(_no_log_help(err, target, args.threads, tuning_log), file=sys.stderr)
        return 2
    dev = tvm.cpu() if args.device == "cpu" else tvm.cuda()
    rows = []
    for e in sorted(tl.entries.values(), key=lambda e: (e.workload.kernel, e.workload.key())):
        wl = e.workload
        found = tl.schedule(wl, include_unused=True)
        if found is None:
            continue
        name = f"{wl.op}_{wl.kernel}"
        mods = {"default": build.schedule(wl, target, tuned=False)[0], "tuned": found[0]}
        libs = {k: build.build(wl, target, mod).mod[name] for k, mod in mods.items()}
        infos = ms.arg_info.ArgInfo.from_prim_func(tuning_log.mod_of(wl)["main"])
        rng = np.random.default_rng(0)
        tensors = [tvm.runtime.tensor(rng.standard_normal([int(d) for d in i.shape]).astype(i.dtype), dev)
                   for i in infos]
        ms_per_call = time_interleaved({k: (lambda f=f: f(*tensors)) for k, f in libs.items()},
                                       torch.device(args.device), repeats=args.repeats, min_time=0.02)
        med = {k: v * 1e3 for k, v in ms_per_call.items()}
        p = wl.p
        shape = f"{p['B']}x{p['C']}x{p['H']}x{p['W']} k{p['k']}" if wl.op == "ddf" else str(wl)
        rows.append({"kernel": f"{wl.op}.{wl.kernel}", "shape": shape, "default_us": med["default"],
                     "tuned_us": med["tuned"], "speedup": med["default"] / med["tuned"], "trials": e.trials,
                     "tuning_s": e.tuning_s, "log_default_us": e.default_us, "log_tuned_us": e.tuned_us,
                     "used": e.use})
        r = rows[-1]
        print(f"{r['kernel']:9s} {r['shape']:18s} default {r['default_us']:8.1f} us  tuned {r['tuned_us']:8.1f} us  "
              f"{r['speedup']:5.2f}x  ({r['trials']} trials, {r['tuning_s']:.0f} s; builds use "
              f"{'tuned' if r['used'] else 'default'})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"argv": sys.argv, "log": str(path), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
