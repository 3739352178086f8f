"""The generic CUDA builds' check that a tiled schedule's stages compact to a constant, sane
size (``schedules.common.constant_stages`` / ``if_constant``, which the DDF, ACDA and PAC
generic CUDA builds call, the last two guarded): a stage sized by a
symbolic variable's int32 bound (2,147,483,647 elements) or past what a launch can hold is
rejected, a tile accepted."""
import pytest
import tvm
from tvm import s_tir, te

from schedules import common, pac_cuda

INT32_MAX = 2147483647


def _staged(n, dtype="float32", scope="local"):
    """A scheduled module whose one stage (B, ``scope``) is n elements of ``dtype``: a constant
    n stays that size through the compaction (it is read whole), a symbolic one stays symbolic."""
    A = te.placeholder((n,), dtype, name="A")
    B = te.compute((n,), lambda i: A[i], name="B")
    C = te.compute((n,), lambda i: B[i] + 1, name="C")
    sch = s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([A, C])}))
    sch.set_scope(sch.get_sblock("B"), 0, scope)
    return sch


@pytest.mark.parametrize("n,dtype,scope", [(64, "float32", "local"), (4096, "float64", "shared"),
                                           (common.MAX_SHARED_STAGE_BYTES // 2, "float16", "shared"),
                                           (common.MAX_LOCAL_STAGE_BYTES // 4, "float32", "local")])
def test_tile_accepted(n, dtype, scope):
    mod = _staged(n, dtype, scope).mod
    assert common.stage_allocations(mod) == [(scope, (n,), dtype)]
    assert common.constant_stages(mod)


@pytest.mark.parametrize("n,dtype,scope", [
    (INT32_MAX, "float32", "local"),  # an int32 bound read as a size
    (INT32_MAX, "int8", "shared"),
    (common.MAX_SHARED_STAGE_BYTES // 2 + 1, "float16", "shared"),  # one element past the limits
    (common.MAX_LOCAL_STAGE_BYTES // 8 + 1, "float64", "local")])
def test_absurd_constant_rejected(n, dtype, scope):
    """Such a stage prints as a literal (what the regex check alone accepted); the size check
    rejects it."""
    mod = _staged(n, dtype, scope).mod
    assert common.stage_allocations(mod) == [(scope, (n,), dtype)]
    assert not common.constant_stages(mod)


def test_symbolic_rejected():
    mod = _staged(te.var("n")).mod
    assert common.stage_allocations(mod) == [("local", None, "float32")]
    assert not common.constant_stages(mod)
    assert not common.constant_stages(tvm.IRModule({"main": te.create_prim_func(
        [te.placeholder((4,), name="A")])}))  # no stage at all: nothing tiled


def _stage_b(scope):
    def apply(sch):
        sch.set_scope(sch.get_sblock("B"), 0, scope)
    return apply


@pytest.mark.parametrize("guard", [False, True])
def test_if_constant_applies_only_sane(guard):
    """The schedule is applied where the trial's stage is a tile, left untouched (False) where
    it is an int32 bound, and where ``apply`` declines."""
    def plain(n):
        A = te.placeholder((n,), name="A")
        B = te.compute((n,), lambda i: A[i], name="B")
        C = te.compute((n,), lambda i: B[i] + 1, name="C")
        return s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([A, C])}))

    sch = plain(64)
    assert common.if_constant(sch, _stage_b("shared"), guard) and 'scope="shared"' in sch.mod.script()
    sch = plain(INT32_MAX)
    before = sch.mod.script()
    assert not common.if_constant(sch, _stage_b("shared"), guard) and sch.mod.script() == before
    assert not common.if_constant(plain(64), lambda s: False, guard)


def test_guard():
    """The guarded check (ACDA's and PAC's builds) counts a TVM error on the trial as not
    constant, leaving ``sch`` untouched; unguarded (DDF's) it raises."""
    def broken(sch):
        raise ValueError("Literal value 2147483652 exceeds range of int32")

    sch = _staged(64)
    before = sch.mod.script()
    assert not common.if_constant(sch, broken, guard=True) and sch.mod.script() == before
    with pytest.raises(ValueError):
        common.if_constant(sch, broken)


def test_generic_conv_dk_window_accepted():
    """A real generic build's stages: the PAC conv_dk's at the benchmark configuration (its dO
    tile, register tiles, source window and Wt channel) pass the check."""
    from dynfilter_tvm import registry
    from dynfilter_tvm.target import cuda_target
    from dynfilter_tvm.workload import Workload

    wl = Workload.make("pac", "conv_dk", dict(N=None, C=64, O=64, H=None, W=None, Ho=None, Wo=None, k=5, s=1,
                                              z=1, p=2, d=1), "float32")
    sch = s_tir.Schedule(tvm.IRModule({"main": registry.prim_func(wl)}))
    pac_cuda.conv_dk(sch, wl, cuda_target("sm_90"))
    stages = common.stage_allocations(sch.mod)
    assert ("shared", (1, 1, 8, 36), "float32") in stages and ("shared", (1, 64, 4, 32), "float32") in stages
    assert common.constant_stages(sch.mod)
