"""Generic PAC kernels: one build per configuration (channels, kernel size, stride, form)
serves every batch and size, forward and gradients equal to the float64 reference; every kernel's
generic build equals its static builds on CPU (odd sizes, batch 1, stride, dilation,
zero insertion) and, for CUDA, runs right on PoCL at several sizes from one lowering."""
import re
import shutil

import pytest
import torch

from dynfilter_tvm import cache, dispatch, emulate, registry
from dynfilter_tvm.build import build
from dynfilter_tvm.ops import pac as pac_ops
from dynfilter_tvm.target import cpu_target, cuda_target
from dynfilter_tvm.workload import Workload
from torch_bridge import functional as Fn
from torch_bridge.reference import pac as R

from test_pac_op import _compare, conv_inputs

SIZES = [(2, 7, 9), (1, 12, 5), (3, 17, 23), (1, 6, 40)]  # (N, H, W): odd, batch 1, wider than a tile


@pytest.fixture(autouse=True)
def _generic():
    dispatch.set_shape_mode("generic")
    yield
    dispatch.set_shape_mode(None)


def test_declared_kernels():
    """Every kernel is declared generic."""
    assert set(pac_ops.SYMBOLIC) == {"conv", "pool", "conv_dk", "conv_dw", "pool_dk", "dist", "dist_df", "dist_df0"}
    assert all(v == ("N", "H", "W", "Ho", "Wo") for v in pac_ops.SYMBOLIC.values())


def _serve_all_sizes(run_one, monkeypatch, forward=None, static=()):
    """run_one(N, H, W) at every size: later sizes build no generic kernel and no static one
    but of the kernels ``static``, and ``forward`` (N, H, W) (served by generic kernels only)
    builds nothing at all."""
    built = []
    real = cache._load_or_build  # built or loaded from disk (a warm cache): either is a kernel taken
    monkeypatch.setattr(cache, "_load_or_build", lambda wl, *a, **kw: built.append(wl) or real(wl, *a, **kw))
    run_one(*SIZES[0])
    if forward:
        forward(*SIZES[0])
    generic = {wl for wl in built if wl.kind == "generic"}
    for size in SIZES[1:]:
        n = len(built)
        if forward:
            forward(*size)
            assert len(built) == n, f"{size}: the forward took a kernel of its own"
        run_one(*size)
        assert all(wl.kind == "static" for wl in built[n:]), f"{size} rebuilt a generic kernel"
        assert {wl.kernel for wl in built[n:]} <= set(static), f"{size} built {built[n:]}"
    return generic


@pytest.mark.parametrize("C,O,k,s,p,d", [(3, 5, 3, 1, 1, 1), (2, 4, 5, 2, 2, 1), (4, 3, 3, 1, 2, 2)], ids=str)
def test_pacconv2d(C, O, k, s, p, d, monkeypatch):
    kw = dict(stride=s, padding=p, dilation=d)
    generic = _serve_all_sizes(
        lambda N, H, W: _compare(Fn.pacconv2d, conv_inputs(N, C, O, H, W, k, s, p, d), kw, torch.float64, 1e-12, 1e-10),
        monkeypatch,
        forward=lambda N, H, W: Fn.pacconv2d(*(t.detach() for t in conv_inputs(N, C, O, H, W, k, s, p, d)), **kw))
    # forward, input, kernel and weight gradients
    assert {(wl.kernel, wl.p.get("a")) for wl in generic} == {("conv", 0), ("conv", 1), ("conv_dk", None),
                                                               ("conv_dw", None)}


@pytest.mark.parametrize("C,O,k,s,p,op", [(3, 5, 3, 2, 1, 1), (2, 3, 5, 1, 2, 0)], ids=str)
def test_pacconv_transpose2d(C, O, k, s, p, op, monkeypatch):
    def run_one(N, H, W):
        inputs = conv_inputs(N, C, O, H, W, k, s, p, 1, transposed=True, op=op)
        _compare(Fn.pacconv_transpose2d, inputs, dict(stride=s, padding=p, output_padding=op),
                 torch.float64, 1e-12, 1e-10)
    assert {wl.kernel for wl in _serve_all_sizes(run_one, monkeypatch)} == {"conv", "conv_dk", "conv_dw"}


@pytest.mark.parametrize("C,G,k,s,p", [(3, 1, 3, 1, 1), (4, 4, 5, 2, 2)], ids=str)
def test_pacpool2d(C, G, k, s, p, monkeypatch):
    def run_one(N, H, W):
        Ho, Wo = R.conv_output_size((H, W), (k, k), (s, s), (p, p), (1, 1))
        inputs = [torch.randn(N, C, H, W, dtype=torch.float64, requires_grad=True),
                  torch.rand(N, G, k, k, Ho, Wo, dtype=torch.float64, requires_grad=True)]
        _compare(Fn.pacpool2d, inputs, dict(kernel_size=k, stride=s, padding=p), torch.float64, 1e-12, 1e-10)
    assert {wl.kernel for wl in _serve_all_sizes(run_one, monkeypatch)} == {"pool", "pool_dk"}


@pytest.mark.parametrize("opts", [dict(stride=1, padding=1), dict(stride=2, padding=1, channel_wise=True,
                                                                   kernel_type="inv_0.5_2_asym")], ids=str)
def test_packernel2d(opts, monkeypatch):
    def run_one(N, H, W):
        f = torch.randn(N, 3, H, W, dtype=torch.float64, requires_grad=True)
        kw = dict(kernel_size=3, **opts)
        got, want = Fn.packernel2d(f, **kw)[0], R.packernel2d_reference(f, **kw)[0]
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
        grad = torch.randn_like(want)
        torch.testing.assert_close(torch.autograd.grad(got, f, grad)[0], torch.autograd.grad(want, f, grad)[0])
    assert {wl.kernel for wl in _serve_all_sizes(run_one, monkeypatch)} == {"dist", "dist_df", "dist_df0"}


def test_float32_generic_matches_static():
    """The generic build against the static one at a size where register tiles are padded."""
    x, K, w, b = (t.detach().float() for t in conv_inputs(2, 8, 24, 11, 37, 3, 1, 1, 1))
    outs = []
    for mode in ("generic", "static"):
        dispatch.set_shape_mode(mode)
        outs.append(Fn.pacconv2d(x, K, w, b, padding=1))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


_CUDA = [("conv", dict(C=16, O=24, k=5, s=1, z=1, p=2, d=1, a=0)), ("conv", dict(C=3, O=5, k=3, s=1, z=2, p=1, d=1, a=1)),
         ("pool", dict(C=16, G=1, k=5, s=1, z=1, p=2, d=1, a=0)), ("conv_dk", dict(C=16, O=24, k=5, s=1, z=1, p=2, d=1)),
         ("conv_dw", dict(C=16, O=24, k=5, s=1, z=1, p=2, d=1)), ("pool_dk", dict(C=16, G=16, k=5, s=1, z=1, p=2, d=1)),
         ("dist", dict(C=3, G=1, k=5, s=2, p=2, d=1, asym=0)), ("dist_df", dict(C=3, G=1, k=5, s=2, p=2, d=1, asym=0)),
         ("dist_df0", dict(C=4, G=4, k=3, s=1, p=2, d=2, asym=1))]


@pytest.mark.parametrize("kernel,params", _CUDA, ids=[f"{k}-{i}" for i, (k, _) in enumerate(_CUDA)])
def test_cuda_generic_builds_device_code(kernel, params):
    sizes = dict(N=None, H=None, W=None, Ho=None, Wo=None)
    wl = Workload.make("pac", kernel, dict(params, **sizes), "float32")
    lib = build(wl, cuda_target("sm_90"))
    assert list(lib.mod.imports) and "__global__" in lib.mod.imports[0].inspect_source()


