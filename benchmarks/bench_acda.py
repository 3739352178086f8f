"""ACDA benchmark: ACDAConv2d with the fused TVM atom convolution vs the same layer with the
official unfold + einsum atom convolution (eager, torch.compile) vs conv2d of the same size.

    python benchmarks/bench_acda.py [--device cpu|cuda] [--threads N] [--shapes NxCxHxWxk,...]
                                    [--json out.json] [--no-compile] [--repeats R]

Prints median times and peak memory with ratios to conv2d (k x k, C -> C). Forward runs the
layers in eval mode, forward+backward in training mode. Results go to benchmarks/RESULTS.md
by hand, with command and machine.
"""
from torch_bridge.app.bench import acda as acda_bench
from torch_bridge.app.bench.harness import main

if __name__ == "__main__":
    main(__doc__, acda_bench)
