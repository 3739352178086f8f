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
from ..runtime import acc_torch_dtype, record, run
from ._eager import call, custom_op, register_autograd
from ._phases import gather_taps, whole_taps

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
# zero-inserted grid, where s*s - 1 of every s*s taps read inserted zeros: stride >= 2 with more
# than DX_PHASE_MIN_TAPS taps per axis and phase on average (k > DX_PHASE_MIN_TAPS * s), on
# these devices. Measured on CPU (benchmarks/bench_acda_phases.py, 1 thread, generic builds;
# benchmarks/RESULTS.md "ACDA dX by phase"), phases / grid time: k7 s2 0.71-0.84, k5 s2
# 0.76-0.82, k5 s3 0.70-0.82, k7 s4 0.95; with 1.5 or fewer taps slower: k3 s2 1.34-1.41, k5 s4
# 1.66 (the small kernels, a padded copy and s*s strided output copies cost more than the
# zeros). CUDA keeps the grid: each phase reads all of dO and A again, 2.9x the grid's
# estimated time at 8x64x56² k7 s2 (static report's functions, no GPU).
DX_PHASE_MIN_STRIDE = 2
DX_PHASE_MIN_TAPS = 1.5
DX_PHASE_DEVICES = ("cpu",)


def dx_by_phase(p: dict, device: torch.device) -> bool:
    """Whether the input gradient of geometry ``p`` on ``device`` runs by phase."""
    return (p["s"] >= DX_PHASE_MIN_STRIDE and p["k"] > DX_PHASE_MIN_TAPS * p["s"]
            and device.type in DX_PHASE_DEVICES and _phase_kernels(p["k"], p["s"], p["p"], p["d"]) is not None)


def _axis_taps(k: int, s: int, p: int, d: int, f: int) -> Tuple[List[int], int]:
    """One axis of dX's phase f (input rows f, f + s, ...): the taps u whose output row
    y = (h + p - u*d) / s is whole, ascending (u0 + j*s/g, g = gcd(s, d)), and c, the row tap
    u0 reads for the phase's first input row; tap j then reads row c + h' - j*d/g."""
    return whole_taps(k, d, s, f + p, -1)


