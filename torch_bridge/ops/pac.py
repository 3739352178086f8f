"""PAC's custom ops: the adaptive convolution (plain and transposed), the adaptive pooling and
the kernel's squared distances, each with its gradient kernels, autograd and fake impls.

Every form is one of the ``pac`` kernels with a tap geometry (stride ``s``, zero insertion
``z``, offset ``p``; see ``dynfilter_tvm.ops.pac``): the transposed form is the plain one on
a zero-inserted input, and each input gradient is the other form, taps mirrored (``a = 1``).
"""
from __future__ import annotations

from math import gcd
from typing import Optional, Tuple

import torch
from torch import Tensor

from dynfilter_tvm.ops.common import conv_out_size
from dynfilter_tvm.ops.pac import MAX_KERNEL_SIZE

from .._checks import NATIVE_HINT, check_nonnegative_int, check_positive_int, check_tensors
from ..runtime import acc_torch_dtype, run
from ._adjoint import register_adjoint_autograd
from ._eager import call, custom_op, register_autograd
from ._phases import gather_taps, whole_taps


# ---------------------------------------------------------------------------- geometry
def transposed_out_size(n: int, k: int, s: int, p: int, op: int, d: int) -> int:
    return (n - 1) * s - 2 * p + d * (k - 1) + 1 + op


def out_size(n: int, k: int, s: int, p: int, op: int, d: int, transposed: bool) -> int:
    return transposed_out_size(n, k, s, p, op, d) if transposed else conv_out_size(n, k, s, p, d)


def _taps(k: int, s: int, p: int, d: int, transposed: bool, adjoint: bool) -> dict:
    """(s, z, p) of the kernels: the plain form reads the input with stride s; the transposed
    one reads it zero-inserted by s, offset by (k-1)d - p; each one's adjoint is the other's."""
    plain = dict(s=s, z=1, p=p)
    zero_inserted = dict(s=1, z=s, p=(k - 1) * d - p)
    return plain if transposed == adjoint else zero_inserted


def _params(src: Tensor, out_hw: Tuple[int, int], k: int, geometry: dict, **extra) -> dict:
    N, C, H, W = src.shape
    return dict(N=N, C=C, H=H, W=W, Ho=out_hw[0], Wo=out_hw[1], k=k, **geometry, **extra)


# ---------------------------------------------------------------------------- zero-inserted forms
def phase_taps(k: int, z: int, p: int, d: int, r: int) -> Tuple[list, int, int]:
    """One axis of a form reading ``Sz[y + v*d]`` (virtual tap v in [0, k); Sz: the source
    zero-inserted by z and offset by p), at the outputs of phase r (y = z*m + r): the taps
    that land on source samples, ``(r + v*d - p) % z == 0``, are v0 + t*step (step = z/g,
    g = gcd(d, z)), and tap t reads source ``m + t*d' + c`` with d' = d/g and
    c = (r + v0*d - p) / z. Returns (those v, c, d'); no v: this phase is all zeros."""
    vs, c = whole_taps(k, d, z, r - p, 1)
    return vs, c, d // gcd(d, z)


def _tap_slots(vs: list, n: int, k: int, a: int) -> list:
    """The kernel taps of a phase's ``n`` slots: original tap of each v (mirrored, k-1-v, for
    the adjoints), slot order mirrored for them too; -1: a dummy (weight and kernel zero)."""
    idx = [k - 1 - v if a else v for v in vs] + [-1] * (n - len(vs))
    return idx[::-1] if a else idx


def _align(t: Tensor, cy: int, cx: int) -> Tensor:
    """t with zeros prepended along the axis of the smaller offset c, so that one offset,
    max(cy, cx), serves both axes: t'[Y + e] = t[Y] (prepending, never cropping: a crop would
    drop samples that the taps reach through the kernels' zero padding)."""
    e = abs(cy - cx)
    if not e:
        return t
    return torch.nn.functional.pad(t, (e, 0) if cy > cx else (0, 0, e, 0)).contiguous()


