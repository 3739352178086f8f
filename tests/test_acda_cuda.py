"""CUDA builds of the ACDA kernels with the default schedules (no GPU needed), and, on a GPU,
the op against the float64 reference."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

from dynfilter_tvm.build import build
from dynfilter_tvm.target import cuda_target
from dynfilter_tvm.workload import Workload

KERNELS = ("fwd", "dx", "datoms")


def _p(N, C, H, W, M, T, k, s, d, p):
    return dict(N=N, C=C, H=H, W=W, M=M, T=T, k=k, s=s, d=d, p=p)


SHAPES = {
    "layer-k7": _p(2, 64, 20, 56, 6, 18, 7, 1, 1, 3),  # 32-pixel tiles, a tail tile, 8 slices
    "odd-s2-d2": _p(1, 5, 13, 11, 2, 4, 3, 2, 2, 2),
    "k5-wide-atoms": _p(1, 3, 9, 40, 8, 16, 5, 1, 1, 2),  # fewer pixels per tile (shared memory)
    "one-basis-one-atom": _p(1, 3, 5, 4, 1, 1, 3, 1, 1, 1),
    "unit-axes": _p(1, 1, 1, 1, 1, 1, 1, 1, 1, 0),
}


@pytest.fixture(scope="module")
def target():
    return cuda_target("sm_90")


def _source(kernel, shape, dtype, target) -> str:
    lib = build(Workload.make("acda", kernel, SHAPES[shape], dtype), target)
    assert list(lib.mod.imports), "no device module: the kernel was built host-only"
    return lib.mod.imports[0].inspect_source()


@pytest.mark.parametrize("dtype", ("float32", "float16", "bfloat16"))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_builds_device_code(kernel, shape, dtype, target):
    src = _source(kernel, shape, dtype, target)
    assert "__global__" in src
    if kernel == "fwd" and shape != "unit-axes":
        assert "__shared__" in src  # the atoms live in shared memory, not in global scratch


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("dtype", ("float32", "float16"))
def test_source_compiles_with_nvcc(dtype, target, tmp_path):
    for kernel in KERNELS:
        cu = tmp_path / f"{kernel}.cu"
        cu.write_text(_source(kernel, "layer-k7", dtype, target))
        cmd = ["nvcc", "-arch=sm_90", "-cubin", "-o", str(cu.with_suffix(".cubin")), str(cu)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, f"{kernel}: nvcc failed:\n{res.stderr[-3000:]}"


GPU_TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 3e-3, torch.bfloat16: 2e-2}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", list(GPU_TOL), ids=str)
@pytest.mark.parametrize("shape", SHAPES)
def test_gpu_matches_reference(shape, dtype):
    from torch_bridge.functional import acda_atom_conv2d
    from torch_bridge.reference import acda_atom_conv2d_reference
    from dynfilter_tvm.ops.common import conv_out_size

    N, C, H, W, M, T, k, s, d, p = SHAPES[shape].values()
    Ho, Wo = conv_out_size(H, k, s, p, d), conv_out_size(W, k, s, p, d)
    gen = torch.Generator().manual_seed(0)
    shapes = [(N, C, H, W), (N, M * T, Ho, Wo), (T, k, k), (N, C * M, Ho, Wo)]
    x, a, b, grad = (torch.randn(sh, generator=gen).to("cuda", dtype) for sh in shapes)
    ins = [t.clone().requires_grad_() for t in (x, a, b)]
    out = acda_atom_conv2d(*ins, s, p, d)
    got = (out, *torch.autograd.grad(out, ins, grad))
    ref_ins = [t.double().requires_grad_() for t in (x, a, b)]
    ref = acda_atom_conv2d_reference(*ref_ins, s, p, d)
    want = (ref, *torch.autograd.grad(ref, ref_ins, grad.double()))
    for name, g, w in zip(("out", "d_input", "d_coefficients", "d_bases"), got, want):
        assert g.dtype == dtype and g.shape == w.shape, name
        err = ((g.double() - w).abs().max() / w.abs().max().clamp_min(1e-30)).item()
        assert err <= GPU_TOL[dtype], f"{name}: relative error {err:.2e}"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ("sm_80", "sm_90"))
def test_dx_resources_at_benchmark_shape(arch):
    """Issue 15's aims for acda.dx at 8x64x56x56 k7 M = 6 float32 (ptxas figures and the
    report's arithmetic; estimates, no GPU): blocks of exactly 32 warps (``DX_ROWS_WHOLE_SM``)
    with runs of 5 pixels (the atoms' 35 registers), a channel per chunk, 15 pixels x 8 input
    rows (``_dx_rows``: 1,008 threads, dO and A staged once per 21 x 14 window, was 14 x 13 per
    8 x 7 pixels at 588 threads): no spills and at most 64 registers, so that one block fits
    an SM: 50% theoretical occupancy on both archs; requested bytes 108.0 MB (P 224 blocks x
    882 + A 8*6*18*92*74 + dO 8*64*6*92*74 elements; was 143.5 MB)."""
    from dynfilter_tvm import gpu_report as G
    from schedules.acda_cuda import dx_tile

    wl = Workload.make("acda", "dx", _p(8, 64, 56, 56, 6, 18, 7, 1, 1, 3), "float32")
    t = dx_tile(wl)
    assert (t["q"], t["tile"], t["rows"], t["parts"], t["cc"]) == (5, 15, 8, 42, 1)
    threads = t["parts"] * t["tile"] // t["q"] * t["rows"]
    assert threads == 1008
    res = G.ptxas_resources(build(wl, cuda_target(arch)).mod.imports[0].inspect_source(), arch)["acda_dx_kernel"]
    assert res["spill"] == 0 and res["regs"] <= 64, res
    assert G.occupancy(arch, threads, res["regs"], res["smem"]) >= 0.5
    assert G.requested_bytes(wl, 4, arch) == 4 * (224 * 882 + (8 * 6 * 18 + 8 * 64 * 6) * 92 * 74)


def test_dx_rows_window_banks():
    """dx over several input rows (``_dx_rows``): the staged window's strides put every tap
    load of a warp on distinct banks (or one word: a broadcast) at 8x64x56x56 k7 float32 (15 x
    8 rows, 3 runs of 5 per row, 32 warps: 32 wavefronts), where any other plane offset takes
    36; the model's own check, a row stride of 32 words, puts every row on one bank. The
    588-thread geometry (8 x 7 rows, 2 runs of 4, 19 warps, DX_ROWS_WHOLE_SM = 0): 19, where
    the plane offset rows * r - (k-1) * r took 24."""
    from schedules import acda_cuda
    from schedules.acda_cuda import _aligned, _dx_wavefronts, _plane_strides, dx_tile

    wl = Workload.make("acda", "dx", _p(8, 64, 56, 56, 6, 18, 7, 1, 1, 3), "float32")
    t = dx_tile(wl)
    row, plane = _plane_strides(t, 7, 1, t["tile"] + 6)
    assert (row % 32, plane % 32) == (3, 6)
    assert _dx_wavefronts(6, 7, t["rows"], 3, row, plane) == 32
    assert _dx_wavefronts(6, 7, t["rows"], 3, row, _aligned(row * 14, 32, 7)) == 36
    assert _dx_wavefronts(6, 7, t["rows"], 3, 32, 32 * 14) > 32 * 4
    saved = acda_cuda.DX_ROWS_WHOLE_SM
    try:
        acda_cuda.DX_ROWS_WHOLE_SM = 0
        t = dx_tile(wl)
    finally:
        acda_cuda.DX_ROWS_WHOLE_SM = saved
    assert (t["q"], t["tile"], t["rows"]) == (4, 8, 7)
    row, plane = _plane_strides(t, 7, 1, t["tile"] + 6)
    assert (row % 32, plane % 32) == (2, 6)
    assert _dx_wavefronts(6, 7, t["rows"], 2, row, plane) == 19
    assert _dx_wavefronts(6, 7, t["rows"], 2, row, row * 13 + (2 - row * 13) % 32) == 24


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ("sm_80", "sm_90"))
def test_fwd_aims_at_benchmark_shape(arch):
    """Issue 15's aims for acda.fwd at 8x64x56x56 k7 M = 6 float32 (ptxas figures and the
    report's arithmetic; estimates, no GPU): the rows schedule with the atoms built from
    staged A and P on both archs, 16 slices of 4 channels x 32 pixels = 512 threads, the two
    atom groups in parallel; no spills, at most 64 registers (2 blocks, 32 warps: 50%), static
    shared memory within 48 KiB, and requested bytes within 1.5x of the minimum and the
    estimate within 1.5x of the roofline (62.2 MB, 1.12x; 1.03x)."""
    from dynfilter_tvm import gpu_report as G
    from schedules.acda_cuda import fwd_rows_shape, fwd_staged_plan

    wl = Workload.make("acda", "fwd", _p(8, 64, 56, 56, 6, 18, 7, 1, 1, 3), "float32")
    target = cuda_target(arch)
    assert fwd_rows_shape(wl, target) == (32, 16, 4)
    assert fwd_staged_plan(wl, target) == dict(mi=3, passes=1, tile=32, blocks=896)
    res = G.ptxas_resources(build(wl, target).mod.imports[0].inspect_source(), arch)["acda_fwd_kernel"]
    assert res["spill"] == 0 and res["regs"] <= 64 and res["smem"] <= 48 * 1024, res
    assert G.occupancy(arch, 512, res["regs"], res["smem"]) >= 0.5
    req, least = G.requested_bytes(wl, 4, arch), G.min_bytes(wl, 4)
    roofline = max(least / G.H100_BW, G.flops(wl) / G.FP32_SIMT)
    assert req <= 1.15 * least and G.estimate_s(req, G.flops(wl), None) <= 1.5 * roofline


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ("sm_80", "sm_90"))
def test_datoms_aims_at_benchmark_shape(arch):
    """Issue 15's aims for acda.datoms at 8x64x56x56 k7 M = 6 float32 (ptxas figures and the
    report's arithmetic; estimates, no GPU): every tap row in one block (tiles of 28 pixels,
    2 atom groups x 7 tap rows x 28 pixels = 392 threads, dO staged once); no spills, 3
    blocks per SM (61%), requested bytes and the estimate within 1.2x (86.8 MB, 1.17x)."""
    from dynfilter_tvm import gpu_report as G
    from schedules.acda_cuda import datoms_block_tile

    wl = Workload.make("acda", "datoms", _p(8, 64, 56, 56, 6, 18, 7, 1, 1, 3), "float32")
    assert datoms_block_tile(wl) == dict(tile=28, mi=3, cc=4, threads=392, rows=1, groups=1)
    res = G.ptxas_resources(build(wl, cuda_target(arch)).mod.imports[0].inspect_source(), arch)["acda_datoms_kernel"]
    assert res["spill"] == 0, res
    assert G.occupancy(arch, 392, res["regs"], res["smem"]) >= 0.5, res
    req, least = G.requested_bytes(wl, 4, arch), G.min_bytes(wl, 4)
    roofline = max(least / G.H100_BW, G.flops(wl) / G.FP32_SIMT)
    assert req <= 1.2 * least and G.estimate_s(req, G.flops(wl), None) <= 1.2 * roofline


# the registered Ad-ResNets' narrow rows: (H, (tile, rows, groups, cc at float32)) at 8x64xHxH k7
DATOMS_NARROW = {28: (7, 4, 1, 8), 14: (14, 2, 1, 8), 7: (7, 7, 2, 1)}


@pytest.mark.parametrize("dtype", ("float32", "float16", "bfloat16"))
def test_datoms_narrow_rows_bytes(dtype):
    """Static datoms at output rows under DATOMS_MIN_ROW (28, 14, 7 pixels; 8 x C, k7, M = 6,
    T = 18) take the tap-block schedule (``_datoms_narrow``: several rows per block, at 7 the
    two atom groups in two blocks) and request at most the generic build's bytes
    (``gpu_report``; the register tile before: 10.8x / 11.9x / 12.8x the generic's)."""
    from dynfilter_tvm import gpu_report as G
    from schedules.acda_cuda import datoms_block_tile

    item = 4 if dtype == "float32" else 2
    for H, (tile, rows, groups, cc) in DATOMS_NARROW.items():
        for C in (64, 80):
            wl = Workload.make("acda", "datoms", _p(8, C, H, H, 6, 18, 7, 1, 1, 3), dtype)
            g = Workload.make("acda", "datoms", _p(None, C, None, None, 6, 18, 7, 1, 1, 3), dtype)
            for arch in ("sm_90", "sm_80"):
                static, gen = G.requested_bytes(wl, item, arch), G.requested_bytes(wl, item, arch, generic=g)
                assert static <= 0.81 * gen, (H, C, arch, static / gen)
            t = datoms_block_tile(wl)
            assert (t["tile"], t["rows"], t["groups"]) == (tile, rows, groups), (H, C, t)
            assert t["threads"] == 14 // groups * rows * tile <= 512


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ("sm_80", "sm_90"))
def test_datoms_narrow_rows_registers(arch):
    """ptxas on the narrow-row static datoms (8x64xHxH k7, float32 and float16): no spills and
    at least 50% occupancy (392 or 343 threads; at 7 pixels a channel per chunk, see
    ``datoms_block_tile``)."""
    from dynfilter_tvm import gpu_report as G
    from schedules.acda_cuda import datoms_block_tile

    for dtype in ("float32", "float16"):
        for H, (_, _, _, cc) in DATOMS_NARROW.items():
            wl = Workload.make("acda", "datoms", _p(8, 64, H, H, 6, 18, 7, 1, 1, 3), dtype)
            t = datoms_block_tile(wl)
            assert dtype != "float32" or t["cc"] == cc
            src = build(wl, cuda_target(arch)).mod.imports[0].inspect_source()
            assert "dO_shared" in src  # the tap-block schedule
            res = G.ptxas_resources(src, arch)["acda_datoms_kernel"]
            assert res["spill"] == 0, (dtype, H, res)
            assert G.occupancy(arch, t["threads"], res["regs"], res["smem"]) >= 0.5, (dtype, H, res)


