"""Loop helpers shared by the default schedules.

Schedules work on each reduction block's own, complete loop nest (``compute_at`` drops
unit-extent loops, so positions would shift), then move the cast stage ('out') into it.
"""
from __future__ import annotations

import re

import tvm.s_tir as s_tir
from tvm import ir, sym, tirx
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
    """Have TVM's LoopPartition pass cut ``loop`` (over vector tiles) into the whole tiles,
    which lose their bounds predicate and so stay vectors, and the tail (at most one tile,
    predicated, scalar). The schedule primitive ``loop_partition`` rejects symbolic bounds;
    the pass, asked through this hint, does not. Static extents too: a static row whose
    length is not a multiple of the tile (DDF ds at 28 px: 16 + 12) otherwise ran every tile
    predicated, and TVM's vectorizer leaves a predicated tile scalar (static DDF ds / dc
    0.39-0.57x the time at 28 and 14 px, DDF kernels 0.26-0.69x at strides 2-3, ACDA fwd / dx
    0.19-0.48x at 29x31 and 14 px: RESULTS.md "DDF CPU static row tails", "ACDA CPU static
    row tails"; PAC's static padded copies already took it, 2x128x28² k3 conv 3.3 -> 2.4 ms).
    A lane-dependent condition in the body (a padded copy's zero border, the zeros past a
    padded row's width) is cut the same way, into the vectors where it is uniform."""
    if loop is not None:
        sch.annotate(loop, "pragma_loop_partition_hint", 1)


def vector_registers(target) -> int:
    """A CPU target's vector registers: 32 with AVX-512, 16 with AVX2."""
    return 32 if codegen.target_has_features("avx512f", target) else 16


def acc_registers(target) -> int:
    """Vector accumulators a CPU register tile may keep (3/4 of :func:`vector_registers`)."""
    return vector_registers(target) * 3 // 4


UNROLL_TAPS = 7  # unroll tap loops up to this kernel size
MAX_THREADS = 256  # CUDA threads per block for thread-per-output kernels


def unroll(sch: s_tir.Schedule, *loops) -> None:
    for loop in loops:
        sch.unroll(loop)


MIN_BLOCKS = "dynfilter.min_blocks_per_sm"  # root-block annotation read by dynfilter_tvm.build's TIR pipeline


def min_blocks(sch: s_tir.Schedule, blocks: int) -> None:
    """Ask for ``__launch_bounds__(threads, blocks)`` on the CUDA kernels of scheduled ``sch``
    (``dynfilter_tvm.build.tir_pipeline``): ptxas then keeps registers to what ``blocks``
    resident blocks per SM allow (65,536 / (blocks x threads)), spilling if it must."""
    sch.annotate(sch.get_sblock("root"), MIN_BLOCKS, blocks)


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


