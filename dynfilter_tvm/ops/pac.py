"""Pixel-adaptive convolution (Su et al., CVPR 2019) as TE computes, never unfolding the input.

One tap rule serves every form. A source S (N, C, H, W) is read on a virtual grid: S
zero-inserted with factor ``z`` (1: plain) and shifted by ``p`` (zero padding; negative
crops), ``Sz[Y] = S[(Y - p) / z]`` where that is an integer inside S, else 0. Output pixel y
reads tap i at ``Y = y*s + i*d`` (``a = 0``) or, for the adjoints, ``Y = y*s + (k-1-i)*d``
(``a = 1``, the taps mirrored). The adaptive kernel K (N, G, k, k, ., .) multiplies each tap:
indexed at the output pixel (``a = 0``) or, in the adjoints, at the source position, K then
living on S's grid and zero-inserted alike::

    conv:    out[n,o,y,x] = sum_{c,i,j} Wt[o,c,i,j] * K[n,0,i,j,(y,x)|Y,X] * Sz[n,c,Y,X]
    pool:    out[n,c,y,x] = sum_{i,j}   K[n,g(c),i,j,(y,x)|Y,X] * Sz[n,c,Y,X]

``pacconv2d`` is ``conv`` (z=1, a=0, Wt = weight); its input gradient is ``conv`` on the
output gradient (z=s, s=1, p=(k-1)d-pad, a=1, Wt = weight^T); the transposed convolution
(the official: pacconv2d on the input zero-inserted and padded by (k-1)d-pad) is ``conv``
with z=s, s=1, and its input gradient ``conv`` with z=1, p=pad, a=1, stride s. The bridge
picks the parameters and transposes the tiny weight; ``pool`` likewise. The zero-inserted forms
(z > 1) the bridge runs by output phase instead (``torch_bridge.ops.pac.run_taps``: conv from
z = 2, pool from z = 3): each phase is a z = 1 form with the taps that hit it, whence kernel
sizes may be even and offsets below zero (a crop).

The kernel and weight gradients (``a = 0``)::

    conv_dk: dK[n,0,i,j,y,x] = sum_c Sz[n,c,Y,X] * G[n,c,i,j,y,x],  G = sum_o Wt[o,c,i,j] dO[n,o,y,x]
    conv_dw: dWt[o,c,i,j]    = sum_{n,y,x} dO[n,o,y,x] * K[n,0,i,j,y,x] * Sz[n,c,Y,X]
    pool_dk: dK[n,g,i,j,y,x] = sum_{c in g} dO[n,c,y,x] * Sz[n,c,Y,X]

The kernel's squared distances (``packernel2d``; F the guidance, F0 its centre taps or its
smoothed version at the output pixels, r = relu for the '_asym' kernels, else identity)::

    dist:     D[n,g,i,j,y,x] = sum_{c in g} r(Fp[n,c,Y,X] - F0[n,c,y,x])^2
    dist_df:  dF = the adjoint of the taps of 2 dD r(.)      dist_df0: dF0 = -sum_{i,j} 2 dD r(.)

G (channels of K) is 1 or C. The modulated taps (stage ``xk``) and G are per-row stages that
schedules build next to the loop reading them; half types accumulate in float32 (conv rounds
its xk to the half type: see ``conv``). Layouts are contiguous: X / dX (N, C, H, W), out / dO
(N, O|C, Ho, Wo), Wt (O, C, k, k).

Generic kernels (``SYMBOLIC``): every kernel takes batch N and sizes H, W, Ho, Wo symbolic,
one build serving any of them (channels, kernel size and tap geometry fixed): ``conv`` (the
convolution, its transposed form and both input gradients), ``pool`` (pooling and its input
gradient), ``conv_dk``, ``conv_dw``, ``pool_dk`` and the ``dist*`` kernels. Their CPU schedules
never leave a predicated tail around a register tile: ``conv`` and ``conv_dk``'s G pad each
row's matrix product to whole register tiles (zeros read past the width, never stored);
``pool`` and the channel sums of ``pool_dk`` and ``dist`` (G = 1) run over rows padded to whole
vectors in the compute itself (``pool``: the source's grid and the kernel's rows extend with
zeros, only the store of a row's last vector is partial: generic / static 1.23-1.25 at 2x128x28² k3,
1.02-1.04 at 2x64x56² k3, 1.06-1.20 at 2x32x128² k5, 1 thread; the generic build at 28² 0.11 ms, where
the per-shape build it replaces took 0.09 and its former generic one 0.27; ``pool_dk``,
``dist`` 1.3 / 1.09-1.13 / 1.0-1.1, 0.14 ms at 28², were 0.29); the per-row loops of the other
light kernels run whole vectors
and one scalar tail (a loop-partition hint); conv_dw vectorises along input channels (a
channels-last copy of the source) and reduces one pixel at a time, so no width leaves a tail
(2x128x28² k3, 1 thread: 2.9 ms generic and static, was 27.4 generic and 8.4 static with
vectors along x); the channel sums of ``pool_dk`` and ``dist`` (G = 1) keep a k x k register
tile per vector of x across every channel, their per-channel forms write a vector's taps side
by side (generic 1.0-1.25x static at 56- and 128-px rows, was 1.2-1.8x; the generic G = C
forms (but float64) leave each row loop to LLVM's vectorizer, no lane-by-lane last vector:
1.3-1.4x at 28-px rows, was 1.7-2.1x). The light kernels' scalar tail costs most at 28-px rows. What does not
remove it in TVM 0.27: ``loop_partition`` refuses a symbolic extent, ``pad_einsum`` needs an Einsum (the shifted
taps are not one) and inlining its padded producer brings the lane-dependent condition back;
4-lane vectors throughout measured 1.0-1.8x the static time at 56 and 128 px; a tap-blocked
copy of K's row (constant tap offsets) 1.2-1.6x. Ratios in benchmarks/RESULTS.md.
"""
from __future__ import annotations

