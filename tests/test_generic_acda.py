"""Shape-generic ACDA kernels (N, H, W symbolic): one build serving several sizes.

ACDA declares ``SYMBOLIC`` for every kernel (``fwd``, ``dx``, ``datoms``). Checked: the forward
and all gradients through ``acda_atom_conv2d`` in the generic shape mode against the float64
reference at several sizes, nothing built after the first size; the generic builds of every
kernel equal the static ones; the CUDA builds for sm_90 with device code and run on PoCL at
several sizes from one lowering."""
import pytest
import torch
import tvm

from dynfilter_tvm import cache, dispatch, emulate, registry
from dynfilter_tvm.build import build
from dynfilter_tvm.ops import acda as acda_ops
from dynfilter_tvm.ops.common import conv_out_size
from dynfilter_tvm.target import cpu_target, cuda_target
from dynfilter_tvm.workload import Workload

SYM = ("N", "H", "W")
# (k, s, d, p) configurations, each built once, and the (N, H, W) sizes it serves:
# odd sizes, batch 1, stride 2, dilation 2, no padding, rows longer than X_QUANTUM.
CONFIGS = [(3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 2, 2), (5, 2, 2, 0)]
SIZES = [(2, 11, 13), (1, 13, 11), (1, 12, 16), (2, 9, 37)]


def _wl(kernel, N, H, W, k, s, d, p, dtype="float64"):
    return Workload.make("acda", kernel, dict(N=N, C=3, H=H, W=W, M=2, T=4, k=k, s=s, d=d, p=p), dtype)


def _args(kernel, wl):
    N, C, H, W, M, T, k, s, d, p = (wl.p[n] for n in ("N", "C", "H", "W", "M", "T", "k", "s", "d", "p"))
    Ho, Wo = conv_out_size(H, k, s, p, d), conv_out_size(W, k, s, p, d)
    g = torch.Generator().manual_seed(0)
    X, A, P, dO = (torch.randn(sh, generator=g, dtype=torch.float64)
                   for sh in ((N, C, H, W), (N, M, T, Ho, Wo), (T, k, k), (N, C, M, Ho, Wo)))
    ins, out = {"fwd": ([X, A, P], (N, C, M, Ho, Wo)), "dx": ([dO, A, P], (N, C, H, W)),
                "datoms": ([dO, X], (N, M, k, k, Ho, Wo))}[kernel]
    return ins, torch.full(out, float("nan"), dtype=torch.float64)


def _check_sizes(kernel, config, generic_fn):
    target = cpu_target()
    for N, H, W in SIZES:
        wl = _wl(kernel, N, H, W, *config)
        ins, got = _args(kernel, wl)
        generic_fn(*ins, got)
        want = got.clone().fill_(float("nan"))
        build(wl, target).mod[f"acda_{kernel}"](*ins, want)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=f"{kernel} {config} {N}x{H}x{W}")


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("kernel", ("fwd", "dx", "datoms"))
def test_computes_accept_symbolic_shapes(kernel, config):
    """The unscheduled computes with N, H, W symbolic: one build, every size bound from the
    tensors (dx reads H, W from its output), equal to the static kernels."""
    wl = _wl(kernel, 1, 9, 9, *config).with_symbolic(SYM)
    lib = tvm.compile(tvm.IRModule({"main": registry.prim_func(wl)}), target=cpu_target())
    _check_sizes(kernel, config, lib["acda_" + kernel])


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("kernel", ("fwd", "dx", "datoms"))
def test_generic_cpu_schedules_serve_every_size(kernel, config):
    """The default CPU schedules on symbolic shapes (rows padded to whole vectors)."""
    wl = _wl(kernel, 1, 9, 9, *config).with_symbolic(SYM)
    _check_sizes(kernel, config, build(wl, cpu_target()).mod[f"acda_{kernel}"])


# (C, M, T, k, s, d, p): tiles with unit loops the schedules must do without (one channel per
# block: C = 5 is prime; one atom, one basis, a 1x1 kernel)
EDGE_PARAMS = [(5, 3, 4, 3, 1, 1, 1), (1, 1, 1, 1, 1, 1, 0), (7, 1, 2, 3, 2, 1, 1)]


@pytest.mark.parametrize("dtype", ("float64", "float16", "bfloat16"))
@pytest.mark.parametrize("kernel", ("fwd", "dx", "datoms"))
def test_generic_cpu_schedules_edge_tiles(kernel, dtype):
    """Generic CPU builds equal the static ones where the register tiles lose loops, and in
    half types (accumulated in float32 either way, in the same order: equal)."""
    tdt = getattr(torch, dtype)
    for C, M, T, k, s, d, p in EDGE_PARAMS:
        base = Workload.make("acda", kernel, dict(N=1, C=C, H=9, W=9, M=M, T=T, k=k, s=s, d=d, p=p), dtype)
        generic = build(base.with_symbolic(SYM), cpu_target()).mod[f"acda_{kernel}"]
        for N, H, W in ((1, 9, 9), (2, 7, 19)):
            wl = Workload.make("acda", kernel, dict(base.p, N=N, H=H, W=W), dtype)
            ins, want = _args(kernel, wl)
            ins = [t.to(tdt) for t in ins]
            # datoms writes the accumulation type (float32 for half types)
            want = want.to(tdt if kernel != "datoms" or dtype == "float64" else torch.float32)
            got = want.clone()
            generic(*ins, got)
            build(wl, cpu_target()).mod[f"acda_{kernel}"](*ins, want)
            assert not want.isnan().any()
            torch.testing.assert_close(got, want, rtol=0, atol=0, msg=f"{kernel} {dtype} C{C} M{M} k{k} {N}x{H}x{W}")


