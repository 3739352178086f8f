"""DDF layers: drop-in replacements for the official ``DDFPack`` / ``DDFUpPack`` (theFoxofSky/ddfnet).

Decoupled Dynamic Filter Networks, Zhou et al., CVPR 2021 (https://arxiv.org/abs/2104.14107).
The modules reproduce the official math, parameter initialisation order and ``state_dict`` layout,
so official checkpoints load with ``strict=True``; the filtering itself runs the compiled
``torch_bridge.functional.ddf`` op (CPU and CUDA, any float dtype) instead of the CUDA-only
extension.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
from torch import Tensor

from .._checks import check_input
from ..ops.ddf import check_combine, check_kernel_size, check_positive_int
from ..functional import ddf

__all__ = ["FilterNorm", "build_spatial_branch", "build_channel_branch", "DDFPack", "DDFUpPack"]

_FILTER_TYPES = ("spatial", "channel")


def _check_kernel_size(k, native_impl: bool) -> None:
    # k = 1 is rejected too: FilterNorm divides by the unbiased std over k*k taps, NaN for one tap.
    check_kernel_size(k, smallest=3, compiled=not native_impl)


def _check_head(in_channels: int, head) -> None:
    check_positive_int("head", head)
    if in_channels % head:
        raise ValueError(f"head ({head}) must divide in_channels ({in_channels})")


def _std(x: Tensor) -> Tensor:
    """The unbiased std over dim 2; an empty batch gives an empty result without torch's
    zero-degrees-of-freedom warning."""
    return x.sum(2, keepdim=True) if x.numel() == 0 else x.std(dim=2, keepdim=True)


class FilterNorm(nn.Module):
    r"""Standardises each group of ``kernel_size**2`` filter taps, then rescales (official DDF).

    Every filter (one per group and pixel for ``'spatial'``, one per group for ``'channel'``) is
    shifted to zero mean and divided by its unbiased standard deviation (+1e-10) over its k*k
    taps, then multiplied by ``std`` and shifted by ``mean``. ``std`` is the constant
    ``calculate_gain(nonlinearity) / kernel_size`` or, with ``running_std``, a learned vector of
    ``in_channels * kernel_size**2`` entries initialised to ``randn * that constant``; with
    ``running_mean`` a learned vector ``mean`` (``randn`` init) is added.

    Args:
        in_channels: number of filter groups G (heads for 'spatial', channels for 'channel').
        kernel_size: k; each filter has k*k taps (k >= 2).
        filter_type: ``'spatial'`` or ``'channel'``.
        nonlinearity: name passed to ``torch.nn.init.calculate_gain`` for the scale.
        running_std, running_mean: learn the scale / the offset (parameters ``std`` / ``mean``).

    Shape:
        - 'spatial': input and output (B, G*k*k, H, W).
        - 'channel': input (B, G*k*k, ...) with one element per tap, e.g. (B, G*k*k, 1, 1);
          output (B, G*k*k).
    """

    def __init__(self, in_channels: int, kernel_size: int, filter_type: str,
                 nonlinearity: str = "linear", running_std: bool = False, running_mean: bool = False):
        super().__init__()
        if filter_type not in _FILTER_TYPES:
            raise ValueError(f"filter_type must be one of {_FILTER_TYPES}, got {filter_type!r}")
        check_positive_int("in_channels", in_channels)
        check_positive_int("kernel_size", kernel_size)
        if kernel_size < 2:
            raise ValueError("kernel_size must be >= 2: the unbiased std of a single tap is NaN")
        self.in_channels = in_channels
        self.kernel_size = kernel_size
        self.filter_type = filter_type
        # The official names these attributes ``runing_std``/``runing_mean``; they are plain
        # attributes (not in the state_dict), so the spelling does not affect checkpoints.
        self.running_std = running_std
        self.running_mean = running_mean
        std = nn.init.calculate_gain(nonlinearity) / kernel_size
        # Parameter creation order (std, then mean) matches the official, so a seeded RNG
        # gives the same initial values.
        if running_std:
            self.std = nn.Parameter(torch.randn(in_channels * kernel_size ** 2) * std)
        else:
            self.std = std
        if running_mean:
            self.mean = nn.Parameter(torch.randn(in_channels * kernel_size ** 2))

    def forward(self, x: Tensor) -> Tensor:
        # explicit k*k (not -1): an empty batch has no size to infer
        b, g, taps = x.shape[0], self.in_channels, self.kernel_size ** 2
        if self.filter_type == "spatial":
            _, n, h, w = x.shape
            x = x.reshape(b, g, taps, h, w)
            x = x - x.mean(dim=2, keepdim=True)
            x = x / (_std(x) + 1e-10)
            x = x.reshape(b, n, h, w)
            x = x * (self.std[None, :, None, None] if self.running_std else self.std)
            if self.running_mean:
                x = x + self.mean[None, :, None, None]
        else:
            x = x.reshape(b, g, taps)
            x = x - x.mean(dim=2, keepdim=True)
            x = x / (_std(x) + 1e-10)
            x = x.reshape(b, g * taps)
            x = x * (self.std[None, :] if self.running_std else self.std)
            if self.running_mean:
                x = x + self.mean[None, :]
        return x

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, kernel_size={self.kernel_size}, filter_type={self.filter_type!r}, "
                f"running_std={self.running_std}, running_mean={self.running_mean}")


def build_spatial_branch(in_channels: int, kernel_size: int, head: int = 1,
                         nonlinearity: str = "relu", stride: int = 1) -> nn.Sequential:
    """Spatial-filter branch: 1x1 conv (with the layer's stride) to ``head*k*k`` channels, then
    spatial :class:`FilterNorm`. (B, in_channels, H, W) -> (B, head*k*k, ceil(H/s), ceil(W/s)).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, head * kernel_size ** 2, 1, stride=stride),
        FilterNorm(head, kernel_size, "spatial", nonlinearity))


