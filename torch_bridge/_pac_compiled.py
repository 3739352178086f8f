"""PAC's functionals on the compiled ops (``torch_bridge.ops.pac``): argument handling around the kernels.

The kernels take square geometry (one kernel size, stride, padding, dilation for both axes);
``compiled_geometry`` says whether a call has it, else the functionals use the reference.
``shared_filters`` (one k x k weight for every channel) is the adaptive pooling with the
kernel scaled by that weight.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from .ops._eager import call
from .ops.pac import conv_op, dist_op, pool_op
from .reference import pac as ref


def compiled_geometry(*pairs) -> Optional[tuple]:
    """Each argument (an int or a pair) as one int, or None if some pair differs."""
    out = []
    for v in pairs:
        try:
            a, b = (v, v) if isinstance(v, int) else v
        except (TypeError, ValueError):
            return None  # malformed: the reference names the problem
        if a != b:
            return None
        out.append(a)
    return tuple(out)


def _scaled(kernel: Tensor, weight: Tensor) -> Tensor:
    """kernel * the shared (1, 1, k, k) weight, per tap."""
    k = weight.shape[-1]
    return kernel * weight.reshape(1, 1, k, k, 1, 1)


def _plus_bias(out: Tensor, bias: Optional[Tensor]) -> Tensor:
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def pacconv(input: Tensor, kernel: Tensor, weight: Tensor, bias: Optional[Tensor], stride: int, padding: int,
            output_padding: int, dilation: int, shared_filters: bool, transposed: bool) -> Tensor:
    if shared_filters:
        ref.check_weight(weight, bias, input.shape[1], True, in_dim=0)
        out = call(pool_op, input, _scaled(kernel, weight), weight.shape[-1], stride, padding, output_padding,
                      dilation, transposed)
        return _plus_bias(out, bias)
    return call(conv_op, input, kernel, weight, bias, stride, padding, output_padding, dilation, transposed)


def centre(input: Tensor, k: int, s: int, p: int, d: int, out: Sequence[int]) -> Tensor:
    """The zero-padded guidance at each window's centre tap: (B, C, Ho, Wo)."""
    r = (k - 1) // 2 * d - p  # centre offset in the unpadded input
    if s == 1 and r == 0 and tuple(input.shape[-2:]) == tuple(out):
        return input
    H, W = input.shape[-2:]
    lo = max(0, -r)
    hi_y = max(0, r + (out[0] - 1) * s + 1 - H)
    hi_x = max(0, r + (out[1] - 1) * s + 1 - W)
    padded = torch.nn.functional.pad(input, (lo, hi_x, lo, hi_y))
    y0 = r + lo
    return padded[:, :, y0:y0 + (out[0] - 1) * s + 1:s, y0:y0 + (out[1] - 1) * s + 1:s]


def kernel_values(input: Tensor, k, s, p, d, kernel_type: str, smooth_kernel: Optional[Tensor], inv_alpha,
                  inv_lambda, channel_wise: bool) -> Tensor:
    """K before masking, (B, 1 or C, k, k, Ho, Wo), as ``reference.pac._kernel_values`` computes
    it, with the k*k-times unfolded guidance never stored: the squared distances (or the
    Gaussian of them) come from one kernel."""
    (k, _), (s, _), (p, _), (d, _) = k, s, p, d
    alpha0, lambda0, asym, _ = ref.parse_kernel_type(kernel_type)
    H, W = input.shape[-2:]
    out = ref.conv_output_size((H, W), (k, k), (s, s), (p, p), (d, d))
    if smooth_kernel is None:
        f0 = centre(input, k, s, p, d, out)
    else:
        f0 = ref.smoothed_centre(input, smooth_kernel, (k, k), (s, s), (p, p), (d, d), out).flatten(1, 3)
    gauss = alpha0 is None
    dist = call(dist_op, input, f0, k, s, p, d, channel_wise, asym, gauss)
    if gauss:
        return dist
    alpha = ref.inv_param("inv_alpha", inv_alpha, alpha0, input, channel_wise)
    lam = ref.inv_param("inv_lambda", inv_lambda, lambda0, input, channel_wise)
    return alpha + torch.pow(dist + ref.EPS, 0.5 * lam)
