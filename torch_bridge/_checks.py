"""Argument checks shared by the ops, references and layers: clear errors that name the offending
argument. Plain torch (no TVM), the lowest layer of the bridge."""
from __future__ import annotations

from typing import Collection, Dict, Sequence

import torch
from torch import Tensor

# The float dtypes every op takes, with their TVM names.
DTYPES: Dict[torch.dtype, str] = {
    torch.float16: "float16", torch.bfloat16: "bfloat16",
    torch.float32: "float32", torch.float64: "float64",
}


def check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_nonnegative_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


# Said where the compiled kernels' kernel-size limit is raised.
NATIVE_HINT = "native_impl=True (the plain-PyTorch path) takes larger kernels"


def check_tensors(names: Sequence[str], tensors: Sequence[Tensor], dims: Sequence[int], hint: str,
                  batched: Collection[str] = ()) -> None:
    """Each tensor is a tensor of its rank, of a supported float dtype, on the first one's
    device and dtype (``hint`` says how to make mixed dtypes agree). No tensor is empty, but
    those named in ``batched`` may have an empty batch (dim 0), as ``F.conv2d`` allows: the
    result is then empty (``runtime.run`` calls no kernel)."""
    first, first_name = tensors[0], names[0]
    for name, t, dim in zip(names, tensors, dims):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != dim:
            raise ValueError(f"{name} must be {dim}-D, got shape {tuple(t.shape)}")
        if 0 in t.shape[1 if name in batched else 0:]:
            raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
        if t.dtype not in DTYPES:
            raise TypeError(f"{name} has unsupported dtype {t.dtype}; expected one of {list(DTYPES)}")
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}")
        if t.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but {first_name} has {first.dtype}; {hint}")
    if first.device.type not in ("cpu", "cuda", "meta"):  # meta: shape inference only
        raise ValueError(f"{first_name} must be on a CPU or CUDA device, not {first.device}")


def check_input(name: str, x, channels: int) -> None:
    """A layer's (N, channels, H, W) input, checked before any reshape can fail on it."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != channels or 0 in x.shape[2:]:
        raise ValueError(f"{name} must have shape (N, {channels}, H, W) with H, W >= 1, got {tuple(x.shape)}")
