"""Default (untuned) schedules, one module per operator and target family.

A schedule function takes an ``s_tir.Schedule`` over the kernel's PrimFunc, the workload and
the target, and transforms loops only: it must never change results. Registered with
:func:`register`; :func:`default_schedule` finds the one for a workload's kernel and target.
"""
from __future__ import annotations

import hashlib
import inspect
import sys
from typing import Callable, Dict, Tuple

import tvm.s_tir as s_tir

ScheduleFn = Callable[[s_tir.Schedule, object, object], None]
_SCHEDULES: Dict[Tuple[str, str, str], ScheduleFn] = {}


def register(op: str, kernel: str, family: str) -> Callable[[ScheduleFn], ScheduleFn]:
    def wrap(fn: ScheduleFn) -> ScheduleFn:
        _SCHEDULES[(op, kernel, family)] = fn
        return fn

    return wrap


def lookup(op: str, kernel: str, family: str) -> ScheduleFn:
    try:
        return _SCHEDULES[(op, kernel, family)]
    except KeyError:
        raise KeyError(f"no default {family} schedule for {op}.{kernel}") from None


def source_digest(fn: ScheduleFn) -> str:
    """Hash of the source of the module holding ``fn`` and of the shared helpers: any edit to
    a schedule changes the cache key of the kernels it builds."""
    h = hashlib.sha256()
    for mod in (sys.modules[fn.__module__], sys.modules[__name__ + ".common"]):
        h.update(inspect.getsource(mod).encode())
    return h.hexdigest()[:16]


from . import acda_cpu, acda_cuda, ddf_cpu, ddf_cuda, pac_cpu, pac_cuda  # noqa: E402,F401  (register the defaults)