from tvm import te, tirx

from . import register_kernel
from .common import acc_dtype, cast_out, dim, zero_insert_pad

MAX_KERNEL_SIZE = 15
HALF = ("float16", "bfloat16")  # conv keeps its modulated taps in these (see ``conv``)
_SIZES = ("N", "H", "W", "Ho", "Wo")
SYMBOLIC = {kernel: _SIZES for kernel in ("conv", "pool", "conv_dk", "conv_dw", "pool_dk", "dist", "dist_df", "dist_df0")}


def grid_size(n_out, k: int, s: int, d: int):
    """Extent of the virtual source grid that n_out outputs read (an int or a PrimExpr)."""
    return (n_out - 1) * s + (k - 1) * d + 1


def check_params(N, C, H, W, Ho, Wo, k, s, z, d, **_) -> None:
    """Raise ValueError naming the first bad parameter (symbolic sizes are checked by the bridge)."""
    for name, val in (("batch", N), ("channels", C), ("height", H), ("width", W), ("out height", Ho),
                      ("out width", Wo), ("stride", s), ("zero insertion", z), ("dilation", d)):
        if isinstance(val, int) and val < 1:
            raise ValueError(f"{name} must be >= 1, got {val}")
    if not 1 <= k <= MAX_KERNEL_SIZE:  # even sizes too: the phases of the zero-inserted forms
        raise ValueError(f"kernel_size must be in [1, {MAX_KERNEL_SIZE}], got {k}")


def _source(S: te.Tensor, k, s, z, p, d, Ho, Wo, name: str) -> te.Tensor:
    size = (grid_size(Ho, k, s, d), grid_size(Wo, k, s, d))
    return zero_insert_pad(S, z, p, size, name)


def _tap(k, s, d, a):
    """Virtual-grid coordinate of tap i for output coordinate y."""
    return (lambda y, i: y * s + (k - 1 - i) * d) if a else (lambda y, i: y * s + i * d)


def _kernel_at_taps(K, k, s, z, p, d, Ho, Wo) -> te.Tensor:
    """The adjoint's kernel (a = 1) on the source grid, as ``_source`` places it, read at the
    tap (i, j) of each output pixel: 'Kz' (N, G, k, k, Ho, Wo), ``Kz[.., i, j, y, x] =
    Kg[.., i, j, tap(y, i), tap(x, j)]`` with Kg the zero-inserted, padded K. The same values
    the sum read from Kg, each tap's plane shifted to the output's rows (Ho x Wo, not the grid's
    larger Hg x Wg per tap), so a schedule finds every tap at (y, x)."""
    tap = _tap(k, s, d, 1)
    h, w = (dim(n) for n in K.shape[-2:])

    def body(n, g, i, j, y, x):
        yy, xx = tap(y, i) - p, tap(x, j) - p
        conds = [yy >= 0, xx >= 0, yy < h * z, xx < w * z]
        if z > 1:
            conds += [tirx.floormod(yy, z) == 0, tirx.floormod(xx, z) == 0]
        src = K[n, g, i, j, tirx.floordiv(yy, z), tirx.floordiv(xx, z)]
        return tirx.if_then_else(tirx.all(*conds), src, tirx.const(0, K.dtype))

    return te.compute((*K.shape[:4], Ho, Wo), body, name="Kz")


