"""ACDA's atom convolution as a custom op: fused forward, input and atom gradients.

The gradients of the coefficients and of the bases are contractions of the per-pixel atom
gradient dD (N, M, k*k, Ho, Wo) with the bases and the coefficients: two small matrix
products done here in the accumulation precision (dD is M*k*k values per pixel, against the
C*k*k of an unfolded input).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from dynfilter_tvm.ops.acda import MAX_KERNEL_SIZE
from dynfilter_tvm.ops.common import conv_out_size

from .._checks import NATIVE_HINT, check_nonnegative_int, check_positive_int, check_tensors
from ..runtime import acc_torch_dtype, run
from ._eager import call, custom_op, register_autograd

_NAMES = ("input", "coefficients", "bases")


def check(input: Tensor, coefficients: Tensor, bases: Tensor, stride: int, padding: int,
          dilation: int, compiled: bool = True) -> dict:
    """Validate the arguments and return the kernel parameters N, C, H, W, M, T, k, s, d, p
    (``compiled``: within the kernels' limits)."""
    check_positive_int("stride", stride)
    check_nonnegative_int("padding", padding)
    check_positive_int("dilation", dilation)
    check_tensors(_NAMES, (input, coefficients, bases), (4, 4, 3),
                  "cast them to one dtype (torch.autocast does this for acda_atom_conv2d)",
                  batched=("input", "coefficients"))
    T, k, k2 = bases.shape
    if k != k2:
        raise ValueError(f"bases must have shape (num_bases, k, k), got {tuple(bases.shape)}")
    if compiled and k > MAX_KERNEL_SIZE:
        raise ValueError(f"bases must have shape (num_bases, k, k) with k <= {MAX_KERNEL_SIZE} for the compiled "
                         f"kernel, got {tuple(bases.shape)}; {NATIVE_HINT}")
    N, C, H, W = input.shape
    Ho, Wo = conv_out_size(H, k, stride, padding, dilation), conv_out_size(W, k, stride, padding, dilation)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"a {k}x{k} kernel with dilation {dilation} does not fit the {H}x{W} "
                         f"input padded by {padding}")
    cn, cmt, ch, cw = coefficients.shape
    if cn != N or (ch, cw) != (Ho, Wo) or cmt % T:
        raise ValueError(
            f"coefficients must have shape ({N}, num_atoms*{T}, {Ho}, {Wo}) (batch, atoms x "
            f"bases, the convolution's output size), got {tuple(coefficients.shape)}")
    return dict(N=N, C=C, H=H, W=W, M=cmt // T, T=T, k=k, s=stride, d=dilation, p=padding)


def _out_shape(p: dict) -> Tuple[int, ...]:
    H, W, k, s, d, pad = (p[n] for n in "HWksdp")
    return (p["N"], p["C"] * p["M"], conv_out_size(H, k, s, pad, d), conv_out_size(W, k, s, pad, d))


def _alpha(coefficients: Tensor, p: dict) -> Tensor:
    """(N, M*T, Ho, Wo) -> the kernels' (N, M, T, Ho, Wo), a free view of a contiguous tensor."""
    return coefficients.view(p["N"], p["M"], p["T"], *coefficients.shape[-2:])


def _per_channel(t: Tensor, p: dict) -> Tensor:
    """(N, C*M, Ho, Wo) <-> (N, C, M, Ho, Wo): channel c*M + m, the official order."""
    return t.view(p["N"], p["C"], p["M"], *t.shape[-2:])


@custom_op("dynfilter::acda_atom_conv")
def atom_conv_op(input: Tensor, coefficients: Tensor, bases: Tensor, stride: int, padding: int,
                 dilation: int) -> Tensor:
    p = check(input, coefficients, bases, stride, padding, dilation)
    x, a, b = input.contiguous(), coefficients.contiguous(), bases.contiguous()
    out = x.new_empty(_out_shape(p))
    run("acda", "fwd", p, x.dtype, x.device, x, _alpha(a, p), b, _per_channel(out, p))
    return out


@atom_conv_op.register_fake
def _(input, coefficients, bases, stride, padding, dilation):
    return input.new_empty(_out_shape(check(input, coefficients, bases, stride, padding, dilation)))


@custom_op("dynfilter::acda_atom_conv_grad_input")
def grad_input_op(grad_out: Tensor, input: Tensor, coefficients: Tensor, bases: Tensor, stride: int,
                  padding: int, dilation: int) -> Tensor:
    p = check(input, coefficients, bases, stride, padding, dilation)
    g, a, b = grad_out.to(input.dtype).contiguous(), coefficients.contiguous(), bases.contiguous()
    dx = torch.empty_like(input, memory_format=torch.contiguous_format)
    run("acda", "dx", p, input.dtype, input.device, _per_channel(g, p), _alpha(a, p), b, dx)
    return dx


@grad_input_op.register_fake
def _(grad_out, input, coefficients, bases, stride, padding, dilation):
    return torch.empty_like(input, memory_format=torch.contiguous_format)


def _datoms_shape(p: dict, Ho: int, Wo: int) -> Tuple[int, ...]:
    return (p["N"], p["M"], p["k"], p["k"], Ho, Wo)


@custom_op("dynfilter::acda_atom_conv_grad_atoms")
def grad_atoms_op(grad_out: Tensor, input: Tensor, coefficients: Tensor, bases: Tensor, stride: int,
                  padding: int, dilation: int) -> Tensor:
    """dD (N, M, k, k, Ho, Wo): the gradient of the per-pixel atoms, in float32 (float64
    for float64 inputs)."""
    p = check(input, coefficients, bases, stride, padding, dilation)
    g, x = grad_out.to(input.dtype).contiguous(), input.contiguous()
    dd = torch.empty(_datoms_shape(p, *g.shape[-2:]), dtype=acc_torch_dtype(x.dtype), device=x.device)
    run("acda", "datoms", p, x.dtype, x.device, _per_channel(g, p), x, dd)
    return dd


@grad_atoms_op.register_fake
def _(grad_out, input, coefficients, bases, stride, padding, dilation):
    p = check(input, coefficients, bases, stride, padding, dilation)
    return input.new_empty(_datoms_shape(p, *grad_out.shape[-2:]), dtype=acc_torch_dtype(input.dtype))


def _setup_context(ctx, inputs, output):
    input, coefficients, bases, stride, padding, dilation = inputs
    ctx.save_for_backward(input, coefficients, bases)
    ctx.args = (stride, padding, dilation)


def _coefficient_grads(dd: Tensor, coefficients: Tensor, bases: Tensor, need_a: bool, need_b: bool):
    """The gradients of the coefficients and the bases from dD (N, M, k, k, Ho, Wo)."""
    N, MT, Ho, Wo = coefficients.shape
    T, k, _ = bases.shape
    dd = dd.reshape(N * (MT // T), k * k, Ho * Wo)
    acc = dd.dtype
    da = db = None
    if need_a:  # dA[n,m,t,y,x] = sum_l P[t,l] dD[n,m,l,y,x]
        da = torch.matmul(bases.reshape(T, k * k).to(acc), dd).view(coefficients.shape)
        da = da.to(coefficients.dtype)
    if need_b:  # dP[t,l] = sum_{n,m,y,x} A[n,m,t,y,x] dD[n,m,l,y,x]
        a = coefficients.reshape(N * (MT // T), T, Ho * Wo).to(acc)
        db = torch.einsum("btp,blp->tl", a, dd).view(bases.shape).to(bases.dtype)
    return da, db


def _backward(ctx, grad_out):
    input, coefficients, bases = ctx.saved_tensors
    need_x, need_a, need_b = ctx.needs_input_grad[:3]
    args = (grad_out, input, coefficients, bases, *ctx.args)
    dx = call(grad_input_op, *args) if need_x else None
    da = db = None
    if need_a or need_b:
        da, db = _coefficient_grads(call(grad_atoms_op, *args), coefficients, bases, need_a, need_b)
    return dx, da, db, None, None, None


register_autograd(atom_conv_op, _backward, _setup_context)


# Double backward. out is linear in the input and in the per-pixel atoms D (linear in A and
# in P); dX is linear in dO and D, dD in dO and X. A given atom field D is the forward with
# D as coefficients over the k*k one-hot bases.
def _atoms_as_coefficients(d_atoms: Tensor, input: Tensor):
    """(coefficients, bases) whose atoms are d_atoms (N, M, k, k, Ho, Wo): one-hot bases."""
    N, M, k, _, Ho, Wo = d_atoms.shape
    a = d_atoms.to(input.dtype).reshape(N, M * k * k, Ho, Wo)
    eye = torch.eye(k * k, dtype=input.dtype, device=input.device).view(k * k, k, k)
    return a, eye


def _grad_setup(ctx, inputs, output):
    grad_out, input, coefficients, bases, *args = inputs
    ctx.save_for_backward(grad_out, input, coefficients, bases)
    ctx.args = tuple(args)


def _grad_input_backward(ctx, v):
    """v: the gradient of dX = (dO, D) -> dX. Its dO-gradient is the forward on v; its (A, P)
    gradients are the forward's, with v for the input."""
    grad_out, input, coefficients, bases = ctx.saved_tensors
    need_g, _, need_a, need_b = ctx.needs_input_grad[:4]
    v = v.to(input.dtype)
    dg = call(atom_conv_op, v, coefficients, bases, *ctx.args) if need_g else None
    da = db = None
    if need_a or need_b:
        dd = call(grad_atoms_op, grad_out, v, coefficients, bases, *ctx.args)
        da, db = _coefficient_grads(dd, coefficients, bases, need_a, need_b)
    return dg, None, da, db, None, None, None


def _grad_atoms_backward(ctx, v):
    """v: the gradient of dD = (dO, X) -> dD. Its dO-gradient is the forward with atoms v; its
    X-gradient the input gradient with atoms v."""
    grad_out, input, coefficients, bases = ctx.saved_tensors
    need_g, need_x = ctx.needs_input_grad[:2]
    a, eye = _atoms_as_coefficients(v, input)
    dg = call(atom_conv_op, input, a, eye, *ctx.args) if need_g else None
    dx = call(grad_input_op, grad_out, input, a, eye, *ctx.args) if need_x else None
    return dg, dx, None, None, None, None, None


register_autograd(grad_input_op, _grad_input_backward, _grad_setup)
register_autograd(grad_atoms_op, _grad_atoms_backward, _grad_setup)
