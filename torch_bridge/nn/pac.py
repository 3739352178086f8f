"""PAC layers: drop-ins for ``PacConv2d``, ``PacConvTranspose2d`` and ``PacPool2d`` of NVlabs/pacnet.

Pixel-Adaptive Convolutional Neural Networks, Su et al., CVPR 2019
(https://arxiv.org/abs/1904.05373). A PAC layer scales every tap of a convolution (or pooling)
window by a kernel computed from a guidance image, e.g. ``exp(-|f_j - f_i|^2 / 2)`` (see
``torch_bridge.functional.packernel2d``). Same constructor arguments and defaults, attributes,
``state_dict`` keys and shapes (``weight``, ``bias``, ``inv_alpha``, ``inv_lambda``,
``smooth_kernel``; parameters or buffers as in the official code), fillers and results as the
official ``pac.py``. ``native_impl=True`` runs the plain-PyTorch reference
(``torch_bridge.reference.pac``), the default the ops of ``torch_bridge.functional``.

Where we differ from the official code, on purpose:
- the bugs of its functions fixed in ``torch_bridge.reference.pac`` (bool ``output_mask``,
  masks of any dtype, per-channel transposed ``shared_filters``, smoothing with dilation,
  empty windows without NaN);
- the ``pool``/``crf_pool`` fillers zero the bias (the official leaves it uninitialized);
- ``PacPool2d`` has a repr (the official's ``extra_repr`` reads a ``bias`` it does not have);
- invalid arguments raise ``ValueError`` (the official asserts, or fails later): even kernel
  or smoothing sizes, unknown kernel_type / smooth_kernel_type / filler, ``shared_filters``
  changing the channel count, fillers that do not fit the layer.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from .. import functional as _functional
from ..reference import pac as _reference
from ..reference.pac import IntPair, pair_arg, parse_kernel_type, parse_smooth_kernel_type

__all__ = ["PacConv2d", "PacConvTranspose2d", "PacPool2d"]

Pair = Tuple[int, int]
_FILLERS = ("uniform", "linear", "crf", "crf_perturbed", "pool", "crf_pool")
_CRF_PERTURB_RANGE = 1e-3  # the official crf_perturbed noise


def _gaussian_2d(width: int) -> Tensor:
    """Truncated 2-D Gaussian, sigma = width / 4, summing to 1 (the official CRF filler)."""
    sigma = width / 4.0
    r = torch.arange(-(width // 2), width // 2 + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * r * r / (sigma * sigma))
    g2 = g.view(-1, 1) * g
    return g2 / g2.sum()


def _linear_filler_1d(k: int, s: int, normalize_kernel: bool) -> Tensor:
    """Bilinear up-sampling taps for stride s inside k taps (the official 'linear' filler)."""
    p = (k - (2 * s - 1)) // 2
    w = torch.tensor([0.0] * p + list(range(1, s)) + list(range(s, 0, -1)) + [0.0] * p, dtype=torch.float64) / s
    if normalize_kernel:  # undo the normalization by the number of input pixels in the window
        w = w * torch.tensor([(k - j - 1) // s + j // s + 1.0 for j in range(k)], dtype=torch.float64)
    return w


class _PacConvNd(nn.Module):
    """The parameters, fillers and checks shared by the PAC layers (the official base class)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Pair, stride: Pair, padding: Pair,
                 dilation: Pair, transposed: bool, output_padding: Pair, bias: bool, pool_only: bool,
                 kernel_type: str, smooth_kernel_type: str, channel_wise: bool, normalize_kernel: bool,
                 shared_filters: bool, filler: Optional[str]):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair_arg("kernel_size", kernel_size, 1)
        self.stride, self.padding = pair_arg("stride", stride, 1), pair_arg("padding", padding, 0)
        self.dilation = pair_arg("dilation", dilation, 1)
        self.transposed, self.output_padding = transposed, pair_arg("output_padding", output_padding, 0)
        self.pool_only, self.kernel_type, self.smooth_kernel_type = pool_only, kernel_type, smooth_kernel_type
        self.channel_wise, self.normalize_kernel = channel_wise, normalize_kernel
        self.shared_filters, self.filler = shared_filters, filler
        self._check_args()
        if not pool_only:
            self._make_weight(bias)
        self._make_inv_params()
        self._make_smooth_kernel()
        self.reset_parameters()

    # -- construction ---------------------------------------------------------------------

    def _check_args(self) -> None:
        if any(k % 2 != 1 for k in self.kernel_size):
            raise ValueError(f"kernel_size only accepts odd numbers, got {self.kernel_size}")
        parse_smooth_kernel_type(self.smooth_kernel_type)
        parse_kernel_type(self.kernel_type)
        if self.pool_only:
            return
        for name in ("in_channels", "out_channels"):
            val = getattr(self, name)
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{name} must be a positive integer, got {val!r}")
        if self.shared_filters and self.in_channels != self.out_channels:
            raise ValueError("shared_filters needs in_channels == out_channels, got "
                             f"{self.in_channels} and {self.out_channels}")
        self._check_filler()

    def _check_filler(self) -> None:
        if self.filler not in _FILLERS:
            raise ValueError(f"Initialization method ({self.filler}) not supported: use one of {_FILLERS}")
        if self.filler in ("pool", "crf_pool") and not self.shared_filters:
            raise ValueError(f"filler={self.filler!r} needs shared_filters=True")
        if self.filler == "linear":
            if not self.transposed or self.in_channels != self.out_channels:
                raise ValueError("filler='linear' (bilinear up-sampling) needs a transposed layer with "
                                 "in_channels == out_channels")
            if any(k < 2 * s - 1 for k, s in zip(self.kernel_size, self.stride)):
                raise ValueError(f"filler='linear' needs kernel_size >= 2*stride-1, got kernel_size="
                                 f"{self.kernel_size}, stride={self.stride}")
        if self.filler in ("crf", "crf_perturbed") and (
                self.kernel_size[0] != self.kernel_size[1] or self.in_channels != self.out_channels):
            raise ValueError(f"filler={self.filler!r} needs a square kernel and in_channels == out_channels")

    def _make_weight(self, bias: bool) -> None:
        k = self.kernel_size
        if self.filler in ("pool", "crf_pool"):  # a fixed window (DenseCRF's, without the centre)
            weight = torch.ones(1, 1, *k)
            if self.filler == "crf_pool":
                weight[0, 0, k[0] // 2, k[1] // 2] = 0
            self.register_buffer("weight", weight)
        elif self.shared_filters:
            self.weight = nn.Parameter(torch.empty(1, 1, *k))
        elif self.transposed:
            self.weight = nn.Parameter(torch.empty(self.in_channels, self.out_channels, *k))
        else:
            self.weight = nn.Parameter(torch.empty(self.out_channels, self.in_channels, *k))
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_channels))
        else:
            self.register_parameter("bias", None)

    def _make_inv_params(self) -> None:
        alpha, lam, _, fixed = parse_kernel_type(self.kernel_type)
        if alpha is None:
            return
        self.inv_alpha_init, self.inv_lambda_init = alpha, lam
        if self.channel_wise and not fixed:
            if self.out_channels <= 0:
                raise ValueError(f"out_channels needed for channel_wise {self.kernel_type}")
            shape: Tuple[int, ...] = (self.out_channels,)
        else:
            shape = ()
        for name, val in (("inv_alpha", alpha), ("inv_lambda", lam)):
            t = torch.full(shape, float(val))
            if fixed:
                self.register_buffer(name, t)
            else:
                self.register_parameter(name, nn.Parameter(t))

    def _make_smooth_kernel(self) -> None:
        size = parse_smooth_kernel_type(self.smooth_kernel_type)
        if size is None:
            return
        if self.smooth_kernel_type.startswith("full_"):  # learned, starts as a box filter
            self.smooth_kernel = nn.Parameter(torch.empty(1, 1, size, size))
            return
        if self.smooth_kernel_type == "gaussian":
            taps = torch.tensor([0.25, 0.5, 0.25])
        else:
            taps = torch.full((size,), 1.0 / size)
        self.register_buffer("smooth_kernel", (taps.view(-1, 1) * taps).view(1, 1, size, size))

    # -- initialization -------------------------------------------------------------------

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if not self.pool_only:
            if self.filler == "uniform":
                self._fill_uniform()
            elif self.filler == "linear":
                self._fill_linear()
            elif self.filler in ("crf", "crf_perturbed"):
                self._fill_crf()
            if self.bias is not None and self.filler != "uniform":
                self.bias.zero_()
        if isinstance(getattr(self, "inv_alpha", None), nn.Parameter):
            self.inv_alpha.fill_(self.inv_alpha_init)
            self.inv_lambda.fill_(self.inv_lambda_init)
        if isinstance(getattr(self, "smooth_kernel", None), nn.Parameter):
            self.smooth_kernel.fill_(1.0 / self.smooth_kernel.numel())

    def _fill_uniform(self) -> None:
        stdv = 1.0 / math.sqrt(self.in_channels * math.prod(self.kernel_size))
        if self.shared_filters:
            stdv *= self.in_channels  # the official scale for the (1, 1, k, k) filter
        self.weight.uniform_(-stdv, stdv)
        if self.bias is not None:
            self.bias.uniform_(-stdv, stdv)

    def _fill_linear(self) -> None:
        w = torch.ones(1, dtype=torch.float64)
        for i, (k, s) in enumerate(zip(self.kernel_size, self.stride)):
            taps = _linear_filler_1d(k, s, self.normalize_kernel)
            w = w.unsqueeze(-1) * taps if i else taps
        self.weight.zero_()
        for c in range(1 if self.shared_filters else self.in_channels):
            self.weight[c, c] = w

    def _fill_crf(self) -> None:
        k = self.kernel_size[0]
        gauss = _gaussian_2d(k) * (k * k)
        gauss[k // 2, k // 2] = 0  # no message from a pixel to itself
        if self.shared_filters:
            self.weight[0, 0] = gauss
        else:
            compat = 1.0 - torch.eye(self.in_channels, dtype=torch.float64)  # Potts compatibility
            self.weight.copy_(compat.view(self.in_channels, self.in_channels, 1, 1) * gauss)
        if self.filler == "crf_perturbed":
            self.weight.add_((torch.rand_like(self.weight) - 0.5) * _CRF_PERTURB_RANGE)

    # -- forward helpers ------------------------------------------------------------------

    def compute_kernel(self, input_for_kernel: Tensor,
                       input_mask: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
        """The adapting kernel (B, 1 or C, kh, kw, Ho, Wo) and the output mask (or None)."""
        packernel2d = _reference.packernel2d_reference if self.native_impl else _functional.packernel2d
        return packernel2d(input_for_kernel, input_mask, kernel_size=self.kernel_size, stride=self.stride,
                           padding=self.padding, output_padding=self.output_padding, dilation=self.dilation,
                           kernel_type=self.kernel_type, smooth_kernel_type=self.smooth_kernel_type,
                           smooth_kernel=getattr(self, "smooth_kernel", None),
                           inv_alpha=getattr(self, "inv_alpha", None), inv_lambda=getattr(self, "inv_lambda", None),
                           channel_wise=self.channel_wise, normalize_kernel=self.normalize_kernel,
                           transposed=self.transposed)

    def _kernel_and_mask(self, input_for_kernel: Optional[Tensor], kernel: Optional[Tensor],
                         mask: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        if kernel is not None:  # a precomputed kernel: the mask is ignored, as in the official
            return kernel, None
        if input_for_kernel is None:
            raise ValueError("pass input_for_kernel (the guidance) or a precomputed kernel")
        return self.compute_kernel(input_for_kernel, mask)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, kernel_type={self.kernel_type}"
        return s + self._optional_repr(with_bias=True)

    def _optional_repr(self, with_bias: bool) -> str:
        s = ""
        if self.stride != (1, 1):
            s += f", stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            s += f", output_padding={self.output_padding}"
        if with_bias and self.bias is None:
            s += ", bias=False"
        if self.smooth_kernel_type != "none":
            s += f", smooth_kernel_type={self.smooth_kernel_type}"
        if self.channel_wise:
            s += ", channel_wise=True"
        if self.normalize_kernel:
            s += ", normalize_kernel=True"
        if self.shared_filters:
            s += ", shared_filters=True"
        return s


class PacConv2d(_PacConvNd):
    r"""Pixel-adaptive convolution: ``nn.Conv2d`` whose taps are scaled per output pixel by a
    kernel computed from a guidance image (``torch_bridge.functional.pacconv2d``).

    Args (besides those of ``nn.Conv2d``; kernel_size, stride, padding, dilation: int or pair):
        kernel_type: 'gaussian' | 'inv_{alpha}_{lambda}[_asym][_fixed]' (learned ``inv_alpha``,
            ``inv_lambda`` scalars unless '_fixed'). Default 'gaussian'.
        smooth_kernel_type: 'none' | 'gaussian' | 'average_{sz}' | 'full_{sz}' (learned), the
            smoothing of the guidance at the window centre. Default 'none'.
        normalize_kernel: divide the kernel by its window sum. Default False.
        shared_filters: one (1, 1, k, k) filter for all channels (in_channels == out_channels).
        filler: 'uniform' | 'crf' | 'crf_perturbed' | 'pool' | 'crf_pool' (the last two a
            fixed all-ones window buffer, without its centre for crf_pool; shared_filters only).
        native_impl: run the plain-PyTorch reference instead of the compiled ops.

    Shape:
        input_2d (B, C_in, H, W), input_for_kernel (B, C_g, H, W), kernel (B, 1, kh, kw, Ho, Wo)
        (optional, replaces the guidance), mask (B, 1, H, W) (optional) -> output
        (B, C_out, Ho, Wo), and the output mask (B, 1, 1, 1, Ho, Wo) when a mask is given
        (and no kernel): ``forward`` then returns ``(output, output_mask)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair, stride: IntPair = 1,
                 padding: IntPair = 0, dilation: IntPair = 1, bias: bool = True, kernel_type: str = "gaussian",
                 smooth_kernel_type: str = "none", normalize_kernel: bool = False, shared_filters: bool = False,
                 filler: str = "uniform", native_impl: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, False, 0, bias, False,
                         kernel_type, smooth_kernel_type, False, normalize_kernel, shared_filters, filler)
        self.native_impl = native_impl

    def forward(self, input_2d: Tensor, input_for_kernel: Optional[Tensor], kernel: Optional[Tensor] = None,
                mask: Optional[Tensor] = None) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        kernel, output_mask = self._kernel_and_mask(input_for_kernel, kernel, mask)
        conv = _reference.pacconv2d_reference if self.native_impl else _functional.pacconv2d
        output = conv(input_2d, kernel, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.shared_filters)
        return output if output_mask is None else (output, output_mask)


class PacConvTranspose2d(_PacConvNd):
    r"""Transposed pixel-adaptive convolution (``torch_bridge.functional.pacconv_transpose2d``),
    e.g. guided up-sampling: the guidance is at the output resolution.

    Args: those of ``nn.ConvTranspose2d`` (int or pair), plus kernel_type, smooth_kernel_type,
    normalize_kernel, shared_filters, native_impl as in ``PacConv2d``; filler: 'uniform' |
    'linear' (bilinear up-sampling, in_channels == out_channels, kernel_size >= 2*stride-1) |
    'crf' | 'crf_perturbed' | 'pool' | 'crf_pool'.

    Shape:
        input_2d (B, C_in, H, W), input_for_kernel (B, C_g, Ho, Wo), mask (B, 1, H, W) ->
        output (B, C_out, Ho, Wo), Ho = (H-1)*stride - 2*padding + dilation*(kh-1) + 1 +
        output_padding; weight (C_in, C_out, kh, kw).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair, stride: IntPair = 1,
                 padding: IntPair = 0, output_padding: IntPair = 0, dilation: IntPair = 1, bias: bool = True,
                 kernel_type: str = "gaussian", smooth_kernel_type: str = "none", normalize_kernel: bool = False,
                 shared_filters: bool = False, filler: str = "uniform", native_impl: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, True, output_padding,
                         bias, False, kernel_type, smooth_kernel_type, False, normalize_kernel, shared_filters,
                         filler)
        self.native_impl = native_impl

    def forward(self, input_2d: Tensor, input_for_kernel: Optional[Tensor], kernel: Optional[Tensor] = None,
                mask: Optional[Tensor] = None) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        kernel, output_mask = self._kernel_and_mask(input_for_kernel, kernel, mask)
        conv = _reference.pacconv_transpose2d_reference if self.native_impl else _functional.pacconv_transpose2d
        output = conv(input_2d, kernel, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                      self.dilation, self.shared_filters)
        return output if output_mask is None else (output, output_mask)


class PacPool2d(_PacConvNd):
    r"""Pixel-adaptive pooling (``torch_bridge.functional.pacpool2d``): each channel's window
    weighted by the guidance kernel and summed (with ``normalize_kernel``, a weighted average).

    Args:
        kernel_size, stride, padding, dilation: int or pair.
        kernel_type, smooth_kernel_type, normalize_kernel, native_impl: as in ``PacConv2d``.
        channel_wise: a kernel per channel (the guidance has the input's channels).
        out_channels: the channel count, needed for channel_wise learned 'inv_*' kernels
            (``inv_alpha``, ``inv_lambda`` of shape (out_channels,)). Default -1.

    Shape:
        input_2d (B, C, H, W), input_for_kernel (B, C_g, H, W), mask (B, 1, H, W) -> output
        (B, C, Ho, Wo) (and the output mask with a mask). No weight, no bias.
    """

    def __init__(self, kernel_size: IntPair, stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1,
                 kernel_type: str = "gaussian", smooth_kernel_type: str = "none", channel_wise: bool = False,
                 normalize_kernel: bool = False, out_channels: int = -1, native_impl: bool = False):
        super().__init__(-1, out_channels, kernel_size, stride, padding, dilation, False, 0, False, True,
                         kernel_type, smooth_kernel_type, channel_wise, normalize_kernel, False, None)
        self.native_impl = native_impl

    def forward(self, input_2d: Tensor, input_for_kernel: Optional[Tensor], kernel: Optional[Tensor] = None,
                mask: Optional[Tensor] = None) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        kernel, output_mask = self._kernel_and_mask(input_for_kernel, kernel, mask)
        in_ch = input_2d.shape[1]
        if self.channel_wise and kernel.shape[1] != in_ch:
            raise ValueError("input and kernel must have the same number of channels when channel_wise=True, "
                             f"got {in_ch} and {kernel.shape[1]}")
        if 0 < self.out_channels != in_ch:
            raise ValueError(f"out_channels={self.out_channels} but the input has {in_ch} channels")
        pool = _reference.pacpool2d_reference if self.native_impl else _functional.pacpool2d
        output = pool(input_2d, kernel, self.kernel_size, self.stride, self.padding, self.dilation)
        return output if output_mask is None else (output, output_mask)

    def extra_repr(self) -> str:
        s = f"kernel_size={self.kernel_size}, kernel_type={self.kernel_type}" + self._optional_repr(with_bias=False)
        return s + (f", out_channels={self.out_channels}" if self.out_channels > 0 else "")
