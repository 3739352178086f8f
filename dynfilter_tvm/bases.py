"""Fourier-Bessel atom bases of ACDA (Wang et al., ICCV 2021), after DCFNet (Qiu et al., 2018).

``fourier_bessel(L)`` gives the DCFNet bases of a (2L+1) x (2L+1) kernel and
``multiscale_bases(k, m)`` the stack ACDA multiplies its per-pixel coefficients with: the first
``m`` bases of every scale 3x3, 5x5, ..., k x k, each zero-padded (centred) to k x k.

Construction (``fourier_bessel``), with R = L + 1/2 and t = 2 for L = 1, else 1.5:

* pairs (k, q), angular frequency k = 0..15 and radial index q = 1, 2, ..., are kept while
  the next zero j_{k,q+1} of the Bessel function J_k is at most pi * R * t, and are ordered by
  j_{k,q} (a stable sort; Bessel zeros of different orders never coincide, so the order is
  that of the official code);
* psi_{k,q}(r) = J_k(j_{k,q} r) / |J_{k+1}(j_{k,q})| inside the unit disc, 0 for r >= 1;
  k = 0 gives one basis, k > 0 two: sqrt(2) psi cos(k theta), then sqrt(2) psi sin(k theta);
* evaluated on the integer grid -L-1..L+1 (both axes) divided by R, truncated to at most
  (2L+1)^2 - 1 bases, cropped to the central (2L+1) x (2L+1) (the outer ring lies outside
  the unit disc, so the crop loses nothing), and all divided by one constant
  c = sqrt(mean over bases of the sum of psi^2 over the pixels).

This yields 6, 14 and 38 bases for L = 1, 2, 3. Sampled on the pixel grid they are not
orthonormal (Gram matrix off-diagonals up to ~0.17 for L = 1, 2 and ~0.52 for L = 3), but the
grid's symmetries make some pairs exactly orthogonal: bases of even against odd angular
frequency, and cos- against sin-type bases.

Polar-coordinate convention. The arrays are indexed ``[basis, row, column]``. Like the
official Python code of ACDA (``fb.py`` of ZeWang95/ACDA, itself a translation of DCFNet's
``calculate_FB_bases.m``), the angle is measured with the *row* offset as the first Cartesian
coordinate: theta = atan2(column offset, row offset). (That code builds
``xx, yy = meshgrid(-L-1..L+1)`` -- xx varying along columns -- and calls
``cart2pol(x=yy, y=xx)``; the MATLAB original passes (x, y) in the other order, which
transposes every non-radial basis.) We keep the official Python convention because trained
ACDA coefficients (checkpoints of Conv_DCFD layers) refer to exactly those bases.
"""
from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["fourier_bessel", "multiscale_bases", "KMAX"]

#: Highest angular frequency considered.
KMAX = 15


def _kept_pairs(limit: float):
    """(k, q, j_kq) for k = 0..KMAX and every q with j_{k,q+1} <= limit, in (k, q) order."""
    pairs = []
    for k in range(KMAX + 1):
        # j_{k,q} >= j_{0,q} > (q - 1/4) pi, so limit/pi + 2 zeros always include the first
        # one beyond the limit.
        zeros = special.jn_zeros(k, int(limit / np.pi) + 3)
        q = 1
        while zeros[q] <= limit:  # zeros[q] is j_{k,q+1}
            pairs.append((k, q, float(zeros[q - 1])))
            q += 1
    return pairs


def fourier_bessel(L: int) -> np.ndarray:
    """DCFNet Fourier-Bessel bases of a (2L+1) x (2L+1) kernel, shape (n, 2L+1, 2L+1), float64.

    See the module docstring for the construction and the (row, column) angle convention.
    """
    if not isinstance(L, (int, np.integer)) or isinstance(L, bool) or L < 1:
        raise ValueError(f"fourier_bessel: L must be an integer >= 1 (kernel 2L+1 >= 3), got {L!r}")
    L = int(L)
    R = L + 0.5
    limit = np.pi * R * (2.0 if L == 1 else 1.5)
    max_bases = (2 * L + 1) ** 2 - 1

    pairs = _kept_pairs(limit)
    order = np.argsort(np.array([p[2] for p in pairs]), kind="stable")

    offsets = np.arange(-L - 1, L + 2, dtype=np.float64) / R
    row, col = np.meshgrid(offsets, offsets, indexing="ij")  # row[i, j] = offset of row i
    r = np.hypot(row, col)
    theta = np.arctan2(col, row)  # official Python convention: atan2(column, row)
    inside = r < 1

    psis = []
    for idx in order:
        k, _, j = pairs[idx]
        radial = np.where(inside, special.jv(k, r * j), 0.0) / abs(special.jv(k + 1, j))
        if k == 0:
            psis.append(radial)
        else:
            psis.append(radial * np.cos(k * theta) * np.sqrt(2.0))
            psis.append(radial * np.sin(k * theta) * np.sqrt(2.0))
        if len(psis) >= max_bases:
            break
    psi = np.stack(psis[:max_bases])[:, 1:-1, 1:-1]
    c = np.sqrt(np.mean(np.sum(psi ** 2, axis=(1, 2))))
    return psi / c


def multiscale_bases(kernel_size: int, num_bases: int) -> np.ndarray:
    """ACDA's multi-scale bases, shape (T, k, k) float64 with T = (k // 2) * num_bases.

    Scale i = 1 .. k//2 contributes the first ``num_bases`` bases of ``fourier_bessel(i)``
    (a (2i+1)^2 kernel), zero-padded to k x k around the centre; scales are stacked in order.
    ``ACDAConv2d`` stores them flattened as its ``bases`` (T, k*k).
    """
    if (not isinstance(kernel_size, (int, np.integer)) or isinstance(kernel_size, bool)
            or kernel_size < 3 or kernel_size % 2 == 0):
        raise ValueError(f"multiscale_bases: kernel_size must be an odd integer >= 3, got {kernel_size!r}")
    available = len(fourier_bessel(1))
    if (not isinstance(num_bases, (int, np.integer)) or isinstance(num_bases, bool)
            or not 1 <= num_bases <= available):
        raise ValueError(f"multiscale_bases: num_bases must be an integer in 1..{available} "
                         f"(the number of 3x3 Fourier-Bessel bases), got {num_bases!r}")
    k = int(kernel_size)
    out = np.zeros((k // 2 * num_bases, k, k))
    for i in range(1, k // 2 + 1):
        pad = k // 2 - i
        out[(i - 1) * num_bases:i * num_bases, pad:k - pad, pad:k - pad] = fourier_bessel(i)[:num_bases]
    return out
