"""Ahead-of-time kernel bundles: compile the kernels a model needs once, ship them, and load
them where they run with nothing but TVM's runtime.

Writing (``dynfilter-tvm compile``, or :func:`compile_bundle`)::

    dynfilter-tvm compile --target sm_90 --target sm_80 --model lenet_acda --input 8x3x32x32 -o bundle/
    dynfilter-tvm compile --target llvm --op ddf --input 1x64x56x56 --kernel-size 3 -o bundle/

The workloads come from one recorded forward and backward pass of the model or layer
(``torch_bridge.app.workloads``). For every target, each workload is scheduled exactly as a JIT
build would schedule it (``build.plan``: tuned record, else the default schedule), its
PrimFunc renamed to a symbol made from :meth:`Workload.digest`, and all of them merged into
one IRModule compiled once into one shared library. A bundle directory holds::

    manifest.json          format version, dynfilter_tvm and TVM versions, creation time, and
                           per target: target JSON and name, library file and SHA-256, (CUDA)
                           the device code file, its SHA-256 and archs, and per kernel the
                           workload, symbol, schedule id, compute digest and signature
    llvm-<cpu>.so          one library per target
    cuda-sm_90.so
    cuda-sm_90.fatbin      (CUDA) the device code inside the library, for inspection
                           (``cuobjdump --list-elf``)

CUDA libraries carry compiled device code (fatbin/cubin for the named arch), never CUDA
source, so the machine that runs them needs no CUDA compiler. Without a GPU driver TVM keeps
source silently; the CUDA build therefore runs in a child process that finds a stub
``libcuda.so.1`` (``_stub_libcuda.c``, compiled with the C compiler into a temporary
directory) on ``LD_LIBRARY_PATH``, so that TVM's CUDA runtime loads and its compile callback
runs nvcc (``TVM_CUDA_COMPILE_MODE=nvcc``) or NVRTC. A library whose CUDA module holds source
is refused.

Reading (:func:`load_bundle`, or ``DYNFILTER_TVM_BUNDLE``: paths separated by
``os.pathsep``, loaded at the first kernel lookup): ``dynfilter_tvm.cache.get`` serves a
kernel from the loaded bundles before its memory and disk caches and before compiling. A
kernel matches on :meth:`Workload.key` and :func:`dynfilter_tvm.target.target_name`. Bundles
are data from other machines and are checked strictly: the manifest is plain JSON (never
evaluated or unpickled) and must follow the schema; its format version and TVM version must
equal this installation's; each library's SHA-256 must match (the verified bytes are what
gets loaded); targets that do not fit this machine (another GPU arch, another CPU name) are
skipped, and a bundle none of whose targets fit is refused with a message naming both
sides. Kernels compiled from other operator definitions (their compute digest differs from
this installation's) are not served.

A kernel missing from the loaded bundles is compiled (JIT) only when this machine can: LLVM
code generation for CPUs, nvcc or NVRTC for CUDA. ``DYNFILTER_TVM_JIT=off`` forbids
compiling altogether; a missing kernel then raises :class:`KernelUnavailableError` naming
the kernel, its shapes and what the bundles hold.

The package: ``manifest`` (format, schema, errors), ``toolchain`` (nvcc, NVRTC, cuobjdump, the
stub driver), ``writer`` (:func:`compile_bundle`, imported on first use) and ``loader``
(:func:`load_bundle`, lookups, the JIT policy).
"""
from __future__ import annotations

import importlib

from .loader import Bundle, check_jit, clear_bundles, jit_allowed, load_bundle, lookup, lookup_generic, stats
from .manifest import (ENV_BUNDLE, ENV_JIT, FORMAT, FORMAT_VERSION, MANIFEST, BundleError, KernelUnavailableError,
                       kernel_symbol)
from .toolchain import build_stub_libcuda, compiler_available, find_cuobjdump, find_nvcc

__all__ = ["Bundle", "BundleError", "KernelUnavailableError", "compile_bundle", "schedule_kernels", "load_bundle",
           "clear_bundles", "lookup", "lookup_generic", "check_jit", "jit_allowed", "stats", "kernel_symbol", "compiler_available",
           "find_cuobjdump", "find_nvcc", "build_stub_libcuda", "ENV_BUNDLE", "ENV_JIT", "FORMAT",
           "FORMAT_VERSION", "MANIFEST"]


def __getattr__(name):
    # the writer (scheduling, nvcc in a child) loads only when a bundle is written
    if name == "writer":
        return importlib.import_module(".writer", __name__)
    if name in ("compile_bundle", "schedule_kernels"):
        return getattr(importlib.import_module(".writer", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
