"""Finding the kernels a model or layer needs (for `tune` and `compile`) by recording them."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from dynfilter_tvm import cache
from torch_bridge.app import workloads
from torch_bridge.functional import ddf


def test_recording_skips_kernels_and_compiles_nothing():
    built = cache.stats["built"]
    x = torch.randn(1, 4, 7, 9)
    with workloads.recording() as seen:
        out = ddf(x, torch.randn(1, 4, 3, 3), torch.randn(1, 9, 7, 9), 3)
    assert [(w.op, w.kernel) for w in seen] == [("ddf", "fwd")]
    assert seen[0].p["H"] == 7 and seen[0].p["W"] == 9 and seen[0].dtype == "float32"
    assert torch.count_nonzero(out) == 0 and cache.stats["built"] == built
    with pytest.raises(RuntimeError, match="already active"):
        with workloads.recording(), workloads.recording():
            pass


def test_ddf_resnet50_needs_every_ddf_kernel_at_each_stage():
    found = workloads.model_workloads("ddf_resnet50", (1, 3, 64, 64))
    kinds = {(w.op, w.kernel) for w in found}
    assert kinds == {("ddf", k) for k in ("fwd", "dx", "ds", "dc")}
    # four stages, stride 2 at the first block of stages 2-4
    assert {w.p["s"] for w in found} == {1, 2}
    assert len({(w.p["C"], w.p["H"]) for w in found if w.kernel == "fwd"}) == 7
    fwd_only = workloads.model_workloads("ddf_resnet50", (1, 3, 64, 64), backward=False, dtype="float16")
    assert {w.kernel for w in fwd_only} == {"fwd"} and {w.dtype for w in fwd_only} == {"float16"}


@pytest.mark.parametrize("op,kernels", [("ddf", {"fwd", "dx", "ds", "dc"}),
                                        ("acda", {"fwd", "dx", "datoms"}),
                                        ("pac", {"dist", "conv", "conv_dk", "conv_dw", "dist_df", "dist_df0"})])
def test_layer_workloads(op, kernels):
    found = workloads.layer_workloads(op, (2, 8, 12, 10), kernel_size=3, stride=2)
    assert {w.kernel for w in found} == kernels
    forward = [w for w in found if w.kernel in ("fwd", "conv") and not w.p.get("a")]
    assert forward and all(w.p["s"] == 2 for w in forward)  # (PAC's input gradient runs at stride 1, z=2)


def test_bad_shapes_and_selections():
    with pytest.raises(ValueError, match="8x3x224x224"):
        workloads.parse_shape("8,3,224")
    with pytest.raises(ValueError, match="zero"):
        workloads.parse_shape("0x3x4x4")
    with pytest.raises(ValueError, match="unknown operator"):
        workloads.layer_workloads("conv", (1, 3, 8, 8))


def test_tune_for_a_gpu_without_one_says_how():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    res = subprocess.run([sys.executable, "-m", "dynfilter_tvm", "tune", "--op", "ddf", "--input", "1x8x9x9",
                          "--target", "sm_90"], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "rpc-tracker" in res.stderr and "Traceback" not in res.stderr
