"""The ops' eager fast path (``torch_bridge.ops._eager``): which route each call takes, and
that every route gives the custom op's values and gradients (double backward included)."""
from __future__ import annotations

import re

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from torch_bridge import functional as F
from torch_bridge.ops import _eager
from torch_bridge.ops.ddf import (
    ddf_grad_channel,
    ddf_grad_features,
    ddf_grad_spatial,
    ddf_op,
)


def _rand(*shape, grad=True):
    t = torch.randn(*shape, dtype=torch.float64)
    return t.requires_grad_() if grad else t


def _ddf_inputs(grad=True):
    return _rand(1, 4, 5, 7, grad=grad), _rand(1, 4, 3, 3, grad=grad), _rand(1, 9, 5, 7, grad=grad)


@pytest.fixture
def routes(monkeypatch):
    """The (op name, route) of every ``call`` made while the test runs."""
    seen = []
    real = _eager.route

    def spy(op, args):
        how = real(op, args)
        name = re.search(r"dynfilter::(\w+)", repr(op))
        seen.append((name.group(1) if name else repr(op), how))
        return how

    monkeypatch.setattr(_eager, "route", spy)
    return seen


def test_plain_eager_calls_skip_the_dispatcher(routes):
    x, cf, sf = _ddf_inputs()
    F.ddf(x, cf, sf, 3).sum().backward()
    # forward with inputs that need grad: the autograd.Function; its three gradient ops in
    # the backward (grad mode off there): direct
    assert routes == [("ddf", "function"), ("ddf_grad_features", "direct"), ("ddf_grad_channel", "direct"),
                      ("ddf_grad_spatial", "direct")]
    routes.clear()
    with torch.no_grad():
        F.ddf(x, cf, sf, 3)
    F.ddf(x.detach(), cf.detach(), sf.detach(), 3)
    assert routes == [("ddf", "direct"), ("ddf", "direct")]


def test_custom_op_only_switch(routes):
    x, cf, sf = _ddf_inputs()
    with _eager.custom_op_only():
        F.ddf(x, cf, sf, 3).sum().backward()
    assert {how for _, how in routes} == {"custom_op"} and len(routes) == 4


