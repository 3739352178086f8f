"""Default CUDA schedules for ACDA's atom convolution.

fwd: one block per tile of ``tile`` pixels along a row. The block first builds the tile's
M x k x k atoms in shared memory (threads across atom taps and pixels, each summing the T
bases), then its threads (pixels x channel slices, pixels fastest: coalesced loads) loop over
their channels, M register accumulators each, over the k x k taps. The atoms of a pixel are
built once for all channels, never stored in global memory.
dx: the same tiling over input pixels, one launch: the compute indexes the atoms by the input
pixel they serve (``ops.acda.acda_dx``), so a tile of input pixels needs M x k x k atoms per
pixel, built in shared memory as in fwd (no global scratch, no second launch: the grid-wide
atoms of the zero-inserted grid were written and read back, 87x the minimum bytes); each
thread sums its channels' M x k x k taps in a register. A generic row is whole X_QUANTUM
pixels, so the same code serves any size (PoCL-checked at several sizes from one lowering).
datoms: one thread per atom tap and pixel, a loop over the channels.
Padding and zero insertion are index checks in the loads (inlined).
"""
from __future__ import annotations

from dynfilter_tvm.ops.acda import X_QUANTUM

from . import register
from .common import MAX_THREADS, bind_flat, extent, register_acc, unroll, unroll_taps

SHARED_BYTES = 40 * 1024  # atoms tile in shared memory, under the 48 KiB static limit
MAX_TILE = 32  # pixels per block


def _tile(wl, wo: int) -> int:
    """Pixels per fwd block: a warp's worth when the atoms fit in shared memory (they are kept
    in the accumulation type: 8 bytes for float64)."""
    per_pixel = wl.p["M"] * wl.p["k"] ** 2 * (8 if wl.dtype == "float64" else 4)
    tile = 1
    while tile * 2 <= min(MAX_TILE, wo) and tile * 2 * per_pixel <= SHARED_BYTES:
        tile *= 2
    return tile


def _atoms_in_shared(sch, wl, block, threads: int) -> None:
    """The tile's atoms, built by the block's threads into shared memory: each sums its
    T bases in a register, then stores once (a shared accumulator would need a barrier
    inside the guarded loop)."""
    atoms = sch.get_sblock("atoms")
    sch.compute_at(atoms, block)
    sch.set_scope(atoms, 0, "shared")
    loops = sch.get_loops(atoms)[1:]  # compute_at dropped the unit-extent ones
    spatial = loops[:-1] if wl.p["T"] > 1 else loops
    fused = sch.fuse(*spatial) if spatial else sch.add_unit_loop(atoms)
    _, tx = sch.split(fused, [None, threads])
    sch.bind(tx, "threadIdx.x")
    local = sch.cache_write(atoms, 0, "local")
    sch.reverse_compute_at(local, tx)


@register("acda", "fwd", "cuda")
def fwd(sch, wl, target):
    sch.compute_inline(sch.get_sblock("Xpad"))
    if wl.p["W"] is None:
        sch.compute_inline(sch.get_sblock("Apad"))
    acc = sch.get_sblock("acc")
    n, c, m, y, x, u, v = sch.get_loops(acc)
    # a generic row is whole X_QUANTUM pixels: tiles of at most that many have no tail
    wo = extent(sch, x)
    tile = _tile(wl, wo if isinstance(wo, int) else X_QUANTUM)
    slices = max(1, min(wl.p["C"], MAX_THREADS // tile))
    xo, xi = sch.split(x, [None, tile])
    co, ci = sch.split(c, [None, slices])
    sch.reorder(n, y, xo, ci, xi, co, m, u, v)
    block = sch.fuse(n, y, xo)
    threads = sch.fuse(ci, xi)
    sch.bind(block, "blockIdx.x")
    sch.bind(threads, "threadIdx.x")
    unroll(sch, m)
    unroll_taps(sch, wl, u, v)
    _atoms_in_shared(sch, wl, block, extent(sch, threads))
    sch.set_scope(acc, 0, "local")
    sch.reverse_compute_at(sch.get_sblock("out"), co)
    sch.decompose_reduction(acc, u)


@register("acda", "dx", "cuda")
def dx(sch, wl, target):
    for name in ("dOu", "Au"):
        sch.compute_inline(sch.get_sblock(name))
    acc = sch.get_sblock("acc")
    n, c, h, w, m, u, v = sch.get_loops(acc)
    wo = extent(sch, w)
    tile = _tile(wl, wo if isinstance(wo, int) else X_QUANTUM)
    slices = max(1, min(wl.p["C"], MAX_THREADS // tile))
    xo, xi = sch.split(w, [None, tile])
    co, ci = sch.split(c, [None, slices])
    sch.reorder(n, h, xo, ci, xi, co, m, u, v)
    block = sch.fuse(n, h, xo)
    threads = sch.fuse(ci, xi)
    sch.bind(block, "blockIdx.x")
    sch.bind(threads, "threadIdx.x")
    unroll_taps(sch, wl, u, v)
    _atoms_in_shared(sch, wl, block, extent(sch, threads))
    sch.set_scope(acc, 0, "local")
    sch.reverse_compute_at(sch.get_sblock("out"), co)
    sch.decompose_reduction(acc, m)


@register("acda", "datoms", "cuda")
def datoms(sch, wl, target):
    sch.compute_inline(sch.get_sblock("Xpad"))
    if wl.p["W"] is None:
        sch.compute_inline(sch.get_sblock("dOpad"))
    acc = sch.get_sblock("acc")
    *spatial, c = sch.get_loops(acc)
    tx = bind_flat(sch, spatial)
    register_acc(sch, acc, c, tx)
