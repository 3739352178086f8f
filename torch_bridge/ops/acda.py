"""ACDA's atom convolution as a custom op: fused forward, input and atom gradients.

The gradients of the coefficients and of the bases are contractions of the per-pixel atom
gradient dD (N, M, k*k, Ho, Wo) with the bases and the coefficients: two small matrix
products done here in the accumulation precision (dD is M*k*k values per pixel, against the
C*k*k of an unfolded input).
"""
from __future__ import annotations

import functools
import itertools
from math import gcd
from typing import List, Optional, Tuple

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


# ---------------------------------------------------------------------------- dX by phase
# Where the input gradient runs by input phase (``_dx_by_phase``) instead of on the dx kernel's
# zero-inserted grid, where s*s - 1 of every s*s taps read inserted zeros: stride >= 2 and
# k >= DX_PHASE_MIN_KERNEL, on these devices. Measured on CPU (benchmarks/bench_acda_phases.py,
# 1 thread, generic builds; benchmarks/RESULTS.md "ACDA dX by phase"): k7 s2 0.71-0.84x the
# grid's time, k5 0.76-0.82x, k3 s2 1.41x (1- and 2-tap kernels, a padded copy and four
# strided output copies cost more than the zeros). CUDA keeps the grid: each phase reads all of
# dO and A again, 2.9x the grid's estimated time at 8x64x56² k7 s2 (static report, no GPU).
DX_PHASE_MIN_STRIDE = 2
DX_PHASE_MIN_KERNEL = 5
DX_PHASE_DEVICES = ("cpu",)


def dx_by_phase(p: dict, device: torch.device) -> bool:
    """Whether the input gradient of geometry ``p`` on ``device`` runs by phase."""
    return p["s"] >= DX_PHASE_MIN_STRIDE and p["k"] >= DX_PHASE_MIN_KERNEL and device.type in DX_PHASE_DEVICES


# Relative cost of copying one element of dO or A (a phase whose offsets need a padded copy)
# against one atom tap of one channel: chooses between dummy taps and a copy.
_COPY_COST = 4