def guard_pieces(sch, pieces, block: str = "out", shift: bool = False) -> None:
    """A shape-generic CPU store's piece loop ``pieces`` (over vector pieces of a symbolic row,
    the stage ``block``, its loops inside: the tile's, unrolled, then the lanes) unrolled, each
    piece guarded as a whole: ``if`` its last lane lies in the row, the piece's stores without
    the lane predicate (one vector store per tile element straight from the tile), ``elif`` its
    first lane does, the predicated stores (scalar, lane by lane), else nothing. The lane
    conjuncts of the store's predicate (those over the innermost loop) are bounded over the
    piece's loops (``int_set``: max < 0 for a whole piece, min < 0 for any lane); the others
    stay in the block predicate, dropped where the enclosing loops' ranges prove them (the
    tile loop's own bound). The replaced loop holds ``block`` twice (both copies share their
    variables, as LoopPartition's copies do: ``s_tir.Schedule`` refuses the result as
    ill-formed), so this runs last. A predicate the guard does not read leaves the piece loop
    cut by LoopPartition as before.

    Users: DDF fwd / dx 'out' (``ddf_cpu._row_tile_out``), PAC pool / pool_dk / dist (G = 1)
    row stores (``pac_cpu._store_pieces``). Why (DDF): with the cut
    (``pragma_loop_partition_hint``) the piece loop had a runtime trip count,
    so its index into the tile was dynamic and LLVM kept the tile on the stack (zeroed, stored
    after the tap loop, read back per piece, 8 row pointers reloaded per piece: perf at 56 px,
    'out' 11% and the init 8% of the generic fwd). Unrolled, each piece's tile index is a
    constant and the tile stays in registers, as in the static build. Same process (static and
    both generic variants interleaved, thread time, 11 repeats), generic / static before ->
    after: fwd 1.28 -> 1.06, 1.17 -> 1.03 (two runs) at 56 px k3, 1.10 -> 0.94, 1.05 -> 0.93 at
    28 px, 1.35 -> 1.19, 1.35 -> 1.18 at 14 px, 1.06 -> 0.96 at 56 px k7; dx 1.10 -> 0.99 /
    1.13 -> 0.98 / 1.60 -> 1.32 / 0.98 -> 0.91. What stays at 14 px: the one 16-lane tile
    computes 2 dead lanes per row (the static build: exact 8 + 4 + 2 segments) and the partial
    piece stores 6 lanes scalar. The same guard on the strided dx's 'out' (8- or 4-pixel
    pieces of its 16-pixel rows) made it slower (1.79 -> 2.04 / 1.95 at 28 px s2, 0.98 -> 1.09
    / 1.17 at 56 px s2: LLVM interleaves the phases of a whole 16-pixel row better).

    ``shift`` (DDF fwd / dx): a partial piece other than its loop's first stores, instead of
    lane by lane, the whole vector ending at the row's end: its lane loop starts n - k lanes
    early for k live lanes (one branch per k in 1..n-1, so each has constant offsets into the
    tile), rewriting the previous piece's last lanes with the same values. The window stays
    within the pieces the loop covers (one tile: the same registers). Needs the one lane
    conjunct ``a < b`` with a unit lane coefficient; else the predicated piece stays."""
    if pieces is None:
        return
    loop = sch.get(pieces)
    ana = loop_analyzer(sch, block, stop=loop)
    inner = {}
    stmt = loop.body
    while isinstance(stmt, tirx.For):  # the tile's unrolled (channel, row) loops, the lanes
        inner[stmt.loop_var] = sym.IntervalSet(stmt.min, stmt.min + stmt.extent - 1)
        lane, n = stmt.loop_var, stmt.extent
        stmt = stmt.body
    realize = stmt
    whole, anyl, keep = [], [], []
    for c in conjuncts(realize.predicate):
        if not any(v.same_as(lane) for v in tirx.analysis.undefined_vars(c)):
            if not ana.can_prove(c):
                keep.append(c)
            continue
        if not isinstance(c, tirx.LT):
            whole = []
            break
        span, c_lane = ana.int_set(c.a - c.b, inner), c
        whole.append(ana.simplify(span.max_value < 0))
        anyl.append(ana.simplify(span.min_value < 0))
    if not whole:  # no lane bound, or one this guard does not read: cut the loop instead
        split_tail(sch, pieces)
        return
    clean = with_predicate(loop.body, all_of(keep))
    part = loop.body
    if shift and len(whole) == 1:
        n = int(n)
        span = ana.int_set(c_lane.a - c_lane.b, {lane: inner[lane]})
        if ana.can_prove(span.max_value - span.min_value == n - 1):  # unit lane coefficient
            live = ana.simplify(-span.min_value)  # lanes of the piece inside the row
            last = loop.min + loop.extent - 1  # the loop's last piece, shifted back k - n lanes
            for k in range(n - 1, 0, -1):
                ok = tirx.And(loop.loop_var == last, live == k)
                values = {loop.loop_var: last, lane: lane + (k - n)}
                part = tirx.IfThenElse(ok, with_predicate(loop.body, all_of(keep), values), part)
    guarded = tirx.IfThenElse(all_of(whole), clean, tirx.IfThenElse(all_of(anyl), part, None))
    new = tirx.For(loop.loop_var, loop.min, loop.extent, tirx.ForKind.UNROLLED, guarded)
    sch.state.replace(sch.get_sref(pieces), new, {})
    # whether the loop's last piece holds a lane of the row (for :func:`halve_last_tile`)
    return ana.simplify(substitute(all_of(anyl), {loop.loop_var: loop.min + loop.extent - 1}))


