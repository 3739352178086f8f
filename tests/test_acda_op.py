"""ACDA atom convolution (TVM kernels) against the plain-PyTorch reference: forward, the three
gradients, dtypes, layouts, autograd checks, torch.compile, autocast and input validation."""
import itertools

import pytest
import torch

from dynfilter_tvm.ops.common import conv_out_size
from torch_bridge.ops import acda as acda_ops
from torch_bridge.ops.acda import atom_conv_op, dx_phase_plans, grad_atoms_op, grad_input_op
from torch_bridge.functional import acda_atom_conv2d
from torch_bridge.reference import acda_atom_conv2d_reference


def make_inputs(N, C, H, W, M, T, k, s, d, p, dtype=torch.float64, requires_grad=True):
    Ho, Wo = conv_out_size(H, k, s, p, d), conv_out_size(W, k, s, p, d)
    x = torch.randn(N, C, H, W, dtype=dtype)
    a = torch.randn(N, M * T, Ho, Wo, dtype=dtype)
    b = torch.randn(T, k, k, dtype=dtype)
    return [t.requires_grad_(requires_grad) for t in (x, a, b)]


# (N, C, H, W, M, T, k, s, d, p): 'same' and other paddings, odd sizes, batch 1, stride,
# dilation, one atom / one basis, the layer's k = 7 setting (T = 18), unit axes.
CASES = [
    (2, 3, 9, 11, 2, 4, 3, 1, 1, 1),
    (1, 4, 10, 7, 3, 5, 5, 2, 1, 2),
    (1, 2, 13, 12, 2, 3, 3, 2, 2, 2),
    (2, 5, 8, 9, 6, 18, 7, 1, 1, 3),
    (1, 3, 7, 6, 2, 3, 3, 1, 1, 0),  # no padding: smaller output
    (1, 2, 6, 8, 1, 1, 3, 3, 1, 1),  # one atom, one basis, stride 3
    (1, 6, 9, 9, 4, 6, 5, 1, 2, 4),
    (1, 1, 1, 12, 2, 4, 3, 1, 1, 1),  # one row
    (1, 1, 5, 1, 2, 2, 3, 1, 1, 1),  # one column
    (1, 1, 1, 1, 1, 1, 1, 1, 1, 0),  # every axis 1
    (1, 3, 21, 37, 3, 6, 3, 1, 1, 1),  # rows longer than a few vectors, odd channel blocks
]


def _fwd_bwd(fn, inputs, args, grad):
    out = fn(*inputs, *args)
    return (out, *torch.autograd.grad(out, inputs, grad))


def _check(case, dtype, atol, rtol):
    N, C, H, W, M, T, k, s, d, p = case
    args = (s, p, d)
    inputs = make_inputs(*case, dtype=dtype)
    ref_in = [t.detach().double().requires_grad_() for t in inputs]
    ref_out = acda_atom_conv2d_reference(*ref_in, *args)
    grad = torch.randn_like(ref_out)
    got = _fwd_bwd(acda_atom_conv2d, inputs, args, grad.to(dtype))
    want = _fwd_bwd(acda_atom_conv2d_reference, ref_in, args, grad)
    for name, g, w in zip(("output", "grad input", "grad coefficients", "grad bases"), got, want):
        assert g.dtype == dtype and g.shape == w.shape, name
        scale = w.abs().max().item() or 1.0  # sums of many terms: compare relative to the largest
        torch.testing.assert_close(g.double() / scale, w / scale, atol=atol, rtol=rtol, msg=f"{name} {case}")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_float64_matches_reference(case):
    _check(case, torch.float64, 1e-12, 1e-10)


@pytest.mark.parametrize("case", CASES[:4], ids=str)
def test_float32_matches_reference(case):
    _check(case, torch.float32, 1e-5, 1e-4)


@pytest.mark.parametrize("dtype,atol", [(torch.float16, 1e-2), (torch.bfloat16, 5e-2)])
@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=str)
def test_half_types_match_reference(case, dtype, atol):
    _check(case, dtype, atol, 0)


@pytest.mark.parametrize("case", [(1, 2, 5, 6, 2, 3, 3, 2, 1, 1), (2, 2, 4, 5, 1, 2, 3, 1, 2, 2)], ids=str)
def test_gradcheck(case):
    N, C, H, W, M, T, k, s, d, p = case
    inputs = make_inputs(*case)
    assert torch.autograd.gradcheck(lambda *t: acda_atom_conv2d(*t, s, p, d), inputs)


