"""Writing bundles: schedule every workload as a JIT build would, compile one library per
target (CUDA device code in a child process against the real or stub driver), check the
device code, and publish the directory atomically."""
from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import tvm
from tvm.target import Target

from .. import __version__
from ..files import sha256_bytes, sha256_file
from ..target import resolve, target_json, target_name
from ..workload import Workload
from .manifest import (FORMAT, FORMAT_VERSION, MANIFEST, BundleError, _device_format, _validate_manifest,
                       kernel_symbol)
from .toolchain import _check_device_code, _cuda_compile_env, _cuda_driver_present, build_stub_libcuda

Progress = Optional[Callable[[str], None]]


def _signature(func) -> List[dict]:
    """Each argument of a PrimFunc: name, shape (an int per axis, or the name of a symbolic
    extent: an expression of the workload's symbolic parameters), dtype."""
    return [{"name": str(p.name), "shape": [int(n) if isinstance(n, (int, tvm.tirx.IntImm)) else str(n)
                                            for n in p.shape], "dtype": str(p.dtype)}
            for p in func.params]


def schedule_kernels(workloads: Sequence[Workload], target: Target, progress: Progress = None
                     ) -> Tuple[tvm.IRModule, List[dict]]:
    """Every workload scheduled for ``target`` and renamed to its symbol, merged into one
    IRModule, with the manifest entry of each kernel."""
    from ..build import compute_digest, schedule

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
        kernels.append({"workload": wl.to_json(), "kind": wl.kind, "symbol": sym, "schedule": schedule_id,
                        "compute": compute_digest(wl), "signature": _signature(func)})
    return tvm.IRModule({tvm.ir.GlobalVar(sym): f for sym, f in funcs.items()}), kernels


def _compile_library(mod: tvm.IRModule, target: Target, out_dir: Path, stem: str) -> dict:
    """Compile ``mod`` once for ``target`` and export ``<stem>.so`` (and, for CUDA, the device
    code as ``<stem>.fatbin``/``.cubin``). For CUDA, TVM's CUDA runtime must be loaded in this
    process (a GPU driver or the stub), else TVM would keep source."""
    from ..build import TIR_PIPELINE  # launch bounds the schedules ask for, as JIT builds

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
                lib = tvm.compile(mod, target=target, tir_pipeline=TIR_PIPELINE)
        finally:
            tvm_ffi.register_global_func("tvm_callback_cuda_compile", original, override=True)
    else:
        with target:
            lib = tvm.compile(mod, target=target, tir_pipeline=TIR_PIPELINE)
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


def _package_roots() -> List[str]:
    """Directories to put on the child's PYTHONPATH so it imports these very packages."""
    import schedules

    roots = [str(Path(__file__).resolve().parents[2]), str(Path(schedules.__file__).resolve().parent.parent)]
    return list(dict.fromkeys(roots))


_CHILD = "import sys; from dynfilter_tvm.aot.writer import _child_main; sys.exit(_child_main(sys.argv[1]))"


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
            elif not _PTXAS_CHATTER.match(line):  # -Xptxas -v's resource lines would bury the error
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
_PTXAS_CHATTER = re.compile(r"ptxas info\s*:|\s+\d+ bytes stack frame, ")


def _child_main(spec_path: str) -> int:
    """Entry of the CUDA build child (see :func:`_compile_cuda_in_child`)."""
    import tvm.s_tir  # noqa: F401  (registers the schedulable-TIR IR types load_json meets)

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
