"""Default CPU (LLVM) schedules for ACDA's atom convolution.

fwd: the padded input once, then parallel over output rows (batch x y). Each row first builds
its M x k x k atoms for the whole row (vectors along x, a sum over the T bases), then for each
block of channels keeps (channels x M) vector accumulators along x and runs the k x k taps: a
load of the input feeds M atoms, a load of an atom feeds the block's channels.
dx: as fwd over input rows: one zero-inserted, padded copy of dO and of A, then per row (parallel)
the row's M x k x k atoms (indexed by the input pixel they serve, ``ops.acda.acda_dx``), then
per block of channels one vector accumulator per channel along x over the M x k x k taps (an
atom vector feeds the block's channels). Per row, not grid-wide: the generic build's atoms
then have no symbolic strides.
datoms: the padded input once, then parallel over output rows, k vector accumulators along x
per (atom, tap row), the channel sum outside the taps.

Generic builds (N, H, W symbolic; rows of 'acc' padded to whole vectors, ``ops.acda``) take the
same register tiles, arranged so that nothing scalar or memory-bound is left in the row loops
(each was found in the generic build's assembly, against the static one's):
- the loop nest is the stores' ('out', the real row; ``_store_nest``), 'acc' computed per
  vector tile: the stores' only predicate is the row's end, which LoopPartition
  (``split_tail``) cuts off the whole tiles. Nested the other way ('out' moved into acc's
  tile by ``reverse_compute_at``), the predicate carries a disjunction LoopPartition cannot
  prove, and every store of the row ran scalar;
- a row's atoms are accumulated per vector tile, k tap-column vectors over the T bases in
  registers (``_atoms_row``): over a symbolic x loop, LLVM kept each atom in memory
  (a load, FMA and store per basis), where the static build's fully unrolled x let it
  promote them to registers. The atoms are laid out tile-major, so a tile's M*k*k vectors
  lie at constant offsets;
- the stores' loops inside a tile (channels, atoms, tap columns) are unrolled: TVM allocates
  'acc' once per row, shared by LoopPartition's whole tiles and its tail, and with those
  loops rolled the tail indexed it at run time, so LLVM kept the tile in memory (per tile a
  zero store and a store of every accumulator: the "spills" that had made the generic fwd
  take half the static tile). Unrolled, every index is constant and LLVM promotes the tile
  to registers. The generic fwd then takes the static tile (channels x M atoms), its tap
  loop at 1.54 / 1.64 / 1.98 instructions per FMA against the static 1.49 / 1.57 / 1.83
  (k = 7 / 5 / 3, 2x64x56x56, assembly; before: half the tile, 1.82 / 1.95 / 2.39, 24 vector
  stack stores per tile). Measured (1 thread, median thread CPU time, one process with both
  schedule versions): generic fwd 10-25% faster (k3 the most);
- datoms widens dO's row by zeros (``ops.acda``) per vector tile where the tile's k tap rows
  of the C input rows stay in L1 (k * C <= ``XPAD_ROWS_L1``: the tile runs (tap row, channel,
  tap column), dO's 8-pixel column per channel copied once for its k tap rows), else per atom
  (C x row, 14 KB at 64 x 56 px; per output row it was 86 KB, past L1, as long as the
  compute at k = 3). Inlined, the copy vanishes from whole tiles (LoopPartition drops its
  condition) but the tail tile goes scalar: 2.5x at 28 px;
- the padded and widened copies (Xpad, dO's and A's rows) are cut the same way into whole
  vectors and edges (their zero padding is a per-lane branch, which TVM vectorizes by going
  scalar).
- dx's tap-row loop stays rolled where the tile addresses more than ``DX_ROW_OFFSETS`` rows of
  the zero-inserted dO (``_dx_generic``: k = 7, 16 channels x 7 tap rows at symbolic strides,
  whose 112 offsets LLVM had kept on the stack). Generic / static dx, 1 thread, median thread
  CPU time of 21 interleaved calls, main's generic and this one in one process, two runs (load
  4-5): 1.32 -> 1.28, 1.31 -> 1.20 at 2x64x56x56 k7; 0.80 -> 0.71, 0.71 -> 0.66 at 2x64x28x28;
  0.89 -> 0.81, 0.87 -> 0.79 at 2x128x28x28 (k = 5, 3 unchanged: unrolled).
- fwd and dx drop acc's row bounds (``_drop_row_bounds``: the tile inside acc's padded row,
  true on every tile but not proven by TVM, so LoopPartition's tail tile computed acc under
  them and stored it regardless: acc read where not written, live across channel blocks), and
  the fwd's tap-row loop is rolled (``_fwd_generic``). Generic / static, 1 thread, median of
  the per-round ratios of 25 / 61 rounds (static, main's generic and this one in one process,
  load 3.5-4.5), before -> after: fwd 56 px k5 1.21 -> 1.17, 1.20 -> 1.17; k3 1.12 -> 0.97,
  1.17 -> 1.10; k7 1.41 -> 1.09, 1.26 -> 1.09; 2x64x28x28 k7 1.12 -> 1.01, 1.29 -> 1.07;
  2x128x28x28 k7 1.13 -> 1.12, 1.10 -> 1.08; dx unchanged within noise (56 px k7 1.22 -> 1.15,
  1.18 -> 1.17; 28 px 0.70-0.80 both).
Static builds are unchanged by this.
- the copies (fourth session): the generic fwd's padded input and, at stride 1, dx's dO and A
  grids are per row a row of zeros then the source row copied from its first real column
  (``_pad_generic``, ``decompose_padding``; as one block the row's first vector and its last
  two went lane by lane: 8% of the samples at 56 px k3); the fwd's widened coefficients are
  copied per atom and vector tile into a local buffer just before the tile's atoms
  (``_apad_per_tile``; per row, its loads of A stalled apart from any FMA: 15% of the samples
  at 56 px k5). Generic / static, 1 thread, median of the per-round ratios (fwd 61 rounds, dx
  21), the static build, main's generic and this one exported and called in one process,
  three processes (load 4.2-6.0), before -> after: fwd 56 px k3 1.18 / 1.30 / 1.22 -> 1.06 /
  1.15 / 1.15, k5 1.06 / 1.09 / 1.07 -> 0.93 / 0.94 / 0.93, k7 0.99 / 1.01 / 0.98 -> 0.91 /
  0.88 / 0.88; 28 px k3 1.20 / 1.13 / 1.35 -> 1.08 / 0.98 / 0.98, k5 0.83 / 0.77 / 0.81 ->
  0.74 / 0.71 / 0.72, k7 0.69 / 0.66 / 0.65 -> 0.63 / 0.62 / 0.60; dx 56 px k7 1.09 / 1.06 /
  1.02 -> 1.02 / 0.97 / 1.01, k5 1.08 / 1.08 / 1.10 -> 1.01 / 1.05 / 1.03, k3 1.15 / 1.24 /
  1.28 -> 1.13 / 1.06 / 1.07, 28 px k7 0.44 -> 0.37-0.41. Tried: the fwd's zeros per plane
  then the plane copied (56 px k3 1.24 / 1.20 where per row 1.18 / 1.03, same processes).
Left after the third session (cut since by the copies above): generic dx at 56 px k7 1.15-1.2x the static
one (perf: the tap loop and the atom loop each ~1.2x the static ones' samples; per channel and
tap row an int32 add and sign extension remain; a layout with the channel block's rows
adjacent, (n, c // 16, m, y, c % 16, x), removed the multiplies but not the time); generic fwd
at 56 px k5 1.15-1.2x. perf, static and generic called alternately in one process: the
generic tap loop takes no more samples than the static one; the excess is the channel block's
preamble (~20 row offsets of Xpad and 24 of 'out' at symbolic strides, computed and stored to
the stack after each block's last tile, 10-15% of samples for ~300 instructions, likely
waiting behind the tile's 24 'out' stores; not measured: no hardware counters here), the
row's Apad copy (6-8%, memory: the static build
reads A inside its atom loop). Tried, not faster: Apad per atom tile or per atom (k5: StorageRewrite
merged the tile with acc, which then lived in memory), Apad inlined (2x64x28x28: 1.5x),
acc per channel block in a tile-major row buffer with 'out' copied after (1.4x: the 'out'
stores no longer overlap the FMAs), guarding 'out' as a whole instead of LoopPartition's cut.
Half the dx channel block was slower (1.24x). Left after the fourth session: fwd 56 px k3
1.06-1.15x (perf: the tile's 'out' stores each reload a row offset at symbolic strides from the
stack, 14% of the generic samples; the tap loop as fast).
- the generic fwd's tile up to k = 5 (fifth session, ``_fwd_channel_block``): as many channels
  as fit the vector registers with the tap's M atom vectors and the input vector (AVX2: 1
  channel x 6 atoms, 13 of 16 registers). With the static tile (2 x 6, 19 vectors) LLVM spilled
  accumulators in the tap loop and each of the 12 'out' stores was a stack reload, an add and a
  sign extension (assembly, 2x64x56x56 k3, tile loop: 305 instructions per 108 FMAs, 74 stack
  accesses; now 96 per 54, 5, no sign extension; static 251 per 108). Generic / static fwd, 1
  thread, median of per-round ratios (21-31 rounds), the static build, the previous generic and
  this one in one process, before -> after: 56 px k3 1.09 -> 0.98, 1.01 -> 0.96, 1.04 -> 0.96,
  1.04 -> 0.89; 28 px k3 1.16 -> 0.98, 1.19 -> 0.92; 28 px k5 0.96 -> 0.82; 56 px k5 0.92 ->
  0.85, 0.82 -> 0.77, 0.97 -> 0.84, 0.79 -> 0.82 (the previous build also measured 1.77 / 1.95
  at 56 / 28 px k5 in one process). At k = 7
  one channel was 5-7% slower at 56 px (0.91 -> 0.98, 0.90 -> 0.95): the static tile kept.
- the static fwd takes the same tile (sixth session): on AVX2 it had kept 2 channels x 6
  atoms and spilled as the generic one had; new / old 0.62-0.88 up to k = 5.

- the generic datoms' copies, and the generic fwd's X at stride s > 1, as whole vectors and
  an overlapping last one (2026-12-03): X's padded copy a zero fill, then each row's interior
  (``_pad_rows_overlap``, ``_rows.overlap_rows``); dO's rows
  widened per atom as ds's in ``ddf_cpu`` (``_rows.widened_rows``: the zeros counted back from
  the row's end, then the row). Each had been one predicated vector pass, which TVM's
  vectorizer leaves scalar: dO's copy lane by lane was ~40% of the generic kernel's samples
  at 2x128x14² k3, X's copy at stride 2 (LLVM's gathers and scatters) 42% at 2x128x56² s2
  (perf). Both rewrites assume the copied sizes positive (TVM's regions clamp for W <= 0), the
  nest as it was kept for other sizes. Generic / static, two processes: datoms 2.03 / 1.53 ->
  1.32 / 1.09 at 2x128x14² k3, 2.59 / 2.55 -> 1.30 / 1.31 at 2x128x56² k3 s2; fwd 1.93 ->
  1.11 / 1.20 there, 2.33 / 2.24 -> 1.08 / 1.03 at 2x64x57² k5 s3 (RESULTS.md "ACDA CPU generic
  datoms copies and strided fwd X").

Static builds at widths that whole (or half) vectors do not tile (31, 14 px): the vector tile
loops of fwd, dx, datoms and the row's atoms carry the LoopPartition hint (``split_tail``), so
the whole tiles stay vectors; before, TVM's vectorizer ran every tile of such a row scalar.
New / old, 1 thread: fwd 0.19-0.32, dx 0.25-0.48, datoms 0.49-0.94 at 2x64x29x31 k3-7 and
2x128x14² k3; dx 0.75 at 2x128x28² k5 (its atoms' rows); 1.00 at the 56 px shapes (RESULTS.md
"ACDA CPU static row tails"). Such builds keep their tap loops rolled (unrolled under the tail's
predicate, a k7 build took 278 s), and run 1.1-2.2x the generic build there (its rows padded
to whole vectors; ``bench_acda_kernels.py``, one process): at such widths the generic build is
the faster one (not the datoms at 14 px).
"""
from __future__ import annotations

