"""Build one workload for one target: schedule (tuned record, else default), compile, check.

This is the only place that turns a :class:`Workload` into machine code; the cache, the
tuner and the AOT compiler all call :func:`build`.
"""
from __future__ import annotations

import sys
from typing import Callable, Optional, Tuple

import tvm
from tvm.target import Target

import schedules

from . import registry, tuning_log
from .target import family
from .workload import Workload

# Where tuned schedules come from: returns a scheduled IRModule and a text identifying the
# record, or None when no usable record exists for (workload, target). By default the tuning
# logs (``tuning_log.lookup``: $DYNFILTER_TVM_TUNING_LOGS, the user folder, then the shipped tuning_logs/);
# None means default schedules only.
TunedLookup = Callable[[Workload, Target], Optional[Tuple[tvm.IRModule, str]]]
tuned_lookup: Optional[TunedLookup] = tuning_log.lookup


class BuildError(RuntimeError):
    pass


def compute_digest(workload: Workload) -> str:
    """Hash of the code of the module holding the op's compute definitions and of the shared
    TE helpers they use (comments and docstrings left out)."""
    fn_module = registry.compute_fn(workload).__module__
    return schedules.code_digest(sys.modules[fn_module], sys.modules["dynfilter_tvm.ops.common"])


def plan(workload: Workload, target: Target, tuned: bool = True) -> Tuple[str, Callable[[], tvm.IRModule]]:
    """The schedule for (workload, target): a text naming it (goes into cache keys) and a
    function that applies it, so a cache hit never schedules. ``tuned=False``: the default
    schedule even where a tuned record exists."""
    if tuned and tuned_lookup is not None:
        found = tuned_lookup(workload, target)
        if found is not None:
            mod, record_id = found
            return record_id, lambda: mod
    fn = schedules.lookup(workload.op, workload.kernel, family(target))
    return "default:" + schedules.source_digest(fn), lambda: tuning_log.default_module(workload, target)


def schedule(workload: Workload, target: Target, tuned: bool = True) -> Tuple[tvm.IRModule, str]:
    """The scheduled module and the text naming the schedule used."""
    schedule_id, apply = plan(workload, target, tuned)
    return apply(), schedule_id


def _check_device_code(lib, target: Target, workload: Workload) -> None:
    if target.kind.name == "cuda" and not list(lib.mod.imports):
        raise BuildError(
            f"{workload} built for CUDA without device code: the schedule left it unbound "
            "to GPU threads (TVM then silently emits host-only code)")


def build(workload: Workload, target: Target, mod: Optional[tvm.IRModule] = None):
    """Compile ``workload`` for ``target`` (with ``mod`` if already scheduled)."""
    if mod is None:
        mod, _ = schedule(workload, target)
    with target:  # CUDA's compile callback reads the arch from the current target
        lib = tvm.compile(mod, target=target)
    _check_device_code(lib, target, workload)
    return lib
