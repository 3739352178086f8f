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
Unset, it depends on the target and the op (``DEFAULT_MODES``, ``OP_DEFAULT_MODES``):

* **CPU: generic.** A model meeting a new input size builds nothing new. The generic CPU
  schedules compute rows in whole vectors and run near the static time (README "Any input
  size" gives the generic/static ratios, ``benchmarks/RESULTS.md`` per kernel).
* **CUDA: static, but generic for DDF and PAC** (``OP_DEFAULT_MODES``; ACDA per kernel: ``fwd``, ``datoms``) wherever its generic build
  is tiled like the static one (``schedules.ddf_cuda.generic_tiled``, checked once per
  configuration: 1 < k <= 7 and, for ``dx``, gcd(stride, dilation) = 1, but for a few
  configurations whose stages TVM would not compact; elsewhere, k = 1 or k > 7 say, the
  static build, as the generic one is then the thread-per-output schedule). The generic DDF
  ``fwd``, ``dx``, ``ds`` and ``dc`` take fixed tiles with predicated tails
  (``schedules/ddf_cuda.py``), and their
  requested bytes at the benchmark shapes are 1.00 / 0.95 / 0.98 / 1.04x the static ones' at
  8x256x56x56 k3 and 1.00 / 0.97 / 1.11 / 1.03x at 2x256x200x300 (1.22-1.46x the minimum;
  estimates, ``gpu_report``, no GPU): one build serves every size, no JIT per new size.
  **ACDA: generic ``fwd`` and ``datoms``, static ``dx``** (``schedules.acda_cuda.GENERIC_DEFAULT``):
  the generic ``fwd`` takes tiles of 2 rows x 8 pixels over heights and rows padded to whole
  tiles (``ops.acda`` FWD_ROWS, ROW_TILE) and stages each block's input window once: at
  8x64xHxH k7 float32 0.92 / 0.82 / 0.61 / 0.39x the static build's requested bytes and 0.88 /
  1.00 / 1.00 / 1.14x its pixels at H = 56 / 28 / 14 / 7 (estimates, ``gpu_report``); only
  where its shape follows the static rule (``schedules.acda_cuda._fwd_rows_rule``: not at
  C = 152 .. 432, k7). The generic ``datoms`` likewise in tiles of 2 rows x 8 pixels (heights
  padded, ``ops.acda.DATOMS_ROWS``; where its block schedule applies): 0.91 / 0.09 / 0.08 /
  0.08x the static's bytes, 1.00 / 1.14 / 1.14 / 1.31x its pixels at H = 56 / 28 / 14 / 7
  (estimates). The generic ``dx`` is tiled (8-pixel tiles in blocks of 12 rows,
  ``ops.acda.DX_ROWS``) but requests 1.08x the static build's bytes at 8x64x56x56 k7 float32
  and computes 1.96x the pixels on images of 14 / 7 rows (padded to 24 / 12).
* **CUDA: generic for PAC ``conv``, ``conv_dk`` and ``conv_dw``** (``conv``: the convolution,
  its transposed form and both input gradients) wherever the generic build is tiled
  (``schedules.pac_cuda.generic_serves``: the static schedules with fixed tiles, requested
  bytes 1.00x / 1.00x / 0.998x the static SIMT builds' at 8x64x128x128 k5, estimates (``conv``:
  both stage K once per block, no-cache estimates 1.00x the FP32 roofline);
  ``conv_dk`` only where it stages its source window, ``generic_dk_staged``: not at k2 s1 d1,
  k4 s2 d1, C = O = 64 k3 float64, where its per-tap fallback requests 1.75-2.4x) and no static build of the configuration could
  take tensor cores: float64, float32 without the ``tf32`` flag
  (``torch.backends.cudnn.allow_tf32`` off), and configurations
  whose O or C is no whole mma tile. PAC ``conv`` and ``conv_dk`` with tensor cores (the half
  types and TF32; ``conv_dk`` with O, C multiples of 16), ``pool*``,
  ``dist*`` (per-output generic kernels, as their static builds) stay static on CUDA.
  A GPU serving many sizes without JIT takes a bundle built without ``--input``.

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
OP_DEFAULT_MODES = {("cuda", "ddf"): "generic", ("cuda", "acda"): "generic",  # (family, op) exceptions
                    ("cuda", "pac"): "generic"}  # to DEFAULT_MODES, where the generic build serves well (above)
_mode: Optional[str] = None  # set_shape_mode's choice; None: the environment's


def set_shape_mode(mode: Optional[str]) -> None:
    """'generic' or 'static' for this process; None goes back to ``$DYNFILTER_TVM_SHAPES``, or
    where unset to the target's default (``DEFAULT_MODES``)."""
    global _mode
    if mode is not None and mode not in MODES:
        raise ValueError(f"shape mode must be one of {MODES}, got {mode!r}")
    _mode = mode


def shape_mode(target=None, op: Optional[str] = None) -> str:
    """The mode serving calls of ``op`` (None: any op without its own default) for ``target``
    (None: a CPU's default where nothing is set)."""
    if _mode is not None:
        return _mode
    fam = family(target) if target is not None else "cpu"
    default = OP_DEFAULT_MODES.get((fam, op), DEFAULT_MODES[fam])
    mode = os.environ.get(ENV_SHAPES, default).strip().lower() or default
    if mode not in MODES:
        raise ValueError(f"${ENV_SHAPES} must be one of {MODES}, got {mode!r}")
    return mode


def _by_default() -> bool:
    """Whether the mode is the default's (neither set_shape_mode nor the environment chose)."""
    return _mode is None and not os.environ.get(ENV_SHAPES, "").strip()


def generic_of(workload: Workload) -> Optional[Workload]:
    """The generic workload serving ``workload``, or None where its kernel builds per shape."""
    names = registry.symbolic_params(workload)
    return workload.with_symbolic(names) if names else None


def select(workload: Workload, target) -> Workload:
    """The workload to build or load for a static ``workload`` (see the module docstring)."""
    if workload.kind != "static" or shape_mode(target, workload.op) == "static":
        return workload
    generic = generic_of(workload)
    if generic is None:
        return workload
    if _by_default() and not _generic_serves_well(generic, target):
        return workload
    if build.tuned_lookup is not None and build.tuned_lookup(workload, target) is not None:
        return workload
    return generic


def _generic_serves_well(generic: Workload, target) -> bool:
    """Where a target family's default is generic for an op (``OP_DEFAULT_MODES``), whether
    its generic build of this configuration is scheduled like the static one, per kernel, once per
    configuration, arch and process (on CUDA: tiled, ``schedules.ddf_cuda.generic_tiled`` for
    DDF; ``schedules.acda_cuda.generic_default`` for ACDA, per arch: register budgets; PAC
    tiled where no static build could take tensor cores, ``schedules.pac_cuda.generic_serves``);
    elsewhere True."""
    if family(target) != "cuda" or generic.op not in ("ddf", "acda", "pac"):
        return True
    key = (generic.key(), str(target.attrs.get("arch", "")))
    if key not in _serves:
        if generic.op == "ddf":
            from schedules.ddf_cuda import generic_tiled

            _serves[key] = generic_tiled(generic, registry.prim_func(generic))
        elif generic.op == "acda":
            from schedules.acda_cuda import generic_default

            _serves[key] = generic_default(generic, registry.prim_func(generic), target)
        else:
            from schedules.pac_cuda import generic_serves

            _serves[key] = generic_serves(generic, registry.prim_func(generic), target)
    return _serves[key]


_serves: dict = {}  # generic workload key -> _generic_serves_well
