"""MetaSchedule tuning end to end on CPU: a tiny run into a log, builds from it, logs merged,
exported and imported, and foreign, corrupt or hostile logs refused with clear errors.

One tuning run (a few trials of a small DDF kernel) is shared by the module; everything else
works on copies of its log.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import tvm

from dynfilter_tvm import build, cache, tune, tuning_log
from dynfilter_tvm.target import cpu_target
from dynfilter_tvm.tuning_log import TuningLog, TuningLogError
from dynfilter_tvm.workload import Workload
from torch_bridge import runtime
from torch_bridge.functional import ddf
from torch_bridge.reference import ddf_reference

PARAMS = dict(B=1, C=8, H=9, W=9, G=1, k=3, s=1, d=1, combine="mul")
FWD = Workload.make("ddf", "fwd", PARAMS, "float32")
DX = Workload.make("ddf", "dx", PARAMS, "float32")
TRIALS = 4


@pytest.fixture(scope="module")
def target():
    # the bridge's own CPU target, so the hook finds this log for the op's calls
    return runtime.target_for(torch.device("cpu"))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, target):
    """A log tuned for FWD and DX with a few trials: (root, log)."""
    root = tmp_path_factory.mktemp("logs")
    log_dir = root / tuning_log.log_name(target)
    tl = tune.tune([FWD, DX], target, TRIALS, log_dir, per_iter=TRIALS, seed=0, progress=False)
    return root, tl


@pytest.fixture
def log_copy(tuned, tmp_path):
    root, tl = tuned
    dst = tmp_path / "copy"
    shutil.copytree(tl.path, dst)
    return dst


@pytest.fixture
def use_logs(monkeypatch):
    """Point the build's tuning-log search at given roots (and forget loaded logs)."""
    def point(*roots):
        monkeypatch.setenv("DYNFILTER_TVM_TUNING_LOGS", ":".join(str(r) for r in roots))
        tuning_log.forget()
        cache.clear_memory()
    yield point
    tuning_log.forget()
    cache.clear_memory()


def _run(lib_fn, wl, seed=0):
    """Run a compiled kernel on random inputs (numpy in, numpy out)."""
    from tvm.s_tir import meta_schedule as ms

    infos = ms.arg_info.ArgInfo.from_prim_func(tuning_log.mod_of(wl)["main"])
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal([int(d) for d in info.shape]).astype("float32") for info in infos]
    tensors = [tvm.runtime.tensor(a) for a in arrays]
    lib_fn(*tensors)
    return tensors[-1].numpy()


def test_tuning_writes_a_complete_log(tuned, target):
    _, tl = tuned
    assert tl.target_name == tuning_log.log_name(target)
    assert tl.tvm_version == tvm.__version__
    assert set(tl.entries) == {FWD.key(), DX.key()}
    for e in tl.entries.values():
        assert e.trials == TRIALS
        assert e.default_us and e.default_us > 0
        assert e.tuned_us and e.tuned_us > 0
        assert tl.best(e) is not None
        assert e.shash == tuning_log.structural_hash(tuning_log.mod_of(e.workload))
    lines = (tl.path / tuning_log.RECORDS).read_text().splitlines()
    assert len(lines) == 2 * TRIALS  # every measurement appended


def test_resume_counts_existing_records(tuned, log_copy, target):
    # the budget is already spent: nothing more is measured, the log is unchanged
    before = (log_copy / tuning_log.RECORDS).read_bytes()
    tune.tune([FWD], target, TRIALS, log_copy, progress=False)
    assert (log_copy / tuning_log.RECORDS).read_bytes() == before


def test_resume_cuts_a_truncated_last_line(log_copy, target):
    path = log_copy / tuning_log.RECORDS
    data = path.read_bytes()
    path.write_bytes(data + data.splitlines()[0][:50])  # a run killed mid-write
    with pytest.raises(TuningLogError, match="truncated"):
        TuningLog.load(log_copy)
    tl = tuning_log.open_or_create(log_copy, target)  # resuming repairs its own log
    assert path.read_bytes() == data
    assert sum(len(r) for r in tl.records.values()) == 2 * TRIALS


