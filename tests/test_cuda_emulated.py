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

Half types: PoCL has neither float16 nor bfloat16, so the tensor-core pac.conv in those types
runs the CUDA way on 16-bit words with bit-exact conversions (emulate's half mode, its helpers
checked against numpy bit for bit); the other kernels' half builds are only compiled
(tests/test_cuda_build.py). Limits: PoCL runs a group's work-items one after another between
barriers, so races that need truly concurrent warps stay invisible (a missing barrier is
caught when the data it guarded is read); the CUDA way also refuses static shared memory over
48 KiB per block, as nvcc does. Skipped, with the reason, where PoCL cannot load.
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
    # odd sizes, heads; dc: 11 lanes along x (a partial warp), 4 channels per block
    "odd-heads": _ddf(2, 8, 9, 11, 2, 3, 1, 1, "mul"),
    # stride 2, dilation 2, k = 5, 'add' (ds, dc: no C / S stage)
    "s2-d2-add": _ddf(2, 6, 13, 7, 2, 5, 2, 2, "add"),
    # C/G = 32, stride 3, k = 7 (the largest unrolled: ds keeps 49 tap sums per thread)
    "s3-cg32-k7": _ddf(1, 64, 5, 7, 2, 7, 3, 1, "mul"),
    # dc: Wo = 64, two columns per lane
    "wo64": _ddf(1, 2, 3, 64, 1, 3, 1, 1, "add"),
    # k = 9: taps stay loops, ds and dc per output; Wo = 300 > 256 threads: dc loops over x
    "k9-wide-rows": _ddf(1, 2, 2, 600, 1, 9, 2, 1, "add"),
    # Wo = 1: dc runs one thread per output, many outputs per block
    "one-column": _ddf(3, 4, 6, 1, 2, 3, 2, 1, "mul"),
    # a one-pixel output (every axis 1)
    "one-pixel": _ddf(1, 1, 1, 1, 1, 1, 1, 1, "mul"),
    # fwd, dx, ds: 16 x 16 pixel tiles with tail tiles, two 32-channel chunks per head (fwd, dx);
    # dc: 16 channels per block, 8-row X tiles with a tail tile, a tail column (Wo = 41)
    "tiles": _ddf(1, 128, 37, 41, 2, 3, 1, 1, "mul"),
    # dx at stride 2: tiles of the phase grid (30 x 36 for 29 x 35), the taps per output phase
    "s2-tiles": _ddf(1, 64, 29, 35, 2, 3, 2, 1, "mul"),
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
             "unit": dict(PAC_UNIT, O=1, a=0),
             # tiled GEMM: two output-channel tiles (64 + a tail of 6), 3-channel chunks (C = 6, k = 3),
             # a row of 32 threads with a tail along x (Wo = 37) and 4-row register tiles (Ho = 11)
             "tiles-o70": dict(_geo(1, 6, 11, 37, 11, 37, 3, 1, 1, 1, 1), O=70, a=0),
             # 2-channel chunks (C = 4, k = 3): the prologue's tap rows serial too (pac_cuda._xk_serial)
             "tiles-cc2": dict(_geo(2, 4, 9, 35, 9, 35, 3, 1, 1, 1, 1), O=12, a=0),
             "tiles-cc2-adjoint": dict(_geo(1, 4, 6, 19, 11, 37, 3, 1, 2, 1, 1), O=70, a=1),
             # the zero-inserted adjoint over 256-thread blocks of whole 4 x 8 register tiles,
             # one-channel chunks (k5): K staged once per block with its zero insertion, and
             # __launch_bounds__(256, 4) (schedules.pac_cuda._bounded); tail rows and columns
             "tiles-adjoint-o64": dict(_geo(1, 2, 5, 17, 9, 33, 5, 1, 2, 2, 1), O=64, a=1),
             # k = 13: the chunk fits shared memory in float32 only; float64 takes a thread per output
             "k13-fallback": dict(_geo(1, 2, 5, 40, 5, 40, 13, 1, 1, 6, 1), O=3, a=0)},
    "pool": {"plain-g1": dict(PAC_PLAIN, G=1, a=0), "plain-gc-adjoint": dict(PAC_PLAIN, G=5, a=1),
             "s2-d2": dict(PAC_S2D2, G=1, a=0), "unit": dict(PAC_UNIT, G=1, a=0)},
    "conv_dk": {"plain": dict(PAC_PLAIN, O=12), "zero-ins": dict(PAC_ZERO_INSERTED, O=5), "unit": dict(PAC_UNIT, O=1),
                # tiled: 2 x 32 threads per tap row, 2-row register tiles, tail tiles along y (11 =
                # 4 + 4 + 3) and x (37 = 32 + 5), stride 2 and dilation 2 on the source window
                "tiles": dict(_geo(1, 3, 21, 73, 11, 37, 3, 2, 1, 1, 2), O=7),
                # k = 9: tap loops not unrolled, a thread per output
                "k9-per-output": dict(_geo(1, 2, 5, 6, 5, 6, 9, 1, 1, 4, 1), O=3),
                # one output channel: G's register tile without a reduction loop
                "tiles-o1": dict(_geo(1, 2, 7, 9, 7, 9, 3, 1, 1, 1, 1), O=1)},
    "conv_dw": {"plain": dict(PAC_PLAIN, O=12), "s2-d2": dict(PAC_S2D2, O=5), "zero-ins": dict(PAC_ZERO_INSERTED, O=5),
                # tiled: 2 output-channel tiles (64 + a tail of 6), one input-channel tile of 10 x 4
                # = 40 > 37 (a tail), a 32-pixel chunk and a tail of 5, 12 parts of one row
                "tiles": dict(_geo(2, 37, 6, 37, 6, 37, 3, 1, 1, 1, 1), O=70),
                # few channels: the register tile halved to 1 x 2 (16 x 12 threads, C = 23 a tail)
                "halved-tiles": dict(_geo(1, 23, 5, 9, 5, 9, 3, 1, 1, 1, 1), O=20),
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

    schedules.load_all()  # run alone, nothing else has imported the schedule modules yet
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


@pytest.mark.parametrize("op,kernel,params,index,match", [
    ("ddf", "ds", DDF_SHAPES["tiles"], 1, "NaN"),  # between staging a channel's X tile and reading it
    # k = 9 (taps not unrolled): the channel-slice ds; between the stores and the shared-memory sum
    ("ddf", "ds", _ddf(1, 32, 3, 5, 1, 9, 1, 1, "mul"), 1, "NaN"),
    ("ddf", "dc", DDF_SHAPES["tiles"], 2, "NaN"),  # between staging a row of S and reading it
    # between staging the input row (and storing the atoms) and reading them. PoCL runs a
    # group's work-items one after another, so a dropped barrier shows only where a reader runs
    # before the writer of what it reads, and not before a work-group-uniform loop (PoCL's
    # implicit barrier at its head, seen with the k = 7 tap rows): ACDA_SHAPES["k1"] has both.
    # (Barriers 0-2 guard the atoms build's stages of A and P, inside its loop over the bases,
    # and the reuse of that memory for the row: invisible on PoCL.) The row's shared memory
    # holds the staged coefficients then, not NaN: a wrong result
    ("acda", "fwd", ACDA_SHAPES["k1"], 3, "relative error"),
    ("ddf", "fwd", DDF_SHAPES["tiles"], 1, "NaN"),  # between staging a channel's tile and reading it
    ("ddf", "dx", DDF_SHAPES["tiles"], 1, "NaN"),
    ("ddf", "dx", DDF_SHAPES["s2-tiles"], 1, "NaN"),
], ids=["ddf.ds", "ddf.ds-slices", "ddf.dc-s-row", "acda.fwd", "ddf.fwd", "ddf.dx", "ddf.dx-s2"])
def test_control_dropped_barrier(op, kernel, params, index, match):
    _fails(Workload.make(op, kernel, params, "float32"), "cuda", mutate=_drop_barrier(index), match=match)


@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("loop,shape", [(r"ax1_ax2_ax3_ax4_fused_0", "tiles-o70"), (r"ax1_ax2_ax3_fused_0", "tiles-o70"),
                                        (r"ax2_ax3_ax4_fused_0", "tiles-cc2")], ids=["xk", "K", "xk-tap-row"])
def test_control_short_staging(way, loop, shape):
    """The tiled pac.conv with its modulated-taps prologue (per channel of the chunk; in
    2-channel chunks per channel and tap row, ``pac_cuda._xk_serial``) or its
    copy of the tile's K (per tap row, once per block) one round of the block short: part of
    the chunk's B operand stays unbuilt, or is built from unwritten K (poisoned shared memory),
    and reaches outputs as NaN. (Dropping its barriers is no control on PoCL: its work-item
    loops around the barrier-containing chunk loop keep the staging ahead of the reads.)"""
    def mutate(low):
        low.source, n = re.subn(rf"\b({loop} < )(\d+)", lambda m: f"{m[1]}{int(m[2]) - 1}", low.source, count=1)
        assert n == 1
    _fails(Workload.make("pac", "conv", PAC_SHAPES["conv"][shape], "float32"), way, mutate=mutate, match="NaN")


@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("old,new,match", [
    # the chunk's dO window copy (a plane per atom; one channel per chunk) without the last
    # atom's plane: poisoned, or the previous chunk's
    (r"\bax0_1 < 6;", "ax0_1 < 5;", "NaN|relative error"),
    # the staged coefficients A of a stage of bases without the last atom's
    (r"\bax0 = 0; ax0 < 6;", "ax0 = 0; ax0 < 5;", "NaN|relative error"),
    # the block's sum of the 42 partials (6 atoms x 7 tap rows) without the first atom's
    (r"\bax0_3 = 0; ax0_3 < 42;", "ax0_3 = 7; ax0_3 < 42;", "relative error")],
    ids=["dO-window", "coefficients", "partial-sums"])
def test_control_acda_dx_short(way, old, new, match):
    """acda.dx (atoms in registers, the sum split over groups of atoms and tap rows; at
    k7-tiles in float32 runs of 4 pixels, a group per (atom, tap row), a channel per chunk,
    blocks of 16 pixels x the 3 input rows, asserted below). Its
    dropped barriers are no control on PoCL: the loops of each next phase are work-group
    uniform, and PoCL's implicit barrier at their head keeps the writers ahead."""
    def mutate(low):
        low.source, n = re.subn(old, new, low.source)
        assert n == 1
    from schedules.acda_cuda import dx_tile

    wl = Workload.make("acda", "dx", ACDA_SHAPES["k7-tiles"], "float32")
    assert (dx_tile(wl)["tile"], dx_tile(wl)["rows"]) == (16, 3)
    _fails(wl, way, mutate=mutate, match=match)


# acda.dx blocks over several input rows (schedules.acda_cuda._dx_rows; float32; float64 keeps a
# row per block): the rows' tail blocks (H not a multiple of the block's rows) and the row's
# tail tile, with stride 2, dilation 2, both, q = 3, k = 5, batch 2, and without runs (q = 1)
DX_ROWS_SHAPES = {
    # blocks of 32 warps (DX_ROWS_WHOLE_SM): runs of 4 here, 16 px x 6 rows, 1,008 threads:
    # tails of 5 rows, 5 px
    "rows-s2-tails": _acda(1, 3, 11, 37, 6, 6, 7, 2, 1, 3),
    # runs of 5 (DX_RUN_WHOLE_SM), 30 px x 4 rows: a tail tile of 27 (a partial run), of 3 rows
    "rows-whole-q5": _acda(1, 2, 7, 57, 6, 6, 7, 1, 1, 3),
    "rows-d2": _acda(1, 3, 10, 45, 6, 6, 7, 1, 2, 6),  # 8 x 5, a 5-pixel tail tile
    "rows-n2": _acda(2, 3, 9, 42, 6, 6, 7, 1, 1, 3),  # 4 x 9: one run per row
    # 32 warps, runs of 5: 30 x 4, 2 channels a chunk (588 threads: 6 x 7, runs of 3)
    "rows-s2-d2-q3": _acda(1, 2, 13, 30, 6, 6, 7, 2, 2, 5),
    "rows-k5": _acda(1, 3, 17, 33, 8, 4, 5, 1, 1, 2),  # 32 warps: 20 x 5, tails of 2 rows and 13 px
    # rows too narrow for runs (q = 1, 3 atoms per thread): 7 px x 5 rows, 5 channels a chunk
    "rows-narrow-s2": _acda(1, 5, 15, 14, 6, 18, 7, 2, 1, 3),
    "rows-narrow-d2": _acda(1, 4, 9, 7, 6, 6, 7, 1, 2, 6),  # 7 x 5: a tail of 4 rows
    "rows-narrow-n2": _acda(2, 3, 13, 14, 6, 6, 7, 1, 1, 3),  # 7 x 5: tails of 3 rows
}


@pytest.mark.parametrize("way", emulate.WAYS)
def test_control_acda_dx_rows_window_short(way):
    """acda.dx over several input rows per block (``schedules.acda_cuda._dx_rows``; at
    rows-s2-tails 16 pixels x 6 input rows, 1,008 threads, a window plane of 6 + 6 grid rows,
    one copy round) with its dO plane copy one grid row short: the window's last
    row, read only by the block's last input row (its tap row 0; at stride 2 a real dO row in
    the first block), keeps the coefficients A staged there before or poison."""
    from schedules.acda_cuda import dx_tile

    wl = Workload.make("acda", "dx", DX_ROWS_SHAPES["rows-s2-tails"], "float32")
    t = dx_tile(wl)
    assert (t["tile"], t["rows"], t["q"]) == (16, 6, 4)
    window = t["rows"] + (wl.p["k"] - 1) * wl.p["d"]

    def mutate(low):
        low.source, n = re.subn(r"< (\d+)(\)+ \{\s+float condval_2;)",
                                lambda m: f"< {int(m[1]) - int(m[1]) // window}{m[2]}", low.source)
        assert n == 1
    _fails(wl, way, mutate=mutate, match="NaN|relative error")


@pytest.mark.parametrize("way", emulate.WAYS)
def test_control_short_dw_staging(way):
    """The tiled pac.conv_dw with its dO chunk copy (64 channels x 32 pixels over 160 threads,
    13 rounds) one round short: the chunk's last pixels keep poisoned or stale values."""
    def mutate(low):
        low.source, n = re.subn(r"\bax0_ax1_fused_0 < 13;", "ax0_ax1_fused_0 < 12;", low.source)
        assert n == 1
    _fails(Workload.make("pac", "conv_dw", PAC_SHAPES["conv_dw"]["tiles"], "float32"), way, mutate=mutate,
           match="NaN|relative error")


@pytest.mark.parametrize("way", emulate.WAYS)
def test_control_short_dk_staging(way):
    """The tiled pac.conv_dk with its dO tile copy one round of the block short: part of the
    tile stays poisoned in shared memory and reaches outputs as NaN."""
    def mutate(low):
        low.source, n = re.subn(r"(ax0_ax1_ax2_fused_0 < )(\d+)", lambda m: f"{m[1]}{int(m[2]) - 1}",
                                low.source, count=1)
        assert n == 1
    _fails(Workload.make("pac", "conv_dk", PAC_SHAPES["conv_dk"]["tiles"], "float32"), way, mutate=mutate,
           match="NaN")


@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
def test_conv_dk_sm80_one_row_tiles(dtype, way):
    """The tiled pac.conv_dk as built for sm_80: float32 takes 1-row register tiles
    (DK_REG_Y_SMALL: 2 x 32 threads per tap row, 2-row pixel tiles, tails along y and x) where
    sm_90 takes 2 rows; float64 keeps its tile. Blocks in reverse order."""
    from schedules.pac_cuda import dk_tile
    from dynfilter_tvm.target import cuda_target

    wl = Workload.make("pac", "conv_dk", PAC_SHAPES["conv_dk"]["tiles"], dtype)
    if dtype == "float32":
        assert (dk_tile(wl)["yi"], dk_tile(wl, cuda_target("sm_80"))) == (2, dict(ty=2, tx=32, yt=2, yi=1))
    emulate.check(wl, way, arch="sm_80", mutate=_reverse_blocks)


@pytest.mark.parametrize("dtype", emulate.HALF_DTYPES)
def test_conv_dk_half_one_row_tiles(dtype):
    """The tiled pac.conv_dk in the half types (1-row register tiles on every arch), executed
    with 16-bit words."""
    from schedules.pac_cuda import dk_tile

    wl = Workload.make("pac", "conv_dk", PAC_SHAPES["conv_dk"]["tiles"], dtype)
    assert dk_tile(wl)["yi"] == 1
    low = emulate.prepare(wl, "cuda")
    assert "tvm_mma" not in low.source  # C = 3, O = 7: no tensor-core tiles
    assert emulate.check(wl, "cuda", lowered=low) <= emulate.TOLERANCE[dtype]


# pac.conv on TF32 tensor cores (the tf32 workload flag; mma.sync + ldmatrix, emulated warp-
# cooperatively from the PTX fragment layouts). The CUDA way only: TVM's OpenCL lowering has no
# tensor-core intrinsics. Tolerance: emulate.TF32_TOLERANCE (10-bit operand mantissas).
TF32_CASES = {
    # 2 x 4 warps (32 channels x 64 pixels), two 8-channel chunks, 3 x 3 taps, padding
    "plain": dict(_geo(1, 16, 3, 64, 3, 64, 3, 1, 1, 1, 1), O=32, a=0, tf32=1),
    # 2 x 2 warps (Wo = 32), k = 1
    "wo32": dict(_geo(1, 8, 2, 32, 2, 32, 1, 1, 1, 0, 1), O=32, a=0, tf32=1),
    # 1 x 4 warps of two 16-pixel tiles (a 128-pixel row, the benchmark's block width)
    "row128": dict(_geo(1, 8, 2, 128, 2, 128, 3, 1, 1, 1, 1), O=16, a=0, tf32=1),
    # 4 x 1 warps (O = 64, Wo = 16), stride 2 and dilation 2, batch 2
    "s2-d2-o64": dict(_geo(2, 8, 9, 31, 3, 16, 3, 2, 1, 2, 2), O=64, a=0, tf32=1),
    # the input gradient of a stride-2 conv: zero-inserted source, mirrored taps, Kz
    "zero-ins-adjoint": dict(_geo(1, 8, 5, 8, 10, 16, 3, 1, 2, 1, 1), O=16, a=1, tf32=1),
    # 10 channel chunks: unrolled in two groups of 5 (the chunk loop kept, a group unrolled)
    "c80-chunk-groups": dict(_geo(1, 80, 2, 16, 2, 16, 3, 1, 1, 1, 1), O=16, a=0, tf32=1),
    # the wide tile (O = 64, Wo = 128: 4 x 2 x 4 warps of four 16-pixel tiles, 4 rows), its
    # stages (52,608 B) in dynamic shared memory; the input gradient (Kz), two chunks
    "wide-adjoint": dict(_geo(1, 16, 4, 128, 4, 128, 3, 1, 1, 1, 1), O=64, a=1, tf32=1),
}


@pytest.mark.parametrize("dtype", emulate.DTYPES)
@pytest.mark.parametrize("name", TF32_CASES)
def test_tensor_core_tf32(name, dtype):
    """float32: the mma kernel within TF32_TOLERANCE (and above float32's own: the check would
    pass a SIMT kernel too, so the source must hold the emulated mma); float64 ignores the flag
    and keeps its exact schedule."""
    wl = Workload.make("pac", "conv", TF32_CASES[name], dtype)
    low = emulate.prepare(wl, "cuda")
    assert ("tvm_mma_m16n8k8_tf32(" in low.source) == (dtype == "float32")
    err = emulate.check(wl, "cuda", lowered=low)
    if dtype == "float32":
        assert 1e-5 < err <= emulate.TF32_TOLERANCE  # TF32 rounding is visible, and bounded


@pytest.mark.parametrize("dtype", ("float32",) + emulate.HALF_DTYPES)
def test_control_short_window(dtype):
    """The tensor-core conv with the first round of its source-window copy (one grid row of a
    chunk's channels, the only bounds checks; rounds and chunks unrolled) dropped: xk is then
    built from part of a window left unstaged (poisoned shared memory)."""
    def mutate(low):
        low.source, n = re.subn(r"Sz_shared_ptr\[[^\]]*\] = condval(_\d+)?;", "", low.source, count=1)
        assert n == 1
    cases = TF32_CASES if dtype == "float32" else HALF_CASES
    _fails(Workload.make("pac", "conv", cases["plain"], dtype), "cuda", mutate=mutate, match="NaN|relative error")


@pytest.mark.parametrize("dtype", ("float32", "float16"))
def test_tensor_core_wide_tile_dynamic_shared(dtype):
    """The wide tile runs from dynamic shared memory: one merged byte array, a __local kernel
    argument sized by the launch's dynamic-shared-memory parameter (the planned bytes), and
    poisoned: with the first round of its window copy dropped, xk is built from NaN."""
    from schedules.pac_cuda import mma_shared_bytes, mma_tile

    case = TF32_CASES["wide-adjoint"] if dtype == "float32" else HALF_CASES["wide"]
    wl = Workload.make("pac", "conv", case, dtype)
    assert mma_tile(wl) == (4, 2, 4, 4, True)
    low = emulate.prepare(wl, "cuda")
    (ln,) = low.launches
    assert ln.dyn_shared == mma_shared_bytes(wl, *mma_tile(wl)) > 48 * 1024
    assert "__kernel void pac_conv_kernel(__local uchar* buf_dyn_shmem_ptr, const uint tvm_dyn_shared_bytes" in low.source
    assert "__shared__" not in low.source and "Sz_shared" not in low.source

    def mutate(lw):
        lw.source, n = re.subn(r"\(\(__local (?:float|ushort)\*\)buf_dyn_shmem_ptr\)\[(?!" + K_COPY + r")[^;]*\] = "
                               r"condval(_\d+)?;", "", lw.source, count=1)  # not the K copy (the adjoint's Kz)
        assert n == 1
    assert emulate.check(wl, "cuda", lowered=low) <= (emulate.TF32_TOLERANCE if dtype == "float32"
                                                       else emulate.TOLERANCE[dtype])
    with pytest.raises(emulate.CheckFailed, match="NaN"):
        emulate.check(wl, "cuda", lowered=low, mutate=mutate)


K_COPY = r"\(+ax0_ax1_ax2_ax3_fused_0 \* 1024"  # the index of the wide tile's K copy (its loop over taps and pixels)


@pytest.mark.parametrize("dtype,name", [("float32", "wide-adjoint"), ("float16", "wide-adjoint"), ("bfloat16", "wide")])
def test_tensor_core_wide_tile_stages_k(dtype, name):
    """The wide tile stages the block's K once for all channel chunks (``mma_tile``'s ``ks``;
    the adjoint's Kz with its padding and zero insertion decided in that copy): within
    tolerance, and with that copy's store dropped xk is built from poisoned shared memory."""
    from dynfilter_tvm.target import cuda_target
    from schedules.pac_cuda import mma_tile

    wl = Workload.make("pac", "conv", (TF32_CASES if dtype == "float32" else HALF_CASES)[name], dtype)
    assert mma_tile(wl, cuda_target("sm_90")) == (4, 2, 4, 4, True)
    low = emulate.prepare(wl, "cuda")
    assert emulate.check(wl, "cuda", lowered=low) <= (emulate.TF32_TOLERANCE if dtype == "float32"
                                                       else emulate.TOLERANCE[dtype])

    def mutate(lw):
        lw.source, n = re.subn(r"\(\(__local (?:float|ushort)\*\)buf_dyn_shmem_ptr\)\[" + K_COPY
                               + r"[^;]*\] = (?:condval(_\d+)?|K_ptr\[[^;]*\]);", "", lw.source)
        assert n == 1
    with pytest.raises(emulate.CheckFailed, match="NaN"):
        emulate.check(wl, "cuda", lowered=low, mutate=mutate)


def test_dynamic_shared_memory_limit():
    """Launches over the arch's opt-in maximum of dynamic shared memory per block are refused
    (227 KB on sm_90, 163 KB on sm_80; 48 KB where the arch is not listed)."""
    ok = emulate.Launch("k", [], (1, 1, 1), (32, 1, 1), [], 163 * 1024)
    emulate.check_dyn_shared([ok], "sm_80")
    emulate.check_dyn_shared([ok], "sm_90")
    with pytest.raises(emulate.CheckFailed, match="dynamic shared memory"):
        emulate.check_dyn_shared([ok], "sm_75")
    with pytest.raises(emulate.CheckFailed, match="dynamic shared memory"):
        emulate.check_dyn_shared([emulate.Launch("k", [], (1, 1, 1), (32, 1, 1), [], 163 * 1024 + 1)], "sm_80")


def test_tensor_core_one_tile_per_warp(monkeypatch):
    """Warps of one 16-pixel tile (MMA_TILES_X = 1: 1 x 8 warps over a 128-pixel row), a
    layout the shipped constants (two tiles per warp sharing their A fragment, row128 above)
    leave unused at wide rows."""
    import schedules.pac_cuda as pac_cuda

    monkeypatch.setattr(pac_cuda, "MMA_TILES_X", 1)
    monkeypatch.setattr(pac_cuda, "MMA_WARPS_X", 8)
    wl = Workload.make("pac", "conv", TF32_CASES["row128"], "float32")
    assert pac_cuda.mma_tile(wl) == (1, 8, 1, 2, False)
    assert 1e-5 < emulate.check(wl, "cuda") <= emulate.TF32_TOLERANCE


# pac.conv in float16 / bfloat16: always on tensor cores (mma.sync m16n8k16, f32 accumulators;
# xk staged in the half type), 16-channel chunks. Executed with 16-bit words on PoCL (the
# emulator's half mode); tolerance emulate.TOLERANCE[dtype] (xk and the output rounded to the
# half type).
HALF_CASES = {
    # 2 x 4 warps, one 16-channel chunk, 3 x 3 taps, padding
    "plain": dict(_geo(1, 16, 3, 64, 3, 64, 3, 1, 1, 1, 1), O=32, a=0),
    # 2 x 2 warps (Wo = 32), k = 1, two chunks
    "wo32-k1": dict(_geo(1, 32, 2, 32, 2, 32, 1, 1, 1, 0, 1), O=32, a=0),
    # 1 x 4 warps of two 16-pixel tiles (a 128-pixel row)
    "row128": dict(_geo(1, 16, 2, 128, 2, 128, 3, 1, 1, 1, 1), O=16, a=0),
    # 4 x 1 warps (O = 64, Wo = 16), stride 2 and dilation 2, batch 2
    "s2-d2-o64": dict(_geo(2, 16, 9, 31, 3, 16, 3, 2, 1, 2, 2), O=64, a=0),
    # the input gradient of a stride-2 conv: zero-inserted source, mirrored taps, Kz
    "zero-ins-adjoint": dict(_geo(1, 16, 5, 8, 10, 16, 3, 1, 2, 1, 1), O=16, a=1),
    # the wide tile (4 rows of 128 pixels x 64 channels), stages in dynamic shared memory
    "wide": dict(_geo(1, 16, 4, 128, 4, 128, 3, 1, 1, 1, 1), O=64, a=0),
    # its input gradient: Kz staged once per block (its padding decided in that copy)
    "wide-adjoint": dict(_geo(1, 16, 4, 128, 4, 128, 3, 1, 1, 1, 1), O=64, a=1),
}


@pytest.mark.parametrize("dtype", emulate.HALF_DTYPES)
@pytest.mark.parametrize("name", HALF_CASES)
def test_tensor_core_half(name, dtype):
    err = _half_mma_error(Workload.make("pac", "conv", HALF_CASES[name], dtype))
    assert 1e-5 < err <= emulate.TOLERANCE[dtype]


def _half_mma_error(wl) -> float:
    """The error of ``wl``'s CUDA build on PoCL, once its device code is checked to use the
    m16n8k16 mma of its half type."""
    low = emulate.prepare(wl, "cuda")
    assert f"tvm_mma_m16n8k16(tvm_mma_x, {int(wl.dtype == 'bfloat16')}," in low.source
    return emulate.check(wl, "cuda", lowered=low)


@pytest.mark.parametrize("dtype", emulate.HALF_DTYPES)
@pytest.mark.parametrize("params", [
    dict(_geo(1, 8, 5, 19, 5, 19, 3, 1, 1, 1, 1), O=12, a=0),  # C % 16, O % 16, Wo % 16: tiled SIMT
    dict(_geo(1, 3, 5, 7, 10, 14, 3, 1, 2, 1, 1), O=5, a=1),  # the zero-inserted adjoint
], ids=["tiled", "zero-ins-adjoint"])
def test_half_conv_without_tensor_cores(params, dtype):
    """Where the tensor cores do not apply the half types keep the SIMT schedule, its staged
    xk now 16-bit (the compute rounds K*X to the half type): executed the same way."""
    wl = Workload.make("pac", "conv", params, dtype)
    low = emulate.prepare(wl, "cuda")
    assert "tvm_mma" not in low.source
    assert emulate.check(wl, "cuda", lowered=low) <= emulate.TOLERANCE[dtype]


def test_half_conversions_bit_exact():
    """The emulator's float32 <-> float16 / bfloat16 helpers against numpy, bit for bit: round to
    nearest even (ties both ways), subnormals, overflow to infinity, signed zeros, NaN."""
    import numpy as np

    cl, ctx, queue, _ = emulate._device()
    src = emulate._PRELUDE + emulate._HALF + r"""
__kernel void conv(__global const float* x, __global ushort* h, __global ushort* b,
                   __global float* hf, __global float* bf) {
  int i = get_global_id(0);
  h[i] = tvm_f2h(x[i]); b[i] = tvm_f2bf(x[i]); hf[i] = tvm_h2f(h[i]); bf[i] = tvm_bf2f(b[i]);
}"""
    rng = np.random.default_rng(0)
    words = rng.integers(0, 2 ** 32, 1 << 16, dtype=np.uint64).astype(np.uint32)
    ties = (np.arange(1 << 12, dtype=np.uint32) << 13) | 0x1000  # float16 ties at every exponent
    special = np.array([0.0, -0.0, 65504.0, 65519.99, 65520.0, 1e-8, -3e-8, 2.0 ** -24, 2.0 ** -25,
                        3 * 2.0 ** -26, 2.0 ** -14 * (1 - 2.0 ** -11), np.inf, -np.inf, 1 + 2.0 ** -8,
                        1 + 3 * 2.0 ** -8, 3.4e38], np.float32)
    x = np.concatenate([words.view(np.float32), (ties + 0x38000000).view(np.float32),
                        (ties + 0x30000000).view(np.float32), special])
    x = x[np.isfinite(x) | np.isinf(x)]  # NaNs: payloads differ by design; checked below
    out = [np.empty(x.size, t) for t in (np.uint16, np.uint16, np.float32, np.float32)]
    mf = cl.mem_flags
    bufs = [cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=x)] + [cl.Buffer(ctx, mf.WRITE_ONLY, o.nbytes) for o in out]
    cl.Program(ctx, src).build().conv(queue, (x.size,), None, *bufs)
    for o, b in zip(out, bufs[1:]):
        cl.enqueue_copy(queue, o, b)
    with np.errstate(over="ignore"):
        want_h = x.astype(np.float16).view(np.uint16)
    bf_ok = np.abs(x) < 3.3e38  # bfloat16's own overflow (rounding up past its max) aside
    np.testing.assert_array_equal(out[0], want_h)
    np.testing.assert_array_equal(out[1][bf_ok], emulate.from_float32(x[bf_ok], "bfloat16"))
    np.testing.assert_array_equal(out[2], want_h.view(np.float16).astype(np.float32))
    np.testing.assert_array_equal(out[3], emulate.to_float64(out[1], "bfloat16").astype(np.float32))