# Zero insertion from which each form runs by phase. Measured (benchmarks/bench_pac_phases.py,
# 1 thread, process CPU time; benchmarks/RESULTS.md "Strided adjoints by phase"): conv 1.06-1.58x
# faster at z = 2, 1.27-1.34x (static builds) / 0.79-0.89x (generic, 19-px rows) at z = 3; pool
# (depthwise: per tap one multiply-add per channel, so a phase's copies cost as much as its taps)
# 0.57-0.99x at z = 2, 2.2-2.3x at z = 3.
PHASE_MIN_ZERO_INSERTION = {"conv": 2, "pool": 3}


def run_taps(kernel: str, p: dict, dtype, device, src: Tensor, K: Tensor, Wt: Optional[Tensor], out: Tensor) -> None:
    """Run ``pac.conv`` / ``pac.pool`` (tensors src, K[, Wt], out); a zero-inserted form
    (z > 1: the transposed forward and the strided input gradients) with z at least
    ``PHASE_MIN_ZERO_INSERTION`` by output phase, never visiting the inserted zeros.

    Phase (ry, rx) of the output (``out[..., ry::z, rx::z]``) is itself a z = 1 form over the
    source: per axis the taps that hit it (``phase_taps``), T = the larger count per axis (a
    missing tap is a dummy with zero weight and kernel), dilation d', offset c per axis (the
    conv takes one offset: p = -max(c_y, c_x), the source padded in front along the other axis
    by |c_y - c_x|; for the adjoints K lives on the source grid and is padded with it; else K
    is sliced at the phase's outputs).
    Work: sum over phases of T^2 taps per z x z outputs instead of z^2 k^2 (z = 2: k = 5, 31
    instead of 100; k = 3, 13 instead of 36; z = 3, k = 5: 33 instead of 225),
    plus a gather of K and a copy of the source and the output per phase."""
    z = p["z"]
    if z < max(2, PHASE_MIN_ZERO_INSERTION[kernel]):
        tensors = (src, K, out) if Wt is None else (src, K, Wt, out)
        run("pac", kernel, p, dtype, device, *tensors)
        return
    k, d, a, pad = p["k"], p["d"], p["a"], p["p"]
    Ho, Wo = out.shape[-2:]
    for ry in range(min(z, Ho)):
        vy, cy, dd = phase_taps(k, z, pad, d, ry)
        for rx in range(min(z, Wo)):
            vx, cx, _ = phase_taps(k, z, pad, d, rx)
            view = out[:, :, ry::z, rx::z]
            if not vy or not vx:
                view.zero_()
                continue
            n = max(len(vy), len(vx))
            iy, ix = _tap_slots(vy, n, k, a), _tap_slots(vx, n, k, a)
            kern = gather_taps(K, iy, ix)
            kern = _align(kern, cy, cx) if a else kern[..., ry::z, rx::z].contiguous()
            s = _align(src, cy, cx)
            q = dict(p, z=1, s=1, k=n, p=-max(cy, cx), d=dd, H=s.shape[2], W=s.shape[3], Ho=view.shape[2],
                     Wo=view.shape[3])
            part = out.new_empty(view.shape)
            wt = () if Wt is None else (gather_taps(Wt, iy, ix),)
            run("pac", kernel, q, dtype, device, s, kern, *wt, part)
            view.copy_(part)


# ---------------------------------------------------------------------------- checks
def _check_geometry(k, stride, padding, output_padding, dilation, transposed) -> None:
    if not isinstance(k, (int, torch.SymInt)) or k < 1 or k % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive integer, got {k!r}")
    if k > MAX_KERNEL_SIZE:
        raise ValueError(f"kernel_size must be at most {MAX_KERNEL_SIZE} for the compiled kernels, got {k}; "
                         f"{NATIVE_HINT}")
    check_positive_int("stride", stride)
    check_nonnegative_int("padding", padding)
    check_nonnegative_int("output_padding", output_padding)
    check_positive_int("dilation", dilation)
    if output_padding and not transposed:
        raise ValueError("output_padding is for the transposed convolution only")
    if transposed and output_padding >= max(stride, dilation):
        raise ValueError(f"output_padding must be smaller than stride or dilation, got {output_padding}")


