"""Operator compute definitions (TE), one module per operator family, each kernel (forward
and every gradient) registered once with :func:`register_kernel`.

Modules here are discovered, not listed: :func:`load_all` imports every public module of the
package, so a new operator is a new file. Nothing here imports the rest of the core (the
schedules build on these computes; the core builds on both).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Dict, List, Tuple

ComputeFn = Callable[..., list]
KERNELS: Dict[Tuple[str, str], ComputeFn] = {}  # (op, kernel) -> compute


def register_kernel(op: str, kernel: str) -> Callable[[ComputeFn], ComputeFn]:
    def wrap(fn: ComputeFn) -> ComputeFn:
        if (op, kernel) in KERNELS:
            raise ValueError(f"kernel {op}.{kernel} is registered twice")
        KERNELS[(op, kernel)] = fn
        return fn

    return wrap


def load_all() -> List[str]:
    """Import every operator module (``common`` and private modules hold helpers only)."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name != "common"]
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names
