"""ACDA's atom convolution (Wang et al., ICCV 2021) as TE computes, atoms rebuilt on the fly.

    D[n,m,u,v,y,x]   = sum_t A[n,m,t,y,x] * P[t,u,v]                       (per-pixel atoms)
    out[n,c,m,y,x]   = sum_{u,v} X[n,c, y*s + u*d - p, x*s + v*d - p] * D[n,m,u,v,y,x]

zero padding ``p``, output Ho x Wo as ``nn.Conv2d(k, stride=s, padding=p, dilation=d)``.
``A`` holds the M atoms' coefficients over the T multi-scale bases ``P`` (T, k, k); the
layer's 1x1 coefficient convolution over the C*M channels of ``out`` follows in PyTorch.
Layouts (all contiguous): X (N, C, H, W), A (N, M, T, Ho, Wo), out / dO (N, C, M, Ho, Wo).

Kernels: ``fwd`` (X, A, P -> out); ``dx`` (dO, A, P -> dX), the transposed correlation on a
zero-inserted grid with the atoms rebuilt there (at stride s > 1 the bridge may run it by input
phase instead: s x s stride-1 dx calls, each with the bases of its taps); ``datoms`` (dO, X ->
dD, the gradient of the per-pixel atoms, summed over channels: M*k*k values per pixel against
the C*k*k of an unfolded input). The gradients of A and P are small contractions of dD
(matrix products done by the bridge). The atom stage ``atoms`` is per pixel and shared by every channel, so
schedules build it next to the loop that reads it; half types accumulate in float32.

Shape-generic builds: the computes accept ``te.var`` for N, H and W (Ho, Wo follow). Then each
row of 'acc' is computed padded to whole ``X_QUANTUM`` pixels (fwd: ``ROW_TILE``, its heights whole ``FWD_ROWS``; the inputs
read as zeros past the row: a padded input copy, a zero-extended row of coefficients / of
dO), and 'out' stores the real row only, so CPU register tiles have no tail predicate (TVM
bounds a tile under one by 2**31 - 1 elements) and CUDA tiles of up to ``X_QUANTUM`` (fwd:
``ROW_TILE``) pixels need no bounds check; the generic dx computes whole ``DX_ROWS`` input
rows too (CUDA blocks of several rows without a row tail).
``SYMBOLIC`` declares every kernel (``fwd``, ``dx``, ``datoms``): exact at every size (CPU;
CUDA: sm_90 device code, PoCL-checked at several sizes from one lowering). CPU speed, 1 thread,
kernel alone (``benchmarks/bench_acda_kernels.py``, minimum of the thread's CPU time over 15
calls, two runs, 2026-11-30), generic / static at 2x64x56x56 k7: fwd 1.06-1.09, dx 1.04-1.19,
datoms 0.87-0.89 (0.96-0.99 with the rows bounded below, max(Wo, 1), which the CUDA tiles
need: 2026-12-01, RESULTS "Generic ACDA CUDA rows"); at 2x64x28x28 k7 0.69-0.73, 0.45-0.47, 0.53-0.59 (there the static
kernels run half vectors or a predicated tail; the generic rows are padded to 32 px). Before
the generic CPU schedules were reworked (``schedules/acda_cpu.py``, its docstring says what
the generic assembly showed) the same script gave 2.12, 1.42, 1.20 at 56x56 and 1.45, 0.57,
0.62 at 28x28. After the generic tiles were kept in registers (2026-12-02, the three builds in
one process, two runs; RESULTS "ACDA CPU generic tiles in registers"): fwd 1.09-1.11 at 56x56
k7, 1.18-1.21 at k5, 1.10-1.20 at k3, 1.07-1.09 at 28x28; datoms 1.05-1.10 at 56x56; dx (code
unchanged) 1.29-1.48 at 56x56 k7 on that loaded machine; with its tap-row loop rolled at k7
(2026-12-02, ``acda_cpu.DX_ROW_OFFSETS``, three runs in one process) dx 1.17-1.28 at 56x56
k7, 0.66-0.72 at 2x64x28x28 k7. Rows of 'acc' are padded to whole vectors here so that the schedules can cut
the real row's end off whole vector tiles (LoopPartition); nothing in the math changes.
"""
from __future__ import annotations

from tvm import te, tirx

from . import register_kernel
from .common import acc_dtype, cast_out, conv_out_size, dim, zero_insert_pad, zero_pad

