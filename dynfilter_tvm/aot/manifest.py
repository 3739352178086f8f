"""Bundle manifests: the format, its errors, and the strict schema check of what is read
(plain JSON from another machine: never evaluated, every field typed and bounded)."""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Optional

import tvm

from .. import __version__
from ..target import ARCH, cuda_name
from ..workload import Workload


FORMAT = "dynfilter-tvm-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ENV_BUNDLE = "DYNFILTER_TVM_BUNDLE"
ENV_JIT = "DYNFILTER_TVM_JIT"
_MAX_MANIFEST_BYTES = 64 << 20
_FATBIN_MAGIC = b"\x50\xed\x55\xba"
_ELF_MAGIC = b"\x7fELF"



class BundleError(RuntimeError):
    """A bundle that cannot be written, or that is refused when loading."""


class KernelUnavailableError(RuntimeError):
    """A kernel that no loaded bundle holds and that may not or cannot be compiled here."""


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


_HEX64 = re.compile(r"[0-9a-f]{64}")
_EXTENT = re.compile(r"[A-Za-z0-9_ +\-*/%()]{1,200}")  # a symbolic extent, e.g. '(H + 1) // 2'
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,200}")
_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,250}")
_TOKEN = re.compile(r"[A-Za-z0-9_.+-]{1,64}")


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
        if not ARCH.fullmatch(arch):
            raise _bad(where, f"bad CUDA arch {arch!r}")
        name = cuda_name(arch)
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
            if not archs or not all(isinstance(a, str) and ARCH.fullmatch(a) for a in archs):
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
                        and all((isinstance(n, int) and not isinstance(n, bool) and n >= 0)
                                or (isinstance(n, str) and _EXTENT.fullmatch(n)) for n in arg["shape"])):
                    raise _bad(wk, f"signature argument {arg!r}")
            if k.get("kind", "static") != wl.kind:  # (bundles before generic kernels had no kind)
                raise _bad(wk, f"kind {k.get('kind')!r} but the workload is {wl.kind}")
            if sym in symbols or wl.key() in keys:
                raise _bad(wk, f"kernel {wl} appears twice")
            symbols.add(sym)
            keys.add(wl.key())


def _check_sha(value: str, where: str) -> None:
    if not _HEX64.fullmatch(value):
        raise _bad(where, f"SHA-256 {value!r}")


def read_regular_file(path: Path, where: str, what: str, limit: Optional[int] = None) -> bytes:
    """The bytes of a bundle file that must be a regular file (not a link or device) of at
    most ``limit`` bytes."""
    try:
        st = os.lstat(path)
    except OSError as err:
        raise BundleError(f"{where}: {what} is missing ({err.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{where}: {what} is not a regular file")
    if limit is not None and st.st_size > limit:
        raise BundleError(f"{where}: {what} of {st.st_size} bytes is too large")
    return path.read_bytes()


def _read_manifest(path: Path) -> dict:
    where = str(path)
    if not os.path.lexists(path):
        raise BundleError(f"{where}: no bundle manifest (no such file)")
    raw = read_regular_file(path, where, "the manifest", _MAX_MANIFEST_BYTES)

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
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates,
                          parse_constant=no_constants)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BundleError(f"{where}: the manifest is not valid JSON ({err}); "
                          "the bundle is damaged or truncated") from None
    _validate_manifest(data, where)
    return data
