"""Functional interface: the dynamic-filter ops on torch tensors (autograd, compile, autocast)."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from .ops._eager import call
from .ops.acda import atom_conv_op, check as _check_acda
from .ops.ddf import check as _check_ddf, ddf_op
from . import _pac_compiled as _pac
from .reference import acda_atom_conv2d_reference, ddf_reference
from .reference.pac import (IntPair, pacconv2d_reference, pacconv_transpose2d_reference, packernel2d_reference,
                            pacpool2d_reference, packernel2d_with)

__all__ = ["ddf", "acda_atom_conv2d", "packernel2d", "pacconv2d", "pacconv_transpose2d", "pacpool2d"]


def _autocast(device_type: str, *tensors: Tensor):
    """Under torch.autocast, run in the autocast dtype (the custom op is opaque to autocast)."""
    if device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        return tuple(t.to(dtype) if isinstance(t, Tensor) and t.is_floating_point() else t for t in tensors)
    return tensors


def ddf(features: Tensor, channel_filter: Tensor, spatial_filter: Tensor, kernel_size: int = 3,
        dilation: int = 1, stride: int = 1, kernel_combine: str = "mul", native_impl: bool = False) -> Tensor:
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
        native_impl: the plain-PyTorch reference (unfold; same checks, no TVM).

    Returns:
        (B, C, ceil(H/s), ceil(W/s)) in the inputs' dtype (float32/float16/bfloat16/float64;
        half types accumulate in float32). Differentiable in all three tensors. See
        ``torch_bridge.reference.ddf_reference`` for the plain-PyTorch definition.
    """
    if isinstance(features, Tensor):  # autocast first: it makes mixed-dtype filters agree
        features, channel_filter, spatial_filter = _autocast(
            features.device.type, features, channel_filter, spatial_filter)
    _check_ddf(features, channel_filter, spatial_filter, kernel_size, dilation, stride, kernel_combine,
               compiled=not native_impl)
    args = (features, channel_filter, spatial_filter, kernel_size, dilation, stride, kernel_combine)
    return ddf_reference(*args) if native_impl else call(ddf_op, *args)


