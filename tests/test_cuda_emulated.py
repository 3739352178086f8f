"""CUDA schedules executed without a GPU: the gate for every CUDA schedule change.

Every kernel with a CUDA schedule -- its default schedule, and every record of every shipped
CUDA tuning log -- runs at small shapes chosen to reach each branch of its schedule, two ways
(``dynfilter_tvm.emulate``): TVM's OpenCL lowering of the scheduled TIR, and TVM's sm_90 CUDA
source translated to OpenCL C with warp shuffles emulated; in float32 and float64, on PoCL
(an OpenCL CPU device), against the unscheduled compute in float64. Every buffer sits between
NaN guard zones and outputs start as NaN: an out-of-bounds write, an unwritten output and an
out-of-bounds read that reaches a result all fail. Negative controls (a dropped barrier, a
wrong shuffle lane, a grid one block short, a shifted tap, a write one element past the end)
must fail, which shows the check catches what it claims.

Limits: no float16/bfloat16 (PoCL has neither); PoCL runs a group's work-items one after
another between barriers, so races that need truly concurrent warps stay invisible (a missing
barrier is caught when the data it guarded is read); the CUDA way also refuses static shared
memory over 48 KiB per block, as nvcc does. Skipped, with the reason, where PoCL cannot load.
"""
from __future__ import annotations

import re

import pytest

from dynfilter_tvm import emulate
from dynfilter_tvm.workload import Workload

_REASON = emulate.available()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"PoCL/pyopencl unavailable: {_REASON}")


def _ddf(B, C, H, W, G, k, s, d, combine):
    return dict(B=B, C=C, H=H, W=W, G=G, k=k, s=s, d=d, combine=combine)


def _geo(N, C, H, W, Ho, Wo, k, s, z, p, d):
    return dict(N=N, C=C, H=H, W=W, Ho=Ho, Wo=Wo, k=k, s=s, z=z, p=p, d=d)


def _acda(N, C, H, W, M, T, k, s, d, p):
    return dict(N=N, C=C, H=H, W=W, M=M, T=T, k=k, s=s, d=d, p=p)


DDF_SHAPES = {
    # odd sizes, heads; dc: Wo = 11 (not a power of two: shared-memory allreduce)
    "odd-heads": _ddf(2, 8, 9, 11, 2, 3, 1, 1, "mul"),
    # stride 2, dilation 2, k = 5, 'add'; dc: Wo = 4 (warp shuffles)
    "s2-d2-add": _ddf(2, 6, 13, 7, 2, 5, 2, 2, "add"),
    # C/G = 32: ds takes its cross-thread (channel slices) path; stride 3; k = 7 (largest unrolled)
    "s3-cg32-k7": _ddf(1, 64, 5, 7, 2, 7, 3, 1, "mul"),
    # dc: Wo = 64 (> a warp: shuffles, then across warps)
    "wo64": _ddf(1, 2, 3, 64, 1, 3, 1, 1, "add"),
    # Wo = 300 > 256 threads: dc loops over x in each thread; k = 9 taps stay loops
    "k9-wide-rows": _ddf(1, 2, 2, 600, 1, 9, 2, 1, "add"),
    # Wo = 1: dc runs one thread per output, many outputs per block
    "one-column": _ddf(3, 4, 6, 1, 2, 3, 2, 1, "mul"),
    # a one-pixel output (every axis 1)
    "one-pixel": _ddf(1, 1, 1, 1, 1, 1, 1, 1, "mul"),
    # fwd, dx: 16 x 16 pixel tiles with tail tiles, two 32-channel chunks per head
    "tiles": _ddf(1, 128, 37, 41, 2, 3, 1, 1, "mul"),
}
PAC_PLAIN = _geo(2, 5, 9, 11, 9, 11, 5, 1, 1, 2, 1)
PAC_S2D2 = _geo(1, 3, 13, 11, 7, 6, 3, 2, 1, 2, 2)
PAC_ZERO_INSERTED = _geo(1, 3, 5, 7, 10, 14, 3, 1, 2, 1, 1)  # the transposed form / adjoints, stride 2
PAC_UNIT = _geo(1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1)
_DIST = {"s2-g1": dict(N=2, C=3, G=1, H=10, W=12, Ho=5, Wo=6, k=5, s=2, p=2, d=1, asym=0),
         "d2-gc-asym": dict(N=1, C=4, G=4, H=9, W=7, Ho=9, Wo=7, k=3, s=1, p=2, d=2, asym=1)}
