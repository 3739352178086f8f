"""Tuning logs: MetaSchedule JSON databases, one per target, validated before any use.

A log is a directory ``<root>/<target-name>/`` (``tuning_logs/llvm-znver4-1c/``,
``tuning_logs/cuda-sm_90/``; see :func:`log_name`) holding

* ``database_workload.json`` / ``database_tuning_record.json``: MetaSchedule's JSON
  database (one JSON value per line; records point at workload lines by index);
* ``manifest.json``: the target (CPU model and core count, or GPU arch) and TVM version the records were measured with, and per
  workload our description of it (op, kernel, shapes, dtype), the structural hash of its
  PrimFunc, the default schedule's time, the tuned time, the trials spent.

Logs are data from other machines, so nothing in them is trusted: the files are parsed
here as plain JSON and checked line by line; the TVM IR stored in the workload lines is never
loaded. A record is applied to the PrimFunc *we* build from our own compute definition, and
only when that PrimFunc's structural hash equals the one the record was tuned on (a changed
compute makes old records stale, never wrong). Traces may only use the scheduling
instructions MetaSchedule's own rules emit; anything else is refused. A log whose target or
TVM version differs from the query's is refused with the reason (MetaSchedule's lookup itself
ignores the target).

``export``/``import`` move a log as one portable JSON file that holds our workload
descriptions and the traces, not IR; ``merge`` keeps the best record per workload and writes a
new database through MetaSchedule's API (never by concatenating files).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import tvm
from tvm.target import Target

from . import __version__, registry
from .files import atomic_write_bytes, sha256_bytes
from .target import target_json, target_name
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


def search_roots() -> List[Path]:
    """Where the build looks for logs: ``$DYNFILTER_TVM_TUNING_LOGS`` (``os.pathsep``-separated
    roots, first wins; ``off`` disables tuned schedules), then the shipped ``tuning_logs/``."""
    env = os.environ.get("DYNFILTER_TVM_TUNING_LOGS", "")
    if env == "off":
        return []
    return [Path(p) for p in env.split(os.pathsep) if p] + [default_root()]


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

    @property
    def use(self) -> bool:
        """Whether builds take the record: only when it beat the default schedule (a slower
        record is kept as the warm start of further tuning)."""
        return self.tuned_us is not None and (self.default_us is None or self.tuned_us < self.default_us)

    def to_json(self) -> dict:
        return {"workload": self.workload.to_json(), "shash": self.shash, "default_us": self.default_us,
                "tuned_us": self.tuned_us, "trials": self.trials, "tuning_s": round(self.tuning_s, 1)}

    @classmethod
    def from_json(cls, data) -> "Entry":
        _expect(isinstance(data, dict), "manifest workload entry is not an object")
        wl = Workload.from_json(data.get("workload"))
        _expect((wl.op, wl.kernel) in registry.kernels(), f"unknown kernel {wl.op}.{wl.kernel}")
        shash = data.get("shash")
        _expect(isinstance(shash, str) and shash.isdigit(), "manifest shash must be a decimal string")
        nums = {k: data.get(k) for k in ("default_us", "tuned_us")}
        for k, v in nums.items():
            _expect(v is None or (_is_num(v) and v > 0), f"manifest {k} must be a positive number")
        trials, secs = data.get("trials", 0), data.get("tuning_s", 0.0)
        _expect(isinstance(trials, int) and trials >= 0 and _is_num(secs), "manifest trials/tuning_s malformed")
        return cls(wl, shash, nums["default_us"], nums["tuned_us"], trials, float(secs))


@dataclasses.dataclass
class Record:
    """One measured schedule: MetaSchedule's record JSON (trace, run times, target, args)."""

    shash: str
    raw: list  # [trace_json, run_secs, target_json, args_info_json]

    @property
    def seconds(self) -> float:
        return mean_seconds(self.raw[1] or ())


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
        man = json.loads((path / MANIFEST).read_text())
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
        return cls(path, man["target"], man["target_name"], man["tvm"], entries, records)

    def check_compatible(self, target: Target) -> None:
        """Refuse a log measured on another target or TVM version."""
        want = log_name(target)
        if self.target_name != want:
            raise TuningLogError(f"tuning log {self.path} was tuned for {self.target_name}, not {want}: "
                                 "schedules are specific to a CPU model and core count, or a GPU arch")
        if self.tvm_version != tvm.__version__:
            raise TuningLogError(f"tuning log {self.path} was written with TVM {self.tvm_version}, this is TVM "
                                 f"{tvm.__version__}: traces do not carry across TVM versions")

    def best(self, entry: Entry) -> Optional[Record]:
        recs = [r for r in self.records.get(entry.shash, ()) if r.raw[1]]
        return recs[0] if recs else None

    # -- using ---------------------------------------------------------------------------
    def schedule(self, workload: Workload, mod: Optional[tvm.IRModule] = None,
                 include_unused: bool = False) -> Optional[Tuple[tvm.IRModule, str]]:
        """The module scheduled by the best usable record for ``workload``, and an id naming
        the record; None when there is none (or it is stale or slower than the default)."""
        entry = self.entries.get(workload.key())
        if entry is None or not (entry.use or include_unused):
            return None
        rec = self.best(entry)
        if rec is None:
            return None
        mod = mod if mod is not None else mod_of(workload)
        if structural_hash(mod) != entry.shash:
            log.warning("dynfilter_tvm: tuning record for %s in %s is stale (its compute changed); "
                        "using the default schedule", workload, self.path)
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


