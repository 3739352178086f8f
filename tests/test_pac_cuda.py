"""CUDA builds of the PAC kernels with the default schedules (no GPU needed), and, on a GPU,
the ops against the float64 reference."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import torch

from dynfilter_tvm.build import build
from dynfilter_tvm.target import cuda_target
from dynfilter_tvm.workload import Workload


def _geo(N, C, H, W, Ho, Wo, k, s, z, p, d):
    return dict(N=N, C=C, H=H, W=W, Ho=Ho, Wo=Wo, k=k, s=s, z=z, p=p, d=d)


PLAIN = _geo(2, 16, 20, 24, 20, 24, 5, 1, 1, 2, 1)
ZERO_INSERTED = _geo(1, 3, 5, 7, 10, 14, 3, 1, 2, 1, 1)  # the transposed form, stride 2
UNIT = _geo(1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1)

WORKLOADS = {
    "conv": [dict(PLAIN, O=24, a=0), dict(ZERO_INSERTED, O=5, a=0), dict(ZERO_INSERTED, O=5, a=1), dict(UNIT, O=1, a=0)],
    "pool": [dict(PLAIN, G=1, a=0), dict(PLAIN, G=16, a=1), dict(UNIT, G=1, a=0)],
    "conv_dk": [dict(PLAIN, O=24), dict(ZERO_INSERTED, O=5), dict(UNIT, O=1)],
    "conv_dw": [dict(PLAIN, O=24), dict(ZERO_INSERTED, O=5), dict(UNIT, O=1)],
    "pool_dk": [dict(PLAIN, G=1), dict(PLAIN, G=16)],
}
_DIST = [dict(N=2, C=3, G=1, H=20, W=24, Ho=10, Wo=12, k=5, s=2, p=2, d=1, asym=0),
         dict(N=1, C=4, G=4, H=9, W=7, Ho=9, Wo=7, k=3, s=1, p=2, d=2, asym=1)]
WORKLOADS["dist"] = _DIST
WORKLOADS["dist_df"] = _DIST
WORKLOADS["dist_df0"] = _DIST
CASES = [(kernel, i) for kernel, ps in WORKLOADS.items() for i in range(len(ps))]


@pytest.fixture(scope="module")
def target():
    return cuda_target("sm_90")


def _source(kernel, i, dtype, target) -> str:
    lib = build(Workload.make("pac", kernel, WORKLOADS[kernel][i], dtype), target)
    assert list(lib.mod.imports), "no device module: the kernel was built host-only"
    return lib.mod.imports[0].inspect_source()


@pytest.mark.parametrize("dtype", ("float32", "float16"))
@pytest.mark.parametrize("kernel,i", CASES, ids=[f"{k}-{i}" for k, i in CASES])
def test_builds_device_code(kernel, i, dtype, target):
    assert "__global__" in _source(kernel, i, dtype, target)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_source_compiles_with_nvcc(target, tmp_path):
    for kernel in WORKLOADS:
        for dtype in ("float32", "bfloat16"):
            cu = tmp_path / f"{kernel}-{dtype}.cu"
            cu.write_text(_source(kernel, 0, dtype, target))
            cmd = ["nvcc", "-arch=sm_90", "-cubin", "-o", str(cu.with_suffix(".cubin")), str(cu)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            assert res.returncode == 0, f"{kernel} {dtype}: nvcc failed:\n{res.stderr[-3000:]}"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("a", (0, 1), ids=("conv", "input-grad"))
def test_tf32_conv_ptx_has_mma(a, target, tmp_path):
    """The tf32 flag gives device code on tensor cores (mma.sync TF32 fed by ldmatrix, in the
    PTX nvcc makes of TVM's source); without it, or in float64, none (the SIMT schedules)."""
    p = dict(_geo(2, 16, 8, 32, 8, 32, 3, 1, 1, 1, 1), O=32, a=a)

    def ptx(params, dtype):
        cu = tmp_path / "k.cu"
        cu.write_text(build(Workload.make("pac", "conv", params, dtype), target).mod.imports[0].inspect_source())
        res = subprocess.run(["nvcc", "-arch=sm_90", "-ptx", "-o", str(tmp_path / "k.ptx"), str(cu)],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
        return (tmp_path / "k.ptx").read_text()

    code = ptx(dict(p, tf32=1), "float32")
    # 2 mma per tap (two n8 halves), 9 taps unrolled (18 per 8-channel chunk; nvcc may unroll
    # the two chunks too); 2 ldmatrix.x4 (A and B fragments) per tap
    n = code.count("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32")
    assert n in (18, 36) and code.count("ldmatrix.sync.aligned.m8n8.x4.shared.b16") == n
    for params, dtype in ((p, "float32"), (dict(p, tf32=1), "float64")):
        assert "mma.sync" not in ptx(params, dtype)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ("sm_80", "sm_90"))
@pytest.mark.parametrize("dtype,ptx_type", [("float16", "f16"), ("bfloat16", "bf16")])
def test_half_conv_ptx_has_mma(dtype, ptx_type, arch, tmp_path):
    """float16 / bfloat16 conv runs on tensor cores without any flag: mma.sync m16n8k16 with
    f32 accumulators fed by ldmatrix, for sm_80 and sm_90; where C is not a multiple of 16 (or
    before sm_80) the SIMT schedule, without mma."""
    p = dict(_geo(2, 16, 8, 32, 8, 32, 3, 1, 1, 1, 1), O=32, a=0)

    def ptx(params, arch_):
        cu = tmp_path / "k.cu"
        cu.write_text(build(Workload.make("pac", "conv", params, dtype), cuda_target(arch_)).mod.imports[0].inspect_source())
        res = subprocess.run(["nvcc", f"-arch={arch_}", "-ptx", "-o", str(tmp_path / "k.ptx"), str(cu)],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
        return (tmp_path / "k.ptx").read_text()

    code = ptx(p, arch)
    # 2 mma per tap (two n8 halves) and 2 ldmatrix.x4 (A, B), 9 taps unrolled, one 16-channel chunk
    n = code.count(f"mma.sync.aligned.m16n8k16.row.col.f32.{ptx_type}.{ptx_type}.f32")
    assert n == 18 and code.count("ldmatrix.sync.aligned.m8n8.x4.shared.b16") == n
    # a thread's 16 modulated taps leave its registers as two 16-byte stores, not 16 scalar
    # 16-bit ones (the only 16-byte shared stores of the half-type kernel: none before)
    assert code.count("st.shared.v4.u32") % 2 == 0 and code.count("st.shared.v4.u32") >= 2
    assert "mma.sync" not in ptx(dict(p, C=8), arch)
    assert "mma.sync" not in ptx(p, "sm_75")


@pytest.mark.parametrize("kc,item", [(8, 4), (16, 2)], ids=["tf32", "half"])
def test_tensor_core_staged_rows_avoid_bank_conflicts(kc, item):
    """The staged xk and Wt rows (K channels, 32 bytes) are padded so that the 8 rows of an
    ldmatrix phase (16 bytes each at one row stride) fall on 8 distinct 16-byte bank groups:
    one shared-memory wavefront per 8 x 16-byte matrix, not two."""
    from schedules.pac_cuda import _padded_row

    stride = _padded_row(kc) * item
    assert stride % 16 == 0  # ldmatrix rows are 16-byte aligned
    assert len({r * stride // 16 % 8 for r in range(8)}) == 8
    assert len({r * kc * item // 16 % 8 for r in range(8)}) == 4  # unpadded: 2-way conflicts


def test_tensor_core_wide_tile_stages_k_by_shared_memory(monkeypatch):
    """The wide tile stages the block's K (25 taps x 512 pixels) once for all chunks where the
    arch's dynamic shared memory per block holds it: the half types everywhere (87,040 B, under
    MMA_DYN_SHARED_BYTES), TF32 (112,640 B) on sm_80 (163 KB) and sm_90 (227 KB) but not on
    sm_86/89 (99 KB), which keep the 61,440 B wide tile, K per chunk. The half types' input
    gradient takes the wide tile only with K staged (its bounds-checked Kz loads next to 32
    accumulators spilled): without room for it, the 2-row static tile."""
    import schedules.pac_cuda as P
    from dynfilter_tvm import gpu_report as G

    pac = {(w.dtype, w.p["a"]): w for w in G.benchmark_workloads()["PAC conv 8x64x128x128 k5"]
           if w.kernel == "conv" and (w.dtype != "float32" or w.p.get("tf32"))}
    for arch, tf32_ks in (("sm_80", True), ("sm_90", True), ("sm_86", False), ("sm_89", False)):
        target = cuda_target(arch)
        for (dtype, a), wl in pac.items():
            ks = tf32_ks or dtype != "float32"
            assert P.mma_tile(wl, target) == (4, 2, 4, 4, ks), (arch, wl)
            assert P.mma_shared_bytes(wl, *P.mma_tile(wl, target)) == {
                ("float32", True): 112640, ("float32", False): 61440}.get((dtype, ks), 87040)
            assert P.mma_shared_bytes(wl, *P.mma_tile(wl, target)) <= P.mma_dyn_shared_limit(target)
    assert P.mma_dyn_shared_limit(None) == P.MMA_DYN_SHARED_BYTES  # any sm_80+ part
    monkeypatch.setattr(P, "MMA_DYN_SHARED_BYTES", 80 * 1024)
    assert P.mma_tile(pac["float16", 1], cuda_target("sm_86")) == (4, 4, 2, 2, False)
    assert P.mma_tile(pac["float16", 0], cuda_target("sm_86")) == (4, 2, 4, 4, False)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ("sm_80", "sm_90"))
@pytest.mark.parametrize("dtype", ("float32", "float16", "bfloat16"))
def test_tensor_core_conv_resources_at_benchmark_shape(dtype, arch):
    """Issue 15's register aims for the tensor-core conv at 8x64x128x128 k5 O=64, forward and
    input gradient: no spills and at most 64 registers, so that its 1,024-thread blocks (the
    wide tile: 4 rows x 4 x 2 warps of four 16 x 16 tiles, 32 accumulators a thread, K staged
    once per block: 87,040 B half, 112,640 B TF32) fit an SM: 50% theoretical occupancy with
    the launch's dynamic shared memory (ptxas figures; estimates, no GPU)."""
    from dynfilter_tvm import emulate
    from dynfilter_tvm import gpu_report as G
    from schedules.pac_cuda import mma_shared_bytes, mma_tile

    for wl in G.benchmark_workloads()["PAC conv 8x64x128x128 k5"]:
        if wl.kernel != "conv" or wl.dtype != dtype or (dtype == "float32" and not wl.p.get("tf32")):
            continue
        src = build(wl, cuda_target(arch)).mod.imports[0].inspect_source()
        assert G.mma_kind(src) == {"float32": "tf32", "float16": "f16", "bfloat16": "bf16"}[dtype]
        res = G.ptxas_resources(src, arch)["pac_conv_kernel"]
        assert res["spill"] == 0 and res["regs"] <= 64, (wl, res)
        wo, wx, xm, ry, ks = tile = mma_tile(wl, cuda_target(arch))
        assert tile == (4, 2, 4, 4, True)  # the half types' input gradient too (was 2 rows)
        # the stages in dynamic shared memory (ptxas: no static bytes), the padded rows as budgeted
        (ln,) = emulate.lower(emulate.scheduled(wl, arch), cuda_target(arch)).launches
        assert res["smem"] == 0 and ln.dyn_shared == mma_shared_bytes(wl, *tile) == (112640 if dtype == "float32"
                                                                                     else 87040)
        assert G.occupancy(arch, 32 * wo * wx * ry, res["regs"], res["smem"] + ln.dyn_shared) >= 0.5



@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ("sm_80", "sm_90"))
@pytest.mark.parametrize("dtype", ("float16", "bfloat16"))
def test_tensor_core_conv_resources_at_model_shapes(dtype, arch):
    """No spills and >= 50% theoretical occupancy (ptxas figures; estimates, no GPU) at two of
    pac_joint_upsample's (factor 4) half-type shapes, 256-thread blocks (2 x 4 warps): the 65x64
    k3 conv (p = 0), whose window copy (16 channels x 66 columns: 6 rounds over 8 warps) spilled
    8 B on sm_90 with all 6 rounds unrolled (now 2 x 3, WINDOW_ROUNDS), and the 128x128 -> 64x64
    k5 s2 input gradient, which spilled 40 B on sm_80 with the rounds not unrolled."""
    from dynfilter_tvm import gpu_report as G
    from schedules.pac_cuda import mma_shared_bytes, mma_tile

    for p in (dict(_geo(2, 32, 65, 64, 64, 64, 3, 1, 1, 0, 1), O=32, a=0),
              dict(_geo(2, 32, 128, 128, 64, 64, 5, 2, 1, 2, 1), O=32, a=1)):
        wl = Workload.make("pac", "conv", p, dtype)
        wo, wx, xm, ry, ks = mma_tile(wl, cuda_target(arch))
        assert ry == (2 if p["s"] == 1 else 1) and not ks  # rows per block where the window rows are contiguous
        src = build(wl, cuda_target(arch)).mod.imports[0].inspect_source()
        assert G.mma_kind(src) == {"float16": "f16", "bfloat16": "bf16"}[dtype]
        res = G.ptxas_resources(src, arch)["pac_conv_kernel"]
        assert res["spill"] == 0 and res["smem"] == mma_shared_bytes(wl, wo, wx, xm, ry), (p, res)
        assert G.occupancy(arch, 32 * wo * wx * ry, res["regs"], res["smem"]) >= 0.5, (p, res)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ("sm_80", "sm_90"))
def test_tf32_conv_dk_resources(arch):
    """conv_dk flagged tf32 on TF32 tensor cores (ptxas figures; estimates, no GPU): at the
    benchmark shape 8x64x128x128 k5 O=64 the source window staged (``dk_mma_window``) in
    32-channel chunks, four threads per pixel (``dk_mma_halves``), blocks of 2 x 128 pixels
    (1,024 threads) in 160,768 B of dynamic shared memory as ``dk_mma_shared_bytes`` budgets it
    (Wt and G in one space), ``__launch_bounds__(1024, 1)``: <= 64 registers, no spills, 50%
    on sm_90 and sm_80 (the per-tap build was 62% / 38%: sm_80 76 registers, 3 blocks by shared
    memory). At a 64-pixel row with C = 16 (no 32-channel chunk) the per-tap build, static
    shared memory as budgeted (G, Wt and the halves' sums in one space). Unflagged, or in
    float64, no mma."""
    from dynfilter_tvm import emulate
    from dynfilter_tvm import gpu_report as G
    from schedules.pac_cuda import (MMA_SHARED_BYTES, dk_mma_halves, dk_mma_rows, dk_mma_shared_bytes,
                                    dk_mma_tile, dk_mma_window)

    bench = next(w for w in G.benchmark_workloads()["PAC conv 8x64x128x128 k5"]
                 if w.kernel == "conv_dk" and w.p.get("tf32"))
    small = Workload.make("pac", "conv_dk", dict(_geo(1, 16, 3, 64, 3, 64, 3, 1, 1, 1, 1), O=32, tf32=1), "float32")
    target = cuda_target(arch)
    for wl, wx in ((bench, 4), (small, 2)):
        assert dk_mma_tile(wl, target) == wx
        window, ry = dk_mma_window(wl, wx, target), dk_mma_rows(wl, wx, target)
        assert (window, ry) == ((True, 2) if wl is bench else (False, 1))
        src = build(wl, target).mod.imports[0].inspect_source()
        assert G.mma_kind(src) == "tf32"
        res = G.ptxas_resources(src, arch)["pac_conv_dk_kernel"]
        smem = dk_mma_shared_bytes(wl, wx, window, ry)
        assert res["spill"] == 0, (wl, res)
        if wl is bench:
            threads = 32 * wx * ry * dk_mma_halves(wl, window)
            (ln,) = emulate.lower(emulate.scheduled(wl, arch), target).launches
            assert threads == 1024 and f"__launch_bounds__({threads}, 1)" in src
            assert res["smem"] == 0 and ln.dyn_shared == smem == 160_768, (res, ln)
            assert res["regs"] <= 64 and G.occupancy(arch, threads, res["regs"], smem) >= 0.5, res
        else:
            assert res["smem"] == smem == dk_mma_shared_bytes(wl, wx) <= MMA_SHARED_BYTES, (wl, res)
    for params, dtype in (({k: v for k, v in bench.p.items() if k != "tf32"}, "float32"), (bench.p, "float64")):
        assert G.mma_kind(build(Workload.make("pac", "conv_dk", params, dtype),
                                cuda_target(arch)).mod.imports[0].inspect_source()) is None


def test_tf32_flag_follows_cudnn_allow_tf32(monkeypatch):
    """Read at each call: CUDA float32 only, exactly while cudnn.allow_tf32 is set; recorded
    workloads for CUDA bundles carry both variants."""
    from torch_bridge.app.workloads import with_tf32_variants
    from torch_bridge.ops.pac import tf32_flag

    cuda_dev, cpu = torch.device("cuda", 0), torch.device("cpu")
    for allow in (True, False):
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", allow)
        assert tf32_flag(cuda_dev, torch.float32) == ({"tf32": 1} if allow else {})
        for dev, dt in ((cpu, torch.float32), (cuda_dev, torch.float64), (cuda_dev, torch.float16)):
            assert tf32_flag(dev, dt) == {}
    conv = Workload.make("pac", "conv", dict(PLAIN, O=24, a=0), "float32")
    dk = Workload.make("pac", "conv_dk", dict(PLAIN, O=24), "float32")
    tf32 = Workload.make("pac", "conv", dict(PLAIN, O=24, a=0, tf32=1), "float32")
    dk_tf32 = Workload.make("pac", "conv_dk", dict(PLAIN, O=24, tf32=1), "float32")
    dw = Workload.make("pac", "conv_dw", dict(PLAIN, O=24), "float32")  # no TF32 path: none added
    assert with_tf32_variants([conv, dk, dw]) == [conv, dk, dw, tf32, dk_tf32]
    assert tf32.key() != conv.key()  # separate cache entries, bundles and tuning records
    half = Workload.make("pac", "conv", dict(PLAIN, O=24, a=0), "float16")
    assert with_tf32_variants([half]) == [half]


@pytest.mark.parametrize("transposed", (False, True), ids=("plain", "transposed"))
def test_tf32_flag_reaches_every_conv_kernel(transposed, monkeypatch):
    """The bridge reads the flag at each call and hands it to every kernel sharing the tap rule
    (forward, input gradient, conv_dk), never to conv_dw: pacconv2d forward and backward
    recorded (kernels skipped) as on a CUDA device, allow_tf32 toggled between two calls."""
    import torch_bridge.ops.pac as bridge
    from torch_bridge import functional as Fn
    from torch_bridge.app.workloads import recording

    real = bridge.tf32_flag
    monkeypatch.setattr(bridge, "tf32_flag", lambda dev, dt: real(torch.device("cuda", 0), dt))
    x = torch.randn(1, 4, 6, 8, requires_grad=True)
    w = torch.randn(4, 6, 3, 3, requires_grad=True) if transposed else torch.randn(6, 4, 3, 3, requires_grad=True)
    ho, wo = (11, 15) if transposed else (6, 8)
    K = torch.rand(1, 1, 3, 3, ho, wo, requires_grad=True)
    conv = Fn.pacconv_transpose2d if transposed else Fn.pacconv2d
    kw = dict(stride=2, padding=1) if transposed else dict(padding=1)
    for allow in (True, False, True):
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", allow)
        with recording() as seen:
            conv(x, K, w, **kw).sum().backward()
        flags = {w_.kernel: w_.p.get("tf32", 0) for w_ in seen}
        assert set(flags) >= {"conv", "conv_dk", "conv_dw"}
        assert flags["conv_dk"] == flags["conv"] == int(allow) and flags["conv_dw"] == 0
        assert len({w_.p.get("tf32", 0) for w_ in seen if w_.kernel == "conv"}) == 1  # forward and input gradient


@pytest.mark.parametrize("targets,tf32", [(["sm_90", "llvm"], True), (["llvm"], False)], ids=("cuda", "cpu-only"))
def test_compile_bundles_tf32_variants_for_cuda(targets, tf32, monkeypatch, tmp_path):
    """``dynfilter-tvm compile`` records on the CPU (no tf32 flag), so for a CUDA target it adds
    the tf32 variant of every float32 pac.conv; a CPU-only bundle gets none."""
    from dynfilter_tvm import aot
    from dynfilter_tvm.__main__ import main

    seen = []
    monkeypatch.setattr(aot, "compile_bundle", lambda found, tg, out, **kw: seen.extend(found) or {"targets": tg})
    argv = ["compile", "--op", "pac", "--input", "1x4x6x16", "--kernel-size", "3", "-o", str(tmp_path / "b")]
    for t in targets:
        argv += ["--target", t]
    assert main(argv) == 0
    convs = [w for w in seen if w.kernel == "conv"]
    assert convs and all(w.dtype == "float32" for w in convs)
    flagged = [w for w in convs if w.p.get("tf32")]
    assert len(flagged) == (len(convs) // 2 if tf32 else 0)
    if tf32:  # forward and input gradient, each also without the flag
        assert {w.p["a"] for w in flagged} == {0, 1}
        assert {Workload.make("pac", "conv", {k: v for k, v in w.p.items() if k != "tf32"}, w.dtype)
                for w in flagged} <= set(convs)
    dks = [w for w in seen if w.kernel == "conv_dk"]  # conv_dk likewise, conv_dw never
    assert len(dks) == (2 if tf32 else 1) and sum(bool(w.p.get("tf32")) for w in dks) == int(tf32)
    assert not any(w.p.get("tf32") for w in seen if w.kernel not in ("conv", "conv_dk"))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("allow", (True, False), ids=("tf32", "fp32"))
def test_conv_on_gpu_tf32_setting(allow, monkeypatch):
    """pacconv2d in float32 on the GPU, forward, input and kernel gradient (conv_dk: G over
    O = 64 products, then C = 32 more), against float64: TF32 tensor cores (cudnn.allow_tf32,
    PyTorch's default) within 5e-3 of the largest value (10-bit operand mantissas, C*k^2 = 800
    products of random sign), FP32 SIMT within 1e-4."""
    from torch_bridge import functional as Fn

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", allow)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 32, 12, 32, generator=g, dtype=torch.float64)
    K = torch.rand(2, 1, 5, 5, 12, 32, generator=g, dtype=torch.float64)
    w = torch.randn(64, 32, 5, 5, generator=g, dtype=torch.float64)
    want = Fn.pacconv2d(x, K, w, padding=2, native_impl=True)
    xs = x.float().cuda().requires_grad_()
    got = Fn.pacconv2d(xs, K.float().cuda(), w.float().cuda(), padding=2)
    tol = 5e-3 if allow else 1e-4
    assert float((got.double().cpu() - want).abs().max() / want.abs().max()) < tol
    gy = torch.randn_like(want)
    xr = x.clone().requires_grad_()
    want_dx, = torch.autograd.grad(Fn.pacconv2d(xr, K, w, padding=2, native_impl=True), xr, gy)
    got_dx, = torch.autograd.grad(got, xs, gy.float().cuda(), retain_graph=True)
    assert float((got_dx.double().cpu() - want_dx).abs().max() / want_dx.abs().max()) < tol
    Kr, Ks = K.clone().requires_grad_(), K.float().cuda().requires_grad_()
    want_dk, = torch.autograd.grad(Fn.pacconv2d(x, Kr, w, padding=2, native_impl=True), Kr, gy)
    got_dk, = torch.autograd.grad(Fn.pacconv2d(xs.detach(), Ks, w.float().cuda(), padding=2), Ks, gy.float().cuda())
    assert float((got_dk.double().cpu() - want_dk).abs().max() / want_dk.abs().max()) < tol


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 1e-4), (torch.float16, 2e-2)])
def test_ops_on_gpu_match_reference(dtype, atol):
    from test_pac_op import CONV_CASES, TRANSPOSED_CASES, _compare, conv_inputs

    from torch_bridge import functional as Fn

    def on_gpu(fn):
        def run(*args, **kw):
            args = [a.cuda() if torch.is_tensor(a) else a for a in args]
            return fn(*args, **kw)
        return run

    for case in CONV_CASES[:5]:
        N, C, O, H, W, k, s, p, d = case
        gpu = on_gpu(Fn.pacconv2d)
        _compare(gpu, conv_inputs(*case), dict(stride=s, padding=p, dilation=d), dtype, atol, 0,
                 ref_fn=lambda *a, **kw: Fn.pacconv2d(*[t.cuda() if torch.is_tensor(t) else t for t in a],
                                                       native_impl=True, **kw))
    for case in TRANSPOSED_CASES[:3]:
        N, C, O, H, W, k, s, p, d, op = case
        inputs = conv_inputs(N, C, O, H, W, k, s, p, d, transposed=True, op=op)
        kw = dict(stride=s, padding=p, output_padding=op, dilation=d)
        _compare(on_gpu(Fn.pacconv_transpose2d), inputs, kw, dtype, atol, 0,
                 ref_fn=lambda *a, **kw: Fn.pacconv_transpose2d(
                     *[t.cuda() if torch.is_tensor(t) else t for t in a], native_impl=True, **kw))
    f = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    _compare(on_gpu(Fn.packernel2d), [f], dict(kernel_size=3, stride=2, padding=1), dtype, atol, 0,
             ref_fn=lambda t, **kw: Fn.packernel2d(t.cuda(), native_impl=True, **kw))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ("sm_80", "sm_90"))
