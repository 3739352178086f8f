"""Fourier-Bessel bases (dynfilter_tvm.bases) against the formula and the official algorithm."""
import numpy as np
import pytest
from scipy import special

from dynfilter_tvm.bases import fourier_bessel, multiscale_bases

COUNTS = {1: 6, 2: 14, 3: 38}


# --------------------------------------------------------------------------------------------
# The official algorithm (fb.py of ZeWang95/ACDA), re-implemented step by step: a table of
# Bessel zeros with rows (k, q, j_kq, j_k,q+1), meshgrid + cart2pol(x=yy, y=xx), bases on the
# (2L+3)^2 grid in columns, truncation, crop, one normalising constant.

def _bessel_table(kmax=20, qmax=30):
    rows = []
    for k in range(kmax + 1):
        z = special.jn_zeros(k, qmax + 1)
        rows += [(k, q + 1, z[q], z[q + 1]) for q in range(qmax)]
    return np.array(rows, dtype=np.float64)


def _cart2pol(x, y):
    return np.arctan2(y, x), np.sqrt(x ** 2 + y ** 2)


def official_fb(L1):
    max_k = (2 * L1 + 1) ** 2 - 1
    L, R = L1 + 1, L1 + 0.5
    factor = 2 if L1 < 2 else 1.5
    xx, yy = np.meshgrid(range(-L, L + 1), range(-L, L + 1))
    xx, yy = xx / R, yy / R
    ugrid = np.concatenate([yy.reshape(-1, 1), xx.reshape(-1, 1)], 1)
    tgrid, rgrid = _cart2pol(ugrid[:, 0], ugrid[:, 1])
    table = _bessel_table()
    B = table[(table[:, 0] <= 15) & (table[:, 3] <= np.pi * R * factor)]
    order = np.argsort(B[:, 2])
    psi = []
    for k, zero in zip(B[order, 0], B[order, 2]):
        phi = special.jv(k, rgrid * zero) / np.abs(special.jv(k + 1, zero))
        phi[rgrid >= 1] = 0
        if k == 0:
            psi.append(phi)
        else:
            psi.append(phi * np.cos(k * tgrid) * np.sqrt(2))
            psi.append(phi * np.sin(k * tgrid) * np.sqrt(2))
    psi = np.array(psi)[:max_k]
    n = psi.shape[0]
    p = psi.reshape(n, 2 * L + 1, 2 * L + 1).transpose(1, 2, 0)[1:-1, 1:-1, :]
    p = p.reshape((2 * L1 + 1) ** 2, n)
    p = p / np.sqrt(np.sum(p ** 2, 0).mean())
    # official layout (pixels, bases) -> ours (bases, rows, columns), as bases_list does
    return p.T.reshape(n, 2 * L1 + 1, 2 * L1 + 1)


# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("L", [1, 2, 3])
def test_counts_shapes_dtype(L):
    b = fourier_bessel(L)
    assert b.shape == (COUNTS[L], 2 * L + 1, 2 * L + 1)
    assert b.dtype == np.float64


@pytest.mark.parametrize("L", [1, 2, 3])
def test_matches_official_algorithm(L):
    np.testing.assert_allclose(fourier_bessel(L), official_fb(L), rtol=0, atol=1e-12)


@pytest.mark.parametrize("L", [1, 2, 3])
def test_normalisation(L):
    b = fourier_bessel(L)
    assert np.mean(np.sum(b ** 2, axis=(1, 2))) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("L", [1, 2, 3])
def test_zero_outside_unit_disc(L):
    b = fourier_bessel(L)
    off = np.arange(-L, L + 1) / (L + 0.5)
    r = np.hypot(off[:, None], off[None, :])
    assert (r >= 1).any() == (L > 1)  # for L = 1 even the corners (r = 0.94) are inside
    assert np.all(b[:, r >= 1] == 0)
    assert np.all(np.abs(b[:, r < 1]).max(axis=1) > 0)


def _angular_freqs(L):
    """Angular frequency of every basis, in order (from the construction rules)."""
    R = L + 0.5
    limit = np.pi * R * (2 if L == 1 else 1.5)
    pairs = []
    for k in range(16):
        z = special.jn_zeros(k, 20)
        pairs += [(z[q - 1], k) for q in range(1, 19) if z[q] <= limit]
    ks = []
    for _, k in sorted(pairs):
        ks += [k] if k == 0 else [k, k]
    return ks[:(2 * L + 1) ** 2 - 1]