def write_database(path: Path, chosen: Iterable[Tuple[Entry, List[list]]]) -> None:
    """Write MetaSchedule's JSON database at ``path`` holding ``chosen`` (entry, raw records),
    through its API: every workload line is made from our own PrimFunc."""
    from tvm.s_tir import meta_schedule as ms

    for name in (WORKLOADS, RECORDS):
        if (path / name).exists():
            (path / name).unlink()
    db = ms.database.JSONDatabase(str(path / WORKLOADS), str(path / RECORDS), allow_missing=True)
    for entry, raws in chosen:
        mod = mod_of(entry.workload)
        if structural_hash(mod) != entry.shash:
            raise TuningLogError(f"record for {entry.workload} was tuned on another compute definition "
                                 "(structural hash differs): stale, not importable")
        wl = db.commit_workload(mod)
        for raw in raws:
            apply_record(mod, raw)  # refuse a trace that does not replay here
            db.commit_tuning_record(ms.database.TuningRecord.from_json(raw, wl))


def merge(sources: List[TuningLog], out, top: int = 1) -> TuningLog:
    """A new log at ``out`` with the ``top`` best records per workload across ``sources``,
    which must share target and TVM version."""
    first = sources[0]
    for other in sources[1:]:
        if (other.target_name, other.tvm_version) != (first.target_name, first.tvm_version):
            raise TuningLogError(f"cannot merge {other.path} ({other.target_name}, TVM {other.tvm_version}) with "
                                 f"{first.path} ({first.target_name}, TVM {first.tvm_version})")
    entries: Dict[str, Entry] = {}
    candidates: Dict[str, List[Tuple[float, list]]] = {}
    trials: Dict[str, int] = {}
    for src in sources:
        for key, e in src.entries.items():
            recs = [r for r in src.records.get(e.shash, ()) if r.raw[1]]
            trials[key] = trials.get(key, 0) + e.trials
            mine = entries.get(key)
            if mine is not None and mine.shash != e.shash:
                raise TuningLogError(f"{e.workload} was tuned on different compute definitions in the inputs")
            best_here = recs[0].seconds if recs else math.inf
            best_so_far = min((s for s, _ in candidates.get(key, [])), default=math.inf)
            if mine is None or best_here < best_so_far:
                entries[key] = dataclasses.replace(e)
            candidates.setdefault(key, []).extend((r.seconds, r.raw) for r in recs)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise TuningLogError(f"{out} exists and is not empty; merge writes a new log")
    out.mkdir(parents=True, exist_ok=True)
    chosen = []
    for key, e in entries.items():
        e.trials = trials[key]
        best = sorted(candidates.get(key, []), key=lambda c: c[0])[:top]
        chosen.append((e, [raw for _, raw in best]))
    write_database(out, chosen)
    tl = TuningLog(out, first.target, first.target_name, first.tvm_version, entries, {})
    tl.save_manifest()
    return TuningLog.load(out)


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


def import_(path, out, target: Optional[Target] = None) -> TuningLog:
    """Validate an export file and write it as a log at ``out``; an existing log there is
    merged with it (best records kept). With ``target``, the file must be for it."""
    path, out = Path(path), Path(out)
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, RecursionError, OSError) as err:
        raise TuningLogError(f"{path} is not a readable JSON export: {err}") from None
    try:
        _expect(isinstance(data, dict) and data.get("format") == EXPORT_FORMAT, f"not a {EXPORT_FORMAT} file")
        _expect(data.get("version") == VERSION, f"export format version {data.get('version')!r}; expected {VERSION}")
        _expect(isinstance(data.get("records"), list), "no record list")
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / "log"
            staged.mkdir()
            man = data.get("manifest")
            _expect(isinstance(man, dict), "no manifest")
            write_json(staged / MANIFEST, man)
            tl = TuningLog.load(staged)  # validates the manifest
            if target is not None:
                tl.check_compatible(target)
            elif tl.tvm_version != tvm.__version__:
                raise TuningLogError(f"exported with TVM {tl.tvm_version}, this is TVM {tvm.__version__}")
            by_key: Dict[str, List[list]] = {}
            for item in data["records"]:
                _expect(isinstance(item, dict) and isinstance(item.get("workload"), str), "malformed record entry")
                _expect(item["workload"] in tl.entries, "a record names a workload the manifest does not list")
                by_key.setdefault(item["workload"], []).append(_check_record(item.get("record")))
            write_database(staged, [(tl.entries[k], raws) for k, raws in by_key.items()])
            tl = TuningLog.load(staged)
            if (out / MANIFEST).exists():
                existing = TuningLog.load(out)
                merged_dir = Path(tmp) / "merged"
                merge([existing, tl], merged_dir, top=1 << 30)
                _replace_dir(merged_dir, out)
            else:
                if out.exists() and any(out.iterdir()):
                    raise TuningLogError(f"{out} exists and is not a tuning log")
                _replace_dir(staged, out)
    except TuningLogError as err:
        raise TuningLogError(f"{path}: {err}") from None
    except (KeyError, TypeError, ValueError) as err:
        raise TuningLogError(f"{path} is malformed: {type(err).__name__}: {err}") from None
    return TuningLog.load(out)


def _replace_dir(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in (WORKLOADS, RECORDS, MANIFEST):  # the manifest last: it names the records
        if (src / name).exists():
            atomic_write_bytes(dst / name, (src / name).read_bytes())


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
