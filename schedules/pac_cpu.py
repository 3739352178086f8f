"""Default CPU (LLVM) schedules for PAC.

conv (and its adjoint, the input gradient): the zero-inserted/padded source once, then
parallel over output rows. Each row first builds its modulated taps ``xk`` (C x k x k x Wo,
vectors along x: the kernel value times the source), then runs a register-tiled matrix
product: for each block of output channels x a few vectors along x, the C*k*k reduction
loads one broadcast weight per channel of the block and one vector of taps per vector.
conv_dk: per row, G = Wt^T dO is the same tiled product (output rows c,i,j); the sum over
channels of source x G follows, vectors along x. conv_dw (a reduction over every pixel):
vectors along the input channels, the padded source stored channels-last, one pixel at a time
(no row tail, so static and generic builds run the same code); channels that no vector divides
fall back to vectors along x, rfactored (a scalar tail per row in generic builds).
pool / pool_dk / dist*: vectors along x, parallel over rows or planes (pool's adjoint with a
kernel per channel: over planes, its padded copies per plane, the kernel's tap rows in generic
builds per output row, ``_select_rows``); the channel sums of
pool_dk and dist (G = 1) keep a k x k register tile per vector of x over every channel (pool_dk
over rows padded to whole vectors, as pool), their per-channel forms (G = C) write a vector's
taps side by side (generic builds but float64: per tap row, the row loop left to LLVM's loop
vectorizer, ``_per_tap_planes``).

Generic builds (batch, sizes symbolic: ``None`` in the workload) take the same loop nests.
A predicated vector loop is scalarized whole by TVM, so a symbolic x never leaves one around
the heavy loops: conv's reduction and conv_dk's G run over rows padded to whole register tiles
(``pad_einsum``: zeros past the width, read from padded copies, never stored); the other
vector loops along x are cut by LoopPartition (``split_tail``) into whole vectors and one
scalar tail (the channel sums' padded row copy: the tail in guarded half vectors,
``_padded_row_copy``), except the per-channel forms of pool_dk and dist (32-bit accumulation), whose
elementwise rows LLVM vectorizes itself (512-bit vectors, a 128-bit epilogue, no per-lane
test: float32 28-px rows 2.0 -> 1.3-1.4x the static time), and dist_df / dist_df0, whose
rows run as whole tiles and one overlapping last tile (``_rows.overlap_tiles``: each pixel's
sum is computed and stored within one tile, so a pixel computed twice is stored twice alike). Static builds take the same hint: a static loop whose body carries a
lane-dependent condition (a padded copy's zero border or zeros past the width) is scalarized
whole too. pool's compute sums over rows padded to whole vectors (``ops.pac.pool``), so its
vectors are whole at every width, static or symbolic, and only its stores have a tail; its
generic padded source copy is one AVX-512-masked load and store per 16-lane vector of a padded
row on AVX-512 targets (``_masked_copy``; AVX2 targets a zero fill and the interior, as the
others; generic conv's row stores likewise masked on AVX-512 only, ``_masked_out``); the other generic source copies are split into a zero fill and an
unconditional copy of the interior (``decompose_padding``). Static conv and conv_dk take the padded
rows too where the width admits no full-width vectors (``_pads_rows``: 28 and 56 pixels on
AVX-512).
"""
from __future__ import annotations

import tvm
import tvm.s_tir as s_tir
import tvm_ffi
from tvm import ir, sym, tirx
from tvm.s_tir.schedule import _ffi_api
from tvm.target import codegen

from dynfilter_tvm.ops.pac import HALF, POOL_ROW_QUANTUM, padded_row

from . import register
from ._rows import overlap_rows, overlap_tiles
from .common import (acc_registers, after_compute_at, all_of, conjuncts, guard_pieces, loop_analyzer, split_tail, unroll,
                     unroll_taps, vector_lanes, vectorize_inner, vectorize_under)


def _divisor_at_most(n: int, cap: int) -> int:
    """The largest divisor of n not above cap (a block without a tail)."""
    return max(b for b in range(1, max(1, min(n, cap)) + 1) if n % b == 0)


