"""The model registry: each model registers its constructor with what callers need to know
about it (timm's ``register_model`` pattern), so no caller tests model names.

A :class:`ModelSpec` says how to feed the model: its default input size (or the only one it
takes), whether it is guided (``model(target, guide)``, the guide ``factor`` times larger), the
constructor variants worth listing, and which constructor arguments come from the data.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., nn.Module]
    input_size: int = 224            # default square input size (ImageNet)
    fixed_size: bool = False         # the classifier fixes the input size
    guided: bool = False             # model(target, guide): target `channels`, guide `guide_channels`
    variants: Tuple[dict, ...] = ({},)  # constructor kwargs of the rows `dynfilter-tvm models` lists
    data_args: Tuple[str, ...] = ("num_classes",)  # constructor arguments the training data sets

    def example_inputs(self, model: nn.Module, batch: int = 1, size: Optional[int] = None) -> List[torch.Tensor]:
        """Random inputs for ``model``: images of ``size`` (default ``input_size``); a guided
        model gets a guide of ``size`` and a target ``model.factor`` times smaller."""
        size = self.input_size if self.fixed_size or size is None else size
        if not self.guided:
            return [torch.randn(batch, 3, size, size)]
        f = model.factor
        if size % f:
            raise ValueError(f"the guide size {size} must be a multiple of the factor {f}")
        return [torch.randn(batch, model.channels, size // f, size // f),
                torch.randn(batch, model.guide_channels, size, size)]

    def check_size(self, size: int) -> None:
        """A clear error for an input size the model cannot take."""
        if self.fixed_size and size != self.input_size:
            raise ValueError(f"{self.name} takes {self.input_size}x{self.input_size} inputs only, "
                             f"not {size}x{size}")


SPECS: Dict[str, ModelSpec] = {}
MODELS: Dict[str, Callable[..., nn.Module]] = {}  # name -> constructor


def register_model(name: str, **meta) -> Callable:
    """Decorator: register a model constructor (function or class) under ``name`` with the
    :class:`ModelSpec` fields ``meta``."""
    def wrap(build):
        if name in SPECS:
            raise ValueError(f"model {name!r} is registered twice")
        SPECS[name] = ModelSpec(name, build, **meta)
        MODELS[name] = build
        return build

    return wrap


def model_spec(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(SPECS))}") from None


def get_model(name: str, **kw) -> nn.Module:
    """Build the registered model ``name`` with constructor arguments ``kw``."""
    return model_spec(name).build(**kw)


def count_parameters(model: nn.Module, trainable: bool = False) -> int:
    """Number of parameters of ``model`` (a tensor shared by several modules counts once);
    with ``trainable=True`` only those with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)
