"""The static GPU report's arithmetic (no nvcc needed) and, with nvcc, one kernel's ptxas figures."""
from __future__ import annotations

import shutil

import pytest

from dynfilter_tvm import gpu_report as G
from dynfilter_tvm.workload import Workload


def test_occupancy_limits():
    assert G.occupancy("sm_90", 256, 32, 0) == 1.0  # 8 blocks of 8 warps
    assert G.occupancy("sm_90", 256, 128, 0) == 0.25  # 128 regs: 2 blocks
    assert G.occupancy("sm_90", 256, 80, 37632) == 0.375  # 80 regs: 25 warps -> 3 blocks
    assert G.occupancy("sm_80", 256, 32, 48 * 1024) == 0.375  # 164 KB / 49 KB: 3 blocks
    assert G.occupancy("sm_90", 32, 16, 0) == 0.5  # 32 blocks of one warp


def test_occupancy_counts_dynamic_shared_memory():
    """The report adds the launch's dynamic shared memory to ptxas's static figure: 100 KB a
    block leaves one 1,024-thread block per sm_80 SM (50%), where the static figure alone (0)
    would give two (100%)."""
    assert G.occupancy("sm_80", 1024, 32, 0) == 1.0
    assert G.occupancy("sm_80", 1024, 32, 100 * 1024) == 0.5


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_rows_add_dynamic_shared_memory(monkeypatch):
    """A report row of a kernel with dynamic shared memory (the wide tensor-core PAC conv tile
    at a small shape: its stages pass 48 KB): smem is ptxas's static bytes plus the launch's
    dynamic ones, which the occupancy then counts."""
    from schedules.pac_cuda import mma_shared_bytes, mma_tile

    wl = Workload.make("pac", "conv", dict(N=1, C=16, O=64, H=4, W=128, Ho=4, Wo=128, k=3, s=1, z=1, p=1, d=1, a=0),
                       "float16")
    monkeypatch.setattr(G, "benchmark_workloads", lambda dtype="float32": {"wide": [wl]})
    monkeypatch.setattr(G, "generic_workloads", lambda dtype="float32": {})
    (r,) = G.rows(("sm_90",))
    assert r["dyn"] == mma_shared_bytes(wl, *mma_tile(wl)) > 48 * 1024 and r["smem"] == r["dyn"]
    assert r["occupancy"] == G.occupancy("sm_90", r["threads"], r["regs"], r["smem"])
    assert " dyn |" in G.format_table([r])


def test_minimum_bytes_and_flops_ddf():
    wl = Workload.make("ddf", "fwd", dict(B=2, C=4, H=5, W=6, G=1, k=3, s=1, d=1, combine="mul"), "float32")
    # X, S, C and out, each once
    assert G.min_bytes(wl) == 4 * (2 * 4 * 5 * 6 + 2 * 9 * 5 * 6 + 2 * 4 * 9 + 2 * 4 * 5 * 6)
    assert G.flops(wl) == 2 * 4 * 5 * 6 * 9 * 3
    # the tiled schedule: one 5 x 6 tile and one 4-channel chunk per image, so X, S and C
    # are each loaded once and out stored once: the minimum
    assert G.requested_bytes(wl) == G.min_bytes(wl)
    big = Workload.make("ddf", "fwd", dict(B=1, C=64, H=40, W=40, G=1, k=3, s=1, d=1, combine="mul"), "float32")
    # 16 x 16 tiles (3 x 3), 17+18+9 = 44 input rows (and columns) over the windows, 2 chunks
    assert G.requested_bytes(big) == 4 * (64 * 44 * 44 + 9 * 40 * 40 * 2 + 64 * 9 * 9 + 64 * 40 * 40)


def test_requested_bytes_ddf_gradients():
    small = dict(B=2, C=4, H=5, W=6, G=1, k=3, s=1, d=1, combine="mul")
    # one tile and one channel chunk: every input once, the minimum; but with 2 blocks (far
    # from MIN_BLOCKS) ds splits the 4 channels over 4 blocks, whose sums (4*2*9*5*6) the
    # scratch takes and gives back; dc stores its one column block's sums (2*4*9) likewise
    wl = Workload.make("ddf", "ds", small, "float32")
    assert G.requested_bytes(wl) == G.min_bytes(wl) + 4 * 2 * 4 * 2 * 9 * 30
    wl = Workload.make("ddf", "dc", small, "float32")
    assert G.requested_bytes(wl) == G.min_bytes(wl) + 4 * 2 * 2 * 4 * 9
    big = dict(small, B=1, C=64, H=40, W=40)
    # ds: the forward's 16 x 16 tiles (3 x 3, 44 input rows and columns over the windows): dO
    # once, the X windows, C per tile, 64 channel blocks through the scratch (9 * 32 >= 264,
    # but 2 channels per block are avoided: a block per channel), the dS stores
    wl = Workload.make("ddf", "ds", big, "float32")
    assert G.requested_bytes(wl) == 4 * (64 * 1600 + 64 * 44 * 44 + 64 * 9 * 9 + 2 * 64 * 9 * 1600 + 9 * 1600)
    # dc: 16 channels x 32 lanes, 8-row tiles: rows 9+10+10+10+9 = 48, columns 33+9 = 42 over
    # the windows; S once per 16-channel chunk (4); dO once; a block per column tile (4 chunks
    # are far from MIN_BLOCKS), so the scratch holds 2 sums per output, stored and loaded; the
    # dC stores
    wl = Workload.make("ddf", "dc", big, "float32")
    assert G.requested_bytes(wl) == 4 * (64 * 1600 + 64 * 48 * 42 + 4 * 9 * 1600 + 2 * 2 * 64 * 9 + 64 * 9)
    # k > 7: the per-output schedules (dO, X, C or S per tap of every output)
    wl = Workload.make("ddf", "ds", dict(big, k=9), "float32")
    assert G.requested_bytes(wl) == 4 * 64 * 1600 * 81 * 3
