"""The DDF custom op: forward and the three gradient kernels, with autograd and fake impls."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from dynfilter_tvm.ops.ddf import COMBINES, MAX_KERNEL_SIZE, out_size

from .._checks import NATIVE_HINT, check_positive_int, check_tensors
from ..runtime import run
from ._adjoint import register_adjoint_autograd
from ._eager import call, custom_op, register_autograd

_NAMES = ("features", "channel_filter", "spatial_filter")


def check_kernel_size(k, smallest: int = 1, compiled: bool = True) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < smallest or k % 2 == 0:
        raise ValueError(f"kernel_size must be an odd integer >= {smallest}, got {k!r}")
    if compiled and k > MAX_KERNEL_SIZE:
        raise ValueError(f"kernel_size must be at most {MAX_KERNEL_SIZE} for the compiled kernels, got {k}; "
                         f"{NATIVE_HINT}")


def check_combine(kernel_combine) -> None:
    if kernel_combine not in COMBINES:
        raise ValueError(f"kernel_combine must be one of {COMBINES}, got {kernel_combine!r}")


def check(features: Tensor, channel_filter: Tensor, spatial_filter: Tensor, kernel_size: int,
          dilation: int, stride: int, kernel_combine: str, compiled: bool = True) -> dict:
    """Validate the arguments (clear errors that name the argument) and return the kernel
    parameters B, C, H, W, G, k, s, d, combine (``compiled``: within the kernels' limits)."""
    k = kernel_size
    check_kernel_size(k, compiled=compiled)
    check_positive_int("stride", stride)
    check_positive_int("dilation", dilation)
    check_combine(kernel_combine)
    check_tensors(_NAMES, (features, channel_filter, spatial_filter), (4, 4, 4),
                  "cast them to one dtype (torch.autocast does this for ddf)", batched=_NAMES)
    B, C, H, W = features.shape
    Ho, Wo = out_size(H, stride), out_size(W, stride)
    if tuple(channel_filter.shape) != (B, C, k, k):
        raise ValueError(f"channel_filter must have shape {(B, C, k, k)} (batch, channels, "
                         f"kernel_size, kernel_size), got {tuple(channel_filter.shape)}")
    sb, sc, sh, sw = spatial_filter.shape
    G = sc // (k * k)
    if sb != B or (sh, sw) != (Ho, Wo) or sc % (k * k) or G < 1 or C % G:
        raise ValueError(
            f"spatial_filter must have shape ({B}, heads*{k * k}, {Ho}, {Wo}) with heads "
            f"dividing the {C} channels (output size ceil(H/stride) x ceil(W/stride)), "
            f"got {tuple(spatial_filter.shape)}")
    return dict(B=B, C=C, H=H, W=W, G=G, k=k, s=stride, d=dilation, combine=kernel_combine)


def _grouped(p: dict):
    """Views of the op's tensors in the kernels' grouped layouts (free for contiguous ones)."""
    B, C, G, k = p["B"], p["C"], p["G"], p["k"]
    return {
        "plane": lambda t: t.view(B, G, C // G, t.shape[-2], t.shape[-1]),
        "spatial": lambda t: t.view(B, G, k, k, t.shape[-2], t.shape[-1]),
        "channel": lambda t: t.view(B, G, C // G, k, k),
    }


@custom_op("dynfilter::ddf")
def ddf_op(features: Tensor, channel_filter: Tensor, spatial_filter: Tensor, kernel_size: int,
           dilation: int, stride: int, kernel_combine: str) -> Tensor:
    p = check(features, channel_filter, spatial_filter, kernel_size, dilation, stride, kernel_combine)
    x, cf, sf = features.contiguous(), channel_filter.contiguous(), spatial_filter.contiguous()
    out = x.new_empty(_out_shape(p))
    v = _grouped(p)
    run("ddf", "fwd", p, x.dtype, x.device, v["plane"](x), v["spatial"](sf), v["channel"](cf), v["plane"](out))
    return out


def _out_shape(p: dict) -> Tuple[int, int, int, int]:
    return (p["B"], p["C"], out_size(p["H"], p["s"]), out_size(p["W"], p["s"]))


@ddf_op.register_fake
def _(features, channel_filter, spatial_filter, kernel_size, dilation, stride, kernel_combine):
    p = check(features, channel_filter, spatial_filter, kernel_size, dilation, stride, kernel_combine)
    return features.new_empty(_out_shape(p))


def _grad_kernel(which: str):
    """One custom op per gradient (only the gradients autograd asks for are computed)."""

    @custom_op(f"dynfilter::ddf_grad_{which}")
    def grad_op(grad_out: Tensor, features: Tensor, channel_filter: Tensor, spatial_filter: Tensor,
                kernel_size: int, dilation: int, stride: int, kernel_combine: str) -> Tensor:
        p = check(features, channel_filter, spatial_filter, kernel_size, dilation, stride, kernel_combine)
        x, cf, sf = features.contiguous(), channel_filter.contiguous(), spatial_filter.contiguous()
        g = grad_out.to(x.dtype).contiguous()
        v = _grouped(p)
        if which == "features":
            out = torch.empty_like(x)
            args = (v["plane"](g), v["spatial"](sf), v["channel"](cf), v["plane"](out))
            kernel = "dx"
        elif which == "spatial":
            out = torch.empty_like(sf)
            args = (v["plane"](g), v["plane"](x), v["channel"](cf), v["spatial"](out))
            kernel = "ds"
        else:
            out = torch.empty_like(cf)
            args = (v["plane"](g), v["plane"](x), v["spatial"](sf), v["channel"](out))
            kernel = "dc"
        run("ddf", kernel, p, x.dtype, x.device, *args)
        return out

    @grad_op.register_fake
    def _(grad_out, features, channel_filter, spatial_filter, kernel_size, dilation, stride, kernel_combine):
        like = {"features": features, "spatial": spatial_filter, "channel": channel_filter}[which]
        return torch.empty_like(like, memory_format=torch.contiguous_format)

    return grad_op


ddf_grad_features = _grad_kernel("features")
ddf_grad_channel = _grad_kernel("channel")
ddf_grad_spatial = _grad_kernel("spatial")


def _setup_context(ctx, inputs, output):
    features, channel_filter, spatial_filter, k, d, s, combine = inputs
    ctx.save_for_backward(features, channel_filter, spatial_filter)
    ctx.args = (k, d, s, combine)


def _backward(ctx, grad_out):
    features, channel_filter, spatial_filter = ctx.saved_tensors
    need = ctx.needs_input_grad
    args = (grad_out, features, channel_filter, spatial_filter, *ctx.args)
    return (
        call(ddf_grad_features, *args) if need[0] else None,
        call(ddf_grad_channel, *args) if need[1] else None,
        call(ddf_grad_spatial, *args) if need[2] else None,
        None, None, None, None,
    )


register_autograd(ddf_op, _backward, _setup_context)


# Double backward: out is linear in the features and in each filter ('add': in their sum),
# so each gradient op's own gradients are the forward and the other gradient ops.
def _combine_partners(args, i):
    """'add': the channel (1) and spatial (2) filters enter only as their sum."""
    return (3 - i,) if args[-1] == "add" and i in (1, 2) else ()


_GRADS = (ddf_grad_features, ddf_grad_channel, ddf_grad_spatial)
for _i, _op in enumerate(_GRADS):
    register_adjoint_autograd(_op, _i, ddf_op, _GRADS, _combine_partners)
