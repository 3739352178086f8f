"""Ahead-of-time kernel bundles: compile the kernels a model needs once, ship them, and load
them where they run with nothing but TVM's runtime.

Writing (``dynfilter-tvm compile``, or :func:`compile_bundle`)::

    dynfilter-tvm compile --target sm_90 --target sm_80 --model lenet_acda --input 8x3x32x32 -o bundle/
    dynfilter-tvm compile --target llvm --op ddf --input 1x64x56x56 --kernel-size 3 -o bundle/

The workloads come from one recorded forward and backward pass of the model or layer
(``torch_bridge.workloads``). For every target, each workload is scheduled exactly as a JIT
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
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import functools
import importlib.resources
import importlib.util
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import tvm
from tvm.target import Target

from . import __version__
from .files import sha256_bytes, sha256_file
from .target import host_cpu_name, resolve, target_json, target_name
from .workload import Workload

log = logging.getLogger(__name__)

FORMAT = "dynfilter-tvm-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ENV_BUNDLE = "DYNFILTER_TVM_BUNDLE"
ENV_JIT = "DYNFILTER_TVM_JIT"
_MAX_MANIFEST_BYTES = 64 << 20
_FATBIN_MAGIC = b"\x50\xed\x55\xba"
_ELF_MAGIC = b"\x7fELF"

Progress = Optional[Callable[[str], None]]


class BundleError(RuntimeError):
    """A bundle that cannot be written, or that is refused when loading."""


class KernelUnavailableError(RuntimeError):
    """A kernel that no loaded bundle holds and that may not or cannot be compiled here."""


# --------------------------------------------------------------------------------------------
# Small helpers shared by writing and reading


def kernel_symbol(workload: Workload) -> str:
    """The library symbol of a workload's kernel: unique per workload (digest), a C name."""
    return "dft_" + re.sub(r"\W", "_", f"{workload.op}_{workload.kernel}") + "_" + workload.digest()


def _device_format(blob: bytes) -> Optional[str]:
    """'fatbin' or 'cubin' for compiled device code; None for anything else (CUDA source, PTX)."""
    if blob.startswith(_FATBIN_MAGIC):
        return "fatbin"
    if blob.startswith(_ELF_MAGIC):
        return "cubin"
    return None


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


# --------------------------------------------------------------------------------------------
# Writing bundles


def _signature(func) -> List[dict]:
    """Each argument of a (static-shape) PrimFunc: name, shape, dtype."""
    return [{"name": str(p.name), "shape": [int(n) for n in p.shape], "dtype": str(p.dtype)}
            for p in func.params]


def schedule_kernels(workloads: Sequence[Workload], target: Target, progress: Progress = None
                     ) -> Tuple[tvm.IRModule, List[dict]]:
    """Every workload scheduled for ``target`` and renamed to its symbol, merged into one
    IRModule, with the manifest entry of each kernel."""
    from .build import compute_digest, schedule

    name = target_name(target)
    funcs, kernels = {}, []
    for i, wl in enumerate(workloads, 1):
        if progress:
            progress(f"  [{name}] kernel {i}/{len(workloads)}: {wl}")
        mod, schedule_id = schedule(wl, target)
        (func,) = mod.functions.values()
        sym = kernel_symbol(wl)
        if sym in funcs:
            raise BundleError(f"two workloads share the symbol {sym} (duplicate workload {wl}?)")
        funcs[sym] = func.with_attr("global_symbol", sym)
        kernels.append({"workload": wl.to_json(), "symbol": sym, "schedule": schedule_id,
                        "compute": compute_digest(wl), "signature": _signature(func)})
    return tvm.IRModule({tvm.ir.GlobalVar(sym): f for sym, f in funcs.items()}), kernels