def _shapes(kernel, p, N, H, W):
    """Argument shapes of a stride-1 'same' workload (Ho = H) and its params."""
    q = dict(p, N=N, H=H, W=W, Ho=H, Wo=W)
    img, kern = (N, p["C"], H, W), (N, p.get("G", 1), p["k"], p["k"], H, W)
    o = (N, p.get("O", p["C"]), H, W)
    return q, {"conv": [img, kern, (p.get("O", 1), p["C"], p["k"], p["k"]), o], "pool": [img, kern, img],
               "conv_dk": [o, img, (p.get("O", 1), p["C"], p["k"], p["k"]), kern],
               "conv_dw": [o, kern, img, (p.get("O", 1), p["C"], p["k"], p["k"])], "pool_dk": [img, img, kern],
               "dist": [img, img, kern], "dist_df": [kern, img, img, img], "dist_df0": [kern, img, img, img]}[kernel]


def _equals_static(kernel, params, generic, sizes, dtype="float32"):
    """The generic build ``generic`` writes exactly the static build's outputs at each (N, H, W)
    of ``sizes`` (outputs NaN-filled first: nothing left unwritten)."""
    tdt = getattr(torch, dtype)
    for N, H, W in sizes:
        q, shapes = _shapes(kernel, params, N, H, W)
        static = build(Workload.make("pac", kernel, q, dtype), cpu_target()).mod[f"pac_{kernel}"]
        args = [torch.randn(*s, dtype=tdt) for s in shapes]
        static(*args)
        want = args[-1].clone()
        args[-1].fill_(float("nan"))
        generic(*args)
        torch.testing.assert_close(args[-1], want, atol=1e-5, rtol=1e-5, msg=f"N={N} H={H} W={W}")


_CPU = [("conv", dict(C=5, O=24, k=3, s=1, z=1, p=1, d=1, a=0)), ("conv", dict(C=5, O=7, k=3, s=1, z=1, p=1, d=1, a=1)),
        ("pool", dict(C=6, G=1, k=3, s=1, z=1, p=1, d=1, a=0)), ("pool", dict(C=6, G=6, k=3, s=1, z=1, p=1, d=1, a=1)),
        ("conv_dk", dict(C=5, O=7, k=3, s=1, z=1, p=1, d=1)), ("conv_dw", dict(C=5, O=7, k=3, s=1, z=1, p=1, d=1)),
        ("pool_dk", dict(C=6, G=1, k=3, s=1, z=1, p=1, d=1)), ("pool_dk", dict(C=6, G=6, k=3, s=1, z=1, p=1, d=1)),
        ("dist", dict(C=3, G=1, k=3, s=1, p=1, d=1, asym=0)), ("dist_df", dict(C=3, G=3, k=3, s=1, p=1, d=1, asym=1)),
        ("dist_df0", dict(C=3, G=1, k=3, s=1, p=1, d=1, asym=0)),
        # the gradients of strided layers and of transposed convolutions: stride, zero insertion, dilation
        ("conv_dk", dict(C=4, O=6, k=5, s=1, z=2, p=2, d=1)), ("conv_dk", dict(C=3, O=5, k=3, s=2, z=1, p=2, d=2)),
        ("conv_dw", dict(C=4, O=6, k=5, s=1, z=2, p=2, d=1)), ("conv_dw", dict(C=3, O=5, k=3, s=2, z=1, p=2, d=2)),
        # conv_dw's vectors along channels (C a multiple of the lanes), several per tile
        ("conv_dw", dict(C=16, O=24, k=3, s=1, z=1, p=1, d=1)), ("conv_dw", dict(C=64, O=6, k=5, s=2, z=1, p=1, d=2)),
        ("pool_dk", dict(C=4, G=1, k=5, s=2, z=1, p=1, d=1)), ("dist", dict(C=3, G=3, k=3, s=2, p=2, d=2, asym=1)),
        # pool: a kernel per channel at the output pixels, stride and dilation, a zero-inserted adjoint
        ("pool", dict(C=5, G=5, k=3, s=2, z=1, p=1, d=2, a=0)), ("pool", dict(C=4, G=1, k=5, s=1, z=2, p=2, d=1, a=1)),
        # the adjoint with a kernel per channel, its copies per plane: zero-inserted, dilated, strided
        ("pool", dict(C=4, G=4, k=5, s=1, z=2, p=2, d=1, a=1)), ("pool", dict(C=3, G=3, k=3, s=2, z=1, p=2, d=2, a=1)),
        ("dist_df", dict(C=3, G=1, k=5, s=2, p=2, d=1, asym=0)), ("dist_df0", dict(C=4, G=4, k=3, s=3, p=1, d=1, asym=1))]


@pytest.mark.parametrize("kernel,params", _CPU, ids=[f"{k}-{i}" for i, (k, _) in enumerate(_CPU)])
def test_cpu_generic_build_matches_static(kernel, params):
    """Every kernel's generic CPU build (declared generic or not) equals its static builds."""
    target = cpu_target()
    sym = dict(N=None, H=None, W=None, Ho=None, Wo=None)
    generic = build(Workload.make("pac", kernel, dict(params, **sym), "float32"), target).mod[f"pac_{kernel}"]
    _equals_static(kernel, params, generic, ((1, 5, 37), (2, 9, 16), (1, 3, 7)))


_GUARDED = [("pool", dict(C=3, G=1, k=3, s=1, z=1, p=1, d=1, a=0), "float32"),
            ("pool", dict(C=3, G=3, k=3, s=1, z=1, p=1, d=1, a=1), "float32"),
            ("pool_dk", dict(C=3, G=1, k=3, s=1, z=1, p=1, d=1), "float32"),
            ("dist", dict(C=2, G=1, k=3, s=1, p=1, d=1, asym=0), "float32"),
            ("dist", dict(C=2, G=1, k=3, s=1, p=1, d=1, asym=0), "float64")]


@pytest.mark.parametrize("kernel,params,dtype", _GUARDED, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(_GUARDED)])
def test_cpu_generic_guarded_row_stores(kernel, params, dtype):
    """pool / pool_dk / dist (G = 1) generic builds store each row's vectors in half-vector
    pieces, each guarded as a whole (``pac_cpu._store_pieces``, ``common.guard_pieces``: 'out'
    twice, whole and partial pieces): at every width a row's last vector may end in (a whole
    piece and a dead one, a partial one, one lane) they write exactly the static build's
    outputs and nothing past the row (NaN-filled outputs)."""
    from dynfilter_tvm.build import schedule
    target = cpu_target()
    sym = dict(N=None, H=None, W=None, Ho=None, Wo=None)
    wl = Workload.make("pac", kernel, dict(params, **sym), dtype)
    assert schedule(wl, target, tuned=False)[0].script().count('T.sblock("out")') == 2
    generic = build(wl, target).mod[f"pac_{kernel}"]
    _equals_static(kernel, params, generic, [(1, 2, W) for W in (1, 3, 4, 6, 12, 28)], dtype)


@pytest.mark.parametrize("kernel,params", [("pool_dk", dict(C=3, G=1, k=3, s=1, z=1, p=1, d=1)),
                                            ("dist", dict(C=2, G=1, k=3, s=1, p=1, d=1, asym=0))])
def test_cpu_generic_channel_sum_row_uncut(kernel, params):
    """The channel sums (G = 1): static builds cut the loop over a row's vectors into the whole
    ones and the last (``_partition``), generic builds leave it one loop (their guarded store
    pieces take the last vector; a cut doubled the channel loop). Their values:
    ``test_cpu_generic_guarded_row_stores`` (NaN-filled outputs, widths 1..28)."""
    from dynfilter_tvm.build import schedule
    for sizes, static in ((dict(N=None, H=None, W=None, Ho=None, Wo=None), False),
                          (dict(N=2, H=9, W=28, Ho=9, Wo=28), True)):
        mod = schedule(Workload.make("pac", kernel, dict(params, **sizes), "float32"), cpu_target(), tuned=False)[0]
        loops = _loops_around(mod, "acc_update")
        assert loops and "T.parallel(" in loops[0]
        assert any("pragma_loop_partition_hint" in line for line in loops) == static, loops


