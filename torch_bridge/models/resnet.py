"""ResNet-50/101 and DDF-ResNet-50/101/152 (Zhou et al., CVPR 2021, §5.1), with timm's module names.

DDF-ResNet (the official ``ddf_resnet.py`` of theFoxofSky/ddfnet, built on timm 0.4.5's
``ResNet``): a ResNet of bottleneck blocks in which *every* block's 3x3 convolution ``conv2`` is a
``DDFPack(width, kernel_size=3, stride=stride, dilation=1, se_ratio=0.2, kernel_combine=...)``,
same channels (the paper's Fig. 4); everything else is the plain ResNet. So, as in timm:

* stem: ``conv1`` 7x7/2 (3 -> 64, no bias), ``bn1``, ``act1`` (ReLU), ``maxpool`` 3x3/2;
* stages ``layer1`` .. ``layer4`` of [3, 4, 6, 3] (50), [3, 4, 23, 3] (101) or [3, 8, 36, 3]
  (152) bottlenecks of widths 64, 128, 256, 512 and outputs 4x that; a block is ``conv1``
  (1x1) ``bn1`` ``act1`` ``conv2`` ``bn2`` ``act2`` ``conv3`` (1x1) ``bn3``, plus the shortcut,
  then ``act3``;
* the stride 2 of stages 2-4 sits on the first block's ``conv2``: there the ``DDFPack`` filters
  with stride 2, its spatial branch (1x1 conv) runs with stride 2 and predicts the filters at
  the output resolution, its channel branch pools the whole input;
* the first block of each stage has the projection shortcut ``downsample.0`` (1x1 conv with
  the stride, no bias) ``downsample.1`` (BatchNorm);
* ``global_pool`` (average, flattened; no parameters) and ``fc``.

``state_dict`` keys are timm's, e.g. ``conv1.weight``, ``layer2.0.conv2.spatial_branch.0.weight``,
``layer2.0.downsample.0.weight``, ``fc.bias`` (``tests/test_resnet_models.py`` lists them), so
the official DDF checkpoints (and timm's or torchvision's ResNet-50/101 checkpoints, same keys,
for the baselines) load with
``load_state_dict(strict=True)``. Initialisation follows timm 0.4.5 and the official order:
every ``nn.Conv2d`` weight -- those inside the DDF branches too -- kaiming-normal (fan_out),
BatchNorm weight 1 and bias 0, the last BN of each block zeroed (``zero_init_last=True``); the
DDF branch biases and ``channel_branch.4.std`` keep ``DDFPack``'s own initialisation.

Parameters (1000 classes; ``count_parameters``), against the paper (Tables 4 and 5):

    model            ours         paper   its 3x3 layers (conv2 of every block)
    resnet50         25,557,032   25.6M   16 convolutions  11,317,248
    resnet101        44,549,160   44.5M   33 convolutions  21,344,256
    ddf_resnet50     16,843,748   16.8M   16 DDFPacks       2,603,964
    ddf_resnet101    28,146,912   28.1M   33 DDFPacks       4,942,008
    ddf_resnet152    37,462,900     -     50 DDFPacks       6,871,884

(``kernel_combine`` does not change the counts. A DDFPack on C channels with m = int(0.2 C)
has 9C + 9 (spatial 1x1 conv) + Cm + m + 9Cm + 9C (channel branch) + 9C (``std``) parameters:
137,532 on 256 channels, against 589,824 for the 3x3 convolution it replaces.)

FLOPs (multiply-adds at 1x3x224x224, ``python -m dynfilter_tvm models``; what is counted is
in ``torch_bridge/app/models_summary.py``): resnet50 4.089G (the well-known 4.1G of the paper's
Tables 4/5 and torchvision), resnet101 7.801G (paper 7.8B), ddf_resnet50 2.279G (paper 2.3B;
Table 3(c) 2.298B), ddf_resnet101 4.051G (paper 4.1B), ddf_resnet152 5.829G.

``torch_bridge.nn.use_reference_ops(model)`` switches every DDF (and ACDA / PAC) layer of a
model to the plain-PyTorch reference of its op, e.g. to compare the compiled path or to
benchmark it.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn

from ..nn import DDFPack
from ._resnet_parts import bottleneck_stage, init_resnet_weights
from .registry import register_model

__all__ = ["ResNet", "Bottleneck", "resnet50", "resnet101", "ddf_resnet50", "ddf_resnet101",
           "ddf_resnet152", "LAYERS"]

#: blocks per stage
LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class Bottleneck(nn.Module):
    """timm's ResNet bottleneck (1x1 - 3x3 - 1x1, expansion 4, stride on the 3x3); with
    ``ddf=True`` the official DDF bottleneck: ``conv2`` a ``DDFPack`` of the same width."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 ddf: bool = False, se_ratio: float = 0.2, kernel_combine: str = "mul"):
        super().__init__()
        width, outplanes = planes, planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width, outplanes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(outplanes)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        if ddf:
            # Replaced after the plain block is built, as the official subclass does: the same
            # random draws, so a seeded model starts from the official initial values.
            self.conv2 = DDFPack(width, kernel_size=3, stride=stride, dilation=1, se_ratio=se_ratio,
                                 kernel_combine=kernel_combine)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.bn3(self.conv3(x))
        return self.act3(x + shortcut)


