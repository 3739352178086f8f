"""Loop helpers shared by the default schedules.

Schedules work on each reduction block's own, complete loop nest (``compute_at`` drops
unit-extent loops, so positions would shift), then move the cast stage ('out') into it.
"""
from __future__ import annotations

import tvm.s_tir as s_tir


def vector_lanes(dtype: str) -> int:
    """Lanes per vector for the accumulation type (float32 for half types)."""
    return 4 if dtype == "float64" else 8


def vectorize_inner(sch: s_tir.Schedule, block, lanes: int, under=None) -> None:
    """Split the innermost loop of ``block`` (a name or SBlockRV) into vectors; with ``under``,
    only a loop strictly inside that one (``compute_at`` drops unit loops, so a one-element
    stage may have none left of its own)."""
    if isinstance(block, str):
        block = sch.get_sblock(block)
    inner = sch.get_loops(block)[-1]
    if under is not None and sch.get(inner).same_as(sch.get(under)):
        return
    _, xi = sch.split(inner, [None, lanes])
    sch.vectorize(xi)


def unroll(sch: s_tir.Schedule, *loops) -> None:
    for loop in loops:
        sch.unroll(loop)


def bind_1d(sch: s_tir.Schedule, loop, threads: int):
    """Split ``loop`` over blockIdx.x / threadIdx.x."""
    bx, tx = sch.split(loop, [None, threads])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    return bx, tx


def vectorize_under(sch: s_tir.Schedule, block, loop) -> None:
    """Vectorize the innermost loop of ``block`` if one remains strictly inside ``loop``."""
    inner = sch.get_loops(block)[-1]
    if not sch.get(inner).same_as(sch.get(loop)):
        sch.vectorize(inner)
