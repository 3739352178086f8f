"""What the ResNet-style models share: a stage of bottleneck blocks with its projection
shortcut, and the standard initialisation. The block classes themselves stay per model, for
their attribute names (timm's for the DDF-ResNets, torchvision's for the Ad-ResNets), which
the official checkpoints' state_dict keys follow."""
from __future__ import annotations

from typing import Callable, Iterable, Set, Tuple

import torch.nn as nn


def bottleneck_stage(block: Callable[..., nn.Module], inplanes: int, planes: int, blocks: int, stride: int,
                     expansion: int = 4, **kw) -> Tuple[nn.Sequential, int]:
    """``blocks`` bottlenecks ``block(inplanes, planes, stride, downsample, **kw)``; the first
    takes the stride and, where the shape changes, a 1x1 conv + BN shortcut (``downsample``).
    Returns the stage and its output channels."""
    outplanes = planes * expansion
    downsample = None
    if stride != 1 or inplanes != outplanes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False),
                                   nn.BatchNorm2d(outplanes))
    layers = [block(inplanes, planes, stride, downsample, **kw)]
    layers += [block(outplanes, planes, 1, None, **kw) for _ in range(1, blocks)]
    return nn.Sequential(*layers), outplanes


def init_resnet_weights(modules: Iterable[nn.Module], skip: Set[int] = frozenset()) -> None:
    """Kaiming-normal (fan_out, relu) convolutions and unit/zero batch norms, as timm and
    torchvision initialise ResNets; modules whose ``id`` is in ``skip`` keep their own."""
    for m in modules:
        if id(m) in skip:
            continue
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
