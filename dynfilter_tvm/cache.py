"""Compiled-kernel cache: in memory, and on disk as shared libraries.

Disk entries are ``<dir>/<target-name>/<digest>.so`` beside ``<digest>.json`` holding the full
key and the library's SHA-256. Writes go to a temporary file in the same directory and are
renamed into place (atomic on POSIX), so readers never see half a file; an entry whose key or
checksum does not match is deleted and rebuilt, never loaded. The key holds everything that
changes the code: workload, target (with CPU name or GPU arch), compute and schedule source
(or tuning record), TVM and package versions.

The directory is ``$DYNFILTER_TVM_CACHE`` if set, else ``~/.cache/dynfilter_tvm``;
``DYNFILTER_TVM_CACHE=off`` keeps kernels in memory only.

Kernels from ahead-of-time bundles (``dynfilter_tvm.aot``: ``load_bundle``,
``$DYNFILTER_TVM_BUNDLE``) are served before memory, disk and compiling. Compiling happens
only where allowed (``DYNFILTER_TVM_JIT=off`` forbids it) and possible (a compiler for the
target); otherwise a missing kernel raises ``aot.KernelUnavailableError``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Dict, Optional, Tuple

import tvm
from tvm.target import Target

from . import __version__, aot
from .build import build, compute_digest, plan
from .files import atomic_write, sha256_file
from .target import target_key, target_name
from .workload import Workload

log = logging.getLogger(__name__)
_lock = threading.Lock()
_memory: Dict[Tuple[str, str], object] = {}
stats = {"built": 0, "disk_hits": 0, "memory_hits": 0, "rejected": 0}


def cache_dir() -> Optional[Path]:
    env = os.environ.get("DYNFILTER_TVM_CACHE")
    if env == "off":
        return None
    return Path(env) if env else Path.home() / ".cache" / "dynfilter_tvm"


def full_key(workload: Workload, target: Target, schedule_id: str) -> dict:
    return {
        "workload": workload.to_json(),
        "target": target_key(target),
        "compute": compute_digest(workload),
        "schedule": schedule_id,
        "tvm": tvm.__version__,
        "dynfilter_tvm": __version__,
    }


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def _load_entry(lib_path: Path, meta_path: Path, key: dict):
    """Load a disk entry if it is intact and has exactly this key; else delete it."""
    if not (lib_path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != key:
            raise ValueError("key mismatch")
        if meta.get("sha256") != sha256_file(lib_path):
            raise ValueError("checksum mismatch")
        return tvm.runtime.load_module(str(lib_path))
    except Exception as err:  # corrupt or foreign: never trust it
        log.warning("dynfilter_tvm: discarding cache entry %s (%s); rebuilding", lib_path, err)
        stats["rejected"] += 1
        for p in (lib_path, meta_path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        return None


def _store_entry(lib, lib_path: Path, meta_path: Path, key: dict) -> None:
    try:
        lib_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(lib_path, lambda tmp: lib.export_library(tmp))
        meta = {"key": key, "sha256": sha256_file(lib_path)}
        atomic_write(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
    except Exception as err:  # a read-only or full disk must not break the op
        log.warning("dynfilter_tvm: could not write cache entry %s: %s", lib_path, err)


def get(workload: Workload, target: Target):
    """The compiled function for ``workload`` on ``target``: AOT bundles, memory, disk, then build."""
    fn = aot.lookup(workload, target)
    if fn is not None:
        return fn
    mem_key = (workload.key(), target_key(target))
    lib = _memory.get(mem_key)
    if lib is not None:
        stats["memory_hits"] += 1
        return lib
    with _lock:
        lib = _memory.get(mem_key)
        if lib is not None:
            return lib
        schedule_id, apply_schedule = plan(workload, target)
        key = full_key(workload, target, schedule_id)
        root = cache_dir()
        lib = None
        if root is not None:
            base = root / target_name(target) / _digest(key)
            lib_path, meta_path = base.with_suffix(".so"), base.with_suffix(".json")
            lib = _load_entry(lib_path, meta_path, key)
            if lib is not None:
                stats["disk_hits"] += 1
        if lib is None:
            aot.check_jit(workload, target)  # JIT allowed and possible here, else a clear error
            log.info("dynfilter_tvm: compiling %s for %s", workload, target_name(target))
            lib = build(workload, target, apply_schedule())
            stats["built"] += 1
            if root is not None:
                _store_entry(lib, lib_path, meta_path, key)
        fn = _entry(lib, workload)
        _memory[mem_key] = fn
        return fn


def _entry(lib, workload: Workload):
    """The kernel's function in a freshly built (Executable) or loaded (Module) library."""
    mod = getattr(lib, "mod", lib)
    return mod[f"{workload.op}_{workload.kernel}"]


def clear_memory() -> None:
    _memory.clear()
