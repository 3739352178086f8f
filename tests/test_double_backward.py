"""Double backward through the compiled path: float64 gradgradcheck (finite differences of
the first-order gradients) of every family's public functional on tiny inputs, and the clear
error of the one path that has no compiled second derivative."""
import pytest
import torch

import torch_bridge.functional as Fn
from ddf_cases import make_inputs as ddf_inputs
from dynfilter_tvm.ops.common import conv_out_size


def _rand(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


# (B, C, H, W, G, k, s, d, combine): mul and add, stride 1 and 2, heads, dilation
@pytest.mark.parametrize("case", [(1, 4, 5, 5, 2, 3, 2, 1, "mul"), (1, 2, 4, 4, 1, 3, 1, 2, "mul"),
                                  (1, 4, 4, 5, 2, 3, 1, 2, "add"), (1, 2, 5, 4, 1, 3, 2, 1, "add")], ids=str)
def test_ddf(case):
    B, C, H, W, G, k, s, d, combine = case
    inputs = ddf_inputs(B, C, H, W, G, k, s, d)
    assert torch.autograd.gradgradcheck(lambda *t: Fn.ddf(*t, k, d, s, combine), inputs)


def test_ddf_gradient_penalty_matches_reference():
    # A penalty on the input gradient, differentiated for the filters (WGAN-GP style).
    def penalty_grads(native_impl):
        torch.manual_seed(1)
        x, cf, sf = ddf_inputs(1, 4, 5, 5, 2, 3, 2, 1)
        out = Fn.ddf(x, cf, sf, 3, 1, 2, "mul", native_impl=native_impl)
        gx, = torch.autograd.grad((out * out).sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), (x, cf, sf))

    for got, want in zip(penalty_grads(False), penalty_grads(True)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("case", [(1, 2, 5, 6, 2, 2, 3, 2, 1, 1), (1, 2, 5, 5, 1, 3, 3, 1, 2, 1)], ids=str)
def test_acda_atom_conv2d(case):
    N, C, H, W, M, T, k, s, d, p = case
    Ho, Wo = conv_out_size(H, k, s, p, d), conv_out_size(W, k, s, p, d)
    inputs = (_rand(N, C, H, W), _rand(N, M * T, Ho, Wo), _rand(T, k, k))
    assert torch.autograd.gradgradcheck(lambda *t: Fn.acda_atom_conv2d(*t, s, p, d), inputs)


def test_pacconv2d():
    # C=2 -> O=2, 5x4, k=3, stride 2, padding 1 -> 3x2
    inputs = (_rand(1, 2, 5, 4), _rand(1, 1, 3, 3, 3, 2), _rand(2, 2, 3, 3), _rand(2))
    assert torch.autograd.gradgradcheck(lambda *t: Fn.pacconv2d(*t, stride=2, padding=1), inputs)


def test_pacconv_transpose2d():
    # 2x3 -> (n-1)*2 - 2 + 2 + 1 + 1: 4x6
    inputs = (_rand(1, 2, 2, 3), _rand(1, 1, 3, 3, 4, 6), _rand(2, 1, 3, 3), _rand(1))
    assert torch.autograd.gradgradcheck(
        lambda *t: Fn.pacconv_transpose2d(*t, stride=2, padding=1, output_padding=1), inputs)


def test_pacpool2d_and_shared_filters():
    f, K = _rand(1, 2, 4, 5), _rand(1, 2, 3, 3, 4, 5)
    assert torch.autograd.gradgradcheck(lambda *t: Fn.pacpool2d(*t, 3, padding=1), (f, K))
    inputs = (_rand(1, 2, 4, 5), _rand(1, 1, 3, 3, 4, 5), _rand(1, 1, 3, 3))
    assert torch.autograd.gradgradcheck(lambda *t: Fn.pacconv2d(*t, padding=1, shared_filters=True), inputs)


@pytest.mark.parametrize("kwargs", [dict(kernel_type="gaussian"), dict(kernel_type="inv_0.5_1"),
                                    dict(kernel_type="gaussian", channel_wise=True, stride=2)], ids=str)
def test_packernel2d(kwargs):
    f = _rand(1, 2, 4, 5)
    assert torch.autograd.gradgradcheck(lambda t: Fn.packernel2d(t, kernel_size=3, padding=1, **kwargs)[0], (f,))


def test_packernel2d_asym_names_native_impl():
    f = _rand(1, 2, 4, 5)
    out = Fn.packernel2d(f, kernel_size=3, padding=1, kernel_type="inv_0.5_1_asym")[0]
    gf, = torch.autograd.grad(out.sum(), f, create_graph=True)  # first order works
    with pytest.raises(RuntimeError, match="native_impl=True"):
        gf.square().sum().backward()
    ref = Fn.packernel2d(f, kernel_size=3, padding=1, kernel_type="inv_0.5_1_asym", native_impl=True)[0]
    gr, = torch.autograd.grad(ref.sum(), f, create_graph=True)
    torch.testing.assert_close(gf, gr)
    gr.square().sum().backward()  # the named alternative does work


def test_opcheck_gradient_ops():
    # The gradient ops' autograd under torch.library's checks (fake tensors, aot dispatch),
    # on the shapes above (kernels already built).
    from torch_bridge.ops import acda, ddf, pac

    x, cf, sf = ddf_inputs(1, 4, 5, 5, 2, 3, 2, 1)
    for op in (ddf.ddf_grad_features, ddf.ddf_grad_channel, ddf.ddf_grad_spatial):
        torch.library.opcheck(op, (_rand(1, 4, 3, 3), x, cf, sf, 3, 1, 2, "mul"))
    x, a, b = _rand(1, 2, 5, 6), _rand(1, 4, 3, 3), _rand(2, 3, 3)
    for op in (acda.grad_input_op, acda.grad_atoms_op):
        torch.library.opcheck(op, (_rand(1, 4, 3, 3), x, a, b, 2, 1, 1))
    x, K, w = _rand(1, 2, 5, 4), _rand(1, 1, 3, 3, 3, 2), _rand(2, 2, 3, 3)
    for op in (pac.conv_grad_input_op, pac.conv_grad_kernel_op, pac.conv_grad_weight_op):
        torch.library.opcheck(op, (_rand(1, 2, 3, 2), x, K, w, 2, 1, 0, 1, False))
    f, K = _rand(1, 2, 4, 5), _rand(1, 2, 3, 3, 4, 5)
    for op in (pac.pool_grad_input_op, pac.pool_grad_kernel_op):
        torch.library.opcheck(op, (_rand(1, 2, 4, 5), f, K, 3, 1, 1, 0, 1, False))
    torch.library.opcheck(pac.dist_grad_op, (_rand(1, 1, 3, 3, 4, 5), f, _rand(1, 2, 4, 5), 3, 1, 1, 1, False, False))
