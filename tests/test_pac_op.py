"""PAC on the TVM kernels against the plain-PyTorch reference: the convolution, its transposed
form, pooling and the adapting kernel; forward and every gradient, dtypes, layouts, autograd
checks, torch.compile, autocast and input validation."""
import pytest
import torch

from torch_bridge import functional as Fn
from torch_bridge.reference import pac as R
from torch_bridge.ops import pac as pac_ops
from torch_bridge.ops.pac import conv_op, dist_op, pool_op

REF = {Fn.pacconv2d: R.pacconv2d_reference, Fn.pacconv_transpose2d: R.pacconv_transpose2d_reference,
       Fn.pacpool2d: R.pacpool2d_reference}


def _compare(fn, inputs, kwargs, dtype, atol, rtol, ref_fn=None):
    """fn on ``inputs`` (in dtype) and the reference in float64: the output and the gradient of
    every input that requires one, relative to the largest reference value."""
    ref_fn = ref_fn or REF[fn]
    ref_in = [t.detach().double().requires_grad_(t.requires_grad) if torch.is_tensor(t) else t for t in inputs]
    got_in = [t.detach().to(dtype).requires_grad_(t.requires_grad) if torch.is_tensor(t) else t for t in inputs]
    want = ref_fn(*ref_in, **kwargs)
    got = fn(*got_in, **kwargs)
    want, got = (want[0], got[0]) if isinstance(want, tuple) else (want, got)
    grad = torch.randn_like(want)
    diff = [t for t in ref_in if torch.is_tensor(t) and t.requires_grad]
    want_g = torch.autograd.grad(want, diff, grad)
    got_g = torch.autograd.grad(got, [t for t in got_in if torch.is_tensor(t) and t.requires_grad], grad.to(dtype))
    for i, (g, w) in enumerate(zip((got, *got_g), (want, *want_g))):
        assert g.dtype == dtype and g.shape == w.shape, i
        scale = w.abs().max().item() or 1.0
        torch.testing.assert_close(g.double() / scale, w / scale, atol=atol, rtol=rtol, msg=f"tensor {i} {kwargs}")


def conv_inputs(N, C, O, H, W, k, s, p, d, transposed=False, op=0, shared=False, bias=True):
    x = torch.randn(N, C, H, W, dtype=torch.float64)
    if transposed:
        Ho, Wo = R.conv_transpose_output_size((H, W), (k, k), (s, s), (p, p), (op, op), (d, d))
        w = torch.randn(1, 1, k, k) if shared else torch.randn(C, O, k, k)
    else:
        Ho, Wo = R.conv_output_size((H, W), (k, k), (s, s), (p, p), (d, d))
        w = torch.randn(1, 1, k, k) if shared else torch.randn(O, C, k, k)
    K = torch.rand(N, 1, k, k, Ho, Wo)
    b = torch.randn(C if shared else O) if bias else None
    return [t if t is None else t.double().requires_grad_() for t in (x, K, w, b)]


