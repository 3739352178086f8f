"""Checkpoints: atomic writes, loading with ``weights_only``, RNG states.

``save`` writes to a temporary file in the same directory, flushes it to disk, then renames it
over the target (``os.replace``, atomic on POSIX and Windows): a run killed while saving leaves
the previous checkpoint intact. Everything stored is tensors and plain Python values, so
``load`` uses ``torch.load(weights_only=True)`` (no arbitrary unpickling).
"""
from __future__ import annotations

import os
import random
from typing import Any, Dict

import numpy as np
import torch

from dynfilter_tvm.files import atomic_write_stream

__all__ = ["save", "load", "rng_state", "set_rng_state"]


def save(obj: Dict[str, Any], path: str) -> None:
    """``torch.save(obj, path)``, atomically (temporary file + ``os.replace``)."""
    atomic_write_stream(path, lambda f: torch.save(obj, f))


def load(path: str, map_location="cpu") -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(f"cannot read checkpoint {path!r}: {e}") from e


def rng_state() -> Dict[str, Any]:
    """The Python, NumPy, torch CPU and (initialised) CUDA generators' states, as storable values."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    random.setstate(tuple(state["python"][:1]) + (tuple(state["python"][1]),) + tuple(state["python"][2:]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