@pytest.mark.parametrize("dtype", ("float32", "float16", "bfloat16"))
def test_conv_dk_resources(dtype, arch):
    """Issue 15's aims for the SIMT pac.conv_dk (ptxas figures; estimates, no GPU): no spills
    and >= 50% theoretical occupancy at the benchmark shape (8x64x128x128 k5 O=64) and at
    pac_joint_upsample-like shapes (32 channels, 64-px rows, k3 and k5 s2); the half types with
    3 input channels, where the tensor-core conv_dk does not apply (below). sm_80's ptxas took
    64 registers for float32's 2-row register tiles (47%): 1 row there (DK_REG_Y_SMALL)."""
    from dynfilter_tvm import gpu_report as G
    from schedules.pac_cuda import dk_mma_tile, dk_tile

    shapes = [dict(_geo(8, 64, 128, 128, 128, 128, 5, 1, 1, 2, 1), O=64),
              dict(_geo(2, 32, 65, 64, 64, 64, 3, 1, 1, 0, 1), O=32),
              dict(_geo(2, 32, 128, 128, 64, 64, 5, 2, 1, 2, 1), O=32)]
    for p in shapes:
        wl = Workload.make("pac", "conv_dk", dict(p, C=3) if dtype != "float32" else p, dtype)  # C = 3: SIMT
        assert dk_mma_tile(wl, cuda_target(arch)) is None
        t = dk_tile(wl, cuda_target(arch))
        src = build(wl, cuda_target(arch)).mod.imports[0].inspect_source()
        assert G.mma_kind(src) is None
        res = G.ptxas_resources(src, arch)["pac_conv_dk_kernel"]
        assert res["spill"] == 0, (p, res)
        assert G.occupancy(arch, p["k"] * t["yt"] * t["tx"], res["regs"], res["smem"]) >= 0.5, (p, t, res)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ("sm_80", "sm_90"))