def _replace(old, new):
    def mutate(low):
        assert low.source.count(old) == 1, old
        low.source = low.source.replace(old, new)
    return mutate


def _mma_layout(macro, new):
    def mutate(low):
        low.source, n = re.subn(r"#define " + macro + r"\(.*", lambda m: f"#define {macro}{new}", low.source, count=1)
        assert n == 1
    return mutate


@pytest.mark.parametrize("macro,new", [
    ("TVM_MMA_A_LANE", "(row, k) (4 * ((row) % 8) + ((k) + 1) % 4)"),  # A fragment: the neighbour's column
    ("TVM_LDM_SRC", "(m, lane) ((m) * 8 + ((lane) / 4 + 1) % 8)"),  # ldmatrix: the next row
], ids=["mma-a-lane", "ldmatrix-row"])
def test_control_wrong_fragment_layout(macro, new):
    wl = Workload.make("pac", "conv", TF32_CASES["plain"], "float32")
    _fails(wl, "cuda", mutate=_mma_layout(macro, new), match="relative error")


@pytest.mark.parametrize("dtype", emulate.HALF_DTYPES)
@pytest.mark.parametrize("macro,new", [
    ("TVM_MMA16_A_LANE", "(row, k) (4 * ((row) % 8) + ((k) + 2) % 8 / 2)"),  # A: the neighbour's pair
    ("TVM_LDM_SRC", "(m, lane) ((m) * 8 + ((lane) / 4 + 1) % 8)"),  # ldmatrix: the next row
], ids=["mma-a-lane", "ldmatrix-row"])
def test_control_wrong_half_fragment_layout(macro, new, dtype):
    wl = Workload.make("pac", "conv", HALF_CASES["plain"], dtype)
    _fails(wl, "cuda", mutate=_mma_layout(macro, new), match="relative error")


