"""Pixel-adaptive convolution (PAC; Su et al., CVPR 2019), plain-PyTorch definitions.

The semantics of NVlabs/pacnet's ``pac.py`` on its ``native_impl=True`` path (unfold, then
elementwise products and sums), written anew with autograd by torch. The TVM kernels behind
``torch_bridge.functional.pac*`` are tested against these functions, and the drop-in layers of
``torch_bridge.nn.pac`` call them when built with ``native_impl=True``. They unfold the input
k*k times: meant for checking, not for speed. Any float dtype works (tests use float64).

Notation: guidance ``f`` (B, C, H, W); a k x k window with stride s, zero padding p and
dilation d; ``K`` the adapting kernel (B, 1 or C, kh, kw, Ho, Wo), Ho x Wo the output size of
``nn.Conv2d`` with the same geometry.

Kernel (``packernel2d_reference``), for output pixel i and tap j of its window, with f_j the
zero-padded guidance and f_i the guidance at the window's centre tap (zero when that tap lies
in the padding) or, with smoothing, the smoothed guidance at the centre::

    d2 = sum_c (f_j - f_i)^2       ('_asym': relu(f_j - f_i)^2; channel_wise: no sum over c)
    'gaussian':                     K = exp(-d2 / 2)
    'inv_{a}_{l}[_asym][_fixed]':   K = alpha + (d2 + 1e-4)^(lambda / 2)

alpha and lambda are tensors (scalars, or per channel with ``channel_wise``); when omitted they
are read from the kernel_type name. Smoothing convolves each guidance channel with
``smooth_kernel`` (1, 1, sk, sk), zero padded, with the window's stride, centred on the
window's centre tap. With a ``mask`` (B, 1, H, W) (or C channels) the kernel is multiplied by
the unfolded mask, then divided by ``norm = sum_window(mask) / sum_window(1)`` (the fraction of
valid taps), or, with ``normalize_kernel``, by ``norm = sum_window(K * m)`` (m the mask, or 1
inside the image and 0 on padded taps when no mask is given); a window whose norm is 0 is
divided by 1 instead and is 0 in ``output_mask`` = (norm != 0), shape (B, 1 or C, 1, 1, Ho, Wo),
returned only with a mask. In transposed mode the guidance (and K) is at the output resolution
of the transposed convolution (stride 1, padding (k-1)*d//2 for the kernel) and the mask at
its input resolution, unfolded on the zero-inserted grid.

Convolutions: ``out[b,o,i] = sum_{c,j} W[o,c,j] K[b,0,j,i] x[b,c,j(i)] + bias[o]``; the
transposed one unfolds the zero-inserted, padded input and uses the weight unflipped
((C_in, C_out, k, k), like ``F.conv_transpose2d`` of the flipped weight when K = 1);
``shared_filters``: one (1, 1, k, k) weight applied to every channel separately. Pooling:
``out[b,c,i] = sum_j K[b,0|c,j,i] x[b,c,j(i)]``.

Where we differ from the official code (plain bugs, fixed):
1. ``output_mask = 1 - empty_mask`` fails on bool tensors in current PyTorch: output_mask is
   ``norm != 0`` in the guidance's dtype.
2. ``torch.tensor(mask, dtype=...)`` on a tensor copies and detaches it (with a warning): the
   mask is cast with ``.to()``, any dtype (bool, uint8, float) accepted.
3. The transposed ``shared_filters`` einsum of its custom Function (``'ijklmn,jokl->iomn'``
   with a (1, 1, k, k) weight) sums over the input channels; its ``native_impl`` path, and we,
   filter each channel separately (C in, C out).
4. Smoothing ignores the dilation: its padding ``p - (k - sk)/2`` misplaces the centre and
   gives a map of the wrong size (a crash) for d > 1. We centre it on the centre tap,
   padding ``p - (k-1)*d/2 + (sk-1)/2``, which is the official value for d = 1.
5. A window with no valid tap (padding > (k-1)*d/2, or transposed windows that meet no input
   pixel, e.g. d = s = 2) divides 0 by 0 (NaN) with a mask: its norm is 0 instead, so it is
   empty in output_mask and its kernel is 0.
6. ``input.view(-1, 1, H, W)`` in smoothing fails on non-contiguous guidance: reshape.
7. The custom transposed backward slices ``[pad:-pad_end]``, empty when the end pad is 0:
   gradients here come from autograd.
The official in-place ``relu`` of ``_asym`` and in-place ``exp_``/``mul_`` are autograd-safe;
we simply use out-of-place ops.
"""
from __future__ import annotations

