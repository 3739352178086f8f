"""DDF benchmark: TVM op vs unfold reference (eager, torch.compile) vs depthwise conv2d.

    python benchmarks/bench_ddf.py [--device cpu|cuda] [--json out.json] [--no-compile]

Prints a table of median times and peak memory with ratios to depthwise conv2d (the cost
floor DDF aims at); results go to benchmarks/RESULTS.md by hand, with command and machine.
"""
import argparse

import torch

from torch_bridge import ddf_bench

# DDF-ResNet-50 stages at batch 2 (CPU) / 16 (GPU), plus a large kernel.
CPU_SHAPES = [(2, 64, 56, 56, 3), (2, 128, 28, 28, 3), (2, 256, 14, 14, 3), (2, 64, 56, 56, 7)]
GPU_SHAPES = [(16, 64, 56, 56, 3), (16, 128, 28, 28, 3), (16, 256, 14, 14, 3), (16, 64, 56, 56, 7)]

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.manual_seed(0)
    ddf_bench.run(dev, CPU_SHAPES if dev.type == "cpu" else GPU_SHAPES, not a.no_compile, a.json, a.repeats)
