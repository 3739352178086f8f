"""Default CPU (LLVM) schedules for the DDF kernels.

Layout of the work: parallel over planes (batch x head x channel), the accumulator a vector
tile along the image row with the k x k taps unrolled outside its lanes, the padded input
plane copied next to the loop that reads it (it stays in cache). dS sums over channels into
a vector tile of all taps; dC keeps vector-wide column sums, reduced at the end.

Shape-generic kernels (B, H, W symbolic) take the same schedules: each loop over the vector
tiles of a row is cut into the whole tiles (vectors, no predicate) and a predicated scalar tail
(``split_tail``), and the vector tiles are declared whole (``tile_regions``) so that they stay
small buffers.
"""
from __future__ import annotations

from . import register
from .common import split_tail, tile_regions, unroll_taps, vector_lanes, vectorize_inner, vectorize_under

def _row_tiles(sch, wl):
    """fwd and dx: acc(b, g, c, y, x; u, v) as vector tiles along x, parallel over planes."""
    lanes = vector_lanes(wl.dtype)
    acc = sch.get_sblock("acc")
    b, g, c, y, x, u, v = sch.get_loops(acc)
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
    plane = _row_tiles(sch, wl)
    sch.compute_at(sch.get_sblock("Xpad"), plane)
    split_tail(sch, vectorize_inner(sch, "Xpad", vector_lanes(wl.dtype), under=plane))


@register("ddf", "dx", "cpu")
def dx(sch, wl, target):
    lanes = vector_lanes(wl.dtype)
    # The scattered spatial filter is shared by every channel of a head: build it once.
    su = sch.get_sblock("Su")
    sch.parallel(sch.fuse(*sch.get_loops(su)[:4]))
    split_tail(sch, vectorize_inner(sch, su, lanes))
    plane = _row_tiles(sch, wl)
    sch.compute_at(sch.get_sblock("dOu"), plane)
    split_tail(sch, vectorize_inner(sch, "dOu", lanes, under=plane))


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
    sch.parallel(sch.fuse(b, g, y))
    sch.vectorize(xi)
    unroll_taps(sch, wl, u, v)
    init = sch.decompose_reduction(acc, c)
    vectorize_inner(sch, init, lanes)
    out = sch.get_sblock("out")
    sch.reverse_compute_at(out, xo)
    vectorize_under(sch, out, xo)
    _generic_tiles(sch, wl, lanes)
    split_tail(sch, xo)


@register("ddf", "dc", "cpu")
def dc(sch, wl, target):
    lanes = vector_lanes(wl.dtype)
    cols = sch.get_sblock("acc_cols")
    b, g, c, u, v, x, y = sch.get_loops(cols)
    plane = sch.fuse(b, g, c)
    sch.parallel(plane)
    xo, xi = sch.split(x, [None, lanes])
    sch.reorder(xo, y, u, v, xi)
    sch.vectorize(xi)
    unroll_taps(sch, wl, u, v)
    init = sch.decompose_reduction(cols, y)
    vectorize_inner(sch, init, lanes)
    sch.reverse_compute_at(sch.get_sblock("acc"), plane)
    sch.reverse_compute_at(sch.get_sblock("out"), plane)
    sch.compute_at(sch.get_sblock("Xpad"), plane)
    split_tail(sch, vectorize_inner(sch, "Xpad", lanes, under=plane))
    split_tail(sch, xo)