PAC_SHAPES = {
    # O = 12: channel blocks of 6; O = 5: of 5; a = 1: the zero-inserted adjoint
    "conv": {"plain-o12": dict(PAC_PLAIN, O=12, a=0), "s2-d2-o5": dict(PAC_S2D2, O=5, a=0),
             "zero-ins": dict(PAC_ZERO_INSERTED, O=5, a=0), "zero-ins-adjoint": dict(PAC_ZERO_INSERTED, O=5, a=1),
             "unit": dict(PAC_UNIT, O=1, a=0)},
    "pool": {"plain-g1": dict(PAC_PLAIN, G=1, a=0), "plain-gc-adjoint": dict(PAC_PLAIN, G=5, a=1),
             "s2-d2": dict(PAC_S2D2, G=1, a=0), "unit": dict(PAC_UNIT, G=1, a=0)},
    "conv_dk": {"plain": dict(PAC_PLAIN, O=12), "zero-ins": dict(PAC_ZERO_INSERTED, O=5), "unit": dict(PAC_UNIT, O=1)},
    "conv_dw": {"plain": dict(PAC_PLAIN, O=12), "s2-d2": dict(PAC_S2D2, O=5), "zero-ins": dict(PAC_ZERO_INSERTED, O=5),
                "unit": dict(PAC_UNIT, O=1)},
    "pool_dk": {"g1": dict(PAC_PLAIN, G=1), "gc": dict(PAC_PLAIN, G=5)},
    "dist": _DIST, "dist_df": _DIST, "dist_df0": _DIST,
}
ACDA_SHAPES = {
    # 32-pixel tiles with a tail tile (Wo = 40), 8 channel slices over C = 12 (a tail slice)
    "k7-tiles": _acda(1, 12, 3, 40, 6, 18, 7, 1, 1, 3),
    "odd-s2-d2": _acda(1, 5, 13, 11, 2, 4, 3, 2, 2, 2),
    # M * k * k = 200 atoms per pixel: fewer pixels per tile in float64 (shared memory)
    "k5-wide-atoms": _acda(1, 3, 5, 40, 8, 16, 5, 1, 1, 2),
    "one-basis-one-atom": _acda(1, 3, 5, 4, 1, 1, 3, 1, 1, 1),
    "one-pixel": _acda(1, 1, 1, 1, 1, 1, 1, 1, 1, 0),
    # register tiles: fwd 8 adjacent channels per tile (4 in float64: two tiles per thread),
    # dx 8 channels
    "register-tiles": _acda(1, 64, 2, 40, 6, 4, 3, 1, 1, 1),
    # the dropped-barrier controls: k = 1 and 26 atoms, built by two threads per pixel (13
    # each), so a reader of the second half runs before its writer on PoCL
    "k1": _acda(1, 8, 3, 40, 26, 4, 1, 1, 1, 0),
}

CASES = ([("ddf", k, name, p) for k in ("fwd", "dx", "ds", "dc") for name, p in DDF_SHAPES.items()]
         + [("pac", k, name, p) for k, shapes in PAC_SHAPES.items() for name, p in shapes.items()]
         + [("acda", k, name, p) for k in ("fwd", "dx", "datoms") for name, p in ACDA_SHAPES.items()])


def test_every_cuda_kernel_is_covered():
    import schedules
    from dynfilter_tvm import registry

    with_cuda = {(op, k) for op, k in registry.kernels() if (op, k, "cuda") in schedules._SCHEDULES}
    assert with_cuda == {(op, k) for op, k, _, _ in CASES}


@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
@pytest.mark.parametrize("op,kernel,shape,params", CASES, ids=[f"{o}.{k}-{s}" for o, k, s, _ in CASES])
def test_default_schedule(op, kernel, shape, params, dtype, way):
    emulate.check(Workload.make(op, kernel, params, dtype), way)


# Every record of every shipped CUDA tuning log (tuning_logs/<name>/ with a cuda target). None is
# shipped yet: then this is one passing case, "no-shipped-cuda-tuning-log", that checks so.
TUNED = emulate.shipped_cuda_records()


@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("record", TUNED or [None],
                         ids=[f"{n}-{w.op}.{w.kernel}-{r}" for n, w, r, _ in TUNED] or ["no-shipped-cuda-tuning-log"])
def test_shipped_tuning_records(record, way):
    if record is None:
        from dynfilter_tvm import tuning_log

        root = tuning_log.default_root()
        kinds = [tuning_log.TuningLog.load(p).target.get("kind") for p in root.iterdir()
                 if (p / tuning_log.MANIFEST).is_file()]
        assert "cuda" not in kinds
        return
    _, workload, _, apply = record
    emulate.check(workload, way, apply())


# -- negative controls: each mutation must make the check fail --------------------------------
def _fails(workload, way, mod=None, mutate=None, match=""):
    with pytest.raises(emulate.CheckFailed, match=match):
        emulate.check(workload, way, mod, mutate=mutate)


BARRIER = "barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);"