from typing import Optional

from tvm import ir, sym, tirx
from dynfilter_tvm.ops.acda import DX_ROWS, ROW_TILE, X_QUANTUM

from . import register
from ._rows import overlap_rows, widened_rows
from .common import (acc_registers, after_compute_at, all_of, conjuncts, split_tail, substitute,
                     tile_regions, unroll, unroll_taps, vector_lanes, vector_registers, vectorize_inner, vectorize_under,
                     with_predicate)


def _extent(sch, loop) -> Optional[int]:
    """A loop's extent; None where symbolic (a generic build: any batch, height and width)."""
    n = sch.get(loop).extent
    return int(n) if isinstance(n, tirx.IntImm) else None


def _channel_block(wl, target, per_channel=None) -> int:
    """Channels per tile: each tap's input vector is loaded once per channel and each atom
    vector once per tile, so c_block x ``per_channel`` accumulators (fwd: M, one per atom;
    dx: 1, the atoms summed) amortise the atom loads."""
    most = max(1, min(wl.p["C"], acc_registers(target) // (per_channel or wl.p["M"])))
    return max(b for b in range(1, most + 1) if wl.p["C"] % b == 0)  # no channel tail


def _atoms_row(sch, wl, anchor, wo, lanes):
    """Build one output row's atoms at ``anchor``. Returns the block and its t loop (None for
    T = 1), to be decomposed last. ``wo``: None where symbolic.

    Static: vectors along x, the sum over t outside (LLVM unrolls the constant x loop and keeps
    the row's vectors in registers over t). Generic: per atom m, tap row u and vector tile of
    the row, the k tap columns' vectors (unrolled) accumulate over the T bases in registers
    (fwd: a load of A feeds k FMAs). The tiles run inside (m, u): the T rows of A that (m, u)
    reads stay in L1 over the row (tiles outside: dx's k shifted rows per basis missed it,
    1.2x -> 1.1x the static dx). The row's atoms are laid out tile-major
    (x // lanes, m, u, v, lanes), a tile's M*k*k vectors at constant offsets."""
    p = wl.p
    atoms = sch.get_sblock("atoms")
    if wo is None:
        sch.transform_layout(atoms, ("write", 0),
                             lambda n, m, u, v, y, x: (n, y, x // lanes, m, u, v, x % lanes))
    sch.compute_at(atoms, anchor)
    loops = after_compute_at(sch, atoms, [("m", p["M"]), ("u", p["k"]), ("v", p["k"]),
                                           ("x", 2 if wo is None else wo), ("t", p["T"])])
    if wo is None:
        xo, xi = sch.split(loops["x"], [None, lanes])
        sch.reorder(*(loops[n] for n in ("m", "u") if n in loops), xo,
                    *(loops[n] for n in ("t", "v") if n in loops), xi)
        sch.vectorize(xi)
        if "v" in loops:
            unroll_taps(sch, wl, loops["v"])
        return atoms, loops.get("t")
    if "x" in loops and "t" in loops:
        sch.reorder(loops["t"], loops["x"])
    if "x" in loops:
        xo, xi = sch.split(loops["x"], [None, vector_lanes(wl.dtype)])
        sch.vectorize(xi)
        split_tail(sch, xo)
    return atoms, loops.get("t")


def _pad_rows(sch, wl, block, lanes) -> None:
    """Vectorize a padded copy along its rows. Generic builds at stride 1: LoopPartition cuts
    each row into whole vectors and the edges. Not at stride 2, where the pass ran for
    minutes (rows of (Wq - 1) * s + d * (k - 1) + 1)."""
    xo = vectorize_inner(sch, block, lanes)
    if wl.p["s"] == 1:
        split_tail(sch, xo)


def _finish_row(sch, acc, first_reduce, xo, atoms, t, wo, lanes) -> None:
    """Static fwd and dx, last: 'out' stored per vector tile, then the reductions split into
    init + update (compute_at needs them whole, so this comes after every producer is placed)."""
    out = sch.get_sblock("out")
    sch.reverse_compute_at(out, xo)
    vectorize_under(sch, out, xo)
    init = sch.decompose_reduction(acc, first_reduce)
    vectorize_inner(sch, init, lanes, under=xo)
    if t is not None:
        init = sch.decompose_reduction(atoms, t)
        if wo > 1:  # else its innermost loop is a tap loop
            vectorize_inner(sch, init, lanes)


@register("acda", "fwd", "cpu")
def fwd(sch, wl, target):
    if wl.p["W"] is None:
        return _fwd_generic(sch, wl, target)
    acc = sch.get_sblock("acc")
    n, c, m, y, x, u, v = sch.get_loops(acc)
    wo = _extent(sch, x)
    lanes = vector_lanes(wl.dtype)
    if wo % lanes and wo % (lanes // 2) == 0:
        lanes //= 2  # half vectors without a tail (28 = 7 x 4)
    sch.reorder(n, y, c, x, u, v, m)
    row = sch.fuse(n, y)
    sch.parallel(row)
    co, ci = sch.split(c, [None, _fwd_channel_block(wl, target)])
    xo, xi = sch.split(x, [None, lanes])
    sch.reorder(co, xo, u, v, ci, m, xi)
    sch.vectorize(xi)
    split_tail(sch, xo)  # a width whole vectors do not tile: the whole tiles stay vectors
    unroll(sch, ci, m)
    if wo % lanes == 0:
        # a tail predicate on each of the c_block x M x k x k unrolled statements makes the
        # build take minutes: odd widths keep the tap loops rolled
        unroll_taps(sch, wl, u, v)
    # producers first: compute_at needs the consumer's reduction still whole
    # one padded copy of the input (a compute_at per channel block re-pads each row k times)
    xpad = sch.get_sblock("Xpad")
    sch.parallel(sch.fuse(*sch.get_loops(xpad)[:2]))
    vectorize_inner(sch, xpad, lanes)
    atoms, t = _atoms_row(sch, wl, row, wo, lanes)
    _finish_row(sch, acc, u, xo, atoms, t, wo, lanes)


@register("acda", "dx", "cpu")
def dx(sch, wl, target):
    if wl.p["W"] is None:
        return _dx_generic(sch, wl, target)
    acc = sch.get_sblock("acc")
    n, c, h, w, m, u, v = sch.get_loops(acc)
    wo = _extent(sch, w)
    lanes = vector_lanes(wl.dtype)
    if wo % lanes and wo % (lanes // 2) == 0:
        lanes //= 2
    sch.reorder(n, h, c, w, m, u, v)
    row = sch.fuse(n, h)
    sch.parallel(row)
    co, ci = sch.split(c, [None, _channel_block(wl, target, per_channel=1)])
    xo, xi = sch.split(w, [None, lanes])
    sch.reorder(co, xo, m, u, v, ci, xi)
    sch.vectorize(xi)
    split_tail(sch, xo)  # see fwd
    unroll(sch, ci)
    if wo % lanes == 0:  # see fwd
        unroll_taps(sch, wl, u, v)
    # one zero-inserted, padded copy of dO and of A (parallel over planes), as fwd's padded
    # input: inlined, the bounds checks would stay in every tap's vector (an atom tap reads A
    # at a shifted window)
    for name in ("dOu", "Au"):
        block = sch.get_sblock(name)
        sch.parallel(sch.fuse(*sch.get_loops(block)[:3]))
        vectorize_inner(sch, block, lanes)
    atoms, t = _atoms_row(sch, wl, row, wo, lanes)
    _finish_row(sch, acc, m, xo, atoms, t, wo, lanes)


@register("acda", "datoms", "cpu")
def datoms(sch, wl, target):
    lanes = vector_lanes(wl.dtype)
    if wl.p["W"] is None:
        return _datoms_generic(sch, wl, lanes)
    xpad = sch.get_sblock("Xpad")
    sch.parallel(sch.fuse(*sch.get_loops(xpad)[:2]))
    _pad_rows(sch, wl, xpad, lanes)
    acc = sch.get_sblock("acc")
    n, m, u, v, y, x, c = sch.get_loops(acc)
    sch.reorder(n, y, m, u, x, c, v)
    row = sch.fuse(n, y)
    sch.parallel(row)
    xo, xi = sch.split(x, [None, lanes])
    sch.reorder(c, v, xi)
    sch.vectorize(xi)
    split_tail(sch, xo)  # see fwd
    unroll_taps(sch, wl, v)
    init = sch.decompose_reduction(acc, c)
    vectorize_inner(sch, init, lanes, under=xo)
    out = sch.get_sblock("out")
    sch.reverse_compute_at(out, xo)
    vectorize_under(sch, out, xo)


def _store_nest(sch, c_block: int, lanes: int, c_axis: bool = True, rows_in_tile: bool = False):
    """Generic builds: the loop nest of the stores ('out', the real row): per output row
    (parallel), [channel block,] vector tile, [channel, atom, ...] and the tile's lanes,
    with 'acc' computed at the tile (declared whole, ``tile_regions``, so that it stays a
    small register tile; ``rows_in_tile``, datoms: per tap row inside the tile). The stores'
    only predicate is the row's end, which LoopPartition cuts off the whole tiles (vector
    stores; a scalar tail tile). The tile's store loops are unrolled, so that LLVM keeps the
    tile in registers (module docstring). Returns the row and tile loops, the loop acc is
    computed at and the acc block."""
    out = sch.get_sblock("out")
    tile_regions(sch, "acc", ("out",), lanes)
    n, *mid, y, x = sch.get_loops(out)
    xo, xi = sch.split(x, [None, lanes])
    if c_axis:  # fwd, dx: channel blocks outside the tiles, acc at the tile
        co, ci = sch.split(mid[0], [None, c_block])
        outer, inner, tile = [co], [], [ci, *mid[1:]]
    elif rows_in_tile:  # datoms: atom outside the tiles, acc per tap row inside (its tap columns)
        outer, inner, tile = mid[:1], mid[1:-1], mid[-1:]
    else:  # datoms: (atom, tap row) outside the tiles, acc at the tile (its tap columns)
        outer, inner, tile = mid[:-1], [], mid[-1:]
    sch.reorder(n, y, *outer, xo, *inner, *tile, xi)
    unroll(sch, *tile)  # the tile's stores at constant indices (see the docstring)
    row = sch.fuse(n, y)
    sch.parallel(row)
    sch.vectorize(xi)
    split_tail(sch, xo)
    acc = sch.get_sblock("acc")
    at = inner[-1] if inner else xo
    sch.compute_at(acc, at)
    return row, xo, at, acc


def _fwd_generic(sch, wl, target):
    """The static tile (channels x M atoms per vector tile), acc's row bounds dropped
    (``_drop_row_bounds``) and the tap-row loop rolled. With the bounds, the tail tile read acc
    where it had not written it, so the 24 accumulators stayed live from one channel block to
    the next (stored and reloaded around each block's preamble). Without them the tail tile
    keeps acc in registers too, and with its tap rows unrolled LLVM then hoisted all the tail's
    input vectors and spilled them (28 px k7: 2,626 vector stack accesses, the kernel 1.5x
    slower); rolled, 5 (the whole tiles' tap rows unrolled or rolled ran equally fast)."""
    lanes = vector_lanes(wl.dtype)
    c_block = _fwd_channel_block(wl, target)
    row, xo, _, acc = _store_nest(sch, c_block, lanes)
    loops = _tile_loops(sch, acc, wl, [("c", c_block), ("m", wl.p["M"]), ("x", lanes), ("u", wl.p["k"]),
                                       ("v", wl.p["k"])], ("u", "v", "c", "m", "x"))
    unroll(sch, *(loops[n] for n in ("c", "m") if n in loops))
    unroll_taps(sch, wl, *(loops[n] for n in ("v",) if n in loops))  # tap rows rolled (see above)
    _pad_generic(sch, wl, "Xpad", lanes)  # one padded copy of the input, as the static build
    atoms, t = _atoms_row(sch, wl, row, None, lanes)
    _apad_per_tile(sch, wl, atoms, lanes)
    _decompose(sch, acc, loops["first"], xo, atoms, t, lanes)
    _drop_row_bounds(sch, xo)
    if wl.p["s"] > 1:  # (_pad_generic) the padded copy's rows, last: a rewrite of the IR
        _pad_rows_overlap(sch, "Xpad", lanes)


def _pad_rows_overlap(sch, name, lanes) -> None:
    """A padded copy's interior (``decompose_padding``) row by row as whole vectors and an
    overlapping last one (``_rows.overlap_rows``): the generic fwd's X at stride s > 1,
    datoms' X and dx's dO and A at stride 1. Left to TVM's vectorizer, the row's predicated
    vectors ran lane by lane, which LLVM made gathers and scatters (perf, 2x128x56² k3 s2: 42%
    of the generic datoms' samples, the generic fwd 2.4x the static one). dx's copies had
    their whole vectors cut from the last by LoopPartition, the tail scalar: at 2x64x28² k3
    the copies were ~28% of the generic dx's samples, the static build's ~21%; generic /
    static 1.37-1.50 -> 1.06-1.15 there, 1.84-1.90 -> 1.30-1.54 at 2x128x28² k3, 56² k3 and
    k7 unchanged (RESULTS.md "ACDA CPU generic dx at 28-px rows")."""
    block = sch.get_sblock(name)
    overlap_rows(sch, sch.get_loops(block)[-1], lanes, nonempty=sch.get(block).reads[0].source.shape)


# fwd: the largest kernel size whose tile is sized to the vector registers
# (``_fwd_channel_block``); larger kernels take ``_channel_block``'s tile
FWD_FIT_K = 5


def _fwd_channel_block(wl, target) -> int:
    """fwd's channels per tile (generic and, since the sixth session, static builds). Up to
    k = ``FWD_FIT_K``, the most channels whose c x M accumulators, the M atom vectors of a tap
    and the input vector fit the vector registers (16 with AVX2: 1 channel, 13 vectors; 32
    with AVX-512: ``_channel_block``'s tile). ``_channel_block``'s tile (AVX2: 2 channels,
    12 accumulators, 19 vectors) made LLVM spill accumulators inside the tap loop, and each
    of its 12 'out' rows at symbolic strides cost a stack reload, an add and a sign extension
    per store (2x64x56x56 k3: 305 instructions per 108 FMAs, 30 vector stack
    stores; 1 channel: figures in the module docstring). At k = 7 the larger tile was faster
    (its atom loads feed 2 channels over 49 taps). The static fwd on AVX2 took the same tile
    (it had kept 2 x 6): its new / old kernel time 0.62-0.88 at k = 3, 5 (56 and 28 px, one
    56 px k3 run 1.04), k = 7 unchanged (RESULTS.md, "ACDA CPU static fwd"); AVX-512 tiles
    at M = 6 are the same as before (4 x 6)."""
    c_block = _channel_block(wl, target)
    if wl.p["k"] > FWD_FIT_K:
        return c_block
    fit = (vector_registers(target) - 1 - wl.p["M"]) // wl.p["M"]
    return max([b for b in range(1, c_block + 1) if wl.p["C"] % b == 0 and b <= fit] or [1])


def _apad_per_tile(sch, wl, atoms, lanes) -> None:
    """Generic fwd: the row's coefficients widened by zeros ('Apad') per atom and vector tile:
    the T vectors of A that the tile's atoms read, copied into a small local buffer just
    before them (the tile loop moved outside the tap rows, so once per atom and tile), the
    whole tiles plain vector copies (LoopPartition), the tail tile lane by lane. Per row, as
    before, the copy ran apart from the atoms' FMAs, its loads of A (M x T rows at symbolic
    strides, each read once) stalled: 15% of the generic kernel's samples at 56 px k5 (perf),
    where the static build reads A inside its atom loop. A local buffer: in the default scope
    TVM's storage rewrite merged it with acc's tile, which then lived in memory (1.4x, an
    earlier session). A inlined into the atoms instead took the tail tile's k x k x T FMAs lane
    by lane (28 px k5: 1.25-1.41x the static build)."""
    loops = sch.get_loops(atoms)
    at = next(i for i, lp in enumerate(loops) if i > 0 and _extent(sch, lp) is None)  # under the row: W symbolic
    tile = loops[at]
    if wl.p["k"] > 1:  # (m, u, tile): the tap-row loop just outside the tile loop
        sch.reorder(tile, loops[at - 1])
    apad = sch.get_sblock("Apad")
    sch.compute_at(apad, tile)
    sch.set_scope(apad, 0, "local")
    vectorize_inner(sch, apad, lanes, under=tile)
    split_tail(sch, tile)


def _pad_generic(sch, wl, name, lanes, planes=2, rows_last=False) -> None:
    """Generic fwd (Xpad) and dx at stride 1 (dOu, Au): a zero-padded copy (parallel over its
    first ``planes`` axes) split per row into two blocks (``decompose_padding``): the row's
    zeros (whole vectors), then the source row copied from the first real column, so that the
    copy's vectors lie inside the source row up to its tail. As one block, the zero padding
    was a per-lane condition and the row's first vector and its last two (past the real row:
    ROW_TILE's padding) were copied lane by lane, with a branch per lane: in perf at 2x64x56x56
    k3, 8% of the generic fwd's samples against 3% for its vectors. Per plane (zeros, then the
    plane copied) gained less (figures in the module docstring). ``rows_last`` (datoms, dx)
    or stride s > 1 (fwd): the copy's rows are left to :func:`_pad_rows_overlap`, which the
    caller runs last."""
    block = sch.get_sblock(name)
    sch.parallel(sch.fuse(*sch.get_loops(block)[:planes]))
    fill = sch.decompose_padding(block, sch.get_loops(block)[-1])
    split_tail(sch, vectorize_inner(sch, fill, lanes))
    if wl.p["s"] == 1 and not rows_last:
        split_tail(sch, vectorize_inner(sch, block, lanes))


# generic dx: the most dO row offsets (channels x tap rows, each at symbolic strides) the tap
# loop may address with its tap rows unrolled; past it the tap-row loop stays rolled
DX_ROW_OFFSETS = 96


def _dx_generic(sch, wl, target):
    """As the static dx; the tap-row loop rolled where the tile addresses more than
    ``DX_ROW_OFFSETS`` rows of the zero-inserted dO (k = 7: 16 channels x 7 tap rows = 112). Each
    is at symbolic strides (channel plane, row), so unrolled, LLVM hoisted the 112 offsets and kept
    them on the stack, per channel and tap row a reload and two int32 multiplies before its k
    FMAs (1,207 instructions per 784 FMAs; the static build, at constant displacements, 838).
    Rolled, the 16 channel offsets of one tap row are an add and a sign extension each from the
    row's base (167 instructions per 112 FMAs), 3-8% faster (figures in the module
    docstring); at k = 5 (80 offsets) equal within noise, at k = 3 slower: unrolled there."""
    lanes = vector_lanes(wl.dtype)
    c_block = _channel_block(wl, target, per_channel=1)
    row, xo, _, acc = _store_nest(sch, c_block, lanes)
    loops = _tile_loops(sch, acc, wl, [("c", c_block), ("x", lanes), ("m", wl.p["M"]), ("u", wl.p["k"]),
                                       ("v", wl.p["k"])], ("m", "u", "v", "c", "x"))
    unroll(sch, *(loops[n] for n in ("c",) if n in loops))
    taps = ("u", "v") if c_block * wl.p["k"] <= DX_ROW_OFFSETS else ("v",)
    unroll_taps(sch, wl, *(loops[n] for n in taps if n in loops))
    for name in ("dOu", "Au"):  # as the static build
        if wl.p["s"] == 1:  # a zero padding (at stride 2 the zeros interleave: not one)
            _pad_generic(sch, wl, name, lanes, planes=3, rows_last=True)
            continue
        block = sch.get_sblock(name)
        sch.parallel(sch.fuse(*sch.get_loops(block)[:3]))
        _pad_rows(sch, wl, block, lanes)
    atoms, t = _atoms_row(sch, wl, row, None, lanes)
    _decompose(sch, acc, loops["first"], xo, atoms, t, lanes)
    _drop_row_bounds(sch, xo)
    if wl.p["s"] == 1:  # (_pad_generic) the copies' rows, last: a rewrite of the IR
        for name in ("dOu", "Au"):
            _pad_rows_overlap(sch, name, lanes)


# generic datoms: the most k x C input row segments a tile may read (2 cache lines each: 40 KB
# of a 48 KB L1; k = 5, C = 64 per tile: 0.86x the time per atom, measured). Past it the tile
# order (tap row, then tiles) keeps the C rows of one tap row in L1 instead (k = 7, C = 64 per
# tile was about 10% slower)
XPAD_ROWS_L1 = 320


def _datoms_generic(sch, wl, lanes):
    """Per output row (parallel), atom, tap row and vector tile (k * C small: atom, vector tile,
    tap row), the tile's k tap columns accumulate over the channels; dO's row widened by zeros
    per tile or per atom, X padded once per call, its rows as whole vectors (module
    docstring). Per tile, the widened copy of a column stays a predicated vector (per atom
    instead, at those sizes, took 1.03-1.27x the time at 56 px k3 / k5, 28 px k3 and 29 x 31
    px, one process)."""
    rows_in_tile = wl.p["k"] * wl.p["C"] <= XPAD_ROWS_L1
    _pad_generic(sch, wl, "Xpad", lanes, rows_last=True)
    row, xo, at, acc = _store_nest(sch, 1, lanes, c_axis=False, rows_in_tile=rows_in_tile)
    loops = _tile_loops(sch, acc, wl, [("v", wl.p["k"]), ("x", lanes), ("c", wl.p["C"])], ("c", "v", "x"))
    if "v" in loops:
        unroll_taps(sch, wl, loops["v"])
    if rows_in_tile:
        sch.compute_at(sch.get_sblock("dOpad"), xo)
        vectorize_inner(sch, sch.get_sblock("dOpad"), lanes, under=xo)
    init = sch.decompose_reduction(acc, loops["first"])
    vectorize_inner(sch, init, lanes, under=at)
    if not rows_in_tile:  # per atom: the rows' zeros, then whole vectors and an overlapping last one
        widened_rows(sch, "dOpad", sch.get_loops(sch.get_sblock("out"))[1], lanes, nonempty=True)
    _pad_rows_overlap(sch, "Xpad", lanes)


def _tile_loops(sch, acc, wl, extents, order):
    """acc's loops under its tile after ``compute_at`` (unit loops dropped: a block of one
    channel, one atom, k = 1), put in ``order`` with x (the lanes) vectorized. Returns them
    by name, "first" the outermost (where the reduction is decomposed)."""
    loops = after_compute_at(sch, acc, extents)
    present = [loops[n] for n in order if n in loops]
    sch.reorder(*present)
    sch.vectorize(loops["x"])
    return {**loops, "first": present[0]}


def _decompose(sch, acc, first_reduce, xo, atoms, t, lanes) -> None:
    """Generic fwd and dx, last (compute_at needs the reductions whole): init + update."""
    init = sch.decompose_reduction(acc, first_reduce)
    vectorize_inner(sch, init, lanes, under=xo)
    if t is not None:
        vectorize_inner(sch, sch.decompose_reduction(atoms, t), lanes)


def _drop_row_bounds(sch, tile, names=("acc_init", "acc_update")) -> None:
    """Generic fwd and dx, last: drop from the predicates of acc's init and update (computed at
    the store nest's vector tile loop ``tile``) the conjuncts that keep them inside acc's
    padded rows (fwd: ``tile < (max(W, 1) + 31) // 32 * 4``; dx: also its padded heights).
    Each holds on every tile the loop runs ((W + 7) // 8), but TVM does not prove it, so
    LoopPartition's tail tile computed acc under them and then stored it whatever they said:
    acc was read where it had not been written, so it stayed live from one channel block to
    the next (fwd: the 24 accumulators stored to the stack and reloaded around each channel
    block's preamble). Only a conjunct ``a < b`` proven (``_negative``) is dropped."""
    for name in names:
        loops = sch.get_loops(sch.get_sblock(name))
        at = next(i for i, loop in enumerate(loops) if sch.get(loop).same_as(sch.get(tile)))
        dom = {}
        for loop in map(sch.get, loops):
            dom[loop.loop_var] = sym.IntervalSet(loop.min, loop.min + loop.extent - 1)
        nest = realize = sch.get(loops[at + 1])
        while isinstance(realize, tirx.For):
            realize = realize.body
        keep = [c for c in conjuncts(realize.predicate) if not (isinstance(c, tirx.LT) and _negative(c.a - c.b, dom))]
        sch.state.replace(sch.get_sref(loops[at + 1]), with_predicate(nest, all_of(keep)), {})


def _negative(e, dom) -> bool:
    """Whether ``e`` < 0 for every value of the loop variables in ``dom`` and every size n >= 1
    of the symbolic sizes in it (N, H, W; at 0 the row or tile loop runs no iteration). The
    analyzer bounds ``e`` over the loops; where it cannot prove that bound negative, it is
    proven for each residue of the one size in it: n = q a + b (a >= 1) and n = b, for every
    b < q, q a quantum ops.acda pads to (the rounding then simplifies)."""
    sizes = [v for v in tirx.analysis.undefined_vars(e) if not any(v.same_as(x) for x in dom)]
    ana = sym.Analyzer()
    for v in sizes:
        ana.bind(v, ir.Range.from_min_extent(1, 1 << 30))
    top = ana.simplify(ana.int_set(e, dom).max_value)
    if ana.can_prove(top < 0):
        return True
    free = tirx.analysis.undefined_vars(top)
    if len(free) != 1:
        return False
    n, a = free[0], tirx.Var("a", "int32")  # the sizes are int32
    for q in (ROW_TILE, X_QUANTUM, DX_ROWS):
        split = sym.Analyzer()
        split.bind(a, ir.Range.from_min_extent(1, 1 << 24))
        if all(split.can_prove(substitute(top, {n: a * q + b}) < 0)
               and (b == 0 or sym.Analyzer().can_prove(substitute(top, {n: tirx.const(b, "int32")}) < 0))
               for b in range(q)):
            return True
    return False
