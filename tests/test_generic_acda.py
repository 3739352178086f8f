"""Shape-generic ACDA kernels (N, H, W symbolic): one build serving several sizes.

ACDA declares ``SYMBOLIC`` for every kernel (``fwd``, ``dx``, ``datoms``). Checked: the forward
and all gradients through ``acda_atom_conv2d`` in the generic shape mode against the float64
reference at several sizes, nothing built after the first size; the generic builds of every
kernel equal the static ones; the CUDA builds for sm_90 with device code and run on PoCL at
several sizes from one lowering (the generic fwd a tap row at a time, as the static one: in
float32 and float64 both ways, blocks in reverse order, with negative controls)."""
import re
import shutil

import pytest
import torch
import tvm
from tvm import tirx

from dynfilter_tvm import cache, dispatch, emulate, registry
from dynfilter_tvm.build import build
from dynfilter_tvm.ops import acda as acda_ops
from dynfilter_tvm.ops.common import conv_out_size
from dynfilter_tvm.target import cpu_target, cuda_target
from dynfilter_tvm.workload import Workload

SYM = ("N", "H", "W")
# (k, s, d, p) configurations, each built once, and the (N, H, W) sizes it serves:
# odd sizes, batch 1, stride 2, dilation 2, no padding, rows longer than X_QUANTUM.
CONFIGS = [(3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 2, 2), (5, 2, 2, 0)]
SIZES = [(2, 11, 13), (1, 13, 11), (1, 12, 16), (2, 9, 37)]


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
@pytest.mark.parametrize("kernel", ("fwd", "dx", "datoms"))
def test_generic_cpu_schedules_serve_every_size(kernel, config):
    """The default CPU schedules on symbolic shapes (rows padded to whole vectors)."""
    wl = _wl(kernel, 1, 9, 9, *config).with_symbolic(SYM)
    _check_sizes(kernel, config, build(wl, cpu_target()).mod[f"acda_{kernel}"])


# (C, M, T, k, s, d, p): tiles with unit loops the schedules must do without (one channel per
# block: C = 5 is prime; one atom, one basis, a 1x1 kernel)
EDGE_PARAMS = [(5, 3, 4, 3, 1, 1, 1), (1, 1, 1, 1, 1, 1, 0), (7, 1, 2, 3, 2, 1, 1)]


@pytest.mark.parametrize("dtype", ("float64", "float16", "bfloat16"))
@pytest.mark.parametrize("kernel", ("fwd", "dx", "datoms"))
def test_generic_cpu_schedules_edge_tiles(kernel, dtype):
    """Generic CPU builds equal the static ones where the register tiles lose loops, and in
    half types (accumulated in float32 either way, in the same order: equal)."""
    tdt = getattr(torch, dtype)
    for C, M, T, k, s, d, p in EDGE_PARAMS:
        base = Workload.make("acda", kernel, dict(N=1, C=C, H=9, W=9, M=M, T=T, k=k, s=s, d=d, p=p), dtype)
        generic = build(base.with_symbolic(SYM), cpu_target()).mod[f"acda_{kernel}"]
        for N, H, W in ((1, 9, 9), (2, 7, 19)):
            wl = Workload.make("acda", kernel, dict(base.p, N=N, H=H, W=W), dtype)
            ins, want = _args(kernel, wl)
            ins = [t.to(tdt) for t in ins]
            # datoms writes the accumulation type (float32 for half types)
            want = want.to(tdt if kernel != "datoms" or dtype == "float64" else torch.float32)
            got = want.clone()
            generic(*ins, got)
            build(wl, cpu_target()).mod[f"acda_{kernel}"](*ins, want)
            assert not want.isnan().any()
            torch.testing.assert_close(got, want, rtol=0, atol=0, msg=f"{kernel} {dtype} C{C} M{M} k{k} {N}x{H}x{W}")


@pytest.mark.parametrize("kernel", ("fwd", "dx", "datoms"))
def test_static_cpu_row_tails(kernel):
    """The static CPU builds at a width whole vectors do not tile (13 px): the vector tiles'
    loops carry the LoopPartition hint (``schedules.common.split_tail``), so the whole tiles
    stay vectors and only the last runs predicated (before, every tile of such a row ran
    scalar: fwd 4-5x, dx 3-4x the time at 29x31 and 14x14). Values: the static builds at odd
    widths are the reference of ``test_computes_accept_symbolic_shapes`` (the unscheduled
    compute) and of the generic builds' tests."""
    from dynfilter_tvm.build import schedule

    script = schedule(_wl(kernel, 1, 9, 13, 3, 1, 1, 1), cpu_target(), tuned=False)[0].script()
    assert "pragma_loop_partition_hint" in script


def _generic_equals_static(base):
    """The generic CPU build of ``base``'s kernel (float64) equal to its static builds at widths
    with and without a tail tile, batch 1 and 2; the outputs NaN-filled (``_args``) so an
    unwritten one fails."""
    name = f"acda_{base.kernel}"
    generic = build(base.with_symbolic(SYM), cpu_target()).mod[name]
    for N, H, W in ((1, 9, 16), (2, 5, 21), (1, 3, 7)):
        wl = Workload.make("acda", base.kernel, dict(base.p, N=N, H=H, W=W), "float64")
        ins, got = _args(base.kernel, wl)
        want = got.clone()
        generic(*ins, got)
        build(wl, cpu_target()).mod[name](*ins, want)
        assert not want.isnan().any()
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=f"{base.p} {N}x{H}x{W}")


