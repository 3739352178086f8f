"""``dynfilter-tvm gpu-suite``: the GPU evidence in one command, written to one folder.

    dynfilter-tvm gpu-suite --out gpu-suite-out [--budget-s 540] [--dry-run]
    bash scripts/gpu_suite.sh --out DIR        (on a lent GPU machine: TVM from .device first)

Steps, in this order, each in a child process of its own with a wall-clock cap (a planned
share of ``--budget-s``, never more than what is left); a step that fails, crashes or runs
out of time is recorded and the suite goes on:

env     machine, versions, CUDA arch, whether TVM can compile for the GPU here
stream  tests/test_stream_contract.py: the ops on a non-default torch stream and under CUDA
        graph capture give the default stream's results
pytest  ``pytest -m cuda`` over every other test file with CUDA-marked tests (all families,
        dtypes), in pytest-xdist workers where that is installed (``xdist_workers``)
bench   DDF, PAC and ACDA in one process, each pass's variants interleaved (TVM op, unfold
        reference eager and under torch.compile, cuDNN conv2d / depthwise conv2d): median time,
        peak memory (torch.cuda.max_memory_allocated above the inputs) and effective bandwidth
        as a fraction of the device-to-device copy bandwidth measured in the same step
kernels each kernel alone (static builds, called with torch tensors) at the static GPU report's
        shapes (``dynfilter-tvm gpu-report``), against its roofline with the copy bandwidth
        measured here: the measured side of the report's estimates
generic the same three at the same shapes with every kernel built generic (batch and size
        symbolic) against static, interleaved (``harness.generic_vs_static``, as
        ``benchmarks/bench_generic.py`` on CPU): forward and forward+backward ratios; then
        the same passes with the ops' eager fast path against every call through the
        custom op (``harness.eager_vs_custom_op``, as ``benchmarks/bench_overhead.py``)
profile the same passes under torch.profiler: the GPU's busy time per iteration (every kernel,
        TVM's included, the top ones named) against the pass's wall time without the profiler;
        a small busy share means the host sets the pace
tune    short MetaSchedule tuning of the DDF kernels at the DDF benchmark shape into
        OUT/tuning_logs/cuda-sm_XY/, then tuned against default times
aot     the shipped bundle (benchmarks/bundles/ddf_resnet50_8x3x224x224) loaded with
        DYNFILTER_TVM_JIT=off; every kernel it holds run against the reference

Effective bandwidth is a lower bound on traffic (every input, parameter and output counted
once per pass; forward+backward 3(I+P)+2O bytes) divided by the measured time; it is derived,
not read from DRAM counters. ``--dry-run`` runs what a CPU can here (tiny benchmarks, pytest
collection, workload recording, the bundle's files and checksums) and lists the rest as
'needs a GPU' with the exact command. Output: ``results.json`` (every step's status, times
and data), ``summary.md``, ``logs/<step>.log``, the pytest JUnit XML and the tuning log.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "benchmarks" / "bundles" / "ddf_resnet50_8x3x224x224"
# Planned caps in seconds (sum 530 of the default 540 s budget: one 10-minute device command less
# TVM's unpacking and the copy out),
# from the first run on an H200 (2026-12-04: env 8 s, stream 36, bench 93, generic 42, aot
# 10-14; pytest ran 24 of its 49 tests in 145 s one at a time; tune spent 50 s starting, most
# of it importing TVM's tensor intrinsics, and its 80 s cap left no time for trials).
# generic follows bench: the static kernels of its shapes are then in the disk cache. Added
# after that run: generic also times the eager fast path against the custom op (+5 s), and the
# profile step (20 s), from pytest's cap (-20) and tune's (-5).
PLAN = {"env": 15, "stream": 35, "pytest": 105, "bench": 100, "kernels": 90, "generic": 55, "profile": 20,
        "tune": 90, "aot": 20}
STREAM_TESTS = "tests/test_stream_contract.py"  # the stream step's; the pytest step leaves them out
# One benchmark shape per family (B, C, H, W, k): DDF-ResNet-50 stage 1 at batch 16; dry run tiny.
GPU_SHAPES = {"ddf": (16, 64, 56, 56, 3), "pac": (16, 64, 56, 56, 3), "acda": (16, 64, 56, 56, 7)}
CPU_SHAPES = {"ddf": (1, 8, 12, 12, 3), "pac": (1, 8, 12, 12, 3), "acda": (1, 8, 12, 12, 3)}
NEEDS_GPU = "needs a GPU"
MIN_CAP_S = 10  # a step with less time left than this is skipped


def add_arguments(p) -> None:
    p.add_argument("--out", default="gpu-suite-out", help="output folder (results.json, summary.md, logs/)")
    p.add_argument("--budget-s", type=float, default=540.0, help="wall-clock budget of all steps (540 s)")
    p.add_argument("--dry-run", action="store_true", help="CPU: tiny sizes; GPU-only parts listed with their command")
    p.add_argument("--steps", default=",".join(PLAN), help=f"comma-separated subset of {','.join(PLAN)}")
    p.add_argument("--tune-trials", type=int, default=16, help="MetaSchedule trials per DDF kernel (16)")
    p.add_argument("--step", help=argparse.SUPPRESS)  # internal: run one step in this (child) process


# ----------------------------------------------------------------------------- helpers


def _py(*args) -> List[str]:
    return [sys.executable, *map(str, args)]


def _show(cmd: List[str]) -> str:
    return " ".join(["python3", *cmd[1:]])


def _run(cmd: List[str], timeout: float, log: Path, env=None) -> subprocess.CompletedProcess:
    """Run ``cmd`` in the repository root in a process group of its own, output appended to
    ``log``. Past ``timeout`` seconds the group gets SIGINT (pytest then writes its report,
    tuning its log), SIGKILL 4 s later, and TimeoutExpired is raised."""
    with open(log, "a") as f:
        f.write(f"$ {_show(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            proc.wait(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=4)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode)


def _left(ctx) -> float:
    """Seconds left to this step (its child) before the parent's cap."""
    return ctx["deadline"] - time.monotonic()


