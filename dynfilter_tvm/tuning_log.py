"""Tuning logs: MetaSchedule JSON databases, one per target, validated before any use.

A log is a directory ``<root>/<target-name>/`` (``tuning_logs/llvm-znver4-1c/``,
``tuning_logs/cuda-sm_90/``; see :func:`log_name`) holding

* ``database_workload.json`` / ``database_tuning_record.json``: MetaSchedule's JSON
  database (one JSON value per line; records point at workload lines by index);
* ``manifest.json``: the target (CPU model and core count, or GPU arch) and TVM version the records were measured with, and per
  workload our description of it (op, kernel, shapes, dtype), the structural hash of its
  PrimFunc, the default schedule's time, the tuned time, the trials spent, and the structural
  hash of the default-scheduled module that time was measured on (``default_schedule``).

Logs are data from other machines, so nothing in them is trusted: the files are parsed
here as plain JSON and checked line by line; the TVM IR stored in the workload lines is never
loaded. A record is applied to the PrimFunc *we* build from our own compute definition, and
only when that PrimFunc's structural hash equals the one the record was tuned on (a changed
compute makes old records stale, never wrong). Traces may only use the scheduling
instructions MetaSchedule's own rules emit; anything else is refused. A log whose target or
TVM version differs from the query's is refused with the reason (MetaSchedule's lookup itself
ignores the target).

A record is used only where it beat the default schedule, and that comparison holds only for the
default it was measured against: when the default schedule of a kernel changes (this package's
schedules get faster), its records are set aside with a warning until ``dynfilter-tvm logs
recheck`` measures both again (:func:`recheck`). Logs written before the default's hash was
recorded are taken as they are.

``export``/``import`` move a log as one portable JSON file that holds our workload
descriptions and the traces, not IR; ``merge`` keeps the best record per workload. Both write
a new database (never by concatenating files): the workload lines are MetaSchedule's
serialization of our own PrimFuncs, the record lines the records, each replayed once by
MetaSchedule's own parser on that PrimFunc before it is written.

A record's identity is the workload it was tuned on (structural hash) and its trace
(instructions and sampling decisions): the same schedule met twice, in two logs or twice in one
file, is one record (the faster measurement kept), so importing or merging is idempotent, and a
kernel's ``trials`` count its distinct records. Writes are all-or-nothing: the files are built in
memory and renamed into place together, with SIGINT/SIGTERM held back meanwhile.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib.util
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import tvm
from tvm.target import Target

from . import __version__, registry
from .files import atomic_write_bytes, fsync_dir, sha256_bytes
from .target import family, target_json, target_name
from .workload import Workload

log = logging.getLogger(__name__)

MANIFEST, WORKLOADS, RECORDS = "manifest.json", "database_workload.json", "database_tuning_record.json"
FORMAT, EXPORT_FORMAT, VERSION = "dynfilter-tvm-tuning-log", "dynfilter-tvm-tuning-export", 1

# The instructions MetaSchedule's schedule rules, mutators and postprocessors put in traces.
# Anything else in a foreign trace (e.g. the unsafe_* primitives) is refused.
SAFE_INSTRUCTIONS = frozenset("""
GetSBlock GetLoops GetChildBlocks GetProducers GetConsumers GetOutputBlocks Split Fuse Reorder
Parallel Vectorize Unroll Bind ComputeAt ReverseComputeAt ComputeInline ReverseComputeInline
CacheRead CacheWrite ReIndex Annotate Unannotate SampleCategorical SamplePerfectTile
SamplePartitionedTile SampleComputeLocation EnterPostproc DecomposeReduction RFactor StorageAlign
SetScope AddUnitLoop Blockize Tensorize PadEinsum DecomposePadding TransformLayout
TransformBlockLayout LoopPartition
""".split())


class TuningLogError(ValueError):
    """A tuning log (or export file) that is malformed, foreign or for another target/TVM."""


def default_root() -> Path:
    """The shipped logs: the ``tuning_logs`` package (data only), found where it is installed,
    so a regular ``pip install`` serves them as well as a checkout does."""
    spec = importlib.util.find_spec("tuning_logs")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(__file__).resolve().parent.parent / "tuning_logs"


def user_root() -> Path:
    """The user's own logs: ``$XDG_DATA_HOME/dynfilter-tvm/tuning_logs`` (by default
    ``~/.local/share/dynfilter-tvm/tuning_logs``)."""
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "dynfilter-tvm" / "tuning_logs"


def _env_roots() -> List[Path]:
    env = os.environ.get("DYNFILTER_TVM_TUNING_LOGS", "")
    return [] if env == "off" else [Path(p) for p in env.split(os.pathsep) if p]


def import_root() -> Path:
    """Where ``logs import`` writes without ``-o``: the first root in
    ``$DYNFILTER_TVM_TUNING_LOGS`` when set, else :func:`user_root`; builds search both."""
    env = _env_roots()
    return env[0] if env else user_root()


def search_roots() -> List[Path]:
    """Where the build looks for logs: ``$DYNFILTER_TVM_TUNING_LOGS`` (``os.pathsep``-separated
    roots, first wins; ``off`` disables tuned schedules), then the user's :func:`user_root`
    (where ``logs import`` writes), then the shipped ``tuning_logs/``."""
    if os.environ.get("DYNFILTER_TVM_TUNING_LOGS", "") == "off":
        return []
    roots: List[Path] = []
    for root in _env_roots() + [user_root(), default_root()]:
        if root not in roots:
            roots.append(root)
    return roots


def log_name(target: Target) -> str:
    """The directory a target's log lives in: ``target_name`` plus, for CPUs, the core count
    the schedules were tuned for ('llvm-znver4-2c'): a schedule tuned for one core has no
    parallel loop and would idle the others."""
    name = target_name(target)
    if target.kind.name == "llvm":
        name += f"-{int(target.attrs.get('num-cores', 1))}c"
    return name


def mod_of(workload: Workload) -> tvm.IRModule:
    """The module MetaSchedule tunes for ``workload`` (function ``main``)."""
    return tvm.IRModule({"main": registry.prim_func(workload)})


def structural_hash(mod: tvm.IRModule) -> str:
    from tvm.s_tir import meta_schedule as ms

    return str(ms.database.Workload(mod).as_json()[0])


@dataclasses.dataclass
class Entry:
    """One tuned workload: its description, hash and the figures of its tuning."""

    workload: Workload
    shash: str
    default_us: Optional[float] = None  # default schedule, measured by the tuner
    tuned_us: Optional[float] = None  # best record, measured the same way
    trials: int = 0
    tuning_s: float = 0.0
    default_schedule: Optional[str] = None  # structural hash of the default module default_us timed

    @property
    def use(self) -> bool:
        """Whether builds take the record: only when it beat the default schedule (a slower
        record is kept as the warm start of further tuning)."""
        return self.tuned_us is not None and (self.default_us is None or self.tuned_us < self.default_us)

    def to_json(self) -> dict:
        return {"workload": self.workload.to_json(), "kind": self.workload.kind, "shash": self.shash,
                "default_us": self.default_us,
                "tuned_us": self.tuned_us, "trials": self.trials, "tuning_s": round(self.tuning_s, 1),
                "default_schedule": self.default_schedule}

    @classmethod
    def from_json(cls, data) -> "Entry":
        _expect(isinstance(data, dict), "manifest workload entry is not an object")
        wl = Workload.from_json(data.get("workload"))
        _expect((wl.op, wl.kernel) in registry.kernels(), f"unknown kernel {wl.op}.{wl.kernel}")
        # MetaSchedule tunes static shapes only (logs before generic kernels had no kind)
        _expect(wl.kind == "static" and data.get("kind", "static") == "static",
                "manifest workloads must be static (MetaSchedule tunes fixed shapes)")
        shash = data.get("shash")
        _expect(isinstance(shash, str) and shash.isdigit(), "manifest shash must be a decimal string")
        nums = {k: data.get(k) for k in ("default_us", "tuned_us")}
        for k, v in nums.items():
            _expect(v is None or (_is_num(v) and v > 0), f"manifest {k} must be a positive number")
        trials, secs = data.get("trials", 0), data.get("tuning_s", 0.0)
        _expect(isinstance(trials, int) and trials >= 0 and _is_num(secs), "manifest trials/tuning_s malformed")
        dsch = data.get("default_schedule")
        _expect(dsch is None or (isinstance(dsch, str) and dsch.isdigit()),
                "manifest default_schedule must be a decimal string")
        return cls(wl, shash, nums["default_us"], nums["tuned_us"], trials, float(secs), dsch)


@dataclasses.dataclass
class Record:
    """One measured schedule: MetaSchedule's record JSON (trace, run times, target, args)."""

    shash: str
    raw: list  # [trace_json, run_secs, target_json, args_info_json]
    _key: Optional[Tuple[str, str]] = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def seconds(self) -> float:
        return mean_seconds(self.raw[1] or ())

    @property
    def key(self) -> Tuple[str, str]:
        """The record's identity (see :func:`record_key`)."""
        if self._key is None:
            self._key = record_key(self.shash, self.raw)
        return self._key


