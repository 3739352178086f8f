"""DDF op (TVM kernels) against the plain-PyTorch reference: forward, all three gradients,
dtypes, layouts, autograd checks, torch.compile, autocast and input validation."""
import pytest
import torch

from ddf_cases import CASES, make_inputs
from torch_bridge.ops.ddf import ddf_grad_channel, ddf_grad_features, ddf_grad_spatial, ddf_op
from torch_bridge.functional import ddf
from torch_bridge.reference import ddf_reference


def _fwd_bwd(fn, x, cf, sf, args, grad):
    out = fn(x, cf, sf, *args)
    return (out, *torch.autograd.grad(out, (x, cf, sf), grad))


def _check_against_reference(case, dtype, atol, rtol):
    B, C, H, W, G, k, s, d, combine = case
    args = (k, d, s, combine)
    x, cf, sf = make_inputs(B, C, H, W, G, k, s, d, dtype)
    ref_in = [t.detach().double().requires_grad_() for t in (x, cf, sf)]
    ref_out = ddf_reference(*ref_in, *args)
    grad = torch.randn_like(ref_out)
    got = _fwd_bwd(ddf, x, cf, sf, args, grad.to(dtype))
    want = _fwd_bwd(ddf_reference, *ref_in, args, grad)
    for name, g, w in zip(("output", "grad features", "grad channel", "grad spatial"), got, want):
        assert g.dtype == dtype and g.shape == w.shape, name
        torch.testing.assert_close(g.double(), w, atol=atol, rtol=rtol, msg=f"{name} {case}")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_float64_matches_reference(case):
    _check_against_reference(case, torch.float64, 1e-10, 1e-10)


@pytest.mark.parametrize("case", CASES[:4], ids=str)
def test_float32_matches_reference(case):
    _check_against_reference(case, torch.float32, 1e-4, 1e-4)


# Half types: inputs are rounded to the dtype, accumulation is float32, the result is rounded
# once more; sums of up to C*H*W terms (dC) need a looser bound than elementwise outputs.
@pytest.mark.parametrize("dtype,atol,rtol", [(torch.float16, 3e-2, 1e-2), (torch.bfloat16, 2.5e-1, 2e-2)])
@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[3]], ids=str)
def test_half_types_match_reference(case, dtype, atol, rtol):
    _check_against_reference(case, dtype, atol, rtol)


@pytest.mark.slow
@pytest.mark.parametrize("case", [(1, 3, 17, 19, 1, 15, 1, 1, "mul"), (1, 2, 16, 21, 1, 15, 2, 2, "add")], ids=str)
def test_kernel_size_15(case):
    # The official CUDA extension fails from k = 15 on.
    _check_against_reference(case, torch.float64, 1e-9, 1e-9)


@pytest.mark.parametrize("case", [(1, 4, 5, 6, 2, 3, 2, 1, "mul"), (2, 2, 4, 5, 1, 3, 1, 2, "add")], ids=str)
def test_gradcheck(case):
    B, C, H, W, G, k, s, d, combine = case
    inputs = make_inputs(B, C, H, W, G, k, s, d)
    assert torch.autograd.gradcheck(lambda *t: ddf(*t, k, d, s, combine), inputs)


