"""DDF layers (torch_bridge.nn.ddf) against the official modules of theFoxofSky/ddfnet.

The official modules are re-implemented below in plain PyTorch (their reshape-to-``B*head``
formulation, ``ddf_reference`` for the CUDA op, the three DDFUpPack bugs fixed), so layouts,
forward and gradients can be compared without CUDA.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_bridge.nn import DDFPack, DDFUpPack, FilterNorm
from torch_bridge.reference import ddf_reference


# --------------------------------------------------------------------------------------------
# The official formulation, plain PyTorch.

class RefFilterNorm(nn.Module):
    def __init__(self, in_channels, kernel_size, filter_type, nonlinearity="linear",
                 running_std=False, running_mean=False):
        super().__init__()
        self.in_channels, self.filter_type = in_channels, filter_type
        self.runing_std, self.runing_mean = running_std, running_mean
        std = nn.init.calculate_gain(nonlinearity) / kernel_size
        n = in_channels * kernel_size ** 2
        self.std = nn.Parameter(torch.randn(n) * std) if running_std else std
        if running_mean:
            self.mean = nn.Parameter(torch.randn(n))

    def forward(self, x):
        b, n = x.shape[:2]
        if self.filter_type == "spatial":
            h, w = x.shape[2:]
            x = x.reshape(b, self.in_channels, -1, h, w)
            x = x - x.mean(dim=2).reshape(b, self.in_channels, 1, h, w)
            x = x / (x.std(dim=2).reshape(b, self.in_channels, 1, h, w) + 1e-10)
            x = x.reshape(b, n, h, w)
            x = x * (self.std[None, :, None, None] if self.runing_std else self.std)
            if self.runing_mean:
                x = x + self.mean[None, :, None, None]
        else:
            x = x.reshape(b, self.in_channels, -1)
            x = x - x.mean(dim=2).reshape(b, self.in_channels, 1)
            x = x / (x.std(dim=2).reshape(b, self.in_channels, 1) + 1e-10)
            x = x.reshape(b, -1)
            x = x * (self.std[None, :] if self.runing_std else self.std)
            if self.runing_mean:
                x = x + self.mean[None, :]
        return x


def ref_spatial_branch(cin, k, head, nonlinearity, stride):
    return nn.Sequential(nn.Conv2d(cin, head * k * k, 1, stride=stride),
                         RefFilterNorm(head, k, "spatial", nonlinearity))


def ref_channel_branch(cin, k, nonlinearity, se_ratio):
    mid = int(cin * se_ratio)
    return nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Conv2d(cin, mid, 1), nn.ReLU(True),
                         nn.Conv2d(mid, cin * k * k, 1),
                         RefFilterNorm(cin, k, "channel", nonlinearity, running_std=True))


def ref_ddf_heads(x, channel_filter, spatial_filter, head, k, d, s, combine):
    """The official call: fold the heads into the batch, single-head op, unfold."""
    b, c, h, w = x.shape
    ho, wo = spatial_filter.shape[-2:]
    out = ddf_reference(x.reshape(b * head, c // head, h, w),
                        channel_filter.reshape(b * head, c // head, k, k),
                        spatial_filter.reshape(b * head, -1, ho, wo), k, d, s, combine)
    return out.reshape(b, c, ho, wo)


class RefDDFPack(nn.Module):
    def __init__(self, in_channels, kernel_size=3, stride=1, dilation=1, head=1, se_ratio=0.2,
                 nonlinearity="relu", kernel_combine="mul"):
        super().__init__()
        self.k, self.s, self.d, self.head, self.combine = kernel_size, stride, dilation, head, kernel_combine
        self.spatial_branch = ref_spatial_branch(in_channels, kernel_size, head, nonlinearity, stride)
        self.channel_branch = ref_channel_branch(in_channels, kernel_size, nonlinearity, se_ratio)

    def forward(self, x):
        return ref_ddf_heads(x, self.channel_branch(x), self.spatial_branch(x), self.head,
                             self.k, self.d, self.s, self.combine)


class RefDDFUpPack(nn.Module):
    """Official DDFUpPack with its bugs fixed: combine mode passed, dw padding dw//2, joint
    spatial conv on joint_channels."""

    def __init__(self, in_channels, kernel_size=3, scale_factor=2, dilation=1, head=1, se_ratio=0.2,
                 nonlinearity="linear", dw_kernel_size=3, joint_channels=-1, kernel_combine="mul"):
        super().__init__()
        self.k, self.d, self.head, self.S, self.combine = kernel_size, dilation, head, scale_factor, kernel_combine
        self.spatial_branch, self.channel_branch = nn.ModuleList(), nn.ModuleList()
        for _ in range(scale_factor ** 2):
            if joint_channels < 1:
                dw = max(dw_kernel_size, 3)
                self.spatial_branch.append(nn.Sequential(
                    nn.Conv2d(in_channels, in_channels, dw, padding=dw // 2, groups=in_channels),
                    ref_spatial_branch(in_channels, kernel_size, head, nonlinearity, 1)))
            else:
                self.spatial_branch.append(
                    ref_spatial_branch(joint_channels, kernel_size, head, nonlinearity, 1))
            self.channel_branch.append(ref_channel_branch(in_channels, kernel_size, nonlinearity, se_ratio))

    def forward(self, x, joint_x=None):
        joint_x = x if joint_x is None else joint_x
        outs = [ref_ddf_heads(x, c_b(x), s_b(joint_x), self.head, self.k, self.d, 1, self.combine)
                for s_b, c_b in zip(self.spatial_branch, self.channel_branch)]
        out = torch.stack(outs, dim=2)
        out = out.reshape(out.size(0), -1, out.size(-2), out.size(-1))
        return F.pixel_shuffle(out, self.S)


# --------------------------------------------------------------------------------------------
# state_dict layout: hand-written official keys and shapes.

OFFICIAL_KEYS = {
    "DDFPack(16, 3)": (lambda: DDFPack(16, 3), [
        ("spatial_branch.0.weight", (9, 16, 1, 1)), ("spatial_branch.0.bias", (9,)),
        ("channel_branch.1.weight", (3, 16, 1, 1)), ("channel_branch.1.bias", (3,)),
        ("channel_branch.3.weight", (144, 3, 1, 1)), ("channel_branch.3.bias", (144,)),
        ("channel_branch.4.std", (144,)),
    ]),
    "DDFPack(16, 5, head=2, stride=2)": (lambda: DDFPack(16, 5, head=2, stride=2), [
        ("spatial_branch.0.weight", (50, 16, 1, 1)), ("spatial_branch.0.bias", (50,)),
        ("channel_branch.1.weight", (3, 16, 1, 1)), ("channel_branch.1.bias", (3,)),
        ("channel_branch.3.weight", (400, 3, 1, 1)), ("channel_branch.3.bias", (400,)),
        ("channel_branch.4.std", (400,)),
    ]),
    "DDFUpPack(8)": (lambda: DDFUpPack(8), [
        (f"spatial_branch.{i}.{name}", shape) for i in range(4) for name, shape in [
            ("0.weight", (8, 1, 3, 3)), ("0.bias", (8,)),
            ("1.0.weight", (9, 8, 1, 1)), ("1.0.bias", (9,))]
    ] + [
        (f"channel_branch.{i}.{name}", shape) for i in range(4) for name, shape in [
            ("1.weight", (1, 8, 1, 1)), ("1.bias", (1,)),
            ("3.weight", (72, 1, 1, 1)), ("3.bias", (72,)), ("4.std", (72,))]
    ]),
    "DDFUpPack(8, joint_channels=8)": (lambda: DDFUpPack(8, joint_channels=8), [
        (f"spatial_branch.{i}.{name}", shape) for i in range(4) for name, shape in [
            ("0.weight", (9, 8, 1, 1)), ("0.bias", (9,))]
    ] + [
        (f"channel_branch.{i}.{name}", shape) for i in range(4) for name, shape in [
            ("1.weight", (1, 8, 1, 1)), ("1.bias", (1,)),
            ("3.weight", (72, 1, 1, 1)), ("3.bias", (72,)), ("4.std", (72,))]
    ]),
}


@pytest.mark.parametrize("name", list(OFFICIAL_KEYS))
def test_state_dict_matches_official_layout(name):
    make, expected = OFFICIAL_KEYS[name]
    module = make()
    assert [(k, tuple(v.shape)) for k, v in module.state_dict().items()] == expected
    official = {k: torch.randn(shape) for k, shape in expected}
    module.load_state_dict(official, strict=True)
    for k, v in module.state_dict().items():
        assert torch.equal(v, official[k]), k


@pytest.mark.parametrize("make, make_ref", [
    (lambda: DDFPack(16, 5, head=2, stride=2), lambda: RefDDFPack(16, 5, head=2, stride=2)),
    (lambda: DDFUpPack(8, dw_kernel_size=5), lambda: RefDDFUpPack(8, dw_kernel_size=5)),
    (lambda: DDFUpPack(8, joint_channels=4), lambda: RefDDFUpPack(8, joint_channels=4)),
])
def test_seeded_init_matches_official(make, make_ref):
    # Same construction order as the official -> same initial weights under one seed.
    torch.manual_seed(123)
    ours = make().state_dict()
    torch.manual_seed(123)
    ref = make_ref().state_dict()
    assert list(ours) == list(ref)
    for k in ours:
        assert torch.equal(ours[k], ref[k]), k


# --------------------------------------------------------------------------------------------
# FilterNorm vs. a direct formula.

@pytest.mark.parametrize("filter_type", ["spatial", "channel"])
@pytest.mark.parametrize("running_std, running_mean", [(False, False), (True, False), (True, True), (False, True)])
def test_filter_norm(filter_type, running_std, running_mean):
    G, k, b = 3, 3, 2
    kk = k * k
    norm = FilterNorm(G, k, filter_type, "relu", running_std, running_mean).double()
    names = {n for n, _ in norm.named_parameters()}
    assert names == {n for n, on in (("std", running_std), ("mean", running_mean)) if on}
    x = torch.randn(b, G * kk, 4, 5, dtype=torch.float64) if filter_type == "spatial" else \
        torch.randn(b, G * kk, 1, 1, dtype=torch.float64)
    y = norm(x)

    xs = x.reshape(b, G, kk, -1)                        # taps on axis 2, pixels last
    mu = xs.sum(2, keepdim=True) / kk
    sd = (((xs - mu) ** 2).sum(2, keepdim=True) / (kk - 1)).sqrt()
    z = (xs - mu) / (sd + 1e-10)
    scale = norm.std.reshape(1, G, kk, 1) if running_std else torch.nn.init.calculate_gain("relu") / k
    z = z * scale
    if running_mean:
        z = z + norm.mean.reshape(1, G, kk, 1)
    if filter_type == "spatial":
        expected = z.reshape(x.shape)
    else:
        expected = z.reshape(b, G * kk)
    assert y.shape == expected.shape
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    if running_std:  # official init: randn * gain / k
        assert norm.std.shape == (G * kk,)


# --------------------------------------------------------------------------------------------
# Forward and backward vs. the official formulation (float64).

def _compare(ours, ref, inputs):
    """Same weights; outputs and the gradients of every parameter and input must match."""
    ours, ref = ours.double(), ref.double()
    ref.load_state_dict(ours.state_dict(), strict=True)
    ins_a = [t.double().requires_grad_() for t in inputs]
    ins_b = [t.detach().clone().requires_grad_() for t in ins_a]
    out_a, out_b = ours(*ins_a), ref(*ins_b)
    assert out_a.shape == out_b.shape
    torch.testing.assert_close(out_a, out_b, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(out_a)
    out_a.backward(grad)
    out_b.backward(grad)
    params_b = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, params_b[name].grad, rtol=1e-9, atol=1e-9, msg=name)
    for a, b in zip(ins_a, ins_b):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-9)
    return out_a


@pytest.mark.parametrize("shape, kwargs, out_hw", [
    ((2, 8, 8, 8), dict(kernel_size=3), (8, 8)),
    ((2, 8, 9, 11), dict(kernel_size=5, stride=2, head=2, kernel_combine="add"), (5, 6)),
    ((1, 8, 9, 11), dict(kernel_size=3, stride=2, dilation=2, head=4), (5, 6)),
])
def test_ddf_pack_matches_official(shape, kwargs, out_hw):
    ours, ref = DDFPack(shape[1], **kwargs), RefDDFPack(shape[1], **kwargs)
    out = _compare(ours, ref, [torch.randn(shape)])
    assert out.shape == (*shape[:2], *out_hw)


@pytest.mark.parametrize("shape, joint_shape, kwargs", [
    ((1, 8, 5, 6), None, dict()),
    # dw_kernel_size != kernel_size: the official padded the depthwise conv with kernel_size//2.
    ((2, 8, 5, 6), None, dict(dw_kernel_size=5, head=2, kernel_combine="add")),
    ((1, 8, 5, 6), (1, 4, 5, 6), dict(joint_channels=4, scale_factor=3, dilation=2)),
])
def test_ddf_up_pack_matches_official(shape, joint_shape, kwargs):
    ours, ref = DDFUpPack(shape[1], **kwargs), RefDDFUpPack(shape[1], **kwargs)
    inputs = [torch.randn(shape)] + ([torch.randn(joint_shape)] if joint_shape else [])
    out = _compare(ours, ref, inputs)
    S = kwargs.get("scale_factor", 2)
    assert out.shape == (shape[0], shape[1], S * shape[2], S * shape[3])


# --------------------------------------------------------------------------------------------
# Clear errors (raised at construction, no kernel builds).

@pytest.mark.parametrize("make, match", [
    (lambda: DDFPack(16, kernel_size=4), "kernel_size"),
    (lambda: DDFPack(16, kernel_size=1), "kernel_size"),
    (lambda: DDFPack(15, head=2), "head"),
    (lambda: DDFPack(16, se_ratio=0), "se_ratio"),
    (lambda: DDFPack(16, se_ratio=0.01), "se_ratio"),
    (lambda: DDFPack(16, stride=0), "stride"),
    (lambda: DDFPack(16, kernel_combine="max"), "kernel_combine"),
    (lambda: DDFUpPack(8, kernel_size=4), "kernel_size"),
    (lambda: DDFUpPack(8, head=3), "head"),
    (lambda: DDFUpPack(8, se_ratio=0), "se_ratio"),
    (lambda: DDFUpPack(8, dw_kernel_size=4), "dw_kernel_size"),
    (lambda: DDFUpPack(8, scale_factor=0), "scale_factor"),
    (lambda: FilterNorm(4, 3, "depth"), "filter_type"),
])
def test_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_up_pack_joint_errors():
    up = DDFUpPack(8, joint_channels=4)
    with pytest.raises(ValueError, match="joint_x"):
        up(torch.randn(1, 8, 5, 6))
    with pytest.raises(ValueError, match="joint_x"):
        up(torch.randn(1, 8, 5, 6), torch.randn(1, 4, 5, 7))


@pytest.mark.parametrize("make, args, match", [
    (lambda: DDFPack(8), (torch.randn(8, 6, 6),), r"x must have shape \(N, 8, H, W\)"),  # unbatched
    (lambda: DDFPack(8), (torch.randn(2, 4, 6, 6),), r"x must have shape \(N, 8, H, W\)"),
    (lambda: DDFPack(8), (torch.randn(2, 8, 0, 6),), r"x must have shape \(N, 8, H, W\) with H, W >= 1"),
    (lambda: DDFUpPack(8), (torch.randn(8, 5, 6),), r"x must have shape \(N, 8, H, W\)"),
    (lambda: DDFUpPack(8), (torch.randn(1, 3, 5, 6),), r"x must have shape \(N, 8, H, W\)"),
    (lambda: DDFUpPack(8), (torch.randn(1, 8, 5, 6), torch.randn(1, 4, 5, 6)),
     r"joint_x must have shape \(1, 8, 5, 6\)"),
    (lambda: DDFUpPack(8, joint_channels=4), (torch.randn(1, 8, 5, 6), torch.randn(1, 3, 5, 6)),
     r"joint_x must have shape \(1, 4, 5, 6\)"),
])
def test_input_errors_name_the_argument(make, args, match):
    with pytest.raises(ValueError, match=match):
        make()(*args)


@pytest.mark.parametrize("native_impl", [False, True])
@pytest.mark.parametrize("make, out_shape", [
    (lambda n: DDFPack(8, stride=2, head=2, native_impl=n), (0, 8, 4, 3)),
    (lambda n: DDFUpPack(8, scale_factor=3, native_impl=n), (0, 8, 21, 18)),
])
def test_empty_batch_gives_empty_output_and_zero_gradients(make, out_shape, native_impl, no_kernels):
    layer = make(native_impl)
    x = torch.randn(0, 8, 7, 6, requires_grad=True)
    out = layer(x)
    assert out.shape == out_shape
    out.sum().backward()
    assert x.grad.shape == x.shape
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape and not p.grad.any(), name


def test_kernel_size_limit_names_native_impl():
    with pytest.raises(ValueError, match="at most 31 .*native_impl=True"):
        DDFPack(8, kernel_size=33)
    layer = DDFPack(8, kernel_size=33, native_impl=True)
    assert layer(torch.randn(1, 8, 5, 4)).shape == (1, 8, 5, 4)