@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
def test_conv_dw_split_k_bands(way, dtype, monkeypatch):
    """pac.conv_dw's split-K with bands of several rows and a shorter last band: 2 images x 2
    bands (5 + 4 of 9 rows); the shipped threshold gives one row per part at the small shapes."""
    import schedules.pac_cuda as pac_cuda

    monkeypatch.setattr(pac_cuda, "SPLIT_K_THREADS", 6000)
    wl = Workload.make("pac", "conv_dw", PAC_SHAPES["conv_dw"]["plain"], dtype)
    assert pac_cuda.dw_rows(wl) == 5
    low = emulate.prepare(wl, way)
    assert len(low.launches) == 2  # partial sums, then their sum
    emulate.check(wl, way, lowered=low)

    def one_part_short(low):  # the second kernel adds all parts but the last
        low.source, n = re.subn(r"(for \(int \w*n_y_0_fused\w* = 0; \w+ < )(\d+)",
                                lambda m: f"{m[1]}{int(m[2]) - 1}", low.source, count=1)
        assert n == 1
    _fails(wl, way, mutate=one_part_short, match="relative error")


def test_control_wrong_shuffle_lane():
    def mutate(low):  # the first shuffle-down reads one lane further than it should
        low.source, n = re.subn(r"(tvm_shfl_down_sync\([^;]*?), (\d+), 32\)",
                                lambda m: f"{m[1]}, {int(m[2]) + 1}, 32)", low.source, count=1)
        assert n == 1
    # k = 9, Wo = 4: the per-output dc (taps not unrolled), its lanes along x summed by shuffles
    _fails(Workload.make("ddf", "dc", _ddf(2, 6, 13, 7, 2, 9, 2, 1, "add"), "float32"), "cuda", mutate=mutate,
           match="relative error")


