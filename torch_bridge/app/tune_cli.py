"""``dynfilter-tvm tune``: the command-line front of ``dynfilter_tvm.tune`` (see its docstring):
workloads recorded from a model or layer (``workloads``), the target, and the search options."""
from __future__ import annotations

import os

import tvm

from dynfilter_tvm.target import cpu_target, resolve
from dynfilter_tvm.tune import dry_run, make_builder, make_runner, tune

from . import workloads


def add_arguments(parser) -> None:
    workloads.add_arguments(parser)
    parser.add_argument("--target", default="llvm",
                        help="llvm (this CPU), sm_80/sm_90 or a TVM tag such as nvidia/nvidia-h100 (default llvm)")
    parser.add_argument("--threads", type=int, default=0, help="llvm: cores to tune for (default: all)")
    parser.add_argument("--trials", type=int, default=64, help="trials per kernel, records in the log included (64)")
    parser.add_argument("--per-iter", type=int, default=16, help="candidates measured per search round (16)")
    parser.add_argument("--log-dir", help="the tuning log (default tuning_logs/<target-name>)")
    parser.add_argument("--rpc-tracker", help="measure on devices registered with a TVM RPC tracker (host:port)")
    parser.add_argument("--rpc-key", help="the device key the RPC servers registered with")
    parser.add_argument("--seed", type=int, default=None, help="search seed")
    parser.add_argument("--isolated-builds", action="store_true",
                        help="compile candidates in worker processes (MetaSchedule's LocalBuilder; slower)")
    parser.add_argument("--dry-run", action="store_true",
                        help="search and build --trials candidates per kernel for the target without measuring "
                             "them (no device needed, no log written): checks a target's search before tuning on it")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run_cli(args) -> int:
    if args.threads:
        os.environ["TVM_NUM_THREADS"] = str(args.threads)
    try:
        target = cpu_target(num_cores=args.threads or None) if args.target in ("llvm", "cpu") else resolve(args.target)
    except ValueError as err:  # e.g. llvm:CPUNAME with a name LLVM does not know
        raise SystemExit(f"dynfilter-tvm tune: error: {err}") from None
    if args.dry_run:
        summary = dry_run(workloads.from_args(args), target, args.trials,
                          builder=make_builder(args.isolated_builds), seed=args.seed)
        failed = sum(1 for s in summary if s["failed"] or not s["built"])
        if failed:
            raise SystemExit(f"dynfilter-tvm tune --dry-run: {failed} of {len(summary)} kernels had candidates "
                             "that failed to build (above)")
        return 0
    if target.kind.name == "cuda" and not args.rpc_tracker:
        if not tvm.cuda(0).exist:
            raise SystemExit("tuning for a GPU measures on that GPU: none is visible here; run on the GPU machine, "
                             "or use --rpc-tracker/--rpc-key with an RPC server on it (README: Tuning)")
    found = workloads.from_args(args)
    runner = make_runner(args.rpc_tracker, args.rpc_key)
    tune(found, target, args.trials, args.log_dir, runner=runner, builder=make_builder(args.isolated_builds),
         per_iter=args.per_iter, seed=args.seed,
         progress=args.progress)
    return 0
