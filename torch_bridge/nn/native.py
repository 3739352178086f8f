"""One switch to the plain-PyTorch path for a whole model.

Every dynamic layer (DDF, PAC, ACDA) takes ``native_impl``: True runs the unfold references of
``torch_bridge.reference`` instead of the compiled kernels (same parameters, same results up to
rounding, much more memory). Useful as a check of the compiled path, or where TVM cannot build.
"""
from __future__ import annotations

import torch.nn as nn


def use_reference_ops(model: nn.Module, native_impl: bool = True) -> nn.Module:
    """Set ``native_impl`` on every dynamic layer of ``model`` (in place; returned).
    Parameters, buffers and ``state_dict`` are unchanged."""
    for m in model.modules():
        if hasattr(m, "native_impl") and type(m).__module__.startswith("torch_bridge."):
            m.native_impl = native_impl
    return model