@pytest.mark.parametrize("dtype", ("float16", "bfloat16"))
def test_conv_dk_tensor_core_resources(dtype, arch):
    """Issue 15's aims for the half types' tensor-core conv_dk (ptxas figures; estimates, no
    GPU) at the benchmark shape and the pac_joint_upsample-like ones: f16/bf16 mma.sync, no
    spills, shared memory as budgeted (dk_mma_shared_bytes), >= 50% theoretical occupancy. The
    dot's channels split over DK_MMA_HALVES threads per pixel (8-warp blocks at 128-pixel rows);
    the source window staged per tap row and chunk (dk_mma_window) under
    __launch_bounds__(threads, 32 warps' blocks); blocks of ry rows (dk_mma_rows), over 48 KB
    in dynamic shared memory (ptxas: no static bytes): at the benchmark shape 4 rows, 1,024
    threads, 154,368 B, 63 registers, one block, 50% (one row: 40,320 B, 63-64 registers, 4
    blocks of 8 warps; without the bound sm_80 took 79: 37.5%); the 65x64 k3 shape 4 rows of
    64 pixels (2 blocks of 16 warps), the s2 one a row (window rows not contiguous)."""
    from dynfilter_tvm import emulate
    from dynfilter_tvm import gpu_report as G
    from schedules.pac_cuda import (DK_MMA_HALVES, DK_MMA_MIN_WARPS, MMA_SHARED_BYTES, dk_mma_rows,
                                    dk_mma_shared_bytes, dk_mma_tap_rows, dk_mma_tile, dk_mma_window)

    shapes = [dict(_geo(8, 64, 128, 128, 128, 128, 5, 1, 1, 2, 1), O=64),
              dict(_geo(2, 32, 65, 64, 64, 64, 3, 1, 1, 0, 1), O=32),
              dict(_geo(2, 32, 128, 128, 64, 64, 5, 2, 1, 2, 1), O=32)]
    for p in shapes:
        wl = Workload.make("pac", "conv_dk", p, dtype)
        wx = dk_mma_tile(wl, cuda_target(arch))
        ry = dk_mma_rows(wl, wx, cuda_target(arch))
        assert (wx, ry) == ((4, 4), (2, 4), (2, 1))[shapes.index(p)]
        src = build(wl, cuda_target(arch)).mod.imports[0].inspect_source()
        assert G.mma_kind(src) == {"float16": "f16", "bfloat16": "bf16"}[dtype]
        threads = 32 * wx * ry * DK_MMA_HALVES
        smem = dk_mma_shared_bytes(wl, wx, True, ry, dk_mma_tap_rows(wl, wx, ry, cuda_target(arch)))
        # the window staged (dynamic: one merged array, no buffer names)
        assert dk_mma_window(wl, wx) and ("buf_dyn_shmem" if smem > MMA_SHARED_BYTES else "Sz_shared") in src
        assert f"__launch_bounds__({threads}, {DK_MMA_MIN_WARPS * 32 // threads})" in src
        res = G.ptxas_resources(src, arch)["pac_conv_dk_kernel"]
        if smem > MMA_SHARED_BYTES:
            (ln,) = emulate.lower(emulate.scheduled(wl, arch), cuda_target(arch)).launches
            assert res["smem"] == 0 and ln.dyn_shared == smem, (p, res, ln)
        else:
            assert res["smem"] == smem, (p, res)
        assert res["spill"] == 0 and res["regs"] <= 64, (p, res)
        assert G.occupancy(arch, threads, res["regs"], smem) >= 0.5, (p, res)