def halve_last_tile(sch, tile, live, lanes: int, half: int) -> None:
    """A generic CPU register tile's loop ``tile`` (one iteration: the tile's init, its tap
    loops and 'out''s guarded pieces, :func:`guard_pieces`) with each iteration where
    ``live`` (the tile's last piece holds a lane of the row, :func:`guard_pieces`' return)
    is false running a copy of the body whose vectorized ``lanes``-wide loops (the init's
    and the update's) cover their first ``half`` lanes only: the dead ones were computed for
    nothing (DDF fwd at rows of W mod 16 in 1..8: 56 px computed 64). The tile buffer keeps
    its layout; 'out''s pieces past ``half`` lanes are already skipped there (their guard is
    ``live``). Runs last, after :func:`guard_pieces` (the loop then holds its blocks twice)."""
    if live is None:
        return
    loop = sch.get(tile)

    def narrow(st):
        if isinstance(st, tirx.For):
            short = st.kind == tirx.ForKind.VECTORIZED and isinstance(st.extent, tirx.IntImm) and int(st.extent) == lanes
            return tirx.For(st.loop_var, st.min, half if short else st.extent, st.kind, narrow(st.body),
                            st.thread_binding, st.annotations)
        if isinstance(st, tirx.SeqStmt):
            return tirx.SeqStmt([narrow(x) for x in st.seq])
        if isinstance(st, tirx.IfThenElse):
            return tirx.IfThenElse(st.condition, narrow(st.then_case),
                                   None if st.else_case is None else narrow(st.else_case))
        return st

    body = tirx.IfThenElse(live, loop.body, renamed(narrow(loop.body)))
    sch.state.replace(sch.get_sref(tile), tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, body,
                                                   loop.thread_binding, loop.annotations), {})


def loop_analyzer(sch, block: str, stop=None, ana=None) -> sym.Analyzer:
    """An analyzer (``ana``, with what it already knows: sizes bound first, or a new one) with
    the ranges of ``block``'s loops bound, outermost first, up to (not including) the loop
    ``stop`` (a ``tirx.For``; None: all of them)."""
    ana = sym.Analyzer() if ana is None else ana
    for outer in sch.get_loops(sch.get_sblock(block)):
        o = sch.get(outer)
        if stop is not None and o.same_as(stop):
            break
        ana.bind(o.loop_var, ir.Range.from_min_extent(o.min, o.extent))
    return ana


def conjuncts(pred) -> list:
    """The conjuncts of predicate ``pred`` (its ``And`` tree flattened)."""
    out, todo = [], [pred]
    while todo:
        e = todo.pop()
        if isinstance(e, tirx.And):
            todo += [e.a, e.b]
        else:
            out.append(e)
    return out


def all_of(conds):
    """The conjunction of ``conds`` (True where there are none)."""
    out = None
    for c in conds:
        out = c if out is None else tirx.And(out, c)
    return tirx.const(True, "bool") if out is None else out


