"""Shape-generic ACDA kernels (N, H, W symbolic): one build serving several sizes.

ACDA declares no ``SYMBOLIC`` yet (see ``dynfilter_tvm.ops.acda``), so these build generic
workloads directly and compare each size with the static kernel of that size."""
import pytest
import torch
import tvm

from dynfilter_tvm import registry
from dynfilter_tvm.build import build
from dynfilter_tvm.ops.common import conv_out_size
from dynfilter_tvm.target import cpu_target
from dynfilter_tvm.workload import Workload

SYM = ("N", "H", "W")
# (k, s, d, p) configurations, each built once, and the (N, H, W) sizes it serves:
# odd sizes, batch 1, stride 2, dilation 2, no padding.
CONFIGS = [(3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 2, 2), (5, 2, 2, 0)]
SIZES = [(2, 11, 13), (1, 13, 11), (1, 12, 16)]
# Ho, Wo > 1: with a unit output axis TVM refused the tensors ("expected to be compact array")


def _wl(kernel, N, H, W, k, s, d, p, dtype="float64"):
    return Workload.make("acda", kernel, dict(N=N, C=3, H=H, W=W, M=2, T=4, k=k, s=s, d=d, p=p), dtype)


def _args(kernel, wl):
    N, C, H, W, M, T, k, s, d, p = (wl.p[n] for n in ("N", "C", "H", "W", "M", "T", "k", "s", "d", "p"))
    Ho, Wo = conv_out_size(H, k, s, p, d), conv_out_size(W, k, s, p, d)
    g = torch.Generator().manual_seed(0)
    X, A, P, dO = (torch.randn(sh, generator=g, dtype=torch.float64)
                   for sh in ((N, C, H, W), (N, M, T, Ho, Wo), (T, k, k), (N, C, M, Ho, Wo)))
    ins, out = {"fwd": ([X, A, P], (N, C, M, Ho, Wo)), "dx": ([dO, A, P], (N, C, H, W)),
                "datoms": ([dO, X], (N, M, k, k, Ho, Wo))}[kernel]
    return ins, torch.full(out, float("nan"), dtype=torch.float64)


def _check_sizes(kernel, config, generic_fn):
    target = cpu_target()
    for N, H, W in SIZES:
        wl = _wl(kernel, N, H, W, *config)
        ins, got = _args(kernel, wl)
        generic_fn(*ins, got)
        want = got.clone().fill_(float("nan"))
        build(wl, target).mod[f"acda_{kernel}"](*ins, want)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=f"{kernel} {config} {N}x{H}x{W}")


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("kernel", ("fwd", "dx", "datoms"))
def test_computes_accept_symbolic_shapes(kernel, config):
    """The unscheduled computes with N, H, W symbolic: one build, every size bound from the
    tensors (dx reads H, W from its output), equal to the static kernels."""
    wl = _wl(kernel, 1, 9, 9, *config).with_symbolic(SYM)
    lib = tvm.compile(tvm.IRModule({"main": registry.prim_func(wl)}), target=cpu_target())
    _check_sizes(kernel, config, lib["acda_" + kernel])


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_generic_cpu_fwd_serves_every_size(config):
    """The default CPU fwd schedule on symbolic shapes (vector tails predicated)."""
    wl = _wl("fwd", 1, 9, 9, *config).with_symbolic(SYM)
    _check_sizes("fwd", config, build(wl, cpu_target()).mod["acda_fwd"])


def test_generic_check_params_skips_symbolic_values():
    from dynfilter_tvm.ops.acda import check_params

    check_params(tvm.te.var("N"), 3, tvm.te.var("H"), tvm.te.var("W"), 2, 4, 3, 1, 1, 1)
    with pytest.raises(ValueError, match="kernel_size"):
        check_params(tvm.te.var("N"), 3, tvm.te.var("H"), tvm.te.var("W"), 2, 4, 0, 1, 1, 1)