def _compile_library(mod: tvm.IRModule, target: Target, out_dir: Path, stem: str) -> dict:
    """Compile ``mod`` once for ``target`` and export ``<stem>.so`` (and, for CUDA, the device
    code as ``<stem>.fatbin``/``.cubin``). For CUDA, TVM's CUDA runtime must be loaded in this
    process (a GPU driver or the stub), else TVM would keep source."""
    import tvm_ffi

    symbols = [str(gv.name_hint) for gv in mod.get_global_vars()]
    is_cuda = target.kind.name == "cuda"
    captured: List[bytes] = []
    t0 = time.perf_counter()
    if is_cuda:
        if not tvm.runtime.enabled("cuda"):
            raise BundleError("TVM's CUDA runtime is not loaded in the build process (no libcuda.so.1): "
                              "TVM would keep CUDA source instead of device code")
        original = tvm.get_global_func("tvm_callback_cuda_compile")

        def capture(*args):
            out = original(*args)
            captured.append(bytes(out))
            return out

        tvm_ffi.register_global_func("tvm_callback_cuda_compile", capture, override=True)
        try:
            with target:  # the callback reads the arch from the current target
                lib = tvm.compile(mod, target=target)
        finally:
            tvm_ffi.register_global_func("tvm_callback_cuda_compile", original, override=True)
    else:
        with target:
            lib = tvm.compile(mod, target=target)
    seconds = time.perf_counter() - t0
    missing = [s for s in symbols if not lib.mod.implements_function(s)]
    if missing:
        raise BundleError(f"the compiled library lacks kernels {missing[:5]}")
    info: dict = {"compile_seconds": round(seconds, 3)}
    blob = None
    if is_cuda:
        imports = list(lib.mod.imports)
        if len(imports) != 1 or imports[0].kind != "cuda":
            raise BundleError(f"expected one CUDA device module in the library, found {[m.kind for m in imports]} "
                              "(unscheduled kernels build host-only code)")
        if not imports[0].is_runnable() or len(captured) != 1:
            raise BundleError("the CUDA module holds CUDA source, not device code (TVM's CUDA compile "
                              "callback did not run); refusing to write a bundle that needs a CUDA compiler")
        blob = captured[0]
        fmt = _device_format(blob)
        if fmt is None:
            raise BundleError(f"the CUDA compiler returned neither a fatbin nor a cubin (starts with {blob[:16]!r}); "
                              "refusing to write a bundle without device code")
    lib_path = out_dir / f"{stem}.so"
    lib.export_library(str(lib_path))
    info.update(library=lib_path.name, sha256=sha256_file(lib_path))
    if blob is not None:
        if lib_path.read_bytes().find(blob) < 0:
            raise BundleError(f"{lib_path.name} does not embed the compiled device code")
        dev_path = out_dir / f"{stem}.{fmt}"
        dev_path.write_bytes(blob)
        info["device_code"] = {"file": dev_path.name, "format": fmt, "sha256": sha256_bytes(blob),
                               "archs": [str(target.attrs["arch"])]}
    return info


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


def _package_roots() -> List[str]:
    """Directories to put on the child's PYTHONPATH so it imports these very packages."""
    import schedules

    roots = [str(Path(__file__).resolve().parent.parent), str(Path(schedules.__file__).resolve().parent.parent)]
    return list(dict.fromkeys(roots))


_CHILD = "import sys; from dynfilter_tvm.aot import _child_main; sys.exit(_child_main(sys.argv[1]))"