@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("op,kernel,params", [("ddf", "fwd", DDF_SHAPES["odd-heads"]),
                                              ("acda", "datoms", ACDA_SHAPES["k7-tiles"])],
                         ids=["ddf.fwd", "acda.datoms"])
def test_control_grid_one_block_short(way, op, kernel, params):
    def mutate(low):
        ln = low.launches[-1]
        assert ln.grid[0] > 1
        ln.grid = (ln.grid[0] - 1, *ln.grid[1:])
    _fails(Workload.make(op, kernel, params, "float32"), way, mutate=mutate, match="NaN")


@pytest.mark.parametrize("way", emulate.WAYS)
def test_control_acda_datoms_block_dO_short(way):
    """acda.datoms with every tap row in one block (``schedules.acda_cuda._datoms_block``): its
    copy of the chunk's dO into shared memory one round short leaves part of the stage unset
    (poisoned: NaN, or the last chunk's values), which reaches dD."""
    def mutate(low):
        store = re.search(r"\n\s*dO_shared_ptr\[", low.source).start()  # (not the poisoning loop)
        head = list(re.finditer(r"for \(int (\w+) = 0; \1 < (\d+);", low.source[:store]))[-1]
        assert int(head[2]) > 1
        low.source = (low.source[:head.start()] + f"for (int {head[1]} = 0; {head[1]} < {int(head[2]) - 1};"
                      + low.source[head.end():])
    wl = Workload.make("acda", "datoms", ACDA_SHAPES["k7-tiles"], "float32")
    from schedules.acda_cuda import datoms_block_tile

    assert datoms_block_tile(wl) is not None
    _fails(wl, way, mutate=mutate, match="NaN|relative error")