@pytest.fixture
def generic():
    assert acda_ops.SYMBOLIC == SYM
    dispatch.set_shape_mode("generic")
    cache.clear_memory()
    yield
    dispatch.set_shape_mode(None)
    cache.clear_memory()


def _inputs(N, C, H, W, M, T, k, s, d, p):
    g = torch.Generator().manual_seed(N * 1000 + H * 10 + W)
    Ho, Wo = conv_out_size(H, k, s, p, d), conv_out_size(W, k, s, p, d)
    return [torch.randn(*sh, generator=g, dtype=torch.float64).requires_grad_()
            for sh in ((N, C, H, W), (N, M * T, Ho, Wo), (T, k, k))]


def _compare(ins, s, p, d):
    from torch_bridge.functional import acda_atom_conv2d
    from torch_bridge.reference import acda_atom_conv2d_reference

    out = acda_atom_conv2d(*ins, stride=s, padding=p, dilation=d)
    grad = torch.randn_like(out)
    got = (out, *torch.autograd.grad(out, ins, grad))
    ref_ins = [t.detach().clone().requires_grad_() for t in ins]
    ref = acda_atom_conv2d_reference(*ref_ins, stride=s, padding=p, dilation=d)
    want = (ref, *torch.autograd.grad(ref, ref_ins, grad))
    for name, a, b in zip(("out", "dx", "dcoef", "dbases"), got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=name)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_one_build_serves_every_size(generic, config, monkeypatch):
    """Through the torch op: exact forward and gradients at every size from the generic
    builds of the first size (all three kernels); after it nothing is built."""
    k, s, d, p = config
    built = []
    real = cache.build
    monkeypatch.setattr(cache, "build", lambda wl, *a: built.append(wl) or real(wl, *a))
    params = lambda N, H, W: (N, 3, H, W, 2, 4, k, s, d, p)  # noqa: E731
    _compare(_inputs(*params(*SIZES[0])), s, p, d)
    # (a kernel found in the session's disk cache is not built again: a subset)
    assert {(wl.kernel, wl.kind) for wl in built} <= {(k, "generic") for k in ("fwd", "dx", "datoms")}
    for size in SIZES[1:]:
        before, n = cache.stats["built"], len(built)
        with torch.no_grad():
            from torch_bridge.functional import acda_atom_conv2d
            acda_atom_conv2d(*(t.detach() for t in _inputs(*params(*size))), stride=s, padding=p, dilation=d)
        assert cache.stats["built"] == before, f"{size}: the forward built a kernel"
        _compare(_inputs(*params(*size)), s, p, d)
        assert built[n:] == [] and cache.stats["built"] == before, f"{size} built {built[n:]}"


def test_float32_generic_matches_static(generic):
    from torch_bridge.functional import acda_atom_conv2d

    x, a, b = (t.detach().float() for t in _inputs(2, 8, 14, 21, 3, 4, 5, 1, 1, 2))
    outs = []
    for mode in ("generic", "static"):
        dispatch.set_shape_mode(mode)
        outs.append(acda_atom_conv2d(x, a, b, padding=2))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


def test_generic_check_params_skips_symbolic_values():
    from dynfilter_tvm.ops.acda import check_params

    check_params(tvm.te.var("N"), 3, tvm.te.var("H"), tvm.te.var("W"), 2, 4, 3, 1, 1, 1)
    with pytest.raises(ValueError, match="kernel_size"):
        check_params(tvm.te.var("N"), 3, tvm.te.var("H"), tvm.te.var("W"), 2, 4, 0, 1, 1, 1)


# (C, M, T, k, s, d, p): k = 9 leaves the taps rolled; float64 atoms take a smaller fwd tile
CUDA_PARAMS = [(3, 2, 4, 3, 1, 1, 1), (5, 3, 2, 5, 2, 2, 2), (2, 2, 3, 9, 1, 1, 4)]


def _cuda_wl(kernel, C, M, T, k, s, d, p, dtype):
    return Workload.make("acda", kernel, dict(N=None, C=C, H=None, W=None, M=M, T=T, k=k, s=s, d=d, p=p), dtype)


@pytest.mark.parametrize("kernel", ("fwd", "dx", "datoms"))
def test_cuda_generic_builds_device_code(kernel):
    for params in CUDA_PARAMS:
        lib = build(_cuda_wl(kernel, *params, "float32"), cuda_target("sm_90"))
        src = lib.mod.imports[0].inspect_source()
        assert "__global__" in src and "threadIdx" in src


EMU_SIZES = [dict(N=1, H=9, W=9), dict(N=2, H=11, W=13), dict(N=1, H=7, W=37), dict(N=1, H=10, W=16)]


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
@pytest.mark.parametrize("kernel", ("fwd", "dx", "datoms"))
def test_cuda_generic_emulated(kernel, dtype, way):
    for params in CUDA_PARAMS:
        emulate.check_sizes(_cuda_wl(kernel, *params, dtype), way, EMU_SIZES)