# (N, C, O, H, W, k, s, p, d): 'same' padding, stride, dilation, no / large padding, odd sizes,
# batch 1, one pixel, a row longer than a few vectors, k = 1 and 7
CONV_CASES = [
    (2, 3, 5, 7, 9, 3, 1, 1, 1),
    (1, 4, 6, 9, 8, 3, 2, 1, 1),
    (1, 3, 4, 10, 11, 5, 1, 4, 2),
    (2, 2, 3, 6, 7, 3, 1, 0, 1),
    (1, 5, 2, 8, 9, 5, 3, 2, 1),
    (1, 2, 3, 1, 1, 1, 1, 0, 1),
    (1, 3, 17, 5, 37, 3, 1, 1, 1),
    (1, 2, 2, 9, 9, 7, 1, 3, 1),
    # strided with dilation: the input gradient by phase (gcd(d, s) = 2 and 1, even tap counts)
    (1, 3, 4, 11, 13, 5, 2, 3, 2),
    (2, 2, 3, 13, 10, 3, 3, 2, 2),
    (1, 3, 2, 20, 23, 7, 2, 3, 3),
    # channels a multiple of the vector lanes: the weight gradient vectorised along channels
    (2, 16, 10, 9, 13, 3, 1, 1, 1),
    (1, 32, 5, 11, 7, 5, 2, 2, 1),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_pacconv2d_float64(case):
    N, C, O, H, W, k, s, p, d = case
    _compare(Fn.pacconv2d, conv_inputs(*case), dict(stride=s, padding=p, dilation=d), torch.float64, 1e-12, 1e-10)


# (..., output_padding)
TRANSPOSED_CASES = [
    (2, 3, 5, 4, 5, 3, 2, 1, 1, 1),
    (1, 4, 2, 5, 4, 5, 2, 2, 1, 0),
    (1, 3, 4, 3, 4, 3, 1, 1, 2, 0),
    (1, 2, 3, 3, 5, 5, 3, 1, 1, 2),
    (1, 2, 2, 4, 4, 3, 2, 0, 1, 1),
    (1, 3, 2, 5, 6, 5, 3, 2, 2, 1),
    (2, 2, 3, 4, 7, 3, 2, 1, 2, 1),
]


@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=str)
def test_pacconv_transpose2d_float64(case):
    N, C, O, H, W, k, s, p, d, op = case
    inputs = conv_inputs(N, C, O, H, W, k, s, p, d, transposed=True, op=op)
    _compare(Fn.pacconv_transpose2d, inputs, dict(stride=s, padding=p, output_padding=op, dilation=d),
             torch.float64, 1e-12, 1e-10)