MAX_KERNEL_SIZE = 15
SYMBOLIC = ("N", "H", "W")  # every kernel (see the module docstring)
# Generic kernels (W symbolic) compute each row of 'acc' padded to whole X_QUANTUM pixels (a
# whole number of float32 / float64 CPU vectors), the inputs read past the row as zeros, and
# store only the real row ('out'): register tiles then need no tail predicate.
X_QUANTUM = 8
# The generic fwd goes further: its 'acc', its padded input copy ('Xpad') and widened
# coefficients ('Apad') span whole CUDA tiles, rows of whole ROW_TILE pixels and heights of
# whole FWD_ROWS rows, so that a tile of FWD_ROWS (or one) rows x ROW_TILE pixels has no tail
# and its window provably lies inside the copies at every size (its stages then have a
# constant size; ``schedules.acda_cuda.fwd_rows_shape``); the pixels and rows past the image
# compute zeros and are never stored. (Was rows of whole 32 pixels, heights unpadded, a 1 x 32
# tile: 2x / 4x the static build's work on rows of 14 / 7 pixels.) The CPU schedules compute
# 'acc' only at the stored vector tiles (whole X_QUANTUM pixels): there only the copies grow.
ROW_TILE = 8
FWD_ROWS = 2
# The generic dx computes 'acc' (and its atoms, and the zero-inserted grids below them) over
# whole DX_ROWS input rows, so that a CUDA block of DX_ROWS rows (or a divisor) x X_QUANTUM
# pixels has no row tail and its staged windows provably lie inside the grids (stages of a
# constant size; ``schedules.acda_cuda.dx_tile``); the rows past the image compute zeros and
# are never stored. The CPU schedule computes 'acc' only at the stored rows: there the grids
# grow by the padded rows (bench_acda_kernels.py --kernels dx, 1 thread, 2026-12-02, generic /
# static at 2x64xHxW k7: 1.18 / 0.73 / 0.39 at H = W = 56 / 28 / 14; the run before, with the
# grids max(H, 1) + p + e rows: 1.15 / 0.71 / 0.32; separate runs on a loaded machine).
DX_ROWS = 12
# The generic datoms computes 'acc' over heights of whole DATOMS_ROWS rows too ('Xpad' and
# 'dOpad' grown with them): a CUDA block of DATOMS_ROWS rows x X_QUANTUM pixels stages its
# input window once for both rows (``schedules.acda_cuda._datoms_block``); the CPU schedule
# computes 'acc' only at the stored rows.
DATOMS_ROWS = 2


def check_params(N, C, H, W, M, T, k, s, d, p) -> None:
    """Raise ValueError naming the first bad parameter; symbolic ones (``te.var``) are checked
    at the call, by the bridge."""
    for name, val in (("batch", N), ("channels", C), ("height", H), ("width", W),
                      ("num_atoms", M), ("num_bases", T), ("stride", s), ("dilation", d)):
        if _static(val) and val < 1:
            raise ValueError(f"{name} must be >= 1, got {val}")
    if not 1 <= k <= MAX_KERNEL_SIZE:
        raise ValueError(f"kernel_size must be in [1, {MAX_KERNEL_SIZE}], got {k}")
    if p < 0:
        raise ValueError(f"padding must be >= 0, got {p}")
    for n in (H, W):
        if _static(n) and conv_out_size(n, k, s, p, d) < 1:
            raise ValueError(f"a {k}x{k} kernel (dilation {d}) does not fit the padded {H}x{W} input")


def _static(val) -> bool:
    return isinstance(val, int)


def _whole_vectors(n, quantum: int = X_QUANTUM):
    """A symbolic length rounded up to whole ``quantum`` (X_QUANTUM pixels; fwd's rows
    ROW_TILE, dx's heights DX_ROWS); static lengths stay (:func:`whole` gives a generic
    build's padded length at a static size)."""
    # max(n, 1): TVM does not know that a size is positive; bounded below, a CUDA tile's staged
    # row segment provably fits the padded row (a stage of constant size)
    return n if _static(n) else tirx.floordiv(tirx.max(n, 1) + (quantum - 1), quantum) * quantum


def whole(n: int, quantum: int = X_QUANTUM) -> int:
    """What :func:`_whole_vectors` makes of a symbolic length, at the static size ``n``: max(n,
    1) rounded up to whole ``quantum`` (the generic builds' padded rows and heights, as
    ``gpu_report`` counts their tiles)."""
    return (max(n, 1) + quantum - 1) // quantum * quantum


