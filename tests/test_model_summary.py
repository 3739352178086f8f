"""FLOP counting of torch_bridge.app.models_summary (the ``models`` subcommand) on hand-computed cases,
and the ResNet / DDF-ResNet totals against the well-known and the paper's numbers."""
import pytest
import torch
import torch.nn as nn

from torch_bridge.app.costs import acda_costs
from torch_bridge.models import get_model
from torch_bridge.app.models_summary import count_flops, format_rows, model_inputs, summarize
from torch_bridge.nn import ACDAConv2d, DDFPack, DDFUpPack, PacConv2d, PacConvTranspose2d, PacPool2d


def test_conv_linear():
    assert count_flops(nn.Conv2d(3, 8, 3, padding=1), torch.randn(1, 3, 8, 8)) == \
        {"conv": 8 * 64 * 27, "total": 13_824}
    # groups and stride: 2x(4/2 * 3*3) per output, 8 outputs of 4x4, batch 2
    assert count_flops(nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), torch.randn(2, 4, 8, 8))["total"] == \
        2 * 8 * 16 * 2 * 9
    assert count_flops(nn.Linear(10, 5), torch.randn(2, 10)) == {"linear": 100, "total": 100}
    # transposed: each input pixel times each tap: 1 * 4*5*5 * 6 * 3*3
    assert count_flops(nn.ConvTranspose2d(4, 6, 3, stride=2), torch.randn(1, 4, 5, 5))["total"] == 5400


def test_ddf_pack():
    # 8 channels, 8x8, stride 2 -> 4x4; channel branch hidden width int(8 * 0.2) = 1
    counts = count_flops(DDFPack(8, 3, stride=2), torch.randn(1, 8, 8, 8))
    spatial = 9 * 8 * 16          # 1x1 conv 8 -> 9 at the output resolution
    channel = 8 * 1 + 1 * 72      # 1x1 convs on the pooled 1x1 map: 8 -> 1 -> 72
    op = 2 * 8 * 9 * 16           # apply + combine, per channel, tap and output pixel
    assert counts == {"conv": spatial + channel, "ddf op": op, "total": 3536}
    # DDFUpPack: S*S = 4 DDF filterings at the input resolution, each with a depthwise 3x3,
    # a 1x1 to 9 channels and the channel branch
    up = count_flops(DDFUpPack(8), torch.randn(1, 8, 5, 6))
    assert up["ddf op"] == 4 * 2 * 8 * 9 * 30
    assert up["conv"] == 4 * (8 * 9 * 30 + 9 * 8 * 30 + 8 * 1 + 1 * 72)


def test_acda_matches_costs():
    # M = 2 atoms, T = (3 // 2) * 2 = 2 bases, generator 4 -> 64 -> 4 (3x3), 5x5 output
    layer = ACDAConv2d(4, 6, 3, padding=1, num_bases=2)
    counts = count_flops(layer, torch.randn(1, 4, 5, 5))
    gen = 4 * 9 * 64 * 25 + 64 * 9 * 4 * 25
    op = 4 * 9 * 25 + 4 * 2 * 9 * 25 + 4 * 2 * 6 * 25  # reconstruction, atom conv, coefficients
    assert counts == {"conv": gen, "acda op": op, "total": gen + op}
    ref = acda_costs(4, 6, 3, 5, 5, num_bases=2)
    biases = (64 + 4 + 6) * 25  # costs.py adds one addition per output element for each bias
    assert counts["total"] == ref["total"]["flops"] - biases


def test_pac_layers():
    x, g = torch.randn(1, 2, 4, 4), torch.randn(1, 5, 4, 4)
    conv = PacConv2d(2, 3, 3, padding=1)
    # convolution 3*2*9*16, kernel scaling of the input taps 2*9*16, kernel 5*9*16
    assert count_flops(conv, x, g) == {"pac op": 864 + 288 + 720, "total": 1872}
    kernel, _ = conv.compute_kernel(g)
    assert count_flops(conv, x, None, kernel)["total"] == 864 + 288  # a given kernel costs nothing
    shared = PacConv2d(2, 2, 3, padding=1, shared_filters=True)
    assert count_flops(shared, x, g)["total"] == 288 + 288 + 720
    pool = PacPool2d(3, padding=1)
    assert count_flops(pool, x, g)["total"] == 288 + 720
    # transposed, stride 2: 4x4 -> 8x8; convolution and scaling per input pixel, kernel per output pixel
    up = PacConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1)
    assert count_flops(up, x, torch.randn(1, 5, 8, 8))["total"] == 3 * 2 * 9 * 16 + 2 * 9 * 16 + 5 * 9 * 64


def test_resnet50_is_the_well_known_4_1_gflops():
    model = get_model("resnet50")
    counts = count_flops(model, *model_inputs("resnet50", model))
    assert counts["total"] == 4_089_184_256  # torchvision's 4.09 GFLOPs; paper 4.1B
    assert counts["linear"] == 2048 * 1000


def test_ddf_resnet50_against_table4():
    model = get_model("ddf_resnet50")
    counts = count_flops(model, torch.randn(1, 3, 224, 224))
    assert counts["total"] == 2_279_252_992
    assert round(counts["total"] / 1e9, 1) == 2.3                # Tables 4 and 5
    assert abs(counts["total"] / 2.298e9 - 1) < 0.01              # Table 3(c), within 1 %
    # the DDF ops are 2 * sum(n c k^2), twice the spatial branches' 1x1 convolutions
    assert counts["ddf op"] == 24_837_120
    # the batch scales everything; the compiled kernels change nothing
    model2 = get_model("ddf_resnet50", num_classes=10)
    small = count_flops(model2, torch.randn(2, 3, 32, 32))
    assert count_flops(model2, torch.randn(2, 3, 32, 32), run_kernels=True) == small
    assert count_flops(model2, torch.randn(1, 3, 32, 32))["total"] * 2 == small["total"]


def test_summary_rows_and_cli(capsys):
    from dynfilter_tvm.__main__ import main

    rows = summarize(["lenet", "pac_joint_upsample_lite"], size=64, factors=[4])
    assert [r["label"] for r in rows] == ["lenet", "pac_joint_upsample_lite x4"]
    assert rows[0]["input"] == "1x3x32x32" and rows[1]["input"] == "1x1x16x16 + 1x3x64x64"
    assert rows[1]["params"] == 55_509 and rows[1]["flops"]["pac op"] > 0
    assert "pac_joint_upsample_lite x4" in format_rows(rows)
    # LeNet at 32x32: convs 6*28*28*75 + 16*10*10*150, fc 400*120 + 120*84 + 84*10
    assert main(["models", "lenet"]) == 0
    out = capsys.readouterr().out
    assert "lenet" in out and "62,006" in out and "0.65 M" in out
    lenet = summarize(["lenet"])[0]["flops"]["total"]
    assert lenet == 6 * 784 * 75 + 16 * 100 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    with pytest.raises(SystemExit):
        main(["models", "no_such_model"])
