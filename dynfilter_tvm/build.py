"""Build one workload for one target: schedule (tuned record, else default), compile, check.

This is the only place that turns a :class:`Workload` into machine code; the cache, the
tuner and the AOT compiler all call :func:`build`.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, Dict, Optional, Tuple

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
        lib = tvm.compile(mod, target=target, tir_pipeline=TIR_PIPELINE)
    _check_device_code(lib, target, workload)
    return lib


# -- __launch_bounds__(threads, min blocks per SM) for CUDA kernels whose schedule asks ----------
def _asked_blocks(mod) -> Dict[str, int]:
    """{global symbol: blocks} of the module's functions whose schedule asked
    (``schedules.common.min_blocks``: an annotation of the root block)."""
    from schedules.common import MIN_BLOCKS

    asked = {}
    for func in mod.functions.values():
        block = getattr(getattr(func, "body", None), "block", None)  # the root block
        if block is not None and MIN_BLOCKS in block.annotations:
            asked[str(func.attrs["global_symbol"])] = int(block.annotations[MIN_BLOCKS])
    return asked


def tir_pipeline():
    """TVM's default TIR pipeline (``s_tir``, what ``get_default_tir_pipeline`` gives every
    target but Adreno), the device kernels of each function whose schedule asked
    (``schedules.common.min_blocks``; SplitHostDevice names them <symbol>_kernel[_i]) carrying
    ``tirx.launch_bounds_min_blocks_per_sm`` (CUDA codegen then emits the second
    ``__launch_bounds__`` argument). Functions that did not ask lower exactly as before.
    Returns (pipeline, finalize_host, finalize_device), as ``tvm.tirx.get_tir_pipeline``;
    registered as TIR_PIPELINE, which every build here (``build``, the AOT writer, the
    tuner's side-by-side timing) and the emulator's lowering use. The annotation is schedule
    code, so the kernels that ask have their own cache keys (``schedules.source_digest``)."""
    base, finalize_host, finalize_device = tvm.tirx.get_tir_pipeline("s_tir")

    def pipeline(mod):
        asked = _asked_blocks(mod)
        mod = base(mod)
        for gv, func in list(mod.functions.items()):
            if not isinstance(func, tvm.tirx.PrimFunc) or int(func.attrs.get("calling_conv", 0)) != 2:
                continue  # not a kernel launch
            name = gv.name_hint
            blocks = next((b for sym, b in asked.items() if name == f"{sym}_kernel" or name.startswith(f"{sym}_kernel_")), None)
            if blocks is not None:
                mod[gv] = func.with_attr("tirx.launch_bounds_min_blocks_per_sm", blocks)
        return mod

    return pipeline, finalize_host, finalize_device


@functools.lru_cache(maxsize=None)
def pipeline_digest() -> str:
    """Hash of this module's code (the TIR pipeline above among it): part of every cache key,
    so an edit to the pipeline rebuilds cached kernels rather than reusing them."""
    return schedules.code_digest(sys.modules[__name__])


TIR_PIPELINE = "dynfilter"
tvm.tirx.compilation_pipeline.register_tir_pipeline(TIR_PIPELINE, tir_pipeline)