@pytest.mark.parametrize("L", [1, 2, 3])
def test_orthogonality_by_symmetry(L):
    """The discrete bases are not orthonormal (Gram off-diagonals up to ~0.17 for L = 1, 2 and
    ~0.52 for L = 3, diagonals 0.09..2), but the grid's symmetries make some pairs exactly
    orthogonal: even-k against odd-k bases (point reflection) and cos- against sin-type bases
    (mirror column -> -column)."""
    b = fourier_bessel(L)
    n = len(b)
    G = b.reshape(n, -1) @ b.reshape(n, -1).T
    ks = _angular_freqs(L)
    assert len(ks) == n
    kind = []  # 'c' for k = 0 and cos, 's' for sin
    for i, k in enumerate(ks):
        kind.append("s" if k > 0 and i > 0 and ks[i - 1] == k and kind[i - 1] == "c" else "c")
    checked = 0
    for i in range(n):
        for j in range(i + 1, n):
            if (ks[i] - ks[j]) % 2 or kind[i] != kind[j]:
                assert abs(G[i, j]) < 1e-12, (i, j)
                checked += 1
    assert checked > 0
    off = np.abs(G - np.diag(np.diag(G)))
    assert off.max() > 0.1  # not orthogonal in general (documented, not a bug)


def test_first_basis_radial_and_reference_values():
    b = fourier_bessel(1)
    assert np.allclose(b[0], b[0].T, atol=1e-15)
    assert np.allclose(b[0], np.rot90(b[0]), atol=1e-15)
    assert np.allclose(b[0], b[0][::-1], atol=1e-15)

    # hand computation for L = 1 (R = 1.5): the kept pairs by j_kq are (0,1), (1,1), (2,1), (0,2)
    j01, j11 = special.jn_zeros(0, 1)[0], special.jn_zeros(1, 1)[0]
    j21, j02 = special.jn_zeros(2, 1)[0], special.jn_zeros(0, 2)[1]
    R = 1.5
    radial = lambda k, j, r: special.jv(k, j * r) / abs(special.jv(k + 1, j))  # noqa: E731
    s2 = np.sqrt(2)
    raw = np.zeros((6, 3, 3))
    for i in range(3):
        for jj in range(3):
            dr, dc = i - 1, jj - 1
            r, th = np.hypot(dr, dc) / R, np.arctan2(dc, dr)
            if r >= 1:
                continue
            raw[0, i, jj] = radial(0, j01, r)
            raw[1, i, jj] = radial(1, j11, r) * np.cos(th) * s2
            raw[2, i, jj] = radial(1, j11, r) * np.sin(th) * s2
            raw[3, i, jj] = radial(2, j21, r) * np.cos(2 * th) * s2
            raw[4, i, jj] = radial(2, j21, r) * np.sin(2 * th) * s2
            raw[5, i, jj] = radial(0, j02, r)
    c = np.sqrt(np.mean(np.sum(raw ** 2, axis=(1, 2))))
    # centre of the first basis: J_0(0) / |J_1(j_01)| / c
    assert b[0, 1, 1] == pytest.approx(1.0 / abs(special.jv(1, j01)) / c, rel=1e-12)
    # edge-middle of the first basis: J_0(j_01 / 1.5) / |J_1(j_01)| / c
    assert b[0, 0, 1] == pytest.approx(special.jv(0, j01 / R) / abs(special.jv(1, j01)) / c, rel=1e-12)
    np.testing.assert_allclose(b, raw / c, rtol=0, atol=1e-14)
    # angle convention: the k = 1 cos basis varies along rows (theta = atan2(column, row))
    assert b[1, 0, 1] < 0 < b[1, 2, 1] and abs(b[1, 1, 0]) < 1e-15
    # the normalising constant itself, for the record
    assert c == pytest.approx(np.sqrt(np.mean(np.sum(raw ** 2, axis=(1, 2)))))


def test_k1_pair_rotates_by_90_degrees():
    b = fourier_bessel(1)
    # k = 1: cos and sin bases; rotating by 90 degrees turns one into the other
    np.testing.assert_allclose(np.rot90(b[1]), b[2], atol=1e-15)
    np.testing.assert_allclose(np.rot90(b[2]), -b[1], atol=1e-15)
    # k = 2 cos basis: 90 degrees flips its sign
    np.testing.assert_allclose(np.rot90(b[3]), -b[3], atol=1e-15)


@pytest.mark.parametrize("k,m", [(3, 6), (5, 6), (7, 6), (7, 3), (9, 1)])
def test_multiscale(k, m):
    mb = multiscale_bases(k, m)
    assert mb.shape == (k // 2 * m, k, k) and mb.dtype == np.float64
    for i in range(1, k // 2 + 1):
        pad = k // 2 - i
        block = mb[(i - 1) * m:i * m]
        np.testing.assert_array_equal(block[:, pad:k - pad, pad:k - pad], fourier_bessel(i)[:m])
        inner = np.zeros((k, k), bool)
        inner[pad:k - pad, pad:k - pad] = True
        assert np.all(block[:, ~inner] == 0)


@pytest.mark.parametrize("k", [0, 1, 2, 4, 6, -3, 3.0, True])
def test_multiscale_bad_kernel(k):
    with pytest.raises(ValueError, match="odd integer >= 3"):
        multiscale_bases(k, 6)


@pytest.mark.parametrize("m", [0, 7, -1])
def test_multiscale_bad_num_bases(m):
    with pytest.raises(ValueError, match="num_bases"):
        multiscale_bases(5, m)


@pytest.mark.parametrize("L", [0, -1, 1.5])
def test_fourier_bessel_bad_L(L):
    with pytest.raises(ValueError):
        fourier_bessel(L)
