"""Joint (guided) upsampling networks of the PAC paper (Su et al., CVPR 2019, Sec. 4.1).

A drop-in for the official ``task_jointUpsampling/models.py`` (NVlabs/pacnet): same class names,
arguments, defaults, submodule names and ``state_dict`` keys/shapes; the PAC layers are this
package's ``PacConvTranspose2d``.

``PacJointUpsample(factor)`` upsamples a low-resolution target (depth, flow, ...) by ``factor``
(4, 8, 16, ... a power of 2) with a high-resolution guide image::

    x = branch_t(target_low)                     # convs at low resolution
    g = branch_g(guide)                          # convs at full resolution -> k_ch * log2(factor)
    for i in range(log2(factor)):                # each step doubles the resolution
        g_i = g[:, i*k_ch:(i+1)*k_ch] resized to 2^(i+1) x the target's size
        x = relu(up_convts[i](x, g_i))           # PacConvTranspose2d, stride 2, guided by g_i
    out = branch_f(x)                            # convs at full resolution

A multi-channel target is processed one channel at a time (channels folded into the batch),
so the weights do not depend on ``channels``. ``PacJointUpsampleLite(factor)`` is the paper's
small variant (factors 4, 8, 16 only). Also here: the baselines ``Bilinear``,
``JointBilateral`` (a fixed PAC joint bilateral upsampler) and ``DJIF``/``DJIFWide``
(Li et al., ECCV 2016; plain convolutions).

Parameters (independent of ``channels``; guide_channels=3): ``PacJointUpsample`` x4 183,489,
x8 221,937, x16 260,385; ``PacJointUpsampleLite`` x4 55,509, x8 56,273, x16 55,777; ``DJIF``
56,323; ``DJIFWide`` 233,475.

Where we differ from the official code:

- ``native_impl`` (keyword, default False) is passed to the PAC layers (the official layers
  had it, the models did not expose it).
- The guidance of step i is resized to exactly twice the current feature size (``size=``)
  instead of by ``scale_factor``; identical when the guide is ``factor`` x the target, as the
  official requires, and it fails clearly otherwise.
- Filter counts may be given as lists as well as tuples (the official crashed on lists);
  ``factor`` must be a power of 2 >= 2 (the official accepted 1 and built a guidance branch
  with 0 output channels).
- ``JointBilateral`` with ``channels > 1`` filters all channels at once with its identity
  weight (equivalent to filtering them one by one); the official folded the channels into the
  batch and then failed on its ``channels``-channel layer. Likewise the target branch of
  ``PacJointUpsample``/``DJIF`` takes 1 channel and their last layer gives 1: the official
  folded the channels into the batch but sized these layers by ``channels``, so it only ran
  with ``channels=1`` (where the shapes agree; ``channels`` now only sets the expected input).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..nn import PacConvTranspose2d
from .registry import register_model

# the factors `dynfilter-tvm models` lists (the paper's)
_FACTORS = ({"factor": 4}, {"factor": 8}, {"factor": 16})

__all__ = ["PacJointUpsample", "PacJointUpsampleLite", "JointBilateral", "Bilinear", "DJIF", "DJIFWide",
           "convert_to_single_channel", "recover_from_single_channel", "repeat_for_channel"]

Filters = Union[int, Sequence[int]]

# PacJointUpsampleLite's configurations per factor (the official's)
LITE_CONFIGS = {
    4: dict(n_g_filters=(12, 22), n_t_filters=(12, 16, 22), n_f_filters=(12, 16, 22), k_ch=12),
    8: dict(n_g_filters=(12, 16), n_t_filters=(12, 16, 16), n_f_filters=(12, 16, 16, 20), k_ch=12),
    16: dict(n_g_filters=(8, 16), n_t_filters=(8, 16, 16), n_f_filters=(8, 16, 16, 16, 16), k_ch=10),
}


def convert_to_single_channel(x: Tensor) -> Tuple[Tensor, int]:
    """(B, C, H, W) -> ((B*C, 1, H, W), C): channels folded into the batch."""
    bs, ch, h, w = x.shape
    return (x.reshape(bs * ch, 1, h, w) if ch != 1 else x), ch


def recover_from_single_channel(x: Tensor, ch: int) -> Tensor:
    """Inverse of ``convert_to_single_channel``: (B*C, 1, H, W) -> (B, C, H, W)."""
    if ch == 1:
        return x
    bs_ch, one, h, w = x.shape
    if one != 1 or bs_ch % ch:
        raise ValueError(f"expected (B*{ch}, 1, H, W), got {tuple(x.shape)}")
    return x.reshape(bs_ch // ch, ch, h, w)


def repeat_for_channel(x: Tensor, ch: int) -> Tensor:
    """Guidance (B, G, H, W) -> (B*ch, G, H, W), matching ``convert_to_single_channel``'s order."""
    if ch == 1:
        return x
    bs, g, h, w = x.shape
    return x.repeat(1, ch, 1, 1).reshape(bs * ch, g, h, w)


