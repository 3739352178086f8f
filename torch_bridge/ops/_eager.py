"""The ops' eager fast path: the same functions without the custom-op dispatcher's host cost.

Every op is a ``torch.library`` custom op, which is what ``torch.compile``, export, fake
tensors and ``opcheck`` need. In plain eager mode the dispatcher costs more than a small
kernel: a custom op with autograd takes ~40 us of host time per call on the CPU machine,
an ``autograd.Function`` ~12 us, a direct call nothing (``benchmarks/bench_overhead.py``).
On a GPU that host time is the whole call when the kernel is shorter, as the first H200
run suggested (``benchmarks/RESULTS.md``). So :func:`call` runs an op

- directly (its own function) when nothing needs a graph: grad mode off or no input that
  requires grad, which is every gradient op inside an ordinary backward;
- as an ``autograd.Function`` built from the op's own ``setup_context``/``backward`` when
  some input requires grad;
- through the custom op whenever anything could observe the difference: compiling,
  exporting or tracing, tensor subclasses (fake, functional), tensors without plain strided
  storage (the batched tensors of ``autograd.grad(..., is_grads_batched=True)``, vectorized
  jacobians and ``gradcheck``'s batched check; sparse), non-CPU/CUDA devices, torch function
  or dispatch modes, or functorch transforms.

Under the profiler the first two routes are recorded as ``dynfilter::<op>`` ranges, the
names the custom op would show. The three routes run the same function on the same
arguments, so they return the same values (``tests/test_eager_path.py`` checks which route
each call takes and that they agree, double backward included).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Dict, Iterator, NamedTuple, Optional

import torch
from torch import Tensor


class _Entry(NamedTuple):
    name: str  # 'dynfilter::ddf'
    fn: Callable  # the op's own function
    function: Optional[type]  # the autograd.Function of its registered autograd


_EAGER: Dict[object, _Entry] = {}  # custom op -> its entry
_PLAIN_TYPES = (Tensor, torch.nn.Parameter)
_PLAIN_VALUES = (int, float, bool, str, type(None))
_DEVICES = ("cpu", "cuda")
_custom_op_only = False  # set by custom_op_only()


def custom_op(name: str):
    """``torch.library.custom_op(name, mutates_args=())`` that also keeps the undecorated
    function for :func:`call`."""

    def wrap(fn: Callable):
        op = torch.library.custom_op(name, mutates_args=())(fn)
        _EAGER[op] = _Entry(name, fn, None)
        return op

    return wrap


def register_autograd(op, backward: Callable, setup_context: Callable) -> None:
    """``op.register_autograd``, and the same pieces as an ``autograd.Function`` for
    :func:`call`."""
    op.register_autograd(backward, setup_context=setup_context)
    entry = _EAGER[op]
    fn = entry.fn

    # forward(ctx, ...) calling setup_context itself: a Function with its own setup_context
    # binds the call's signature with ``inspect`` at every apply (~15 us here).
    def forward(ctx, *args):
        output = fn(*args)
        setup_context(ctx, args, output)
        return output

    # named after the op: grad_fn shows as e.g. dynfilter_ddfBackward
    function = type(entry.name.replace("::", "_"), (torch.autograd.Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(backward)})
    _EAGER[op] = entry._replace(function=function)


@contextlib.contextmanager
def custom_op_only() -> Iterator[None]:
    """Every :func:`call` inside runs through the custom op, as before the fast path (for
    benchmarks and tests that compare the routes; process-wide, every thread)."""
    global _custom_op_only
    before, _custom_op_only = _custom_op_only, True
    try:
        yield
    finally:
        _custom_op_only = before


def _watched() -> bool:
    """Whether a transform, mode or tracer might watch the call (then the custom op runs).
    A torch without one of these probes counts as watched."""
    C = torch._C
    try:
        return bool(torch.compiler.is_compiling() or torch.jit.is_tracing()
                    or C._len_torch_dispatch_stack() or C._is_torch_function_mode_enabled()
                    or C._are_functorch_transforms_active())
    except AttributeError:
        return True


def _plain(t: Tensor) -> bool:
    """A plain strided CPU/CUDA tensor with its own storage (not a subclass, not one of the
    older vmap's batched tensors, which ``autograd.grad(is_grads_batched=True)``, vectorized
    jacobians and ``gradcheck(check_batched_grad=True)`` pass, and which have no data pointer)."""
    return (type(t) in _PLAIN_TYPES and t.layout is torch.strided and t.device.type in _DEVICES
            and not _is_legacy_batched(t))


def _is_legacy_batched(t: Tensor) -> bool:
    probe = getattr(torch._C._functorch, "is_legacy_batchedtensor", None)
    return True if probe is None else bool(probe(t))


def route(op, args) -> str:
    """'direct', 'function' or 'custom_op': how :func:`call` runs ``op`` on ``args``."""
    entry = _EAGER.get(op)
    if entry is None or _custom_op_only or _watched():
        return "custom_op"
    needs_graph = False
    for a in args:
        if isinstance(a, Tensor):
            if not _plain(a):
                return "custom_op"
            needs_graph = needs_graph or a.requires_grad
        elif not isinstance(a, _PLAIN_VALUES):
            return "custom_op"  # e.g. an FX proxy, a symbolic int
    # inference mode records no graph even with grad enabled inside it (nor does the custom op)
    if needs_graph and torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
        return "custom_op" if entry.function is None else "function"
    return "direct"


def call(op, *args):
    """``op(*args)`` for a custom op made with :func:`custom_op` (any other callable is just
    called), by the cheapest route that gives the same result (module docstring)."""
    if torch.compiler.is_compiling():  # first: what dynamo traces is the custom op alone
        return op(*args)
    how = route(op, args)
    if how == "custom_op":
        return op(*args)
    entry = _EAGER[op]
    run = entry.fn if how == "direct" else entry.function.apply
    if torch.autograd._profiler_enabled():
        with torch.profiler.record_function(entry.name):
            return run(*args)
    return run(*args)