@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("kernel", ["ds", "dc"])
def test_control_scratch_block_short(kernel, way):
    """The tiled ds's / streaming dc's first kernel one block short: a block leaves its sums in
    the scratch unwritten, which the second kernel's sums must show."""
    def mutate(low):
        assert len(low.launches) == 2 and low.scratch
        ln = low.launches[0]
        ln.grid = (ln.grid[0] - 1, *ln.grid[1:])
    _fails(Workload.make("ddf", kernel, DDF_SHAPES["tiles"], "float32"), way, mutate=mutate, match="NaN")


@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
def test_ddf_grads_without_block_split(monkeypatch, dtype, way):
    """The tiled ds and the streaming dc as big shapes get them: one kernel, the head's
    channels in one block (ds), all of a row's column tiles in one block (dc: its column loop
    and the tail tile). At the test shapes MIN_BLOCKS otherwise splits both over blocks."""
    import schedules.ddf_cuda as ddf_cuda
    from dynfilter_tvm.ops.ddf import out_size

    monkeypatch.setattr(ddf_cuda, "MIN_BLOCKS", 1)
    for name in ("tiles", "wo64", "odd-heads"):
        p = DDF_SHAPES[name]
        ds = Workload.make("ddf", "ds", p, dtype)
        # (wo64's heads of 2 channels get a block per channel all the same)
        assert len(emulate.prepare(ds, way).launches) == (2 if name == "wo64" else 1)
        emulate.check(ds, way)
        dc = Workload.make("ddf", "dc", p, dtype)
        cc, _, _ = ddf_cuda._dc_layout(dc, out_size(p["H"], p["s"]), out_size(p["W"], p["s"]))
        assert emulate.prepare(dc, way).launches[0].grid[0] == p["B"] * p["C"] // cc  # a block per chunk
        emulate.check(dc, way)


