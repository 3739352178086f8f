"""Which kernels a model or layer needs: run its shapes through the bridge and record them.

Tuning (``dynfilter-tvm tune``) and ahead-of-time bundles (``dynfilter-tvm compile``) work on
workloads, the exact kernel instances (op, kernel, shapes, dtype) that ``torch_bridge`` asks
for. Rather than restating each layer's shape arithmetic, the model runs once, forward and
backward, on CPU with :func:`recording` active: every kernel call is recorded and skipped
(outputs zero-filled), so nothing compiles and the torch parts run at their usual cost.
"""
from __future__ import annotations

import contextlib
import re
from typing import Dict, Iterator, List, Optional, Sequence

import torch

from dynfilter_tvm.workload import Workload

from .. import runtime


@contextlib.contextmanager
def recording(execute: bool = False) -> Iterator[List[Workload]]:
    """Collect the workload of every kernel the bridge runs inside the block (in call order,
    repeats included), and of those another device would run in place of a call computed
    otherwise here (``runtime.record``). With ``execute=False`` the kernels are skipped and
    outputs zeroed."""
    if runtime._recorder is not None:
        raise RuntimeError("workload recording is already active")
    seen: List[Workload] = []
    runtime._recorder, runtime._recorder_executes = seen, execute
    try:
        yield seen
    finally:
        runtime._recorder, runtime._recorder_executes = None, True


def parse_shape(text: str) -> tuple:
    """'8x3x224x224' -> (8, 3, 224, 224)."""
    if not re.fullmatch(r"\d+(x\d+)*", text.strip()):
        raise ValueError(f"a shape looks like 8x3x224x224, got {text!r}")
    dims = tuple(int(v) for v in text.strip().split("x"))
    if 0 in dims:
        raise ValueError(f"shape {text!r} has a zero dimension")
    return dims


def unique(workloads: Sequence[Workload]) -> List[Workload]:
    """Distinct workloads, first occurrence order."""
    return list(dict.fromkeys(workloads))


def with_dtype(workloads: Sequence[Workload], dtype: str) -> List[Workload]:
    """The same kernels for another dtype (recording runs in float32 on CPU)."""
    return unique([Workload.make(w.op, w.kernel, w.p, dtype) for w in workloads])


TF32_KERNELS = ("conv", "conv_dk")  # the pac kernels taking the tf32 flag (torch_bridge.ops.pac.tf32_flag)


def with_tf32_variants(workloads: Sequence[Workload]) -> List[Workload]:
    """``workloads`` plus, for each float32 pac.conv and pac.conv_dk, its ``tf32`` variant: what
    a CUDA GPU runs while ``torch.backends.cudnn.allow_tf32`` is set
    (``torch_bridge.ops.pac.tf32_flag``), which recording on the CPU never sees."""
    extra = [Workload.make(w.op, w.kernel, dict(w.p, tf32=1), w.dtype) for w in workloads
             if w.op == "pac" and w.kernel in TF32_KERNELS and w.dtype == "float32" and not w.p.get("tf32")]
    return unique([*workloads, *extra])


def module_workloads(module: torch.nn.Module, inputs: Sequence[torch.Tensor], backward: bool = True,
                     dtype: str = "float32") -> List[Workload]:
    """The distinct workloads of ``module(*inputs)`` (and of its backward), for ``dtype``."""
    module = module.train()  # training mode: the backward kernels and batch-norm as in training
    inputs = [t.detach().requires_grad_(backward and t.is_floating_point()) for t in inputs]
    with recording() as seen:
        with torch.set_grad_enabled(backward):
            out = module(*inputs)
            outs = [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if torch.is_tensor(o)]
            if backward:
                torch.autograd.backward([o for o in outs if o.requires_grad],
                                        [torch.ones_like(o) for o in outs if o.requires_grad])
    if not seen:
        raise ValueError(f"{type(module).__name__} runs no dynfilter_tvm kernel at these shapes")
    return with_dtype(seen, dtype)


def model_workloads(name: str, input_shape: Optional[Sequence[int]], dtype: str = "float32", backward: bool = True,
                    model_kwargs: Optional[Dict] = None, guidance_shape: Optional[Sequence[int]] = None
                    ) -> List[Workload]:
    """Workloads of the registered model ``name`` (``torch_bridge.models.get_model``) at
    ``input_shape`` (None: its registry entry's example inputs, batch 2); guided models get
    ``guidance_shape`` (default: the input's batch, the model's guide channels, at ``factor``
    times its size)."""
    from ..models import model_spec

    spec = model_spec(name)
    torch.manual_seed(0)
    model = spec.build(**(model_kwargs or {}))
    if input_shape is None:
        return module_workloads(model, spec.example_inputs(model, batch=2), backward, dtype)
    inputs = [torch.randn(*input_shape)]
    if spec.guided:
        n, _, h, w = input_shape
        f = model.factor
        inputs.append(torch.randn(*(guidance_shape or (n, model.guide_channels, h * f, w * f))))
    return module_workloads(model, inputs, backward, dtype)