def _compile_cuda_in_child(jobs: Sequence[Tuple[tvm.IRModule, Target, str]], out_dir: Path,
                           progress: Progress = None) -> Dict[str, dict]:
    """Run :func:`_compile_library` for CUDA targets (``(module, target, stem)`` each) in one
    child process whose TVM loads its CUDA runtime: against the real driver if present, else
    against the stub libcuda. Returns the library information per stem."""
    env = dict(os.environ)
    _cuda_compile_env(env)
    env["PYTHONPATH"] = os.pathsep.join(_package_roots() + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    spec_path, result_path = out_dir / ".cuda-build.spec.json", out_dir / ".cuda-build.result.json"
    spec_path.write_text(json.dumps({
        "jobs": [{"module": tvm.ir.save_json(mod), "target": target_json(target), "stem": stem}
                 for mod, target, stem in jobs],
        "out_dir": str(out_dir), "result": str(result_path)}))
    stub_dir = None
    try:
        if not _cuda_driver_present():
            stub_dir = Path(tempfile.mkdtemp(prefix="dynfilter_tvm_stub_libcuda_"))
            build_stub_libcuda(stub_dir)
            env["LD_LIBRARY_PATH"] = os.pathsep.join([str(stub_dir)] + ([env["LD_LIBRARY_PATH"]]
                                                                      if env.get("LD_LIBRARY_PATH") else []))
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(spec_path)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        tail: List[str] = []
        for line in proc.stdout:
            if line.startswith(_PROGRESS) and progress:
                progress(line[len(_PROGRESS):].rstrip("\n"))
            else:
                tail = (tail + [line])[-200:]
        code = proc.wait()
        if code != 0 or not result_path.exists():
            names = ", ".join(target_name(t) for _, t, _ in jobs)
            raise BundleError(f"building the CUDA libraries ({names}) failed (child exit {code}):\n"
                              + "".join(tail)[-4000:])
        return json.loads(result_path.read_text())
    finally:
        for p in (spec_path, result_path):
            p.unlink(missing_ok=True)
        if stub_dir is not None:
            shutil.rmtree(stub_dir, ignore_errors=True)


_PROGRESS = "dynfilter_tvm progress: "


def _child_main(spec_path: str) -> int:
    """Entry of the CUDA build child (see :func:`_compile_cuda_in_child`)."""
    import dynfilter_tvm  # noqa: F401  (TVM's IR types, s_tir included, for load_json)

    spec = json.loads(Path(spec_path).read_text())
    results = {}
    try:
        for job in spec["jobs"]:
            target = Target(job["target"])
            t0 = time.perf_counter()
            print(f"{_PROGRESS}  [{target_name(target)}] compiling (nvcc/NVRTC) ...", flush=True)
            results[job["stem"]] = _compile_library(tvm.ir.load_json(job["module"]), target,
                                                    Path(spec["out_dir"]), job["stem"])
            print(f"{_PROGRESS}  [{target_name(target)}] compiled in {time.perf_counter() - t0:.1f} s", flush=True)
    except BundleError as err:
        print(f"error: {err}", flush=True)
        return 3
    Path(spec["result"]).write_text(json.dumps(results))
    return 0


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


def compile_bundle(workloads: Iterable[Workload], targets: Sequence, output, *, overwrite: bool = False,
                   progress: Progress = print) -> dict:
    """Compile ``workloads`` for every target (``Target`` or text for :func:`dynfilter_tvm.target.resolve`) into the
    bundle directory ``output`` (one library per target); returns the manifest. ``output``
    must not exist or be empty unless ``overwrite``; the bundle appears there complete or not
    at all (built in a temporary directory beside it, then renamed)."""
    workloads = list(dict.fromkeys(workloads))
    if not workloads:
        raise BundleError("no workloads to compile")
    targets = [t if isinstance(t, Target) else resolve(str(t)) for t in targets]
    names = [target_name(t) for t in targets]
    if not targets or len(set(names)) != len(names):
        raise BundleError(f"targets must be given and distinct, got {names}")
    output = Path(output)
    if output.exists() and not (output.is_dir() and not any(output.iterdir())) and not overwrite:
        raise BundleError(f"{output} exists and is not an empty directory (use --force to replace it)")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    say = progress or (lambda _msg: None)
    try:
        scheduled = []
        for ti, (target, name) in enumerate(zip(targets, names), 1):
            say(f"target {ti}/{len(targets)} {name}: scheduling {len(workloads)} kernels")
            scheduled.append(schedule_kernels(workloads, target, progress))
        infos: Dict[str, dict] = {}
        for target, name, (mod, kernels) in zip(targets, names, scheduled):
            if target.kind.name != "cuda":
                say(f"  [{name}] compiling {len(kernels)} kernels into {name}.so")
                infos[name] = _compile_library(mod, target, tmp, name)
                say(f"  [{name}] compiled in {infos[name]['compile_seconds']:.1f} s")
        cuda_jobs = [(mod, target, name) for target, name, (mod, _) in zip(targets, names, scheduled)
                     if target.kind.name == "cuda"]
        if cuda_jobs:
            t0 = time.perf_counter()
            say(f"compiling CUDA device code for {', '.join(n for _, _, n in cuda_jobs)} in a child process")
            infos.update(_compile_cuda_in_child(cuda_jobs, tmp, say))
            say(f"  CUDA done in {time.perf_counter() - t0:.1f} s")
        entries = []
        for target, name, (mod, kernels) in zip(targets, names, scheduled):
            info = infos[name]
            if sha256_file(tmp / info["library"]) != info["sha256"]:
                raise BundleError(f"{info['library']}: checksum changed after the build")
            dev = info.get("device_code")
            if target.kind.name == "cuda":
                dev_path = tmp / dev["file"]
                blob = dev_path.read_bytes()
                if _device_format(blob) is None or sha256_bytes(blob) != dev["sha256"]:
                    raise BundleError(f"{dev['file']} is not the compiled device code")
                lib_bytes = (tmp / info["library"]).read_bytes()
                if lib_bytes.find(blob) < 0:
                    raise BundleError(f"{info['library']} does not embed {dev['file']}")
                if b"__global__" in lib_bytes:  # TVM's CUDA source always declares its kernels so
                    raise BundleError(f"{info['library']} holds CUDA source; refusing to write it")
                if dev["format"] == "fatbin":  # (a bare cubin is one ELF image, named by no arch)
                    _check_device_code(dev_path, dev["archs"])
            entries.append({"name": name, "target": target_json(target), "library": info["library"],
                            "sha256": info["sha256"], "device_code": dev, "kernels": kernels,
                            "compile_seconds": info.get("compile_seconds")})
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "dynfilter_tvm": __version__,
            "tvm": tvm.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "targets": entries,
        }
        _validate_manifest(json.loads(json.dumps(manifest)), "new bundle")  # what we write, we can read
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        os.chmod(tmp, 0o755)
        if output.exists():
            trash = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.old-"))
            os.replace(output, trash / "old")
            os.replace(tmp, output)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