def _pad_to(t: te.Tensor, pad: int, width, name: str, height=None) -> te.Tensor:
    """``t``'s last two axes padded by ``pad`` zeros on each side, the last one then by zeros
    up to ``width`` (a generic kernel's rows padded to whole vectors)."""
    *lead, h, w = (dim(n) for n in t.shape)

    def body(*i):
        *j, y, x = i
        inside = tirx.all(y >= pad, y < h + pad, x >= pad, x < w + pad)
        return tirx.if_then_else(inside, t(*j, y - pad, x - pad), tirx.const(0, t.dtype))

    # (a symbolic height bounded below, as _whole_vectors: a CUDA tile's staged window of
    # (k-1)*d + 1 rows then provably fits the padded rows)
    rows = h + 2 * pad if _static(h) else tirx.max(h, 1) + 2 * pad
    return te.compute((*lead, rows if height is None else height, width), body, name=name)


def _widen(t: te.Tensor, width, name: str, height=None) -> te.Tensor:
    """``t`` with its last axis extended by zeros to ``width`` (and the one before to
    ``height``)."""
    *lead, h, w = (dim(n) for n in t.shape)
    if height is None:
        return te.compute((*lead, h, width), lambda *i: tirx.if_then_else(
            i[-1] < w, t(*i), tirx.const(0, t.dtype)), name=name)
    return te.compute((*lead, height, width), lambda *i: tirx.if_then_else(
        tirx.all(i[-2] < h, i[-1] < w), t(*i), tirx.const(0, t.dtype)), name=name)


def _cast_rows(acc: te.Tensor, shape, dtype: str) -> te.Tensor:
    """The cast stage ('out') over ``shape``: the leading part of a row-padded ``acc``."""
    return te.compute(shape, lambda *i: acc(*i).astype(dtype), name="out")


def _placeholders(N, C, H, W, M, T, k, s, d, p, dtype):
    Ho, Wo = conv_out_size(H, k, s, p, d), conv_out_size(W, k, s, p, d)
    X = te.placeholder((N, C, H, W), dtype, name="X")
    A = te.placeholder((N, M, T, Ho, Wo), dtype, name="A")
    P = te.placeholder((T, k, k), dtype, name="P")
    dO = te.placeholder((N, C, M, Ho, Wo), dtype, name="dO")
    return X, A, P, dO


def _atoms(A: te.Tensor, P: te.Tensor, acc: str) -> te.Tensor:
    """atoms[n,m,u,v,y,x] = sum_t A[n,m,t,y,x] * P[t,u,v], over A's grid."""
    N, M, T, Hg, Wg = A.shape
    k = P.shape[1]
    t = te.reduce_axis((0, T), "t")
    return te.compute(
        (N, M, k, k, Hg, Wg),
        lambda n, m, u, v, y, x: te.sum(A[n, m, t, y, x].astype(acc) * P[t, u, v].astype(acc), axis=t),
        name="atoms")


@register_kernel("acda", "fwd")
def acda_fwd(N, C, H, W, M, T, k, s, d, p, dtype):
    check_params(N, C, H, W, M, T, k, s, d, p)
    X, A, P, dO = _placeholders(N, C, H, W, M, T, k, s, d, p, dtype)
    acc_t = acc_dtype(dtype)
    if _static(W):
        Xp, D, shape = zero_pad(X, p, "Xpad"), _atoms(A, P, acc_t), dO.shape
    else:  # rows of whole vectors (see the module docstring)
        Wt = _whole_vectors(dO.shape[-1], ROW_TILE)  # rows and copies of whole CUDA tiles (see ROW_TILE)
        Ht = _whole_vectors(dO.shape[-2], FWD_ROWS)  # heights of whole CUDA tiles (see FWD_ROWS)
        Xp = _pad_to(X, p, (Wt - 1) * s + d * (k - 1) + 1, "Xpad", (Ht - 1) * s + d * (k - 1) + 1)
        D = _atoms(_widen(A, Wt, "Apad", Ht), P, acc_t)
        shape = (*dO.shape[:-2], Ht, Wt)
    u = te.reduce_axis((0, k), "u")
    v = te.reduce_axis((0, k), "v")
    acc = te.compute(
        shape,
        lambda n, c, m, y, x: te.sum(
            Xp[n, c, y * s + u * d, x * s + v * d].astype(acc_t) * D[n, m, u, v, y, x], axis=[u, v]),
        name="acc")
    return [X, A, P, cast_out(acc, dtype) if _static(W) else _cast_rows(acc, dO.shape, dtype)]


