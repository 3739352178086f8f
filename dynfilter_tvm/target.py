"""Targets: what a kernel is compiled for, and the name its cache and tuning logs go under.

CPU: LLVM with the host CPU's name (``mcpu``), never ``native``, which TVM's LLVM refuses.
CUDA: the GPU's ``sm_XY`` arch, with the limits MetaSchedule needs in the target.
"""
from __future__ import annotations

import difflib
import functools
import json
import os
import re
from typing import Union

import tvm
from tvm.target import Target

TargetLike = Union[str, dict, Target]


@functools.lru_cache(maxsize=None)
def host_cpu_name() -> str:
    return str(tvm.target.codegen.llvm_get_system_cpu())


def cpu_target(mcpu: str | None = None, num_cores: int | None = None) -> Target:
    cores = num_cores or int(os.environ.get("TVM_NUM_THREADS", 0)) or (os.cpu_count() or 1)
    return Target({"kind": "llvm", "mcpu": mcpu or host_cpu_name(), "num-cores": int(cores)})


# The CUDA arch names this project uses: sm_XY, with TVM's arch-specific suffix (sm_90a)
ARCH = re.compile(r"sm_\d+[a-z]?")


def device_arch(dev) -> str:
    """The sm_XY of a TVM CUDA device."""
    return "sm_" + str(dev.compute_version).replace(".", "")


def cuda_target(arch: str) -> Target:
    if not ARCH.fullmatch(arch):
        raise ValueError(f"CUDA arch must look like 'sm_90' or 'sm_90a', got {arch!r}")
    return Target({
        "kind": "cuda", "arch": arch, "max_threads_per_block": 1024,
        "max_shared_memory_per_block": 49152, "thread_warp_size": 32,
    })


def resolve(target: TargetLike) -> Target:
    """A target from a ``Target``, a dict, or text: ``llvm``/``cpu`` (this CPU),
    ``llvm:CPUNAME`` (another CPU, e.g. ``llvm:skylake``), ``sm_90`` (CUDA arch), ``cuda`` (this
    GPU), a TVM tag such as ``nvidia/nvidia-h100``, or a target JSON object. Only llvm and CUDA
    targets with an ``sm_XY`` arch are accepted (ValueError otherwise)."""
    if isinstance(target, Target):
        return target
    if isinstance(target, dict):
        resolved = Target(target)
    else:
        text = target.strip()
        if text.startswith("{"):
            try:
                resolved = Target(json.loads(text))
            except (ValueError, TypeError) as err:
                raise ValueError(f"bad target JSON {text!r}: {err}") from None
        elif text in ("llvm", "cpu"):
            resolved = cpu_target()
        elif text.startswith(("llvm:", "cpu:")):
            mcpu = text.split(":", 1)[1]
            if not re.fullmatch(r"[A-Za-z0-9_.+-]+", mcpu):
                raise ValueError(f"bad CPU name in {text!r}")
            resolved = cpu_target(mcpu=mcpu)
        elif text.startswith("sm_"):
            resolved = cuda_target(text)
        elif text == "cuda":
            resolved = cuda_target(local_cuda_arch())
        else:
            try:
                resolved = Target(text)
            except Exception as err:  # TVM raises its own error types for unknown tags
                raise ValueError(f"unknown target {text!r} (expected sm_XY, llvm, llvm:CPUNAME, cuda, "
                                 f"a TVM tag or a target JSON): {err}") from None
    family(resolved)  # llvm or cuda only
    if resolved.kind.name == "llvm":
        check_llvm_cpu(resolved)
    if resolved.kind.name == "cuda" and not ARCH.fullmatch(str(resolved.attrs.get("arch", ""))):
        raise ValueError(f"CUDA target {target!r} names no sm_XY arch")
    return resolved


def check_llvm_cpu(target: Target) -> None:
    """A ValueError for an ``mcpu`` LLVM does not know for the target's triple: TVM would only
    log it and build for a generic CPU, so a typo in ``llvm:CPUNAME`` would go unnoticed."""
    mcpu = str(target.attrs.get("mcpu", "") or "")
    if not mcpu:
        return
    triple = str(target.attrs.get("mtriple", "") or "") or str(tvm.target.codegen.llvm_get_system_triple())
    if tvm.target.codegen.llvm_is_valid_cpu(mcpu, triple):
        return
    try:
        known = [str(c) for c in tvm.target.codegen.llvm_get_cpu_archlist(Target({"kind": "llvm", "mtriple": triple}))]
    except Exception:  # (an LLVM built without that triple's backend)
        known = []
    close = difflib.get_close_matches(mcpu, known, n=4)
    raise ValueError(f"LLVM {tvm.target.codegen.llvm_version_major()} knows no CPU {mcpu!r} for {triple}"
                     + (f" (did you mean {', '.join(close)}?)" if close else "")
                     + f"; this machine's CPU is {host_cpu_name()}")


def target_json(target: Target) -> dict:
    """The target as a JSON object (a Target prints as its JSON config); ``Target(d)`` rebuilds it."""
    return json.loads(str(target))


def local_cuda_arch(index: int = 0) -> str:
    dev = tvm.cuda(index)
    if not dev.exist:
        raise RuntimeError("no CUDA device is visible to TVM")
    return device_arch(dev)


def family(target: Target) -> str:
    """The schedule family: 'cpu' or 'cuda'."""
    kind = target.kind.name
    if kind == "llvm":
        return "cpu"
    if kind == "cuda":
        return "cuda"
    raise ValueError(f"unsupported target kind {kind!r}; dynfilter-tvm builds for llvm and cuda")


def target_name(target: Target) -> str:
    """Short, file-system safe name: 'llvm-znver4', 'cuda-sm_90'. An arch-specific 'sm_90a'
    (TVM's H100 tag) names the same GPU as 'sm_90', which is what a running H100 reports."""
    if target.kind.name == "llvm":
        return "llvm-" + str(target.attrs.get("mcpu", "generic"))
    return cuda_name(str(target.attrs.get("arch", "unknown")))


def cuda_name(arch: str) -> str:
    """'cuda-sm_90' for sm_90 and for the arch-specific sm_90a (it runs on the same GPU)."""
    return "cuda-" + re.sub(r"(sm_\d+)a$", r"\1", arch)


def target_key(target: Target) -> str:
    """Everything about the target that changes generated code, as stable text."""
    return str(target)