def record_key(shash: str, raw: list) -> Tuple[str, str]:
    """A record's identity: the structural hash of the workload it was tuned on and its trace
    (instructions and sampling decisions), as canonical JSON. Its run times are not part of
    it: the same schedule measured twice is one record."""
    return shash, json.dumps(raw[0], sort_keys=True, separators=(",", ":"))


# Target attributes that describe a GPU without changing the code generated for it (TVM's tags
# add them, our own CUDA targets leave them out). Every other field must match.
_INFO_ONLY_TARGET_FIELDS = frozenset({"tag", "registers_per_block", "l2_cache_size_bytes"})


def code_fields(target) -> dict:
    """The fields of a target (a ``Target`` or its JSON) that select the generated code,
    canonicalized by TVM; an ``sm_90a`` arch counts as ``sm_90``, as in :func:`target_name`."""
    fields = target_json(target if isinstance(target, Target) else Target(target))
    fields = {k: v for k, v in fields.items() if k not in _INFO_ONLY_TARGET_FIELDS}
    if fields.get("kind") == "cuda" and isinstance(fields.get("arch"), str):
        fields["arch"] = re.sub(r"(sm_\d+)a$", r"\1", fields["arch"])
    return fields


def _field_diff(mine: dict, theirs: dict) -> str:
    keys = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    return ", ".join(f"{k} {mine.get(k, '(unset)')!r} vs {theirs.get(k, '(unset)')!r}" for k in keys)


