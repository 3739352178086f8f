"""Shape-generic DDF kernels (B, H, W symbolic): one build serves every size.

The DDF op declares ``SYMBOLIC``; the tests set the generic shape mode explicitly (the default
on CPU, not on CUDA; see ``dynfilter_tvm.dispatch``). Checked: forward and all three gradients through the torch op at
several sizes against the float64 reference, with nothing built after the first size; static
mode still builds per shape; the CUDA schedules build for sm_90 with device code and run on
PoCL at several sizes from one lowering. The tiled generic CUDA kernels (fwd, ds, dc, dx at
any stride: fixed tiles, predicated tails) also at sizes smaller than one tile, not multiples of it and of several
tiles, in float32 and float64 both ways, with negative controls (a dropped barrier, the grid
one block short, the staged tile read shifted) and nvcc sm_90 / sm_80 builds without spills.
"""
from __future__ import annotations

import math
import re
import shutil

import pytest
import torch

from dynfilter_tvm import cache, dispatch, emulate, registry
from dynfilter_tvm.ops import ddf as ddf_ops
from dynfilter_tvm.workload import Workload
from schedules import ddf_cuda
from tests.ddf_cases import make_inputs

SIZES = [(1, 56, 56), (3, 37, 53), (1, 57, 61), (3, 1, 1), (1, 2, 3)]  # (B, H, W); 2x3 at s=3: 1x1 output


@pytest.fixture
def generic(monkeypatch):
    assert ddf_ops.SYMBOLIC == ("B", "H", "W")
    dispatch.set_shape_mode("generic")
    cache.clear_memory()
    yield
    dispatch.set_shape_mode(None)
    cache.clear_memory()


def _run(B, H, W, C, G, k, s, d, combine, dtype=torch.float64):
    from torch_bridge.functional import ddf
    from torch_bridge.reference import ddf_reference

    ins = make_inputs(B, C, H, W, G, k, s, d, dtype=dtype)
    out = ddf(*ins, kernel_size=k, dilation=d, stride=s, kernel_combine=combine)
    grad = torch.randn_like(out)
    got = (out, *torch.autograd.grad(out, ins, grad))
    ref_ins = [t.detach().double().requires_grad_() for t in ins]
    ref = ddf_reference(*ref_ins, kernel_size=k, dilation=d, stride=s, kernel_combine=combine)
    want = (ref, *torch.autograd.grad(ref, ref_ins, grad.double()))
    for name, a, b in zip(("out", "dx", "dc", "ds"), got, want):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a.double(), b, rtol=1e-9, atol=1e-9, msg=name)


# (C, G, k, s, d, combine)
PARAMS = [(8, 2, 3, 1, 1, "mul"), (6, 1, 5, 2, 2, "add"), (4, 4, 3, 3, 1, "mul")]


@pytest.mark.parametrize("C,G,k,s,d,combine", PARAMS, ids=lambda v: str(v))
def test_one_build_serves_every_size(generic, C, G, k, s, d, combine):
    _run(*SIZES[0], C, G, k, s, d, combine)
    fetched = cache.stats["built"] + cache.stats["disk_hits"]  # (a warm disk cache loads, not builds)
    for B, H, W in SIZES[1:]:
        _run(B, H, W, C, G, k, s, d, combine)
    assert cache.stats["built"] + cache.stats["disk_hits"] == fetched, "a later size took a kernel of its own"


def test_float32_generic(generic):
    for B, H, W in SIZES[:3]:
        from torch_bridge.functional import ddf
        from torch_bridge.reference import ddf_reference

        ins = make_inputs(B, 8, H, W, 2, 3, 1, 1, dtype=torch.float32, requires_grad=False)
        torch.testing.assert_close(ddf(*ins, 3), ddf_reference(*ins, 3), rtol=1e-4, atol=1e-4)


def test_static_mode_builds_per_shape(generic):
    dispatch.set_shape_mode("static")
    _run(1, 9, 11, 8, 2, 3, 1, 1, "mul")
    fetched = cache.stats["built"] + cache.stats["disk_hits"]  # (a warm disk cache may hold them)
    _run(1, 10, 11, 8, 2, 3, 1, 1, "mul")
    assert cache.stats["built"] + cache.stats["disk_hits"] == fetched + 4  # fwd, dx, ds, dc at the new shape


# (B, H, W, C, G, combine): even H; 4, 3 and 2 channels per head (tiles of 4, 1, 2 channels)
@pytest.mark.parametrize("B,H,W,C,G,combine", [(1, 6, 37, 8, 2, "mul"), (2, 4, 18, 6, 2, "add"),
                                               (1, 2, 56, 2, 1, "mul")], ids=str)