def test_only_requested_gradients():
    x, a, b = make_inputs(1, 2, 6, 6, 2, 3, 3, 1, 1, 1)
    b.requires_grad_(False)
    out = acda_atom_conv2d(x, a, b, 1, 1, 1)
    gx, ga = torch.autograd.grad(out.sum(), (x, a))
    want = torch.autograd.grad(acda_atom_conv2d_reference(x, a, b, 1, 1, 1).sum(), (x, a))
    torch.testing.assert_close(gx, want[0])
    torch.testing.assert_close(ga, want[1])


def test_noncontiguous_and_misaligned_inputs():
    N, C, H, W, M, T, k = 2, 3, 8, 9, 2, 4, 3
    x = torch.randn(N, W, C, H, dtype=torch.float64).permute(0, 2, 3, 1)  # channels-last-like view
    a = torch.randn(N * M * T * H * W + 1, dtype=torch.float64)[1:].view(N, M * T, H, W)  # offset view
    b = torch.randn(T, k, 2 * k, dtype=torch.float64)[..., ::2]  # strided view
    assert not x.is_contiguous() and a.data_ptr() % 64 and not b.is_contiguous()
    for t in (x, a, b):
        t.requires_grad_()
    grad = torch.randn(W, H, C * M, N, dtype=torch.float64).permute(3, 2, 1, 0)
    got = _fwd_bwd(acda_atom_conv2d, (x, a, b), (1, 1, 1), grad)
    want = _fwd_bwd(acda_atom_conv2d_reference, (x, a, b), (1, 1, 1), grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_opcheck():
    x, a, b = make_inputs(1, 3, 7, 6, 2, 3, 3, 2, 1, 1, torch.float32)
    args = (2, 1, 1)
    torch.library.opcheck(atom_conv_op, (x, a, b, *args))
    grad = torch.randn(1, 6, 4, 3)
    for op in (grad_input_op, grad_atoms_op):
        torch.library.opcheck(op, (grad, x.detach(), a.detach(), b.detach(), *args))


def test_compile_fullgraph():
    torch._dynamo.reset()
    x, a, b = make_inputs(2, 3, 8, 9, 2, 3, 3, 1, 1, 1, torch.float32)

    def model(x, a, b):
        return torch.tanh(acda_atom_conv2d(x * 2, torch.tanh(a), b, 1, 1, 1)).sum()

    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(compiled(x, a, b), (x, a, b))
    want = torch.autograd.grad(model(x, a, b), (x, a, b))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_compile_inductor():
    torch._dynamo.reset()
    x, a, b = make_inputs(1, 3, 7, 7, 2, 3, 3, 1, 1, 1, torch.float32, requires_grad=False)
    fn = torch.compile(lambda x, a, b: acda_atom_conv2d(x, a, b, 1, 1, 1) + 1, fullgraph=True)
    torch.testing.assert_close(fn(x, a, b), acda_atom_conv2d_reference(x, a, b, 1, 1, 1) + 1,
                               atol=1e-4, rtol=1e-4)


def test_autocast_cpu_bfloat16():
    x, a, b = make_inputs(1, 3, 9, 8, 2, 3, 3, 1, 1, 1, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = acda_atom_conv2d(x, a.bfloat16(), b, 1, 1, 1)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32 and b.grad.dtype == torch.float32
    ref = acda_atom_conv2d_reference(*(t.detach().bfloat16().double() for t in (x, a, b)), 1, 1, 1)
    torch.testing.assert_close(out.double(), ref, atol=0.1, rtol=2e-2)


def test_meta_tensors_give_shapes():
    x, a, b = (t.to("meta") for t in make_inputs(2, 3, 9, 7, 2, 3, 3, 2, 1, 1, torch.float32, requires_grad=False))
    out = acda_atom_conv2d(x, a, b, 2, 1, 1)
    assert out.device.type == "meta" and out.shape == (2, 6, 5, 4)


def _bad(**over):
    x, a, b = make_inputs(1, 3, 6, 6, 2, 3, 3, 1, 1, 1, torch.float32, requires_grad=False)
    args = dict(input=x, coefficients=a, bases=b, stride=1, padding=1, dilation=1)
    args.update(over)
    return args


@pytest.mark.parametrize("over,exc,match", [
    (dict(stride=0), ValueError, "stride"),
    (dict(padding=-1), ValueError, "padding"),
    (dict(dilation=1.5), ValueError, "dilation"),
    (dict(bases=torch.randn(3, 3, 4)), ValueError, "bases must have shape"),
    (dict(bases=torch.randn(3, 17, 17)), ValueError, "bases must have shape"),
    (dict(bases=torch.randn(9, 3)), ValueError, "bases must be 3-D"),
    (dict(coefficients=torch.randn(1, 7, 6, 6)), ValueError, "coefficients must have shape"),  # 7 % T
    (dict(coefficients=torch.randn(1, 6, 5, 6)), ValueError, "coefficients must have shape"),
    (dict(coefficients=torch.randn(2, 6, 6, 6)), ValueError, "coefficients must have shape"),
    (dict(padding=0, stride=1), ValueError, "coefficients must have shape"),  # output 4x4
    (dict(input=torch.randn(1, 3, 1, 1), padding=0), ValueError, "does not fit"),
    (dict(input=torch.randn(1, 3, 6, 6, dtype=torch.float64)), TypeError, "dtype"),
    (dict(input=torch.randint(0, 3, (1, 3, 6, 6))), TypeError, "input has unsupported dtype"),
    (dict(input=torch.randn(1, 0, 6, 6)), ValueError, "empty"),
    (dict(input=torch.randn(1, 3, 6, 6, device="meta")), ValueError, "coefficients is on cpu but input is on meta"),
    (dict(bases=[1, 2]), TypeError, "bases must be a torch.Tensor"),
])
def test_bad_input_raises_clear_error(over, exc, match):
    with pytest.raises(exc, match=match):
        acda_atom_conv2d(**_bad(**over))


@pytest.mark.parametrize("native_impl", [False, True])
def test_empty_batch_gives_empty_output_and_gradients(native_impl, no_kernels):
    # like F.conv2d: batch 0 is fine (no kernel runs); zero channels stay an error (above)
    x, a, b = make_inputs(0, 3, 7, 6, 2, 3, 3, 2, 1, 1, torch.float32)
    out = acda_atom_conv2d(x, a, b, 2, 1, 1, native_impl=native_impl)
    assert out.shape == (0, 6, 4, 3)
    gx, ga, gb = torch.autograd.grad(out.sum(), (x, a, b))
    assert (gx.shape, ga.shape, gb.shape) == (x.shape, a.shape, b.shape)
    assert not gb.any()  # the bases' gradient sums over the empty batch


def test_kernel_size_limit_names_native_impl():
    x, a, b = make_inputs(1, 2, 5, 4, 1, 2, 17, 1, 1, 8)
    with pytest.raises(ValueError, match="k <= 15 .*native_impl=True"):
        acda_atom_conv2d(x, a, b, 1, 8, 1)
    out = acda_atom_conv2d(x, a, b, 1, 8, 1, native_impl=True)
    torch.testing.assert_close(out, acda_atom_conv2d_reference(x, a, b, 1, 8, 1))


# ---- strided input gradients by phase (torch_bridge.ops.acda._dx_by_phase)
# (H, W, k, s, d, p): sizes not multiples of s (phases of different lengths), dilation sharing a
# factor with s (phases no tap reaches), d' = d/g > 1 (computed lead rows), even k, one row or
# column, stride 3 and 4, taps of a phase at different offsets along the two axes
PHASE_CASES = [
    (9, 11, 3, 2, 1, 1), (10, 7, 5, 2, 1, 2), (13, 12, 3, 2, 2, 2), (6, 8, 3, 3, 1, 1), (14, 14, 7, 2, 1, 3),
    (11, 9, 5, 3, 2, 0), (8, 8, 3, 2, 3, 0), (7, 10, 5, 4, 1, 2), (1, 5, 3, 2, 1, 1), (5, 1, 3, 3, 1, 1),
    (12, 13, 7, 3, 3, 5), (9, 9, 4, 2, 1, 1), (15, 15, 7, 2, 2, 6), (14, 15, 5, 2, 3, 2),
]


@pytest.fixture
def every_phase(monkeypatch):
    """Phases at every kernel size and stride (not only where DX_PHASE_MIN_TAPS says), with the
    kernels they run."""
    monkeypatch.setattr(acda_ops, "DX_PHASE_MIN_TAPS", 0)
    calls, run = [], acda_ops.run
    monkeypatch.setattr(acda_ops, "run", lambda *args: (calls.append(args[2]), run(*args))[1])
    return calls


@pytest.mark.parametrize("case", PHASE_CASES, ids=str)
def test_dx_by_phase_matches_reference(case, every_phase):
    H, W, k, s, d, p = case
    x, a, b = make_inputs(2, 3, H, W, 2, 3, k, s, d, p)
    out = acda_atom_conv2d_reference(x, a, b, s, p, d)
    grad = torch.randn_like(out)
    want, = torch.autograd.grad(out, x, grad)
    got = grad_input_op(grad, x.detach(), a.detach(), b.detach(), s, p, d)
    # the phases ran, each a stride-1 kernel, at most one per phase
    assert 1 <= len(every_phase) <= s * s and all(q["s"] == 1 for q in every_phase)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)


def test_dx_by_phase_default_rule():
    """On CPU, stride >= 2 with k > 1.5 s (more than 1.5 taps per axis and phase on average) takes
    the phases; fewer taps (k3 s2, k5 s4, k6 s4), stride 1 and CUDA the dx kernel's grid."""
    p = dict(N=1, C=1, H=8, W=8, M=1, T=1, d=1, p=1)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for k, s in ((7, 2), (5, 2), (4, 2), (5, 3), (7, 4)):
        assert acda_ops.dx_by_phase(dict(p, k=k, s=s), cpu), (k, s)
    for k, s in ((3, 2), (4, 3), (5, 4), (6, 4), (7, 1)):
        assert not acda_ops.dx_by_phase(dict(p, k=k, s=s), cpu), (k, s)
    assert not acda_ops.dx_by_phase(dict(p, k=7, s=2), cuda)


def test_dx_phase_kernels_do_not_depend_on_the_size():
    """Each phase's stride-1 kernel (slots, padding, dilation) is the same at every image size,
    so the generic builds (and a bundle's generic kernels) serve every size; the size moves only
    the grid and the rows each kernel computes."""
    for k, s, d, p in ((5, 2, 1, 2), (7, 2, 1, 3), (7, 3, 1, 3), (5, 2, 3, 6), (7, 2, 2, 6)):
        kernels = set()
        for H, W in itertools.product(range(13, 21), range(13, 17)):
            _, plans = dx_phase_plans(dict(N=1, C=2, H=H, W=W, M=1, T=1, k=k, s=s, d=d, p=p))
            kernels |= {(f, q["n"], q["pad"], q["dd"], q["ty"], q["tx"]) for f, q in plans.items() if q}
        assert len(kernels) == sum(q is not None for q in acda_ops._phase_kernels(k, s, p, d).values()), (k, s, d, p)


def test_dx_by_phase_recording_lists_the_grid_kernel():
    """A recording on the CPU (bundles and tuning for other targets) lists the strided dx kernel
    that CUDA runs, besides the phases' stride-1 kernels the CPU runs."""
    from torch_bridge.app.workloads import recording

    x, a, b = make_inputs(1, 2, 9, 8, 2, 3, 5, 2, 1, 2, dtype=torch.float32, requires_grad=False)
    grad = torch.zeros(1, 4, 5, 4)
    with recording() as seen:
        grad_input_op(grad, x, a, b, 2, 2, 1)
    dx = [w for w in seen if w.kernel == "dx"]
    assert [w.p["s"] for w in dx].count(2) == 1 and all(w.p["k"] == 5 for w in dx if w.p["s"] == 2)
    assert sum(w.p["s"] == 1 for w in dx) == 4
    with recording() as seen:  # an empty batch builds nothing, so it lists nothing
        grad_input_op(grad[:0], x[:0], a[:0], b, 2, 2, 1)
    assert seen == []


def test_dx_phase_plan_ad_resnet():
    """Ad-ResNet's strided 7x7 layers (s = 2, p = 3): four phases of 3 or 4 real taps per axis
    (9 to 16 of the grid's 49 per pixel), one padded grid for all."""
    grid, plans = dx_phase_plans(dict(N=2, C=64, H=56, W=56, M=6, T=18, k=7, s=2, d=1, p=3))
    assert len(plans) == 4 and all(q is not None and q["n"] <= 4 for q in plans.values())
    assert sum(len([t for t in q["ty"] if t >= 0]) * len([t for t in q["tx"] if t >= 0])
               for q in plans.values()) == 49  # every tap once over the phases
    assert grid == (29, 29)


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.bfloat16, 5e-2)])
def test_dx_by_phase_dtypes(dtype, atol):
    case = (1, 4, 15, 14, 2, 6, 7, 2, 1, 3)  # the default rule's phases (k7 s2), odd sizes
    assert acda_ops.dx_by_phase(dict(k=7, s=2, p=3, d=1), torch.device("cpu"))
    _check(case, dtype, atol, 1e-4 if dtype == torch.float32 else 0)


