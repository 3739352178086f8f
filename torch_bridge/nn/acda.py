"""ACDA layer: a drop-in replacement for the official ``Conv_DCFD`` (ZeWang95/ACDA).

Adaptive Convolutions with Per-pixel Dynamic Filter Atoms, Wang et al., ICCV 2021
(https://arxiv.org/abs/2108.07895). Same arguments, defaults, ``state_dict`` keys and shapes
(``bases``, ``bases_net.*``, ``coef``, ``bias``) and the same math, with the atom convolution
run by the fused TVM op ``torch_bridge.functional.acda_atom_conv2d`` instead of unfold + einsum.

Where we differ from the official code, on purpose:
- ``bases_grad=True`` (the default) makes ``bases`` a learnable parameter, as its name says;
  the official always keeps a fixed buffer. Checkpoints load either way (same key and shape).
  ``bases_grad=False`` gives the official behaviour.
- ``dilation`` works (the official ignores it). ``groups != 1`` and ``mode='mode0'`` raise:
  the official accepts and ignores them. ``bases_drop=p`` applies the official ``Bases_Drop``
  (created there but never called): in training, each (pixel, basis) coefficient is dropped
  with probability p for all atoms of the pixel, the rest scaled by 1/(1-p).
- ``inter_kernel_size`` is recorded but, as in the official, the generator's convolutions are
  3x3 (checkpoints depend on it).
- The output size is ceil(H/stride) for any H (the official fails on sizes not divisible by
  the stride); ``padding`` must be ``dilation*(kernel_size-1)//2``, the only value for which
  the atom map and the convolution agree in size.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from dynfilter_tvm.bases import multiscale_bases

from .._checks import check_input, check_nonnegative_int, check_positive_int
from ..functional import acda_atom_conv2d

__all__ = ["ACDAConv2d"]

AtomConv = Callable[[Tensor, Tensor, Tensor, int, int, int], Tensor]


def _check_args(in_channels, out_channels, kernel_size, stride, padding, num_bases, dilation,
                groups, mode, bases_drop) -> None:
    for name, val in (("in_channels", in_channels), ("out_channels", out_channels),
                      ("stride", stride), ("num_bases", num_bases), ("dilation", dilation)):
        check_positive_int(name, val)
    check_nonnegative_int("padding", padding)
    if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd integer >= 3 (the bases have scales "
                         f"3x3 .. kxk), got {kernel_size!r}")
    if padding != dilation * (kernel_size - 1) // 2:
        raise ValueError(
            f"padding must be dilation*(kernel_size-1)//2 = {dilation * (kernel_size - 1) // 2} so "
            f"that the convolution's output matches the atom map (ceil(H/stride)), got {padding}")
    if groups != 1:
        raise ValueError(f"groups={groups!r} is not supported: the official Conv_DCFD accepts it "
                         "but computes groups=1; pass groups=1")
    if mode != "mode1":
        raise ValueError(f"mode={mode!r} is not supported: the official Conv_DCFD computes "
                         "'mode1' whatever the mode; pass mode='mode1'")
    if bases_drop is not None and not (isinstance(bases_drop, (int, float)) and 0 <= bases_drop < 1):
        raise ValueError(f"bases_drop must be None or a probability in [0, 1), got {bases_drop!r}")


class ACDAConv2d(nn.Module):
    r"""Adaptive convolution with per-pixel dynamic filter atoms (``Conv_DCFD``).

    A small network predicts, at every output pixel, coefficients ``alpha`` of M atoms over
    T = (k//2) * M multi-scale Fourier-Bessel bases; each input channel is convolved with its
    pixel's atoms (M output channels per input channel), and a 1x1 convolution mixes the
    C_in * M results into C_out channels::

        alpha = bases_net(x)                          # (N, M*T, Ho, Wo)
        z     = acda_atom_conv2d(x, alpha, bases)     # (N, C_in*M, Ho, Wo)
        out   = conv2d(z, coef, bias)                 # (N, C_out, Ho, Wo)

    ``bases_net`` = Conv3x3(C_in -> inter, stride) -> BN -> Tanh -> Conv3x3(inter -> M*T) ->
    BN -> Tanh with inter = max(64, M*T // 2).

    Args:
        in_channels, out_channels: C_in, C_out.
        kernel_size: odd k >= 3.
        inter_kernel_size: recorded only (the official generator is 3x3 whatever its value).
        stride, dilation: of the atom convolution (the generator has the same stride).
        padding: must be ``dilation * (kernel_size - 1) // 2``.
        num_bases: M, atoms per pixel, and bases kept per scale (<= 6).
        bias: learn ``bias`` (C_out).
        bases_grad: learn the bases (``bases`` a parameter, else a buffer).
        groups, mode: only the official's effective values, 1 and 'mode1'.
        bases_drop: None, or the probability of dropping a basis coefficient in training.
        native_impl: run the plain-PyTorch reference instead of the compiled kernel.

    Shape:
        input (N, C_in, H, W) -> output (N, C_out, ceil(H/stride), ceil(W/stride)).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, inter_kernel_size: int = 5,
                 stride: int = 1, padding: int = 0, num_bases: int = 6, bias: bool = True,
                 bases_grad: bool = True, dilation: int = 1, groups: int = 1, mode: str = "mode1",
                 bases_drop: Optional[float] = None, native_impl: bool = False):
        super().__init__()
        _check_args(in_channels, out_channels, kernel_size, stride, padding, num_bases, dilation,
                    groups, mode, bases_drop)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.inter_kernel_size = kernel_size, inter_kernel_size
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.num_bases, self.bases_grad, self.groups = num_bases, bases_grad, groups
        self.mode, self.bases_drop = mode, bases_drop
        self.native_impl = native_impl

        bases = torch.from_numpy(multiscale_bases(kernel_size, num_bases)).float()
        bases = bases.reshape(len(bases), kernel_size * kernel_size)  # the official layout
        if bases_grad:
            self.bases = nn.Parameter(bases)
        else:
            self.register_buffer("bases", bases)
        self.tem_size = len(bases)
        atoms_out = num_bases * self.tem_size
        inter = max(64, atoms_out // 2)
        self.bases_net = nn.Sequential(
            nn.Conv2d(in_channels, inter, kernel_size=3, padding=1, stride=stride),
            nn.BatchNorm2d(inter),
            nn.Tanh(),
            nn.Conv2d(inter, atoms_out, kernel_size=3, padding=1),
            nn.BatchNorm2d(atoms_out),
            nn.Tanh(),
        )
        self.coef = nn.Parameter(torch.empty(out_channels, in_channels * num_bases, 1, 1))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.coef, mode="fan_out", nonlinearity="relu")
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def coefficients(self, input: Tensor) -> Tensor:
        """The per-pixel basis coefficients alpha, (N, M*T, Ho, Wo), bases dropout applied."""
        if input.device.type == "cpu":
            # oneDNN runs these 3x3 convolutions up to 1.8x faster on channels-last tensors
            input = input.contiguous(memory_format=torch.channels_last)
        alpha = self.bases_net(input)
        if self.bases_drop and self.training:
            N, _, Ho, Wo = alpha.shape
            keep = torch.full((N, 1, self.tem_size, Ho, Wo), 1 - self.bases_drop,
                              dtype=alpha.dtype, device=alpha.device)
            alpha = (alpha.view(N, self.num_bases, self.tem_size, Ho, Wo)
                     * torch.bernoulli(keep) / (1 - self.bases_drop)).view(alpha.shape)
        return alpha

    def forward_with(self, atom_conv: AtomConv, input: Tensor) -> Tensor:
        """The layer with another implementation of the atom convolution (e.g. the unfold
        reference ``torch_bridge.reference.acda_atom_conv2d_reference``)."""
        check_input("input", input, self.in_channels)
        k = self.kernel_size
        bases = self.bases.view(self.tem_size, k, k).to(input.dtype)
        z = atom_conv(input, self.coefficients(input), bases, self.stride, self.padding, self.dilation)
        return F.conv2d(z, self.coef, self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return self.forward_with(functools.partial(acda_atom_conv2d, native_impl=self.native_impl), input)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"num_bases={self.num_bases}, bases_grad={self.bases_grad}, bases_drop={self.bases_drop}")
