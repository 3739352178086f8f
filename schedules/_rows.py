"""Generic (symbolic-row) CPU copies as whole vectors: a padded or widened copy's row as
vectors and one overlapping last vector, instead of TVM's predicated last tile, which its
vectorizer runs scalar (a compare and a branch per pixel). Rewrites of the scheduled IR:
they run last."""
from __future__ import annotations

import tvm.s_tir as s_tir
from tvm import ir, sym, tirx

from .common import all_of, conjuncts, loop_analyzer, map_realizes, realizes, renamed, substitute


def _row_analyzer(sch, block: str, nonempty=()):
    """An analyzer with ``block``'s loops bound, and the condition it assumes: the sizes
    ``nonempty`` (expressions of the symbolic sizes: the copied array's shape) at least 1,
    each variable bound from the least value at which the sizes that hold it alone are
    provably so (W >= 3 for an unpadded k = 3 row, (W - 3) // s + 1). TVM does not know a
    size positive, so where a copy's region comes from a loop of ceil(W / lanes) tiles it
    clamps for W <= 0 (ACDA datoms' dOpad: x = min(0, (W + 7) // 8 * 8 - 1) + i), forms the
    rewrites below do not take; under the condition those clamps simplify away, and the
    caller keeps the nest as it was for the other case."""
    loops = [sch.get(lp) for lp in sch.get_loops(sch.get_sblock(block))]
    least = []  # [variable, least value]
    for e in nonempty:
        free = [v for v in tirx.analysis.undefined_vars(e) if not any(v.same_as(o.loop_var) for o in loops)]
        for v in free:
            if not any(v.same_as(u) for u, _ in least):
                least.append([v, 1])
        if len(free) == 1:
            entry = next(x for x in least if x[0].same_as(free[0]))
            entry[1] = _least(e >= 1, free[0], entry[1])
    ana = sym.Analyzer()
    for v, lo in least:  # first: the loops' ranges are bounded through them
        ana.bind(v, ir.Range.from_min_extent(lo, 1 << 30))
    return loop_analyzer(sch, block, ana=ana), all_of([v >= lo for v, lo in least])


def _proves(cond, v, lo: int) -> bool:
    ana = sym.Analyzer()
    ana.bind(v, ir.Range.from_min_extent(lo, 1 << 30))
    return ana.can_prove(cond)


def _least(cond, v, lo: int) -> int:
    """The least value from ``lo`` up from which ``cond`` (growing with ``v``) is proven: a
    doubling search, then bisection."""
    hi = lo
    while not _proves(cond, v, hi):
        if hi > 1 << 28:
            raise ValueError(f"no size makes {cond} hold")
        hi *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _proves(cond, v, mid) else (mid + 1, hi)
    return lo


def _mods_bound(e, ana):
    """``e`` with each ``a mod b`` a new variable that ``ana`` bounds to [0, b): the analyzer
    does not prove y mod H < H for a symbolic H (a row of a fused batch x height loop)."""
    def bound(m):
        if not isinstance(m, tirx.FloorMod):
            return None
        r = tirx.Var("r", str(m.ty))
        ana.bind(r, ir.Range.from_min_extent(0, m.b))
        return r
    try:
        return substitute(e, {}, node=bound)
    except TypeError:  # an expression kind substitute does not walk: left as it is (unproven)
        return e


def _simplified(realize, ana):
    """``realize`` with its bindings simplified by ``ana`` and the predicate conjuncts it
    proves dropped (the others simplified)."""
    keep = [ana.simplify(c) for c in conjuncts(realize.predicate)]
    return s_tir.SBlockRealize([ana.simplify(v) for v in realize.iter_values],
                               all_of([c for c in keep if not ana.can_prove(_mods_bound(c, ana))]), realize.block)


