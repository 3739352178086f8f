"""Default CUDA schedules for the DDF kernels.

fwd, dx: one thread per output element over the fused (plane, y, x) loops, the k x k taps a
serial (unrolled for small k) loop around a register accumulator. The pad stages are inlined:
their bounds checks are cheaper on a GPU than a padded copy in global memory.
ds: the sum over a head's channels. With few channels (< 32) one thread per output loops over
them; with more, 8 threads share each output (threads across channels, a shared-memory
allreduce), 32 outputs along x per block.
dc: threads across x for each output (b, g, c, u, v), several outputs per block when the image
is narrow: each thread sums its own image columns over y (acc_cols, in a register), then the
threads of the output sum the columns (TVM's allreduce: warp shuffles, or shared memory when
the width is not a power of two).
Every schedule keeps its accumulators in registers ("local" scope) and writes the cast result
('out') from the thread that finished the sum.

Shape-generic kernels (B, H, W symbolic) take the same schedules with fixed thread counts
(``threads_for`` of a symbolic extent) and predicated tails; dc then puts one warp across x.
"""
from __future__ import annotations

from dynfilter_tvm.ops.ddf import out_size

from . import register
from .common import MAX_THREADS, bind_flat, extent, register_acc, threads_for, unroll_taps

WARP = 32
CHANNEL_SLICES = 8  # ds: threads across channels per output


def _thread_per_output(sch, wl):
    """fwd, dx: acc(b, g, c, y, x; u, v), one thread per (b, g, c, y, x)."""
    acc = sch.get_sblock("acc")
    *spatial, u, v = sch.get_loops(acc)
    tx = bind_flat(sch, spatial)
    unroll_taps(sch, wl, u, v)
    register_acc(sch, acc, u, tx)


@register("ddf", "fwd", "cuda")
def fwd(sch, wl, target):
    sch.compute_inline(sch.get_sblock("Xpad"))
    _thread_per_output(sch, wl)


@register("ddf", "dx", "cuda")
def dx(sch, wl, target):
    # Both zero-inserted grids become index checks in the loads (no scattered copies).
    sch.compute_inline(sch.get_sblock("dOu"))
    sch.compute_inline(sch.get_sblock("Su"))
    _thread_per_output(sch, wl)


@register("ddf", "ds", "cuda")
def ds(sch, wl, target):
    sch.compute_inline(sch.get_sblock("Xpad"))
    acc = sch.get_sblock("acc")
    b, g, u, v, y, x, c = sch.get_loops(acc)
    if wl.p["C"] // wl.p["G"] < WARP:
        tx = bind_flat(sch, [b, g, u, v, y, x])
        register_acc(sch, acc, c, tx)
        return
    # 32 outputs (along x: coalesced loads) x 8 channel slices per block; each thread sums
    # every 8th channel, then the block sums the 8 slices (TVM's allreduce, in shared memory).
    # The reduction loops must be the innermost ones, whatever threads they are bound to.
    spatial = sch.fuse(b, g, u, v, y, x)
    bx, tx = sch.split(spatial, [None, threads_for(extent(sch, spatial), WARP)])
    co, ci = sch.split(c, [None, CHANNEL_SLICES])
    sch.reorder(bx, tx, ci, co)
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    sch.bind(ci, "threadIdx.y")
    sch.set_scope(acc, 0, "local")
    sch.reverse_compute_at(sch.get_sblock("out"), tx)


@register("ddf", "dc", "cuda")
def dc(sch, wl, target):
    sch.compute_inline(sch.get_sblock("Xpad"))
    acc = sch.get_sblock("acc")
    b, g, c, u, v, x = sch.get_loops(acc)
    # Threads across x (innermost, so the column sum's loop over x is a cross-thread reduction,
    # and the loads along x coalesce); wider images loop over x in each thread (xo). Narrow
    # images put several outputs in one block (threadIdx.y), each reduced on its own.
    W = wl.p["W"]
    nx = WARP if W is None else threads_for(out_size(W, wl.p["s"]))
    outputs = sch.fuse(b, g, c, u, v)
    bx, ty = sch.split(outputs, [None, threads_for(extent(sch, outputs), max(1, MAX_THREADS // nx))])
    xo, xi = sch.split(x, [None, nx])
    sch.reorder(bx, ty, xi, xo)
    sch.bind(bx, "blockIdx.x")
    sch.bind(ty, "threadIdx.y")
    sch.bind(xi, "threadIdx.x")
    cols = sch.get_sblock("acc_cols")
    sch.compute_at(cols, xo)  # each thread computes the columns it then sums
    sch.set_scope(cols, 0, "local")
    sch.set_scope(acc, 0, "local")
    sch.reverse_compute_at(sch.get_sblock("out"), ty)
    # No decompose_reduction for acc_cols (its zeroing stays a 'y == 0' branch in the loop):
    # after the split of the fused outputs, TVM simplifies some block bindings into forms it
    # no longer recognises as quasi-affine, and the primitive then fails (e.g. Wo = 20).
