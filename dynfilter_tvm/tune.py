"""Autotuning with MetaSchedule: every kernel a workload list needs, into a tuning log.

:func:`tune` takes plain workloads (the command line, ``torch_bridge.app.tune_cli``, records
them from a model or layer): ``dynfilter-tvm tune --op ddf --input 2x64x56x56 --target llvm
--trials 64`` tunes the kernels (forward and backward) one task at a time with MetaSchedule's evolutionary search and
XGBoost cost model, appending every measurement to ``tuning_logs/<target-name>/`` as it
arrives. Before a task the default (hand-written) schedule is measured by the same runner,
and after it the best record, so the log says what tuning gained. Runs are resumable: each
kernel's trial budget counts the records already in the log, so running the same command
again after an interruption continues where it stopped (a half-written last line is cut off).

Measurement runs locally (``LocalRunner``), or on remote devices through TVM's RPC tracker
(``--rpc-tracker host:port --rpc-key KEY``: ``RPCRunner``; see README "Tuning").

:func:`dry_run` (``tune --dry-run``) runs the same search without a device: candidates are
generated and built for the target (CUDA ones through nvcc, so a GPU target can be checked from
a CPU machine) but never measured, and no log is written. It shows that the search space and
the build still work for a target before GPU time is spent on it.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence

import tvm
from tvm.target import Target

from . import tuning_log
from .target import family, resolve
from .workload import Workload

log = logging.getLogger(__name__)


def make_runner(rpc_tracker: Optional[str] = None, rpc_key: Optional[str] = None, timeout_s: int = 120,
                number: int = 3, repeat: int = 3):
    """MetaSchedule's runner: local, or RPC through a tracker at ``host:port``."""
    from tvm.s_tir import meta_schedule as ms

    evaluator = ms.runner.EvaluatorConfig(number=number, repeat=repeat, min_repeat_ms=50)
    if not rpc_tracker:
        return ms.runner.LocalRunner(timeout_sec=timeout_s, evaluator_config=evaluator)
    host, _, port = rpc_tracker.rpartition(":")
    if not host or not port.isdigit() or not rpc_key:
        raise ValueError("--rpc-tracker takes host:port and needs --rpc-key")
    config = ms.runner.RPCConfig(tracker_host=host, tracker_port=int(port), tracker_key=rpc_key,
                                 session_timeout_sec=timeout_s)
    return ms.runner.RPCRunner(rpc_config=config, evaluator_config=evaluator)


def make_builder(isolated: bool = False, timeout_s: int = 600):
    """MetaSchedule's builder. By default candidates are compiled in this process: its
    ``LocalBuilder`` starts fresh worker processes for every batch, and each spends ~25 s
    importing TVM's tensor intrinsics before a build that takes ~0.1 s (measured on 2 cores).
    ``isolated=True`` takes ``LocalBuilder`` (a crashing candidate cannot take the tuner down)."""
    from tvm.s_tir import meta_schedule as ms

    if isolated:
        # Its default 30 s timeout is shorter than that import on a small machine.
        return ms.builder.LocalBuilder(timeout_sec=timeout_s)
    return _in_process_builder()


def _in_process_builder():
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.builder import local_builder

    @derived_object
    class InProcessBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs):
            results = []
            for inp in build_inputs:
                try:
                    with inp.target:  # CUDA's compile callback reads the arch from the current target
                        lib = local_builder.default_build(inp.mod, inp.target, None)
                    results.append(ms.builder.BuilderResult(local_builder.default_export(lib), None))
                except Exception as err:  # an invalid candidate: report it, keep tuning
                    results.append(ms.builder.BuilderResult(None, f"build failed: {type(err).__name__}: {err}"))
            return results

    return InProcessBuilder()


def measure(mods, target: Target, builder, runner) -> List[Optional[float]]:
    """Mean run time in microseconds of each scheduled module (None when it failed), measured
    with MetaSchedule's builder and runner, like the tuning trials."""
    from tvm.s_tir import meta_schedule as ms

    results = builder.build([ms.builder.BuilderInput(m, target) for m in mods])
    inputs, where = [], []
    for i, (mod, res) in enumerate(zip(mods, results)):
        if res.error_msg:
            log.warning("dynfilter_tvm: build failed while measuring: %s", error_gist(res.error_msg))
            continue
        args = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
        inputs.append(ms.runner.RunnerInput(res.artifact_path, "cpu" if target.kind.name == "llvm" else target.kind.name, args))
        where.append(i)
    out: List[Optional[float]] = [None] * len(mods)
    for i, fut in zip(where, runner.run(inputs)):
        res = fut.result()
        if res.error_msg:
            log.warning("dynfilter_tvm: run failed while measuring: %s", error_gist(res.error_msg))
        elif res.run_secs:
            out[i] = tuning_log.mean_seconds(res.run_secs) * 1e6
    for res in results:
        if res.artifact_path:
            shutil.rmtree(os.path.dirname(res.artifact_path), ignore_errors=True)
    return out