def overlap_rows(sch, loop, lanes: int, border=None, nonempty=()) -> None:
    """A generic padded copy's row loop ``loop`` (the interior, a plain loop over a symbolic
    row of n pixels, one block inside) as whole ``lanes``-wide vectors, then, where n is not
    a multiple of ``lanes``, one more vector ending at the row's end (it overlaps the last
    whole one and stores the same values again: a copy between two buffers, so the result is
    unchanged), or a scalar loop for rows under ``lanes``. The block's predicate conjuncts
    ``x + c < e`` (or ``<=``) become the loop's extent (``min``), others stay unless the loops' ranges prove
    them. Replaces the loop in the IR (the block then sits in it three times, as with
    :func:`guard_pieces`), so this runs last; leaves the loop as it was where the row enters
    the block otherwise than as one of its variables.

    Why (perf, generic fwd at 2x256x14² k3): X's interior copy was 32% of the kernel's samples
    (the static build's copy ~9%): LLVM's vectorisation of the plain row loop runs a 4-lane
    remainder loop and a scalar one per row (14 px: 3 x 4 + 2, each with its trip-count tests,
    about 35 instructions a row), where the static build copies a row as 8 + 4 + 2 at
    constant offsets; now one 8-lane vector and an overlapping one. Same process (static and
    both generic builds interleaved, thread time, 11 repeats), generic / static: fwd 1.19 ->
    1.10 at 14², 0.90 -> 0.88 at 28², 1.03 -> 1.03 at 56², 0.98 -> 0.95 at k7; dx (dO's copy)
    1.34 -> 1.23, 1.26 -> 1.14 at 14², 1.01 -> 0.97 at 56², 0.85 -> 0.87 at k7; the main and
    this tree's builds exported and timed in one process (15 repeats): fwd 1.18 -> 1.01, dx
    1.33 -> 1.19 at 14², fwd 0.93 -> 0.87, dx 0.94 -> 0.89 at 28². Tried and
    dropped: 16-lane copy vectors (14 px rows then all scalar: 1.30), the zero fill as whole
    vectors and an overlapping last one (1.14, 0.99 against 1.10, 0.93 at 14², 28²), the fill's
    loops fused per plane (15-18x slower in fwd; dc's X copy, 3-5x: the fused fill's index,
    once the plane's buffer was compacted around this copy, no longer simplified to the
    loop's, so each lane computed its row and column with two divisions and stored alone).

    The first whole vector stands apart from the loop over the others (perf, generic dx at
    2x256x14² k3: per 14 px row LLVM's 8-times unrolled loop took its setup, a branch to its
    remainder loop and that loop's ~14 instructions for one vector; now ~5 and a skipped
    loop). With :func:`ddf_cpu._border_fill`'s fixed right pad, same process (main's and this build,
    interleaved, 15 repeats, three processes), generic / static dx 1.38 / 1.34 / 1.70 -> 1.10
    / 1.25 / 1.54 at 2x256x14² k3 (28², 56², k7 unchanged within 0.05); fwd (X's copy)
    0.99 / 1.06 / 1.03 -> 0.94 / 1.03 / 1.01 at 14², 28², 56² and k7 unchanged or lower;
    three more processes: dx 1.45 / 1.39 / 1.35 -> 1.33 / 1.22 / 1.21 at 14² (28² 0.97-0.98 ->
    0.92-0.99), fwd 1.16 / 1.14 / 1.10 -> 0.98 / 1.09 / 1.05 at 14². What then stayed at 14²,
    the dx tile going through memory for 'out''s shifted last piece, was its heap workspace
    (:func:`ddf_cpu._pair_layout`).

    ``border`` (DDF's dx dO and stride-1 X, :func:`ddf_cpu._border_fill`): given the copy's
    realize and predicate, the statements that store the data rows' pads in this row loop
    before the copy (the zero fill then left to the rows above and below the data) and a
    function that rewrites the fill, or None. ``nonempty``: the copied array's sizes, which
    the rewrite may assume at least 1 (:func:`_row_analyzer`)."""
    if loop is None:
        return
    f = sch.get(loop)
    realize = f.body
    if not isinstance(realize, s_tir.SBlockRealize) or isinstance(f.extent, tirx.IntImm):
        return
    ana, sizes = _row_analyzer(sch, realize.block.name_hint, nonempty)
    if nonempty:
        realize = _simplified(realize, ana)
    x, n, dt = f.loop_var, ana.simplify(f.extent) if nonempty else f.extent, str(f.loop_var.ty)
    conj = []
    for e in conjuncts(realize.predicate):
        off = ana.simplify(e.a - x) if isinstance(e, (tirx.LT, tirx.LE)) else None
        if off is not None and not any(v.same_as(x) for v in tirx.analysis.undefined_vars(off)):
            n = ana.simplify(tirx.min(n, e.b - off + (1 if isinstance(e, tirx.LE) else 0)))  # the row's end
        elif not ana.can_prove(e):
            conj.append(e)
    if any(v.same_as(x) for c in conj for v in tirx.analysis.undefined_vars(c)):
        return  # a bound over the row of another form: the plain loop stays

    if any(not v.same_as(x) and any(u.same_as(x) for u in tirx.analysis.undefined_vars(v))
           for v in realize.iter_values):
        return  # the row bound other than as the block's variable itself

    def piece(start, extent, kind):
        xi = tirx.Var("xi", dt)
        values = [start + xi if v.same_as(x) else v for v in realize.iter_values]
        return tirx.For(xi, tirx.const(0, dt), extent, kind, s_tir.SBlockRealize(values, all_of(conj), realize.block))

    xo = tirx.Var("xo", dt)
    m = tirx.const(lanes, dt)
    # the first whole vector apart from the loop over the others: short rows (14 px: one
    # whole vector) then skip LLVM's unrolled loop's setup and remainder loop
    whole = tirx.IfThenElse(n >= m, tirx.SeqStmt([
        piece(tirx.const(0, dt), m, tirx.ForKind.VECTORIZED),
        tirx.For(xo, tirx.const(1, dt), tirx.floordiv(n, m) - 1, tirx.ForKind.SERIAL,
                 piece(xo * m, m, tirx.ForKind.VECTORIZED))]), None)
    tail = tirx.IfThenElse(tirx.floormod(n, m) != tirx.const(0, dt), tirx.IfThenElse(
        n >= m, piece(n - m, m, tirx.ForKind.VECTORIZED), piece(tirx.const(0, dt), n, tirx.ForKind.SERIAL)), None)
    border = border(realize, all_of(conj)) if border else None
    sides, fill_rows = border if border else ([], None)
    rows = tirx.SeqStmt([*sides, whole, tail])
    if nonempty:  # the plain loop for sizes under those assumed
        rows = tirx.IfThenElse(sizes, rows, f)
    one = tirx.For(tirx.Var("row", dt), tirx.const(0, dt), tirx.const(1, dt), tirx.ForKind.SERIAL,
                   rows)  # a loop, as the replaced statement must be
    sch.state.replace(sch.get_sref(loop), one, {})
    if fill_rows is not None:
        fill_rows()


