"""Command line: ``python -m dynfilter_tvm demo`` (also installed as ``dynfilter-tvm``)."""
from __future__ import annotations

import argparse
import sys
import time


def _device(name: str):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def demo(args) -> int:
    """DDF check-and-benchmark: correctness against the reference, then a short timing."""
    from torch_bridge.benchmark import exact_peak_rss

    exact_peak_rss(["-m", "dynfilter_tvm", *sys.argv[1:]])
    import torch

    from torch_bridge import ddf_bench

    device = _device(args.device)
    torch.manual_seed(0)
    print(f"dynfilter-tvm demo on {device}: DDF (decoupled dynamic filter) compiled with TVM")
    t = time.perf_counter()
    ddf_bench.check(device)
    print(f"correct: forward and all gradients match the plain-PyTorch definition "
          f"({time.perf_counter() - t:.1f} s, kernels compiled or loaded from the cache)")
    shapes = [(2, 64, 56, 56, 3)] if device.type == "cpu" else [(8, 256, 56, 56, 3)]
    ddf_bench.run(device, shapes, compile_ref=args.compile, repeats=5)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="dynfilter-tvm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="check the DDF kernels against the reference and time them")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (GPU when present)")
    p.add_argument("--compile", action="store_true", help="also time the reference under torch.compile")
    p.set_defaults(func=demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
