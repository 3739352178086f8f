"""Loop helpers shared by the default schedules.

Schedules work on each reduction block's own, complete loop nest (``compute_at`` drops
unit-extent loops, so positions would shift), then move the cast stage ('out') into it.
"""
from __future__ import annotations

import tvm.s_tir as s_tir
from tvm import tirx
from tvm.s_tir.schedule import _ffi_api
from tvm.target import codegen


def vector_lanes(dtype: str) -> int:
    """Lanes per vector for the accumulation type (float32 for half types)."""
    return 4 if dtype == "float64" else 8


def vectorize_inner(sch: s_tir.Schedule, block, lanes: int, under=None):
    """Split the innermost loop of ``block`` (a name or SBlockRV) into vectors; with ``under``,
    only a loop strictly inside that one (``compute_at`` drops unit loops, so a one-element
    stage may have none left of its own). Returns the loop over the vectors (None if none)."""
    if isinstance(block, str):
        block = sch.get_sblock(block)
    inner = sch.get_loops(block)[-1]
    if under is not None and sch.get(inner).same_as(sch.get(under)):
        return None
    xo, xi = sch.split(inner, [None, lanes])
    sch.vectorize(xi)
    return xo


def split_tail(sch: s_tir.Schedule, loop) -> None:
    """Shape-generic CPU kernels: have TVM's LoopPartition pass cut ``loop`` (over vector tiles
    of a symbolic extent) into the whole tiles, which lose their bounds predicate and so stay
    vectors, and the tail (at most one tile, predicated, scalar). The schedule primitive
    ``loop_partition`` rejects symbolic bounds; the pass, asked through this hint, does not."""
    if loop is not None and not isinstance(sch.get(loop).extent, tirx.IntImm):
        sch.annotate(loop, "pragma_loop_partition_hint", 1)


def acc_registers(target) -> int:
    """Vector accumulators a CPU register tile may keep (of 32 with AVX-512, 16 with AVX2)."""
    return 24 if codegen.target_has_features("avx512f", target) else 12


UNROLL_TAPS = 7  # unroll tap loops up to this kernel size
MAX_THREADS = 256  # CUDA threads per block for thread-per-output kernels


def unroll(sch: s_tir.Schedule, *loops) -> None:
    for loop in loops:
        sch.unroll(loop)


def unroll_taps(sch: s_tir.Schedule, wl, *loops) -> None:
    """Unroll the k x k tap loops of small kernels."""
    if wl.p["k"] <= UNROLL_TAPS:
        unroll(sch, *loops)


def extent(sch: s_tir.Schedule, loop):
    """A loop's extent: an int when static, else its expression (shape-generic kernels)."""
    n = sch.get(loop).extent
    return int(n) if isinstance(n, tirx.IntImm) else n


def threads_for(n, cap: int = MAX_THREADS) -> int:
    """CUDA threads per block for ``n`` independent items. Never more than ``n``: with a single
    item, TVM's ``reverse_compute_at`` drops the split's bounds predicate from the cast stage
    (its indices no longer depend on the thread), and every idle thread would then store its
    uninitialised accumulator over the one output. A symbolic ``n`` gets ``cap`` threads, the
    tail predicated (the indices then depend on the thread, so the predicate stays)."""
    return min(n, cap) if isinstance(n, int) else cap


def tile_regions(sch: s_tir.Schedule, buffer: str, blocks, lanes: int) -> None:
    """Shape-generic CPU kernels: declare that ``blocks`` touch ``buffer`` (a tile buffer, last
    axis split by ``lanes``) in whole ``lanes``-wide tiles. Without it TVM sizes the compacted
    tile from the tail predicate, which it bounds by the largest int32 (a 4 GiB tile)."""
    for name in blocks:
        block = sch.get_sblock(name)
        obj = sch.get(block)
        vars_ = [iv.var for iv in obj.iter_vars]
        for kind, regions in ((0, obj.reads), (1, obj.writes)):
            for i, reg in enumerate(regions):
                if reg.source.name != buffer:
                    continue
                *lead, last = reg.region
                lo = tirx.floordiv(last.min, lanes) * lanes
                flat = [e for r in lead for e in (r.min, r.min + r.extent)] + [lo, lo + lanes]
                # (the Python wrapper wants one range per block variable, not per buffer axis)
                _ffi_api.ScheduleAnnotateBufferAccess(sch, block, i, kind, tirx.IndexMap(vars_, flat, None))


def bind_flat(sch: s_tir.Schedule, loops):
    """Fuse ``loops`` and split the result over blockIdx.x / threadIdx.x; returns the thread loop."""
    fused = sch.fuse(*loops)
    bx, tx = sch.split(fused, [None, threads_for(extent(sch, fused))])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    return tx


def register_acc(sch: s_tir.Schedule, acc, first_reduction_loop, tx) -> None:
    """CUDA: keep the accumulator in a register, zeroed before the reduction loops (not inside
    them under a guard), and write the cast result ('out') from the same thread."""
    sch.set_scope(acc, 0, "local")
    sch.decompose_reduction(acc, first_reduction_loop)
    sch.reverse_compute_at(sch.get_sblock("out"), tx)


def vectorize_under(sch: s_tir.Schedule, block, loop) -> None:
    """Vectorize the innermost loop of ``block`` if one remains strictly inside ``loop``."""
    inner = sch.get_loops(block)[-1]
    if not sch.get(inner).same_as(sch.get(loop)):
        sch.vectorize(inner)


def after_compute_at(sch: s_tir.Schedule, block, extents):
    """Name the loops ``compute_at`` left ``block``: one per axis of extent > 1, in order
    (unit loops are dropped). ``extents``: (name, extent) of the block's axes, outer first."""
    names = [name for name, n in extents if n > 1]
    loops = sch.get_loops(block)[len(sch.get_loops(block)) - len(names):]
    return dict(zip(names, loops))