def _filters(n: Filters, count: int, what: str) -> Tuple[int, ...]:
    if isinstance(n, int):
        return (n,) * count
    n = tuple(n)
    if len(n) != count:
        raise ValueError(f"{what} needs {count} filter counts, got {len(n)}: {n}")
    return n


def _conv_branch(channels: Sequence[int], kernel_size: int, bn: bool) -> nn.Sequential:
    """conv1 [bn1] relu1 conv2 ... convN [bnN]: 'same' convolutions, no ReLU after the last."""
    layers = []
    n = len(channels) - 1
    for l in range(n):
        layers.append((f"conv{l + 1}", nn.Conv2d(channels[l], channels[l + 1], kernel_size,
                                                 padding=kernel_size // 2)))
        if bn:
            layers.append((f"bn{l + 1}", nn.BatchNorm2d(channels[l + 1])))
        if l < n - 1:
            layers.append((f"relu{l + 1}", nn.ReLU()))
    return nn.Sequential(OrderedDict(layers))


@register_model("pac_joint_upsample", input_size=256, guided=True, variants=_FACTORS,
                data_args=("channels", "guide_channels"))
class PacJointUpsample(nn.Module):
    """Guided upsampling by ``factor`` with PAC transposed convolutions (see the module docstring).

    Args:
        factor: upsampling factor, a power of 2 >= 2.
        channels: target channels (processed one at a time).
        guide_channels: guide image channels.
        n_t_layers, n_g_layers, n_f_layers: convolutions in the target, guidance and final branch.
        n_t_filters: width(s) of the target branch (one per layer).
        n_g_filters: width(s) of the guidance branch's hidden layers (n_g_layers - 1).
        n_f_filters: width(s) of the upsampling outputs and the final branch's hidden layers
            (n_f_layers + log2(factor) - 1).
        k_ch: guidance channels per upsampling step.
        f_sz_1: (odd) kernel size of the convolutions; f_sz_2: of the PAC transposed ones.
        t_bn, g_bn, u_bn, f_bn: batch norm after the convolutions of each branch / the
            upsampling layers.
        native_impl: the PAC layers' plain-PyTorch path.

    Shape:
        target_low (B, channels, h, w), guide (B, guide_channels, factor*h, factor*w)
        -> (B, channels, factor*h, factor*w).
    """

    def __init__(self, factor: int, channels: int = 1, guide_channels: int = 3,
                 n_t_layers: int = 3, n_g_layers: int = 3, n_f_layers: int = 2,
                 n_t_filters: Filters = 32, n_g_filters: Filters = 32, n_f_filters: Filters = 32,
                 k_ch: int = 16, f_sz_1: int = 5, f_sz_2: int = 5, t_bn: bool = False, g_bn: bool = False,
                 u_bn: bool = False, f_bn: bool = False, *, native_impl: bool = False):
        super().__init__()
        if n_g_layers < 1:
            raise ValueError("the guidance branch needs at least one layer")
        if n_f_layers < 1:
            raise ValueError("the final branch needs at least one layer")
        if not isinstance(factor, int) or factor < 2 or factor & (factor - 1):
            raise ValueError(f"factor must be a power of 2 >= 2, got {factor!r}")
        if f_sz_1 % 2 != 1:
            raise ValueError(f"f_sz_1 must be odd, got {f_sz_1}")
        self.channels = channels
        self.guide_channels = guide_channels
        self.factor = factor
        self.k_ch = k_ch
        num_ups = int(math.log2(factor))  # 2x upsampling steps

        # channels are folded into the batch: the target and output convolutions see one
        n_t_channels = (1,) + _filters(n_t_filters, n_t_layers, "n_t_filters")
        n_g_channels = (guide_channels,) + _filters(n_g_filters, n_g_layers - 1, "n_g_filters") + (k_ch * num_ups,)
        n_f_channels = ((n_t_channels[-1],) + _filters(n_f_filters, n_f_layers + num_ups - 1, "n_f_filters")
                        + (1,))

        self.branch_t = _conv_branch(n_t_channels, f_sz_1, t_bn)
        self.branch_g = _conv_branch(n_g_channels, f_sz_1, g_bn)
        # stride-2 PAC transposed convs that exactly double the size: padding (k-1)//2, output_padding k%2
        self.up_convts = nn.ModuleList(
            PacConvTranspose2d(n_f_channels[l], n_f_channels[l + 1], kernel_size=f_sz_2, stride=2,
                               padding=(f_sz_2 - 1) // 2, output_padding=f_sz_2 % 2, native_impl=native_impl)
            for l in range(num_ups))
        self.up_bns = nn.ModuleList(nn.BatchNorm2d(n_f_channels[l + 1]) for l in range(num_ups) if u_bn)
        self.branch_f = _conv_branch(n_f_channels[num_ups:], f_sz_1, f_bn)

    def forward(self, target_low: Tensor, guide: Tensor) -> Tensor:
        target_low, ch = convert_to_single_channel(target_low)
        x = self.branch_t(target_low)
        guide = self.branch_g(guide)
        for i, convt in enumerate(self.up_convts):
            size = (x.shape[-2] * 2, x.shape[-1] * 2)
            g = guide[:, i * self.k_ch:(i + 1) * self.k_ch]
            if tuple(g.shape[-2:]) != size:
                g = F.interpolate(g, size=size, mode="bilinear", align_corners=False)
            x = convt(x, repeat_for_channel(g, ch))
            if len(self.up_bns):
                x = self.up_bns[i](x)
            x = F.relu(x)
        return recover_from_single_channel(self.branch_f(x), ch)


@register_model("pac_joint_upsample_lite", input_size=256, guided=True, variants=_FACTORS,
                data_args=("channels", "guide_channels"))
class PacJointUpsampleLite(PacJointUpsample):
    """The paper's light ``PacJointUpsample`` (about 56K parameters); factor 4, 8 or 16."""

    def __init__(self, factor: int, channels: int = 1, guide_channels: int = 3, *, native_impl: bool = False):
        if factor not in LITE_CONFIGS:
            raise ValueError(f"factor must be 4, 8 or 16, got {factor!r}")
        super().__init__(factor, channels, guide_channels, native_impl=native_impl, **LITE_CONFIGS[factor])


class JointBilateral(nn.Module):
    """Joint bilateral upsampling as a fixed PAC transposed convolution: Gaussian kernel over
    (scale_color * guide, scale_space * y, scale_space * x), normalised, identity weight.

    Shape: target_low (B, channels, h, w), guide (B, G, factor*h, factor*w) -> (B, channels, factor*h, factor*w).
    """

    def __init__(self, factor: int, channels: int, kernel_size: int, scale_space: float, scale_color: float,
                 *, native_impl: bool = False):
        super().__init__()
        self.channels = channels
        self.scale_space = float(scale_space)
        self.scale_color = float(scale_color)
        self.convt = PacConvTranspose2d(channels, channels, kernel_size, stride=factor, dilation=1,
                                        padding=1 + (kernel_size - factor - 1) // 2,
                                        output_padding=(kernel_size - factor) % 2,
                                        normalize_kernel=True, bias=False, native_impl=native_impl)
        with torch.no_grad():
            self.convt.weight.zero_()
            for c in range(channels):
                self.convt.weight[c, c] = 1.0

    def forward(self, target_low: Tensor, guide: Tensor) -> Tensor:
        bs, _, h, w = guide.shape
        yy = torch.arange(h, dtype=guide.dtype, device=guide.device).view(1, 1, h, 1).expand(bs, 1, h, w)
        xx = torch.arange(w, dtype=guide.dtype, device=guide.device).view(1, 1, 1, w).expand(bs, 1, h, w)
        feats = torch.cat([guide * self.scale_color, yy * self.scale_space, xx * self.scale_space], dim=1)
        return self.convt(target_low, feats)


class Bilinear(nn.Module):
    """Bilinear upsampling by ``factor`` (ignores the guide); no parameters."""

    def __init__(self, factor: int, channels=None, guide_channels=None):
        super().__init__()
        self.factor = factor

    def forward(self, target_low: Tensor, guide: Tensor) -> Tensor:
        return F.interpolate(target_low, scale_factor=self.factor, mode="bilinear", align_corners=False)


class DJIF(nn.Module):
    """Deep joint image filter (Li et al., ECCV 2016): target and guide branches of three
    convolutions each on the bilinearly upsampled target and the guide, fused by three more.

    Shape: target_low (B, channels, h, w) (or already at the guide's size), guide (B, G, H, W)
    -> (B, channels, H, W).
    """

    def __init__(self, factor: int, channels: int = 1, guide_channels: int = 3,
                 fs: Sequence[int] = (9, 1, 5), ns_tg: Sequence[int] = (96, 48, 1), ns_f: Sequence[int] = (64, 32)):
        super().__init__()
        if any(f % 2 != 1 for f in fs):
            raise ValueError(f"filter sizes must be odd, got {tuple(fs)}")
        pads = [f // 2 for f in fs]
        total = sum(pads)  # the two-branch stage spreads the same total padding over its layers
        pads_tg = (total // 3, total // 3, total - 2 * (total // 3))
        self.factor = factor
        self.channels = channels
        self.guide_channels = guide_channels
        self.branch_t = self._branch(1, ns_tg, fs, pads_tg)
        self.branch_g = self._branch(guide_channels, ns_tg, fs, pads_tg)
        self.branch_joint = self._branch(ns_tg[2] * 2, tuple(ns_f) + (1,), fs, pads)

    @staticmethod
    def _branch(c_in: int, widths: Sequence[int], fs: Sequence[int], pads: Sequence[int]) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c_in, widths[0], fs[0], padding=pads[0]), nn.ReLU(),
            nn.Conv2d(widths[0], widths[1], fs[1], padding=pads[1]), nn.ReLU(),
            nn.Conv2d(widths[1], widths[2], fs[2], padding=pads[2]))

    def forward(self, target_low: Tensor, guide: Tensor) -> Tensor:
        target_low, ch = convert_to_single_channel(target_low)
        if target_low.shape[-1] < guide.shape[-1]:
            target_low = F.interpolate(target_low, scale_factor=self.factor, mode="bilinear", align_corners=False)
        t = self.branch_t(target_low)
        g = repeat_for_channel(self.branch_g(guide), ch)
        return recover_from_single_channel(self.branch_joint(torch.cat((t, g), dim=1)), ch)


class DJIFWide(DJIF):
    """``DJIF`` with wider layers (256/128 filters)."""

    def __init__(self, factor: int, channels: int = 1, guide_channels: int = 3):
        super().__init__(factor, channels, guide_channels, ns_tg=(256, 128, 1), ns_f=(256, 128))
