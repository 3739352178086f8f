"""Default CPU (LLVM) schedules for the DDF kernels.

Layout of the work: parallel over planes (batch x head x channel), the accumulator a vector
tile along the image row with the k x k taps unrolled outside its lanes, the padded input
plane copied next to the loop that reads it (it stays in cache). fwd tiles several channels
of a head (sharing S) x several AVX-512 vectors (see :func:`fwd`). dS sums over channels into
a vector tile of all taps; dC keeps vector-wide column sums, reduced at the end.

dx at stride 1 takes fwd's register tiles (generic builds: fwd's generic tiles, with S's taps
gathered tile-major once per call, :func:`_dx_generic_tiles`). dx at stride > 1 takes
half-width vectors where those tile a static row exactly (28 = 7 x 4) and whole ones would
leave a tail tile (predicated: TVM's vectorizer leaves it scalar). dx at stride s > 1 runs
on the phase grid of ``ops.ddf.ddf_dx``: per vector tile of s rows x s*lanes pixels, the
s x s phases' accumulators (unrolled, so each phase's taps are constants), then 'out'
interleaves them into dX (contiguous loads, stores strided by s).

Shape-generic kernels (B, H, W symbolic) take the same schedules. Their rows are whole vectors
(``ops.ddf.ROW_QUANTUM``): S's widened rows ('Spad': fwd, dc) built once per call, dO's widened
rows next to the loop that reads them (ds: per output row, all channels, and only for rows
shorter than a vector, the others read in place with a shifted last tile:
:func:`_in_place_tiles`; dc: per plane). Only
the padded copies and the stores of the real row ('out'; dc's sum over x) keep a predicated
tail, which ``split_tail`` cuts off the whole tiles (vectors); the vector tiles are declared
whole (``tile_regions``) so that they stay small buffers (dc's column sums accumulate in such a
local tile, its plane-wide buffer having a symbolic size). The padded copies' interiors are
plain row loops, vectorised by LLVM (:func:`_pad_copy`), in fwd (stride 1) and dx whole
vectors and an overlapping last one (:func:`_overlap_rows`), dx's zero fill on the border
only (:func:`_border_fill`); fwd and dx (stride 1) store their
tiles in half-vector pieces, each guarded as a whole (:func:`_row_tile_out`,
:func:`guard_pieces`: whole pieces store vectors from the registers). At stride s > 1 their padded X is laid out phase-major along the
row (:func:`_phase_pad_copy`: fwd, ds, dc), so that the taps' reads, s apart, are contiguous
vectors. Found in the generic builds' profiles
(perf, against the static ones): TVM's vectorizer leaves every predicated tile scalar, and
at 14 px rows the stores of the last tile were 37% of the generic fwd's time, the padded
copies' tails 10%. A tile's partial last piece stores the vector ending at the row's end
(``guard_pieces(shift=True)``); the phase-major X's pad-value block is removed
(:func:`_drop_padding_nest`) and its copy runs over groups of s pixels.
"""
from __future__ import annotations

import tvm.s_tir as s_tir
from tvm import ir, sym, tirx
from tvm.tirx import IndexMap
from tvm.s_tir.schedule import _ffi_api
from tvm.target import codegen

from dynfilter_tvm.ops.ddf import FWD_ROW_QUANTUM, FWD_ROWS

from . import register
from ._rows import overlap_rows, widened_rows
from .common import UNROLL_TAPS, acc_registers, all_of, conjuncts, loop_analyzer, map_realizes, realizes, renamed, extent, guard_pieces, halve_last_tile, split_tail, substitute, tile_regions, unroll, unroll_taps, vector_lanes, vectorize_inner, vectorize_under, with_predicate

MAX_UNROLLED_STRIDE = 4  # dx: phase loops unrolled up to this stride


def _generic_tiles(sch, wl, lanes):
    if wl.kind == "generic":
        tile_regions(sch, "acc", ("acc_init", "acc_update", "out"), lanes)


