"""Functional interface: the dynamic-filter ops on torch tensors (autograd, compile, autocast)."""
from __future__ import annotations

import torch
from torch import Tensor

from ._acda_op import atom_conv_op, check as _check_acda
from ._ddf_op import check as _check_ddf, ddf_op

__all__ = ["ddf", "acda_atom_conv2d"]


def _autocast(device_type: str, *tensors: Tensor):
    """Under torch.autocast, run in the autocast dtype (the custom op is opaque to autocast)."""
    if device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        return tuple(t.to(dtype) if isinstance(t, Tensor) and t.is_floating_point() else t for t in tensors)
    return tensors


def ddf(features: Tensor, channel_filter: Tensor, spatial_filter: Tensor, kernel_size: int = 3,
        dilation: int = 1, stride: int = 1, kernel_combine: str = "mul") -> Tensor:
    """Decoupled dynamic filter (Zhou et al., CVPR 2021), compiled with TVM.

    Each output pixel is a k x k window of its channel, weighted by a per-pixel spatial filter
    combined with a per-channel filter::

        out[b,c,y,x] = sum_{u,v} features[b,c, y*s+(u-r)*d, x*s+(v-r)*d]
                                 * (spatial[b, head(c)*k*k + u*k+v, y, x] (*|+) channel[b,c,u,v])

    zero padding, r = (k-1)/2, the output size of ``nn.Conv2d(k, stride=s, padding=r*d,
    dilation=d)``.

    Args:
        features: (B, C, H, W).
        channel_filter: (B, C, k, k).
        spatial_filter: (B, G*k*k, ceil(H/s), ceil(W/s)); G heads (G divides C), channel c
            uses head ``c // (C // G)``. G = 1 is the paper's DDF.
        kernel_size: odd k in [1, 31].
        dilation, stride: positive integers.
        kernel_combine: 'mul' (the paper) or 'add'.

    Returns:
        (B, C, ceil(H/s), ceil(W/s)) in the inputs' dtype (float32/float16/bfloat16/float64;
        half types accumulate in float32). Differentiable in all three tensors. See
        ``torch_bridge.reference.ddf_reference`` for the plain-PyTorch definition.
    """
    if isinstance(features, Tensor):  # autocast first: it makes mixed-dtype filters agree
        features, channel_filter, spatial_filter = _autocast(
            features.device.type, features, channel_filter, spatial_filter)
    _check_ddf(features, channel_filter, spatial_filter, kernel_size, dilation, stride, kernel_combine)
    return ddf_op(features, channel_filter, spatial_filter, kernel_size, dilation, stride, kernel_combine)


def acda_atom_conv2d(input: Tensor, coefficients: Tensor, bases: Tensor, stride: int = 1,
                     padding: int = 0, dilation: int = 1) -> Tensor:
    """ACDA's atom convolution (Wang et al., ICCV 2021), compiled with TVM.

    Each pixel has M filter atoms, combinations of T fixed bases with per-pixel
    coefficients; every input channel is convolved with each of its pixel's atoms::

        D[n,m,l,y,x]   = sum_t coefficients[n, m*T + t, y, x] * bases[t, l]
        out[n, c*M+m, y, x] = sum_l D[n,m,l,y,x] * input[n, c, y*s + l_y*d - p, x*s + l_x*d - p]

    with zero padding ``p`` (l = (l_y, l_x) runs over the k x k taps). The atoms are rebuilt
    inside the kernel and never stored, nor is the unfolded input. ACDA's layer
    (``torch_bridge.nn.ACDAConv2d``) follows this with a 1x1 convolution over the C*M channels.

    Args:
        input: (N, C, H, W).
        coefficients: (N, M*T, Ho, Wo), channel m*T + t; Ho, Wo the output size of
            ``nn.Conv2d(k, stride, padding, dilation)`` on H, W.
        bases: (T, k, k), any k <= 15.
        stride, dilation: positive integers; padding: non-negative integer.

    Returns:
        (N, C*M, Ho, Wo) in the inputs' dtype (float32/float16/bfloat16/float64; half types
        accumulate in float32). Differentiable in all three tensors. See
        ``torch_bridge.reference.acda_atom_conv2d_reference`` for the plain-PyTorch definition.
    """
    if isinstance(input, Tensor):
        input, coefficients, bases = _autocast(input.device.type, input, coefficients, bases)
    _check_acda(input, coefficients, bases, stride, padding, dilation)
    return atom_conv_op(input, coefficients, bases, stride, padding, dilation)