@pytest.mark.parametrize("k,z,p,d", [(3, 2, 1, 1), (5, 2, 3, 2), (5, 3, 2, 2), (7, 3, -1, 3), (1, 2, 0, 1)])
def test_phase_taps(k, z, p, d):
    """Per output phase, the taps that hit source samples and where they read, against the
    zero-inserted grid enumerated."""
    for r in range(z):
        vs, c, dd = pac_ops.phase_taps(k, z, p, d, r)
        for m in range(-3, 4):
            y = z * m + r
            hits = [(v, (y + v * d - p) // z) for v in range(k) if (y + v * d - p) % z == 0]
            assert hits == [(v, m + t * dd + c) for t, v in enumerate(vs)], (r, m)


def test_zero_inserted_forms_run_by_phase(monkeypatch):
    """The transposed forms and the strided input gradients never run over inserted zeros
    (pooling at stride 2 included: by default it keeps the zero-inserted kernel, see
    ``PHASE_MIN_ZERO_INSERTION``)."""
    monkeypatch.setattr(pac_ops, "PHASE_MIN_ZERO_INSERTION", {"conv": 2, "pool": 2})
    seen = []
    real = pac_ops.run
    monkeypatch.setattr(pac_ops, "run", lambda op, kernel, p, *a: seen.append((kernel, p)) or real(op, kernel, p, *a))
    _compare(Fn.pacconv2d, conv_inputs(1, 3, 4, 11, 13, 5, 2, 3, 2), dict(stride=2, padding=3, dilation=2),
             torch.float64, 1e-12, 1e-10)
    _compare(Fn.pacconv_transpose2d, conv_inputs(1, 2, 3, 4, 7, 3, 3, 1, 1, transposed=True, op=2),
             dict(stride=3, padding=1, output_padding=2), torch.float64, 1e-12, 1e-10)
    inputs = [torch.randn(1, 2, 9, 8, dtype=torch.float64, requires_grad=True),
              torch.rand(1, 2, 3, 3, 5, 4, dtype=torch.float64, requires_grad=True)]
    _compare(Fn.pacpool2d, inputs, dict(kernel_size=3, stride=2, padding=1), torch.float64, 1e-12, 1e-10)
    forms = [p for kernel, p in seen if kernel in ("conv", "pool")]
    assert forms and all(p["z"] == 1 for p in forms)
    assert any(p["k"] % 2 == 0 for p in forms)  # phases of 2 taps


@pytest.mark.parametrize("transposed", [False, True])
def test_shared_filters_float64(transposed):
    N, C, H, W, k, s, p, d = 2, 3, 6, 7, 3, 2, 1, 1
    inputs = conv_inputs(N, C, C, H, W, k, s, p, d, transposed=transposed, op=1 if transposed else 0, shared=True)
    kw = dict(stride=s, padding=p, dilation=d, shared_filters=True)
    fn = Fn.pacconv_transpose2d if transposed else Fn.pacconv2d
    if transposed:
        kw["output_padding"] = 1
    _compare(fn, inputs, kw, torch.float64, 1e-12, 1e-10)


POOL_CASES = [  # (N, C, G, H, W, k, s, p, d)
    (2, 3, 1, 7, 9, 3, 1, 1, 1),
    (1, 4, 4, 9, 8, 3, 2, 1, 1),
    (1, 3, 3, 10, 11, 5, 1, 4, 2),
    (1, 2, 1, 8, 9, 5, 3, 0, 1),
    (1, 3, 1, 11, 12, 5, 2, 2, 2),
    (2, 2, 2, 10, 9, 3, 3, 1, 2),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pacpool2d_float64(case):
    N, C, G, H, W, k, s, p, d = case
    Ho, Wo = R.conv_output_size((H, W), (k, k), (s, s), (p, p), (d, d))
    inputs = [torch.randn(N, C, H, W, dtype=torch.float64, requires_grad=True),
              torch.rand(N, G, k, k, Ho, Wo, dtype=torch.float64, requires_grad=True)]
    _compare(Fn.pacpool2d, inputs, dict(kernel_size=k, stride=s, padding=p, dilation=d), torch.float64, 1e-12, 1e-10)


KERNEL_OPTIONS = [
    dict(),
    dict(kernel_type="inv_0.5_1"),
    dict(kernel_type="inv_0.5_2_asym", channel_wise=True),
    dict(kernel_type="gaussian", smooth_kernel_type="gaussian"),
    dict(kernel_type="inv_1_1_fixed", normalize_kernel=True),
    dict(channel_wise=True, normalize_kernel=True),
    dict(mask=True),
    dict(transposed=True, output_padding=1),
]


def _packernel_inputs(opts, C=3, H=9, W=8, k=3, s=2, p=1, d=1):
    opts = dict(opts)
    f = torch.randn(2, C, H, W, dtype=torch.float64, requires_grad=True)
    inputs = [f]
    kw = dict(kernel_size=k, stride=s, padding=p, dilation=d)
    if opts.pop("mask", False):
        kw["mask"] = (torch.rand(2, 1, H, W) > 0.3).double()
    if opts.get("smooth_kernel_type", "none") != "none":
        kw["smooth_kernel"] = torch.tensor([.25, .5, .25]).outer(torch.tensor([.25, .5, .25]))[None, None].double()
    if opts.get("kernel_type", "gaussian").startswith("inv") and "fixed" not in opts.get("kernel_type"):
        n = C if opts.get("channel_wise") else 1
        kw["inv_alpha"] = torch.full((n,), 0.5, dtype=torch.float64, requires_grad=True)
        kw["inv_lambda"] = torch.full((n,), 1.5, dtype=torch.float64, requires_grad=True)
    kw.update(opts)
    return inputs, kw


@pytest.mark.parametrize("opts", KERNEL_OPTIONS, ids=str)
def test_packernel2d_float64(opts):
    (f,), kw = _packernel_inputs(opts)
    want = R.packernel2d_reference(f, **kw)
    got = Fn.packernel2d(f, **kw)
    assert (want[1] is None) == (got[1] is None)
    if want[1] is not None:
        torch.testing.assert_close(got[1], want[1])
    torch.testing.assert_close(got[0], want[0], atol=1e-12, rtol=1e-10)
    grad = torch.randn_like(want[0])
    leaves = [f] + [kw[n] for n in ("inv_alpha", "inv_lambda") if n in kw]
    for g, w in zip(torch.autograd.grad(got[0], leaves, grad), torch.autograd.grad(want[0], leaves, grad)):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("k,s,p,d", [(3, 1, 1, 1), (5, 2, 0, 1), (3, 1, 3, 2), (5, 3, 2, 2)])
def test_packernel2d_geometries(k, s, p, d):
    f = torch.randn(1, 2, 11, 10, dtype=torch.float64, requires_grad=True)
    kw = dict(kernel_size=k, stride=s, padding=p, dilation=d)
    got, want = Fn.packernel2d(f, **kw)[0], R.packernel2d_reference(f, **kw)[0]
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
    grad = torch.randn_like(want)
    torch.testing.assert_close(torch.autograd.grad(got, f, grad)[0], torch.autograd.grad(want, f, grad)[0])


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.float16, 1e-2), (torch.bfloat16, 5e-2)])
def test_other_dtypes(dtype, atol):
    for case in (CONV_CASES[0], CONV_CASES[-2]):  # (the second: conv_dw's vectors along channels)
        N, C, O, H, W, k, s, p, d = case
        _compare(Fn.pacconv2d, conv_inputs(*case), dict(stride=s, padding=p, dilation=d), dtype, atol,
                 1e-4 if dtype == torch.float32 else 0)
    f = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    _compare(Fn.packernel2d, [f], dict(kernel_size=3, stride=1, padding=1), dtype, atol, 0,
             ref_fn=R.packernel2d_reference)


