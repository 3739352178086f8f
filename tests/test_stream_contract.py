"""The stream contract on a GPU: the TVM kernels launch on torch's current CUDA stream, so the
ops (forward and backward) give the default stream's results on a non-default stream and
when captured in a CUDA graph and replayed. Skipped without a GPU; run by the GPU suite.

The side-stream check would catch a launch on another stream: the inputs start as NaN and are
filled on the side stream only after a sleep kernel there, so a kernel that did not wait for
that stream would read NaN. Under graph capture, a launch on the legacy default stream is an
error, and one on any other stream would be missing from the replay."""
from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

H, W = 20, 24


def _ddf(x, cf, sf):
    from torch_bridge.functional import ddf

    return ddf(x, cf, sf, 3)


def _pac(guide, x, w, b):
    from torch_bridge.functional import pacconv2d, packernel2d

    K, _ = packernel2d(guide, None, 5, 1, 2, 0, 1)
    return pacconv2d(x, K, w, b, 1, 2, 1)


def _acda(x, coef, bases):
    from torch_bridge.functional import acda_atom_conv2d

    return acda_atom_conv2d(x, coef, bases, 1, 3, 1)


# family: (function, input shapes)
CASES = {
    "ddf": (_ddf, [(2, 16, H, W), (2, 16, 3, 3), (2, 9, H, W)]),
    "pac": (_pac, [(2, 3, H, W), (2, 8, H, W), (6, 8, 5, 5), (6,)]),
    "acda": (_acda, [(2, 8, H, W), (2, 4 * 6, H, W), (6, 7, 7)]),
}


def _inputs(shapes, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).cuda() for s in shapes]


def _run(fn, leaves, grad_out=None):
    """Output and the gradients of every input (``grad_out`` weighting the output)."""
    out = fn(*leaves)
    grad_out = torch.ones_like(out) if grad_out is None else grad_out
    return [out, *torch.autograd.grad(out, leaves, grad_out)]


def _assert_same(got, want):
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", CASES)
def test_side_stream_matches_default_stream(family):
    fn, shapes = CASES[family]
    ins = _inputs(shapes, 0)
    want = _run(fn, [t.clone().requires_grad_() for t in ins])
    leaves = [torch.full_like(t, float("nan")).requires_grad_() for t in ins]
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)  # the inputs below are ready on this stream only after it
        with torch.no_grad():
            for leaf, t in zip(leaves, ins):
                leaf.copy_(t)
        got = _run(fn, leaves)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    _assert_same(got, want)


@pytest.mark.parametrize("family", CASES)
def test_cuda_graph_replay_matches_default_stream(family):
    fn, shapes = CASES[family]
    static = [t.requires_grad_() for t in _inputs(shapes, 0)]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the default stream: kernels built and loaded
        for _ in range(2):
            _run(fn, static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = _run(fn, static)
    fresh = _inputs(shapes, 1)
    with torch.no_grad():
        for s, t in zip(static, fresh):
            s.copy_(t)
    graph.replay()
    torch.cuda.synchronize()
    want = _run(fn, [t.clone().requires_grad_() for t in fresh])
    _assert_same(captured, want)
