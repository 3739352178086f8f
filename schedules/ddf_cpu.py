"""Default CPU (LLVM) schedules for the DDF kernels.

Layout of the work: parallel over planes (batch x head x channel), the accumulator a vector
tile along the image row with the k x k taps unrolled outside its lanes, the padded input
plane copied next to the loop that reads it (it stays in cache). dS sums over channels into
a vector tile of all taps; dC keeps vector-wide column sums, reduced at the end.

fwd and dx take half-width vectors where those tile a static row exactly (28 = 7 x 4) and
whole ones would leave a tail tile (predicated: TVM's vectorizer leaves it scalar). dx at
stride s > 1 runs on the phase grid of ``ops.ddf.ddf_dx``: per vector tile of s rows x s*lanes
pixels, the s x s phases' accumulators (unrolled, so each phase's taps are constants), then
'out' interleaves them into dX (contiguous loads, stores strided by s).

Shape-generic kernels (B, H, W symbolic) take the same schedules. Their rows are whole vectors
(``ops.ddf.ROW_QUANTUM``): S's widened rows ('Spad': fwd, dc) built once per call, dO's widened
rows next to the loop that reads them (ds: per output row, all channels; dc: per plane). Only
the padded copies and the stores of the real row ('out'; dc's sum over x) keep a predicated
tail, which ``split_tail`` cuts off the whole tiles (vectors); the vector tiles are declared
whole (``tile_regions``) so that they stay small buffers (dc's column sums accumulate in such a
local tile, its plane-wide buffer having a symbolic size).
"""
from __future__ import annotations

from . import register
from .common import extent, split_tail, tile_regions, unroll, unroll_taps, vector_lanes, vectorize_inner, vectorize_under

MAX_UNROLLED_STRIDE = 4  # dx: phase loops unrolled up to this stride