class ResNet(nn.Module):
    """ResNet of bottleneck blocks with timm's layout and names; ``ddf=True`` makes every
    block's 3x3 convolution a ``DDFPack`` (DDF-ResNet). See the module docstring.

    Args:
        layers: blocks in each of the four stages, e.g. ``LAYERS[50]``.
        num_classes: outputs of ``fc``.
        ddf: DDF bottlenecks (DDF-ResNet) instead of plain ones.
        se_ratio: the DDF channel branch's squeeze ratio (0.2, the paper's and official default).
        kernel_combine: 'mul' (the paper's DDF-ResNets) or 'add' (the official ``ddf_add_*``).
        in_chans: input channels.
        zero_init_last: zero the last BN of each block (timm's default).
    """

    def __init__(self, layers: Sequence[int] = LAYERS[50], num_classes: int = 1000, ddf: bool = False,
                 se_ratio: float = 0.2, kernel_combine: str = "mul", in_chans: int = 3,
                 zero_init_last: bool = True):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must give the number of blocks of the 4 stages, got {layers!r}")
        self.layers_cfg, self.ddf, self.kernel_combine = tuple(layers), ddf, kernel_combine
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stage, inplanes = bottleneck_stage(Bottleneck, inplanes, planes, blocks, 1 if i == 0 else 2,
                                               ddf=ddf, se_ratio=se_ratio, kernel_combine=kernel_combine)
            self.add_module(f"layer{i + 1}", stage)
        self.num_features = inplanes
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.fc = nn.Linear(inplanes, num_classes)
        self.init_weights(zero_init_last)

    def init_weights(self, zero_init_last: bool = True) -> None:
        """timm 0.4.5's ``ResNet`` initialisation (the DDF branches' convolutions included)."""
        init_resnet_weights(self.modules())
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    m.zero_init_last()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.global_pool(self.forward_features(x)))


@register_model("resnet50")
def resnet50(num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-50: 25,557,032 parameters (paper: 25.6M)."""
    return ResNet(LAYERS[50], num_classes, **kw)


@register_model("resnet101")
def resnet101(num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-101: 44,549,160 parameters (paper: 44.5M)."""
    return ResNet(LAYERS[101], num_classes, **kw)


@register_model("ddf_resnet50")
def ddf_resnet50(num_classes: int = 1000, kernel_combine: str = "mul", **kw) -> ResNet:
    """DDF-ResNet-50 (official ``ddf_mul_resnet50`` / ``ddf_add_resnet50``): 16,843,748
    parameters (paper: 16.8M)."""
    return ResNet(LAYERS[50], num_classes, ddf=True, kernel_combine=kernel_combine, **kw)


@register_model("ddf_resnet101")
def ddf_resnet101(num_classes: int = 1000, kernel_combine: str = "mul", **kw) -> ResNet:
    """DDF-ResNet-101 (official ``ddf_mul_resnet101`` / ``ddf_add_resnet101``): 28,146,912
    parameters (paper: 28.1M)."""
    return ResNet(LAYERS[101], num_classes, ddf=True, kernel_combine=kernel_combine, **kw)


@register_model("ddf_resnet152")
def ddf_resnet152(num_classes: int = 1000, kernel_combine: str = "mul", **kw) -> ResNet:
    """DDF-ResNet-152 (official ``ddf_mul_resnet152`` / ``ddf_add_resnet152``): 37,462,900
    parameters (not in the paper)."""
    return ResNet(LAYERS[152], num_classes, ddf=True, kernel_combine=kernel_combine, **kw)
