"""PAC hot-swapping (torch_bridge.nn.swap.pac_from_conv, torch_bridge.nn.GuidedPacConv2d): a
swapped network computes the original with a constant guidance, weights copied or shared,
guidance sources, the predicate and the incompatible convolutions."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from torch_bridge.nn import GuidedPacConv2d, PacConv2d
from torch_bridge.nn.swap import (pac_compatible, pac_from_conv, pac_incompatibility, set_pac_guidance,
                               swap_convs)


def _net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),                               # 0: swapped
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1, bias=False),         # 2: swapped (strided)
        nn.Conv2d(4, 4, 1),                                          # 3: swapped (1x1)
        nn.Conv2d(4, 4, 3, padding=2, dilation=2),                   # 4: swapped (dilated)
        nn.Conv2d(4, 4, 3, padding="same"),                          # 5: swapped ('same')
        nn.Conv2d(4, 4, 3, padding=1, groups=2),                     # 6: grouped
        nn.Conv2d(4, 4, 2, padding=1),                               # 7: even kernel
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),       # 8: reflect padding
        nn.Conv2d(4, 2, 3, padding=2),                               # 9: centres in the padding
    ).double()


SWAPPABLE = ["0", "2", "3", "4", "5"]


def _swapped(**kw):
    net = _net()
    original = _net()
    original.load_state_dict(net.state_dict())
    names = swap_convs(net, lambda name, conv: pac_from_conv(conv, native_impl=True, **kw),
                       predicate=lambda name, conv: pac_compatible(conv))
    return original, net, names


def _x(batch=2):
    return torch.randn(batch, 3, 9, 10, dtype=torch.float64)


def test_constant_guidance_gives_the_original_network():
    original, net, names = _swapped()
    assert names == SWAPPABLE
    assert all(isinstance(net[int(n)], GuidedPacConv2d) for n in names)
    x = _x()
    with torch.no_grad():
        expected = original(x)
        assert not torch.allclose(net(x), expected)  # self-guided: content-adaptive
        # one constant map for all layers: resized to each input, broadcast over the batch
        assert set_pac_guidance(net, torch.full((1, 5, 4, 4), 3.0, dtype=torch.float64)) == len(SWAPPABLE)
        torch.testing.assert_close(net(x), expected, rtol=1e-12, atol=1e-12)
        set_pac_guidance(net, None)
        _, scaled, _ = _swapped(guidance_scale=0.0)
        scaled.load_state_dict(net.state_dict())  # the original checkpoint's keys and shapes
        torch.testing.assert_close(scaled(x), expected, rtol=1e-12, atol=1e-12)


def test_state_dict_weights_copied_or_shared():
    original, net, _ = _swapped()
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in original.state_dict().items()}
    for name, value in original.state_dict().items():
        torch.testing.assert_close(net.state_dict()[name], value, rtol=0, atol=0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    conv.bias.requires_grad_(False)  # e.g. a frozen bias stays frozen
    copied = pac_from_conv(conv, native_impl=True)
    assert copied.weight is not conv.weight and copied.weight.data_ptr() != conv.weight.data_ptr()
    assert copied.weight.requires_grad and not copied.bias.requires_grad
    with torch.no_grad():
        copied.weight.add_(1.0)
    assert not torch.equal(copied.weight, conv.weight)
    shared = pac_from_conv(conv, native_impl=True, share_weights=True)
    assert shared.weight is conv.weight and shared.bias is conv.bias  # an earlier optimizer keeps them
    assert pac_from_conv(nn.Conv2d(2, 3, 3, bias=False), native_impl=True).bias is None


def test_guidance_sources():
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    layer = pac_from_conv(conv, native_impl=True)
    plain = PacConv2d(3, 4, 3, padding=1, native_impl=True).double()
    plain.load_state_dict(layer.state_dict())
    x, g = _x(), torch.randn(2, 2, 9, 10, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), plain(x, x))                    # its input
        torch.testing.assert_close(layer(x, g), plain(x, g))                 # explicit, as PacConv2d
        layer.set_guidance(g)
        torch.testing.assert_close(layer(x), plain(x, g))                    # stored tensor
        layer.set_guidance(lambda inp: inp[:, :1] * 2)
        torch.testing.assert_close(layer(x), plain(x, x[:, :1] * 2))         # callable
        assert "guidance=callable" in repr(layer)
        half = pac_from_conv(conv, native_impl=True, guidance=g, guidance_scale=0.5)
        torch.testing.assert_close(half(x), plain(x, g * 0.5))
        torch.testing.assert_close(half(x, g), plain(x, g * 0.5))            # the scale applies to all
    with pytest.raises(TypeError):
        layer.set_guidance(3.0)


def test_predicate_and_second_pass():
    net = _net()
    names = swap_convs(net, lambda name, conv: pac_from_conv(conv, native_impl=True),
                       predicate=lambda name, conv: pac_compatible(conv) and conv.stride == (1, 1)
                       and conv.kernel_size == (3, 3))
    assert names == ["0", "4", "5"]
    assert isinstance(net[2], nn.Conv2d) and isinstance(net[3], nn.Conv2d)
    assert swap_convs(net, lambda name, conv: pac_from_conv(conv, native_impl=True),
                      predicate=lambda name, conv: pac_compatible(conv)) == ["2", "3"]
    # swapped layers are no nn.Conv2d and live in torch_bridge.nn: never candidates again
    assert swap_convs(net, lambda name, conv: pac_from_conv(conv),
                      predicate=lambda name, conv: pac_compatible(conv)) == []


def test_incompatible_convolutions():
    net = _net()
    reasons = {i: pac_incompatibility(net[i]) for i in (6, 7, 8, 9)}
    assert "groups=2" in reasons[6]
    assert "even kernel" in reasons[7]
    assert "reflect" in reasons[8]
    assert "padding" in reasons[9]
    assert "non-square" in pac_incompatibility(nn.Conv2d(2, 2, (3, 5), padding=1))
    assert "not an nn.Conv2d" in pac_incompatibility(nn.ConvTranspose2d(2, 2, 3))
    assert all(pac_incompatibility(net[int(n)]) is None for n in SWAPPABLE)
    for i in (6, 7, 8, 9):
        with pytest.raises(ValueError, match="cannot build a PacConv2d"):
            pac_from_conv(net[i])
    with pytest.raises(ValueError, match="shared_filters"):
        pac_from_conv(net[5], shared_filters=True)


def test_device_dtype_mode_follow_the_conv():
    conv = nn.Conv2d(2, 3, 3, padding=1).double().eval()
    layer = pac_from_conv(conv, native_impl=True)
    assert layer.weight.dtype == torch.float64 and not layer.training
    assert layer.stride == (1, 1) and layer.padding == (1, 1) and layer.dilation == (1, 1)


def test_compiled_path_matches_conv_and_backpropagates():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    layer = pac_from_conv(conv, guidance=torch.zeros(1, 1, 1, 1))
    x = torch.randn(2, 3, 9, 10, requires_grad=True)
    out = layer(x)
    torch.testing.assert_close(out, conv(x), rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert x.grad is not None and layer.weight.grad is not None and layer.bias.grad is not None
    torch.testing.assert_close(layer.weight.grad, torch.autograd.grad(conv(x).sum(), conv.weight)[0],
                               rtol=1e-4, atol=1e-4)