def test_requested_bytes_pac_conv_tiled():
    wl = G.benchmark_workloads()["PAC conv 8x64x128x128 k5"][0]
    # the docstring's figures: X over 634 real taps per axis, K once per tile (staged), the
    # whole weight per 4 x 32 pixel tile (128 per image), out stored once
    x, k, wt, out = 8 * 64 * 634 ** 2, 8 * 25 * 128 ** 2, 8 * 128 * 64 * 64 * 25, 8 * 64 * 128 ** 2
    assert G.requested_bytes(wl) == 4 * (x + k + wt + out)
    # one tile, one output-channel tile, unit stride and no padding taps: every input once, K
    # once (staged), out once
    small = Workload.make("pac", "conv", dict(N=1, C=2, O=3, H=3, W=3, Ho=3, Wo=3, k=1, s=1, z=1, p=0, d=1, a=0),
                          "float32")
    assert G.requested_bytes(small) == 4 * (2 * 9 + 9 + 3 * 2 + 3 * 9)
    # where K would not fit beside the chunks at 50% occupancy (128-thread blocks, k5 s2), K
    # per input channel (C = 32), as before
    unstaged = Workload.make("pac", "conv", dict(N=2, C=32, O=32, H=128, W=128, Ho=64, Wo=64, k=5, s=2, z=1, p=2,
                                                 d=1, a=1), "float32")
    from schedules.pac_cuda import conv_tile

    assert conv_tile(unstaged)["ks"] is False and conv_tile(small)["ks"] is True
    p = unstaged.p
    taps = G._pac_real_pairs(128, 64, p) ** 2
    assert G.requested_bytes(unstaged) == 4 * (2 * 32 * taps * 2 + 2 * 32 * 32 * 32 * 25 + 2 * 32 * 64 ** 2)


def test_requested_bytes_pac_conv_dk_tiled():
    wl = next(w for w in G.benchmark_workloads()["PAC conv 8x64x128x128 k5"]
              if w.kernel == "conv_dk" and w.dtype == "float32" and not w.p.get("tf32"))
    # the docstring's figures: dO once, X over the 4 x 32 tiles' 8 x 36 windows less the
    # padding (252 x 140 real), Wt per channel and tile (128 per image), dK stored once
    do, x, wt, dk = 8 * 64 * 128 ** 2, 8 * 64 * 252 * 140, 8 * 128 * 64 * 64 * 25, 8 * 25 * 128 ** 2
    assert G.requested_bytes(wl) == 4 * (do + x + wt + dk)
    # stride 2, zero insertion 2, padding 1: one tile whose window spans grid positions 0..6
    # ((3 - 1) * 2 + 2 + 1), real where (Y - 1) is even and inside the 3-element source
    small = Workload.make("pac", "conv_dk", dict(N=1, C=2, O=3, H=3, W=3, Ho=3, Wo=3, k=3, s=2, z=2, p=1, d=1),
                          "float32")
    from schedules.pac_cuda import dk_tile
    assert dk_tile(small) == dict(ty=4, tx=3, yt=2, yi=2)  # Y = 1, 3, 5 per axis
    assert G.requested_bytes(small) == 4 * (3 * 9 + 2 * 3 * 3 + 1 * 2 * 3 * 9 + 9 * 9)


def test_requested_bytes_pac_conv_dk_tensor_cores():
    """The tensor-core conv_dk of the half types and of float32 flagged tf32: dO once, the
    whole weight per block, dK once; the half types in blocks of four 128-pixel rows (256
    blocks, ``dk_mma_rows``, on sm_90 and sm_80), the source once per block's window of a tap
    row and channel (634 real (output row, tap row) pairs x 128 columns: 158.9 MB); TF32 the
    same windows in blocks of two rows (512; 4-byte elements: 422.6 MB; on sm_86 one row, the
    source per (tap, channel, pixel) over 634 real (output, tap) pairs per axis: 1,289 MB).
    Listed in the float32 report, TF32 aiming at the TF32 roofline."""
    pac = G.benchmark_workloads()["PAC conv 8x64x128x128 k5"]
    do, dk = 8 * 64 * 128 ** 2, 8 * 25 * 128 ** 2
    for dtype, label, item in (("float16", "f16", 2), ("bfloat16", "bf16", 2), ("float32", "tf32", 4)):
        x = 8 * 64 * 634 * 128
        wt = (512 if dtype == "float32" else 256) * 64 * 64 * 25
        wl = next(w for w in pac if w.kernel == "conv_dk" and w.dtype == dtype and (dtype != "float32" or w.p.get("tf32")))
        assert G._label(wl) == f"pac.conv_dk({label})"
        assert G.aim_peak(wl) == (G.TF32_TC if dtype == "float32" else G.BF16_TC)
        for arch in ("sm_90", "sm_80"):
            assert G.requested_bytes(wl, item, arch) == item * (do + x + wt + dk)
        if dtype == "float32":  # sm_86 (99 KB per block): one row, per-tap source loads
            assert G.requested_bytes(wl, 4, "sm_86") == 4 * (do + 8 * 64 * 634 ** 2 + 1024 * 64 * 64 * 25 + dk)