@pytest.mark.parametrize("kernel,params", [("pool_dk", dict(C=3, G=1, k=3, s=1, z=1, p=1, d=1)),
                                            ("dist", dict(C=2, G=1, k=3, s=1, p=1, d=1, asym=0))])
def test_cpu_generic_padded_row_copy_whole_vectors(kernel, params):
    """The channel sums' padded row copy 'Rp' (zeros past the width): generic builds copy it in
    whole vectors (``pac_cpu._masked_taps``: one 'Rp' block, no test per lane; the row's last
    vector a zero store, then the vector ending at the width; a masked load only where the row
    is shorter than a vector); static builds keep one copy cut by LoopPartition. main's
    half-vector pieces (``_guard_row_copy``: 'Rp' four times, one piece lane by lane) fail it.
    Values at every last-vector shape: ``test_cpu_generic_guarded_row_stores`` (W = 1..28,
    NaN-filled)."""
    from dynfilter_tvm.build import schedule
    for sizes, static in ((dict(N=None, H=None, W=None, Ho=None, Wo=None), False),
                          (dict(N=2, H=9, W=28, Ho=9, Wo=28), True)):
        mod = schedule(Workload.make("pac", kernel, dict(params, **sizes), "float32"), cpu_target(), tuned=False)[0]
        script = mod.script()
        assert script.count('T.sblock("Rp")') == 1
        rp = script.split('T.sblock("Rp")')[1].split("T.sblock(")[0]
        assert ("T.if_then_else" in rp) == static and ("T.masked_load" in rp) != static


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("params", [dict(C=3, G=1, k=3, s=1, z=1, p=1, d=1, a=0), dict(C=2, G=1, k=3, s=2, z=1, p=2, d=2, a=1)],
                         ids=["pool", "pool-adjoint-s2d2"])
def test_cpu_generic_pool_source_copy_masked(params, dtype):
    """pool's padded source copy 'Sz' in generic builds for AVX-512 targets: one masked vector
    load and store per vector of a padded row (``pac_cpu._masked_copy``: no zero fill, no
    interior loop left to LLVM); AVX2-only targets (Zen 3: a masked store is microcoded, the
    generic pool took 2.2x its static time) a zero fill and the interior copy, no masked store
    (a schedule masking there fails); static builds keep the one copy cut by LoopPartition.
    Values, built for this machine, equal the static build's at widths across a 16-lane
    vector's every end (the zero border, NaN-filled outputs)."""
    from tvm.target import Target

    from dynfilter_tvm.build import schedule
    target = cpu_target()
    sym = dict(N=None, H=None, W=None, Ho=None, Wo=None)
    wl = Workload.make("pac", "pool", dict(params, **sym), dtype)
    for mcpu, masked in (("skylake-avx512", True), ("znver4", True), ("znver3", False), ("haswell", False)):
        script = schedule(wl, Target({"kind": "llvm", "mcpu": mcpu}), tuned=False)[0].script()
        assert script.count("T.masked_store(Sz,") == int(masked), mcpu
        assert ("Sz_pad_const" in script) != masked and ("masked_store" in script) == masked, mcpu
    q, _ = _shapes("pool", params, 1, 4, 13)
    assert "masked_store" not in schedule(Workload.make("pac", "pool", q, dtype), target, tuned=False)[0].script()
    generic = build(wl, target).mod["pac_pool"]
    _equals_static("pool", params, generic, [(1, 3, W) for W in (1, 2, 13, 14, 15, 16, 17, 29, 30, 31, 33)], dtype)


@pytest.mark.parametrize("params,dtype", [(dict(C=3, O=5, k=3, s=1, z=1, p=1, d=1, a=0), "float32"),
                                          (dict(C=2, O=3, k=3, s=1, z=1, p=2, d=2, a=1), "float64")],
                         ids=["conv", "conv-adjoint-d2-f64"])
def test_cpu_generic_conv_taps_whole_vectors(params, dtype):
    """conv's modulated taps over the padded row ('xk_pad') in generic builds: whole vectors,
    the row's last one shifted back to end at the width after a zero store, masked loads only
    where the row is shorter than a vector (``pac_cpu._masked_taps``); the row's stores one
    masked store per vector (``_masked_out``) on AVX-512 targets, on AVX2-only ones (Zen 3:
    ``vmaskmovps`` stores microcoded) a plain vector store where the whole vector is inside the
    row, else guarded scalar lanes: no masked store in the LLVM IR (a schedule masking there
    fails). main's per-lane ``if_then_else`` and guarded stores fail the structural check.
    Values, built for this machine, equal the static build's at widths around every vector end
    (NaN-filled outputs: nothing past the row or left unwritten)."""
    import tvm
    from tvm.target import Target

    from dynfilter_tvm.build import TIR_PIPELINE, schedule
    target = cpu_target()
    sym = dict(N=None, H=None, W=None, Ho=None, Wo=None)
    wl = Workload.make("pac", "conv", dict(params, **sym), dtype)
    for mcpu, masked in (("skylake-avx512", True), ("znver4", True), ("znver3", False), ("haswell", False)):
        mod = schedule(wl, Target({"kind": "llvm", "mcpu": mcpu}), tuned=False)[0]
        script = mod.script()
        taps = script.split('T.sblock("xk_pad")')[1].split("T.sblock(")[0]
        assert "T.if_then_else" not in taps and "T.masked_load" in taps, mcpu
        assert script.count("T.masked_store(out,") == int(masked), mcpu
        out = script.split('T.sblock("out")')[1].split("T.sblock(")[0]
        assert ("for lane in range(" in out) != masked, mcpu
        if mcpu == "znver3":
            t = Target({"kind": "llvm", "mcpu": mcpu})
            with t:
                ll = tvm.compile(mod, target=t, tir_pipeline=TIR_PIPELINE).mod.inspect_source("ll")
            assert "@llvm.masked.store" not in ll
    generic = build(wl, target).mod["pac_conv"]
    _equals_static("conv", params, generic, [(1, 3, W) for W in (7, 16, 17, 28, 33)], dtype)


def _loops_around(mod, name: str) -> list:
    """The loop lines enclosing block ``name`` in the printed module, outermost first."""
    lines = mod.script().splitlines()
    depth = lambda line: len(line) - len(line.lstrip())
    at = next(i for i, line in enumerate(lines) if f'T.sblock("{name}")' in line)
    out, level = [], depth(lines[at])
    for line in reversed(lines[:at]):
        if line.strip().startswith("for ") and depth(line) < level:
            out.append(line.strip())
            level = depth(line)
    return out[::-1]


def test_cpu_dist_df0_row_copy():
    """dist_df0 copies dD's row first (``pac_cpu._row_copy``) where it serves every channel (G =
    1) or where its planes are a multiple of 4 KB (static builds: L1 set conflicts), not
    otherwise (G = C: each row read once, the copy only a pass more). The generic copy's rows
    as whole vectors and an overlapping last one (``_rows.overlap_rows``: the block four
    times, the first vector, the others, the overlapping one and a short row's, and once more
    in the nest kept for sizes under 1), not LoopPartition's predicated tail. Its values: ``test_cpu_dist_overlapping_last_tile``."""
    from dynfilter_tvm.build import schedule

    def script(G, **sizes):
        p = dict(C=4, G=G, k=3, s=1, p=1, d=1, asym=0, **sizes)
        return schedule(Workload.make("pac", "dist_df0", p, "float32"), cpu_target(), tuned=False)[0].script()
    generic = dict(N=None, H=None, W=None, Ho=None, Wo=None)
    assert script(1, **generic).count('T.sblock("dD_global")') == 5
    assert 'T.sblock("dD_global")' not in script(4, **generic)
    assert 'T.sblock("dD_global")' not in script(4, N=2, H=28, W=28, Ho=28, Wo=28)  # 3136 B planes
    assert 'T.sblock("dD_global")' in script(4, N=2, H=32, W=32, Ho=32, Wo=32)  # 4096 B
    assert 'T.sblock("dD_global")' in script(1, N=2, H=28, W=28, Ho=28, Wo=28)


