"""DDF, the decoupled dynamic filter (Zhou et al., CVPR 2021), as TE computes.

    out[b,c,y,x] = sum_{u,v} X[b,c, y*s + u*d - p, x*s + v*d - p] * F[b,c,u,v,y,x]
    F = S[b, head(c), u, v, y, x] * C[b,c,u,v]   (combine='mul')   or   S + C   ('add')

zero padding p = (k-1)/2*d, output ceil(H/s) x ceil(W/s) (what ``nn.Conv2d(k, stride=s,
padding=p, dilation=d)`` gives). Channels split into ``G`` heads of ``Cg`` channels; each head
has its own spatial filter. The kernels see grouped, contiguous layouts, which the bridge
makes with free views:

    X  (B, G, Cg, H, W)        S  (B, G, k, k, Ho, Wo)      C (B, G, Cg, k, k)
    out / dO (B, G, Cg, Ho, Wo)

Kernels: ``fwd`` (X, S, C -> out), ``dx`` (dO, S, C -> dX), ``ds`` (dO, X, C -> dS, summed over
the head's channels), ``dc`` (dO, X, S -> dC, summed over y, then x). Low-precision inputs
accumulate in float32, float64 in float64; each result is cast back to the input dtype by a
separate ``out`` stage, so schedules can keep the accumulator in registers.

Shape-generic: B, H and W may be symbolic (``te.var``; ``SYMBOLIC`` below), so one build serves
every batch and image size; Ho, Wo are then the expressions ceil(H/s), ceil(W/s). Channels,
heads, k, s, d and combine stay static: they shape the schedules (vector tiles, unrolled taps,
thread layouts) and vary little within a model.
"""
from __future__ import annotations

from tvm import te

from . import register_kernel
from .common import acc_dtype, cast_out, out_size, zero_insert_pad, zero_pad

COMBINES = ("mul", "add")
MAX_KERNEL_SIZE = 31
# Every kernel builds once for any batch and size with these symbolic (tests/test_generic_ddf.py).
# Bundles written without --input use them; JIT calls only in the generic shape mode, since the
# generic CPU kernels take 1.1-1.8x the static time on 28-56 pixel rows and 2.6-4x on 14 pixel
# rows for now (a row's partial vector tile runs scalar; benchmarks/bench_generic.py --op ddf).
SYMBOLIC = ("B", "H", "W")


def check_params(B, C, H, W, G, k, s, d, combine) -> None:
    """Raise ValueError naming the first bad parameter (symbolic sizes are not checked)."""
    for name, val in (("batch", B), ("channels", C), ("height", H), ("width", W)):
        if isinstance(val, int) and val < 1:
            raise ValueError(f"{name} must be >= 1, got {val}")
    if not (isinstance(k, int) and 1 <= k <= MAX_KERNEL_SIZE and k % 2 == 1):
        raise ValueError(f"kernel_size must be an odd integer in [1, {MAX_KERNEL_SIZE}], got {k!r}")
    if s < 1:
        raise ValueError(f"stride must be >= 1, got {s}")
    if d < 1:
        raise ValueError(f"dilation must be >= 1, got {d}")
    if G < 1 or C % G:
        raise ValueError(f"head count {G} must be >= 1 and divide the {C} channels")
    if combine not in COMBINES:
        raise ValueError(f"kernel_combine must be one of {COMBINES}, got {combine!r}")


def _combine(combine: str, s_val, c_val, acc: str):
    s_val, c_val = s_val.astype(acc), c_val.astype(acc)
    return s_val * c_val if combine == "mul" else s_val + c_val


def _inputs(B, C, H, W, G, k, s, dtype):
    Cg, Ho, Wo = C // G, out_size(H, s), out_size(W, s)
    X = te.placeholder((B, G, Cg, H, W), dtype, name="X")
    S = te.placeholder((B, G, k, k, Ho, Wo), dtype, name="S")
    Cf = te.placeholder((B, G, Cg, k, k), dtype, name="C")
    dO = te.placeholder((B, G, Cg, Ho, Wo), dtype, name="dO")
    return X, S, Cf, dO


def _tap_sum(shape, k, term):
    """acc[b,g,c,y,x] = sum over the k x k taps (u, v) of term(b, g, c, y, x, u, v)."""
    u = te.reduce_axis((0, k), "u")
    v = te.reduce_axis((0, k), "v")
    return te.compute(shape, lambda b, g, c, y, x: te.sum(term(b, g, c, y, x, u, v), axis=[u, v]), name="acc")