@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("min_blocks", [1, 264])
def test_ddf_ds_two_channel_heads(monkeypatch, min_blocks, way):
    """Heads of 2 channels with partial 16 x 16 tiles: with a channel loop of exactly 2 per
    block PoCL's compilation left the partial tiles' pixels NaN (a trip count hidden from it
    passes), so the tiled ds gives such heads a block per channel whatever MIN_BLOCKS says
    (see _ds_channel_blocks)."""
    import schedules.ddf_cuda as ddf_cuda

    monkeypatch.setattr(ddf_cuda, "MIN_BLOCKS", min_blocks)
    for p in (_ddf(1, 2, 18, 18, 1, 3, 1, 1, "mul"), _ddf(2, 4, 20, 34, 2, 1, 1, 1, "add")):
        emulate.check(Workload.make("ddf", "ds", p, "float32"), way)


def test_control_write_past_the_end():
    def mutate(low):
        low.source, n = re.subn(r"\bout_ptr\[", "out_ptr[1 + ", low.source)
        assert n
    _fails(Workload.make("ddf", "fwd", DDF_SHAPES["odd-heads"], "float32"), "opencl", mutate=mutate,
           match="guard zone of 'out'")



@pytest.mark.parametrize("way", emulate.WAYS)
def test_control_input_guard_carried_past_the_end(way):
    """A store past the output's end of a value read past an input's end: x86 carries the input
    guard's NaN (0xFF..) through the arithmetic payload and all, so the output's guard must
    differ (0x7FFF..) for the write to show."""
    def mutate(low):
        low.source, n = re.subn(r"(__kernel void ddf_fwd_kernel\([^)]*\) \{)",
                                r"\1\n  if (get_global_id(0) == 0) { out_ptr[-1] = X_ptr[-1] * 2.0f + S_ptr[-1]; }",
                                low.source)
        assert n == 1
    _fails(Workload.make("ddf", "fwd", DDF_SHAPES["odd-heads"], "float32"), way, mutate=mutate,
           match=r"guard zone of 'out' changed at element offsets \[-1\]")

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


def _reverse_blocks(low):
    """Map work-group g to block (groups - 1 - g): PoCL then runs the blocks last to first."""
    low.source, n = re.subn(r"\bget_group_id\(0\)", "(get_num_groups(0) - 1 - get_group_id(0))", low.source)
    assert n > 0


@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
@pytest.mark.parametrize("shape", [_acda(1, 7, 3, 40, 6, 18, 7, 1, 1, 3), *DX_ROWS_SHAPES.values()],
                         ids=["c7", *DX_ROWS_SHAPES])
def test_acda_dx_blocks_in_reverse_order(shape, dtype, way):
    """acda.dx with its blocks run last to first. PoCL runs work-groups one after another, so
    a block that stores into a neighbour's pixels is hidden when the neighbour runs later and
    overwrites them; reversed, such a store lands last. The cast stage once did: computed at
    the sums' thread loop it lost their predicate, and with one channel per chunk (C = 7 here:
    cc = 1) the threads past the chunk stored unset registers into the next tile. That
    schedule passed in order and failed reversed, both ways, both types. The other shapes:
    blocks over several input rows (``DX_ROWS_SHAPES``), whose tail blocks' sums and stores
    carry the rows' predicate too."""
    wl = Workload.make("acda", "dx", shape, dtype)
    if dtype == "float32" and shape in DX_ROWS_SHAPES.values():
        from schedules.acda_cuda import dx_tile

        assert dx_tile(wl)["rows"] > 1  # the shape exercises what it is meant to
    emulate.check(wl, way, mutate=_reverse_blocks)


@pytest.mark.parametrize("dtype", emulate.HALF_DTYPES)
@pytest.mark.parametrize("name", ["rows-s2-tails", "rows-narrow-s2"])
def test_acda_dx_rows_half(name, dtype):
    """The half types take dx's blocks over several input rows as float32 does (2-byte
    loads, float32 atoms and sums): executed with 16-bit words, blocks in reverse order."""
    from schedules.acda_cuda import dx_tile

    wl = Workload.make("acda", "dx", DX_ROWS_SHAPES[name], dtype)
    assert dx_tile(wl)["rows"] > 1
    emulate.check(wl, "cuda", mutate=_reverse_blocks)


