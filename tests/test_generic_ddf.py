"""Shape-generic DDF kernels (B, H, W symbolic): one build serves every size.

The DDF op declares ``SYMBOLIC``; the tests set the generic shape mode explicitly (the default
on CPU, not on CUDA; see ``dynfilter_tvm.dispatch``). Checked: forward and all three gradients through the torch op at
several sizes against the float64 reference, with nothing built after the first size; static
mode still builds per shape; the CUDA schedules build for sm_90 with device code and run on
PoCL at several sizes from one lowering.
"""
from __future__ import annotations

import pytest
import torch

from dynfilter_tvm import cache, dispatch, emulate
from dynfilter_tvm.ops import ddf as ddf_ops
from dynfilter_tvm.workload import Workload
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
    built = cache.stats["built"]
    for B, H, W in SIZES[1:]:
        _run(B, H, W, C, G, k, s, d, combine)
    assert cache.stats["built"] == built, "a later size built a kernel"


def test_float32_generic(generic):
    for B, H, W in SIZES[:3]:
        from torch_bridge.functional import ddf
        from torch_bridge.reference import ddf_reference

        ins = make_inputs(B, 8, H, W, 2, 3, 1, 1, dtype=torch.float32, requires_grad=False)
        torch.testing.assert_close(ddf(*ins, 3), ddf_reference(*ins, 3), rtol=1e-4, atol=1e-4)


def test_static_mode_builds_per_shape(generic):
    dispatch.set_shape_mode("static")
    _run(1, 9, 11, 8, 2, 3, 1, 1, "mul")
    built = cache.stats["built"]
    _run(1, 10, 11, 8, 2, 3, 1, 1, "mul")
    assert cache.stats["built"] == built + 4  # fwd, dx, ds, dc at the new shape


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
    # nothing set: generic on CPU (one build for every size), static on CUDA (tiled schedules)
    assert dispatch.shape_mode(cpu_target()) == "generic"
    assert dispatch.select(wl, cpu_target()).kind == "generic"
    assert dispatch.shape_mode(cuda_target("sm_90")) == "static"
    assert dispatch.select(wl, cuda_target("sm_90")) is wl
    # the environment overrides the target's default, either way
    monkeypatch.setenv(dispatch.ENV_SHAPES, "generic")
    assert dispatch.select(wl, cuda_target("sm_90")).kind == "generic"
    monkeypatch.setenv(dispatch.ENV_SHAPES, "static")
    assert dispatch.select(wl, cpu_target()) is wl
    monkeypatch.setenv(dispatch.ENV_SHAPES, "dynamic")
    with pytest.raises(ValueError, match="DYNFILTER_TVM_SHAPES must be one of"):
        dispatch.shape_mode(cpu_target())


def _generic_wl(kernel, C, G, k, s, d, combine, dtype):
    return Workload.make("ddf", kernel, dict(B=None, C=C, H=None, W=None, G=G, k=k, s=s, d=d, combine=combine),
                         dtype)


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