@contextlib.contextmanager
def _no_gc():
    """Parse large JSON without the cyclic GC: it rescans the millions of new lists again and
    again (8x slower on a 10,000-record export); none of them form cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def mean_seconds(run_secs) -> float:
    """Mean of a measurement's repeats (MetaSchedule's run_secs); inf when it has none."""
    values = [float(v) for v in run_secs]
    return sum(values) / len(values) if values else math.inf


def format_us(us: Optional[float]) -> str:
    return "-" if us is None else f"{us:.1f}us"


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise TuningLogError(what)


def _check_record(raw) -> list:
    """Structure of a MetaSchedule record's JSON, and the instructions of its trace."""
    _expect(isinstance(raw, list) and len(raw) == 4, "a tuning record must be [trace, run_secs, target, args_info]")
    trace, secs, tgt, args = raw
    _expect(isinstance(trace, list) and len(trace) == 2 and isinstance(trace[0], list)
            and isinstance(trace[1], list), "malformed trace")
    for inst in trace[0]:
        _expect(isinstance(inst, list) and len(inst) == 4 and isinstance(inst[0], str), "malformed trace instruction")
        _expect(inst[0] in SAFE_INSTRUCTIONS, f"trace instruction {inst[0]!r} is not one MetaSchedule's rules emit")
    _expect(secs is None or (isinstance(secs, list) and all(_is_num(s) and s >= 0 for s in secs)),
            "run_secs must be a list of non-negative numbers")
    _expect(isinstance(tgt, dict) and isinstance(args, list), "malformed record target or args_info")
    return raw