def _check_kernel(kernel: Tensor, N: int, channels: Tuple[int, ...], k: int, Ho: int, Wo: int) -> None:
    if kernel.dim() != 6 or kernel.shape[0] != N or kernel.shape[1] not in channels \
            or tuple(kernel.shape[2:]) != (k, k, Ho, Wo):
        ch = " or ".join(str(c) for c in channels)
        raise ValueError(f"kernel must have shape ({N}, {ch}, {k}, {k}, {Ho}, {Wo}) (batch, channels, "
                         f"kernel_size x2, output size), got {tuple(kernel.shape)}")


def check_conv(input, kernel, weight, bias, stride, padding, output_padding, dilation, transposed) -> dict:
    """Validate and return N, C (in), O (out), H, W, Ho, Wo, k."""
    check_tensors(("input", "kernel", "weight"), (input, kernel, weight), (4, 6, 4),
                  "cast them to one dtype (torch.autocast does this for pacconv2d)", batched=("input", "kernel"))
    k = weight.shape[-1]
    _check_geometry(k, stride, padding, output_padding, dilation, transposed)
    N, C, H, W = input.shape
    cin, cout = (weight.shape[0], weight.shape[1]) if transposed else (weight.shape[1], weight.shape[0])
    if weight.shape[-2] != k or cin != C:
        layout = "(in_channels, out_channels, k, k)" if transposed else "(out_channels, in_channels, k, k)"
        raise ValueError(f"weight must have shape {layout} with in_channels = {C} and square k, "
                         f"got {tuple(weight.shape)}")
    Ho, Wo = (out_size(n, k, stride, padding, output_padding, dilation, transposed) for n in (H, W))
    if Ho < 1 or Wo < 1:
        raise ValueError(f"a {k}x{k} kernel (dilation {dilation}) does not fit the {H}x{W} input "
                         f"padded by {padding}")
    _check_kernel(kernel, N, (1,), k, Ho, Wo)
    if bias is not None:
        check_tensors(("input", "bias"), (input, bias), (4, 1), "cast bias to the input's dtype", batched=("input",))
        if bias.shape[0] != cout:
            raise ValueError(f"bias must have shape ({cout},), got {tuple(bias.shape)}")
    return dict(N=N, C=C, O=cout, H=H, W=W, Ho=Ho, Wo=Wo, k=k)


def check_pool(input, kernel, k, stride, padding, output_padding, dilation, transposed) -> dict:
    check_tensors(("input", "kernel"), (input, kernel), (4, 6),
                  "cast them to one dtype (torch.autocast does this for pacpool2d)", batched=("input", "kernel"))
    _check_geometry(k, stride, padding, output_padding, dilation, transposed)
    N, C, H, W = input.shape
    Ho, Wo = (out_size(n, k, stride, padding, output_padding, dilation, transposed) for n in (H, W))
    if Ho < 1 or Wo < 1:
        raise ValueError(f"a {k}x{k} kernel (dilation {dilation}) does not fit the {H}x{W} input "
                         f"padded by {padding}")
    _check_kernel(kernel, N, (1, C), k, Ho, Wo)
    return dict(N=N, C=C, H=H, W=W, Ho=Ho, Wo=Wo, k=k, G=kernel.shape[1])


def check_dist(guidance, centre, k, stride, padding, dilation, channel_wise) -> dict:
    check_tensors(("guidance", "centre"), (guidance, centre), (4, 4), "cast them to one dtype",
                  batched=("guidance", "centre"))
    _check_geometry(k, stride, padding, 0, dilation, False)
    N, C, H, W = guidance.shape
    Ho, Wo = conv_out_size(H, k, stride, padding, dilation), conv_out_size(W, k, stride, padding, dilation)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"a {k}x{k} kernel (dilation {dilation}) does not fit the {H}x{W} guidance "
                         f"padded by {padding}")
    if tuple(centre.shape) != (N, C, Ho, Wo):
        raise ValueError(f"centre must have shape {(N, C, Ho, Wo)}, got {tuple(centre.shape)}")
    return dict(N=N, C=C, H=H, W=W, Ho=Ho, Wo=Wo, k=k, G=C if channel_wise else 1)


