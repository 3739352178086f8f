"""DDF in plain PyTorch: the semantics its TVM kernels are tested against.

It unfolds the input k*k times (memory-hungry, like the official PyTorch fallback) and is
meant for checking, not for speed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def ddf_reference(features: torch.Tensor, channel_filter: torch.Tensor, spatial_filter: torch.Tensor,
                  kernel_size: int = 3, dilation: int = 1, stride: int = 1,
                  kernel_combine: str = "mul") -> torch.Tensor:
    """Decoupled dynamic filter, by definition.

    Shapes: features (B, C, H, W); channel_filter (B, C, k, k); spatial_filter
    (B, G*k*k, Ho, Wo) with G heads dividing C (channel c uses head c // (C/G));
    output (B, C, Ho, Wo), Ho = ceil(H/stride), Wo = ceil(W/stride)::

        out[b,c,y,x] = sum_{u,v} features[b, c, y*s + (u-r)*d, x*s + (v-r)*d] * F[b,c,u,v,y,x]

    with zero padding, r = (k-1)/2 and F = spatial * channel ('mul') or spatial + channel
    ('add'). Computed in the inputs' dtype.
    """
    B, C, H, W = features.shape
    k, s, d = kernel_size, stride, dilation
    G = spatial_filter.shape[1] // (k * k)
    Ho, Wo = -(-H // s), -(-W // s)
    cols = F.unfold(features, k, dilation=d, padding=(k - 1) // 2 * d, stride=s)
    cols = cols.view(B, G, C // G, k * k, Ho, Wo)
    sp = spatial_filter.reshape(B, G, 1, k * k, Ho, Wo)
    ch = channel_filter.reshape(B, G, C // G, k * k, 1, 1)
    filt = sp * ch if kernel_combine == "mul" else sp + ch
    return (cols * filt).sum(3).reshape(B, C, Ho, Wo)