@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
@pytest.mark.parametrize("kernel,shape", [
    # fwd a tap row at a time (float32; float64 keeps the shared-atoms schedule): its cast
    # stage sits at the channel-tile loop, outside the sums' thread loop, so it needs the
    # tail tile's predicate (Wo = 40: tiles of 32 and 8); C = 64: one channel tile
    ("fwd", ACDA_SHAPES["register-tiles"]),
    ("fwd", _acda(1, 8, 3, 40, 6, 18, 7, 1, 1, 3)),  # k = 7, 8 slices of one channel
    # the atoms built from staged A and P (float32): C = 64, 16 slices of 4 channels, the two
    # atom groups in parallel (448 of 512 threads); stride 2, dilation 2, 16-pixel tiles (Wo
    # = 19: a 3-pixel tail), one group of 4 atoms. (C = 8 above: the two groups in turn.)
    ("fwd", _acda(1, 64, 3, 40, 6, 18, 7, 1, 1, 3)),
    ("fwd", _acda(1, 16, 9, 37, 4, 6, 5, 2, 2, 4)),
    ("datoms", ACDA_SHAPES["k7-tiles"]),
    # datoms by rows: Wo = 131 in two tiles of 66 pixels, the second one short (its cast
    # stage's predicate); stride 2 with dilation 2 in the staged row segment
    ("datoms", _acda(1, 3, 4, 131, 4, 4, 3, 1, 1, 1)),
    ("datoms", _acda(1, 3, 7, 263, 2, 3, 3, 2, 2, 2)),
    # 32-pixel rows, two per block, and stride 2 (rows 2 apart in the staged segments)
    ("datoms", _acda(1, 3, 6, 32, 6, 4, 7, 1, 1, 3)),
    ("datoms", _acda(1, 2, 12, 64, 3, 4, 7, 2, 1, 3)),
], ids=["fwd-c64", "fwd-k7", "fwd-k7-staged", "fwd-s2-d2-staged", "datoms", "datoms-tail", "datoms-s2-d2", "datoms-rows", "datoms-rows-s2"])
def test_acda_blocks_in_reverse_order(kernel, shape, dtype, way):
    """As :func:`test_acda_dx_blocks_in_reverse_order`, for the other ACDA kernels."""
    emulate.check(Workload.make("acda", kernel, shape, dtype), way, mutate=_reverse_blocks)


# static datoms at rows under DATOMS_MIN_ROW (``schedules.acda_cuda._datoms_narrow``), float32
# geometry (tile, rows, groups): 7 x 7, the two atom groups in two blocks (343 threads, a
# channel per chunk); 14 x 14 in blocks of 2 rows, 2 images; Ho = 11 (prime: a block of 11
# rows, 28-pixel rows in tiles of 7); k5 dilation 2 on 9-pixel rows, blocks of 3 rows; stride
# 2 with dilation 2 (a row per block)
DATOMS_NARROW_SHAPES = {
    "7x7-groups": (_acda(1, 5, 7, 7, 6, 18, 7, 1, 1, 3), (7, 7, 2)),
    "14x14-rows": (_acda(2, 3, 14, 14, 6, 4, 7, 1, 1, 3), (14, 2, 1)),
    "ho11": (_acda(1, 3, 11, 28, 6, 4, 7, 1, 1, 3), (28, 1, 1)),
    "k5-d2": (_acda(2, 2, 6, 9, 6, 4, 5, 1, 2, 4), (9, 3, 1)),
    "s2-d2": (_acda(4, 3, 29, 23, 2, 4, 3, 2, 2, 2), (12, 1, 1)),
}


@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
@pytest.mark.parametrize("name", DATOMS_NARROW_SHAPES)
def test_acda_datoms_narrow_rows(name, dtype, way):
    """The static datoms' tap-block schedule at narrow rows (float32; float64 keeps the
    register tile), executed with its blocks in reverse order."""
    from schedules.acda_cuda import datoms_block_tile

    shape, geometry = DATOMS_NARROW_SHAPES[name]
    wl = Workload.make("acda", "datoms", shape, dtype)
    t = datoms_block_tile(wl)
    if dtype == "float32":
        assert (t["tile"], t["rows"], t["groups"]) == geometry
    else:
        assert t is None
    emulate.check(wl, way, mutate=_reverse_blocks)


@pytest.mark.parametrize("dtype", emulate.HALF_DTYPES)
@pytest.mark.parametrize("name", ["7x7-groups", "14x14-rows"])
def test_acda_datoms_narrow_rows_half(name, dtype):
    """As :func:`test_acda_datoms_narrow_rows` in the half types (16-bit words, float32 sums)."""
    emulate.check(Workload.make("acda", "datoms", DATOMS_NARROW_SHAPES[name][0], dtype), "cuda",
                  mutate=_reverse_blocks)


def test_control_acda_datoms_narrow_barrier():
    """The narrow-row tap-block datoms (7 x 7, the atom groups in two blocks) without the
    barrier between staging a chunk and reading it (the cuda way, as the other dropped-barrier
    controls): the first threads read staged elements later ones have not written yet."""
    wl = Workload.make("acda", "datoms", DATOMS_NARROW_SHAPES["7x7-groups"][0], "float32")
    _fails(wl, "cuda", mutate=_drop_barrier(1), match="NaN|relative error")


@pytest.mark.parametrize("way", emulate.WAYS)
def test_control_acda_datoms_narrow_dO_short(way):
    """The narrow-row tap-block datoms (14 x 14, 2 rows per block) with its copy of the chunk's
    dO one round short (see :func:`test_control_acda_datoms_block_dO_short`)."""
    def mutate(low):
        store = re.search(r"\n\s*dO_shared_ptr\[", low.source).start()
        head = list(re.finditer(r"for \(int (\w+) = 0; \1 < (\d+);", low.source[:store]))[-1]
        assert int(head[2]) > 1
        low.source = (low.source[:head.start()] + f"for (int {head[1]} = 0; {head[1]} < {int(head[2]) - 1};"
                      + low.source[head.end():])
    wl = Workload.make("acda", "datoms", DATOMS_NARROW_SHAPES["14x14-rows"][0], "float32")
    _fails(wl, way, mutate=mutate, match="NaN|relative error")


@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
def test_acda_dx_sm80_chunks(dtype, way):
    """acda.dx as built for sm_80, whose smaller register budget (DX_THREAD_WORDS_BEFORE_SM90)
    stages fewer channels per chunk than sm_90 on a 7-pixel row (float32: 4 of 8, two chunks,
    a block over the 3 rows of each of the 2 images; float64 1, a row per block), blocks in
    reverse order."""
    from schedules.acda_cuda import dx_tile
    from dynfilter_tvm.target import cuda_target

    wl = Workload.make("acda", "dx", _acda(2, 8, 3, 7, 6, 18, 7, 1, 1, 3), dtype)
    if dtype == "float32":
        assert (dx_tile(wl)["cc"], dx_tile(wl, cuda_target("sm_80"))["cc"]) == (8, 4)
        assert dx_tile(wl)["rows"] == 3
    emulate.check(wl, way, arch="sm_80", mutate=_reverse_blocks)


