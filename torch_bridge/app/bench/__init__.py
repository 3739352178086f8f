"""Benchmarks and checks per operator family, over one harness (``harness``).

Each family module (discovered, not listed) declares ``NAME``, ``TITLE``, ``FLOOR`` (the vendor
op its ratios are taken to), ``CPU_SHAPES``/``GPU_SHAPES``, ``check(device)`` (forward and every
gradient against the float64 reference), ``bench_shape(...)`` and ``standard_layer(...)`` (the
layer ``tune``/``compile --op`` record workloads from).
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Dict


def families() -> Dict[str, ModuleType]:
    """op name -> its benchmark module, e.g. ``{"acda": ..., "ddf": ..., "pac": ...}``."""
    found = {}
    for m in pkgutil.iter_modules(__path__):
        if m.name != "harness" and not m.name.startswith("_"):
            found[m.name] = importlib.import_module(f"{__name__}.{m.name}")
    return found