def test_requested_bytes_pac_conv_dw_tiled():
    wl = G.benchmark_workloads()["PAC conv 8x64x128x128 k5"][-1]
    assert wl.kernel == "conv_dw"
    # the docstring's figures: dO per tap, K once, X over 634 real taps per axis, the 16
    # parts' partial sums stored and loaded
    do, k, x, scratch = 8 * 64 * 128 ** 2 * 25, 8 * 25 * 128 ** 2, 8 * 64 * 634 ** 2, 2 * 16 * 64 * 64 * 25
    assert G.requested_bytes(wl) == 4 * (do + k + x + scratch)


def test_every_benchmark_kernel_has_formulas():
    for wls in G.benchmark_workloads().values():
        for wl in wls:
            assert G.flops(wl) > 0 and G.requested_bytes(wl) >= G.min_bytes(wl) / 10


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_ptxas_figures_of_a_small_kernel():
    from dynfilter_tvm.build import build
    from dynfilter_tvm.target import cuda_target

    wl = Workload.make("acda", "fwd", dict(N=1, C=12, H=3, W=40, M=6, T=18, k=7, s=1, d=1, p=3), "float32")
    src = build(wl, cuda_target("sm_90")).mod.imports[0].inspect_source()
    res = G.ptxas_resources(src, "sm_90")["acda_fwd_kernel"]
    # the 32-pixel atoms tile and the staged input rows (12 channels x 38 columns); the atoms
    # build's stages of A and P (6 x 32 + 49 words) partly share the rows' memory (TVM's storage
    # rewrite: their lifetimes do not overlap)
    rows = 32 * 6 * 49 * 4 + 12 * 38 * 4
    assert res["regs"] > 0 and rows <= res["smem"] <= rows + (6 * 32 + 49) * 4


def test_aims_name_what_a_row_misses():
    row = dict(spill=0, occupancy=0.5, estimate=1.5, roofline=1.0)
    assert G.aims(row) == "ok"
    assert G.aims(dict(row, spill=8, occupancy=0.375, estimate=3.0)) == "spills, occupancy, 3.0x roofline"
    # the estimate takes the slower of bandwidth and the units the code uses
    assert G.estimate_s(3.35e12, 1.0, False) == 1.0
    assert G.estimate_s(0, 67e12, False) == 1.0 and G.estimate_s(0, 495e12, True) == 1.0
    pac = Workload.make("pac", "conv", dict(N=1, C=4, O=4, H=8, W=8, Ho=8, Wo=8, k=3, s=1, z=1, p=1, d=1, a=0),
                        "float32")
    ddf = Workload.make("ddf", "dc", dict(B=1, C=4, H=8, W=8, G=1, k=3, s=1, d=1, combine="mul"), "float32")
    assert G.aim_peak(ddf) == G.FP32_SIMT
    # float32 PAC aims at TF32 tensor cores only with the tf32 flag (allow_tf32); without it,
    # float32 products are required and the aim is the FP32 SIMT peak
    assert G.aim_peak(pac) == G.FP32_SIMT
    assert G.aim_peak(Workload.make("pac", "conv", dict(pac.p, tf32=1), "float32")) == G.TF32_TC
    # the half types aim at (and, with f16/bf16 mma, are estimated at) the FP16/BF16 peak
    half = Workload.make("pac", "conv", pac.p, "bfloat16")
    assert G.aim_peak(half) == G.BF16_TC and G._label(half) == "pac.conv(bf16)"
    assert G.estimate_s(0, 990e12, "bf16") == 1.0 and G.estimate_s(0, 990e12, "f16") == 1.0
    assert G.estimate_s(0, 495e12, "tf32") == 1.0


def test_mma_kind_from_the_device_code():
    mma = 'asm("mma.sync.aligned.m16n8k{}.row.col.f32.{t}.{t}.f32" ...);'
    assert G.mma_kind(mma.format(8, t="tf32")) == "tf32"
    assert G.mma_kind(mma.format(16, t="bf16")) == "bf16" and G.mma_kind(mma.format(16, t="f16")) == "f16"
    assert G.mma_kind("nvcuda::wmma::mma_sync(c, a, b, c);") == "mma"
    assert G.mma_kind("acc = fmaf(a, b, acc);") is None