from numbers import Integral, Number
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_tensors

__all__ = [
    "packernel2d_reference", "pacconv2d_reference", "pacconv_transpose2d_reference",
    "pacpool2d_reference", "packernel2d_with", "nd2col", "parse_kernel_type", "parse_smooth_kernel_type",
    "conv_output_size", "conv_transpose_output_size",
    "check_weight", "smoothed_centre", "inv_param", "EPS",
]

IntPair = Union[int, Sequence[int]]
Pair = Tuple[int, int]
EPS = 1e-4  # the official inverse kernel's offset, keeps d2^(lambda/2) differentiable at 0
_DTYPE_HINT = "convert them to one dtype (e.g. module.to(x.dtype))"


# ------------------------------------------------------------------------------------------
# Arguments

def pair_arg(name: str, value: IntPair, minimum: int) -> Pair:
    """An int or a pair of ints, each >= minimum, as a pair."""
    vals = (value, value) if isinstance(value, Number) else tuple(value) if isinstance(value, Sequence) else ()
    if len(vals) != 2 or any(not isinstance(v, Integral) or isinstance(v, bool) or v < minimum for v in vals):
        raise ValueError(f"{name} must be an integer >= {minimum} or a pair of them, got {value!r}")
    return int(vals[0]), int(vals[1])


def _odd_pair(name: str, value: IntPair) -> Pair:
    k = pair_arg(name, value, 1)
    if k[0] % 2 == 0 or k[1] % 2 == 0:
        raise ValueError(f"{name} must be odd (the kernel is centred on its middle tap), got {value!r}")
    return k


def conv_output_size(size: Sequence[int], k: Pair, s: Pair, p: Pair, d: Pair) -> Pair:
    return tuple((n + 2 * pp - dd * (kk - 1) - 1) // ss + 1 for n, kk, ss, pp, dd in zip(size, k, s, p, d))


def conv_transpose_output_size(size: Sequence[int], k: Pair, s: Pair, p: Pair, op: Pair, d: Pair) -> Pair:
    return tuple((n - 1) * ss - 2 * pp + dd * (kk - 1) + 1 + o
                 for n, kk, ss, pp, o, dd in zip(size, k, s, p, op, d))


def parse_kernel_type(kernel_type: str) -> Tuple[Optional[float], Optional[float], bool, bool]:
    """'gaussian' -> (None, None, False, False); 'inv_{alpha}_{lambda}[_asym][_fixed]' ->
    (alpha, lambda, asym, fixed)."""
    if kernel_type == "gaussian":
        return None, None, False, False
    parts = kernel_type.split("_") if isinstance(kernel_type, str) else []
    try:
        if parts[0] != "inv" or len(parts) < 3:
            raise ValueError
        alpha, lam = float(parts[1]), float(parts[2])
        flags = parts[3:]
        if len(set(flags)) != len(flags) or not set(flags) <= {"asym", "fixed"}:
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"kernel_type must be 'gaussian' or 'inv_{{alpha}}_{{lambda}}[_asym][_fixed]' "
                         f"(e.g. 'inv_0.5_1_asym'), got {kernel_type!r}") from None
    return alpha, lam, "asym" in flags, "fixed" in flags


def parse_smooth_kernel_type(smooth_kernel_type: str) -> Optional[int]:
    """The smoothing width: None for 'none', 3 for 'gaussian', N for 'average_N' / 'full_N'."""
    if smooth_kernel_type == "none":
        return None
    if smooth_kernel_type == "gaussian":
        return 3
    kind, _, size = smooth_kernel_type.rpartition("_") if isinstance(smooth_kernel_type, str) else ("", "", "")
    if kind in ("average", "full") and size.isdigit() and int(size) % 2 == 1:
        return int(size)
    raise ValueError("smooth_kernel_type must be 'none', 'gaussian', 'average_{sz}' or 'full_{sz}' with "
                     f"an odd sz, got {smooth_kernel_type!r}")