def test_conv_dk_tensor_core_requested_bytes():
    """The report's count for the tensor-core conv_dk at the benchmark shape (8x64x128x128 k5
    O=64): the half types stage the source window per tap row and chunk, so X is read once per
    (real output row, tap row) and window column (634 x 128 per channel and image, was each
    pixel's 634 x 634 real taps), and take blocks of 4 rows (``dk_mma_rows``: 256 blocks, the
    weight read by each): 158.9 MB in all (one row: 316 MB; per tap 645); where 4 rows do not
    fit (sm_86: 99 KB per block) one row. TF32 stages the window too (32-channel chunks, four
    threads per pixel: ``dk_mma_halves``) in blocks of 2 rows (512 blocks) on sm_90 and sm_80:
    the source as the half types', the weight 420 -> 210 MB, 422.6 MB in all (was 1,289 MB,
    which sm_86 keeps: its 99 KB per block take no such block)."""
    from dynfilter_tvm import gpu_report as G
    from schedules.pac_cuda import dk_mma_rows, dk_mma_shared_bytes, dk_mma_tile, dk_mma_window

    p = dict(_geo(8, 64, 128, 128, 128, 128, 5, 1, 1, 2, 1), O=64)
    for dtype, params, x, ry, total in (("bfloat16", p, 8 * 64 * 634 * 128, 4, 158_859_264),
                                        ("float32", dict(p, tf32=1), 8 * 64 * 634 * 128, 2, 422_576_128)):
        wl = Workload.make("pac", "conv_dk", params, dtype)
        wx = dk_mma_tile(wl)
        assert wx == 4 and dk_mma_window(wl, wx) and dk_mma_window(wl, wx, cuda_target("sm_80"))
        assert dk_mma_rows(wl, wx) == dk_mma_rows(wl, wx, cuda_target("sm_80")) == ry
        assert dk_mma_rows(wl, wx, cuda_target("sm_86")) == 1
        parts = G._pac_dk_mma_parts(wl, wl.p, wx, ry)
        assert parts["X"] == x and parts["Wt"] == 1024 // ry * 64 * 64 * 25, parts
        assert G._pac_dk_mma_parts(wl, wl.p, wx, 1)["X"] == x  # rows per block: the same windows
        item = 2 if dtype == "bfloat16" else 4
        assert G.requested_bytes(wl, item, "sm_80") == G.requested_bytes(wl, item) == total
    # TF32 on sm_86: no window (per-tap loads, one row): 8 x 64 x 634^2 source elements
    assert not dk_mma_window(wl, 4, cuda_target("sm_86")) and G.requested_bytes(wl, 4, "sm_86") == 1_289_297_920
    # TF32's window at one row, 4 threads per pixel: 34,816 + max(8,704, 18,432) + 10,240 + 16,896
    assert dk_mma_shared_bytes(wl, 4, True) == 80_384 and dk_mma_shared_bytes(wl, 4, True, 2) == 160_768
    assert dk_mma_shared_bytes(wl, 4) == dk_mma_shared_bytes(wl, 4, False) == 45_056  # the per-tap build


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_conv_dk_tensor_core_wide_o_builds():
    """The tensor-core conv_dk with many output channels (O = 128, 256: 8 and 16 K steps; O =
    256 takes 2-warp blocks, the dO tile of 4 passing 48 KB) builds for sm_80 and sm_90 without
    spills. (Its float32 G store once failed TVM's tvm_access_ptr type check at O = 256.)
    Registers grow with O (O = 128 k7: 64 / 80 on sm_90 / sm_80; O = 256: 164 / 168, 25%),
    left to do."""
    from dynfilter_tvm import gpu_report as G
    from schedules.pac_cuda import dk_mma_tile

    for p, wx in ((dict(_geo(2, 64, 56, 64, 56, 64, 3, 1, 1, 1, 1), O=256), 2),
                  (dict(_geo(2, 128, 30, 96, 30, 96, 7, 1, 1, 3, 1), O=128), 1)):
        for arch in ("sm_80", "sm_90"):
            wl = Workload.make("pac", "conv_dk", p, "bfloat16")
            assert dk_mma_tile(wl, cuda_target(arch)) == wx
            src = build(wl, cuda_target(arch)).mod.imports[0].inspect_source()
            assert G.mma_kind(src) == "bf16"
            assert G.ptxas_resources(src, arch)["pac_conv_dk_kernel"]["spill"] == 0