def test_dx_rows_whole_sm_geometry():
    """dx blocks of exactly 32 warps (``DX_ROWS_WHOLE_SM``, one block per SM: 50% at <= 64
    registers) where their window elements are fewer than those of the <= 608-thread blocks:
    runs of 5 (``DX_RUN_WHOLE_SM``) or, where a row is too narrow for them, of 4; the shapes
    the PoCL checks run (tests/test_cuda_emulated.py, DX_ROWS_SHAPES) take what they claim."""
    from schedules import acda_cuda
    from schedules.acda_cuda import dx_tile

    cases = {(1, 2, 7, 57, 6, 6, 7, 1, 1, 3): (5, 30, 4, 588),  # (q, tile, rows, threads without)
             (1, 3, 11, 37, 6, 6, 7, 2, 1, 3): (4, 16, 6, 504),
             (8, 64, 56, 56, 6, 18, 7, 1, 1, 3): (5, 15, 8, 588)}
    for shape, (q, tile, rows, before) in cases.items():
        t = dx_tile(Workload.make("acda", "dx", _p(*shape), "float32"))
        assert (t["q"], t["tile"], t["rows"]) == (q, tile, rows), shape
        assert 992 < t["parts"] * t["tile"] // t["q"] * t["rows"] <= 1024
        saved = acda_cuda.DX_ROWS_WHOLE_SM
        try:
            acda_cuda.DX_ROWS_WHOLE_SM = 0
            t = dx_tile(Workload.make("acda", "dx", _p(*shape), "float32"))
        finally:
            acda_cuda.DX_ROWS_WHOLE_SM = saved
        assert t["parts"] * t["tile"] // t["q"] * t["rows"] == before, shape
    # float64 keeps a row per block; a row narrow enough for q = 1 keeps <= 512 threads
    assert dx_tile(Workload.make("acda", "dx", _p(8, 64, 56, 56, 6, 18, 7, 1, 1, 3), "float64"))["rows"] == 1
    t = dx_tile(Workload.make("acda", "dx", _p(2, 80, 14, 14, 6, 18, 7, 1, 1, 3), "float32"))
    assert t["q"] == 1 and t["parts"] * t["tile"] * t["rows"] <= 512