# --------------------------------------------------------------------------------------------
# Reading bundles

_HEX64 = re.compile(r"[0-9a-f]{64}")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,200}")
_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,250}")
_TOKEN = re.compile(r"[A-Za-z0-9_.+-]{1,64}")
_ARCH = re.compile(r"sm_\d+[a-z]?")


def _bad(where: str, what: str) -> BundleError:
    return BundleError(f"{where}: malformed bundle manifest: {what}")


def _field(obj: dict, key: str, types, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise _bad(where, f"missing {key!r}")
    value = obj[key]
    if not isinstance(value, types) or (isinstance(value, bool) and types is int):  # JSON true is no int
        raise _bad(where, f"{key!r} has the wrong type ({type(value).__name__})")
    return value


def _target_entry_name(entry: dict, where: str) -> str:
    """The target name the entry's target JSON implies (never trusting the 'name' field alone)."""
    tj = _field(entry, "target", dict, where)
    kind = _field(tj, "kind", str, where + " target")
    if kind == "llvm":
        mcpu = _field(tj, "mcpu", str, where + " target")
        if not _TOKEN.fullmatch(mcpu):
            raise _bad(where, f"bad CPU name {mcpu!r}")
        name = f"llvm-{mcpu}"
    elif kind == "cuda":
        arch = _field(tj, "arch", str, where + " target")
        if not _ARCH.fullmatch(arch):
            raise _bad(where, f"bad CUDA arch {arch!r}")
        name = "cuda-" + re.sub(r"(sm_\d+)a$", r"\1", arch)  # as target.target_name: sm_90a runs on sm_90
    else:
        raise _bad(where, f"target kind {kind!r} (expected llvm or cuda)")
    if _field(entry, "name", str, where) != name:
        raise _bad(where, f"target name {entry['name']!r} does not match its target ({name})")
    return name


def _validate_manifest(m, where: str) -> None:
    """Schema of a version-1 manifest (raises BundleError). Format and versions first."""
    if not isinstance(m, dict):
        raise _bad(where, "not a JSON object")
    if m.get("format") != FORMAT:
        raise _bad(where, f"'format' is {m.get('format')!r}, expected {FORMAT!r}")
    version = _field(m, "format_version", int, where)
    if version != FORMAT_VERSION:
        raise BundleError(f"{where}: bundle format version {version} is not supported "
                          f"(this dynfilter_tvm {__version__} reads version {FORMAT_VERSION}); rebuild the bundle")
    tvm_version = _field(m, "tvm", str, where)
    if tvm_version != tvm.__version__:
        raise BundleError(f"{where}: bundle built with TVM {tvm_version}, this machine has TVM {tvm.__version__}; "
                          "compiled kernels are only loaded by the TVM version that built them")
    _field(m, "dynfilter_tvm", str, where)
    _field(m, "created", str, where)
    targets = _field(m, "targets", list, where)
    if not targets:
        raise _bad(where, "no targets")
    seen_names, seen_files = set(), set()
    for ti, entry in enumerate(targets):
        w = f"{where} targets[{ti}]"
        if not isinstance(entry, dict):
            raise _bad(w, "not an object")
        name = _target_entry_name(entry, w)
        if name in seen_names:
            raise _bad(w, f"target {name} appears twice")
        seen_names.add(name)
        files = [_field(entry, "library", str, w)]
        _check_sha(_field(entry, "sha256", str, w), w)
        dev = entry.get("device_code")
        if name.startswith("cuda-"):
            if not isinstance(dev, dict):
                raise _bad(w, "a CUDA target without 'device_code'")
            files.append(_field(dev, "file", str, w + " device_code"))
            if _field(dev, "format", str, w + " device_code") not in ("fatbin", "cubin"):
                raise _bad(w, f"device code format {dev['format']!r}")
            _check_sha(_field(dev, "sha256", str, w + " device_code"), w)
            archs = _field(dev, "archs", list, w + " device_code")
            if not archs or not all(isinstance(a, str) and _ARCH.fullmatch(a) for a in archs):
                raise _bad(w, f"device code archs {archs!r}")
        elif dev is not None:
            raise _bad(w, "device code for a CPU target")
        for f in files:
            if not _FILE_NAME.fullmatch(f) or f == MANIFEST:
                raise _bad(w, f"file name {f!r} (a plain file name inside the bundle is expected)")
            if f in seen_files:
                raise _bad(w, f"file {f!r} is used twice")
            seen_files.add(f)
        kernels = _field(entry, "kernels", list, w)
        if not kernels:
            raise _bad(w, "no kernels")
        symbols, keys = set(), set()
        for ki, k in enumerate(kernels):
            wk = f"{w} kernels[{ki}]"
            if not isinstance(k, dict):
                raise _bad(wk, "not an object")
            try:
                wl = Workload.from_json(_field(k, "workload", dict, wk))
            except ValueError as err:
                raise _bad(wk, str(err)) from None
            sym = _field(k, "symbol", str, wk)
            if not _SYMBOL.fullmatch(sym):
                raise _bad(wk, f"symbol {sym!r}")
            _field(k, "schedule", str, wk)
            _field(k, "compute", str, wk)
            sig = _field(k, "signature", list, wk)
            for arg in sig:
                if not (isinstance(arg, dict) and isinstance(arg.get("name"), str) and isinstance(arg.get("dtype"), str)
                        and isinstance(arg.get("shape"), list)
                        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in arg["shape"])):
                    raise _bad(wk, f"signature argument {arg!r}")
            if sym in symbols or wl.key() in keys:
                raise _bad(wk, f"kernel {wl} appears twice")
            symbols.add(sym)
            keys.add(wl.key())