def test_benchmark_workloads_list_half_tensor_core_convs():
    """The float32 report lists PAC conv in float16 and bfloat16 too (forward and input
    gradient), with 2-byte data and the same tiles as the TF32 conv; their chunks hold 16
    channels, not 8, so where K is loaded per chunk (TF32 on sm_86/89) it is loaded half as
    often; with K staged once per block (sm_80, sm_90) it is loaded once in every type."""
    pac = G.benchmark_workloads()["PAC conv 8x64x128x128 k5"]
    labels = [G._label(w) for w in pac]
    for half in ("f16", "bf16"):
        assert f"pac.conv({half})" in labels and f"pac.conv(adj)({half})" in labels
    tf32 = next(w for w in pac if w.p.get("tf32") and not w.p["a"])
    bf16 = next(w for w in pac if w.dtype == "bfloat16" and not w.p["a"])
    # per block (the wide tile: four 128-pixel rows, 64 channels: 32 blocks an image): per
    # chunk the source window of 8 rows (252 real over the 32 row tiles) x 132 columns (128
    # real), K once per (tap, pixel) and block (or and chunk), the whole weight, out stored once
    x, wt, out, k = 8 * 64 * 252 * 128, 8 * 32 * 64 * 64 * 25, 8 * 64 * 128 ** 2, 8 * 25 * 128 ** 2
    for arch in ("sm_90", "sm_80"):
        assert G.requested_bytes(tf32, 4, arch) == 4 * (x + k + wt + out)
        assert G.requested_bytes(bf16, 2, arch) == 2 * (x + k + wt + out)
    assert G.requested_bytes(tf32, 4, "sm_86") == 4 * (x + 8 * k + wt + out)
    # issue 15's aim, 1.5x the H100 roofline (min DRAM bytes at 3.35 TB/s or the tensor-core
    # peak): met by every type and direction on sm_90 (half 109 MB, 1.2x; TF32 218 MB, 1.19x),
    # not by TF32 with K per chunk (309 MB, 1.68x)
    for wl, item in [(w, 2 if w.dtype != "float32" else 4) for w in pac
                     if w.kernel == "conv" and (w.dtype != "float32" or w.p.get("tf32"))]:
        roof = max(G.min_bytes(wl, item) / G.H100_BW, G.flops(wl) / G.aim_peak(wl))
        for arch in ("sm_90", "sm_86"):
            ratio = G.requested_bytes(wl, item, arch) / G.H100_BW / roof
            assert (ratio <= 1.5) == (item == 2 or arch == "sm_90"), (wl, arch, ratio)