def widened_rows(sch, name: str, at, lanes: int, nonempty: bool = False) -> None:
    """A generic build's widened copy ``name`` (rows of w pixels extended by zeros to wq, whole
    ROW_QUANTUM: ds's and dc's 'dOpad') next to the loop ``at``: per row, the zeros as vectors
    counted back from the row's end (those past w: one vector where ``lanes`` = ROW_QUANTUM),
    then the row's pixels as whole vectors and an overlapping last one (:func:`overlap_rows`),
    which overwrite what the zeros overlap. Was one pass of whole vectors with the row's
    last vector predicated, which TVM's vectorizer runs scalar: a compare and a branch per
    pixel (perf). ``nonempty``: the rewrite assumes the source's sizes positive, the nest
    as it was kept for the other case (:func:`_row_analyzer`)."""
    blk = sch.get_sblock(name)
    sch.compute_at(blk, at)
    fill = sch.decompose_padding(blk, sch.get_loops(blk)[-1])  # per row: the zeros, then the copy
    f = sch.get(sch.get_loops(fill)[-1])
    fb = sch.get(fill)
    wide, src = fb.writes[0].source.shape, sch.get(blk).reads[0].source.shape
    ana, sizes = _row_analyzer(sch, fb.name_hint, src if nonempty else ())
    realize = _simplified(f.body, ana)
    x = f.loop_var
    if len(wide) != len(src) or not realize.iter_values[-1].same_as(x):
        raise ValueError(f"{name}: not a copy widened along its rows (shape {list(wide)} of {list(src)})")
    # a copy padded along other axes too (ACDA's dOpad: whole pairs of rows) qualifies where
    # 'at' places none of those padding rows here (the zeros below fill the rows' ends only)
    binds = {iv.var: v for iv, v in zip(fb.iter_vars, realize.iter_values)}
    for a, b, r in zip(wide[:-1], src[:-1], fb.writes[0].region[:-1]):
        if not (ana.can_prove_equal(a, b) or ana.can_prove(_mods_bound(substitute(r.min + r.extent, binds), ana) <= b)):
            raise ValueError(f"{name}: writes padding past the rows here (shape {list(wide)} of {list(src)})")
    wq, w = wide[-1], src[-1]
    dt = str(x.ty)
    m, j, xi = tirx.const(lanes, dt), tirx.Var("j", dt), tirx.Var("xi", dt)
    start = tirx.max(wq - (j + 1) * m, 0)  # the j-th vector back from the row's end
    values = [start + xi if v.same_as(x) else v for v in realize.iter_values]
    count = tirx.floordiv(wq - w + m - 1, m)
    # the fill's own bound on the row (float64 tiles of 4 cover less than a row of whole 8):
    # proven over the zeros' range, else kept (a predicated vector: right, if slower)
    ana.bind(j, ir.Range.from_min_extent(0, count))
    ana.bind(xi, ir.Range.from_min_extent(0, m))
    pred = all_of([c for c in conjuncts(substitute(realize.predicate, {x: start + xi}))
                   if not ana.can_prove(_mods_bound(c, ana))])
    zeros = tirx.For(j, tirx.const(0, dt), count, tirx.ForKind.SERIAL, tirx.For(
        xi, tirx.const(0, dt), m, tirx.ForKind.VECTORIZED, s_tir.SBlockRealize(values, pred, realize.block)))
    if nonempty:  # the fill as it was for sizes under those assumed
        zeros = tirx.For(tirx.Var("row", dt), tirx.const(0, dt), tirx.const(1, dt), tirx.ForKind.SERIAL,
                         tirx.IfThenElse(sizes, zeros, f))
    sch.state.replace(sch.get_sref(sch.get_loops(fill)[-1]), zeros, {})
    overlap_rows(sch, sch.get_loops(blk)[-1], lanes, nonempty=src if nonempty else ())


