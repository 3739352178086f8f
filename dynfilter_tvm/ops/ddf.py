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

``dx`` at stride s > 1 visits only the taps that reach each input pixel, per output phase
(:func:`ddf_dx`): at k = 3, s = 2 that is 2.25 taps per pixel on average, against 9 on the
zero-inserted grid it used before (the s^2 = 4 times the needed work of issue 15, item 5).

Shape-generic: B, H and W may be symbolic (``te.var``; ``SYMBOLIC`` below), so one build serves
every batch and image size; Ho, Wo are then the expressions ceil(H/s), ceil(W/s). Channels,
heads, k, s, d and combine stay static: they shape the schedules (vector tiles, unrolled taps,
thread layouts) and vary little within a model. Generic kernels compute each row of 'acc'
('acc_cols' in dc) padded to whole ``ROW_QUANTUM`` pixels (inputs read as zeros past the row:
padded copies of X, of S's rows ('Spad': fwd, dc), of dO ('dOpad': ds, dc; 'dOp': dx) and S
(dx)), and 'out' stores the real row (dc's 'acc' sums the real columns), so the CPU vector tiles
have no tail predicate (a predicated tile runs scalar); fwd's rows are whole ``FWD_ROW_QUANTUM``
pixels and its rows whole pairs (``FWD_ROWS``; 'Spad' pads S's rows too), which its CPU register
tiles span; dx's stride-1 rows are whole ``FWD_ROW_QUANTUM`` pixels too (``dx_grid``). The CUDA
schedules inline these copies
(index checks in the loads). Static kernels compute their exact rows.
"""
from __future__ import annotations

import math

from tvm import te, tirx

from . import register_kernel
from .common import acc_dtype, cast_out, dim, out_size, zero_pad

COMBINES = ("mul", "add")
MAX_KERNEL_SIZE = 31
# Every kernel builds once for any batch and size with these symbolic (tests/test_generic_ddf.py):
# what CPU calls use by default, CUDA calls wherever the generic CUDA build is tiled
# (dispatch.OP_DEFAULT_MODES), and what bundles written without --input hold. Generic / static
# CPU time, 1 thread, kernels alone, same process (benchmarks/RESULTS.md "DDF CPU generic row
# pairs, strided dx grid", the newest, and the sections before it): fwd 1.30 / 1.08 / 1.14 /
# 1.03 at 56², 28², 14² k3, 56² k7 (0.77 at 56² s2), dx 1.06-1.18 at stride 1 k3 (0.95 at
# k7), 1.33 at 56² s2; ds 0.82-1.12, dc 0.65-1.18 (0.83 and 1.02-1.04 at s2).
SYMBOLIC = ("B", "H", "W")
# Generic kernels (and dx at any stride > 1) compute each row of 'acc' padded to whole
# ROW_QUANTUM pixels (a whole number of float32 / float64 CPU vectors), the inputs read past the
# row as zeros, and store only the real row ('out'): register tiles then need no tail predicate.
ROW_QUANTUM = 8
# fwd's generic rows: whole 16-pixel vectors (one AVX-512 register of float32, two of float64),
# the CPU schedule's vectors (schedules/ddf_cpu.py fwd: twice the throughput of 8 lanes).
FWD_ROW_QUANTUM = 16
# and whole pairs of output rows, which its register tiles span (each X row then serves two
# taps of the pair: loaded once)
FWD_ROWS = 2


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


def _static(n) -> bool:
    return isinstance(n, int)


def _round_up(n, q: int):
    """``n`` rounded up to a multiple of ``q`` (an int, or an expression when symbolic)."""
    return -(-n // q) * q if _static(n) else tirx.floordiv(n + (q - 1), q) * q


def _whole_vectors(n):
    """A symbolic row length rounded up to whole ``ROW_QUANTUM`` (static lengths stay)."""
    return n if _static(n) else _round_up(n, ROW_QUANTUM)


def _pad_box(t: te.Tensor, top: int, left: int, height, width, name: str) -> te.Tensor:
    """``t``'s last two axes placed at (top, left) in a zero (height x width) plane."""
    *lead, h, w = (dim(n) for n in t.shape)

    def body(*i):
        *j, y, x = i
        yy, xx = y - top, x - left
        inside = tirx.all(yy >= 0, yy < h, xx >= 0, xx < w)
        return tirx.if_then_else(inside, t(*j, yy, xx), tirx.const(0, t.dtype))

    return te.compute((*lead, height, width), body, name=name)


def _pad_rows(t: te.Tensor, pad: int, width, name: str) -> te.Tensor:
    """Zero padding ``pad`` on each side, the rows then zero-extended to ``width``."""
    h = dim(t.shape[-2])
    return _pad_box(t, pad, pad, h + 2 * pad, width, name)


def _widen(t: te.Tensor, width, name: str) -> te.Tensor:
    """``t`` with its last axis extended by zeros to ``width``."""
    w = dim(t.shape[-1])
    return te.compute((*t.shape[:-1], width), lambda *i: tirx.if_then_else(
        i[-1] < w, t(*i), tirx.const(0, t.dtype)), name=name)


def _cast_rows(acc: te.Tensor, shape, dtype: str) -> te.Tensor:
    """The cast stage ('out') over ``shape``: the leading part of a row-padded ``acc``."""
    return te.compute(shape, lambda *i: acc(*i).astype(dtype), name="out")


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
    if _static(W):
        Xp, Sr, shape = zero_pad(X, p, "Xpad"), S, dO.shape
    else:  # rows of whole vectors, whole pairs of rows ('Spad' pads S's rows and columns)
        Hq, Wq = (_round_up(tirx.max(n, 1), q) for n, q in zip(dO.shape[-2:], (FWD_ROWS, FWD_ROW_QUANTUM)))
        Xp = _pad_box(X, p, p, (Hq - 1) * s + d * (k - 1) + 1, (Wq - 1) * s + d * (k - 1) + 1, "Xpad")
        Sr, shape = _pad_box(S, 0, 0, Hq, Wq, "Spad"), (*dO.shape[:-2], Hq, Wq)
    acc = _tap_sum(shape, k, lambda b, g, c, y, x, u, v: (
        Xp[b, g, c, y * s + u * d, x * s + v * d].astype(acc_t)
        * _combine(combine, Sr[b, g, u, v, y, x], Cf[b, g, c, u, v], acc_t)))
    return [X, S, Cf, _cast_rows(acc, dO.shape, dtype)]


def _phase_taps(k: int, s: int, d: int):
    """The taps of each output phase of the adjoint (see :func:`ddf_dx`). With g = gcd(s, d)
    and m = s/g, phase r (of t = h + p, r = t mod s) has taps iff g | r, namely u = u0(r) + j*m
    for j in [0, nj = ceil(k/m)) while u < k, u0(r) being the smallest u with u*d = r (mod s);
    each reads y = (t - u*d)/s = t//s - q0(r) - j*d/g, q0(r) = (u0(r)*d - r)/s.
    Returns (nj, m, d/g, u0, q0, valid): u0 and q0 map an int or an expression r, ``valid(r,
    j)`` is the condition that (r, j) is a tap, None where every (r, j) is one (s = 1, say)."""
    g = math.gcd(s, d)
    m, dg = s // g, d // g
    inv = pow(dg, -1, m) if m > 1 else 0
    nj = -(-k // m)

    def u0(r):
        if m == 1:
            return 0
        return (r // g * inv) % m if isinstance(r, int) else tirx.floormod(tirx.floordiv(r, g) * inv, m)

    def q0(r):
        return (u0(r) * d - r) // s if isinstance(r, int) else tirx.floordiv(u0(r) * d - r, s)

    def valid(r, j):
        conds = ([tirx.floormod(r, g) == 0] if g > 1 else []) + ([u0(r) + j * m < k] if nj * m > k else [])
        return tirx.all(*conds) if conds else None

    return nj, m, dg, u0, q0, valid


def dx_grid(H, W, k: int, s: int, d: int):
    """(Ha, Wa): dx's phase grid over hh = h + (p mod s) (see :func:`ddf_dx`), whole multiples of
    s rows and of s*ROW_QUANTUM columns (whole vector tiles per phase: a tail predicate would
    make TVM's vectorizer give up), exactly H x W at stride 1 (static widths). Generic widths
    at stride 1: H rows of whole FWD_ROW_QUANTUM columns, as fwd's rows (the CPU register
    tiles' 16-lane vectors: schedules/ddf_cpu.py dx; rounding the rows to pairs too made the
    generic CUDA dx's stages non-constant, so it fell back to a thread per output). The
    generic CUDA dx tiles this grid: ceil(round16(W) / 15) column blocks instead of
    ceil(round8(W) / 15): at most one more, all padding, only where W mod 16 is 1..8 (56 px: 5,
    was 4)."""
    pm = (k - 1) // 2 * d % s
    if s == 1 and not _static(W):
        return H, _round_up(tirx.max(W, 1), FWD_ROW_QUANTUM)
    Wa = W if s == 1 else _round_up(W + pm, s * ROW_QUANTUM)
    return _round_up(H + pm, s), Wa


@register_kernel("ddf", "dx")
def ddf_dx(B, C, H, W, G, k, s, d, combine, dtype):
    """dX[h] = sum_u dO[y] F[u, y] over the (u, y) with y*s = h + p - u*d (per axis; the width
    alike), without zero insertion: with t = h + p, only the taps with u*d = t (mod s) reach
    h, ceil(k/m) or fewer per axis (:func:`_phase_taps`) instead of k on an s-times
    zero-inserted grid: each tap reaches about H/s rows either way, so about s^2 less work in
    2-D (the ceil(k/m)^2 tap iterations per pixel include masked ones). 'acc' runs over the
    grid hh = h + (p mod s), rounded up to whole multiples of s per axis (of s*ROW_QUANTUM
    columns for s > 1, FWD_ROW_QUANTUM in generic builds at stride 1: whole vector tiles per
    phase, no tail predicate, which would make TVM's vectorizer give up; :func:`dx_grid`), so
    that hh = s*hq + r, r the phase of t: a schedule that splits hh by s has one phase per loop
    and taps that read contiguous rows of dO and S (copies 'dOp', 'Sp' padded with zeros so that
    every tap index of every phase is inside; taps past k are masked, their tap index clamped,
    though TVM may drop the clamp under the mask, whose load is never issued). 'out' stores the
    real dX = acc[h + p mod s]; generic builds at s > 1 compute acc shifted by p mod s (acc[h]
    holds the grid's h + p mod s, its copies one row and column longer), so that the CPU's
    vector tiles start at dX's first column: with the grid's own origin the first tile of
    every row held p mod s columns left of dX and stored lane by lane, as the last does
    (generic / static dx 1.46 -> 1.33 at 56² k3 s2; RESULTS.md). Stride 1: one phase, k
    taps, the correlation of the padded dO as before."""
    check_params(B, C, H, W, G, k, s, d, combine)
    X, S, Cf, dO = _inputs(B, C, H, W, G, k, s, dtype)
    acc_t, p = acc_dtype(dtype), (k - 1) // 2 * d
    nj, m, dg, u0, q0, valid = _phase_taps(k, s, d)
    pm, ps = p % s, p // s
    Ha, Wa = dx_grid(H, W, k, s, d)
    # row read: y = hq + ps - (q0(r) + j*dg), hq in [0, Ha/s); padded index Y = y + e >= 0
    offs = [q0(r) + jj * dg for r in range(s) for jj in range(nj)]
    e = max(0, max(offs) - ps)
    # generic builds: the grid shifted by pm (acc's column w holds the grid's w + pm), so
    # that its vector tiles start at dX's first column, not pm columns left of it
    sh = pm if s > 1 and not _static(W) else 0
    size = [(n // s if _static(n) else tirx.floordiv(n, s)) + ps + e - min(offs) + (1 if sh else 0) for n in (Ha, Wa)]
    dOp = _pad_box(dO, e, e, *size, "dOp")
    Sp = _pad_box(S, e, e, *size, "Sp")
    j = te.reduce_axis((0, nj), "j")
    i = te.reduce_axis((0, nj), "i")

    def tap(u):  # masked taps past k keep their indices inside S and C
        return tirx.min(u, k - 1) if nj * m > k else u

    def body(b, g, c, hh, ww):
        if sh:
            hh, ww = hh + sh, ww + sh
        ry, rx = tirx.floormod(hh, s), tirx.floormod(ww, s)
        u, v = tap(u0(ry) + j * m), tap(u0(rx) + i * m)
        Y = tirx.floordiv(hh, s) + ps + e - q0(ry) - j * dg
        X_ = tirx.floordiv(ww, s) + ps + e - q0(rx) - i * dg
        term = dOp[b, g, c, Y, X_].astype(acc_t) * _combine(combine, Sp[b, g, u, v, Y, X_], Cf[b, g, c, u, v], acc_t)
        ok = [cond for cond in (valid(ry, j), valid(rx, i)) if cond is not None]
        if ok:
            term = tirx.if_then_else(tirx.all(*ok), term, tirx.const(0, acc_t))
        return te.sum(term, axis=[j, i])

    acc = te.compute((B, G, C // G, Ha, Wa), body, name="acc")
    out = te.compute(X.shape, lambda b, g, c, h, w: acc[b, g, c, h + (pm - sh), w + (pm - sh)].astype(dtype), name="out")
    return [dO, S, Cf, out]


def _grad_inputs(X, dO, p: int, k: int, s: int, d: int):
    """ds and dc: (Xp, dOr, row length of 'acc'): static widths the padded X and dO as they are;
    generic ones X's padded rows and dO's rows (zeros past the row, 'dOpad') widened to whole
    ``ROW_QUANTUM`` pixels, so every vector tile of a row is whole (no scalar tail)."""
    Wo = dim(dO.shape[-1])
    if _static(Wo):
        return zero_pad(X, p, "Xpad"), dO, Wo
    # max(Wo, 1): TVM does not know that a size is positive; bounded below, the regions it
    # derives under a row tile ('out' in ds, 'acc' in dc) keep a plain x < Wo, which
    # LoopPartition cuts (else a disjunction it cannot, and those loops run scalar)
    Wq = _round_up(tirx.max(Wo, 1), ROW_QUANTUM)
    return _pad_rows(X, p, (Wq - 1) * s + d * (k - 1) + 1, "Xpad"), _widen(dO, Wq, "dOpad"), Wq


@register_kernel("ddf", "ds")
def ddf_ds(B, C, H, W, G, k, s, d, combine, dtype):
    """dS[b,g,u,v,y,x] = sum_c dO[c,y,x] X[c, y*s + u*d - p, x*s + v*d - p] (* C[c,u,v]).
    Generic builds: 'acc' over rows of whole vectors (:func:`_grad_inputs`), 'out' the real
    rows; the padded columns of 'acc' are never stored (only their reads must stay inside)."""
    check_params(B, C, H, W, G, k, s, d, combine)
    X, S, Cf, dO = _inputs(B, C, H, W, G, k, s, dtype)
    acc_t, p = acc_dtype(dtype), (k - 1) // 2 * d
    Xp, dOr, Wq = _grad_inputs(X, dO, p, k, s, d)
    c = te.reduce_axis((0, C // G), "c")

    def body(b, g, u, v, y, x):
        prod = dOr[b, g, c, y, x].astype(acc_t) * Xp[b, g, c, y * s + u * d, x * s + v * d].astype(acc_t)
        return te.sum(prod * Cf[b, g, c, u, v].astype(acc_t) if combine == "mul" else prod, axis=c)

    acc = te.compute((*S.shape[:-1], Wq), body, name="acc")
    return [dO, X, Cf, _cast_rows(acc, S.shape, dtype)]


@register_kernel("ddf", "dc")
def ddf_dc(B, C, H, W, G, k, s, d, combine, dtype):
    """dC[b,g,c,u,v] = sum_{y,x} dO[c,y,x] X[c, y*s + u*d - p, x*s + v*d - p] (* S[u,v,y,x]).
    Generic builds: 'acc_cols' over rows of whole vectors (:func:`_grad_inputs`, and S's rows
    widened, 'Spad'), 'acc' sums only the real columns (so a GPU schedule that computes
    acc_cols where acc reads it does no padded work)."""
    check_params(B, C, H, W, G, k, s, d, combine)
    X, S, Cf, dO = _inputs(B, C, H, W, G, k, s, dtype)
    acc_t, p = acc_dtype(dtype), (k - 1) // 2 * d
    Ho, Wo = out_size(H, s), out_size(W, s)
    Xp, dOr, Wq = _grad_inputs(X, dO, p, k, s, d)
    Sr = S if _static(Wo) else _widen(S, Wq, "Spad")
    # Sum over the image in two steps, columns first (acc_cols: per-x partial sums over y),
    # so that both CPU vector lanes and GPU threads have an independent axis to work on.
    y = te.reduce_axis((0, Ho), "y")

    def cols(b, g, c, u, v, x):
        prod = dOr[b, g, c, y, x].astype(acc_t) * Xp[b, g, c, y * s + u * d, x * s + v * d].astype(acc_t)
        return te.sum(prod * Sr[b, g, u, v, y, x].astype(acc_t) if combine == "mul" else prod, axis=y)

    acc_cols = te.compute((B, G, C // G, k, k, Wq), cols, name="acc_cols")
    x = te.reduce_axis((0, Wo), "x")
    acc = te.compute(Cf.shape, lambda b, g, c, u, v: te.sum(acc_cols[b, g, c, u, v, x], axis=x), name="acc")
    return [dO, X, S, cast_out(acc, dtype)]