# -- the tensor-core conv_dk in blocks of several output rows (``dk_mma_rows``: the weight read
# once per block of ry rows; over 48 KB every stage in dynamic shared memory), executed on PoCL
DK_ROWS_CASES = {
    # 2 rows (Ho = 2) of the benchmark's 128-pixel row, k5, O = 64: 16 warps, 78,336 B
    "rows2-k5": (dict(_geo(1, 16, 2, 128, 2, 128, 5, 1, 1, 2, 1), O=64), 4, 2),
    # 4 rows of 64 pixels (2 x 32), k3, dilation 2, two chunks, batch 2, O = 32: 57,088 B
    "rows4-d2": (dict(_geo(2, 32, 4, 64, 4, 64, 3, 1, 1, 2, 2), O=32), 2, 4),
}
DK_WINDOW_COPY = r"\(\(__local ushort\*\)buf_dyn_shmem_ptr\)\[[^;]*\] = (condval(?:_\d+)?);"


@pytest.mark.parametrize("dtype", ("float16", "bfloat16"))
@pytest.mark.parametrize("name", DK_ROWS_CASES)
def test_conv_dk_tensor_core_rows(name, dtype):
    """ry rows per block (threadIdx.y = ry x wx warps per half), from one dynamic shared
    memory array of the planned bytes (dk_mma_shared_bytes), within tolerance of the float64
    reference; with the source window's copy dropped (its only padded store) the dots read
    poisoned shared memory: NaN."""
    from dynfilter_tvm import emulate
    from schedules.pac_cuda import DK_MMA_HALVES, dk_mma_rows, dk_mma_shared_bytes, dk_mma_tap_rows, dk_mma_tile

    p, wx, ry = DK_ROWS_CASES[name]
    wl = Workload.make("pac", "conv_dk", p, dtype)
    assert dk_mma_tile(wl) == wx and dk_mma_rows(wl, wx) == ry
    low = emulate.prepare(wl, "cuda")
    (ln,) = low.launches
    assert tuple(ln.block) == (32, wx * ry, DK_MMA_HALVES)
    assert ln.dyn_shared == dk_mma_shared_bytes(wl, wx, True, ry, dk_mma_tap_rows(wl, wx, ry)) > 48 * 1024
    assert "tvm_mma_m16n8k16(" in low.source and "__shared__" not in low.source
    assert emulate.check(wl, "cuda", lowered=low) <= emulate.TOLERANCE[dtype]

    with pytest.raises(emulate.CheckFailed, match="NaN"):
        emulate.check(wl, "cuda", lowered=low, mutate=_no_window_copy)


