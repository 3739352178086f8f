"""Bundles for every size: ``dynfilter-tvm compile --model NAME`` without ``--input`` writes
generic kernels; loaded in a fresh process with ``DYNFILTER_TVM_JIT=off`` and an empty cache,
they serve forward and backward at several sizes (odd ones and batch 1 included) with zero
builds, matching the plain-PyTorch path (DDF-ResNet-50; PAC's joint upsampler, its weight
gradients included). In float64 (``--dtype float64``): a float32 activation within rounding of
zero can flip a ReLU mask in one model and not the other (see test_resnet_models). A model
needing a kernel that builds per shape only is refused, naming it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dynfilter_tvm import aot, cache
from dynfilter_tvm.__main__ import main as cli

_RUN = """
import copy, json, sys
import torch
from dynfilter_tvm import aot, cache
from torch_bridge.models import get_model
from torch_bridge.nn import use_reference_ops
name, kw, shapes, params = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4] == "1"
torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
model = get_model(name, **kw).train()
ref = use_reference_ops(copy.deepcopy(model))
for shape in shapes:
    ins = [torch.randn(*s) for s in shape]
    outs = []
    for m in (model, ref):
        x = [t.clone().requires_grad_() for t in ins]
        out = m(*x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        wrt = x + (list(m.parameters()) if params else [])  # params: the weight gradients too
        grads = torch.autograd.grad(out.square().mean(), wrt)
        outs.append((out, *grads))
    for got, want in zip(*outs):
        scale = want.abs().max().clamp_min(1e-6)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got / scale, want / scale, rtol=1e-9, atol=1e-10)
print(json.dumps({"cache": cache.stats, "aot": aot.stats}))
"""


def _compile(out_dir, *args, dtype="float64"):
    assert cli(["compile", "--target", "llvm", "--dtype", dtype, *args, "-o", str(out_dir)]) == 0
    with open(out_dir / aot.MANIFEST) as f:
        manifest = json.load(f)
    kernels = [k for t in manifest["targets"] for k in t["kernels"]]
    assert kernels and all(k["kind"] == "generic" and k["workload"]["dtype"] == dtype for k in kernels)
    return kernels


def _run_fresh(bundle, tmp_path, name, kw, shapes, params=False):
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    env = dict(os.environ, DYNFILTER_TVM_BUNDLE=str(bundle), DYNFILTER_TVM_JIT="off", DYNFILTER_TVM_CACHE=str(empty))
    env.pop("DYNFILTER_TVM_SHAPES", None)
    res = subprocess.run([sys.executable, "-c", _RUN, name, json.dumps(kw), json.dumps(shapes), str(int(params))], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-4000:]
    stats = json.loads(res.stdout.strip().splitlines()[-1])
    assert stats["cache"]["built"] == 0 and stats["cache"]["disk_hits"] == 0
    assert stats["aot"]["bundle_hits"] > 0
    assert not list(empty.iterdir()), "nothing may be written to the cache"


@pytest.mark.slow
def test_ddf_resnet50_bundle_serves_every_size(tmp_path):
    bundle = tmp_path / "ddf_resnet50"
    kernels = _compile(bundle, "--model", "ddf_resnet50")
    assert {k["workload"]["op"] for k in kernels} == {"ddf"}
    assert {k["workload"]["kernel"] for k in kernels} == {"fwd", "dx", "ds", "dc"}
    # three sizes: batch 2, an odd size at batch 1, a non-square one
    _run_fresh(bundle, tmp_path, "ddf_resnet50", {"num_classes": 10},
               [[[2, 3, 64, 64]], [[1, 3, 57, 57]], [[1, 3, 40, 72]]])


def test_pac_joint_upsampler_bundle_serves_every_size(tmp_path):
    """PAC's joint upsampler (factor 4): every kernel it needs, forward and backward (the
    transposed convolutions, the kernel's distances and their gradients, the weight gradient),
    generic; served at two sizes (odd and non-square at batch 1) with zero builds."""
    bundle = tmp_path / "pac_up"
    kernels = _compile(bundle, "--model", "pac_joint_upsample_lite", "--factor", "4")
    assert {k["workload"]["op"] for k in kernels} == {"pac"}
    assert {k["workload"]["kernel"] for k in kernels} >= {"conv", "conv_dk", "conv_dw", "dist", "dist_df", "dist_df0"}
    _run_fresh(bundle, tmp_path, "pac_joint_upsample_lite", {"factor": 4},
               [[[2, 1, 8, 8], [2, 3, 32, 32]], [[1, 1, 7, 11], [1, 3, 28, 44]]], params=True)


def test_kernels_built_per_shape_only_are_named(tmp_path, monkeypatch):
    """A model needing a kernel that is not generic (here: PAC's conv_dw declared static for
    the test) is refused a bundle for every size, naming it, instead of silently holding one size."""
    from dynfilter_tvm.ops import pac

    monkeypatch.setattr(pac, "SYMBOLIC", {k: v for k, v in pac.SYMBOLIC.items() if k != "conv_dw"})
    with pytest.raises(SystemExit, match=r"pac\.conv_dw.*built per shape only.*--input"):
        cli(["compile", "--target", "llvm", "--model", "pac_joint_upsample_lite", "--factor", "4",
             "-o", str(tmp_path / "pac_up")])
    assert not (tmp_path / "pac_up").exists()


def test_bundle_without_a_configuration_lists_what_it_holds(tmp_path, monkeypatch):
    """A generic bundle asked for another configuration (here: other channels) names what it holds."""
    import torch

    from torch_bridge.functional import ddf

    bundle = tmp_path / "ddf16"
    _compile(bundle, "--op", "ddf", "--channels", "16", "--kernel-size", "3", "--no-backward", dtype="float32")
    monkeypatch.setenv(aot.ENV_JIT, "off")
    monkeypatch.setenv("DYNFILTER_TVM_CACHE", str(tmp_path / "cache"))
    aot.clear_bundles()
    cache.clear_memory()  # kernels earlier tests built in this process would serve the other channels
    try:
        aot.load_bundle(bundle)
        x = torch.randn(1, 16, 13, 11)
        ddf(x, torch.randn(1, 16, 3, 3), torch.randn(1, 9, 13, 11))  # held: any size
        with pytest.raises(aot.KernelUnavailableError, match=r"C=16.*H=\?"):
            ddf(torch.randn(1, 8, 13, 11), torch.randn(1, 8, 3, 3), torch.randn(1, 9, 13, 11))
    finally:
        aot.clear_bundles()