def test_requested_bytes_acda_tiles(monkeypatch):
    """acda.fwd in float32 (the tap-row schedule, sm_90 and sm_80): the atoms build from A
    and P staged per block (A once, P per block and pass of atom groups) plus, per block and
    tap row, the real part of each channel's staged input row segment; elsewhere (float64)
    per pixel the atoms build (k*T*(M + (M/mi)*k) elements: mi atoms x k tap columns per
    thread) plus X per (channel, tap) of every pixel; dx: see gpu_report._acda_dx_bytes."""
    p = dict(N=1, C=8, H=4, W=5, M=6, T=3, k=3, s=1, d=1, p=1)
    fwd, dx = (Workload.make("acda", k, p, "float32") for k in ("fwd", "dx"))
    # tiles of 4 (two per row); real (row, tap row) pairs 2 + 3 + 3 + 2; the tiles' windows of
    # 6 padded columns (0..5, and 4..6 cut at the padded width 7) hold 5 + 2 real ones
    # (cb = 2: 4 slices x 4 pixels = 16 threads cover the 3 x 4 (tap row, pixel) pairs, all 6
    # atoms each: one pass): A 6 x 3 x 20, P 8 blocks x 27
    from schedules import acda_cuda
    from dynfilter_tvm.target import cuda_target

    assert acda_cuda.fwd_staged_plan(fwd, cuda_target("sm_90")) == dict(mi=6, passes=1, tile=4, blocks=8)
    for arch in ("sm_90", "sm_80"):
        assert G.requested_bytes(fwd, 4, arch) == 4 * (6 * 3 * 20 + 8 * 27 + 8 * 10 * 7)
    # dx (atoms in registers; a row of 5 is too narrow for runs: a pixel per thread, one tile
    # of 5, a block over the 4 rows): P per block, per block the window of each atom and basis
    # (A, staged) and of each channel and atom (dO): 6 grid rows (1..6), 4 real, 5 real columns
    assert acda_cuda.dx_tile(dx)["rows"] == 4
    assert G.requested_bytes(dx) == 4 * (1 * 27 + 6 * 3 * 4 * 5 + 8 * 6 * 4 * 5)
    # a row per block (4 blocks): 3 grid rows each, real 2, 3, 3, 2 over the rows
    with monkeypatch.context() as m:
        m.setattr(acda_cuda, "DX_ROWS_THREADS_NARROW", 1)
        assert G.requested_bytes(dx) == 4 * (4 * 27 + 6 * 3 * (2 + 3 + 3 + 2) * 5 + 8 * 6 * (2 + 3 + 3 + 2) * 5)
    # with runs (4 pixels per thread) and a block over every input row (``_dx_rows``: one tile
    # of 8 = 2 runs, the 4 rows, 1 block): the window's 6 grid rows (1..6) hold 4 real ones,
    # its 7 columns 5; dO and A are loaded once per block
    monkeypatch.setattr(acda_cuda, "DX_MIN_THREADS", 1)
    t = acda_cuda.dx_tile(dx)
    assert (t["q"], t["tile"], t["rows"]) == (4, 8, 4)
    assert G.requested_bytes(dx) == 4 * (1 * 27 + 6 * 3 * 4 * 5 + 8 * 6 * 4 * 5)
    # a row per block (threads too few for more): tiles of 4, two per row, 8 blocks; real
    # columns 5 + 2
    monkeypatch.setattr(acda_cuda, "DX_ROWS_THREADS", 1)
    t = acda_cuda.dx_tile(dx)
    assert (t["q"], t["tile"], t["rows"]) == (4, 4, 1)
    assert G.requested_bytes(dx) == 4 * (8 * 27 + 6 * 3 * (2 + 3 + 3 + 2) * 7 + 8 * 6 * (2 + 3 + 3 + 2) * 7)
    f64 = Workload.make("acda", "fwd", p, "float64")  # mi = 3: 3 x 3 doubles in 18 registers
    assert G.requested_bytes(f64, 8) == 8 * 20 * (3 * 3 * (6 + 2 * 3) + 8 * 9)
    # datoms at a 5-pixel row (under DATOMS_MIN_ROW): every tap row in one block of all 4 rows
    # (60 threads), dO once, and per channel the block's 6-row window (4 real) x 7 columns (5
    # real); the register tile before: per channel 6 dO + 3 inputs per (tap row, pixel),
    # 4 * 20 * 3 * 8 * (6 + 3) B
    datoms = Workload.make("acda", "datoms", p, "float32")
    assert acda_cuda.datoms_block_tile(datoms) == dict(tile=5, mi=6, cc=8, threads=60, rows=4, groups=1)
    assert G.requested_bytes(datoms) == 4 * (8 * 6 * 20 + 8 * 4 * 5)
    # float64 keeps the register tile (3 atoms per thread: 2 groups x (3 dO + 3 inputs))
    assert G.requested_bytes(Workload.make("acda", "datoms", p, "float64"), 8) == 8 * 20 * 3 * 8 * 2 * (3 + 3)
    # datoms with every tap row in one block (32-pixel rows, a block per row, all 6 atoms per
    # thread): dO once, staged, and per block and channel the real rows of its 3-row window
    # (2 + 3 + 3 + 2 over the rows) x the real part of the 34-column window (32)
    wide = Workload.make("acda", "datoms", dict(p, W=32), "float32")
    assert acda_cuda.datoms_block_tile(wide) == dict(tile=32, mi=6, cc=8, threads=96, rows=1, groups=1)
    assert G.requested_bytes(wide) == 4 * (8 * 6 * 4 * 32 + 8 * 10 * 32)
    # float64 keeps the rows schedule (dO once per tap row; per (atom group of 3: 2 groups,
    # 2 rows, tap row) block and channel the real rows, 5 + 5 over the tap rows of both
    # blocks, x 32 columns)
    wide64 = Workload.make("acda", "datoms", dict(p, W=32), "float64")
    assert acda_cuda.datoms_block_tile(wide64) is None
    assert G.requested_bytes(wide64, 8) == 8 * (3 * 8 * 6 * 4 * 32 + 2 * 8 * 10 * 32)


def _generic(kernel, sizes=dict(B=8, H=56, W=56)):
    from dynfilter_tvm import emulate

    layer = G.generic_workloads()["DDF 8x256x56x56 k3 generic"]
    gwl, at = next((g, s) for g, s in layer if g.kernel == kernel)
    return gwl, emulate.concrete(gwl, sizes if sizes else at)


def test_generic_ddf_requested_bytes():
    """The generic DDF builds' requested bytes at 8x256x56x56 k3 (schedules/ddf_cuda.py's
    figures): each tiled, within 1.1x of the static build's and 1.5x of the minimum."""
    d = 8 * 256 * 56 * 56  # dO, X or out elements
    gwl, wl = _generic("fwd")  # 16 x 16 tiles as the static one: the same bytes
    assert G.requested_bytes(wl, 4, generic=gwl) == G.requested_bytes(wl) == 4 * (8 * 256 * 62 * 62 + 8 * 9 * 3136 * 8
                                                                          + 8 * 256 * 9 * 16 + d)
    # dx: 32 x 15 tiles over rows of whole 16 px (2 x 5 per plane; the fifth column block all
    # padding), dO rows 33+25 = 58 and columns 16+17+17+12 = 62 over the windows, S over them per
    # 32-channel chunk, C per tile
    gwl, wl = _generic("dx")
    assert G.requested_bytes(wl, 4, generic=gwl) == 4 * (8 * 256 * 58 * 62 + 8 * 9 * 58 * 62 * 8 + 8 * 256 * 9 * 10
                                                         + d)
    # ds: 24 x 8 tiles (3 x 7), X windows 25+25+10 = 60 rows, 9+10*5+9 = 68 columns, 2 channel
    # blocks' scratch stored and loaded, dS
    gwl, wl = _generic("ds")
    assert G.requested_bytes(wl, 4, generic=gwl) == 4 * (d + 8 * 256 * 60 * 68 + 8 * 256 * 9 * 21 + 2 * 2 * 8 * 9 * 3136
                                                 + 8 * 9 * 3136)
    # dc: 16-row x 8-column tiles, 16 channels per block, 7 column blocks' scratch
    gwl, wl = _generic("dc")
    assert G.requested_bytes(wl, 4, generic=gwl) == 4 * (d + 8 * 256 * 62 * 68 + 8 * 9 * 3136 * 16 + 2 * 7 * 8 * 256 * 9
                                                 + 8 * 256 * 9)
    for name, layer in G.generic_workloads().items():
        if not name.startswith("DDF"):
            continue
        for gwl, sizes in layer:
            from dynfilter_tvm import emulate

            wl = emulate.concrete(gwl, sizes)
            gen, static = G.requested_bytes(wl, 4, generic=gwl), G.requested_bytes(wl)
            assert gen <= 1.5 * G.min_bytes(wl) and gen <= 1.11 * static, (wl, gen, static)