_DIST_TILES = [("dist_df", dict(C=3, G=1, k=3, s=1, p=1, d=1, asym=0)), ("dist_df", dict(C=3, G=3, k=5, s=1, p=2, d=1, asym=1)),
               ("dist_df0", dict(C=3, G=1, k=3, s=1, p=1, d=1, asym=0)), ("dist_df0", dict(C=3, G=3, k=3, s=1, p=1, d=1, asym=1)),
               ("dist_df", dict(C=2, G=2, k=3, s=2, p=1, d=1, asym=1)), ("dist_df0", dict(C=2, G=1, k=5, s=2, p=1, d=2, asym=0))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cpu_dist_overlapping_last_tile(dtype):
    """dist_df / dist_df0 generic builds run a row as its whole vector tiles, then, where the
    width is no multiple of the lanes, one whole tile ending at the row's end that overlaps
    the last whole one (``_rows.overlap_tiles``), or the predicated tile for rows under one
    vector; was LoopPartition's predicated tail, which TVM runs lane by lane (generic / static
    dist_df0 2.1-2.6 at 28-29 px rows). Checked on the schedule (the tile's blocks three
    times, and once more in the nest kept for sizes under 1) and run at widths 1-9, 15-17,
    23, 31 and 33 against the float64 compute, the output NaN-filled inside a buffer whose elements
    before and after it hold a sentinel: an unwritten pixel, a wrong one and a store past the
    output all fail."""
    import numpy as np
    import tvm

    from dynfilter_tvm.build import schedule

    tol = 1e-4 if dtype == "float32" else 1e-12
    sym = dict(N=None, H=None, W=None, Ho=None, Wo=None)
    for kernel, q in _DIST_TILES:
        wl = Workload.make("pac", kernel, dict(q, **sym), dtype)
        if q["s"] == 1:
            assert schedule(wl, cpu_target(), tuned=False)[0].script().count('T.sblock("acc_update")') == 4, kernel
        lib = build(wl, cpu_target()).mod[f"pac_{kernel}"]
        for W in (*range(1, 10), 15, 16, 17, 23, 31, 33):
            N, H = 1 + W % 2, 1 + (3 * W) % 7
            Ho, Wo = ((n + 2 * q["p"] - q["d"] * (q["k"] - 1) - 1) // q["s"] + 1 for n in (H, W))
            if min(Ho, Wo) < 1:
                continue
            concrete = Workload.make("pac", kernel, dict(q, N=N, H=H, W=W, Ho=Ho, Wo=Wo), dtype)
            ins, _, shape, _ = emulate.make_inputs(concrete, seed=W)
            n = int(np.prod(shape))
            buf = torch.full((n + 64,), 12345.0, dtype=getattr(torch, dtype))
            buf[32:32 + n] = float("nan")
            lib(*(tvm.runtime.tensor(a) for a in ins), tvm.runtime.from_dlpack(buf[32:32 + n].view(*shape)))
            np.testing.assert_allclose(buf[32:32 + n].view(*shape).numpy(), emulate.reference(concrete, ins),
                                       rtol=tol, atol=tol, err_msg=f"{kernel} {q} {N}x{H}x{W}")
            assert bool((buf[:32] == 12345.0).all() and (buf[32 + n:] == 12345.0).all()), (kernel, q, W)


@pytest.mark.parametrize("generic", [False, True])
def test_cpu_adjoint_pool_copies_per_plane(generic):
    """The adjoint pool with a kernel per channel copies its padded kernel and source per
    channel plane, inside the parallel loop over planes that computes it (they stay in cache
    for their one reader), not as whole tensors first (generic builds: the kernel's tap rows per
    output row, ``test_cpu_adjoint_pool_kernel_at_taps``)."""
    from dynfilter_tvm.build import schedule
    sizes = dict(N=None, H=None, W=None, Ho=None, Wo=None) if generic else dict(N=2, H=9, W=28, Ho=9, Wo=28)
    wl = Workload.make("pac", "pool", dict(C=6, G=6, k=3, s=1, z=1, p=1, d=1, a=1, **sizes), "float32")
    mod = schedule(wl, cpu_target(num_cores=2), tuned=False)[0]
    assert {"Kz", "Sz"} <= _parallel_nest_of(mod, "out")
    assert "Kz_pad_const" not in mod.script()
    # fewer channels than cores: rows in parallel, the copies whole first
    assert "Kz" not in _parallel_nest_of(schedule(wl, cpu_target(num_cores=8), tuned=False)[0], "out")


def _pool_adjoint_reference(X, K, k, s, p, d, Ho, Wo):
    """The adjoint pool (a = 1, z = 1, G = C) from its definition (``ops.pac``): out[y, x] =
    sum_{i,j} Kg[i, j, Y, X] Sg[Y, X], Y = y s + (k-1-i) d, Kg and Sg zero-padded by p."""
    Hg, Wg = (Ho - 1) * s + (k - 1) * d + 1, (Wo - 1) * s + (k - 1) * d + 1

    def grid(t):  # pad by p, then to the grid's size (a negative pad crops)
        t = torch.nn.functional.pad(t, (p, p, p, p))
        return torch.nn.functional.pad(t, (0, Wg - t.shape[-1], 0, Hg - t.shape[-2]))
    Kg, Sg = grid(K), grid(X)
    out = torch.zeros(X.shape[0], X.shape[1], Ho, Wo, dtype=X.dtype)
    for i in range(k):
        for j in range(k):
            rows = slice((k - 1 - i) * d, (k - 1 - i) * d + (Ho - 1) * s + 1, s)
            cols = slice((k - 1 - j) * d, (k - 1 - j) * d + (Wo - 1) * s + 1, s)
            out += Kg[:, :, i, j, rows, cols] * Sg[:, :, rows, cols]
    return out


@pytest.mark.parametrize("k,s,p,d", [(3, 1, 1, 1), (3, 2, 1, 2), (5, 1, 2, 1), (2, 1, 0, 1)])
def test_cpu_adjoint_pool_kernel_at_taps(k, s, p, d):
    """The adjoint pool reads its kernel at the taps ('Kz' (.., k, k, Ho, padded Wo),
    ``ops.pac._kernel_at_taps``), not on the source grid ((.., k, k, Hg, Wg)), the tap loops of
    its copy unrolled (``pac_cpu._kernel_at_taps``); generic builds copy it per output row, laid
    out (Ho, vectors, k, k, lanes), each vector guarded four ways (whole, zeros where the tap's
    row lies outside K, a select over the columns of a vector load that may run into the
    neighbouring row, lane by lane: ``pac_cpu._select_rows``); float32
    and float64, NaN-filled outputs at widths 1..13 and 28, the kernel NaN wherever no tap reads
    it (a select must drop the lanes past a row, never multiply them by zero), equal the
    definition's float64 sums."""
    from dynfilter_tvm.build import schedule
    C = 4
    params = dict(C=C, G=C, k=k, s=s, z=1, p=p, d=d, a=1)
    target = cpu_target(num_cores=2)
    for dtype in ("float32", "float64"):
        wl = Workload.make("pac", "pool", dict(params, N=None, H=None, W=None, Ho=None, Wo=None), dtype)
        mod = schedule(wl, target, tuned=False)[0]
        lanes = 8 if dtype == "float32" else 4
        vectors = "(Wo + 7) // 8" + ("" if lanes == 8 else " * 2")
        assert re.search(rf"Kz = T.sblock_alloc_buffer\(\(N, {C}, Ho, {re.escape(vectors)}, {k}, {k}, {lanes}\)",
                         mod.script())
        script = mod.script()
        assert script.count('T.sblock("Kz")') == 4  # whole, select, zero (tap row out of range), lanes
        selects = re.findall(r"Kz\[.*\] = T\.Select\((.*), K\[", script)
        assert len(selects) == 1 and "H" not in selects[0], selects  # the select tests columns only
        assert sum(f"T.unroll({k})" in line for line in _loops_around(mod, "Kz")) == (2 if k > 1 else 0)
        generic = build(wl, target).mod["pac_pool"]
        tdt = getattr(torch, dtype)
        for H, W in [(2, w) for w in range(1, 14)] + [(3, 28), (7, 5)]:
            Ho, Wo = ((n + 2 * p - (k - 1) * d - 1) // s + 1 for n in (H, W))
            if Ho < 1 or Wo < 1:
                continue
            X = torch.randn(2, C, H, W, dtype=torch.float64)
            K = torch.rand(2, C, k, k, H, W, dtype=torch.float64)
            K[~_taps_read(k, s, p, d, H, W, Ho, Wo).expand_as(K)] = float("nan")
            want = _pool_adjoint_reference(X, K, k, s, p, d, Ho, Wo)
            assert not want.isnan().any()
            out = torch.full((2, C, Ho, Wo), float("nan"), dtype=tdt)
            generic(X.to(tdt), K.to(tdt), out)
            tol = 1e-5 if dtype == "float32" else 1e-12
            torch.testing.assert_close(out.double(), want, atol=tol, rtol=tol, msg=f"{dtype} H={H} W={W}")


def _taps_read(k, s, p, d, H, W, Ho, Wo):
    """(k, k, H, W) mask: which kernel values the adjoint pool reads (tap (i, j) at source pixel
    (y s + (k-1-i) d - p, x s + (k-1-j) d - p) of some output pixel), as in
    ``_pool_adjoint_reference``."""
    used = torch.zeros(k, k, H, W, dtype=torch.bool)
    for i in range(k):
        for j in range(k):
            rows = [r for r in range((k - 1 - i) * d - p, (k - 1 - i) * d - p + (Ho - 1) * s + 1, s) if 0 <= r < H]
            cols = [c for c in range((k - 1 - j) * d - p, (k - 1 - j) * d - p + (Wo - 1) * s + 1, s) if 0 <= c < W]
            used[i, j][torch.tensor(rows, dtype=torch.long)[:, None], torch.tensor(cols, dtype=torch.long)] = True
    return used


def _parallel_nest_of(mod, name: str) -> set:
    """The blocks inside the outermost parallel loop that holds block ``name``, read from the
    printed module's indentation. (Generic builds' guarded stores hold 'out' twice, which
    ``s_tir.Schedule`` refuses as ill-formed.)"""
    lines = mod.script().splitlines()
    depth = lambda line: len(line) - len(line.lstrip())
    for at, line in enumerate(lines):
        if "T.parallel(" not in line:
            continue
        names = set()
        for inner in lines[at + 1:]:
            if inner.strip() and depth(inner) <= depth(line):
                break
            names.update(re.findall(r'T\.sblock\("(\w+)"\)', inner))
        if name in names:
            return names
    return set()


EMU_SIZES = [dict(N=1, H=3, W=5, Ho=3, Wo=5), dict(N=2, H=7, W=13, Ho=4, Wo=7), dict(N=1, H=5, W=40, Ho=9, Wo=19)]
_EMU = [(k, p) for k, p in _CUDA if k in pac_ops.SYMBOLIC] + [
    # the phases of zero-inserted forms (torch_bridge.ops.pac.run_taps): even tap counts, offsets
    # below zero (a crop), a phase's dilation
    ("conv", dict(C=3, O=4, k=2, s=1, z=1, p=-1, d=1, a=0)), ("conv", dict(C=2, O=3, k=2, s=1, z=1, p=0, d=3, a=1)),
    ("conv", dict(C=16, O=24, k=4, s=1, z=1, p=-2, d=1, a=1)),
    ("pool", dict(C=3, G=3, k=2, s=1, z=1, p=-1, d=2, a=1)), ("pool", dict(C=5, G=5, k=3, s=2, z=1, p=1, d=1, a=0)),
    # 1x1 at C = O = 64: the tiled trial overflows TVM's int32 region arithmetic, one thread per output
    ("conv", dict(C=64, O=64, k=1, s=1, z=1, p=0, d=1, a=0)),
    # 2-channel chunks (k3, C even): the xk copy's tap rows serial too (schedules.pac_cuda._xk_serial)
    ("conv", dict(C=4, O=12, k=3, s=1, z=1, p=1, d=1, a=0)), ("conv", dict(C=4, O=70, k=3, s=1, z=2, p=1, d=1, a=1))]


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("dtype", emulate.DTYPES)
@pytest.mark.parametrize("kernel,params", _EMU, ids=[f"{k}-{i}" for i, (k, _) in enumerate(_EMU)])
def test_cuda_generic_emulated(kernel, params, dtype):
    """Each declared kernel's generic CUDA build, lowered once, right at every size (the sizes of
    the image and of the output unrelated: every kernel reads its source through bounds checks)."""
    wl = Workload.make("pac", kernel, dict(params, N=None, H=None, W=None, Ho=None, Wo=None), dtype)
    emulate.check_sizes(wl, "opencl", EMU_SIZES)


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("dtype", emulate.DTYPES)
def test_cuda_pool_phase_emulated(dtype):
    """pool's static build at a phase's geometry: 2 taps, a crop, the adjoint's kernel on the source grid."""
    for a in (0, 1):
        wl = Workload.make("pac", "pool", dict(C=3, G=3, k=2, s=1, z=1, p=-1, d=2, a=a, N=2, H=7, W=6, Ho=5, Wo=4),
                           dtype)
        emulate.check(wl, "opencl")


# The tiled generic conv (schedules/pac_cuda.py ``_conv_generic_tiled``): the static conv's
# implicit GEMM with a fixed tile (32-pixel rows, 4-row register tiles; fewer rows where the
# chunk would not fit), the sum padded to whole tiles (zeros), the grid ceil-divided over the
# symbolic output. Sizes: smaller than one tile, not multiples of it, several tiles each way,
# batch 1 and 3, the image and output sizes unrelated.
TILED_CONV = [dict(C=16, O=24, k=5, s=1, z=1, p=2, d=1, a=0),  # one channel per chunk (25 taps)
              dict(C=6, O=70, k=3, s=2, z=1, p=1, d=2, a=0),  # two output-channel tiles (64 + 6), 3-channel chunks
              dict(C=3, O=5, k=3, s=1, z=2, p=1, d=1, a=1),  # the zero-inserted adjoint (Kz)
              dict(C=2, O=3, k=2, s=1, z=1, p=0, d=3, a=1),  # a phase of a transposed form: even k, dilation
              dict(C=16, O=24, k=4, s=1, z=1, p=-2, d=1, a=1),  # a crop (negative offset)
              dict(C=2, O=64, k=5, s=1, z=2, p=2, d=1, a=1)]  # K (Kz) staged once per tile: 256 threads
KS_CONV = (1, 5)  # TILED_CONV's configurations staging K in float32 (``_fit_tile``'s ks)
TILED_SIZES = EMU_SIZES + [dict(N=1, H=37, W=61, Ho=37, Wo=61), dict(N=3, H=17, W=33, Ho=9, Wo=33)]


def _reverse_blocks(low):
    """Every block index reversed (work-group g -> groups - 1 - g on each axis): PoCL then runs
    the blocks last to first, so a block storing into a neighbour's pixels is not hidden."""
    low.source, n = re.subn(r"\bget_group_id\((\d)\)", r"(get_num_groups(\1) - 1 - get_group_id(\1))", low.source)
    assert n > 0


def _generic(kernel, params, dtype):
    return Workload.make("pac", kernel, dict(params, N=None, H=None, W=None, Ho=None, Wo=None), dtype)


# conv_dk (``_conv_dk_generic_tiled``): the static tap-rule GEMM per pixel tile, G's sum and
# the tap sum padded to whole tiles, the source window staged per channel (a copy of Sz padded
# to whole windows: ``_staged_window``), else (DK_PER_TAP) loaded per thread and tap
TILED_DK = [dict(C=16, O=24, k=5, s=1, z=1, p=2, d=1), dict(C=3, O=5, k=3, s=2, z=1, p=2, d=2),
            dict(C=4, O=6, k=5, s=1, z=2, p=2, d=1),  # the kernel gradient of a transposed form
            dict(C=2, O=1, k=3, s=1, z=1, p=1, d=1),  # one output channel: G without a reduction loop
            dict(C=3, O=4, k=2, s=1, z=1, p=-1, d=1),  # a phase: even k, a crop (per tap)
            dict(C=3, O=5, k=3, s=2, z=1, p=1, d=1),  # stride 2 (staged: Sz's extent 2*Ho + 1)
            dict(C=3, O=5, k=4, s=2, z=1, p=1, d=1)]  # stride 2, even k (per tap)
DK_PER_TAP = (4, 6)  # TILED_DK's configurations whose window does not compact (_window_pads)
# conv_dw (``_conv_dw_generic_tiled``): the static split-K with a fixed count of parts over the
# batch's rows, each row padded to whole 32-pixel chunks
TILED_DW = [dict(C=16, O=24, k=5, s=1, z=1, p=2, d=1), dict(C=3, O=5, k=3, s=2, z=1, p=2, d=2),
            dict(C=37, O=70, k=3, s=1, z=1, p=1, d=1),  # two output-channel tiles, a tail of input channels
            dict(C=4, O=6, k=5, s=1, z=2, p=2, d=1)]  # the weight gradient of a transposed form
TILED = ([("conv", p) for p in TILED_CONV] + [("conv_dk", p) for p in TILED_DK]
         + [("conv_dw", p) for p in TILED_DW])
_IDS = [f"{k}-{i}" for i, (k, _) in enumerate(TILED)]


@pytest.mark.parametrize("dtype", ("float32", "float64", "float16"))
@pytest.mark.parametrize("kernel,params", TILED, ids=_IDS)
def test_cuda_generic_conv_is_tiled(kernel, params, dtype):
    """Every configuration above takes the tiled schedule (constant shared stages: codegen
    refuses anything else), which dispatch asks before serving CUDA calls generic."""
    from schedules import pac_cuda

    wl = _generic(kernel, params, dtype)
    assert pac_cuda.generic_tiled(wl, registry.prim_func(wl))
    assert "__shared__" in build(wl, cuda_target("sm_90")).mod.imports[0].inspect_source()


def test_cuda_generic_tiled_only_where_tiled():
    """The per-output kernels are not reported tiled: conv at k = 15 (no chunk fits), conv_dk
    at k = 9 (tap loops not unrolled), conv_dw at k = 1 (TVM's reindex fails on unit tap
    axes), pool; each still builds device code."""
    from schedules import pac_cuda

    for kernel, params in (("conv", dict(C=2, O=3, k=15, s=1, z=1, p=7, d=1, a=0)), _CUDA[2],
                           ("conv_dk", dict(C=2, O=3, k=9, s=1, z=1, p=4, d=1)),
                           ("conv_dw", dict(C=5, O=3, k=1, s=1, z=1, p=0, d=1))):
        wl = _generic(kernel, params, "float64")
        assert not pac_cuda.generic_tiled(wl, registry.prim_func(wl))
        assert "__global__" in build(wl, cuda_target("sm_90")).mod.imports[0].inspect_source()


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("way", emulate.WAYS)
@pytest.mark.parametrize("dtype", emulate.DTYPES)
@pytest.mark.parametrize("kernel,params", TILED, ids=_IDS)
def test_cuda_generic_tiled_conv_emulated(kernel, params, dtype, way):
    """One lowering, every size, blocks run in order and last to first."""
    wl = _generic(kernel, params, dtype)
    low = emulate.prepare(wl, way)
    assert ("xk_pad_shared" if kernel == "conv" else "dO_pad_shared") in low.source
    if kernel == "conv":  # K's stage (the adjoint's Kz), where it fits
        from schedules.pac_cuda import generic_conv_tile

        assert bool(re.search(r"\bKz?_reindex_shared_pad", low.source)) == generic_conv_tile(wl)["ks"]
    if kernel == "conv_dk":  # the staged window, where it compacts
        assert ("Sz_shared_pad" in low.source) == (TILED_DK.index(params) not in DK_PER_TAP)
    for sizes in TILED_SIZES:
        emulate.check(wl, way, sizes=sizes, lowered=low)
    for sizes in TILED_SIZES[-2:]:
        emulate.check(wl, way, sizes=sizes, lowered=low, mutate=_reverse_blocks)


def test_generic_conv_stages_k_where_it_fits():
    """The generic conv stages K once per tile (``_kernel_operand`` padded to whole tiles)
    exactly where the static tile would (``_fit_tile``: 50% occupancy on sm_80 with it)."""
    from schedules.pac_cuda import _fit_tile, generic_conv_tile

    for i, params in enumerate(TILED_CONV):
        wl = _generic("conv", params, "float32")
        t = generic_conv_tile(wl)
        assert t["ks"] == (i in KS_CONV) == _fit_tile(wl, t["tx"], t["yi"], t["yt"])["ks"], params
        script = build(wl, cuda_target("sm_80")).mod.imports[0].inspect_source()
        assert bool(re.search(r"__shared__ [^;]*\bKz?_reindex_shared_pad", script)) == t["ks"], params


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("dtype", emulate.HALF_DTYPES)
@pytest.mark.parametrize("kernel,params", [("conv", TILED_CONV[1]), ("conv_dk", TILED_DK[0]), ("conv_dw", TILED_DW[0])],
                         ids=["conv", "conv_dk", "conv_dw"])
def test_cuda_generic_tiled_conv_half(kernel, params, dtype):
    """float16 / bfloat16 (staged 16-bit; the ``cuda`` way, PoCL has no half arithmetic)."""
    wl = _generic(kernel, params, dtype)
    low = emulate.prepare(wl, "cuda")
    assert "_pad_shared" in low.source
    for sizes in TILED_SIZES[-2:]:
        assert emulate.check(wl, "cuda", sizes=sizes, lowered=low) <= emulate.TOLERANCE[dtype]


CONTROL_SIZES = dict(N=2, H=37, W=61, Ho=37, Wo=61)  # a partial tile each way, holding real pixels


def _control(wl, mutate, match):
    low = emulate.prepare(wl, "cuda")
    emulate.check(wl, "cuda", sizes=CONTROL_SIZES, lowered=low)  # unmutated: passes
    with pytest.raises(emulate.CheckFailed, match=match):
        emulate.check(wl, "cuda", sizes=CONTROL_SIZES, lowered=low, mutate=mutate)


def _grid_short(axis, launch=-1):
    def mutate(low):
        ln = low.launches[launch]
        ln.grid = tuple(n - (i == axis) for i, n in enumerate(ln.grid))
    return mutate


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
def _wt_copy_short(low):
    """The Wt chunk's copy one round of the block short: the last output channels' weights of
    the chunk stay poisoned in shared memory. (Dropping a barrier is no control here: PoCL
    keeps the staging ahead of the reads with its implicit barriers at the head of the
    work-group-uniform loops that follow, as for the static conv.)"""
    at = low.source.index("Wt_shared_ptr[(")  # the copy's store; its loop is the last one before
    loop = list(re.finditer(r"for \(int (\w+) = 0; \1 < (\d+);", low.source[:at]))[-1]
    low.source = (low.source[:loop.start(2)] + str(int(loop[2]) - 1) + low.source[loop.end(2):])


def _copy_short(store: str):
    """The cooperative copy whose first store is ``store`` one round of the block short (its
    innermost loop: the last one opened before the store)."""
    def mutate(low):
        at = low.source.index(store)
        loop = list(re.finditer(r"for \(int (\w+) = 0; \1 < (\d+);", low.source[:at]))[-1]
        low.source = low.source[:loop.start(2)] + str(int(loop[2]) - 1) + low.source[loop.end(2):]
    return mutate


_do_tile_short = _copy_short("dO_pad_shared_ptr[(")  # conv_dk's dO tile, conv_dw's dO chunk


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("params", [TILED_DK[0], TILED_DK[2]], ids=["k5", "z2"])
def test_control_generic_dk_window_short(params):
    """conv_dk's staged source window one round of the block short (per input channel): the
    window's elements past that round stay poisoned (first channel) or stale (the previous
    channel's) in shared memory and reach the taps."""
    _control(_generic("conv_dk", params, "float32"), _copy_short("Sz_shared_pad_ptr[("), "NaN|relative error")


@pytest.mark.parametrize("kernel,params", [("conv", TILED_CONV[0]), ("conv_dk", TILED_DK[0])], ids=["conv", "conv_dk"])
@pytest.mark.parametrize("name,mutate,match", [
    ("wt-copy-short", _wt_copy_short, "NaN"),
    # the grid one tile column / tile row / image short
    ("grid-x-short", _grid_short(0), "NaN"), ("grid-y-short", _grid_short(1), "NaN"),
    ("grid-z-short", _grid_short(2), "NaN")], ids=lambda v: v if isinstance(v, str) else "")
def test_control_generic_tiled_conv(kernel, params, name, mutate, match):
    _control(_generic(kernel, params, "float32"), mutate, match)


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("kernel,params", [("conv_dk", TILED_DK[0]), ("conv_dw", TILED_DW[0])], ids=["conv_dk", "conv_dw"])
def test_control_generic_tiled_short_do_tile(kernel, params):
    _control(_generic(kernel, params, "float32"), _do_tile_short, "NaN|relative error")


def _first_part_dropped(low):
    """conv_dw's second kernel adds the parts from the second on (the first holds rows)."""
    low.source, n = re.subn(r"for \(int (n_y_fused_0) = 0;", r"for (int \1 = 1;", low.source)
    assert n == 1


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("name,mutate,match", [
    ("first-part-dropped", _first_part_dropped, "relative error"),
    # the partial sums' kernel one block short: the last block's sums (a part past the rows:
    # zeros, but written) stay poisoned in the scratch
    ("partials-grid-short", _grid_short(0, launch=0), "NaN"),
    ("sum-grid-short", _grid_short(0, launch=1), "NaN")], ids=lambda v: v if isinstance(v, str) else "")
def test_control_generic_tiled_dw(name, mutate, match):
    wl = _generic("conv_dw", TILED_DW[0], "float32")
    low = emulate.prepare(wl, "cuda")
    assert len(low.launches) == 2 and low.scratch
    _control(wl, mutate, match)


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("params,store", [(TILED_CONV[1], "K_reindex_shared_pad_ptr[("),
                                          (TILED_CONV[5], "Kz_reindex_shared_pad_ptr[(")], ids=["K", "Kz"])
def test_control_generic_conv_k_stage_short(params, store):
    """The K stage's copy (once per tile) one round of the block short: part of the tile's K
    (the adjoint's Kz) stays poisoned in shared memory and reaches outputs."""
    _control(_generic("conv", params, "float32"), _copy_short(store), "NaN")


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
def test_control_generic_tiled_conv_short_staging():
    """The modulated-taps prologue one round of the block short (per input channel of the
    chunk): part of the chunk's B operand stays unbuilt (poisoned shared memory) and reaches
    outputs."""
    _control(_generic("conv", TILED_CONV[1], "float32"), _copy_short("xk_pad_shared_ptr[("), "NaN")


# the generic conv_dk's o-major Wt stage under ``__launch_bounds__`` (``pac_cuda._dk_generic_bound``:
# float32 k5 s1 d1, O a multiple of 32): Wt[:, c] as (i, j, o), copied whole output channels per
# round, a tap's weights read 4 channels a vector
DK_O_MAJOR = dict(C=3, O=64, k=5, s=1, z=1, p=2, d=1)  # the benchmark's O and k, few channels (PoCL time)


@pytest.mark.skipif(emulate.available() is not None, reason=f"PoCL unavailable: {emulate.available()}")
@pytest.mark.parametrize("way", emulate.WAYS)
def test_cuda_generic_dk_o_major_emulated(way):
    """The o-major, bounded generic conv_dk right on PoCL from one sm_80 lowering at tail
    sizes (odd sizes, batch 1), blocks in reverse order too, and its Wt copy one round short
    caught (12 output channels a round, 320 threads // 25 taps: channels 60-63 left poisoned);
    a float64 build and O = 6 keep the padded tap-row stage."""
    from schedules import pac_cuda

    def bound(params, dtype="float32"):
        wl_ = _generic("conv_dk", params, dtype)
        return pac_cuda._dk_generic_bound(wl_, pac_cuda.generic_dk_tile(wl_))

    wl = _generic("conv_dk", DK_O_MAJOR, "float32")
    assert bound(DK_O_MAJOR) == bound(dict(DK_O_MAJOR, O=32, z=2)) == 4  # 50%: 40 warps
    assert bound(DK_O_MAJOR, "float64") == bound(TILED_DK[0]) == bound(dict(DK_O_MAJOR, O=48)) == 0  # O 24, 48
    assert bound(dict(DK_O_MAJOR, k=3, p=1)) == bound(dict(DK_O_MAJOR, d=2, p=4)) == 0
    low = emulate.prepare(wl, way, arch="sm_80")
    assert "Sz_shared_pad" in low.source and "Wt_shared_ptr[1600]" in low.source  # unpadded: 64 x 25
    for sizes in TILED_SIZES[-3:]:
        emulate.check(wl, way, sizes=sizes, lowered=low, arch="sm_80")
    emulate.check(wl, way, sizes=TILED_SIZES[-1], lowered=low, arch="sm_80", mutate=_reverse_blocks)
    with pytest.raises(emulate.CheckFailed, match="NaN"):
        emulate.check(wl, way, sizes=CONTROL_SIZES, lowered=low, arch="sm_80", mutate=_wt_copy_short)


def _innermost_fma_loop(ptx: str) -> list:
    """The PTX lines of the smallest loop (a label and a branch back to it) holding an FMA."""
    lines = ptx.splitlines()
    labels = {m[1]: n for n, ln in enumerate(lines) if (m := re.match(r"^(\$L__BB\d+_\d+):", ln))}
    loops = [lines[labels[m[1]]:n] for n, ln in enumerate(lines)
             if (m := re.search(r"\bbra(?:\.uni)?\s+(\$L__BB\d+_\d+);", ln)) and labels.get(m[1], n) < n]
    return min((body for body in loops if any("fma.rn.f32" in ln for ln in body)), key=len)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_cuda_generic_dk_o_major_resources(arch, tmp_path):
    """The benchmark's generic conv_dk (C = O = 64, k5, float32): __launch_bounds__(320, 4),
    ptxas 48 registers without spills, 40,320 B of shared memory, >= 50% theoretical occupancy
    (62%; sm_80 was 62 registers, 44,160 B: 47%), and in its G loop (PTX) at most 13 shared
    loads per 40 FMAs, weights as 4-channel vectors (the padded tap rows: 4 per 10)."""
    import subprocess

    from dynfilter_tvm.gpu_report import occupancy, ptxas_resources

    src = build(_generic("conv_dk", dict(DK_O_MAJOR, C=64), "float32"), cuda_target(arch)).mod.imports[0].inspect_source()
    assert "__launch_bounds__(320, 4)" in src
    res = ptxas_resources(src, arch)["pac_conv_dk_kernel"]
    assert res["spill"] == 0 and res["smem"] == 40320 and occupancy(arch, 320, res["regs"], res["smem"]) >= 0.5, res
    (tmp_path / "k.cu").write_text(src)
    subprocess.run(["nvcc", f"-arch={arch}", "-ptx", "-o", str(tmp_path / "k.ptx"), str(tmp_path / "k.cu")],
                   check=True, capture_output=True)
    body = _innermost_fma_loop((tmp_path / "k.ptx").read_text())
    fma = sum("fma.rn.f32" in ln for ln in body)
    vec, lds = (sum(op in ln for ln in body) for op in ("ld.shared.v4.f32", "ld.shared."))
    assert fma % 40 == 0 and vec == fma // 8 and lds * 40 <= 13 * fma, (fma, vec, lds)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
def test_cuda_generic_tiled_nvcc_no_spills(arch):
    """ptxas (nvcc) builds the tiled generic conv, conv_dk and conv_dw without spills, float32
    and float64: the benchmark's configuration (C = O = 64, k = 5), k = 3 and 7, an input
    gradient at stride 2, a crop, 70 output channels at stride 2 and dilation 2 (conv; the
    last two spilled 8-64 B before the xk copy kept its first loop serial, and the static
    build at 37 x 61 spills 48 B there on sm_90), stride 2 with dilation 2 and zero insertion
    (the others)."""
    from dynfilter_tvm.gpu_report import ptxas_resources

    cases = [dict(C=64, O=64, k=5, s=1, z=1, p=2, d=1, a=0), dict(C=64, O=64, k=3, s=1, z=1, p=1, d=1, a=0),
             dict(C=32, O=16, k=3, s=1, z=2, p=1, d=1, a=1), dict(C=8, O=8, k=7, s=1, z=1, p=3, d=1, a=0),
             *TILED_CONV]
    dk = [dict(C=64, O=64, k=5, s=1, z=1, p=2, d=1), dict(C=64, O=64, k=3, s=1, z=1, p=1, d=1),
          dict(C=8, O=8, k=7, s=1, z=1, p=3, d=1), *TILED_DK]
    for kernel, params, dtype in ([("conv", p, dtype) for p in cases for dtype in ("float32", "float64")]
                                  + [(kernel, p, dtype) for kernel in ("conv_dk", "conv_dw") for p in dk
                                     for dtype in ("float32", "float64")]):
        src = build(_generic(kernel, params, dtype), cuda_target(arch)).mod.imports[0].inspect_source()
        res = ptxas_resources(src, arch)
        assert res and all(r["spill"] == 0 for r in res.values()), (params, dtype, res)


def test_cuda_default_generic_where_tiled(monkeypatch):
    """Nothing set: CUDA calls of PAC conv, conv_dk and conv_dw are served generic where the
    generic build is tiled (conv_dk: its source window staged) and no static build could take
    tensor cores; conv and conv_dk on tensor cores (half types, TF32; O and C whole mma
    tiles), conv_dk's per-tap fallback and the light kernels static."""
    dispatch.set_shape_mode(None)
    monkeypatch.delenv(dispatch.ENV_SHAPES, raising=False)
    sm90, sm75 = cuda_target("sm_90"), cuda_target("sm_75")
    geo = dict(N=2, H=9, W=33, Ho=9, Wo=33, k=3, s=1, z=1, p=1, d=1)
    assert dispatch.shape_mode(sm90, "pac") == "generic"

    def served(kernel, dtype, target=sm90, **p):
        wl = Workload.make("pac", kernel, dict(geo, **p), dtype)
        got = dispatch.select(wl, target)
        assert got is wl or got.kind == "generic"
        return got.kind

    assert served("conv", "float32", C=16, O=16, a=0) == "generic"  # SIMT either way
    assert served("conv", "float64", C=16, O=16, a=1) == "generic"
    assert served("conv", "float32", C=16, O=16, a=0, tf32=1) == "static"  # TF32 tensor cores
    assert served("conv", "float32", C=16, O=24, a=0, tf32=1) == "generic"  # O no whole mma tile
    assert served("conv", "float32", C=16, O=16, a=0, tf32=1, target=sm75) == "generic"  # no TF32 mma
    assert served("conv", "float16", C=16, O=16, a=0) == "static"
    assert served("conv", "bfloat16", C=12, O=16, a=0) == "generic"
    assert served("conv", "float64", C=2, O=3, a=0, k=15, p=7) == "static"  # generic per-output
    assert served("conv_dk", "float32", C=16, O=16) == "generic"  # its source window staged: 1.00x
    assert served("conv_dk", "float64", C=16, O=24, k=5, p=2) == "generic"
    assert served("conv_dk", "float16", C=16, O=16) == "static"  # tensor cores (sm_80+, O, C % 16 = 0)
    assert served("conv_dk", "float16", C=16, O=16, target=sm75) == "generic"  # no mma.sync there
    assert served("conv_dk", "float32", C=16, O=16, tf32=1) == "static"  # TF32 tensor cores
    assert served("conv_dk", "float32", C=16, O=24, tf32=1) == "generic"  # O no whole mma tile
    assert served("conv_dk", "float32", C=16, O=16, tf32=1, target=sm75) == "generic"  # no TF32 mma
    assert served("conv_dk", "bfloat16", C=12, O=16) == "generic"  # C no whole mma tile
    assert served("conv_dk", "float32", C=16, O=16, s=2, Ho=5, Wo=17) == "generic"  # k3 s2: staged too
    assert served("conv_dk", "float32", C=16, O=16, k=2, p=-1, Ho=7, Wo=31) == "static"  # per-tap loads
    assert served("conv_dw", "float32", C=16, O=16) == "generic"
    assert served("conv_dw", "float16", C=16, O=16) == "generic"  # (no tensor cores in conv_dw)
    assert served("pool", "float32", C=16, G=1, a=0) == "static"
    assert dispatch.select(Workload.make("pac", "conv_dk", dict(geo, C=16, O=16), "float32"), cpu_target()).kind == "generic"
    monkeypatch.setenv(dispatch.ENV_SHAPES, "static")
    wl = Workload.make("pac", "conv", dict(geo, C=16, O=16, a=0), "float32")
    assert dispatch.select(wl, sm90) is wl


def test_cuda_generic_conv_k1_takes_the_static_build():
    """PAC conv 1x1 at C = O = 64: TVM's region arithmetic overflows int32 on the generic tiled
    trial (a ValueError raised at the first CUDA call before 2026-12-04); the trial now counts
    as not tiled (``common.if_constant``'s guard), so CUDA calls take the static build by default
    and the generic build runs a thread per output (checked on PoCL in
    ``test_cuda_generic_emulated``)."""
    from schedules.pac_cuda import generic_serves, generic_tiled

    wl = Workload.make("pac", "conv", dict(C=64, O=64, k=1, s=1, z=1, p=0, d=1, a=0, N=None, H=None, W=None,
                                           Ho=None, Wo=None), "float32")
    func = registry.prim_func(wl)
    assert not generic_tiled(wl, func)
    assert not generic_serves(wl, func, cuda_target("sm_90"))
