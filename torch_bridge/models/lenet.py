"""LeNet for CIFAR (32x32x3) and its ACDA version (Wang et al., ICCV 2021, Table 1).

``LeNet``: the classic CIFAR LeNet -- conv5x5 3->6, ReLU, maxpool 2, conv5x5 6->16, ReLU,
maxpool 2, fc 400->120->84->classes (feature maps 32 -> 28 -> 14 -> 10 -> 5).

``LeNetACDA``: the paper replaces "only the two convolutional layers" by ACDA layers. Our
``ACDAConv2d`` (like the official ``Conv_DCFD``) only computes 'same' convolutions (padding
k//2), whereas LeNet's are 'valid' (no padding). We keep everything else identical, the
classifier included, by cropping each ACDA output to the 'valid' region: a 5x5 'same'
convolution cropped by 2 pixels on every side covers exactly the positions of the 'valid' one,
so the feature maps are again 32 -> 28 -> 14 -> 10 -> 5 and fc1 still takes 16*5*5 = 400
inputs. (The atom generator's own 3x3 convolutions still see the zero padding near the border,
so the cropped output is not bit-identical to a hypothetical 'valid' ACDA -- there is none.)
``crop=False`` keeps the 'same' maps instead (32 -> 16 -> 8, fc1 takes 16*8*8 = 1024).

Parameters (10 classes): LeNet 62,006; LeNetACDA 148,784 (``crop=False``: 223,664) with the
default fixed bases (``bases_grad=False``, the paper's "pre-fixed" bases). At these widths each
ACDA layer's atom generator (3x3 convs C_in -> 64 -> M*T = 72, M = 6 atoms over T = 12 bases
for k = 5) dominates: conv1 43,722 and conv2 45,928 parameters against 456 and 2,416.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nn import ACDAConv2d
from .registry import register_model

__all__ = ["LeNet", "LeNetACDA"]


@register_model("lenet", input_size=32, fixed_size=True)
class LeNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return F.max_pool2d(F.relu(self.conv2(x)), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x), 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


@register_model("lenet_acda", input_size=32, fixed_size=True)
class LeNetACDA(LeNet):
    """LeNet with both convolutions replaced by 5x5 ``ACDAConv2d`` (see the module docstring)."""

    def __init__(self, num_classes: int = 10, num_bases: int = 6, crop: bool = True, bases_grad: bool = False):
        super().__init__(num_classes)
        self.crop = crop
        self.conv1 = ACDAConv2d(3, 6, 5, padding=2, num_bases=num_bases, bases_grad=bases_grad)
        self.conv2 = ACDAConv2d(6, 16, 5, padding=2, num_bases=num_bases, bases_grad=bases_grad)
        if not crop:
            self.fc1 = nn.Linear(16 * 8 * 8, 120)

    def _valid(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., 2:-2, 2:-2] if self.crop else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self._valid(self.conv1(x))), 2)
        return F.max_pool2d(F.relu(self._valid(self.conv2(x))), 2)
