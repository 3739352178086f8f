"""Measuring the ops against their alternatives in one run: time (interleaved repeats,
medians) and peak memory, reported as ratios.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above the inputs; on CPU, the
process's peak resident set (VmHWM, reset through /proc/self/clear_refs) above what was
resident before the call, which counts every allocation that touched memory, TVM's scratch
buffers included. For that, glibc must map each large block afresh rather than reuse freed
heap, which would distort times: on CPU, :func:`add_cpu_memory` measures memory in a child
process with a fixed mmap threshold while the parent times with the normal allocator.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, ContextManager, Dict, List, Optional

import torch

MEMORY_PHASE = "DYNFILTER_BENCH_MEMORY"  # set in the child process that measures memory


def memory_phase() -> bool:
    return MEMORY_PHASE in os.environ


def measure_pass(label: str, shape: str, fns: Dict[str, Callable[[], object]], device: torch.device,
                 repeats: int) -> List[Dict]:
    """Rows {shape, pass, variant, ms, peak_mib} of one pass. On CPU a process measures either
    time (normal allocator) or memory (the child of :func:`add_cpu_memory`), not both: the
    fixed mmap threshold that makes peak RSS exact also makes every large allocation fault
    its pages in afresh, which would slow the variants that allocate most."""
    cpu = device.type == "cpu"
    if cpu and memory_phase():
        for fn in fns.values():  # warm-up: compiles and caches are not the op's memory
            fn()
        times = {}
    else:
        times = time_interleaved(fns, device, repeats=repeats)
    return [{"shape": shape, "pass": label, "variant": name, "ms": times.get(name),
             "peak_mib": peak_memory_mib(fn, device) if not cpu or memory_phase() else None}
            for name, fn in fns.items()]


def layer_passes(shape: str, variants: Dict[str, Callable], modules, x: torch.Tensor, device: torch.device,
                 repeats: int) -> List[Dict]:
    """Rows of a layer benchmark: the forward (eval mode, no grad) and the forward+backward
    (training mode, the sum of the output backpropagated to the input and the ``modules``'
    parameters) of each variant ``fn(x)``."""
    def fwd(fn):
        def run():
            with torch.no_grad():
                return fn(x)
        return run

    leaf = x.detach().requires_grad_()

    def fwd_bwd(fn):
        def run():
            leaf.grad = None
            for m in modules:
                m.zero_grad(set_to_none=True)
            out = fn(leaf)
            out.sum().backward()
            return out
        return run

    rows = []
    for label, mode, wrap in (("forward", False, fwd), ("forward+backward", True, fwd_bwd)):
        for m in modules:
            m.train(mode)
        rows += measure_pass(label, shape, {n: wrap(f) for n, f in variants.items()}, device, repeats)
    return rows


def add_cpu_memory(rows: List[Dict], argv: List[str]) -> List[Dict]:
    """CPU: fill in peak memory by running the same command (``argv``, without the Python
    executable) in a child process with glibc's mmap threshold fixed at 64 KiB, so that blocks
    of 64 KiB and more come and go as mappings the peak RSS sees. In that child, write its
    rows to the file named by the environment and exit."""
    if memory_phase():
        with open(os.environ[MEMORY_PHASE], "w") as f:
            json.dump(rows, f)
        sys.exit(0)
    if not sys.platform.startswith("linux"):
        return rows
    print("measuring peak memory in a child process ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "memory.json")
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", **{MEMORY_PHASE: path})
        subprocess.run([sys.executable, *argv], env=env, check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            peaks = {(r["shape"], r["pass"], r["variant"]): r["peak_mib"] for r in json.load(f)}
    for r in rows:
        r["peak_mib"] = peaks.get((r["shape"], r["pass"], r["variant"]), r["peak_mib"])
    return rows


def output_and_input_grads(fn: Callable[..., torch.Tensor], inputs, args) -> List[torch.Tensor]:
    """``fn(*inputs, *args)`` and the gradients of its sum with respect to every input: what
    the checks compare between an op and its reference."""
    out = fn(*inputs, *args)
    return [out, *torch.autograd.grad(out, inputs, torch.ones_like(out))]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_memory_mib(fn: Callable[[], object], device: torch.device) -> Optional[float]:
    """Peak extra memory of one call of ``fn`` in MiB (None where it cannot be measured)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS mark
    except OSError:
        return None
    base = _rss_kib("VmRSS")
    result = fn()
    peak = _rss_kib("VmHWM")
    del result
    return None if base is None or peak is None else max(peak - base, 0) / 1024