# ---------------------------------------------------------------------------- convolution
def tf32_flag(device: torch.device, dtype: torch.dtype) -> dict:
    """``{"tf32": 1}`` where the conv kernels (``conv``: the convolution, its transposed form
    and both input gradients; ``conv_dk``: the kernel gradient) may use TF32 tensor cores:
    float32 on CUDA while ``torch.backends.cudnn.allow_tf32`` is set (the flag PyTorch's own
    conv2d follows, True by default), read at every call; else ``{}``. The flag is part of the workload, so kernels
    built with and without it never share a cache entry."""
    use = device.type == "cuda" and dtype == torch.float32 and torch.backends.cudnn.allow_tf32
    return {"tf32": 1} if use else {}


def _transposed_weight(weight: Tensor, transposed: bool) -> Tensor:
    """The kernels' Wt (out, in, k, k): the transposed form stores (in, out, k, k)."""
    return weight.transpose(0, 1) if transposed else weight


@custom_op("dynfilter::pac_conv")
def conv_op(input: Tensor, kernel: Tensor, weight: Tensor, bias: Optional[Tensor], stride: int,
            padding: int, output_padding: int, dilation: int, transposed: bool) -> Tensor:
    q = check_conv(input, kernel, weight, bias, stride, padding, output_padding, dilation, transposed)
    k = q["k"]
    out = input.new_empty(q["N"], q["O"], q["Ho"], q["Wo"])
    geo = _taps(k, stride, padding, dilation, transposed, adjoint=False)
    p = _params(input, (q["Ho"], q["Wo"]), k, geo, d=dilation, O=q["O"], a=0, **tf32_flag(input.device, input.dtype))
    run_taps("conv", p, input.dtype, input.device, input, kernel, _transposed_weight(weight, transposed), out)
    if bias is not None:
        out += bias.view(1, -1, 1, 1)
    return out


@conv_op.register_fake
def _(input, kernel, weight, bias, stride, padding, output_padding, dilation, transposed):
    q = check_conv(input, kernel, weight, bias, stride, padding, output_padding, dilation, transposed)
    return input.new_empty(q["N"], q["O"], q["Ho"], q["Wo"])


@custom_op("dynfilter::pac_conv_grad_input")
def conv_grad_input_op(grad_out: Tensor, input: Tensor, kernel: Tensor, weight: Tensor, stride: int,
                       padding: int, output_padding: int, dilation: int, transposed: bool) -> Tensor:
    q = check_conv(input, kernel, weight, None, stride, padding, output_padding, dilation, transposed)
    g = grad_out.to(input.dtype)
    dx = torch.empty_like(input, memory_format=torch.contiguous_format)
    geo = _taps(q["k"], stride, padding, dilation, transposed, adjoint=True)
    p = _params(g, (q["H"], q["W"]), q["k"], geo, d=dilation, O=q["C"], a=1, **tf32_flag(input.device, input.dtype))
    wt = _transposed_weight(weight, not transposed)  # (in, out): the adjoint maps out -> in
    run_taps("conv", p, input.dtype, input.device, g, kernel, wt, dx)
    return dx


@conv_grad_input_op.register_fake
def _(grad_out, input, kernel, weight, stride, padding, output_padding, dilation, transposed):
    return torch.empty_like(input, memory_format=torch.contiguous_format)


def _grad_params(input: Tensor, q: dict, stride, padding, dilation, transposed) -> dict:
    """Parameters of the kernel and weight gradients: the forward's taps (``a = 0``)."""
    geo = _taps(q["k"], stride, padding, dilation, transposed, adjoint=False)
    return _params(input, (q["Ho"], q["Wo"]), q["k"], geo, d=dilation, O=q["O"])


@custom_op("dynfilter::pac_conv_grad_kernel")
def conv_grad_kernel_op(grad_out: Tensor, input: Tensor, kernel: Tensor, weight: Tensor, stride: int,
                        padding: int, output_padding: int, dilation: int, transposed: bool) -> Tensor:
    q = check_conv(input, kernel, weight, None, stride, padding, output_padding, dilation, transposed)
    dk = torch.empty_like(kernel, memory_format=torch.contiguous_format)
    p = dict(_grad_params(input, q, stride, padding, dilation, transposed), **tf32_flag(input.device, input.dtype))
    run("pac", "conv_dk", p, input.dtype, input.device, grad_out.to(input.dtype), input,
        _transposed_weight(weight, transposed), dk)
    return dk