def _edit_window_copy(low, edit):
    """Of the padded 16-bit stores (``DK_WINDOW_COPY``), the one whose value was loaded from X
    (the source window's copy) replaced by ``edit`` of its text; exactly one is."""
    names = set(re.findall(r"\b(condval(?:_\d+)?) = X_ptr\[", low.source))
    hits = []

    def sub(m):
        if m[1] not in names:
            return m[0]
        hits.append(m[0])
        return edit(m[0])
    low.source = re.sub(DK_WINDOW_COPY, sub, low.source)
    assert len(hits) == 1


def _no_window_copy(low):
    """The source window's copy dropped."""
    _edit_window_copy(low, lambda store: "")


# -- the half types' tensor-core conv_dk with its window over tr tap rows (``dk_mma_tap_rows``:
# the chunks outside groups of tr tap rows, the source read ceil(k / tr) rather than k times per
# block; sm_90's shared memory), executed on PoCL
def _window_first_group_only(low):
    """The source window staged for the first group of tap rows only (loop i_0): the later
    groups' dots read the first group's rows."""
    _edit_window_copy(low, lambda store: "if (i_0 < 1) " + store)


DK_TAP_ROWS_CASE = dict(_geo(1, 16, 3, 128, 2, 128, 4, 1, 1, 1, 1), O=64)  # k4: 2 groups of 2 tap rows


