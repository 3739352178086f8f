"""PAC joint-upsampling models (torch_bridge.models.pac_upsample): the official state_dicts,
parameter counts, shapes for factors 4/8/16, the compiled path against the reference, gradients."""
from __future__ import annotations

import pytest
import torch

from torch_bridge.models import MODELS, count_parameters, get_model
from torch_bridge.models.pac_upsample import (DJIF, Bilinear, JointBilateral, PacJointUpsample,
                                              PacJointUpsampleLite)
from torch_bridge.nn import PacConvTranspose2d

# documented counts (models/__init__.py and pac_upsample.py), guide_channels=3
PARAMS = {("pac_joint_upsample", 4): 183_489, ("pac_joint_upsample", 8): 221_937,
          ("pac_joint_upsample", 16): 260_385, ("pac_joint_upsample_lite", 4): 55_509,
          ("pac_joint_upsample_lite", 8): 56_273, ("pac_joint_upsample_lite", 16): 55_777}


def _conv(name, c_out, c_in, k=5):
    return {f"{name}.weight": (c_out, c_in, k, k), f"{name}.bias": (c_out,)}


# the official PacJointUpsample(4) state_dict (key: shape); up_convts are (in, out, k, k)
OFFICIAL_X4 = {
    **_conv("branch_t.conv1", 32, 1), **_conv("branch_t.conv2", 32, 32), **_conv("branch_t.conv3", 32, 32),
    **_conv("branch_g.conv1", 32, 3), **_conv("branch_g.conv2", 32, 32), **_conv("branch_g.conv3", 32, 32),
    **_conv("up_convts.0", 32, 32), **_conv("up_convts.1", 32, 32),
    **_conv("branch_f.conv1", 32, 32), **_conv("branch_f.conv2", 1, 32),
}
# the official PacJointUpsampleLite(8): k_ch 12 x 3 steps = 36 guidance channels
OFFICIAL_LITE_X8 = {
    **_conv("branch_t.conv1", 12, 1), **_conv("branch_t.conv2", 16, 12), **_conv("branch_t.conv3", 16, 16),
    **_conv("branch_g.conv1", 12, 3), **_conv("branch_g.conv2", 16, 12), **_conv("branch_g.conv3", 36, 16),
    "up_convts.0.weight": (16, 12, 5, 5), "up_convts.0.bias": (12,),
    "up_convts.1.weight": (12, 16, 5, 5), "up_convts.1.bias": (16,),
    "up_convts.2.weight": (16, 16, 5, 5), "up_convts.2.bias": (16,),
    **_conv("branch_f.conv1", 20, 16), **_conv("branch_f.conv2", 1, 20),
}


def _shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_state_dicts_match_official():
    assert _shapes(PacJointUpsample(4, native_impl=True)) == OFFICIAL_X4
    assert _shapes(PacJointUpsampleLite(8, channels=3, native_impl=True)) == OFFICIAL_LITE_X8
    bn = PacJointUpsample(4, t_bn=True, g_bn=True, u_bn=True, f_bn=True, native_impl=True)
    keys = set(bn.state_dict())
    assert {"branch_t.bn3.running_mean", "branch_g.bn1.weight", "up_bns.1.bias", "branch_f.bn2.weight"} <= keys
    assert [n for n, _ in bn.branch_f.named_children()] == ["conv1", "bn1", "relu1", "conv2", "bn2"]
    assert all(isinstance(m, PacConvTranspose2d) for m in bn.up_convts)
    assert _shapes(DJIF(4))["branch_joint.0.weight"] == (64, 2, 9, 9)


@pytest.mark.parametrize("name,factor", sorted(PARAMS))
def test_registry_and_parameter_counts(name, factor):
    assert MODELS[name] in (PacJointUpsample, PacJointUpsampleLite)
    model = get_model(name, factor=factor, native_impl=True)
    assert count_parameters(model) == PARAMS[(name, factor)]
    assert count_parameters(get_model(name, factor=factor, channels=3, native_impl=True)) == PARAMS[(name, factor)]


@pytest.mark.parametrize("factor", [4, 8, 16])
def test_forward_shapes(factor):
    model = PacJointUpsampleLite(factor, channels=2, native_impl=True)
    target, guide = torch.randn(1, 2, 2, 3), torch.randn(1, 3, 2 * factor, 3 * factor)
    with torch.no_grad():
        out = model(target, guide)
        assert out.shape == (1, 2, 2 * factor, 3 * factor) and torch.isfinite(out).all()
        # channels are upsampled one by one, with the same weights
        one = model(target[:, 1:], guide)
    torch.testing.assert_close(out[:, 1:], one)


def test_compiled_matches_reference_and_gradients_flow():
    native = PacJointUpsampleLite(4, native_impl=True).double()
    compiled = PacJointUpsampleLite(4).double()
    compiled.load_state_dict(native.state_dict())
    target, guide = torch.randn(1, 1, 3, 3, dtype=torch.float64), torch.randn(1, 3, 12, 12, dtype=torch.float64)
    outs = []
    for model in (native, compiled):
        out = model(target, guide)
        out.pow(2).mean().backward()
        outs.append(out)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-10, atol=1e-10)
    for (name, p_ref), p in zip(native.named_parameters(), compiled.parameters()):
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-8, atol=1e-10, msg=name)


def test_baselines():
    target, guide = torch.randn(1, 2, 3, 3), torch.rand(1, 3, 12, 12)
    jbu = JointBilateral(4, channels=2, kernel_size=7, scale_space=0.5, scale_color=2.0, native_impl=True)
    assert _shapes(jbu) == {"convt.weight": (2, 2, 7, 7)}  # the official's (bias=None: no bias)
    with torch.no_grad():
        flat = jbu(torch.ones(1, 2, 3, 3) * torch.tensor([2.0, -1.0]).view(1, 2, 1, 1), guide)
        # a normalised identity filter keeps a constant target constant (also with 2 channels,
        # on which the official failed)
        torch.testing.assert_close(flat, torch.tensor([2.0, -1.0]).view(1, 2, 1, 1).expand(1, 2, 12, 12))
        assert Bilinear(4)(target, guide).shape == (1, 2, 12, 12)
        assert DJIF(4, channels=2)(target, guide).shape == (1, 2, 12, 12)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="power of 2"):
        PacJointUpsample(3)
    with pytest.raises(ValueError, match="power of 2"):
        PacJointUpsample(1)
    with pytest.raises(ValueError, match="4, 8 or 16"):
        PacJointUpsampleLite(2)
    with pytest.raises(ValueError, match="n_t_filters"):
        PacJointUpsample(4, n_t_filters=[8, 8])
    assert count_parameters(PacJointUpsample(2, n_t_filters=[4, 4, 4], native_impl=True)) > 0  # lists work