def build_channel_branch(in_channels: int, kernel_size: int, nonlinearity: str = "relu",
                         se_ratio: float = 0.2) -> nn.Sequential:
    """Channel-filter branch, squeeze-and-excitation style: global average pool, 1x1 conv to
    ``int(in_channels*se_ratio)``, ReLU, 1x1 conv to ``in_channels*k*k``, channel
    :class:`FilterNorm` with a learned scale. (B, in_channels, H, W) -> (B, in_channels*k*k).
    """
    if not se_ratio > 0:
        raise ValueError(f"se_ratio must be > 0, got {se_ratio!r}")
    mid_channels = int(in_channels * se_ratio)
    if mid_channels < 1:
        raise ValueError(f"se_ratio too small: int(in_channels * se_ratio) = "
                         f"int({in_channels} * {se_ratio}) = 0 hidden channels")
    return nn.Sequential(
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Conv2d(in_channels, mid_channels, 1),
        nn.ReLU(True),
        nn.Conv2d(mid_channels, in_channels * kernel_size ** 2, 1),
        FilterNorm(in_channels, kernel_size, "channel", nonlinearity, running_std=True))


class DDFPack(nn.Module):
    r"""Decoupled dynamic filter layer (the official ``DDFPack``), a drop-in for a k x k
    depthwise convolution whose filters are predicted from the input.

    A spatial branch predicts one k*k filter per output pixel and head, a channel branch one
    k*k filter per channel; they are combined (``'mul'`` or ``'add'``) and applied per channel
    with zero padding ``(k-1)//2*dilation``::

        out = ddf(x, channel_branch(x).reshape(B, C, k, k), spatial_branch(x),
                  kernel_size, dilation, stride, kernel_combine)

    Heads are handled natively by the op (channel c uses head ``c // (C // head)``), the same
    math as the official ``(B*head, C/head, ...)`` reshape.

    Args:
        in_channels: C.
        kernel_size: odd k >= 3.
        stride, dilation: of the filtering window; the 1x1 spatial-branch conv has the stride too.
        head: number of spatial filters per pixel; must divide ``in_channels``.
        se_ratio: hidden width of the channel branch, ``int(in_channels * se_ratio)`` (> 0).
        nonlinearity: gain used by :class:`FilterNorm` ('relu' as in the official default).
        kernel_combine: 'mul' (the paper) or 'add'.
        native_impl: run the plain-PyTorch reference instead of the compiled kernels.

    Shape:
        - Input: (B, C, H, W)
        - Output: (B, C, ceil(H/stride), ceil(W/stride)). The official asserts H and W divide
          by the stride; here any size works (output size of ``nn.Conv2d(k, stride,
          padding=(k-1)//2*dilation, dilation)``, e.g. 9x11 -> 5x6 with stride 2).

    ``state_dict`` layout (identical to the official): ``spatial_branch.0.{weight,bias}``
    (head*k*k, C, 1, 1); ``channel_branch.1.{weight,bias}`` (mid, C, 1, 1);
    ``channel_branch.3.{weight,bias}`` (C*k*k, mid, 1, 1); ``channel_branch.4.std`` (C*k*k,).
    """

    def __init__(self, in_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1,
                 head: int = 1, se_ratio: float = 0.2, nonlinearity: str = "relu",
                 kernel_combine: str = "mul", native_impl: bool = False):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        _check_kernel_size(kernel_size, native_impl)
        check_positive_int("stride", stride)
        check_positive_int("dilation", dilation)
        _check_head(in_channels, head)
        check_combine(kernel_combine)
        self.in_channels = in_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation = dilation
        self.head = head
        self.kernel_combine = kernel_combine
        self.native_impl = native_impl
        # Construction order (spatial, then channel) matches the official: same init under a seed.
        self.spatial_branch = build_spatial_branch(in_channels, kernel_size, head, nonlinearity, stride)
        self.channel_branch = build_channel_branch(in_channels, kernel_size, nonlinearity, se_ratio)

    def forward(self, x: Tensor) -> Tensor:
        check_input("x", x, self.in_channels)
        b, c = x.shape[:2]
        k = self.kernel_size
        channel_filter = self.channel_branch(x).reshape(b, c, k, k)
        spatial_filter = self.spatial_branch(x)
        return ddf(x, channel_filter, spatial_filter, k, self.dilation, self.stride, self.kernel_combine,
                   self.native_impl)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"dilation={self.dilation}, head={self.head}, kernel_combine={self.kernel_combine!r}")