def time_interleaved(fns: Dict[str, Callable[[], object]], device: torch.device, repeats: int = 7,
                     min_time: float = 0.05, clock: Callable[[], float] = time.perf_counter) -> Dict[str, float]:
    """Median milliseconds per call of each function, the variants interleaved per repeat so
    that machine noise hits them alike. ``clock``: wall time by default; ``time.thread_time``
    (CPU, 1 thread: TVM's 1-thread pool, torch's ops and CPU autograd all run in the calling
    thread) leaves out the time other processes take from a loaded machine."""
    for fn in fns.values():  # warm-up: compiles, caches, allocator pools
        fn()
    _sync(device)
    loops = {}
    for name, fn in fns.items():
        n, t = 1, 0.0
        while True:
            start = clock()
            for _ in range(n):
                fn()
            _sync(device)
            t = clock() - start
            if t >= min_time or n >= 1 << 14:
                break
            n *= 2
        loops[name] = n
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            for _ in range(loops[name]):
                fn()
            _sync(device)
            samples[name].append((clock() - start) / loops[name] * 1e3)
    return {name: statistics.median(v) for name, v in samples.items()}


def machine_description(device: torch.device) -> str:
    import platform

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    from dynfilter_tvm.target import host_cpu_name

    return (f"{platform.processor() or platform.machine()} ({host_cpu_name()}), {os.cpu_count()} cores, "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads")


def print_table(rows: List[Dict], floor: str) -> None:
    """Rows of {shape, pass, variant, ms, peak_mib}, with ratios to the ``floor`` variant of
    the same shape and pass."""
    ms = {(r["shape"], r["pass"]): r["ms"] for r in rows if r["variant"] == floor}
    mib = {(r["shape"], r["pass"]): r["peak_mib"] for r in rows if r["variant"] == floor}
    short = floor.split()[-1] if len(floor) > 9 else floor
    print(f"{'shape':<20} {'pass':<17} {'variant':<24} {'ms':>9} {'x ' + short:>9} {'peak MiB':>9} {'x ' + short:>9}")
    for r in rows:
        key = (r["shape"], r["pass"])
        mem = r["peak_mib"]
        mem_ratio = (mem / mib[key]) if mem is not None and mib.get(key) else float("nan")
        mem_s = f"{mem:9.1f}" if mem is not None else f"{'n/a':>9}"
        print(f"{r['shape']:<20} {r['pass']:<17} {r['variant']:<24} {r['ms']:9.3f} {r['ms'] / ms[key]:9.2f} "
              f"{mem_s} {mem_ratio:9.2f}")


def run_shapes(family, device: torch.device, shapes, compile_ref: bool, argv: List[str],
               json_path: Optional[str] = None, repeats: int = 7) -> List[Dict]:
    """Measure ``family.bench_shape(B, C, H, W, k, device, compile_ref=, repeats=)`` (a module
    of ``torch_bridge.app.bench``) for every shape, print the table (ratios to its ``FLOOR``),
    optionally write JSON; ``argv`` reruns this command (CPU memory)."""
    print(f"machine: {machine_description(device)}")
    rows = []
    for i, (B, C, H, W, k) in enumerate(shapes, 1):
        print(f"[{i}/{len(shapes)}] timing {family.NAME} B={B} C={C} {H}x{W} k={k} ...", flush=True)
        rows += family.bench_shape(B, C, H, W, k, device, compile_ref=compile_ref, repeats=repeats)
    if device.type == "cpu":
        rows = add_cpu_memory(rows, argv)
    print_table(rows, family.FLOOR)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"machine": machine_description(device), "rows": rows}, f, indent=1)
    return rows


