"""CUDA builds of the DDF kernels with the default schedules.

Building needs no GPU: every kernel x shape x dtype must come out with device code (threads
bound), and the generated source must compile with nvcc. One test, marked ``cuda``, runs the
torch op on a real GPU against the float64 reference (skipped without one).
"""
from __future__ import annotations

import shutil
import subprocess

import pytest
import torch
import tvm.s_tir as s_tir

from dynfilter_tvm import registry
from dynfilter_tvm.build import BuildError, build
from dynfilter_tvm.ops.ddf import out_size
from dynfilter_tvm.target import cuda_target
from dynfilter_tvm.workload import Workload

KERNELS = ("fwd", "dx", "ds", "dc")
DTYPES = ("float32", "float16", "bfloat16")


def _p(B, C, H, W, G, k, s, d, combine):
    return dict(B=B, C=C, H=H, W=W, G=G, k=k, s=s, d=d, combine=combine)


SHAPES = {
    "base": _p(2, 8, 9, 11, 2, 3, 1, 1, "mul"),
    # B = G = C/G = k = Ho = 1 (more than one output, so every kernel still has threads)
    "unit-axes": _p(1, 1, 1, 5, 1, 1, 1, 1, "mul"),
    "odd-s2-d2-heads-add": _p(2, 6, 13, 7, 2, 5, 2, 2, "add"),
    # C/G = 32; k = 7 is the largest unrolled (ds: 49 tap sums per thread)
    "k7-s3-wide-heads": _p(1, 64, 10, 9, 2, 7, 3, 1, "mul"),
    # Wo = 300 > 256 threads: dc loops over x in each thread; k = 9 taps stay loops
    "k9-wide-rows": _p(1, 3, 3, 600, 1, 9, 2, 1, "add"),
    # Wo = 1: dc runs one thread per output, many outputs per block (threadIdx.y)
    "one-column": _p(3, 4, 6, 1, 2, 3, 2, 1, "mul"),
}


@pytest.fixture(scope="module")
def target():
    return cuda_target("sm_90")


def _build(kernel, params, dtype, target):
    return build(Workload.make("ddf", kernel, params, dtype), target)


def _source(lib) -> str:
    assert list(lib.mod.imports), "no device module: the kernel was built host-only"
    return lib.mod.imports[0].inspect_source()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_builds_device_code(kernel, shape, dtype, target):
    src = _source(_build(kernel, SHAPES[shape], dtype, target))
    assert "__global__" in src
    assert "threadIdx" in src


def test_single_output_builds(target):
    # One output element per kernel: TVM drops unit thread bindings, so the source may have no
    # threadIdx at all, but there must still be a kernel (and it must not race, see _threads).
    one = _p(1, 1, 1, 1, 1, 1, 1, 1, "mul")
    for kernel in KERNELS:
        assert "__global__" in _source(_build(kernel, one, "float32", target))


def test_unscheduled_module_is_rejected(target):
    wl = Workload.make("ddf", "fwd", SHAPES["base"], "float32")
    mod = s_tir.Schedule(registry.prim_func(wl)).mod
    with pytest.raises(BuildError, match="without device code"):
        build(wl, target, mod=mod)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ["odd-s2-d2-heads-add", "k7-s3-wide-heads"])
def test_source_compiles_with_nvcc(shape, dtype, target, tmp_path):
    # Without a CUDA driver TVM keeps the source; check that nvcc accepts it, as the GPU
    # machine's compile step will. The two shapes cover both ds layouts and both allreduce
    # forms TVM emits (warp shuffles, shared memory).
    for kernel in KERNELS:
        cu = tmp_path / f"{kernel}.cu"
        cu.write_text(_source(_build(kernel, SHAPES[shape], dtype, target)))
        cmd = ["nvcc", "-arch=sm_90", "-cubin", "-o", str(cu.with_suffix(".cubin")), str(cu)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, f"{kernel}: nvcc failed:\n{res.stderr[-3000:]}"


# Relative to the largest reference value; half types round their results.
GPU_TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
GPU_SHAPES = [
    _p(2, 8, 9, 11, 2, 3, 1, 1, "mul"),
    _p(1, 6, 13, 7, 2, 5, 2, 2, "add"),
    _p(1, 64, 10, 9, 2, 7, 3, 1, "mul"),
    _p(1, 3, 3, 600, 1, 9, 2, 1, "add"),
    _p(3, 4, 6, 1, 2, 3, 2, 1, "mul"),
    _p(1, 1, 1, 1, 1, 1, 1, 1, "mul"),
]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", list(GPU_TOL), ids=str)
@pytest.mark.parametrize("p", GPU_SHAPES, ids=lambda p: "-".join(str(v) for v in p.values()))
def test_gpu_matches_reference(p, dtype):
    from torch_bridge.functional import ddf
    from torch_bridge.reference import ddf_reference

    B, C, H, W, G, k, s, d = (p[n] for n in ("B", "C", "H", "W", "G", "k", "s", "d"))
    Ho, Wo = out_size(H, s), out_size(W, s)
    gen = torch.Generator().manual_seed(0)
    shapes = [(B, C, H, W), (B, C, k, k), (B, G * k * k, Ho, Wo), (B, C, Ho, Wo)]
    x, cf, sf, grad = (torch.randn(sh, generator=gen).to("cuda", dtype) for sh in shapes)
    args = dict(kernel_size=k, dilation=d, stride=s, kernel_combine=p["combine"])

    ins = [t.clone().requires_grad_() for t in (x, cf, sf)]
    out = ddf(*ins, **args)
    got = (out, *torch.autograd.grad(out, ins, grad))
    # The reference sees the same (rounded) values, in float64.
    ref_ins = [t.double().requires_grad_() for t in (x, cf, sf)]
    ref = ddf_reference(*ref_ins, **args)
    want = (ref, *torch.autograd.grad(ref, ref_ins, grad.double()))

    for name, a, b in zip(("out", "d_features", "d_channel", "d_spatial"), got, want):
        assert a.dtype == dtype and a.shape == b.shape, name
        err = ((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
        assert err <= GPU_TOL[dtype], f"{name}: relative error {err:.2e}"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("kernel", KERNELS)
def test_strided_layers_of_ddf_resnet50_compile_with_nvcc(kernel, target, tmp_path):
    """The strided layers of DDF-ResNet-50 at batch 8: the streaming dc once staged more
    shared memory there than its layout sized (61,752 B at 8x128x56x56 s2), which only
    ptxas refused (the shipped bundle's build failed)."""
    for p in (_p(8, 128, 56, 56, 1, 3, 2, 1, "mul"), _p(8, 256, 28, 28, 1, 3, 2, 1, "mul")):
        cu = tmp_path / f"{kernel}.cu"
        cu.write_text(_source(_build(kernel, p, "float32", target)))
        res = subprocess.run(["nvcc", "-arch=sm_90", "-cubin", "-o", str(cu.with_suffix(".cubin")), str(cu)],
                             capture_output=True, text=True)
        assert res.returncode == 0, f"{kernel} {p}: nvcc failed:\n{res.stderr[-3000:]}"