def test_gradcheck():
    x, K, w, b = conv_inputs(1, 2, 3, 5, 6, 3, 2, 1, 1)
    assert torch.autograd.gradcheck(lambda *t: Fn.pacconv2d(*t, stride=2, padding=1), (x, K, w, b))
    x, K, w, b = conv_inputs(1, 2, 2, 3, 4, 3, 2, 1, 1, transposed=True, op=1)
    assert torch.autograd.gradcheck(
        lambda *t: Fn.pacconv_transpose2d(*t, stride=2, padding=1, output_padding=1), (x, K, w, b))
    f = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: Fn.packernel2d(t, kernel_size=3, padding=1, kernel_type="inv_0.5_1_asym",
                                                             channel_wise=True)[0], (f,))
    Kp = torch.rand(1, 2, 3, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: Fn.pacpool2d(a, b, 3, padding=1), (f, Kp))


def test_only_requested_gradients():
    x, K, w, b = conv_inputs(1, 2, 3, 5, 6, 3, 1, 1, 1)
    x.requires_grad_(False)
    w.requires_grad_(False)
    out = Fn.pacconv2d(x, K, w, b, padding=1)
    dK, db = torch.autograd.grad(out.sum(), (K, b))
    assert dK.shape == K.shape and db.shape == b.shape


def test_noncontiguous_and_misaligned_inputs():
    x, K, w, b = conv_inputs(2, 3, 4, 7, 9, 3, 1, 1, 1)
    xt = x.detach().transpose(2, 3).contiguous().transpose(2, 3)  # channels-last-ish strides
    Kt = torch.cat([K.detach()[:1], K.detach()], 0)[1:]  # an offset view
    got = Fn.pacconv2d(xt, Kt, w.detach()[:, :, :, :], b.detach(), padding=1)
    want = R.pacconv2d_reference(x.detach(), K.detach(), w.detach(), b.detach(), padding=1)
    torch.testing.assert_close(got, want)


