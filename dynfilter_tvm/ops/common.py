"""TE building blocks shared by the operators: padding, zero insertion, accumulation types.

Sizes may be ints or, for shape-generic kernels, ``tirx`` expressions (a symbolic ``te.var``);
the helpers give ints for ints and expressions otherwise.
"""
from __future__ import annotations

import tvm
from tvm import te, tirx


def dim(n):
    """A tensor dimension as an int when static (an ``IntImm``), else the expression as is."""
    return int(n) if isinstance(n, (int, tirx.IntImm)) else n


def out_size(n, stride: int):
    """ceil(n / stride): the output size of a 'same'-padded strided convolution. ``n`` may be
    an int, a TVM expression, or anything with Python's integer arithmetic (the bridge's fake
    implementations pass torch's symbolic sizes)."""
    if isinstance(n, tvm.ir.expr.Expr):
        return n if stride == 1 else tirx.floordiv(n + (stride - 1), stride)
    return -(-n // stride)


def conv_out_size(n, k: int, stride: int, padding: int, dilation: int):
    """Output size of ``nn.Conv2d`` along one axis (``n`` as for :func:`out_size`)."""
    if isinstance(n, tvm.ir.expr.Expr):
        return tirx.floordiv(n + (2 * padding - dilation * (k - 1) - 1), stride) + 1
    return (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def acc_dtype(dtype: str) -> str:
    """Accumulation type: float64 stays, everything else sums in float32."""
    return "float64" if dtype == "float64" else "float32"


def cast_out(acc: te.Tensor, dtype: str) -> te.Tensor:
    """The separate cast stage ('out'), so schedules can keep the accumulator in registers."""
    return te.compute(acc.shape, lambda *i: acc(*i).astype(dtype), name="out")


def zero_pad(t: te.Tensor, pad: int, name: str) -> te.Tensor:
    """Pad the last two axes of ``t`` with ``pad`` zeros on each side."""
    *lead, h, w = (dim(n) for n in t.shape)

    def body(*i):
        *j, y, x = i
        inside = tirx.all(y >= pad, y < h + pad, x >= pad, x < w + pad)
        return tirx.if_then_else(inside, t(*j, y - pad, x - pad), tirx.const(0, t.dtype))

    return te.compute((*lead, h + 2 * pad, w + 2 * pad), body, name=name)


def zero_insert_pad(t: te.Tensor, stride: int, pad: int, size: tuple, name: str) -> te.Tensor:
    """The scatter of ``t``'s last two axes onto a stride-``stride`` grid offset by ``pad``:
    ``out[.., Y, X] = t[.., (Y-pad)/s, (X-pad)/s]`` where that is an integer inside ``t``, else 0.
    With it an input gradient becomes a stride-1 correlation."""
    *lead, h, w = (dim(n) for n in t.shape)

    def body(*i):
        *j, y, x = i
        yy, xx = y - pad, x - pad
        conds = [yy >= 0, xx >= 0, yy < h * stride, xx < w * stride]
        if stride > 1:
            conds += [tirx.floormod(yy, stride) == 0, tirx.floormod(xx, stride) == 0]
        src = t(*j, tirx.floordiv(yy, stride), tirx.floordiv(xx, stride))
        return tirx.if_then_else(tirx.all(*conds), src, tirx.const(0, t.dtype))

    return te.compute((*lead, *size), body, name=name)