@register_kernel("ddf", "fwd")
def ddf_fwd(B, C, H, W, G, k, s, d, combine, dtype):
    check_params(B, C, H, W, G, k, s, d, combine)
    X, S, Cf, dO = _inputs(B, C, H, W, G, k, s, dtype)
    acc_t, p = acc_dtype(dtype), (k - 1) // 2 * d
    Xp = zero_pad(X, p, "Xpad")
    acc = _tap_sum(dO.shape, k, lambda b, g, c, y, x, u, v: (
        Xp[b, g, c, y * s + u * d, x * s + v * d].astype(acc_t)
        * _combine(combine, S[b, g, u, v, y, x], Cf[b, g, c, u, v], acc_t)))
    return [X, S, Cf, cast_out(acc, dtype)]


@register_kernel("ddf", "dx")
def ddf_dx(B, C, H, W, G, k, s, d, combine, dtype):
    check_params(B, C, H, W, G, k, s, d, combine)
    X, S, Cf, dO = _inputs(B, C, H, W, G, k, s, dtype)
    acc_t, p = acc_dtype(dtype), (k - 1) // 2 * d
    # dX[h] = sum_u dO[y] F[u, y] over y*s = h + p - u*d; on the zero-inserted grid
    # (index Y = y*s + p) that is a stride-1 correlation at Y = h + 2p - u*d.
    grid = (H + 2 * p, W + 2 * p)
    dOu = zero_insert_pad(dO, s, p, grid, "dOu")
    Su = zero_insert_pad(S, s, p, grid, "Su")

    def term(b, g, c, h, w, u, v):
        Y, X_ = h + 2 * p - u * d, w + 2 * p - v * d
        return dOu[b, g, c, Y, X_].astype(acc_t) * _combine(combine, Su[b, g, u, v, Y, X_], Cf[b, g, c, u, v], acc_t)

    return [dO, S, Cf, cast_out(_tap_sum(X.shape, k, term), dtype)]


@register_kernel("ddf", "ds")
def ddf_ds(B, C, H, W, G, k, s, d, combine, dtype):
    check_params(B, C, H, W, G, k, s, d, combine)
    X, S, Cf, dO = _inputs(B, C, H, W, G, k, s, dtype)
    acc_t, p = acc_dtype(dtype), (k - 1) // 2 * d
    Xp = zero_pad(X, p, "Xpad")
    c = te.reduce_axis((0, C // G), "c")

    def body(b, g, u, v, y, x):
        prod = dO[b, g, c, y, x].astype(acc_t) * Xp[b, g, c, y * s + u * d, x * s + v * d].astype(acc_t)
        return te.sum(prod * Cf[b, g, c, u, v].astype(acc_t) if combine == "mul" else prod, axis=c)

    acc = te.compute(S.shape, body, name="acc")
    return [dO, X, Cf, cast_out(acc, dtype)]


@register_kernel("ddf", "dc")
def ddf_dc(B, C, H, W, G, k, s, d, combine, dtype):
    check_params(B, C, H, W, G, k, s, d, combine)
    X, S, Cf, dO = _inputs(B, C, H, W, G, k, s, dtype)
    acc_t, p = acc_dtype(dtype), (k - 1) // 2 * d
    Ho, Wo = out_size(H, s), out_size(W, s)
    Xp = zero_pad(X, p, "Xpad")
    # Sum over the image in two steps, columns first (acc_cols: per-x partial sums over y),
    # so that both CPU vector lanes and GPU threads have an independent axis to work on.
    y = te.reduce_axis((0, Ho), "y")

    def cols(b, g, c, u, v, x):
        prod = dO[b, g, c, y, x].astype(acc_t) * Xp[b, g, c, y * s + u * d, x * s + v * d].astype(acc_t)
        return te.sum(prod * S[b, g, u, v, y, x].astype(acc_t) if combine == "mul" else prod, axis=y)

    acc_cols = te.compute((B, G, C // G, k, k, Wo), cols, name="acc_cols")
    x = te.reduce_axis((0, Wo), "x")
    acc = te.compute(Cf.shape, lambda b, g, c, u, v: te.sum(acc_cols[b, g, c, u, v, x], axis=x), name="acc")
    return [dO, X, S, cast_out(acc, dtype)]