def test_conv_dk_tap_rows_plan():
    """Tap rows per window (tr | k): the 2x32x65x64 k3 O=32 conv_dk (4 rows of 64
    pixels) takes all 3 tap rows in one window of 6 rows on sm_90 and sm_80 (73,344 B, 2 blocks
    of 16 warps), the source 782,336 -> 389,120 elements (per block 12 -> 6 window rows);
    2.83 -> 2.04 MB requested in f16. The k4 case 2 groups of 2 on sm_90, one tap row on sm_80
    (88,640 B per 16-warp block: 2 need over 163 KB). The benchmark's k5 (3 and 2 do not
    divide 5) and TF32 keep a window per tap row."""
    from dynfilter_tvm import gpu_report as G
    from schedules.pac_cuda import dk_mma_rows, dk_mma_shared_bytes, dk_mma_tap_rows, dk_mma_tile

    k3 = Workload.make("pac", "conv_dk", dict(_geo(2, 32, 65, 64, 64, 64, 3, 1, 1, 0, 1), O=32), "float16")
    k4 = Workload.make("pac", "conv_dk", DK_TAP_ROWS_CASE, "bfloat16")
    bench = dict(_geo(8, 64, 128, 128, 128, 128, 5, 1, 1, 2, 1), O=64)
    k5 = Workload.make("pac", "conv_dk", bench, "float16")
    tf32 = Workload.make("pac", "conv_dk", dict(bench, tf32=1), "float32")
    for wl, wx, ry, trs in ((k3, 2, 4, (3, 3)), (k4, 4, 2, (2, 1)), (k5, 4, 4, (1, 1)), (tf32, 4, 2, (1, 1))):
        assert dk_mma_tile(wl) == wx and dk_mma_rows(wl, wx) == ry
        assert tuple(dk_mma_tap_rows(wl, wx, ry, cuda_target(a)) for a in ("sm_90", "sm_80")) == trs
        assert dk_mma_tap_rows(wl, wx, ry) == trs[0] and dk_mma_tap_rows(wl, wx, 1, cuda_target("sm_86")) <= 3
    assert dk_mma_shared_bytes(k3, 2, True, 4, 3) == 73_344 and dk_mma_shared_bytes(k4, 4, True, 2, 2) == 88_640
    assert G._pac_dk_window_rows(k3.p, 4, 1) == G._pac_real_pairs(65, 64, k3.p)
    assert G._pac_dk_mma_parts(k3, k3.p, 2, 4, True, 1)["X"] == 782_336
    assert G._pac_dk_mma_parts(k3, k3.p, 2, 4, True, 3)["X"] == 389_120 == 2 * 32 * 95 * 64
    for arch in ("sm_90", "sm_80"):
        assert G.requested_bytes(k3, 2, arch) == 2 * (262_144 + 389_120 + 294_912 + 73_728)
    assert G.requested_bytes(k5, 2, "sm_90") == 158_859_264


@pytest.mark.parametrize("dtype", ("float16", "bfloat16"))
def test_conv_dk_tap_rows(dtype):
    """k4 in groups of 2 tap rows (2 rows of 128 pixels, 16 warps: the window 16 x 3 x 131,
    the sums 2 x 2 x 4 x 256 floats) from one dynamic array of the planned bytes, within
    tolerance of the float64 reference; with the window staged for the first group only, the
    second group's dots read the first group's rows: the check fails."""
    from dynfilter_tvm import emulate
    from schedules.pac_cuda import dk_mma_rows, dk_mma_shared_bytes, dk_mma_tap_rows, dk_mma_tile

    wl = Workload.make("pac", "conv_dk", DK_TAP_ROWS_CASE, dtype)
    assert dk_mma_tile(wl) == 4 and dk_mma_rows(wl, 4) == 2 and dk_mma_tap_rows(wl, 4, 2) == 2
    low = emulate.prepare(wl, "cuda")
    (ln,) = low.launches
    assert ln.dyn_shared == dk_mma_shared_bytes(wl, 4, True, 2, 2) == 88_640
    assert emulate.check(wl, "cuda", lowered=low) <= emulate.TOLERANCE[dtype]
    with pytest.raises(emulate.CheckFailed):
        emulate.check(wl, "cuda", lowered=low, mutate=_window_first_group_only)


# -- TF32 conv_dk with the source window (``dk_mma_window``: 32-channel chunks, two 16-channel
# warp tiles per 16 pixels, four threads per pixel in the dot, ``dk_mma_halves``; a tap row's
# k totals spread over those threads), executed on PoCL
DK_TF32_WINDOW_CASES = {
    # the benchmark's block: 2 rows of 128 pixels, k5, O = 64, 1,024 threads, 160,768 B dynamic
    "rows2-k5": (dict(_geo(1, 32, 2, 128, 2, 128, 5, 1, 1, 2, 1), O=64, tf32=1), 4, 2),
    # the zero-inserted source, two 32-channel chunks, O = 48 (6 K steps), 2 rows of 32 pixels
    "zero-ins": (dict(_geo(1, 64, 5, 16, 10, 32, 3, 1, 2, 1, 1), O=48, tf32=1), 1, 2),
}
# the window's copy: its only padded store (static: Sz_shared; dynamic: the merged array)
DK_TF32_WINDOW_COPY = r"(Sz_shared_ptr|\(\(__local float\*\)buf_dyn_shmem_ptr\))\[[^;]*\] = condval(_\d+)?;"
DK_TF32_BARRIER = "barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);"


def _tf32_no_window_copy(low):
    low.source, n = re.subn(DK_TF32_WINDOW_COPY, "", low.source)
    assert n == 1


def _tf32_no_g_barrier(low):
    """The barrier before the dots' first read of G (its only vector loads) dropped."""
    at = low.source.index("*(__local float4*)")
    start = low.source.rindex(DK_TF32_BARRIER, 0, at)
    low.source = low.source[:start] + low.source[start + len(DK_TF32_BARRIER):]


def _tf32_no_dk_store_z1(low):
    """The dK stores of the threads with threadIdx.z = 1 skipped (tap 1 of every tap row)."""
    low.source, n = re.subn(r"(\n\s*)(out_ptr\[)", r"\1if (((int)get_local_id(2)) != 1) \2", low.source)
    assert n >= 1


@pytest.mark.parametrize("name", DK_TF32_WINDOW_CASES)
def test_conv_dk_tf32_window(name):
    """TF32's window build within TF32_TOLERANCE of the float64 reference (and above float32's
    own: the rounding shows), 4 threads per pixel (threadIdx.z), shared memory as budgeted
    (dk_mma_shared_bytes). Negative controls: the window's copy dropped (its only padded
    store; the dots read poisoned shared memory: NaN); the barrier between G's fragment stores
    and the dots that read them dropped (the first tap's dots read G's poison); the dK stores
    of the threads with threadIdx.z = 1 skipped (tap 1 of each tap row is stored by those
    threads only: left poisoned)."""
    from dynfilter_tvm import emulate
    from schedules.pac_cuda import dk_mma_halves, dk_mma_rows, dk_mma_shared_bytes, dk_mma_tile, dk_mma_window

    p, wx, ry = DK_TF32_WINDOW_CASES[name]
    wl = Workload.make("pac", "conv_dk", p, "float32")
    assert dk_mma_tile(wl) == wx and dk_mma_window(wl, wx) and dk_mma_rows(wl, wx) == ry
    low = emulate.prepare(wl, "cuda")
    (ln,) = low.launches
    assert tuple(ln.block) == (32, wx * ry, dk_mma_halves(wl, True)) == (32, wx * ry, 4)
    smem = dk_mma_shared_bytes(wl, wx, True, ry)
    assert ln.dyn_shared == (smem if smem > 48 * 1024 else 0)
    assert "tvm_mma_m16n8k8_tf32(" in low.source
    assert 1e-5 < emulate.check(wl, "cuda", lowered=low) <= emulate.TF32_TOLERANCE
    for mutate in (_tf32_no_window_copy, _tf32_no_g_barrier, _tf32_no_dk_store_z1):
        with pytest.raises(emulate.CheckFailed, match="NaN"):
            emulate.check(wl, "cuda", lowered=low, mutate=mutate)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ("sm_80", "sm_90"))