def _modulated(X, K, k, s, z, p, d, a, Ho, Wo, acc, grouped, store=None, at_taps=False):
    """xk[n,c,i,j,y,x] = K(tap) * Sz(tap): the taps of the source times the adaptive kernel,
    formed in ``acc`` and kept in ``store`` (default ``acc``). ``at_taps`` (a = 1): the kernel
    read through ``_kernel_at_taps`` rather than on the source grid (same values)."""
    N, C = (dim(n) for n in X.shape[:2])
    G = int(K.shape[1])
    Sz = _source(X, k, s, z, p, d, Ho, Wo, "Sz")
    tap = _tap(k, s, d, a)
    g = (lambda c: c) if (grouped and G > 1) else (lambda c: 0)
    if a and at_taps:
        Kz = _kernel_at_taps(K, k, s, z, p, d, Ho, Wo)

        def mod(n, c, i, j, y, x):
            return Kz[n, g(c), i, j, y, x]
    elif a:
        Kz = _source(K, k, s, z, p, d, Ho, Wo, "Kz")

        def mod(n, c, i, j, y, x):
            return Kz[n, g(c), i, j, tap(y, i), tap(x, j)]
    else:
        def mod(n, c, i, j, y, x):
            return K[n, g(c), i, j, y, x]

    return te.compute(
        (N, C, k, k, Ho, Wo),
        lambda n, c, i, j, y, x: (mod(n, c, i, j, y, x).astype(acc)
                                  * Sz[n, c, tap(y, i), tap(x, j)].astype(acc)).astype(store or acc),
        name="xk")


def _kernel_shape(N, G, k, H, W, Ho, Wo, a):
    return (N, G, k, k, H, W) if a else (N, G, k, k, Ho, Wo)


@register_kernel("pac", "conv")
def conv(N, C, O, H, W, Ho, Wo, k, s, z, p, d, a, dtype, tf32=0):
    """``tf32`` (CUDA float32 only; absent means 0) selects tensor cores with TF32 operands, a
    schedule choice that changes rounding, not the math: accepted and ignored here, it keeps
    such kernels apart in every cache key.

    Half types (float16, bfloat16): the modulated taps xk are formed in float32 and rounded to
    the half type once, as PyTorch's own PAC (unfold, then times the kernel, in the input's
    type) rounds them; the products with the weight sum in float32. So xk is a GEMM operand of
    the input's type: CUDA builds feed it to tensor cores (mma.sync m16n8k16, f32
    accumulators), every target computes the same numbers. Its CPU cost (the rounding per
    modulated tap; 1x32x56x56 k5 O=32, 1 thread, medians of 7 x 3 calls, three interleaved
    runs against the float32-product compute): float16 1.37-1.39 -> 1.45-1.48 ms (1.06x),
    bfloat16 1.39-1.40 -> 1.40-1.53 ms (1.01x median), float32 unchanged."""
    check_params(N, C, H, W, Ho, Wo, k, s, z, d)
    acc_t = acc_dtype(dtype)
    X = te.placeholder((N, C, H, W), dtype, name="X")
    K = te.placeholder(_kernel_shape(N, 1, k, H, W, Ho, Wo, a), dtype, name="K")
    Wt = te.placeholder((O, C, k, k), dtype, name="Wt")
    xk = _modulated(X, K, k, s, z, p, d, a, Ho, Wo, acc_t, grouped=False, store=dtype if dtype in HALF else None)
    c = te.reduce_axis((0, C), "c")
    i = te.reduce_axis((0, k), "i")
    j = te.reduce_axis((0, k), "j")
    acc = te.compute(
        (N, O, Ho, Wo),
        lambda n, o, y, x: te.sum(Wt[o, c, i, j].astype(acc_t) * xk[n, c, i, j, y, x].astype(acc_t), axis=[c, i, j]),
        name="acc")
    return [X, K, Wt, cast_out(acc, dtype)]


POOL_ROW_QUANTUM = 8  # pool's sum runs over rows padded to a multiple of this (see ``pool``)