def map_realizes(st, fn):
    """Statement ``st`` (loops, sequences, conditions) with each block realize replaced by fn(it)."""
    if isinstance(st, tirx.For):
        return tirx.For(st.loop_var, st.min, st.extent, st.kind, map_realizes(st.body, fn), st.thread_binding,
                        st.annotations)
    if isinstance(st, tirx.SeqStmt):
        return tirx.SeqStmt([map_realizes(x, fn) for x in st.seq])
    if isinstance(st, tirx.IfThenElse):
        return tirx.IfThenElse(st.condition, map_realizes(st.then_case, fn),
                               None if st.else_case is None else map_realizes(st.else_case, fn))
    if isinstance(st, s_tir.SBlockRealize):
        return fn(st)
    raise TypeError(f"not mapped: {type(st).__name__}")


def renamed(st, values=None):
    """Statement ``st`` (loops, sequences, conditions over block realizes) with new variables
    for its loops and the variables in ``values`` ({var: expression}) replaced: a copy of a
    nest that may stand in the IR beside the original (TVM binds a loop variable once)."""
    values = dict(values or {})
    if isinstance(st, tirx.For):
        v = tirx.Var(st.loop_var.name, str(st.loop_var.ty))
        return tirx.For(v, substitute(st.min, values), substitute(st.extent, values), st.kind,
                        renamed(st.body, {**values, st.loop_var: v}), st.thread_binding, st.annotations)
    if isinstance(st, tirx.SeqStmt):
        return tirx.SeqStmt([renamed(x, values) for x in st.seq])
    if isinstance(st, tirx.IfThenElse):
        return tirx.IfThenElse(substitute(st.condition, values), renamed(st.then_case, values),
                               None if st.else_case is None else renamed(st.else_case, values))
    if isinstance(st, s_tir.SBlockRealize):
        return s_tir.SBlockRealize([substitute(x, values) for x in st.iter_values], substitute(st.predicate, values),
                                   st.block)
    raise TypeError(f"not renamed: {type(st).__name__}")


def realizes(st) -> list:
    """The block realizes in statement ``st``, in order."""
    out = []
    map_realizes(st, lambda r: out.append(r) or r)
    return out


def with_predicate(stmt, pred, values=None):
    """``stmt`` (loops over block realizes) with each realize's predicate ``pred`` (and, given
    ``values``, {loop var: expression}, its bindings with those substituted)."""
    return map_realizes(stmt, lambda r: s_tir.SBlockRealize(
        [substitute(v, values) for v in r.iter_values] if values else r.iter_values, pred, r.block))


def substitute(e, values, load=None, node=None):
    """Expression ``e`` (integer arithmetic of loop variables: a block binding; with ``load``
    also a block's stored value: arithmetic, casts and tensor loads) with the variables in
    ``values`` replaced and each tensor load replaced by ``load(it)``; with ``node``, each
    subexpression for which ``node(it)`` is not None replaced by that. Raises TypeError at an
    expression kind it does not know."""
    if node is not None and (x := node(e)) is not None:
        return x
    if isinstance(e, tirx.Var):
        return next((x for v, x in values.items() if v.same_as(e)), e)
    if load is not None and isinstance(e, ir.expr.TensorLoad):
        return load(e)
    if isinstance(e, (tirx.Add, tirx.Sub, tirx.Mul, tirx.Div, tirx.FloorDiv, tirx.FloorMod, tirx.Min, tirx.Max,
                      tirx.LT, tirx.LE, tirx.GT, tirx.GE, tirx.EQ, tirx.NE, tirx.And, tirx.Or)):
        return type(e)(substitute(e.a, values, load, node), substitute(e.b, values, load, node))
    if isinstance(e, tirx.Select):  # (the analyzer's bound of a padded height: ops.acda FWD_ROWS)
        return tirx.Select(*(substitute(x, values, load, node) for x in (e.condition, e.true_value, e.false_value)))
    if isinstance(e, tirx.Cast):
        return tirx.Cast(e.ty, substitute(e.value, values, load, node))
    if isinstance(e, (tirx.IntImm, tirx.FloatImm)):
        return e
    raise TypeError(f"not substituted: {type(e).__name__}")


