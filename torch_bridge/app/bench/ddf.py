"""DDF check-and-benchmark: the TVM op against the unfold reference (eager and
``torch.compile``) and depthwise ``conv2d`` of the same size, forward and forward+backward."""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from dynfilter_tvm.ops.common import out_size

from .harness import measure_pass, output_and_input_grads
from ...functional import ddf
from ...nn import DDFPack
from ...reference import ddf_reference

NAME = "DDF"
TITLE = "DDF (decoupled dynamic filter) compiled with TVM"
FLOOR = "depthwise conv2d"  # the vendor op the ratios are taken to
# DDF-ResNet-50 stages at batch 2 (CPU) / 16 (GPU), plus a large kernel.
CPU_SHAPES = [(2, 64, 56, 56, 3), (2, 128, 28, 28, 3), (2, 256, 14, 14, 3), (2, 64, 56, 56, 7)]
GPU_SHAPES = [(16, 64, 56, 56, 3), (16, 128, 28, 28, 3), (16, 256, 14, 14, 3), (16, 64, 56, 56, 7)]



def check(device: torch.device, verbose: bool = True) -> float:
    """Largest error of the TVM op (forward and all gradients) against the float64 reference
    over a few shapes; raises AssertionError when one is off."""
    worst = 0.0
    cases = [(2, 16, 13, 17, 1, 3, 1, 1, "mul"), (1, 8, 12, 9, 2, 5, 2, 2, "add"), (1, 4, 11, 11, 1, 7, 1, 1, "mul")]
    for B, C, H, W, G, k, s, d, comb in cases:
        ins = [torch.randn(*shape, dtype=torch.float64, device=device, requires_grad=True)
               for shape in ((B, C, H, W), (B, C, k, k), (B, G * k * k, out_size(H, s), out_size(W, s)))]
        outs = [output_and_input_grads(fn, ins, (k, d, s, comb)) for fn in (ddf, ddf_reference)]
        err = max((a - b).abs().max().item() for a, b in zip(*outs))
        assert err < 1e-9, f"DDF off by {err} at {(B, C, H, W, G, k, s, d, comb)}"
        worst = max(worst, err)
        if verbose:
            print(f"  check B={B} C={C} {H}x{W} heads={G} k={k} stride={s} dilation={d} {comb}: "
                  f"max |error| {err:.1e} (forward + 3 gradients, float64)")
    return worst


def bench_shape(B, C, H, W, k, device, dtype=torch.float32, compile_ref=True, repeats=7) -> List[Dict]:
    """Rows of {variant, pass, ms, peak_mib} for one shape (stride 1, dilation 1, mul)."""
    x = torch.randn(B, C, H, W, device=device, dtype=dtype)
    cf = torch.randn(B, C, k, k, device=device, dtype=dtype)
    sf = torch.randn(B, k * k, H, W, device=device, dtype=dtype)
    w = torch.randn(C, 1, k, k, device=device, dtype=dtype, requires_grad=True)
    variants = {
        "dynfilter_tvm": lambda a, b, c: ddf(a, b, c, k),
        "unfold eager": lambda a, b, c: ddf_reference(a, b, c, k),
    }
    if compile_ref:
        variants["unfold torch.compile"] = torch.compile(lambda a, b, c: ddf_reference(a, b, c, k), dynamic=False)
    variants["depthwise conv2d"] = lambda a, b, c: F.conv2d(a, w, padding=k // 2, groups=C)

    def fwd(fn):
        def run():
            with torch.no_grad():
                return fn(x, cf, sf)
        return run

    leaves = [t.detach().requires_grad_() for t in (x, cf, sf)]

    def fwd_bwd(fn):  # gradients of every input (and of the conv2d weight)
        def run():
            for p in (*leaves, w):
                p.grad = None
            out = fn(*leaves)
            out.sum().backward()
            return out
        return run

    rows, shape = [], f"{B}x{C}x{H}x{W} k{k}"
    for label, fns in (("forward", {n: fwd(f) for n, f in variants.items()}),
                       ("forward+backward", {n: fwd_bwd(f) for n, f in variants.items()})):
        rows += measure_pass(label, shape, fns, device, repeats)
    return rows


def standard_layer(channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                   out_channels: Optional[int] = None) -> nn.Module:
    """The family's layer for ``--op ddf`` workloads: ``DDFPack`` (keeps the channels)."""
    return DDFPack(channels, kernel_size, stride=stride, dilation=dilation)


def generic_cases(shapes, device: torch.device):
    """The op itself (``functional.ddf``): the passes ``harness.generic_vs_static`` times."""
    for B, C, H, W, k in shapes:
        x, cf, sf = (torch.randn(*s, device=device) for s in ((B, C, H, W), (B, C, k, k), (B, k * k, H, W)))
        leaves = [t.detach().requires_grad_() for t in (x, cf, sf)]

        def fwd(x=x, cf=cf, sf=sf, k=k):
            with torch.no_grad():
                return ddf(x, cf, sf, k)

        def fwd_bwd(leaves=leaves, k=k):
            for t in leaves:
                t.grad = None
            ddf(*leaves, k).sum().backward()

        yield f"{B}x{C}x{H}x{W} k{k}", {"forward": fwd, "forward+backward": fwd_bwd}