@conv_grad_kernel_op.register_fake
def _(grad_out, input, kernel, weight, stride, padding, output_padding, dilation, transposed):
    return torch.empty_like(kernel, memory_format=torch.contiguous_format)


@custom_op("dynfilter::pac_conv_grad_weight")
def conv_grad_weight_op(grad_out: Tensor, input: Tensor, kernel: Tensor, weight: Tensor, stride: int,
                        padding: int, output_padding: int, dilation: int, transposed: bool) -> Tensor:
    q = check_conv(input, kernel, weight, None, stride, padding, output_padding, dilation, transposed)
    k = q["k"]
    dwt = torch.empty(q["O"], q["C"], k, k, dtype=acc_torch_dtype(input.dtype), device=input.device)
    run("pac", "conv_dw", _grad_params(input, q, stride, padding, dilation, transposed), input.dtype, input.device,
        grad_out.to(input.dtype), kernel, input, dwt)
    return _transposed_weight(dwt, transposed).to(weight.dtype).contiguous()


@conv_grad_weight_op.register_fake
def _(grad_out, input, kernel, weight, stride, padding, output_padding, dilation, transposed):
    return torch.empty_like(weight, memory_format=torch.contiguous_format)


def _conv_setup(ctx, inputs, output):
    input, kernel, weight, bias, *args = inputs
    ctx.save_for_backward(input, kernel, weight)
    ctx.args = tuple(args)
    ctx.bias_dtype = None if bias is None else bias.dtype


def _conv_backward(ctx, grad_out):
    input, kernel, weight = ctx.saved_tensors
    need_x, need_k, need_w, need_b = ctx.needs_input_grad[:4]
    args = (grad_out, input, kernel, weight, *ctx.args)
    dx = call(conv_grad_input_op, *args) if need_x else None
    dk = call(conv_grad_kernel_op, *args) if need_k else None
    dw = call(conv_grad_weight_op, *args) if need_w else None
    db = grad_out.sum((0, 2, 3), dtype=acc_torch_dtype(grad_out.dtype)).to(ctx.bias_dtype) if need_b else None
    return dx, dk, dw, db, None, None, None, None, None


register_autograd(conv_op, _conv_backward, _conv_setup)


# Double backward: without the bias, out is linear in the input, the kernel and the weight,
# so each gradient op's gradients are the forward and the other gradient ops.
def _conv_no_bias(input, kernel, weight, *args):
    return call(conv_op, input, kernel, weight, None, *args)


_CONV_GRADS = (conv_grad_input_op, conv_grad_kernel_op, conv_grad_weight_op)
for _i, _op in enumerate(_CONV_GRADS):
    register_adjoint_autograd(_op, _i, _conv_no_bias, _CONV_GRADS)


# ---------------------------------------------------------------------------- pooling
@custom_op("dynfilter::pac_pool")
def pool_op(input: Tensor, kernel: Tensor, kernel_size: int, stride: int, padding: int,
            output_padding: int, dilation: int, transposed: bool) -> Tensor:
    q = check_pool(input, kernel, kernel_size, stride, padding, output_padding, dilation, transposed)
    out = input.new_empty(q["N"], q["C"], q["Ho"], q["Wo"])
    geo = _taps(kernel_size, stride, padding, dilation, transposed, adjoint=False)
    p = _params(input, (q["Ho"], q["Wo"]), kernel_size, geo, d=dilation, G=q["G"], a=0)
    run_taps("pool", p, input.dtype, input.device, input, kernel, None, out)
    return out


@pool_op.register_fake
def _(input, kernel, kernel_size, stride, padding, output_padding, dilation, transposed):
    q = check_pool(input, kernel, kernel_size, stride, padding, output_padding, dilation, transposed)
    return input.new_empty(q["N"], q["C"], q["Ho"], q["Wo"])