@functools.lru_cache(maxsize=256)
def _phase_kernels(k: int, s: int, p: int, d: int) -> Optional[dict]:
    """The stride-1 dx kernel of each phase (fy, fx) in [0, s)^2 of the geometry, the same at
    every image size (so a generic build, or a bundle's generic kernels, serve every size):
    {phase: dict(n, pad, dd, lead (y, x), ty, tx, c (y, x)) or None where no tap reaches the
    phase}; None where some phase would need more than MAX_KERNEL_SIZE slots.

    Per axis the phase's n_a real taps (``_axis_taps``) sit in slots delta_a .. delta_a + n_a - 1
    of a square kernel of n slots (ty / tx: each slot's tap, -1 for a dummy with zero bases), at
    dilation d' = d/g; the kernel computes lead_a < d' rows before the phase's first (dropped),
    so that one padding p' = c_a - lead_a + delta_a*d' >= 0 serves both axes. Of the leads, the
    fewest slots, then the fewest lead rows."""
    dd = d // gcd(s, d)
    out = {}
    for fy in range(s):
        for fx in range(s):
            (uy, cy), (ux, cx) = _axis_taps(k, s, p, d, fy), _axis_taps(k, s, p, d, fx)
            if not uy or not ux:
                out[(fy, fx)] = None
                continue
            best = None
            for ly, lx in itertools.product(range(dd), range(dd)):
                if (cy - ly - (cx - lx)) % dd:
                    continue
                low = max(cy - ly, cx - lx, 0)
                pad = low + (cy - ly - low) % dd  # the least padding both axes reach
                deltas = ((pad - cy + ly) // dd, (pad - cx + lx) // dd)
                n = max(deltas[0] + len(uy), deltas[1] + len(ux))
                if best is None or (n, ly + lx) < best[0]:
                    slots = [[-1] * n, [-1] * n]
                    for sl, delta, us in zip(slots, deltas, (uy, ux)):
                        sl[delta:delta + len(us)] = us
                    best = ((n, ly + lx), dict(n=n, pad=pad, dd=dd, lead=(ly, lx), ty=tuple(slots[0]),
                                               tx=tuple(slots[1]), c=(cy, cx)))
            if best is None:  # not reached: the leads reach every residue of c_y - c_x
                raise RuntimeError(f"acda dx: no phase kernel for k={k} s={s} p={p} d={d} at {(fy, fx)}")
            if best[1]["n"] > MAX_KERNEL_SIZE:
                return None
            out[(fy, fx)] = best[1]
    return out


def dx_phase_plans(p: dict) -> Tuple[Tuple[int, int], dict]:
    """The phases of dX at stride s for the image size of ``p``: (Ho', Wo'), the one grid on
    which every phase reads dO and A (their own size where it suffices, else a zero-padded or
    cropped copy made once), and {phase: plan or None (no tap reaches it)}, a plan being the
    phase's kernel (``_phase_kernels``) plus Hq, Wq (the phase's pixels) and rows (H', W': the
    rows and columns its kernel computes, the lead ones, the phase's and tail ones, all dropped
    but the phase's; the tail rows make every phase's grid H' + 2p' - d'(n - 1) the same). The
    grid holds every row a real tap reads that has data."""
    k, s, pad, d = p["k"], p["s"], p["p"], p["d"]
    kernels = _phase_kernels(k, s, pad, d)
    if kernels is None:
        raise ValueError(f"acda dx: geometry k={k} s={s} p={pad} d={d} does not run by phase")
    own = tuple(conv_out_size(p[a], k, s, pad, d) for a in "HW")
    phases = {(fy, fx): kernels[(fy, fx)] for fy in range(min(s, p["H"])) for fx in range(min(s, p["W"]))}
    sizes = {f: (len(range(f[0], p["H"], s)), len(range(f[1], p["W"], s))) for f in phases}
    grid = [1, 1]
    for f, kern in phases.items():
        for a in range(2 if kern is not None else 0):
            hq = sizes[f][a]
            natural = hq + kern["lead"][a] + 2 * kern["pad"] - kern["dd"] * (kern["n"] - 1)
            # every row a real tap reads (up to hq - 1 + c) that holds data (< the output's size)
            grid[a] = max(grid[a], natural, min(hq - 1 + kern["c"][a], own[a] - 1) + 1)
    plans = {}
    for f, kern in phases.items():
        if kern is None:
            plans[f] = None
            continue
        extra = kern["dd"] * (kern["n"] - 1) - 2 * kern["pad"]  # H' - Ho'
        plans[f] = dict(kern, Hq=sizes[f][0], Wq=sizes[f][1], rows=tuple(g + extra for g in grid))
    return tuple(grid), plans


def _on_grid(t: Tensor, rows: int, cols: int) -> Tensor:
    """t's last two axes cropped or zero-padded (at the end) to rows x cols, contiguous (a new
    tensor unless t is that size already; negative pads crop)."""
    if t.shape[-2:] == (rows, cols):
        return t
    return torch.nn.functional.pad(t, (0, cols - t.shape[-1], 0, rows - t.shape[-2]))


def _dx_by_phase(p: dict, grad_out: Tensor, coefficients: Tensor, bases: Tensor, dx: Tensor) -> None:
    """dX at stride s > 1, phase by phase: input pixels (fy + s*h', fx + s*w') receive only the
    taps u, v with whole output coordinates, so each phase is a stride-1 dx over dO and A with
    those taps' bases (``dx_phase_plans``): per phase n^2 taps instead of the zero-inserted
    grid's k^2 (k = 7, s = 2, p = 3: 9 or 16 instead of 49), dO and A padded once where the
    phases' grid is not their own size."""
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
        run("acda", "dx", q, dx.dtype, dx.device, g, a, gather_taps(bases, plan["ty"], plan["tx"], axis=1), part)
        view.copy_(part[:, :, ly:ly + plan["Hq"], lx:lx + plan["Wq"]])


@custom_op("dynfilter::acda_atom_conv_grad_input")
def grad_input_op(grad_out: Tensor, input: Tensor, coefficients: Tensor, bases: Tensor, stride: int,
                  padding: int, dilation: int) -> Tensor:
    p = check(input, coefficients, bases, stride, padding, dilation)
    g, a, b = grad_out.to(input.dtype).contiguous(), coefficients.contiguous(), bases.contiguous()
    dx = torch.empty_like(input, memory_format=torch.contiguous_format)
    if dx_by_phase(p, input.device):
        # a recording (bundles, tuning: made on the CPU) also lists the kernel other devices
        # (CUDA) run for this call
        record("acda", "dx", p, input.dtype)
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
