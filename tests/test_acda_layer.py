"""ACDAConv2d: a drop-in for the official Conv_DCFD (arguments, state_dict, results), its
options, and its errors."""
import pytest
import torch
import torch.nn.functional as F

from dynfilter_tvm.bases import multiscale_bases
from torch_bridge.nn import ACDAConv2d


def official_forward(layer: ACDAConv2d, x: torch.Tensor) -> torch.Tensor:
    """Conv_DCFD.forward as the official code computes it (written out here: generator,
    einsum with the bases, unfold, einsum, 1x1 convolution), from the layer's tensors."""
    N, C, H, W = x.shape
    M, k, s = layer.num_bases, layer.kernel_size, layer.stride
    Ho, Wo = H // s, W // s  # the official uses floor division: sizes divisible by s only
    alpha = layer.bases_net(x).view(N, M, layer.tem_size, Ho, Wo)
    atoms = torch.einsum("bmkhw,kl->bmlhw", alpha, layer.bases)
    cols = F.unfold(x, kernel_size=k, stride=s, padding=layer.padding).view(N, C, k * k, Ho, Wo)
    z = torch.einsum("bmlhw,bclhw->bcmhw", atoms.view(N, M, -1, Ho, Wo), cols).reshape(N, C * M, Ho, Wo)
    return F.conv2d(z, layer.coef, layer.bias)