def _x_tiling(wo, dtype: str, target=None):
    """(lanes, vectors per tile) along x: whole vectors where the width allows, 512-bit ones
    on AVX-512 targets (``wo`` None: symbolic, full vectors and a tail)."""
    lanes = vector_lanes(dtype)
    if wo is None:
        return lanes * (2 if _avx512(target) else 1), 1
    if target is not None and codegen.target_has_features("avx512f", target) and wo % (2 * lanes) == 0:
        lanes *= 2
    if wo % lanes and wo % (lanes // 2) == 0:
        lanes //= 2  # half vectors without a tail (28 = 7 x 4)
    if wo % lanes:
        return lanes, 1
    return lanes, _divisor_at_most(wo // lanes, 4)


def _avx512(target) -> bool:
    return target is not None and codegen.target_has_features("avx512f", target)


def _after_compute_at(sch, block, extents):
    """``after_compute_at`` where an extent may be None (symbolic: never dropped)."""
    return after_compute_at(sch, block, [(name, 2 if n is None else n) for name, n in extents])


def _materialize(sch, name: str, lanes: int, outer: int = 2, decompose: bool = False, at=None, masked: bool = False):
    """A padded / zero-inserted copy computed once: parallel over its leading planes, or, with
    ``at``, at that loop (the part its consumer reads there).

    ``decompose`` (generic builds, ``_fills``): per row a zero fill in whole vectors, then the
    row's interior as a plain loop (``decompose_padding`` gives it the exact bounds, no
    predicate) that LLVM's loop vectorizer takes, whole vectors and its own scalar remainder.
    TVM's vectors over that symbolic interior ended each row in a predicated vector, which TVM
    scalarizes lane by lane (a compare and a scalar store per lane): at 28-px rows (7680 rows
    of 28 floats at 2x128x28²) the copy then cost about twice the static one (perf). Generic /
    static, 1 thread, medians: pool 2x128x28² k3 1.51 -> 1.24, 2x64x56² k3 1.08 -> 1.04,
    2x32x128² k5 1.03 -> 1.03. (A zero fill per plane, one flat loop, measured 1.22 at 28²
    but 1.11 at 56² and 2.8 at 128² k5, the plane then no longer in L1 for the copy.) With
    ``at`` (the adjoint pool's per-channel planes) generic builds leave the copy one plain loop
    nest, its zero border a condition: LLVM vectorizes the rows with AVX-512 masked loads, no
    per-row zero fill (a ``memset`` call per 34-float row at 28 px, 20% of the time, perf);
    generic / static 1.60 -> 1.51 at 2x128x28² k3, 1.07 -> 0.98 at 2x64x56² k3, 1.06 -> 1.07 at
    2x32x128² k5 (one A/B run each). A zero fill per tap plane (one ``memset`` per plane) measured
    1.27 at 28² but 5.5 at 128² k5.

    ``masked`` (pool's generic source copy): the row split into vectors of ``lanes`` only,
    returned for :func:`_masked_copy` (which replaces them once the schedule is done)."""
    block = sch.get_sblock(name)
    if at is not None:
        sch.compute_at(block, at)
        if decompose:  # one plain loop nest for LLVM (above)
            return
    else:
        sch.parallel(sch.fuse(*sch.get_loops(block)[:outer]))
    if masked:  # for _masked_copy, once the schedule is otherwise done
        return vectorize_inner(sch, block, lanes)
    if decompose:
        fill = sch.decompose_padding(block, sch.get_loops(block)[-1])
        split_tail(sch, vectorize_inner(sch, fill, lanes))
        return
    split_tail(sch, vectorize_inner(sch, block, lanes))


def _tile_shape(n_rows: int, wo: int, wl, target):
    """(lanes, vectors, row block) of a register tile over a row of ``wo`` pixels: the shape
    with the most FMAs per load (a narrow row such as 28 = 7 x 4 takes the whole row)."""
    lanes, _ = _x_tiling(wo, wl.dtype, target)
    if wo is None:
        return _generic_tile_shape(n_rows, lanes, target)
    if wo % lanes:
        return lanes, 1, _divisor_at_most(n_rows, acc_registers(target))

    def shape(xv):
        return lanes, xv, _divisor_at_most(n_rows, max(1, acc_registers(target) // xv))
    nvec = wo // lanes
    return max((shape(xv) for xv in range(1, 9) if nvec % xv == 0),
               key=lambda t: (t[0] * t[1] * t[2] / (t[1] + t[2]), -t[1]))


GENERIC_X_VECTORS = 2  # vectors per register tile along a symbolic width (measured: 1 and 4 slower)


def _generic_tile_shape(n_rows: int, lanes: int, target):
    """A symbolic width: full vectors, the row padded to whole tiles (``_pad_x``)."""
    xv = GENERIC_X_VECTORS
    return lanes, xv, _divisor_at_most(n_rows, max(1, acc_registers(target) // xv))


def _pad_x(sch, producer: str, quantum: int, x_axis: int) -> None:
    """Generic builds: the reduction 'acc' over a row padded to a multiple of ``quantum``
    (zeros read past the width, never stored), so register tiles have no tail; ``producer``
    (the modulated taps) is inlined into its padded copy, which keeps its name's role."""
    acc = sch.get_sblock("acc")
    pad = [1] * len(sch.get_loops(acc))
    pad[x_axis] = quantum
    sch.pad_einsum(acc, pad)
    sch.compute_inline(sch.get_sblock(producer))
    sch.compute_inline(sch.get_sblock("acc_pad"))


def _gemm_tile(sch, block, rows, x, red, n_rows: int, wo: int, wl, target):
    """Register tile of a row's matrix product: ``rows`` (an output-channel loop) blocked,
    ``x`` split into vectors, the reduction loops ``red`` outside the tile. Returns the
    loop above the reduction (where the cast stage goes). (Tiles spanning several rows would
    need the cast stage per tile over a non-rectangular region: rows stay whole.)"""
    lanes, xv, rb = _tile_shape(n_rows, wo, wl, target)
    xo = _register_tile(sch, rows, x, red, rb, xv, lanes)
    split_tail(sch, xo)
    return xo


def _register_tile(sch, rows, x, red, rb: int, xv: int, lanes: int):
    """rb x (xv vectors of ``lanes``) accumulators, the reduction loops ``red`` around them."""
    ro, ri = sch.split(rows, [None, rb])
    xo, xvl, xi = sch.split(x, [None, xv, lanes])
    sch.reorder(ro, xo, *red, ri, xvl, xi)
    sch.vectorize(xi)
    unroll(sch, ri, xvl)
    return xo


def _pads_rows(wo: int, dtype: str, target) -> bool:
    """Static conv: pad the rows to whole register tiles, as generic builds do, where the
    width admits no full-width vectors: 28 = 7 x 4 lanes would take 4-lane vectors (a quarter
    of AVX-512's; measured 2.7x slower than the padded row at 2x64x28² k3), 56 = 7 x 8 lanes
    half vectors (conv 1.7x, conv_dk 1.5x slower than the row padded to 64 at 2x64x56² k3),
    13 a predicated, scalar tail (1.6x slower at 1x8x13² k3)."""
    lanes, _ = _x_tiling(wo, dtype, target)
    full = vector_lanes(dtype) * (2 if _avx512(target) else 1)
    return lanes < full or wo % lanes != 0


@register("pac", "conv", "cpu")
def conv(sch, wl, target):
    p = wl.p
    lanes = vector_lanes(wl.dtype)
    xk_name = "xk"
    padded = p["Wo"] is None or _pads_rows(p["Wo"], wl.dtype, target)
    if padded:
        tl, xv, _ = _tile_shape(p["O"], None, wl, target)
        _pad_x(sch, "xk", tl * xv, 3)
        xk_name = "xk_pad"
    acc = sch.get_sblock("acc")
    n, o, y, x, c, i, j = sch.get_loops(acc)
    sch.reorder(n, y, o, x, c, i, j)
    row = sch.fuse(n, y)
    sch.parallel(row)
    xo = _gemm_tile(sch, acc, o, x, (c, i, j), p["O"], None if padded else p["Wo"], wl, target)
    # producers first: compute_at needs the consumer's reduction whole
    # generic builds: the taps and the row's stores in whole 16-lane vectors (_masked_taps,
    # _masked_out; unit-stride rows, no cast). 1 thread, thread CPU time, builds exported and
    # called interleaved in one process, medians of 201 per-round ratios, three runs, load 6:
    # generic / static 2x128x28² k3 1.12-1.16 -> 1.07-1.08 (taps alone 1.00, stores alone
    # 0.99 of the old generic time, both 0.95-0.96); static builds unchanged. AVX2-only targets
    # store whole vectors, the partial one lane by lane (no vmaskmovps: microcoded on Zen 3):
    # same measure on Zen 3, new / old generic 0.95-0.98 (conv, its adjoint; 28² and 56², k3).
    masked = _fills(wl) and p["s"] == 1 and wl.dtype not in HALF
    ml = _copy_lanes(wl.dtype, target) if masked else lanes
    _materialize(sch, "Sz", lanes)
    if p["a"]:
        _materialize(sch, "Kz", lanes, outer=4)
    xk = sch.get_sblock(xk_name)
    sch.compute_at(xk, row)
    xko = vectorize_inner(sch, xk, ml, under=row)
    if not masked:
        split_tail(sch, xko)
    if masked:  # the row's stores in 16-lane vectors, masked (_masked_out)
        out = sch.get_sblock("out")
        sch.reverse_compute_at(out, xo)
        oxo = vectorize_inner(sch, out, ml, under=xo)
        vectorize_under(sch, sch.decompose_reduction(acc, c), xo)
        if not _masked_taps(sch, xko):
            split_tail(sch, xko)
        if _masked_out(sch, oxo, _avx512(target)):  # no tail left for LoopPartition (which rejects the mask)
            sch.unannotate(xo, "pragma_loop_partition_hint")
    else:
        _finish(sch, acc, c, xo)


@register("pac", "pool", "cpu")
def pool(sch, wl, target):
    """The taps inlined, the sum over rows padded to whole vectors (``ops.pac.pool``: zeros past
    the last output), so every vector of the sum is whole at any width, a symbolic one
    included, and only the cast stage ('out') stores a partial last vector (``split_tail``:
    whole vectors, then the tail; generic builds store the tail in guarded half-vector pieces,
    ``_store_pieces``). The loop nest is the store's: parallel
    over output rows, vectors along x, each vector's sum (k x k taps, an accumulator vector)
    computed at it. A shared kernel (G = 1): the channels of a block inside the vector
    (``POOL_CHANNEL_BLOCK``), a kernel per channel: channel by channel. Generic builds copy the
    padded source (``Sz``, row-parallel nest) with masked 16-lane vectors (``_masked_copy``:
    generic / static 1.21-1.25 -> 1.13-1.17 at 2x128x28² k3). The kernel rows padded
    with zeros (``Kp``, a = 0) are copied next to their reader: once per output row (G = 1,
    shared by every channel) or per vector (G = C).

    The adjoint with a kernel per channel (a = 1, G = C, at least a channel per core:
    ``_plane_by_plane``) runs plane by plane (parallel over (n, c), rows inside), and copies its padded kernel (``Kz``: k x k tap planes) and source
    (``Sz``) per plane, right before the plane's sum reads them, static and generic builds
    alike. Before, both tensors were copied whole first (``Kz`` 9.4 MB at 2x128x28² k3, past
    L2), then read back: 1 thread, medians, the same process, old -> new, static / generic ms,
    2x128x28² k3 1.14-1.20 -> 0.58-0.64 / 1.47-1.52 -> 0.88-0.93, 2x64x56² k3 4.1 -> 1.6-1.7 /
    3.8-4.2 -> 1.6-1.8, 2x32x128² k5 26.5-27.5 -> 13.2-13.7 / 27.5-29.6 -> 14.0-14.2 (generic /
    static 1.3 -> 1.4-1.5 at 28², 1.0-1.1 at 56² and 128²: the static build gained more;
    ``bench_generic_pac_kernels.py N C H k poolg``, old and new tree run in turn, two runs on the
    loaded machine: 28² 1.16 -> 1.63 and 1.28 -> 1.18, 56² 1.12 -> 1.25 and 1.22 -> 1.25, 128² k5
    1.02 -> 1.06; generic 28² 1.78 -> 0.86-1.11 ms, static 1.39-1.54 -> 0.68-0.73). The copies remain most of the time (about 60% in both builds at
    28², perf); the generic build's rest is LLVM's per-row copy loops (alias checks, masked
    vectors) and the sum's nine tap rows, a symbolic plane apart, whose pointers spill. Since
    2026-12-01 (fifth session) the kernel is read at the taps (``_kernel_at_taps``: each tap's plane
    on the output's padded rows, 12% fewer values at 28² k3, the tap loops unrolled): static /
    generic ms 0.62-0.64 / 0.84-0.85 -> 0.49-0.51 / 0.78 at 2x128x28² k3 (generic / static 1.34 ->
    1.54-1.60: the static build gained more). perf of the generic build: the tap copies about 70%
    of its samples, LLVM's row loops (a 28-px row padded to 32: one peeled lane where the tap's
    zero border starts, then 8-lane masked vectors, then up to 7 scalar lanes). Tried, same
    process, not kept: TVM's 8-lane vectors cut by LoopPartition (generic 0.78 -> 1.0 ms: the
    border vectors lane by lane), a zero fill per tap plane or row then the interior (each tap a
    block of its own, ``loop_partition`` + ``decompose_padding``; no faster), the row split
    into 8-wide plain loops (1.4 ms: LLVM left them scalar). (Tried,
    scratch A/B on the loaded machine: ``Kz`` stored (y, i, j, x) per plane, generic / static
    1.4 / 1.2 / 1.1 at 28² / 56² / 128² k5, static faster at 28² but slower at 128², not kept.)

    Since 2026-12-02 generic builds (``_fills``) copy the kernel's tap rows per output row, not
    per plane (``_kernel_at_taps(at=y)``: k x k rows, 9 x 32 floats at 28² k3, in L1 for the
    sum that follows), stored vector-major ((x // lanes, i, j, x % lanes): the sum reads every
    tap of a vector at a constant offset from one pointer), each vector of the copy guarded
    (``_select_rows``: a whole vector a plain load, one on a tap row outside K zeros, a border
    one a select over a vector load, lane by lane only at K's two ends). Static builds unchanged (structural hashes, 360 static
    configurations). 1 thread, thread CPU time, main's generic build, this one and the static
    one interleaved in one process, minima (medians) of 31 x 3 calls (9 at 128²), generic /
    static, before -> after: 2x32x128² k5 1.13 (1.10) -> 0.69 (0.69) and 1.11 (1.14) -> 0.66
    (0.70) (generic 15.8-18.5 -> 9.6-11.5 ms, static 14.0-16.3 ms: the per-plane tap copy, 25 x
    128 x 128 floats, no longer fits L2); 2x64x56² k3 1.30 (1.29) -> 0.87 (0.81) at load 6,
    1.14 (1.27) -> 1.11 (1.27) and 1.63 (1.28) -> 1.79 (1.31) at load 10; 2x128x28² k3 1.45
    (1.76) -> 1.24 (1.68), 1.69 (1.90) -> 1.45 (1.61), then at load 10 1.56 (1.44) -> 1.58
    (1.49), 1.50 (1.30) -> 1.48 (1.36): no gain there that holds. Last runs, load 1: 28² 1.75
    (1.69) -> 1.74 (1.60), 2.01 (1.89) -> 1.96 (1.88); 56² 1.19 (1.54) -> 0.83 (1.24), 1.53
    (1.55) -> 1.22 (1.28); 128² k5 1.19 (1.10) -> 0.75 (0.71). perf at 28²: the copy's
    vector loads of K (7.2 MB, read once) carry its time in both builds. Tried, same runs'
    kind, main's build alongside, not kept: per plane, tap-major, the select on every vector
    (no whole-vector branch; 28² 1.85-1.91 against main's 1.76-1.82, 56² 1.53-1.75 against
    1.23-1.40: a lane mask built per vector); the same, vector-major (28² 2.02-2.16 against
    1.88-1.95); per plane, vector-major, with the whole-vector branch (28² 1.41-1.48 against
    1.45-1.69, 56² 1.29-1.35 against 1.29-1.33, 128² k5 1.28-1.30 against 1.10-1.13); a software
    prefetch of K's next rows (TVM 0.27 declares no ``llvm.prefetch`` under LLVM 22, any
    signature tried)."""
    p = wl.p
    lanes = vector_lanes(wl.dtype)
    xl = _row_lanes(wl.dtype, target)
    fill = _fills(wl)
    per_plane = _plane_by_plane(wl, target)
    masked = fill and not per_plane and _avx512(target)  # AVX2's masked stores are slow (``_masked_copy``)
    if not per_plane:
        sz = _materialize(sch, "Sz", _copy_lanes(wl.dtype, target) if masked else lanes, masked=masked,
                          decompose=fill and not masked)
        if p["a"]:
            _kernel_at_taps(sch, wl, lanes)
    sch.compute_inline(sch.get_sblock("xk"))
    out = sch.get_sblock("out")
    n, c, y, x = sch.get_loops(out)
    if per_plane:
        sch.reorder(n, c, y, x)
        row = sch.fuse(n, c)
    else:
        sch.reorder(n, y, c, x)
        row = sch.fuse(n, y)
    sch.parallel(row)
    xo, xi = sch.split(x, [None, xl])
    if p["G"] == 1:
        co, ci = sch.split(c, [None, _divisor_at_most(p["C"], POOL_CHANNEL_BLOCK)])
        sch.reorder(co, xo, ci, xi)
        at, kp_at = ci, row
    else:
        at = kp_at = xo
    pieces = _store_pieces(sch, wl, xi, xl)
    split_tail(sch, xo)
    acc = sch.get_sblock("acc")
    sch.compute_at(acc, at)
    loops = after_compute_at(sch, acc, [("x", xl), ("i", p["k"]), ("j", p["k"])])
    if "i" in loops:
        sch.reorder(loops["i"], loops["j"], loops["x"])
        unroll(sch, loops["i"], loops["j"])
        sch.vectorize(loops["x"])
        sch.decompose_reduction(acc, loops["i"])
    else:  # one tap (a phase of a zero-inserted form)
        sch.vectorize(loops["x"])
        sch.decompose_reduction(acc, loops["x"])
    kz = None
    if per_plane:
        kz = _kernel_at_taps(sch, wl, lanes, at=y if fill else row)
        _materialize(sch, "Sz", lanes, decompose=fill, at=row)
    if not p["a"]:
        kp = sch.get_sblock("Kp")
        sch.compute_at(kp, kp_at)
        split_tail(sch, vectorize_inner(sch, kp, lanes, under=kp_at))
    guard_pieces(sch, pieces)
    _select_rows(sch, kz)
    if masked:
        _masked_copy(sch, sz)


def _kernel_at_taps(sch, wl, lanes: int, at=None):
    """The adjoint pool's kernel read at the taps ('Kz', ``ops.pac._kernel_at_taps``: k x k
    planes of the padded output's size, each tap's plane shifted to the output pixels) copied
    whole, parallel over (n, g, i, j) (``_materialize``), or, with ``at``, there, the tap loops
    unrolled so each tap's shift is a constant. Static builds (``at``: the plane) cut each tap's
    vector loop where its zero border starts (``split_tail``). Generic builds with padded copies
    (``_fills``; ``at``: the output row) copy per output row the k x k tap rows that row's sum
    reads, stored (x // lanes, i, j, x % lanes), so the sum finds every tap of a vector at a
    constant offset from one pointer (tap-major, the k x k tap rows a symbolic width apart were
    as many pointers, spilled); the copy, per vector and tap, is guarded in
    :func:`_select_rows` (returns the vector loop for it). Before (2026-12-01), generic builds
    copied the whole plane's tap rows, tap-major, as plain loops that LLVM vectorized (masked
    vectors, runtime checks per row); measurements in ``pool``."""
    if at is None:
        _materialize(sch, "Kz", lanes, outer=4)
        return None
    p = wl.p
    kz = sch.get_sblock("Kz")
    sch.compute_at(kz, at)
    if _fills(wl):
        xl = _row_lanes(wl.dtype, None)
        # after compute_at: laid out first, the row's region came out as min/max expressions
        sch.transform_layout(kz, ("write", 0), lambda n, g, i, j, y, x: (n, g, y, x // xl, i, j, x % xl))
        loops = _after_compute_at(sch, kz, [("i", p["k"]), ("j", p["k"]), ("x", None)])
        xo, xi = sch.split(loops["x"], [None, xl])
        taps = [loops[a] for a in ("i", "j") if a in loops]
        sch.reorder(xo, *taps, xi)
        unroll_taps(sch, wl, *taps)
        sch.vectorize(xi)
        return xo
    wp = None if p["Wo"] is None else padded_row(p["Wo"])
    loops = _after_compute_at(sch, kz, [("i", p["k"]), ("j", p["k"]), ("y", p["Ho"]), ("x", wp)])
    unroll_taps(sch, wl, *(loops[a] for a in ("i", "j") if a in loops))
    split_tail(sch, vectorize_inner(sch, kz, lanes))
    return None


def _copy_store(lane):
    """A copy's innermost loop body as (block realize, block, store, stored value)."""
    realize = lane.body
    store = realize.block.body
    return realize, realize.block, store, store.value


def _is_if_then_else(value) -> bool:
    return isinstance(value, ir.Call) and value.op.same_as(ir.Op.get("prim.if_then_else"))


def _select_rows(sch, xo) -> None:
    """Generic adjoint-pool 'Kz' copy (``_kernel_at_taps``' vector loop ``xo``; the tap loops
    and the lanes inside), its value ``if_then_else(cond, K[..], 0)`` (the zero border), each
    vector in one of four ways: if ``cond`` holds on every lane (each conjunct bounded over the
    lanes, ``int_set``), a plain vector copy; else, if a conjunct that no lane changes (the
    tap's row inside K) fails, a vector of zeros, no load; else, if the vector's flat K
    addresses all lie inside K, ``Select(cols, K[..], 0)`` over one vector load, ``cols`` the
    lane-dependent conjuncts only (lanes past a row read the neighbouring row, or plane, and are
    dropped by the select, never multiplied: NaN there stays out,
    ``test_cpu_adjoint_pool_kernel_at_taps``); else (at K's first and last rows) lane by lane,
    the original block. TVM scalarizes a vector loop whose value has a lane-dependent
    ``if_then_else``; a ``Select`` it keeps as a vector (LLVM: a masked load). Replaces the loop
    nest (the block four times), so this runs last.

    The row conjuncts out of the select (2026-12-02): with them in, LLVM built each border
    vector's lane mask from the row and column tests together (about 25 instructions of lane
    inserts and permutes per vector and tap, perf at 2x128x28² k3, where 2 of a row's 4 vectors
    are border ones); now two compares of the column against the width, and a tap row outside
    K stores zeros without a load. Generic / static, 1 thread, thread CPU time, the static
    build, main's generic and this one as libraries interleaved in one process (both orders),
    minima (medians) of 1001 x 3 calls (301 at 56², 61 at 128²), load 4-6, before -> after:
    2x128x28² k3, six runs, 1.42-1.46 (1.38-1.67) -> 1.23-1.29 (1.21-1.44); 2x64x56² k3, four
    runs, 0.84-0.86 (0.81-0.86) -> 0.75-0.78 (0.72-0.81); 2x32x128² k5, two runs, 0.71 / 0.63
    (0.74 / 0.71) -> 0.69 / 0.63 (0.72 / 0.67). Tried, not kept: the column tests as bounds on
    the lane alone (``lane < W - x0 + j - 1``: no lane inserts left; 28² 3% faster, 56² and
    128² k5 2-4% slower); the copy per block of 4 or 8 output rows, tap-major or vector-major
    (28² 1.5-1.6 against 1.2-1.4)."""
    if xo is None:
        return
    top = sch.get(xo)
    outer = [top]
    while isinstance(outer[-1].body, tirx.For) and isinstance(outer[-1].body.body, tirx.For):
        outer.append(outer[-1].body)
    lane = outer[-1].body
    realize, block, store, value = _copy_store(lane)
    if not (_is_if_then_else(value) and isinstance(value.args[1], ir.TensorLoad)):
        return
    cond, load, zero = value.args
    buf = load.source
    flat, stride = tirx.const(0, "int32"), tirx.const(1, "int32")
    for i, n in reversed(list(zip(load.indices, buf.shape))):
        flat = flat + i * stride
        stride = stride * n
    ends = []
    for at in (lane.min, lane.min + lane.extent - 1):
        ana = sym.Analyzer()
        ana.bind(lane.loop_var, at)
        for iv, v in zip(block.iter_vars, realize.iter_values):
            ana.bind(iv.var, ana.simplify(v))
        ends.append(ana.simplify(flat))
    first, last = ends
    safe = all_of([first >= 0, last >= 0, first < stride, last < stride])  # either lane order
    ana = loop_analyzer(sch, "Kz", stop=lane)
    for iv, v in zip(block.iter_vars, realize.iter_values):
        ana.bind(iv.var, v)
    lanes_ = {lane.loop_var: sym.IntervalSet(lane.min, lane.min + lane.extent - 1)}
    whole, rows, cols = [], [], []
    for c in conjuncts(cond):
        if not isinstance(c, (tirx.LT, tirx.LE)):
            whole, rows, cols = [tirx.const(False, "bool")], [], [cond]
            break
        span = ana.simplify(c.a - c.b)
        top = ana.int_set(span, lanes_).max_value
        whole.append(ana.simplify(top < 0 if isinstance(c, tirx.LT) else top <= 0))
        lane_free = not any(v.same_as(lane.loop_var) for v in tirx.analysis.undefined_vars(span))
        if lane_free:  # the tap's row in range: tested outside the block, in loop variables
            rows.append(ana.simplify(span < 0 if isinstance(c, tirx.LT) else span <= 0))
        else:
            cols.append(c)

    def vec(val, kind=tirx.ForKind.VECTORIZED):
        body = tirx.BufferStore(store.buffer, val, store.indices)
        blk = s_tir.SBlock(block.iter_vars, block.reads, block.writes, block.name_hint, body, block.init,
                           block.alloc_buffers, block.match_buffers, block.annotations)
        return tirx.For(lane.loop_var, lane.min, lane.extent, kind,
                        s_tir.SBlockRealize(realize.iter_values, realize.predicate, blk))

    slow = tirx.For(lane.loop_var, lane.min, lane.extent, tirx.ForKind.SERIAL, realize)
    border = tirx.IfThenElse(safe, vec(tirx.Select(all_of(cols), load, zero)), slow)
    if rows:
        border = tirx.IfThenElse(all_of(rows), border, vec(zero))
    body = tirx.IfThenElse(all_of(whole), vec(load), border)
    for loop in reversed(outer):
        body = tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, body, loop.thread_binding, loop.annotations)
    new = body
    sch.state.replace(sch.get_sref(xo), new, {})


def _copy_lanes(dtype: str, target) -> int:
    """Lanes of a masked copy (``_masked_copy``): 512-bit vectors on AVX-512."""
    return vector_lanes(dtype) * (2 if _avx512(target) else 1)


def _lane_loop(sch, xo):
    """(loop over vectors, its lane loop over one block) for ``xo``, or None."""
    if xo is None:
        return None
    loop = sch.get(xo)
    lane = loop.body
    if not (isinstance(lane, tirx.For) and isinstance(lane.body, s_tir.SBlockRealize)):
        return None
    return loop, lane


def _vector_copy(sch, xo):
    """(loop, lane, realize, block, store, value, lanes) of a vectorized copy ``xo`` (a loop
    over vectors whose lane loop holds one block), or None."""
    lane_loop = _lane_loop(sch, xo)
    if lane_loop is None:
        return None
    loop, lane = lane_loop
    return (loop, lane, *_copy_store(lane), int(lane.extent))


def _replace_vectors(sch, xo, loop, blk):
    """Replace the loop ``xo`` by ``loop`` over the one vector block ``blk``."""
    new = tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, s_tir.SBlockRealize([], tirx.const(True, "bool"), blk),
                   loop.thread_binding)
    sch.state.replace(sch.get_sref(xo), new, {})


def _lane_forms(lane, realize, block):
    """For a vectorized lane loop over one block: ``indices(idx)`` (the indices as one vector
    access: a ramp of step 1 along the last, the others lane-free; None otherwise) and
    ``mask(cond)`` (each comparison as the lane index against a scalar bound; None if some
    comparison is not of that form)."""
    n = int(lane.extent)
    lanes_at = []
    for k in (0, 1):  # the block's variables bound at lanes 0 and 1
        a = sym.Analyzer()
        a.bind(lane.loop_var, lane.min + k)
        for iv, v in zip(block.iter_vars, realize.iter_values):
            a.bind(iv.var, a.simplify(v))
        lanes_at.append(a)
    ana = sym.Analyzer()

    def at(e, k):
        return lanes_at[k].simplify(e)

    def vector(e):  # e affine in the lane: (ramp or broadcast, its step)
        base = at(e, 0)
        step = ana.simplify(at(e, 1) - base)
        if not isinstance(step, tirx.IntImm):
            return None, None
        return (tirx.Broadcast(base, n) if step.value == 0 else tirx.Ramp(base, step, n)), step.value

    def indices(idx):
        out = [vector(i) for i in idx]
        if any(v is None for v, _ in out) or out[-1][1] != 1 or any(st for _, st in out[:-1]):
            return None
        return [at(i, 0) for i in idx[:-1]] + [out[-1][0]]

    def mask(cond):  # each comparison as the lane index against a scalar bound
        parts = []
        for c in conjuncts(cond):
            if isinstance(c, tirx.IntImm) and c.value:
                continue
            if not isinstance(c, (tirx.LT, tirx.LE)):
                return None
            span = c.a - c.b  # < 0 (LT) or <= 0 (LE)
            base, step = at(span, 0), ana.simplify(at(span, 1) - at(span, 0))
            if not isinstance(step, tirx.IntImm) or step.value not in (-1, 0, 1):
                return None
            strict = isinstance(c, tirx.LT)
            if step.value == 0:
                parts.append(tirx.Broadcast(base < 0 if strict else base <= 0, n))
                continue
            lane_ = tirx.Ramp(tirx.const(0, base.ty), 1, n)
            bound = tirx.Broadcast(ana.simplify(-base) if step.value == 1 else base, n)
            # step 1: base + l < 0 <=> l < -base; step -1: base - l < 0 <=> base < l
            if step.value == 1:
                parts.append(tirx.LT(lane_, bound) if strict else tirx.LE(lane_, bound))
            else:
                parts.append(tirx.LT(bound, lane_) if strict else tirx.LE(bound, lane_))
        return all_of(parts) if parts else tirx.Broadcast(tirx.const(True, "bool"), n)

    return indices, mask


def _masked_copy(sch, xo) -> None:
    """A padded copy's vector loop (``xo`` over vectors of a row, its lanes a vectorized loop
    over one block: ``T.where`` the row's end, value ``if_then_else(cond, src, 0)`` or ``src``)
    as one AVX-512-masked vector load and store per vector (``tirx.masked_load`` /
    ``masked_store``: lanes whose ``cond`` fails read nothing and store zero, lanes past the
    predicate are not stored; each comparison a lane index against a scalar bound, the form
    LLVM builds a mask from with one compare). TVM scalarizes a vector loop with a lane-dependent
    condition, so generic builds copied pool's padded source as a zero fill of the row, then the
    interior with LLVM's loop vectorizer (``_fills``, ``decompose_padding``): at a 28-px row
    (34 padded) 4 8-lane stores and 2 scalar ones, then 7 4-lane load/store pairs (LLVM's main
    loop takes 32 floats), each row written twice; now 3 16-lane load/store pairs, each row
    written once. AVX-512 targets only: on AVX2 (``vmaskmovps``; Zen 3, microcoded stores) the
    generic pool took 2.2x its static time at 2x128x28² k3, 1.2x with the zero fill and
    interior copy (thread CPU time, minima of 501 x 3 calls, one process; 56² 1.9-2.9 -> 1.0-1.05).
    Indices and comparisons must be affine in the lane (a ramp of step 1 along
    the last index, the others lane-free); otherwise the loop is left as it is. Replaces the
    lane loop, so this runs last.

    Only for a copy allocated whole (materialized at the root, as pool's ``Sz``): TVM's
    buffer compaction does not rewrite the indices inside these calls, so a copy computed at a
    loop (``Rp``, ``Kp``: compacted to a row) would be stored out of its buffer. Measured, 1
    thread, thread CPU time, the static build, main's generic and this one exported and called
    interleaved in one process, minima (medians) of 1001 x 3 calls (301 at 56², 41 at 128²), load
    3.2-3.6, generic / static pool, before -> after: 2x128x28² k3, four runs, 1.21-1.25
    (1.24-1.30) -> 1.13-1.17 (1.17-1.19); 2x64x56² k3 1.27 (1.09) -> 1.20 (1.01) and 1.04 (1.08)
    -> 1.02 (1.04); 2x32x128² k5 1.04 (1.02) -> 1.00 (1.01) and 1.01 (1.04) -> 1.03 (1.03). Tried
    on pool_dk and dist (their ``Sz`` the same way, 16 lanes): 28² no faster (pool_dk 1.16-1.18
    (1.31-1.33) against 1.16 (1.23-1.24), dist 1.36-1.38 against 1.30-1.31; their time is in
    the channel sum's loads), not kept. 8-lane vectors in pool (with ramps compared, an earlier
    mask form): 1.19-1.27 at 28², no faster."""
    copy = _vector_copy(sch, xo)
    if copy is None:
        return
    loop, lane, realize, block, store, value, n = copy
    indices, mask = _lane_forms(lane, realize, block)
    load, cond = value, None
    if _is_if_then_else(value) and isinstance(value.args[1], ir.TensorLoad):
        cond, load = value.args[0], value.args[1]
    if not isinstance(load, ir.TensorLoad):
        return
    src, dst = indices(load.indices), indices(store.indices)
    lmask = mask(cond) if cond is not None else mask(tirx.const(True, "bool"))
    smask = mask(realize.predicate)
    if src is None or dst is None or lmask is None or smask is None:
        return
    dtype = f"{load.ty}x{n}"
    val = tirx.call_intrin(dtype, "tirx.masked_load", load.source, *src, lmask)
    body = tirx.Evaluate(tirx.call_intrin("void", "tirx.masked_store", store.buffer, val, *dst, smask))

    def region(buf, idx):  # a copy stage's buffer is compacted to the regions its block states
        return tirx.BufferRegion(buf, [ir.Range.from_min_extent(i, 1) for i in idx[:-1]] +
                                 [ir.Range.from_min_extent(idx[-1].base, n)])
    blk = s_tir.SBlock([], [region(load.source, src)], [region(store.buffer, dst)], block.name_hint, body)
    _replace_vectors(sch, xo, loop, blk)


def _masked_taps(sch, xo) -> bool:
    """A padded row's taps (conv's ``xk_pad`` in generic builds, ``xo`` over its vectors of
    ``if_then_else(x < Wo, K * Sz, 0)``, lanes along x) as whole vectors: a vector inside the
    row, plain loads; the one across the width, a zero store, then the vector ending at the
    width (shifted back over lanes already written, same values); past the width, zeros; a row
    shorter than a vector, masked loads. TVM scalarized the vector across the width (lanes 28-31
    of a 28-px row padded to 32: 1152 per output row at C = 128 k3; the taps 15% of the generic
    conv's samples, the static build's 8%, perf). Masked loads for that vector too measured no
    faster (the masked load stalled, ~20 cycles). Returns whether it applied (loads multiplied
    or added, unit stride along x; else the loop is left as it was). Figures: ``conv``; also
    the channel sums' ``Rp`` copy (``_channel_sum_padded``)."""
    copy = _vector_copy(sch, xo)
    if copy is None:
        return False
    loop, lane, realize, block, store, value, n = copy
    if not (_is_if_then_else(value) and isinstance(value.args[2], tirx.FloatImm) and value.args[2].value == 0):
        return False
    indices, mask = _lane_forms(lane, realize, block)
    lmask, dst = mask(value.args[0]), indices(store.indices)
    if lmask is None or dst is None or not _is_true(realize.predicate):
        return False
    if not (isinstance(lmask, tirx.LT) and isinstance(lmask.a, tirx.Ramp) and isinstance(lmask.b, tirx.Broadcast)):
        return False
    valid = lmask.b.value  # lanes below it hold taps, the others zero
    reads = []

    def vec(e, shift):
        if isinstance(e, ir.TensorLoad):
            src = indices(e.indices)
            if src is None:
                return None
            if shift is None:
                reads.append((e.source, src))
                return tirx.BufferLoad(e.source, src)
            if shift == "masked":
                return tirx.call_intrin(f"{e.ty}x{n}", "tirx.masked_load", e.source, *src, lmask)
            return tirx.BufferLoad(e.source, src[:-1] + [tirx.Ramp(src[-1].base + shift, 1, n)])
        if isinstance(e, (tirx.Mul, tirx.Add)):
            a, b = vec(e.a, shift), vec(e.b, shift)
            return None if a is None or b is None else type(e)(a, b)
        return None
    shift = valid - n
    whole, shifted, masked = (vec(value.args[1], sh) for sh in (None, shift, "masked"))
    if whole is None or shifted is None or masked is None:
        return False
    at = dst[-1].base + shift
    zero = tirx.BufferStore(store.buffer, tirx.Broadcast(tirx.const(0, store.buffer.dtype), n), dst)
    tail = [zero, tirx.IfThenElse(0 <= at, tirx.BufferStore(store.buffer, shifted, dst[:-1] + [tirx.Ramp(at, 1, n)]),
                                  tirx.BufferStore(store.buffer, masked, dst))]
    body = tirx.IfThenElse(n <= valid, tirx.BufferStore(store.buffer, whole, dst),
                           tirx.IfThenElse(0 < valid, tirx.SeqStmt(tail), zero))
    blk = s_tir.SBlock([], [_vector_region(buf, idx, n) for buf, idx in reads],
                       [_vector_region(store.buffer, dst, n)], block.name_hint, body)
    _replace_vectors(sch, xo, loop, blk)
    return True


def _masked_out(sch, xo, masked: bool = True) -> bool:
    """A row's store ('out' from the padded accumulators, ``xo`` over its vectors, a ``T.where``
    on the width) as one masked vector store per vector; TVM stored the tile's last vector
    lane by lane (8 x 32 guarded scalar stores per register tile at 28 px). A disjunct that is
    a loop's own range (``x_0 < its extent or ...``, left by ``pad_einsum``'s tiles) is dropped;
    any other condition that is no lane bound leaves the loop as it was (returns False).

    ``masked`` False (AVX2-only targets: ``vmaskmovps`` stores are microcoded on Zen 1-3): a
    plain vector store where every lane holds, else the lanes one by one, each guarded
    (``_lane_scalar``); no masked store."""
    copy = _vector_copy(sch, xo)
    if copy is None:
        return False
    loop, lane, realize, block, store, value, n = copy
    if not isinstance(value, ir.TensorLoad):
        return False
    indices, mask = _lane_forms(lane, realize, block)
    keep = [c for c in conjuncts(realize.predicate) if isinstance(c, (tirx.LT, tirx.LE))]
    ana = sym.Analyzer()
    # a loop's own range (an ``or`` that loop_partition's split leaves) holds anyway
    ranges = [ana.simplify(f.loop_var - f.extent < 0) for f in (sch.get(rv) for rv in sch.get_loops(block.name_hint))]
    for c in conjuncts(realize.predicate):
        if isinstance(c, (tirx.LT, tirx.LE)):
            continue
        if not (isinstance(c, tirx.Or) and any(tvm_ffi.structural_equal(ana.simplify(c.a), r) for r in ranges)):
            return False
    smask = mask(all_of(keep)) if keep else mask(tirx.const(True, "bool"))
    src, dst = indices(value.indices), indices(store.indices)
    if smask is None or src is None or dst is None:
        return False
    if masked:
        body = tirx.Evaluate(tirx.call_intrin("void", "tirx.masked_store", store.buffer,
                                              tirx.BufferLoad(value.source, src), *dst, smask))
    else:
        whole = tirx.BufferStore(store.buffer, tirx.BufferLoad(value.source, src), dst)
        lv = tirx.Var("lane", dst[-1].base.ty)

        def at(idx, k):
            return idx[:-1] + [idx[-1].base + k]
        part = tirx.IfThenElse(_lane_scalar(smask, lv),
                               tirx.BufferStore(store.buffer, tirx.BufferLoad(value.source, at(src, lv)), at(dst, lv)), None)
        # each comparison is monotone in the lane, so lanes 0 and n - 1 holding means all do
        body = tirx.IfThenElse(ana.simplify(_lane_scalar(smask, 0) & _lane_scalar(smask, n - 1)), whole,
                               tirx.For(lv, tirx.const(0, lv.ty), tirx.const(n, lv.ty), tirx.ForKind.SERIAL, part))
    blk = s_tir.SBlock([], [_vector_region(value.source, src, n)], [_vector_region(store.buffer, dst, n)],
                       block.name_hint, body)
    _replace_vectors(sch, xo, loop, blk)
    return True


def _lane_scalar(mask, lane):
    """A lane mask of :func:`_lane_forms` (comparisons of ``Ramp(0, 1, n)`` and broadcasts) at
    one lane ``lane``."""
    if isinstance(mask, tirx.Ramp):
        return mask.base + mask.stride * lane
    if isinstance(mask, tirx.Broadcast):
        return mask.value
    if isinstance(mask, (tirx.LT, tirx.LE, tirx.And)):
        return type(mask)(_lane_scalar(mask.a, lane), _lane_scalar(mask.b, lane))
    raise TypeError(f"not a lane mask: {type(mask).__name__}")


def _is_true(e) -> bool:
    return isinstance(e, tirx.IntImm) and bool(e.value)


def _vector_region(buf, idx, n: int):
    """The region of one vector access (``idx`` lane-free but the last, a ramp)."""
    return tirx.BufferRegion(buf, [ir.Range.from_min_extent(i, 1) for i in idx[:-1]] +
                             [ir.Range.from_min_extent(idx[-1].base, n)])


def _store_pieces(sch, wl, xi, lanes: int, tile=()):
    """The row store's vector loop ``xi`` (``lanes``, the sum's vectors over the padded row):
    static builds vectorize it whole; generic builds split it into half-vector pieces, the
    loop over them outside the stage's ``tile`` loops (unrolled), returned for
    :func:`guard_pieces` once the schedule is otherwise done (each piece guarded as a whole:
    a whole piece stores one vector per tile element, only a partial one lane by lane). A
    28-px row's last 8-lane vector is then one whole 4-lane piece and a dead one, instead of
    8 predicated scalar stores (TVM emits no masked stores). Static builds unchanged (their
    scheduled modules identical). Generic / static, 1 thread, medians, 2x128x28² k3
    (``bench_generic_pac_kernels.py``, old and new tree in turn, two runs): pool 1.26 / 1.27 ->
    1.20 / 1.21; pool_dk and dist (G = 1) unchanged within noise (1.24-1.32, 1.29-1.44): their
    time is elsewhere. perf (dist, same calls, samples generic / static 4534 / 3356): the
    channel-sum loop ~2560 / ~1550 (per channel the same 10 loads, 9 subtractions and 9 FMAs;
    the static loop has two channels unrolled at constant offsets), the per-row copy ``Rp``
    ~850 / ~500 (its last vector scalar lane by lane, ~300: a zero fill first, or 4-lane
    vectors, measured no faster), ``Sz``'s copy ~1000 / ~700."""
    if wl.p["Wo"] is not None:
        sch.vectorize(xi)
        return None
    pieces, lane = sch.split(xi, [None, lanes // 2])
    sch.vectorize(lane)
    if tile:
        sch.reorder(pieces, *tile)
        unroll(sch, *tile)
    return pieces


def _padded_row_copy(sch, wl, name: str, lanes: int, under):
    """A row copy zero past the width (``name``'s value ``if_then_else(x < Wo, src, 0)``, over
    rows of whole vectors), vectorized inside ``under``. Static builds: cut by LoopPartition
    (``split_tail``), whose last vector LLVM folds at the known width. Generic builds: the vector
    loop split into two half-vector pieces per vector, returned for :func:`_guard_row_copy`
    (once the schedule is otherwise done); LoopPartition left the row's last vector scalar, a
    compare, a branch and a scalar load per lane. perf, dist 2x128x28² k3 (3000 calls, samples
    generic / static): ``Rp`` 936 / 506, of it ~250 that last vector; the channel-sum loop
    2450 / 2374. Generic / static, 1 thread, thread CPU time, minima of 31 (21 at 128²), main's
    and this generic build interleaved with the static one in one process (scratch A/B, load
    5-6 on the 2 cores), old -> new, two runs: 2x128x28² k3 pool_dk 1.21 / 1.23 -> 1.13 / 1.16,
    dist 1.31 / 1.29 -> 1.21 / 1.23; 2x64x56² k3 (whole vectors, the guard never taken) pool_dk
    1.10 -> 1.07, dist 1.07 / 1.08 -> 1.08 / 1.08 (a 1.39 outlier); 2x32x128² k5 pool_dk 1.19 ->
    1.13, dist 1.14 / 1.12 -> 1.18 / 1.13; later, at load 10-12, minima of 41, two runs: 28²
    pool_dk 1.18 / 1.19 -> 1.14 / 1.15, dist 1.25 / 1.25 -> 1.22 / 1.21, 56² within 0.03 either
    way. Tried, not kept: the same guard on pool's ``Kp``
    (28² unchanged, 1.22; 128² k5 1.03-1.14 -> 1.17-1.26) and, through its predicate, on pool's
    ``Sz`` interior copy (28² 1.21 -> 1.30: LLVM's loop over the interior stays)."""
    block = sch.get_sblock(name)
    xo = vectorize_inner(sch, block, lanes, under=under)
    if wl.p["Wo"] is not None or xo is None:
        split_tail(sch, xo)
        return None
    xi = sch.get_loops(block)[-1]
    piece, _ = sch.split(xi, [2, None])
    return xo, piece


def _guard_row_copy(sch, loops, name: str) -> None:
    """Generic builds: the padded row copy (``_padded_row_copy``'s loops: vectors, pieces of
    lanes) guarded per vector, then per piece, the copy's ``if_then_else`` resolved where the
    guard proves it: a vector wholly inside the row one full-width copy, the row's last vector
    in half-vector pieces, a piece wholly inside copied, one wholly past the width zeroed as a
    vector, a piece across the width lane by lane (the condition kept). A 28-px row: three
    8-lane copies, one 4-lane copy, one 4-lane zero store (was 8 scalar lanes, each tested).
    Replaces the loop nest (the block three times, sharing its variables), so this runs last."""
    if loops is None:
        return
    xo, piece = (sch.get(lp) for lp in loops)
    lane = piece.body
    realize, block, store, value = _copy_store(lane)
    if not (_is_if_then_else(value) and isinstance(value.args[0], tirx.LT)):
        split_tail(sch, loops[0])  # not the pattern: cut as before
        return
    cond, src, zero = value.args
    ana = loop_analyzer(sch, name, stop=piece)
    for iv, v in zip(block.iter_vars, realize.iter_values):
        ana.bind(iv.var, v)
    span = ana.simplify(cond.a - cond.b)  # < 0: inside the row, in loop variables

    def variant(val, pred=realize.predicate, iter_values=realize.iter_values):
        body = tirx.BufferStore(store.buffer, val, store.indices)
        blk = s_tir.SBlock(block.iter_vars, block.reads, block.writes, block.name_hint, body, block.init,
                           block.alloc_buffers, block.match_buffers, block.annotations)
        return s_tir.SBlockRealize(iter_values, pred, blk)

    half = int(lane.extent)
    lanes_ = {piece.loop_var: sym.IntervalSet(0, 1), lane.loop_var: sym.IntervalSet(0, half - 1)}
    whole = ana.simplify(ana.int_set(span, lanes_).max_value < 0)
    del lanes_[piece.loop_var]
    piece_whole = ana.simplify(ana.int_set(span, lanes_).max_value < 0)
    piece_any = ana.simplify(ana.int_set(span, lanes_).min_value < 0)
    # the whole vector as one loop of 2 * half lanes: piece, lane = divmod(its lane)
    full = lane.loop_var.copy_with_suffix("_full") if hasattr(lane.loop_var, "copy_with_suffix") else tirx.Var("x_full", lane.loop_var.ty)
    sub = sym.Analyzer()
    sub.bind(piece.loop_var, tirx.floordiv(full, half))
    sub.bind(lane.loop_var, tirx.floormod(full, half))
    full_loop = tirx.For(full, 0, 2 * half, tirx.ForKind.VECTORIZED,
                         variant(src, sub.simplify(realize.predicate), [sub.simplify(v) for v in realize.iter_values]))

    def lanes_loop(stmt):
        return tirx.For(lane.loop_var, lane.min, lane.extent, tirx.ForKind.VECTORIZED, stmt)

    tail = tirx.For(piece.loop_var, piece.min, piece.extent, tirx.ForKind.UNROLLED, tirx.IfThenElse(
        piece_whole, lanes_loop(variant(src)),
        tirx.IfThenElse(piece_any, lanes_loop(realize), lanes_loop(variant(zero)))))
    # LoopPartition cuts the vector loop at the guard: no test left in the row's whole vectors
    new = tirx.For(xo.loop_var, xo.min, xo.extent, xo.kind, tirx.IfThenElse(whole, full_loop, tail),
                   annotations={"pragma_loop_partition_hint": 1})
    sch.state.replace(sch.get_sref(loops[0]), new, {})


def _plane_by_plane(wl, target) -> bool:
    """pool's adjoint with a kernel per channel runs plane by plane, its copies per plane, where
    the channels alone give every core a plane (batch 1): fewer channels keep the row-parallel
    nest (with 3 channels on 16 cores, planes would leave most cores idle)."""
    cores = int(target.attrs.get("num-cores", 1)) if target is not None else 1
    return bool(wl.p["a"]) and wl.p["G"] != 1 and wl.p["C"] >= cores


def _fills(wl) -> bool:
    """Whether a generic build's padded copies are a zero fill and an unconditional interior copy
    (``decompose_padding``) rather than one copy whose zero border, a lane-dependent condition,
    leaves the row's first and last vectors scalar (generic pool 2x128x28² k3: 0.13 vs 0.18 ms).
    Zero insertion is no padding pattern; static builds keep the one copy, whose conditions
    LLVM folds at known widths (and ``decompose_padding`` refuses some degenerate static shapes,
    1-pixel images among them). pool's source copy (its row-parallel nest) is instead one
    masked copy in generic builds (``_masked_copy``)."""
    return wl.kind != "static" and wl.p.get("z", 1) == 1


def _row_lanes(dtype: str, target) -> int:
    """Lanes of pool's vectors along its padded rows: 256-bit vectors, which divide
    ``ops.pac.POOL_ROW_QUANTUM``. (512-bit ones on AVX-512, the rows padded to 16, measured
    1.0-1.6x slower at 2x128x56² k3, both builds: a quarter of a row's last 64-pixel tile
    wasted, and every other vector load crossing a cache line.)"""
    lanes = vector_lanes(dtype)
    assert POOL_ROW_QUANTUM % lanes == 0
    return lanes


# pool with a shared kernel (G = 1): per vector of x, the channels of a block in turn, each one
# accumulator vector over the k x k taps. The k x k kernel vectors of that pixel vector do not
# depend on the channel (LLVM keeps them in registers across the channel loop), so a channel
# costs k x k source loads and FMAs and one store, and the source rows it reads sit a channel
# plane apart, one pointer each advanced per channel. (A tile of 4 channels x one vector, the
# taps outside, read 4 x k source rows and k x k kernel planes at once: at a symbolic width
# every one a pointer of its own, more than x86-64 has registers, spilled and reloaded per tap:
# 1.33x the static time at 2x64x56² k3.)
POOL_CHANNEL_BLOCK = 32  # channels per sweep: their k source rows and output row stay in L1


def _channel_sum_row(sch, acc, lanes):
    """acc (n, g, i, j, y, x, c) summed over channels c: parallel over rows (n, y); the
    channel loop outside the taps, so each channel's rows are read in order into a row of
    k x k x Wo accumulators (channels innermost would jump a plane per load: with planes a
    power of two apart every load maps to the same L1 set). Returns the row loop."""
    n, g, i, j, y, x, c = sch.get_loops(acc)
    sch.reorder(n, y, g, c, i, j, x)
    row = sch.fuse(n, y)
    sch.parallel(row)
    xo, xi = sch.split(x, [None, lanes])
    sch.vectorize(xi)
    split_tail(sch, xo)
    return row, c


def _finish(sch, acc, first_red, xo, lanes=None):
    """The cast stage into the tile loop ``xo``, the reduction's init split off, both vectorized
    (``lanes``: the loops left are whole rows of a symbolic width, split into vectors first)."""
    vec = vectorize_under if lanes is None else (lambda s, b, loop: split_tail(s, vectorize_inner(s, b, lanes, under=loop)))
    out = sch.get_sblock("out")
    sch.reverse_compute_at(out, xo)
    vec(sch, out, xo)
    init = sch.decompose_reduction(acc, first_red)
    vec(sch, init, xo)


@register("pac", "conv_dk", "cpu")
def conv_dk(sch, wl, target):
    p = wl.p
    lanes, _ = _x_tiling(p["Wo"], wl.dtype)
    # G over rows padded to whole register tiles (see conv; static widths too where they admit no
    # full-width vectors: 2.5x faster at 2x128x28² k3); the channel sum reads its valid part
    generic = p["Wo"] is None or _pads_rows(p["Wo"], wl.dtype, target)
    if generic:
        tl, xv, _ = _tile_shape(p["C"] * p["k"] ** 2, None, wl, target)
        G = sch.get_sblock("G")
        dO = sch.cache_read(G, [r.source.name for r in sch.get(G).reads].index("dO"), "global")
        sch.pad_einsum(G, [1, 1, 1, 1, 1, tl * xv, 1])
        sch.compute_inline(dO)
        sch.compute_inline(sch.get_sblock("G_pad"))
    acc = sch.get_sblock("acc")
    if generic:
        _reads_whole_rows(sch, acc, "G_pad")
    row, c = _channel_sum_row(sch, acc, lanes)
    _materialize(sch, "Sz", lanes)
    G = sch.get_sblock("G")
    sch.compute_at(G, row)
    loops = _after_compute_at(sch, G, [("c", p["C"]), ("i", p["k"]), ("j", p["k"]), ("x", p["Wo"]), ("o", p["O"])])
    if len(loops) == 5:  # else a degenerate shape: left plain
        r = sch.fuse(loops["c"], loops["i"], loops["j"])
        if generic:
            k, cap = p["k"], max(1, acc_registers(target) // xv)
            rb = max(b for b in _box_rows(p["C"], k) if b <= cap) if k > 1 or p["C"] > 1 else 1
            xo = _register_tile(sch, r, loops["x"], (loops["o"],), rb, xv, tl)
            # The tile's rows lie a symbolic row length apart, so LLVM cannot tell them apart and
            # keeps every accumulator in memory (load, FMA, store per element): sum in a local tile.
            tile = sch.cache_write(G, 0, "local")
            sch.reverse_compute_at(tile, xo)
            vectorize_inner(sch, tile, tl, under=xo)
        else:
            _gemm_tile(sch, G, r, loops["x"], (loops["o"],), p["C"] * p["k"] ** 2, p["Wo"], wl, target)
    if "o" in loops:
        sch.decompose_reduction(G, loops["o"])
    if generic:
        dO_pad = sch.get_sblock("dO_global_pad")
        sch.compute_at(dO_pad, row)
        # its zeros past the width are a lane-dependent condition: without the partition hint
        # TVM scalarized the whole copy (generic 2x64x56² k3 1.45 -> 1.07x the static time)
        split_tail(sch, vectorize_inner(sch, dO_pad, lanes, under=row))
    _finish(sch, acc, c, row, lanes if p["Wo"] is None else None)


def _box_rows(C: int, k: int) -> list:
    """Row blocks of G's fused (c, i, j) rows that are boxes in (c, i, j) (a local tile's
    copy-out is inferred as a box: any other block would copy rows it never computed):
    divisors of k (part of a tap row), k x divisors of k, k^2 x divisors of C."""
    div = lambda n: [b for b in range(1, n + 1) if n % b == 0]
    return div(k) + [k * m for m in div(k)] + [k * k * m for m in div(C)]


def _reads_whole_rows(sch, block, buffer: str) -> None:
    """Declare that ``block`` reads whole (padded) rows of ``buffer``: ``compute_at`` then
    gives the producer its whole padded row, over which its register tiles need no predicate
    (from the consumer's vector loop it would infer the row rounded to that loop's vectors,
    which the analyzer cannot compare with the padding)."""
    obj = sch.get(block)
    vars_ = [iv.var for iv in obj.iter_vars]
    index = [r.source.name for r in obj.reads].index(buffer)
    reg = obj.reads[index]
    *lead, _ = reg.region
    flat = [e for r in lead for e in (r.min, r.min + r.extent)] + [0, reg.source.shape[-1]]
    _ffi_api.ScheduleAnnotateBufferAccess(sch, block, index, 0, tirx.IndexMap(vars_, flat, None))


@register("pac", "conv_dw", "cpu")
def conv_dw(sch, wl, target):
    p = wl.p
    lanes = _channel_lanes(p["C"], wl.dtype, target)
    if lanes:
        _conv_dw_channel_vectors(sch, wl, target, lanes)
    else:
        _conv_dw_x_vectors(sch, wl, target)


def _channel_lanes(C: int, dtype: str, target):
    """Lanes of conv_dw's vectors along input channels: the widest vector (512-bit on AVX-512,
    then 256- and 128-bit) that divides C; None where none does (C odd, say)."""
    full = vector_lanes(dtype) * (2 if _avx512(target) else 1)
    for lanes in (full, full // 2, full // 4):
        if lanes >= 2 and C % lanes == 0:
            return lanes
    return None


def _dw_tile(O: int, C: int, k: int, lanes: int, target):
    """(output channels, channel vectors, taps along j) of conv_dw's register tile: the most
    FMAs per instruction within the accumulators. Per pixel a tile of rb x cv x jt vectors costs
    rb * cv * jt FMAs, jt kernel broadcasts, jt * cv loads and products of the source, rb dO
    broadcasts."""
    regs = acc_registers(target)
    best = None
    for jt in sorted({1, k}):
        for cv in (b for b in range(1, C // lanes + 1) if (C // lanes) % b == 0):
            cap = regs // (cv * jt)
            if cap < 1:
                continue
            rb = _divisor_at_most(O, cap)
            fma = rb * cv * jt
            score = (fma / (fma + jt + 2 * jt * cv + rb), fma)
            if best is None or score > best[0]:
                best = (score, (rb, cv, jt))
    return best[1]


def _conv_dw_channel_vectors(sch, wl, target, lanes: int) -> None:
    """dWt[o,c,i,j] = sum over pixels of dO[o] * K[i,j] * Sz[c, tap]: vectors along the input
    channels c, so the reduction over n, y, x runs one pixel at a time, whatever the width (no
    tail, no predicate: the same loop nest for static and symbolic sizes; generic builds add a
    pixel-major copy of K where the tile spans several taps). The padded source is stored
    channels-last, (n, Y, X, c), so a tap's channels are one contiguous vector; per pixel a tile
    of rb output channels x cv channel vectors x jt taps multiplies the source vectors by the
    broadcast kernel value and adds them, times the broadcast dO, into rb x cv x jt accumulators
    (the tile of acc, stored (o, i, j, c) so it is a contiguous local array LLVM keeps in
    registers)."""
    p = wl.p
    O, C, k = p["O"], p["C"], p["k"]
    rb, cv, jt = _dw_tile(O, C, k, lanes, target)
    sz = sch.get_sblock("Sz")
    sch.transform_layout(sz, ("write", 0), lambda n, c, y, x: (n, y, x, c))
    n, c, y, x = sch.get_loops(sz)
    sch.reorder(n, y, x, c)
    sch.parallel(sch.fuse(n, y))
    _, cl = sch.split(c, [None, lanes])
    sch.vectorize(cl)
    acc = sch.get_sblock("acc")
    if p["Wo"] is None and jt > 1:
        # the tile's jt kernel values lie a symbolic plane apart (a pointer each, 8 dO planes
        # beside them: spills, 1.6x slower at 2x128x28² k3); pixel-major they are adjacent
        _pixel_major(sch, acc, "K", lambda n, g, i, j, y, x: (n, y, x, g, i, j))
    sch.transform_layout(acc, ("write", 0), lambda o, c, i, j: (o, i, j, c))
    o, c, i, j, n, y, x = sch.get_loops(acc)
    oo, oi = sch.split(o, [None, rb])
    co, cvv, cl = sch.split(c, [None, cv, lanes])
    jo, ji = sch.split(j, [None, jt])
    sch.reorder(oo, co, i, jo, n, y, x, ji, oi, cvv, cl)
    sch.parallel(sch.fuse(oo, co, i, jo))
    sch.vectorize(cl)
    unroll(sch, ji, oi, cvv)
    tile = sch.get_loops(acc)[0]
    sch.reverse_compute_at(sch.get_sblock("out"), tile)
    sch.decompose_reduction(acc, n)


def _pixel_major(sch, block, buffer: str, layout) -> None:
    """A copy of input ``buffer`` stored pixel-major (``layout``), so the values ``block``
    reads at one pixel lie side by side."""
    index = [r.source.name for r in sch.get(block).reads].index(buffer)
    copy = sch.cache_read(block, index, "global")
    sch.transform_layout(copy, ("write", 0), layout)
    loops = sch.get_loops(copy)
    order = layout(*range(len(loops)))
    sch.reorder(*(loops[a] for a in order))
    sch.parallel(sch.fuse(loops[order[0]], loops[order[1]]))


def _conv_dw_x_vectors(sch, wl, target) -> None:
    """Vectors along x (channels that no vector divides): the x loop split into vector lanes and
    rfactored, so each (block of output channels, input channel, tap row) keeps o_block x k
    vector partial sums over all pixels, then sums its lanes. A symbolic width leaves a scalar
    tail per row."""
    p = wl.p
    lanes, _ = _x_tiling(p["Wo"], wl.dtype)
    _materialize(sch, "Sz", lanes)
    acc = sch.get_sblock("acc")
    o, c, i, j, n, y, x = sch.get_loops(acc)
    xo, xl = sch.split(x, [None, lanes])
    rf = sch.rfactor(xl, 4)  # rf[o, c, i, j, lane]: one partial sum per vector lane
    o, c, i, j, n, y, xo, xl = sch.get_loops(rf)
    ob = _divisor_at_most(p["O"], max(1, acc_registers(target) // p["k"]))
    oo, oi = sch.split(o, [None, ob])
    sch.reorder(oo, c, i, n, y, xo, j, oi, xl)
    sch.parallel(sch.fuse(oo, c))
    sch.vectorize(xl)
    unroll(sch, j, oi)
    split_tail(sch, xo)
    # the lane sums and the cast per tile: the partials stay in registers
    sch.reverse_compute_at(acc, i)
    sch.reverse_compute_at(sch.get_sblock("out"), i)
    sch.decompose_reduction(rf, n)


def _per_tap(sch, wl, lanes):
    """Kernel-shaped results (n, c, i, j, y, x) of the per-channel forms (G = C), elementwise.
    (G = 1 sums over channels: ``_channel_sum_padded``.)"""
    sch.compute_inline(sch.get_sblock("acc"))
    # float64: TVM's 4-lane vectors divide the usual widths (28 = 7 x 4), where LLVM's 8-lane
    # ones leave a 2-lane epilogue (generic / static 2x128x28² k3 1.12 -> 1.38); 56²: 1.02 -> 0.94
    _per_tap_planes(sch, lanes, wl.p["k"], llvm_rows=wl.p["Wo"] is None and wl.dtype != "float64")


TAP_STREAMS = 9  # output planes written side by side at most (k x k: taps innermost)


def _per_tap_planes(sch, lanes: int, k: int, llvm_rows: bool = False) -> None:
    """out (n, c, i, j, y, x), elementwise: parallel over planes (n, c), per output row y the
    taps inside the vectors of x, so the per-pixel operand (dO, F0) is loaded once per vector
    and the source rows stay in registers' reach: all k x k taps per vector where k x k <=
    ``TAP_STREAMS`` output planes (written side by side), else per tap row i the k taps j.
    Before, each (i, j, y) row was its own x loop, reloading both operands per tap (generic
    builds: no unrolled row to hide it). Scratch runs (1 thread, thread CPU time, medians of
    7 x 2 calls, against the former static build; generic / static, G = C): dist 2x128x28² k3
    all taps 1.25 / 0.55 (was 2.43), 2x64x56² k3 0.72 / 0.70 (0.87), 2x32x128² k5 per tap row
    0.94 / 0.92 (0.97; all 25 taps 2.4 / 2.4); pool_dk alike (1.07 / 0.49, 0.76 / 0.65,
    0.99 / 0.91).

    ``llvm_rows`` (generic builds, 32-bit accumulation): per output row and tap row i, the row
    loop x is left whole, the k taps j inside it, for LLVM's loop vectorizer, which takes it as
    512-bit vectors, then a 128-bit vector epilogue, then scalars: a 28-px float32 row is one
    16-lane and three 4-lane vectors, no per-lane test. TVM's own vectors leave a symbolic row
    a predicated last vector, which it scalarizes lane by lane (a compare and a branch per lane
    and tap, 8 x 9 per row, 4 of them live at 28 px): twice the static time at 28-px rows. Per
    tap row, not all k x k taps per x: LLVM checks at run time, per row loop, that the vectors
    of its store streams (k x k output planes a symbolic plane apart) do not overlap one
    another (about 35 instructions for 9 streams); k streams cost fewer checks. Generic /
    static, G = C, 1 thread, medians: 2x128x28² k3 dist 2.0 -> 1.3, pool_dk 2.1 -> 1.4
    (float16 1.29 -> 1.17, bfloat16 0.96 -> 0.68); 56- and 128-px rows unchanged within noise
    (RESULTS.md "PAC CPU generic per-channel rows for LLVM")."""
    out = sch.get_sblock("out")
    n, c, i, j, y, x = sch.get_loops(out)
    planes = sch.fuse(n, c)
    sch.parallel(planes)
    if llvm_rows:
        sch.reorder(planes, y, i, x, j)
        unroll(sch, j)
        return
    xo, xi = sch.split(x, [None, lanes])
    if k * k <= TAP_STREAMS:
        sch.reorder(planes, y, xo, i, j, xi)
        unroll(sch, i, j)
    else:
        sch.reorder(planes, y, i, xo, j, xi)
        unroll(sch, j)
    sch.vectorize(xi)
    split_tail(sch, xo)


@register("pac", "pool_dk", "cpu")
@register("pac", "dist", "cpu")
def per_tap(sch, wl, target):
    if wl.p["G"] == 1:  # padded rows (ops.pac.pool_dk, ops.pac.dist)
        _channel_sum_padded(sch, wl)
        return
    lanes, _ = _x_tiling(wl.p["Wo"], wl.dtype)
    _materialize(sch, "Sz", lanes, decompose=_fills(wl))
    _per_tap(sch, wl, lanes)


def _channel_sum_padded(sch, wl) -> None:
    """A channel sum (G = 1) over rows padded to whole vectors (``ops.pac.pool_dk``, ``dist``): the store's
    loop nest, parallel over output rows, per vector of x a k x k tile of accumulator vectors
    (a local array: registers) summed over every channel, the taps unrolled inside, then
    stored; only the store of a row's last vector is partial (static builds: ``split_tail``;
    generic builds: guarded half-vector pieces, ``_store_pieces``), once per tile, not per channel. The padded row of the per-pixel operand (``Rp``: all channels of the
    output row) is copied at the row (generic float32 / float64 builds: whole vectors,
    ``_masked_taps``: the row's last vector a zero store, then the vector ending at the width;
    half-precision ones: guarded per vector and half-vector piece, ``_padded_row_copy``). Per
    channel and vector: one load of that operand (dO,
    F0), k x k loads of the source, k x k FMAs, no accumulator traffic. History: the channel
    loop outside the taps (a k x k x Wo row of accumulators in memory, one x loop per tap) was
    2.4x / 1.8x the static time at 2x128x28² / 2x64x56² k3 generic (each tap's loop reloaded
    the per-pixel row); this tile over unpadded rows, one scalar tail per row, 2.1-2.4x at 28²
    (generic pool_dk 0.29 -> 0.17 ms, dist 0.29 -> 0.18 with the padded rows).

    Generic builds run one loop over a row's vectors, not cut by ``split_tail``: the guarded
    store pieces take the last vector, which was a second copy of the channel loop. Generic /
    static, 1 thread, thread CPU time, minima of 31 (11 at 128²), old and new generic builds
    interleaved in one process (scratch A/B), old -> new: 2x128x28² k3 pool_dk 1.29 -> 1.22,
    dist 1.37 -> 1.26; 2x64x56² k3 1.12 -> 1.09, 1.20 -> 1.12; 2x32x128² k5 1.18 -> 1.17,
    1.18 -> 1.21 (an earlier run, medians: 28² dist 1.32 / 1.29 -> 1.27 / 1.27, pool_dk 1.23 /
    1.18 -> 1.14 / 1.19). In pool (per vector only 9 FMAs) it measured slower, 1.13 -> 1.21,
    poolg 1.38 -> 1.46: pool keeps the cut. perf, dist 2x128x28² k3 before this (5000 calls,
    samples generic / static, of 7732 / 6201): the channel-sum loop 3185 + ~1060 (whole
    vectors, last vector) / 2995 + 1003, the ``Rp`` copy 1678 / 833 (its last vector scalar
    lane by lane; since ``_padded_row_copy`` guarded pieces), ``Sz``'s copy 1655 / 1349 (a
    zero fill of the row, then the interior).
    Tried, scratch A/B, not kept: ``Rp`` one plain loop nest for LLVM (AVX-512-masked loads, no
    scalar lanes): faster at 28² (1.22 -> 1.16 pool_dk, 1.26 -> 1.22 dist) and 14², slower
    where the row is whole vectors (56² 1.09 -> 1.12 / 1.12 -> 1.19, 128² k5 pool_dk 1.17 ->
    1.26: LLVM's per-row checks); ``Rp`` cut into 8-wide plain chunks (slower at 28²);
    ``Sz``'s copy one plain loop nest, its fill in 16-lane vectors, its interior in 8-wide
    chunks (none faster); its fill skipping the vectors the copy overwrites whole (an ``if`` per
    vector: 2x slower, LoopPartition cut the fill at it into scalar pieces); the channel loop
    unrolled by 2 or 4 (28² 1.21 -> 1.18 / 1.14, 56² 1.18 -> 1.16 / 1.20: not consistent);
    ``Kp``'s rows in pool as a plain loop nest (no change).

    Since 2026-12-02 (fourth session) generic ``Rp`` is whole vectors (``_masked_taps``, above;
    a 28-px row: 3 8-lane copies, a zero store, one shifted 8-lane copy, was two 4-lane pieces
    behind a branch per vector). Old and new generic builds and the static one exported and
    called interleaved in one process, 1 thread, thread CPU time, minima (medians) of 101 x 2
    calls (41 at 56², 9 at 128²), three rounds, load 3.4, generic / static old -> new: dist
    2x128x28² k3 1.19 (1.15-1.35) -> 1.08-1.15 (1.16-1.28), pool_dk 1.18-1.19 -> 1.13-1.16
    (medians of new / old per call pair 0.96-0.97); dist 2x64x56² k3 and 2x32x128² k5 new / old
    0.98-1.02 (unchanged). Tried, not kept: ``Sz`` as pool's masked copy (``_masked_copy``),
    16 lanes 1.19-1.20 -> 1.28-1.31, 8 lanes 1.35-1.55 (perf, dist 28²: the two copies are the
    gap, generic / static samples ``Sz`` 12.2 / 6.8, ``Rp`` 10.4 / 5.1, the channel sum even)."""
    p = wl.p
    lanes = _row_lanes(wl.dtype, None)
    _materialize(sch, "Sz", vector_lanes(wl.dtype), decompose=_fills(wl))
    out = sch.get_sblock("out")
    n, g, i, j, y, x = sch.get_loops(out)
    xo, xi = sch.split(x, [None, lanes])
    sch.reorder(n, y, g, xo, i, j, xi)
    row = sch.fuse(n, y)
    sch.parallel(row)
    pieces = _store_pieces(sch, wl, xi, lanes, tile=(i, j))
    if pieces is None:  # generic builds: the guarded pieces take the row's last vector (above)
        split_tail(sch, xo)
    acc = sch.get_sblock("acc")
    sch.compute_at(acc, xo)
    sch.set_scope(acc, 0, "local")
    loops = after_compute_at(sch, acc, [("i", p["k"]), ("j", p["k"]), ("x", lanes), ("c", p["C"])])
    if "c" in loops:
        sch.reorder(loops["c"], *(loops[a] for a in ("i", "j") if a in loops), loops["x"])
    unroll(sch, *(loops[a] for a in ("i", "j") if a in loops))
    sch.vectorize(loops["x"])
    if "c" in loops:
        sch.decompose_reduction(acc, loops["c"])
    sch.compute_at(sch.get_sblock("Rp"), row)
    taps = _fills(wl) and wl.dtype not in HALF  # generic: Rp's row in whole vectors (_masked_taps)
    if taps:
        rxo = vectorize_inner(sch, sch.get_sblock("Rp"), vector_lanes(wl.dtype), under=row)
    else:
        rp = _padded_row_copy(sch, wl, "Rp", vector_lanes(wl.dtype), row)
    guard_pieces(sch, pieces)
    if not taps:
        _guard_row_copy(sch, rp, "Rp")
    elif not _masked_taps(sch, rxo):
        split_tail(sch, rxo)


def _taps_inside_vectors(sch, wl, lanes, row_copy=None):
    """acc (n, c, y, x, i, j): parallel over rows (n, y), the channels inside (a row of the
    channel-shared gradient stays in cache for all of them), vectors along x, taps inside.
    ``row_copy``: an input whose row is first copied to contiguous scratch (``_row_copy``).
    Generic builds: a row's tiles whole and the last one overlapping (``_rows.overlap_tiles``;
    was LoopPartition's predicated tail, run lane by lane), the row copy likewise
    (``_rows.overlap_rows``)."""
    acc = sch.get_sblock("acc")
    n, c, y, x, i, j = sch.get_loops(acc)
    width = sch.get(x).extent
    generic = not isinstance(width, tirx.IntImm)
    sch.reorder(n, y, c, x, i, j)
    row = sch.fuse(n, y)
    sch.parallel(row)
    xo, xi = sch.split(x, [None, lanes])
    sch.reorder(xo, i, j, xi)
    sch.vectorize(xi)
    if not generic:
        split_tail(sch, xo)
    elif row_copy is None:  # taps a symbolic plane apart: LLVM left the tap rows a loop
        unroll_taps(sch, wl, i, j)
    copy = None if row_copy is None else _row_copy(sch, acc, row_copy, row, lanes, generic)
    _finish(sch, acc, i, xo)
    if generic:  # rewrites of the scheduled IR: last
        sizes = sch.get(acc).writes[0].source.shape
        if copy is not None:
            overlap_rows(sch, copy, lanes, nonempty=sch.get(sch.get_sblock(f"{row_copy}_global")).reads[0].source.shape)
        overlap_tiles(sch, xo, lanes, width, nonempty=sizes)


@register("pac", "dist_df", "cpu")
def dist_df(sch, wl, target):
    lanes, _ = _x_tiling(wl.p["W"], wl.dtype)
    q = wl.p  # both copies zero-inserted at s > 1; e = (k - 1) d - p, their padding, may crop
    fill = _fills(wl) and q["s"] == 1 and (q["k"] - 1) * q["d"] >= q["p"]
    _materialize(sch, "Kz", lanes, outer=4, decompose=fill)
    _materialize(sch, "Sz", lanes, decompose=fill)
    _taps_inside_vectors(sch, wl, lanes)


def _row_copy(sch, block, buffer: str, row, lanes: int, generic: bool = False):
    """Copy the row of ``buffer`` that ``block`` reads under ``row`` into one contiguous
    scratch row: the k x k taps of a kernel-shaped tensor are planes apart, and with planes a
    power of two in size their loads all map to the same L1 set. Generic builds: returns the
    copy's row loop for ``_rows.overlap_rows``."""
    index = [r.source.name for r in sch.get(block).reads].index(buffer)
    copy = sch.cache_read(block, index, "global")
    sch.compute_at(copy, row)
    if generic:
        return sch.get_loops(copy)[-1]
    # the row's whole vectors cut from its last (a predicated vector loop runs scalar)
    split_tail(sch, vectorize_inner(sch, copy, lanes, under=row))
    return None


@register("pac", "dist_df0", "cpu")
def dist_df0(sch, wl, target):
    lanes, _ = _x_tiling(wl.p["Wo"], wl.dtype)
    _materialize(sch, "Sz", lanes, decompose=_fills(wl))
    _taps_inside_vectors(sch, wl, lanes, row_copy="dD" if _copies_rows(wl) else None)


def _copies_rows(wl) -> bool:
    """Whether dist_df0 copies each row of dD first (``_row_copy``): with one kernel for every
    channel (G = 1: the row then serves every channel) or, in static builds, with planes a
    multiple of 4 KB (the k x k taps read together map to one L1 set: 2x32x128² k5, G = C,
    1.27x the time without the copy). Otherwise (G = C, each row read once) the copy is a pass
    more: 1 thread, 2x64x28² / 29² / 56² k3, G = C, static builds 0.88 / 0.71 / 0.73x the
    time with it; generic builds (their planes' size unknown) never copy, 0.76-0.97x the
    static time (RESULTS.md "PAC CPU generic dist_df / dist_df0")."""
    if wl.p["G"] == 1:
        return True
    return wl.kind == "static" and wl.p["Ho"] * wl.p["Wo"] * tvm.DataType(wl.dtype).bits // 8 % 4096 == 0