@pytest.mark.parametrize("C, k", [(4, 3), (48, 7)], ids=("dO_per_tile", "dO_per_atom"))
def test_generic_cpu_datoms_dO_placements(C, k):
    """Generic datoms both ways (``schedules.acda_cpu.XPAD_ROWS_L1``): dO's widened row built per
    vector tile (tap rows inside the tile, k x C small) or per atom (k x C large), equal to the
    static build at widths with and without a tail tile."""
    from schedules import acda_cpu

    assert (k * C <= acda_cpu.XPAD_ROWS_L1) == (C == 4)
    base = Workload.make("acda", "datoms", dict(N=1, C=C, H=9, W=9, M=2, T=3, k=k, s=1, d=1, p=k // 2), "float64")
    _generic_equals_static(base)


def _datoms_reference(dO, X, k, s, d, p):
    """datoms in plain PyTorch: out[n,m,u,v,y,x] = sum_c dO[n,c,m,y,x] Xpad[n,c,y*s+u*d,x*s+v*d]."""
    Ho, Wo = dO.shape[-2:]
    Xp = torch.nn.functional.pad(X, (p, p, p, p))
    return torch.stack([torch.stack([
        torch.einsum("ncmyx,ncyx->nmyx", dO, Xp[:, :, u * d:u * d + (Ho - 1) * s + 1:s, v * d:v * d + (Wo - 1) * s + 1:s])
        for v in range(k)], 2) for u in range(k)], 2)


@pytest.mark.parametrize("dtype", ("float32", "float64"))
@pytest.mark.parametrize("k, s, d, p", [(3, 1, 1, 1), (3, 2, 1, 0), (3, 2, 1, 1), (5, 1, 2, 1)])
def test_generic_cpu_datoms_widened_rows(dtype, k, s, d, p):
    """The generic datoms' copies. X's padded copy: a zero fill, then the rows' interiors
    (``schedules._rows.overlap_rows``; it was one predicated pass, which LLVM ran as gathers and
    scatters at stride 2). dO's rows widened per atom (k x C past ``XPAD_ROWS_L1``):
    ``schedules._rows.widened_rows(positive=True)``, per row the zeros counted back from the
    row's end, then whole vectors and an overlapping last one (a predicated vector copy before,
    which ran lane by lane), under a branch on the sizes being positive (for W <= 0, where
    TVM's region of the copy clamps, the copy as it was; float64 at stride 2 keeps the fill's
    own row bound as a predicate). Against plain PyTorch with the outputs NaN-filled, at every
    width from 1 to 19 and 33 (with and without a tail vector, rows shorter than one), batch 1
    and 2."""
    from dynfilter_tvm.build import schedule
    from schedules import acda_cpu, common

    C = 112
    assert k * C > acda_cpu.XPAD_ROWS_L1
    base = Workload.make("acda", "datoms", dict(N=1, C=C, H=9, W=9, M=2, T=3, k=k, s=s, d=d, p=p), dtype)
    wl = base.with_symbolic(SYM)
    script = schedule(wl, cpu_target(), tuned=False)[0].script()
    lanes = common.vector_lanes(dtype)
    assert f"(j + 1) * {lanes}, 0)" in script and "W >= " in script
    # whole vectors (the first, the others), the last, short rows; sizes under those assumed
    assert script.count('T.sblock("dOpad")') == 5 and script.count('T.sblock("Xpad")') == 5
    fn = build(wl, cpu_target()).mod["acda_datoms"]
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == "float64" else dict(rtol=1e-4, atol=1e-4)
    for W in (*range(1, 20), 33):
        N, H = 1 + W % 2, 2 + W % 3
        Ho, Wo = conv_out_size(H + k, k, s, p, d), conv_out_size(W + k, k, s, p, d)
        if Ho < 1 or Wo < 1:
            continue
        g = torch.Generator().manual_seed(W)
        X = torch.randn(N, C, H + k, W + k, generator=g, dtype=torch.float64)
        dO = torch.randn(N, C, 2, Ho, Wo, generator=g, dtype=torch.float64)
        got = torch.full((N, 2, k, k, Ho, Wo), float("nan"), dtype=getattr(torch, dtype))
        fn(dO.to(got.dtype), X.to(got.dtype), got)
        torch.testing.assert_close(got.double(), _datoms_reference(dO, X, k, s, d, p), **tol, msg=f"{N}x{H}x{W}")


def test_generic_cpu_copies_rewritten_everywhere():
    """Every (k, s, d, p) and dtype schedules, and the copies the schedules rewrite (the generic
    datoms' per-atom dO rows and X, the generic fwd's X at stride s > 1, the generic dx's dO and
    A at stride 1) are rewritten: a form
    the rewrite refused had raised at build time (float64 at stride 2, 3 did, before the fill's
    own row bound was allowed)."""
    import itertools

    from dynfilter_tvm.build import schedule

    for kernel, C in (("datoms", 112), ("fwd", 16), ("dx", 16)):
        for k, s, d, dtype in itertools.product((1, 3, 5, 7), (1, 2, 3), (1, 2), ("float32", "float64")):
            if (kernel == "fwd") == (s == 1) and kernel != "datoms":  # fwd at s > 1, dx at s = 1
                continue
            for p in sorted({0, k - 1}):
                wl = Workload.make("acda", kernel, dict(N=1, C=C, H=40, W=40, M=2, T=3, k=k, s=s, d=d, p=p), dtype)
                script = schedule(wl.with_symbolic(SYM), cpu_target(), tuned=False)[0].script()
                for copy in {"fwd": ("Xpad",), "datoms": ("Xpad", "dOpad") if k > 1 else ("Xpad",),
                             "dx": ("dOu", "Au")}[kernel]:
                    assert script.count(f'T.sblock("{copy}")') == 5, (kernel, copy, k, s, d, p, dtype)


@pytest.mark.parametrize("dtype", ("float32", "float64"))
@pytest.mark.parametrize("k, d, p", [(3, 1, 1), (5, 2, 1), (3, 1, 0)])
def test_generic_cpu_dx_copies(dtype, k, d, p):
    """The generic dx at stride 1: the zero-inserted, padded copies of dO and A a zero fill,
    then the rows' interiors as whole vectors and an overlapping last one
    (``acda_cpu._pad_rows_overlap``; LoopPartition's scalar tail before: 1.4-1.9x the static
    time at 28-px rows). Exact against the static builds at every width from 1 to 17 and 31
    (rows shorter than a vector, whole vectors, a tail), batch 1 and 2, the output NaN-filled."""
    generic = build(_wl("dx", 1, 9, 9, k, 1, d, p, dtype).with_symbolic(SYM), cpu_target()).mod["acda_dx"]
    for W in (*range(1, 18), 31):
        N, H = 1 + W % 2, 2 + W % 5
        wl = _wl("dx", N, H, W, k, 1, d, p, dtype)
        if min(conv_out_size(n, k, 1, p, d) for n in (H, W)) < 1:
            continue
        ins, got = _args("dx", wl)
        ins, got = [t.to(getattr(torch, dtype)) for t in ins], got.to(getattr(torch, dtype))
        want = got.clone()
        generic(*ins, got)
        build(wl, cpu_target()).mod["acda_dx"](*ins, want)
        assert not want.isnan().any()
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=f"{N}x{H}x{W}")


@pytest.mark.parametrize("s", (2, 3))
def test_generic_cpu_fwd_strided_copy(s):
    """The generic fwd at stride s > 1: X's padded copy a zero fill, then the rows' interiors as
    whole vectors and an overlapping last one (``acda_cpu._pad_rows_overlap``; left to TVM's
    vectorizer they ran lane by lane, as LLVM's gathers and scatters). Exact against the static
    builds at rows shorter than a vector, whole vectors and a tail, batch 1 and 2."""
    from dynfilter_tvm.build import schedule

    base = _wl("fwd", 1, 9, 9, 3, s, 1, 1)
    script = schedule(base.with_symbolic(SYM), cpu_target(), tuned=False)[0].script()
    assert script.count('T.sblock("Xpad")') == 5  # whole vectors (the first, the others), the last, short rows; else
    generic = build(base.with_symbolic(SYM), cpu_target()).mod["acda_fwd"]
    for N, H, W in ((1, 4, 3), (2, 5, 7), (1, 3, 8), (1, 6, 9), (2, 3, 20)):
        wl = _wl("fwd", N, H, W, 3, s, 1, 1)
        ins, got = _args("fwd", wl)
        want = got.clone()
        generic(*ins, got)
        build(wl, cpu_target()).mod["acda_fwd"](*ins, want)
        assert not want.isnan().any()
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=f"{N}x{H}x{W}")


