"""Host time per call: the ops' eager fast path against the custom-op dispatcher, and against
the vendor op at the same shape, in one process.

    python3 benchmarks/bench_overhead.py [--device cpu|cuda] [--op ddf,pac,acda] [--repeats 7]
                                         [--shapes 1x8x12x12k3,2x64x56x56k3] [--threads 1]

Per family and shape: the passes of ``generic_cases`` (DDF: the op; PAC, ACDA: the layer),
forward (no grad) and forward+backward, timed with the fast path on and with every call
through the custom op (``harness.eager_vs_custom_op``, interleaved; ratio eager / custom
op), then the family's ``bench_shape`` rows (dynfilter_tvm and the vendor floor: on the tiny
shapes both are host time). Wall time, medians of ``--repeats`` interleaved repeats.
"""
from __future__ import annotations

import argparse
import os

DEFAULT_SHAPES = "1x8x12x12k3,2x64x56x56k3"


def _shape(text: str):
    dims, k = text.lower().split("k")
    return (*(int(v) for v in dims.split("x")), int(k))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--op", default="ddf,pac,acda")
    ap.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"NxCxHxWkK, comma-separated ({DEFAULT_SHAPES})")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for torch and TVM (default 1)")
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's pool starts
    import torch

    from torch_bridge.app.bench import families
    from torch_bridge.app.bench.harness import eager_vs_custom_op, machine_description

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    found = families()
    ops = args.op.split(",")
    unknown = [o for o in ops if o not in found]
    if unknown:
        ap.error(f"--op: unknown {unknown}; one of {sorted(found)}")
    try:
        shapes = [_shape(s) for s in args.shapes.split(",")]
    except ValueError:
        ap.error(f"--shapes: expected NxCxHxWkK items such as {DEFAULT_SHAPES}, got {args.shapes!r}")
    print(f"# {machine_description(device)}")
    print(f"{'op':5} {'shape':18} {'pass':17} {'eager ms':>9} {'custom op ms':>12} {'eager/op':>8} "
          f"{'floor':>16} {'floor ms':>9} {'eager/floor':>11}")
    for name in ops:
        fam = found[name]
        for shape in shapes:
            torch.manual_seed(0)
            rows = eager_vs_custom_op(fam, device, shapes=[shape], repeats=args.repeats)
            floor = {r["pass"]: r for r in fam.bench_shape(*shape, device, compile_ref=False, repeats=args.repeats)
                     if r["variant"] == fam.FLOOR}
            for r in rows:
                f = floor.get(r["pass"])
                f_ms = f["ms"] if f else float("nan")
                print(f"{name:5} {r['shape']:18} {r['pass']:17} {r['eager_ms']:9.4f} {r['custom_op_ms']:12.4f} "
                      f"{r['ratio']:8.2f} {fam.FLOOR:>16} {f_ms:9.4f} {r['eager_ms'] / f_ms:11.2f}", flush=True)


if __name__ == "__main__":
    main()
