"""dynfilter-tvm: dynamic (per-pixel) convolutions compiled with TVM.

The core knows workloads, targets, schedules and compiled modules, and nothing of torch;
``torch_bridge`` turns it into PyTorch ops and layers. Importing the package is light: the
names below load their modules on first use (no TVM build, no MetaSchedule, no AOT writer).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute)
_LAZY = {
    "Workload": ("workload", "Workload"),
    "get_kernel": ("cache", "get"),
    "cache_dir": ("cache", "cache_dir"),
    "load_bundle": ("aot", "load_bundle"),
    "cpu_target": ("target", "cpu_target"),
    "cuda_target": ("target", "cuda_target"),
    "resolve_target": ("target", "resolve"),
    "set_shape_mode": ("dispatch", "set_shape_mode"),
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
