"""Operator declarations: each kernel of an operator is one TE compute, registered once.

A compute function takes the workload parameters and the dtype and returns the list of TE
tensors ``[inputs..., output]`` that ``te.create_prim_func`` turns into a PrimFunc. The
build path, the tuner, the AOT compiler and the tests all enumerate kernels from here.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

from tvm import te

from .workload import Workload

ComputeFn = Callable[..., List[te.Tensor]]
_KERNELS: Dict[Tuple[str, str], ComputeFn] = {}


def register_kernel(op: str, kernel: str) -> Callable[[ComputeFn], ComputeFn]:
    def wrap(fn: ComputeFn) -> ComputeFn:
        if (op, kernel) in _KERNELS:
            raise ValueError(f"kernel {op}.{kernel} is registered twice")
        _KERNELS[(op, kernel)] = fn
        return fn

    return wrap


def kernels() -> List[Tuple[str, str]]:
    return sorted(_KERNELS)


def compute(workload: Workload) -> List[te.Tensor]:
    try:
        fn = _KERNELS[(workload.op, workload.kernel)]
    except KeyError:
        raise KeyError(f"no kernel {workload.op}.{workload.kernel}; known: {kernels()}") from None
    return fn(dtype=workload.dtype, **workload.p)


def prim_func(workload: Workload):
    """The unscheduled PrimFunc of a workload, named after the kernel."""
    func = te.create_prim_func(compute(workload))
    return func.with_attr("global_symbol", f"{workload.op}_{workload.kernel}")
