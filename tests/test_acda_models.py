"""Models with ACDA layers (torch_bridge.models) and the convolution swapper (torch_bridge.nn.swap)."""
import pytest
import torch
import torch.nn as nn

from torch_bridge.models import MODELS, count_parameters, get_model
from torch_bridge.models.ad_resnet import WIDTHS, AdResNet, Bottleneck
from torch_bridge.nn import ACDAConv2d
from torch_bridge.nn.swap import acda_compatible, acda_from_conv, acda_incompatibility, swap_convs

# documented parameter counts (module docstrings) and the paper's (Table 2)
PARAMS = {"lenet": 62_006, "lenet_acda": 148_784, "ad_resnet_s": 3_732_972,
          "ad_resnet_m": 9_895_920, "ad_resnet_l": 18_015_216}
PAPER = {"ad_resnet_s": 3.85e6, "ad_resnet_m": 9.83e6, "ad_resnet_l": 18.19e6}
BASELINE = {"ad_resnet_s": 2_961_096, "ad_resnet_m": 9_528_396, "ad_resnet_l": 18_477_132}


def test_registry():
    assert {"lenet", "lenet_acda", "ad_resnet_s", "ad_resnet_m", "ad_resnet_l"} <= set(MODELS)  # PAC models too
    with pytest.raises(KeyError, match="available: ad_resnet_l, ad_resnet_m, ad_resnet_s, ddf_resnet101"):
        get_model("resnet18")


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts(name):
    model = get_model(name)
    n = count_parameters(model)
    msg = f"{name}: {n:,} parameters"
    if name in PAPER:
        msg += f" (paper {PAPER[name] / 1e6:.2f}M, {100 * (n / PAPER[name] - 1):+.1f} %)"
        assert abs(n / PAPER[name] - 1) < 0.035
    print(msg)
    assert n == PARAMS[name]
    assert count_parameters(model, trainable=True) == n


@pytest.mark.parametrize("name", sorted(BASELINE))
def test_conv_baseline_counts(name):
    model = get_model(name, acda=False)
    assert not any(isinstance(m, ACDAConv2d) for m in model.modules())
    assert count_parameters(model) == BASELINE[name]


def test_bases_grad_adds_the_bases():
    n_acda = 9  # layer3 (6 blocks) + layer4 (3 blocks)
    assert count_parameters(get_model("ad_resnet_s", bases_grad=True)) == PARAMS["ad_resnet_s"] + n_acda * 18 * 49


def _backward_ok(model, x):
    out = model(x)
    out.float().pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    return out


@pytest.mark.parametrize("name", ["lenet", "lenet_acda"])
def test_lenet_forward_backward(name):
    model = get_model(name)
    out = _backward_ok(model, torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_lenet_acda_shapes():
    m = get_model("lenet_acda", num_classes=100)
    assert isinstance(m.conv1, ACDAConv2d) and isinstance(m.conv2, ACDAConv2d)
    assert m.conv1.kernel_size == 5 and m.conv2.kernel_size == 5 and m.fc1.in_features == 400
    assert m.features(torch.randn(1, 3, 32, 32)).shape == (1, 16, 5, 5)
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 100)
    m2 = get_model("lenet_acda", crop=False)
    assert m2.fc1.in_features == 16 * 8 * 8
    assert m2.features(torch.randn(1, 3, 32, 32)).shape == (1, 16, 8, 8)
    assert count_parameters(m2) == 223_664


def test_ad_resnet_s_forward_backward():
    model = get_model("ad_resnet_s", num_classes=10)
    out = _backward_ok(model, torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


@pytest.mark.parametrize("name", ["ad_resnet_s", "ad_resnet_m", "ad_resnet_l"])
def test_ad_resnet_structure(name):
    model = get_model(name)
    w = WIDTHS[name[-1]]
    names = dict(model.named_children())
    for key in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"):
        assert key in names
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert model.fc.in_features == 32 * w and model.fc.out_features == 1000
    for i in range(1, 5):
        for j, block in enumerate(getattr(model, f"layer{i}")):
            assert isinstance(block, Bottleneck)
            for key in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3"):
                assert hasattr(block, key)
            assert (block.downsample is not None) == (j == 0)
            if i >= 3:
                c = block.conv2
                assert isinstance(c, ACDAConv2d)
                assert (c.kernel_size, c.padding, c.num_bases, c.bias) == (7, 3, 6, None)
                assert c.stride == (2 if j == 0 else 1) and not c.bases_grad
            else:
                assert type(block.conv2) is nn.Conv2d and block.conv2.kernel_size == (3, 3)
    assert model.layer1[0].conv2.stride == (1, 1) and model.layer2[0].conv2.stride == (2, 2)


def test_ad_resnet_options():
    m = AdResNet(width=8, layers=(1, 1, 1, 1), num_classes=5, dynamic_stages=(3,), zero_init_residual=True)
    assert isinstance(m.layer4[0].conv2, ACDAConv2d) and type(m.layer3[0].conv2) is nn.Conv2d
    assert all(float(b.bn3.weight.detach().abs().sum()) == 0 for b in m.modules() if isinstance(b, Bottleneck))
    with pytest.raises(ValueError):
        AdResNet(layers=(1, 1, 1))


# --------------------------------------------------------------------------------------------
# swap_convs

def _small_net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),                           # 0: swapped
        nn.ReLU(),
        nn.Conv2d(8, 8, 1),                                      # 2: 1x1, kept
        nn.Sequential(nn.Conv2d(8, 8, 5, padding=2, stride=2, bias=False),  # 3.0: swapped
                      nn.BatchNorm2d(8)),
        nn.Conv2d(8, 8, 3, padding=1, groups=2),                 # 4: grouped, kept
        nn.Conv2d(8, 4, 3, padding=2, dilation=2),               # 5: swapped (dilated 'same')
    )


