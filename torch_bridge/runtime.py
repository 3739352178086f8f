"""Glue between torch tensors and compiled kernels: target per device, kernel lookup, call.

Compiled TVM functions take torch tensors directly through DLPack (no copies) and launch on
torch's current CUDA stream.
"""
from __future__ import annotations

import functools
import os
from typing import Optional

import torch

import dynfilter_tvm
from dynfilter_tvm import target as tgt
from dynfilter_tvm.ops.common import acc_dtype
from dynfilter_tvm.workload import Workload

from ._checks import DTYPES

# TVM sizes its CPU thread pool once, from TVM_NUM_THREADS or the physical core count (1 on
# a 2-vCPU machine); match torch's intra-op threads unless the user chose.
os.environ.setdefault("TVM_NUM_THREADS", str(torch.get_num_threads()))
# TVM's idle workers spin-wait for the next kernel by default, taking the cores from torch's
# own (OpenMP) threads in the ops between ours: on 2 cores a DDF forward+backward took 20 ms
# instead of 3. Make them sleep at once (read when TVM's pool starts, at the first call).
os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", "0")



@functools.lru_cache(maxsize=None)
def _cuda_target(index: int):
    major, minor = torch.cuda.get_device_capability(index)
    return tgt.cuda_target(f"sm_{major}{minor}")


@functools.lru_cache(maxsize=None)
def _cpu_target():
    return tgt.cpu_target(num_cores=torch.get_num_threads())


def target_for(device: torch.device):
    if device.type == "cpu":
        return _cpu_target()
    if device.type == "cuda":
        return _cuda_target(device.index if device.index is not None else torch.cuda.current_device())
    raise ValueError(f"dynfilter_tvm runs on CPU and CUDA tensors, not on {device.type!r}")


def acc_torch_dtype(dtype: torch.dtype) -> torch.dtype:
    """The kernels' accumulation type (``dynfilter_tvm.ops.common.acc_dtype``) as a torch dtype."""
    return getattr(torch, acc_dtype(DTYPES[dtype]))


# TVM kernels assume 64-byte aligned buffers (its allocation alignment) and may use aligned
# vector loads: an offset view such as x[1:] would crash them.
ALIGNMENT = 64


def aligned(t: torch.Tensor) -> torch.Tensor:
    """``t`` contiguous and 64-byte aligned, copying only when it is not."""
    t = t.contiguous()
    return t if t.data_ptr() % ALIGNMENT == 0 else t.clone()


# Set by ``torch_bridge.app.workloads.recording``: a list collecting every workload run, and
# whether the kernels still run (when not, outputs are zero-filled and nothing compiles).
_recorder: Optional[list] = None
_recorder_executes = True


def record(op: str, kernel: str, params: dict, dtype: torch.dtype) -> None:
    """List a workload in the current recording without running it: a kernel another device
    runs for a call that this one computes otherwise (ACDA's strided dX, by phase on the CPU).
    An empty batch lists nothing, as ``run`` builds nothing for it."""
    if _recorder is not None and params["N"]:
        _recorder.append(Workload.make(op, kernel, params, DTYPES[dtype]))


def run(op: str, kernel: str, params: dict, dtype: torch.dtype, device: torch.device, *tensors):
    """Run one kernel on contiguous tensors: the last is the output, written in place.
    Misaligned inputs are copied to aligned memory; outputs must be allocated by torch."""
    *inputs, out = tensors
    if any(t.numel() == 0 for t in tensors):
        # An empty batch (the only empty dim the checks let through) leaves every sum of the
        # kernels empty: the output is empty, or zero (a weight's gradient). No kernel is
        # built for it.
        out.zero_()
        return
    wl = Workload.make(op, kernel, params, DTYPES[dtype])
    if _recorder is not None:
        _recorder.append(wl)
        if not _recorder_executes:
            out.zero_()
            return
    if out.data_ptr() % ALIGNMENT:
        raise ValueError(f"{op}.{kernel}: output buffer is not {ALIGNMENT}-byte aligned")
    tensors = (*(aligned(t) for t in inputs), out)
    lib = dynfilter_tvm.get_kernel(wl, target_for(device))
    if device.type == "cuda":
        with torch.cuda.device(device):
            lib(*tensors)
    else:
        lib(*tensors)
