"""Operator declarations: each kernel of an operator is one TE compute, registered once in
``dynfilter_tvm.ops`` (discovered there: every module of that package is loaded on first use).

A compute function takes the workload parameters and the dtype and returns the list of TE
tensors ``[inputs..., output]`` that ``te.create_prim_func`` turns into a PrimFunc. The
build path, the tuner, the AOT compiler and the tests all enumerate kernels from here.
"""
from __future__ import annotations

import sys
from typing import Callable, List, Tuple

from tvm import te

from . import ops
from .workload import Workload


def kernels() -> List[Tuple[str, str]]:
    ops.load_all()
    return sorted(ops.KERNELS)


def compute_fn(workload: Workload) -> Callable[..., List[te.Tensor]]:
    """The registered compute of ``workload``'s kernel."""
    try:
        return ops.KERNELS[(workload.op, workload.kernel)]
    except KeyError:
        ops.load_all()
    try:
        return ops.KERNELS[(workload.op, workload.kernel)]
    except KeyError:
        raise KeyError(f"no kernel {workload.op}.{workload.kernel}; known: {kernels()}") from None


def symbolic_params(workload: Workload) -> Tuple[str, ...]:
    """The parameters of ``workload``'s kernel that may be symbolic: the op module's
    ``SYMBOLIC`` (a dict kernel -> names, or one tuple for every kernel), declared where its
    computes and schedules serve any value; () where the kernel builds per shape only."""
    module = sys.modules[compute_fn(workload).__module__]
    declared = getattr(module, "SYMBOLIC", ())
    names = declared.get(workload.kernel, ()) if isinstance(declared, dict) else declared
    return tuple(n for n in names if n in workload.p)


def compute(workload: Workload) -> List[te.Tensor]:
    """The kernel's TE tensors; a symbolic parameter becomes a ``te.var`` of its name, bound
    from the tensors' shapes when the compiled function is called."""
    params = {k: te.var(k) if v is None else v for k, v in workload.p.items()}
    return compute_fn(workload)(dtype=workload.dtype, **params)


def prim_func(workload: Workload):
    """The unscheduled PrimFunc of a workload, named after the kernel."""
    func = te.create_prim_func(compute(workload))
    return func.with_attr("global_symbol", f"{workload.op}_{workload.kernel}")