def _junit(path: Path) -> Dict:
    """Counts and failed test ids of a pytest JUnit XML file."""
    import xml.etree.ElementTree as ET

    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed = []
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for k in counts:
            counts[k] += int(suite.get(k, 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(f"{case.get('classname')}::{case.get('name')}")
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "failed": failed[:50]}


def _pytest_step(ctx, name: str, files: List[str], extra: List[str]) -> Dict:
    xml = ctx["out"] / f"{name}.junit.xml"
    cmd = _py("-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *extra, f"--junitxml={xml}", *files)
    res = {"command": _show(cmd)}
    try:
        rc = _run(cmd, _left(ctx), ctx["log"]).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    if not xml.exists():
        return {**res, "status": "timeout" if rc == "timeout" else "failed", "error": f"no JUnit report (rc {rc})"}
    res.update(_junit(xml), returncode=rc)
    ran_none = res["passed"] == 0 and res["failures"] == 0 and res["errors"] == 0
    res["status"] = "timeout" if rc == "timeout" else NEEDS_GPU if ctx["dry"] and ran_none else (
        "ok" if rc == 0 and res["passed"] > 0 else "failed")
    return res


# ----------------------------------------------------------------------------- steps (child side)


def step_env(ctx) -> Dict:
    import platform

    import torch

    res = {"status": "ok", "python": platform.python_version(), "torch": torch.__version__,
           "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
           "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
           "TVM_CUDA_COMPILE_MODE": os.environ.get("TVM_CUDA_COMPILE_MODE")}
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        res.update(device=torch.cuda.get_device_name(0), arch=f"sm_{major}{minor}",
                   memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    try:
        import tvm

        from dynfilter_tvm.aot import compiler_available
        from dynfilter_tvm.target import cuda_target

        res["tvm"] = tvm.__version__
        res["tvm_cuda_runtime"] = bool(tvm.runtime.enabled("cuda"))
        ok, why = compiler_available(cuda_target(res.get("arch", "sm_90")))
        res["tvm_cuda_jit"] = ok if ok else f"no: {why}"
    except Exception as err:  # no TVM: every later step will say so too
        res.update(status="failed", tvm=f"import failed: {type(err).__name__}: {err}")
    return res


def step_stream(ctx) -> Dict:
    return _pytest_step(ctx, "stream", [STREAM_TESTS], [])


def xdist_workers() -> int:
    """pytest-xdist workers for the pytest step: the CUDA tests mostly wait on kernel builds
    (one CPU core each), so several processes share the GPU; 0 (serial) without pytest-xdist."""
    if importlib.util.find_spec("xdist") is None:
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def step_pytest(ctx) -> Dict:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                   if "mark.cuda" in p.read_text() and str(p.relative_to(ROOT)) != STREAM_TESTS)
    if not ctx["dry"]:
        n = xdist_workers()
        return _pytest_step(ctx, "pytest_cuda", files, ["-m", "cuda", "--continue-on-collection-errors",
                                                        *(["-n", str(n)] if n else [])])
    proc = _run(_py("-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "--collect-only", *files),
                _left(ctx), ctx["log"])
    m = re.search(r"(\d+)(?:/\d+)? tests? (?:collected|selected)", _tail(ctx["log"]))
    return {"status": NEEDS_GPU if proc.returncode == 0 else "failed", "files": files,
            "collected": int(m.group(1)) if m else None,
            "command": _show(_py("-m", "pytest", "-q", "-rA", "-m", "cuda", "--continue-on-collection-errors", *files))}


def copy_bandwidth(device, nbytes: int) -> float:
    """Measured copy bandwidth in GB/s: bytes read plus bytes written per ``dst.copy_(src)``."""
    import torch

    from .bench.harness import time_interleaved

    src = torch.empty(nbytes, dtype=torch.uint8, device=device).random_(0, 255)
    dst = torch.empty_like(src)
    ms = time_interleaved({"copy": lambda: dst.copy_(src)}, device, repeats=7)["copy"]
    return 2 * nbytes / (ms * 1e-3) / 1e9


def traffic_bytes(family: str, shape, variant: str, passname: str, floor: str) -> int:
    """Lower bound on the bytes a pass moves (float32): inputs I, parameters P, output O once
    in the forward; forward+backward 3(I+P)+2O (backward reads the output gradient, the
    inputs and parameters again, and writes their gradients)."""
    B, C, H, W, k = shape
    x = B * C * H * W
    if family == "ddf":  # DDF's filters are inputs; depthwise conv2d's weight a parameter
        inputs, params = (x, C * k * k) if variant == floor else (x + B * C * k * k + B * k * k * H * W, 0)
    else:
        inputs = x
        if variant == floor or family == "pac":
            params = C * C * k * k + C
        else:
            from ..nn import ACDAConv2d
            params = sum(p.numel() for p in ACDAConv2d(C, C, k, padding=k // 2, num_bases=6).parameters())
    io = inputs + params
    return 4 * (io + x if passname == "forward" else 3 * io + 2 * x)


def step_bench(ctx) -> Dict:
    import torch

    from .bench import acda, ddf, pac
    from .bench.harness import machine_description

    dev = torch.device("cpu" if ctx["dry"] else "cuda")
    torch.manual_seed(0)
    bw = copy_bandwidth(dev, (64 if ctx["dry"] else 1024) * 2**20)
    res = {"status": "ok", "machine": machine_description(dev), "copy_gbps": bw, "rows": [], "errors": {},
           "bandwidth_note": "lower-bound bytes (I+P+O forward, 3(I+P)+2O forward+backward) / measured "
                             "time, and that as a fraction of the measured copy bandwidth"}
    shapes = CPU_SHAPES if ctx["dry"] else GPU_SHAPES
    for fam, mod, floor in (("ddf", ddf, "depthwise conv2d"), ("pac", pac, pac.FLOOR), ("acda", acda, acda.FLOOR)):
        rows = None
        for compile_ref in ((False,) if ctx["dry"] else (True, False)):  # torch.compile failing: go on without
            try:
                rows = mod.bench_shape(*shapes[fam], dev, compile_ref=compile_ref, repeats=3 if ctx["dry"] else 7)
                break
            except Exception as err:
                res["errors"][f"{fam} compile_ref={compile_ref}"] = f"{type(err).__name__}: {err}"[:2000]
        for r in rows or []:
            floor_ms = next(f["ms"] for f in rows if f["pass"] == r["pass"] and f["variant"] == floor)
            nbytes = traffic_bytes(fam, shapes[fam], r["variant"], r["pass"], floor)
            gbps = nbytes / (r["ms"] * 1e-3) / 1e9
            res["rows"].append({"family": fam, **r, "x_floor": r["ms"] / floor_ms, "floor": floor,
                                "bytes_lower_bound": nbytes, "effective_gbps": gbps, "fraction_of_copy": gbps / bw})
        _write_partial(ctx, res)  # what is done survives a timeout
    if res["errors"]:
        res["status"] = "failed" if not res["rows"] else "partial"
    return res


def kernel_workloads(dry: bool) -> Dict[str, list]:
    """The kernels the ``kernels`` step times: on a GPU the static GPU report's benchmark
    workloads (``gpu_report.benchmark_workloads``, the shapes its estimates are for); in a
    dry run the DDF kernels at a tiny size."""
    from dynfilter_tvm import gpu_report
    from dynfilter_tvm.workload import Workload

    if not dry:
        return gpu_report.benchmark_workloads("float32")
    B, C, H, W, k = CPU_SHAPES["ddf"]
    p = dict(gpu_report._ddf(B, C, H, W), k=k)
    return {f"DDF {B}x{C}x{H}x{W} k{k} (dry run)": [Workload.make("ddf", kern, p, "float32")
                                                   for kern in ("fwd", "dx", "ds", "dc")]}


def kernel_args(wl, device) -> list:
    """Random tensors for every tensor of ``wl``'s compute, in its order (inputs, then the output)."""
    import torch

    from dynfilter_tvm import registry

    return [torch.randn([int(n) for n in t.shape], device=device).to(getattr(torch, str(t.dtype)))
            for t in registry.compute(wl)]


def step_kernels(ctx) -> Dict:
    """Each kernel alone (static build, called with torch tensors: no op or autograd around it)
    at the static GPU report's shapes, against its roofline on this machine: max(minimum bytes
    / the copy bandwidth measured here, useful FLOPs / the aim's compute peak)."""
    import torch

    from dynfilter_tvm import cache, dispatch, gpu_report
    from dynfilter_tvm.target import cpu_target

    from ..runtime import target_for
    from .bench.harness import machine_description, time_interleaved

    dev = torch.device("cpu" if ctx["dry"] else "cuda")
    target = cpu_target() if ctx["dry"] else target_for(dev)
    bw = copy_bandwidth(dev, (64 if ctx["dry"] else 1024) * 2**20)
    res = {"status": "ok", "machine": machine_description(dev), "copy_gbps": bw, "rows": [], "errors": {},
           "note": "static builds; wall time of back-to-back calls closed by a synchronize (medians); "
                   "roofline = max(min bytes / measured copy bandwidth, FLOPs / aim peak)"}
    dispatch.set_shape_mode("static")
    try:
        for layer, wls in kernel_workloads(ctx["dry"]).items():
            if _left(ctx) < 15:
                res["errors"][layer] = "not reached: the step's time ran out"
                continue
            fns, meta = {}, {}
            for wl in wls:
                name = gpu_report._label(wl)
                try:
                    fn, args = cache.get(wl, target), kernel_args(wl, dev)
                    fns[name] = lambda fn=fn, args=args: fn(*args)
                    item = args[-1].element_size()
                    meta[name] = (gpu_report.min_bytes(wl, item), gpu_report.flops(wl), gpu_report.aim_peak(wl))
                except Exception as err:
                    res["errors"][f"{layer}: {name}"] = f"{type(err).__name__}: {err}"[:1000]
            times = time_interleaved(fns, dev, repeats=3 if ctx["dry"] else 7) if fns else {}
            for name, ms in times.items():
                nbytes, fl, peak = meta[name]
                roof_us = max(nbytes / (bw * 1e9), fl / peak) * 1e6
                res["rows"].append({"layer": layer, "kernel": name, "us": ms * 1e3, "min_bytes": nbytes, "flops": fl,
                                    "effective_gbps": nbytes / (ms * 1e-3) / 1e9, "roofline_us": roof_us,
                                    "x_roofline": ms * 1e3 / roof_us})
            _write_partial(ctx, res)
    finally:
        dispatch.set_shape_mode(None)
    if res["errors"]:
        res["status"] = "failed" if not res["rows"] else "partial"
    return res


def _each_family(ctx, res: Dict, body) -> Dict:
    """``body(family, module, shape)`` for DDF, PAC and ACDA at the suite's shapes; an error is
    recorded under its family and the others still run; partial results are written after
    each. Returns ``res`` with its status."""
    from .bench import acda, ddf, pac

    shapes = CPU_SHAPES if ctx["dry"] else GPU_SHAPES
    for fam, mod in (("ddf", ddf), ("pac", pac), ("acda", acda)):
        try:
            body(fam, mod, shapes[fam])
        except Exception as err:
            res["errors"][fam] = f"{type(err).__name__}: {err}"[:2000]
        _write_partial(ctx, res)
    if res["errors"]:
        res["status"] = "failed" if not res["rows"] else "partial"
    return res


def step_generic(ctx) -> Dict:
    import torch

    from .bench.harness import eager_vs_custom_op, generic_vs_static, machine_description

    dev = torch.device("cpu" if ctx["dry"] else "cuda")
    torch.manual_seed(0)
    res = {"status": "ok", "machine": machine_description(dev), "rows": [], "routes": [], "errors": {}}

    def body(fam, mod, shape):
        rows = generic_vs_static(mod, dev, shapes=[shape], repeats=3 if ctx["dry"] else 7)
        res["rows"] += [{"family": fam, **r} for r in rows]
        # the host time the ops' eager fast path saves (torch_bridge.ops._eager), same passes
        rows = eager_vs_custom_op(mod, dev, shapes=[shape], repeats=3 if ctx["dry"] else 5)
        res["routes"] += [{"family": fam, **r} for r in rows]

    return _each_family(ctx, res, body)


def kernel_times(averages, iters: int) -> Dict[str, Dict]:
    """{kernel: {us, calls}} per iteration from ``torch.profiler``'s ``key_averages()``: the
    events that ran on the GPU (kernels, memcpy, memset; TVM's kernels included, since the
    profiler sees every launch), each by its own device time."""
    out = {}
    for e in averages:
        if str(getattr(e, "device_type", "")).split(".")[-1] != "CUDA":
            continue
        t = getattr(e, "self_device_time_total", None)
        if t is None:
            t = getattr(e, "self_cuda_time_total", 0.0)
        if t > 0:
            out[e.key] = {"us": t / iters, "calls": e.count / iters}
    return out


def step_profile(ctx) -> Dict:
    """Forward and forward+backward of each family at the benchmark shape under
    ``torch.profiler``: the GPU's busy time per iteration (every kernel, TVM's included)
    against the wall time of the same pass without the profiler. A busy share far below 1
    means the host (Python, dispatch, launches) sets the pace, not the kernels."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from .bench.harness import _sync, machine_description, time_interleaved

    dev = torch.device("cpu" if ctx["dry"] else "cuda")
    torch.manual_seed(0)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    iters = 3 if ctx["dry"] else 5
    res = {"status": "ok", "machine": machine_description(dev), "rows": [], "errors": {},
           "note": f"device times from torch.profiler over {iters} iterations; wall time without the profiler "
                   "(medians of interleaved loops)"}

    def body(fam, mod, shape):
        for label_shape, passes in mod.generic_cases([shape], dev):
            walls = time_interleaved(passes, dev, repeats=3 if ctx["dry"] else 5)
            for label, fn in passes.items():
                with profile(activities=acts) as prof:
                    for _ in range(iters):
                        fn()
                    _sync(dev)
                kernels = kernel_times(prof.key_averages(), iters)
                busy, wall = sum(k["us"] for k in kernels.values()), walls[label] * 1e3
                top = sorted(kernels.items(), key=lambda kv: -kv[1]["us"])[:8]
                res["rows"].append({"family": fam, "shape": label_shape, "pass": label, "wall_us": wall,
                                    "device_us": busy, "busy": busy / wall,
                                    "launches": sum(k["calls"] for k in kernels.values()),
                                    "top": [{"kernel": n, **k} for n, k in top]})

    return _each_family(ctx, res, body)


RETIME_S = 35  # of the tune step's cap, kept for bench_tuned.py (its start, builds and timing)


def tune_log_dir(out: Path, arch: str) -> Path:
    return out / "tuning_logs" / f"cuda-{arch}"


def tune_commands(out: Path, arch: str, trials: int) -> List[List[str]]:
    """The tune step's commands: tune the DDF kernels of the DDF benchmark shape (forward and
    backward, the workloads ``dynfilter-tvm tune --op ddf`` records) into
    ``out/tuning_logs/cuda-<arch>``, then time tuned against default, interleaved."""
    B, C, H, W, k = GPU_SHAPES["ddf"]
    log_dir = tune_log_dir(out, arch)
    return [_py("-m", "dynfilter_tvm", "tune", "--op", "ddf", "--input", f"{B}x{C}x{H}x{W}", "--kernel-size", k,
                "--target", arch, "--trials", trials, "--seed", 0, "--no-progress", "--log-dir", log_dir),
            _py("benchmarks/bench_tuned.py", "--device", "cuda", "--log", log_dir, "--repeats", 5,
                "--json", out / "tuned_vs_default.json")]


def step_tune(ctx) -> Dict:
    from dynfilter_tvm import tuning_log

    from .workloads import layer_workloads

    B, C, H, W, k = GPU_SHAPES["ddf"]
    res = {"workloads": [str(w) for w in layer_workloads("ddf", (B, C, H, W), k)],
           "trials_per_kernel": ctx["args"].tune_trials}
    if ctx["dry"]:  # the arch is the device's; sm_90 shown
        cmds = tune_commands(ctx["out"], "sm_90", ctx["args"].tune_trials)
        return {**res, "status": NEEDS_GPU, "command": " && ".join(map(_show, cmds))}
    import torch

    arch = "sm_{}{}".format(*torch.cuda.get_device_capability(0))
    cmds = tune_commands(ctx["out"], arch, ctx["args"].tune_trials)
    log_dir = tune_log_dir(ctx["out"], arch)
    res.update(command=" && ".join(map(_show, cmds)), log_dir=str(log_dir))
    try:  # RETIME_S kept for the re-timing; a cut tuning keeps the records so far
        rc = _run(cmds[0], _left(ctx) - RETIME_S, ctx["log"]).returncode
    except subprocess.TimeoutExpired:
        rc, res["tuning_cut"] = 0, "tuning stopped at its time box; the log holds the trials so far"
    if not (log_dir / tuning_log.MANIFEST).exists():
        res.update(status="failed", error=f"the tuning wrote no log (rc {rc}); see logs/tune.log")
        return res
    tl = tuning_log.TuningLog.load(log_dir, repair=True)
    res["from_log"] = [{"kernel": f"{e.workload.op}.{e.workload.kernel}", "default_us": e.default_us,
                        "tuned_us": e.tuned_us, "trials": e.trials, "tuning_s": e.tuning_s, "used": e.use}
                       for e in tl.entries.values()]
    _write_partial(ctx, res)
    rc = rc or _run(cmds[1], _left(ctx), ctx["log"]).returncode
    out_json = ctx["out"] / "tuned_vs_default.json"
    res["interleaved"] = json.loads(out_json.read_text())["rows"] if out_json.exists() else None
    res["status"] = "ok" if rc == 0 and res["interleaved"] else "failed"
    return res


def _bundle_files() -> Dict:
    """Every file the shipped bundle's manifest names: present, and its SHA-256 as listed."""
    import hashlib

    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    files = {}
    for t in manifest["targets"]:
        for name, sha in ((t["library"], t["sha256"]), (t["device_code"]["file"], t["device_code"]["sha256"])):
            p = BUNDLE / name
            files[name] = ("missing" if not p.exists() else
                           "ok" if hashlib.sha256(p.read_bytes()).hexdigest() == sha else "checksum differs")
    return {"targets": [t["name"] for t in manifest["targets"]], "files": files,
            "kernels": sum(len(t["kernels"]) for t in manifest["targets"])}


def step_aot(ctx) -> Dict:
    res = {"bundle": str(BUNDLE.relative_to(ROOT)), **_bundle_files()}
    bad = {f: s for f, s in res["files"].items() if s != "ok"}
    if ctx["dry"]:
        res.update(status="failed" if bad else NEEDS_GPU, error=f"bundle files: {bad}" if bad else None,
                   command="DYNFILTER_TVM_JIT=off dynfilter-tvm gpu-suite --steps aot")
        return res
    import torch

    from dynfilter_tvm import aot
    from dynfilter_tvm.ops.common import out_size

    from ..functional import ddf
    from ..reference import ddf_reference

    assert os.environ.get("DYNFILTER_TVM_JIT") == "off", "the aot step runs with DYNFILTER_TVM_JIT=off"
    bundle = aot.load_bundle(BUNDLE)
    res["loaded"], res["skipped"] = repr(bundle), list(getattr(bundle, "skipped", []))
    checks = []
    kernels = json.loads((BUNDLE / "manifest.json").read_text())["targets"][0]["kernels"]
    for p in sorted({tuple(sorted(k["workload"]["params"].items())) for k in kernels if k["workload"]["kernel"] == "fwd"}):
        p = dict(p)
        B, C, H, W, k, s = (p[n] for n in ("B", "C", "H", "W", "k", "s"))
        gen = torch.Generator().manual_seed(0)
        ins = [torch.randn(*sh, generator=gen).cuda().requires_grad_()
               for sh in ((B, C, H, W), (B, C, k, k), (B, k * k, out_size(H, s), out_size(W, s)))]
        outs = []
        for fn in (ddf, ddf_reference):
            out = fn(*ins, k, p["d"], s, p["combine"])
            outs.append([out, *torch.autograd.grad(out, ins, torch.ones_like(out))])
        err = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(*outs))
        checks.append({"params": p, "max_rel_error": err, "ok": err < 1e-4})
    res["checks"] = checks
    res["status"] = "ok" if checks and all(c["ok"] for c in checks) else "failed"
    return res


STEPS = {"env": step_env, "stream": step_stream, "pytest": step_pytest, "bench": step_bench,
         "kernels": step_kernels, "generic": step_generic, "profile": step_profile, "tune": step_tune,
         "aot": step_aot}


def _write_partial(ctx, res: Dict) -> None:
    (ctx["out"] / f"{ctx['name']}.json").write_text(json.dumps(res, indent=1, default=str))


def run_step(args) -> int:
    """Child side: run one step, write OUT/<step>.json (status, data; the error if it raised)."""
    out = Path(args.out)
    ctx = {"name": args.step, "out": out, "dry": args.dry_run, "args": args, "log": out / "logs" / f"{args.step}.log",
           "deadline": time.monotonic() + float(os.environ.get("GPU_SUITE_CAP_S", PLAN[args.step])) - 8}
    try:
        res = STEPS[args.step](ctx)
    except Exception as err:
        res = {"status": "failed", "error": f"{type(err).__name__}: {err}"[:4000], "traceback": traceback.format_exc()}
    _write_partial(ctx, res)
    return 0


# ----------------------------------------------------------------------------- parent side


def _child_env(name: str, cap: float) -> Dict[str, str]:
    env = dict(os.environ, GPU_SUITE_CAP_S=str(cap))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if name == "aot":
        env["DYNFILTER_TVM_JIT"] = "off"
    # TVM compiles CUDA with NVRTC (cuda-bindings) by default; fall back to nvcc where only it exists
    if "TVM_CUDA_COMPILE_MODE" not in env and importlib.util.find_spec("cuda") is None and shutil.which("nvcc"):
        env["TVM_CUDA_COMPILE_MODE"] = "nvcc"
    return env


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def run_suite(args) -> int:
    out = Path(args.out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    names = [s for s in args.steps.split(",") if s]
    unknown = set(names) - set(PLAN)
    if unknown:
        raise SystemExit(f"unknown steps {sorted(unknown)}; known: {','.join(PLAN)}")
    t0 = time.perf_counter()
    results = {"dry_run": args.dry_run, "budget_s": args.budget_s, "plan_s": {n: PLAN[n] for n in names},
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv, "steps": {}}
    for name in names:
        left = args.budget_s - (time.perf_counter() - t0)
        cap = min(PLAN[name], left)
        log = out / "logs" / f"{name}.log"
        if cap < MIN_CAP_S:
            results["steps"][name] = {"status": "skipped", "error": f"budget spent ({left:.0f} s left)"}
            continue
        print(f"[gpu-suite] {name} (cap {cap:.0f} s) ...", flush=True)
        (out / f"{name}.json").unlink(missing_ok=True)
        start = time.perf_counter()
        cmd = _py("-m", "torch_bridge.app.gpu_suite", "--step", name, "--out", out,
                  "--tune-trials", args.tune_trials, *(["--dry-run"] if args.dry_run else []))
        try:
            rc = _run(cmd, cap, log, env=_child_env(name, cap)).returncode
            res = json.loads((out / f"{name}.json").read_text()) if (out / f"{name}.json").exists() else {
                "status": "failed", "error": f"step process exited {rc} without a result; log tail:\n{_tail(log)}"}
        except subprocess.TimeoutExpired:
            res = json.loads((out / f"{name}.json").read_text()) if (out / f"{name}.json").exists() else {}
            res.update(status="timeout", error=f"killed at its cap of {cap:.0f} s; log tail:\n{_tail(log)}")
        res["seconds"] = round(time.perf_counter() - start, 1)
        res["cap_s"] = round(cap, 1)
        results["steps"][name] = res
        print(f"[gpu-suite] {name}: {res['status']} in {res['seconds']} s", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    results["total_s"] = round(time.perf_counter() - t0, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "summary.md").write_text(summary(results))
    print((out / "summary.md").read_text())
    bad = [n for n, r in results["steps"].items() if r["status"] not in ("ok", NEEDS_GPU)]
    return 1 if bad else 0


def _f(v, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def _dry_run_banner(results: Dict) -> List[str]:
    """The line that heads each figures table of a dry run."""
    return ["Dry run: tiny sizes on CPU, to exercise the code; not benchmark results.", ""] if results["dry_run"] else []


def _pair_table(results: Dict, title: str, rows: List[Dict], base: str, other: str) -> List[str]:
    """Summary lines: a table of rows timed two ways (``<base>_ms``, ``<other>_ms``) with their
    ``ratio`` (other / base)."""
    b, o = base.replace("_", " "), other.replace("_", " ")
    lines = ["", f"## {title}", "", *_dry_run_banner(results),
             f"| family | shape | pass | {b} ms | {o} ms | {o} / {b} |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['shape']} | {r['pass']} | {r[base + '_ms']:.3f} | "
                     f"{r[other + '_ms']:.3f} | {r['ratio']:.2f} |")
    return lines


def summary(results: Dict) -> str:
    """The markdown summary of ``results.json``."""
    steps = results["steps"]
    env = steps.get("env", {})
    lines = [f"# GPU suite{' (dry run on CPU)' if results['dry_run'] else ''}", "",
             f"Started {results['started']}; device: {env.get('device', 'no CUDA device')} {env.get('arch', '')}; "
             f"torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), TVM {env.get('tvm')}, "
             f"TVM CUDA JIT: {env.get('tvm_cuda_jit')}. Measured total {results.get('total_s')} s of a "
             f"{results['budget_s']:.0f} s budget.", "",
             "| step | status | measured s | cap s | notes |", "|---|---|---|---|---|"]
    for name, r in steps.items():
        note = r.get("error") or r.get("command") or ""
        if "passed" in r:
            note = f"{r['passed']} passed, {r['failures']} failed, {r['errors']} errors, {r['skipped']} skipped" + (
                f"; failed: {', '.join(r['failed'][:5])}" if r.get("failed") else "")
        note = note.splitlines()[0][:200] if note else ""
        lines.append(f"| {name} | {r['status']} | {r.get('seconds', '')} | {r.get('cap_s', '')} | {note} |")
    for name, r in steps.items():
        if r["status"] == NEEDS_GPU and r.get("command"):
            lines += ["", f"{name} on a GPU runs: `{r['command']}`"]
    b = steps.get("bench", {})
    if b.get("rows"):
        lines += ["", f"## Benchmarks ({b['machine']})", "",
                  *_dry_run_banner(results),
                  f"Copy bandwidth measured: {b['copy_gbps']:.0f} GB/s. Bandwidth columns: {b['bandwidth_note']}.",
                  "", "| family | shape | pass | variant | ms | x floor | peak MiB | eff. GB/s | of copy |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in b["rows"]:
            lines.append(f"| {r['family']} | {r['shape']} | {r['pass']} | {r['variant']} | {r['ms']:.3f} | "
                         f"{r['x_floor']:.2f} | {_f(r['peak_mib'], '.1f')} | {r['effective_gbps']:.1f} | "
                         f"{r['fraction_of_copy']:.3f} |")
    kr = steps.get("kernels", {})
    if kr.get("rows"):
        lines += ["", f"## Kernels alone ({kr['machine']})", "",
                  *_dry_run_banner(results),
                  f"Copy bandwidth measured: {kr['copy_gbps']:.0f} GB/s; {kr['note']}.", "",
                  "| layer | kernel | us | min MB | eff. GB/s | roofline us | x roofline |", "|---|---|---|---|---|---|---|"]
        for r in kr["rows"]:
            lines.append(f"| {r['layer']} | {r['kernel']} | {r['us']:.1f} | {r['min_bytes'] / 1e6:.1f} | "
                         f"{r['effective_gbps']:.0f} | {r['roofline_us']:.1f} | {r['x_roofline']:.1f} |")
    g = steps.get("generic", {})
    if g.get("rows"):
        lines += _pair_table(results, f"Generic against static kernels ({g['machine']})", g["rows"],
                             "static", "generic")
    if g.get("routes"):
        lines += _pair_table(results, "The ops' eager fast path against the custom-op dispatcher (same passes)",
                             g["routes"], "custom_op", "eager")
    pr = steps.get("profile", {})
    if pr.get("rows"):
        lines += ["", f"## GPU busy time per pass ({pr['machine']})", "", *_dry_run_banner(results),
                  f"{pr['note']}.", "",
                  "| family | shape | pass | wall us | device busy us | busy share | launches | top kernels (us) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in pr["rows"]:
            top = "; ".join(f"{k['kernel'][:40]} {k['us']:.1f}" for k in r["top"][:4]) or "-"
            lines.append(f"| {r['family']} | {r['shape']} | {r['pass']} | {r['wall_us']:.1f} | {r['device_us']:.1f} | "
                         f"{r['busy']:.2f} | {r['launches']:.0f} | {top} |")
    t = steps.get("tune", {})
    if t.get("interleaved") or t.get("from_log"):
        lines += ["", f"## Tuned vs default ({t.get('log_dir')})", "",
                  "| kernel | default us | tuned us | speedup | source |", "|---|---|---|---|---|"]
        for r in t.get("interleaved") or []:
            lines.append(f"| {r['kernel']} {r['shape']} | {r['default_us']:.1f} | {r['tuned_us']:.1f} | "
                         f"{r['speedup']:.2f} | interleaved re-timing |")
        for r in t.get("from_log") or []:
            sp = r["default_us"] / r["tuned_us"] if r["default_us"] and r["tuned_us"] else None
            lines.append(f"| {r['kernel']} | {_f(r['default_us'], '.1f')} | {_f(r['tuned_us'], '.1f')} | "
                         f"{_f(sp, '.2f')} | tuning log ({r['trials']} trials) |")
    a = steps.get("aot", {})
    if a.get("checks"):
        worst = max(c["max_rel_error"] for c in a["checks"])
        lines += ["", f"AOT bundle, JIT off: {len(a['checks'])} DDF shapes (forward + 3 gradients), "
                      f"worst relative error {worst:.1e}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="dynfilter-tvm gpu-suite", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run_cli(p.parse_args(argv))


def run_cli(args) -> int:
    return run_step(args) if args.step else run_suite(args)


if __name__ == "__main__":
    sys.exit(main())
