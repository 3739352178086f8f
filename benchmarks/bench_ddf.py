"""DDF benchmark: TVM op vs unfold reference (eager, torch.compile) vs depthwise conv2d.

    python benchmarks/bench_ddf.py [--device cpu|cuda] [--threads N] [--shapes BxCxHxWxk,...]
                                   [--json out.json] [--no-compile] [--repeats R]

Prints a table of median times and peak memory with ratios to depthwise conv2d (the cost
floor DDF aims at); results go to benchmarks/RESULTS.md by hand, with command and machine.
"""
from torch_bridge.app.bench import ddf as ddf_bench
from torch_bridge.app.bench.harness import main

if __name__ == "__main__":
    main(__doc__, ddf_bench)