def test_tuned_schedule_gives_the_same_results(tuned, target):
    _, tl = tuned
    for wl in (FWD, DX):
        mod, rec_id = tl.schedule(wl, include_unused=True)
        assert rec_id.startswith("tuned:")
        tuned_out = _run(build.build(wl, target, mod).mod[f"ddf_{wl.kernel}"], wl)
        default_out = _run(build.build(wl, target, build.schedule(wl, target, tuned=False)[0]).mod[f"ddf_{wl.kernel}"], wl)
        np.testing.assert_allclose(tuned_out, default_out, rtol=1e-5, atol=1e-5)


def _set_times(log_dir: Path, tuned_us: float, default_us: float) -> None:
    """Set every kernel's measured times in a log's manifest (the tiny run's are noise)."""
    man = json.loads((log_dir / tuning_log.MANIFEST).read_text())
    for e in man["workloads"]:
        e["tuned_us"], e["default_us"] = tuned_us, default_us
    (log_dir / tuning_log.MANIFEST).write_text(json.dumps(man))


def _mark_used(log_dir: Path) -> None:
    """Make every record beat the default (the tiny run need not have), so builds take it."""
    _set_times(log_dir, 1.0, 2.0)


def test_bridge_builds_from_the_log(tuned, tmp_path, target, use_logs):
    root = tmp_path / "root"
    shutil.copytree(tuned[1].path, root / tuning_log.log_name(target))
    _mark_used(root / tuning_log.log_name(target))
    use_logs(root)
    schedule_id, _ = build.plan(FWD, target)
    assert schedule_id.startswith("tuned:")
    x, c, s = (torch.randn(1, 8, 9, 9, dtype=torch.float32, requires_grad=True),
               torch.randn(1, 8, 3, 3, requires_grad=True), torch.randn(1, 9, 9, 9, requires_grad=True))
    out = ddf(x, c, s, 3)
    out.backward(torch.ones_like(out))
    got = [out.detach(), x.grad]
    xr, cr, sr = (t.detach().double().requires_grad_() for t in (x, c, s))
    ref = ddf_reference(xr, cr, sr, 3)
    ref.backward(torch.ones_like(ref))
    torch.testing.assert_close(got[0].double(), ref.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got[1].double(), xr.grad, rtol=1e-4, atol=1e-4)


def test_slower_record_is_kept_but_not_used(tuned, tmp_path, target, use_logs):
    root = tmp_path / "root"
    log_dir = root / tuning_log.log_name(target)
    shutil.copytree(tuned[1].path, log_dir)
    _set_times(log_dir, 2.0, 1.0)
    use_logs(root)
    assert build.plan(FWD, target)[0].startswith("default:")


def test_log_for_another_target_or_tvm_is_refused(log_copy, target, tmp_path, use_logs):
    other = cpu_target(mcpu="skylake", num_cores=1)
    with pytest.raises(TuningLogError, match="was tuned for"):
        TuningLog.load(log_copy).check_compatible(other)
    man = json.loads((log_copy / tuning_log.MANIFEST).read_text())
    man["tvm"] = "0.19.0"
    (log_copy / tuning_log.MANIFEST).write_text(json.dumps(man))
    with pytest.raises(TuningLogError, match="TVM 0.19.0"):
        TuningLog.load(log_copy).check_compatible(target)
    # found by the build: ignored (default schedule), never applied
    root = tmp_path / "root"
    shutil.copytree(log_copy, root / tuning_log.log_name(target))
    _mark_used(root / tuning_log.log_name(target))
    use_logs(root)
    assert build.plan(FWD, target)[0].startswith("default:")


def _make_distinct(raw: list, tag: int = 1) -> None:
    """Turn a record into another schedule of the same kernel that still replays: an extra
    (inert) annotation on the root block."""
    root = next(inst[3][0] for inst in raw[0][0] if inst[0] == "GetSBlock" and inst[2][0] == "root")
    raw[0][0].append(["Annotate", [root, tag], ["dynfilter_tvm.test_variant"], []])


