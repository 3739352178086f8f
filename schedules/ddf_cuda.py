"""Default CUDA schedules for the DDF kernels.

fwd, dx (static shapes): a block owns a ty x tx pixel tile (16 x 16 by default; wider for short
images, smaller where the staged tiles would pass TILE_SHARED_BYTES) of one (batch, head) and a
chunk of cc channels of that head (the largest divisor of Cg up to 32), a thread per pixel of
the tile looping over the chunk's channels. Per channel the block stages, with cooperative
loads, the input tile with its halo (fwd: X, padding an index check; dx: the rows of dO the
tile's taps read, padding an index check) and the k x k taps of C in shared memory. S is
shared by every channel of the head, so it is loaded once per chunk: fwd keeps each pixel's
k x k taps in registers (k <= UNROLL_TAPS; shared memory beyond), dx stages the k x k planes of
S over the tile's window in shared memory (a pixel's taps come from k x k different
positions). Each thread keeps its accumulator in a register. dx tiles its phase grid
(``ops.ddf.ddf_dx``): each pixel visits only the taps of its output phase (at stride s about
k^2/s^2 of them, not k^2 on a zero-inserted grid), and a tile's window covers about t/s +
(k-1)*d/s rows of dO and S instead of t + (k-1)*d (the shared-memory budget in ``_tile`` still
assumes the latter: an upper bound).
Estimate (gpu_report.requested_bytes, loads + the output's stores, no cache), 8x256x56x56 k3
float32: 4 x 4 tiles, per axis 17+18+18+9 = 62 input rows loaded over the tiles' windows
(56 rows, the halos, no padding loads), cc = 32. fwd: X 8*256*62*62*4 B = 31.5 MB, S
8*9*56*56*4 B * (256/32 chunks) = 7.2 MB, C 8*256*9*16 tiles*4 B = 1.2 MB, out 25.7 MB: 65.6 MB
= 1.25x the 52.4 MB minimum (the thread-per-output schedule's loads: 694 MB, 13.2x). dx: dO
31.5 MB, S 8*9*62*62*4 B * 8 chunks = 8.9 MB, C 1.2 MB, dX 25.7 MB: 67.2 MB =
1.28x. 2x256x200x300: 1.26x (fwd) and 1.30x (dx).
Symbolic shapes (generic kernels), and tiles under MIN_TILE_THREADS pixels (huge k or
dilation): one thread per output element over the fused (plane, y, x) loops, the k x k taps a
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

Shape-generic kernels (B, H, W symbolic) take the thread-per-output fwd/dx and the same ds/dc
schedules with fixed thread counts (``threads_for`` of a symbolic extent) and predicated
tails; dc then puts one warp across x.
"""
from __future__ import annotations

from dynfilter_tvm.ops.ddf import out_size

from . import register
from .common import MAX_THREADS, UNROLL_TAPS, bind_flat, extent, register_acc, threads_for, unroll_taps

WARP = 32
CHANNEL_SLICES = 8  # ds: threads across channels per output


def _thread_per_output(sch, wl):
    """fwd, dx: acc(b, g, c, y, x; u, v), one thread per (b, g, c, y, x)."""
    acc = sch.get_sblock("acc")
    *spatial, u, v = sch.get_loops(acc)
    tx = bind_flat(sch, spatial)
    unroll_taps(sch, wl, u, v)
    register_acc(sch, acc, u, tx)


# -- fwd, dx: pixel tiles x channel chunks ---------------------------------------------------
TILE = 16  # output pixels per tile side (a 16 x 16 tile, 256 threads)
CHANNEL_CHUNK = 32  # channels of a head per block (the largest divisor of Cg up to this)
TILE_SHARED_BYTES = 24 * 1024  # shared memory per block the tiles may take (occupancy)
MIN_TILE_THREADS = 32  # smaller tiles (huge k or dilation): the thread-per-output schedule


def _chunk(cg: int) -> int:
    return max(n for n in range(1, min(cg, CHANNEL_CHUNK) + 1) if cg % n == 0)