def _json_lines(path: Path, repair: bool = False) -> list:
    """The JSON values of a JSON-lines file. A truncated last line (a run killed while
    writing) is an error, or with ``repair`` cut off (our own log, being resumed)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    out = []
    with _no_gc():
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except (ValueError, RecursionError) as err:
                last = i == len(lines) - 1
                if last and repair:
                    log.warning("%s: dropping a truncated last line (an interrupted run)", path)
                    atomic_write_bytes(path, data[: len(data) - len(line)])
                    break
                raise TuningLogError(f"{path}: line {i + 1} is not valid JSON"
                                     f"{' (truncated: was a run interrupted?)' if last else ''}: {err}") from None
    return out


def write_json(path: Path, value) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=1) + "\n").encode())


class TuningLog:
    """A validated tuning log directory (see the module docstring)."""

    def __init__(self, path: Path, target: dict, target_name: str, tvm_version: str,
                 entries: Dict[str, Entry], records: Dict[str, List[Record]]):
        self.path, self.target, self.target_name, self.tvm_version = path, target, target_name, tvm_version
        self.entries = entries  # by workload key
        self.records = records  # by structural hash, best first

    # -- reading -------------------------------------------------------------------------
    @classmethod
    def load(cls, path, repair: bool = False) -> "TuningLog":
        path = Path(path)
        try:
            return cls._load(path, repair)
        except TuningLogError as err:
            raise TuningLogError(f"tuning log {path}: {err}") from None
        except (KeyError, TypeError, ValueError, RecursionError, OSError) as err:
            raise TuningLogError(f"tuning log {path} is malformed: {type(err).__name__}: {err}") from None

    @classmethod
    def _load(cls, path: Path, repair: bool) -> "TuningLog":
        _expect(path.is_dir(), "no such directory")
        _expect((path / MANIFEST).exists(), f"no {MANIFEST}: not a dynfilter-tvm tuning log")
        tl = cls.from_manifest(path, json.loads((path / MANIFEST).read_text()))
        hashes = []
        for i, line in enumerate(_json_lines(path / WORKLOADS, repair)):
            _expect(isinstance(line, list) and len(line) == 2 and isinstance(line[0], str) and line[0].isdigit(),
                    f"{WORKLOADS} line {i + 1} is not [structural hash, module]")
            hashes.append(line[0])
        records: Dict[str, List[Record]] = {}
        for i, line in enumerate(_json_lines(path / RECORDS, repair)):
            _expect(isinstance(line, list) and len(line) == 2 and isinstance(line[0], int)
                    and 0 <= line[0] < len(hashes), f"{RECORDS} line {i + 1} points at no workload line")
            try:
                raw = _check_record(line[1])
            except TuningLogError as err:
                raise TuningLogError(f"{RECORDS} line {i + 1}: {err}") from None
            records.setdefault(hashes[line[0]], []).append(Record(hashes[line[0]], raw))
        for recs in records.values():
            recs.sort(key=lambda r: r.seconds)
        tl.records = records
        return tl

    @classmethod
    def from_manifest(cls, path: Path, man) -> "TuningLog":
        """A log holding no records yet, from a (checked) manifest."""
        _expect(isinstance(man, dict) and man.get("format") == FORMAT, f"{MANIFEST} is not a {FORMAT} manifest")
        _expect(man.get("version") == VERSION, f"format version {man.get('version')!r}; this build reads {VERSION}")
        for key in ("target_name", "tvm"):
            _expect(isinstance(man.get(key), str), f"{MANIFEST} lacks {key!r}")
        _expect(isinstance(man.get("target"), dict), f"{MANIFEST} lacks the target")
        _expect(isinstance(man.get("workloads"), list), f"{MANIFEST} lacks the workload list")
        entries = {}
        for data in man["workloads"]:
            e = Entry.from_json(data)
            entries[e.workload.key()] = e
        return cls(path, man["target"], man["target_name"], man["tvm"], entries, {})

    def code_target(self) -> dict:
        """The manifest target's code-selecting fields (:func:`code_fields`), after checking that
        it is a target we build for and the one its ``target_name`` names (a manifest edited in
        one place but not the other is refused)."""
        try:
            tgt = Target(self.target)
            family(tgt)
        except Exception as err:  # TVM's own error types for a bad config
            raise TuningLogError(f"tuning log {self.path}: its manifest target is not one dynfilter-tvm builds "
                                 f"for: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
        implied = log_name(tgt)
        if implied != self.target_name:
            raise TuningLogError(f"tuning log {self.path}: its manifest names {self.target_name} but its target is "
                                 f"{implied}'s ({json.dumps(self.target, sort_keys=True)}): edited or corrupt")
        return code_fields(tgt)

    def check_compatible(self, target: Target) -> None:
        """Refuse a log measured on another target (any code-selecting field of the manifest's
        target JSON differing from ``target``'s) or TVM version."""
        want = log_name(target)
        if self.target_name != want:
            raise TuningLogError(f"tuning log {self.path} was tuned for {self.target_name}, not {want}: "
                                 "schedules are specific to a CPU model and core count, or a GPU arch")
        mine, theirs = self.code_target(), code_fields(target)
        if mine != theirs:
            raise TuningLogError(f"tuning log {self.path} was tuned for another {want} target than this build's "
                                 f"({_field_diff(mine, theirs)}): schedules are specific to the whole target")
        if self.tvm_version != tvm.__version__:
            raise TuningLogError(f"tuning log {self.path} was written with TVM {self.tvm_version}, this is TVM "
                                 f"{tvm.__version__}: traces do not carry across TVM versions")

    def best(self, entry: Entry) -> Optional[Record]:
        recs = [r for r in self.records.get(entry.shash, ()) if r.raw[1]]
        return recs[0] if recs else None

    # -- using ---------------------------------------------------------------------------
    def default_changed(self, entry: Entry) -> bool:
        """Whether today's default schedule for ``entry`` (for this log's target) differs from
        the one its ``default_us`` was timed on; False for logs that did not record it."""
        return (entry.default_schedule is not None
                and entry.default_schedule != default_hash(entry.workload, Target(self.target)))

    def schedule(self, workload: Workload, mod: Optional[tvm.IRModule] = None,
                 include_unused: bool = False) -> Optional[Tuple[tvm.IRModule, str]]:
        """The module scheduled by the best usable record for ``workload``, and an id naming
        the record; None when there is none (or it is stale, slower than the default, or was
        compared with another default than today's: :meth:`default_changed`)."""
        entry = self.entries.get(workload.key())
        if entry is None or not (entry.use or include_unused):
            return None
        rec = self.best(entry)
        if rec is None:
            return None
        mod = mod if mod is not None else mod_of(workload)
        if structural_hash(mod) != entry.shash:
            _warn_once(f"dynfilter_tvm: tuning record for {workload} in {self.path} is stale (its compute "
                       "changed); using the default schedule")
            return None
        if not include_unused and self.default_changed(entry):
            _warn_once(f"dynfilter_tvm: tuning record for {workload} in {self.path} was compared with an older "
                       "default schedule; using today's default (run `dynfilter-tvm logs recheck "
                       f"{self.path}` to measure both again)")
            return None
        return apply_record(mod, rec.raw), "tuned:" + record_id(rec.raw)

    # -- writing -------------------------------------------------------------------------
    def manifest(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "target_name": self.target_name, "target": self.target,
                "tvm": self.tvm_version, "dynfilter_tvm": __version__,
                "workloads": [e.to_json() for e in sorted(self.entries.values(), key=lambda e: e.workload.key())]}

    def save_manifest(self) -> None:
        write_json(self.path / MANIFEST, self.manifest())


def record_id(raw: list) -> str:
    return sha256_bytes(json.dumps(raw[0], sort_keys=True).encode())[:16]


def apply_record(mod: tvm.IRModule, raw: list) -> tvm.IRModule:
    """Replay a (checked) record's trace on our own module."""
    import tvm.s_tir as s_tir
    from tvm.s_tir import meta_schedule as ms

    _check_record(raw)
    try:
        rec = ms.database.TuningRecord.from_json(raw, ms.database.Workload(mod))
        sch = s_tir.Schedule(mod)
        rec.trace.apply_to_schedule(sch, remove_postproc=False)
    except Exception as err:  # a trace that does not fit this PrimFunc
        raise TuningLogError(f"tuning record does not apply to this kernel: {type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}") from None
    return sch.mod


def create(path, target: Target) -> TuningLog:
    """A new, empty log for ``target`` at ``path`` (refused if ``path`` already holds files)."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise TuningLogError(f"{path} exists and is not empty")
    path.mkdir(parents=True, exist_ok=True)
    tl = TuningLog(path, target_json(target), log_name(target), tvm.__version__, {}, {})
    tl.save_manifest()
    return tl


def open_or_create(path, target: Target, repair: bool = True) -> TuningLog:
    path = Path(path)
    if (path / MANIFEST).exists():
        tl = TuningLog.load(path, repair=repair)
        tl.check_compatible(target)
        return tl
    return create(path, target)


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def _database_files(chosen: List[Tuple[Entry, List[list]]], progress: bool = False,
                    existing: Optional[Path] = None) -> Dict[str, bytes]:
    """MetaSchedule's JSON database holding ``chosen`` (entry, raw records), as file contents.
    Every workload line is MetaSchedule's serialization of our own PrimFunc; every record is
    replayed once by MetaSchedule's parser on it (``TuningRecord.from_json`` applies the trace),
    on all cores (TVM releases the GIL), so a trace that does not fit is refused.

    With ``existing`` (the workload file being replaced), its lines keep their places (ours
    for the workloads we write, its own otherwise) and new workloads follow, so its old record
    file still indexes the new workload file correctly: the files can be renamed one by one."""
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    from tqdm import tqdm
    from tvm.s_tir import meta_schedule as ms

    workload_lines: List[str] = []
    place: Dict[str, int] = {}
    if existing is not None and existing.exists():
        for line in existing.read_bytes().decode().splitlines():
            if line.strip():
                place.setdefault(json.loads(line)[0], len(workload_lines))
                workload_lines.append(line)
    jobs = []
    for entry, raws in chosen:
        wl = ms.database.Workload(mod_of(entry.workload))
        line = wl.as_json()
        if str(line[0]) != entry.shash:
            raise TuningLogError(f"record for {entry.workload} was tuned on another compute definition "
                                 "(structural hash differs): stale, not importable")
        text = json.dumps([str(line[0]), str(line[1])], separators=(",", ":"))
        index = place.get(entry.shash)
        if index is None:
            index = place[entry.shash] = len(workload_lines)
            workload_lines.append(text)
        else:
            workload_lines[index] = text
        jobs.extend((index, entry, wl, raw) for raw in raws)

    def check(job) -> None:
        _, entry, wl, raw = job
        _check_record(raw)
        try:
            ms.database.TuningRecord.from_json(raw, wl)
        except Exception as err:  # a trace that does not fit this PrimFunc, a bad target or args
            raise TuningLogError(f"a tuning record for {entry.workload} does not apply to this kernel: "
                                 f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None

    pool = ThreadPoolExecutor(_workers())
    bar = tqdm(total=len(jobs), unit="record", desc="checking records", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, leave=False)
    try:
        pending = {pool.submit(check, job) for job in jobs}
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            for fut in done:
                fut.result()  # the first refusal stops the import
            bar.update(len(done))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    record_lines = [json.dumps([index, raw], separators=(",", ":")) for index, _, _, raw in jobs]
    return {WORKLOADS: "".join(x + "\n" for x in workload_lines).encode(),
            RECORDS: "".join(x + "\n" for x in record_lines).encode()}


# -- all-or-nothing writes -------------------------------------------------------------------
_TMP_SUFFIX = ".dynfilter-tmp"


def _tmp_name(name: str) -> str:
    return f".{name}.{socket.gethostname()}.{os.getpid()}{_TMP_SUFFIX}"


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporary files a killed writer (SIGKILL) left in ``folder``: those of dead processes on
    this host."""
    if not folder.is_dir():
        return
    host = re.escape(socket.gethostname())
    for p in folder.glob(".*" + _TMP_SUFFIX):
        m = re.fullmatch(rf"\..+\.{host}\.(\d+){re.escape(_TMP_SUFFIX)}", p.name)
        if m is None:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            p.unlink(missing_ok=True)
        except OSError:  # alive, another user's
            pass


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM wait until the block is done (then act as they would have)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: List[int] = []
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if caught:
            os.kill(os.getpid(), caught[0])


def _commit(folder: Path, files: Dict[str, bytes]) -> None:
    """Write ``files`` (name -> bytes) into ``folder`` all or nothing: each is written and
    fsynced beside its target under a temporary name, then all are renamed (the manifest last),
    with SIGINT/SIGTERM held back; on any error the temporary files are removed. Only a SIGKILL
    can leave one, which the next write into the folder removes."""
    with _signals_held():
        _remove_stale_temporaries(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmps: Dict[str, Path] = {}
        try:
            for name, data in files.items():
                tmps[name] = folder / _tmp_name(name)
                with open(tmps[name], "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            for name in sorted(tmps, key=lambda n: n == MANIFEST):  # the manifest names the records: last
                os.replace(tmps[name], folder / name)
            tmps.clear()
        finally:
            for tmp in tmps.values():
                tmp.unlink(missing_ok=True)
        fsync_dir(folder)  # make the renames durable


def _holds_files(folder: Path) -> bool:
    return folder.exists() and any(not p.name.endswith(_TMP_SUFFIX) for p in folder.iterdir())


# -- merge, export, import -------------------------------------------------------------------
def _check_mergeable(sources: List[TuningLog]) -> None:
    first = sources[0]
    for other in sources[1:]:
        if (other.target_name, other.tvm_version) != (first.target_name, first.tvm_version):
            raise TuningLogError(f"cannot merge {other.path} ({other.target_name}, TVM {other.tvm_version}) with "
                                 f"{first.path} ({first.target_name}, TVM {first.tvm_version})")
    fields = first.code_target()
    for other in sources[1:]:
        theirs = other.code_target()
        if theirs != fields:
            raise TuningLogError(f"cannot merge {other.path} with {first.path}: their {first.target_name} targets "
                                 f"differ ({_field_diff(theirs, fields)})")


def _combine(sources: List[TuningLog], top: Optional[int]) -> List[Tuple[Entry, List[list]]]:
    """Per workload: the entry of the source with the best record, and the ``top`` best distinct
    records (all with None), the faster measurement of a record met twice. Its ``trials``: its
    distinct records across the sources, or more where a source's manifest counts trials whose
    records it no longer holds (a ``merge`` keeps the best only)."""
    entries: Dict[str, Entry] = {}
    candidates: Dict[str, Dict[Tuple[str, str], Tuple[float, list]]] = {}
    seen: Dict[str, set] = {}
    claimed: Dict[str, int] = {}
    for src in sources:
        for key, e in src.entries.items():
            mine = entries.get(key)
            if mine is not None and mine.shash != e.shash:
                raise TuningLogError(f"{e.workload} was tuned on different compute definitions in the inputs")
            recs = src.records.get(e.shash, ())
            pool, ids = candidates.setdefault(key, {}), seen.setdefault(key, set())
            best_so_far = min((s for s, _ in pool.values()), default=math.inf)
            best_here = math.inf
            for r in recs:
                ids.add(r.key)
                if r.raw[1]:
                    best_here = min(best_here, r.seconds)
                    old = pool.get(r.key)
                    if old is None or r.seconds < old[0]:
                        pool[r.key] = (r.seconds, r.raw)
            if e.trials > len(recs):  # records a merge dropped
                claimed[key] = max(claimed.get(key, 0), e.trials)
            if mine is None or best_here < best_so_far:
                entries[key] = dataclasses.replace(e)
    chosen = []
    for key, e in entries.items():
        e.trials = max(len(seen[key]), claimed.get(key, 0))
        best = sorted(candidates[key].values(), key=lambda c: c[0])
        chosen.append((e, [raw for _, raw in (best if top is None else best[:top])]))
    return chosen


def _write_merged(sources: List[TuningLog], out: Path, top: Optional[int], progress: bool) -> TuningLog:
    _check_mergeable(sources)
    first = sources[0]
    chosen = _combine(sources, top)
    files = _database_files(chosen, progress, out / WORKLOADS)
    entries = {e.workload.key(): e for e, _ in chosen}
    files[MANIFEST] = (json.dumps(TuningLog(out, first.target, first.target_name, first.tvm_version, entries,
                                            {}).manifest(), indent=1) + "\n").encode()
    _commit(out, files)
    return TuningLog.load(out)


def merge(sources: List[TuningLog], out, top: int = 1, progress: bool = False) -> TuningLog:
    """A new log at ``out`` with the ``top`` best distinct records per workload across
    ``sources``, which must share target and TVM version (see :func:`_combine` for trials)."""
    out = Path(out)
    _remove_stale_temporaries(out)
    if _holds_files(out):
        raise TuningLogError(f"{out} exists and is not empty; merge writes a new log")
    return _write_merged(sources, out, top, progress)


def export(src: TuningLog, out) -> int:
    """One portable JSON file with ``src``'s manifest and every measured record (traces and
    our workload descriptions, no IR). Returns the record count."""
    records = []
    for e in src.entries.values():
        for r in src.records.get(e.shash, ()):
            if r.raw[1]:
                records.append({"workload": e.workload.key(), "record": r.raw})
    data = {"format": EXPORT_FORMAT, "version": VERSION, "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "manifest": src.manifest(), "records": records}
    write_json(Path(out), data)
    return len(records)


def import_(path, out, target: Optional[Target] = None, progress: bool = False) -> TuningLog:
    """Validate an export file and write it as a log at ``out``; an existing log there is
    merged with it (all distinct records kept: importing a file twice changes nothing). With
    ``target``, the file must be for it. All or nothing: an error or interruption leaves
    ``out`` as it was."""
    path, out = Path(path), Path(out)
    try:
        with _no_gc():  # collected at the end, once the duplicates are gone
            tl = _read_export(path)
        if target is not None:
            tl.check_compatible(target)
        elif tl.tvm_version != tvm.__version__:
            raise TuningLogError(f"exported with TVM {tl.tvm_version}, this is TVM {tvm.__version__}")
        sources = [tl]
        if (out / MANIFEST).exists():
            sources.insert(0, TuningLog.load(out))
        else:
            _remove_stale_temporaries(out)
            if _holds_files(out):
                raise TuningLogError(f"{out} exists and is not a tuning log")
        return _write_merged(sources, out, None, progress)
    except TuningLogError as err:
        raise TuningLogError(f"{path}: {err}") from None
    except (KeyError, TypeError, ValueError) as err:
        raise TuningLogError(f"{path} is malformed: {type(err).__name__}: {err}") from None


def _read_export(path: Path) -> TuningLog:
    """An export file as a log in memory (its path the file's), each distinct record once."""
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError, OSError) as err:
        raise TuningLogError(f"not a readable JSON export: {err}") from None
    _expect(isinstance(data, dict) and data.get("format") == EXPORT_FORMAT, f"not a {EXPORT_FORMAT} file")
    _expect(data.get("version") == VERSION, f"export format version {data.get('version')!r}; expected {VERSION}")
    _expect(isinstance(data.get("records"), list), "no record list")
    tl = TuningLog.from_manifest(path, data.get("manifest"))  # validates the manifest
    tl.code_target()  # its target is the one it names
    kept: Dict[Tuple[str, str], Record] = {}
    for item in data["records"]:
        _expect(isinstance(item, dict) and isinstance(item.get("workload"), str), "malformed record entry")
        entry = tl.entries.get(item["workload"])
        _expect(entry is not None, "a record names a workload the manifest does not list")
        rec = Record(entry.shash, _check_record(item.get("record")))
        old = kept.get(rec.key)
        if old is None or rec.seconds < old.seconds:
            kept[rec.key] = rec
    for rec in kept.values():
        tl.records.setdefault(rec.shash, []).append(rec)
    return tl


# -- the build hook -------------------------------------------------------------------------
_loaded: Dict[Tuple[str, str], Optional[TuningLog]] = {}
_warned: set = set()


def _log_for(root: Path, target: Target) -> Optional[TuningLog]:
    key = (str(root), log_name(target))
    if key not in _loaded:
        path = root / log_name(target)
        tl = None
        if (path / MANIFEST).exists():
            try:
                tl = TuningLog.load(path)
                tl.check_compatible(target)
            except TuningLogError as err:
                if str(path) not in _warned:
                    _warned.add(str(path))
                    log.warning("dynfilter_tvm: ignoring %s", err)
                tl = None
        _loaded[key] = tl
    return _loaded[key]


def default_module(workload: Workload, target: Target) -> tvm.IRModule:
    """``workload``'s PrimFunc under its default (hand-written) schedule for ``target``."""
    import tvm.s_tir as s_tir

    import schedules

    sch = s_tir.Schedule(registry.prim_func(workload))
    schedules.lookup(workload.op, workload.kernel, family(target))(sch, workload, target)
    return sch.mod


def default_hash(workload: Workload, target: Target) -> str:
    """Structural hash of :func:`default_module` (what a record's ``default_us`` was timed on)."""
    key = (workload.key(), str(target))
    if key not in _default_hashes:
        _default_hashes[key] = structural_hash(default_module(workload, target))
    return _default_hashes[key]


_default_hashes: Dict[tuple, str] = {}


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        log.warning(msg)


def lookup(workload: Workload, target: Target) -> Optional[Tuple[tvm.IRModule, str]]:
    """``build.tuned_lookup``: the first usable record in the search roots, else None."""
    for root in search_roots():
        tl = _log_for(root, target)
        if tl is None:
            continue
        try:
            found = tl.schedule(workload)
        except TuningLogError as err:
            log.warning("dynfilter_tvm: %s: %s; using the default schedule", tl.path, err)
            continue
        if found is not None:
            return found
    return None


def forget() -> None:
    """Drop loaded logs (after writing one, or when the search roots change)."""
    _loaded.clear()
    _warned.clear()
    _default_hashes.clear()