def _axis_taps(k: int, s: int, p: int, d: int, f: int) -> Tuple[List[int], int]:
    """One axis of dX's phase f (input rows f, f + s, ...): the taps u whose output row
    y = (h + p - u*d) / s is whole, ascending (u0 + j*s/g, g = gcd(s, d)), and c, the row tap
    u0 reads for the phase's first input row; tap j then reads row c + h' - j*d/g."""
    us = [u for u in range(k) if (f + p - u * d) % s == 0]
    return us, ((f + p - us[0] * d) // s if us else 0)


def _phase_options(p: dict, fy: int, fx: int) -> Optional[dict]:
    """The ways phase (fy, fx) of dX (``dX[..., fy::s, fx::s]``) runs as a stride-1 dx kernel:
    {(Ho', Wo'): (work, plan)}, the least work per grid; None where no tap reaches the phase
    (its values are zero).

    Per axis the phase's n_a real taps (``_axis_taps``) sit in slots delta_a .. delta_a + n_a - 1
    of a square kernel of n slots (the rest dummies: zero bases), at dilation d' = d/g, and the
    kernel computes lead_a < d' extra rows before the phase's first and tail_a <= d' after its
    last (both dropped), so that one padding p' = c_a - lead_a + delta_a*d' serves both axes
    and phases of different lengths (H not a multiple of s) share a grid. The kernel then reads
    dO and A on a grid of Ho' x Wo' = conv_out_size(H' + lead + tail, n, 1, p', d') rows and
    columns, which must hold every row a real tap reads that has data. Work: n^2 per channel
    and computed pixel. A plan: dict(n, pad, dd, Hq, Wq (the phase's pixels), lead (y, x),
    rows (y, x: computed), ty, tx: each slot's tap index, -1 for a dummy)."""
    k, s, pad, d = p["k"], p["s"], p["p"], p["d"]
    dd = d // gcd(s, d)
    axes = []
    for f, size in ((fy, p["H"]), (fx, p["W"])):
        us, c = _axis_taps(k, s, pad, d, f)
        if not us:
            return None
        axes.append((us, c, len(range(f, size, s)), conv_out_size(size, k, s, pad, d)))

    def offsets(us, c):  # (padding, lead, delta) of one axis
        return [(c - lead + delta * dd, lead, delta) for lead in range(dd) for delta in range(2 * k + 1)
                if c - lead + delta * dd >= 0]

    found = {}
    for pq, ly, dy in offsets(*axes[0][:2]):
        for pq_x, lx, dx_ in offsets(*axes[1][:2]):
            if pq_x != pq:
                continue
            lo = max(dy + len(axes[0][0]), dx_ + len(axes[1][0]))
            for n, tail_y, tail_x in itertools.product(range(lo, min(lo + 2 * k, MAX_KERNEL_SIZE) + 1),
                                                       range(dd + 1), range(dd + 1)):
                rows = tuple(hq + lead + tail for (_, _, hq, _), lead, tail in zip(axes, (ly, lx), (tail_y, tail_x)))
                grid = tuple(r + 2 * pq - dd * (n - 1) for r in rows)
                # every row a real tap reads (up to hq - 1 + c) that holds data (< out) is inside
                if any(g < 1 or min(hq - 1 + c, out - 1) >= g for g, (_, c, hq, out) in zip(grid, axes)):
                    continue
                work = n * n * rows[0] * rows[1]
                if grid not in found or work < found[grid][0]:
                    slots = [[-1] * n for _ in axes]
                    for sl, delta, (us, *_) in zip(slots, (dy, dx_), axes):
                        sl[delta:delta + len(us)] = us
                    found[grid] = (work, dict(n=n, pad=pq, dd=dd, Hq=axes[0][2], Wq=axes[1][2], lead=(ly, lx),
                                              rows=rows, ty=slots[0], tx=slots[1]))
    if not found:  # not reached for valid geometries (a check, not a fallback)
        raise RuntimeError(f"acda dx: no phase plan for {p} at phase {(fy, fx)}")
    return found


def dx_phase_plans(p: dict) -> Tuple[Tuple[int, int], dict]:
    """One grid (Ho', Wo') for every phase of dX at stride s (so dO and A are padded once, or
    passed as they are where it is their own size) and each phase's plan on it
    (``_phase_options``; None: a phase no tap reaches): the grid with the least work over the
    phases plus ``_COPY_COST`` per element of the padded dO and A copies."""
    return _phase_plans(*(p[a] for a in _PLAN_KEYS))


_PLAN_KEYS = ("H", "W", "C", "M", "T", "k", "s", "p", "d")


@functools.lru_cache(maxsize=256)
def _phase_plans(*values) -> Tuple[Tuple[int, int], dict]:
    p = dict(zip(_PLAN_KEYS, values))
    s = p["s"]
    own = tuple(conv_out_size(p[a], p["k"], s, p["p"], p["d"]) for a in "HW")
    options = {(fy, fx): _phase_options(p, fy, fx) for fy in range(min(s, p["H"])) for fx in range(min(s, p["W"]))}
    live = [o for o in options.values() if o is not None]
    if not live:  # no tap reaches any input pixel: dX is zero
        return own, options
    best = None
    for grid in set.intersection(*(set(o) for o in live)):
        cost = sum(o[grid][0] for o in live) * p["C"] * p["M"]
        if grid != own:
            cost += _COPY_COST * (p["C"] + p["T"]) * p["M"] * grid[0] * grid[1]
        if best is None or cost < best[0]:
            best = (cost, grid)
    if best is None:  # not reached for valid geometries (a check, not a fallback)
        raise RuntimeError(f"acda dx: no common phase grid for {p}")
    grid = best[1]
    return grid, {f: (o[grid][1] if o is not None else None) for f, o in options.items()}


def _on_grid(t: Tensor, rows: int, cols: int) -> Tensor:
    """t's last two axes cropped or zero-padded (at the end) to rows x cols, contiguous."""
    if t.shape[-2:] == (rows, cols):
        return t
    out = t.new_zeros((*t.shape[:-2], rows, cols))
    r, c = min(rows, t.shape[-2]), min(cols, t.shape[-1])
    out[..., :r, :c] = t[..., :r, :c]
    return out


def _sub_bases(bases: Tensor, ty: List[int], tx: List[int]) -> Tensor:
    """bases[:, ty, tx] on the phase's slots (-1: a zero dummy), contiguous."""
    n = len(ty)
    out = bases.new_zeros((bases.shape[0], n, n))
    iy = [a for a, t in enumerate(ty) if t >= 0]
    ix = [b for b, t in enumerate(tx) if t >= 0]
    sel = bases[:, [ty[a] for a in iy]][:, :, [tx[b] for b in ix]]
    out[:, iy[0]:iy[-1] + 1, ix[0]:ix[-1] + 1] = sel
    return out


def _dx_by_phase(p: dict, grad_out: Tensor, coefficients: Tensor, bases: Tensor, dx: Tensor) -> None:
    """dX at stride s > 1, phase by phase: input pixels (fy + s*h', fx + s*w') receive only the
    taps u, v with whole output coordinates, so each phase is a stride-1 dx over dO and A with
    those taps' bases (``dx_phase_plans``): per phase n^2 taps instead of the zero-inserted
    grid's k^2 (k = 7, s = 2, p = 3: 16 each instead of 49), dO and A padded once."""
    s = p["s"]
    (Hg, Wg), plans = dx_phase_plans(p)
    g, a = _on_grid(_per_channel(grad_out, p), Hg, Wg), _on_grid(_alpha(coefficients, p), Hg, Wg)
    for (fy, fx), plan in plans.items():
        view = dx[:, :, fy::s, fx::s]
        if plan is None:
            view.zero_()
            continue
        (ly, lx), (H, W) = plan["lead"], plan["rows"]
        q = dict(p, H=H, W=W, k=plan["n"], s=1, d=plan["dd"], p=plan["pad"])
        part = dx.new_empty((p["N"], p["C"], H, W))
        run("acda", "dx", q, dx.dtype, dx.device, g, a, _sub_bases(bases, plan["ty"], plan["tx"]), part)
        view.copy_(part[:, :, ly:ly + plan["Hq"], lx:lx + plan["Wq"]])


@custom_op("dynfilter::acda_atom_conv_grad_input")
def grad_input_op(grad_out: Tensor, input: Tensor, coefficients: Tensor, bases: Tensor, stride: int,
                  padding: int, dilation: int) -> Tensor:
    p = check(input, coefficients, bases, stride, padding, dilation)
    g, a, b = grad_out.to(input.dtype).contiguous(), coefficients.contiguous(), bases.contiguous()
    dx = torch.empty_like(input, memory_format=torch.contiguous_format)
    if dx_by_phase(p, input.device):
        _dx_by_phase(p, g, a, b, dx)
    else:
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
