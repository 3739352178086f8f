"""PAC-CRF: mean-field inference with pixel-adaptive message passing (PacCRF, PacCRFLoose).

Pixel-Adaptive Convolutional Neural Networks, Su et al., CVPR 2019, Sec. 5 -- a drop-in for the
official ``paccrf.py`` (NVlabs/pacnet): same class and argument names, defaults, pairwise-kernel
options, ``state_dict`` keys and shapes, and the same mean-field update, with the messages passed
by this package's ``PacConv2d``.

Each mean-field step computes, from the current ``Q = softmax(logQ)`` over the C labels::

    logQ <- unary_weight * unary - sum_i  w_i * compat_i(messenger_i(blur_i(Q), K_i))

where ``K_i`` is the Gaussian edge kernel of the guidance features (``exp(-|f_j - f_x|^2 / 2)``
over the kernel window, computed once per forward), ``blur_i`` an average pooling by the
kernel's ``blur`` factor (the messages are bilinearly upsampled back) and ``w_i`` its pairwise
weight. A pairwise kernel is a dict (see ``PacCRF.add_pairwise_kernel``):

=================  ==================================================================================
``compat_type``    messenger / compatibility
=================  ==================================================================================
``'4d'``           ``PacConv2d(C, C, k)``: a full label-to-label, position-dependent compatibility
``'2d'``           a shared k x k filter (``spatial_filter=True``) or a fixed box of ones with a zero
                   centre (``False``: plain DenseCRF message), then a learnt 1x1 ``compat`` (C x C)
``'potts'``        the same shared/fixed filter and a Potts compatibility (weight negated: a message
                   *towards* the neighbours' labels)
``'na'``           a plain ``nn.Conv2d(C, C, k)``: no edge kernel (no guidance)
=================  ==================================================================================

Where we differ from the official code (all keep checkpoints loadable):

- Plain bugs fixed: ``PacCRFLoose`` computed an edge kernel for ``'na'`` (``nn.Conv2d``)
  messengers, which have none, and crashed; it now skips them, as ``PacCRF`` does.
  ``create_position_feats``/``create_YXRGB`` build the coordinates in the image's dtype (the
  official always used float32, which fails or silently promotes for other dtypes) and accept any
  number of spatial axes in ``create_position_feats``. Lists given as ``pairwise_kernels`` or
  keyword values are accepted wherever the official wanted tuples.
- Invalid arguments raise ``ValueError`` at construction (unknown ``compat_type`` or
  ``final_output``, even ``kernel_size``, ``blur`` < 1), where the official silently picked a
  branch (an unknown ``compat_type`` was treated as ``'2d'``/``'potts'``) or failed at forward.
- ``pairwise_weights[i]`` is, as in the official, a parameter for every kernel but only *used*
  (and trained) for Potts kernels without a spatial filter when ``fixed_weighting=False``; the
  other kernels use their initial weight. Those unused parameters get no gradient: construct
  ``DistributedDataParallel`` with ``find_unused_parameters=True`` or freeze them.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .pac import PacConv2d

__all__ = ["PacCRF", "PacCRFLoose", "create_position_feats", "create_YXRGB"]

COMPAT_TYPES = ("4d", "2d", "potts", "na")
FINAL_OUTPUTS = ("log_Q", "softmax", "log_softmax")
PERTURB_RANGE = 0.001  # width of the uniform noise the official adds to the initial compatibilities

EdgeFeat = Union[Tensor, Sequence[Optional[Tensor]]]
EdgeKernel = Union[None, Tensor, Sequence[Optional[Tensor]]]


def _scale_view(scales, dtype, device, n_axes: int) -> Tensor:
    """``scales`` (a number, sequence or tensor; one per channel or shared) as (-1, 1, ..., 1)."""
    scales = torch.as_tensor(scales, dtype=dtype, device=device)  # keeps a parameter's graph
    return scales.reshape(-1, *([1] * n_axes))


def create_position_feats(shape: Sequence[int], scales=None, bs: int = 1, device=None,
                          dtype: torch.dtype = torch.float32) -> Tensor:
    """Coordinate features: (bs, len(shape), *shape), channel a holding the index along axis a
    (y then x for 2-D), divided by ``scales`` (a number or one per axis; a tensor keeps its
    gradient)."""
    axes = [torch.arange(s, dtype=dtype, device=device) for s in shape]
    mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    if scales is not None:
        mesh = mesh / _scale_view(scales, dtype, mesh.device, len(shape))
    return mesh.unsqueeze(0).repeat(bs, *([1] * mesh.dim()))


def create_YXRGB(img: Tensor, yx_scale=None, rgb_scale=None, scales=None) -> Tensor:
    """Bilateral features of an image: (N, 2 + C, H, W) = [y / yx_scale, x / yx_scale,
    img / rgb_scale] for ``img`` (..., C, H, W) (leading axes flattened into N).

    ``scales`` = (y, x, c_1, .., c_C) scales at once (then ``yx_scale``/``rgb_scale`` must be None);
    each scale may be a number, one per channel, or a tensor (learnable scales keep their gradient).
    """
    img = img.reshape(-1, *img.shape[-3:])
    if scales is not None:
        if yx_scale is not None or rgb_scale is not None:
            raise ValueError("give either scales or yx_scale/rgb_scale, not both")
        yx_scale, rgb_scale = scales[:2], scales[2:]
    mesh = create_position_feats(img.shape[-2:], yx_scale, img.shape[0], img.device, img.dtype)
    if rgb_scale is not None:
        img = img / _scale_view(rgb_scale, img.dtype, img.device, 2)
    return torch.cat([mesh, img], dim=1)


def _ceil_pad(sizes: Sequence[int], factor: int) -> Tuple[int, ...]:
    """Padding (per side) that makes avg-pooling by ``factor`` cover every pixel: ceil(size/factor)
    outputs, the extra pixels split as evenly as possible (one more on the leading side)."""
    return tuple(((factor - s % factor) % factor + 1) // 2 for s in sizes)


def _downsample(x: Tensor, factor: int) -> Tensor:
    """Average-pool by ``factor`` with the ceil padding; padded pixels are not counted."""
    return F.avg_pool2d(x, kernel_size=factor, padding=_ceil_pad(x.shape[2:], factor),
                        count_include_pad=False)


def _upsample(msg: Tensor, factor: int, size: Sequence[int]) -> Tensor:
    """Inverse of ``_downsample`` for messages: bilinear upsampling, then crop the padding."""
    pad = _ceil_pad(size, factor)
    msg = F.interpolate(msg, scale_factor=factor, mode="bilinear", align_corners=False)
    return msg[:, :, pad[0]:pad[0] + size[0], pad[1]:pad[1] + size[1]].contiguous()


def _edge_kernels(messengers: nn.ModuleList, blurs: Sequence[int], edge_feat: EdgeFeat) -> List[Optional[Tensor]]:
    """One PAC kernel per messenger (None for plain convolutions) from the guidance features:
    one tensor shared by all kernels (pooled once per blur factor) or one per kernel."""
    shared = isinstance(edge_feat, Tensor)
    pooled: Dict[int, Tensor] = {1: edge_feat} if shared else {}
    kernels: List[Optional[Tensor]] = []
    for i, (messenger, blur) in enumerate(zip(messengers, blurs)):
        if isinstance(messenger, nn.Conv2d):
            kernels.append(None)
            continue
        if shared:
            if blur not in pooled:
                pooled[blur] = _downsample(edge_feat, blur)
            feat = pooled[blur]
        else:
            feat = edge_feat[i] if blur == 1 else _downsample(edge_feat[i], blur)
        kernels.append(messenger.compute_kernel(feat)[0])
    return kernels


def _expand_kernels(edge_kernel: EdgeKernel, n: int) -> Optional[List[Optional[Tensor]]]:
    """A precomputed kernel shared by all messengers -> one per messenger."""
    if isinstance(edge_kernel, Tensor):
        return [edge_kernel] * n
    return None if edge_kernel is None else list(edge_kernel)


def _final(logQ: Tensor, final_output: str) -> Tensor:
    if final_output == "softmax":
        return F.softmax(logQ, dim=1)
    if final_output == "log_softmax":
        return F.log_softmax(logQ, dim=1)
    return logQ


def _check_final_output(final_output: str) -> None:
    if final_output not in FINAL_OUTPUTS:
        raise ValueError(f"final_output must be one of {FINAL_OUTPUTS}, got {final_output!r}")


def _pairwise_list(pairwise_kernels) -> List[Mapping]:
    if pairwise_kernels is None:
        return []
    return [pairwise_kernels] if isinstance(pairwise_kernels, Mapping) else list(pairwise_kernels)


class PacCRF(nn.Module):
    r"""Mean-field CRF whose pairwise messages are pixel-adaptive convolutions.

    Args:
        channels: number of labels C.
        num_steps: mean-field steps.
        final_output: 'log_Q' (the last step's logits, default), 'softmax' or 'log_softmax'.
        perturbed_init: add uniform noise (width 1e-3) to the initial compatibilities (breaks
            the symmetry between labels).
        native_impl: the messengers' ``native_impl`` (plain-PyTorch path instead of the
            compiled op).
        fixed_weighting: keep the unary and pairwise weights fixed (``unary_weight`` a float
            attribute, not a parameter).
        unary_weight: initial weight of the unary term.
        pairwise_kernels: a dict or a list of dicts of ``add_pairwise_kernel`` arguments.

    ``state_dict``: ``messengers.i.weight`` ((C, C, k, k) for '4d' and 'na', (1, 1, k, k)
    otherwise -- a fixed buffer without ``spatial_filter``), ``compat.i.weight`` ((C, C, 1, 1),
    '2d' only), ``pairwise_weights.i`` (scalars) and ``unary_weight`` (scalar, unless
    ``fixed_weighting``).

    Shape:
        ``forward(unary, edge_feat)``: unary (B, C, H, W); edge_feat (B, F, H, W), or a list with
        one (B, F_i, H, W) per pairwise kernel (ignored for 'na'); output (B, C, H, W).
    """

    def __init__(self, channels: int, num_steps: int, final_output: str = "log_Q",
                 perturbed_init: bool = True, native_impl: bool = False, fixed_weighting: bool = False,
                 unary_weight: float = 1.0, pairwise_kernels=None):
        super().__init__()
        _check_final_output(final_output)
        self.channels = channels
        self.num_steps = num_steps
        self.final_output = final_output
        self.perturbed_init = perturbed_init
        self.native_impl = native_impl
        self.fixed_weighting = fixed_weighting
        self.init_unary_weight = float(unary_weight)

        # registration order as in the official, so state_dict keys come in the same order
        self.messengers = nn.ModuleList()
        self.compat = nn.ModuleList()
        self.init_pairwise_weights: List[float] = []
        self.pairwise_weights = nn.ParameterList()
        self._use_pairwise_weights: List[bool] = []
        if fixed_weighting:
            self.unary_weight = self.init_unary_weight
        else:
            self.unary_weight = nn.Parameter(torch.tensor(self.init_unary_weight))
        self.blur: List[int] = []
        self.pairwise_repr: List[str] = []

        for kw in _pairwise_list(pairwise_kernels):
            self.add_pairwise_kernel(**kw)

    def reset_parameters(self, pairwise_idx: Optional[int] = None) -> None:
        """Re-initialise everything, or only pairwise kernel ``pairwise_idx`` (negative indices
        count from the end): its messenger, compatibility and pairwise weight."""
        if pairwise_idx is None:
            idxs = range(len(self.messengers))
            if not self.fixed_weighting:
                with torch.no_grad():
                    self.unary_weight.fill_(self.init_unary_weight)
        else:
            idxs = [pairwise_idx % len(self.messengers)]
        for i in idxs:
            self.messengers[i].reset_parameters()
            self._reset_compat(i)
            with torch.no_grad():
                self.pairwise_weights[i].fill_(self.init_pairwise_weights[i])

    def _reset_compat(self, i: int) -> None:
        """A '2d' compatibility starts as Potts (1 between different labels, 0 on the diagonal)."""
        compat = self.compat[i]
        if compat is None:
            return
        w = compat.weight
        with torch.no_grad():
            w.zero_()
            w[:, :, 0, 0] = 1.0 - torch.eye(self.channels, dtype=w.dtype, device=w.device)
            if self.perturbed_init:
                w.add_((torch.rand_like(w) - 0.5) * PERTURB_RANGE)

    def extra_repr(self) -> str:
        s = f"categories={self.channels}, num_steps={self.num_steps}, final_output={self.final_output}"
        if self.perturbed_init:
            s += ", perturbed_init=True"
        if self.fixed_weighting:
            s += ", fixed_weighting=True"
        if self.pairwise_repr:
            s += f", pairwise_kernels=({', '.join(self.pairwise_repr)})"
        return s

    def add_pairwise_kernel(self, kernel_size: int = 3, dilation: int = 1, blur: int = 1,
                            compat_type: str = "4d", spatial_filter: bool = True,
                            pairwise_weight: float = 1.0) -> None:
        """Add a pairwise term.

        Args:
            kernel_size: odd window size k of the messages.
            dilation: of the window (the padding keeps the size: ``dilation * (k // 2)``).
            blur: pass the messages at 1/blur resolution (average-pooled Q and guidance).
            compat_type: '4d', '2d', 'potts' or 'na' (see the module docstring).
            spatial_filter: for '2d'/'potts', learn the shared k x k filter (initialised to a
                Gaussian with a zero centre); else a fixed box of ones with a zero centre.
            pairwise_weight: weight of the term (negated for 'potts'); learnt only for
                'potts' without spatial filter and ``fixed_weighting=False``.
        """
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        if compat_type not in COMPAT_TYPES:
            raise ValueError(f"compat_type must be one of {COMPAT_TYPES}, got {compat_type!r}")
        if not isinstance(blur, int) or blur < 1:
            raise ValueError(f"blur must be a positive integer, got {blur!r}")
        self.pairwise_repr.append("{}{}_{}_{}_{}".format("0d" if compat_type == "potts" else compat_type,
                                                         "s" if spatial_filter else "",
                                                         kernel_size, dilation, blur))
        if compat_type == "potts":
            pairwise_weight = -pairwise_weight  # Potts rewards agreeing with the neighbours
        self._use_pairwise_weights.append(compat_type == "potts" and not spatial_filter
                                          and not self.fixed_weighting)
        self.pairwise_weights.append(nn.Parameter(torch.tensor(float(pairwise_weight))))
        self.init_pairwise_weights.append(float(pairwise_weight))
        self.blur.append(blur)
        self.compat.append(nn.Conv2d(self.channels, self.channels, 1, bias=False)
                           if compat_type == "2d" else None)
        self.messengers.append(self._messenger(kernel_size, dilation, compat_type, spatial_filter))
        self.reset_parameters(-1)

    def _messenger(self, kernel_size: int, dilation: int, compat_type: str, spatial_filter: bool) -> nn.Module:
        pad = (kernel_size // 2) * dilation
        C = self.channels
        if compat_type == "na":
            return nn.Conv2d(C, C, kernel_size, padding=pad, dilation=dilation, bias=False)
        crf_filler = "crf_perturbed" if self.perturbed_init else "crf"
        if compat_type == "4d":
            shared, filler = False, crf_filler
        else:
            shared, filler = True, (crf_filler if spatial_filter else "crf_pool")
        return PacConv2d(C, C, kernel_size, padding=pad, dilation=dilation, bias=False,
                         shared_filters=shared, native_impl=self.native_impl, filler=filler)

    def num_pairwise_kernels(self) -> int:
        return len(self.messengers)

    def _pairwise_weight(self, i: int):
        return self.pairwise_weights[i] if self._use_pairwise_weights[i] else self.init_pairwise_weights[i]

    def _message(self, i: int, q_blurred: Tensor, kernel: Optional[Tensor], size: Sequence[int]) -> Tensor:
        """Pairwise term i's message from the (blurred) Q, back at full resolution."""
        messenger = self.messengers[i]
        if isinstance(messenger, nn.Conv2d):
            msg = messenger(q_blurred)
        else:
            msg = messenger(q_blurred, None, kernel)
        if self.compat[i] is not None:
            msg = self.compat[i](msg)
        if self.blur[i] > 1:
            msg = _upsample(msg, self.blur[i], size)
        return msg

    def forward(self, unary: Tensor, edge_feat: EdgeFeat, edge_kernel: EdgeKernel = None,
                logQ: Optional[Tensor] = None) -> Tensor:
        """``num_steps`` mean-field steps from ``logQ`` (default: the unary).

        ``edge_kernel``: precomputed PAC kernels (one tensor for all pairwise terms, or a list),
        in which case ``edge_feat`` is not used.
        """
        kernels = _expand_kernels(edge_kernel, len(self.messengers))
        if kernels is None:
            kernels = _edge_kernels(self.messengers, self.blur, edge_feat)
        if logQ is None:
            logQ = unary
        size = unary.shape[2:]
        for _ in range(self.num_steps):
            q = F.softmax(logQ, dim=1)
            blurred = {1: q}
            logQ = unary * self.unary_weight
            for i in range(len(self.messengers)):
                b = self.blur[i]
                if b not in blurred:
                    blurred[b] = _downsample(q, b)
                logQ = logQ - self._message(i, blurred[b], kernels[i], size) * self._pairwise_weight(i)
        return _final(logQ, self.final_output)


class PacCRFLoose(nn.Module):
    """``PacCRF`` with untied steps: ``num_steps`` one-step ``PacCRF`` (``steps.s``), each with its
    own parameters, sharing the edge kernels (computed by the first step's messengers).

    Same arguments as ``PacCRF``; ``state_dict`` keys ``steps.s.<PacCRF key>``.
    """

    def __init__(self, channels: int, num_steps: int, final_output: str = "log_Q",
                 perturbed_init: bool = True, native_impl: bool = False, fixed_weighting: bool = False,
                 unary_weight: float = 1.0, pairwise_kernels=None):
        super().__init__()
        _check_final_output(final_output)
        self.channels = channels
        self.num_steps = num_steps
        self.final_output = final_output
        self.steps = nn.ModuleList(
            PacCRF(channels, 1, "log_Q", perturbed_init, native_impl, fixed_weighting, unary_weight,
                   pairwise_kernels)
            for _ in range(num_steps))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for step in self.steps:
            step.reset_parameters()

    def extra_repr(self) -> str:
        return f"categories={self.channels}, num_steps={self.num_steps}, final_output={self.final_output}"

    def add_pairwise_kernel(self, kernel_size: int = 3, dilation: int = 1, blur: int = 1,
                            compat_type: str = "4d", spatial_filter: bool = True,
                            pairwise_weight: float = 1.0) -> None:
        """``PacCRF.add_pairwise_kernel`` on every step."""
        for step in self.steps:
            step.add_pairwise_kernel(kernel_size, dilation, blur, compat_type, spatial_filter, pairwise_weight)

    def num_pairwise_kernels(self) -> int:
        return self.steps[0].num_pairwise_kernels()

    def forward(self, unary: Tensor, edge_feat: EdgeFeat, edge_kernel: EdgeKernel = None) -> Tensor:
        """As ``PacCRF.forward``; shapes (B, C, H, W) -> (B, C, H, W)."""
        first = self.steps[0]
        kernels = _expand_kernels(edge_kernel, first.num_pairwise_kernels())
        if kernels is None:
            kernels = _edge_kernels(first.messengers, first.blur, edge_feat)
        logQ = unary
        for step in self.steps:
            logQ = step(unary, None, kernels, logQ)
        return _final(logQ, self.final_output)
