"""DDF benchmark: TVM op vs unfold reference (eager, torch.compile) vs depthwise conv2d.

    python benchmarks/bench_ddf.py [--device cpu|cuda] [--threads N] [--shapes BxCxHxWxk,...]
                                   [--json out.json] [--no-compile] [--repeats R]

Prints a table of median times and peak memory with ratios to depthwise conv2d (the cost
floor DDF aims at); results go to benchmarks/RESULTS.md by hand, with command and machine.
"""
from torch_bridge.app.bench import ddf as ddf_bench
from torch_bridge.app.bench.harness import main

# DDF-ResNet-50 stages at batch 2 (CPU) / 16 (GPU), plus a large kernel.
CPU_SHAPES = [(2, 64, 56, 56, 3), (2, 128, 28, 28, 3), (2, 256, 14, 14, 3), (2, 64, 56, 56, 7)]
GPU_SHAPES = [(16, 64, 56, 56, 3), (16, 128, 28, 28, 3), (16, 256, 14, 14, 3), (16, 64, 56, 56, 7)]

if __name__ == "__main__":
    main(__doc__, ddf_bench, CPU_SHAPES, GPU_SHAPES)
