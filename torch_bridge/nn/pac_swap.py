"""``GuidedPacConv2d``: a ``PacConv2d`` that stands in for an ``nn.Conv2d`` (``forward(x)``).

A PAC layer needs guidance features besides its input; a convolution of an existing network
is called with its input only. ``GuidedPacConv2d`` finds its guidance itself, so that it can
replace such a convolution in place (the "hot-swapping" of the PAC paper: swap chosen layers of
a trained network for PAC layers that start from the trained weights, then fine-tune). See
``torch_bridge.nn.swap.pac_from_conv`` to build one from a convolution.

Guidance, by precedence:

1. the ``input_for_kernel`` argument (the ``PacConv2d`` call, ``layer(x, guide)``), as given;
2. the guidance set on the layer (``set_guidance``, the ``guidance`` argument, or
   ``set_pac_guidance(model, g)`` for every such layer of a model): a tensor (e.g. the network's
   input image or early features, as the official FCN-8s PAC uses) -- resized bilinearly to the
   input's size when it differs, a batch of 1 broadcast to the input's batch -- or a callable
   ``g(x) -> tensor`` (resized the same way);
3. otherwise the layer's own input ``x`` (self-guided PAC).

The guidance is multiplied by ``guidance_scale`` before the Gaussian kernel
``exp(-|g_j - g_i|^2 / 2)`` is computed: a small scale starts the layer close to the plain
convolution (the official FCN-8s PAC scales its guidance by 1e-4), 0 makes it exactly the
convolution (a constant guidance gives a kernel of ones).

A stored guidance tensor is kept until replaced or cleared (``set_guidance(None)``): set it
before every forward (and mind that a tensor with a graph keeps that graph alive meanwhile).
``state_dict`` keys are ``PacConv2d``'s (``weight``, ``bias``: those of the convolution, with the
default Gaussian kernel), so a swapped network loads its original checkpoint.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .pac import PacConv2d

__all__ = ["GuidedPacConv2d", "set_pac_guidance"]

Guidance = Union[None, Tensor, Callable[[Tensor], Tensor]]


def _fit(guidance: Tensor, x: Tensor) -> Tensor:
    """Guidance at ``x``'s spatial size and batch (bilinear resize, batch-1 broadcast)."""
    if guidance.shape[-2:] != x.shape[-2:]:
        guidance = F.interpolate(guidance, size=x.shape[-2:], mode="bilinear", align_corners=False)
    if guidance.shape[0] == 1 and x.shape[0] != 1:
        guidance = guidance.expand(x.shape[0], -1, -1, -1)
    return guidance


class GuidedPacConv2d(PacConv2d):
    """``PacConv2d`` whose guidance is optional in ``forward`` (see the module docstring).

    Args: those of ``PacConv2d``, plus (keyword-only)
        guidance: the initial stored guidance (tensor, callable or None: self-guided).
        guidance_scale: factor applied to the guidance before the kernel is computed.

    Shape:
        ``forward(x)``: x (B, C_in, H, W) -> (B, C_out, H_out, W_out) as ``nn.Conv2d``; a stored
        guidance is (B or 1, G, H', W'), any size.
    """

    def __init__(self, *args, guidance: Guidance = None, guidance_scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.guidance_scale = float(guidance_scale)
        self._guidance: Guidance = None
        self.set_guidance(guidance)

    def set_guidance(self, guidance: Guidance) -> None:
        """Store the guidance for the next calls (None: the layer's input)."""
        if guidance is not None and not isinstance(guidance, Tensor) and not callable(guidance):
            raise TypeError(f"guidance must be a tensor, a callable or None, got {type(guidance).__name__}")
        self._guidance = guidance

    @property
    def guidance(self) -> Guidance:
        return self._guidance

    def guidance_for(self, x: Tensor) -> Tensor:
        """The guidance features used for input ``x`` (before ``guidance_scale``)."""
        g = self._guidance
        if g is None:
            return x
        return _fit(g if isinstance(g, Tensor) else g(x), x)

    def forward(self, input_2d: Tensor, input_for_kernel: Optional[Tensor] = None,
                kernel: Optional[Tensor] = None, mask: Optional[Tensor] = None):
        if kernel is None:
            if input_for_kernel is None:
                input_for_kernel = self.guidance_for(input_2d)
            if self.guidance_scale != 1.0:
                input_for_kernel = input_for_kernel * self.guidance_scale
        return super().forward(input_2d, input_for_kernel, kernel, mask)

    def extra_repr(self) -> str:
        g = self._guidance
        src = "input" if g is None else ("tensor" if isinstance(g, Tensor) else "callable")
        return f"{super().extra_repr()}, guidance={src}, guidance_scale={self.guidance_scale:g}"


def set_pac_guidance(model: nn.Module, guidance: Guidance) -> int:
    """``set_guidance(guidance)`` on every ``GuidedPacConv2d`` of ``model``; returns how many."""
    layers = [m for m in model.modules() if isinstance(m, GuidedPacConv2d)]
    for layer in layers:
        layer.set_guidance(guidance)
    return len(layers)
