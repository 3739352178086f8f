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
