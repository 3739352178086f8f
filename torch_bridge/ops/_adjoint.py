"""Autograd of the gradient ops of multilinear ops (double backward), with the ops themselves.

For an op ``out = f(x_1, ..., x_n)`` linear in each tensor ``x_i``, its gradient op
``grad_i(g, x_1..x_n) = d<g, f>/dx_i`` is linear in ``g`` and in every ``x_j`` (j != i) and does
not depend on ``x_i``. With ``v`` the gradient flowing into ``grad_i``'s output::

    d<v, grad_i>/dg   = f(x with x_i := v)                (the forward on v)
    d<v, grad_i>/dx_j = grad_j(g, x with x_i := v)         (the other gradient ops on v)
    d<v, grad_i>/dx_i = 0

Ops that are linear in a sum of two tensors (DDF's ``kernel_combine='add'``: the filter is
S + C) declare the two as partners: putting ``v`` for one puts zero for the other, and the
other's gradient is zero (``<g, f>`` is a sum of a part with S and a part with C).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ._eager import call, register_autograd


def register_adjoint_autograd(grad_op, which: int, forward: Callable, grads: Sequence[Callable],
                              partners: Callable = lambda args, i: ()) -> None:
    """Register the autograd of ``grad_op(g, x_1..x_n, *args)``, the gradient for ``x_which``
    (0-based among the n tensors) of ``forward(x_1..x_n, *args)``; ``grads[j](g, x.., *args)``
    are the n gradient ops. ``partners(args, i)``: the indices whose tensor enters the op
    only as a sum with x_i."""
    n = len(grads)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:1 + n])
        ctx.args = tuple(inputs[1 + n:])

    def backward(ctx, v):
        g, *xs = ctx.saved_tensors
        need = ctx.needs_input_grad
        coupled = set(partners(ctx.args, which))
        sub = list(xs)
        sub[which] = v.to(xs[which].dtype)
        for j in coupled:
            sub[j] = torch.zeros_like(xs[j])
        result = [None] * (1 + n + len(ctx.args))
        if need[0]:
            result[0] = call(forward, *sub, *ctx.args)
        for j in range(n):
            if j != which and j not in coupled and need[1 + j]:
                result[1 + j] = call(grads[j], g, *sub, *ctx.args)
        return tuple(result)

    register_autograd(grad_op, backward, setup_context)
