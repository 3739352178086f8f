"""PAC benchmark: ``PacConv2d`` (Gaussian kernel from a guidance, then the adaptive convolution,
both on the TVM kernels) against the same layer on the unfold reference
(``native_impl=True``, the official's way: eager and ``torch.compile``) and against ``conv2d``
of the same kernel size and channels; forward (no grad) and forward+backward. The guidance
is the layer's own input (the hot-swap setting: C channels, the costliest kernel)."""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn as nn

from ...reference import pac as ref
from .harness import layer_cases, layer_passes, output_and_input_grads
from ...functional import pacconv2d, packernel2d
from ...nn import PacConv2d

NAME = "PAC"
TITLE = "PAC (pixel-adaptive convolution: kernel from a guidance, then the convolution)"
FLOOR = "conv2d"  # the vendor op the ratios are taken to
# The joint-upsampling nets' 5x5 at 32 channels, a ResNet stage at 3x3 and 5x5, a deeper one.
CPU_SHAPES = [(2, 32, 128, 128, 5), (2, 64, 56, 56, 3), (2, 64, 56, 56, 5), (2, 128, 28, 28, 3)]
GPU_SHAPES = [(16, 32, 128, 128, 5), (16, 64, 56, 56, 3), (16, 64, 56, 56, 5), (16, 128, 28, 28, 3)]




def _layer(f, x, w, b, k, s, p, d, kernel_fn, conv_fn):
    K, _ = kernel_fn(f, None, k, s, p, 0, d)
    return conv_fn(x, K, w, b, s, p, d)


def check(device: torch.device, verbose: bool = True) -> float:
    """Largest error of a PAC layer's computation (kernel from the guidance, then the
    convolution; output and the gradients of input, guidance, weight and bias) against the
    float64 reference over a few shapes; raises AssertionError when one is off."""
    worst = 0.0
    # (N, C, O, Cg, H, W, k, stride, padding, dilation)
    for N, C, O, Cg, H, W, k, s, p, d in [(2, 8, 6, 3, 13, 17, 5, 1, 2, 1), (1, 6, 4, 2, 12, 9, 3, 2, 1, 1),
                                          (1, 4, 4, 4, 11, 11, 3, 1, 2, 2)]:
        ins = [torch.randn(*shape, dtype=torch.float64, device=device, requires_grad=True)
               for shape in ((N, Cg, H, W), (N, C, H, W), (O, C, k, k), (O,))]
        outs = [output_and_input_grads(lambda *t: _layer(*t, k, s, p, d, kfn, cfn), ins, ())
                for kfn, cfn in ((packernel2d, pacconv2d), (ref.packernel2d_reference, ref.pacconv2d_reference))]
        err = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(*outs))
        assert err < 1e-12, f"PAC off by {err} at {(N, C, O, Cg, H, W, k, s, p, d)}"
        worst = max(worst, err)
        if verbose:
            print(f"  check N={N} C={C}->{O} guidance={Cg} {H}x{W} k={k} stride={s} padding={p} dilation={d}: "
                  f"max relative error {err:.1e} (forward + 4 gradients, float64)")
    return worst


def bench_shape(N, C, H, W, k, device, dtype=torch.float32, compile_ref=True, repeats=7) -> List[Dict]:
    """Rows of {shape, pass, variant, ms, peak_mib} for C -> C channels, stride 1, 'same' padding."""
    layer = PacConv2d(C, C, k, padding=k // 2).to(device, dtype)
    native = PacConv2d(C, C, k, padding=k // 2, native_impl=True).to(device, dtype)
    native.load_state_dict(layer.state_dict())
    conv = nn.Conv2d(C, C, k, padding=k // 2).to(device, dtype)
    x = torch.randn(N, C, H, W, device=device, dtype=dtype) * 0.3  # a kernel that is not all ~0
    variants = {"dynfilter_tvm": lambda t: layer(t, t), "unfold eager": lambda t: native(t, t)}
    if compile_ref:
        variants["unfold torch.compile"] = torch.compile(lambda t: native(t, t), dynamic=False)
    variants[FLOOR] = conv
    return layer_passes(f"{N}x{C}x{H}x{W} k{k}", variants, (layer, native, conv), x, device, repeats)


def standard_layer(channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                   out_channels: Optional[int] = None) -> nn.Module:
    """The family's layer for ``--op pac`` workloads: ``PacConv2d`` guided by its own input."""
    pad = dilation * (kernel_size - 1) // 2
    return _SelfGuided(PacConv2d(channels, out_channels or channels, kernel_size, stride=stride, padding=pad,
                                 dilation=dilation))


class _SelfGuided(nn.Module):
    """A PAC layer guided by its own input, as in the benchmarks."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return self.conv(x, x)


def generic_cases(shapes, device: torch.device):
    """``PacConv2d`` guided by its input: the passes ``harness.generic_vs_static`` times."""
    return layer_cases(lambda C, k: PacConv2d(C, C, k, padding=k // 2), shapes, device, guided=True)
