"""CUDA toolchain discovery for bundles: nvcc, NVRTC, cuobjdump, the stub ``libcuda.so.1``
that lets TVM emit device code without a GPU driver, and whether this machine can compile."""
from __future__ import annotations

import ctypes
import importlib.resources
import importlib.util
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import tvm
from tvm.target import Target

from .manifest import BundleError

log = logging.getLogger(__name__)


def find_cuobjdump() -> Optional[str]:
    """``cuobjdump``: on PATH, else from the PyPI package ``nvidia-cuda-cuobjdump``
    (``site-packages/nvidia/cu13/bin``, or ``nvidia/cuda_cuobjdump/bin`` for CUDA 12), else
    from the CUDA toolkit (``$CUDA_HOME``/``$CUDA_PATH``, ``/usr/local/cuda``). None if absent."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    candidates: List[Path] = []
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        spec = None
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidates += sorted(Path(root).glob("*/bin/cuobjdump"), reverse=True)
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            candidates.append(Path(os.environ[env]) / "bin" / "cuobjdump")
    candidates.append(Path("/usr/local/cuda/bin/cuobjdump"))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return None


def find_nvcc() -> Optional[str]:
    """``nvcc`` on PATH, else in ``$CUDA_HOME``/``$CUDA_PATH``/``/usr/local/cuda``."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return None


def _have_nvrtc() -> bool:
    try:
        return importlib.util.find_spec("cuda.bindings") is not None
    except (ImportError, ValueError):
        return False


def compiler_available(target: Target) -> Tuple[bool, str]:
    """Whether this machine can compile kernels for ``target`` (JIT), and if not, why."""
    kind = target.kind.name
    if kind == "llvm":
        if tvm.get_global_func("target.build.llvm", allow_missing=True) is None:
            return False, "this TVM has no LLVM code generator (a runtime-only installation)"
        return True, ""
    if kind == "cuda":
        if tvm.get_global_func("target.build.cuda", allow_missing=True) is None:
            return False, "this TVM has no CUDA code generator (a runtime-only installation)"
        mode = os.environ.get("TVM_CUDA_COMPILE_MODE", "nvrtc").strip().lower()
        if mode == "nvcc":
            if shutil.which("nvcc") is None:
                return False, "TVM_CUDA_COMPILE_MODE=nvcc but nvcc is not on PATH"
            return True, ""
        if not _have_nvrtc():
            hint = " (nvcc exists: set TVM_CUDA_COMPILE_MODE=nvcc)" if shutil.which("nvcc") else ""
            return False, "TVM compiles CUDA with NVRTC here, and cuda-bindings (NVRTC) is not installed" + hint
        return True, ""
    return False, f"dynfilter_tvm does not compile for target kind {kind!r}"


def _stub_source() -> str:
    return importlib.resources.files("dynfilter_tvm").joinpath("_stub_libcuda.c").read_text()


def build_stub_libcuda(directory: Path) -> Path:
    """Compile the stub ``libcuda.so.1`` into ``directory``; returns its path."""
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise BundleError("building CUDA kernels without a GPU driver needs a C compiler (gcc or cc) "
                          "for the stub libcuda.so.1; none was found")
    src = directory / "stub_libcuda.c"
    src.write_text(_stub_source())
    out = directory / "libcuda.so.1"
    cmd = [cc, "-shared", "-fPIC", "-O1", "-Wl,-soname,libcuda.so.1", "-o", str(out), str(src)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise BundleError(f"compiling the stub libcuda.so.1 failed ({' '.join(cmd)}):\n{res.stderr[-2000:]}")
    return out


def _cuda_driver_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def _cuda_compile_env(env: dict) -> None:
    """Pick the CUDA compiler of the build child: nvcc (fatbin) if found, else NVRTC (cubin);
    an explicit TVM_CUDA_COMPILE_MODE is kept when its compiler exists."""
    nvcc = find_nvcc()
    mode = env.get("TVM_CUDA_COMPILE_MODE", "").strip().lower()
    if mode == "nvrtc" and _have_nvrtc():
        return
    if nvcc:
        env["TVM_CUDA_COMPILE_MODE"] = "nvcc"
        nvcc_dir = str(Path(nvcc).parent)
        if shutil.which("nvcc", path=env.get("PATH")) is None:  # TVM runs plain "nvcc"
            env["PATH"] = nvcc_dir + os.pathsep + env.get("PATH", "")
        return
    if _have_nvrtc():
        env["TVM_CUDA_COMPILE_MODE"] = "nvrtc"
        return
    raise BundleError("no CUDA compiler: nvcc is not on PATH (nor in $CUDA_HOME, /usr/local/cuda) and "
                      "cuda-bindings (NVRTC) is not installed")


def _check_device_code(dev_path: Path, archs: Sequence[str]) -> Optional[str]:
    """List the ELF images of the device code with cuobjdump (if found): every arch must be
    there. Returns cuobjdump's listing, or None without cuobjdump."""
    tool = find_cuobjdump()
    if tool is None:
        log.info("dynfilter_tvm: cuobjdump not found; device code of %s not listed", dev_path.name)
        return None
    res = subprocess.run([tool, "--list-elf", str(dev_path)], capture_output=True, text=True)
    listing = res.stdout + res.stderr
    if res.returncode != 0:  # e.g. a cuobjdump older than the nvcc: an inspection tool, not a verdict
        log.warning("dynfilter_tvm: %s --list-elf %s failed: %s", tool, dev_path.name, listing.strip()[-500:])
        return None
    for arch in archs:
        if not re.search(rf"\.{re.escape(arch)}\.cubin\b", listing):
            raise BundleError(f"{dev_path.name}: cuobjdump --list-elf finds no {arch} ELF image:\n{listing[-2000:]}")
    return listing
