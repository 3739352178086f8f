"""Compiled-kernel cache: in memory, and on disk as shared libraries.

Disk entries are ``<dir>/<target-name>/<digest>.so`` beside ``<digest>.json`` holding the full
key, the library's SHA-256 and its size. Writes go to a temporary file in the same directory and
are renamed into place (atomic on POSIX), so readers never see half a file; an entry whose key,
size or checksum does not match is deleted and rebuilt, never loaded. The key holds everything
that changes the code: workload, target (with CPU name or GPU arch), compute and schedule source
(or tuning record), TVM and package versions.

Damage must never cost more than a rebuild. Before ``dlopen`` the library's ELF headers are
checked against the file size (a truncated library whose checksum was rewritten would otherwise
crash the process with SIGBUS); entries from older metadata without a size get this check too.
Where a bad entry cannot be deleted (a shared read-only cache) the kernel is built in memory with
one warning and nothing is written to that folder for the rest of the process. Temporaries that
killed builds leave behind are deleted when a target's folder is first opened in a process, once
older than :data:`STALE_TMP_AGE_S` (younger ones may be another process's write in progress).

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
import struct
import threading
import time
from pathlib import Path
from typing import Dict, Optional

import tvm
from tvm.target import Target

from . import __version__, aot, dispatch
from .build import build, compute_digest, pipeline_digest, plan
from .files import atomic_write, sha256_file
from .target import target_key, target_name
from .workload import Workload

log = logging.getLogger(__name__)
_lock = threading.Lock()
# (workload key, target key) -> function, and per call (Workload, target key, shape mode) -> function
_memory: Dict[tuple, object] = {}
stats = {"built": 0, "disk_hits": 0, "memory_hits": 0, "rejected": 0}
# Longer than any kernel build: a younger temporary may be another process's write in progress.
STALE_TMP_AGE_S = 3600
_swept: set = set()  # target folders whose stale temporaries this process has deleted
_unwritable: set = set()  # target folders where a bad entry could not be deleted (read-only)


def cache_dir() -> Optional[Path]:
    env = os.environ.get("DYNFILTER_TVM_CACHE")
    if env == "off":
        return None
    return Path(env) if env else Path.home() / ".cache" / "dynfilter_tvm"


def full_key(workload: Workload, target: Target, schedule_id: str) -> dict:
    return {
        "workload": workload.to_json(),
        "kind": workload.kind,  # generic (symbolic shapes) or static
        "target": target_key(target),
        "compute": compute_digest(workload),
        "schedule": schedule_id,
        "pipeline": pipeline_digest(),  # the TIR pipeline every build runs (launch bounds)
        "tvm": tvm.__version__,
        "dynfilter_tvm": __version__,
    }


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def _sweep_temporaries(folder: Path) -> None:
    """Delete temporaries older than ``STALE_TMP_AGE_S`` in ``folder``, once per process."""
    if folder in _swept:
        return
    _swept.add(folder)
    cutoff = time.time() - STALE_TMP_AGE_S
    for tmp in folder.glob(".*.tmp.*"):  # files.atomic_write's names: .<name>.XXXXXXXX.tmp<suffix>
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except OSError:  # swept by another process meanwhile, or a read-only folder
            pass


# ELF header (e_ident skipped, e_type .. e_shstrndx) and program header (p_offset and p_filesz
# kept) per ELF class, 1: 32-bit, 2: 64-bit.
_EHDR = {1: "16x HHI III IHHHHHH", 2: "16x HHI QQQ IHHHHHH"}
_PHDR = {1: "4x I 8x I 12x", 2: "8x Q 16x Q 16x"}


def _check_elf(path: Path, size: int) -> None:
    """Raise ValueError unless ``path`` is an ELF file whose header tables and segments lie
    within ``size`` bytes. ``dlopen`` maps segments past the end of a truncated file and the
    process dies of SIGBUS on touching them, so this is checked by reading, never by loading."""
    with open(path, "rb") as f:
        head = f.read(64)  # the larger (64-bit) ELF header
        if head[:4] != b"\x7fELF" or len(head) < 6 or head[4] not in _EHDR or head[5] not in (1, 2):
            raise ValueError("not an ELF file")
        order = "<" if head[5] == 1 else ">"
        ehdr, phdr = order + _EHDR[head[4]], order + _PHDR[head[4]]
        if len(head) < struct.calcsize(ehdr):
            raise ValueError("ELF header truncated")
        fields = struct.unpack_from(ehdr, head)
        (phoff, shoff), (phentsize, phnum, shentsize, shnum) = fields[4:6], fields[8:12]
        if shoff + shnum * shentsize > size:
            raise ValueError("ELF section headers past the end of the file")
        if phoff + phnum * phentsize > size or (phnum and phentsize < struct.calcsize(phdr)):
            raise ValueError("ELF program headers past the end of the file")
        f.seek(phoff)
        table = f.read(phnum * phentsize)
    for i in range(phnum):
        p_offset, p_filesz = struct.unpack_from(phdr, table, i * phentsize)
        if p_offset + p_filesz > size:
            raise ValueError("ELF segment past the end of the file")


def _load_entry(lib_path: Path, meta_path: Path, key: dict):
    """Load a disk entry if it is intact and has exactly this key; else delete it (where the
    folder allows; else mark it unwritable) and return None."""
    if not (lib_path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != key:
            raise ValueError("key mismatch")
        size = lib_path.stat().st_size
        if meta.get("size", size) != size:  # older entries have no size; the ELF check still runs
            raise ValueError("size mismatch")
        if meta.get("sha256") != sha256_file(lib_path):
            raise ValueError("checksum mismatch")
        _check_elf(lib_path, size)
        return tvm.runtime.load_module(str(lib_path))
    except Exception as err:  # corrupt or foreign: never trust it
        stats["rejected"] += 1
        try:
            for p in (lib_path, meta_path):
                p.unlink(missing_ok=True)
        except OSError as unlink_err:  # a shared read-only cache: build in memory, store nothing
            _unwritable.add(lib_path.parent)
            log.warning("dynfilter_tvm: bad cache entry %s (%s) cannot be deleted (%s); building in "
                        "memory, not writing to this folder", lib_path, err, unlink_err)
        else:
            log.warning("dynfilter_tvm: discarding cache entry %s (%s); rebuilding", lib_path, err)
        return None


def _store_entry(lib, lib_path: Path, meta_path: Path, key: dict) -> None:
    try:
        lib_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(lib_path, lambda tmp: lib.export_library(tmp))
        meta = {"key": key, "sha256": sha256_file(lib_path), "size": lib_path.stat().st_size}
        atomic_write(meta_path, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
    except Exception as err:  # a read-only or full disk must not break the op
        log.warning("dynfilter_tvm: could not write cache entry %s: %s", lib_path, err)


_target_keys: Dict[Target, str] = {}  # per Target object (immutable; hashed by identity)


def _target_key(target: Target) -> str:
    """``target_key(target)``, remembered: its text form costs more than the rest of a
    memory hit."""
    key = _target_keys.get(target)
    if key is None:
        if len(_target_keys) >= 64:  # callers making a Target per call: stay small
            _target_keys.clear()
        key = _target_keys[target] = target_key(target)
    return key


def get(workload: Workload, target: Target):
    """The compiled function for ``workload`` on ``target``: AOT bundles, memory, disk, then
    build. A bundle's kernel for exactly ``workload``, else its generic kernel serving it,
    comes first (in either shape mode: a bundle built without ``--input`` serves every size);
    else ``dispatch.select`` picks the static or the generic build."""
    fn = aot.lookup(workload, target) or aot.lookup_generic(workload, target)
    if fn is not None:
        return fn
    # The shape mode is part of the key: a static call is served by a different build per mode.
    # The workload itself, not its JSON key, keys a call: hashing it is 20x cheaper, and this
    # lookup is on every kernel call's host path.
    mem_key = (workload, _target_key(target), dispatch.shape_mode(target, workload.op))
    lib = _memory.get(mem_key)
    if lib is not None:
        stats["memory_hits"] += 1
        return lib
    with _lock:
        lib = _memory.get(mem_key)
        if lib is not None:
            return lib
        chosen = dispatch.select(workload, target)
        fn = None
        if chosen is not workload:
            fn = aot.lookup(chosen, target) or _memory.get((chosen.key(), target_key(target)))
        if fn is None:
            fn = _load_or_build(chosen, target, asked=workload)
            _memory[(chosen.key(), target_key(target))] = fn
        _memory[mem_key] = fn
        return fn


def _load_or_build(workload: Workload, target: Target, asked: Optional[Workload] = None):
    """``workload``'s function from the disk cache, else built (and stored); ``asked``: the
    call's own workload, named in errors when ``workload`` is its generic build."""
    schedule_id, apply_schedule = plan(workload, target)
    key = full_key(workload, target, schedule_id)
    root = cache_dir()
    lib = None
    if root is not None:
        folder = root / target_name(target)
        _sweep_temporaries(folder)
        base = folder / _digest(key)
        lib_path, meta_path = base.with_suffix(".so"), base.with_suffix(".json")
        lib = _load_entry(lib_path, meta_path, key)
        if lib is not None:
            stats["disk_hits"] += 1
    if lib is None:
        aot.check_jit(workload, target, asked)  # JIT allowed and possible here, else a clear error
        log.info("dynfilter_tvm: compiling %s for %s", workload, target_name(target))
        lib = build(workload, target, apply_schedule())
        stats["built"] += 1
        if root is not None and folder not in _unwritable:
            _store_entry(lib, lib_path, meta_path, key)
    return _entry(lib, workload)


def _entry(lib, workload: Workload):
    """The kernel's function in a freshly built (Executable) or loaded (Module) library."""
    mod = getattr(lib, "mod", lib)
    return mod[f"{workload.op}_{workload.kernel}"]


def clear_memory() -> None:
    _memory.clear()