def _check_sha(value: str, where: str) -> None:
    if not _HEX64.fullmatch(value):
        raise _bad(where, f"SHA-256 {value!r}")


def _read_manifest(path: Path) -> dict:
    where = str(path)
    try:
        st = os.stat(path)
    except OSError as err:
        raise BundleError(f"{where}: no bundle manifest ({err.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{where}: the manifest is not a regular file")
    if st.st_size > _MAX_MANIFEST_BYTES:
        raise BundleError(f"{where}: manifest of {st.st_size} bytes is too large")

    def no_duplicates(pairs):
        out = {}
        for k, v in pairs:
            if k in out:
                raise ValueError(f"duplicate key {k!r}")
            out[k] = v
        return out

    def no_constants(name):
        raise ValueError(f"{name} is not JSON")

    try:
        data = json.loads(path.read_bytes().decode("utf-8"), object_pairs_hook=no_duplicates,
                          parse_constant=no_constants)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BundleError(f"{where}: the manifest is not valid JSON ({err}); "
                          "the bundle is damaged or truncated") from None
    _validate_manifest(data, where)
    return data


@functools.lru_cache(maxsize=None)
def _local_cuda_archs() -> Tuple[str, ...]:
    """The sm_XY of every CUDA device TVM sees here (none when TVM's CUDA runtime is absent)."""
    if not tvm.runtime.enabled("cuda"):
        return ()
    archs = []
    for i in range(64):
        dev = tvm.cuda(i)
        if not dev.exist:
            break
        archs.append("sm_" + str(dev.compute_version).replace(".", ""))
    return tuple(archs)