def test_generic_acda_requested_bytes():
    """The generic ACDA builds' requested bytes (schedules/acda_cuda.py's figures). fwd, the
    rows schedule in tiles of 2 rows x 8 pixels (ops.acda FWD_ROWS, ROW_TILE) and the staged
    atoms build (A once, P per block: 8 x 28 x 7 = 1,568 blocks of one pass), each block's
    window once, 8 x 14: 216 real (row, block) pairs (5 + 7 + 24 x 8 + 7 + 5) x 92 real columns
    (11 + 5 x 14 + 11), 0.92x the static build (sm_90 and sm_80; a row of 32 pixels before:
    1.00x, 8-pixel rows before that: 1.50x); datoms
    (0.91x the static) with every tap row in one block in tiles of 2 rows x 8 pixels, dO staged once; dx the
    static one's atoms-in-registers schedule in blocks of 12 rows x 8 pixels: 1.08x the static
    (blocks of 32 warps over 8 input rows of 15 pixels: dO and A once per 14 x 21 window)."""
    from dynfilter_tvm import emulate

    layer = G.generic_workloads()["ACDA 8x64x56x56 k7 generic"]
    (fwd_g, at), (dx_g, _), (datoms_g, _) = layer
    fwd, dx, datoms = (emulate.concrete(g, at) for g in (fwd_g, dx_g, datoms_g))
    gen = G.requested_bytes(fwd, 4, "sm_90", generic=fwd_g)
    assert gen == 4 * (8 * 6 * 18 * 3136 + 1568 * 18 * 49 + 8 * 64 * 216 * 92)
    assert G.requested_bytes(fwd, 4, "sm_80", generic=fwd_g) == gen
    # the static fwd stages A and P for its atoms build (sm_90 and sm_80): A once, P per
    # block (896), X as before: 62.2 MB, 1.09x the generic build's count
    static = 4 * (8 * 6 * 18 * 3136 + 896 * 18 * 49 + 8 * 64 * 380 * 62)
    assert G.requested_bytes(fwd, 4, "sm_90") == G.requested_bytes(fwd, 4, "sm_80") == static
    assert 0.91 * static < gen < 0.93 * static
    assert gen < 1.15 * G.min_bytes(fwd)
    # dx: the atoms-in-registers schedule in blocks of 12 input rows (ops.acda DX_ROWS) x 8
    # pixels (5 x 7 per image over the 60 padded rows, 280 blocks): P per block, the A window
    # of each (atom, basis) and the dO window of each (channel, atom) per block: 18 grid rows
    # x 14 columns, 80 real (row, block) pairs (15 + 3 x 18 + 11) x 92 real columns (11 + 5 x
    # 14 + 11; a row per block before: 3,136 blocks, 380 real rows, 5.2x the static)
    gen = G.requested_bytes(dx, 4, generic=dx_g)
    assert gen == 4 * (280 * 18 * 49 + 8 * 6 * 18 * 80 * 92 + 8 * 64 * 6 * 80 * 92)
    # the static dx: blocks of 15 pixels x 8 input rows (224, 32 warps), each window 14 grid
    # rows x 21 columns: 92 real (row, block) pairs (11 + 5 x 14 + 11) x 74 real columns
    # (18 + 21 + 21 + 14); the generic 1.08x
    static = 4 * (224 * 18 * 49 + 8 * 6 * 18 * 92 * 74 + 8 * 64 * 6 * 92 * 74)
    assert G.requested_bytes(dx) == static and 1.07 * static < gen < 1.09 * static
    # datoms with every tap row in one block of 2 rows x 8 pixels (ops.acda DATOMS_ROWS): dO
    # once (staged), and per (image, row pair, tile) block and channel its 8-row window's real
    # rows (216 over the 28 pairs: 5 + 26 x 8 + 5) x the tiles' 92 real columns; 0.91x the
    # static build's (a row per block of 28 pixels: 380 real rows x 62 real columns, 86.8 MB;
    # the generic with a row per block of 8 pixels: 380 x 92, 1.27x)
    gen = G.requested_bytes(datoms, 4, generic=datoms_g)
    assert gen == 4 * (8 * 64 * 6 * 3136 + 8 * 64 * 216 * 92)
    static = 4 * (8 * 64 * 6 * 3136 + 8 * 64 * 380 * 62)
    assert G.requested_bytes(datoms) == static and 0.9 * static < gen < 0.92 * static
    # in float64 over 1024 threads (20 atoms, one per thread: 20 x 7 x 8), the rows schedule:
    # dO once per tap row, the windows once per atom group (mi = 2 within DATOMS_WORDS_F64)
    g = Workload.make("acda", "datoms", dict(datoms_g.p, M=20, C=2), "float64")
    wl = emulate.concrete(g, at)
    assert G.requested_bytes(wl, 8, generic=g) == 8 * (8 * 7 * 2 * 20 * 3136 + 8 * 10 * 2 * 380 * 92)
    # a row of 5 pixels (padded to 8: one tile; its window's 10 padded columns hold 5 real
    # ones), k3, 64 threads (C = 8: 4 slices of 2 channels x 2 x 8 pixels), the staged atoms
    # build in one pass: A's 5 real coefficients per row once, P per block (2 row pairs x 1
    # tile), X per block its window of 4 rows (3 real in each) x 10 columns
    p = dict(N=None, C=8, H=None, W=None, M=6, T=3, k=3, s=1, d=1, p=1)
    g = Workload.make("acda", "fwd", p, "float32")
    wl = emulate.concrete(g, dict(N=1, H=4, W=5))
    assert G.requested_bytes(wl, 4, generic=g) == 4 * (6 * 3 * 4 * 5 + 2 * 3 * 9 + 8 * (3 + 3) * 5)
    # k = 9: the shared-atoms schedule (X per (channel, tap) of every pixel of the padded rows:
    # the generic fwd's rows of whole ROW_TILE = 8 pixels, heights of whole FWD_ROWS = 2: an
    # upper bound)
    g = Workload.make("acda", "fwd", dict(p, k=9, p=4), "float32")
    wl = emulate.concrete(g, dict(N=1, H=4, W=5))
    # (atoms_per_thread: one tap column per thread, so all 6 atoms: 81 taps x 3 bases x (6 + 1))
    assert G.requested_bytes(wl, 4, generic=g) == 4 * 4 * 8 * (81 * 3 * 7 + 8 * 81)