def time_side_by_side(mods, target: Target, rounds: int = 9, min_ms: float = 50.0) -> List[float]:
    """Median run time in microseconds of each scheduled module (function ``main``) on random
    inputs, taken in ``rounds`` alternating rounds, so that a machine whose load changes slows
    every module alike (the tuner's runner times one module after the other). For a one-core
    CPU target the time is the calling thread's CPU time (TVM's pool held to one thread), which
    other processes on a busy machine do not inflate; otherwise wall-clock time."""
    one_core = target.kind.name == "llvm" and int(target.attrs.get("num-cores", 0)) == 1
    clock = time.thread_time if one_core else time.perf_counter
    if one_core:  # TVM's pool to one thread: the work runs on (and is timed by) this thread
        pool_size, threads = tvm.get_global_func("runtime.config_threadpool"), tvm.get_global_func("runtime.NumThreads")
        before = threads()
        pool_size(0, 1)
        try:
            return _side_by_side(mods, target, clock, rounds, min_ms)
        finally:
            pool_size(0, before)
    return _side_by_side(mods, target, clock, rounds, min_ms)


def _side_by_side(mods, target: Target, clock, rounds: int, min_ms: float) -> List[float]:
    import statistics

    import numpy as np
    from tvm.s_tir import meta_schedule as ms

    dev = tvm.device("cpu" if target.kind.name == "llvm" else target.kind.name, 0)
    rng = np.random.default_rng(0)
    timers = []
    from .build import TIR_PIPELINE  # as builds compile them (launch bounds a default schedule asks for)

    for mod in mods:
        with target:
            lib = tvm.compile(mod, target=target, tir_pipeline=TIR_PIPELINE)
        args = [tvm.runtime.tensor(rng.standard_normal([int(d) for d in a.shape]).astype(a.dtype), dev)
                for a in ms.arg_info.ArgInfo.from_prim_func(mod["main"])]
        fn = lib.mod[str(mod["main"].attrs["global_symbol"])]
        fn(*args)  # warm-up
        timers.append((fn, args))
    times: List[List[float]] = [[] for _ in mods]
    for _ in range(rounds):
        for t, (fn, args) in zip(times, timers):
            # calls until min_ms have passed: thread CPU clocks can tick in milliseconds
            n, t0 = 0, clock()
            while True:
                fn(*args)
                dev.sync()
                n += 1
                if clock() - t0 >= min_ms / 1e3 or n >= 1 << 14:
                    break
            t.append((clock() - t0) / n * 1e6)
    return [statistics.median(t) for t in times]


def recheck(log_dir, everything: bool = False, rounds: int = 9, progress: bool = True) -> List[tuple]:
    """Measure again, side by side (:func:`time_side_by_side`), today's default schedule and the
    best record of each kernel in the log at ``log_dir`` whose default schedule changed since its
    times were taken (every kernel with a record when ``everything``), and write the new times
    and default hash into the manifest: a record is used again only if it still beats today's
    default. This machine must be able to run the log's target (a CPU log: a CPU of that model).
    Returns ``(workload, default_us, tuned_us)`` per kernel measured."""
    from tqdm import tqdm

    tl = tuning_log.TuningLog.load(log_dir)
    target = tvm.target.Target(tl.target)
    tl.check_compatible(target)
    todo = []
    for e in sorted(tl.entries.values(), key=lambda e: e.workload.key()):
        best = tl.best(e)
        if best is None:
            continue
        mod = tuning_log.mod_of(e.workload)
        if tuning_log.structural_hash(mod) != e.shash:  # compute changed: the record is stale anyway
            continue
        if everything or e.default_schedule is None or tl.default_changed(e):
            todo.append((e, tuning_log.apply_record(mod, best.raw)))
    print(f"re-measuring {len(todo)} of {len(tl.entries)} kernels in {tl.path}", flush=True)
    done = []
    for e, tuned_mod in tqdm(todo, unit="kernel", disable=not progress, dynamic_ncols=True):
        default_mod = tuning_log.default_module(e.workload, target)
        e.default_us, e.tuned_us = time_side_by_side([default_mod, tuned_mod], target, rounds)
        e.default_schedule = tuning_log.structural_hash(default_mod)
        tl.save_manifest()  # one kernel at a time: an interrupted recheck keeps what it measured
        done.append((e.workload, e.default_us, e.tuned_us))
        print(f"{e.workload}: default {tuning_log.format_us(e.default_us)}, tuned {tuning_log.format_us(e.tuned_us)}"
              f"{'' if e.use else ' - default used'}", flush=True)
    tuning_log.forget()
    return done


