"""Kernel cache warm start: a first process compiles the DDF kernels of one layer shape into a
fresh cache; a second process loads them. Prints each process's time to get the four kernels
(forward + three gradients) and to run the first forward+backward.

    python benchmarks/warm_start.py
"""
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import time
import torch
t0 = time.perf_counter()
import dynfilter_tvm
from dynfilter_tvm import cache
from torch_bridge.runtime import target_for
from dynfilter_tvm.workload import Workload
t1 = time.perf_counter()
p = dict(B=2, C=64, H=56, W=56, G=1, k=3, s=1, d=1, combine="mul")
for kern in ("fwd", "dx", "ds", "dc"):
    cache.get(Workload.make("ddf", kern, p, "float32"), target_for(torch.device("cpu")))
t2 = time.perf_counter()
from torch_bridge.functional import ddf
x = torch.randn(2, 64, 56, 56, requires_grad=True)
ddf(x, torch.randn(2, 64, 3, 3), torch.randn(2, 9, 56, 56)).sum().backward()
t3 = time.perf_counter()
print(f"import {t1 - t0:.2f} s | 4 kernels {t2 - t1:.3f} s (built {cache.stats['built']}, "
      f"from disk {cache.stats['disk_hits']}) | first fwd+bwd call {t3 - t2:.2f} s (torch's custom-op set-up)")
"""

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, DYNFILTER_TVM_CACHE=d)
        for label in ("first process (cold cache)", "second process (warm cache)"):
            out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
            print(f"{label}: {out.stdout.strip()}")
