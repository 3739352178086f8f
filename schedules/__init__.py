"""Default (untuned) schedules, one module per operator and target family.

A schedule function takes an ``s_tir.Schedule`` over the kernel's PrimFunc, the workload and
the target, and transforms loops only: it must never change results. Registered with
:func:`register`; :func:`lookup` finds the one for a workload's kernel and target.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import inspect
import pkgutil
import sys
from typing import Callable, Dict, List, Tuple

import tvm.s_tir as s_tir

ScheduleFn = Callable[[s_tir.Schedule, object, object], None]
_SCHEDULES: Dict[Tuple[str, str, str], ScheduleFn] = {}


def register(op: str, kernel: str, family: str) -> Callable[[ScheduleFn], ScheduleFn]:
    def wrap(fn: ScheduleFn) -> ScheduleFn:
        _SCHEDULES[(op, kernel, family)] = fn
        return fn

    return wrap


def load_all() -> List[str]:
    """Import every schedule module (discovered, not listed: a new file is a new schedule;
    ``common`` and private modules hold helpers only)."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name != "common"]
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names


def lookup(op: str, kernel: str, family: str) -> ScheduleFn:
    if (op, kernel, family) not in _SCHEDULES:
        load_all()
    try:
        return _SCHEDULES[(op, kernel, family)]
    except KeyError:
        raise KeyError(f"no default {family} schedule for {op}.{kernel}") from None


def _tree_text(source: str) -> str:
    """The syntax tree of ``source`` with docstrings dropped, dumped."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


@functools.lru_cache(maxsize=64)
def _source_hash(source: str) -> bytes:
    # keyed by the text itself (an edited module is hashed anew); parsing costs ~8 ms per
    # module, paid per kernel key (cache misses, each kernel of a loaded bundle) without it
    return hashlib.sha256(_tree_text(source).encode()).digest()


def code_digest(*modules) -> str:
    """Hash of the code of ``modules``: their syntax trees with docstrings dropped, so an edit
    to a comment or docstring keeps cached kernels and shipped bundles valid while any edit
    to the code itself changes the hash."""
    h = hashlib.sha256()
    for mod in modules:
        h.update(_source_hash(inspect.getsource(mod)))
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _helpers() -> tuple:
    """The helper modules: ``common`` and the private ones (``_rows``...)."""
    names = ["common", *sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("_"))]
    return tuple(importlib.import_module(f"{__name__}.{name}") for name in names)


def source_digest(fn: ScheduleFn) -> str:
    """Hash of the code of the module holding ``fn`` and of the shared helpers (every one,
    used or not: a schedule may reach one through another): any edit to a schedule's code
    changes the cache key of the kernels it builds."""
    return code_digest(sys.modules[fn.__module__], *_helpers())