def test_conv_dk_tf32_window_model_shapes(arch):
    """pac_joint_upsample's TF32 conv_dk (factor 16: C = O = 32, k5, zero-inserted) at its two
    smallest rows, which take other blocks than the benchmark's 1,024 threads: 2 rows of 32
    pixels (256 threads, 32,768 B static) and of 64 (512 threads, 64,512 B dynamic), both 4
    blocks of 8 warps asked (ptxas figures, estimates): <= 64 registers, no spills, >= 50%,
    requested bytes under the per-tap build's (2 rows of 64: 9.7 MB, was 21.3)."""
    from dynfilter_tvm import emulate
    from dynfilter_tvm import gpu_report as G
    from schedules.pac_cuda import dk_mma_halves, dk_mma_rows, dk_mma_shared_bytes, dk_mma_tile, dk_mma_window

    target = cuda_target(arch)
    for n, wx, smem in ((16, 1, 32_768), (32, 2, 64_512)):
        wl = Workload.make("pac", "conv_dk", dict(_geo(2, 32, n, n, 2 * n, 2 * n, 5, 1, 2, 2, 1), O=32, tf32=1),
                           "float32")
        assert dk_mma_tile(wl, target) == wx and dk_mma_window(wl, wx, target) and dk_mma_rows(wl, wx, target) == 2
        assert dk_mma_shared_bytes(wl, wx, True, 2) == smem
        threads = 32 * wx * 2 * dk_mma_halves(wl, True)
        src = build(wl, target).mod.imports[0].inspect_source()
        assert f"__launch_bounds__({threads}, {1024 // threads})" in src
        res = G.ptxas_resources(src, arch)["pac_conv_dk_kernel"]
        if smem > 48 * 1024:
            (ln,) = emulate.lower(emulate.scheduled(wl, arch), target).launches
            assert res["smem"] == 0 and ln.dyn_shared == smem, (res, ln)
        else:
            assert res["smem"] == smem, res
        assert res["spill"] == 0 and res["regs"] <= 64 and G.occupancy(arch, threads, res["regs"], smem) >= 0.5, res
        per_tap = sum(G._pac_dk_mma_parts(wl, wl.p, wx, 1, False).values())
        assert G.requested_bytes(wl, 4, arch) < 4 * per_tap
    assert round(G.requested_bytes(wl, 4, arch) / 1e5) == 97 and round(4 * per_tap / 1e5) == 213


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ("sm_80", "sm_90"))
def test_simt_conv_resources(arch):
    """Issue 15's aims for the float32 SIMT conv without the tf32 flag (ptxas figures and the
    report's byte count; estimates, no GPU): at the benchmark shape, forward and input
    gradient, static and generic builds, the schedule asks for 4 blocks of 256 threads per SM
    (``__launch_bounds__(256, 4)``) and ptxas keeps 64 registers without spills: 50%
    occupancy (without the bound sm_80 took 75-80); both stage K once per tile, so their
    requested bytes leave them FLOP-bound (1,289 MB; was 2,115). At pac_joint_upsample-like
    shapes (128-thread blocks) and C = O = 64 k3 / k7, where the bound made ptxas spill or
    cost occupancy (``_bounded``), no bound, and no spills."""
    from dynfilter_tvm import emulate, gpu_report as G

    bench = G.benchmark_workloads()["PAC conv 8x64x128x128 k5"][:2]
    generic = G.generic_workloads()["PAC conv 8x64x128x128 k5 generic"][:2]
    for built, sizes in [(wl, None) for wl in bench] + generic:
        assert built.dtype == "float32" and not built.p.get("tf32")
        src = build(built, cuda_target(arch)).mod.imports[0].inspect_source()
        assert G.mma_kind(src) is None and "__launch_bounds__(256, 4)" in src
        res = G.ptxas_resources(src, arch)["pac_conv_kernel"]
        assert res["spill"] == 0 and res["regs"] <= 64, (built, res)
        assert G.occupancy(arch, 256, res["regs"], res["smem"]) >= 0.5
        wl = emulate.concrete(built, sizes) if sizes else built
        req = G.requested_bytes(wl, 4, arch, generic=built if sizes else None)
        assert req < 1.35e9 and G.estimate_s(req, G.flops(wl), None) == G.flops(wl) / G.FP32_SIMT
    for p in (dict(_geo(2, 32, 65, 64, 64, 64, 3, 1, 1, 0, 1), O=32, a=0),
              dict(_geo(2, 32, 128, 128, 64, 64, 5, 2, 1, 2, 1), O=32, a=1),
              dict(_geo(2, 64, 56, 56, 56, 56, 3, 1, 1, 1, 1), O=64, a=1),
              dict(_geo(2, 64, 64, 64, 64, 64, 7, 1, 1, 3, 1), O=64, a=0)):
        wl = Workload.make("pac", "conv", p, "float32")
        src = build(wl, cuda_target(arch)).mod.imports[0].inspect_source()
        assert re.search(r"__launch_bounds__\(\d+\) pac_conv_kernel", src), p  # not bounded
        assert G.ptxas_resources(src, arch)["pac_conv_kernel"]["spill"] == 0, p


def test_launch_bounds_pipeline_only_where_asked(target):
    """The build's TIR pipeline adds the minimum of blocks only to modules whose schedule asked
    (``schedules.common.min_blocks``): another kernel's source is TVM's default pipeline's, unchanged;
    the asking kernel's differs from the default build exactly there."""
    import tvm

    from dynfilter_tvm.build import schedule

    wide = dict(_geo(1, 4, 16, 32, 16, 32, 5, 1, 1, 2, 1), O=64, a=0)  # 4 x 32 tiles, 256 threads
    for p, asks in ((wide, True), (dict(PLAIN, O=24, a=0), False), (dict(PLAIN, G=1, a=0), False)):
        wl = Workload.make("pac", "conv" if "O" in p else "pool", p, "float32")
        mod, _ = schedule(wl, target)
        with target:
            default = tvm.compile(mod, target=target).mod.imports[0].inspect_source()
        ours = build(wl, target, mod).mod.imports[0].inspect_source()
        if asks:
            bound = re.search(r"__launch_bounds__\((\d+), (\d+)\) pac_conv_kernel", ours)
            assert bound and bound.groups() == ("256", "4")  # 64 registers
            assert re.sub(r"__launch_bounds__\((\d+), \d+\)", r"__launch_bounds__(\1)", ours) == default
        else:
            assert ours == default
