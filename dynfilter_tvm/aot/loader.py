"""Loading bundles and the JIT policy: which kernels a loaded bundle serves on this machine,
``DYNFILTER_TVM_BUNDLE``, and whether a missing kernel may be compiled here
(``DYNFILTER_TVM_JIT``)."""
from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import tvm
from tvm.target import Target

from .. import __version__
from ..files import sha256_bytes
from ..target import device_arch, host_cpu_name, target_name
from ..workload import Workload
from .manifest import (ENV_BUNDLE, ENV_JIT, MANIFEST, BundleError, KernelUnavailableError, _read_manifest,
                       read_regular_file)
from .toolchain import compiler_available

log = logging.getLogger(__name__)


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
        archs.append(device_arch(dev))
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
    from ..build import compute_digest

    try:
        return compute_digest(workload)
    except KeyError:  # an operator this installation does not know
        return None


def _load_target(bundle: Bundle, entry: dict) -> None:
    where, name = str(bundle.path), entry["name"]
    data = read_regular_file(bundle.path / entry["library"], where, entry["library"])
    got = sha256_bytes(data)
    if got != entry["sha256"]:
        raise BundleError(f"{where}: {entry['library']} fails its checksum (manifest SHA-256 "
                          f"{entry['sha256'][:16]}..., file {got[:16]}...): the library was changed or damaged "
                          "after the bundle was written")
    dev = entry.get("device_code")
    if dev is not None:
        dev_data = read_regular_file(bundle.path / dev["file"], where, dev["file"])
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
        lookup.cache_clear()  # lookups made before this bundle may have found nothing
        lookup_generic.cache_clear()
    log.info("dynfilter_tvm: loaded %r", bundle)
    return bundle


def clear_bundles() -> None:
    """Forget every loaded bundle; ``DYNFILTER_TVM_BUNDLE`` is read again at the next lookup."""
    with _lock:
        _bundles.clear()
        _index.clear()
        _env.update(done=False, error=None)
        lookup.cache_clear()
        lookup_generic.cache_clear()


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


@functools.lru_cache(maxsize=256)
def lookup_generic(workload: Workload, target: Target):
    """A loaded bundle's *generic* function serving the static ``workload`` (same op, kernel,
    dtype and fixed parameters; the bundle's symbolic ones take any value), or None."""
    if not _env["done"] or _env["error"] is not None:
        _load_env()
    name, wanted = target_name(target), workload.p
    for bundle in _bundles:
        for wl in bundle.workloads.get(name, []):
            if (wl.kind == "generic" and (wl.op, wl.kernel, wl.dtype) == (workload.op, workload.kernel, workload.dtype)
                    and wl.p.keys() == wanted.keys()
                    and all(v is None or v == wanted[k] for k, v in wl.p.items())):
                fn = bundle.functions.get((wl.key(), name))
                if fn is not None:
                    stats["bundle_hits"] += 1
                    return fn
    return None


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


def check_jit(workload: Workload, target: Target, asked: Optional[Workload] = None) -> None:
    """Called before compiling ``workload`` (the build serving the call for ``asked``, e.g. its
    generic kernel): raises :class:`KernelUnavailableError` when ``DYNFILTER_TVM_JIT=off`` or
    when this machine has no compiler for ``target``; the message names the shapes asked for."""
    name = target_name(target)
    what = str(workload) if asked is None or asked == workload else f"{asked} (nor its generic kernel {workload})"
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
        f"no compiled kernel for {what} on {name}, and {reason}. Checked {_held(asked or workload, name)}. "
        "Build a bundle for these shapes with `dynfilter-tvm compile`.")