def acda_atom_conv2d(input: Tensor, coefficients: Tensor, bases: Tensor, stride: int = 1,
                     padding: int = 0, dilation: int = 1, native_impl: bool = False) -> Tensor:
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
        native_impl: the plain-PyTorch reference (unfold; same checks, no TVM).

    Returns:
        (N, C*M, Ho, Wo) in the inputs' dtype (float32/float16/bfloat16/float64; half types
        accumulate in float32). Differentiable in all three tensors. See
        ``torch_bridge.reference.acda_atom_conv2d_reference`` for the plain-PyTorch definition.
    """
    if isinstance(input, Tensor):
        input, coefficients, bases = _autocast(input.device.type, input, coefficients, bases)
    _check_acda(input, coefficients, bases, stride, padding, dilation, compiled=not native_impl)
    args = (input, coefficients, bases, stride, padding, dilation)
    return acda_atom_conv2d_reference(*args) if native_impl else call(atom_conv_op, *args)


def packernel2d(input: Tensor, mask: Optional[Tensor] = None, kernel_size: IntPair = 0, stride: IntPair = 1,
                padding: IntPair = 0, output_padding: IntPair = 0, dilation: IntPair = 1,
                kernel_type: str = "gaussian", smooth_kernel_type: str = "none",
                smooth_kernel: Optional[Tensor] = None, inv_alpha: Union[Tensor, float, None] = None,
                inv_lambda: Union[Tensor, float, None] = None, channel_wise: bool = False,
                normalize_kernel: bool = False, transposed: bool = False,
                native_impl: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """The adapting kernel of pixel-adaptive convolution (PAC; Su et al., CVPR 2019).

    For output pixel i and tap j of its k x k window (stride s, zero padding p, dilation d),
    from the guidance f (f_i its value at the window's centre tap, or smoothed there)::

        d2 = sum_c (f_j - f_i)^2      ('_asym': relu(f_j - f_i)^2; channel_wise: no sum)
        K[b, :, u, v, y, x] = exp(-d2 / 2)                   ('gaussian')
                            = alpha + (d2 + 1e-4)^(lambda/2)  ('inv_{alpha}_{lambda}[_asym][_fixed]')

    then masked and normalized (see ``torch_bridge.reference.pac`` for the details and the
    official code's bugs fixed here).

    Args:
        input: guidance (B, C, H, W); transposed: at the output resolution of the transposed
            convolution.
        mask: None or (B or 1, 1 or C, H, W) (transposed: the input resolution), any dtype.
        kernel_size: odd k (int or pair); stride, dilation positive; padding,
            output_padding (transposed only) non-negative.
        smooth_kernel_type: 'none' | 'gaussian' | 'average_{sz}' | 'full_{sz}'; smooth_kernel
            (1, 1, sz, sz) when not 'none'.
        inv_alpha, inv_lambda: scalars (or (C,) with channel_wise) for 'inv_*' kernels; read
            from the kernel_type name when None.
        normalize_kernel: divide K by its window sum.
        native_impl: the plain-PyTorch reference (the official's meaning).

    Returns:
        ``(K, output_mask)``: K (B, 1 or C, kh, kw, Ho, Wo), Ho x Wo the output size of
        ``nn.Conv2d`` (transposed: the guidance's size); output_mask (B, 1 or C, 1, 1, Ho, Wo),
        1 where the window had a valid tap, in the guidance's dtype, only with a mask (else
        None). Differentiable in input, smooth_kernel, inv_alpha, inv_lambda and mask.
    """
    if isinstance(input, Tensor):
        input, smooth_kernel, inv_alpha, inv_lambda = _autocast(input.device.type, input, smooth_kernel, inv_alpha,
                                                                inv_lambda)
    args = (input, mask, kernel_size, stride, padding, output_padding, dilation, kernel_type, smooth_kernel_type,
            smooth_kernel, inv_alpha, inv_lambda, channel_wise, normalize_kernel, transposed)
    if native_impl or not isinstance(input, Tensor) \
            or _pac.compiled_geometry(kernel_size, stride, padding, dilation) is None:
        return packernel2d_reference(*args)
    return packernel2d_with(_pac.kernel_values, *args)


def pacconv2d(input: Tensor, kernel: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride: IntPair = 1,
              padding: IntPair = 0, dilation: IntPair = 1, shared_filters: bool = False,
              native_impl: bool = False) -> Tensor:
    """Pixel-adaptive convolution: a convolution whose taps are scaled per output pixel::

        out[b,o,y,x] = bias[o] + sum_{c,u,v} weight[o,c,u,v] * kernel[b,0,u,v,y,x]
                                            * input[b, c, y*s + u*d - p, x*s + v*d - p]

    with zero padding; ``shared_filters``: one (1, 1, kh, kw) filter for every channel,
    ``out[b,c] = sum_{u,v} weight[0,0,u,v] * kernel * input[b,c,...]``.

    Args:
        input: (B, C_in, H, W).
        kernel: (B, 1, kh, kw, Ho, Wo), e.g. from ``packernel2d``.
        weight: (C_out, C_in, kh, kw), or (1, 1, kh, kw) with shared_filters (C_out = C_in).
        bias: None or (C_out,).
        stride, dilation: positive (int or pair); padding: non-negative.
        native_impl: the plain-PyTorch reference.

    Returns:
        (B, C_out, Ho, Wo), Ho x Wo the output size of ``nn.Conv2d``. Differentiable in input,
        kernel, weight and bias. See ``torch_bridge.reference.pac.pacconv2d_reference``.
    """
    geometry = _compiled_geometry(native_impl, input, weight, stride, padding, dilation)
    if geometry is None:
        return pacconv2d_reference(input, kernel, weight, bias, stride, padding, dilation, shared_filters)
    s, p, d = geometry
    input, kernel, weight, bias = _autocast(input.device.type, input, kernel, weight, bias)
    return _pac.pacconv(input, kernel, weight, bias, s, p, 0, d, shared_filters, transposed=False)


def pacconv_transpose2d(input: Tensor, kernel: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                        stride: IntPair = 1, padding: IntPair = 0, output_padding: IntPair = 0,
                        dilation: IntPair = 1, shared_filters: bool = False, native_impl: bool = False) -> Tensor:
    """Transposed pixel-adaptive convolution: the input spread ``stride`` apart (zeros between),
    zero padded by (k-1)*d - p on each side plus output_padding at the end, then a stride-1
    ``pacconv2d`` with the unflipped weight::

        out[b,o,y,x] = bias[o] + sum_{c,u,v} weight[c,o,u,v] * kernel[b,0,u,v,y,x] * z[b,c,y+u*d,x+v*d]

    (with kernel = 1 this is ``F.conv_transpose2d`` with the flipped weight).

    Args:
        input: (B, C_in, H, W).
        kernel: (B, 1, kh, kw, Ho, Wo), e.g. from ``packernel2d(..., transposed=True)``.
        weight: (C_in, C_out, kh, kw), or (1, 1, kh, kw) with shared_filters (C_out = C_in,
            each channel filtered separately).
        bias: None or (C_out,).
        stride, dilation: positive (int or pair); padding, output_padding: non-negative.
        native_impl: the plain-PyTorch reference.

    Returns:
        (B, C_out, Ho, Wo), Ho = (H-1)*s - 2p + d*(kh-1) + 1 + output_padding. Differentiable in
        input, kernel, weight and bias. See
        ``torch_bridge.reference.pac.pacconv_transpose2d_reference``.
    """
    geometry = _compiled_geometry(native_impl, input, weight, stride, padding, dilation, output_padding)
    if geometry is None:
        return pacconv_transpose2d_reference(input, kernel, weight, bias, stride, padding, output_padding, dilation,
                                             shared_filters)
    s, p, d, op = geometry
    input, kernel, weight, bias = _autocast(input.device.type, input, kernel, weight, bias)
    return _pac.pacconv(input, kernel, weight, bias, s, p, op, d, shared_filters, transposed=True)


def pacpool2d(input: Tensor, kernel: Tensor, kernel_size: IntPair, stride: IntPair = 1, padding: IntPair = 0,
              dilation: IntPair = 1, native_impl: bool = False) -> Tensor:
    """Pixel-adaptive pooling: each channel's window weighted by the kernel and summed::

        out[b,c,y,x] = sum_{u,v} kernel[b, 0 or c, u, v, y, x] * input[b, c, y*s + u*d - p, x*s + v*d - p]

    Args:
        input: (B, C, H, W).
        kernel: (B, 1 or C, kh, kw, Ho, Wo) (C: from ``packernel2d(..., channel_wise=True)``).
        kernel_size: (kh, kw) (int or pair); stride, dilation positive; padding non-negative.
        native_impl: the plain-PyTorch reference.

    Returns:
        (B, C, Ho, Wo), Ho x Wo the output size of ``nn.Conv2d``. Differentiable in input and
        kernel. See ``torch_bridge.reference.pac.pacpool2d_reference``.
    """
    geometry = None if native_impl else _pac.compiled_geometry(kernel_size, stride, padding, dilation)
    if geometry is None or not isinstance(input, Tensor):
        return pacpool2d_reference(input, kernel, kernel_size, stride, padding, dilation)
    k, s, p, d = geometry
    input, kernel = _autocast(input.device.type, input, kernel)
    return call(_pac.pool_op, input, kernel, k, s, p, 0, d, False)


def _compiled_geometry(native_impl: bool, input, weight, *pairs):
    """(s, p, d[, op]) as ints for the compiled kernels, or None for the reference: asked
    for (native_impl), a non-square geometry, or a malformed weight (the reference names the
    problem)."""
    if native_impl or not isinstance(input, Tensor) or not isinstance(weight, Tensor) or weight.dim() != 4:
        return None
    geometry = _pac.compiled_geometry(tuple(weight.shape[-2:]), *pairs)
    return None if geometry is None else geometry[1:]