@pytest.mark.parametrize("C, k", [(16, 7), (16, 5)], ids=("tap_rows_rolled", "tap_rows_unrolled"))
def test_generic_cpu_dx_tap_rows(C, k, monkeypatch):
    """Generic dx both ways (``schedules.acda_cpu.DX_ROW_OFFSETS``): the tap-row loop rolled
    (16 channels x 7 tap rows of dO on AVX-512) or unrolled (x 5), equal to the static build at
    widths with and without a tail tile, every output written. An AVX2 host's tile is 8
    channels (56 rows, unrolled by default): the bound is lowered there so that the rolled loop
    runs on any host."""
    from schedules import acda_cpu

    c_block = acda_cpu._channel_block(Workload.make("acda", "dx", dict(N=1, C=C, H=9, W=9, M=2, T=3, k=k, s=1, d=1,
                                                                        p=k // 2), "float64"), cpu_target(), 1)
    if k == 7 and c_block * k <= acda_cpu.DX_ROW_OFFSETS:
        monkeypatch.setattr(acda_cpu, "DX_ROW_OFFSETS", c_block * k - 1)
    assert (c_block * k > acda_cpu.DX_ROW_OFFSETS) == (k == 7)
    base = Workload.make("acda", "dx", dict(N=1, C=C, H=9, W=9, M=2, T=3, k=k, s=1, d=1, p=k // 2), "float64")
    _generic_equals_static(base)


@pytest.fixture
def generic():
    assert acda_ops.SYMBOLIC == SYM
    dispatch.set_shape_mode("generic")
    cache.clear_memory()
    yield
    dispatch.set_shape_mode(None)
    cache.clear_memory()


def _inputs(N, C, H, W, M, T, k, s, d, p):
    g = torch.Generator().manual_seed(N * 1000 + H * 10 + W)
    Ho, Wo = conv_out_size(H, k, s, p, d), conv_out_size(W, k, s, p, d)
    return [torch.randn(*sh, generator=g, dtype=torch.float64).requires_grad_()
            for sh in ((N, C, H, W), (N, M * T, Ho, Wo), (T, k, k))]


def _compare(ins, s, p, d):
    from torch_bridge.functional import acda_atom_conv2d
    from torch_bridge.reference import acda_atom_conv2d_reference

    out = acda_atom_conv2d(*ins, stride=s, padding=p, dilation=d)
    grad = torch.randn_like(out)
    got = (out, *torch.autograd.grad(out, ins, grad))
    ref_ins = [t.detach().clone().requires_grad_() for t in ins]
    ref = acda_atom_conv2d_reference(*ref_ins, stride=s, padding=p, dilation=d)
    want = (ref, *torch.autograd.grad(ref, ref_ins, grad))
    for name, a, b in zip(("out", "dx", "dcoef", "dbases"), got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=name)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_one_build_serves_every_size(generic, config, monkeypatch):
    """Through the torch op: exact forward and gradients at every size from the generic
    builds of the first size (all three kernels); after it nothing is built."""
    k, s, d, p = config
    built = []
    real = cache._load_or_build  # built or loaded from disk (a warm cache): either is a kernel taken
    monkeypatch.setattr(cache, "_load_or_build", lambda wl, *a, **kw: built.append(wl) or real(wl, *a, **kw))
    params = lambda N, H, W: (N, 3, H, W, 2, 4, k, s, d, p)  # noqa: E731
    _compare(_inputs(*params(*SIZES[0])), s, p, d)
    assert {(wl.kernel, wl.kind) for wl in built} == {(k, "generic") for k in ("fwd", "dx", "datoms")}
    for size in SIZES[1:]:
        n = len(built)
        with torch.no_grad():
            from torch_bridge.functional import acda_atom_conv2d
            acda_atom_conv2d(*(t.detach() for t in _inputs(*params(*size))), stride=s, padding=p, dilation=d)
        assert len(built) == n, f"{size}: the forward took a kernel of its own"
        _compare(_inputs(*params(*size)), s, p, d)
        assert built[n:] == [], f"{size} built {built[n:]}"


def test_float32_generic_matches_static(generic):
    from torch_bridge.functional import acda_atom_conv2d

    x, a, b = (t.detach().float() for t in _inputs(2, 8, 14, 21, 3, 4, 5, 1, 1, 2))
    outs = []
    for mode in ("generic", "static"):
        dispatch.set_shape_mode(mode)
        outs.append(acda_atom_conv2d(x, a, b, padding=2))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


def test_generic_check_params_skips_symbolic_values():
    from dynfilter_tvm.ops.acda import check_params

    check_params(tvm.te.var("N"), 3, tvm.te.var("H"), tvm.te.var("W"), 2, 4, 3, 1, 1, 1)
    with pytest.raises(ValueError, match="kernel_size"):
        check_params(tvm.te.var("N"), 3, tvm.te.var("H"), tvm.te.var("W"), 2, 4, 0, 1, 1, 1)


# (C, M, T, k, s, d, p): k = 9 leaves the taps rolled; float64 atoms take a smaller fwd tile
CUDA_PARAMS = [(3, 2, 4, 3, 1, 1, 1), (5, 3, 2, 5, 2, 2, 2), (2, 2, 3, 9, 1, 1, 4)]


def _cuda_wl(kernel, C, M, T, k, s, d, p, dtype):
    return Workload.make("acda", kernel, dict(N=None, C=C, H=None, W=None, M=M, T=T, k=k, s=s, d=d, p=p), dtype)


@pytest.mark.parametrize("kernel", ("fwd", "dx", "datoms"))
def test_cuda_generic_builds_device_code(kernel):
    for params in CUDA_PARAMS:
        lib = build(_cuda_wl(kernel, *params, "float32"), cuda_target("sm_90"))
        src = lib.mod.imports[0].inspect_source()
        assert "__global__" in src and "threadIdx" in src


EMU_SIZES = [dict(N=1, H=9, W=9), dict(N=2, H=11, W=13), dict(N=1, H=7, W=37), dict(N=1, H=10, W=16)]


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
@pytest.mark.parametrize("kernel", ("fwd", "dx", "datoms"))
def test_cuda_generic_emulated(kernel, dtype, way):
    for params in CUDA_PARAMS:
        emulate.check_sizes(_cuda_wl(kernel, *params, dtype), way, EMU_SIZES)


# The generic fwd a tap row at a time (schedules.acda_cuda._fwd_rows with tiles of up to
# ROW_TILE pixels): (C, M, T, k, s, d, p) each built once. k7 with 64 channels (cb = 4, 16
# slices), 12 channels (one slice per channel pair), stride 2 with dilation 2, k3 with C = 3,
# one atom and one basis, and a prime channel count (cb = 1: 5 slices).
ROWS_PARAMS = [(64, 6, 18, 7, 1, 1, 3), (12, 6, 18, 7, 1, 1, 3), (5, 3, 2, 5, 2, 2, 2), (3, 2, 4, 3, 1, 1, 1),
               (7, 1, 1, 3, 1, 1, 0)]
# odd sizes, batch 1 and 2, rows shorter than one tile (5 px), one row, rows of whole tiles
ROWS_SIZES = [dict(N=1, H=9, W=9), dict(N=2, H=11, W=13), dict(N=1, H=7, W=37), dict(N=1, H=10, W=16),
              dict(N=1, H=5, W=6), dict(N=2, H=1, W=5)]


def _rows_sizes(params):
    """ROWS_SIZES the configuration's kernel fits (k5 at dilation 2 needs 5 rows with padding 2)."""
    C, M, T, k, s, d, p = params
    return [sz for sz in ROWS_SIZES if all(conv_out_size(sz[a], k, s, p, d) >= 1 for a in ("H", "W"))]


def _reverse_blocks(low):
    """Every block index counted from the end: PoCL then runs the blocks last to first (a block
    storing into a neighbour's pixels shows only when that neighbour ran first)."""
    low.source, n = re.subn(r"\bget_group_id\((\d)\)", r"(get_num_groups(\1) - 1 - get_group_id(\1))", low.source)
    assert n > 0


# fwd's staged buffers: the rows, or where TVM's storage rewrite folded them into another stage's
# buffer, the staged atoms build's coefficients
FWD_STAGES = ("Xpad_shared", "Apad_shared")


def _check_cuda_sizes(kernel, params, dtype, way, staged: bool, stage=("Xpad_shared",)):
    """One lowering of the generic ``kernel`` at ``params``, whose device code stages one of
    ``stage`` exactly where ``staged``, run at every size of ``_rows_sizes`` against the float64
    reference, the last three with the blocks in reverse order."""
    wl = _cuda_wl(kernel, *params, dtype)
    low = emulate.prepare(wl, way)
    assert any(name in low.source for name in stage) == staged, params
    sizes = _rows_sizes(params)
    for i, sz in enumerate(sizes):
        emulate.check(wl, way, sizes=sz, lowered=low, mutate=_reverse_blocks if i >= len(sizes) - 3 else None)


@pytest.mark.parametrize("dtype", ("float32", "float64", "float16"))
def test_cuda_generic_fwd_takes_rows(dtype):
    """Each configuration's generic fwd build takes the rows schedule (the staged input rows,
    'Xpad', in shared memory; stages of constant size: codegen refuses others) on sm_90 and
    sm_80; k > UNROLL_TAPS and channels beyond one register tile keep the shared-atoms one."""
    from schedules import acda_cuda

    for params in ROWS_PARAMS:
        wl = _cuda_wl("fwd", *params, dtype)
        for arch in ("sm_90", "sm_80"):
            assert acda_cuda.generic_tiled(wl, registry.prim_func(wl), cuda_target(arch)), (params, arch)
        src = build(wl, cuda_target("sm_90")).mod.imports[0].inspect_source()
        # (TVM's storage rewrite may fold the staged rows, 'Xpad_shared', into the buffer of
        # another stage, e.g. the staged atoms build's coefficients, 'Apad_shared')
        assert ("Xpad_shared" in src or "Apad_shared" in src) and "blockIdx.z" in src, params
        # the atoms built from staged A and P (``_atoms_staged``) where its plan applies
        tile, slices, _ = acda_cuda.fwd_rows_shape(wl, cuda_target("sm_90"))
        assert ("Apad_shared" in src) == (acda_cuda.staged_atoms_plan(wl, tile, slices * tile) is not None), params
    assert acda_cuda.staged_atoms_plan(_cuda_wl("fwd", *ROWS_PARAMS[0], dtype), 8, 128) is not None
    # k = 9 and 432 channels (k = 1 takes the rows since its rows are whole 32 pixels:
    # test_cuda_generic_fwd_whole_tiles)
    for params in ((2, 2, 3, 9, 1, 1, 4), (432, 6, 18, 7, 1, 1, 3)):
        wl = _cuda_wl("fwd", *params, dtype)
        assert not acda_cuda.generic_tiled(wl, registry.prim_func(wl)), params


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
def test_cuda_generic_fwd_rows_emulated(dtype, way):
    """One lowering per configuration, run at every size against the float64 reference, the
    last sizes with the blocks in reverse order."""
    for params in ROWS_PARAMS:
        _check_cuda_sizes("fwd", params, dtype, way, staged=True, stage=FWD_STAGES)


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("dtype", emulate.HALF_DTYPES)
def test_cuda_generic_rows_half(dtype):
    """The generic fwd and datoms rows in float16 / bfloat16 (the ``cuda`` way: PoCL has no half
    arithmetic; datoms writes float32)."""
    for kernel, params in [("fwd", p) for p in ROWS_PARAMS[:3]] + [("datoms", (12, 6, 18, 7, 1, 1, 3)),
                                                                    ("datoms", (8, 4, 4, 5, 3, 1, 2))]:
        wl = _cuda_wl(kernel, *params, dtype)
        low = emulate.prepare(wl, "cuda")
        assert any(name in low.source for name in FWD_STAGES), (kernel, params)
        for sz in _rows_sizes(params)[1:4]:
            emulate.check(wl, "cuda", sizes=sz, lowered=low)


CONTROL_SIZES = dict(N=1, H=6, W=37)  # a partial last tile (5 of 8 pixels)
BARRIER = "barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);"


def _control(mutate, match, params=ROWS_PARAMS[1]):
    wl = _cuda_wl("fwd", *params, "float32")
    low = emulate.prepare(wl, "cuda")
    emulate.check(wl, "cuda", sizes=CONTROL_SIZES, lowered=low)  # unmutated: passes
    with pytest.raises(emulate.CheckFailed, match=match):
        emulate.check(wl, "cuda", sizes=CONTROL_SIZES, lowered=low, mutate=mutate)


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
def test_control_generic_fwd_grid_one_block_short():
    """The ceil-divided tile grid (blockIdx.x over the row's tiles) one block short."""
    def mutate(low):
        ln = low.launches[-1]
        ln.grid = (ln.grid[0] - 1, *ln.grid[1:])
    _control(mutate, "NaN")


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
def test_control_generic_fwd_dropped_barrier():
    """The barrier between staging a tap row's segments and reading them dropped (the second
    of two; the first, ahead of the copy, guards the atoms and the last row's readers, which
    PoCL's work-group-uniform loop heads keep ahead anyway)."""
    def mutate(low):
        start, end = [m.span() for m in re.finditer(re.escape(BARRIER), low.source)][1]
        low.source = low.source[:start] + low.source[end:]
    _control(mutate, "NaN")


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
def test_control_generic_fwd_rows_shifted():
    """The staged row segment read one column to the right (the halo misplaced): the reads in
    the loop over tap rows of the buffer holding it ('Xpad_shared', or where TVM's storage
    rewrite folded it into the staged atoms build's bases, 'P_shared')."""
    def mutate(low):  # the reads only (a store starts its line)
        at = low.source.index("for (int u = 0; u <")
        tail, n = re.subn(r"(?<=[^\s])(\s*[*+(]\s*)(Xpad|P)_shared_ptr\[", r"\1\2_shared_ptr[1 + ", low.source[at:])
        low.source = low.source[:at] + tail
        assert n
    _control(mutate, "relative error|NaN")


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("loop,match", [("ax0_0", "NaN"), ("ax5", "relative error")], ids=["group", "basis"])
def test_control_generic_fwd_atoms_short(loop, match):
    """The staged atoms build (``_atoms_staged``; at C = 8, 128 threads of 2 x 8 pixels, its 2
    atom groups in turn) one atom group short (that group's atoms, left poisoned in shared
    memory, reach the outputs) or one basis short (its loop over the 18 bases, A and P staged
    per basis)."""
    def mutate(low):
        low.source, n = re.subn(rf"(\b{loop} < )(\d+);", lambda m: f"{m[1]}{int(m[2]) - 1};", low.source)
        assert n == 1
    _control(mutate, match, params=(8, 6, 18, 7, 1, 1, 3))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
def test_cuda_generic_rows_nvcc_no_spills(arch):
    from dynfilter_tvm.gpu_report import ptxas_resources

    for kernel, params, dtype in (("fwd", ROWS_PARAMS[0], "float32"), ("fwd", ROWS_PARAMS[0], "float64"),
                                  ("fwd", ROWS_PARAMS[2], "float32"), ("datoms", DATOMS_TILED[0], "float32"),
                                  ("datoms", DATOMS_TILED[0], "float64"), ("datoms", DATOMS_TILED[3], "float32"),
                                  ("dx", DX_TILED[0], "float32"), ("dx", DX_TILED[0], "float64"),
                                  ("dx", DX_TILED[2], "float32")):
        src = build(_cuda_wl(kernel, *params, dtype), cuda_target(arch)).mod.imports[0].inspect_source()
        res = ptxas_resources(src, arch)
        assert res and all(r["spill"] == 0 for r in res.values()), (kernel, params, dtype, res)


# The generic datoms with every tap row in one block (schedules.acda_cuda._datoms_block in tiles
# of 2 rows x X_QUANTUM pixels, one row where the threads do not fit): configurations whose
# stages TVM compacts to a constant size (stride 3, k = 1, no padding, stride 2 with dilation
# 2 and 432 channels among them: the last two tiled since the heights are padded, ops.acda
# DATOMS_ROWS; the last in float64 over 1024 threads, 20 atoms x 56 (tap row, pixel) pairs:
# the rows schedule, _datoms_generic), and one it does not (k = 9), which keeps the register tile.
DATOMS_TILED = [(64, 6, 18, 7, 1, 1, 3), (12, 6, 18, 7, 1, 1, 3), (3, 2, 4, 3, 1, 1, 1), (8, 4, 4, 5, 3, 1, 2),
                (7, 1, 1, 1, 1, 1, 0), (7, 1, 1, 3, 1, 1, 0), (5, 3, 2, 5, 2, 2, 2), (2, 20, 4, 7, 1, 1, 3)]
DATOMS_UNTILED = [(2, 2, 3, 9, 1, 1, 4)]


@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_cuda_generic_datoms_takes_rows(dtype):
    from schedules import acda_cuda

    for params in DATOMS_TILED + [(432, 6, 18, 7, 1, 1, 3)]:
        wl = _cuda_wl("datoms", *params, dtype)
        assert acda_cuda.generic_tiled(wl, registry.prim_func(wl)), params
        # the block schedule stages dO (widened to whole tiles), the rows schedule does not
        block = params != DATOMS_TILED[-1] or dtype == "float32"
        assert acda_cuda.generic_tiled(wl, registry.prim_func(wl), stage="dOpad_shared") == block, params
    for params in DATOMS_UNTILED:
        wl = _cuda_wl("datoms", *params, dtype)
        assert not acda_cuda.generic_tiled(wl, registry.prim_func(wl)), params
    src = build(_cuda_wl("datoms", *DATOMS_TILED[0], dtype), cuda_target("sm_90")).mod.imports[0].inspect_source()
    assert "Xpad_shared" in src and "blockIdx.z" in src


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
def test_cuda_generic_datoms_rows_emulated(dtype, way):
    """As test_cuda_generic_fwd_rows_emulated, for the generic datoms (and its fall-backs)."""
    for params in DATOMS_TILED + DATOMS_UNTILED[:1]:
        _check_cuda_sizes("datoms", params, dtype, way, staged=params in DATOMS_TILED)


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
def test_control_generic_datoms():
    """The generic datoms' negative controls: the tile grid one block short, the chunk's window
    copy or its dO copy one round short (their last elements stay poisoned), the staged window
    read one column to the right. (Its barriers are no control on PoCL: the channel loop after
    the copy is work-group uniform, and PoCL's implicit barrier at its head keeps the copy
    ahead.)"""
    wl = _cuda_wl("datoms", *DATOMS_TILED[1], "float32")
    low = emulate.prepare(wl, "cuda")
    emulate.check(wl, "cuda", sizes=CONTROL_SIZES, lowered=low)  # unmutated: passes

    def short(low):
        ln = low.launches[-1]
        ln.grid = (ln.grid[0] - 1, *ln.grid[1:])

    def copy_short(low):
        low.source, n = re.subn(r"(ax0_ax1_ax2_fused_0 < )(\d+);", lambda m: f"{m[1]}{int(m[2]) - 1};", low.source)
        assert n == 1

    def do_short(low):
        low.source, n = re.subn(r"(ax0_ax1_ax2_ax3_fused_0 < )(\d+);", lambda m: f"{m[1]}{int(m[2]) - 1};", low.source)
        assert n == 1

    def shifted(low):
        low.source, n = re.subn(r"(?<=[^\s])(\s*[*+(]\s*)Xpad_shared_ptr\[", r"\1Xpad_shared_ptr[1 + ", low.source)
        assert n

    for mutate, match in ((short, "NaN"), (copy_short, "NaN"), (do_short, "NaN"), (shifted, "relative error|NaN")):
        with pytest.raises(emulate.CheckFailed, match=match):
            emulate.check(wl, "cuda", sizes=CONTROL_SIZES, lowered=low, mutate=mutate)


# The generic dx with the static one's atoms-in-registers schedule (schedules.acda_cuda.dx_tile
# of a generic workload: tiles of X_QUANTUM input pixels, a pixel per thread: 8 x the groups)
DX_TILED = [(64, 6, 18, 7, 1, 1, 3), (12, 6, 18, 7, 1, 1, 3), (5, 3, 2, 5, 2, 2, 2), (3, 2, 4, 3, 1, 1, 1),
            (7, 1, 1, 3, 1, 1, 0), (8, 4, 4, 5, 3, 1, 2), (7, 1, 1, 1, 1, 1, 0)]


@pytest.mark.parametrize("dtype", ("float32", "float64"))
def test_cuda_generic_dx_takes_registers(dtype):
    from schedules import acda_cuda

    for params in DX_TILED:
        wl = _cuda_wl("dx", *params, dtype)
        for arch in ("sm_90", "sm_80"):
            assert acda_cuda.generic_tiled(wl, registry.prim_func(wl), cuda_target(arch)), (params, arch)
        # (CUDA calls default to the static dx: GENERIC_DEFAULT)
        assert not acda_cuda.generic_default(wl, registry.prim_func(wl)), params
    wl = _cuda_wl("dx", 2, 2, 3, 9, 1, 1, 4, dtype)  # k = 9: the shared-atoms schedule
    assert not acda_cuda.generic_tiled(wl, registry.prim_func(wl))
    src = build(_cuda_wl("dx", *DX_TILED[0], dtype), cuda_target("sm_90")).mod.imports[0].inspect_source()
    # (the staged coefficients; TVM's storage rewrite folds the dO window and the partials into
    # the same shared buffer)
    assert "Au_shared" in src and "atoms_shared" not in src and "blockIdx.z" in src


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
def test_cuda_generic_dx_registers_emulated(dtype, way):
    """As test_cuda_generic_fwd_rows_emulated, for the generic dx (sizes by the input)."""
    for params in DX_TILED:
        _check_cuda_sizes("dx", params, dtype, way, staged=True, stage=("Au_shared",))


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("old,new,match", [
    ("grid", None, "NaN"),  # the tile grid one block short
    # the chunk's dO window copy (a plane per atom; one channel per chunk) without the last atom's
    (r"\bax0_1 < 6;", "ax0_1 < 5;", "NaN|relative error"),
    # the staged coefficients A of a stage of bases without the last atom's
    (r"\bax0 = 0; ax0 < 6;", "ax0 = 0; ax0 < 5;", "NaN|relative error"),
    # the block's sum of the 42 partials (6 atoms x 7 tap rows) without the first
    (r"\bax0_3 = 0; ax0_3 < 42;", "ax0_3 = 1; ax0_3 < 42;", "relative error")],
    ids=["grid", "dO-window", "coefficients", "partial-sums"])
def test_control_generic_dx(old, new, match):
    wl = _cuda_wl("dx", *DX_TILED[1], "float32")
    low = emulate.prepare(wl, "cuda")
    emulate.check(wl, "cuda", sizes=CONTROL_SIZES, lowered=low)  # unmutated: passes

    def mutate(low):
        if old == "grid":
            ln = low.launches[-1]
            ln.grid = (ln.grid[0] - 1, *ln.grid[1:])
            return
        low.source, n = re.subn(old, new, low.source)
        assert n == 1

    with pytest.raises(emulate.CheckFailed, match=match):
        emulate.check(wl, "cuda", sizes=CONTROL_SIZES, lowered=low, mutate=mutate)


def test_cuda_default_mode_generic_where_tiled(monkeypatch):
    """Nothing set: on CUDA an ACDA call is served by the generic build where that build is
    tiled like the static one and requests about as many bytes (``GENERIC_DEFAULT``: fwd, in
    tiles of 2 rows x 8 pixels where its shape follows the static rule, not at 432 channels or
    k = 9; datoms in its block schedule's 2 x 8 tiles; the generic dx requests 1.08x the static
    one's bytes at 8x64x56x56 k7, its 12-row blocks 1.96x the pixels on images of 14 and 7
    rows), else by the static build; on CPU generic throughout."""
    from dynfilter_tvm.target import cpu_target

    dispatch.set_shape_mode(None)
    monkeypatch.delenv(dispatch.ENV_SHAPES, raising=False)
    p = dict(N=2, C=64, H=9, W=11, M=6, T=18, k=7, s=1, d=1, p=3)
    for arch in ("sm_90", "sm_80"):
        cuda = cuda_target(arch)
        assert dispatch.shape_mode(cuda, "acda") == "generic"
        for wl in (Workload.make("acda", "fwd", p, "float32"), Workload.make("acda", "datoms", p, "float32"),
                   Workload.make("acda", "datoms", dict(p, p=0), "float32")):
            assert dispatch.select(wl, cuda).kind == "generic", wl
        for wl in (Workload.make("acda", "dx", p, "float32"), Workload.make("acda", "datoms", dict(p, k=9, p=4), "float32"),
                   Workload.make("acda", "fwd", dict(p, k=9, p=4), "float32"),
                   Workload.make("acda", "fwd", dict(p, C=432), "float32"),
                   Workload.make("acda", "fwd", dict(p, C=160), "float32")):  # (the fall-back tiles)
            assert dispatch.select(wl, cuda) is wl, wl
            assert dispatch.select(wl, cpu_target()).kind == "generic"
        k1 = Workload.make("acda", "fwd", dict(p, k=1, p=0), "float32")
        assert dispatch.select(k1, cuda) is k1
    monkeypatch.setenv(dispatch.ENV_SHAPES, "static")
    wl = Workload.make("acda", "fwd", p, "float32")
    assert dispatch.select(wl, cuda_target("sm_90")) is wl


# The generic fwd over rows and heights of whole tiles (ops.acda ROW_TILE pixels, FWD_ROWS
# rows: 'acc', 'Xpad' and 'Apad'), tiled in 2 x 8 pixels (float32 and the half types where the
# window fits). (C, M, T, k, s, d, p): k = 1, stride 2 with dilation 2, k7 with 8 channels (128
# threads: the staged atoms build's groups in turn) and 12 (192 threads).
WHOLE_TILE_PARAMS = [(7, 1, 1, 1, 1, 1, 0), (5, 3, 2, 5, 2, 2, 2), (8, 6, 18, 7, 1, 1, 3), (12, 6, 18, 7, 1, 1, 3)]
# a row of one pixel, 64, 65, 41 pixels (whole 8: 48), batch 2; 5, 3, 2, 6 rows (odd: a tail row)
WHOLE_TILE_SIZES = [dict(N=1, H=5, W=1), dict(N=1, H=3, W=64), dict(N=2, H=2, W=65), dict(N=1, H=6, W=41)]
WIDE_C = (160, 6, 18, 7, 1, 1, 3)  # no tile fits the static rule: 8-pixel tiles


def _row_width(wl, block: str, W: int, axis: int = -1) -> int:
    """The width (last axis; ``axis``: another, e.g. -2 the height at H = W) of ``block``'s
    buffer in ``wl``'s generic compute at width W (a configuration whose output is as wide as
    its input: stride 1, 'same' padding)."""
    from tvm import s_tir, sym

    sch = s_tir.Schedule(tvm.IRModule({"main": registry.prim_func(wl)}))
    ana = sym.Analyzer()
    shape = {name: sch.get(sch.get_sblock(name)).writes[0].source.shape for name in (block, "out")}
    for o in (-1, -2):
        ana.bind(ana.simplify(shape["out"][o]), W)  # (W - k + 2p) // s + 1 = W
    return int(ana.simplify(shape[block][axis]))


def test_cuda_generic_fwd_whole_tiles():
    """The generic fwd's rows and copies span whole tiles of FWD_ROWS = 2 rows x ROW_TILE = 8
    pixels (its results unchanged: 'out' is the real image), and its rows schedule takes them
    at 8x64x56x56 k7 (2 x 8 pixels, 16 slices of 4 channels on sm_90, 32 of 2 on sm_80; float64
    a row of 8: 2 x 8 pixels' stages exceed 48 KiB) with its staged atoms plan; k = 1 is tiled."""
    from dynfilter_tvm.ops.acda import FWD_ROWS, ROW_TILE
    from schedules import acda_cuda

    assert (FWD_ROWS, ROW_TILE) == (2, 8)
    k7 = (64, 6, 18, 7, 1, 1, 3)
    wl = _cuda_wl("fwd", *k7, "float32")
    # W = H = 41: Wo 41, whole 8 pixels 48 (Xpad: 47 + 6 + 1 columns), whole 2 rows 42
    assert [_row_width(wl, b, 41) for b in ("acc", "Apad", "Xpad", "out")] == [48, 48, 54, 41]
    assert [_row_width(wl, b, 41, -2) for b in ("acc", "Apad", "Xpad", "out")] == [42, 42, 48, 41]
    assert _row_width(_cuda_wl("datoms", *k7, "float32"), "acc", 41) == 48  # (datoms: X_QUANTUM)
    static = Workload.make("acda", "fwd", dict(N=8, C=64, H=56, W=56, M=6, T=18, k=7, s=1, d=1, p=3), "float32")
    for arch, shape in (("sm_90", (16, 16, 4)), ("sm_80", (16, 32, 2))):
        t = cuda_target(arch)
        assert acda_cuda.fwd_rows_shape(wl, t) == shape
        assert acda_cuda.fwd_rows_shape(static, t) == (32, 16, 4)
        # 8 images x 28 row pairs x 7 tiles
        assert acda_cuda.fwd_staged_plan(static, t, wl) == dict(mi=3, passes=1, tile=16, blocks=1568)
        assert acda_cuda.fwd_staged_plan(static, t) == dict(mi=3, passes=1, tile=32, blocks=896)
        assert acda_cuda.fwd_rows_shape(_cuda_wl("fwd", *k7, "float16"), t) == shape
        assert acda_cuda.fwd_rows_shape(_cuda_wl("fwd", *k7, "float64"), t) == (8, 32, 2)
    for params in WHOLE_TILE_PARAMS:
        g = _cuda_wl("fwd", *params, "float32")
        assert acda_cuda.generic_tiled(g, registry.prim_func(g)), params
    # no tile fits the static rule at C = 160 (40 slices of 8 pixels: 10 warps): the generic
    # 8-pixel tiles' rule (cb = 8 within sm_90's 48 words; sm_80's 24 leave none)
    g = _cuda_wl("fwd", *WIDE_C, "float32")
    assert acda_cuda.fwd_rows_shape(g, cuda_target("sm_90")) == (8, 20, 8)
    assert acda_cuda.fwd_rows_shape(g, cuda_target("sm_80")) is None
    assert acda_cuda.generic_tiled(g, registry.prim_func(g))


# (N, C, H = W): the report's 8x64 at 56, 28, 14, 7 and the registered Ad-ResNets' 80-channel
# ACDA stage (ad_resnet_s layer3, 14x14; 7x7 as its stride-1 twin)
NARROW_ROWS = [(8, 64, 56), (8, 64, 28), (8, 64, 14), (8, 64, 7), (8, 80, 14), (8, 80, 7)]


def test_cuda_generic_fwd_narrow_rows():
    """The generic fwd (float32, sm_90 and sm_80) computes at most 1.15x the static build's
    pixels (its rows and heights padded to whole 2 x 8 tiles, against the static's row tiles
    of 32 / 16 / 8 / 4 pixels) and requests at most the static's bytes (``gpu_report``: each
    block's input window staged once) at 56, 28, 14 and 7 pixels, so CUDA calls default to it
    (``GENERIC_DEFAULT``). The fixed 1 x 32 tile before computed 2x / 4x at 14 / 7."""
    from dynfilter_tvm.gpu_report import requested_bytes
    from schedules import acda_cuda

    for N, C, H in NARROW_ROWS:
        p = dict(N=N, C=C, H=H, W=H, M=6, T=18, k=7, s=1, d=1, p=3)
        static = Workload.make("acda", "fwd", p, "float32")
        g = _cuda_wl("fwd", C, 6, 18, 7, 1, 1, 3, "float32")
        # pixels of 'acc' the generic build computes; the static's tiles of its row
        pixels = _row_width(g, "acc", H) * _row_width(g, "acc", H, -2)
        for arch in ("sm_90", "sm_80"):
            t = cuda_target(arch)
            tile = acda_cuda.fwd_rows_tile(static, t)
            assert pixels <= 1.15 * H * -(-H // tile) * tile, (N, C, H, arch)
            assert requested_bytes(static, 4, arch, generic=g) <= requested_bytes(static, 4, arch), (N, C, H, arch)
            assert acda_cuda.generic_default(g, registry.prim_func(g), t), (N, C, H, arch)


def _x_load_wavefronts(src: str) -> int:
    """Wavefronts per warp (the most over the block's warps) of the generic fwd's first X load
    in the tap loop, from the CUDA source: its 'Xpad_shared' index evaluated for every thread
    (tap u = 0), the most distinct words one of the 32 banks serves."""
    at = src.index("acc_local_ptr[0] = (acc_local_ptr[0] + (Xpad_shared_ptr[")
    start = src.index("Xpad_shared_ptr[", at) + len("Xpad_shared_ptr[")
    depth, end = 1, start
    while depth:
        depth += {"[": 1, "]": -1}.get(src[end], 0)
        end += 1
    expr = src[start:end - 1].replace("((int)threadIdx.x)", "t").replace("/", "//")
    assert re.fullmatch(r"[\st()+*&%/<>u\d]+", expr), expr
    threads = int(re.search(r"__launch_bounds__\((\d+)\)", src)[1])
    worst = 0
    for w0 in range(0, threads, 32):
        banks = {}
        for t in range(w0, min(w0 + 32, threads)):
            word = eval(expr, {"t": t, "u": 0})
            banks.setdefault(word % 32, set()).add(word)
        worst = max(worst, max(len(w) for w in banks.values()))
    return worst


@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
def test_cuda_generic_fwd_x_banks(arch):
    """A warp's X loads of the generic fwd rows at k7 M = 6 T = 18 float32 take one shared-memory
    wavefront (counted on the CUDA source's index, and by ``fwd_x_layout``'s model): at C = 64
    the 2 x 8 tiles' warps are one row x 4 channel slices, the slices' channel stride padded to
    114 words (cb = 4, sm_90) / 116 (cb = 2, sm_80), so their 8 pixels lie on disjoint banks
    (was 2 slices x 2 rows x 8 pixels, slices 0 mod 32 words apart: 2 wavefronts). C = 80 (a
    row of 8 pixels, cb = 4, slices 56 words apart) took 1 already."""
    from schedules import acda_cuda

    t = cuda_target(arch)
    for C, channel, plain in ((64, 114 if arch == "sm_90" else 116, 2), (80, 14, 1)):
        wl = _cuda_wl("fwd", C, 6, 18, 7, 1, 1, 3, "float32")
        src = build(wl, t).mod.imports[0].inspect_source()
        assert _x_load_wavefronts(src) == 1, (C, arch)
        layout = acda_cuda.fwd_x_layout(wl, t)
        assert (layout["wavefronts"], layout["plain"], layout["channel"]) == (1, plain, channel), (C, arch, layout)
    # the model on the build before: (slice, row, pixel) threads, the plain 112-word stride
    assert acda_cuda.fwd_x_wavefronts((("c", 16), ("y", 2), ("x", 8)), 4, 1, 112, 14) == 2
    assert acda_cuda.fwd_x_wavefronts((("y", 2), ("c", 16), ("x", 8)), 4, 1, 114, 14) == 1


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
def test_cuda_generic_fwd_x_banks_nvcc(arch):
    """The padded channel stride's shared memory (48,640 B on sm_90, 49,152 on sm_80) keeps the
    generic fwd at C = 64 k7 float32 spill-free at >= 50% occupancy (ptxas; estimates)."""
    from dynfilter_tvm import gpu_report as G

    src = build(_cuda_wl("fwd", 64, 6, 18, 7, 1, 1, 3, "float32"), cuda_target(arch)).mod.imports[0].inspect_source()
    res = G.ptxas_resources(src, arch)["acda_fwd_kernel"]
    threads = int(re.search(r"__launch_bounds__\((\d+)\)", src)[1])
    assert res["spill"] == 0 and res["smem"] <= 48 * 1024, res
    assert G.occupancy(arch, threads, res["regs"], res["smem"]) >= 0.5, res


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("way", emulate.WAYS)
def test_cuda_generic_fwd_whole_tiles_emulated(way):
    """One lowering per configuration and type (C = 160: float32, 8-pixel tiles), run at rows
    past one tile, of exactly two, of one pixel, against the float64 reference (all but the
    first with the blocks in reverse)."""
    for dtype, params in [(t, p) for t in emulate.DTYPES for p in WHOLE_TILE_PARAMS] + [("float32", WIDE_C)]:
        wl = _cuda_wl("fwd", *params, dtype)
        low = emulate.prepare(wl, way)
        assert any(name in low.source for name in FWD_STAGES), params
        sizes = [sz for sz in WHOLE_TILE_SIZES if all(
            conv_out_size(sz[a], *params[3:5], params[6], params[5]) >= 1 for a in ("H", "W"))]
        for i, sz in enumerate(sizes):
            emulate.check(wl, way, sizes=sz, lowered=low, mutate=_reverse_blocks if i else None)


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
def test_control_generic_fwd_row_end_unchecked():
    """The stores' row-end check dropped (the loads' checks kept): the tile's pixels past the row
    land in the next row and, from the last row of the last channel, past the output's end, a
    write the guard zone shows whichever block runs last. (Dropping the loads' check too made
    the control pass now and then: the last row then reads A's guard, 0xFF.. NaNs whose payload
    x86 carries through the sums, and stores bytes equal to the guard's; the next row's pixels
    the other blocks race for.)"""
    def mutate(low):
        low.source, n = re.subn(r"\(\(\(\(\(int\)get_group_id\(0\)\) \* 8\) \+ \(\(\(int\)get_local_id\(0\)\) & 7\)\) < W\)"
                                r"(\) \{\s*out_ptr)", r"1\1", low.source)
        assert n > 0
    wl = _cuda_wl("fwd", *ROWS_PARAMS[1], "float32")
    low = emulate.prepare(wl, "cuda")
    sizes = dict(N=1, H=3, W=41)
    emulate.check(wl, "cuda", sizes=sizes, lowered=low, mutate=_reverse_blocks)  # unmutated: passes
    with pytest.raises(emulate.CheckFailed, match="out-of-bounds write: guard zone of 'out'"):
        emulate.check(wl, "cuda", sizes=sizes, lowered=low, mutate=lambda lw: (mutate(lw), _reverse_blocks(lw)))


# The generic dx in blocks of several input rows (schedules.acda_cuda.dx_tile: blocks of a
# divisor of ops.acda.DX_ROWS rows over the rows computed in whole DX_ROWS; float32 and the
# half types): sizes with a partial last row block, several row blocks, one row, and an image
# of exactly DX_ROWS rows.
DX_ROWS_SIZES = [dict(N=1, H=13, W=9), dict(N=2, H=25, W=6), dict(N=1, H=acda_ops.DX_ROWS, W=17), dict(N=1, H=1, W=3)]


def _dx_row_sizes(params):
    C, M, T, k, s, d, p = params
    return [sz for sz in DX_ROWS_SIZES if all(conv_out_size(sz[a], k, s, p, d) >= 1 for a in ("H", "W"))]


def test_cuda_generic_dx_rows():
    """The generic dx's 'acc' spans whole DX_ROWS rows (its results unchanged: the generic CPU
    and PoCL tests); its CUDA blocks cover a divisor of DX_ROWS rows (at M = 6 k7 float32 and
    float16, 12 rows x 2 runs of 4 pixels x 42 groups: 1,008 threads), float64 a row."""
    from tvm import s_tir, sym

    from schedules import acda_cuda

    wl = _cuda_wl("dx", *DX_TILED[0], "float32")
    sch = s_tir.Schedule(tvm.IRModule({"main": registry.prim_func(wl)}))
    height = {n: sch.get(sch.get_sblock(n)).writes[0].source.shape[-2] for n in ("acc", "out")}
    for H in (1, 12, 13, 25):
        ana = sym.Analyzer()
        ana.bind(height["out"], H)
        assert int(ana.simplify(height["acc"])) == -(-H // acda_ops.DX_ROWS) * acda_ops.DX_ROWS, H
    for dtype in ("float32", "float16"):
        t = acda_cuda.dx_tile(_cuda_wl("dx", *DX_TILED[0], dtype))
        assert (t["tile"], t["q"], t["rows"], t["parts"]) == (8, 4, 12, 42), dtype
    assert acda_cuda.dx_tile(_cuda_wl("dx", *DX_TILED[0], "float64"))["rows"] == 1
    for params in DX_TILED:
        t = acda_cuda.dx_tile(_cuda_wl("dx", *params, "float32"))
        assert acda_ops.DX_ROWS % t["rows"] == 0 and _dx_generic_tile(t) and t["parts"] * t["tile"] // t["q"] * t["rows"] <= 1024
    low = emulate.prepare(wl, "cuda") if emulate.available() is None else None
    if low is not None:
        assert low.launches[-1].block == (1008, 1, 1)
        assert low.launches[-1].grid[1] == f"(T.max(H, 1) + {acda_ops.DX_ROWS - 1}) // {acda_ops.DX_ROWS}"


def _dx_generic_tile(t) -> bool:
    """A generic dx tile: whole runs, X_QUANTUM pixels (no tail in a row of whole X_QUANTUM)."""
    return t["tile"] == acda_ops.X_QUANTUM and t["tile"] % t["q"] == 0


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
def test_cuda_generic_dx_rows_emulated(dtype, way):
    """One lowering per configuration at images of several row blocks, a partial last one,
    exactly DX_ROWS rows and one row, against the float64 reference (all but the first with
    the blocks in reverse)."""
    for params in DX_TILED:
        wl = _cuda_wl("dx", *params, dtype)
        low = emulate.prepare(wl, way)
        assert "Au_shared" in low.source, params
        for i, sz in enumerate(_dx_row_sizes(params)):
            emulate.check(wl, way, sizes=sz, lowered=low, mutate=_reverse_blocks if i else None)


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("what", ("grid", "row-end"))
def test_control_generic_dx_rows(what):
    """The row blocks one short (the last image rows unwritten), or the stores' check of the
    image's last row dropped (the padded rows' sums, not zeros, land in the next channel's rows
    or past the output)."""
    wl = _cuda_wl("dx", *DX_TILED[1], "float32")
    low = emulate.prepare(wl, "cuda")
    sizes = dict(N=1, H=25, W=9)
    emulate.check(wl, "cuda", sizes=sizes, lowered=low, mutate=_reverse_blocks)  # unmutated: passes

    def mutate(lw):
        if what == "grid":
            ln = lw.launches[-1]
            ln.grid = (ln.grid[0], ln.grid[1] - 1, *ln.grid[2:])
        else:
            lw.source, n = re.subn(r" && \(\(\(\(\(int\)get_group_id\(1\)\) \* 12\) \+ \(\(\(int\)get_local_id\(0\)\) >> 3\)\)"
                                   r" < H\)\)", ")", lw.source)
            assert n == 1
        _reverse_blocks(lw)

    with pytest.raises(emulate.CheckFailed, match="NaN" if what == "grid" else "out-of-bounds write|relative error"):
        emulate.check(wl, "cuda", sizes=sizes, lowered=low, mutate=mutate)


def test_negative_proves_row_bounds():
    """``schedules.acda_cpu._negative``, which licenses dropping acc's row bounds from the generic
    fwd / dx tiles: it proves the bounds that hold on every vector tile of a W-pixel row (acc's
    rows padded to ROW_TILE or X_QUANTUM pixels, fwd's heights to FWD_ROWS rows, dx's to
    DX_ROWS) and refuses those
    that fail at some width (the last tile's index against (W + 7) // 8 - 1 or W // 8)."""
    from tvm import sym, tirx

    from schedules.acda_cpu import _negative

    W, H, N = (tirx.Var(n, "int32") for n in "WHN")
    x, y = tirx.Var("x", "int32"), tirx.Var("y", "int32")
    dom = {x: sym.IntervalSet(0, (W + 7) // 8 - 1), y: sym.IntervalSet(0, N * H - 1)}
    assert _negative(x - (tirx.max(W, 1) + 7) // 8, dom)  # fwd's and dx's rows
    assert _negative(tirx.floormod(y, H) - (tirx.max(H, 1) + 1) // 2 * 2, dom)  # fwd's heights (FWD_ROWS)
    assert _negative(tirx.floormod(y, H) - (tirx.max(H, 1) + 11) // 12 * 12, dom)  # dx's heights
    assert not _negative(x - ((W + 7) // 8 - 1), dom)
    assert not _negative(x - W // 8, dom)
    assert not _negative(x - (tirx.max(W, 1) + 7) // 8 + 1, dom)


@pytest.mark.parametrize("kernel, C, k", [("fwd", 8, 5), ("fwd", 4, 7), ("dx", 16, 3)])
def test_generic_cpu_acc_row_bounds_dropped(kernel, C, k):
    """Generic fwd and dx (``schedules.acda_cpu._drop_row_bounds``): acc's init and update carry
    no predicate (before, a bound inside acc's padded row that TVM could not prove, left on the
    tail tile: acc read where not written, live across channel blocks), and the build equals
    the static one at widths with and without a tail tile, every output written."""
    from dynfilter_tvm.build import schedule

    base = Workload.make("acda", kernel, dict(N=1, C=C, H=9, W=9, M=2, T=3, k=k, s=1, d=1, p=k // 2), "float64")
    script = schedule(base.with_symbolic(SYM), cpu_target())[0].script()
    for name in ("acc_init", "acc_update"):
        block = script.split(f'T.sblock("{name}")')[1].split("T.reads")[0]
        assert "T.where" not in block, (name, block)
    _generic_equals_static(base)


@pytest.mark.parametrize("mcpu, registers", [("haswell", 16), ("skylake-avx512", 32)])
def test_generic_cpu_fwd_tile_fits_registers(mcpu, registers):
    """Generic fwd (``schedules.acda_cpu._fwd_channel_block``): up to k = FWD_FIT_K the tile's
    accumulators (channels x M 'out' rows stored per vector tile), the M atom vectors of a tap
    and the input vector fit the vector registers (AVX2: 1 channel x 6 atoms; before, the
    static tile, 2 x 6: 19 vectors, accumulators spilled in the tap loop); at k = 7 the static
    tile. The static build takes the same tile (it kept 2 x 6 on AVX2 until the sixth
    session). Scheduled for both targets (no build); the generic build equals the static one
    on this host."""
    from tvm import s_tir
    from tvm.target import Target

    from dynfilter_tvm.build import schedule
    from schedules import acda_cpu

    target = Target({"kind": "llvm", "mcpu": mcpu})
    for k in (1, 3, 5, 7):
        wl = Workload.make("acda", "fwd", dict(N=2, C=64, H=56, W=56, M=6, T=6, k=k, s=1, d=1, p=k // 2), "float32")
        sch = s_tir.Schedule(schedule(wl.with_symbolic(SYM), target, tuned=False)[0])
        loops = sch.get_loops(sch.get_sblock("out"))
        tile = 1
        for loop in loops[loops.index(next(lp for lp in loops if sch.get(lp).kind == tirx.ForKind.UNROLLED)):-1]:
            tile *= int(sch.get(loop).extent)
        if k <= acda_cpu.FWD_FIT_K:
            assert tile + 6 + 1 <= registers and tile + 6 + 6 + 1 > registers, (mcpu, k, tile)
        else:
            assert tile == 6 * acda_cpu._channel_block(wl, target), (mcpu, k, tile)
        static = s_tir.Schedule(schedule(wl, target, tuned=False)[0])
        *_, ci, m, _ = static.get_loops(static.get_sblock("acc_update"))
        assert int(static.get(ci).extent) * int(static.get(m).extent) == tile, (mcpu, k, "static")
    _generic_equals_static(Workload.make("acda", "fwd", dict(N=1, C=4, H=9, W=9, M=6, T=3, k=3, s=1, d=1, p=1),
                                         "float64"))


@pytest.mark.parametrize("kernel, k, s, p", [("fwd", 5, 1, 2), ("fwd", 1, 1, 0), ("fwd", 3, 2, 1), ("dx", 3, 1, 1)])
def test_generic_cpu_copies(kernel, k, s, p):
    """Generic fwd's and dx's copies (``schedules.acda_cpu._pad_generic``, ``_apad_per_tile``):
    a padded copy (fwd: the input; dx at stride 1: dO's and A's grids) is a row of zeros and
    then the source row copied without a condition (before: one block, the zero padding a
    per-lane condition that went lane by lane at the row's edges); fwd's widened coefficients
    are copied per atom tile into a local buffer (before: per row, in the default scope). The
    build equals the static one at widths and heights with and without a tail tile, every
    output written."""
    from dynfilter_tvm.build import schedule

    base = Workload.make("acda", kernel, dict(N=1, C=4, H=9, W=9, M=2, T=3, k=k, s=s, d=1, p=p), "float64")
    script = schedule(base.with_symbolic(SYM), cpu_target())[0].script()
    for name in ("Xpad",) if kernel == "fwd" else ("dOu", "Au"):
        assert f'T.sblock("{name}_pad_const")' in script
        copy = script.split(f'T.sblock("{name}")')[1].split("T.sblock(")[0]
        assert "if_then_else" not in copy, copy
    if kernel == "fwd":
        assert re.search(r'Apad\w* = T\.sblock_alloc_buffer\(.*scope="local"\)', script)
    _generic_equals_static(base)


def test_cuda_generic_datoms_narrow_rows():
    """The generic datoms (float32, sm_90 and sm_80) in tiles of 2 rows x 8 pixels (heights
    padded to whole ops.acda DATOMS_ROWS) requests at most the static build's bytes at 56
    pixels (``gpu_report``: each block's input window staged once for both rows; a row per
    block requested 1.27x) and at most 1.6x at 28, 14 and 7 (the static's narrow-row blocks,
    ``_datoms_narrow``: 0.75 / 0.80 / 0.73x the generic's; the register tile before: 10.8 /
    11.9 / 12.8x), and computes at most 1.31x its pixels (8 x 8 for 7 x 7); CUDA calls
    default to it (``GENERIC_DEFAULT``)."""
    from dynfilter_tvm.gpu_report import requested_bytes
    from schedules import acda_cuda

    for N, C, H in NARROW_ROWS:
        p = dict(N=N, C=C, H=H, W=H, M=6, T=18, k=7, s=1, d=1, p=3)
        static = Workload.make("acda", "datoms", p, "float32")
        g = _cuda_wl("datoms", C, 6, 18, 7, 1, 1, 3, "float32")
        for arch in ("sm_90", "sm_80"):
            bound = 1.0 if H >= acda_cuda.DATOMS_MIN_ROW else 1.6
            assert requested_bytes(static, 4, arch, generic=g) <= bound * requested_bytes(static, 4, arch), (N, C, H, arch)
            assert acda_cuda.generic_default(g, registry.prim_func(g), cuda_target(arch)), (N, C, H, arch)
        assert acda_cuda.datoms_block_tile(g)["rows"] == acda_ops.DATOMS_ROWS == 2
        assert _row_width(g, "acc", H) * _row_width(g, "acc", H, -2) <= 1.31 * H * H, (N, C, H)
