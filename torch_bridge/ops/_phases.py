"""Tap geometry of the phase decompositions (PAC's zero-inserted forms, ACDA's strided dX):
at a stride or zero insertion z, the outputs of one phase receive only the taps whose source
coordinate is whole, so each phase runs as a z = 1 kernel over a subset of the taps."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import Tensor


def whole_taps(k: int, d: int, z: int, offset: int, sign: int) -> Tuple[List[int], int]:
    """One axis: the taps u in [0, k) at which ``offset + sign*u*d`` is a multiple of z, ascending
    (u0 + j*z/g, g = gcd(z, d)), and c = (offset + sign*u0*d) / z, tap u0's whole coordinate
    (0 where no tap qualifies)."""
    us = [u for u in range(k) if (offset + sign * u * d) % z == 0]
    return us, ((offset + sign * us[0] * d) // z if us else 0)


def gather_taps(t: Tensor, iy: Sequence[int], ix: Sequence[int], axis: int = 2) -> Tensor:
    """t with its tap axes ``axis`` and ``axis + 1`` re-indexed to iy and ix (-1: a dummy tap of
    zeros), a new contiguous tensor."""
    out = t
    for ax, idx in ((axis, iy), (axis + 1, ix)):
        out = out.index_select(ax, torch.tensor([max(i, 0) for i in idx], device=t.device))
    for ax, idx in ((axis, iy), (axis + 1, ix)):
        dummies = [n for n, i in enumerate(idx) if i < 0]
        if dummies:
            out.index_fill_(ax, torch.tensor(dummies, device=t.device), 0)
    return out