def _this_machine() -> Tuple[set, str]:
    """The target names kernels may run on here, and this machine in words."""
    try:
        cpu: Optional[str] = host_cpu_name()
    except AttributeError:  # a runtime-only TVM has no LLVM to name the CPU: no CPU target fits
        cpu = None
    archs = _local_cuda_archs()
    names = ({f"llvm-{cpu}"} if cpu else set()) | {f"cuda-{a}" for a in archs}
    gpus = f"CUDA GPUs {', '.join(sorted(set(archs)))}" if archs else "no CUDA GPU visible to TVM"
    cpus = f"CPU {cpu} (llvm-{cpu})" if cpu else "a CPU TVM cannot name (no LLVM in this TVM)"
    return names, f"{cpus}, {gpus}"


def _read_regular_file(path: Path, where: str) -> bytes:
    try:
        st = os.lstat(path)
    except OSError as err:
        raise BundleError(f"{where}: {path.name} is missing ({err.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{where}: {path.name} is not a regular file")
    return path.read_bytes()


class Bundle:
    """A loaded bundle: the kernels it serves on this machine."""

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest = manifest
        self.targets: List[str] = []            # loaded (fit this machine)
        self.skipped: Dict[str, str] = {}       # target name -> why not loaded
        self.stale: List[str] = []              # kernels compiled from other operator definitions
        self.functions: Dict[Tuple[str, str], object] = {}  # (workload key, target name) -> function
        self.workloads: Dict[str, List[Workload]] = {}      # target name -> workloads served
        self._modules: List[object] = []

    def __repr__(self) -> str:
        return (f"Bundle({str(self.path)!r}, targets={self.targets}, kernels={len(self.functions)}"
                + (f", skipped={sorted(self.skipped)}" if self.skipped else "") + ")")


def _current_compute(workload: Workload) -> Optional[str]:
    from .build import compute_digest

    try:
        return compute_digest(workload)
    except KeyError:  # an operator this installation does not know
        return None