def _dry_runner():
    """A runner that measures nothing: every candidate comes back 'not measured'."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class DryRunner(ms.runner.PyRunner):
        def run(self, runner_inputs):
            return [ms.runner.LocalRunnerFuture(res=None, error_message="dry run: not measured")
                    for _ in runner_inputs]

    return DryRunner()


def _recording_builder(builder, results: list):
    """``builder``, keeping every BuilderResult in ``results`` (artifacts are deleted by the caller)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class Recording(ms.builder.PyBuilder):
        def build(self, build_inputs):
            out = builder.build(build_inputs)
            results.extend(out)
            return out

    return Recording()


def _prepare(target, trials: int) -> Target:
    """The resolved target (refused where we have no schedules for it), the trial count checked,
    and MetaSchedule's console kept to warnings (its handler takes this level; its files keep INFO)."""
    target = resolve(target)
    family(target)
    if trials < 1:
        raise ValueError("--trials must be at least 1")
    ms_log = logging.getLogger("tvm.s_tir.meta_schedule")
    if ms_log.level == logging.NOTSET:
        ms_log.setLevel(logging.WARNING)
    _import_tensor_intrinsics()
    return target


def _import_tensor_intrinsics() -> None:
    """Import TVM's tensor intrinsics here, at the top level. MetaSchedule imports them lazily,
    first inside a build; an import that fails there leaves the global functions it registered
    behind, and every later import then fails on "already registered", hiding the cause."""
    try:
        import tvm.s_tir.tensor_intrin  # noqa: F401
    except Exception as err:
        raise RuntimeError(f"TVM's tensor intrinsics (tvm.s_tir.tensor_intrin) fail to import, and "
                           f"MetaSchedule needs them: {type(err).__name__}: {error_gist(str(err))}") from err


def error_gist(msg: str, head: int = 2, tail: int = 6, limit: int = 1500) -> str:
    """The informative lines of a multi-line build or run error: the first ``head`` and last
    ``tail`` non-blank ones (TVM's CUDA compile errors start with the kernel's source and
    end with the compiler's message), at most ``limit`` characters."""
    lines = [ln.rstrip() for ln in (msg or "").splitlines() if ln.strip()]
    if len(lines) > head + tail:
        lines = [*lines[:head], f"... ({len(lines) - head - tail} lines)", *lines[-tail:]]
    text = " | ".join(lines) or "(no message)"
    return text if len(text) <= limit else text[:limit] + "..."