def _check_mask(mask: Tensor, input: Tensor, size: Sequence[int]) -> None:
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
    B, C = input.shape[:2]
    if mask.dim() != 4 or mask.shape[0] not in (1, B) or mask.shape[1] not in (1, C) \
            or tuple(mask.shape[2:]) != tuple(size):
        raise ValueError(f"mask must have shape ({B} or 1, 1 or {C}, {size[0]}, {size[1]}), "
                         f"got {tuple(mask.shape)}")
    if mask.device != input.device:
        raise ValueError(f"mask is on {mask.device} but input is on {input.device}")


def inv_param(name: str, value: Union[Tensor, float, None], default: float, input: Tensor,
               channel_wise: bool) -> Tensor:
    """alpha or lambda as a tensor broadcastable to K (B, ch, kh, kw, Ho, Wo), input's dtype."""
    if not isinstance(value, Tensor):
        value = torch.tensor(default if value is None else float(value), device=input.device)
    if value.device != input.device:
        raise ValueError(f"{name} is on {value.device} but input is on {input.device}")
    C = input.shape[1]
    if value.numel() == 1:
        return value.to(input.dtype).reshape(1, 1, 1, 1, 1, 1)
    if channel_wise and value.numel() == C:
        return value.to(input.dtype).reshape(1, C, 1, 1, 1, 1)
    per_channel = f" or {C} (one per channel)" if channel_wise else " (per-channel values need channel_wise)"
    raise ValueError(f"{name} must have 1 element{per_channel}, got shape {tuple(value.shape)}")


# ------------------------------------------------------------------------------------------
# Unfolding

def _zero_insert(x: Tensor, s: Pair) -> Tensor:
    """(B, C, H, W) -> (B, C, (H-1)*s+1, (W-1)*s+1), the input spread s apart, zeros between."""
    B, C, H, W = x.shape
    z = x.new_zeros(B, C, (H - 1) * s[0] + 1, (W - 1) * s[1] + 1)
    z[:, :, ::s[0], ::s[1]] = x
    return z


def nd2col(input: Tensor, kernel_size: IntPair, stride: IntPair = 1, padding: IntPair = 0,
           output_padding: IntPair = 0, dilation: IntPair = 1, transposed: bool = False) -> Tensor:
    """Windows of a (B, C, H, W) tensor: (B, C, kh, kw, Ho, Wo), zero padded.

    Transposed: the windows a transposed convolution sees, i.e. those of the input spread
    ``stride`` apart and padded by (k-1)*d - p (plus output_padding at the end), stride 1.
    """
    k, s = pair_arg("kernel_size", kernel_size, 1), pair_arg("stride", stride, 1)
    p, d = pair_arg("padding", padding, 0), pair_arg("dilation", dilation, 1)
    if transposed:
        op = pair_arg("output_padding", output_padding, 0)
        pad = [(kk - 1) * dd - pp for kk, dd, pp in zip(k, d, p)]  # negative: crop
        input = F.pad(_zero_insert(input, s), (pad[1], pad[1] + op[1], pad[0], pad[0] + op[0]))
        s, p = (1, 1), (0, 0)
    B, C = input.shape[:2]
    out = conv_output_size(input.shape[2:], k, s, p, d)
    if min(out) < 1:
        raise ValueError(f"the window geometry (kernel_size={k}, stride={s}, padding={p}, dilation={d}) "
                         f"leaves no output pixel for input size {tuple(input.shape[2:])}")
    cols = F.unfold(input, k, dilation=d, padding=p, stride=s)
    return cols.view(B, C, k[0], k[1], out[0], out[1])


# ------------------------------------------------------------------------------------------
# The adapting kernel