@register_kernel("acda", "dx")
def acda_dx(N, C, H, W, M, T, k, s, d, p, dtype):
    """dX[h] = sum_{m,u} dO[y] D[u, y] over y*s = h + p - u*d. On the zero-inserted grid with
    index Y = y*s + e, e = d*(k-1), that is a stride-1 correlation at Y = h + p + e - u*d.

    The atoms are indexed by the input pixel they serve, ``atoms[n,m,u,v,h,w]`` = the atom tap
    (u, v) at grid point (h + p + e - u*d, w + p + e - v*d): each grid point's tap serves
    exactly one input pixel, so this is the grid's atoms re-indexed (no extra work), and a tile
    of input pixels needs M*k*k atoms per pixel, like the forward, instead of the bounding box
    of its k x k windows on the grid. Schedules build them per tile (CUDA: shared memory) or
    per row (CPU), never grid-wide."""
    check_params(N, C, H, W, M, T, k, s, d, p)
    X, A, P, dO = _placeholders(N, C, H, W, M, T, k, s, d, p, dtype)
    acc_t = acc_dtype(dtype)
    e = d * (k - 1)
    Wq = _whole_vectors(W)  # generic: rows of whole vectors (see the module docstring)
    Hr = _whole_vectors(H, DX_ROWS)  # generic: whole blocks of rows (see DX_ROWS)
    grid = (Hr + p + e, W + p + e if _static(W) else _whole_vectors(Wq + p + e))
    dOu = zero_insert_pad(dO, s, e, grid, "dOu")
    Au = zero_insert_pad(A, s, e, grid, "Au")
    t = te.reduce_axis((0, T), "t")
    atoms = te.compute(
        (N, M, k, k, Hr, Wq),
        lambda n, m, u, v, h, w: te.sum(
            Au[n, m, t, h + p + e - u * d, w + p + e - v * d].astype(acc_t) * P[t, u, v].astype(acc_t), axis=t),
        name="atoms")
    m = te.reduce_axis((0, M), "m")
    u = te.reduce_axis((0, k), "u")
    v = te.reduce_axis((0, k), "v")

    def body(n, c, h, w):
        Y, X_ = h + p + e - u * d, w + p + e - v * d
        return te.sum(dOu[n, c, m, Y, X_].astype(acc_t) * atoms[n, m, u, v, h, w], axis=[m, u, v])

    acc = te.compute((N, C, Hr, Wq), body, name="acc")
    return [dO, A, P, cast_out(acc, dtype) if _static(W) else _cast_rows(acc, X.shape, dtype)]


@register_kernel("acda", "datoms")
def acda_datoms(N, C, H, W, M, T, k, s, d, p, dtype):
    """dD[n,m,u,v,y,x] = sum_c dO[n,c,m,y,x] * Xpad[n,c,y*s+u*d,x*s+v*d], in the accumulation
    type (the bridge contracts it with A and P in that precision)."""
    check_params(N, C, H, W, M, T, k, s, d, p)
    X, A, P, dO = _placeholders(N, C, H, W, M, T, k, s, d, p, dtype)
    acc_t = acc_dtype(dtype)
    Ho, Wo = dO.shape[-2:]
    if _static(W):
        Xp, dOw, Wq = zero_pad(X, p, "Xpad"), dO, Wo
    else:  # rows of whole vectors (see the module docstring)
        Wq = _whole_vectors(Wo)
        Ho = _whole_vectors(Ho, DATOMS_ROWS)  # heights of whole CUDA tiles (see DATOMS_ROWS)
        Xp = _pad_to(X, p, (Wq - 1) * s + d * (k - 1) + 1, "Xpad", (Ho - 1) * s + d * (k - 1) + 1)
        dOw = _widen(dO, Wq, "dOpad", Ho)
    c = te.reduce_axis((0, C), "c")
    acc = te.compute(
        (N, M, k, k, Ho, Wq),
        lambda n, m, u, v, y, x: te.sum(
            dOw[n, c, m, y, x].astype(acc_t) * Xp[n, c, y * s + u * d, x * s + v * d].astype(acc_t), axis=c),
        name="acc")
    if _static(W):
        return [dO, X, cast_out(acc, acc_t)]
    return [dO, X, _cast_rows(acc, (N, M, k, k, *dO.shape[-2:]), acc_t)]
