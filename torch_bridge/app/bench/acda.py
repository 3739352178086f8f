"""ACDA benchmark: the whole ``ACDAConv2d`` (atom generator + fused TVM atom convolution + 1x1
coefficient convolution) against the same layer with the official unfold + einsum atom
convolution (eager and ``torch.compile``) and against ``conv2d`` of the same kernel size
and channels; forward (eval mode) and forward+backward (training mode)."""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn as nn

from dynfilter_tvm.ops.common import out_size

from .harness import layer_cases, layer_passes, output_and_input_grads
from ...functional import acda_atom_conv2d
from ...nn import ACDAConv2d
from ...reference import acda_atom_conv2d_reference

NAME = "ACDA"
TITLE = "ACDA (atom convolution of adaptive convolutions with dynamic atoms)"
FLOOR = "conv2d"  # the vendor op the ratios are taken to
# The setting (64 -> 64, 56x56, k = 7), the other kernel sizes, a deeper stage.
CPU_SHAPES = [(2, 64, 56, 56, 7), (2, 64, 56, 56, 5), (2, 64, 56, 56, 3), (2, 128, 28, 28, 7)]
GPU_SHAPES = [(16, 64, 56, 56, 7), (16, 64, 56, 56, 5), (16, 64, 56, 56, 3), (16, 128, 28, 28, 7)]


def generic_cases(shapes, device: torch.device):
    """The whole ``ACDAConv2d``: the passes ``harness.generic_vs_static`` times."""
    return layer_cases(lambda C, k: ACDAConv2d(C, C, k, padding=k // 2), shapes, device)


def check(device: torch.device, verbose: bool = True) -> float:
    """Largest error of the atom convolution (forward and all gradients) against the float64
    reference over a few shapes; raises AssertionError when one is off."""
    worst = 0.0
    # (N, C, H, W, M, T, k, stride, dilation): the layer's k = 7 setting, stride, dilation
    for N, C, H, W, M, T, k, s, d in [(2, 8, 13, 17, 6, 18, 7, 1, 1), (1, 6, 12, 9, 4, 8, 5, 2, 1),
                                      (1, 4, 11, 11, 6, 6, 3, 1, 2)]:
        p = d * (k - 1) // 2
        ins = [torch.randn(*shape, dtype=torch.float64, device=device, requires_grad=True)
               for shape in ((N, C, H, W), (N, M * T, out_size(H, s), out_size(W, s)), (T, k, k))]
        outs = [output_and_input_grads(fn, ins, (s, p, d))
                for fn in (acda_atom_conv2d, acda_atom_conv2d_reference)]
        err = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(*outs))
        assert err < 1e-12, f"ACDA off by {err} at {(N, C, H, W, M, T, k, s, d)}"
        worst = max(worst, err)
        if verbose:
            print(f"  check N={N} C={C} {H}x{W} atoms={M} bases={T} k={k} stride={s} dilation={d}: "
                  f"max relative error {err:.1e} (forward + 3 gradients, float64)")
    return worst


def bench_shape(N, C, H, W, k, device, dtype=torch.float32, compile_ref=True, repeats=7,
                num_bases=6) -> List[Dict]:
    """Rows of {shape, pass, variant, ms, peak_mib} for C -> C channels, stride 1."""
    layer = ACDAConv2d(C, C, k, padding=k // 2, num_bases=num_bases).to(device, dtype)
    conv = nn.Conv2d(C, C, k, padding=k // 2).to(device, dtype)
    x = torch.randn(N, C, H, W, device=device, dtype=dtype)
    variants = {
        "dynfilter_tvm": layer,
        "unfold eager": lambda t: layer.forward_with(acda_atom_conv2d_reference, t),
    }
    if compile_ref:
        # static shapes: a recompile for the next shape would otherwise go dynamic
        variants["unfold torch.compile"] = torch.compile(
            lambda t: layer.forward_with(acda_atom_conv2d_reference, t), dynamic=False)
    variants[FLOOR] = conv
    return layer_passes(f"{N}x{C}x{H}x{W} k{k}", variants, (layer, conv), x, device, repeats)


def standard_layer(channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                   out_channels: Optional[int] = None) -> nn.Module:
    """The family's layer for ``--op acda`` workloads: ``ACDAConv2d``."""
    pad = dilation * (kernel_size - 1) // 2
    return ACDAConv2d(channels, out_channels or channels, kernel_size, stride=stride, padding=pad, dilation=dilation)