def test_dx_by_phase_gradcheck_and_double_backward():
    case = (1, 2, 7, 6, 2, 3, 5, 2, 1, 2)
    s, d, p = case[-3:]
    inputs = make_inputs(*case)
    fn = lambda *t: acda_atom_conv2d(*t, s, p, d)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


def test_dx_by_phase_noncontiguous_gradient_and_empty_batch():
    x, a, b = make_inputs(1, 3, 9, 8, 2, 3, 5, 2, 1, 2)
    out = acda_atom_conv2d_reference(x, a, b, 2, 2, 1)
    grad = torch.randn(out.shape[::-1], dtype=torch.float64).permute(3, 2, 1, 0)
    want, = torch.autograd.grad(out, x, grad)
    torch.testing.assert_close(grad_input_op(grad, x.detach(), a.detach(), b.detach(), 2, 2, 1), want)
    x, a, b = make_inputs(0, 3, 9, 8, 2, 3, 5, 2, 1, 2, requires_grad=False)
    assert grad_input_op(torch.zeros(0, 6, 5, 4, dtype=torch.float64), x, a, b, 2, 2, 1).shape == x.shape


def _phase_pairs_match(H, k, s, d, p, f, plan, axis, grid):
    """Along one axis: the (tap, output row) pairs the phase's kernel sums for each of its input
    rows, dO read on the grid (rows past dO's own end are zeros there), equal the definition's."""
    out = conv_out_size(H, k, s, p, d)
    slots, lead, pad, dd = plan["ty" if axis == 0 else "tx"], plan["lead"][axis], plan["pad"], plan["dd"]
    for h in range(f, H, s):
        want = {(u, (h + p - u * d) // s) for u in range(k)
                if (h + p - u * d) % s == 0 and 0 <= (h + p - u * d) // s < out}
        hq = (h - f) // s + lead
        got = {(u, hq + pad - j * dd) for j, u in enumerate(slots)
               if u >= 0 and 0 <= hq + pad - j * dd < min(grid, out)}
        if got != want:
            return False
    return True


def test_dx_phase_plans_cover_every_tap_once():
    """Over 4,000 random geometries: each phase's slots, padding and leads reproduce exactly the
    taps and output rows of the strided input gradient (no kernel runs)."""
    import random
    rnd = random.Random(1)
    checked = 0
    while checked < 4000:  # paddings up to the kernel's extent and beyond: the grid's coverage binds
        k, s, d = rnd.randint(1, 15), rnd.randint(2, 6), rnd.randint(1, 6)
        p, H, W = rnd.randint(0, k * d + 3), rnd.randint(1, 40), rnd.randint(1, 40)
        if conv_out_size(H, k, s, p, d) < 1 or conv_out_size(W, k, s, p, d) < 1:
            continue
        if acda_ops._phase_kernels(k, s, p, d) is None:  # some phase over MAX_KERNEL_SIZE slots
            continue
        grid, plans = dx_phase_plans(dict(N=1, C=4, H=H, W=W, M=2, T=3, k=k, s=s, d=d, p=p))
        for (fy, fx), plan in plans.items():
            if plan is None:  # no tap reaches the phase: no pair along one axis
                assert not all(any((f + p - u * d) % s == 0 for u in range(k)) for f in (fy, fx))
                continue
            assert plan["n"] <= 15 and plan["pad"] >= 0
            assert _phase_pairs_match(H, k, s, d, p, fy, plan, 0, grid[0]), (H, k, s, d, p, fy, plan)
            assert _phase_pairs_match(W, k, s, d, p, fx, plan, 1, grid[1]), (W, k, s, d, p, fx, plan)
        checked += 1