def _tile(wl, kernel: str, ho: int, wo: int):
    """(rows, cols) of a block's pixel tile, or None when no tile of at least MIN_TILE_THREADS
    pixels fits its staged inputs in TILE_SHARED_BYTES."""
    k, s, d = wl.p["k"], wl.p["s"], wl.p["d"]
    item = 8 if wl.dtype == "float64" else 4
    halo = (k - 1) * d

    def shared(ty, tx):
        if kernel == "fwd":  # X tile with its halo, C of one channel; S in registers or shared
            taps = 0 if k <= UNROLL_TAPS else k * k * ty * tx
            return (((ty - 1) * s + halo + 1) * ((tx - 1) * s + halo + 1) + k * k + taps) * item
        # dx: dO and the k x k planes of S on the zero-inserted grid, with the halo; C
        return ((k * k + 1) * (ty + halo) * (tx + halo) + k * k) * item

    tx = min(wo, max(TILE, MAX_THREADS // ho))  # short images: wider tiles
    ty = min(ho, MAX_THREADS // tx)
    while shared(ty, tx) > TILE_SHARED_BYTES and ty * tx >= MIN_TILE_THREADS:
        if ty >= tx:
            ty = (ty + 1) // 2
        else:
            tx = (tx + 1) // 2
    if shared(ty, tx) > TILE_SHARED_BYTES or ty * tx < min(MIN_TILE_THREADS, ho * wo):
        return None
    return ty, tx


def _cooperative(sch, block, loop, threads: int) -> None:
    """Stage ``block`` (already in shared scope) at ``loop``: its loops fused and spread over
    the block's ``threads`` (threadIdx.x), each thread loading every threads-th element."""
    sch.compute_at(block, loop)
    loops = sch.get_loops(block)
    at = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(loop)))
    loops = loops[at + 1:]  # compute_at made none for unit-extent axes
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0] if loops else sch.add_unit_loop(block)
    _, tx = sch.split(fused, [None, threads])
    sch.bind(tx, "threadIdx.x")


def _tiled(sch, wl, kernel: str, x_stage: str, s_stage):
    """fwd, dx: acc(b, g, c, y, x; u, v), a block per (b, g, channel chunk, ty x tx pixel tile),
    a thread per pixel of the tile looping over the chunk's channels. Per channel the block
    stages the input tile with its halo (``x_stage``, padding or zero insertion as index
    checks) and C in shared memory; S is loaded once per chunk: into registers (fwd, taps
    unrolled: S[.., y, x] of the thread's own pixel), or into shared memory (``s_stage``)."""
    acc = sch.get_sblock("acc")
    b, g, c, y, x, u, v = sch.get_loops(acc)
    ty, tx = _tile(wl, kernel, extent(sch, y), extent(sch, x))
    threads = ty * tx
    yo, yi = sch.split(y, [None, ty])
    xo, xi = sch.split(x, [None, tx])
    co, ci = sch.split(c, [None, _chunk(extent(sch, c))])
    sch.reorder(b, g, co, yo, xo, yi, xi, ci, u, v)
    blk = sch.fuse(b, g, co, yo, xo)
    thr = sch.fuse(yi, xi)
    sch.bind(blk, "blockIdx.x")
    sch.bind(thr, "threadIdx.x")
    # shared scope before compute_at: the staged region then covers the whole tile
    xs = sch.get_sblock(x_stage)
    sch.set_scope(xs, 0, "shared")
    _cooperative(sch, xs, ci, threads)
    cs = sch.cache_read(acc, 2, "shared")
    _cooperative(sch, cs, ci, threads)
    if s_stage is None:
        sl = sch.cache_read(acc, 1, "local")
        sch.compute_at(sl, thr)
    else:
        ss = s_stage()
        sch.set_scope(ss, 0, "shared")
        _cooperative(sch, ss, thr, threads)
    unroll_taps(sch, wl, u, v)
    sch.set_scope(acc, 0, "local")
    sch.decompose_reduction(acc, u)
    sch.reverse_compute_at(sch.get_sblock("out"), ci)


def _tiles_fit(sch, wl, kernel: str) -> bool:
    if wl.kind == "generic":  # symbolic H, W: the tile arithmetic needs static extents
        return False
    *_, y, x, _, _ = sch.get_loops(sch.get_sblock("acc"))
    return _tile(wl, kernel, extent(sch, y), extent(sch, x)) is not None


@register("ddf", "fwd", "cuda")
def fwd(sch, wl, target):
    if not _tiles_fit(sch, wl, "fwd"):
        sch.compute_inline(sch.get_sblock("Xpad"))
        if wl.kind == "generic":  # S's rows widened to whole CPU vectors: index checks here
            sch.compute_inline(sch.get_sblock("Spad"))
        _thread_per_output(sch, wl)
        return

    def s_shared():
        return sch.cache_read(sch.get_sblock("acc"), 1, "shared")

    _tiled(sch, wl, "fwd", "Xpad", None if wl.p["k"] <= UNROLL_TAPS else s_shared)


@register("ddf", "dx", "cuda")
def dx(sch, wl, target):
    if not _tiles_fit(sch, wl, "dx"):
        # Both padded copies become index checks in the loads (no copies in global memory).
        sch.compute_inline(sch.get_sblock("dOp"))
        sch.compute_inline(sch.get_sblock("Sp"))
        _thread_per_output(sch, wl)
        return
    # The padded dO and S are staged tiles, built with index checks (no copies in global memory).
    _tiled(sch, wl, "dx", "dOp", lambda: sch.get_sblock("Sp"))


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