def main(description: str, family) -> None:
    """Command line of a benchmark script: :func:`run_shapes` of ``family`` (at its
    ``CPU_SHAPES`` or ``GPU_SHAPES`` unless ``--shapes``) with the script's options."""
    import argparse

    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch and TVM (0: all cores)")
    ap.add_argument("--shapes", default="", help="e.g. 2x64x56x56x7 (B x C x H x W x k)")
    a = ap.parse_args()
    if a.threads:  # TVM reads it when its pool starts, at the first kernel call
        os.environ["TVM_NUM_THREADS"] = str(a.threads)
        torch.set_num_threads(a.threads)
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    torch.manual_seed(0)
    shapes = [tuple(int(n) for n in s.split("x")) for s in a.shapes.split(",")] if a.shapes else (
        family.CPU_SHAPES if dev.type == "cpu" else family.GPU_SHAPES)
    run_shapes(family, dev, shapes, not a.no_compile, sys.argv, a.json, a.repeats)


def time_settings(family, device: torch.device, settings: Dict[str, Callable[[], ContextManager]], shapes=None,
                  repeats: int = 7, clock: Callable[[], float] = time.perf_counter) -> List[Dict]:
    """Rows {shape, pass, <setting>_ms...}: each of ``family.generic_cases`` (the passes of
    each shape, default its ``CPU_SHAPES``) timed inside each setting's context, the settings
    interleaved in this process (:func:`time_interleaved` with ``clock``)."""

    def within(setting, fn):
        def run():
            with setting():
                return fn()
        return run

    rows = []
    for shape, passes in family.generic_cases(shapes or family.CPU_SHAPES, device):
        for label, fn in passes.items():
            ms = time_interleaved({n: within(c, fn) for n, c in settings.items()}, device, repeats=repeats, clock=clock)
            rows.append({"shape": shape, "pass": label, **{f"{n}_ms": v for n, v in ms.items()}})
    return rows


def generic_vs_static(family, device: torch.device, shapes=None, repeats: int = 7,
                      clock: Callable[[], float] = time.perf_counter) -> List[Dict]:
    """Rows {shape, pass, generic_ms, static_ms, ratio}: :func:`time_settings` with the kernels
    served generic and static (``dynfilter_tvm.dispatch`` shape modes). Kernels whose op
    declares no ``SYMBOLIC`` run static in both modes."""
    from dynfilter_tvm import dispatch

    def mode(m):
        @contextlib.contextmanager
        def setting():
            dispatch.set_shape_mode(m)
            yield
        return setting

    try:
        rows = time_settings(family, device, {m: mode(m) for m in dispatch.MODES}, shapes, repeats, clock)
    finally:
        dispatch.set_shape_mode(None)
    return [dict(r, ratio=r["generic_ms"] / r["static_ms"]) for r in rows]


def eager_vs_custom_op(family, device: torch.device, shapes=None, repeats: int = 7,
                       clock: Callable[[], float] = time.perf_counter) -> List[Dict]:
    """Rows {shape, pass, eager_ms, custom_op_ms, ratio}: :func:`time_settings` with the ops'
    eager fast path (``torch_bridge.ops._eager``) and with every call through the custom op;
    ratio = eager / custom op (below 1: the host time the fast path saves)."""
    from ...ops._eager import custom_op_only

    rows = time_settings(family, device, {"eager": contextlib.nullcontext, "custom_op": custom_op_only},
                         shapes, repeats, clock)
    return [dict(r, ratio=r["eager_ms"] / r["custom_op_ms"]) for r in rows]


def layer_cases(make_layer, shapes, device: torch.device, guided: bool = False):
    """(shape label, {forward, forward+backward}) per (N, C, H, W, k) for a layer
    ``make_layer(C, k)`` called on its input (and on it as guidance with ``guided``)."""
    for N, C, H, W, k in shapes:
        layer = make_layer(C, k).to(device)
        x = torch.randn(N, C, H, W, device=device) * 0.3
        leaf = x.detach().requires_grad_()
        args = (lambda t: (t, t)) if guided else (lambda t: (t,))

        def fwd(layer=layer, x=x):
            layer.eval()
            with torch.no_grad():
                return layer(*args(x))

        def fwd_bwd(layer=layer, leaf=leaf):
            layer.train()
            leaf.grad = None
            layer.zero_grad(set_to_none=True)
            layer(*args(leaf)).sum().backward()

        yield f"{N}x{C}x{H}x{W} k{k}", {"forward": fwd, "forward+backward": fwd_bwd}