@register("ddf", "fwd", "cpu")
def fwd(sch, wl, target):
    """Register tiles of Ct channels of one head (they share S) x Xt wide vectors (16
    float32 lanes with AVX-512) along the row, the taps outside the tile (generic stride-1
    tiles without AVX-512: :func:`_generic_tile`).

    Per tap and tile: Xt loads of S, Ct x Xt loads of X, Ct x Xt products S * C and as many
    FMAs (2 FP ops per term, where depthwise conv2d has one FMA: at its efficiency, about
    2x its time is the floor at k = 7, where the taps dominate). Ct x Xt independent
    accumulators hide the FMA latency; the old single-vector tile left one 49-long dependent
    chain per vector at k = 7. Static k = 7 (stride 1, even H): tiles of 2 rows x Ct channels
    x one vector, the rows sharing X's loads (:func:`_static_row_tiles`, 0.88-0.95x the
    time); the generic k = 7 tiles likewise take the tap loop v outside, u unrolled
    (:func:`_row_pairs`, 0.91-0.94x): 1.29-1.47x depthwise conv2d's time (was 1.36-1.62,
    same runs), at ~1/3 of the FP peak, waiting on S's loads (:func:`_static_row_tiles`). Static rows are cut (``loop_partition``) into the whole wide
    vectors, tiled Xt at a time, then one vector each of half, quarter, ... width for the rest
    (56 = 3 x 16 + 8, 28 = 16 + 8 + 4, 14 = 8 + 4 + 2): a predicated tail would run scalar,
    and padding the row would need a copy of S. Generic rows are whole FWD_ROW_QUANTUM pixels
    and the rows whole FWD_ROWS pairs (``ops.ddf``): tiles of Ct channels x 2 rows x one wide
    vector, no predicate (a tile of several vectors along a symbolic row would end in a
    partial one, whose predicate made TVM bound the rows it reads by the largest int32, and
    a try with that fixed ran 2.8x slower). The pair's rows share their X rows: tap (u, v) of
    the second reads the row of tap (u + 1, v) of the first (one load; at k = 7 the loop is v,
    u unrolled inside, so the two are next to each other, :func:`_row_pairs`). Else their
    tap rows (u) stay a loop: unrolled, each (channel, X row) pair needs its own pointer (the row stride is
    symbolic, no immediate offset), 4 x 8 at k = 7, which spilled (generic/static 1.62 -> 1.44
    at k = 7, 1.74 -> 1.52 at 14 px, thread time). The padded input is a zero fill plus a copy
    of the interior (:func:`_pad_copy`). The generic S ('Spad', built once per call) is laid
    out tile-major, (row, 16-pixel tile, u, v, lane): a tile's k x k tap vectors then lie at
    constant offsets from one pointer per row, where the plain layout's symbolic plane
    strides cost 3 integer instructions per S load in the tap loop (int32 index arithmetic,
    sign-extended, offsets reloaded from the stack). 'out' stores a tile in half vectors
    (:func:`_row_tile_out`). Generic / static, 1 thread, kernels alone: 1.48 / 1.33 / 1.49
    / 1.34 -> 1.35 / 1.12 / 1.08 / 0.98 at 56, 28, 14 px k3 and 56 px k7 (RESULTS.md, "DDF
    CPU generic row ends"); 'out''s piece loop outside the tile left fwd as it was (same
    process: 1.44 -> 1.39, 1.14 -> 1.11, 1.14 -> 1.14, 1.03 -> 1.06). The static time is
    bimodal between processes (28 px: 0.084 or 0.100 ms), so ratios from one process move by
    up to 20% (RESULTS.md "DDF CPU generic 'out' piece loop"). At 56 px the gap is the row's
    end: at 64 px (no partial tile) generic / static was 1.08 and 1.21 in two runs where 56 px
    gave 1.36 and 1.47. Its last tile's 8 dead lanes are no longer computed
    (:func:`common.halve_last_tile`): same process, halved / not 0.94, 0.91, 0.93, 0.88 at
    56 px k3, k5, k7 and 7 px k3 (2x64 channels, 2x256 at 7 px). At stride > 1, X phase-major (:func:`_phase_pad_copy`): 1.23 -> 0.83
    at 56 px s2. The whole row pairs are cut off the last (``split_tail`` of the pair loop, its
    tile regions declared whole, :func:`_pair_regions`, as dx): their stores lose the test of
    the pair's second row (per row and piece: a flag test and branch before each store). Same
    process, generic / static: 1.40 -> 1.30 / 1.15 -> 1.08 / 1.17 -> 1.14 / 1.08 -> 1.03 at 56,
    28, 14 px k3 and 56 px k7, 1.18 -> 1.10 at 56 x 64 px, 0.83 -> 0.77 at s2 (RESULTS.md "DDF
    CPU generic row pairs, strided dx grid"). 'out''s pieces each guarded as a whole instead
    of cut (:func:`guard_pieces`): the tile stays in registers; same process 1.28 -> 1.06 /
    1.10 -> 0.94 / 1.35 -> 1.19 at 56, 28, 14 px k3, 1.06 -> 0.96 at k7. X's interior rows
    as whole vectors and an overlapping last one (:func:`_overlap_rows`, stride 1): same
    process 1.19 -> 1.10 at 14 px (the copy had been 32% of the kernel there), 28, 56 px and
    k7 unchanged within noise. X's zero fill on the border only as dx's (:func:`_border_fill`)
    was dropped: 28 px 0.90 -> 0.88 (0.89 -> 0.84 in another run) but 14 px 1.13 -> 1.18, 0.96
    -> 0.98, 1.09 -> 1.18 (main's and that build in one process, three runs).
    """
    wide = _fwd_lanes(wl.dtype, target)
    cg = wl.p["C"] // wl.p["G"]
    ct = next(t for t in (FWD_CHANNELS, 2, 1) if cg % t == 0)
    if wl.kind == "generic" and wl.p["s"] == 1:
        wide, ct = _generic_tile(wl, target)
    if wl.kind == "generic":  # S zero-padded to whole vectors and row pairs, once per call,
        # laid out tile-major: a tile's k x k tap vectors at constant offsets (see docstring)
        sch.transform_layout(sch.get_sblock("Spad"), ("write", 0),
                             lambda b, g, u, v, y, x: (b, g, y, x // wide, u, v, x % wide))
        _call_copy(sch, wl, "Spad", wide)
    acc = sch.get_sblock("acc")
    b, g, c, y, x, u, v = sch.get_loops(acc)
    co, ci = sch.split(c, [None, ct])
    plane = sch.fuse(b, g, co)
    sch.parallel(plane)
    copy = phase_rows = None
    if wl.p["s"] > 1:
        phase_rows = _phase_pad_copy(sch, wl, "Xpad", plane, wide)
    else:
        copy = _pad_copy(sch, "Xpad", plane, _fwd_lanes(wl.dtype, target), wl.kind == "generic")
    if wl.kind == "generic":
        yo, ym = sch.split(y, [None, FWD_ROWS])
        xo, xi = sch.split(x, [None, wide])
        # one tap loop, the other unrolled: at k = 7 (v, u), so the rows share X's loads as
        # the static tiles' (:func:`_row_pairs`); else (u, v), see the docstring
        outer, inner = (v, u) if _row_pairs(wl) else (u, v)
        sch.reorder(yo, xo, outer, inner, ci, ym, xi)
        sch.vectorize(xi)
        unroll_taps(sch, wl, inner)
        unroll(sch, ci, ym)
        pieces = _row_tile_out(sch, acc, outer, xo, wide, _out_piece(wide))
        # whole pairs of rows apart from the last (LoopPartition): their stores lose the
        # per-row test of the pair's second row (as dx's generic tiles)
        split_tail(sch, yo)
        _pair_regions(sch, ("acc_init", "acc_update", "out"), wide)
        live = guard_pieces(sch, pieces, shift=True)
        _overlap_rows(sch, copy, vector_lanes(wl.dtype))  # X's rows (stride 1), last
        _phase_copy_rows(sch, phase_rows, wl.p["s"], vector_lanes(wl.dtype))  # (stride > 1)
        halve_last_tile(sch, xo, live, wide, _out_piece(wide))
        return
    rows = _static_rows(wl, extent(sch, y))
    _static_row_tiles(sch, wl, y, x, ci, u, v, wide, max(1, acc_registers(target) // (2 * ct * rows)), rows)


# fwd (static) at k >= this: register tiles of FWD_ROWS rows (see _static_row_tiles)
ROW_PAIR_TAPS = 7


def _row_pairs(wl) -> bool:
    """Whether fwd's register tiles of FWD_ROWS rows take the taps v-major, u unrolled inside,
    so that the rows share X's loads (:func:`_static_row_tiles`): k from ROW_PAIR_TAPS to
    UNROLL_TAPS, stride and dilation 1. Generic builds (always row pairs): the tap loop v, u
    unrolled; same process, generic / static (this static) 1.07 -> 0.99, 1.04 -> 0.98 at
    2x64x56² k7 (the old generic loop u, v unrolled)."""
    p = wl.p
    return ROW_PAIR_TAPS <= p["k"] <= UNROLL_TAPS and p["s"] == 1 and p["d"] == 1


def _static_rows(wl, h) -> int:
    """Rows per static fwd register tile: FWD_ROWS where :func:`_row_pairs` and they divide the
    output's h rows (else a predicated tile), else 1."""
    return FWD_ROWS if _row_pairs(wl) and h % FWD_ROWS == 0 else 1


def _static_row_tiles(sch, wl, y, x, ci, u, v, wide: int, xt: int, rows: int = 1) -> None:
    """fwd, dx at stride 1 (static): under each row y, the row cut into segments
    (:func:`_segments`), each a register tile of the ci channels x up to xt vectors with the
    taps (u, v) outside it; 'out' stores the row.

    ``rows`` > 1 (fwd at k = 7): tiles of ``rows`` rows y x ci channels x xt vectors, the taps
    in the order (v, u), all unrolled: tap (v, u) of row y + 1 reads the X vectors of tap
    (v, u + 1) of row y, next to it in the code, and LLVM loads them once (GVN). Per tap of a
    4-channel tile: 4 X loads for 8 products where the one-row tile (4 channels x 3 vectors)
    had 12 for 12 (10 loads per 16 FP operations instead of 19 per 24, objdump). Each
    accumulator then sums its taps v-major (rounding differs, not the result's tolerance).
    The order (u, v) kept the rows' X loads apart (7 taps), ran slower; 2 x 4 x 3 and 4-row
    tiles spilled. Per term a mul and an FMA (X * (S * C), the compute's order; no order does
    better: S varies with the pixel, C with the channel, X with both, so each term needs two
    products) where depthwise conv2d has one FMA; thread time, same process, new / old
    0.91-0.94 at 2x64x56² k7 (6 pairs, two processes), 1.00 at k5, 1.02-1.07 at k3 (hence
    k >= 7 only).

    Not at the FP floor (2026-12-02, 2x64x56² k7): the loop body (one 16-px vector x 2 rows x
    4 channels, taps unrolled) is 392 vmulps + 392 vfmadd and 505 vector loads + 56 folded
    (objdump; LLVM keeps C pre-broadcast on the stack: 183 of the loads). A zmm FMA chain runs
    ~5.0 G vector FMA/s per thread here (gcc, 12 chains), so the 2.46 M vector FP ops would
    take ~0.5 ms (~0.57 with the 8-px tail's half vectors); measured 1.6-1.8 ms, ~1/3 of the
    FP peak (depthwise conv2d: 1.23 M FMAs in 1.1-1.3 ms, ~1/5). perf (cpu-clock): the tile
    loop 71% of the samples (~1.1 ns per vector term), X's interior copy 10%. A C copy of the
    tile (gcc, random data) runs 0.58-0.63 ns per vector term with its data in L1, 0.67-0.92
    with S in this layout and 16 planes of X: the loop waits on memory (S's 98 rows per tile,
    49 planes 12.5 KB apart), not on FP. Tried, same process (x dwconv): 8 channels 1.74
    (4: 1.44); the row pairs outside the channel tiles, X padded for all channels per batch
    (S then reused from L1): 1.91 (1.41); 16-px column strips, the row pairs inside: 1.48
    (1.41); S copied tile-major once per call (the generic 'Spad' layout, ``cache_read`` +
    ``transform_layout``): the tile loop's share 71% -> 58%, but the copy (1.2 MB) took 10%:
    new / old 1.01-1.03 (three processes; 0.89-1.03 with the copy writing in tile order);
    a software prefetch (``llvm.prefetch`` through ``tirx.call_llvm_intrin``, which TVM 0.27
    emits as ``prefetcht0``) of the next tile's 98 S vectors (their last lanes) at the top of
    the tile loop: 1.626 -> 1.586 and 1.546 -> 1.556 ms (same process, 21 repeats), no gain:
    the hardware prefetchers already follow S's rows (one load instruction per row, stride
    64 B per tile)."""
    if rows > 1:
        yo, ym = sch.split(y, [None, rows])
        sch.reorder(yo, x, ci, ym, u, v)
        y, tile = yo, (ym,)
    else:
        sch.reorder(y, x, ci, u, v)
        tile = ()
    out = sch.get_sblock("out")
    sch.reverse_compute_at(out, y)
    vectorize_inner(sch, out, vector_lanes(wl.dtype), under=y)
    segs, var = _segments(extent(sch, x), wide), sch.get(x).loop_var.name
    if len(segs) > 1:
        sch.loop_partition(x, [w for w, _ in segs[:-1]] + [None])
    for i, (w, l) in enumerate(segs):
        blk = sch.get_sblock("acc" if len(segs) == 1 else f"acc_{var}{i}")  # loop_partition's names
        xs, ci, *tile, u, v = sch.get_loops(blk)[-4 - len(tile):]
        taps = (v, u) if rows > 1 else (u, v)
        if i == 0:  # whole wide vectors, tiled
            n = w // l
            xo, xm, xs = sch.split(xs, [None, max(d for d in range(1, min(xt, n) + 1) if n % d == 0), l])
            sch.reorder(xo, *taps, *tile, ci, xm, xs)
            unroll(sch, xm)
        else:  # one vector (a loop that starts past 0, which split refuses)
            sch.reorder(*taps, *tile, ci, xs)
        if l > 1:
            sch.vectorize(xs)
        unroll_taps(sch, wl, u, v)
        unroll(sch, ci, *tile)
        _init_tile(sch, blk, taps[0], l > 1)


# fwd, dx: channels per register tile (static fwd, 1 thread: 4 beat 2 and 8 at the benchmark
# shapes; 6, which does not divide their channels, leaves a predicated, scalar tile)
FWD_CHANNELS = 4


def _fwd_lanes(dtype, target) -> int:
    """fwd's vector width: whole AVX-512 registers where the target has them (twice the
    throughput of the 256-bit vectors of ``vector_lanes``), else ``vector_lanes``."""
    lanes = vector_lanes(dtype)
    return 2 * lanes if codegen.target_has_features("avx512f", target) else lanes


def _generic_tile(wl, target):
    """The generic stride-1 fwd / dx register tile: (lanes along the row, channels). AVX-512:
    one ``_fwd_lanes`` vector x FWD_CHANNELS (4) channels. float32 without AVX-512 (AVX2:
    16 ymm registers): FWD_ROW_QUANTUM (16) lanes, two 8-lane vectors, as the rows are whole
    16 px, and as many channels as ``acc_registers`` holds (2 rows x 2 vectors each: 2
    channels). The 8-lane tiles had to store whole (:func:`_out_piece`): a row's last tile
    ran its stores predicated, scalar lane by lane, and a 14 px row took two tiles, the second
    6 of 8 lanes live; 16-lane tiles store in 8-lane pieces as with AVX-512 (the partial one
    shifted to end at the row's end, :func:`guard_pieces`). Not at k >= ROW_PAIR_TAPS, where
    the taps dominate and S's loads shared by 4 channels count more than the row's end (k7
    56 px, same process, new / old: dx 1.02-1.07, fwd 0.98-1.05; k3 0.64-0.89)."""
    wide, cg = _fwd_lanes(wl.dtype, target), wl.p["C"] // wl.p["G"]
    room = FWD_CHANNELS
    if wl.dtype == "float32" and wide < FWD_ROW_QUANTUM and wl.p["k"] < ROW_PAIR_TAPS:
        wide = FWD_ROW_QUANTUM
        room = max(1, acc_registers(target) // (FWD_ROWS * (wide // vector_lanes(wl.dtype))))
    return wide, next(t for t in (FWD_CHANNELS, 2, 1) if cg % t == 0 and t <= room)


def _segments(w: int, lanes: int):
    """A static row of ``w`` pixels as (width, vector lanes) segments: the whole ``lanes``-wide
    vectors, then one vector each of lanes/2, lanes/4, ... (2 at the least), then scalars."""
    segs = [(w // lanes * lanes, lanes)] if w >= lanes else []
    rest, l = w % lanes, lanes // 2
    while rest and l >= 2:
        if rest >= l:
            segs.append((l, l))
            rest -= l
        l //= 2
    if rest:
        segs.append((rest, 1))
    return segs


def _place_copy(sch, name: str, at):
    """Copy block ``name`` placed under loop ``at`` (None: a whole-call copy, as ds's, parallel
    over its planes): (block, its loop, the block's loops, the depth of that loop among them)."""
    blk = sch.get_sblock(name)
    if at is None:
        at = sch.fuse(*sch.get_loops(blk)[:3])
        sch.parallel(at)
    else:
        sch.compute_at(blk, at)
    loops = sch.get_loops(blk)
    return blk, at, loops, next(i for i, l in enumerate(loops) if sch.get(l).same_as(sch.get(at)))


def _pad_copy(sch, name: str, at, lanes: int, generic: bool):
    """A padded copy next to the loop ``at`` that reads it, as a zero fill and a copy of the
    interior (``decompose_padding``): one copy with the bounds test per element has a
    predicate per lane, which TVM's vectorizer leaves scalar (about 10 instructions an
    element, as much as the k = 3 forward's taps). A copy without padding (k = 1) stays one
    plain copy. ``generic`` (symbolic rows): the interior is left a plain loop over each row
    (decompose_padding gives it the row's exact bounds, no predicate), which LLVM's loop
    vectorizer takes, whole AVX-512 vectors and its own remainder. TVM's vectorizer, over
    a symbolic row, ends each row in a predicated tile, which it leaves scalar (TVM emits
    no masked stores): with 4-lane vectors (a scalar tail of up to 3), the copy was 16% of
    the generic fwd's time at 56 px rows, its tail alone 10% at 14 px (perf, k = 3).
    Returns the generic interior's row loop (else None), for :func:`_overlap_rows`."""
    blk, at, loops, depth = _place_copy(sch, name, at)
    if depth + 1 == len(loops):  # one element (compute_at drops unit loops)
        return None
    try:  # refused (the schedule unchanged) where the bounds test is trivially true
        fill = sch.decompose_padding(blk, loops[depth + 1])
    except s_tir.ScheduleError:
        split_tail(sch, vectorize_inner(sch, blk, lanes, under=at))
        return None
    split_tail(sch, vectorize_inner(sch, fill, lanes, under=at))
    if not generic:
        split_tail(sch, vectorize_inner(sch, blk, lanes, under=at))
        return None
    return sch.get_loops(blk)[-1]


def _overlap_rows(sch, loop, lanes: int, fill: str = None) -> None:
    """:func:`schedules._rows.overlap_rows` with ``fill`` (a padded copy's zero fill block:
    dx's dO, X at stride 1) left to the rows above and below the data, the data rows' pads
    stored in the row loop (:func:`_border_fill`)."""
    border = (lambda realize, pred: _border_fill(sch, fill, realize, pred, lanes)) if fill else None
    overlap_rows(sch, loop, lanes, border)


def _border_fill(sch, fill: str, copy, pred, lanes: int):
    """The zero fill ``fill`` of a generic padded copy whose interior copy is the block realize
    ``copy`` (a data row's pixel; predicate ``pred``), for :func:`_overlap_rows`: the fill
    (``decompose_padding``: every row of the padded plane, whole, in vectors and a predicated
    tail) left to the rows above and below the data, its data rows' zeros stored in the
    copy's row loop, before the copy (which overwrites what they overlap): the left pad
    (scalars) and the right one as vectors counted back from the row's end (the first clamped
    at 0). Returns (those statements, a function that rewrites the fill), or None where the
    nests are not of the expected form (the fill stays as it is).

    Why (perf, generic dx at 2x256x14² k3): dO's padded copy's fill was ~20% of the kernel's
    samples, 16 rows of 18 floats per channel in two 8-lane vectors and a 2-float tail, each
    row with its own loop (the static build's fill is one memset over 16 x 16 per channel).
    The right pad is as many unrolled vectors as its widest case on dx's grid needs
    (FWD_ROW_QUANTUM - 1 + p pixels), then a loop, guarded, for any more (none there): as a
    loop of a runtime trip count (LLVM's 4-times unrolled loop and its remainder), the row
    loop was ~31% of the kernel's samples (perf, 2x256x14² k3), ~20 of its ~65 instructions a
    row the right pad's; same process, the generic dx's time 0.90-0.975x (four processes)."""
    fb, cb = sch.get(sch.get_sblock(fill)), copy.block
    loops = sch.get_loops(sch.get_sblock(fill))
    if len(loops) < 3:
        return None
    y_loop = loops[-3]  # (row, vector, lane)
    fy = sch.get(y_loop)
    realize = fy.body.body.body if isinstance(fy.body, tirx.For) and isinstance(fy.body.body, tirx.For) else None
    if not isinstance(realize, s_tir.SBlockRealize) or not realize.iter_values[-2].same_as(fy.loop_var):
        return None
    ana = sym.Analyzer()
    iv = [v.var for v in cb.iter_vars]
    top, left = (ana.simplify(cb.writes[0].region[a].min - iv[a]) for a in (-2, -1))
    if not all(isinstance(e, tirx.IntImm) for e in (top, left)) or len(cb.reads) != 1:
        return None
    h, w = cb.reads[0].source.shape[-2:]
    htot, wtot = fb.writes[0].source.shape[-2:]
    dt = str(fy.loop_var.ty)
    m = tirx.const(lanes, dt)
    for v in tirx.analysis.undefined_vars(wtot):  # sizes: never negative (stride 2: (W + 16) // 16 * 8 + 2)
        ana.bind(v, ir.Range.from_min_extent(0, 1 << 30))
    if not ana.can_prove(wtot >= m):  # the rows' vectors stay inside them
        return None

    def piece(values, start, extent, kind, p=tirx.const(True, "bool")):
        xi = tirx.Var("xi", dt)
        return tirx.For(xi, tirx.const(0, dt), extent, kind,
                        s_tir.SBlockRealize([*values, start + xi], p, realize.block))

    def zero_row(y):  # a whole row: vectors, then one ending at the row's end
        xo = tirx.Var("xo", dt)
        vals = [*realize.iter_values[:-2], y]
        return tirx.SeqStmt([
            tirx.For(xo, tirx.const(0, dt), tirx.floordiv(wtot, m), tirx.ForKind.SERIAL,
                     piece(vals, xo * m, m, tirx.ForKind.VECTORIZED)),
            tirx.IfThenElse(tirx.floormod(wtot, m) != 0, piece(vals, wtot - m, m, tirx.ForKind.VECTORIZED), None)])

    def fill_rows():
        above, below = tirx.Var("y", dt), tirx.Var("y", dt)
        rows = tirx.SeqStmt([
            tirx.For(above, tirx.const(0, dt), top, tirx.ForKind.SERIAL, zero_row(above)),
            tirx.For(below, tirx.const(0, dt), htot - top - h, tirx.ForKind.SERIAL, zero_row(top + h + below))])
        sch.state.replace(sch.get_sref(y_loop), tirx.For(tirx.Var("row", dt), tirx.const(0, dt), tirx.const(1, dt),
                                                         tirx.ForKind.SERIAL, rows), {})

    vals = [*copy.iter_values[:-2], copy.iter_values[-2] + top]  # the data row in the plane

    def right(j):  # the right pad's j-th vector from the row's end (the first clamped at 0)
        return piece(vals, tirx.max(wtot - (j + 1) * m, 0), m, tirx.ForKind.VECTORIZED, pred)

    # the right pad (wtot - left - w <= FWD_ROW_QUANTUM - 1 + left pixels on dx's grid) as
    # `fixed` unrolled vectors, a loop for any more (none on that grid): a loop of a runtime
    # trip count per row cost ~20 instructions a row (LLVM's unrolled loop and remainder)
    fixed = -(-(FWD_ROW_QUANTUM - 1 + int(left)) // lanes)
    count = tirx.floordiv(wtot - left - w + m - 1, m)
    j = tirx.Var("j", dt)
    sides = [piece(vals, tirx.const(0, dt), left, tirx.ForKind.UNROLLED, pred),
             *(right(tirx.const(n, dt)) for n in range(fixed)),
             tirx.IfThenElse(count > fixed, tirx.For(j, tirx.const(fixed, dt), count - fixed, tirx.ForKind.SERIAL,
                                                     right(j)), None)]
    return sides, fill_rows


def _row_tile_out(sch, acc, init_at, xo, lanes: int, piece: int = 0) -> None:
    """fwd / dx (stride 1) over a symbolic row: the accumulator tile initialised at
    ``init_at``, 'out' stored per vector tile ``xo``. Without ``piece``: the tile declared
    whole vectors (``tile_regions``) and the row's last tile cut off (``split_tail``); its
    stores, predicated, run scalar (TVM emits no masked stores).

    ``piece`` (fwd, dx): 'out' stores each tile in ``piece``-lane vectors, the loop over them
    returned for :func:`guard_pieces` (each piece guarded as a whole: whole pieces, then at
    most one predicated (scalar) piece, so a row's scalar tail is under ``piece`` pixels
    instead of under ``lanes`` (16 of 14 px rows ran scalar: 37% of the generic fwd's time at
    14 px, perf); before the guard, LoopPartition cut the piece loop at the row's end). The tile is laid out (tile, lane) instead of declared whole: 'out''s region over
    the pieces is then one tile (declared regions over split loops made TVM's buffer
    compaction overflow int32). Two half stores per whole vector cost little at 56 px.

    The piece loop is the outer one of the tile's stores, its (channel, row) loops unrolled
    inside: one cut piece loop per tile instead of one per (channel, row) (8 per tile: each
    its own bounds, branches and int32 address arithmetic), each piece's 8 stores at constant
    offsets. The generic dx's time -7% at 56, 28 and 14 px k3 (0.206-0.217 -> 0.185-0.199 ms
    at 56 px; same-process generic / static 1.28 -> 1.18, 1.12 -> 1.06, 1.23 -> 1.09), fwd
    unchanged within noise (RESULTS.md "DDF CPU generic 'out' piece loop").

    A partial second piece (W mod 16 in 9..15: 14, 28 px) stores the 8 lanes ending at the
    row's end (``guard_pieces(shift=True)``, constant offsets per live-lane count) instead
    of lane by lane: same process, generic / static fwd 1.09 -> 0.94, dx 1.12 -> 1.01 at
    14 px, fwd 0.96 -> 0.82, dx 1.07 -> 1.08 at 28 px k3 (a partial first piece, W mod 16 in
    1..7, stays lane by lane: the window would reach into the previous tile, out of registers).

    Rows of W mod 16 in 1..8 (56, 7 px): the last tile computed 8 dead lanes (16 where the
    static build runs an 8-lane vector); its dead piece is skipped by :func:`guard_pieces`,
    and fwd now runs such a tile as a copy of the tile's body over its first 8 lanes
    (:func:`halve_last_tile`, a test per tile; see fwd's docstring). dx does not: the same
    copy made its generic build 2-10% slower (same process, halved / not: 1.10, 1.08, 1.05,
    1.02 at 56 px k3, k5, k7 and 7 px k3). A second cut (whole tiles apart, their tile kept in registers) could not
    reach the last tile's pieces: TVM's LoopPartition recurses into the part after the cut
    only when it can prove its extent non-negative, which the rows' max(W, 1) (``ops.ddf``)
    prevents, so the last tile's stores went scalar lane by lane (14 px: 1.10-1.24 ->
    1.26-1.40; RESULTS.md).

    perf at 56 px k3 (fwd, whole row pairs cut): the tap loop 51% of the kernel's samples (per
    term as fast as the static one's, over 64 px rows), X's zero fill and interior copy 18% (as
    much time as the static build's), S's tile-major copy ~8%, 'out' 11% and the tile's init
    8%: the tile lived in memory (the cut piece loop's runtime trip count left its index
    dynamic), so each tile was zeroed and stored to the stack, then read back in half vectors,
    the 8 row pointers reloaded from the stack per piece (now guarded pieces, unrolled: the
    tile in registers, :func:`guard_pieces`). TVM 0.27 can emit masked stores
    (``tirx.enable_buffer_level_predication``), which would store a whole tile with one
    predicated vector per row, but only where the tail condition is a lone ``ramp < broadcast``
    whose base is the store's own index: 'out''s predicate also carries the tile loops' own
    bounds (``x_0 < (max(W, 1) + 15) // 16``, from reverse_compute_at, not simplified away) and
    the flattened store index has the row offset added, so the vectoriser scalarised it (tried
    with the bounds pruned from the predicate by hand: still scalar)."""
    if piece:
        sch.transform_layout(acc, ("write", 0), lambda b, g, c, y, x: (b, g, c, y, x // lanes, x % lanes))
    _init_tile(sch, acc, init_at)
    out = sch.get_sblock("out")
    sch.reverse_compute_at(out, xo)
    if piece:
        loops = sch.get_loops(out)
        depth = next(i for i, l in enumerate(loops) if sch.get(l).same_as(sch.get(xo)))
        *tile, row = loops[depth + 1:]
        pieces, inner = sch.split(row, [None, piece])
        sch.vectorize(inner)
        sch.reorder(pieces, *tile)  # one piece loop per tile (cut once), the tile unrolled in it
        unroll(sch, *tile)
        return pieces  # guarded by guard_pieces once the schedule is otherwise done
    vectorize_under(sch, out, xo)
    tile_regions(sch, "acc", ("acc_init", "acc_update", "out"), lanes)
    split_tail(sch, xo)
    return None


def _out_piece(wide: int) -> int:
    """fwd / dx generic: the lanes of 'out''s store pieces (:func:`_row_tile_out`), half a
    16-lane tile (float32 on every target, :func:`_generic_tile`); 0 (whole tiles) for
    narrower tiles (float64): half pieces of 8- and 4-lane tiles stored wrong pixels near the row's end
    (float64 with AVX-512: the last W mod 4 pixels where W mod 16 < 8; on an AVX2 target,
    'haswell', float32 fwd up to 0.8 relative error, and float64 too; cause not traced;
    tests/test_generic_ddf.py test_generic_cpu_avx2)."""
    return wide // 2 if wide >= 16 else 0


def _init_tile(sch, blk, loop, vector: bool = True) -> None:
    """decompose_reduction of ``blk`` at ``loop``; the init's own loops (the register tile)
    unrolled, the innermost vectorised (unless ``vector`` is False: a scalar segment)."""
    above = [sch.get(l) for l in sch.get_loops(blk)]
    at = next(i for i, l in enumerate(above) if l.same_as(sch.get(loop)))
    init = sch.decompose_reduction(blk, loop)
    *tile, inner = sch.get_loops(init)[at:]
    if vector:
        sch.vectorize(inner)
    unroll(sch, *tile)


def _call_copy(sch, wl, name: str, lanes: int, partition: bool = True, plain: bool = False):
    """A padded copy of S built once per call, parallel over its planes (batch x head x
    taps), rows in ``lanes``-wide vectors (``partition``: the whole ones cut off the tail,
    ``split_tail``). ``plain`` (generic builds): a zero fill and the interior left plain
    rows, as :func:`_pad_copy` (dx: its per-pixel predicated copy of S ran scalar in the
    tail tile; generic/static dx 1.34 -> 1.25 at 56 px, 1.56 -> 1.51 at 14 px; dc's S
    went the other way, 1.29 -> 1.50 at 56 px, and keeps the one predicated pass). Returns
    the plain interior's row loop (else None), for :func:`_overlap_rows` (strided dx)."""
    blk = sch.get_sblock(name)
    sch.parallel(sch.fuse(*sch.get_loops(blk)[:4]))
    interior = None
    if plain and wl.kind == "generic":
        try:
            fill = sch.decompose_padding(blk, sch.get_loops(blk)[1])
            interior, blk = sch.get_loops(blk)[-1], fill
        except s_tir.ScheduleError:  # no padding
            pass
    row = vectorize_inner(sch, blk, lanes)
    if partition:
        split_tail(sch, row)
    return interior


def _copy_partition_ok(wl, strided: bool = True) -> bool:
    """Whether a whole-call padded copy (dx's S, ds's X) may take the LoopPartition hint. On
    generic builds with tap loops (k > UNROLL_TAPS), and for dx's S at stride > 1
    (``strided=False``), TVM's LoopPartition pass ran
    for minutes or never ended there (its simplifier expanding the symbolic bounds of the wide
    halo: ds k15, dx k15, dx float64 C4 k3 s2); such copies keep their predicated tail tile,
    a small part of the k^2 work per element at those sizes."""
    return wl.kind == "static" or (wl.p["k"] <= UNROLL_TAPS and (strided or wl.p["s"] == 1))


@register("ddf", "dx", "cpu")
def dx(sch, wl, target):
    """acc(b, g, c, hh, ww; j, i) on the phase grid (``ops.ddf.ddf_dx``). Stride 1: the
    register tiles of fwd (the tile's channels share the loads of S): static rows cut into
    segments of AVX-512 vectors; generic ones (whole FWD_ROW_QUANTUM pixels) fwd's generic
    tiles, 2 rows x one AVX-512 vector per channel (:func:`_dx_generic_tiles`). Stride s > 1:
    hh and ww split by s into (quotient, phase), the phases outside the vector tiles
    (unrolled for s <= MAX_UNROLLED_STRIDE: their taps are then constants and the masks of
    absent taps fold away), so each tile reads contiguous rows of
    dO and S; acc's row buffer is laid out phase-major (its tiles contiguous) and 'out'
    interleaves the s x s phases of s rows into dX. Generic builds: 'out' per tile is a plain
    loop (LLVM interleaves the phases), predicated, so lane by lane, in a row's partial tiles;
    their grid is shifted by p mod s (``ops.ddf.ddf_dx``), so a row's first tile is whole and
    only its last is partial (before, both: the grid began p mod s columns left of dX).
    Same process, generic / static: 1.45 -> 1.33 at 56 px k3 s2, 2.74 -> 2.34 at 28 px s2,
    3.25 -> 2.25 at 56 px s3, 1.06 -> 0.90 at 112 px s2 (RESULTS.md "DDF CPU generic row
    pairs, strided dx grid").

    Generic builds at stride s > 1 since (RESULTS.md "DDF CPU generic strided kernels"): S's taps
    gathered tile-major once per call (:func:`_phase_tap_gather`, only S's own taps,
    :func:`_taps_in_bounds`: each tap was another plane at a symbolic stride); the tile 'acc'
    laid out tile-major and its regions declared whole, a constant size (it compacted to
    min(H // 2 + 1, 1) * 2 rows, symbolic); S's padded copy as whole-vector rows with the
    zeros on its border only (:func:`_overlap_rows`; its fill's 2-float row tails had become
    LLVM scatters behind ~250 instructions of overlap checks per row, ~12% of the samples);
    on AVX-512 a tile row stored as contiguous shuffled vectors, the row's last tile masked
    (:func:`_phase_rows_out`; it was stored pixel by pixel, a compare and a branch each).
    Same process, generic / static 1.94 -> 1.21 at 2x64x56² k3 s2, 2.60 -> 1.35 at 2x128x28²
    s2, 2.87 -> 1.50 at 56² s3, 1.74 -> 0.67 at 56² k7 s2; one process each
    (``bench_ddf_kernels.py --thread-time``, quiet) 1.14 / 1.20 / 1.30 at 56², 57², 28² s2."""
    lanes, s = vector_lanes(wl.dtype), wl.p["s"]
    # The padded spatial filter is shared by every channel of a head: build it once.
    s_rows = _call_copy(sch, wl, "Sp", lanes, _copy_partition_ok(wl, strided=False), plain=True)
    if s == 1:  # as fwd: the ct channels of a tile share S's loads
        ct = next(t for t in (FWD_CHANNELS, 2, 1) if (wl.p["C"] // wl.p["G"]) % t == 0)
        if wl.kind == "generic":
            wide, ct = _generic_tile(wl, target)
        acc = sch.get_sblock("acc")
        b, g, c, y, x, j, i = sch.get_loops(acc)
        co, ci = sch.split(c, [None, ct])
        plane = sch.fuse(b, g, co)
        sch.parallel(plane)
        if wl.kind == "static":
            wide = _fwd_lanes(wl.dtype, target)
            _dx_pad_copy(sch, wl, plane)  # before the row is partitioned (its blocks' regions are coarse)
            _static_row_tiles(sch, wl, y, x, ci, j, i, wide, max(1, acc_registers(target) // (2 * ct)))
            return
        _dx_generic_tiles(sch, wl, wide, acc, y, x, j, i, ci)
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
        gather = None
        if s <= MAX_UNROLLED_STRIDE:
            unroll(sch, ry, rx)
            if wl.kind == "generic":
                gather = _phase_tap_gather(sch, acc, s, lanes)
        init = sch.decompose_reduction(acc, j)
        vectorize_inner(sch, init, lanes)
        # 'out' per s x (s * lanes) pixels: the tile's s x s phases (s^2 vector accumulators)
        # (a one-column dX: per s rows; at xo TVM's lowering then fails on an undefined loop var)
        out = sch.get_sblock("out")
        sch.reverse_compute_at(out, xo if wl.p["W"] != 1 else hq)
        if wl.kind == "generic":  # tile-major: a tile compacts to a constant size (registers)
            sch.transform_layout(acc, ("write", 0), lambda b, g, c, h, w: (
                b, g, c, h // s, w // (s * lanes), h % s, w % s, w // s % lanes))
        else:
            sch.transform_layout(acc, ("write", 0), lambda b, g, c, h, w: (b, g, c, h, w % s, w // s))
        split_tail(sch, xo)
        # per phase: contiguous vector loads of acc, stores strided by s into dX (else LLVM
        # gathers each phase from the stack: generic dX at 2x64x56² s3 0.215 -> 0.097 ms). With
        # a symbolic width TVM refuses the reorder where the grid's shift p mod s is 0 (k5 s2,
        # k3 s2 d2, k1; the binding is then not affine): tried on a copy first, such builds
        # keep the plain loop.
        phased = wl.p["W"] != 1 and _phase_stores(sch.copy(), out, s)
        if phased:
            _phase_stores(sch, out, s)
        if wl.kind == "generic":  # a tile of constant size (registers), not one per plane
            _pair_regions(sch, ("acc_init", "acc_update", "out"), lanes, rows=s, paired=True, phases=s)
    _dx_pad_copy(sch, wl, plane)
    if s > 1:
        _overlap_rows(sch, s_rows, lanes, "Sp_pad_const")
        if wl.kind == "generic" and phased:
            _phase_rows_out(sch, s, lanes, codegen.target_has_features("avx512f", target))
        if gather is not None:
            _taps_in_bounds(sch, gather)


def _phase_tap_gather(sch, acc, s: int, lanes: int):
    """Generic dx at stride s > 1: S's taps gathered once per call into a tile-major copy
    ((row // s, tile, row % s, column % s, j, i, lane)), so that a tile's s x s phases' taps
    lie at constant offsets from one pointer. Returns the gather's name, for
    :func:`_taps_in_bounds` once the schedule is otherwise done."""
    gather = sch.reindex(acc, ("read", next(
        n for n, r in enumerate(sch.get(acc).reads) if r.source.name == "Sp")))
    # (one tap per phase, k <= s: the tap loops are gone)
    sch.transform_layout(gather, ("write", 0), IndexMap.from_func(lambda b, g, y_, x_, *taps: (
        b, g, y_ // s, x_ // (s * lanes), y_ % s, x_ % s, *taps, x_ // s % lanes),
        ndim=len(sch.get(gather).writes[0].region), index_dtype="int32"))
    gb, gg, gy, gx, *taps = sch.get_loops(gather)
    gyo, gyr = sch.split(gy, [None, s])
    gxo, gxi, gxr = sch.split(gx, [None, lanes, s])
    sch.reorder(gyo, gxo, gyr, gxr, *taps, gxi)
    sch.parallel(sch.fuse(gb, gg, gyo))
    sch.vectorize(gxi)
    unroll(sch, gyr, gxr, *taps)
    return sch.get(gather).name_hint


def _taps_in_bounds(sch, name: str) -> None:
    """The tap gather ``name`` (:func:`_phase_tap_gather`) predicated on its tap indices
    being taps of S: a phase's masked taps (past k: ``ops.ddf._phase_taps``) index past S's k
    x k planes, which 'acc' reads only under its mask, the gather unguarded (their gathered
    elements stay unwritten, never read). A surgery: runs last."""
    blk = sch.get_sblock(name)
    obj = sch.get(blk)
    read = obj.reads[0]
    outer = sch.get_loops(blk)[0]
    realize = sch.get(sch.get_loops(blk)[-1]).body
    binds = {iv.var: v for iv, v in zip(obj.iter_vars, realize.iter_values)}
    ana = loop_analyzer(sch, name)
    taps = [ana.simplify(substitute(r.min, binds) < n) for r, n in zip(read.region[2:4], read.source.shape[2:4])]
    keep = [c for c in taps if not ana.can_prove(c)]
    if keep:
        had = [c for c in conjuncts(realize.predicate) if not ana.can_prove(c)]
        sch.state.replace(sch.get_sref(outer), with_predicate(sch.get(outer), all_of([*had, *keep])), {})


def _probe(u, v, cu: int, cv: int, points):
    """Checks of a block's expressions in two unrolled / vector loop variables u and v:
    ``at(x, iu, iv)`` (x with them set: ints or expressions), ``free(x)`` (x holds neither),
    ``affine(x)`` (x(iu, iv) - x(0, 0) = cu * iu + cv * iv at every point (iu, iv) of
    ``points``) and ``split(pred)``: the conjuncts free of both, and for each bound ``x < b``
    (``<=``) on such an affine x, b - x(0, 0) (+ 1); None if a conjunct is of another form."""
    ana = sym.Analyzer()

    def at(x, iu, iv):
        def val(w, i):
            return tirx.const(i, w.ty) if isinstance(i, int) else i
        return ana.simplify(substitute(x, {u: val(u, iu), v: val(v, iv)}))

    def free(x):
        return not any(w.same_as(u) or w.same_as(v) for w in tirx.analysis.undefined_vars(x))

    def affine(x):
        return all(ana.can_prove_equal(at(x, iu, iv) - at(x, 0, 0), cu * iu + cv * iv) for iu, iv in points)

    def split(pred):
        keep, bounds = [], []
        for c in conjuncts(pred):
            if free(c):
                keep.append(c)
            elif isinstance(c, (tirx.LT, tirx.LE)) and affine(c.a) and free(c.b):
                bounds.append(ana.simplify(c.b - at(c.a, 0, 0) + (1 if isinstance(c, tirx.LE) else 0)))
            else:
                return None
        return keep, bounds
    return ana, at, free, affine, split


def _copy_access(realize):
    """(store, its indices, its load's indices) of a block realize that stores one load (the
    indices in the loop variables), or None."""
    block = realize.block
    store = block.body
    if not (isinstance(store, tirx.BufferStore) and isinstance(store.value, ir.expr.TensorLoad)):
        return None
    binds = {iv.var: v for iv, v in zip(block.iter_vars, realize.iter_values)}
    return store, [substitute(i, binds) for i in store.indices], [substitute(i, binds) for i in store.value.indices]


def _phase_rows_out(sch, s: int, lanes: int, masked: bool) -> None:
    """Generic dx at stride s > 1, after :func:`_phase_stores`, on AVX-512 targets
    (``masked``; else nothing changes: AVX2's masked stores are microcoded on Zen 1-3, see
    ``pac_cpu._masked_out``): a tile row's 'out' (s phase vectors of ``lanes``, interleaved
    into s * lanes pixels of dX) as s contiguous vectors, each a shuffle of the phase vectors,
    stored whole where every pixel of the tile row is inside dX (one test per tile row), else
    (the row's last tile) with a lane mask. TVM stored the last tile's phases pixel by pixel,
    a compare and a branch each (perf at 2x64x56² k3 s2: a row pair's last tile took about
    as long as its three whole ones). A test per piece, which LLVM turned into a mask per
    piece (~5 instructions each), was 1.06-1.3x slower (s3 1.89 -> 1.50 generic / static).
    Leaves the nest as it was where 'out' is not of that form. The row loop's LoopPartition
    hint is dropped (that pass cannot bound a vector mask; the whole tiles then test once per
    tile row). A surgery: runs last."""
    if not masked:
        return
    out = sch.get_sblock("out")
    *_, xo, row, phase, lane = sch.get_loops(out)
    fr, fp, fl = (sch.get(x) for x in (row, phase, lane))
    if not (isinstance(fp.body, tirx.For) and fp.body.same_as(fl) and isinstance(fl.body, s_tir.SBlockRealize)
            and all(isinstance(f.extent, tirx.IntImm) for f in (fp, fl)) and fp.body.loop_var is not None):
        return
    if int(fp.extent) != s or int(fl.extent) != lanes or not fr.body.same_as(fp):
        return
    realize, r, e = fl.body, fp.loop_var, fl.loop_var
    block = realize.block
    access = _copy_access(realize)
    if access is None:
        return
    store, dst, src = access
    every = [(rr, ee) for rr in range(s) for ee in range(lanes)]
    # (column: x(0, 0) + lane * s + phase, dX's column, at every phase and lane)
    ana, at, lane_free, column, split = _probe(r, e, 1, s, every)
    # dX's index: lane-free but the column; acc's: per phase, lane-free but a contiguous last
    x0 = at(dst[-1], 0, 0)
    dt = str(x0.ty)
    if not (all(lane_free(i) for i in dst[:-1]) and column(dst[-1])):
        return
    if not all(ana.can_prove_equal(at(i, rr, ee) - at(i, rr, 0), ee if n == len(src) - 1 else 0)
               for n, i in enumerate(src) for rr, ee in every):
        return
    # the predicate: lane-free conjuncts, and bounds x < b (x <= b) on dX's column
    parts = split(realize.predicate)
    if parts is None:
        return
    free, bounds = parts
    end = None
    for b in bounds:
        end = ana.simplify(x0 + b) if end is None else tirx.min(end, ana.simplify(x0 + b))
    vectors = [tirx.BufferLoad(store.value.source, [at(i, rr, 0) for i in src[:-1]] +
                               [tirx.Ramp(at(src[-1], rr, 0), 1, lanes)]) for rr in range(s)]
    reads = [tirx.BufferRegion(store.value.source, [ir.Range.from_min_extent(at(i, rr, 0), 1) for i in src[:-1]] +
                               [ir.Range.from_min_extent(at(src[-1], rr, 0), lanes)]) for rr in range(s)]
    wholes, parts = [], []
    for q in range(s):  # piece q: pixels q * lanes + (0 .. lanes - 1) of the tile row
        pix = [q * lanes + k for k in range(lanes)]
        value = tirx.Shuffle(vectors, [tirx.const((x % s) * lanes + x // s, "int32") for x in pix])
        idx = dst[:-1] + [tirx.Ramp(x0 + q * lanes, 1, lanes)]
        wholes.append(tirx.BufferStore(store.buffer, value, idx))
        if end is not None:
            mask = tirx.Ramp(x0 + q * lanes, 1, lanes) < tirx.Broadcast(end, lanes)
            parts.append(tirx.IfThenElse(x0 + q * lanes < end, tirx.Evaluate(
                tirx.call_intrin("void", "tirx.masked_store", store.buffer, value, *idx, mask)), None))
    # one test per tile row: the whole tiles' stores plain (a mask per piece cost ~5
    # instructions each, LLVM turning the per-piece test into masks)
    pieces = wholes if end is None else [tirx.IfThenElse(x0 + s * lanes <= end, tirx.SeqStmt(wholes), tirx.SeqStmt(parts))]
    writes = [tirx.BufferRegion(store.buffer, [ir.Range.from_min_extent(i, 1) for i in dst[:-1]] +
                                [ir.Range.from_min_extent(x0, s * lanes)])]
    if "pragma_loop_partition_hint" in sch.get(xo).annotations:  # (LoopPartition cannot read a vector mask)
        sch.unannotate(xo, "pragma_loop_partition_hint")
    blk = s_tir.SBlock([], reads, writes, block.name_hint, pieces[0] if len(pieces) == 1 else tirx.SeqStmt(pieces))
    body = s_tir.SBlockRealize([], all_of(free), blk)
    sch.state.replace(sch.get_sref(phase), tirx.For(tirx.Var("one", dt), tirx.const(0, dt), tirx.const(1, dt),
                                                    tirx.ForKind.SERIAL, body), {})


def _phase_stores(sch, out, s: int) -> bool:
    """dx at stride s > 1: 'out''s row loop split into (x // s, x % s), the phases outside,
    unrolled up to MAX_UNROLLED_STRIDE, each a vector of contiguous acc loads stored s apart
    into dX. False (``sch`` then partly changed: call it on a copy first) where TVM refuses."""
    try:
        wo, wi = sch.split(sch.get_loops(out)[-1], [None, s])
        sch.reorder(wi, wo)
    except s_tir.ScheduleError:
        return False
    if s <= MAX_UNROLLED_STRIDE:
        sch.unroll(wi)
    sch.vectorize(wo)
    return True


def _dx_generic_tiles(sch, wl, wide, acc, y, x, j, i, ci) -> None:
    """Generic dx at stride 1: fwd's generic register tiles, ct channels x FWD_ROWS rows x one
    wide vector (16 float32 lanes, two vectors without AVX-512, :func:`_generic_tile`;
    ``ops.ddf.dx_grid`` rounds the rows to whole
    FWD_ROW_QUANTUM pixels), the taps (j, i) outside the tile; 'out' in half-vector pieces
    (16-lane tiles; narrower ones whole, :func:`_out_piece`), each guarded as a whole
    (:func:`guard_pieces`; same process 1.10 -> 0.99 / 1.13 -> 0.98 / 1.60 -> 1.32 / 0.98 ->
    0.91 at 56, 28, 14 px k3 and 56 px k7). The grid keeps H rows (rounded
    to pairs, the generic CUDA dx's shared stages stopped compacting to a constant size and it
    fell back to a thread per output): the pair loop is cut (LoopPartition) into whole pairs
    and, for odd H, a last pair whose second row is predicated (a test per row, not per lane:
    its vectors stay vectors), the tile's regions declared whole (:func:`_pair_regions`).

    S's taps are gathered once per call into a tile-major copy ('Sp_reindex', ``reindex``:
    (row, tile, j, i, lane) holds Sp[j, i, hh + 2p - j*d, ww + 2p - i*d] for the pixel (hh, ww)),
    so a tile's k x k tap vectors lie at constant offsets from one pointer per row. Read from
    the padded Sp, each tap is another plane at a symbolic stride, and with the 16 dO row
    pointers of a tile (4 channels x 4 rows) they spill: the tap loop reloads them from the
    stack (perf at 56 px k3: 85-87 integer moves and 100-130 stack operands per 144 FP
    operations; the static build's loop, at constant strides, has none). fwd's Spad layout
    change cannot serve here, as the tap shifts S's rows and columns (a transform_layout
    mixing u and y has no inverse); ``reindex`` builds the shifted copy as a second,
    vectorised pass over Sp (contiguous reads along the row), the compute unchanged. dO's
    row pointers remain (RESULTS.md: a strip copy with constant strides cost more than it won).

    Generic / static dx, 1 thread, kernels alone (``bench_ddf_kernels.py --thread-time
    --kernels dx``): 1.25 / 1.37 / 1.54 / 1.73 -> 1.26 / 1.11 / 1.21 / 0.94 at 56, 28, 14 px k3
    and 56 px k7 (the 56 px k3 figure moves by +-0.15 between runs; RESULTS.md, "DDF CPU
    generic dx tiles", with what else was tried); with 'out''s piece loop outside the tile
    (:func:`_row_tile_out`), same process: 1.28 -> 1.18 / 1.12 -> 1.06 / 1.23 -> 1.09 / 0.94
    -> 0.95 (the static's time is bimodal between processes: compare within one). The partial
    last piece as the vector ending at the row's end (``guard_pieces(shift=True)``, see
    :func:`_row_tile_out`): same process 1.12 -> 1.01 at 14 px, 1.07 -> 1.08 at 28 px.
    dO's zero fill on the border only, its data rows' pads in the copy's row loop
    (:func:`_border_fill`; the fill had been ~20% of the kernel's samples at 14 px): same
    process, two pairs, 1.14, 1.13 -> 1.06, 1.06 at 2x256x14² k3. The tile laid out by row
    pairs (:func:`_pair_layout`): a constant-size stack buffer, kept in registers, where the
    clipped min(H, 2) rows had made it a heap workspace per plane, stored after the taps and
    read back unaligned by the shifted last piece. Main's and this build as libraries in one
    process (thread time, 21-31 rounds, median of per-round ratios), new / old dx 0.89, 0.91,
    0.92 at 2x256x14² k3 (generic / static 0.86-0.94), 0.93 at 28², 0.92 at 56² k3, 1.00 at k7,
    0.85 at 2x64x15² (odd H)."""
    yo, ym = sch.split(y, [None, FWD_ROWS])  # predicated in the last pair of an odd H
    xo, xi = sch.split(x, [None, wide])
    sch.reorder(yo, xo, j, i, ci, ym, xi)
    sch.vectorize(xi)
    unroll_taps(sch, wl, j, i)
    unroll(sch, ci, ym)
    gather = sch.reindex(acc, ("read", next(
        n for n, r in enumerate(sch.get(acc).reads) if r.source.name == "Sp")))
    sch.transform_layout(gather, ("write", 0),
                         lambda b, g, y_, x_, u, v: (b, g, y_, x_ // wide, u, v, x_ % wide))
    gb, gg, gy, gx, gu, gv = sch.get_loops(gather)
    gxo, gxi = sch.split(gx, [None, wide])
    sch.reorder(gxo, gu, gv, gxi)
    sch.parallel(sch.fuse(gb, gg, gy))
    sch.vectorize(gxi)
    pieces = _row_tile_out(sch, acc, j, xo, wide, _out_piece(wide))
    split_tail(sch, yo)  # whole pairs unpredicated (LoopPartition), the odd H's last pair apart
    _pair_layout(sch, acc, None if pieces is not None else wide)
    _pair_regions(sch, ("acc_init", "acc_update", "out"), wide, paired=True)
    guard_pieces(sch, pieces, shift=True)


def _pair_layout(sch, acc, lanes: int = None, rows: int = FWD_ROWS) -> None:
    """The generic tile buffer 'acc' (b, g, c, row, tile, lane) laid out by row pairs, (b, g,
    c, row // rows, tile, row % rows, lane); with ``lanes`` (tiles stored whole,
    :func:`_out_piece`: float64) the plain (b, g, c, row, x) likewise, x cut into
    ``lanes``-wide tiles (an odd H pads one row, never read or written: its
    pad block is removed, :func:`_drop_padding_nest`), so that a tile compacts to a constant
    size (rows x lanes per channel): over the plain rows, compaction clips the tile's rows to
    H, min(H, rows), a symbolic size, so 'acc' was a heap workspace per plane, which LLVM
    keeps in memory where a load does not match a store (the shifted last piece of
    :func:`guard_pieces`: the tile stored after the taps and read back unaligned). A constant
    size is a stack buffer that LLVM promotes to registers (SROA; the shifted piece a
    shuffle). :func:`_pair_regions` (``paired``) then declares the regions over it. The
    narrower tiles (whole stores: float64, and float32 on AVX2 before :func:`_generic_tile`) kept the plain rows, a workspace too, until
    the same layout: on an AVX2 host (znver3), 1 thread, old and new in one process, float64
    new / old dx 0.86-0.94 at 2x256x14², 0.82-0.86 at 2x64x56², 0.90-0.94 at 2x64x15² k3;
    float32 0.94-1.06, no clear change (RESULTS.md "DDF CPU generic dx: float64 and AVX2
    tiles by row pairs")."""
    if lanes:  # the plain row (whole-tile stores, :func:`_out_piece`): cut into tiles too
        def index(b, g, c, y, x):
            return b, g, c, y // rows, x // lanes, y % rows, x % lanes
    else:
        def index(b, g, c, y, t, l):
            return b, g, c, y // rows, t, y % rows, l
    sch.transform_layout(acc, ("write", 0), index, pad_value=0.0)
    _drop_padding_nest(sch, "buffer_acc_padding")


def _pair_regions(sch, blocks, lanes: int, rows: int = FWD_ROWS, paired: bool = False, phases: int = 0) -> None:
    """Declare that ``blocks`` touch 'acc' (laid out (b, g, c, row, tile, lane), or the plain
    row) in whole tiles of ``rows`` rows x one vector (as :func:`tile_regions` does for the
    columns): the rows' split over a symbolic H leaves a predicate, from which TVM would size
    the compacted tile (bounded by the largest int32: the build failed on an int32 overflow)."""
    for name in blocks:
        block = sch.get_sblock(name)
        obj = sch.get(block)
        vars_ = [iv.var for iv in obj.iter_vars]
        for kind, regions in ((0, obj.reads), (1, obj.writes)):
            for n, reg in enumerate(regions):
                if reg.source.name != "acc":
                    continue
                if paired:  # (b, g, c, pair, tile, row in pair, [phase,] lane): _pair_layout
                    b, g, c, pair, tile = (r.min for r in reg.region[:5])
                    flat = [b, b + 1, g, g + 1, c, c + 1, pair, pair + 1, tile, tile + 1, 0, rows,
                            *([0, phases] if phases else []), 0, lanes]
                    _ffi_api.ScheduleAnnotateBufferAccess(sch, block, n, kind, tirx.IndexMap(vars_, flat, None))
                    continue
                b, g, c, row, *col = (r.min for r in reg.region)
                top = tirx.floordiv(row, rows) * rows
                flat = [b, b + 1, g, g + 1, c, c + 1, top, top + rows]
                if len(col) == 2:  # (tile, lane)
                    flat += [col[0], col[0] + 1, 0, lanes]
                else:  # the plain row (whole-tile stores, :func:`_out_piece`)
                    lo = tirx.floordiv(col[0], lanes) * lanes
                    flat += [lo, lo + lanes]
                _ffi_api.ScheduleAnnotateBufferAccess(sch, block, n, kind, tirx.IndexMap(vars_, flat, None))


def _dx_pad_copy(sch, wl, plane):
    """dx: the plane's padded dO next to the loop that reads it (generic rows: whole vectors
    and an overlapping last one, :func:`_overlap_rows`, and the zero fill on the border
    only, :func:`_border_fill`; this runs last)."""
    lanes = vector_lanes(wl.dtype)
    rows = _pad_copy(sch, "dOp", plane, lanes, wl.kind == "generic")
    _overlap_rows(sch, rows, lanes, "dOp_pad_const")


@register("ddf", "ds", "cpu")
def ds(sch, wl, target):
    """Per output row (b, g, y) and vector of x, all k x k taps accumulate in registers over
    the channels (dO read once per tap set). X padded once per call: at stride > 1
    phase-major (:func:`_phase_pad_copy`); generic builds at stride 1 the rows' interiors
    (:func:`_pad_copy`, :func:`_overlap_rows`) with the zero border stored around them
    (:func:`_border_fill`): its single predicated pass ran scalar, half the generic kernel's
    samples at 2x256x14² (perf); generic ds new / old 0.58 / 0.69 / 0.87 at 14², 28², 56² k3
    (RESULTS.md "DDF CPU static row tails"). Generic builds read dO in place, the row's
    partial last tile shifted back to end at its end (:func:`_in_place_tiles`); rows shorter
    than a vector read dO's widened rows (:func:`schedules._rows.widened_rows`, per output row for all
    channels). RESULTS.md "DDF CPU generic ds / dc copies"."""
    lanes = vector_lanes(wl.dtype)
    phase_rows = None
    if wl.p["s"] > 1:
        phase_rows = _phase_pad_copy(sch, wl, "Xpad", None, lanes, _copy_partition_ok(wl))
    elif wl.kind == "generic" and _copy_partition_ok(wl):  # the rows' interiors, a zero border
        _overlap_rows(sch, _pad_copy(sch, "Xpad", None, lanes, True), lanes, "Xpad_pad_const")
    else:
        xpad = sch.get_sblock("Xpad")
        sch.parallel(sch.fuse(*sch.get_loops(xpad)[:3]))
        xpad_row = vectorize_inner(sch, xpad, lanes)
        if _copy_partition_ok(wl):
            split_tail(sch, xpad_row)
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
        widened_rows(sch, "dOpad", row, lanes)
        _in_place_tiles(sch, xo, lanes, ("acc",))
        _phase_copy_rows(sch, phase_rows, wl.p["s"], lanes)


def _retile_block(realize, x_var, pred, shift=None, tiles=(), swap=None):
    """Block realize ``realize`` with predicate ``pred``, its tensors swapped ({old: new}, the
    same indices) and, given ``shift``, its x binding lowered by ``shift`` while its accesses of
    the ``tiles`` buffers (the register tile, indexed by lane) keep their lanes."""
    blk, swap = realize.block, swap or {}
    i = next(n for n, v in enumerate(realize.iter_values) if any(u.same_as(x_var) for u in tirx.analysis.undefined_vars(v)))
    xv = blk.iter_vars[i].var

    def access(src, idx):  # (tensor, indices) of an access
        idx = list(idx)
        if shift is not None and any(t.same_as(src) for t in tiles):
            idx = [substitute(e, {xv: xv + shift}) for e in idx]
        return next((new for old, new in swap.items() if old.same_as(src)), src), idx

    def load(ld):
        return tirx.BufferLoad(*access(ld.source, ld.indices))

    def region(r):
        src, lo = access(r.source, [x.min for x in r.region])
        return ir.expr.TensorRegion(src, [ir.Range.from_min_extent(m, x.extent) for m, x in zip(lo, r.region)], r.ty)

    st = blk.body
    if not isinstance(st, tirx.BufferStore) or blk.init is not None:
        raise TypeError("not a plain store")
    dst, idx = access(st.buffer, st.indices)
    block = s_tir.SBlock(blk.iter_vars, [region(r) for r in blk.reads], [region(r) for r in blk.writes], blk.name_hint,
                         tirx.BufferStore(dst, substitute(st.value, {}, load), idx), None, blk.alloc_buffers,
                         blk.match_buffers, blk.annotations)
    values = list(realize.iter_values)
    if shift is not None:
        values[i] = values[i] - shift
    return s_tir.SBlockRealize(values, pred, block)


def _in_place_tiles(sch, xo, lanes: int, tiles) -> bool:
    """Generic ds: the row's vector tiles (loop ``xo``) read dO in place instead of its widened
    copy 'dOpad', where the row holds a whole vector (W >= lanes): the whole tiles as they
    were, the partial last one shifted back to end at the row's end (its lanes recompute
    pixels of the tile before, the same values, and store them again), the tiles past it
    skipped (their lanes are never stored). The register tile (``tiles``: buffer names) stays
    indexed by lane. Rows shorter than a vector keep dO's widened copy and the tiles as they
    were (a branch on W). Returns False, the IR unchanged, where it is not of the expected
    form (a surgery of the scheduled IR, as :func:`_overlap_rows`: it runs last).

    Why: the static kernels read dO in place; the generic ones spent ~20% of their time on the
    copy (perf). Generic / static ds, same process: 1.50-1.56 -> 1.20 at 2x128x28² k3,
    1.34-1.44 -> 1.01-1.04 at 2x256x14², 1.17-1.31 -> 1.00-1.03 at 2x64x56²; strides 2-3
    unchanged (RESULTS.md "DDF CPU generic ds / dc copies"). dc's column sums would take it
    too, but their shifted tile must read S in place (its widened copy is tile-major): nine
    tap rows at symbolic strides, each a pointer reloaded per row, made that tile cost twice a
    whole one (perf) and dc 1.05-1.1x slower at 28 and 14 px; nor did the whole tiles in place
    with the last one unshifted (reading a copy of the row's last vector only) help it (new /
    old 0.95-1.08, 21 rounds, two processes). dc keeps the copy."""
    loop = sch.get(xo)
    row_sref = sch.get_sref(xo).parent
    row = row_sref.stmt
    params = {p.name: p for p in sch.mod["main"].params}
    if not isinstance(row, tirx.For) or not isinstance(row.body, tirx.SeqStmt) or "dO" not in params:
        return False
    try:
        found = {x.source.name: x.source for r in realizes(loop.body) for x in (*r.block.reads, *r.block.writes)}
        if "dOpad" not in found or not all(t in found for t in tiles):
            return False
        w = params["dO"].shape[-1]
        dt = str(loop.loop_var.ty)
        m, x0, true = tirx.const(lanes, dt), loop.loop_var, tirx.const(True, "bool")
        whole = w // m  # tiles wholly inside the row
        shift = (whole + 1) * m - w  # the partial tile's lanes past the row
        swap = {found["dOpad"]: params["dO"]}
        inside = map_realizes(loop.body, lambda r: _retile_block(r, x0, true, swap=swap))
        shifted = map_realizes(loop.body, lambda r: _retile_block(r, x0, true, shift, [found[t] for t in tiles], swap))
        copies = [all(any(b.source.same_as(found["dOpad"]) for b in r.block.writes) for r in realizes(x))
                  and not x.same_as(loop) for x in row.body.seq]
    except TypeError:
        return False
    body = tirx.IfThenElse(w >= m, tirx.IfThenElse(x0 < whole, inside, tirx.IfThenElse(
        tirx.And(x0 == whole, tirx.FloorMod(w, m) != 0), shifted, None)), loop.body)
    tiles_loop = tirx.For(x0, loop.min, loop.extent, loop.kind, body, loop.thread_binding, {})
    seq = [tiles_loop if x.same_as(loop) else tirx.IfThenElse(w < m, x, None) if copy else x
           for x, copy in zip(row.body.seq, copies)]
    sch.state.replace(row_sref, tirx.For(row.loop_var, row.min, row.extent, row.kind, tirx.SeqStmt(seq),
                                         row.thread_binding, row.annotations), {})
    return True


@register("ddf", "dc", "cpu")
def dc(sch, wl, target):
    """Per plane (b, g, c): the column sums acc_cols, a vector tile of the k x k taps x one
    vector of x, over the rows y; then 'acc' sums the real columns. Generic builds: the tile
    accumulates in a local buffer (the plane's sums have a symbolic size), S's widened rows
    tile-major ('Spad', once per call); per plane dO's widened rows (:func:`schedules._rows.widened_rows`)
    and at stride 1 X's padded copy as ds's (the interiors whole vectors and an overlapping
    last one, the zero border around them: :func:`_overlap_rows`, :func:`_border_fill`).
    Generic dc new / old 0.90-0.99 at 2x128x28² k3, 0.88-0.97 at 2x256x14² (RESULTS.md "DDF CPU
    generic ds / dc copies"). Found by perf at 2x64x56² k3: the copies took ~37% of
    the generic kernel's samples, dO's zero fill and copy (the static build reads dO in place)
    ~20%, X's fill a memset per row (LLVM's loop idiom: a call per 58 floats) ~9%. Generic /
    static, 1 thread (``bench_ddf_kernels.py --thread-time --repeats 11 --kernels dc``, before
    and after run back to back): 1.30 -> 1.12 / 1.06 -> 0.97 / 0.94 -> 0.83 / 0.98 -> 0.89 at
    56, 28, 14 px k3 and 56 px k7, 1.36 -> 1.34 at 56 px k3 s2. At s2 the phase-major X's
    pad-value block had stayed at the root, a pass over the whole call's X that also kept the
    plane's X from being compacted (:func:`_drop_padding_nest`, removed: same process 1.37 ->
    1.13; the perf shares once read as X's fill and copy, ~23% and ~16%, included it).

    perf at 2x64x56² k3 now: the column sums ~62% of the generic kernel's samples (9 mul +
    9 FMA per row and vector, in registers), X's interior copy ~13% (LLVM's loop: one 32-float
    block, then 4-float pieces), dO's widened copy ~13% (its loads: dO's first touch, which the
    static build pays in its column sums). Tried and dropped (generic / static, same process):
    X's interior as TVM vectors with the tail cut (``split_tail``) or as
    :func:`_overlap_rows`, each with the flat fill: 2.7x (1.11 without: the change, not the
    copy; not traced); the same without the flat fill 1.20; dO's widening inlined into the
    column sums (no copy): 1.05 -> 1.00 at 56 px, 1.03 -> 2.0 at 28 px (its select per
    lane stays scalar)."""
    lanes = vector_lanes(wl.dtype)
    if wl.kind == "generic" and wl.p["combine"] == "mul":  # S's rows widened, once per call
        # laid out tile-major as fwd's: per (tile, row) the k x k tap vectors at constant
        # offsets (the plain layout kept a pointer per tap, reloaded from the stack per row;
        # generic / static 1.29 -> 1.14 at 56 px k3, 1.09 -> 0.87 at k7, same run)
        sch.transform_layout(sch.get_sblock("Spad"), ("write", 0),
                             lambda b, g, u, v, y, x: (b, g, y, x // lanes, u, v, x % lanes))
        _call_copy(sch, wl, "Spad", lanes)
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
    phase_rows = None
    if wl.p["s"] > 1:
        phase_rows = _phase_pad_copy(sch, wl, "Xpad", plane, lanes)
    else:
        _overlap_rows(sch, _pad_copy(sch, "Xpad", plane, lanes, wl.kind == "generic"), lanes, "Xpad_pad_const")
    if wl.kind == "generic":
        widened_rows(sch, "dOpad", plane, lanes)
    split_tail(sch, xo)
    _phase_copy_rows(sch, phase_rows, wl.p["s"], lanes)


def _phase_pad_copy(sch, wl, name: str, at, lanes: int, partition: bool = True):
    """Stride s > 1 (fwd, ds, dc; generic and static builds): the padded X (read at x*s +
    v*d) laid out phase-major along the row, (..., row, x mod s, x div s), so that a tap's
    reads over a vector of x are
    contiguous (phase v*d mod s, from x + v*d div s) instead of s apart (a gather: a scalar
    load and an insert per lane). Its zero fill and interior copy iterate the new layout
    (phase outside, x div s inside): the fill in whole vectors (the tail cut off). The copy is
    a plain loop over the row's groups of s pixels, the s phases unrolled inside (contiguous
    reads, one store per phase row: LLVM's interleaved vectors). Per phase row (stride-s
    loads) LLVM's wide loop needed 33 elements or more, so 28-pixel phase rows ran in 4-lane
    pieces (perf: ~25% of the generic dc at 2x64x56² s2); same process, generic / static
    1.14 -> 0.96 (dc), 0.70 -> 0.71 (fwd) at 56² s2, dc 0.66 -> 0.59, ds 0.64 -> 0.59 at 57²
    s2, dc 0.88 -> 0.75, ds 0.81 -> 0.71 at 56² s3. A row whose length
    is not a multiple of s leaves the last phase rows one element longer than the data: the
    layout is declared padded (``pad_value``), that element never read, so the block writing
    it is removed (:func:`_drop_padding_nest`; it scanned the whole call's X, and kept the
    per-plane X from being compacted: a 2 MB workspace at 2x64x56² s2. Same process, generic /
    static at 2x64x56² k3 s2: dc 1.37 -> 1.13, fwd 0.81 -> 0.68, ds 1.02 -> 0.97).

    Found by perf at 2x64x56² k3 s2 (dc): the column-sum loop built each X vector from 8
    scalar loads and inserts (``vinsertps``). Generic / static, same process (scratch A/B,
    thread time, 11 repeats): fwd 1.23 -> 0.83, ds 1.17 -> 0.83, dc 1.18-1.23 -> 1.02-1.04 at
    s2; fwd 1.53 -> 1.22, ds 0.63 -> 0.53, dc 0.70 -> 0.74 at 56² s3 (RESULTS.md "DDF CPU
    generic 'out' piece loop"). The static builds took it later (they had kept the strided
    reads): with their row tails cut, static fwd new / old 0.45 / 0.50 / 0.69 at 2x64x56² s2,
    57² s2, 56² s3 (RESULTS.md "DDF CPU static row tails"). Returns the copy's group loop in
    generic builds (else None), for :func:`_phase_copy_rows` once the schedule is done."""
    s = wl.p["s"]
    blk, at, loops, depth = _place_copy(sch, name, at)
    try:  # generic rows are always widened, so there is padding; kept as _pad_copy's guard
        fill = sch.decompose_padding(blk, loops[depth + 1])
    except s_tir.ScheduleError:
        split_tail(sch, vectorize_inner(sch, blk, lanes, under=at))
        return
    sch.transform_layout(blk, ("write", 0), lambda b, g, c, y, x: (b, g, c, y, x % s, x // s), pad_value=0.0)
    _drop_padding_nest(sch, f"buffer_{name}_padding")  # never read: no pass over it
    for block, vector in ((fill, True), (blk, False)):
        x = sch.get_loops(block)[-1]
        xq, ph = sch.split(x, [None, s])
        if vector:  # the fill per phase row; the copy per s pixels (see docstring)
            sch.reorder(ph, xq)
        sch.unroll(ph)
        inner = vectorize_inner(sch, block, lanes, under=at) if vector else xq
        if partition:
            split_tail(sch, inner)
    return xq if wl.kind == "generic" else None


def _phase_copy_rows(sch, loop, s: int, lanes: int) -> None:
    """A generic phase-major copy's group loop ``loop`` (:func:`_phase_pad_copy`: per group
    of s pixels, the s phases unrolled) as blocks of ``lanes`` groups: s contiguous vector
    loads of the row, each phase a shuffle of them stored as one vector, then one more block
    ending at the row's last whole group (it overlaps the one before and stores the same
    values: a copy), the partial group, if any, as before; rows of fewer than ``lanes``
    groups as before. LLVM had vectorized the group loop itself, 8 groups at a time, and run
    the rest scalar (28-px rows at s2: 8 groups a vector, 6 scalar, ~23% of the generic fwd's
    samples at 2x128x28² k3 s2, with its alias checks per row another ~8%). Leaves the loop
    as it was where the copy is not of that form. A surgery: runs last."""
    if loop is None:
        return
    f = sch.get(loop)
    fp = f.body
    if not (isinstance(fp, tirx.For) and isinstance(fp.extent, tirx.IntImm) and int(fp.extent) == s
            and isinstance(fp.body, s_tir.SBlockRealize)):
        return
    _phase_border_fill(sch, fp.body.block.name_hint, s, lanes)
    f = sch.get(loop)
    fp = f.body
    realize, g, r = fp.body, f.loop_var, fp.loop_var
    block = realize.block
    access = _copy_access(realize)
    if access is None:
        return
    store, dst, src = access
    every = [(gg, rr) for gg in range(3) for rr in range(s)]
    # (pixel: x(0, 0) + group * s + phase, the row's pixel)
    ana, at, free, pixel, split = _probe(g, r, s, 1, every)
    # X's row contiguous along the pixels; the copy's phase row by phase, its column by group
    if not (all(free(i) for i in src[:-1]) and pixel(src[-1]) and all(free(i) for i in dst[:-2])):
        return
    if not all(ana.can_prove_equal(at(dst[-2], gg, rr), at(dst[-2], 0, rr))
               and ana.can_prove_equal(at(dst[-1], gg, rr) - at(dst[-1], 0, rr), gg) for gg, rr in every):
        return
    parts = split(realize.predicate)
    if parts is None or not parts[1]:
        return
    keep, bounds = parts
    n = bounds[0]
    for b in bounds[1:]:
        n = tirx.min(n, b)
    dt = str(g.ty)
    m = tirx.const(lanes, dt)
    whole = ana.simplify(tirx.floordiv(n, s))  # the row's whole groups

    def vectors(g0):  # groups g0 .. g0 + lanes - 1 as one block
        base = at(src[-1], g0, 0)
        rows = [tirx.BufferLoad(store.value.source, src[:-1] + [tirx.Ramp(base + j * lanes, 1, lanes)]) for j in range(s)]
        stores, writes = [], []
        for rr in range(s):
            idx = [at(i, g0, rr) for i in dst[:-1]]
            stores.append(tirx.BufferStore(store.buffer, tirx.Shuffle(rows, [tirx.const(k * s + rr, "int32") for k in range(lanes)]),
                                           idx + [tirx.Ramp(at(dst[-1], g0, rr), 1, lanes)]))
            writes.append(tirx.BufferRegion(store.buffer, [ir.Range.from_min_extent(i, 1) for i in idx] +
                                            [ir.Range.from_min_extent(at(dst[-1], g0, rr), lanes)]))
        reads = [tirx.BufferRegion(store.value.source, [ir.Range.from_min_extent(i, 1) for i in src[:-1]] +
                                   [ir.Range.from_min_extent(base, s * lanes)])]
        return s_tir.SBlockRealize([], all_of(keep), s_tir.SBlock([], reads, writes, block.name_hint, tirx.SeqStmt(stores)))

    xo, gq, rq = tirx.Var("xo", dt), tirx.Var("gq", dt), tirx.Var("rq", dt)
    part = tirx.For(gq, tirx.const(0, dt), f.extent - whole, tirx.ForKind.SERIAL, tirx.For(
        rq, tirx.const(0, dt), fp.extent, tirx.ForKind.UNROLLED, s_tir.SBlockRealize(
            [substitute(v, {g: whole + gq, r: rq}) for v in realize.iter_values],
            substitute(realize.predicate, {g: whole + gq, r: rq}), block)))
    rows = tirx.SeqStmt([
        tirx.For(xo, tirx.const(0, dt), tirx.floordiv(whole, m), tirx.ForKind.SERIAL, vectors(xo * m)),
        tirx.IfThenElse(tirx.floormod(whole, m) != 0, vectors(whole - m), None),
        part])  # the partial group (a row of n pixels, n mod s of them)
    sch.state.replace(sch.get_sref(loop), tirx.For(
        tirx.Var("row", dt), tirx.const(0, dt), tirx.const(1, dt), tirx.ForKind.SERIAL,
        tirx.IfThenElse(whole >= m, rows, f)), {})


def _phase_border_fill(sch, name: str, s: int, lanes: int) -> None:
    """The zero fill of the generic phase-major copy ``name`` (:func:`_phase_pad_copy`) on the
    border only: the rows above and below the data whole, as before; per data row and phase,
    the left pad's elements, then the right one as ``lanes``-wide vectors counted back from
    the phase row's end (they may overlap the data, which the copy, after the fill, then
    overwrites). The fill had zeroed every phase row of the plane before the copy wrote
    most of them again: LLVM made it a ``memset`` call per phase row (a 14-float row at 28 px
    s2), ~25-35% of the generic fwd's time. Leaves the fill as it was where its nest or the
    copy is not of the expected form. A surgery: runs before :func:`_phase_copy_rows`."""
    try:
        fb, cb = sch.get(sch.get_sblock(f"{name}_pad_const")), sch.get(sch.get_sblock(name))
    except s_tir.ScheduleError:
        return
    loops = sch.get_loops(sch.get_sblock(f"{name}_pad_const"))
    if len(loops) < 4:
        return
    row, phase, tile, lane = loops[-4:]
    fr, fp, fl = sch.get(row), sch.get(phase), sch.get(lane)
    realize = fl.body
    if not (isinstance(realize, s_tir.SBlockRealize) and isinstance(fp.extent, tirx.IntImm) and int(fp.extent) == s
            and fl.kind == tirx.ForKind.VECTORIZED and isinstance(cb.body, tirx.BufferStore) and len(cb.reads) == 1):
        return
    y = fr.loop_var
    ana = sym.Analyzer()
    iv = [v.var for v in cb.iter_vars]
    dst = cb.body.indices
    top = ana.simplify(dst[-3] - iv[-2])
    left = ana.simplify(dst[-2] + dst[-1] * s - iv[-1])
    H, W = cb.reads[0].source.shape[-2:]
    wq = fb.writes[0].source.shape[-1]  # a phase row's length
    dt = str(y.ty)
    m = tirx.const(lanes, dt)
    # TVM does not know a size positive: the fill's row may be y + min(0, (H + 2) // 3 * 3 - 1)
    # (dc at s3), y where sizes are; the fill as it was is kept for other sizes
    outer = [sch.get(lp).loop_var for lp in loops]
    sizes = []
    for v in tirx.analysis.undefined_vars(tirx.SeqStmt([tirx.Evaluate(e) for e in (realize.iter_values[-2], wq, H, W, fr.extent)])):
        if not any(v.same_as(u) for u in outer + sizes):
            sizes.append(v)
    for v in sizes:
        ana.bind(v, ir.Range.from_min_extent(1, 1 << 30))
    if not (isinstance(top, tirx.IntImm) and isinstance(left, tirx.IntImm) and ana.can_prove(wq >= m)
            and ana.can_prove_equal(realize.iter_values[-2], y)):
        return
    inner = {x.loop_var for x in (fp, sch.get(tile), fl)}
    ya, yd = tirx.Var("y", dt), tirx.Var("y", dt)
    # the data rows in the plane: those the copy writes (fwd's plane may end above X's end);
    # fewer is safe (the rows below are then zeroed whole before the copy)
    hd = tirx.min(tirx.min(H, fr.extent - top), sch.get(sch.get_loops(sch.get_sblock(name))[-3]).extent)
    pad_rows = tirx.For(ya, tirx.const(0, dt), fr.extent - hd, fr.kind,
                        renamed(fr.body, {y: tirx.Select(ya < top, ya, ya + hd)}))
    keep = all_of([substitute(c, {y: yd + top}) for c in conjuncts(realize.predicate)
                   if not any(any(v.same_as(u) for u in inner) for v in tirx.analysis.undefined_vars(c))])

    def at(x, kind=None):  # the fill's block at padded column x of data row yd
        return s_tir.SBlockRealize([substitute(v, {y: yd + top}) for v in realize.iter_values[:-1]] + [x], keep,
                                   realize.block)

    data = [at(tirx.const(x, dt)) for x in range(int(left))]  # the left pad
    fixed = 3  # vectors of the right pad unrolled; a loop for any more
    for r in range(s):
        count = tirx.floordiv(wq - tirx.floordiv(left + W - r + s - 1, s) + m - 1, m)

        def vector(n, r=r):
            xi = tirx.Var("xi", dt)
            return tirx.For(xi, tirx.const(0, dt), m, tirx.ForKind.VECTORIZED,
                            at((tirx.max(wq - (n + 1) * m, 0) + xi) * s + r))
        j = tirx.Var("j", dt)
        data += [tirx.IfThenElse(count > n, vector(tirx.const(n, dt)), None) for n in range(fixed)]
        data.append(tirx.IfThenElse(count > fixed, tirx.For(j, tirx.const(fixed, dt), count - fixed,
                                                             tirx.ForKind.SERIAL, vector(j)), None))
    data_rows = tirx.For(yd, tirx.const(0, dt), hd, tirx.ForKind.SERIAL, tirx.SeqStmt(data))
    sch.state.replace(sch.get_sref(row), tirx.For(tirx.Var("rows", dt), tirx.const(0, dt), tirx.const(1, dt),
                                                  tirx.ForKind.SERIAL, tirx.IfThenElse(
                                                      all_of([v >= 1 for v in sizes]),
                                                      tirx.SeqStmt([pad_rows, data_rows]), fr)), {})


def _drop_padding_nest(sch, name: str) -> None:
    """Remove the loop nest of ``transform_layout``'s padding block ``name`` (its pad_value
    writes, placed at the root: the producer is decomposed) from the root block's body. The
    padding lies past the buffer's logical extent, which every reader's index (remapped
    alike) stays within, so it is never read and the result is unchanged. Kept, it scanned
    the whole call's padded X (a test per element: 0.5 M at 2x64x56² s2) and, being outside
    the plane loop, kept the per-plane copy from being compacted (a 2 MB workspace per call
    instead of a plane's 15 KB, which stays in cache)."""
    root = sch.get_sblock("root")
    rblock = sch.get(root)
    try:
        sref = sch.get_sref(sch.get_sblock(name))
    except s_tir.ScheduleError:  # no padding introduced (the row a multiple of s)
        return
    while not sref.parent.stmt.same_as(rblock):  # up to the nest's outermost loop
        sref = sref.parent
    body = rblock.body
    keep = [st for st in (body.seq if isinstance(body, tirx.SeqStmt) else [body]) if not st.same_as(sref.stmt)]
    new = s_tir.SBlock(rblock.iter_vars, rblock.reads, rblock.writes, rblock.name_hint,
                       tirx.SeqStmt(keep) if len(keep) > 1 else keep[0], rblock.init,
                       rblock.alloc_buffers, rblock.match_buffers, rblock.annotations)
    sch.state.replace(sch.get_sref(root), new, {rblock: new})
