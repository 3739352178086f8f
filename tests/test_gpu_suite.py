"""The GPU suite's dry run here (README "GPU suite"): every step runs its CPU-side part at
tiny sizes or is listed as 'needs a GPU' with its command, and results.json and summary.md
are written and parse. Also: a step past its cap is killed and recorded, a spent budget
skips the rest, and the shipped bundle is whole."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from torch_bridge.app import gpu_suite

ROOT = Path(__file__).resolve().parent.parent
OK = ("ok", gpu_suite.NEEDS_GPU)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_suite")
    proc = subprocess.run([sys.executable, "-m", "dynfilter_tvm", "gpu-suite", "--dry-run", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert (out / "results.json").exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, out, json.loads((out / "results.json").read_text())


def test_dry_run_writes_results_and_summary(dry_run):
    proc, out, res = dry_run
    assert res["dry_run"] is True and list(res["steps"]) == list(gpu_suite.PLAN)
    bad = [n for n, r in res["steps"].items() if r["status"] not in OK]
    assert proc.returncode == (1 if bad else 0)
    assert set(bad) <= {"aot"}, {n: res["steps"][n].get("error") for n in bad}  # aot: see the bundle test
    for r in res["steps"].values():
        assert r["seconds"] <= r["cap_s"] + 5
    md = (out / "summary.md").read_text()
    assert md.startswith("# GPU suite (dry run on CPU)") and "| step | status |" in md
    assert md == gpu_suite.summary(res)


def test_dry_run_steps(dry_run):
    _, out, res = dry_run
    steps = res["steps"]
    assert steps["env"]["status"] == "ok" and steps["env"]["tvm"]
    # without a GPU the stream contract tests skip cleanly; with one they pass
    s = steps["stream"]
    assert s["failures"] == s["errors"] == 0 and s["tests"] == 6
    assert s["status"] == ("ok" if torch.cuda.is_available() else gpu_suite.NEEDS_GPU)
    p = steps["pytest"]
    assert p["collected"] > 0 and "-m cuda" in p["command"] and "tests/test_pac_cuda.py" in p["files"]
    assert gpu_suite.STREAM_TESTS not in p["files"]  # the stream step runs those
    t = steps["tune"]
    assert t["status"] == gpu_suite.NEEDS_GPU and sorted(w.split("[")[0] for w in t["workloads"]) == [
        "ddf.dc", "ddf.ds", "ddf.dx", "ddf.fwd"]
    k = steps["kernels"]
    assert k["status"] == "ok" and [r["kernel"] for r in k["rows"]] == ["ddf.fwd", "ddf.dx", "ddf.ds", "ddf.dc"]
    assert all(r["us"] > 0 and r["x_roofline"] > 0 and r["min_bytes"] > 0 for r in k["rows"])
    b = steps["bench"]
    assert b["status"] == "ok" and b["copy_gbps"] > 0
    assert {(r["family"], r["pass"]) for r in b["rows"]} == {
        (f, p) for f in ("ddf", "pac", "acda") for p in ("forward", "forward+backward")}
    assert all(r["ms"] > 0 and r["fraction_of_copy"] > 0 for r in b["rows"])
    assert all(r["x_floor"] == 1.0 for r in b["rows"] if r["variant"] == r["floor"])
    # generic against static: both builds of every family ran, each pass timed in both modes
    g = steps["generic"]
    assert g["status"] == "ok" and not g["errors"]
    assert {(r["family"], r["pass"]) for r in g["rows"]} == {
        (f, p) for f in ("ddf", "pac", "acda") for p in ("forward", "forward+backward")}
    assert all(r["generic_ms"] > 0 and r["static_ms"] > 0 and r["ratio"] == r["generic_ms"] / r["static_ms"]
               for r in g["rows"])
    summary = (out / "summary.md").read_text()
    for title in ("## Generic against static kernels", "## The ops' eager fast path"):
        table = summary.split(title)[1].split("\n## ")[0]
        assert sorted(line.split(" | ")[0] for line in table.splitlines()
                      if line.startswith("| ") and " | forward" in line) == [
            "| acda", "| acda", "| ddf", "| ddf", "| pac", "| pac"], title
    # the same passes with the eager fast path and through the custom op
    assert {(r["family"], r["pass"]) for r in g["routes"]} == {
        (f, p) for f in ("ddf", "pac", "acda") for p in ("forward", "forward+backward")}
    assert all(r["eager_ms"] > 0 and r["custom_op_ms"] > 0 and r["ratio"] == r["eager_ms"] / r["custom_op_ms"]
               for r in g["routes"])


def test_dry_run_profile(dry_run):
    _, out, res = dry_run
    pr = res["steps"]["profile"]
    assert pr["status"] == "ok" and not pr["errors"]
    assert {(r["family"], r["pass"]) for r in pr["rows"]} == {
        (f, p) for f in ("ddf", "pac", "acda") for p in ("forward", "forward+backward")}
    gpu = torch.cuda.is_available()
    for r in pr["rows"]:
        assert r["wall_us"] > 0 and r["busy"] == r["device_us"] / r["wall_us"]
        assert (r["device_us"] > 0 and r["top"]) if gpu else (r["device_us"] == 0 and r["top"] == [])
    assert "## GPU busy time per pass" in (out / "summary.md").read_text()


def test_kernel_times_counts_device_events_once():
    from types import SimpleNamespace as E

    events = [E(key="ddf_fwd_kernel", count=10, device_type="DeviceType.CUDA", self_device_time_total=50.0),
              E(key="Memset (Device)", count=5, device_type="DeviceType.CUDA", self_device_time_total=5.0),
              E(key="dynfilter::ddf", count=10, device_type="DeviceType.CPU", self_device_time_total=0.0),
              E(key="cudaLaunchKernel", count=10, device_type="DeviceType.CPU", self_device_time_total=30.0),
              E(key="old_torch_kernel", count=5, device_type="DeviceType.CUDA", self_cuda_time_total=20.0),
              E(key="idle", count=5, device_type="DeviceType.CUDA", self_device_time_total=0.0)]
    got = gpu_suite.kernel_times(events, iters=5)
    assert got == {"ddf_fwd_kernel": {"us": 10.0, "calls": 2.0}, "Memset (Device)": {"us": 1.0, "calls": 1.0},
                   "old_torch_kernel": {"us": 4.0, "calls": 1.0}}


def test_traffic_lower_bound():
    B, C, H, W, k = shape = (2, 4, 5, 6, 3)
    x = B * C * H * W
    ddf_in = x + B * C * k * k + B * k * k * H * W
    assert gpu_suite.traffic_bytes("ddf", shape, "dynfilter_tvm", "forward", "depthwise conv2d") == 4 * (ddf_in + x)
    assert gpu_suite.traffic_bytes("ddf", shape, "dynfilter_tvm", "forward+backward", "depthwise conv2d") == (
        4 * (3 * ddf_in + 2 * x))
    assert gpu_suite.traffic_bytes("pac", shape, "conv2d", "forward", "conv2d") == 4 * (2 * x + C * C * k * k + C)


def _suite(tmp_path, *argv):
    p = __import__("argparse").ArgumentParser()
    gpu_suite.add_arguments(p)
    rc = gpu_suite.run_cli(p.parse_args(["--out", str(tmp_path), *argv]))
    return rc, json.loads((tmp_path / "results.json").read_text())


def test_step_past_its_cap_is_killed_and_recorded(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_suite.PLAN, "env", 0.5)  # importing torch alone takes longer
    monkeypatch.setattr(gpu_suite, "MIN_CAP_S", 0)
    rc, res = _suite(tmp_path, "--steps", "env")
    assert rc == 1 and res["steps"]["env"]["status"] == "timeout"
    assert "killed at its cap" in res["steps"]["env"]["error"]
    assert (tmp_path / "summary.md").exists()


def test_spent_budget_skips_steps(tmp_path):
    rc, res = _suite(tmp_path, "--budget-s", "5", "--steps", "env,aot")
    assert rc == 1 and [r["status"] for r in res["steps"].values()] == ["skipped", "skipped"]


def test_shipped_bundle_is_complete():
    """Every library and device-code file the shipped bundle's manifest names is in the repo."""
    assert set(gpu_suite._bundle_files()["files"].values()) == {"ok"}


