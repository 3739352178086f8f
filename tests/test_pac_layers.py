"""PAC layers (torch_bridge.nn.pac) against the official NVlabs/pacnet modules' layout and fillers.

The expected ``state_dict`` layouts, fillers and reprs are written out from the official
``pac.py``. The forward passes use a handful of shapes (the compiled ops build one kernel per
shape): X (2, 3, 7, 9) with guidance G (2, 4, 7, 9) and mask M (2, 1, 7, 9); the transposed
layers take XT (2, 3, 4, 5) to 7 x 9 (k 3, stride 2, padding 1).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torch_bridge.nn import PacConv2d, PacConvTranspose2d, PacPool2d
from torch_bridge.reference.pac import pacconv2d_reference, packernel2d_reference

P, B = "parameter", "buffer"

# (constructor, [(key, shape, parameter or buffer)] in the official state_dict order)
LAYOUTS = {
    "conv": (lambda: PacConv2d(3, 4, 3, padding=1),
             [("weight", (4, 3, 3, 3), P), ("bias", (4,), P)]),
    "conv_inv_full": (lambda: PacConv2d(3, 4, 5, padding=2, bias=False, kernel_type="inv_0.5_1",
                                        smooth_kernel_type="full_3"),
                      [("weight", (4, 3, 5, 5), P), ("inv_alpha", (), P), ("inv_lambda", (), P),
                       ("smooth_kernel", (1, 1, 3, 3), P)]),
    "conv_shared": (lambda: PacConv2d(3, 3, 3, padding=1, shared_filters=True, filler="crf"),
                    [("weight", (1, 1, 3, 3), P), ("bias", (3,), P)]),
    "conv_crf_pool": (lambda: PacConv2d(3, 3, 3, padding=1, shared_filters=True, filler="crf_pool",
                                        kernel_type="inv_0.5_1_asym_fixed", smooth_kernel_type="gaussian"),
                      [("bias", (3,), P), ("weight", (1, 1, 3, 3), B), ("inv_alpha", (), B),
                       ("inv_lambda", (), B), ("smooth_kernel", (1, 1, 3, 3), B)]),
    "convt": (lambda: PacConvTranspose2d(3, 4, 5, stride=2, padding=2, output_padding=1,
                                         smooth_kernel_type="average_3"),
              [("weight", (3, 4, 5, 5), P), ("bias", (4,), P), ("smooth_kernel", (1, 1, 3, 3), B)]),
    "convt_linear_shared": (lambda: PacConvTranspose2d(3, 3, 5, stride=2, shared_filters=True, filler="linear"),
                            [("weight", (1, 1, 5, 5), P), ("bias", (3,), P)]),
    "pool": (lambda: PacPool2d(3, padding=1), []),
    "pool_cw_inv": (lambda: PacPool2d(3, kernel_type="inv_0.5_1", channel_wise=True, out_channels=3),
                    [("inv_alpha", (3,), P), ("inv_lambda", (3,), P)]),
    "pool_fixed_full": (lambda: PacPool2d(5, kernel_type="inv_0.5_1_fixed", channel_wise=True,
                                          smooth_kernel_type="full_5"),
                        [("smooth_kernel", (1, 1, 5, 5), P), ("inv_alpha", (), B), ("inv_lambda", (), B)]),
}


@pytest.mark.parametrize("name", LAYOUTS)
def test_state_dict_layout(name):
    make, expected = LAYOUTS[name]
    layer = make()
    sd = layer.state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == [(k, s) for k, s, _ in expected]
    params, buffers = dict(layer.named_parameters()), dict(layer.named_buffers())
    for key, _, kind in expected:
        assert (key in params) == (kind == P) and (key in buffers) == (kind == B), key
        assert sd[key].dtype == torch.float32


@pytest.mark.parametrize("name", LAYOUTS)
def test_load_state_dict_round_trip(name):
    make, expected = LAYOUTS[name]
    # an official-layout checkpoint, random values, loads strictly
    ckpt = {k: torch.rand(s) + 0.5 for k, s, _ in expected}
    a = make()
    a.load_state_dict(ckpt, strict=True)
    b = make()
    b.load_state_dict(a.state_dict(), strict=True)
    for k, v in b.state_dict().items():
        assert torch.equal(v, ckpt[k]), k


# --------------------------------------------------------------------------------------------
# Fillers (the official values).

def _np_gaussian_2d(width):
    sigma = width / 4
    r = np.arange(-(width // 2), width // 2 + 1, dtype=np.float32)
    g = np.exp(-0.5 * r * r / (sigma * sigma))
    g2 = g.reshape(-1, 1) * g
    return g2 / g2.sum()


def test_uniform_filler_bounds():
    layer = PacConv2d(3, 4, 3)
    bound = 1 / math.sqrt(3 * 9)
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    assert layer.weight.std() > bound / 4  # not all zero
    shared = PacConv2d(3, 3, 3, shared_filters=True)
    assert shared.weight.abs().max() <= 3 * bound and shared.weight.abs().max() > bound


@pytest.mark.parametrize("normalize", [False, True])
def test_linear_filler_stride2_k5(normalize):
    layer = PacConvTranspose2d(2, 2, 5, stride=2, padding=2, output_padding=1, filler="linear",
                               normalize_kernel=normalize)
    taps = torch.tensor([0, 1, 3, 1, 0.]) if normalize else torch.tensor([0, .5, 1, .5, 0])
    w = taps.view(-1, 1) * taps
    torch.testing.assert_close(layer.weight[0, 0], w)
    torch.testing.assert_close(layer.weight[1, 1], w)
    assert layer.weight[0, 1].abs().sum() == 0 and layer.weight[1, 0].abs().sum() == 0
    assert layer.bias.abs().sum() == 0
    delta = PacConvTranspose2d(2, 2, 3, filler="linear").weight[0, 0]  # stride 1: identity
    torch.testing.assert_close(delta, torch.tensor([[0, 0, 0], [0, 1, 0], [0, 0, 0.]]))


def test_crf_fillers():
    gauss = torch.from_numpy(_np_gaussian_2d(5) * 25)
    gauss[2, 2] = 0
    layer = PacConv2d(3, 3, 5, padding=2, filler="crf")
    for o in range(3):
        for c in range(3):
            torch.testing.assert_close(layer.weight[o, c], gauss * (o != c))
    assert layer.weight[:, :, 2, 2].abs().sum() == 0 and layer.bias.abs().sum() == 0
    shared = PacConv2d(3, 3, 5, padding=2, shared_filters=True, filler="crf")
    torch.testing.assert_close(shared.weight[0, 0], gauss)
    perturbed = PacConv2d(3, 3, 5, padding=2, filler="crf_perturbed")
    diff = perturbed.weight - layer.weight
    assert 0 < diff.abs().max() <= 5e-4


def test_pool_fillers_and_fixed_parameters():
    pool = PacConv2d(3, 3, 3, shared_filters=True, filler="pool")
    assert torch.equal(pool.weight, torch.ones(1, 1, 3, 3))
    assert pool.bias.abs().sum() == 0  # the official leaves it uninitialized
    crf_pool = PacConv2d(3, 3, 3, shared_filters=True, filler="crf_pool", bias=False)
    expected = torch.ones(1, 1, 3, 3)
    expected[0, 0, 1, 1] = 0
    assert torch.equal(crf_pool.weight, expected) and crf_pool.bias is None
    inv = PacConv2d(3, 4, 3, kernel_type="inv_0.3_2", smooth_kernel_type="full_3")
    assert inv.inv_alpha.item() == pytest.approx(0.3) and inv.inv_lambda.item() == 2.0
    torch.testing.assert_close(inv.smooth_kernel, torch.full((1, 1, 3, 3), 1 / 9))
    inv.inv_alpha.data.fill_(5.0)
    inv.reset_parameters()
    assert inv.inv_alpha.item() == pytest.approx(0.3)
    g = PacConv2d(3, 4, 3, smooth_kernel_type="gaussian").smooth_kernel
    torch.testing.assert_close(g[0, 0], torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1.]]) / 16)
    avg = PacPool2d(3, smooth_kernel_type="average_5").smooth_kernel
    torch.testing.assert_close(avg, torch.full((1, 1, 5, 5), 1 / 25))


# --------------------------------------------------------------------------------------------
# Forward: the compiled path equals the reference path; outputs; wiring.

X, G, M = (2, 3, 7, 9), (2, 4, 7, 9), (2, 1, 7, 9)
XT, MT = (2, 3, 4, 5), (2, 1, 4, 5)

FORWARD = {
    "conv_gauss": (lambda n: PacConv2d(3, 4, 3, padding=1, native_impl=n), X, M),
    "conv_inv_smooth_norm": (lambda n: PacConv2d(3, 4, 3, padding=1, kernel_type="inv_0.5_1_asym",
                                                 smooth_kernel_type="gaussian", normalize_kernel=True,
                                                 native_impl=n), X, M),
    "conv_shared_crf": (lambda n: PacConv2d(3, 3, 3, padding=1, shared_filters=True, filler="crf_pool",
                                            native_impl=n), X, M),
    "convt": (lambda n: PacConvTranspose2d(3, 4, 3, stride=2, padding=1, native_impl=n), XT, MT),
    "convt_linear_norm": (lambda n: PacConvTranspose2d(3, 3, 3, stride=2, padding=1, filler="linear",
                                                       normalize_kernel=True, native_impl=n), XT, MT),
    "pool": (lambda n: PacPool2d(3, padding=1, normalize_kernel=True, native_impl=n), X, M),
    "pool_cw": (lambda n: PacPool2d(3, padding=1, kernel_type="inv_0.5_1", channel_wise=True, out_channels=3,
                                    native_impl=n), X, M),
}


def _inputs(x_shape, m_shape, channel_wise=False):
    x = torch.randn(*x_shape)
    g = torch.randn(*(X if channel_wise else G))
    mask = (torch.rand(*m_shape) > 0.2).float()
    return x, g, mask


@pytest.mark.parametrize("name", FORWARD)
def test_compiled_path_matches_native(name):
    make, x_shape, m_shape = FORWARD[name]
    native, compiled = make(True), make(False)
    compiled.load_state_dict(native.state_dict())
    x, g, mask = _inputs(x_shape, m_shape, channel_wise="cw" in name)
    out_n = native(x, g)
    out_c = compiled(x, g)
    assert isinstance(out_c, torch.Tensor) and out_c.shape[-2:] == (7, 9)
    torch.testing.assert_close(out_c, out_n, rtol=1e-4, atol=1e-5)
    (out_n, mask_n), (out_c, mask_c) = native(x, g, mask=mask), compiled(x, g, mask=mask)
    torch.testing.assert_close(out_c, out_n, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mask_c, mask_n)
    assert mask_c.shape[-2:] == (7, 9)


def test_forward_returns_and_precomputed_kernel():
    layer = PacConv2d(3, 4, 3, padding=1)
    x, g, mask = _inputs(X, M)
    K, out_mask = layer.compute_kernel(g)
    assert K.shape == (2, 1, 3, 3, 7, 9) and out_mask is None
    out = layer(x, g)
    torch.testing.assert_close(layer(x, None, K), out)  # the PacCRF usage
    assert isinstance(layer(x, None, K, mask), torch.Tensor)  # a given kernel ignores the mask
    out_m, m = layer(x, g, mask=mask)
    assert m.shape == (2, 1, 1, 1, 7, 9) and m.dtype == x.dtype
    with pytest.raises(ValueError, match="input_for_kernel"):
        layer(x, None)


def test_forward_wiring_matches_reference_functions():
    layer = PacConv2d(3, 4, 3, padding=1, kernel_type="inv_0.5_1", smooth_kernel_type="full_3",
                      normalize_kernel=True)
    with torch.no_grad():
        layer.inv_alpha.fill_(0.7)
        layer.smooth_kernel.uniform_()
    x, g, mask = _inputs(X, M)
    out, out_mask = layer(x, g, mask=mask)
    K, m = packernel2d_reference(g, mask, 3, 1, 1, kernel_type="inv_0.5_1", smooth_kernel_type="full_3",
                                 smooth_kernel=layer.smooth_kernel, inv_alpha=layer.inv_alpha,
                                 inv_lambda=layer.inv_lambda, normalize_kernel=True)
    torch.testing.assert_close(out, pacconv2d_reference(x, K, layer.weight, layer.bias, 1, 1))
    torch.testing.assert_close(out_mask, m)
    out.sum().backward()
    for p in (layer.weight, layer.bias, layer.inv_alpha, layer.inv_lambda, layer.smooth_kernel):
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_pool_channel_checks():
    x, g, _ = _inputs(X, M)
    with pytest.raises(ValueError, match="same number of channels"):
        PacPool2d(3, padding=1, channel_wise=True)(x, g)
    with pytest.raises(ValueError, match="out_channels"):
        PacPool2d(3, padding=1, out_channels=5)(x, g)


# --------------------------------------------------------------------------------------------
# Repr and argument errors.

def test_extra_repr():
    assert PacConv2d(3, 4, 3).extra_repr() == "3, 4, kernel_size=(3, 3), kernel_type=gaussian"
    assert PacConvTranspose2d(3, 4, 5, stride=2, padding=2, output_padding=1, bias=False,
                              smooth_kernel_type="full_3", normalize_kernel=True).extra_repr() == (
        "3, 4, kernel_size=(5, 5), kernel_type=gaussian, stride=(2, 2), padding=(2, 2), output_padding=(1, 1), "
        "bias=False, smooth_kernel_type=full_3, normalize_kernel=True")
    assert PacConv2d(3, 3, 3, dilation=2, shared_filters=True, kernel_type="inv_0.5_1").extra_repr() == (
        "3, 3, kernel_size=(3, 3), kernel_type=inv_0.5_1, dilation=(2, 2), shared_filters=True")
    assert repr(PacPool2d(3, channel_wise=True)) == "PacPool2d(kernel_size=(3, 3), kernel_type=gaussian, " \
                                                    "channel_wise=True)"


@pytest.mark.parametrize("make,match", [
    (lambda: PacConv2d(3, 4, 4), "odd"),
    (lambda: PacConv2d(3, 4, (3, 2)), "odd"),
    (lambda: PacPool2d(2), "odd"),
    (lambda: PacConv2d(3, 4, 3, kernel_type="gauss"), "kernel_type"),
    (lambda: PacConv2d(3, 4, 3, kernel_type="inv_a_1"), "kernel_type"),
    (lambda: PacConv2d(3, 4, 3, kernel_type="inv_0.5_1_sym"), "kernel_type"),
    (lambda: PacConv2d(3, 4, 3, smooth_kernel_type="full_4"), "smooth_kernel_type"),
    (lambda: PacConv2d(3, 4, 3, smooth_kernel_type="box_3"), "smooth_kernel_type"),
    (lambda: PacConv2d(3, 4, 3, filler="xavier"), "not supported"),
    (lambda: PacConv2d(3, 3, 3, filler="linear"), "transposed"),
    (lambda: PacConvTranspose2d(3, 3, 3, stride=3, filler="linear"), "2\\*stride-1"),
    (lambda: PacConv2d(3, 4, 3, shared_filters=True), "in_channels == out_channels"),
    (lambda: PacConv2d(3, 3, 3, filler="pool"), "shared_filters"),
    (lambda: PacConv2d(3, 3, (3, 5), filler="crf"), "square"),
    (lambda: PacPool2d(3, kernel_type="inv_0.5_1", channel_wise=True), "out_channels"),
    (lambda: PacConv2d(3, 4, 3, stride=0), "stride"),
    (lambda: PacConv2d(0, 4, 3), "in_channels"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("native_impl", [False, True])
@pytest.mark.parametrize("make, guide_hw, out_shape", [
    (lambda n: PacConv2d(3, 4, 3, padding=1, kernel_type="inv_0.5_1", smooth_kernel_type="full_3",
                         native_impl=n), (7, 9), (0, 4, 7, 9)),
    (lambda n: PacConvTranspose2d(3, 4, 3, stride=2, padding=1, native_impl=n), (7, 9), (0, 4, 7, 9)),
    (lambda n: PacPool2d(3, padding=1, native_impl=n), (7, 9), (0, 3, 7, 9)),
])
def test_empty_batch_gives_empty_output_and_zero_gradients(make, guide_hw, out_shape, native_impl, no_kernels):
    layer = make(native_impl)
    x = torch.randn(0, 3, *((4, 5) if isinstance(layer, PacConvTranspose2d) else guide_hw), requires_grad=True)
    guide = torch.randn(0, 4, *guide_hw, requires_grad=True)
    out = layer(x, guide)
    assert out.shape == out_shape
    out.sum().backward()
    assert x.grad.shape == x.shape and guide.grad.shape == guide.shape
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape and not p.grad.any(), name


def test_kernel_size_limit_names_native_impl():
    x, guide = torch.randn(1, 3, 5, 4), torch.randn(1, 2, 5, 4)
    with pytest.raises(ValueError, match="at most 15 .*native_impl=True"):
        PacConv2d(3, 4, 17, padding=8)(x, guide)
    assert PacConv2d(3, 4, 17, padding=8, native_impl=True)(x, guide).shape == (1, 4, 5, 4)