class _Watch(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def test_watched_calls_take_the_custom_op():
    x, cf, sf = _ddf_inputs(grad=False)
    args = (x, cf, sf, 3, 1, 1, "mul")
    assert _eager.route(ddf_op, args) == "direct"  # the control: the same call unwatched
    with _Watch():
        assert _eager.route(ddf_op, args) == "custom_op"
    with torch.profiler.profile() as prof:  # the profiler keeps the fast path, and the op's name
        assert _eager.route(ddf_op, args) == "direct"
        F.ddf(x, cf, sf, 3)
        F.ddf(x.requires_grad_(), cf, sf, 3).sum().backward()
    names = [e.name for e in prof.events()]
    assert names.count("dynfilter::ddf") == 2 and names.count("dynfilter::ddf_grad_features") == 1, names
    x = x.detach()
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fake = tuple(mode.from_tensor(t) for t in (x, cf, sf))
        assert _eager.route(ddf_op, (*fake, 3, 1, 1, "mul")) == "custom_op"
        assert F.ddf(*fake, 3).shape == x.shape
    meta = tuple(t.to("meta") for t in (x, cf, sf))
    assert _eager.route(ddf_op, (*meta, 3, 1, 1, "mul")) == "custom_op"
    assert F.ddf(*meta, 3).device.type == "meta"
    seen = []
    torch.func.vmap(lambda t: seen.append(_eager.route(ddf_op, (t[None], cf, sf, 3, 1, 1, "mul"))) or t)(x)
    assert seen == ["custom_op"]
    with torch.device("cpu"):  # a torch function mode
        assert _eager.route(ddf_op, args) == "custom_op"
    assert _eager.route(ddf_op, (x, cf, sf, 3.0 + 0j, 1, 1, "mul")) == "custom_op"  # not a plain value
    assert _eager.route(len, (x,)) == "custom_op"  # not one of ours: called as it is


def test_compiled_graphs_hold_the_custom_op():
    """Under torch.compile the op is one node of the graph, not its inlined function."""
    targets = []

    def backend(gm, example_inputs):
        targets.extend(str(n.target) for n in gm.graph.nodes)
        return gm.forward

    x, cf, sf = _ddf_inputs(grad=False)
    out = torch.compile(lambda a, b, c: F.ddf(a, b, c, 3) * 2, backend=backend, fullgraph=True)(x, cf, sf)
    assert torch.equal(out, F.ddf(x, cf, sf, 3) * 2)
    assert "dynfilter.ddf.default" in targets, targets


def _both_routes(fn, leaves, double=False):
    """fn(*leaves), the gradients of a fixed projection of its outputs, and with ``double``
    the gradients of a projection of those: once per route."""
    results = []
    for only in (False, True):
        torch.manual_seed(1)
        with _eager.custom_op_only() if only else torch.enable_grad():
            out = fn(*leaves)
            outs = out if isinstance(out, tuple) else (out,)
            loss = sum((o * torch.randn_like(o)).sum() for o in outs)
            grads = torch.autograd.grad(loss, leaves, create_graph=double, allow_unused=True)
            got = [o.detach() for o in outs] + [g.detach() for g in grads if g is not None]
            if double:
                used = [g for g in grads if g is not None and g.requires_grad]
                second = torch.autograd.grad(sum((g * torch.randn_like(g)).sum() for g in used), leaves,
                                             allow_unused=True)
                got += [g for g in second if g is not None]
        results.append(got)
    return results


def _pac_leaves(transposed=False):
    """x (2, 3, 5, 6), K, w, b of a k3 pad-1 convolution (transposed: stride 2, output_padding 1)."""
    out = (10, 12) if transposed else (5, 6)
    w = _rand(3, 4, 3, 3) if transposed else _rand(4, 3, 3, 3)
    return _rand(2, 3, 5, 6), torch.rand(2, 1, 3, 3, *out, dtype=torch.float64).requires_grad_(), w, _rand(4)


CASES = {
    "ddf mul": (lambda x, c, s: F.ddf(x, c, s, 3), _ddf_inputs),
    "ddf add, stride 2": (lambda x, c, s: F.ddf(x, c, s[..., :3, :4], 3, stride=2, kernel_combine="add"),
                          _ddf_inputs),
    "acda": (lambda x, a, b: F.acda_atom_conv2d(x, a, b, stride=1, padding=1),
             lambda: (_rand(1, 3, 6, 5), _rand(1, 2 * 4, 6, 5), _rand(4, 3, 3))),
    "pacconv2d": (lambda x, K, w, b: F.pacconv2d(x, K, w, b, padding=1), _pac_leaves),
    "pacconv_transpose2d": (lambda x, K, w, b: F.pacconv_transpose2d(x, K, w, b, stride=2, padding=1,
                                                                     output_padding=1), lambda: _pac_leaves(True)),
    "pacpool2d": (lambda x, K, w, b: F.pacpool2d(x, K, 3, padding=1), _pac_leaves),
    "packernel2d gaussian": (lambda g: F.packernel2d(g, kernel_size=3, padding=1)[0], lambda: (_rand(2, 3, 5, 6),)),
    "packernel2d inv": (lambda g: F.packernel2d(g, kernel_size=3, padding=1, kernel_type="inv_0.5_2")[0],
                        lambda: (_rand(2, 3, 5, 6),)),
}


@pytest.mark.parametrize("double", [False, True], ids=["backward", "double backward"])
@pytest.mark.parametrize("case", list(CASES))
def test_routes_agree(case, double):
    fn, make = CASES[case]
    eager, custom = _both_routes(fn, make(), double)
    assert len(eager) == len(custom) > 1
    for a, b in zip(eager, custom):
        # the same kernels on the same tensors: equal, not close
        assert torch.equal(a, b), (case, (a - b).abs().max())


def test_batched_gradients_take_the_custom_op():
    """The older vmap's batched tensors (is_grads_batched, vectorized jacobians, gradcheck's
    batched check) have no data pointer: they must reach the custom op, not a kernel."""
    x, cf, sf = _ddf_inputs()
    out = F.ddf(x, cf, sf, 3)
    v = torch.randn(3, *out.shape, dtype=out.dtype)
    batched = torch.autograd.grad(out, (x, cf, sf), v, retain_graph=True, is_grads_batched=True)
    for i in range(3):  # each batch entry is the plain vector-Jacobian product
        one = torch.autograd.grad(out, (x, cf, sf), v[i], retain_graph=True)
        for b, o in zip(batched, one):
            torch.testing.assert_close(b[i], o)
    jac = torch.autograd.functional.jacobian(lambda a: F.ddf(a, cf.detach(), sf.detach(), 3), x.detach(),
                                             vectorize=True)
    assert jac.shape == (*out.shape, *x.shape)
    small = [t.detach()[..., :3, :3].clone().requires_grad_() for t in (x, sf)]
    assert torch.autograd.gradcheck(lambda a, s: F.ddf(a, cf.detach(), s, 3), small,
                                    check_batched_grad=True)
    x, K = _rand(1, 2, 4, 4), torch.rand(1, 1, 3, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, k: F.pacpool2d(a, k, 3, padding=1), (x, K), check_batched_grad=True)


def test_inference_mode_records_no_graph():
    x, cf, sf = _ddf_inputs()
    for only in (False, True):
        with _eager.custom_op_only() if only else torch.enable_grad(), torch.inference_mode(), torch.enable_grad():
            out = F.ddf(x, cf, sf, 3)
        assert out.is_inference() and not out.requires_grad and out.grad_fn is None, only


def test_grad_fn_names_the_op():
    x, cf, sf = _ddf_inputs()
    assert "dynfilter_ddf" in type(F.ddf(x, cf, sf, 3).grad_fn).__name__


def test_routes_agree_on_grad_ops():
    x, cf, sf = _ddf_inputs(grad=False)
    g = _rand(*x.shape, grad=False)
    for op in (ddf_grad_features, ddf_grad_channel, ddf_grad_spatial):
        direct = _eager.call(op, g, x, cf, sf, 3, 1, 1, "mul")
        assert torch.equal(direct, op(g, x, cf, sf, 3, 1, 1, "mul"))


def test_eager_calls_do_not_import_dynamo():
    """The custom op's first call imports torch._dynamo (~1.4 s here); a plain eager call on the
    fast path must not (RESULTS.md "Host time per call")."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from torch_bridge import functional as F\n"
            "x, c, s = (torch.randn(*sh, requires_grad=True) for sh in ((1, 2, 5, 6), (1, 2, 3, 3), (1, 9, 5, 6)))\n"
            "F.ddf(x, c, s, 3).sum().backward()\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