def padded_row(n, quantum: int = POOL_ROW_QUANTUM):
    """``n`` rounded up to a multiple of ``quantum`` (an int or a PrimExpr)."""
    if isinstance(n, int):
        return -(-n // quantum) * quantum
    return tirx.floordiv(n + (quantum - 1), quantum) * quantum


@register_kernel("pac", "pool")
def pool(N, C, G, H, W, Ho, Wo, k, s, z, p, d, a, dtype):
    """The sum ``acc`` runs over rows padded to whole vectors, ``Wp`` = Wo rounded up to
    ``POOL_ROW_QUANTUM`` (8: a 256-bit vector of float32, two of float64): the
    virtual grid of the source (and, in the adjoint, of the kernel) extends with zeros past the
    last output, the kernel at the output pixels (``Kp``) reads zero there, and ``out`` stores
    the first Wo. So a CPU schedule splits the row into whole vectors at any width, a symbolic
    one included (no predicated tail, which TVM would scalarize), and only the store of the
    last vector is partial. Results are unchanged: the padding is zeros, never stored. What is
    left at a symbolic width: that store's lanes one by one (a compare and a scalar store each;
    TVM 0.27 emits no masked store) and the source copies' per-row loops, 1.25x the static time at
    2x128x28² k3 (G = 1), 1.4-1.6x for the adjoint with a kernel per channel, whose zero-padded
    kernel copy is k x k planes per channel (copied per channel plane since 2026-12-01, both builds
    about 2x faster, the static one more); about 1.0-1.25x at 56- and 128-px rows.

    The adjoint (a = 1) reads its kernel at the taps (``_kernel_at_taps``: per tap a plane of
    Ho x Wp, shifted to the output pixels) rather than on the source grid (per tap the grid's
    Hg x Wg, every tap's plane padded alike): the same values, fewer of them (28² k3: 9 x 28 x 32
    instead of 9 x 30 x 34), and a tap's row copy has a constant shift once the taps are unrolled.
    1 thread, 2x128x28² k3, medians of 31 x 2 calls in one process, static / generic ms, old ->
    new: 0.62-0.64 / 0.84-0.85 -> 0.49-0.51 / 0.78 (2x64x56² k3 -6..-15% / -7..-11%; 2x32x128² k5
    within noise). The static build gained more: generic / static 1.34 -> 1.54-1.60 at 28²."""
    check_params(N, C, H, W, Ho, Wo, k, s, z, d)
    acc_t = acc_dtype(dtype)
    Wp = padded_row(Wo)
    X = te.placeholder((N, C, H, W), dtype, name="X")
    K = te.placeholder(_kernel_shape(N, G, k, H, W, Ho, Wo, a), dtype, name="K")
    Kp = K if a else te.compute(  # the kernel at the output pixels, zero past the last
        (N, G, k, k, Ho, Wp),
        lambda n, g, i, j, y, x: tirx.if_then_else(x < Wo, K[n, g, i, j, y, x], tirx.const(0, dtype)), name="Kp")
    xk = _modulated(X, Kp, k, s, z, p, d, a, Ho, Wp, acc_t, grouped=True, at_taps=True)
    i = te.reduce_axis((0, k), "i")
    j = te.reduce_axis((0, k), "j")
    acc = te.compute((N, C, Ho, Wp), lambda n, c, y, x: te.sum(xk[n, c, i, j, y, x], axis=[i, j]), name="acc")
    out = te.compute((N, C, Ho, Wo), lambda n, c, y, x: acc[n, c, y, x].astype(dtype), name="out")
    return [X, K, out]


@register_kernel("pac", "conv_dk")
def conv_dk(N, C, O, H, W, Ho, Wo, k, s, z, p, d, dtype, tf32=0):
    """``tf32`` as in ``conv`` (CUDA float32 only; absent means 0): a schedule choice, TF32
    tensor cores for G's products, accepted and ignored here; it keeps such kernels apart in
    every cache key."""
    check_params(N, C, H, W, Ho, Wo, k, s, z, d)
    acc_t = acc_dtype(dtype)
    dO = te.placeholder((N, O, Ho, Wo), dtype, name="dO")
    X = te.placeholder((N, C, H, W), dtype, name="X")
    Wt = te.placeholder((O, C, k, k), dtype, name="Wt")
    Sz = _source(X, k, s, z, p, d, Ho, Wo, "Sz")
    tap = _tap(k, s, d, 0)
    o = te.reduce_axis((0, O), "o")
    G = te.compute(
        (N, C, k, k, Ho, Wo),
        lambda n, c, i, j, y, x: te.sum(Wt[o, c, i, j].astype(acc_t) * dO[n, o, y, x].astype(acc_t), axis=o),
        name="G")
    c = te.reduce_axis((0, C), "c")
    acc = te.compute(
        (N, 1, k, k, Ho, Wo),
        lambda n, g, i, j, y, x: te.sum(Sz[n, c, tap(y, i), tap(x, j)].astype(acc_t) * G[n, c, i, j, y, x], axis=c),
        name="acc")
    return [dO, X, Wt, cast_out(acc, dtype)]


@register_kernel("pac", "conv_dw")
def conv_dw(N, C, O, H, W, Ho, Wo, k, s, z, p, d, dtype):
    """dWt in the accumulation type (a sum over every pixel of the batch)."""
    check_params(N, C, H, W, Ho, Wo, k, s, z, d)
    acc_t = acc_dtype(dtype)
    dO = te.placeholder((N, O, Ho, Wo), dtype, name="dO")
    K = te.placeholder((N, 1, k, k, Ho, Wo), dtype, name="K")
    X = te.placeholder((N, C, H, W), dtype, name="X")
    Sz = _source(X, k, s, z, p, d, Ho, Wo, "Sz")
    tap = _tap(k, s, d, 0)
    n = te.reduce_axis((0, N), "n")
    y = te.reduce_axis((0, Ho), "y")
    x = te.reduce_axis((0, Wo), "x")
    acc = te.compute(
        (O, C, k, k),
        lambda o, c, i, j: te.sum(
            dO[n, o, y, x].astype(acc_t) * (K[n, 0, i, j, y, x].astype(acc_t)
                                            * Sz[n, c, tap(y, i), tap(x, j)].astype(acc_t)),
            axis=[n, y, x]),
        name="acc")
    return [dO, K, X, cast_out(acc, acc_t)]


def _padded_rows(t: te.Tensor, Wo, Wp, name: str) -> te.Tensor:
    """``t`` (.., Wo) on rows of Wp, zeros past Wo."""
    return te.compute((*t.shape[:-1], Wp), lambda *i: tirx.if_then_else(
        i[-1] < Wo, t(*i), tirx.const(0, t.dtype)), name=name)


def _channel_sum(shape, Wo, Wp, term, dtype):
    """A channel sum (G = 1) over rows padded to whole vectors (see ``pool``): 'acc' over
    Wp pixels, 'out' the first Wo."""
    acc = te.compute((*shape, Wp), term, name="acc")
    return te.compute((*shape, Wo), lambda *i: acc(*i).astype(dtype), name="out")


@register_kernel("pac", "pool_dk")
def pool_dk(N, C, G, H, W, Ho, Wo, k, s, z, p, d, dtype):
    """G = 1 sums over rows padded to whole vectors as ``pool`` does (the output gradient's
    rows ``Rp`` zero past Wo), so the channel sum's register tile is whole at any width."""
    check_params(N, C, H, W, Ho, Wo, k, s, z, d)
    acc_t = acc_dtype(dtype)
    dO = te.placeholder((N, C, Ho, Wo), dtype, name="dO")
    X = te.placeholder((N, C, H, W), dtype, name="X")
    tap = _tap(k, s, d, 0)
    if G == 1:
        Wp = padded_row(Wo)
        Sz = _source(X, k, s, z, p, d, Ho, Wp, "Sz")
        dOp = _padded_rows(dO, Wo, Wp, "Rp")
        c = te.reduce_axis((0, C), "c")
        out = _channel_sum((N, 1, k, k, Ho), Wo, Wp, lambda n, g, i, j, y, x: te.sum(
            dOp[n, c, y, x].astype(acc_t) * Sz[n, c, tap(y, i), tap(x, j)].astype(acc_t), axis=c), dtype)
        return [dO, X, out]
    else:
        Sz = _source(X, k, s, z, p, d, Ho, Wo, "Sz")
        acc = te.compute(
            (N, C, k, k, Ho, Wo),
            lambda n, c, i, j, y, x: dO[n, c, y, x].astype(acc_t) * Sz[n, c, tap(y, i), tap(x, j)].astype(acc_t),
            name="acc")
    return [dO, X, cast_out(acc, dtype)]


def _rect(v, asym: int, dtype: str):
    return tirx.max(v, tirx.const(0, dtype)) if asym else v


def _dist_inputs(N, C, H, W, Ho, Wo, dtype):
    F = te.placeholder((N, C, H, W), dtype, name="F")
    F0 = te.placeholder((N, C, Ho, Wo), dtype, name="F0")
    return F, F0


@register_kernel("pac", "dist")
def dist(N, C, G, H, W, Ho, Wo, k, s, p, d, asym, dtype):
    check_params(N, C, H, W, Ho, Wo, k, s, 1, d)
    acc_t = acc_dtype(dtype)
    F, F0 = _dist_inputs(N, C, H, W, Ho, Wo, dtype)
    tap = _tap(k, s, d, 0)
    # G = 1 sums over rows padded to whole vectors, as pool_dk (F0's rows through 'Rp')
    Wp = padded_row(Wo) if G == 1 else Wo
    Fp = _source(F, k, s, 1, p, d, Ho, Wp, "Sz")
    F0p = _padded_rows(F0, Wo, Wp, "Rp") if G == 1 else F0

    def diff(n, c, i, j, y, x):
        e = _rect(Fp[n, c, tap(y, i), tap(x, j)].astype(acc_t) - F0p[n, c, y, x].astype(acc_t), asym, acc_t)
        return e * e

    if G == 1:
        c = te.reduce_axis((0, C), "c")
        out = _channel_sum((N, 1, k, k, Ho), Wo, Wp, lambda n, g, i, j, y, x: te.sum(diff(n, c, i, j, y, x), axis=c),
                           dtype)
        return [F, F0, out]
    acc = te.compute((N, C, k, k, Ho, Wo), diff, name="acc")
    return [F, F0, cast_out(acc, dtype)]


@register_kernel("pac", "dist_df")
def dist_df(N, C, G, H, W, Ho, Wo, k, s, p, d, asym, dtype):
    """dF[n,c,h,w] = sum_{i,j} 2 dD[n,g,i,j,y,x] r(F[n,c,h,w] - F0[n,c,y,x]) over the output
    pixels whose tap (i, j) is (h, w): on the zero-inserted grid of the outputs, a stride-1
    correlation with mirrored taps (dD there is 0 off the grid)."""
    check_params(N, C, H, W, Ho, Wo, k, s, 1, d)
    acc_t = acc_dtype(dtype)
    F, F0 = _dist_inputs(N, C, H, W, Ho, Wo, dtype)
    dD = te.placeholder((N, G, k, k, Ho, Wo), dtype, name="dD")
    e = (k - 1) * d - p  # the adjoint's offset
    dDz = _source(dD, k, 1, s, e, d, H, W, "Kz")
    F0z = _source(F0, k, 1, s, e, d, H, W, "Sz")
    tap = _tap(k, 1, d, 1)
    g = (lambda c: c) if G > 1 else (lambda c: 0)
    i = te.reduce_axis((0, k), "i")
    j = te.reduce_axis((0, k), "j")
    two = tirx.const(2, acc_t)

    def body(n, c, h, w):
        Y, X_ = tap(h, i), tap(w, j)
        r = _rect(F[n, c, h, w].astype(acc_t) - F0z[n, c, Y, X_].astype(acc_t), asym, acc_t)
        return te.sum(two * dDz[n, g(c), i, j, Y, X_].astype(acc_t) * r, axis=[i, j])

    acc = te.compute((N, C, H, W), body, name="acc")
    return [dD, F, F0, cast_out(acc, dtype)]


@register_kernel("pac", "dist_df0")
def dist_df0(N, C, G, H, W, Ho, Wo, k, s, p, d, asym, dtype):
    check_params(N, C, H, W, Ho, Wo, k, s, 1, d)
    acc_t = acc_dtype(dtype)
    F, F0 = _dist_inputs(N, C, H, W, Ho, Wo, dtype)
    dD = te.placeholder((N, G, k, k, Ho, Wo), dtype, name="dD")
    Fp = _source(F, k, s, 1, p, d, Ho, Wo, "Sz")
    tap = _tap(k, s, d, 0)
    g = (lambda c: c) if G > 1 else (lambda c: 0)
    i = te.reduce_axis((0, k), "i")
    j = te.reduce_axis((0, k), "j")
    m2 = tirx.const(-2, acc_t)

    def body(n, c, y, x):
        r = _rect(Fp[n, c, tap(y, i), tap(x, j)].astype(acc_t) - F0[n, c, y, x].astype(acc_t), asym, acc_t)
        return te.sum(m2 * dD[n, g(c), i, j, y, x].astype(acc_t) * r, axis=[i, j])

    acc = te.compute((N, C, Ho, Wo), body, name="acc")
    return [dD, F, F0, cast_out(acc, dtype)]