def layer_workloads(op: str, input_shape: Sequence[int], kernel_size: int = 3, stride: int = 1,
                    dilation: int = 1, out_channels: Optional[int] = None, dtype: str = "float32",
                    backward: bool = True) -> List[Workload]:
    """Workloads of one operator family's standard layer (``standard_layer`` of its module in
    ``torch_bridge.app.bench``: ``DDFPack``, ``PacConv2d`` guided by its input, ``ACDAConv2d``)
    at ``input_shape`` (N, C, H, W)."""
    from .bench import families

    found = families()
    if op not in found:
        raise ValueError(f"unknown operator {op!r}; expected one of {sorted(found)}")
    n, c, h, w = input_shape
    module = found[op].standard_layer(c, kernel_size, stride, dilation, out_channels)
    return module_workloads(module, [torch.randn(n, c, h, w)], backward, dtype)


# -- command-line selection, shared by `tune` and `compile` ---------------------------------
def add_arguments(parser) -> None:
    """The options that select workloads: a model, one operator's layer, or explicit JSON."""
    g = parser.add_argument_group("workloads (one of --model, --op, --workload)")
    g.add_argument("--model", help="a registered model (torch_bridge.models), with --input")
    from .bench import families

    g.add_argument("--op", choices=sorted(families()), help="one operator's layer (DDFPack, PacConv2d, ACDAConv2d), with --input")
    g.add_argument("--input", type=parse_shape,
                   help="input shape NxCxHxW, e.g. 8x3x224x224 (kernels for exactly that shape); compile without it "
                        "builds generic kernels that serve every batch and image size")
    g.add_argument("--channels", type=int, default=None, help="--op without --input: the layer's input channels")
    g.add_argument("--workload", action="append", default=[], metavar="JSON",
                   help='an exact kernel: {"op": "ddf", "kernel": "fwd", "params": {...}, "dtype": "float32"}'
                        " (repeatable)")
    g.add_argument("--kernel-size", type=int, default=3, help="--op: kernel size (default 3)")
    g.add_argument("--stride", type=int, default=1, help="--op: stride (default 1)")
    g.add_argument("--dilation", type=int, default=1, help="--op: dilation (default 1)")
    g.add_argument("--out-channels", type=int, default=None, help="--op pac/acda: output channels (default: C)")
    g.add_argument("--factor", type=int, default=None, help="--model pac_joint_upsample*: upsampling factor")
    g.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "float64"],
                   help="dtype of the kernels (recording runs in float32; default float32)")
    g.add_argument("--no-backward", dest="backward", action="store_false", help="forward kernels only")
    g.add_argument("--kernels", default="", help="keep only these kernels, e.g. 'fwd,dx' or 'ddf.fwd'")


def generic_workloads(found: Sequence[Workload]) -> List[Workload]:
    """The generic workloads (every batch and image size) serving ``found``; SystemExit naming
    the kernels that build per shape only."""
    from dynfilter_tvm.dispatch import generic_of

    generic = [(w, generic_of(w)) for w in found]
    fixed = sorted({f"{w.op}.{w.kernel}" for w, g in generic if g is None})
    if fixed:
        raise SystemExit(f"kernels {', '.join(fixed)} are built per shape only (see README 'Any input size'): "
                         "give --input NxCxHxW")
    return unique([g for _, g in generic])


def from_args(args, generic_without_input: bool = False) -> List[Workload]:
    """The workloads the options of :func:`add_arguments` select. With
    ``generic_without_input`` (``compile``), ``--model``/``--op`` without ``--input`` give
    the generic workloads; else (``tune``: records are per shape) ``--input`` is required."""
    import json

    chosen = [bool(args.model), bool(args.op), bool(args.workload)]
    if sum(chosen) != 1:
        raise SystemExit("choose exactly one of --model, --op and --workload")
    generic = (args.model or args.op) and not args.input
    if generic and not generic_without_input:
        raise SystemExit("--model and --op need --input NxCxHxW (tuning records are per shape)")
    if args.model:
        kw = {"factor": args.factor} if args.factor else {}
        found = model_workloads(args.model, args.input, args.dtype, args.backward, kw)
    elif args.op:
        shape = args.input
        if shape is None:  # recorded at a small size, then made generic
            if not args.channels:
                raise SystemExit("--op without --input needs --channels C")
            side = max(16, 2 * args.dilation * (args.kernel_size - 1) + 1)
            shape = (2, args.channels, side, side)
        if len(shape) != 4:
            raise SystemExit("--input must be NxCxHxW")
        found = layer_workloads(args.op, shape, args.kernel_size, args.stride, args.dilation,
                                args.out_channels, args.dtype, args.backward)
    else:
        found = []
        for text in args.workload:
            try:
                found.append(Workload.from_json(json.loads(text)))
            except ValueError as err:
                raise SystemExit(f"--workload: {err}")
    if args.kernels:
        names = {n.strip() for n in args.kernels.split(",") if n.strip()}
        found = [w for w in found if w.kernel in names or f"{w.op}.{w.kernel}" in names]
        if not found:
            raise SystemExit(f"--kernels {args.kernels!r} selects none of the workloads")
    return generic_workloads(found) if generic else unique(found)
