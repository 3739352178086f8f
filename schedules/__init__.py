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
    return _dump(tree)


# Fields a newer Python added to the grammar; dumped only when used, so code without them
# hashes alike on every version (3.12's type parameters).
_NEWER_FIELDS = frozenset({"type_params"})
# Required fields that may hold None (a constant's value): shown even then.
_NONE_VALUED = frozenset({("Constant", "value"), ("MatchSingleton", "value")})


def _dump(node) -> str:
    """``ast.dump(node)`` as Python 3.11 writes it, on every version: cache keys, bundles and
    tuning logs carry these hashes across machines, and ``ast.dump`` itself changed (3.12 shows
    the new ``type_params=[]``, 3.13 leaves empty lists out)."""
    if isinstance(node, ast.AST):
        name = type(node).__name__
        parts = []
        for field in node._fields:
            value = getattr(node, field, None)
            if name == "JoinedStr" and field == "values":
                value = _joined_parts(value)
            if (value is None and (name, field) not in _NONE_VALUED) or (field in _NEWER_FIELDS and not value):
                continue
            parts.append(f"{field}={_dump(value)}")
        return f"{name}({', '.join(parts)})"
    if isinstance(node, list):
        return f"[{', '.join(_dump(x) for x in node)}]"
    return repr(node)


def _joined_parts(values: list) -> list:
    """An f-string's parts with adjacent text joined and empty text dropped (3.12's parser
    leaves an empty ``Constant('')`` where 3.11's has none)."""
    out = []
    for v in values:
        if isinstance(v, ast.Constant) and isinstance(v.value, str):
            if not v.value:
                continue
            if out and isinstance(out[-1], ast.Constant) and isinstance(out[-1].value, str):
                out[-1] = ast.Constant(value=out[-1].value + v.value)
                continue
        out.append(v)
    return out


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