def test_generic_per_output_bytes():
    """Where the generic build is per-output (dx at stride 2, dilation 2; k = 9), the
    per-output counts (every tap of every output)."""
    from dynfilter_tvm import emulate

    for kernel, k, s, d in (("dx", 3, 2, 2), ("ds", 9, 1, 1)):
        p = dict(B=None, C=8, H=None, W=None, G=1, k=k, s=s, d=d, combine="mul")
        gwl = Workload.make("ddf", kernel, p, "float32")
        wl = emulate.concrete(gwl, dict(B=1, H=20, W=20))
        out = 8 * 10 * 10 if s == 2 else 8 * 20 * 20
        assert G.requested_bytes(wl, 4, generic=gwl) == 4 * out * k * k * 3


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_generic_rows(monkeypatch):
    """The report's generic rows: the symbolic build's registers and launch, at the layer's
    size (ds: its two launches, 336 blocks of 192 threads at 8x256x56x56)."""
    monkeypatch.setattr(G, "benchmark_workloads", lambda dtype="float32": {})
    layers = G.generic_workloads()
    monkeypatch.setattr(G, "generic_workloads", lambda dtype="float32": {
        k: [e for e in v if e[0].kernel == "ds"] for k, v in layers.items() if "56x56" in k})
    rs = G.rows(("sm_90",))
    assert [r["launch"] for r in rs] == ["ddf_ds_kernel", "ddf_ds_kernel_1"]
    first = rs[0]
    assert (first["threads"], first["blocks"], first["spill"]) == (192, 336, 0)
    assert first["requested"] / first["bytes"] < 1.25 and first["layer"].endswith("generic")
    assert "generic" in G.format_table(rs)


