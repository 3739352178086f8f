"""Generic PAC kernels: one build per configuration (channels, kernel size, stride, form)
serves every batch and size, forward and gradients equal to the float64 reference; the
generic CUDA kernels build with device code."""
import pytest
import torch

from dynfilter_tvm import cache, dispatch
from dynfilter_tvm.build import build
from dynfilter_tvm.target import cuda_target
from dynfilter_tvm.workload import Workload
from torch_bridge import functional as Fn
from torch_bridge.reference import pac as R

from test_pac_op import _compare, conv_inputs

SIZES = [(2, 7, 9), (1, 12, 5), (3, 17, 23), (1, 6, 40)]  # (N, H, W): odd, batch 1, wider than a tile


@pytest.fixture(autouse=True)
def _generic():
    dispatch.set_shape_mode("generic")
    yield
    dispatch.set_shape_mode(None)


def _serve_all_sizes(run_one):
    """run_one(N, H, W) at every size: the first builds, the later ones build nothing."""
    run_one(*SIZES[0])
    built = cache.stats["built"]
    for size in SIZES[1:]:
        run_one(*size)
        assert cache.stats["built"] == built, f"{size} built a kernel"


@pytest.mark.parametrize("C,O,k,s,p,d", [(3, 5, 3, 1, 1, 1), (2, 4, 5, 2, 2, 1), (4, 3, 3, 1, 2, 2)], ids=str)
def test_pacconv2d(C, O, k, s, p, d):
    _serve_all_sizes(lambda N, H, W: _compare(Fn.pacconv2d, conv_inputs(N, C, O, H, W, k, s, p, d),
                                              dict(stride=s, padding=p, dilation=d), torch.float64, 1e-12, 1e-10))


@pytest.mark.parametrize("C,O,k,s,p,op", [(3, 5, 3, 2, 1, 1), (2, 3, 5, 1, 2, 0)], ids=str)
def test_pacconv_transpose2d(C, O, k, s, p, op):
    def run_one(N, H, W):
        inputs = conv_inputs(N, C, O, H, W, k, s, p, 1, transposed=True, op=op)
        _compare(Fn.pacconv_transpose2d, inputs, dict(stride=s, padding=p, output_padding=op),
                 torch.float64, 1e-12, 1e-10)
    _serve_all_sizes(run_one)


@pytest.mark.parametrize("C,G,k,s,p", [(3, 1, 3, 1, 1), (4, 4, 5, 2, 2)], ids=str)
def test_pacpool2d(C, G, k, s, p):
    def run_one(N, H, W):
        Ho, Wo = R.conv_output_size((H, W), (k, k), (s, s), (p, p), (1, 1))
        inputs = [torch.randn(N, C, H, W, dtype=torch.float64, requires_grad=True),
                  torch.rand(N, G, k, k, Ho, Wo, dtype=torch.float64, requires_grad=True)]
        _compare(Fn.pacpool2d, inputs, dict(kernel_size=k, stride=s, padding=p), torch.float64, 1e-12, 1e-10)
    _serve_all_sizes(run_one)


@pytest.mark.parametrize("opts", [dict(stride=1, padding=1), dict(stride=2, padding=1, channel_wise=True,
                                                                   kernel_type="inv_0.5_2_asym")], ids=str)
def test_packernel2d(opts):
    def run_one(N, H, W):
        f = torch.randn(N, 3, H, W, dtype=torch.float64, requires_grad=True)
        kw = dict(kernel_size=3, **opts)
        got, want = Fn.packernel2d(f, **kw)[0], R.packernel2d_reference(f, **kw)[0]
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
        grad = torch.randn_like(want)
        torch.testing.assert_close(torch.autograd.grad(got, f, grad)[0], torch.autograd.grad(want, f, grad)[0])
    _serve_all_sizes(run_one)


def test_float32_generic_matches_static():
    """The generic build against the static one at a size where register tiles are padded."""
    x, K, w, b = (t.detach().float() for t in conv_inputs(2, 8, 24, 11, 37, 3, 1, 1, 1))
    outs = []
    for mode in ("generic", "static"):
        dispatch.set_shape_mode(mode)
        outs.append(Fn.pacconv2d(x, K, w, b, padding=1))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


_CUDA = [("conv", dict(C=16, O=24, k=5, s=1, z=1, p=2, d=1, a=0)), ("conv", dict(C=3, O=5, k=3, s=1, z=2, p=1, d=1, a=1)),
         ("pool", dict(C=16, G=1, k=5, s=1, z=1, p=2, d=1, a=0)), ("conv_dk", dict(C=16, O=24, k=5, s=1, z=1, p=2, d=1)),
         ("conv_dw", dict(C=16, O=24, k=5, s=1, z=1, p=2, d=1)), ("pool_dk", dict(C=16, G=16, k=5, s=1, z=1, p=2, d=1)),
         ("dist", dict(C=3, G=1, k=5, s=2, p=2, d=1, asym=0)), ("dist_df", dict(C=3, G=1, k=5, s=2, p=2, d=1, asym=0)),
         ("dist_df0", dict(C=4, G=4, k=3, s=1, p=2, d=2, asym=1))]


@pytest.mark.parametrize("kernel,params", _CUDA, ids=[f"{k}-{i}" for i, (k, _) in enumerate(_CUDA)])
def test_cuda_generic_builds_device_code(kernel, params):
    sizes = dict(N=1, H=1, W=1, Ho=1, Wo=1)
    wl = dispatch.generic_of(Workload.make("pac", kernel, dict(params, **sizes), "float32"))
    assert wl is not None and wl.kind == "generic"
    lib = build(wl, cuda_target("sm_90"))
    assert list(lib.mod.imports) and "__global__" in lib.mod.imports[0].inspect_source()