def _load_target(bundle: Bundle, entry: dict) -> None:
    where, name = str(bundle.path), entry["name"]
    data = _read_regular_file(bundle.path / entry["library"], where)
    got = sha256_bytes(data)
    if got != entry["sha256"]:
        raise BundleError(f"{where}: {entry['library']} fails its checksum (manifest SHA-256 "
                          f"{entry['sha256'][:16]}..., file {got[:16]}...): the library was changed or damaged "
                          "after the bundle was written")
    dev = entry.get("device_code")
    if dev is not None:
        dev_data = _read_regular_file(bundle.path / dev["file"], where)
        if sha256_bytes(dev_data) != dev["sha256"] or data.find(dev_data) < 0:
            raise BundleError(f"{where}: {dev['file']} fails its checksum or is not the library's device code")
    # Load exactly the verified bytes: a private copy, removed once loaded.
    tmp = tempfile.mkdtemp(prefix="dynfilter_tvm_bundle_")
    try:
        lib_path = Path(tmp) / f"{name}.so"
        lib_path.write_bytes(data)
        try:
            module = tvm.runtime.load_module(str(lib_path))
        except Exception as err:
            raise BundleError(f"{where}: TVM cannot load {entry['library']}: {err}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    functions, workloads, stale = {}, [], []
    for k in entry["kernels"]:
        wl = Workload.from_json(k["workload"])
        if not module.implements_function(k["symbol"]):
            raise BundleError(f"{where}: {entry['library']} lacks the kernel {k['symbol']} ({wl}) its manifest lists")
        if _current_compute(wl) != k["compute"]:
            stale.append(f"{wl} [{name}]")
            continue
        functions[(wl.key(), name)] = module[k["symbol"]]
        workloads.append(wl)
    bundle._modules.append(module)
    bundle.functions.update(functions)
    bundle.workloads[name] = workloads
    bundle.stale += stale
    bundle.targets.append(name)


def _read_bundle(path: Path) -> Bundle:
    manifest = _read_manifest(path / MANIFEST)
    bundle = Bundle(path, manifest)
    fits, machine = _this_machine()
    entries = manifest["targets"]
    for entry in entries:
        if entry["name"] not in fits:
            bundle.skipped[entry["name"]] = "does not fit this machine"
    usable = [e for e in entries if e["name"] in fits]
    if not usable:
        raise BundleError(f"{path}: no target of this bundle fits this machine: it holds kernels for "
                          f"{', '.join(e['name'] for e in entries)}; this machine is {machine}")
    for entry in usable:
        _load_target(bundle, entry)
    if bundle.stale:
        log.warning("dynfilter_tvm: %d kernels of bundle %s were compiled from other operator definitions "
                    "(bundle from dynfilter_tvm %s, this is %s) and are not used: %s", len(bundle.stale), path,
                    manifest["dynfilter_tvm"], __version__, ", ".join(bundle.stale[:3]))
    return bundle


_lock = threading.RLock()
_bundles: List[Bundle] = []
_index: Dict[Tuple[str, str], object] = {}
_env = {"done": False, "error": None}
stats = {"bundle_hits": 0}


def load_bundle(path) -> Bundle:
    """Load a bundle directory (or its ``manifest.json``) so that kernel lookups serve its
    kernels before the caches and the compiler. Raises :class:`BundleError` if it is
    damaged, foreign (format or TVM version) or fits nothing on this machine. Loading the
    same directory twice is a no-op; the first loaded bundle wins where two hold a kernel."""
    path = Path(path)
    if path.name == MANIFEST and path.is_file():
        path = path.parent
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle directory")
    path = path.resolve()
    with _lock:
        for b in _bundles:
            if b.path == path:
                return b
        bundle = _read_bundle(path)
        for key, fn in bundle.functions.items():
            _index.setdefault(key, fn)
        _bundles.append(bundle)
    log.info("dynfilter_tvm: loaded %r", bundle)
    return bundle


def loaded_bundles() -> List[Bundle]:
    _load_env()
    return list(_bundles)


def clear_bundles() -> None:
    """Forget every loaded bundle; ``DYNFILTER_TVM_BUNDLE`` is read again at the next lookup."""
    with _lock:
        _bundles.clear()
        _index.clear()
        _env.update(done=False, error=None)


def _load_env() -> None:
    if _env["done"] and _env["error"] is None:
        return
    with _lock:
        if not _env["done"]:
            _env["done"] = True
            for p in [p for p in os.environ.get(ENV_BUNDLE, "").split(os.pathsep) if p.strip()]:
                try:
                    load_bundle(p)
                except BundleError as err:
                    _env["error"] = BundleError(f"{ENV_BUNDLE}: {err}")
                    break
        if _env["error"] is not None:
            raise _env["error"]


@functools.lru_cache(maxsize=64)
def lookup(workload: Workload, target: Target):
    """The bundle's function for (workload, target), or None. Loads ``DYNFILTER_TVM_BUNDLE``
    at the first call."""
    if not _env["done"] or _env["error"] is not None:
        _load_env()
    if not _index:
        return None
    fn = _index.get((workload.key(), target_name(target)))
    if fn is not None:
        stats["bundle_hits"] += 1
    return fn


def jit_allowed() -> bool:
    return os.environ.get(ENV_JIT, "on").strip().lower() not in ("off", "0", "no", "false")


def _held(workload: Workload, name: str) -> str:
    if not _bundles:
        return (f"no kernel bundle is loaded (dynfilter_tvm.load_bundle or ${ENV_BUNDLE}, "
                "built with `dynfilter-tvm compile`)")
    parts = []
    for b in _bundles:
        n = sum(len(v) for v in b.workloads.values())
        parts.append(f"{b.path} holds {n} kernels for {', '.join(b.targets)}"
                     + (f" (and {', '.join(sorted(b.skipped))}, not for this machine)" if b.skipped else ""))
    similar = [str(w) for b in _bundles for w in b.workloads.get(name, [])
               if (w.op, w.kernel) == (workload.op, workload.kernel)]
    text = "the loaded bundles: " + "; ".join(parts)
    if similar:
        more = f" and {len(similar) - 6} more" if len(similar) > 6 else ""
        text += f". Their {workload.op}.{workload.kernel} kernels for {name}: {', '.join(similar[:6])}{more}"
    else:
        text += f". They hold no {workload.op}.{workload.kernel} kernel for {name}"
    stale = [s for b in _bundles for s in b.stale if s.startswith(str(workload))]
    if stale:
        text += ". A bundle has this kernel but compiled from other operator definitions (another version)"
    return text


def check_jit(workload: Workload, target: Target) -> None:
    """Called before compiling ``workload``: raises :class:`KernelUnavailableError` when
    ``DYNFILTER_TVM_JIT=off`` or when this machine has no compiler for ``target``."""
    name = target_name(target)
    if not jit_allowed():
        reason = f"{ENV_JIT}={os.environ.get(ENV_JIT)} forbids compiling it"
    else:
        ok, why = compiler_available(target)
        if ok:
            if _bundles:
                log.warning("dynfilter_tvm: %s for %s is not in the loaded bundles; compiling it", workload, name)
            return
        reason = f"this machine cannot compile it: {why}"
    raise KernelUnavailableError(
        f"no compiled kernel for {workload} on {name}, and {reason}. Checked {_held(workload, name)}. "
        "Build a bundle for these shapes with `dynfilter-tvm compile`.")


# --------------------------------------------------------------------------------------------
# Command line: dynfilter-tvm compile


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``dynfilter-tvm compile``: workload selection shared with ``tune``
    (``torch_bridge.workloads.add_arguments``), targets and the output."""
    from torch_bridge import workloads

    p.add_argument("--target", action="append", required=True, metavar="TARGET",
                   help="sm_XY (a CUDA arch, e.g. sm_90), llvm (this CPU), llvm:CPUNAME (another CPU, e.g. "
                        "llvm:skylake), a TVM tag or a target JSON; repeat for several targets in one bundle")
    p.add_argument("-o", "--output", required=True, metavar="BUNDLE", help="bundle directory to write")
    p.add_argument("--force", action="store_true", help="replace an existing bundle directory")
    workloads.add_arguments(p)


def run_cli(args: argparse.Namespace, parser: Optional[argparse.ArgumentParser] = None) -> int:
    """``dynfilter-tvm compile``: write a bundle for parsed ``args`` (see ``add_arguments``)."""
    from torch_bridge import workloads

    parser = parser or getattr(args, "parser", None)
    try:
        targets = [resolve(t) for t in args.target]
    except ValueError as err:
        if parser is not None:
            parser.error(str(err))
        raise
    t0 = time.perf_counter()
    try:
        found = workloads.from_args(args)
    except (ValueError, KeyError) as err:  # e.g. an input shape the model does not take
        msg = f"recording the kernels failed: {err.args[0] if err.args else err}"
        if parser is not None:
            parser.error(msg)
        raise ValueError(msg) from err
    what = f"model {args.model}" if args.model else f"{args.op} layer" if args.op else "the given workloads"
    shape = "x".join(map(str, args.input)) if args.input else ""
    print(f"{what}{' at ' + shape if shape else ''} ({args.dtype}, "
          f"{'forward and backward' if args.backward else 'forward only'}): {len(found)} kernels "
          f"(recorded in {time.perf_counter() - t0:.1f} s); {len(targets)} target(s): "
          f"{', '.join(target_name(t) for t in targets)}", flush=True)
    t0 = time.perf_counter()
    try:
        manifest = compile_bundle(found, targets, args.output, overwrite=args.force,
                                  progress=lambda msg: print(msg, flush=True))
    except BundleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: {len(found)} kernels x {len(manifest['targets'])} targets "
          f"in {time.perf_counter() - t0:.1f} s (load with dynfilter_tvm.load_bundle or {ENV_BUNDLE})")
    return 0
