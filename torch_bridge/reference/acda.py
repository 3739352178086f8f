"""ACDA's atom convolution in plain PyTorch: the semantics its TVM kernels are tested against.

It unfolds the input k*k times (memory-hungry, like the official code) and is meant for
checking, not for speed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def acda_atom_conv2d_reference(input: torch.Tensor, coefficients: torch.Tensor, bases: torch.Tensor,
                               stride: int = 1, padding: int = 0, dilation: int = 1) -> torch.Tensor:
    """ACDA's atom convolution the official way (``Conv_DCFD``): per-pixel atoms from the
    coefficients and bases, the input unfolded k*k times, an einsum over the taps.

    Shapes: input (N, C, H, W); coefficients (N, M*T, Ho, Wo); bases (T, k, k); output
    (N, C*M, Ho, Wo), channel c*M + m. Computed in the inputs' dtype.
    """
    N, C, H, W = input.shape
    T, k, _ = bases.shape
    Ho, Wo = coefficients.shape[-2:]
    M = coefficients.shape[1] // T
    atoms = torch.einsum("nmtyx,tl->nmlyx", coefficients.reshape(N, M, T, Ho, Wo), bases.reshape(T, k * k))
    cols = F.unfold(input, k, dilation=dilation, padding=padding, stride=stride).view(N, C, k * k, Ho, Wo)
    return torch.einsum("nmlyx,nclyx->ncmyx", atoms, cols).reshape(N, C * M, Ho, Wo)
