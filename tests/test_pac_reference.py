"""PAC references (torch_bridge.reference.pac) against a transcription of NVlabs/pacnet's pac.py.

The transcription below computes the official ``native_impl`` path pixel by pixel: every
tap reads the input at an explicit index (no unfold), the transposed windows come from the
zero-insertion rule, smoothing for dilation 1 is the official crop/pad convolution. It carries
the documented fixes only where the official result is undefined (NaN for windows without a
valid tap; a crash for smoothing with dilation > 1, where the smoothing is centred on the
centre tap) and computes transposed ``shared_filters`` per channel (its native path).
The sweeps run the references directly (many shapes); gradchecks go through
``torch_bridge.functional`` on one small shape.
"""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from torch_bridge import functional as PF
from torch_bridge.reference.pac import (nd2col, pacconv2d_reference, pacconv_transpose2d_reference,
                                        packernel2d_reference, pacpool2d_reference)

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (conftest)


# --------------------------------------------------------------------------------------------
# The transcription.

def _src(out_len, tap, size, k, s, p, d, transposed=False):
    """Input index read by each output position at ``tap``, and whether it is a real pixel."""
    o = torch.arange(out_len)
    if transposed:  # zero-inserted grid, padded by (k-1)*d - p, read with stride 1
        z = o + tap * d - ((k - 1) * d - p)
        valid = (z >= 0) & (z % s == 0) & (z // s < size)
        return (z // s).clamp(0, size - 1), valid
    i = o * s + tap * d - p
    return i.clamp(0, size - 1), (i >= 0) & (i < size)


def _gather(x, rows, cols):
    (iy, vy), (ix, vx) = rows, cols
    return x[:, :, iy][:, :, :, ix] * (vy[:, None] & vx[None, :]).to(x.dtype)


def _official_smooth_centre(g, w, k, s, p, out):
    """The official smoothing (dilation 1): crop/pad so the smoothing window is centred."""
    B, C, H, W = g.shape
    sp = [int(p - (k - w.shape[-1]) / 2)] * 2
    crop = [max(0, -v) for v in sp]
    x = g.reshape(-1, 1, H, W)[:, :, crop[0]:H - crop[0], crop[1]:W - crop[1]]
    sm = F.conv2d(x, w, stride=s, padding=[max(0, v) for v in sp])
    return sm.reshape(B, C, *out)


def _centred_smooth_centre(g, w, k, s, p, d, out):
    """Smoothing centred on the centre tap, for any dilation (our fix)."""
    B, C, H, W = g.shape
    sk, c = w.shape[-1], k // 2
    acc = 0
    for a, b in itertools.product(range(sk), repeat=2):
        rows = _src(out[0], 0, H, 1, s, p - c * d - a + sk // 2, 1)
        cols = _src(out[1], 0, W, 1, s, p - c * d - b + sk // 2, 1)
        acc = acc + w[0, 0, a, b] * _gather(g, rows, cols)
    return acc


def official_packernel(g, mask, k, s, p, op, d, kernel_type="gaussian", smooth=None, alpha=None, lam=None,
                       channel_wise=False, normalize=False, transposed=False):
    B, C, H, W = g.shape
    if transposed:
        in_hw = [(o - op - 1 - (k - 1) * d + 2 * p) // s + 1 for o in (H, W)]
        ks, kp = 1, (k - 1) * d // 2
    else:
        in_hw, ks, kp = [H, W], s, p
    out = [(n + 2 * kp - d * (k - 1) - 1) // ks + 1 for n in (H, W)]

    def tap(u, v):
        return _gather(g, _src(out[0], u, H, k, ks, kp, d), _src(out[1], v, W, k, ks, kp, d))

    if smooth is None:
        fi = tap(k // 2, k // 2)
    elif d == 1:
        fi = _official_smooth_centre(g, smooth, k, ks, kp, out)
    else:
        fi = _centred_smooth_centre(g, smooth, k, ks, kp, d, out)
    K = g.new_zeros(B, C if channel_wise else 1, k, k, *out)
    for u, v in itertools.product(range(k), repeat=2):
        diff = tap(u, v) - fi
        if "_asym" in kernel_type:
            diff = diff.clamp(min=0)
        d2 = diff ** 2 if channel_wise else (diff ** 2).sum(1, keepdim=True)
        if kernel_type == "gaussian":
            K[:, :, u, v] = torch.exp(-0.5 * d2)
        else:
            K[:, :, u, v] = alpha.view(1, -1, 1, 1) + (d2 + 1e-4) ** (0.5 * lam.view(1, -1, 1, 1))
    if mask is None and not normalize:
        return K, None

    def window(x):  # x at the input resolution, unfolded the official way (nd2col)
        taps = [[_gather(x, _src(out[0], u, in_hw[0], k, s, p, d, transposed),
                         _src(out[1], v, in_hw[1], k, s, p, d, transposed)) for v in range(k)] for u in range(k)]
        return torch.stack([torch.stack(row, 2) for row in taps], 2)

    pattern = window(g.new_ones(1, 1, *in_hw))
    m = pattern if mask is None else window(mask.to(g.dtype))
    K = K * m
    if normalize:
        norm = K.sum((2, 3), keepdim=True)
    else:
        psum = pattern.sum((2, 3), keepdim=True)
        norm = torch.where(psum > 0, m.sum((2, 3), keepdim=True) / psum.clamp(min=1), torch.zeros_like(psum))
    empty = norm == 0
    K = K / (norm + empty.to(K.dtype))
    return K, (None if mask is None else (~empty).to(K.dtype))


def official_pacconv(x, K, w, b, s, p, d, shared, transposed=False):
    B, C, H, W = x.shape
    k = w.shape[-1]
    out = K.shape[-2:]
    acc = 0
    for u, v in itertools.product(range(k), repeat=2):
        xin = _gather(x, _src(out[0], u, H, k, s, p, d, transposed), _src(out[1], v, W, k, s, p, d, transposed))
        xin = xin * K[:, :, u, v]
        if shared:
            acc = acc + w[0, 0, u, v] * xin
        else:
            wt = w[:, :, u, v].t() if transposed else w[:, :, u, v]  # (C_out, C_in)
            acc = acc + torch.einsum("oc,bcyx->boyx", wt, xin)
    return acc if b is None else acc + b.view(1, -1, 1, 1)


def official_pacpool(x, K, k, s, p, d):
    B, C, H, W = x.shape
    out = K.shape[-2:]
    return sum(_gather(x, _src(out[0], u, H, k, s, p, d), _src(out[1], v, W, k, s, p, d)) * K[:, :, u, v]
               for u, v in itertools.product(range(k), repeat=2))


# --------------------------------------------------------------------------------------------
# Geometry sweeps: the references against the transcription.

def _geometries():
    for k, s, d in itertools.product((1, 3, 5), (1, 2), (1, 2)):
        if k == 1 and d == 2:
            continue
        for p in range((k - 1) * d // 2 + 2):
            yield k, s, d, p


GEOMS = list(_geometries())
C = 3


def _variants(g):
    """(kernel_type, smoothing name, smooth_kernel, alpha, lambda, channel_wise, normalize, mask?)"""
    a, lam = torch.tensor(0.7, dtype=DT), torch.tensor(1.3, dtype=DT)
    a_c, lam_c = torch.tensor([0.2, 0.5, 1.1], dtype=DT), torch.tensor([0.8, 1.0, 2.0], dtype=DT)
    gauss = (torch.tensor([.25, .5, .25], dtype=DT).view(-1, 1) * torch.tensor([.25, .5, .25], dtype=DT))[None, None]
    full3 = torch.rand(1, 1, 3, 3, dtype=DT) / 4
    avg5 = torch.full((1, 1, 5, 5), 1 / 25, dtype=DT)
    yield "gaussian", "none", None, None, None, False, False, False
    yield "inv_0.5_1", "none", None, a, lam, False, False, False
    yield "inv_0.5_1_asym", "none", None, a, lam, False, False, False
    yield "inv_0.3_2_fixed", "none", None, torch.tensor(0.3, dtype=DT), torch.tensor(2.0, dtype=DT), False, False, False
    yield "gaussian", "none", None, None, None, True, False, False
    yield "inv_0.5_1_asym", "none", None, a_c, lam_c, True, False, True
    yield "gaussian", "gaussian", gauss, None, None, False, False, False
    yield "inv_0.5_1", "average_3", torch.full((1, 1, 3, 3), 1 / 9, dtype=DT), a, lam, False, True, False
    yield "gaussian", "full_3", full3, None, None, False, False, True
    yield "gaussian", "none", None, None, None, False, True, False
    yield "gaussian", "none", None, None, None, False, False, True
    yield "inv_0.5_1", "none", None, a, lam, False, True, True
    yield "gaussian", "average_5", avg5, None, None, True, True, True


@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "transposed"])
@pytest.mark.parametrize("k,s,d,p", GEOMS)
def test_packernel_matches_official(k, s, d, p, transposed):
    op = s - 1 if transposed else 0
    in_hw = (4, 5) if transposed else (9, 11)
    g_hw = [(n - 1) * s - 2 * p + d * (k - 1) + 1 + op for n in in_hw] if transposed else in_hw
    g = torch.randn(1, C, *g_hw, dtype=DT)
    for kt, st, sk, a, lam, cw, norm, with_mask in _variants(g):
        mask = (torch.rand(1, 1, *in_hw) > 0.3).to(DT) if with_mask else None
        args = dict(kernel_size=k, stride=s, padding=p, output_padding=op, dilation=d, kernel_type=kt,
                    smooth_kernel_type=st, smooth_kernel=sk, inv_alpha=a, inv_lambda=lam, channel_wise=cw,
                    normalize_kernel=norm, transposed=transposed)
        K, m = packernel2d_reference(g, mask, **args)
        K0, m0 = official_packernel(g, mask, k, s, p, op, d, kt, sk, a, lam, cw, norm, transposed)
        where = f"{kt} {st} cw={cw} norm={norm} mask={with_mask}"
        assert K.shape == K0.shape, where
        torch.testing.assert_close(K, K0, msg=where)
        assert torch.isfinite(K).all(), where
        if with_mask:
            torch.testing.assert_close(m, m0, msg=where)
        else:
            assert m is None


CONV_GEOMS = [(k, s, d, p) for (k, s, d, p) in GEOMS if p in (0, (k - 1) * d // 2 + 1)]


@pytest.mark.parametrize("k,s,d,p", CONV_GEOMS)
def test_pacconv2d_matches_official(k, s, d, p):
    x = torch.randn(2, 3, 9, 11, dtype=DT)
    out_hw = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n in (9, 11)]
    K = torch.rand(2, 1, k, k, *out_hw, dtype=DT)
    for shared, bias in ((False, True), (True, False), (True, True)):
        w = torch.randn(*((1, 1) if shared else (4, 3)), k, k, dtype=DT)
        b = torch.randn(3 if shared else 4, dtype=DT) if bias else None
        out = pacconv2d_reference(x, K, w, b, s, p, d, shared)
        torch.testing.assert_close(out, official_pacconv(x, K, w, b, s, p, d, shared))


@pytest.mark.parametrize("k,s,d,p", CONV_GEOMS)
def test_pacconv_transpose2d_matches_official(k, s, d, p):
    x = torch.randn(2, 3, 4, 5, dtype=DT)
    op = s - 1
    out_hw = [(n - 1) * s - 2 * p + d * (k - 1) + 1 + op for n in (4, 5)]
    K = torch.rand(2, 1, k, k, *out_hw, dtype=DT)
    for shared, bias in ((False, True), (True, False), (True, True)):
        w = torch.randn(*((1, 1) if shared else (3, 4)), k, k, dtype=DT)
        b = torch.randn(3 if shared else 4, dtype=DT) if bias else None
        out = pacconv_transpose2d_reference(x, K, w, b, s, p, op, d, shared)
        assert out.shape[-2:] == tuple(out_hw)
        torch.testing.assert_close(out, official_pacconv(x, K, w, b, s, p, d, shared, transposed=True))


@pytest.mark.parametrize("k,s,d,p", CONV_GEOMS)
def test_pacpool2d_matches_official(k, s, d, p):
    x = torch.randn(2, 3, 9, 11, dtype=DT)
    out_hw = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n in (9, 11)]
    for kch in (1, 3):
        K = torch.rand(2, kch, k, k, *out_hw, dtype=DT)
        torch.testing.assert_close(pacpool2d_reference(x, K, k, s, p, d), official_pacpool(x, K, k, s, p, d))


# --------------------------------------------------------------------------------------------
# Identities and the fixed bugs.

def test_unit_kernel_is_plain_convolution():
    x = torch.randn(2, 3, 7, 9, dtype=DT)
    w, b = torch.randn(4, 3, 3, 3, dtype=DT), torch.randn(4, dtype=DT)
    K = torch.ones(2, 1, 3, 3, 4, 5, dtype=DT)
    torch.testing.assert_close(pacconv2d_reference(x, K, w, b, 2, 1, 1), F.conv2d(x, w, b, 2, 1, 1))
    torch.testing.assert_close(pacpool2d_reference(x, K, 3, 2, 1),
                               F.conv2d(x, torch.ones(3, 1, 3, 3, dtype=DT), None, 2, 1, groups=3))
    xt, wt = torch.randn(2, 3, 4, 5, dtype=DT), torch.randn(3, 4, 3, 3, dtype=DT)
    Kt = torch.ones(2, 1, 3, 3, 8, 10, dtype=DT)
    # the transposed PAC uses its weight unflipped: conv_transpose2d of the flipped weight
    torch.testing.assert_close(pacconv_transpose2d_reference(xt, Kt, wt, b, 2, 1, 1),
                               F.conv_transpose2d(xt, wt.flip(2, 3), b, 2, 1, 1))


def test_transposed_shared_filters_per_channel():
    x = torch.randn(1, 3, 4, 5, dtype=DT)
    w = torch.randn(1, 1, 3, 3, dtype=DT)
    K = torch.ones(1, 1, 3, 3, 7, 9, dtype=DT)
    out = pacconv_transpose2d_reference(x, K, w, None, 2, 1, shared_filters=True)
    expected = F.conv_transpose2d(x, w.flip(2, 3).expand(3, 1, 3, 3), None, 2, 1, groups=3)
    torch.testing.assert_close(out, expected)  # the official Function sums the channels instead


def test_empty_windows_are_zero_not_nan():
    g = torch.randn(1, 2, 5, 6, dtype=DT)
    mask = torch.ones(1, 1, 5, 6, dtype=DT)
    K, m = packernel2d_reference(g, mask, kernel_size=1, padding=1)  # border windows lie in the padding
    assert torch.isfinite(K).all()
    assert m[..., 0, :].sum() == 0 and m[..., 1:-1, 1:-1].min() == 1
    # transposed, stride 2 and dilation 2: half the windows meet no input pixel
    K, m = packernel2d_reference(torch.randn(1, 2, 7, 9, dtype=DT), torch.ones(1, 1, 4, 5), kernel_size=3,
                                 stride=2, padding=2, dilation=2, transposed=True)
    assert torch.isfinite(K).all() and 0 < m.mean() < 1
    assert (K.sum((2, 3)) * (1 - m)).abs().max() == 0


def test_output_mask_and_mask_dtypes():
    g = torch.randn(1, 2, 7, 9, dtype=DT)
    mask = torch.rand(1, 1, 7, 9) > 0.5
    K_bool, m_bool = packernel2d_reference(g, mask, kernel_size=3, padding=1)
    K_float, m_float = packernel2d_reference(g, mask.to(DT), kernel_size=3, padding=1)
    torch.testing.assert_close(K_bool, K_float)
    assert m_bool.dtype == DT and m_bool.shape == (1, 1, 1, 1, 7, 9)
    torch.testing.assert_close(m_bool, m_float)
    # the mask keeps its gradient (the official torch.tensor(mask) detached it)
    soft = torch.rand(1, 1, 7, 9, dtype=DT, requires_grad=True)
    packernel2d_reference(g, soft, kernel_size=3, padding=1)[0].sum().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0


def test_float32_matches_float64():
    g = torch.randn(1, 3, 7, 9, dtype=DT)
    mask = (torch.rand(1, 1, 7, 9) > 0.3).to(DT)
    args = dict(kernel_size=3, stride=2, padding=1, dilation=1, kernel_type="inv_0.5_1", normalize_kernel=True,
                smooth_kernel_type="average_3", smooth_kernel=torch.full((1, 1, 3, 3), 1 / 9, dtype=DT))
    K64, m64 = packernel2d_reference(g, mask, **args)
    args["smooth_kernel"] = args["smooth_kernel"].float()
    K32, m32 = packernel2d_reference(g.float(), mask.float(), **args)
    assert K32.dtype == torch.float32
    torch.testing.assert_close(K32, K64.float(), rtol=1e-5, atol=1e-6)
    x, w = torch.randn(1, 2, 7, 9, dtype=DT), torch.randn(3, 2, 3, 3, dtype=DT)
    out64 = pacconv2d_reference(x, K64, w, None, 2, 1)
    torch.testing.assert_close(pacconv2d_reference(x.float(), K32, w.float(), None, 2, 1), out64.float(),
                               rtol=1e-5, atol=1e-5)


def test_nd2col_transposed_matches_official_construction():
    x = torch.randn(1, 2, 4, 5, dtype=DT)
    k, s, p, op, d = 3, 2, 1, 1, 1
    z = F.conv_transpose2d(x, torch.ones(2, 1, 1, 1, dtype=DT), stride=s, groups=2)
    pad = (k - 1) * d - p
    z = F.pad(z, (pad, pad + op, pad, pad + op))
    expected = F.unfold(z, k, dilation=d).view(1, 2, k, k, 8, 10)
    torch.testing.assert_close(nd2col(x, k, s, p, op, d, transposed=True), expected)


# --------------------------------------------------------------------------------------------
# Argument checks.

def test_bad_arguments_raise():
    g = torch.randn(1, 2, 7, 9)
    with pytest.raises(ValueError, match="odd"):
        packernel2d_reference(g, kernel_size=2)
    with pytest.raises(ValueError, match="kernel_size"):
        packernel2d_reference(g)  # the official default 0
    with pytest.raises(ValueError, match="4-D"):
        packernel2d_reference(g[0], kernel_size=3)
    with pytest.raises(ValueError, match="kernel_type"):
        packernel2d_reference(g, kernel_size=3, kernel_type="inv_0.5")
    with pytest.raises(ValueError, match="smooth_kernel_type"):
        packernel2d_reference(g, kernel_size=3, smooth_kernel_type="full_4", smooth_kernel=torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="needs a smooth_kernel"):
        packernel2d_reference(g, kernel_size=3, smooth_kernel_type="gaussian")
    with pytest.raises(ValueError, match="mask must have shape"):
        packernel2d_reference(g, torch.ones(1, 1, 7, 8), kernel_size=3)
    with pytest.raises(ValueError, match="channel_wise"):
        packernel2d_reference(g, kernel_size=3, kernel_type="inv_0.5_1", inv_alpha=torch.ones(2))
    with pytest.raises(ValueError, match="not the output size"):
        packernel2d_reference(g, kernel_size=3, stride=3, padding=1, transposed=True, normalize_kernel=True)
    with pytest.raises(ValueError, match="no output pixel"):
        packernel2d_reference(g, kernel_size=11)
    x = torch.randn(1, 2, 7, 9)
    K = torch.rand(1, 1, 3, 3, 7, 9)
    w = torch.randn(4, 2, 3, 3)
    with pytest.raises(ValueError, match="kernel must have shape"):
        pacconv2d_reference(x, K.expand(1, 2, 3, 3, 7, 9), w, padding=1)
    with pytest.raises(ValueError, match="kernel must have shape"):
        pacconv2d_reference(x, K, w)  # padding 0: the kernel is for 5 x 7
    with pytest.raises(ValueError, match="C_in = 2"):
        pacconv2d_reference(x, K, torch.randn(4, 3, 3, 3), padding=1)
    with pytest.raises(ValueError, match="shared_filters"):
        pacconv2d_reference(x, K, w, padding=1, shared_filters=True)
    with pytest.raises(ValueError, match="bias"):
        pacconv2d_reference(x, K, w, torch.zeros(3), padding=1)
    with pytest.raises(TypeError, match="dtype"):
        pacconv2d_reference(x, K.double(), w, padding=1)
    with pytest.raises(ValueError, match="stride"):
        pacconv2d_reference(x, K, w, stride=0)
    with pytest.raises(ValueError, match="kernel must have shape"):
        pacpool2d_reference(x, torch.rand(1, 3, 3, 3, 7, 9), 3, padding=1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        pacpool2d_reference(x.numpy(), K, 3, padding=1)


# --------------------------------------------------------------------------------------------
# Gradients, through torch_bridge.functional (small float64 shapes).

def _g(*shape):
    return torch.randn(*shape, dtype=DT, requires_grad=True)


def test_gradcheck_packernel2d():
    g, sk = _g(1, 2, 5, 6), torch.rand(1, 1, 3, 3, dtype=DT, requires_grad=True)
    a, lam = torch.tensor(0.5, dtype=DT, requires_grad=True), torch.tensor(1.2, dtype=DT, requires_grad=True)
    mask = (torch.rand(1, 1, 5, 6) > 0.3).to(DT)

    def gaussian_masked(g):
        return PF.packernel2d(g, mask, kernel_size=3, padding=1)

    def inv_smoothed_normalized(g, sk, a, lam):
        return PF.packernel2d(g, None, kernel_size=3, stride=2, padding=1, kernel_type="inv_0.5_1",
                              smooth_kernel_type="full_3", smooth_kernel=sk, inv_alpha=a, inv_lambda=lam,
                              normalize_kernel=True)[0]

    def asym_channel_wise(g):
        return PF.packernel2d(g, None, kernel_size=3, padding=1, kernel_type="inv_0.5_1_asym_fixed",
                              channel_wise=True)[0]

    def transposed(g):
        return PF.packernel2d(g, mask[..., :3, :3], kernel_size=3, stride=2, padding=1, output_padding=(0, 1),
                              transposed=True,
                              normalize_kernel=True)[0]

    assert torch.autograd.gradcheck(lambda g: gaussian_masked(g)[0], (g,))
    assert torch.autograd.gradcheck(inv_smoothed_normalized, (g, sk, a, lam))
    assert torch.autograd.gradcheck(asym_channel_wise, (g,))
    assert torch.autograd.gradcheck(transposed, (g,))


def test_gradcheck_pacconv2d():
    x, K, w, b = _g(1, 2, 5, 6), torch.rand(1, 1, 3, 3, 3, 3, dtype=DT, requires_grad=True), _g(3, 2, 3, 3), _g(3)
    assert torch.autograd.gradcheck(lambda *t: PF.pacconv2d(*t, stride=2, padding=1), (x, K, w, b))
    ws = _g(1, 1, 3, 3)
    assert torch.autograd.gradcheck(lambda x, K, w: PF.pacconv2d(x, K, w, None, 2, 1, shared_filters=True),
                                    (x, K, ws))


def test_gradcheck_pacconv_transpose2d():
    x, K, w, b = _g(1, 2, 3, 3), torch.rand(1, 1, 3, 3, 5, 6, dtype=DT, requires_grad=True), _g(2, 3, 3, 3), _g(3)
    assert torch.autograd.gradcheck(lambda *t: PF.pacconv_transpose2d(*t, 2, 1, (0, 1)), (x, K, w, b))
    ws = _g(1, 1, 3, 3)
    assert torch.autograd.gradcheck(
        lambda x, K, w: PF.pacconv_transpose2d(x, K, w, None, 2, 1, (0, 1), shared_filters=True), (x, K, ws))


def test_gradcheck_pacpool2d():
    x = _g(1, 2, 5, 6)
    for kch in (1, 2):
        K = torch.rand(1, kch, 3, 3, 3, 3, dtype=DT, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, K: PF.pacpool2d(x, K, 3, 2, 1), (x, K))