@custom_op("dynfilter::pac_pool_grad_input")
def pool_grad_input_op(grad_out: Tensor, input: Tensor, kernel: Tensor, kernel_size: int, stride: int,
                       padding: int, output_padding: int, dilation: int, transposed: bool) -> Tensor:
    q = check_pool(input, kernel, kernel_size, stride, padding, output_padding, dilation, transposed)
    g = grad_out.to(input.dtype)
    dx = torch.empty_like(input, memory_format=torch.contiguous_format)
    geo = _taps(kernel_size, stride, padding, dilation, transposed, adjoint=True)
    p = _params(g, (q["H"], q["W"]), kernel_size, geo, d=dilation, G=q["G"], a=1)
    run_taps("pool", p, input.dtype, input.device, g, kernel, None, dx)
    return dx


@pool_grad_input_op.register_fake
def _(grad_out, input, kernel, kernel_size, stride, padding, output_padding, dilation, transposed):
    return torch.empty_like(input, memory_format=torch.contiguous_format)


@custom_op("dynfilter::pac_pool_grad_kernel")
def pool_grad_kernel_op(grad_out: Tensor, input: Tensor, kernel: Tensor, kernel_size: int, stride: int,
                        padding: int, output_padding: int, dilation: int, transposed: bool) -> Tensor:
    q = check_pool(input, kernel, kernel_size, stride, padding, output_padding, dilation, transposed)
    dk = torch.empty_like(kernel, memory_format=torch.contiguous_format)
    geo = _taps(kernel_size, stride, padding, dilation, transposed, adjoint=False)
    p = _params(input, (q["Ho"], q["Wo"]), kernel_size, geo, d=dilation, G=q["G"])
    run("pac", "pool_dk", p, input.dtype, input.device, grad_out.to(input.dtype), input, dk)
    return dk


@pool_grad_kernel_op.register_fake
def _(grad_out, input, kernel, kernel_size, stride, padding, output_padding, dilation, transposed):
    return torch.empty_like(kernel, memory_format=torch.contiguous_format)


def _pool_setup(ctx, inputs, output):
    input, kernel, *args = inputs
    ctx.save_for_backward(input, kernel)
    ctx.args = tuple(args)


def _pool_backward(ctx, grad_out):
    input, kernel = ctx.saved_tensors
    need_x, need_k = ctx.needs_input_grad[:2]
    args = (grad_out, input, kernel, *ctx.args)
    dx = call(pool_grad_input_op, *args) if need_x else None
    dk = call(pool_grad_kernel_op, *args) if need_k else None
    return dx, dk, None, None, None, None, None, None


register_autograd(pool_op, _pool_backward, _pool_setup)

# Double backward: out is linear in the input and in the kernel.
_POOL_GRADS = (pool_grad_input_op, pool_grad_kernel_op)
for _i, _op in enumerate(_POOL_GRADS):
    register_adjoint_autograd(_op, _i, pool_op, _POOL_GRADS)


# ---------------------------------------------------------------------------- kernel distances
def _dist_params(q: dict, stride, padding, dilation, asym) -> dict:
    return dict(q, s=stride, p=padding, d=dilation, asym=int(asym))


@custom_op("dynfilter::pac_dist")
def dist_op(guidance: Tensor, centre: Tensor, kernel_size: int, stride: int, padding: int, dilation: int,
            channel_wise: bool, asym: bool, gauss: bool) -> Tensor:
    """sum_c r(f_tap - f_centre)^2 per tap and output pixel (per channel if channel_wise),
    or exp(-1/2 of it) with ``gauss``: (N, 1|C, k, k, Ho, Wo)."""
    q = check_dist(guidance, centre, kernel_size, stride, padding, dilation, channel_wise)
    out = guidance.new_empty(q["N"], q["G"], kernel_size, kernel_size, q["Ho"], q["Wo"])
    run("pac", "dist", _dist_params(q, stride, padding, dilation, asym), guidance.dtype, guidance.device,
        guidance, centre, out)
    # torch's exp is vectorized; TVM's LLVM lowering calls the scalar libm exp per element
    return out.mul_(-0.5).exp_() if gauss else out


@dist_op.register_fake
def _(guidance, centre, kernel_size, stride, padding, dilation, channel_wise, asym, gauss):
    q = check_dist(guidance, centre, kernel_size, stride, padding, dilation, channel_wise)
    return guidance.new_empty(q["N"], q["G"], kernel_size, kernel_size, q["Ho"], q["Wo"])