def test_shipped_bundle_matches_the_operator_definitions():
    """A bundle kernel compiled from other operator definitions is not served; after a compute
    change rebuild it: dynfilter-tvm compile --target sm_90 --target sm_80 --model ddf_resnet50
    --input 8x3x224x224 -o benchmarks/bundles/ddf_resnet50_8x3x224x224 --force"""
    import json

    from dynfilter_tvm.build import compute_digest
    from dynfilter_tvm.workload import Workload

    path = gpu_suite.BUNDLE / "manifest.json"
    manifest = json.loads(path.read_text())
    stale = [k["workload"] for t in manifest["targets"] for k in t["kernels"]
             if compute_digest(Workload.from_json(k["workload"])) != k["compute"]]
    assert not stale, f"{len(stale)} kernels of the shipped bundle are stale (see the docstring)"


@pytest.mark.parametrize("writes_log", [True, False])
def test_tune_step_reads_the_log_its_command_writes(tmp_path, monkeypatch, writes_log):
    """The tune step on a GPU (its commands faked here): it reads the tuning log at the folder
    its tune command names. On the first H200 run it read a folder named 'cuda' (an argument
    index off by two) and failed after every tuning."""
    import argparse
    import time

    from dynfilter_tvm import tuning_log
    from dynfilter_tvm.target import cuda_target

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    seen = []

    def fake_run(cmd, timeout, log, env=None):
        seen.append(cmd)
        if "tune" in cmd and writes_log:
            tuning_log.create(Path(cmd[cmd.index("--log-dir") + 1]), cuda_target("sm_90"))
        elif "benchmarks/bench_tuned.py" in cmd:
            Path(cmd[cmd.index("--json") + 1]).write_text(json.dumps({"rows": [{"kernel": "ddf.fwd"}]}))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(gpu_suite, "_run", fake_run)
    ctx = {"name": "tune", "out": tmp_path, "dry": False, "args": argparse.Namespace(tune_trials=2),
           "log": tmp_path / "tune.log", "deadline": time.monotonic() + 100}
    res = gpu_suite.step_tune(ctx)
    log_dir = tmp_path / "tuning_logs" / "cuda-sm_90"
    assert res["log_dir"] == str(log_dir) and seen[0][seen[0].index("--log-dir") + 1] == str(log_dir)
    if writes_log:
        assert res["status"] == "ok" and res["interleaved"] == [{"kernel": "ddf.fwd"}] and len(seen) == 2
    else:
        assert res["status"] == "failed" and "wrote no log" in res["error"] and len(seen) == 1


def test_kernels_step_covers_the_gpu_report_workloads():
    """On a GPU the kernels step times every workload of the static GPU report (its estimates'
    shapes); their argument tensors match each kernel's compute in number, shape and dtype."""
    from dynfilter_tvm import gpu_report, registry

    wls = [wl for ws in gpu_suite.kernel_workloads(False).values() for wl in ws]
    assert wls == [wl for ws in gpu_report.benchmark_workloads("float32").values() for wl in ws]
    assert {wl.dtype for wl in wls} == {"float32", "float16", "bfloat16"}
    for wl in wls:
        args = gpu_suite.kernel_args(wl, torch.device("meta"))
        tensors = registry.compute(wl)
        assert len(args) == len(registry.prim_func(wl).params) == len(tensors)
        assert [tuple(a.shape) for a in args] == [tuple(int(n) for n in t.shape) for t in tensors]
        assert [str(a.dtype) for a in args] == [f"torch.{t.dtype}" for t in tensors]