def test_static_fwd_row_pairs(generic, B, H, W, C, G, combine):
    """The static CPU fwd at k = 7 (stride 1, even H) in register tiles of two rows
    (schedules/ddf_cpu.py ``_static_rows``): forward and gradients, float64 and float32."""
    from schedules import ddf_cpu
    from torch_bridge.functional import ddf
    from torch_bridge.reference import ddf_reference

    dispatch.set_shape_mode("static")
    p = dict(B=B, C=C, H=H, W=W, G=G, k=7, s=1, d=1, combine=combine)
    assert ddf_cpu._static_rows(Workload.make("ddf", "fwd", p, "float32"), H) == 2
    assert ddf_cpu._static_rows(Workload.make("ddf", "fwd", dict(p, H=H + 1), "float32"), H + 1) == 1
    _run(B, H, W, C, G, 7, 1, 1, combine)
    ins = make_inputs(B, C, H, W, G, 7, 1, 1, dtype=torch.float32, requires_grad=False)
    torch.testing.assert_close(ddf(*ins, 7, kernel_combine=combine), ddf_reference(*ins, 7, kernel_combine=combine),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_generic_cpu_fwd_row_pairs(dtype):
    """The generic CPU fwd at k = 7 (stride 1) with the tap loop v outside, u unrolled
    (schedules/ddf_cpu.py ``_row_pairs``): against the float64 reference with NaN-filled
    outputs at odd and even H and widths with whole, partial and dead pieces."""
    import numpy as np
    import tvm

    from dynfilter_tvm.build import build
    from dynfilter_tvm.target import cpu_target
    from schedules import ddf_cpu

    wl = _generic_wl("fwd", 8, 2, 7, 1, 1, "mul", dtype)
    assert ddf_cpu._row_pairs(wl) and not ddf_cpu._row_pairs(_generic_wl("fwd", 8, 2, 7, 2, 1, "mul", dtype))
    lib = build(wl, cpu_target())
    tol = 1e-5 if dtype == "float32" else 1e-10
    for B, H, W in ((1, 1, 1), (2, 3, 5), (1, 2, 8), (1, 5, 14), (2, 4, 17), (1, 3, 24), (1, 6, 31), (1, 2, 56), (1, 3, 61)):
        p = dict(B=B, C=8, H=H, W=W, G=2, k=7, s=1, d=1, combine="mul")
        rng = np.random.default_rng(B * 1000 + H * 100 + W)
        ins = [rng.standard_normal(shape).astype(dtype)
               for shape in ((B, 2, 4, H, W), (B, 2, 7, 7, H, W), (B, 2, 4, 7, 7))]
        args = [tvm.runtime.tensor(a) for a in (*ins, np.full((B, 2, 4, H, W), np.nan, dtype))]
        lib(*args)
        np.testing.assert_allclose(args[-1].numpy(), emulate.reference(Workload.make("ddf", "fwd", p, dtype), ins),
                                   rtol=tol, atol=tol, err_msg=f"{B}x{H}x{W}")


def test_dispatch_selects_generic(generic):
    from dynfilter_tvm.target import cpu_target

    wl = Workload.make("ddf", "fwd", dict(B=2, C=8, H=9, W=11, G=2, k=3, s=1, d=1, combine="mul"), "float32")
    assert dispatch.select(wl, cpu_target()).p["H"] is None
    dispatch.set_shape_mode("static")
    assert dispatch.select(wl, cpu_target()) is wl


def test_default_mode_by_target(monkeypatch):
    from dynfilter_tvm.target import cpu_target, cuda_target

    wl = Workload.make("ddf", "fwd", dict(B=2, C=8, H=9, W=11, G=2, k=3, s=1, d=1, combine="mul"), "float32")
    dispatch.set_shape_mode(None)
    monkeypatch.delenv(dispatch.ENV_SHAPES, raising=False)
    # nothing set: generic on CPU (one build for every size); on CUDA generic for DDF, ACDA and
    # PAC where their generic builds serve well (DDF: 1 < k <= 7, dx at gcd(s, d) = 1), else static
    assert dispatch.shape_mode(cpu_target()) == "generic"
    assert dispatch.select(wl, cpu_target()).kind == "generic"
    cuda = cuda_target("sm_90")
    assert dispatch.shape_mode(cuda) == "static"
    assert all(dispatch.shape_mode(cuda, op) == "generic" for op in ("ddf", "acda", "pac"))
    assert dispatch.select(wl, cuda).kind == "generic"
    for kernel in ("dx", "ds", "dc"):
        assert dispatch.select(Workload.make("ddf", kernel, wl.p, "float32"), cuda).kind == "generic"
    for p in (dict(k=1), dict(k=9), dict(s=2, d=2), dict(k=5, d=2)):  # the generic builds' per-output cases
        odd = Workload.make("ddf", "dx", dict(wl.p, **p), "float32")
        assert dispatch.select(odd, cuda) is odd, p
        assert dispatch.select(odd, cpu_target()).kind == "generic"  # (CPU: every case)
    # (ACDA's dx keeps the static build on CUDA: its generic one is not tiled; test_generic_acda)
    acda = Workload.make("acda", "dx", dict(N=1, C=12, H=9, W=11, M=6, T=18, k=7, s=1, d=1, p=3), "float32")
    assert dispatch.select(acda, cuda) is acda
    # the environment overrides the target's default, either way (generic: every case)
    monkeypatch.setenv(dispatch.ENV_SHAPES, "generic")
    assert dispatch.select(acda, cuda).kind == "generic"
    odd = Workload.make("ddf", "dx", dict(wl.p, k=9), "float32")
    assert dispatch.select(odd, cuda).kind == "generic"
    monkeypatch.setenv(dispatch.ENV_SHAPES, "static")
    assert dispatch.select(wl, cuda) is wl
    monkeypatch.setenv(dispatch.ENV_SHAPES, "static")
    assert dispatch.select(wl, cpu_target()) is wl
    monkeypatch.setenv(dispatch.ENV_SHAPES, "dynamic")
    with pytest.raises(ValueError, match="DYNFILTER_TVM_SHAPES must be one of"):
        dispatch.shape_mode(cpu_target())


def _generic_wl(kernel, C, G, k, s, d, combine, dtype):
    return Workload.make("ddf", kernel, dict(B=None, C=C, H=None, W=None, G=G, k=k, s=s, d=d, combine=combine),
                         dtype)


@pytest.mark.parametrize("kernel", ("fwd", "dx"))
@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_generic_cpu_avx2(kernel, dtype):
    """The generic fwd and dx (stride 1) built for a CPU without AVX-512 ('haswell': 8-lane
    float32 tiles, which once stored their rows' ends in 4-lane pieces, wrong near the row's
    end) against the float64 reference, at widths around the 8- and 16-pixel tiles."""
    import numpy as np
    import tvm
    from tvm.target import Target

    from dynfilter_tvm.build import build

    target = Target({"kind": "llvm", "mcpu": "haswell"})
    for k, d, combine in ((3, 1, "mul"), (5, 2, "add")):
        lib = build(_generic_wl(kernel, 8, 2, k, 1, d, combine, dtype), target)
        for B, H, W in ((1, 1, 1), (2, 7, 9), (1, 13, 17), (1, 6, 33), (2, 5, 50)):
            wl = Workload.make("ddf", kernel, dict(B=B, C=8, H=H, W=W, G=2, k=k, s=1, d=d, combine=combine), dtype)
            rng = np.random.default_rng(B * 1000 + H * 100 + W)
            ins = [rng.standard_normal(shape).astype(dtype)
                   for shape in ((B, 2, 4, H, W), (B, 2, k, k, H, W), (B, 2, 4, k, k))]
            args = [tvm.runtime.tensor(a) for a in (*ins, np.zeros((B, 2, 4, H, W), dtype))]
            lib(*args)
            np.testing.assert_allclose(args[-1].numpy(), emulate.reference(wl, ins),
                                       rtol=1e-5 if dtype == "float32" else 1e-12,
                                       atol=1e-5 if dtype == "float32" else 1e-12, err_msg=f"{k} {B}x{H}x{W}")


@pytest.mark.parametrize("kernel", ("fwd", "dx"))
def test_generic_cpu_guarded_pieces(kernel):
    """The generic fwd and dx (stride 1) with 16-lane float32 tiles (AVX-512) store 'out' in
    8-lane pieces, each guarded as a whole (``schedules.common.guard_pieces``): a second,
    unpredicated 'out' block for the whole pieces, and a tile's partial last piece as the 8
    lanes ending at the row's end (``shift``: one copy per count of live lanes). Run (where the host has AVX-512) against the
    float64 reference with NaN-filled outputs at widths with whole, partial and dead pieces."""
    from tvm.target import Target, codegen

    from dynfilter_tvm.build import build, schedule
    from dynfilter_tvm.target import cpu_target

    host = cpu_target()
    target = host if codegen.target_has_features("avx512f", host) else Target(
        {"kind": "llvm", "mcpu": "skylake-avx512"})
    wl = _generic_wl(kernel, 8, 2, 3, 1, 1, "mul", "float32")
    # whole pieces, the partial one's 7 shifted copies (a last piece with 1..7 live lanes
    # stores the 8 lanes ending at the row's end), the predicated one; fwd's twice, as a
    # tile whose row ends in its first 8 lanes computes those only (``halve_last_tile``)
    script = schedule(wl, target, tuned=False)[0].script()
    copies = {"fwd": 2, "dx": 1}[kernel]
    assert script.count('T.sblock("out")') == 9 * copies
    assert script.count('T.sblock("acc_update")') == copies
    if target is not host:
        pytest.skip("the host has no AVX-512: checked the schedule only")
    _matches_reference(build(wl, target), kernel, (
        (1, 1, 1), (2, 3, 5), (1, 2, 8), (1, 3, 9), (1, 2, 10), (1, 3, 11), (2, 2, 12), (2, 5, 14), (1, 3, 15),
        (1, 4, 16), (1, 3, 24), (1, 2, 27), (1, 5, 29), (1, 2, 31), (2, 3, 32), (1, 3, 37), (1, 3, 44), (1, 2, 53),
        (1, 3, 56), (1, 4, 61)))


def _matches_reference(lib, kernel, sizes):
    """The float32 k3 G = 2 C = 8 build ``lib`` against the float64 reference at each (B, H, W),
    its output NaN-filled (an unwritten pixel fails)."""
    import numpy as np
    import tvm

    for B, H, W in sizes:
        p = dict(B=B, C=8, H=H, W=W, G=2, k=3, s=1, d=1, combine="mul")
        rng = np.random.default_rng(B * 1000 + H * 100 + W)
        ins = [rng.standard_normal(shape).astype("float32")
               for shape in ((B, 2, 4, H, W), (B, 2, 3, 3, H, W), (B, 2, 4, 3, 3))]
        args = [tvm.runtime.tensor(a) for a in (*ins, np.full((B, 2, 4, H, W), np.nan, "float32"))]
        lib(*args)
        np.testing.assert_allclose(args[-1].numpy(), emulate.reference(Workload.make("ddf", kernel, p, "float32"), ins),
                                   rtol=1e-5, atol=1e-5, err_msg=f"{B}x{H}x{W}")


@pytest.mark.parametrize("dtype,mcpu,ct,lanes", [("float32", "skylake-avx512", 4, 16), ("float64", "skylake-avx512", 4, 8),
                                                  ("float32", "haswell", 2, 16), ("float64", "haswell", 4, 4)])
@pytest.mark.parametrize("k", (3, 7))
def test_generic_cpu_dx_tile_constant_size(dtype, mcpu, ct, lanes, k):
    """The generic dx's register tile 'acc' (stride 1) compacts to a constant size
    (``schedules.ddf_cpu._pair_layout``: laid out by row pairs), a stack buffer that LLVM
    keeps in registers, for 16-lane tiles stored in pieces and for the narrower ones stored
    whole (float64, AVX2). Over the plain rows compaction left min(H, 2) rows, a heap
    workspace per plane. Checked on the schedule after TVM's compaction pass (no build); its
    results are checked by test_generic_cpu_guarded_pieces, test_generic_cpu_avx2 and
    test_generic_cpu_dx_border_fill (odd H included)."""
    import tvm
    from tvm import s_tir
    from tvm.target import Target

    from dynfilter_tvm.build import schedule

    wl = _generic_wl("dx", 8, 2, k, 1, 1, "mul", dtype)
    mod = schedule(wl, Target({"kind": "llvm", "mcpu": mcpu}), tuned=False)[0]
    mod = tvm.ir.transform.Sequential([
        s_tir.transform.LowerInitBlock(), s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
        s_tir.transform.ConvertBlocksToOpaque(), s_tir.transform.CompactBufferAllocation()])(mod)
    shapes = re.findall(r"^\s*acc = T\.\w*alloc_buffer\(\(([^)]*)\)", mod.script(), re.M)
    assert len(shapes) == 1, shapes
    if k >= 7 and mcpu == "haswell":  # AVX2 float32: 16-lane tiles at k < 7 only (_generic_tile)
        ct, lanes = 4, (lanes // 2 if dtype == "float32" else lanes)
    assert shapes[0].replace(" ", "") == f"1,1,{ct},1,1,2,{lanes}"  # was 1, 1, 4, T.min(H, 2), ...


@pytest.mark.parametrize("kernel", ("fwd", "dx"))
@pytest.mark.parametrize("mcpu", ("haswell", "znver3"))
def test_generic_cpu_avx2_tiles(kernel, mcpu):
    """float32 generic fwd and dx (stride 1) on AVX2 targets (no AVX-512): register tiles of
    16 lanes (two 8-lane vectors, the rows' FWD_ROW_QUANTUM) x 2 channels x 2 rows, stored
    in 8-lane pieces guarded as a whole as with AVX-512 (``schedules.ddf_cpu._generic_tile``).
    The 8-lane tiles they replace stored whole, the row's last tile predicated (scalar).
    Checked on the schedule ('out' blocks: the guarded pieces and the 7 shifted ones; the
    compacted tile), then the haswell build against the float64 reference with NaN-filled
    outputs at widths with whole, partial and dead pieces."""
    import tvm
    from tvm import s_tir
    from tvm.target import Target

    from dynfilter_tvm.build import build, schedule

    target = Target({"kind": "llvm", "mcpu": mcpu})
    wl = _generic_wl(kernel, 8, 2, 3, 1, 1, "mul", "float32")
    mod = schedule(wl, target, tuned=False)[0]
    assert mod.script().count('T.sblock("out")') == {"fwd": 18, "dx": 9}[kernel]  # fwd's twice: halve_last_tile
    mod = tvm.ir.transform.Sequential([
        s_tir.transform.LowerInitBlock(), s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
        s_tir.transform.ConvertBlocksToOpaque(), s_tir.transform.CompactBufferAllocation()])(mod)
    shapes = re.findall(r"^\s*acc = T\.\w*alloc_buffer\(\(([^)]*)\)", mod.script(), re.M)
    # (b, g, channel, row, tile, lane); dx's by row pairs (b, g, channel, pair, tile, row, lane)
    assert [sh.replace(" ", "") for sh in shapes] == [dict(fwd="1,1,2,2,1,16", dx="1,1,2,1,1,2,16")[kernel]], shapes
    if mcpu != "haswell":
        return
    _matches_reference(build(wl, target), kernel, (
        (1, 1, 1), (2, 3, 5), (1, 2, 8), (1, 3, 9), (1, 3, 15), (1, 4, 16), (1, 2, 17), (2, 5, 14), (1, 3, 24),
        (1, 5, 29), (2, 3, 32), (1, 3, 37), (1, 3, 56), (1, 4, 61)))


@pytest.mark.parametrize("dtype", ("float32", "float64"))
@pytest.mark.parametrize("kernel,copy", [("fwd", "Xpad"), ("dx", "dOp")])
def test_generic_cpu_overlap_rows(kernel, copy, dtype):
    """The generic fwd's X and dx's dO padded copies (``schedules.ddf_cpu._overlap_rows``):
    each row as a first whole vector, a loop over the other whole ones, an overlapping last
    vector ending at the row's end, or a scalar loop for rows under one vector (the copy
    block four times in the schedule).
    Against the float64 reference with NaN-filled outputs at every width 1-19 and a few past
    (a last vector one pixel short or off leaves a padded zero where X or dO belongs)."""
    import numpy as np
    import tvm

    from dynfilter_tvm.build import build, schedule
    from dynfilter_tvm.target import cpu_target

    target = cpu_target()
    wl = _generic_wl(kernel, 8, 2, 3, 1, 1, "mul", dtype)
    assert schedule(wl, target, tuned=False)[0].script().count(f'T.sblock("{copy}")') == 4
    lib = build(wl, target)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for W in (*range(1, 20), 23, 31, 33):
        B, H = 1 + W % 2, 1 + W % 5
        p = dict(B=B, C=8, H=H, W=W, G=2, k=3, s=1, d=1, combine="mul")
        rng = np.random.default_rng(W)
        ins = [rng.standard_normal(shape).astype(dtype)
               for shape in ((B, 2, 4, H, W), (B, 2, 3, 3, H, W), (B, 2, 4, 3, 3))]
        args = [tvm.runtime.tensor(a) for a in (*ins, np.full((B, 2, 4, H, W), np.nan, dtype))]
        lib(*args)
        np.testing.assert_allclose(args[-1].numpy(), emulate.reference(Workload.make("ddf", kernel, p, dtype), ins),
                                   rtol=tol, atol=tol, err_msg=f"{B}x{H}x{W}")


@pytest.mark.parametrize("k,d,dtype,quantum", [(3, 1, "float32", None), (7, 1, "float32", None), (3, 2, "float64", None),
                                               (5, 1, "float64", None), (3, 1, "float32", 1)])
def test_generic_cpu_dx_border_fill(k, d, dtype, quantum, monkeypatch):
    """The generic dx's dO padded copy's zero fill on the border only
    (``schedules.ddf_cpu._border_fill``): whole zero rows above and below the data, per data
    row the left pad and the right one in vectors counted back from the row's end (clamped at
    0: k = 7 at W = 1 in float32), in the copy's row loop: as many unrolled vectors as the
    widest right pad of dx's grid needs (FWD_ROW_QUANTUM - 1 + p pixels, checked against
    ``dx_grid``'s rows), a loop for any more (``quantum``: the schedule's count taken for a
    row quantum of 1, so one unrolled vector, and the loop runs where W mod 16 is 1..7).
    Against the float64 reference with
    NaN-filled outputs at every width 1-19 and a few past, two planes per batch, so a zero
    left out reads the workspace's previous plane (or call): a wrong dX where it is read."""
    import numpy as np
    import tvm

    from dynfilter_tvm.build import build, schedule
    from dynfilter_tvm.target import cpu_target

    from schedules import ddf_cpu

    target = cpu_target()
    wl = _generic_wl("dx", 8, 2, k, 1, d, "mul", dtype)
    if quantum:
        monkeypatch.setattr(ddf_cpu, "FWD_ROW_QUANTUM", quantum)
    script = schedule(wl, target, tuned=False)[0].script()
    p = (k - 1) * d // 2
    lanes = 8 if dtype == "float32" else 4
    q = ddf_ops.FWD_ROW_QUANTUM
    fixed = -(-((quantum or q) - 1 + p) // lanes)
    # the widest right pad of dx's grid fits the unrolled vectors (else the loop is needed)
    assert (max(q * -(-W // q) - W + p for W in range(1, 70)) <= fixed * lanes) == (quantum is None)
    # above, below (each vectors and a last one), the data rows' left pad, the right one's
    # unrolled vectors and loop
    assert script.count('T.sblock("dOp_pad_const")') == 6 + fixed and script.count('T.sblock("dOp")') == 4
    lib = build(wl, target)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for W in (*range(1, 20), 23, 31, 33):
        B, H = 1 + W % 2, 1 + W % 5
        p = dict(B=B, C=8, H=H, W=W, G=2, k=k, s=1, d=d, combine="mul")
        rng = np.random.default_rng(W)
        ins = [rng.standard_normal(shape).astype(dtype)
               for shape in ((B, 2, 4, H, W), (B, 2, k, k, H, W), (B, 2, 4, k, k))]
        args = [tvm.runtime.tensor(a) for a in (*ins, np.full((B, 2, 4, H, W), np.nan, dtype))]
        lib(*args)
        np.testing.assert_allclose(args[-1].numpy(), emulate.reference(Workload.make("ddf", "dx", p, dtype), ins),
                                   rtol=tol, atol=tol, err_msg=f"{B}x{H}x{W}")


def _block_predicated(script: str, name: str) -> list:
    """For each realize of block ``name`` in a TVMScript, whether it carries a T.where."""
    parts = script.split("with T.sblock(")[1:]
    return ["T.where(" in part.split("\n", 1)[1].split("with T.sblock(")[0].split("T.writes(")[0]
            for part in parts if part.startswith(f'"{name}")')]


@pytest.mark.parametrize("kernel", ("ds", "dc"))
@pytest.mark.parametrize("k,s,d,combine", [(3, 1, 1, "mul"), (3, 1, 1, "add"), (5, 2, 2, "add"), (3, 2, 1, "mul")])
def test_generic_cpu_grad_copies(kernel, k, s, d, combine):
    """The generic ds's and dc's copies: dO's widened rows (``schedules.ddf_cpu._widened_rows``:
    per row the zeros past it as vectors back from the row's end, then whole vectors and an
    overlapping last one, no predicated copy) and, at stride 1, X's padded plane (the zero
    border around the rows' interiors, ``_overlap_rows`` with its fill). 'add', without S's
    zeros, needs dO's zeros in dc. Against the float64 reference with NaN-filled outputs,
    at widths below, at and past multiples of the 8-lane vectors."""
    import numpy as np

    from dynfilter_tvm.build import build, schedule
    from dynfilter_tvm.target import cpu_target

    target = cpu_target()
    wl = _generic_wl(kernel, 8, 2, k, s, d, combine, "float32")
    script = schedule(wl, target, tuned=False)[0].script()
    assert _block_predicated(script, "dOpad_pad_const") and not any(_block_predicated(script, "dOpad_pad_const"))
    assert _block_predicated(script, "dOpad") and not any(_block_predicated(script, "dOpad"))
    assert "(j + 1) * 8, 0)" in script  # the zeros counted back from the row's end
    if s == 1:  # X's zero border stored around the interior copy, no whole-plane fill
        assert "ax0_ax1_fused" not in script and "for y in range(H + 2 - 1 - H)" in script
    lib = build(wl, target)
    for B, H, W in ((1, 1, 1), (2, 3, 7), (1, 4, 8), (1, 3, 9), (2, 5, 16), (1, 2, 17), (1, 3, 33)):
        ins, args = _nan_filled_args(kernel, B, H, W, k, s, "float32", B * 1000 + H * 100 + W)
        lib(*args)
        p = dict(B=B, C=8, H=H, W=W, G=2, k=k, s=s, d=d, combine=combine)
        np.testing.assert_allclose(args[-1].numpy(), emulate.reference(Workload.make("ddf", kernel, p, "float32"), ins),
                                   rtol=1e-4, atol=1e-4, err_msg=f"{B}x{H}x{W}")


@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_generic_cpu_ds_in_place(dtype):
    """The generic ds reads dO in place where the row holds a whole vector
    (``schedules.ddf_cpu._in_place_tiles``: whole tiles, then the partial last one shifted back
    to end at the row's end; a branch on W keeps dO's widened copy for shorter rows). Against
    the float64 reference with NaN-filled outputs at every width from 1 to 19 and at 33, with
    stride 1 and 2 (float64: 4-lane vectors, so rows past the last partial tile hold tiles
    that are skipped)."""
    import numpy as np

    from dynfilter_tvm.build import build, schedule
    from dynfilter_tvm.target import cpu_target

    target = cpu_target()
    lanes = 4 if dtype == "float64" else 8
    for k, s, d, combine in ((3, 1, 1, "mul"), (3, 2, 1, "add")):
        wl = _generic_wl("ds", 8, 2, k, s, d, combine, dtype)
        script = schedule(wl, target, tuned=False)[0].script()
        wo = "W" if s == 1 else "(W + 1) // 2"  # the output row's width
        assert f"if {wo} >= {lanes}:" in script and f"if {wo} < {lanes}:" in script
        assert "+ dO[v_b, v_g, v_c, v_y, v_x]" in script  # the tiles' reads of dO, in place
        lib = build(wl, target)
        for W in (*range(1, 20), 33):
            B, H = 1 + W % 2, 2 + W % 3
            ins, args = _nan_filled_args("ds", B, H, W, k, s, dtype, W)
            lib(*args)
            p = dict(B=B, C=8, H=H, W=W, G=2, k=k, s=s, d=d, combine=combine)
            tol = 1e-4 if dtype == "float32" else 1e-10
            np.testing.assert_allclose(args[-1].numpy(), emulate.reference(Workload.make("ddf", "ds", p, dtype), ins),
                                       rtol=tol, atol=tol, err_msg=f"k{k} s{s} {B}x{H}x{W}")


# each kernel's inputs and output (C = 8 channels in G = 2 heads)
KERNEL_IO = {"fwd": (("X", "S", "C"), "O"), "dx": (("dO", "S", "C"), "X"), "ds": (("dO", "X", "C"), "S"),
             "dc": (("dO", "X", "S"), "C")}


def _nan_filled_args(kernel, B, H, W, k, s, dtype, seed):
    """Random inputs of ``kernel`` at B x H x W (C = 8, G = 2, stride s), and the call's
    arguments: the inputs and the output NaN-filled, so an unwritten element fails."""
    import numpy as np
    import tvm

    Ho, Wo = -(-H // s), -(-W // s)
    shapes = {"X": (B, 2, 4, H, W), "S": (B, 2, k, k, Ho, Wo), "C": (B, 2, 4, k, k), "dO": (B, 2, 4, Ho, Wo),
              "O": (B, 2, 4, Ho, Wo)}
    names, out = KERNEL_IO[kernel]
    rng = np.random.default_rng(seed)
    ins = [rng.standard_normal(shapes[n]).astype(dtype) for n in names]
    return ins, [tvm.runtime.tensor(a) for a in (*ins, np.full(shapes[out], np.nan, dtype))]


@pytest.mark.parametrize("dtype", ("float32", "float64"))
@pytest.mark.parametrize("kernel", ("fwd", "ds", "dc"))
def test_generic_cpu_phase_pad(kernel, dtype):
    """The generic fwd, ds and dc at stride > 1 lay X's padded rows out phase-major
    (``schedules.ddf_cpu._phase_pad_copy``) with a padding element past the row's end, whose
    pad-value block ``transform_layout`` placed at the root is removed (``_drop_padding_nest``:
    never read; kept, it scanned the whole call's X and kept the per-plane copy from being
    compacted); its copy runs over groups of s pixels, the phases inside, and in rows of
    a vector's count of groups or more (``_phase_copy_rows``) as blocks of that many groups
    (s contiguous loads, each phase a shuffle of them), the last block overlapping the one
    before, the partial group as before; its zero fill on the border only
    (``_phase_border_fill``: whole rows above and below the data, per data row and phase the
    left pad and vectors counted back from the phase row's end). Against the float64
    reference with NaN-filled outputs at widths around the vectors and blocks, for rows of
    either parity against s, and planes holding fewer padded rows than X has."""
    import numpy as np

    from dynfilter_tvm.build import build, schedule
    from dynfilter_tvm.target import cpu_target

    target = cpu_target()
    tol = 1e-4 if dtype == "float32" else 1e-12
    for k, s, d, combine in ((3, 2, 1, "mul"), (5, 3, 1, "add"), (3, 3, 1, "mul"), (3, 2, 2, "mul")):
        wl = _generic_wl(kernel, 8, 2, k, s, d, combine, dtype)
        lines = schedule(wl, target, tuned=False)[0].script().splitlines()
        assert not any("_padding" in line for line in lines)
        # the copy per s pixels, the phases unrolled innermost (contiguous reads), kept for
        # short rows and the partial group; longer rows in blocks of shuffled vectors
        copies = [i for i, line in enumerate(lines) if 'T.sblock("Xpad")' in line]
        assert any(f"in T.unroll({s}):" in lines[i - 1] for i in copies)
        assert sum("T.Shuffle([X[" in line for line in lines) == 2 * s  # the blocks and the overlapping one
        assert sum('T.sblock("Xpad_pad_const")' in line for line in lines) > 4 * s  # pad rows, data rows' pads
        lib = build(wl, target)
        # (heights too: fwd's plane may hold fewer padded rows than X's, 6 at 6 x 32 k3 s3)
        for W in (1, 2, 7, 16, 17, 18, 23, 24, 25, 32, 33, 49):
            B, H = 1 + W % 2, 1 + 3 * W % 7
            ins, args = _nan_filled_args(kernel, B, H, W, k, s, dtype, W)
            lib(*args)
            p = dict(B=B, C=8, H=H, W=W, G=2, k=k, s=s, d=d, combine=combine)
            np.testing.assert_allclose(args[-1].numpy(), emulate.reference(Workload.make("ddf", kernel, p, dtype), ins),
                                       rtol=tol, atol=tol, err_msg=f"k{k} s{s} d{d} {B}x{H}x{W}")


@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_generic_cpu_dx_phase_stores(dtype):
    """The generic dx at stride s > 1 stores each phase of its tile as one vector, s apart
    into dX (``schedules.ddf_cpu._phase_stores``: 'out' split by s, the phases unrolled
    outside a vectorized loop), where TVM accepts it (a grid shifted by p mod s != 0: k3 s2,
    k3 s3, k7 s2), and keeps the plain loop where it refuses (k5 s2: the schedule must still
    build). Against the float64 reference with NaN-filled outputs at widths around the
    vectors and both parities. (The structure as scheduled for an AVX2 target: on AVX-512 ones
    the split 'out' is then rewritten, test_generic_cpu_dx_phase_rows_masked.)"""
    import numpy as np
    from tvm.target import Target

    from dynfilter_tvm.build import build, schedule
    from dynfilter_tvm.target import cpu_target

    target = cpu_target()
    tol = 1e-4 if dtype == "float32" else 1e-12
    for k, s, d, split in ((3, 2, 1, True), (3, 3, 1, True), (7, 2, 1, True), (5, 2, 1, False)):
        wl = _generic_wl("dx", 8, 2, k, s, d, "mul", dtype)
        lines = schedule(wl, Target({"kind": "llvm", "mcpu": "haswell"}), tuned=False)[0].script().splitlines()
        at = next(i for i, line in enumerate(lines) if 'T.sblock("out")' in line)
        assert ("T.vectorized" in lines[at - 1] and f"in T.unroll({s}):" in lines[at - 2]) == split, (k, s, d)
        lib = build(wl, target)
        for W in (1, 2, 5, 16, 17, 31, 34, 49):
            B, H = 1 + W % 2, 1 + W % 7
            ins, args = _nan_filled_args("dx", B, H, W, k, s, dtype, W)
            lib(*args)
            p = dict(B=B, C=8, H=H, W=W, G=2, k=k, s=s, d=d, combine="mul")
            np.testing.assert_allclose(args[-1].numpy(), emulate.reference(Workload.make("ddf", "dx", p, dtype), ins),
                                       rtol=tol, atol=tol, err_msg=f"k{k} s{s} d{d} {B}x{H}x{W}")


@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_generic_cpu_dx_phase_rows_masked(dtype):
    """The generic dx at stride s > 1 (``schedules.ddf_cpu``): S's taps gathered tile-major,
    only S's own taps read (``_taps_in_bounds``: a phase's masked taps index past S's k x k
    planes); the tile 'acc' of a constant size (it was a symbolic min(H // 2 + 1, 1) * 2
    rows); on AVX-512 targets a tile row stored as s contiguous vectors, each a shuffle of the
    phase vectors, the row's last tile with a lane mask (``_phase_rows_out``). Checked on the
    schedule for an AVX-512 target, and run on this host (whichever path its target takes)
    against the float64 reference at widths 1-21 and a few more, dX NaN-filled inside a
    buffer whose elements before and after it hold a sentinel: an unwritten pixel, a wrong
    one and a store past dX (a mask one lane too wide: the next row's first pixel, after
    that row's first tile was stored, or past the buffer) all fail."""
    import numpy as np
    import tvm
    from tvm import s_tir
    from tvm.target import Target

    from dynfilter_tvm.build import build, schedule
    from dynfilter_tvm.target import cpu_target

    tol = 1e-4 if dtype == "float32" else 1e-12
    for k, s, d, rewritten in ((3, 2, 1, True), (3, 3, 1, True), (7, 2, 1, True), (5, 2, 1, False), (3, 2, 2, False)):
        wl = _generic_wl("dx", 8, 2, k, s, d, "mul", dtype)
        mod = schedule(wl, Target({"kind": "llvm", "mcpu": "skylake-avx512"}), tuned=False)[0]
        text = mod.script()
        out = text[text.index('T.sblock("out")'):]
        assert ("T.masked_store(out" in out and "T.Shuffle" in out) == rewritten, (k, s, d)
        gather = text[text.index('T.sblock("Sp_reindex'):]
        gather = gather[:gather.index("T.reads")]
        m = s // math.gcd(s, d)  # a phase's taps: every m-th, ceil(k / m) of them, those past k masked
        assert (f" < {k}" in gather) == (-(-k // m) * m > k), (k, s, d)
        mod = tvm.ir.transform.Sequential([
            s_tir.transform.LowerInitBlock(), s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
            s_tir.transform.ConvertBlocksToOpaque(), s_tir.transform.CompactBufferAllocation()])(mod)
        shapes = re.findall(r"^\s*acc = T\.\w*alloc_buffer\(\(([^)]*)\)", mod.script(), re.M)
        assert len(shapes) == 1 and re.fullmatch(r"[\d, ]+", shapes[0]), shapes
        lib = build(wl, cpu_target())
        for W in (*range(1, 22), 31, 32, 33, 47, 57):
            B, H = 1 + W % 2, 1 + (3 * W) % 7
            ins, args = _nan_filled_args("dx", B, H, W, k, s, dtype, W)
            n = args[-1].numpy().size
            buf = torch.full((n + 64,), 12345.0, dtype=getattr(torch, dtype))
            buf[32:32 + n] = float("nan")
            lib(*args[:-1], tvm.runtime.from_dlpack(buf[32:32 + n].view(*args[-1].shape)))
            p = dict(B=B, C=8, H=H, W=W, G=2, k=k, s=s, d=d, combine="mul")
            np.testing.assert_allclose(buf[32:32 + n].view(*args[-1].shape).numpy(),
                                       emulate.reference(Workload.make("ddf", "dx", p, dtype), ins),
                                       rtol=tol, atol=tol, err_msg=f"k{k} s{s} d{d} {B}x{H}x{W}")
            assert bool((buf[:32] == 12345.0).all() and (buf[32 + n:] == 12345.0).all()), (k, s, d, W)


@pytest.mark.parametrize("kernel", ("fwd", "dx", "ds", "dc"))
def test_static_cpu_row_tails(kernel):
    """The static CPU builds at rows that whole vectors do not tile (28 px: 16 + 12) and at
    strides 2-3: the vector tiles' loops carry the LoopPartition hint (``split_tail``: static
    extents too, the whole tiles then unpredicated, vectors), and fwd, ds and dc at s > 1 read
    X through the phase-major copy (its copy per s pixels, phases unrolled). Against the
    float64 reference, outputs NaN-filled (an unwritten pixel fails); float64 builds."""
    import numpy as np

    from dynfilter_tvm.build import build, schedule
    from dynfilter_tvm.target import cpu_target

    target = cpu_target()
    for B, H, W, k, s in ((1, 3, 28, 3, 1), (2, 5, 29, 3, 2), (1, 7, 28, 5, 3)):
        p = dict(B=B, C=8, H=H, W=W, G=2, k=k, s=s, d=1, combine="mul")
        wl = Workload.make("ddf", kernel, p, "float64")
        script = schedule(wl, target, tuned=False)[0].script()
        assert "pragma_loop_partition_hint" in script
        if s > 1 and kernel != "dx":
            lines = script.splitlines()
            copy = next(i for i, line in enumerate(lines) if 'T.sblock("Xpad")' in line)
            assert f"in T.unroll({s}):" in lines[copy - 1], f"{kernel} s{s}: X not phase-major"
        ins, args = _nan_filled_args(kernel, B, H, W, k, s, "float64", W * 10 + s)
        build(wl, target)(*args)
        np.testing.assert_allclose(args[-1].numpy(), emulate.reference(wl, ins), rtol=1e-12, atol=1e-12,
                                   err_msg=f"k{k} s{s} {B}x{H}x{W}")


KERNELS = ("fwd", "dx", "ds", "dc")
# C/G = 32: ds's channel-slice path; k = 9: taps not unrolled
CUDA_PARAMS = [(8, 2, 3, 2, 1, "mul"), (64, 2, 3, 1, 2, "add"), (2, 1, 9, 1, 1, "add")]


@pytest.mark.parametrize("kernel", KERNELS)
def test_cuda_generic_builds_device_code(kernel):
    from dynfilter_tvm.build import build
    from dynfilter_tvm.target import cuda_target

    for p in CUDA_PARAMS:
        lib = build(_generic_wl(kernel, *p, "float32"), cuda_target("sm_90"))
        src = lib.mod.imports[0].inspect_source()
        assert "__global__" in src and "threadIdx" in src


EMU_SIZES = [dict(B=1, H=1, W=1), dict(B=3, H=9, W=13), dict(B=1, H=5, W=70), dict(B=2, H=6, W=1)]


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_cuda_generic_emulated(kernel, dtype, way):
    for p in CUDA_PARAMS:
        emulate.check_sizes(_generic_wl(kernel, *p, dtype), way, EMU_SIZES)


# The tiled generic kernels (schedules/ddf_cuda.py GENERIC_TILED): fixed 16 x 16 pixel tiles,
# the grid ceil-divided over the symbolic output, tails predicated. Sizes: smaller than one
# tile, not multiples of it, several tiles each way, batch 1 and 3, odd sizes.
TILED_PARAMS = [(8, 2, 3, 2, 1, "mul"), (64, 2, 3, 1, 2, "add"), (6, 3, 5, 2, 2, "mul"),
                (4, 1, 7, 3, 1, "add"), (3, 3, 3, 1, 1, "mul")]
TILED_SIZES = EMU_SIZES + [dict(B=1, H=37, W=53), dict(B=3, H=17, W=33), dict(B=1, H=32, W=16)]


# dx: tiles of its phase grid (schedules/ddf_cuda.py _generic_dx_tiles; at stride > 1 whole
# s x s phase blocks); k = 5 in float64 at stride 1 has no tile under the shared-memory budget,
# and at stride 2 dilation 2 (gcd(s, d) > 1: half the phases have no taps) TVM bounds the
# stages by the symbolic rows for every tile tried: the per-output schedule (checked as well)
DX_TILED_PARAMS = [(8, 2, 3, 1, 1, "mul"), (64, 2, 3, 1, 2, "add"), (6, 3, 5, 1, 1, "mul"),
                   (3, 3, 3, 1, 1, "add"), (8, 2, 3, 2, 1, "mul"), (4, 1, 7, 3, 1, "add"),
                   (64, 2, 5, 2, 3, "add"), (6, 3, 5, 2, 2, "mul"),
                   # tiled in float64 too since the generic grid is shifted by p mod s (ops.ddf.ddf_dx)
                   (8, 2, 7, 2, 1, "mul")]
DX_STRIDED = [p for p in DX_TILED_PARAMS if p[3] > 1]


# ds: heads of more than GENERIC_DS_CHANNELS channels split them over channel blocks (2 and 2
# blocks of 128 and 96 channels here), whose sums a second kernel adds up
DS_TILED_PARAMS = TILED_PARAMS + [(256, 1, 3, 1, 1, "mul"), (384, 2, 3, 2, 1, "add")]


def _params(kernel):
    return {"dx": DX_TILED_PARAMS, "ds": DS_TILED_PARAMS}.get(kernel, TILED_PARAMS)


def _expect_tiled(wl) -> bool:
    from schedules import ddf_cuda

    if wl.kernel != "dx":
        return True
    s, d = wl.p["s"], wl.p["d"]
    return math.gcd(s, d) == 1 and bool(ddf_cuda._generic_dx_tiles(wl))


# the kernels whose generic CUDA schedule is tiled (dc: the streaming one, 8-column tiles)
TILED_KERNELS = [k for k in KERNELS if k in ddf_cuda.GENERIC_TILED]


@pytest.mark.parametrize("kernel", TILED_KERNELS)
def test_cuda_generic_tiled_builds(kernel):
    """Every tiled generic kernel builds (its shared stages have a constant size: codegen
    refuses anything else) with shared memory, i.e. the tiled schedule and not a fallback."""
    from dynfilter_tvm.build import build
    from dynfilter_tvm.target import cuda_target

    for p in _params(kernel):
        for dtype in ("float32", "float64"):
            wl = _generic_wl(kernel, *p, dtype)
            src = build(wl, cuda_target("sm_90")).mod.imports[0].inspect_source()
            assert ("__shared__" in src) == _expect_tiled(wl), (kernel, p, dtype)
            # what dispatch asks before serving a CUDA call generic by default
            assert ddf_cuda.generic_tiled(wl, registry.prim_func(wl)) == _expect_tiled(wl), (kernel, p, dtype)


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
@pytest.mark.parametrize("kernel", TILED_KERNELS)
def test_cuda_generic_tiled_emulated(kernel, dtype, way):
    for p in _params(kernel):
        wl = _generic_wl(kernel, *p, dtype)
        low = emulate.prepare(wl, way)  # one lowering serves every size
        assert ("_shared" in low.source) == _expect_tiled(wl), (kernel, p)  # the staged tiles
        for sizes in TILED_SIZES:
            emulate.check(wl, way, sizes=sizes, lowered=low)


# Negative controls on the tiled generic kernels: each mutation of one lowering must fail the
# check at a size with tail tiles (37 x 61: a partial tile each way, holding real pixels; at 53
# columns dx's last column block, over its grid's 64 columns (whole 16-pixel rows at stride 1,
# ops.ddf.dx_grid), held only padding, so a grid one block short still passed).
CONTROL_SIZES = dict(B=1, H=37, W=61)
BARRIER = "barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);"


def _control(kernel, mutate, match, params=(8, 2, 3, 1, 1, "mul")):
    wl = _generic_wl(kernel, *params, "float32")
    low = emulate.prepare(wl, "cuda")
    emulate.check(wl, "cuda", sizes=CONTROL_SIZES, lowered=low)  # unmutated: passes
    with pytest.raises(emulate.CheckFailed, match=match):
        emulate.check(wl, "cuda", sizes=CONTROL_SIZES, lowered=low, mutate=mutate)


# (the kernel, and dx at stride 2 too: its phase-block tiles)
CONTROL_CASES = [(k, (8, 2, 3, 1, 1, "mul")) for k in TILED_KERNELS] + [("dx", (8, 2, 3, 2, 1, "mul"))]


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("kernel,params", CONTROL_CASES, ids=str)
def test_control_generic_dropped_barrier(kernel, params):
    """The barrier between staging a channel's tile and reading it (the second one; dc's
    third: after its S row is staged, before the taps read the X tile and S row) dropped."""

    def mutate(low):
        start, end = [m.span() for m in re.finditer(re.escape(BARRIER), low.source)][2 if kernel == "dc" else 1]
        low.source = low.source[:start] + low.source[end:]
    _control(kernel, mutate, "NaN", params)


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("kernel,params", CONTROL_CASES, ids=str)
def test_control_generic_grid_one_block_short(kernel, params):
    """The symbolic grid (ceil-divided over the output) one block short: a tile unwritten.
    (dx at stride 2: a tile row short; its last tile column at W = 53 covers only the grid's
    padding columns, dx_grid's whole 16-column multiples, and writes nothing.)"""
    axis = 1 if params[3] > 1 else 0

    def mutate(low):
        ln = low.launches[0 if kernel == "dc" else -1]  # (dc: the tiled first of its two)
        ln.grid = tuple(n - (i == axis) for i, n in enumerate(ln.grid))
    _control(kernel, mutate, "NaN", params)


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("kernel,stage,params", [
    ("fwd", "Xpad", None), ("ds", "Xpad", None), ("dc", "Xpad", None), ("dx", "dOp", None),
    ("dx", "dOp", (8, 2, 3, 2, 1, "mul")), ("dx", "Sp", (8, 2, 3, 2, 1, "mul"))], ids=str)
def test_control_generic_tile_shifted(kernel, stage, params):
    """The staged input tile read one column to the right (the tile's halo misplaced)."""
    def mutate(low):  # the reads only (a store starts its line)
        low.source, n = re.subn(rf"(?<=[^\s])(\s*[*+(]\s*){stage}_shared_ptr\[", rf"\1{stage}_shared_ptr[1 + ",
                                low.source)
        assert n
    _control(kernel, mutate, "relative error|NaN", *([params] if params else []))


def test_generic_ds_blocks():
    """The generic ds at 8x256x56x56 (G = 1) launches at least 2 blocks per SM of an H100 /
    H200 (ddf_cuda.MIN_BLOCKS): 24 x 8 tiles (3 x 7 per plane) x 2 channel blocks of 128
    channels, the grid read off the lowered host code at that size. (32 x 8 tiles and one
    channel block launched 112.)"""
    wl = _generic_wl("ds", 256, 1, 3, 1, 1, "mul", "float32")
    assert ddf_cuda._generic_ds_channel_blocks(wl) == 2
    low = emulate.resolve(emulate.lower(emulate.scheduled(wl), _cuda()), dict(B=8, H=56, W=56))
    first, second = low.launches  # the channel blocks' sums, then their sum per output
    assert math.prod(first.grid) == 2 * 8 * 21 >= ddf_cuda.MIN_BLOCKS, first.grid
    assert math.prod(first.block) == 24 * 8
    assert low.scratch and all(n == 2 * 8 * 9 * 56 * 56 for n, _ in low.scratch.values()), low.scratch
    # at most GENERIC_DS_CHANNELS channels per block, never 2 (PoCL, see _ds_channel_blocks)
    for cg, nb in ((32, 1), (128, 1), (130, 2), (192, 2), (256, 2), (260, 4), (512, 4), (4, 1)):
        got = ddf_cuda._generic_ds_channel_blocks(_generic_wl("ds", cg, 1, 3, 1, 1, "mul", "float32"))
        assert got == nb and cg % got == 0, (cg, got)


def _cuda():
    from dynfilter_tvm.target import cuda_target

    return cuda_target("sm_90")


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
def test_control_generic_ds_channel_block_dropped():
    """The generic ds's second kernel adds up one channel block fewer: wrong sums."""
    wl = _generic_wl("ds", 256, 1, 3, 1, 1, "mul", "float32")
    low = emulate.prepare(wl, "cuda")
    emulate.check(wl, "cuda", sizes=CONTROL_SIZES, lowered=low)

    def mutate(low):
        low.source, n = re.subn(r"for \(int c_0 = 0; c_0 < 2;", "for (int c_0 = 0; c_0 < 1;", low.source)
        assert n == 1, low.source
    with pytest.raises(emulate.CheckFailed, match="relative error"):
        emulate.check(wl, "cuda", sizes=CONTROL_SIZES, lowered=low, mutate=mutate)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("kernel", TILED_KERNELS)
def test_cuda_generic_tiled_nvcc_no_spills(kernel, arch):
    """The tiled generic kernels' CUDA source compiles with nvcc (ptxas) without spills (k <= 5:
    the ds's 49 tap sums at k = 7 spill a little, as the static ds's do at 8x256x56x56; so does
    the strided dx at k = 7, s = 3 in float64 on sm_90: 12 B at 32 registers)."""
    from dynfilter_tvm.build import build
    from dynfilter_tvm.gpu_report import ptxas_resources
    from dynfilter_tvm.target import cuda_target

    cases = [(_params(kernel)[0], "float32"), (_params(kernel)[1], "float32"), (_params(kernel)[2], "float64")]
    if kernel == "dx":  # its phase-block tiles at stride > 1
        cases += [(p, dtype) for p in DX_STRIDED if p[2] <= 5 for dtype in ("float32", "float64")]
        cases += [((128, 1, 3, 2, 1, "mul"), "float64")]  # (16 x 7 or 16 x 5 phase tiles spilled here)
    if kernel == "ds":  # with channel blocks (two kernels)
        cases += [(DS_TILED_PARAMS[-2], "float32"), (DS_TILED_PARAMS[-1], "float64")]
    for p, dtype in cases:
        src = build(_generic_wl(kernel, *p, dtype), cuda_target(arch)).mod.imports[0].inspect_source()
        res = ptxas_resources(src, arch)
        assert res and all(r["spill"] == 0 for r in res.values()), (p, dtype, res)


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("dtype", emulate.HALF_DTYPES)
@pytest.mark.parametrize("kernel", TILED_KERNELS)
def test_cuda_generic_tiled_half(kernel, dtype):
    """The tiled generic kernels in float16 / bfloat16 (the ``cuda`` way: PoCL has no half
    arithmetic, see ``emulate``), two sizes with tail tiles from one lowering."""
    for p in _params(kernel)[:2]:
        wl = _generic_wl(kernel, *p, dtype)
        low = emulate.prepare(wl, "cuda")
        assert "_shared" in low.source
        for sizes in (dict(B=1, H=37, W=53), dict(B=3, H=17, W=33)):
            emulate.check(wl, "cuda", sizes=sizes, lowered=low)