def test_merge_keeps_the_best_record_per_workload(tuned, tmp_path, target):
    _, tl = tuned
    # B: a log with only FWD, its records made twice as fast as A's best
    b_dir = tmp_path / "b"
    shutil.copytree(tl.path, b_dir)
    recs = [json.loads(x) for x in (b_dir / tuning_log.RECORDS).read_text().splitlines()]
    fwd_index = [json.loads(x)[0] for x in (b_dir / tuning_log.WORKLOADS).read_text().splitlines()].index(
        tl.entries[FWD.key()].shash)
    best_a = tl.best(tl.entries[FWD.key()]).seconds
    keep = [r for r in recs if r[0] == fwd_index and r[1][1]]
    keep[-1][1][1] = [best_a / 2]
    for r in keep:  # schedules of another tuning run: distinct records (a copy of A's would count once)
        _make_distinct(r[1])
    (b_dir / tuning_log.RECORDS).write_text("".join(json.dumps(r) + "\n" for r in keep))
    merged = tuning_log.merge([tl, TuningLog.load(b_dir)], tmp_path / "c")
    assert set(merged.entries) == {FWD.key(), DX.key()}
    assert merged.best(merged.entries[FWD.key()]).seconds == pytest.approx(best_a / 2)
    assert merged.best(merged.entries[DX.key()]).seconds == pytest.approx(tl.best(tl.entries[DX.key()]).seconds)
    assert merged.entries[FWD.key()].trials == 2 * TRIALS
    # one record per workload, each pointing at its own workload line
    lines = (tmp_path / "c" / tuning_log.RECORDS).read_text().splitlines()
    assert len(lines) == 2
    assert sorted(json.loads(x)[0] for x in lines) == [0, 1]


