"""``dynfilter-tvm compile``: the command-line front of ``dynfilter_tvm.aot`` (bundle writing):
workloads recorded from a model or layer, one or more targets, the output directory."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Optional

from dynfilter_tvm import aot
from dynfilter_tvm.target import resolve, target_name

from . import workloads


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``dynfilter-tvm compile``: workload selection shared with ``tune``
    (``torch_bridge.app.workloads.add_arguments``), targets and the output."""
    p.add_argument("--target", action="append", required=True, metavar="TARGET",
                   help="sm_XY (a CUDA arch, e.g. sm_90), llvm (this CPU), llvm:CPUNAME (another CPU, e.g. "
                        "llvm:skylake), a TVM tag or a target JSON; repeat for several targets in one bundle")
    p.add_argument("-o", "--output", required=True, metavar="BUNDLE", help="bundle directory to write")
    p.add_argument("--force", action="store_true", help="replace an existing bundle directory")
    workloads.add_arguments(p)


def run_cli(args: argparse.Namespace, parser: Optional[argparse.ArgumentParser] = None) -> int:
    """``dynfilter-tvm compile``: write a bundle for parsed ``args`` (see ``add_arguments``)."""
    parser = parser or getattr(args, "parser", None)
    try:
        targets = [resolve(t) for t in args.target]
    except ValueError as err:
        if parser is not None:
            parser.error(str(err))
        raise
    t0 = time.perf_counter()
    try:
        found = workloads.from_args(args, generic_without_input=True)
    except (ValueError, KeyError) as err:  # e.g. an input shape the model does not take
        msg = f"recording the kernels failed: {err.args[0] if err.args else err}"
        if parser is not None:
            parser.error(msg)
        raise ValueError(msg) from err
    if any(t.kind.name == "cuda" for t in targets):
        found = workloads.with_tf32_variants(found)  # CUDA float32 runs these by default
    what = f"model {args.model}" if args.model else f"{args.op} layer" if args.op else "the given workloads"
    shape = "x".join(map(str, args.input)) if args.input else ("every size" if not args.workload else "")
    print(f"{what}{' at ' + shape if shape else ''} ({args.dtype}, "
          f"{'forward and backward' if args.backward else 'forward only'}): {len(found)} kernels "
          f"(recorded in {time.perf_counter() - t0:.1f} s); {len(targets)} target(s): "
          f"{', '.join(target_name(t) for t in targets)}", flush=True)
    t0 = time.perf_counter()
    try:
        manifest = aot.compile_bundle(found, targets, args.output, overwrite=args.force,
                                  progress=lambda msg: print(msg, flush=True))
    except aot.BundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: {len(found)} kernels x {len(manifest['targets'])} targets "
          f"in {time.perf_counter() - t0:.1f} s (load with dynfilter_tvm.load_bundle or {aot.ENV_BUNDLE})")
    return 0