@custom_op("dynfilter::pac_dist_grad")
def dist_grad_op(grad_dist: Tensor, guidance: Tensor, centre: Tensor, kernel_size: int, stride: int,
                 padding: int, dilation: int, channel_wise: bool, asym: bool) -> Tuple[Tensor, Tensor]:
    """Gradients of the distances (not of their exponential) for the guidance and the centre."""
    q = check_dist(guidance, centre, kernel_size, stride, padding, dilation, channel_wise)
    p = _dist_params(q, stride, padding, dilation, asym)
    g = grad_dist.to(guidance.dtype)
    df = torch.empty_like(guidance, memory_format=torch.contiguous_format)
    df0 = torch.empty_like(centre, memory_format=torch.contiguous_format)
    run("pac", "dist_df", p, guidance.dtype, guidance.device, g, guidance, centre, df)
    run("pac", "dist_df0", p, guidance.dtype, guidance.device, g, guidance, centre, df0)
    return df, df0


@dist_grad_op.register_fake
def _(grad_dist, guidance, centre, kernel_size, stride, padding, dilation, channel_wise, asym):
    return (torch.empty_like(guidance, memory_format=torch.contiguous_format),
            torch.empty_like(centre, memory_format=torch.contiguous_format))


def _dist_setup(ctx, inputs, output):
    guidance, centre, *args = inputs
    ctx.gauss = args[-1]
    ctx.args = tuple(args[:-1])
    ctx.save_for_backward(guidance, centre, output if ctx.gauss else None)


def _dist_backward(ctx, grad):
    guidance, centre, value = ctx.saved_tensors
    if ctx.gauss:  # d exp(-D/2) = -1/2 exp(-D/2) dD
        grad = grad * value * -0.5
    df, df0 = call(dist_grad_op, grad, guidance, centre, *ctx.args)
    return df, df0, None, None, None, None, None, None, None


register_autograd(dist_op, _dist_backward, _dist_setup)


# Double backward. Without '_asym', D = sum_c e^2 with e = F_tap - F0 linear in (F, F0), and
# (dF, dF0) is linear in dD and in (F, F0): its (F, F0) gradient is dist_grad on the incoming
# (vF, vF0) (the tap differences w = vF_tap - vF0 in place of e), and its dD gradient is
# 2 sum_c e w = (D(F + vF, F0 + vF0) - D(F - vF, F0 - vF0)) / 2 (D is quadratic).
def _dist_grad_setup(ctx, inputs, output):
    grad_dist, guidance, centre, *args = inputs
    ctx.save_for_backward(grad_dist, guidance, centre)
    ctx.args = tuple(args)


def _dist_grad_backward(ctx, v_guidance, v_centre):
    grad_dist, guidance, centre = ctx.saved_tensors
    k, s, p, d, channel_wise, asym = ctx.args
    if asym:
        raise RuntimeError(
            "double backward through packernel2d's '_asym' kernel types (relu of the guidance "
            "differences) is not available on the compiled path; use native_impl=True "
            "(e.g. packernel2d(..., native_impl=True) or the layer's native_impl=True)")
    vf = torch.zeros_like(guidance) if v_guidance is None else v_guidance.to(guidance.dtype)
    vf0 = torch.zeros_like(centre) if v_centre is None else v_centre.to(centre.dtype)
    need_g, need_f, need_f0 = ctx.needs_input_grad[:3]
    dg = df = df0 = None
    if need_g:
        plus = call(dist_op, guidance + vf, centre + vf0, k, s, p, d, channel_wise, False, False)
        minus = call(dist_op, guidance - vf, centre - vf0, k, s, p, d, channel_wise, False, False)
        dg = (plus - minus) * 0.5
    if need_f or need_f0:
        df, df0 = call(dist_grad_op, grad_dist, vf, vf0, *ctx.args)
    return dg, df if need_f else None, df0 if need_f0 else None, None, None, None, None, None, None


register_autograd(dist_grad_op, _dist_grad_backward, _dist_grad_setup)