def test_merge_refuses_different_targets(log_copy, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(log_copy, other)
    man = json.loads((other / tuning_log.MANIFEST).read_text())
    man["target_name"] = "llvm-skylake-1c"
    (other / tuning_log.MANIFEST).write_text(json.dumps(man))
    with pytest.raises(TuningLogError, match="cannot merge"):
        tuning_log.merge([TuningLog.load(log_copy), TuningLog.load(other)], tmp_path / "out")


def test_export_import_round_trip(tuned, tmp_path, target):
    _, tl = tuned
    n = tuning_log.export(tl, tmp_path / "log.json")
    assert n == sum(1 for e in tl.entries.values() for r in tl.records[e.shash] if r.raw[1])
    back = tuning_log.import_(tmp_path / "log.json", tmp_path / "imported", target)
    assert set(back.entries) == set(tl.entries)
    for key, e in tl.entries.items():
        assert back.best(back.entries[key]).raw == tl.best(e).raw
        assert back.entries[key].default_us == e.default_us
    # importing again into the same log merges: no duplicates of the best
    again = tuning_log.import_(tmp_path / "log.json", tmp_path / "imported", target)
    assert again.best(again.entries[FWD.key()]).raw == tl.best(tl.entries[FWD.key()]).raw


def test_import_refuses_another_target(tuned, tmp_path):
    tuning_log.export(tuned[1], tmp_path / "log.json")
    with pytest.raises(TuningLogError, match="was tuned for"):
        tuning_log.import_(tmp_path / "log.json", tmp_path / "x", cpu_target(mcpu="skylake", num_cores=1))


@pytest.mark.parametrize("damage", ["not-json", "truncated", "wrong-format", "deep-nesting", "unsafe-instruction",
                                    "bad-trace", "unknown-kernel", "negative-time", "record-index"])
def test_corrupt_or_hostile_files_give_clear_errors(tuned, tmp_path, target, damage):
    _, tl = tuned
    exp = tmp_path / "log.json"
    tuning_log.export(tl, exp)
    data = json.loads(exp.read_text())
    if damage == "not-json":
        exp.write_bytes(b"\x00\x01garbage")
    elif damage == "truncated":
        exp.write_text(exp.read_text()[: len(exp.read_text()) // 2])
    elif damage == "wrong-format":
        data["format"] = "something-else"
    elif damage == "deep-nesting":
        exp.write_text("[" * 100000 + "]" * 100000)
    elif damage == "unsafe-instruction":
        data["records"][0]["record"][0][0].append(["UnsafeSetDType", ["b0"], ["float64"], []])
    elif damage == "bad-trace":
        data["records"][0]["record"][0] = {"not": "a trace"}
    elif damage == "unknown-kernel":
        data["manifest"]["workloads"][0]["workload"]["kernel"] = "evil"
    elif damage == "negative-time":
        data["records"][0]["record"][1] = [-1.0]
    if damage in ("wrong-format", "unsafe-instruction", "bad-trace", "unknown-kernel", "negative-time"):
        exp.write_text(json.dumps(data))
    if damage == "record-index":  # a log directory whose record points past its workload lines
        d = tmp_path / "d"
        shutil.copytree(tl.path, d)
        line = json.loads((d / tuning_log.RECORDS).read_text().splitlines()[0])
        line[0] = 99
        (d / tuning_log.RECORDS).write_text(json.dumps(line) + "\n")
        with pytest.raises(TuningLogError, match="points at no workload"):
            TuningLog.load(d)
        return
    with pytest.raises(TuningLogError):
        tuning_log.import_(exp, tmp_path / "out", target)
    assert not (tmp_path / "out" / tuning_log.RECORDS).exists()


def test_trace_that_does_not_fit_is_refused(tuned):
    _, tl = tuned
    raw = json.loads(json.dumps(tl.best(tl.entries[FWD.key()]).raw))
    first = raw[0][0][0]
    assert first[0] == "GetSBlock"
    first[2][0] = "no_such_block"  # names a block this kernel does not have
    with pytest.raises(TuningLogError, match="does not apply"):
        tuning_log.apply_record(tuning_log.mod_of(FWD), raw)


def test_stale_record_is_not_used(log_copy, target):
    _mark_used(log_copy)
    tl = TuningLog.load(log_copy)
    entry = tl.entries[FWD.key()]
    # as if the compute changed: the stored hash no longer matches our PrimFunc
    tl.records[str(int(entry.shash) + 1)] = tl.records[entry.shash]
    entry.shash = str(int(entry.shash) + 1)
    assert tl.schedule(FWD) is None


def test_record_compared_with_an_older_default_waits_for_a_recheck(log_copy, tmp_path, target, use_logs, caplog):
    tl = TuningLog.load(log_copy)
    for e in tl.entries.values():  # the tuner recorded which default its times were taken on
        assert e.default_schedule == tuning_log.default_hash(e.workload, target)
    _mark_used(log_copy)
    man = json.loads((log_copy / tuning_log.MANIFEST).read_text())
    for e in man["workloads"]:
        if e["workload"]["kernel"] == "fwd":  # as if fwd's default schedule changed since
            e["default_schedule"] = str(int(e["default_schedule"]) + 1)
    (log_copy / tuning_log.MANIFEST).write_text(json.dumps(man))
    root = tmp_path / "root"
    shutil.copytree(log_copy, root / tuning_log.log_name(target))
    use_logs(root)
    with caplog.at_level("WARNING", logger="dynfilter_tvm"):
        assert build.plan(FWD, target)[0].startswith("default:")
    assert "logs recheck" in caplog.text
    assert build.plan(DX, target)[0].startswith("tuned:")  # its default is unchanged
    # recheck measures the stale kernel only, side by side with its record, and records today's default
    done = tune.recheck(root / tuning_log.log_name(target), rounds=2, progress=False)
    assert [wl for wl, *_ in done] == [FWD]
    _, default_us, tuned_us = done[0]
    assert default_us > 0 and tuned_us > 0
    fresh = TuningLog.load(root / tuning_log.log_name(target))
    e = fresh.entries[FWD.key()]
    assert (e.default_us, e.tuned_us, e.default_schedule) == (default_us, tuned_us, tuning_log.default_hash(FWD, target))
    assert tune.recheck(root / tuning_log.log_name(target), progress=False) == []  # nothing left to measure
    tuning_log.forget()
    assert build.plan(FWD, target)[0].startswith("tuned:" if e.use else "default:")


def test_shipped_logs_were_measured_against_todays_defaults():
    """A shipped record is used only while it beats the default schedule it was timed against:
    after a default schedule changes, `dynfilter-tvm logs recheck tuning_logs/<log>` must run
    (else builds quietly set the record aside)."""
    from tvm.target import Target

    logs = sorted(p.parent for p in tuning_log.default_root().glob(f"*/{tuning_log.MANIFEST}"))
    assert logs
    stale = []
    for path in logs:
        tl = TuningLog.load(path)
        for e in tl.entries.values():
            if tl.best(e) is not None and e.default_schedule != tuning_log.default_hash(e.workload, Target(tl.target)):
                stale.append(f"{path.name}: {e.workload}")
    assert not stale, "run `dynfilter-tvm logs recheck` on:\n" + "\n".join(stale)


def test_cli_show_merge_export_import(tuned, tmp_path):
    _, tl = tuned

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "dynfilter_tvm", "logs", *map(str, args)],
                              capture_output=True, text=True, timeout=300)

    res = cli("show", tl.path)
    assert res.returncode == 0, res.stderr
    assert "ddf.fwd" in res.stdout and "ddf.dx" in res.stdout and "speed-up" in res.stdout
    res = cli("export", tl.path, "-o", tmp_path / "e.json")
    assert res.returncode == 0, res.stderr
    res = cli("import", tmp_path / "e.json", "-o", tmp_path / "i")
    assert res.returncode == 0, res.stderr
    res = cli("merge", tl.path, tmp_path / "i", "-o", tmp_path / "m")
    assert res.returncode == 0, res.stderr
    (tmp_path / "bad.json").write_text("{")
    res = cli("import", tmp_path / "bad.json", "-o", tmp_path / "j")
    assert res.returncode != 0 and "error:" in res.stderr and "Traceback" not in res.stderr


def test_rpc_runner_on_localhost(tmp_path, target):
    """Measurements through TVM's own RPC tracker and server (as across machines)."""
    pytest.importorskip("tornado")  # the tracker needs it (test extra)
    from tvm.rpc.server import Server
    from tvm.rpc.tracker import Tracker

    tracker = Tracker(host="127.0.0.1", port=9190, port_end=9390, silent=True)
    server = Server(host="127.0.0.1", port=9400, port_end=9600, key="dynfilter-test",
                    tracker_addr=("127.0.0.1", tracker.port), silent=True)
    try:
        runner = tune.make_runner(f"127.0.0.1:{tracker.port}", "dynfilter-test")
        tl = tune.tune([FWD], target, 2, tmp_path / "rpc", runner=runner, per_iter=2, seed=0, progress=False)
        e = tl.entries[FWD.key()]
        assert e.trials == 2 and e.default_us > 0 and tl.best(e) is not None
    finally:
        server.terminate()
        tracker.terminate()


# -- idempotent, quick, all-or-nothing imports and merges ----------------------------------------
def _cli(*args, cwd=None, env=None, timeout=300):
    import os

    full_env = dict(os.environ)
    # this checkout's package, from any working directory
    repo = str(Path(__file__).resolve().parent.parent)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, full_env.get("PYTHONPATH")) if p)
    for key, value in (env or {}).items():
        if value is None:  # unset
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run([sys.executable, "-m", "dynfilter_tvm", "logs", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=full_env)


def _n_records(log_dir: Path) -> int:
    return len((log_dir / tuning_log.RECORDS).read_text().splitlines())


def _leftovers(*folders: Path) -> list:
    """Temporary files (ours or any other writer's) under ``folders``."""
    return [p for f in folders if f.exists() for p in f.rglob("*")
            if p.name.startswith((".", "tmp")) or "tmp" in p.suffix]


def test_import_twice_or_merge_with_itself_counts_each_record_once(tuned, log_copy, tmp_path):
    _, tl = tuned
    n = tuning_log.export(tl, tmp_path / "e.json")
    # into the log it came from (a copy): nothing new
    back = tuning_log.import_(tmp_path / "e.json", log_copy)
    assert _n_records(log_copy) == _n_records(tl.path)
    assert {k: e.trials for k, e in back.entries.items()} == {k: TRIALS for k in tl.entries}
    # into a new log, three times: the same files each time
    tuning_log.import_(tmp_path / "e.json", tmp_path / "i")
    first = {p.name: p.read_bytes() for p in (tmp_path / "i").iterdir()}
    for _ in range(2):
        again = tuning_log.import_(tmp_path / "e.json", tmp_path / "i")
        assert {p.name: p.read_bytes() for p in (tmp_path / "i").iterdir()} == first
    assert _n_records(tmp_path / "i") == n
    assert all(e.trials == TRIALS for e in again.entries.values())
    # a record met twice in one file is kept once, with its faster measurement
    data = json.loads((tmp_path / "e.json").read_text())
    twice = json.loads(json.dumps(data["records"][0]))
    twice["record"][1] = [s / 4 for s in twice["record"][1]]
    data["records"].append(twice)
    (tmp_path / "e2.json").write_text(json.dumps(data))
    dup = tuning_log.import_(tmp_path / "e2.json", tmp_path / "j")
    assert _n_records(tmp_path / "j") == n
    # the record is found by its identity (trace), not as the log's fastest: another workload's
    # record may well be faster than a quarter of this one's time
    key = tuning_log.record_key(dup.entries[twice["workload"]].shash, twice["record"])
    kept = [r for recs in dup.records.values() for r in recs if r.key == key]
    assert len(kept) == 1
    assert kept[0].seconds == pytest.approx(tuning_log.mean_seconds(twice["record"][1]))
    # merge of a log with a copy of itself: trials counted once
    merged = tuning_log.merge([tl, TuningLog.load(log_copy)], tmp_path / "m")
    assert all(e.trials == TRIALS for e in merged.entries.values())
    # and a merged log (best record only) merged again keeps its count
    again = tuning_log.merge([merged, tl], tmp_path / "m2")
    assert all(e.trials == TRIALS for e in again.entries.values())


def test_import_of_a_large_export_is_quick_idempotent_and_shows_progress(tmp_path):
    """The shipped log's export, each record 20 times with varied run times (10,240 records),
    into a copy of the shipped log: seconds, no duplicates, trials unchanged."""
    import time

    shipped = tuning_log.default_root() / "llvm-znver4-1c"
    copy = tmp_path / "llvm-znver4-1c"
    shutil.copytree(shipped, copy)
    tuning_log.export(TuningLog.load(shipped), tmp_path / "e.json")
    data = json.loads((tmp_path / "e.json").read_text())
    assert len(data["records"]) == 512
    records = []
    for i in range(20):
        for item in data["records"]:
            record = [item["record"][0], [s * (1 + 0.01 * i) for s in item["record"][1]], *item["record"][2:]]
            records.append({"workload": item["workload"], "record": record})
    data["records"] = records
    (tmp_path / "big.json").write_text(json.dumps(data))
    t0 = time.perf_counter()
    res = _cli("import", tmp_path / "big.json", "-o", copy, env={"TMPDIR": str(tmp_path)})
    elapsed = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr
    assert "checking records" in res.stderr  # the progress bar
    assert "0 new records (512 in all)" in res.stdout
    assert elapsed < 120, f"importing 10,240 records took {elapsed:.0f}s"  # ~15 s on 2 busy cores
    tl = TuningLog.load(copy)
    assert _n_records(copy) == 512
    assert all(e.trials == 32 for e in tl.entries.values())
    assert tl.manifest()["workloads"] == TuningLog.load(shipped).manifest()["workloads"]
    assert _leftovers(copy) == []


def test_interrupted_import_leaves_no_partial_files(tuned, tmp_path, monkeypatch):
    import os
    import signal
    import socket
    import time

    _, tl = tuned
    tuning_log.export(tl, tmp_path / "e.json")
    # killed in the middle: a large file (the tiny log's records many times over, distinct)
    data = json.loads((tmp_path / "e.json").read_text())
    records = []
    for i in range(400):
        for item in data["records"]:
            raw = json.loads(json.dumps(item["record"]))
            _make_distinct(raw, i)
            records.append({"workload": item["workload"], "record": raw})
    data["records"] = records
    (tmp_path / "big.json").write_text(json.dumps(data))
    sys_tmp = tmp_path / "sys_tmp"
    sys_tmp.mkdir()
    # each record's replay (the parallel phase behind the progress bar) slowed down in the child,
    # so that the signal always lands mid-import (on a loaded machine an unslowed import could
    # finish between the progress line and the signal); not the file's serial read, which runs
    # before the bar (slowing that made each child take a minute to get there)
    # SIGINT back to Python's handler: a shell's background job starts with SIGINT ignored, and
    # the child inherits that (a suite run launched so timed out here, the child never stopping)
    slowed = ("import signal, sys, time\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "from tvm.s_tir.meta_schedule.database import TuningRecord as R\n"
              "replay = R.from_json\n"
              "R.from_json = staticmethod(lambda *a: (time.sleep(0.02), replay(*a))[1])\n"
              "from dynfilter_tvm.__main__ import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    for sig in (signal.SIGTERM, signal.SIGINT):
        out = tmp_path / f"out-{sig.name}"
        env = {**os.environ, "TMPDIR": str(sys_tmp)}
        proc = subprocess.Popen([sys.executable, "-c", slowed, "logs", "import", str(tmp_path / "big.json"),
                                 "-o", str(out)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
        seen = b""
        deadline = time.monotonic() + 120
        while b"checking records" not in seen and time.monotonic() < deadline and proc.poll() is None:
            seen += os.read(proc.stderr.fileno(), 4096)
        proc.send_signal(sig)
        proc.communicate(timeout=120)
        assert proc.returncode != 0
        assert not out.exists() or list(out.iterdir()) == []
        assert list(sys_tmp.iterdir()) == []
    # an error while the files are renamed into place: the old log stays whole, no temporaries
    dest = tmp_path / "dest"
    shutil.copytree(tl.path, dest)
    (tmp_path / "e.json").write_text(json.dumps({**data, "records": data["records"][:8]}))  # new records
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(tuning_log.os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        tuning_log.import_(tmp_path / "e.json", dest)
    monkeypatch.setattr(tuning_log.os, "replace", real_replace)
    assert _leftovers(dest) == []
    # the workload file was renamed first: its lines kept their places, so the old records
    # still point at the right workloads
    after = {p.name: p.read_bytes() for p in dest.iterdir()}
    assert after[tuning_log.RECORDS] == before[tuning_log.RECORDS]
    assert after[tuning_log.MANIFEST] == before[tuning_log.MANIFEST]
    assert {h: [r.raw for r in recs] for h, recs in TuningLog.load(dest).records.items()} == \
        {h: [r.raw for r in recs] for h, recs in tl.records.items()}
    # a temporary file a SIGKILLed import left behind is removed by the next one
    stale = dest / f".{tuning_log.RECORDS}.{socket.gethostname()}.999999999{tuning_log._TMP_SUFFIX}"
    stale.write_bytes(b"half")
    tuning_log.import_(tmp_path / "e.json", dest)
    assert not stale.exists() and _leftovers(dest) == []


def test_import_without_output_goes_to_a_user_folder_the_build_searches(tuned, tmp_path, target, monkeypatch):
    _, tl = tuned
    src = tmp_path / "src"
    shutil.copytree(tl.path, src)
    _mark_used(src)
    tuning_log.export(TuningLog.load(src), tmp_path / "e.json")
    name = tl.target_name
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    shipped_before = sorted(p.name for p in tuning_log.default_root().iterdir())
    res = _cli("import", tmp_path / "e.json", cwd=elsewhere,
               env={"XDG_DATA_HOME": str(tmp_path / "xdg"), "DYNFILTER_TVM_TUNING_LOGS": None})
    assert res.returncode == 0, res.stderr
    user_log = tmp_path / "xdg" / "dynfilter-tvm" / "tuning_logs" / name
    assert _n_records(user_log) == _n_records(tl.path)
    assert sorted(p.name for p in tuning_log.default_root().iterdir()) == shipped_before
    assert list(elsewhere.iterdir()) == []
    # $DYNFILTER_TVM_TUNING_LOGS set: its first root
    res = _cli("import", tmp_path / "e.json", cwd=elsewhere,
               env={"DYNFILTER_TVM_TUNING_LOGS": f"{tmp_path / 'env'}:{tmp_path / 'env2'}"})
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "env" / name / tuning_log.MANIFEST).exists() and not (tmp_path / "env2").exists()
    # the build finds the user folder's log
    monkeypatch.delenv("DYNFILTER_TVM_TUNING_LOGS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    tuning_log.forget()
    cache.clear_memory()
    try:
        assert tuning_log.import_root() == tmp_path / "xdg" / "dynfilter-tvm" / "tuning_logs"
        assert tuning_log.import_root() in tuning_log.search_roots()
        assert build.plan(FWD, target)[0].startswith("tuned:")
    finally:
        tuning_log.forget()
        cache.clear_memory()


# -- the whole target must match ------------------------------------------------------------------
@pytest.mark.parametrize("edit", ["mcpu", "num-cores", "mattr"])
def test_manifest_target_edited_but_not_its_name_is_refused(log_copy, target, tmp_path, use_logs, edit):
    man = json.loads((log_copy / tuning_log.MANIFEST).read_text())
    if edit == "mcpu":
        man["target"]["mcpu"] = "skylake" if man["target"]["mcpu"] != "skylake" else "znver4"
    elif edit == "num-cores":
        man["target"]["num-cores"] = man["target"]["num-cores"] + 1
    else:  # a field the name does not show, which changes the code
        man["target"]["mattr"] = ["-avx2"]
    (log_copy / tuning_log.MANIFEST).write_text(json.dumps(man))
    with pytest.raises(TuningLogError, match="edited or corrupt" if edit != "mattr" else "mattr"):
        TuningLog.load(log_copy).check_compatible(target)
    root = tmp_path / "root"
    shutil.copytree(log_copy, root / tuning_log.log_name(target))
    _mark_used(root / tuning_log.log_name(target))
    use_logs(root)
    assert build.plan(FWD, target)[0].startswith("default:")  # the build ignores it
    tuning_log.export(TuningLog.load(log_copy), tmp_path / "e.json")
    with pytest.raises(TuningLogError):
        tuning_log.import_(tmp_path / "e.json", tmp_path / "i", target)
    if edit != "mattr":  # its target is not the one it names, whatever the query
        with pytest.raises(TuningLogError, match="edited or corrupt"):
            tuning_log.import_(tmp_path / "e.json", tmp_path / "i")
    assert not (tmp_path / "i").exists()


def test_import_target_names_the_core_count(tuned, tmp_path):
    _, tl = tuned
    tuning_log.export(tl, tmp_path / "e.json")
    mcpu, cores = tl.target["mcpu"], tl.target["num-cores"]
    res = _cli("import", tmp_path / "e.json", "-o", tmp_path / "a", "--target", f"llvm:{mcpu}",
               env={"TVM_NUM_THREADS": str(cores + 1)})  # this machine's count differs from the log's
    assert res.returncode != 0 and f"was tuned for llvm-{mcpu}-{cores}c" in res.stderr
    res = _cli("import", tmp_path / "e.json", "-o", tmp_path / "a", "--target", f"llvm:{mcpu}",
               "--threads", cores, env={"TVM_NUM_THREADS": str(cores + 1)})
    assert res.returncode == 0, res.stderr
    assert _n_records(tmp_path / "a") == _n_records(tl.path)
    res = _cli("import", tmp_path / "e.json", "-o", tmp_path / "b", "--target", f"llvm:{mcpu}",
               "--threads", cores + 1)
    assert res.returncode != 0 and "was tuned for" in res.stderr
    res = _cli("import", tmp_path / "e.json", "-o", tmp_path / "b", "--target", "sm_90", "--threads", 1)
    assert res.returncode != 0 and "error:" in res.stderr and "Traceback" not in res.stderr


def test_cuda_dry_run_builds_candidates_for_sm90_without_measuring(tmp_path):
    """``tune --dry-run`` for sm_90 on a machine without a GPU: MetaSchedule's CUDA search
    generates candidates and each is compiled to device code (nvcc); none is measured and no
    log is written."""
    log_dir = tmp_path / "never"
    cmd = [sys.executable, "-m", "dynfilter_tvm", "tune", "--op", "ddf", "--input", "1x8x16x16", "--kernels", "fwd",
           "--target", "sm_90", "--trials", "4", "--seed", "0", "--dry-run", "--log-dir", str(log_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 of 4 candidates built for cuda-sm_90, none measured" in proc.stdout, proc.stdout
    assert not log_dir.exists()


def test_error_gist_keeps_the_first_and_last_lines():
    """TVM's CUDA compile errors start with the kernel's source and end with the compiler's
    message; a warning showing only the first line showed an empty one on the GPU machine."""
    msg = "\n" + "\n".join(f"line {i}" for i in range(30)) + "\nRuntimeError: nvrtc: error: bad\n"
    gist = tune.error_gist(msg)
    assert gist.startswith("line 0 | line 1 | ... (23 lines)") and gist.endswith("RuntimeError: nvrtc: error: bad")
    assert tune.error_gist("") == "(no message)" and len(tune.error_gist("x" * 5000)) == 1503


def test_tensor_intrinsics_that_fail_to_import_name_the_cause(monkeypatch):
    """MetaSchedule imports them lazily inside a build, where an interrupted or failed import
    turned into 'build failed' and then 'already registered'; tune imports them first."""
    monkeypatch.setitem(sys.modules, "tvm.s_tir.tensor_intrin", None)  # import raises ModuleNotFoundError
    with pytest.raises(RuntimeError, match="tensor intrinsics .* fail to import.*ModuleNotFoundError"):
        tune.dry_run([Workload.make("ddf", "fwd", dict(B=1, C=2, H=4, W=4, G=1, k=3, s=1, d=1,
                                                        combine="mul"), "float32")], "llvm", trials=1)