def test_swap_acda_small_net():
    torch.manual_seed(0)
    net = _small_net()
    swapped = swap_convs(net, lambda name, conv: acda_from_conv(conv, bases_grad=False),
                         predicate=lambda name, conv: acda_compatible(conv))
    assert swapped == ["0", "3.0", "5"]
    assert isinstance(net[0], ACDAConv2d) and isinstance(net[3][0], ACDAConv2d) and isinstance(net[5], ACDAConv2d)
    assert type(net[2]) is nn.Conv2d and type(net[4]) is nn.Conv2d
    a = net[3][0]
    assert (a.in_channels, a.out_channels, a.kernel_size, a.stride, a.padding, a.bias) == (8, 8, 5, 2, 2, None)
    assert (net[5].dilation, net[5].padding, net[5].bias is not None) == (2, 2, True)
    _backward_ok(net, torch.randn(2, 3, 16, 16))
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 4, 8, 8)
    # the ACDA layers' inner convolutions are never candidates: a second pass swaps nothing
    seen = []
    assert swap_convs(net, lambda n, c: seen.append(n) or c) == ["2", "4"]
    assert seen == ["2", "4"]


def test_swap_generic_make_and_predicate():
    net = _small_net().eval()
    made = []

    def make(name, conv):
        made.append(name)
        return nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                         conv.padding, conv.dilation, conv.groups, conv.bias is not None)

    assert swap_convs(net, make, predicate=lambda name, conv: conv.kernel_size == (3, 3)) == ["0", "4", "5"]
    assert made == ["0", "4", "5"]
    assert not net[0].training  # mode follows the replaced convolution
    assert net(torch.randn(1, 3, 8, 8)).shape == (1, 4, 4, 4)
    with pytest.raises(TypeError, match="not an nn.Module"):
        swap_convs(net, lambda n, c: None)


def test_swap_shared_and_dtype():
    conv = nn.Conv2d(2, 2, 3, padding=1).double()
    net = nn.Sequential(conv, nn.ReLU(), conv)
    names = swap_convs(net, lambda n, c: acda_from_conv(c))
    assert names == ["0", "2"] and net[0] is net[2]
    assert net[0].coef.dtype == torch.float64
    assert net(torch.randn(1, 2, 6, 6, dtype=torch.float64)).dtype == torch.float64


def test_swap_in_resnet():
    m = AdResNet(width=8, layers=(1, 1, 1, 1), num_classes=3, acda=False)
    names = swap_convs(m, lambda n, c: acda_from_conv(c, bases_grad=False),
                       predicate=lambda n, c: n.startswith("layer4") and acda_compatible(c))
    assert names == ["layer4.0.conv2"]
    assert isinstance(m.layer4[0].conv2, ACDAConv2d) and m.layer4[0].conv2.stride == 2
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 3)


@pytest.mark.parametrize("conv,why", [
    (nn.Conv2d(4, 4, 3, padding=1, groups=2), "groups=2"),
    (nn.Conv2d(4, 4, (3, 5), padding=(1, 2)), "non-square"),
    (nn.Conv2d(4, 4, 4, padding=1), "kernel size 4"),
    (nn.Conv2d(4, 4, 1), "kernel size 1"),
    (nn.Conv2d(4, 4, 3), r"padding=\(0, 0\)"),
    (nn.Conv2d(4, 4, 3, padding="valid"), "padding='valid'"),
    (nn.Conv2d(4, 4, 5, padding=2, dilation=2), r"padding = dilation\*\(k-1\)//2 = 4"),
    (nn.Conv2d(4, 4, 3, padding=1, stride=(1, 2)), "unequal strides"),
    (nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), "padding_mode"),
])
def test_acda_from_conv_errors(conv, why):
    assert not acda_compatible(conv)
    assert acda_incompatibility(conv) is not None
    with pytest.raises(ValueError, match=why):
        acda_from_conv(conv)


def test_acda_from_conv_same_string_padding():
    layer = acda_from_conv(nn.Conv2d(3, 5, 7, padding="same", bias=False), num_bases=4)
    assert (layer.kernel_size, layer.padding, layer.num_bases, layer.bias) == (7, 3, 4, None)
    assert layer(torch.randn(1, 3, 9, 9)).shape == (1, 5, 9, 9)