def test_noncontiguous_inputs():
    B, C, H, W, k = 2, 6, 9, 10, 3
    x = torch.randn(B, W, C, H, dtype=torch.float64).permute(0, 2, 3, 1)  # channels-last-like view
    cf = torch.randn(B, C, k, 2 * k, dtype=torch.float64)[..., ::2]  # strided view
    sf = torch.randn(B, k * k, W, H, dtype=torch.float64).transpose(2, 3)
    for t in (x, cf, sf):
        assert not t.is_contiguous()
        t.requires_grad_()
    grad = torch.randn(W, H, C, B, dtype=torch.float64).permute(3, 2, 1, 0)  # non-contiguous grad
    got = _fwd_bwd(ddf, x, cf, sf, (k, 1, 1, "mul"), grad)
    want = _fwd_bwd(ddf_reference, x, cf, sf, (k, 1, 1, "mul"), grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("W", [9, 16])
def test_misaligned_views(W):
    # Offset views (x[1:]) are contiguous but not 64-byte aligned, which TVM kernels assume.
    def offset(*shape):
        n = int(torch.tensor(shape).prod())
        return torch.randn(n + 1, dtype=torch.float32)[1:].view(shape).requires_grad_()

    x, cf, sf, grad = offset(2, 3, 8, W), offset(2, 3, 3, 3), offset(2, 9, 8, W), offset(2, 3, 8, W)
    assert x.data_ptr() % 64 and x.is_contiguous()
    got = _fwd_bwd(ddf, x, cf, sf, (3, 1, 1, "mul"), grad.detach())
    want = _fwd_bwd(ddf_reference, x, cf, sf, (3, 1, 1, "mul"), grad.detach())
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_opcheck():
    x, cf, sf = make_inputs(1, 4, 6, 7, 2, 3, 2, 1, torch.float32)
    args = (3, 1, 2, "mul")
    torch.library.opcheck(ddf_op, (x, cf, sf, *args))
    grad = torch.randn(1, 4, 3, 4)
    for op in (ddf_grad_features, ddf_grad_channel, ddf_grad_spatial):
        torch.library.opcheck(op, (grad, x.detach(), cf.detach(), sf.detach(), *args))


def test_compile_fullgraph():
    torch._dynamo.reset()
    x, cf, sf = make_inputs(2, 4, 8, 9, 1, 3, 1, 1, torch.float32)

    def model(x, cf, sf):
        return torch.relu(ddf(x * 2, cf, sf, 3, 1, 1, "mul")).sum()

    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(compiled(x, cf, sf), (x, cf, sf))
    want = torch.autograd.grad(model(x, cf, sf), (x, cf, sf))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_compile_inductor():
    torch._dynamo.reset()
    x, cf, sf = make_inputs(1, 4, 7, 7, 1, 3, 1, 1, torch.float32, requires_grad=False)
    fn = torch.compile(lambda a, b, c: ddf(a, b, c) + 1, fullgraph=True)
    torch.testing.assert_close(fn(x, cf, sf), ddf_reference(x, cf, sf) + 1, atol=1e-4, rtol=1e-4)


def test_autocast_cpu_bfloat16():
    x, cf, sf = make_inputs(1, 4, 9, 8, 1, 3, 1, 1, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ddf(x, cf.bfloat16(), sf)  # mixed float32/bfloat16 in, autocast dtype out
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32 and sf.grad.dtype == torch.float32
    ref = ddf_reference(*(t.detach().bfloat16().double() for t in (x, cf, sf)))
    torch.testing.assert_close(out.double(), ref, atol=0.1, rtol=2e-2)


def _bad(**over):
    x, cf, sf = make_inputs(1, 4, 6, 6, 1, 3, 1, 1, torch.float32, requires_grad=False)
    args = dict(features=x, channel_filter=cf, spatial_filter=sf, kernel_size=3, dilation=1, stride=1,
                kernel_combine="mul")
    args.update(over)
    return args


@pytest.mark.parametrize("over,exc,match", [
    (dict(kernel_size=4), ValueError, "kernel_size"),
    (dict(kernel_size=0), ValueError, "kernel_size"),
    (dict(stride=0), ValueError, "stride"),
    (dict(dilation=-1), ValueError, "dilation"),
    (dict(kernel_combine="max"), ValueError, "kernel_combine"),
    (dict(features=torch.randn(4, 6, 6)), ValueError, "features must be 4-D"),
    (dict(channel_filter=torch.randn(1, 4, 5, 5)), ValueError, "channel_filter"),
    (dict(channel_filter=torch.randn(1, 3, 3, 3)), ValueError, "channel_filter"),
    (dict(spatial_filter=torch.randn(1, 9, 5, 6)), ValueError, "spatial_filter"),
    (dict(spatial_filter=torch.randn(1, 27, 6, 6)), ValueError, "spatial_filter"),  # 3 heads, 4 channels
    (dict(spatial_filter=torch.randn(2, 9, 6, 6)), ValueError, "spatial_filter"),
    (dict(features=torch.randn(1, 4, 6, 6, dtype=torch.float64)), TypeError, "dtype"),
    (dict(features=torch.randint(0, 3, (1, 4, 6, 6))), TypeError, "features has unsupported dtype"),
    (dict(features=torch.randn(1, 4, 0, 6), spatial_filter=torch.randn(1, 9, 0, 6)), ValueError, "empty"),
    (dict(features=torch.randn(1, 4, 6, 6, device="meta")), ValueError, "channel_filter is on cpu but features is on meta"),
    (dict(spatial_filter=[1, 2]), TypeError, "spatial_filter must be a torch.Tensor"),
])
def test_bad_input_raises_clear_error(over, exc, match):
    with pytest.raises(exc, match=match):
        ddf(**_bad(**over))


def test_output_size_matches_conv2d_on_odd_sizes():
    # The official op asserts H//s and breaks on odd sizes with stride 2; ours follows nn.Conv2d.
    x, cf, _ = make_inputs(1, 2, 7, 9, 1, 3, 2, 1, torch.float64, requires_grad=False)
    conv_out = torch.nn.functional.conv2d(x, torch.ones(2, 1, 3, 3, dtype=torch.float64), stride=2, padding=1, groups=2)
    sf = torch.randn(1, 9, *conv_out.shape[-2:], dtype=torch.float64)
    assert ddf(x, cf, sf, 3, 1, 2).shape == conv_out.shape == (1, 2, 4, 5)


def test_meta_tensors_give_shapes():
    x, cf, sf = (t.to("meta") for t in make_inputs(2, 4, 9, 7, 2, 3, 2, 1, torch.float32, requires_grad=False))
    out = ddf(x, cf, sf, 3, 1, 2)
    assert out.device.type == "meta" and out.shape == (2, 4, 5, 4)


@pytest.mark.parametrize("native_impl", [False, True])
def test_empty_batch_gives_empty_output_and_gradients(native_impl, no_kernels):
    # like F.conv2d: batch 0 is fine (no kernel runs); a zero spatial size stays an error (above)
    x, cf, sf = make_inputs(0, 4, 7, 6, 2, 3, 2, 1, torch.float32)
    out = ddf(x, cf, sf, 3, 1, 2, native_impl=native_impl)
    assert out.shape == (0, 4, 4, 3)
    grads = torch.autograd.grad(out.sum(), (x, cf, sf))
    assert [g.shape for g in grads] == [x.shape, cf.shape, sf.shape]


def test_kernel_size_limit_names_native_impl():
    x, cf, sf = make_inputs(1, 2, 5, 4, 1, 33, 1, 1, torch.float64)
    with pytest.raises(ValueError, match="at most 31 .*native_impl=True"):
        ddf(x, cf, sf, 33)
    out = ddf(x, cf, sf, 33, native_impl=True)
    torch.testing.assert_close(out, ddf_reference(x, cf, sf, 33))
