"""Swap convolutions of an existing network for other layers (ACDA today, PAC later).

``swap_convs(model, make, predicate)`` replaces, in place, every ``nn.Conv2d`` the predicate
selects by ``make(name, conv)`` and returns the swapped names; ``acda_from_conv(conv)`` is a
``make`` that builds the matching ``ACDAConv2d``; ``acda_compatible(conv)`` says whether it can.

    from torch_bridge.swap import swap_convs, acda_from_conv, acda_compatible
    swapped = swap_convs(model, lambda name, conv: acda_from_conv(conv),
                         predicate=lambda name, conv: acda_compatible(conv) and name.startswith("layer4"))

New modules are put on the device (and, for floating dtypes, the dtype) of the convolution they
replace and in its train/eval mode, unless ``make`` already did.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch.nn as nn

__all__ = ["swap_convs", "acda_from_conv", "acda_compatible", "acda_incompatibility"]

Make = Callable[[str, nn.Conv2d], nn.Module]
Predicate = Callable[[str, nn.Conv2d], bool]


def _is_dynamic_layer(module: nn.Module) -> bool:
    """Layers of this package (``torch_bridge.nn``): their inner convolutions are theirs."""
    return type(module).__module__.startswith("torch_bridge.nn")


def swap_convs(model: nn.Module, make: Make, predicate: Optional[Predicate] = None) -> List[str]:
    """Replace the ``nn.Conv2d`` modules of ``model`` selected by ``predicate(name, conv)``
    (default: all) with ``make(name, conv)``, in place; return the replaced names in order.

    Convolutions inside this package's dynamic layers (e.g. an ``ACDAConv2d``'s atom
    generator) are never touched, so swapping twice is harmless. The candidates are collected
    before anything is replaced: ``make`` never sees a module it created. ``model`` itself
    cannot be swapped (it has no parent); a convolution registered under several names is
    replaced under each selected name by one new module.
    """
    candidates: List[Tuple[str, nn.Conv2d]] = []
    skip_prefixes: List[str] = []
    for name, module in model.named_modules(remove_duplicate=False):
        if any(name.startswith(p) for p in skip_prefixes):
            continue
        if module is not model and _is_dynamic_layer(module):
            skip_prefixes.append(name + ".")
            continue
        if name and isinstance(module, nn.Conv2d) and (predicate is None or predicate(name, module)):
            candidates.append((name, module))

    made = {}
    swapped = []
    for name, conv in candidates:
        if id(conv) not in made:
            new = make(name, conv)
            if not isinstance(new, nn.Module):
                raise TypeError(f"make({name!r}, conv) returned {type(new).__name__}, not an nn.Module")
            if new is not conv:
                _match(new, conv)
            made[id(conv)] = new
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, made[id(conv)])
        swapped.append(name)
    return swapped


def _match(new: nn.Module, conv: nn.Conv2d) -> None:
    """Move ``new`` to ``conv``'s device/dtype and train/eval mode where it differs."""
    ref = conv.weight
    tensors = list(new.parameters()) + list(new.buffers())
    if any(t.device != ref.device for t in tensors):
        new.to(device=ref.device)
    if ref.is_floating_point() and any(t.is_floating_point() and t.dtype != ref.dtype for t in tensors):
        new.to(dtype=ref.dtype)
    new.train(conv.training)


def _pair(v) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def acda_incompatibility(conv: nn.Conv2d) -> Optional[str]:
    """Why ``conv`` has no ``ACDAConv2d`` equivalent, or None when it has one."""
    if not isinstance(conv, nn.Conv2d):
        return f"not an nn.Conv2d but {type(conv).__name__}"
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    dh, dw = conv.dilation
    if conv.groups != 1:
        return f"groups={conv.groups} (ACDAConv2d has no groups)"
    if kh != kw:
        return f"non-square kernel {conv.kernel_size}"
    if kh < 3 or kh % 2 == 0:
        return f"kernel size {kh} (ACDA needs an odd kernel >= 3)"
    if sh != sw:
        return f"unequal strides {conv.stride}"
    if dh != dw:
        return f"unequal dilations {conv.dilation}"
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r} (ACDA pads with zeros)"
    same = dh * (kh - 1) // 2
    if isinstance(conv.padding, str):
        if conv.padding != "same":
            return f"padding={conv.padding!r} (ACDA computes 'same' convolutions only: padding {same})"
    elif _pair(conv.padding) != (same, same):
        return (f"padding={tuple(conv.padding)} (ACDA computes 'same' convolutions only: "
                f"padding = dilation*(k-1)//2 = {same})")
    return None


def acda_compatible(conv: nn.Module) -> bool:
    """Whether ``acda_from_conv(conv)`` can build an equivalent-shaped ACDA layer."""
    return acda_incompatibility(conv) is None


def acda_from_conv(conv: nn.Conv2d, num_bases: int = 6, **kw) -> nn.Module:
    """An ``ACDAConv2d`` with ``conv``'s channels, kernel size, stride, padding, dilation and
    bias presence (on its device/dtype). ``kw`` go to ``ACDAConv2d`` (e.g. ``bases_grad``).
    The weights are not carried over: an ACDA layer has no per-position-independent kernel.

    Raises ValueError for grouped, non-square, even or 1x1 kernels, unequal strides or
    dilations, non-zero padding modes and paddings other than 'same'.
    """
    from torch_bridge.nn import ACDAConv2d

    why = acda_incompatibility(conv)
    if why is not None:
        raise ValueError(f"cannot build an ACDAConv2d from {conv}: {why}")
    k = conv.kernel_size[0]
    d = conv.dilation[0]
    layer = ACDAConv2d(conv.in_channels, conv.out_channels, k, stride=conv.stride[0],
                       padding=d * (k - 1) // 2, dilation=d, num_bases=num_bases,
                       bias=conv.bias is not None, **kw)
    _match(layer, conv)
    return layer
