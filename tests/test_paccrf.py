"""PacCRF / PacCRFLoose (torch_bridge.nn.paccrf): the official state_dict, the mean-field step
written out by hand, the compiled path against it, gradients, and the helpers.

Few distinct shapes on purpose: the compiled path builds a kernel per new shape."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from torch_bridge.nn import PacConv2d, PacCRF, PacCRFLoose, create_position_feats, create_YXRGB

C, H, W = 3, 5, 6  # labels, and an H x W with neither side a multiple of blur 2 (ceil padding)

# one kernel of each kind: 4d, 2d + spatial filter, potts DenseCRF (fixed window, blur 2),
# na (plain conv, dilated), potts + spatial filter (5x5)
KERNELS = [dict(kernel_size=3),
           dict(kernel_size=3, compat_type="2d"),
           dict(kernel_size=3, compat_type="potts", spatial_filter=False, blur=2, pairwise_weight=0.5),
           dict(kernel_size=3, compat_type="na", dilation=2),
           dict(kernel_size=5, compat_type="potts")]

# the official PacCRF's state_dict for KERNELS (key: shape); messengers.2.weight is a buffer
OFFICIAL_KEYS = {
    "unary_weight": (),
    "messengers.0.weight": (C, C, 3, 3),
    "messengers.1.weight": (1, 1, 3, 3),
    "messengers.2.weight": (1, 1, 3, 3),
    "messengers.3.weight": (C, C, 3, 3),
    "messengers.4.weight": (1, 1, 5, 5),
    "compat.1.weight": (C, C, 1, 1),
    **{f"pairwise_weights.{i}": () for i in range(5)},
}


def _shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_state_dict_matches_official():
    crf = PacCRF(C, 2, native_impl=True, pairwise_kernels=KERNELS)
    assert _shapes(crf) == OFFICIAL_KEYS
    assert "messengers.2.weight" not in dict(crf.named_parameters())  # the fixed DenseCRF window
    fixed = PacCRF(C, 2, native_impl=True, fixed_weighting=True, pairwise_kernels=KERNELS[:1])
    assert _shapes(fixed) == {"messengers.0.weight": (C, C, 3, 3), "pairwise_weights.0": ()}
    assert fixed.unary_weight == 1.0
    loose = PacCRFLoose(C, 2, native_impl=True, pairwise_kernels=KERNELS)
    assert _shapes(loose) == {f"steps.{s}.{k}": v for s in range(2) for k, v in OFFICIAL_KEYS.items()}
    assert "pairwise_kernels=(4ds_3_1_1, 2ds_3_1_1, 0d_3_1_2, nas_3_2_1, 0ds_5_1_1)" in repr(crf)


def test_initialisation():
    crf = PacCRF(C, 1, perturbed_init=False, native_impl=True, unary_weight=0.8, pairwise_kernels=KERNELS)
    r = torch.arange(-1.0, 2.0)
    g = torch.exp(-0.5 * r * r / 0.75 ** 2)  # the official Gaussian, sigma = k/4, sum 1, times k*k
    gauss = (g.view(-1, 1) * g) / (g.sum() ** 2) * 9
    gauss[1, 1] = 0
    potts = 1.0 - torch.eye(C)
    torch.testing.assert_close(crf.messengers[0].weight, potts.view(C, C, 1, 1) * gauss)
    torch.testing.assert_close(crf.messengers[1].weight[0, 0], gauss)
    torch.testing.assert_close(crf.compat[1].weight[:, :, 0, 0], potts)
    window = torch.ones(3, 3)
    window[1, 1] = 0
    torch.testing.assert_close(crf.messengers[2].weight[0, 0], window)
    assert crf.compat[0] is None and crf.compat[2] is None
    assert [w.item() for w in crf.pairwise_weights] == [1.0, 1.0, -0.5, 1.0, -1.0]  # potts negated
    assert crf._use_pairwise_weights == [False, False, True, False, False]
    assert crf.unary_weight.item() == pytest.approx(0.8)
    perturbed = PacCRF(C, 1, native_impl=True, pairwise_kernels=KERNELS[:2])
    dev = (perturbed.messengers[0].weight - crf.messengers[0].weight).abs()
    assert 0 < dev.max() <= 5e-4 + 1e-7


# ---------------------------------------------------------------------------- written-out step
def _gauss_kernel(f, k, d):
    """K[b, u, v, y, x] = exp(-|f(y + (u-r)d, x + (v-r)d) - f(y, x)|^2 / 2), f zero-padded."""
    r = k // 2
    fp = F.pad(f, (r * d,) * 4)
    h, w = f.shape[-2:]
    K = torch.empty(f.shape[0], k, k, h, w, dtype=f.dtype)
    for u in range(k):
        for v in range(k):
            diff = fp[:, :, u * d:u * d + h, v * d:v * d + w] - f
            K[:, u, v] = torch.exp(-0.5 * diff.pow(2).sum(1))
    return K


def _pac(q, K, weight, d, shared):
    """sum over taps (and input labels unless shared) of weight * K * zero-padded q."""
    k = weight.shape[-1]
    r = k // 2
    qp = F.pad(q, (r * d,) * 4)
    h, w = q.shape[-2:]
    out = torch.zeros_like(q)
    for u in range(k):
        for v in range(k):
            tap = K[:, None, u, v] * qp[:, :, u * d:u * d + h, v * d:v * d + w]
            if shared:
                out += weight[0, 0, u, v] * tap
            else:
                out += torch.einsum("oc,bcyx->boyx", weight[:, :, u, v], tap)
    return out


def _blurred(x, b):
    """avg-pool by b covering every pixel: ceil padding, (b - size % b) % b split (first side +1)."""
    pad = tuple(((b - s % b) % b + 1) // 2 for s in x.shape[-2:])
    return F.avg_pool2d(x, b, padding=pad, count_include_pad=False), pad


def _mean_field_step(crf, unary, logQ, feat):
    """One mean-field step of ``crf`` written out: logQ' = uw * unary - sum_i w_i * msg_i."""
    q = torch.softmax(logQ, 1)
    out = unary * crf.unary_weight.item()
    for i, spec in enumerate(KERNELS):
        k, d, b = spec["kernel_size"], spec.get("dilation", 1), spec.get("blur", 1)
        ctype = spec.get("compat_type", "4d")
        weight = crf.messengers[i].weight
        qb, pad = _blurred(q, b) if b > 1 else (q, (0, 0))
        if ctype == "na":
            msg = F.conv2d(qb, weight, padding=d * (k // 2), dilation=d)
        else:
            fb = _blurred(feat, b)[0] if b > 1 else feat
            msg = _pac(qb, _gauss_kernel(fb, k, d), weight, d, shared=ctype != "4d")
        if ctype == "2d":
            msg = torch.einsum("oc,bcyx->boyx", crf.compat[i].weight[:, :, 0, 0], msg)
        if b > 1:
            msg = F.interpolate(msg, scale_factor=b, mode="bilinear", align_corners=False)
            msg = msg[:, :, pad[0]:pad[0] + H, pad[1]:pad[1] + W]
        # only the DenseCRF potts kernel uses its (learnable) pairwise weight; the others the initial one
        pw = crf.pairwise_weights[i].item() if crf._use_pairwise_weights[i] else crf.init_pairwise_weights[i]
        out = out - pw * msg
    return out


def _crf_and_inputs(native_impl, steps=2, final_output="log_softmax", cls=PacCRF):
    crf = cls(C, steps, final_output=final_output, native_impl=native_impl, pairwise_kernels=KERNELS).double()
    gen = torch.Generator().manual_seed(1)
    unary = torch.randn(2, C, H, W, dtype=torch.float64, generator=gen)
    feat = torch.randn(2, 2, H, W, dtype=torch.float64, generator=gen)
    return crf, unary, feat


def _perturb(crf):
    """Move the weights away from their init (and every pairwise weight from its initial value,
    to see which ones are used)."""
    with torch.no_grad():
        crf.unary_weight.fill_(0.7)
        for p in crf.pairwise_weights:
            p.mul_(1.5)
        for m in crf.messengers:
            if isinstance(m.weight, torch.nn.Parameter):
                m.weight.add_(0.05 * torch.randn_like(m.weight))


@pytest.mark.parametrize("native_impl", [True, False], ids=["native", "compiled"])
def test_two_steps_match_written_out(native_impl):
    crf, unary, feat = _crf_and_inputs(native_impl)
    _perturb(crf)
    logQ = _mean_field_step(crf, unary, unary, feat)
    logQ = _mean_field_step(crf, unary, logQ, feat)
    with torch.no_grad():
        torch.testing.assert_close(crf(unary, feat), F.log_softmax(logQ, 1), rtol=1e-10, atol=1e-10)
        # per-kernel guidance list (the 'na' entry unused) == shared guidance
        torch.testing.assert_close(crf(unary, [feat, feat, feat, None, feat]), crf(unary, feat))


def test_final_outputs_edge_kernel_and_start():
    crf, unary, feat = _crf_and_inputs(True, steps=1, final_output="log_Q")
    logQ0 = unary.flip(1)
    with torch.no_grad():
        out = crf(unary, feat, logQ=logQ0)
        torch.testing.assert_close(out, _mean_field_step(crf, unary, logQ0, feat), rtol=1e-10, atol=1e-10)
        crf.final_output = "softmax"
        torch.testing.assert_close(crf(unary, feat, logQ=logQ0), torch.softmax(out, 1))
        # precomputed kernels replace the guidance
        kernels = [None if isinstance(m, torch.nn.Conv2d) else m.compute_kernel(feat)[0] for m in crf.messengers]
        kernels[2] = crf.messengers[2].compute_kernel(_blurred(feat, 2)[0])[0]
        torch.testing.assert_close(crf(unary, None, kernels, logQ0), torch.softmax(out, 1))
        crf.num_steps = 0
        torch.testing.assert_close(crf(unary, feat), torch.softmax(unary, 1))


def test_loose_equals_tied_when_steps_share_weights():
    tied, unary, feat = _crf_and_inputs(True, steps=2)
    _perturb(tied)
    loose = PacCRFLoose(C, 2, final_output="log_softmax", native_impl=True, pairwise_kernels=KERNELS).double()
    for step in loose.steps:  # the official's trick for loading a tied checkpoint into a loose CRF
        step.load_state_dict(tied.state_dict())
    with torch.no_grad():  # also runs the 'na' kernel, on which the official PacCRFLoose crashed
        torch.testing.assert_close(loose(unary, feat), tied(unary, feat), rtol=1e-12, atol=1e-12)


def test_gradients_flow_compiled():
    crf, unary, feat = _crf_and_inputs(False)  # float64: the forward kernels of the test above
    unary.requires_grad_()
    feat.requires_grad_()
    crf(unary, feat).logsumexp(1).mean().backward()
    for t in (unary, feat):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    grads = {n: p.grad for n, p in crf.named_parameters()}
    used = {"unary_weight", "messengers.0.weight", "messengers.1.weight", "messengers.3.weight",
            "messengers.4.weight", "compat.1.weight", "pairwise_weights.2"}
    assert {n for n, g in grads.items() if g is not None} == used  # the official's unused pairwise weights
    assert all(torch.isfinite(grads[n]).all() for n in used)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="compat_type"):
        PacCRF(C, 1, pairwise_kernels=dict(compat_type="3d"))
    with pytest.raises(ValueError, match="kernel_size"):
        PacCRF(C, 1, pairwise_kernels=dict(kernel_size=4))
    with pytest.raises(ValueError, match="blur"):
        PacCRF(C, 1, pairwise_kernels=dict(blur=0))
    with pytest.raises(ValueError, match="final_output"):
        PacCRF(C, 1, final_output="Q")
    crf = PacCRF(C, 1, native_impl=True)
    crf.add_pairwise_kernel(compat_type="potts", spatial_filter=False, pairwise_weight=2.0)
    assert crf.num_pairwise_kernels() == 1 and isinstance(crf.messengers[0], PacConv2d)
    assert crf.messengers[0].shared_filters and crf.init_pairwise_weights == [-2.0]


# ---------------------------------------------------------------------------- features
def test_position_and_yxrgb_features():
    pos = create_position_feats((2, 3), scales=(2.0, 4.0), bs=2)
    assert pos.shape == (2, 2, 2, 3) and pos.dtype == torch.float32
    torch.testing.assert_close(pos[1, 0], torch.tensor([[0.0] * 3, [0.5] * 3]))
    torch.testing.assert_close(pos[0, 1], torch.tensor([[0.0, 0.25, 0.5]] * 2))

    img = torch.rand(2, 3, 2, 3, dtype=torch.float64)
    scales = torch.tensor([2.0, 4.0, 0.5, 0.5, 0.5], dtype=torch.float64, requires_grad=True)
    feats = create_YXRGB(img, scales=scales)
    assert feats.shape == (2, 5, 2, 3) and feats.dtype == torch.float64  # the official forced float32
    torch.testing.assert_close(feats[:, :2], pos.double())
    torch.testing.assert_close(feats[:, 2:], img * 2)
    feats.sum().backward()
    assert scales.grad is not None and (scales.grad != 0).all()  # learnable scales (ModelWithCrf)
    torch.testing.assert_close(create_YXRGB(img, 2.0, 0.5)[:, 2:], img * 2)
    with pytest.raises(ValueError):
        create_YXRGB(img, yx_scale=1.0, scales=scales)
    assert math.isclose(float(create_position_feats((3,), 2.0)[0, 0, 2]), 1.0)


@pytest.mark.parametrize("native_impl", [False, True])
@pytest.mark.parametrize("cls", [PacCRF, PacCRFLoose])
def test_empty_batch_gives_empty_output_and_zero_gradients(cls, native_impl, no_kernels):
    crf = cls(C, 2, native_impl=native_impl, pairwise_kernels=KERNELS)
    unary = torch.randn(0, C, H, W, requires_grad=True)
    feat = torch.randn(0, 4, H, W, requires_grad=True)
    out = crf(unary, feat)
    assert out.shape == (0, C, H, W)
    out.sum().backward()
    assert unary.grad.shape == unary.shape and feat.grad.shape == feat.shape
    for name, p in crf.named_parameters():  # unused pairwise weights get none (module docstring)
        assert p.grad is None or (p.grad.shape == p.shape and not p.grad.any()), name