def overlap_tiles(sch, loop, lanes: int, n, nonempty=()) -> None:
    """A generic build's loop ``loop`` over the ``lanes``-wide tiles of a symbolic row of ``n``
    pixels (extent ceil(n / lanes); each pixel's value computed and stored whole inside one
    tile, so a tile computed twice stores the same values again) as n // lanes whole tiles,
    then, where n is not a multiple of ``lanes``, one whole tile ending at the row's end (it
    overlaps the last whole one), or the old predicated tile for rows under ``lanes``. Was
    LoopPartition's tail: one tile, predicated, which TVM's vectorizer runs lane by lane.

    Every binding and predicate in the tile must be affine in the tile index with step
    ``lanes`` (else the loop stays as it was). A predicate conjunct over the row is linear in
    the tile's start t, so its truth set is an interval of t: where it holds at t = 0 and
    t = n - lanes (proven under n >= lanes, the tile's own loops and the enclosing ones bound)
    it holds for every whole tile and is dropped. A rewrite of the scheduled IR: runs last.
    ``nonempty``: sizes the proofs may take as >= 1 (:func:`_row_analyzer`), the nest kept as
    it was for the other case."""
    f = sch.get(loop)
    if isinstance(n, tirx.IntImm) or isinstance(f.extent, tirx.IntImm):
        return
    inner = realizes(f.body)
    if not inner:
        return
    ana, sizes = _row_analyzer(sch, inner[0].block.name_hint, nonempty)
    xo, dt = f.loop_var, str(f.loop_var.ty)
    t = tirx.Var("t", dt)
    m = tirx.const(lanes, dt)

    def at_start(e):  # e with xo * lanes as t; None where e is not affine in xo with that step
        e0 = substitute(e, {xo: tirx.const(0, dt)})
        d = ana.simplify(e - e0)
        if isinstance(d, tirx.IntImm) and d.value == 0:
            return e
        return e0 + t if ana.can_prove_equal(d, xo * m) else None

    def loops_free(st):  # no inner loop's bounds depend on xo
        if isinstance(st, tirx.For):
            return not any(v.same_as(xo) for e in (st.min, st.extent) for v in tirx.analysis.undefined_vars(e)) \
                and loops_free(st.body)
        if isinstance(st, tirx.SeqStmt):
            return all(loops_free(s) for s in st.seq)
        if isinstance(st, tirx.IfThenElse):
            return False  # (not expected inside a tile before lowering)
        return True

    def bind_loops(st, a):
        if isinstance(st, tirx.For):
            a.bind(st.loop_var, ir.Range.from_min_extent(st.min, st.extent))
            bind_loops(st.body, a)
        elif isinstance(st, tirx.SeqStmt):
            for s in st.seq:
                bind_loops(s, a)

    if not loops_free(f.body):
        return
    bind_loops(f.body, ana)
    failed = []

    def tile(r):
        values = [at_start(v) for v in r.iter_values]
        keep = []
        for c in conjuncts(r.predicate):
            if not isinstance(c, (tirx.LT, tirx.LE, tirx.GT, tirx.GE)):
                ct = c if not any(v.same_as(xo) for v in tirx.analysis.undefined_vars(c)) else None
            else:
                a, b = at_start(c.a), at_start(c.b)
                ct = None if a is None or b is None else type(c)(a, b)
            if ct is None:
                failed.append(c)
                return r
            with ana.constraint_scope(ana.simplify(n >= m)):  # (simplified: 6 <= W, not W + 2 >= 8)
                ends = [_mods_bound(ana.simplify(substitute(ct, {t: s})), ana) for s in (tirx.const(0, dt), n - m)]
                if not all(ana.can_prove(e) for e in ends):
                    keep.append(ct)
        if any(v is None for v in values):
            failed.append(r)
            return r
        return s_tir.SBlockRealize(values, all_of(keep), r.block)

    body = map_realizes(f.body, tile)
    if failed:
        return
    x2 = tirx.Var(xo.name, dt)
    whole = tirx.For(x2, tirx.const(0, dt), tirx.floordiv(n, m), tirx.ForKind.SERIAL, renamed(body, {t: x2 * m}))
    tail = tirx.IfThenElse(tirx.floormod(n, m) != tirx.const(0, dt), tirx.IfThenElse(
        n >= m, renamed(body, {t: n - m}), renamed(f.body, {xo: tirx.const(0, dt)})), None)
    rows = tirx.SeqStmt([whole, tail])
    if nonempty:
        rows = tirx.IfThenElse(sizes, rows, renamed(f))
    one = tirx.For(tirx.Var("tiles", dt), tirx.const(0, dt), tirx.const(1, dt), tirx.ForKind.SERIAL, rows)
    sch.state.replace(sch.get_sref(loop), one, {})
