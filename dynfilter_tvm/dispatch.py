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
Unset, it depends on the target (``DEFAULT_MODES``):

* **CPU: generic.** A model meeting a new input size builds nothing new. The generic CPU
  schedules compute rows in whole vectors and run near the static time (README "Any input
  size" lists the generic/static ratios per kernel).
* **CUDA: static.** Of the generic CUDA kernels only DDF ``fwd``, ``ds``, ``dc`` and (stride 1)
  ``dx`` are tiled like the static ones (fixed tiles, predicated tails:
  ``schedules/ddf_cuda.py``); the PAC and ACDA ones are the thread-per-output first versions
  (exact, PoCL-checked at several sizes), while the static ones are tiled (DDF, PAC, ACDA) and
  use tensor cores (PAC ``conv``): several times fewer requested bytes in the static GPU
  report. Even DDF stays static: its strided layers' generic ``dx`` is per-output (13.2x the
  minimum bytes, estimate), and at 8x256x56x56 the generic ``ds`` launches 112 blocks (under
  one per SM of an H100 / H200) where the static one splits channels to reach 264; generic
  ``dc`` requests 1.45x the minimum bytes against the static 1.39x (estimates, no GPU). A GPU
  serving many sizes without JIT takes a bundle built without ``--input``.

The static mode is also the switch for hot shapes on CPU: one build per shape met, each
specialised to its extents. A static build serves every shape a tuning log holds a record for,
in either mode.
"""
from __future__ import annotations

import os
from typing import Optional

from . import build, registry
from .target import family
from .workload import Workload

ENV_SHAPES = "DYNFILTER_TVM_SHAPES"
MODES = ("generic", "static")
DEFAULT_MODES = {"cpu": "generic", "cuda": "static"}  # by target family (see above)
_mode: Optional[str] = None  # set_shape_mode's choice; None: the environment's


def set_shape_mode(mode: Optional[str]) -> None:
    """'generic' or 'static' for this process; None goes back to ``$DYNFILTER_TVM_SHAPES``, or
    where unset to the target's default (``DEFAULT_MODES``)."""
    global _mode
    if mode is not None and mode not in MODES:
        raise ValueError(f"shape mode must be one of {MODES}, got {mode!r}")
    _mode = mode


def shape_mode(target=None) -> str:
    """The mode serving calls for ``target`` (None: a CPU's default where nothing is set)."""
    if _mode is not None:
        return _mode
    default = DEFAULT_MODES[family(target) if target is not None else "cpu"]
    mode = os.environ.get(ENV_SHAPES, default).strip().lower() or default
    if mode not in MODES:
        raise ValueError(f"${ENV_SHAPES} must be one of {MODES}, got {mode!r}")
    return mode


def generic_of(workload: Workload) -> Optional[Workload]:
    """The generic workload serving ``workload``, or None where its kernel builds per shape."""
    names = registry.symbolic_params(workload)
    return workload.with_symbolic(names) if names else None


def select(workload: Workload, target) -> Workload:
    """The workload to build or load for a static ``workload`` (see the module docstring)."""
    if workload.kind != "static" or shape_mode(target) == "static":
        return workload
    generic = generic_of(workload)
    if generic is None:
        return workload
    if build.tuned_lookup is not None and build.tuned_lookup(workload, target) is not None:
        return workload
    return generic