# -- generic (symbolic-shape) CUDA builds: stages of constant, sane size -----------------------
# Where TVM cannot bound a stage's region over a symbolic extent, it may size it by the
# variable's int32 range: 2,147,483,647 elements, a literal that a check for constants accepts
# and no launch can hold (acda_cuda's dx docstring: a thread's atoms, at several rows per block). A
# stage's bytes past these limits are such a bound, not a tile. (Compacted here, a local stage
# still spans the block's thread-bound loops: one of the generic ACDA fwd's takes 1 x 64 x 6 x
# 1 x 8 words, 12 KB, at the benchmark shape, where its CUDA source keeps no local array.)
MAX_SHARED_STAGE_BYTES = 227 * 1024  # the most shared memory a CUDA block may have (sm_90's opt-in; sm_80: 163 KB)
MAX_LOCAL_STAGE_BYTES = 256 * 1024  # an SM's register file (65,536 x 4 B): no block's registers hold more
_COMPACTION = ("LowerInitBlock", "PlanAndUpdateBufferAllocationLocation", "ConvertBlocksToOpaque",
               "CompactBufferAllocation", "LowerOpaqueBlock")


def stage_allocations(mod) -> list:
    """(scope, shape, dtype) of each shared / local stage of scheduled ``mod`` once TVM compacts
    the buffers (the passes of its lowering that size them), read off the printed allocations
    (this TVM's Python API has no statement visitor): shape a tuple of ints, or None where an
    extent is not a literal (symbolic)."""
    for name in _COMPACTION:
        mod = getattr(s_tir.transform, name)()(mod)
    out = []
    for scope, shape, dtype in re.findall(r'T\.alloc_(shared|local)\(\(([^)]*)\)(?:, "(\w+)")?', mod.script()):
        dims = [d.strip() for d in shape.split(",") if d.strip()]
        out.append((scope, tuple(int(d) for d in dims) if all(d.isdigit() for d in dims) else None,
                    dtype or "float32"))
    return out


def sane_stage(scope: str, shape, dtype: str) -> bool:
    """Whether a compacted stage (``stage_allocations``) has a constant size that a launch can
    hold: at most MAX_SHARED_STAGE_BYTES (shared) or MAX_LOCAL_STAGE_BYTES (local) per block."""
    if shape is None:
        return False
    bits = re.fullmatch(r"[a-z]*?(\d+)?(?:x(\d+))?", dtype)  # e.g. float16x4: 16 bits x 4 lanes
    size = max(1, int(bits[1] or 8) // 8) * int(bits[2] or 1) if bits else 8
    for d in shape:
        size *= d
    return size <= (MAX_SHARED_STAGE_BYTES if scope == "shared" else MAX_LOCAL_STAGE_BYTES)


def constant_stages(mod) -> bool:
    """Whether scheduled ``mod`` has stages and every one compacts to a constant, sane size
    (``sane_stage``): a generic build's tiled schedule applies only then."""
    stages = stage_allocations(mod)
    return bool(stages) and all(sane_stage(*s) for s in stages)


def if_constant(sch: s_tir.Schedule, apply, guard: bool = False) -> bool:
    """Generic kernels: ``apply`` (a tiled schedule; False where it declines) to ``sch`` only
    if, tried on a copy first, it schedules and its stages compact to a constant, sane size
    (``constant_stages``); False (``sch`` untouched) otherwise, and the caller takes its
    fall-back schedule. ``guard``: a RuntimeError or ValueError of TVM on the trial (a
    ScheduleError, its region arithmetic overflowing int32) counts as not constant."""
    trial = s_tir.Schedule(sch.mod)
    try:
        if apply(trial) is False or not constant_stages(trial.mod):
            return False
    except (RuntimeError, ValueError):  # (tvm.error.TVMError is a RuntimeError)
        if not guard:
            raise
        return False
    apply(sch)
    return True
