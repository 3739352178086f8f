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

# The joint-upsampling nets' 5x5 at 32 channels, a ResNet stage at 3x3 and 5x5, a deeper one.
CPU_SHAPES = [(2, 32, 128, 128, 5), (2, 64, 56, 56, 3), (2, 64, 56, 56, 5), (2, 128, 28, 28, 3)]
GPU_SHAPES = [(16, 32, 128, 128, 5), (16, 64, 56, 56, 3), (16, 64, 56, 56, 5), (16, 128, 28, 28, 3)]

if __name__ == "__main__":
    main(__doc__, pac_bench, CPU_SHAPES, GPU_SHAPES)
