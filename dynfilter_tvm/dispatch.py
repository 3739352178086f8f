"""Which build serves a call: the static kernel of the exact shapes, or the generic one.

A call arrives as a static workload (every shape fixed). A loaded AOT bundle's kernel for it,
or the bundle's generic kernel serving it, comes first (``dynfilter_tvm.cache.get``); else, in
the *generic* shape mode, it is served by

1. the static build, when a tuning log holds a record for exactly that workload and target
   (records are per shape: MetaSchedule tunes static shapes only);
2. else the generic build (batch, height and width symbolic: one build serves every size),
   where the kernel's op declares it (``SYMBOLIC`` in its ``dynfilter_tvm.ops`` module);
3. else the static build;

and in the *static* mode by the static build of every shape met.

The mode is ``DYNFILTER_TVM_SHAPES`` (``generic`` or ``static``) or :func:`set_shape_mode`.
The default is **static** for now: the generic CPU kernels compute the same numbers but some
still run above the static time (DDF forward 1.1-1.4x, ACDA forward up to 2x at 56 pixel rows,
PAC ``conv_dw`` 3.2x at 28 pixel rows; README "Any input size"), so generic builds are opt-in
for JIT use, while ``dynfilter-tvm compile`` without ``--input`` writes generic kernels into
bundles.
"""
from __future__ import annotations

import os
from typing import Optional

from . import build, registry
from .workload import Workload

ENV_SHAPES = "DYNFILTER_TVM_SHAPES"
MODES = ("generic", "static")
DEFAULT_MODE = "static"  # until generic CPU schedules reach static speed (see above)
_mode: Optional[str] = None  # set_shape_mode's choice; None: the environment's


def set_shape_mode(mode: Optional[str]) -> None:
    """'generic' or 'static' (the default) for this process; None goes back to ``$DYNFILTER_TVM_SHAPES``."""
    global _mode
    if mode is not None and mode not in MODES:
        raise ValueError(f"shape mode must be one of {MODES}, got {mode!r}")
    _mode = mode


def shape_mode() -> str:
    if _mode is not None:
        return _mode
    mode = os.environ.get(ENV_SHAPES, DEFAULT_MODE).strip().lower() or DEFAULT_MODE
    if mode not in MODES:
        raise ValueError(f"${ENV_SHAPES} must be one of {MODES}, got {mode!r}")
    return mode


def generic_of(workload: Workload) -> Optional[Workload]:
    """The generic workload serving ``workload``, or None where its kernel builds per shape."""
    names = registry.symbolic_params(workload)
    return workload.with_symbolic(names) if names else None


def select(workload: Workload, target) -> Workload:
    """The workload to build or load for a static ``workload`` (see the module docstring)."""
    if workload.kind != "static" or shape_mode() == "static":
        return workload
    generic = generic_of(workload)
    if generic is None:
        return workload
    if build.tuned_lookup is not None and build.tuned_lookup(workload, target) is not None:
        return workload
    return generic
