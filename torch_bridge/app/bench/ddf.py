"""DDF check-and-benchmark: the TVM op against the unfold reference (eager and
``torch.compile``) and depthwise ``conv2d`` of the same size, forward and forward+backward."""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from dynfilter_tvm.ops.common import out_size

from .harness import measure_pass, output_and_input_grads, run_shapes
from ...functional import ddf
from ...reference import ddf_reference


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


def run(device: torch.device, shapes, compile_ref: bool, argv: List[str], json_path: Optional[str] = None,
        repeats: int = 7) -> List[Dict]:
    """Measure every shape (B, C, H, W, k), print the table; ``argv`` reruns this command."""
    return run_shapes("DDF", bench_shape, "depthwise conv2d", device, shapes, compile_ref, argv, json_path, repeats)
