"""ACDA benchmark: ACDAConv2d with the fused TVM atom convolution vs the same layer with the
official unfold + einsum atom convolution (eager, torch.compile) vs conv2d of the same size.

    python benchmarks/bench_acda.py [--device cpu|cuda] [--threads N] [--shapes NxCxHxWxk,...]
                                    [--json out.json] [--no-compile]

Prints median times and peak memory with ratios to conv2d (k x k, C -> C). Forward runs the
layers in eval mode, forward+backward in training mode. Results go to benchmarks/RESULTS.md
by hand, with command and machine.
"""
import argparse
import os
import sys


# The setting (64 -> 64, 56x56, k = 7), the other kernel sizes, a deeper stage.
CPU_SHAPES = [(2, 64, 56, 56, 7), (2, 64, 56, 56, 5), (2, 64, 56, 56, 3), (2, 128, 28, 28, 7)]
GPU_SHAPES = [(16, 64, 56, 56, 7), (16, 64, 56, 56, 5), (16, 64, 56, 56, 3), (16, 128, 28, 28, 7)]

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch and TVM (0: all cores)")
    ap.add_argument("--shapes", default="", help="e.g. 2x64x56x56x7 (N x C x H x W x k)")
    a = ap.parse_args()
    if a.threads:  # before TVM's thread pool starts
        os.environ["TVM_NUM_THREADS"] = str(a.threads)
    import torch

    from torch_bridge import acda_bench

    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    torch.manual_seed(0)
    shapes = [tuple(int(n) for n in s.split("x")) for s in a.shapes.split(",")] if a.shapes else (
        CPU_SHAPES if dev.type == "cpu" else GPU_SHAPES)
    acda_bench.run(dev, shapes, not a.no_compile, sys.argv, a.json, a.repeats)