def official_state_shapes(cin, cout, k, M=6, bias=True):
    """Parameter/buffer shapes of an official Conv_DCFD(cin, cout, k, num_bases=M)."""
    T = (k // 2) * M
    inter = max(64, M * T // 2)
    shapes = {"bases": (T, k * k), "coef": (cout, cin * M, 1, 1),
              "bases_net.0.weight": (inter, cin, 3, 3), "bases_net.0.bias": (inter,),
              "bases_net.3.weight": (M * T, inter, 3, 3), "bases_net.3.bias": (M * T,)}
    for i, n in (("1", inter), ("4", M * T)):
        shapes.update({f"bases_net.{i}.{name}": (n,) for name in ("weight", "bias", "running_mean", "running_var")})
        shapes[f"bases_net.{i}.num_batches_tracked"] = ()
    if bias:
        shapes["bias"] = (cout,)
    return shapes


def _randomise(layer):
    """Non-trivial BN statistics and bias, so eval-mode results depend on every tensor."""
    with torch.no_grad():
        for bn in (layer.bases_net[1], layer.bases_net[4]):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
        if layer.bias is not None:
            layer.bias.uniform_(-1, 1)
    return layer


@pytest.mark.parametrize("cin,cout,k,s,M,H,W", [
    (3, 5, 3, 1, 6, 9, 11), (4, 4, 5, 2, 6, 10, 8), (2, 3, 7, 1, 3, 8, 9), (5, 2, 5, 1, 2, 7, 7)])
@pytest.mark.parametrize("train", [False, True])
def test_matches_official_forward_and_gradients(cin, cout, k, s, M, H, W, train):
    torch.manual_seed(0)
    layer = _randomise(ACDAConv2d(cin, cout, k, stride=s, padding=k // 2, num_bases=M).double().train(train))
    x = torch.randn(2, cin, H, W, dtype=torch.float64, requires_grad=True)
    params = [x, *layer.parameters()]
    got = layer(x)
    g = torch.randn_like(got)
    got_grads = torch.autograd.grad(got, params, g)
    want = official_forward(layer, x)
    want_grads = torch.autograd.grad(want, params, g)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    names = ["input"] + [n for n, _ in layer.named_parameters()]
    for name, a, b in zip(names, got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=name)


@pytest.mark.parametrize("k,M,bias", [(3, 6, True), (5, 6, False), (7, 4, True)])
def test_state_dict_has_official_keys_and_shapes(k, M, bias):
    layer = ACDAConv2d(8, 16, k, padding=k // 2, num_bases=M, bias=bias)
    got = {n: tuple(t.shape) for n, t in layer.state_dict().items()}
    assert got == official_state_shapes(8, 16, k, M, bias)


@pytest.mark.parametrize("bases_grad", [True, False])
def test_official_checkpoint_loads_strictly(bases_grad):
    torch.manual_seed(1)
    shapes = official_state_shapes(4, 6, 5)
    ckpt = {n: torch.randn(s) if s else torch.tensor(3) for n, s in shapes.items()}
    for n in ckpt:
        if n.endswith("running_var"):
            ckpt[n] = ckpt[n].abs() + 0.5
    layer = ACDAConv2d(4, 6, 5, padding=2, bases_grad=bases_grad)
    layer.load_state_dict(ckpt, strict=True)
    torch.testing.assert_close(layer.bases.detach(), ckpt["bases"])
    assert ("bases" in dict(layer.named_parameters())) == bases_grad
    assert ("bases" in dict(layer.named_buffers())) == (not bases_grad)


def test_bases_are_the_multiscale_fourier_bessel_set():
    layer = ACDAConv2d(2, 2, 7, padding=3, num_bases=5)
    want = torch.from_numpy(multiscale_bases(7, 5)).float().reshape(15, 49)
    torch.testing.assert_close(layer.bases.detach(), want)


def test_bases_learn_only_with_bases_grad():
    x = torch.randn(1, 2, 6, 6)
    for bases_grad in (True, False):
        layer = ACDAConv2d(2, 3, 3, padding=1, bases_grad=bases_grad)
        layer(x).square().sum().backward()
        if bases_grad:
            assert layer.bases.grad is not None and layer.bases.grad.abs().sum() > 0
        else:
            assert not layer.bases.requires_grad


def test_odd_sizes_with_stride_give_ceil_output():
    # The official view() fails here (floor division); the generator's and the
    # convolution's sizes agree on ceil(H / stride).
    layer = ACDAConv2d(3, 4, 5, stride=2, padding=2).double().eval()
    x = torch.randn(1, 3, 9, 7, dtype=torch.float64)
    out = layer(x)
    assert out.shape == (1, 4, 5, 4)
    from torch_bridge.reference import acda_atom_conv2d_reference
    torch.testing.assert_close(out, layer.forward_with(acda_atom_conv2d_reference, x))


def test_dilation_works():
    from torch_bridge.reference import acda_atom_conv2d_reference
    layer = ACDAConv2d(3, 4, 3, padding=2, dilation=2).double().eval()
    x = torch.randn(2, 3, 10, 9, dtype=torch.float64, requires_grad=True)
    got = layer(x)
    want = layer.forward_with(acda_atom_conv2d_reference, x)
    torch.testing.assert_close(got, want)
    no_dilation = ACDAConv2d(3, 4, 3, padding=1).double().eval()
    no_dilation.load_state_dict(layer.state_dict())
    assert (no_dilation(x) - got).abs().max() > 1e-3  # dilation is not ignored


def test_bases_drop_in_training_only():
    torch.manual_seed(0)
    layer = ACDAConv2d(2, 3, 5, padding=2, bases_drop=0.5)
    x = torch.randn(2, 2, 8, 8)
    layer.eval()
    a_eval = layer.coefficients(x)
    torch.testing.assert_close(a_eval, layer.bases_net(x))
    layer.train()
    torch.manual_seed(1)
    a = layer.coefficients(x).view(2, 6, 12, 8, 8)
    torch.manual_seed(1)
    ref = layer.bases_net(x).view(2, 6, 12, 8, 8)
    kept = a != 0
    # one mask per (sample, basis, pixel), shared by the atoms; kept values scaled by 2
    assert (kept == kept[:, :1]).all()
    assert 0.3 < kept.float().mean() < 0.7
    torch.testing.assert_close(a[kept], 2 * ref[kept])


def test_autocast_bfloat16():
    layer = ACDAConv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert layer.coef.grad is not None and layer.bases_net[0].weight.grad.dtype == torch.float32


@pytest.mark.parametrize("kwargs,match", [
    (dict(groups=2), "groups"),
    (dict(mode="mode0"), "mode"),
    (dict(padding=0), "padding must be"),
    (dict(kernel_size=4, padding=1), "kernel_size"),
    (dict(kernel_size=1, padding=0), "kernel_size"),
    (dict(num_bases=7), "num_bases"),
    (dict(stride=0), "stride"),
    (dict(bases_drop=1.0), "bases_drop"),
    (dict(in_channels=0), "in_channels"),
])
def test_bad_arguments_raise(kwargs, match):
    args = dict(in_channels=2, out_channels=2, kernel_size=3, padding=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ACDAConv2d(**args)


def test_wrong_input_channels_raise():
    with pytest.raises(ValueError, match="input must have shape"):
        ACDAConv2d(3, 2, 3, padding=1)(torch.randn(1, 4, 5, 5))


def test_input_errors_name_the_argument():
    layer = ACDAConv2d(3, 2, 3, padding=1)
    for bad in (torch.randn(3, 5, 5), torch.randn(1, 3, 0, 5)):
        with pytest.raises(ValueError, match=r"input must have shape \(N, 3, H, W\)"):
            layer(bad)


@pytest.mark.parametrize("native_impl", [False, True])
@pytest.mark.parametrize("train", [False, True])
def test_empty_batch_gives_empty_output_and_zero_gradients(native_impl, train, no_kernels):
    layer = ACDAConv2d(3, 4, 3, padding=1, stride=2, native_impl=native_impl).train(train)
    x = torch.randn(0, 3, 7, 6, requires_grad=True)
    out = layer(x)
    assert out.shape == (0, 4, 4, 3)
    out.sum().backward()
    assert x.grad.shape == x.shape
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape and not p.grad.any(), name
