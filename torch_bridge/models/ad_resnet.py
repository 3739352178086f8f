"""Ad-ResNet-s / -m / -l: ResNets with dynamic bottleneck blocks (Wang et al., ICCV 2021, §4.1).

What the paper says: the networks are built on ResNet [He et al.]; ACDA is not used in the
shallow layers ("does not significantly influence the network performance"), and the deep
layers use *dynamic bottleneck blocks*, "following the bottleneck blocks" of ResNet; every
ACDA layer uses 3 sets of Fourier-Bessel bases at scales 3x3 to 7x7 (so k = 7); Table 2 gives
3.85M / 9.83M / 18.19M parameters for -s / -m / -l. The exact configuration is in the paper's
appendix A.4, which we do not have (neither does the official repository, which only holds the
layer), so the configuration below is our reconstruction.

Our configuration (torchvision's ResNet-50 layout and module names):

* stem: conv7x7/2 (3 -> 64) - BN - ReLU - maxpool 3x3/2 (``conv1``, ``bn1``, ``relu``, ``maxpool``);
* four stages ``layer1`` .. ``layer4`` of [3, 4, 6, 3] bottleneck blocks, bottleneck widths
  w, 2w, 4w, 8w and outputs 4x that (expansion 4), stride 2 on the first block of stages 2-4
  (on its middle convolution, as torchvision does), 1x1 projection ``downsample`` where the
  shape changes;
* ``layer1``, ``layer2``: standard bottleneck blocks (1x1 - 3x3 - 1x1, ``conv1``/``bn1`` ..
  ``conv3``/``bn3``);
* ``layer3``, ``layer4`` ("deep layers"): dynamic bottleneck blocks, the same with ``conv2``
  an ``ACDAConv2d(w, w, 7, stride, padding=3, num_bases=6, bias=False)`` with fixed bases
  (``bases_grad=False``: the paper's bases are "pre-fixed", and the official layer keeps them
  in a buffer);
* global average pool, ``fc`` (8w * 4 -> 1000).

The three sizes differ only in the base width w, the one free knob the paper's description
leaves (it notes that ACDA allows "reduced channel numbers"); w is the integer that comes
closest to Table 2:

    model         w   parameters   paper (Table 2)   deviation   with standard 3x3 (acda=False)
    ad_resnet_s  20    3,732,972    3.85M             -3.0 %       2,961,096
    ad_resnet_m  38    9,895,920    9.83M             +0.7 %       9,528,396
    ad_resnet_l  54   18,015,216   18.19M             -1.0 %      18,477,132

(w = 21 would give 3.99M, +3.7 %, for -s. With learnable bases, ``bases_grad=True``, every ACDA
layer adds its T*k*k = 882 basis values: +7,938 for each model.) At these widths a 7x7 ACDA
layer is not smaller than the 3x3 convolution it replaces below about 270 channels, because of
its atom generator (3x3 convs C -> 64 -> 108), so -s and -m have more parameters than their
standard-convolution twins and only -l fewer. Other layouts fit single sizes too (a depth search
finds many), but none we tried fits all three with one rule, so we keep the standard bottleneck ResNet
(ResNet-50) layout and scale the width. ``acda=False`` builds the same network with standard 3x3
convolutions in place of the ACDA layers (the "Conv" baseline of the paper's Table 7);
``dynamic_stages`` picks which stages get dynamic blocks.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn

from ..nn import ACDAConv2d
from ._resnet_parts import bottleneck_stage, init_resnet_weights
from .registry import register_model

__all__ = ["AdResNet", "Bottleneck", "ad_resnet_s", "ad_resnet_m", "ad_resnet_l", "WIDTHS"]

#: base width w of each variant (stage widths w, 2w, 4w, 8w; block outputs 4x those)
WIDTHS = {"s": 20, "m": 38, "l": 54}


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1 - kxk - 1x1, expansion 4); ``dynamic=True`` makes the middle
    convolution a 7x7 ``ACDAConv2d`` (a *dynamic bottleneck block*)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 dynamic: bool = False, kernel_size: int = 7, num_bases: int = 6, bases_grad: bool = False):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        if dynamic:
            self.conv2 = ACDAConv2d(planes, planes, kernel_size, stride=stride, padding=kernel_size // 2,
                                    num_bases=num_bases, bias=False, bases_grad=bases_grad)
        else:
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.dynamic = dynamic

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class AdResNet(nn.Module):
    """ResNet of bottleneck blocks with dynamic (ACDA) bottlenecks in ``dynamic_stages``
    (0-based stage indices; default the two deep stages). See the module docstring."""

    def __init__(self, width: int = 64, layers: Sequence[int] = (3, 4, 6, 3), num_classes: int = 1000,
                 dynamic_stages: Sequence[int] = (2, 3), acda: bool = True, kernel_size: int = 7,
                 num_bases: int = 6, bases_grad: bool = False, stem_width: int = 64,
                 zero_init_residual: bool = False):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must give the number of blocks of the 4 stages, got {layers!r}")
        self.width, self.layers_cfg = width, tuple(layers)
        self.dynamic_stages = tuple(dynamic_stages) if acda else ()
        self.conv1 = nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cfg = dict(kernel_size=kernel_size, num_bases=num_bases, bases_grad=bases_grad)
        inplanes = stem_width
        for i, blocks in enumerate(layers):
            stage, inplanes = bottleneck_stage(Bottleneck, inplanes, width << i, blocks, 1 if i == 0 else 2,
                                               dynamic=i in self.dynamic_stages, **cfg)
            self.add_module(f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * width * Bottleneck.expansion, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # torchvision's initialisation, for the modules outside the ACDA layers (which keep
        # their own, the official one).
        inside_acda = set()
        for m in self.modules():
            if isinstance(m, ACDAConv2d):
                inside_acda.update(id(s) for s in m.modules())
        init_resnet_weights(self.modules(), skip=inside_acda)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.forward_features(x)), 1))


@register_model("ad_resnet_s")
def ad_resnet_s(**kw) -> AdResNet:
    """Ad-ResNet-s: w = 20, 3,732,972 parameters (paper: 3.85M)."""
    return AdResNet(width=WIDTHS["s"], **kw)


@register_model("ad_resnet_m")
def ad_resnet_m(**kw) -> AdResNet:
    """Ad-ResNet-m: w = 38, 9,895,920 parameters (paper: 9.83M)."""
    return AdResNet(width=WIDTHS["m"], **kw)


@register_model("ad_resnet_l")
def ad_resnet_l(**kw) -> AdResNet:
    """Ad-ResNet-l: w = 54, 18,015,216 parameters (paper: 18.19M)."""
    return AdResNet(width=WIDTHS["l"], **kw)
