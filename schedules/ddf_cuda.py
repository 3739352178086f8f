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
Symbolic shapes where not tiled (see "Shape-generic kernels" below), and tiles under
MIN_TILE_THREADS pixels (huge k or dilation): one thread per output element over the fused (plane, y, x) loops, the k x k taps a
serial (unrolled for small k) loop around a register accumulator. The pad stages are inlined:
their bounds checks are cheaper on a GPU than a padded copy in global memory.
ds (static shapes, k <= UNROLL_TAPS): the forward's pixel tiles (``_tile(wl, "fwd", ...)``), a
block per (b, head, tile, channel block), a thread per pixel keeping all k x k tap sums in
registers while it loops over the block's channels. Per channel the block stages the X tile
with its halo and the k x k taps of C in shared memory, and each thread loads its dO once (a
register used by all k x k taps). Channel blocks: 1 where the (b, head, tile) blocks reach
MIN_BLOCKS, else the smallest divisor of Cg that gets there (never 2 channels per block:
``_ds_channel_blocks``); their sums then go through a
scratch (channel blocks, B, G, k, k, Ho, Wo) that a second kernel (a thread per output) adds
up. Estimate, 8x256x56x56 k3 float32 (128 tiles -> 4 channel blocks, 512 blocks): dO 25.7 MB
once, X 31.5 MB (the fwd's 62 x 62 window rows and columns per 56 x 56 plane), C
8*256*9*16 tiles*4 B = 1.2 MB, scratch 4*8*9*56*56*4 B = 3.6 MB stored and loaded, dS 0.9 MB:
66.5 MB = 1.27x the 52.4 MB minimum (the thread-per-output schedule: 694 MB of loads, 13.2x);
2x256x200x300 (494 tiles, one kernel): 1.14x.
Generic ds at k = 1, and k > UNROLL_TAPS (the sums would live in local memory): with few channels
(< 32) one thread per output loops over them; with more, 8 threads share each output (threads
across channels, a shared-memory allreduce), 32 outputs along x per block.
dc (static shapes, stride 1, k <= UNROLL_TAPS; ``_dc_streaming``), two kernels. The first: a block per
(b, head, chunk of cc channels: the largest divisor of Cg up to 16, column block), a warp's
lanes along x (nx = min(Wo, 32)) for each channel of the chunk (threadIdx.y). A thread walks
its block's columns and, per column, every row, keeping the column's k x k tap sums
(acc_cols) in registers: dO loaded once per (c, pixel), X from a staged tile of cc channels
x ((ty-1)*s + halo + 1 rows, ty = 8) x ((nx-1)*s + halo + 1 columns), S from a staged row of
the k x k planes shared by the cc channels. The column sums go to the lane's sums
(registers); at the end the lanes store them to shared memory and thread t of each channel
adds up the nx lanes of taps t, t + nx, ... (serially: TVM's allreduce of k x k values per
thread would sit in a tap loop, which its lowering refuses once unrolled) and stores the
block's sums to a scratch (column blocks, B, G, Cg, k, k). Column blocks: one per nx-wide
column tile when the (b, head, chunk) blocks alone are fewer than MIN_BLOCKS (264, 2 per SM),
else one for the whole row. The second kernel, a thread per output, adds up the column
blocks. Estimate, 8x256x56x56 k3 float32 (cc = 16, nx = 32, ty = 8, 2 column blocks, 256
blocks): X windows of 9+10*5+9 = 68 rows and 33+25 = 58 columns per plane, 8*256*68*58*4 B
= 32.3 MB; dO 25.7 MB; S 8*9*56*56*4 B * (256/16 chunks) = 14.5 MB; scratch 2*8*256*9*4 B =
0.15 MB stored and loaded; dC 0.07 MB: 72.8 MB = 1.39x the 52.4 MB minimum (the per-output
schedule: 694 MB of loads, 13.2x); 2x256x200x300 (10 column blocks, 320 blocks): 1.42x.
float64 takes cc = 8 (shared memory): 1.67x, 1.69x.
Symbolic shapes and k > UNROLL_TAPS: threads across x for each output (b, g, c, u, v),
several outputs per block when the image is narrow: each thread sums its own image columns
over y (acc_cols, in a register), then the threads of the output sum the columns (TVM's
allreduce: warp shuffles, or shared memory when the width is not a power of two).
Every schedule keeps its accumulators in registers ("local" scope) and writes the cast result
('out') from the thread that finished the sum.

Shape-generic kernels (B, H, W symbolic; ``GENERIC_TILED``): fwd, ds, dc and dx (1 < k <=
UNROLL_TAPS, any stride) take the tiled schedules above with a FIXED tile, the grid ceil-divided
over the symbolic output (blockIdx.x tile columns, .y tile rows, .z planes: ``_bind_blocks``,
no block index divided by a run-time extent) and the tail tiles predicated, so one build
serves every batch and size. fwd: TILE x TILE pixels over its padded output (Hq x Wq,
``ops.ddf``: rows in pairs, columns in 16s; the tile whenever _tile would not shrink it), S
from its padded stage ('Spad', index checks) into registers, chunks of cc channels as the
static one. dx (``_generic_dx_tiles``): stride 1, the first of GENERIC_DX_TILES (32 x 15,
16 x 15, 8 x 15) under TILE_SHARED_BYTES; stride s > 1, tiles of whole s x s phase blocks
(GENERIC_DX_PHASE_TILES: 12 x 9 rows x columns per phase, 24 x 18 pixels at s = 2; each axis
of the phase grid split by s first, so that a tile's rows of one phase are consecutive rows
of dO and S: the window is affine in the tile row), S's k x k planes staged one plane per
pass (all fused, TVM bounds the window by the symbolic rows); the first tile whose stages
compact to a constant size, chunks of cc channels as the static one. Not at gcd(s, d) > 1
(s = d = 2: TVM bounds both axes of the stages by the symbolic extent for every tile tried).
ds: 24 x 8 pixels (``_generic_ds_tile``: whole ROW_QUANTUM columns of its padded rows; 32 x 8
where 24 rows do not compact, at dilation 2), and channel blocks by the head's channel count
alone (the block count is unknown at build time: ``_generic_ds_channel_blocks``, at most
GENERIC_DS_CHANNELS = 128 channels per block) whose sums a second kernel adds up, as the
static one's.
The shared stages must have a constant size (codegen refuses a non-constant allocation, the
trap that kept the first generic kernels per-output). TVM sizes a stage from the regions its
readers and writers touch, and clips them to the staged buffer's symbolic extent unless it
proves that the window fits or the clipped extent varies with the tile (then it takes its
constant bound). ``_declare_read`` declares each pixel's whole tap window (affine in the
pixel: y*s + u*d at d > 1 is not); the tiles fit provably (fwd: Wq a multiple of 16 >= 16;
ds: rows of whole ROW_QUANTUM pixels) or through the tail predicate (rows; dx's columns at
an odd tile width, 15, or at stride s an odd count of columns per phase: at 8, 12, 16 or 32
columns, a divisor or multiple of dx_grid's column quantum, TVM clips to a symbolic extent;
at stride s > 1 tiles of the interleaved grid hh, of any size, are clipped too, tiles of
whole phase blocks are not).
No rule covers all cases, so each generic tiled schedule is tried on a copy first and kept
only if its stages compact to a constant size (``common.if_constant``: one more
scheduling and four lowering passes, well under a second), else the per-output one.
dc (every stride): the streaming schedule (``_dc_streaming``) with ROW_QUANTUM = 8 lanes along
x (so TVM proves a column tile's X window inside the padded rows: whole ROW_QUANTUM pixels;
with 32 lanes it bounds the window by the symbolic row, min(Wq + 2, 34) columns) for each of cc
channels (threadIdx.y, cc as the static one), 16-row X tiles (GENERIC_DC_ROWS) with the last
one predicated, S staged from its widened rows ('Spad'), a block per (b, head, channel chunk) x
column tile (blockIdx.x x .y); each pixel's tap window is declared (at dilation > 1 the X stage
was otherwise bounded by the symbolic rows). The per-thread buffers (acc_cols, the lanes' sums)
are k x k registers, the stages 16 x 18 x 10 X and 9 x 8 S elements at k3 s1 (ptxas, sm_90,
C/G = 256: 11,808 B of shared memory float32, 39 registers, no spills; k7 float64: 28,224 B,
155 registers, no spills).
Estimate (``gpu_report.requested_bytes``' accounting, the static kernels' windows), 8x256x
56x56 k3 float32: fwd as the static (16 x 16 tiles): 65.6 MB = 1.25x the 52.4 MB minimum. dx,
32 x 15 tiles (2 x 4 per plane), dO rows over the windows 33+25 = 58, columns 16+17+17+12 = 62:
dO 8*256*58*62*4 B = 29.5 MB, S 8*9*58*62*4 B * 8 chunks = 8.3 MB, C 8*256*9*8*4 B = 0.6 MB, dX
25.7 MB: 64.0 MB = 1.22x (static 1.28x). ds, 24 x 8 tiles, 21 per plane (3 x 7), 2 channel
blocks of 128, X windows of 25+25+10 = 60 rows and 9+10*5+9 = 68 columns, 8*256*60*68*4 B =
33.4 MB, dO 25.7 MB, C 8*256*9*21*4 B = 1.5 MB, scratch 2*8*9*56*56*4 B = 1.8 MB stored and
loaded, dS 0.9 MB: 65.2 MB = 1.24x (the static: 1.27x, its 4 channel blocks' scratch
included); 336 blocks of 192 threads (one channel block of 32 x 8 tiles launched 112).
2x256x200x300: fwd 1.26x, dx 1.26x, ds 1.27x (static 1.26x, 1.30x, 1.14x: its wide tiles, 494
of them, need no channel split; the generic build cannot know). dx at stride 2 (k3, the strided
layers of ddf_resnet50; 24 x 18 tiles, 12 x 9 per phase, windows of 13 x 10 rows x columns per
phase): 8x128x56x56 18.2 MB = 1.11x the 16.3 MB minimum, 8x256x28x28 1.11x, 2x256x200x300 1.12x
(static 1.13x, 1.11x, 1.14x; the per-output generic dx it replaces counted every tap of every
output). dc (cc = 16, 4 x 7
tiles of 16 x 8 per plane): X windows of 17+18+18+9 = 62 rows and 9+10*5+9 = 68 columns,
8*256*62*68*4 B = 34.5 MB; dO 25.7 MB; S 8*9*56*56*4 B * (256/16 chunks) = 14.5 MB; scratch
7*8*256*9*4 B stored and loaded 1.0 MB; dC 0.07 MB: 75.8 MB = 1.45x the 52.4 MB minimum (static
1.39x; float64 keeps cc = 16: 1.45x, static 1.67x); 2x256x200x300 (X windows 224 rows x 374
columns, 38 column blocks): 1.46x (static 1.42x). Its blocks: 896 at 8x256x56x56 (128 x 7
column tiles), 128 threads each. The per-output generic kernels requested 13.2x.
The other generic kernels (every kernel at k = 1 or k > UNROLL_TAPS, dx at gcd(s, d) > 1, or
where no tile fits or its stages would not be constant) keep the thread-per-output fwd/dx
and the per-output ds/dc schedules with fixed thread counts (``threads_for`` of a symbolic
extent) and predicated tails; dc then puts one warp across x.
"""
from __future__ import annotations

import tvm
import tvm.s_tir as s_tir
from tvm import tirx
from tvm.s_tir.schedule import _ffi_api

from dynfilter_tvm.ops.ddf import ROW_QUANTUM, _phase_taps, out_size

from . import register
from .common import MAX_THREADS, UNROLL_TAPS, after_compute_at, bind_flat, constant_stages, extent, if_constant, register_acc, threads_for, unroll, unroll_taps

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
MIN_BLOCKS = 264  # ds, dc: blocks to aim for (2 per SM of an H100 / H200)
MIN_TILE_THREADS = 32  # smaller tiles (huge k or dilation): the thread-per-output schedule
GENERIC_TILED = ("fwd", "ds", "dx", "dc")  # generic kernels that take the tiled schedules (see _declare_read)
# generic dx at stride 1: tiles of an odd width (see the module docstring), largest first
GENERIC_DX_TILES = ((32, 15), (16, 15), (8, 15))
# generic dx at stride s > 1: tiles of whole phase blocks, (rows, columns) of each phase
# (pixels: s times as many per axis), an odd column count (see _generic_dx_tiles), the first
# that fits. 12 x 9 first: ptxas (nvcc 13, launch bounds of the tile's threads) spilled 4-32
# bytes in float64 at C/G >= 64 with 16 x 7, 16 x 5 or 8 x 5 (32 registers); 12 x 9, then the
# rest, spilled nothing in 72 builds (k3, k5, k7 at s = 2, 3; C/G = 8, 64, 256; float32 and
# float64; sm_80 and sm_90)
GENERIC_DX_PHASE_TILES = ((12, 9), (16, 5), (8, 7), (8, 5), (4, 7), (4, 5), (4, 3))
MAX_TILE_THREADS = 512  # generic dx: threads per block of its largest tiles


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

    if isinstance(ho, int) and isinstance(wo, int):
        tx = min(wo, max(TILE, MAX_THREADS // ho))  # short images: wider tiles
        ty = min(ho, MAX_THREADS // tx)
    elif kernel == "dx":  # generic dx: the first of its fixed tiles that fits (no shrinking)
        return next(iter(_generic_dx_tiles(wl)), None)
    else:  # symbolic extents (generic kernels): a fixed tile, the grid's tails predicated
        ty = tx = TILE
    while shared(ty, tx) > TILE_SHARED_BYTES and ty * tx >= MIN_TILE_THREADS:
        if ty >= tx:
            ty = (ty + 1) // 2
        else:
            tx = (tx + 1) // 2
    static = isinstance(ho, int) and isinstance(wo, int)
    least = min(MIN_TILE_THREADS, ho * wo) if static else MIN_TILE_THREADS
    if shared(ty, tx) > TILE_SHARED_BYTES or ty * tx < least:
        return None
    return ty, tx


def _generic_dx_tiles(wl) -> list:
    """The generic dx's candidate pixel tiles, largest first, those whose stages fit in
    TILE_SHARED_BYTES. Stride 1: GENERIC_DX_TILES. Stride s > 1: GENERIC_DX_PHASE_TILES, whole
    s x s phase blocks (``_tiled`` splits each axis of the phase grid by s first, so that a
    tile's rows of a phase are consecutive rows of dO and S, the tile's window affine in them:
    with tiles of hh, TVM bounds the window by the symbolic rows), up to MAX_TILE_THREADS
    threads. The stages: dO and the k x k planes of S over the window, tile/s + span - 1 rows
    and columns (span: the rows the taps of every phase reach, ``ops.ddf._phase_taps``), and C.
    Odd column counts per phase: at 8 the window of S is again bounded by the symbolic row
    (as at stride 1, where the tile is 15 wide). Which tile compacts to constant stages is
    checked per build (``dx``: the first that does)."""
    k, s, d = wl.p["k"], wl.p["s"], wl.p["d"]
    item = 8 if wl.dtype == "float64" else 4
    if s == 1:
        halo = (k - 1) * d
        fits = [(ty, tx) for ty, tx in GENERIC_DX_TILES
                if ((k * k + 1) * (ty + halo) * (tx + halo) + k * k) * item <= TILE_SHARED_BYTES]
        return fits
    nj, _, dg, _, q0, _ = _phase_taps(k, s, d)
    offs = [q0(r) + j * dg for r in range(s) for j in range(nj)]
    span = max(offs) - min(offs) + 1
    return [(ry * s, rx * s) for ry, rx in GENERIC_DX_PHASE_TILES
            if ry * rx * s * s <= MAX_TILE_THREADS
            and ((k * k + 1) * (ry + span - 1) * (rx + span - 1) + k * k) * item <= TILE_SHARED_BYTES]


def _declare_read(sch, block, stage: str, box) -> None:
    """Generic kernels: declare that ``block`` reads the staged buffer ``stage`` (its name, or
    the name before TVM's scope suffix) over ``box(*iter_vars)``, a (begin, end) pair per
    buffer axis. TVM sizes a stage from its readers' regions: where it cannot bring a read
    index into one affine window (taps at dilation > 1: y*s + u*d, tiles of a height that does
    not divide the padded rows), it bounds the window by the buffer's symbolic extent, a
    shared array of non-constant size that codegen refuses. The declared box (each pixel's
    whole tap window, a constant extent) makes the tile's window affine in the pixel, so the
    stage gets the tile's fixed size; the tail tiles' loads stay predicated as before."""
    obj = sch.get(block)
    vars_ = [iv.var for iv in obj.iter_vars]
    index = next(i for i, r in enumerate(obj.reads) if r.source.name.split("_")[0] == stage)
    flat = [e for lo_hi in box(*vars_) for e in lo_hi]
    # (the Python wrapper wants one range per block variable, not per buffer axis)
    _ffi_api.ScheduleAnnotateBufferAccess(sch, block, index, 0, tirx.IndexMap(vars_, flat, None))


def _cooperative(sch, block, loop, threads, serial: int = 0) -> None:
    """Stage ``block`` (already in shared scope) at ``loop``: its loops fused and spread over
    the block's ``threads`` (threadIdx.x; a pair: threadIdx.y, threadIdx.x), each thread loading
    every threads-th element. ``serial``: that many leading loops stay serial around the
    fused rest."""
    sch.compute_at(block, loop)
    loops = sch.get_loops(block)
    at = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(loop)))
    loops = loops[at + 1 + serial:]  # compute_at made none for unit-extent axes
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0] if loops else sch.add_unit_loop(block)
    if isinstance(threads, int):
        _, tx = sch.split(fused, [None, threads])
    else:
        _, ty, tx = sch.split(fused, [None, *threads])
        sch.bind(ty, "threadIdx.y")
    sch.bind(tx, "threadIdx.x")


def _tiled(sch, wl, kernel: str, x_stage: str, s_stage, tile=None):
    """fwd, dx: acc(b, g, c, y, x; u, v), a block per (b, g, channel chunk, ty x tx pixel tile),
    a thread per pixel of the tile looping over the chunk's channels. Per channel the block
    stages the input tile with its halo (``x_stage``, padding or zero insertion as index
    checks) and C in shared memory; S is loaded once per chunk: into registers (fwd, taps
    unrolled: S[.., y, x] of the thread's own pixel), or into shared memory (``s_stage``)."""
    acc = sch.get_sblock("acc")
    b, g, c, y, x, u, v = sch.get_loops(acc)
    ty, tx = tile or _tile(wl, kernel, extent(sch, y), extent(sch, x))
    threads = ty * tx
    s = wl.p["s"]
    phases = kernel == "dx" and wl.kind == "generic" and s > 1
    co, ci = sch.split(c, [None, _chunk(extent(sch, c))])
    if phases:  # tiles of whole s x s phase blocks (_generic_dx_tiles)
        yq, yr = sch.split(y, [None, s])
        xq, xr = sch.split(x, [None, s])
        yo, yi = sch.split(yq, [None, ty // s])
        xo, xi = sch.split(xq, [None, tx // s])
        sch.reorder(b, g, co, yo, xo, yi, yr, xi, xr, ci, u, v)
        inner = [yi, yr, xi, xr]  # (row-major over the tile's pixels: x innermost, coalesced)
    else:
        yo, yi = sch.split(y, [None, ty])
        xo, xi = sch.split(x, [None, tx])
        sch.reorder(b, g, co, yo, xo, yi, xi, ci, u, v)
        inner = [yi, xi]
    _bind_blocks(sch, wl, [b, g, co], yo, xo)
    thr = sch.fuse(*inner)
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
    elif kernel == "fwd" and wl.p["k"] <= UNROLL_TAPS:  # the generic fwd's own S stage, in registers
        sl = s_stage()
        sch.set_scope(sl, 0, "local")
        sch.compute_at(sl, thr)
    else:
        ss = s_stage()
        sch.set_scope(ss, 0, "shared")
        # phases: one tap plane per pass (the window's rows a plain thread index: with
        # every plane fused, TVM bounds the window of S by its symbolic rows)
        _cooperative(sch, ss, thr, threads, 1 if phases else 0)
    unroll_taps(sch, wl, u, v)
    sch.set_scope(acc, 0, "local")
    sch.decompose_reduction(acc, u)
    sch.reverse_compute_at(sch.get_sblock("out"), ci)
    if wl.kind == "generic":
        _declare_windows(sch, wl, kernel, acc, x_stage)


def _declare_windows(sch, wl, kernel: str, acc, x_stage: str) -> None:
    """Generic fwd, dx: declare each pixel's whole tap window as its read of the staged tiles
    (``_declare_read``). fwd: X rows y*s .. y*s + (k-1)*d. dx (``ops.ddf.ddf_dx``): phase r of
    hh reads dO and S at rows hh//s + ps + e - (q0(r) + j*d/g) for its taps j; the window is
    that over every phase and tap, a superset of each pixel's reads (the tile's window then
    spans the phases of its rows, as the static kernels' staged tiles do)."""
    k, s, d = wl.p["k"], wl.p["s"], wl.p["d"]
    if kernel == "fwd":
        halo = (k - 1) * d
        _declare_read(sch, acc, x_stage, lambda b, g, c, y, x, u, v: (
            (b, b + 1), (g, g + 1), (c, c + 1), (y * s, y * s + halo + 1), (x * s, x * s + halo + 1)))
        return
    nj, _, dg, _, q0, _ = _phase_taps(k, s, d)
    ps = (k - 1) // 2 * d // s
    offs = [q0(r) + j * dg for r in range(s) for j in range(nj)]
    e = max(0, max(offs) - ps)  # (as ddf_dx pads dO and S)

    def window(t):
        base = tirx.floordiv(t, s) + ps + e if s > 1 else t + ps + e
        return base - max(offs), base - min(offs) + 1

    _declare_read(sch, acc, "dOp", lambda b, g, c, hh, ww, j, i: (
        (b, b + 1), (g, g + 1), (c, c + 1), window(hh), window(ww)))
    _declare_read(sch, acc, "Sp", lambda b, g, c, hh, ww, j, i: (
        (b, b + 1), (g, g + 1), (0, k), (0, k), window(hh), window(ww)))


def _loops_under(sch, block, loop) -> list:
    """The loops of ``block`` strictly inside ``loop`` (compute_at makes none for unit axes)."""
    loops = sch.get_loops(block)
    at = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(loop)))
    return loops[at + 1:]


def _read_index(sch, block, buffer: str) -> int:
    """Index of ``buffer`` among the reads of ``block`` (for cache_read)."""
    return next(i for i, r in enumerate(sch.get(block).reads) if r.source.name == buffer)


def _bind_blocks(sch, wl, planes, yo, xo) -> None:
    """A block per (plane, tile row, tile column). Static kernels: one fused blockIdx.x.
    Generic ones: blockIdx.x over the tile columns, .y over the tile rows, .z over the planes
    (a grid of ceil-divided symbolic extents), so that no thread splits a block index by a
    run-time extent (signed floor division and modulo by kernel arguments: registers, and
    spills at sm_80)."""
    if wl.kind != "generic":
        sch.bind(sch.fuse(*planes, yo, xo), "blockIdx.x")
        return
    sch.bind(sch.fuse(*planes), "blockIdx.z")
    sch.bind(yo, "blockIdx.y")
    sch.bind(xo, "blockIdx.x")


def _tiles_fit(sch, wl, kernel: str) -> bool:
    *_, y, x, _, _ = sch.get_loops(sch.get_sblock("acc"))
    tile = _tile(wl, kernel, extent(sch, y), extent(sch, x))
    if wl.kind == "generic":  # a fixed tile (fwd: TILE x TILE, S in registers: taps unrolled)
        # (k = 1: TVM's region analysis of the unit tap loops overflows int32; no halo to share)
        fixed = tile is not None if kernel == "dx" else tile == (TILE, TILE)
        return kernel in GENERIC_TILED and 1 < wl.p["k"] <= UNROLL_TAPS and fixed
    return tile is not None


@register("ddf", "fwd", "cuda")
def fwd(sch, wl, target):
    if not _tiles_fit(sch, wl, "fwd"):
        sch.compute_inline(sch.get_sblock("Xpad"))
        if wl.kind == "generic":  # S's rows widened to whole CPU vectors: index checks here
            sch.compute_inline(sch.get_sblock("Spad"))
        _thread_per_output(sch, wl)
        return

    if wl.kind == "generic":  # S's padded rows ('Spad') are the stage, built with index checks
        def generic(sch_):
            _tiled(sch_, wl, "fwd", "Xpad", lambda: sch_.get_sblock("Spad"))

        if if_constant(sch, generic):
            return
        sch.compute_inline(sch.get_sblock("Xpad"))
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
    def tiled(tile):
        return lambda sch_: _tiled(sch_, wl, "dx", "dOp", lambda: sch_.get_sblock("Sp"), tile)

    if wl.kind != "generic":
        tiled(None)(sch)
    elif not any(if_constant(sch, tiled(t)) for t in _generic_dx_tiles(wl)):  # the first constant one
        sch.compute_inline(sch.get_sblock("dOp"))
        sch.compute_inline(sch.get_sblock("Sp"))
        _thread_per_output(sch, wl)


def generic_ds_tile(wl, func):
    """The pixel tile the generic ds build of ``wl`` (unscheduled PrimFunc ``func``) takes:
    the first of GENERIC_DS_ROWS whose stages compact to a constant size; None where it is
    per-output."""
    for rows in GENERIC_DS_ROWS:
        trial = s_tir.Schedule(tvm.IRModule({"main": func}))
        if _ds_tiled(trial, wl, rows) and constant_stages(trial.mod):
            return _generic_ds_tile(wl, rows)
    return None


def generic_dx_tile(wl, func):
    """The pixel tile the generic dx build of ``wl`` (unscheduled PrimFunc ``func``) takes:
    the first of ``_generic_dx_tiles`` whose stages compact to a constant size; None where it
    is per-output."""
    if not ("dx" in GENERIC_TILED and 1 < wl.p["k"] <= UNROLL_TAPS):
        return None
    for t in _generic_dx_tiles(wl):
        trial = s_tir.Schedule(tvm.IRModule({"main": func}))
        _tiled(trial, wl, "dx", "dOp", lambda: trial.get_sblock("Sp"), t)
        if constant_stages(trial.mod):
            return t
    return None


def generic_tiled(wl, func) -> bool:
    """Whether the generic CUDA build of DDF kernel ``wl`` (unscheduled PrimFunc ``func``)
    takes its tiled schedule, not the per-output one: its default schedule applied, the answer
    read off the staged tiles (shared-memory stages; the per-output schedules have none
    before lowering). Every configuration is checked as its build would be (the fall-backs
    depend on k, stride, dilation, dtype and on whether TVM compacts the stages; a few tenths
    of a second). ``dispatch`` serves CUDA calls generic where this holds."""
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    {"fwd": fwd, "dx": dx, "ds": ds, "dc": dc}[wl.kernel](sch, wl, None)
    return 'scope="shared"' in sch.mod.script()


def _ds_channel_blocks(wl, tiles: int) -> int:
    """Blocks the head's channels are shared out over in the tiled ds: 1 where the (b, head,
    tile) blocks reach MIN_BLOCKS, else the smallest divisor of Cg that gets there (or Cg).
    Never 2 channels per block: with a channel loop of exactly 2 (around its barriers) the
    pixels of partial tiles come out NaN on PoCL, both ways; the same kernel source with the
    trip count hidden from PoCL's compiler (still 2 at run time) passes, so it is the
    emulator's compilation, not TVM's code, but the executed check must cover every shape:
    such heads get a block per channel (a little more scratch, no other cost)."""
    blocks, cg = wl.p["B"] * wl.p["G"] * tiles, wl.p["C"] // wl.p["G"]
    n = next(n for n in range(1, cg + 1) if cg % n == 0 and (blocks * n >= MIN_BLOCKS or n == cg))
    return cg if cg // n == 2 else n


GENERIC_DS_CHANNELS = 128  # generic ds: channels per block at most (_generic_ds_channel_blocks)
GENERIC_DS_ROWS = (24, 32, 16)  # generic ds: tile rows (x ROW_QUANTUM columns), the first constant


def _generic_ds_channel_blocks(wl) -> int:
    """Channel blocks of the generic ds: its block count is unknown at build time, so the
    head's channels are split by their count alone, into the fewest blocks of at most
    GENERIC_DS_CHANNELS channels (the smallest divisor n of Cg with Cg / n <= that; never 2
    channels per block, see _ds_channel_blocks). Each block's sums cost a scratch of k^2
    values per pixel stored and loaded again against the 2*Cg/n values per pixel (dO and X)
    the block loads: at most k^2 / 128 = 7% more at k = 3. With the 24 x 8 tiles, at
    8x256x56x56 (G = 1, 3 x 7 tiles per plane): 2 channel blocks, 336 blocks (2.5 per SM of
    an H100 / H200), where one channel block of 32 x 8 tiles launched 112."""
    cg = wl.p["C"] // wl.p["G"]
    n = next(n for n in range(1, cg + 1) if cg % n == 0 and cg // n <= GENERIC_DS_CHANNELS)
    return cg if cg // n == 2 else n


def _generic_ds_tile(wl, ty: int = GENERIC_DS_ROWS[0]):
    """The generic ds's fixed tile: ROW_QUANTUM columns (its rows of 'acc' are whole
    ROW_QUANTUM pixels, so TVM proves that one tile's X window fits in the padded rows and
    sizes the shared stage by the tile; a wider tile's would be bounded by the symbolic row)
    x ``ty`` rows; None where the X tile passes TILE_SHARED_BYTES. The build takes the first
    of GENERIC_DS_ROWS whose stages compact to a constant size (at dilation 2, 24 rows do
    not: then 32). 24 rows, not 32: more blocks (at 56 rows 3 tile rows, not 2) for fewer
    channel blocks (2 of 128 channels at C/G = 256, not 4 of 64), whose scratch costs more
    than the extra halo rows: requested bytes (``gpu_report``) 1.24x / 1.27x the minimum at
    8x256x56x56 / 2x256x200x300, against 1.28x / 1.32x with 32 rows and 4 channel blocks
    (the static ds: 1.27x / 1.14x)."""
    k, s, d = wl.p["k"], wl.p["s"], wl.p["d"]
    tx = ROW_QUANTUM
    halo, item = (k - 1) * d, 8 if wl.dtype == "float64" else 4
    shared = (((ty - 1) * s + halo + 1) * ((tx - 1) * s + halo + 1) + k * k) * item
    return (ty, tx) if shared <= TILE_SHARED_BYTES else None


def _ds_tiled(sch, wl, rows: int = GENERIC_DS_ROWS[0]) -> bool:
    """ds: acc(b, g, u, v, y, x; c), a block per (b, g, ty x tx pixel tile, channel block), a
    thread per pixel keeping its k x k tap sums in registers over the block's channels. Per
    channel the block stages the X tile with its halo (padding an index check) and the k x k
    taps of C in shared memory; each thread loads its dO once into a register and uses it
    for all k x k taps. With several channel blocks (too few tiles for MIN_BLOCKS blocks),
    each stores its sums to a scratch (channel blocks, B, G, k, k, Ho, Wo) that a second
    kernel, a thread per output, adds up. False (nothing scheduled) where the taps are not
    unrolled (k > UNROLL_TAPS: the sums would live in local memory) or no tile fits."""
    generic = wl.kind == "generic"
    if generic and not ("ds" in GENERIC_TILED and 1 < wl.p["k"] <= UNROLL_TAPS) or wl.p["k"] > UNROLL_TAPS:
        return False
    acc = sch.get_sblock("acc")
    b, g, u, v, y, x, c = sch.get_loops(acc)
    ho, wo = extent(sch, y), extent(sch, x)
    tile = _generic_ds_tile(wl, rows) if generic else _tile(wl, "fwd", ho, wo)  # the forward's staged tiles
    if tile is None:
        return False
    ty, tx = tile
    if generic:  # dO's rows widened for the CPU vectors: an index check in the load
        sch.compute_inline(sch.get_sblock("dOpad"))
    nb = _generic_ds_channel_blocks(wl) if generic else _ds_channel_blocks(wl, -(-ho // ty) * -(-wo // tx))
    final = acc
    if nb > 1:
        cb, _ = sch.split(c, [nb, None])
        acc = sch.rfactor(cb, 0)  # acc_rf[cb, b, g, u, v, y, x]: a channel block's sums (scratch)
        b, g, u, v, y, x, cb, c = sch.get_loops(acc)
    yo, yi = sch.split(y, [None, ty])
    xo, xi = sch.split(x, [None, tx])
    outer = [b, g, cb, yo, xo] if nb > 1 else [b, g, yo, xo]
    sch.reorder(*outer, yi, xi, c, u, v)
    _bind_blocks(sch, wl, outer[:-2], yo, xo)
    thr = sch.fuse(yi, xi)
    sch.bind(thr, "threadIdx.x")
    xs = sch.get_sblock("Xpad")
    sch.set_scope(xs, 0, "shared")
    _cooperative(sch, xs, c, ty * tx)
    if wl.p["combine"] == "mul":  # ('add': dS does not depend on C)
        _cooperative(sch, sch.cache_read(acc, _read_index(sch, acc, "C"), "shared"), c, ty * tx)
    sch.compute_at(sch.cache_read(acc, _read_index(sch, acc, "dO"), "local"), c)  # once per (channel, pixel)
    unroll(sch, u, v)
    if nb > 1:  # the sums in registers, stored to the scratch; then the second kernel
        store = sch.cache_write(acc, 0, "local")
        sch.decompose_reduction(acc, c)
        sch.reverse_compute_at(store, thr)
        sums = store
        b, g, u, v, y, x, cb = sch.get_loops(final)
        register_acc(sch, final, cb, bind_flat(sch, [b, g, u, v, y, x]))
    else:
        sch.set_scope(acc, 0, "local")
        sch.decompose_reduction(acc, c)
        sums = sch.get_sblock("out")
        sch.reverse_compute_at(sums, thr)
    unroll(sch, *_loops_under(sch, sums, thr))  # constant register indices
    if generic:  # each pixel's tap window of X (see _declare_read)
        s, halo = wl.p["s"], (wl.p["k"] - 1) * wl.p["d"]
        per = wl.p["C"] // wl.p["G"] // nb

        def window(*iv):  # acc's (b, g, u, v, y, x, c); the channel blocks' sums' (cb, b, ..., c)
            b, g, u, v, y, x, c = iv[-7:]
            c = iv[0] * per + c if nb > 1 else c  # (c: the channel within the block)
            return (b, b + 1), (g, g + 1), (c, c + 1), (y * s, y * s + halo + 1), (x * s, x * s + halo + 1)

        _declare_read(sch, acc, "Xpad", window)
    return True


@register("ddf", "ds", "cuda")
def ds(sch, wl, target):
    if wl.kind == "generic":  # the first tile height whose stages compact to a constant size
        if any(if_constant(sch, lambda sch_, r=r: _ds_tiled(sch_, wl, r)) for r in GENERIC_DS_ROWS):
            return
    elif _ds_tiled(sch, wl):
        return
    sch.compute_inline(sch.get_sblock("Xpad"))
    if wl.kind == "generic":  # dO's rows widened for the CPU vectors: an index check here
        sch.compute_inline(sch.get_sblock("dOpad"))
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


DC_CHUNK = 16  # dc: channels per block (one warp's lanes each), the largest divisor of Cg up to this
DC_SHARED_BYTES = 46 * 1024  # dc: under the 48 KB static limit; 4 blocks of 512 threads per SM
DC_MAX_ROWS = 8  # dc: output rows per staged X tile
GENERIC_DC_ROWS = 16  # generic dc (8-column tiles: a small tile, so a taller one for less halo)


def _dc_layout(wl, ho, wo):
    """(cc, nx, ty) of the streaming dc: channels per block, lanes along x, output rows per
    staged X tile; None when nothing fits in DC_SHARED_BYTES. More channels first (each
    staged S row serves cc channels), then taller tiles (less vertical halo)."""
    k, s, d = wl.p["k"], wl.p["s"], wl.p["d"]
    item = 8 if wl.dtype == "float64" else 4
    cg, halo = wl.p["C"] // wl.p["G"], (k - 1) * d
    # generic: ROW_QUANTUM lanes, so that TVM proves each column tile's window inside the
    # padded rows (whole ROW_QUANTUM pixels) and sizes the stages by the tile (_declare_read)
    nx = threads_for(wo, WARP) if isinstance(wo, int) else ROW_QUANTUM
    rows = min(ho, DC_MAX_ROWS) if isinstance(ho, int) else GENERIC_DC_ROWS  # symbolic: tails predicated

    def shared(cc, ty):  # X tile + halo of cc channels, one row of the k x k S planes, rf sums
        x_tile = cc * ((ty - 1) * s + halo + 1) * ((nx - 1) * s + halo + 1)
        return (x_tile + (k * k * nx if wl.p["combine"] == "mul" else 0) + cc * k * k * nx) * item

    fits = [(cc, ty) for cc in range(min(cg, DC_CHUNK), 0, -1) if cg % cc == 0
            for ty in range(rows, 0, -1) if shared(cc, ty) <= DC_SHARED_BYTES]
    good = [f for f in fits if f[1] >= min(4, rows)]
    best = (good or fits or [None])[0]
    return None if best is None else (best[0], nx, best[1])


def _dc_column_blocks(wl, cc: int, nx: int, wo: int) -> tuple:
    """(column blocks, column tiles per block) of the streaming dc: all of a row's nx-wide
    column tiles in one block when the (b, head, channel chunk) blocks alone reach MIN_BLOCKS,
    else a block per column tile (each block sums its columns into its own slot of the
    scratch the second kernel adds up). Nothing in between: with several blocks of several
    tiles, TVM's region analysis cannot bound the X tile under the image's tail predicate
    (x = (xb * per_block + xo) * nx + lane < Wo) and stages whole rows. Generic kernels (Wo
    symbolic): a block per column tile, their count ceil(Wo / nx) a run-time extent (the
    scratch's too), on blockIdx.y."""
    if not isinstance(wo, int):  # generic: a block per column tile (their count symbolic)
        return None, 1
    tiles = -(-wo // nx)
    if wl.p["B"] * wl.p["C"] // cc >= MIN_BLOCKS:
        return 1, tiles
    return tiles, 1


def _dc_streaming(sch, wl) -> bool:
    """dc, two kernels. The first: a block per (b, g, chunk of cc channels, column block), a
    warp's lanes (threadIdx.x, nx) along x for each channel (threadIdx.y). Each thread walks
    its columns (xo) and, per column, every row with its k x k tap sums (acc_cols) in
    registers: dO loaded once per (c, pixel) into a register, X from a staged tile of cc
    channels x (ty rows + halo) x (nx columns + halo), S from one staged row of the k x k planes
    that all cc channels share. It adds each column's sums to its lane's sums (registers);
    at the end the lanes store those to shared memory and thread t of each channel adds up
    the nx lanes of taps t, t + nx, ... (serially: TVM's allreduce of k x k values per thread
    would sit in a tap loop, which its lowering refuses once unrolled), storing the column
    block's sums to global scratch. The second kernel (a thread per output) adds up the column
    blocks. False where nothing fits (then the caller schedules the per-output dc).
    Generic kernels (``dc`` in GENERIC_TILED, 1 < k <= UNROLL_TAPS, any stride): nx =
    ROW_QUANTUM lanes (the rows of 'acc_cols' are whole ROW_QUANTUM pixels, so TVM proves a
    column tile's window inside the padded rows and sizes the stages by the tile), ty =
    GENERIC_DC_ROWS rows per X tile with the rows' tail predicated, a block per column tile
    (blockIdx.y, ceil(Wo / nx) of them: the block count is unknown, so always split), S
    staged from its widened rows ('Spad', index checks), and each pixel's tap window
    declared (_declare_read)."""
    k = wl.p["k"]
    generic = wl.kind == "generic"
    if generic and not ("dc" in GENERIC_TILED and 1 < k) or k > UNROLL_TAPS:
        return False
    # stride > 1: TVM stages a larger X tile than _dc_layout sizes (ddf_resnet50's strided
    # layers, 8x128x56x56 and 8x256x28x28 s2: 61,752 and 119,600 bytes of shared memory, which
    # ptxas refuses), so the strided static dc keeps the per-output schedule until that is
    # bounded. The generic one's 8-column tiles compact to the tile's window (_declare_read).
    if wl.p["s"] > 1 and not generic:
        return False
    if generic:  # dO's rows widened for the CPU vectors: an index check in its load
        sch.compute_inline(sch.get_sblock("dOpad"))
    acc = sch.get_sblock("acc")
    b, g, c, u, v, x = sch.get_loops(acc)
    wo = extent(sch, x)
    cols = sch.get_sblock("acc_cols")
    ho = extent(sch, sch.get_loops(cols)[-1]) if generic else out_size(wl.p["H"], wl.p["s"])
    layout = _dc_layout(wl, ho, wo)
    if layout is None:
        return False
    cc, nx, ty = layout
    nb, per_block = _dc_column_blocks(wl, cc, nx, wo)
    xb, xo, xi = sch.split(x, [nb, per_block, nx])
    blocks = sch.rfactor(xb, 0)  # blocks[xb, b, g, c, u, v]: a column block's sums (scratch)
    lanes = sch.rfactor(sch.get_loops(blocks)[-1], 0)  # lanes[xi, xb, b, g, c, u, v], over xo
    b, g, c, u, v, rxb, rxo, rxi = sch.get_loops(lanes)
    co, ci = sch.split(c, [None, cc])
    sch.reorder(b, g, co, rxb, ci, rxi, rxo, u, v)
    if generic:  # column blocks on blockIdx.y: no block index divided by a run-time extent
        sch.bind(sch.fuse(b, g, co), "blockIdx.x")
        sch.bind(rxb, "blockIdx.y")
    else:
        sch.bind(sch.fuse(b, g, co, rxb), "blockIdx.x")
    sch.bind(ci, "threadIdx.y")
    sch.bind(rxi, "threadIdx.x")
    unroll(sch, u, v)
    # each column's tap sums over the rows, computed where the thread adds them to its lane
    cols = sch.get_sblock("acc_cols")
    sch.compute_at(cols, rxo)
    # (a symbolic row count: a loop of its own, as for any count > 1)
    lc = after_compute_at(sch, cols, [("u", k), ("v", k), ("y", ho if isinstance(ho, int) else 2)])
    ctaps = [lc[n] for n in ("u", "v") if n in lc]
    if "y" in lc:
        yo, yi = sch.split(lc["y"], [None, ty])
        sch.reorder(yo, yi, *ctaps)
    else:  # one output row: stage at the column
        yo = yi = rxo
    unroll(sch, *ctaps)
    threads = (cc, nx)
    xs = sch.get_sblock("Xpad")
    sch.set_scope(xs, 0, "shared")
    _cooperative(sch, xs, yo, threads)
    if wl.p["combine"] == "mul":  # generic: S's widened rows ('Spad') are the stage, index checks
        ss = sch.get_sblock("Spad") if generic else \
            sch.cache_read(cols, _read_index(sch, cols, "S"), "shared")
        sch.set_scope(ss, 0, "shared")
        _cooperative(sch, ss, yi, threads)
    sch.compute_at(sch.cache_read(cols, _read_index(sch, cols, "dO"), "local"), yi)
    sch.set_scope(cols, 0, "local")
    # the lanes' sums: in registers over the columns, then stored to shared memory (a shared
    # buffer updated in the column loop would want a barrier inside its tail predicate, which
    # TVM refuses) ...
    sch.set_scope(lanes, 0, "shared")
    to_shared = sch.cache_write(lanes, 0, "local")
    sch.reverse_compute_at(to_shared, rxi)
    unroll(sch, *_loops_under(sch, to_shared, rxi))  # its (u, v), if k > 1
    # ... where each thread of a channel adds up the nx lanes of its taps (t, t + nx, ...) in a
    # register and stores the sum (the store placed before the taps go to threads, so that
    # its region is the k x k taps, then split the same way)
    sch.reverse_compute_at(blocks, ci)
    la = after_compute_at(sch, blocks, [("x", nx), ("u", k), ("v", k)])
    store = sch.cache_write(blocks, 0, "local")
    sch.reverse_compute_at(store, ci)
    ls = _loops_under(sch, store, ci)
    taps = [la[n] for n in ("u", "v") if n in la]
    if taps:
        if "x" in la:
            sch.reorder(*taps, la["x"])
        for loops in (taps, ls):
            _, tl = sch.split(sch.fuse(*loops) if len(loops) > 1 else loops[0], [None, nx])
            sch.bind(tl, "threadIdx.x")
    # zeroed before the column loop, outside its tail predicate: lanes past the image's last
    # column store zeros
    sch.decompose_reduction(lanes, rxo)
    # the second kernel: a thread per output (b, g, c, u, v) over the nb column blocks
    b, g, c, u, v, cb = sch.get_loops(acc)
    register_acc(sch, acc, cb, bind_flat(sch, [b, g, c, u, v]))
    if generic:  # each pixel's tap window of X, and its S (see _declare_read): at dilation > 1
        # the X stage would otherwise be bounded by the symbolic rows (min(H + 8, 23) rows)
        s, halo = wl.p["s"], (k - 1) * wl.p["d"]
        _declare_read(sch, cols, "Xpad", lambda b, g, c, u, v, x, y: (
            (b, b + 1), (g, g + 1), (c, c + 1), (y * s, y * s + halo + 1), (x * s, x * s + halo + 1)))
        if wl.p["combine"] == "mul":
            _declare_read(sch, cols, "Spad", lambda b, g, c, u, v, x, y: (
                (b, b + 1), (g, g + 1), (u, u + 1), (v, v + 1), (y, y + 1), (x, x + 1)))
    return True


@register("ddf", "dc", "cuda")
def dc(sch, wl, target):
    streaming = lambda sch_: _dc_streaming(sch_, wl)  # noqa: E731
    if if_constant(sch, streaming) if wl.kind == "generic" else streaming(sch):
        return
    sch.compute_inline(sch.get_sblock("Xpad"))
    if wl.kind == "generic":  # rows widened for the CPU vectors: index checks here
        sch.compute_inline(sch.get_sblock("dOpad"))
        if wl.p["combine"] == "mul":  # ('add': dC does not read S)
            sch.compute_inline(sch.get_sblock("Spad"))
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