class DDFUpPack(nn.Module):
    r"""DDF upsampling layer (the official ``DDFUpPack``): ``scale_factor**2`` DDF filterings of
    the input, one per sub-pixel position, interleaved by ``pixel_shuffle``.

    Branch i (``i = a*scale_factor + b``) produces the output pixels at offset (a, b) of each
    ``scale_factor x scale_factor`` block. Its spatial filters come from ``joint_x`` (the input
    itself by default, e.g. a guidance feature map otherwise): without ``joint_channels`` they pass
    a depthwise ``dw_kernel_size`` conv first; its channel filters always come from ``x``.

    Args:
        in_channels: C.
        kernel_size: odd k >= 3.
        scale_factor: upsampling factor S.
        dilation: of the filtering window.
        head: number of spatial filters per pixel; must divide ``in_channels``.
        se_ratio: hidden width of the channel branches, ``int(in_channels * se_ratio)`` (> 0).
        nonlinearity: gain used by :class:`FilterNorm` ('linear' as in the official default).
        dw_kernel_size: odd size of the depthwise conv of the spatial branches (raised to 3 if
            smaller, as in the official); used only when ``joint_channels < 1``.
        joint_channels: if >= 1, the spatial branches are a plain 1x1 conv on a ``joint_x`` with
            this many channels (no depthwise conv).
        kernel_combine: 'mul' (the paper) or 'add'.
        native_impl: run the plain-PyTorch reference instead of the compiled kernels.

    Shape:
        - Input: x (B, C, H, W); joint_x (B, joint_channels or C, H, W), defaults to x.
        - Output: (B, C, S*H, S*W)

    ``state_dict`` layout (identical to the official), for i in range(S**2): without
    ``joint_channels`` ``spatial_branch.{i}.0.{weight,bias}`` (C, 1, dw, dw) depthwise and
    ``spatial_branch.{i}.1.0.{weight,bias}`` (head*k*k, C, 1, 1); with it
    ``spatial_branch.{i}.0.{weight,bias}`` (head*k*k, joint_channels, 1, 1); and
    ``channel_branch.{i}.{1,3}.{weight,bias}``, ``channel_branch.{i}.4.std`` as in
    :class:`DDFPack`.

    Differences from the official code (bug fixes):
        1. The official passed ``head`` into the op's ``kernel_combine`` slot (and the combine
           mode into its ``version`` slot), so ``kernel_combine`` was not honoured; here the op
           gets ``kernel_combine``.
        2. The official padded the depthwise conv with ``kernel_size//2`` instead of
           ``dw_kernel_size//2``, giving the wrong spatial size whenever they differ; here the
           padding is ``dw_kernel_size//2``.
        3. With ``joint_channels >= 1`` the official built the spatial 1x1 conv on
           ``in_channels`` although it is applied to ``joint_x``; here it takes
           ``joint_channels`` inputs (same state_dict shapes when joint_channels == in_channels).
    """

    def __init__(self, in_channels: int, kernel_size: int = 3, scale_factor: int = 2,
                 dilation: int = 1, head: int = 1, se_ratio: float = 0.2,
                 nonlinearity: str = "linear", dw_kernel_size: int = 3, joint_channels: int = -1,
                 kernel_combine: str = "mul", native_impl: bool = False):
        super().__init__()
        check_positive_int("in_channels", in_channels)
        _check_kernel_size(kernel_size, native_impl)
        check_positive_int("scale_factor", scale_factor)
        check_positive_int("dilation", dilation)
        _check_head(in_channels, head)
        check_combine(kernel_combine)
        use_dw = joint_channels < 1
        if use_dw:
            if not isinstance(dw_kernel_size, int) or isinstance(dw_kernel_size, bool):
                raise ValueError(f"dw_kernel_size must be an integer, got {dw_kernel_size!r}")
            dw_kernel_size = max(dw_kernel_size, 3)
            # An even depthwise kernel with padding dw//2 would grow the map by one pixel.
            if dw_kernel_size % 2 == 0:
                raise ValueError(f"dw_kernel_size must be odd, got {dw_kernel_size}")
        else:
            check_positive_int("joint_channels", joint_channels)
        self.in_channels = in_channels
        self.kernel_size = kernel_size
        self.scale_factor = scale_factor
        self.dilation = dilation
        self.head = head
        self.kernel_combine = kernel_combine
        self.native_impl = native_impl
        self.dw_kernel_size = dw_kernel_size if use_dw else None
        self.joint_channels = joint_channels if not use_dw else None

        self.spatial_branch = nn.ModuleList()
        self.channel_branch = nn.ModuleList()
        # Interleaved construction (spatial i, channel i) matches the official init order.
        for _ in range(scale_factor ** 2):
            if use_dw:
                self.spatial_branch.append(nn.Sequential(
                    nn.Conv2d(in_channels, in_channels, dw_kernel_size, padding=dw_kernel_size // 2,
                              groups=in_channels),
                    build_spatial_branch(in_channels, kernel_size, head, nonlinearity, 1)))
            else:
                self.spatial_branch.append(
                    build_spatial_branch(joint_channels, kernel_size, head, nonlinearity, 1))
            self.channel_branch.append(
                build_channel_branch(in_channels, kernel_size, nonlinearity, se_ratio))

    def forward(self, x: Tensor, joint_x: Optional[Tensor] = None) -> Tensor:
        check_input("x", x, self.in_channels)
        joint_c = self.joint_channels or self.in_channels
        if joint_x is None:
            if joint_c != x.shape[1]:
                raise ValueError(f"joint_x (with {joint_c} channels) is required: "
                                 f"x has {x.shape[1]} channels")
            joint_x = x
        elif not isinstance(joint_x, Tensor) or joint_x.dim() != 4 \
                or (joint_x.shape[0], joint_x.shape[1]) != (x.shape[0], joint_c) or joint_x.shape[-2:] != x.shape[-2:]:
            shape = tuple(joint_x.shape) if isinstance(joint_x, Tensor) else type(joint_x).__name__
            raise ValueError(f"joint_x must have shape ({x.shape[0]}, {joint_c}, {x.shape[2]}, {x.shape[3]}) "
                             f"(x's batch and spatial size), got {shape}")
        b, c, h, w = x.shape
        k = self.kernel_size
        outs = []
        for s_b, c_b in zip(self.spatial_branch, self.channel_branch):
            channel_filter = c_b(x).reshape(b, c, k, k)
            spatial_filter = s_b(joint_x)
            outs.append(ddf(x, channel_filter, spatial_filter, k, self.dilation, 1, self.kernel_combine,
                            self.native_impl))
        # Branch i = a*S + b_ gives sub-pixel (a, b_) of each S x S block: pixel_shuffle of the
        # stacked channels c*S*S + i, by hand since pixel_shuffle's backward fails on an empty batch.
        S = self.scale_factor
        out = torch.stack(outs, dim=2).view(b, c, S, S, h, w)
        return out.permute(0, 1, 4, 2, 5, 3).reshape(b, c, h * S, w * S)

    def extra_repr(self) -> str:
        extra = (f"joint_channels={self.joint_channels}" if self.joint_channels is not None
                 else f"dw_kernel_size={self.dw_kernel_size}")
        return (f"{self.in_channels}, kernel_size={self.kernel_size}, scale_factor={self.scale_factor}, "
                f"dilation={self.dilation}, head={self.head}, {extra}, "
                f"kernel_combine={self.kernel_combine!r}")