def _row_tiles(sch, wl):
    """fwd and dx: acc(b, g, c, y, x; u, v) as vector tiles along x, parallel over planes."""
    lanes = vector_lanes(wl.dtype)
    acc = sch.get_sblock("acc")
    b, g, c, y, x, u, v = sch.get_loops(acc)
    wo = extent(sch, x)
    if isinstance(wo, int) and wo % lanes and wo % (lanes // 2) == 0:
        lanes //= 2  # half vectors without a tail (28 = 7 x 4): a tail tile runs scalar
    plane = sch.fuse(b, g, c)
    sch.parallel(plane)
    xo, xi = sch.split(x, [None, lanes])
    sch.reorder(y, xo, u, v, xi)
    sch.vectorize(xi)
    unroll_taps(sch, wl, u, v)
    init = sch.decompose_reduction(acc, u)
    vectorize_inner(sch, init, lanes)
    out = sch.get_sblock("out")
    sch.reverse_compute_at(out, xo)
    vectorize_under(sch, out, xo)
    _generic_tiles(sch, wl, lanes)
    split_tail(sch, xo)
    return plane


def _generic_tiles(sch, wl, lanes):
    if wl.kind == "generic":
        tile_regions(sch, "acc", ("acc_init", "acc_update", "out"), lanes)


@register("ddf", "fwd", "cpu")
def fwd(sch, wl, target):
    if wl.kind == "generic":  # S's rows zero-extended to whole vectors, once per call
        spad = sch.get_sblock("Spad")
        sch.parallel(sch.fuse(*sch.get_loops(spad)[:4]))
        split_tail(sch, vectorize_inner(sch, spad, vector_lanes(wl.dtype)))
    plane = _row_tiles(sch, wl)
    sch.compute_at(sch.get_sblock("Xpad"), plane)
    split_tail(sch, vectorize_inner(sch, "Xpad", vector_lanes(wl.dtype), under=plane))


@register("ddf", "dx", "cpu")
def dx(sch, wl, target):
    """acc(b, g, c, hh, ww; j, i) on the phase grid (``ops.ddf.ddf_dx``). Stride 1: vector
    tiles along the row as fwd. Stride s > 1: hh and ww split by s into (quotient, phase), the
    phases outside the vector tiles (unrolled for s <= MAX_UNROLLED_STRIDE: their taps are then
    constants and the masks of absent taps fold away), so each tile reads contiguous rows of
    dO and S; acc's row buffer is laid out phase-major (its tiles contiguous) and 'out'
    interleaves the s x s phases of s rows into dX."""
    lanes, s = vector_lanes(wl.dtype), wl.p["s"]
    # The padded spatial filter is shared by every channel of a head: build it once.
    sp = sch.get_sblock("Sp")
    sch.parallel(sch.fuse(*sch.get_loops(sp)[:4]))
    split_tail(sch, vectorize_inner(sch, sp, lanes))
    if s == 1:
        plane = _row_tiles(sch, wl)
    else:
        acc = sch.get_sblock("acc")
        b, g, c, hh, ww, j, i = sch.get_loops(acc)
        plane = sch.fuse(b, g, c)
        sch.parallel(plane)
        hq, ry = sch.split(hh, [None, s])
        wq, rx = sch.split(ww, [None, s])
        xo, xi = sch.split(wq, [None, lanes])
        sch.reorder(hq, xo, ry, rx, j, i, xi)
        sch.vectorize(xi)
        unroll_taps(sch, wl, j, i)
        if s <= MAX_UNROLLED_STRIDE:
            unroll(sch, ry, rx)
        init = sch.decompose_reduction(acc, j)
        vectorize_inner(sch, init, lanes)
        # 'out' per s x (s * lanes) pixels: the tile's s x s phases (s^2 vector accumulators)
        # (a one-column dX: per s rows; at xo TVM's lowering then fails on an undefined loop var)
        out = sch.get_sblock("out")
        sch.reverse_compute_at(out, xo if wl.p["W"] != 1 else hq)
        sch.transform_layout(acc, ("write", 0), lambda b, g, c, h, w: (b, g, c, h, w % s, w // s))
        split_tail(sch, xo)
        # per phase: contiguous vector loads of acc, stores strided by s into dX (else a
        # gather per element). Static widths only: with a symbolic one TVM may find the
        # cast's binding non-affine (k5 s2 d2) and refuse the split.
        if wl.kind == "static" and wl.p["W"] != 1:
            wo, wi = sch.split(sch.get_loops(out)[-1], [None, s])
            sch.reorder(wi, wo)
            if s <= MAX_UNROLLED_STRIDE:
                sch.unroll(wi)
            sch.vectorize(wo)
    _dx_pad_copy(sch, wl, plane)


def _dx_pad_copy(sch, wl, plane):
    """dx: the plane's padded dO next to the loop that reads it."""
    sch.compute_at(sch.get_sblock("dOp"), plane)
    split_tail(sch, vectorize_inner(sch, "dOp", vector_lanes(wl.dtype), under=plane))


@register("ddf", "ds", "cpu")
def ds(sch, wl, target):
    lanes = vector_lanes(wl.dtype)
    xpad = sch.get_sblock("Xpad")
    sch.parallel(sch.fuse(*sch.get_loops(xpad)[:3]))
    split_tail(sch, vectorize_inner(sch, xpad, lanes))
    acc = sch.get_sblock("acc")
    b, g, u, v, y, x, c = sch.get_loops(acc)
    xo, xi = sch.split(x, [None, lanes])
    sch.reorder(b, g, y, xo, c, u, v, xi)
    row = sch.fuse(b, g, y)
    sch.parallel(row)
    sch.vectorize(xi)
    unroll_taps(sch, wl, u, v)
    init = sch.decompose_reduction(acc, c)
    vectorize_inner(sch, init, lanes)
    out = sch.get_sblock("out")
    sch.reverse_compute_at(out, xo)
    vectorize_under(sch, out, xo)
    _generic_tiles(sch, wl, lanes)
    split_tail(sch, xo)
    if wl.kind == "generic":  # the row's widened dO (all channels) next to the loop that reads it
        sch.compute_at(sch.get_sblock("dOpad"), row)
        split_tail(sch, vectorize_inner(sch, "dOpad", lanes, under=row))


@register("ddf", "dc", "cpu")
def dc(sch, wl, target):
    lanes = vector_lanes(wl.dtype)
    if wl.kind == "generic" and wl.p["combine"] == "mul":  # S's rows widened, once per call
        spad = sch.get_sblock("Spad")
        sch.parallel(sch.fuse(*sch.get_loops(spad)[:4]))
        split_tail(sch, vectorize_inner(sch, spad, lanes))
    cols = sch.get_sblock("acc_cols")
    b, g, c, u, v, x, y = sch.get_loops(cols)
    plane = sch.fuse(b, g, c)
    sch.parallel(plane)
    xo, xi = sch.split(x, [None, lanes])
    sch.reorder(xo, y, u, v, xi)
    sch.vectorize(xi)
    unroll_taps(sch, wl, u, v)
    if wl.kind == "generic":
        # The plane's column sums have a symbolic size (a heap workspace, which LLVM cannot
        # keep in registers): accumulate each k x k x lanes tile in a constant-size local
        # buffer, written back once per tile.
        local = sch.cache_write(cols, 0, "local")
        sch.reverse_compute_at(local, xo)
        vectorize_under(sch, local, xo)
        tile_regions(sch, sch.get(cols).writes[0].source.name, ("acc_cols", sch.get(local).name_hint), lanes)
    init = sch.decompose_reduction(cols, y)
    vectorize_inner(sch, init, lanes)
    sch.reverse_compute_at(sch.get_sblock("acc"), plane)
    sch.reverse_compute_at(sch.get_sblock("out"), plane)
    sch.compute_at(sch.get_sblock("Xpad"), plane)
    split_tail(sch, vectorize_inner(sch, "Xpad", lanes, under=plane))
    if wl.kind == "generic":
        sch.compute_at(sch.get_sblock("dOpad"), plane)
        split_tail(sch, vectorize_inner(sch, "dOpad", lanes, under=plane))
    split_tail(sch, xo)