def dry_run(workloads: Sequence[Workload], target, trials: int = 4, builder=None, seed: Optional[int] = None,
            population: int = 64) -> List[dict]:
    """MetaSchedule's search for each workload with ``trials`` candidates, each built for ``target``
    and none measured. Returns one dict per workload: ``workload``, ``built`` and ``failed``
    (candidate counts) and ``errors`` (:func:`error_gist` of each failed build). Writes no log;
    ``population`` (the evolutionary search's, default 64 instead of 512) keeps it quick."""
    from tvm.s_tir import meta_schedule as ms

    target = _prepare(target, trials)
    builder = builder or make_builder()
    summary = []
    for i, wl in enumerate(dict.fromkeys(workloads)):
        results: list = []
        work = tempfile.mkdtemp(prefix="dynfilter_tvm_dry_")
        t0 = time.perf_counter()
        try:
            strategy = ms.search_strategy.EvolutionarySearch(population_size=population, init_min_unmeasured=population // 4)
            ms.tune_tir(tuning_log.mod_of(wl), target, work, max_trials_global=trials, num_trials_per_iter=trials,
                        builder=_recording_builder(builder, results), runner=_dry_runner(),
                        database=ms.database.MemoryDatabase(), cost_model="xgb", strategy=strategy, seed=seed)
        finally:
            for res in results:
                if res.artifact_path:
                    shutil.rmtree(os.path.dirname(res.artifact_path), ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
        errors = [error_gist(res.error_msg) for res in results if res.error_msg]
        summary.append({"workload": wl, "built": len(results) - len(errors), "failed": len(errors), "errors": errors})
        print(f"[{i + 1}] {wl}: {len(results) - len(errors)} of {len(results)} candidates built for "
              f"{tuning_log.log_name(target)}, none measured ({time.perf_counter() - t0:.0f} s)"
              + (f"; first failure: {errors[0]}" if errors else ""), flush=True)
    return summary


def _progress_callback(bar, state: dict):
    from tvm.s_tir import meta_schedule as ms
    from tvm.ir.utils import derived_object

    @derived_object
    class Progress(ms.measure_callback.PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            for res in runner_results:
                if res.run_secs:
                    us = tuning_log.mean_seconds(res.run_secs) * 1e6
                    state["best"] = us if state["best"] is None else min(state["best"], us)
            bar.update(len(measure_candidates))
            _postfix(bar, state)

    return Progress()


def _postfix(bar, state: dict) -> None:
    us = tuning_log.format_us
    bar.set_postfix_str(f"{state['task']} {state['name']} best {us(state['best'])} default {us(state['default'])}")


def tune(workloads: Sequence[Workload], target, trials: int, log_dir=None, runner=None, builder=None,
         per_iter: int = 16, seed: Optional[int] = None, progress: bool = True) -> tuning_log.TuningLog:
    """Tune each workload with ``trials`` trials in total (records already in the log count)
    into the log at ``log_dir`` (default ``tuning_logs/<target-name>``); returns the log."""
    from tqdm import tqdm
    from tvm.s_tir import meta_schedule as ms

    target = _prepare(target, trials)
    log_dir = Path(log_dir) if log_dir else tuning_log.default_root() / tuning_log.log_name(target)
    tl = tuning_log.open_or_create(log_dir, target)
    runner = runner or make_runner()
    builder = builder or make_builder()
    workloads = list(dict.fromkeys(workloads))
    todo = []
    for wl in workloads:
        mod = tuning_log.mod_of(wl)
        shash = tuning_log.structural_hash(mod)
        done = len(tl.records.get(shash, ()))
        entry = tl.entries.get(wl.key())
        if entry is None or entry.shash != shash:  # new, or tuned on an older compute
            entry = tl.entries[wl.key()] = tuning_log.Entry(wl, shash)
        entry.trials = done
        if done < trials or entry.tuned_us is None:
            todo.append((wl, mod, entry, max(trials - done, 0)))
    tl.save_manifest()  # the entries go in first, so an interrupted run's records stay mapped
    total = sum(n for *_, n in todo)
    print(f"tuning {len(todo)} of {len(workloads)} kernels for {tuning_log.log_name(target)} "
          f"({total} trials; log {log_dir})", flush=True)
    bar = tqdm(total=total, unit="trial", disable=not progress, dynamic_ncols=True)
    state = {"best": None, "default": None, "task": "", "name": ""}  # times in us
    work = Path(tempfile.mkdtemp(prefix="dynfilter_tvm_tune_"))
    try:
        db = ms.database.JSONDatabase(str(log_dir / tuning_log.WORKLOADS), str(log_dir / tuning_log.RECORDS),
                                      allow_missing=True)
        for i, (wl, mod, entry, n) in enumerate(todo):
            state.update(task=f"[{i + 1}/{len(todo)}]", name=f"{wl.op}.{wl.kernel}", best=None)
            t0 = time.perf_counter()
            default_mod = tuning_log.default_module(wl, target)
            entry.default_schedule = tuning_log.structural_hash(default_mod)
            entry.default_us = state["default"] = measure([default_mod], target, builder, runner)[0]
            _postfix(bar, state)
            if n > 0:
                ms.tune_tir(mod, target, str(work / f"task{i}"), max_trials_global=n, num_trials_per_iter=min(per_iter, n),
                            builder=builder, runner=runner, database=db, cost_model="xgb",
                            measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"),
                                               _progress_callback(bar, state)],
                            seed=seed)
            fresh = tuning_log.TuningLog.load(log_dir)
            entry.trials = len(fresh.records.get(entry.shash, ()))
            best = fresh.best(entry)
            if best is not None:
                tuned_mod = tuning_log.apply_record(mod, best.raw)
                entry.tuned_us = measure([tuned_mod], target, builder, runner)[0]
            entry.tuning_s += time.perf_counter() - t0
            tl.save_manifest()
            bar.write(f"{wl}: default {tuning_log.format_us(entry.default_us)}, "
                      f"tuned {tuning_log.format_us(entry.tuned_us)} "
                      f"({entry.trials} trials){'' if entry.use else ' - default kept'}")
    except KeyboardInterrupt:
        tl.save_manifest()
        bar.write("interrupted: the records so far are in the log; run the same command to resume")
        raise
    finally:
        bar.close()
        shutil.rmtree(work, ignore_errors=True)
        tuning_log.forget()
    return tuning_log.TuningLog.load(log_dir)
