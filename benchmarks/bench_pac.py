"""PAC benchmark: PacConv2d on the TVM kernels vs the same layer on the unfold reference
(native_impl=True: eager, torch.compile) vs conv2d of the same size.

    python benchmarks/bench_pac.py [--device cpu|cuda] [--threads N] [--shapes NxCxHxWxk,...]
                                   [--json out.json] [--no-compile] [--repeats R]

Prints median times and peak memory with ratios to conv2d (k x k, C -> C, 'same' padding).
The kernel's guidance is the layer's input. Results go to benchmarks/RESULTS.md by hand,
with command and machine.
"""
from torch_bridge.app.bench import pac as pac_bench
from torch_bridge.app.bench.harness import main

if __name__ == "__main__":
    main(__doc__, pac_bench)