def test_generic_pac_conv_requested_bytes():
    """The generic PAC conv (tiled: schedules.pac_cuda._conv_generic_tiled) at 8x64x128x128 k5
    requests what the static SIMT build does (the same 4 x 32 tiles, 2 x 32 in float64, K
    staged once per tile; the sum over whole tiles, the padding's loads masked), forward and
    input gradient; conv_dk too (its source window staged: the same tiles, windows and Wt
    re-reads; its per-tap fallback, 1.75x at k4 s2 d1); conv_dw's fixed 11 parts store less
    scratch than the static 16."""
    from dynfilter_tvm import emulate
    from schedules.pac_cuda import generic_dk_tile

    for dtype, item in (("float32", 4), ("float64", 8)):
        layer = G.generic_workloads(dtype)["PAC conv 8x64x128x128 k5 generic"]
        for gwl, at in layer:
            wl = emulate.concrete(gwl, at)
            gen = G.requested_bytes(wl, item, generic=gwl)
            static = G.requested_bytes(wl, item)
            if wl.kernel in ("conv", "conv_dk"):  # conv: K once per tile in both
                assert gen == static, wl
            else:  # conv_dw: 11 fixed parts (the static split makes 16 at this size): a little less scratch
                assert static - 2 * 16 * 64 * 64 * 25 * item < gen < static, wl
    gwl, at = G.generic_workloads()["PAC conv 8x64x128x128 k5 generic"][0]
    x, k, wt, out = 8 * 64 * 634 ** 2, 8 * 25 * 128 ** 2, 8 * 128 * 64 * 64 * 25, 8 * 64 * 128 ** 2
    assert G.requested_bytes(emulate.concrete(gwl, at), 4, generic=gwl) == 4 * (x + k + wt + out)
    # a size that is no multiple of the tile (37 x 61: 10 x 2 tiles): the same count as the
    # static build over the generic tiles (the static one takes 4 x 32 tiles there too)
    wl = emulate.concrete(gwl, dict(N=1, H=37, W=61, Ho=37, Wo=61))
    assert G.requested_bytes(wl, 4, generic=gwl) == G.requested_bytes(wl)
    gwl, at = G.generic_workloads()["PAC conv 8x64x128x128 k5 generic"][2]
    assert gwl.kernel == "conv_dk"  # dO once, X per staged window, Wt per 4 x 32 tile, dK once
    do, dk, windows = 8 * 64 * 128 ** 2, 8 * 25 * 128 ** 2, 8 * 64 * (32 * 8 - 4) * (4 * 36 - 4)
    assert G.requested_bytes(emulate.concrete(gwl, at), 4, generic=gwl) == 4 * (do + windows + wt + dk)
    # a tail tile's window: the whole padded tile's (its rows inside X loaded), 37 x 61 at z = 1
    # as the static count (clipped by X); the per-tap fallback (k4 s2 d1: no window compacts)
    # X per real (output, tap) pair
    wl = emulate.concrete(gwl, dict(N=1, H=37, W=61, Ho=37, Wo=61))
    assert G.requested_bytes(wl, 4, generic=gwl) == G.requested_bytes(wl)
    gwl = Workload.make("pac", "conv_dk", dict(gwl.p, k=4, s=2, p=1), "float32")
    wl = emulate.concrete(gwl, dict(N=8, H=128, W=128, Ho=64, Wo=64))
    real = G._pac_real_pairs(128, 64, wl.p)
    assert real == 64 * 4 - 2  # (output, tap) pairs per axis: all but rows -1 and 128
    t = generic_dk_tile(gwl)
    tiles = -(-64 // t["ty"]) * -(-64 // t["tx"])
    do, dk, wt = 8 * 64 * 64 ** 2, 8 * 16 * 64 ** 2, 8 * tiles * 64 * 64 * 16
    assert G.requested_bytes(wl, 4, generic=gwl) == 4 * (do + 8 * 64 * real ** 2 + wt + dk)
    assert G.requested_bytes(wl, 4, generic=gwl) > 1.7 * G.requested_bytes(wl)  # 1.75x: why it stays static


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_generic_pac_conv_rows(monkeypatch):
    """The generic PAC conv's report row at 8x64x128x128 k5: 256 threads (8 output-channel x
    32 pixel threads), 128 tiles (4 x 32) x 8 images = 1,024 blocks, shared memory for xk, K
    (staged once per tile) and the Wt chunk, as the static SIMT build; no spills, and the
    no-cache estimate its FP32 FLOP time (1,289 MB requested: 385 us < 404 us)."""
    monkeypatch.setattr(G, "benchmark_workloads", lambda dtype="float32": {})
    layers = G.generic_workloads()
    monkeypatch.setattr(G, "generic_workloads", lambda dtype="float32": {
        k: v[:1] for k, v in layers.items() if k.startswith("PAC")})
    (r,) = G.rows(("sm_90",))
    assert (r["kernel"], r["threads"], r["blocks"], r["spill"]) == ("pac.conv", 256, 1024, 0)
    assert r["smem"] == (2 * 25 * 4 * 32 + 64 * 25) * 4
    assert r["requested"] < 1.35e9 and r["estimate"] == r["flops"] / G.FP32_SIMT


# --- ops.acda.whole: the generic builds' padded lengths at a static size (gpu_report's counts) ---

def test_acda_whole_is_the_symbolic_rounding():
    """``ops.acda.whole(n, q)`` equals ``_whole_vectors`` of a symbolic length bound to n (the
    rows / heights a generic build computes), n = 0 included (bounded below by one), and
    static lengths stay for ``_whole_vectors``."""
    from tvm import sym, tirx

    from dynfilter_tvm.ops import acda

    n = tirx.Var("n", "int32")
    for q in (acda.X_QUANTUM, acda.DX_ROWS, acda.ROW_TILE, acda.FWD_ROWS, 5):
        rounded = acda._whole_vectors(n, q)
        for size in (0, 1, 7, 8, 11, 12, 13, 14, 28, 31, 32, 33, 56, 60):
            ana = sym.Analyzer()
            ana.bind(n, tirx.const(size, "int32"))
            assert int(ana.simplify(rounded)) == acda.whole(size, q), (size, q)
        assert acda._whole_vectors(13, q) == 13
    assert (acda.whole(56, acda.DX_ROWS), acda.whole(56), acda.whole(5, acda.ROW_TILE)) == (60, 56, 8)
    assert acda.whole(7, acda.FWD_ROWS) == 8