def smoothed_centre(input: Tensor, smooth_kernel: Tensor, k: Pair, s: Pair, p: Pair, d: Pair,
                     out: Pair) -> Tensor:
    """Each guidance channel smoothed, sampled at the windows' centre taps: (B, C, 1, 1, Ho, Wo)."""
    B, C, H, W = input.shape
    sk = smooth_kernel.shape[-2:]
    sp = [pp - (kk - 1) * dd // 2 + (ss - 1) // 2 for pp, kk, dd, ss in zip(p, k, d, sk)]
    x = F.pad(input.reshape(B * C, 1, H, W), (sp[1], sp[1], sp[0], sp[0]))  # negative: crop
    smoothed = F.conv2d(x, smooth_kernel, stride=s)
    return smoothed.reshape(B, C, 1, 1, *out)


def _kernel_values(input: Tensor, k: Pair, s: Pair, p: Pair, d: Pair, kernel_type: str,
                   smooth_kernel: Optional[Tensor], inv_alpha, inv_lambda, channel_wise: bool) -> Tensor:
    """K before masking: (B, 1 or C, kh, kw, Ho, Wo)."""
    alpha0, lambda0, asym, _ = parse_kernel_type(kernel_type)
    cols = nd2col(input, k, s, p, dilation=d)
    out = tuple(cols.shape[-2:])
    if smooth_kernel is None:
        centre = cols[:, :, k[0] // 2:k[0] // 2 + 1, k[1] // 2:k[1] // 2 + 1]
    else:
        centre = smoothed_centre(input, smooth_kernel, k, s, p, d, out)
    diff = cols - centre
    if asym:
        diff = F.relu(diff)
    d2 = diff * diff
    if not channel_wise:
        d2 = d2.sum(dim=1, keepdim=True)
    if alpha0 is None:
        return torch.exp(-0.5 * d2)
    alpha = inv_param("inv_alpha", inv_alpha, alpha0, input, channel_wise)
    lam = inv_param("inv_lambda", inv_lambda, lambda0, input, channel_wise)
    return alpha + torch.pow(d2 + EPS, 0.5 * lam)


def _window_sum(x: Tensor) -> Tensor:
    return x.sum(dim=(2, 3), keepdim=True)


def _mask_columns(input: Tensor, mask: Optional[Tensor], k: Pair, s: Pair, p: Pair, op: Pair, d: Pair,
                  transposed: bool, normalize_kernel: bool) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """(what K is multiplied by, the fraction-of-valid-taps norm) -- either may be None."""
    if mask is None and not normalize_kernel:
        return None, None
    size = tuple(input.shape[-2:])
    if transposed:  # the input size of the transposed convolution whose output is the guidance
        size = tuple((o - oo - 1 - (kk - 1) * dd + 2 * pp) // ss + 1
                     for o, kk, ss, pp, oo, dd in zip(input.shape[-2:], k, s, p, op, d))
        if min(size) < 1 or conv_transpose_output_size(size, k, s, p, op, d) != tuple(input.shape[-2:]):
            raise ValueError(f"transposed: guidance size {tuple(input.shape[-2:])} is not the output size of "
                             f"a transposed convolution with kernel_size={k}, stride={s}, padding={p}, "
                             f"output_padding={op}, dilation={d}")
    unfold = dict(kernel_size=k, stride=s, padding=p, output_padding=op, dilation=d, transposed=transposed)
    pattern = nd2col(input.new_ones(1, 1, *size), **unfold)
    if mask is None:
        return pattern, None
    _check_mask(mask, input, size)
    cols = nd2col(mask.to(input.dtype), **unfold)
    # a window without any valid tap has a mask sum of 0 too: norm 0 (empty), not 0/0
    norm = None if normalize_kernel else _window_sum(cols) / _window_sum(pattern).clamp(min=1)
    return cols, norm


def packernel2d_reference(input: Tensor, mask: Optional[Tensor] = None, kernel_size: IntPair = 0,
                          stride: IntPair = 1, padding: IntPair = 0, output_padding: IntPair = 0,
                          dilation: IntPair = 1, kernel_type: str = "gaussian",
                          smooth_kernel_type: str = "none", smooth_kernel: Optional[Tensor] = None,
                          inv_alpha: Union[Tensor, float, None] = None,
                          inv_lambda: Union[Tensor, float, None] = None, channel_wise: bool = False,
                          normalize_kernel: bool = False,
                          transposed: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """The adapting kernel of PAC (see the module docstring for the formula).

    Shapes: input (guidance) (B, C, H, W); mask (B or 1, 1 or C, H, W) -- transposed: the
    guidance is at the output resolution, the mask at the input resolution. Returns
    ``(K, output_mask)``: K (B, 1 or C (channel_wise), kh, kw, Ho, Wo); output_mask
    (B, 1 or C, 1, 1, Ho, Wo) in the guidance's dtype when a mask is given, else None.
    """
    return packernel2d_with(_kernel_values, input, mask, kernel_size, stride, padding, output_padding, dilation,
                            kernel_type, smooth_kernel_type, smooth_kernel, inv_alpha, inv_lambda, channel_wise,
                            normalize_kernel, transposed)


def packernel2d_with(kernel_values, input: Tensor, mask: Optional[Tensor], kernel_size: IntPair, stride: IntPair,
                     padding: IntPair, output_padding: IntPair, dilation: IntPair, kernel_type: str,
                     smooth_kernel_type: str, smooth_kernel: Optional[Tensor], inv_alpha, inv_lambda,
                     channel_wise: bool, normalize_kernel: bool, transposed: bool) -> Tuple[Tensor, Optional[Tensor]]:
    """``packernel2d_reference`` with the unmasked kernel values computed by ``kernel_values``
    (same arguments as ``_kernel_values``): the compiled path swaps in its fused kernel and
    shares the masking and normalisation here."""
    k = _odd_pair("kernel_size", kernel_size)
    s, d = pair_arg("stride", stride, 1), pair_arg("dilation", dilation, 1)
    p, op = pair_arg("padding", padding, 0), pair_arg("output_padding", output_padding, 0)
    check_tensors(["input"], [input], [4], _DTYPE_HINT, batched=["input"])
    parse_kernel_type(kernel_type)
    if parse_smooth_kernel_type(smooth_kernel_type) is None:
        smooth_kernel = None
    else:
        _check_smooth_kernel(smooth_kernel, input, smooth_kernel_type)

    m, norm = _mask_columns(input, mask, k, s, p, op, d, transposed, normalize_kernel)
    if transposed:  # the kernel lives at the output resolution
        s, p = (1, 1), tuple((kk - 1) * dd // 2 for kk, dd in zip(k, d))
    K = kernel_values(input, k, s, p, d, kernel_type, smooth_kernel, inv_alpha, inv_lambda, channel_wise)
    if m is not None:
        K = K * m  # zero at masked and padded taps
    if normalize_kernel:
        norm = _window_sum(K)
    if norm is None:
        return K, None
    empty = norm == 0
    K = K / (norm + empty.to(norm.dtype))
    return K, ((~empty).to(input.dtype) if mask is not None else None)


def _check_smooth_kernel(smooth_kernel: Optional[Tensor], input: Tensor, smooth_kernel_type: str) -> None:
    if smooth_kernel is None:
        raise ValueError(f"smooth_kernel_type={smooth_kernel_type!r} needs a smooth_kernel tensor (1, 1, sk, sk)")
    check_tensors(["input", "smooth_kernel"], [input, smooth_kernel], [4, 4], _DTYPE_HINT, batched=["input"])
    if smooth_kernel.shape[:2] != (1, 1) or smooth_kernel.shape[2] % 2 == 0 or smooth_kernel.shape[3] % 2 == 0:
        raise ValueError(f"smooth_kernel must have shape (1, 1, sk_h, sk_w) with odd sizes, "
                         f"got {tuple(smooth_kernel.shape)}")


# ------------------------------------------------------------------------------------------
# Convolutions and pooling

def _check_kernel(kernel: Tensor, input: Tensor, k: Sequence[int], out: Sequence[int],
                  channels: Tuple[int, ...]) -> None:
    B = input.shape[0]
    if kernel.shape[0] != B or kernel.shape[1] not in channels or tuple(kernel.shape[2:]) != (*k, *out):
        ch = " or ".join(str(c) for c in channels)
        raise ValueError(f"kernel must have shape ({B}, {ch}, {k[0]}, {k[1]}, {out[0]}, {out[1]}) "
                         f"(batch, channels, taps, output size), got {tuple(kernel.shape)}")


def check_weight(weight: Tensor, bias: Optional[Tensor], in_channels: int, shared_filters: bool,
                  in_dim: int) -> int:
    """Validate weight/bias; returns the number of output channels."""
    if shared_filters:
        if weight.shape[:2] != (1, 1):
            raise ValueError(f"shared_filters: weight must have shape (1, 1, kh, kw), got {tuple(weight.shape)}")
        out_channels = in_channels
    else:
        if weight.shape[in_dim] != in_channels:
            layout = "(C_in, C_out, kh, kw)" if in_dim == 0 else "(C_out, C_in, kh, kw)"
            raise ValueError(f"weight {tuple(weight.shape)} must be {layout} with C_in = {in_channels} "
                             "(the input's channels)")
        out_channels = weight.shape[1 - in_dim]
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"bias must have shape ({out_channels},), got {tuple(bias.shape)}")
    return out_channels


def _check_conv_tensors(input: Tensor, kernel: Tensor, weight: Tensor, bias: Optional[Tensor]) -> None:
    names, tensors, dims = ["input", "kernel", "weight"], [input, kernel, weight], [4, 6, 4]
    if bias is not None:
        names, tensors, dims = names + ["bias"], tensors + [bias], dims + [1]
    check_tensors(names, tensors, dims, _DTYPE_HINT, batched=["input", "kernel"])


def _contract(cols: Tensor, weight: Tensor, bias: Optional[Tensor], shared_filters: bool) -> Tensor:
    """sum over taps (and input channels) of cols (B, C, kh, kw, Ho, Wo) * weight (C_out, C_in, kh, kw)."""
    if shared_filters:
        out = torch.einsum("bcijyx,ij->bcyx", cols, weight[0, 0])
    else:
        out = torch.einsum("bcijyx,ocij->boyx", cols, weight)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def pacconv2d_reference(input: Tensor, kernel: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                        stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1,
                        shared_filters: bool = False) -> Tensor:
    """PAC: a convolution whose taps are scaled per pixel by ``kernel``.

    Shapes: input (B, C_in, H, W); kernel (B, 1, kh, kw, Ho, Wo); weight (C_out, C_in, kh, kw),
    or (1, 1, kh, kw) with shared_filters (C_out = C_in); bias (C_out,); output
    (B, C_out, Ho, Wo), Ho x Wo the output size of ``nn.Conv2d``.
    """
    s, p, d = pair_arg("stride", stride, 1), pair_arg("padding", padding, 0), pair_arg("dilation", dilation, 1)
    _check_conv_tensors(input, kernel, weight, bias)
    check_weight(weight, bias, input.shape[1], shared_filters, in_dim=1)
    k = tuple(weight.shape[-2:])
    cols = nd2col(input, k, s, p, dilation=d)
    _check_kernel(kernel, input, k, cols.shape[-2:], (1,))
    return _contract(cols * kernel, weight, bias, shared_filters)


def pacconv_transpose2d_reference(input: Tensor, kernel: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                                  stride: IntPair = 1, padding: IntPair = 0, output_padding: IntPair = 0,
                                  dilation: IntPair = 1, shared_filters: bool = False) -> Tensor:
    """Transposed PAC: the input spread ``stride`` apart, padded by (k-1)*d - p (plus
    output_padding at the end), then a stride-1 PAC with the unflipped weight.

    Shapes: input (B, C_in, H, W); kernel (B, 1, kh, kw, Ho, Wo); weight (C_in, C_out, kh, kw),
    or (1, 1, kh, kw) with shared_filters (C_out = C_in, each channel filtered separately);
    bias (C_out,); output (B, C_out, Ho, Wo), Ho = (H-1)*s - 2p + d*(kh-1) + 1 + output_padding.
    """
    s, p, d = pair_arg("stride", stride, 1), pair_arg("padding", padding, 0), pair_arg("dilation", dilation, 1)
    op = pair_arg("output_padding", output_padding, 0)
    _check_conv_tensors(input, kernel, weight, bias)
    check_weight(weight, bias, input.shape[1], shared_filters, in_dim=0)
    k = tuple(weight.shape[-2:])
    cols = nd2col(input, k, s, p, op, d, transposed=True)
    _check_kernel(kernel, input, k, cols.shape[-2:], (1,))
    return _contract(cols * kernel, weight if shared_filters else weight.transpose(0, 1), bias, shared_filters)


def pacpool2d_reference(input: Tensor, kernel: Tensor, kernel_size: IntPair, stride: IntPair = 1,
                        padding: IntPair = 0, dilation: IntPair = 1) -> Tensor:
    """PAC pooling: each channel's window weighted by the kernel and summed.

    Shapes: input (B, C, H, W); kernel (B, 1 or C, kh, kw, Ho, Wo); output (B, C, Ho, Wo).
    """
    k = pair_arg("kernel_size", kernel_size, 1)
    s, p, d = pair_arg("stride", stride, 1), pair_arg("padding", padding, 0), pair_arg("dilation", dilation, 1)
    check_tensors(["input", "kernel"], [input, kernel], [4, 6], _DTYPE_HINT, batched=["input", "kernel"])
    cols = nd2col(input, k, s, p, dilation=d)
    _check_kernel(kernel, input, k, cols.shape[-2:], (1, input.shape[1]))
    return (cols * kernel).sum(dim=(2, 3))