def test_opcheck():
    x, K, w, b = conv_inputs(1, 2, 3, 5, 6, 3, 1, 1, 1)
    torch.library.opcheck(conv_op, (x, K, w, b, 1, 1, 0, 1, False))
    x2, K2, w2, b2 = conv_inputs(1, 2, 3, 3, 4, 3, 2, 1, 1, transposed=True, op=1)
    torch.library.opcheck(conv_op, (x2, K2, w2, b2, 2, 1, 1, 1, True))
    Kp = torch.rand(1, 2, 3, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(pool_op, (x, Kp, 3, 1, 1, 0, 1, False))
    f0 = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(dist_op, (x, f0, 3, 1, 1, 1, False, True, False))
    torch.library.opcheck(dist_op, (x, f0, 3, 1, 1, 1, True, False, True))


def _layer_like(x, f, w, b):
    K, _ = Fn.packernel2d(f, kernel_size=3, padding=1)
    return Fn.pacconv2d(x, K, w, b, padding=1)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile(backend):
    x, _, w, b = conv_inputs(1, 2, 3, 5, 6, 3, 1, 1, 1)
    f = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    compiled = torch.compile(_layer_like, backend=backend, fullgraph=True)
    got = compiled(x, f, w, b)
    want = _layer_like(x, f, w, b)
    torch.testing.assert_close(got, want)
    g1 = torch.autograd.grad(got.sum(), (x, f, w, b))
    g2 = torch.autograd.grad(want.sum(), (x, f, w, b))
    for a, c in zip(g1, g2):
        torch.testing.assert_close(a, c)


def test_autocast_cpu_bfloat16():
    x, _, w, b = conv_inputs(1, 2, 3, 5, 6, 3, 1, 1, 1)
    x, w, b = x.float(), w.float(), b.float()
    f = torch.randn(1, 2, 5, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        K, _ = Fn.packernel2d(f, kernel_size=3, padding=1)
        out = Fn.pacconv2d(x, K, w, b, padding=1)
    assert K.dtype == out.dtype == torch.bfloat16
    want = _layer_like(x.double(), f.double(), w.double(), b.double())
    torch.testing.assert_close(out.double(), want, atol=0.1, rtol=0.05)


def test_meta_tensors_give_shapes():
    x = torch.empty(2, 3, 9, 8, device="meta")
    K = torch.empty(2, 1, 3, 3, 5, 4, device="meta")
    assert Fn.pacconv2d(x, K, torch.empty(4, 3, 3, 3, device="meta"), stride=2, padding=1).shape == (2, 4, 5, 4)
    Kt = torch.empty(2, 1, 3, 3, 18, 16, device="meta")
    out = Fn.pacconv_transpose2d(x, Kt, torch.empty(3, 4, 3, 3, device="meta"), stride=2, padding=1, output_padding=1)
    assert out.shape == (2, 4, 18, 16)


def test_non_square_geometry_uses_the_reference():
    x, _, _, b = conv_inputs(1, 2, 3, 6, 7, 3, 1, 1, 1)
    w = torch.randn(3, 2, 3, 5, dtype=torch.float64)
    K = torch.rand(1, 1, 3, 5, 6, 7, dtype=torch.float64)
    torch.testing.assert_close(Fn.pacconv2d(x, K, w, b, padding=(1, 2)),
                               R.pacconv2d_reference(x, K, w, b, padding=(1, 2)))


BAD = [
    (dict(kernel=torch.rand(1, 2, 3, 3, 5, 6)), ValueError, "kernel must have shape"),
    (dict(kernel=torch.rand(1, 1, 3, 3, 4, 6)), ValueError, "kernel must have shape"),
    (dict(weight=torch.randn(3, 4, 3, 3)), ValueError, "weight"),
    (dict(bias=torch.randn(4)), ValueError, "bias"),
    (dict(stride=0), ValueError, "stride"),
    (dict(padding=-1), ValueError, "padding"),
    (dict(input=torch.randn(1, 2, 5, 6, dtype=torch.float64)), TypeError, "dtype"),
    (dict(input=torch.randn(2, 5, 6)), ValueError, "4-D"),
    (dict(input=torch.randint(0, 3, (1, 2, 5, 6))), TypeError, "dtype"),
]


@pytest.mark.parametrize("over,exc,match", BAD, ids=[b[2] + str(i) for i, b in enumerate(BAD)])
def test_bad_input_raises_clear_error(over, exc, match):
    args = dict(input=torch.randn(1, 2, 5, 6), kernel=torch.rand(1, 1, 3, 3, 5, 6), weight=torch.randn(3, 2, 3, 3),
                bias=torch.randn(3), stride=1, padding=1)
    args.update(over)
    with pytest.raises(exc, match=match):
        Fn.pacconv2d(**args)


def test_benchmark_check_and_one_shape_run():
    from torch_bridge.app.bench import pac as pac_bench

    assert pac_bench.check(torch.device("cpu"), verbose=False) < 1e-12
    rows = pac_bench.bench_shape(1, 4, 9, 10, 3, torch.device("cpu"), compile_ref=False, repeats=1)
    assert {(r["pass"], r["variant"]) for r in rows} == {
        (p, v) for p in ("forward", "forward+backward") for v in ("dynfilter_tvm", "unfold eager", "conv2d")}
    assert all(r["ms"] > 0 for r in rows)


@pytest.mark.parametrize("native_impl", [False, True])
def test_empty_batch_gives_empty_outputs_and_gradients(native_impl, no_kernels):
    # like F.conv2d / F.conv_transpose2d: batch 0 is fine (no kernel runs), parameters get zeros
    kw = dict(native_impl=native_impl)
    x = torch.randn(0, 3, 7, 6, requires_grad=True)
    sk = torch.rand(1, 1, 3, 3, requires_grad=True)
    K, mask = Fn.packernel2d(x, torch.ones(0, 1, 7, 6), 3, stride=2, padding=1, smooth_kernel_type="full_3",
                             smooth_kernel=sk, **kw)
    assert K.shape == (0, 1, 3, 3, 4, 3) and mask.shape == (0, 1, 1, 1, 4, 3)
    Kt = torch.rand(0, 1, 3, 3, 14, 12, requires_grad=True)
    w, wt, ws = (torch.randn(*s, requires_grad=True) for s in ((5, 3, 3, 3), (3, 5, 3, 3), (1, 1, 3, 3)))
    b = torch.randn(5, requires_grad=True)
    outs = [
        (Fn.pacconv2d(x, K, w, b, stride=2, padding=1, **kw), (0, 5, 4, 3)),
        (Fn.pacconv2d(x, K, ws, None, stride=2, padding=1, shared_filters=True, **kw), (0, 3, 4, 3)),
        (Fn.pacconv_transpose2d(x, Kt, wt, b, stride=2, padding=1, output_padding=1, **kw), (0, 5, 14, 12)),
        (Fn.pacpool2d(x, K, 3, stride=2, padding=1, **kw), (0, 3, 4, 3)),
    ]
    assert [tuple(o.shape) for o, _ in outs] == [s for _, s in outs]
    params = (x, Kt, w, wt, ws, b, sk)
    grads = torch.autograd.grad(sum(o.sum() for o, _ in outs), params)
    for t, g in zip(params, grads):
        assert g.shape == t.shape and not g.any()


def test_kernel_size_limit_names_native_impl():
    x, K, w = torch.randn(1, 2, 5, 4), torch.rand(1, 1, 17, 17, 5, 4), torch.randn(3, 2, 17, 17)
    with pytest.raises(ValueError, match="at most 15 .*native_impl=True"):
        Fn.pacconv2d(x, K, w, padding=8)
    out = Fn.pacconv2d(x, K, w, padding=8, native_impl=True)
    torch.testing.assert_close(out, R.pacconv2d_reference(x, K, w, padding=8))


@pytest.mark.parametrize("kernel", ("conv", "conv_dk"))
def test_tf32_flag_leaves_cpu_results_unchanged(kernel):
    """The ``tf32`` flag (a CUDA schedule choice, in the workloads of conv and conv_dk) changes
    nothing in the compute: its CPU build (what a CUDA bundle also holds for the CPU target)
    gives bit for bit the unflagged kernel's result, in float32 and float64."""
    from torch_bridge.runtime import run

    g = torch.Generator().manual_seed(0)
    p = dict(N=1, C=4, O=6, H=7, W=9, Ho=7, Wo=9, k=3, s=1, z=1, p=1, d=1)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(1, 4, 7, 9, generator=g, dtype=dtype)
        K = torch.rand(1, 1, 3, 3, 7, 9, generator=g, dtype=dtype)
        dO = torch.randn(1, 6, 7, 9, generator=g, dtype=dtype)
        w = torch.randn(6, 4, 3, 3, generator=g, dtype=dtype)
        args, out = ((x, K, w), torch.empty_like(dO)) if kernel == "conv" else ((dO, x, w), torch.empty_like(K))
        q = dict(p, a=0) if kernel == "conv" else p
        outs = []
        for flag in ({}, {"tf32": 1}):
            res = torch.full_like(out, float("nan"))
            run("pac", kernel, dict(q, **flag), dtype, torch.device("cpu"), *args, res)
            outs.append(res)
        assert torch.isfinite(outs[0]).all() and torch.equal(outs[0], outs[1])