# pac.conv_dk in float16 / bfloat16 on tensor cores (G = Wt^T dO by mma.sync m16n8k16 with f32
# accumulators, then the dot with the source per pixel): executed with 16-bit words.
DK_HALF_CASES = {
    # 2 warps (a 64-pixel row), one 16-channel chunk, 3 x 3 taps, padding
    "plain": dict(_geo(1, 16, 3, 64, 3, 64, 3, 1, 1, 1, 1), O=32),
    # 1 warp (Wo = 32), stride 2 and dilation 2, two channel chunks, batch 2, O = 16
    "s2-d2": dict(_geo(2, 32, 9, 63, 3, 32, 3, 2, 1, 2, 2), O=16),
    # the zero-inserted source (the transposed conv's weight gradient), O = 48: 3 K steps
    "zero-ins": dict(_geo(1, 16, 5, 16, 10, 32, 3, 1, 2, 1, 1), O=48),
    # the benchmark's block: 4 warps over a 128-pixel row, k = 5, O = 64
    "k5-row128": dict(_geo(1, 16, 2, 128, 2, 128, 5, 1, 1, 2, 1), O=64),
    # O = 256: 2 warps (the dO tile of 4 warps passes 48 KB); G's float32 fragment store by
    # plain stores (TVM's store intrinsic's tvm_access_ptr failed its type check here, where
    # StorageRewrite shares G's space with the 16-bit staging)
    "o256": dict(_geo(1, 16, 2, 64, 2, 64, 1, 1, 1, 0, 1), O=256),
}


@pytest.mark.parametrize("dtype", emulate.HALF_DTYPES)
@pytest.mark.parametrize("name", DK_HALF_CASES)
def test_conv_dk_tensor_core_half(name, dtype):
    assert _half_mma_error(Workload.make("pac", "conv_dk", DK_HALF_CASES[name], dtype)) <= emulate.TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", emulate.HALF_DTYPES)
def test_conv_dk_tensor_core_sm80(dtype):
    """The same kernel as built for sm_80 (blocks in reverse order)."""
    wl = Workload.make("pac", "conv_dk", DK_HALF_CASES["plain"], dtype)
    low = emulate.prepare(wl, "cuda", arch="sm_80")
    assert "tvm_mma_m16n8k16(" in low.source
    emulate.check(wl, "cuda", arch="sm_80", lowered=low, mutate=_reverse_blocks)


def _drop_g_barrier(low):
    """The barrier after the fragment stores of G (``tvm_shfl_self`` into G's shared memory),
    before the per-pixel dot that reads them, dropped."""
    g = re.search(r"= tvm_shfl_self\(G_shared(_dyn)?_warp_ptr", low.source)
    start = low.source.index(BARRIER, g.end())
    low.source = low.source[:start] + low.source[start + len(BARRIER):]


def _one_half(low):
    """The first tap column's total (a tap row's k totals are unrolled, ``ax0``, ``ax0_1``, ...)
    summing one of the two halves of the channels (DK_MMA_HALVES) only."""
    pattern = r"for \(int (ax0(?:_\d+)?) = 0; \1 < 2; \+\+\1\) \{\n\s*acc_local_ptr\[0\]"
    m = re.search(pattern, low.source)
    assert m, "no halves' total"
    low.source = low.source[:m.start()] + m[0].replace(" < 2;", " < 1;", 1) + low.source[m.end():]


@pytest.mark.parametrize("mutate,match", [
    # the barrier between the fragment stores of G and the per-pixel dot that reads them
    (_drop_g_barrier, "NaN"),
    # the two halves of the channels' sums (DK_MMA_HALVES), one left out of a pixel's total.
    # (Dropping the barrier before that total does not show on PoCL: both halves' threads
    # store the same total, and those of the second half run after every store of the first)
    (_one_half, "relative error"),
    (_mma_layout("TVM_MMA16_A_LANE", "(row, k) (4 * ((row) % 8) + ((k) + 2) % 8 / 2)"), "relative error"),
    (_mma_layout("TVM_LDM_SRC", "(m, lane) ((m) * 8 + ((lane) / 4 + 1) % 8)"), "relative error"),
], ids=["dropped-g-barrier", "one-half", "mma-a-lane", "ldmatrix-row"])
@pytest.mark.parametrize("case", ["plain", "k5-row128"])
def test_control_conv_dk_tensor_core(case, mutate, match):
    """On both layouts: "plain" (k3: its 3 tap rows over one staged window,
    ``pac_cuda.dk_mma_tap_rows``) and "k5-row128" (a window per tap row)."""
    wl = Workload.make("pac", "conv_dk", DK_HALF_CASES[case], "float16")
    _fails(wl, "cuda", mutate=mutate, match=match)


# pac.conv_dk in float32 flagged tf32 (torch.backends.cudnn.allow_tf32 on CUDA): the same
# kernel with TF32 fragments (mma.sync m16n8k8, 8 output channels per K step), G's products of
# operands rounded to TF32; tolerance emulate.TF32_TOLERANCE.
DK_TF32_CASES = {
    "plain": dict(DK_HALF_CASES["plain"], tf32=1),
    "s2-d2": dict(DK_HALF_CASES["s2-d2"], tf32=1),
    "zero-ins": dict(DK_HALF_CASES["zero-ins"], tf32=1),  # O = 48: 6 K steps
    "k5-row128": dict(DK_HALF_CASES["k5-row128"], tf32=1),
}


@pytest.mark.parametrize("name", DK_TF32_CASES)
def test_conv_dk_tensor_core_tf32(name):
    """Flagged: the TF32 mma kernel, within TF32_TOLERANCE and above float32's own tolerance
    (the rounding shows: a SIMT kernel would not pass); unflagged: the SIMT kernel, no mma,
    within float32's tolerance."""
    wl = Workload.make("pac", "conv_dk", DK_TF32_CASES[name], "float32")
    low = emulate.prepare(wl, "cuda")
    assert "tvm_mma_m16n8k8_tf32(" in low.source
    assert 1e-5 < emulate.check(wl, "cuda", lowered=low) <= emulate.TF32_TOLERANCE
    if name == "plain":
        off = Workload.make("pac", "conv_dk", DK_HALF_CASES[name], "float32")
        low = emulate.prepare(off, "cuda")
        assert "tvm_mma" not in low.source
        assert emulate.check(off, "cuda", lowered=low) <= emulate.TOLERANCE["float32"]


def test_conv_dk_tensor_core_tf32_sm80():
    """The TF32 kernel as built for sm_80 (blocks in reverse order)."""
    wl = Workload.make("pac", "conv_dk", DK_TF32_CASES["plain"], "float32")
    low = emulate.prepare(wl, "cuda", arch="sm_80")
    assert "tvm_mma_m16n8k8_tf32(" in low.source
    emulate.check(wl, "cuda", arch="sm_80", lowered=low, mutate=_reverse_blocks)


@pytest.mark.parametrize("mutate,match", [
    (_replace("for (int ax0 = 0; ax0 < 2; ++ax0) {\n        acc_local_ptr[0]",
              "for (int ax0 = 0; ax0 < 1; ++ax0) {\n        acc_local_ptr[0]"), "relative error"),
    (_mma_layout("TVM_MMA_A_LANE", "(row, k) (4 * ((row) % 8) + ((k) + 1) % 4)"), "relative error"),
    (_mma_layout("TVM_LDM_SRC", "(m, lane) ((m) * 8 + ((lane) / 4 + 1) % 8)"), "relative error"),
], ids=["one-half", "mma-a-lane", "ldmatrix-row"])
def test_control_conv_dk_tensor_core_tf32(mutate, match):
    wl = Workload.make("pac", "conv_dk", DK_TF32_CASES["plain"], "float32")
    _fails(wl, "cuda", mutate=mutate, match=match)