def _drop_barrier(index):
    def mutate(low):
        spans = [m.span() for m in re.finditer(re.escape(BARRIER), low.source)]
        start, end = spans[index]
        low.source = low.source[:start] + low.source[end:]
    return mutate


@pytest.mark.parametrize("op,kernel,params,index", [
    ("ddf", "ds", DDF_SHAPES["s3-cg32-k7"], 1),  # between the stores and the shared-memory sum
    # between building the atoms and reading them. PoCL runs a group's work-items one after
    # another, so a dropped barrier shows only where a reader runs before the writer of what it
    # reads, and not before a work-group-uniform loop (PoCL's implicit barrier at its head, seen
    # with the k = 7 tap rows): ACDA_SHAPES["k1"] has both
    ("acda", "fwd", ACDA_SHAPES["k1"], 0),
    ("acda", "dx", ACDA_SHAPES["k1"], 0),
    ("ddf", "fwd", DDF_SHAPES["tiles"], 1),  # between staging a channel's tile and reading it
    ("ddf", "dx", DDF_SHAPES["tiles"], 1),
], ids=["ddf.ds", "acda.fwd", "acda.dx", "ddf.fwd", "ddf.dx"])
def test_control_dropped_barrier(op, kernel, params, index):
    _fails(Workload.make(op, kernel, params, "float32"), "cuda", mutate=_drop_barrier(index), match="NaN")


def test_control_wrong_shuffle_lane():
    def mutate(low):  # the first shuffle-down reads one lane further than it should
        low.source, n = re.subn(r"(tvm_shfl_down_sync\([^;]*?), (\d+), 32\)",
                                lambda m: f"{m[1]}, {int(m[2]) + 1}, 32)", low.source, count=1)
        assert n == 1
    _fails(Workload.make("ddf", "dc", DDF_SHAPES["s2-d2-add"], "float32"), "cuda", mutate=mutate,
           match="relative error")


@pytest.mark.parametrize("way", emulate.WAYS)
def test_control_grid_one_block_short(way):
    def mutate(low):
        ln = low.launches[-1]
        assert ln.grid[0] > 1
        ln.grid = (ln.grid[0] - 1, *ln.grid[1:])
    _fails(Workload.make("ddf", "fwd", DDF_SHAPES["odd-heads"], "float32"), way, mutate=mutate, match="NaN")


@pytest.mark.parametrize("way", emulate.WAYS)
def test_control_grid_one_block_short_acda_datoms(way):
    def mutate(low):
        ln = low.launches[-1]
        assert ln.grid[0] > 1
        ln.grid = (ln.grid[0] - 1, *ln.grid[1:])
    _fails(Workload.make("acda", "datoms", ACDA_SHAPES["k7-tiles"], "float32"), way, mutate=mutate, match="NaN")


def test_control_write_past_the_end():
    def mutate(low):
        low.source, n = re.subn(r"\bout_ptr\[", "out_ptr[1 + ", low.source)
        assert n
    _fails(Workload.make("ddf", "fwd", DDF_SHAPES["odd-heads"], "float32"), "opencl", mutate=mutate,
           match="guard zone of 'out'")


def _shifted_tap_fwd(wl):
    """The DDF forward with its taps read one pixel to the right, under the default CUDA schedule."""
    import tvm.s_tir as s_tir
    from tvm import te

    import schedules
    from dynfilter_tvm.ops import ddf as ops
    from dynfilter_tvm.ops.common import cast_out, zero_pad
    from dynfilter_tvm.target import cuda_target

    B, C, H, W, G, k, s, d = (wl.p[n] for n in "B C H W G k s d".split())
    X, S, Cf, dO = ops._inputs(B, C, H, W, G, k, s, wl.dtype)
    Xp = zero_pad(X, (k - 1) // 2 * d, "Xpad")
    acc = ops._tap_sum(dO.shape, k, lambda b, g, c, y, x, u, v: (
        Xp[b, g, c, y * s + u * d, x * s + v * d + 1] * S[b, g, u, v, y, x] * Cf[b, g, c, u, v]))
    sch = s_tir.Schedule(te.create_prim_func([X, S, Cf, cast_out(acc, wl.dtype)]))
    schedules.lookup("ddf", "fwd", "cuda")(sch, wl, cuda_target("sm_90"))
    return sch.mod


@pytest.mark.parametrize("way", emulate.WAYS)
def test_control_shifted_tap(way):
    """Caught either as wrong values, or (the tiled schedule stages only the true taps' halo in
    shared memory, which the check poisons) as NaN from a read past the staged tile."""
    wl = Workload.make("ddf", "fwd", DDF_SHAPES["odd-heads"], "float32")
    _fails(wl, way, _shifted_tap_fwd(wl), match="relative error|output elements are NaN")
