"""Swap convolutions of an existing network for other layers (ACDA, PAC).

``swap_convs(model, make, predicate)`` replaces, in place, every ``nn.Conv2d`` the predicate
selects by ``make(name, conv)`` and returns the swapped names; ``acda_from_conv(conv)`` is a
``make`` that builds the matching ``ACDAConv2d``; ``acda_compatible(conv)`` says whether it can.

    from torch_bridge.nn.swap import swap_convs, acda_from_conv, acda_compatible
    swapped = swap_convs(model, lambda name, conv: acda_from_conv(conv),
                         predicate=lambda name, conv: acda_compatible(conv) and name.startswith("layer4"))

PAC hot-swapping (Su et al., CVPR 2019): ``pac_from_conv(conv)`` builds a
``GuidedPacConv2d`` (``torch_bridge.nn.pac_swap``) -- a ``PacConv2d`` with the convolution's
weight and bias that is called like the convolution, ``layer(x)``, and takes its guidance from
its input, from a tensor or callable set with ``set_pac_guidance(model, g)`` (resized to each
layer's input), or from an explicit second argument. With a constant guidance (or
``guidance_scale=0``) every Gaussian kernel is all ones and the swapped network computes
exactly what the original did; training then makes the chosen layers content-adaptive::

    from torch_bridge.nn.swap import swap_convs, pac_from_conv, pac_compatible, set_pac_guidance
    swap_convs(model, lambda name, conv: pac_from_conv(conv, guidance_scale=1e-4),
               predicate=lambda name, conv: pac_compatible(conv) and name.startswith("layer4"))
    set_pac_guidance(model, image)   # before each forward; None: each layer's own input
    out = model(image)

New modules are put on the device (and, for floating dtypes, the dtype) of the convolution they
replace and in its train/eval mode, unless ``make`` already did.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch
import torch.nn as nn

__all__ = ["swap_convs", "acda_from_conv", "acda_compatible", "acda_incompatibility",
           "pac_from_conv", "pac_compatible", "pac_incompatibility", "set_pac_guidance"]

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


def _pac_padding(conv: nn.Conv2d) -> Tuple[int, int]:
    """``conv``'s padding as numbers ('same' and 'valid' resolved; odd kernels only)."""
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        return tuple(d * (k - 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size))
    return _pair(conv.padding)


def pac_incompatibility(conv: nn.Module) -> Optional[str]:
    """Why ``conv`` has no ``PacConv2d`` equivalent, or None when it has one."""
    if not isinstance(conv, nn.Conv2d):
        return f"not an nn.Conv2d but {type(conv).__name__}"
    kh, kw = conv.kernel_size
    if conv.groups != 1:
        return f"groups={conv.groups} (PacConv2d has no groups)"
    if kh != kw:
        return f"non-square kernel {conv.kernel_size}"
    if kh % 2 == 0:
        return f"even kernel size {kh} (PAC kernels are centred on a pixel: odd sizes only)"
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r} (PacConv2d pads with zeros)"
    for p, d in zip(_pac_padding(conv), conv.dilation):
        if p > d * (kh - 1) // 2:
            return (f"padding={tuple(conv.padding)} > dilation*(k-1)/2: some kernel centres would lie "
                    f"in the padding, where the PAC kernel is not 1 even for a constant guidance")
    return None


def pac_compatible(conv: nn.Module) -> bool:
    """Whether ``pac_from_conv(conv)`` can build a PAC layer computing what ``conv`` does."""
    return pac_incompatibility(conv) is None


def pac_from_conv(conv: nn.Conv2d, *, guidance=None, guidance_scale: float = 1.0,
                  share_weights: bool = False, **pac_kwargs) -> nn.Module:
    """A ``GuidedPacConv2d`` with ``conv``'s shape and weights, called like it: ``layer(x)``.

    Args:
        conv: an ``nn.Conv2d`` with an odd square kernel, groups 1, zero padding of at most
            ``dilation*(k-1)/2`` (see ``pac_incompatibility``).
        guidance: the layer's stored guidance (tensor or callable); None: its own input.
        guidance_scale: factor on the guidance (0: the kernel is all ones, the layer is ``conv``).
        share_weights: use ``conv``'s weight/bias parameters themselves (an optimizer built
            before the swap keeps training them); else copies (the default).
        pac_kwargs: other ``PacConv2d`` arguments (``kernel_type``, ``smooth_kernel_type``,
            ``normalize_kernel``, ``native_impl``). ``normalize_kernel=True`` divides by the
            kernel's sum: the layer is then no longer ``conv`` for a constant guidance.

    The layer is on ``conv``'s device/dtype, in its train/eval mode, its parameters with the
    same ``requires_grad``. Raises ValueError for incompatible convolutions and for
    ``shared_filters=True`` (one k x k filter cannot hold ``conv``'s weights).
    """
    from torch_bridge.nn.pac_swap import GuidedPacConv2d

    why = pac_incompatibility(conv)
    if why is not None:
        raise ValueError(f"cannot build a PacConv2d from {conv}: {why}")
    if pac_kwargs.get("shared_filters"):
        raise ValueError("shared_filters=True cannot hold the convolution's (C_out, C_in, k, k) weight")
    layer = GuidedPacConv2d(conv.in_channels, conv.out_channels, conv.kernel_size[0], stride=tuple(conv.stride),
                            padding=_pac_padding(conv), dilation=tuple(conv.dilation),
                            bias=conv.bias is not None, guidance=guidance, guidance_scale=guidance_scale,
                            **pac_kwargs)
    _match(layer, conv)
    if share_weights:
        layer.weight = conv.weight
        if conv.bias is not None:
            layer.bias = conv.bias
    else:
        _copy_param(layer.weight, conv.weight)
        if conv.bias is not None:
            _copy_param(layer.bias, conv.bias)
    return layer


def _copy_param(dst: nn.Parameter, src: nn.Parameter) -> None:
    with torch.no_grad():
        dst.copy_(src)
    dst.requires_grad_(src.requires_grad)


def set_pac_guidance(model: nn.Module, guidance) -> int:
    """Set the guidance (tensor, callable or None) of every swapped PAC layer of ``model``
    (``GuidedPacConv2d``); returns how many layers it set."""
    from torch_bridge.nn.pac_swap import set_pac_guidance as _set

    return _set(model, guidance)
