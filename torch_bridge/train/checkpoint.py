"""Checkpoints: atomic writes, loading with ``weights_only``, RNG states.

``save`` writes to a temporary file in the same directory, flushes it to disk, then renames it
over the target (``os.replace``, atomic on POSIX and Windows): a run killed while saving leaves
the previous checkpoint intact. Everything stored is tensors and plain Python values, so
``load`` uses ``torch.load(weights_only=True)`` (no arbitrary unpickling).
"""
from __future__ import annotations

import os
import random
import re
import warnings
from typing import Any, Dict

import numpy as np
import torch

from dynfilter_tvm.files import atomic_write_stream

__all__ = ["save", "load", "load_run", "rng_state", "set_rng_state"]


def save(obj: Dict[str, Any], path: str) -> None:
    """``torch.save(obj, path)``, atomically (temporary file + ``os.replace``)."""
    atomic_write_stream(path, lambda f: torch.save(obj, f))


NOT_OURS = "is not a checkpoint of dynfilter-tvm train (the last.pt / best.pt it writes)"


def _why_unreadable(err: Exception) -> str:
    """A short reason ``torch.load(weights_only=True)`` failed, without torch's advice to load
    with ``weights_only=False`` (which would unpickle, i.e. run, whatever the file holds)."""
    text = str(err)
    m = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if m:
        return f"it holds a {m.group(1)} object, which no checkpoint of this project stores"
    if "WeightsUnpickler" in text or "weights_only" in text:
        return "its contents are not the tensors and plain values a checkpoint holds"
    if "zip archive" in text or isinstance(err, (KeyError, EOFError)) or "magic number" in text:
        return "it is not a file written by torch.save"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"torch.load failed ({type(err).__name__}{': ' + first if first else ''})"


def load(path: str, map_location="cpu") -> Dict[str, Any]:
    """``torch.load(path, weights_only=True)``; FileNotFoundError for a missing file and a
    one-line ValueError for one torch cannot read (empty, truncated, another format)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if os.path.getsize(path) == 0:
        raise ValueError(f"checkpoint {path!r} is empty (0 bytes): {NOT_OURS.replace('is not ', 'not ', 1)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (e.g. torch's pickle-protocol warning on a foreign pickle)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(f"{path!r} {NOT_OURS}: {_why_unreadable(e)}") from e


RUN_KEYS = ("format", "model_name", "model_kwargs", "task", "data", "model")


def load_run(path: str, map_location="cpu") -> Dict[str, Any]:
    """``load`` of a training checkpoint (``loop._Run._state``): a ValueError naming the file
    for anything else torch can read (a bare state_dict, another project's checkpoint)."""
    state = load(path, map_location)
    missing = [k for k in RUN_KEYS if k not in state] if isinstance(state, dict) else list(RUN_KEYS)
    if missing:
        what = f"a {type(state).__name__}" if not isinstance(state, dict) else \
            f"a dict without {', '.join(repr(k) for k in missing)}"
        raise ValueError(f"{path!r} {NOT_OURS}: it holds {what}")
    if state["format"] != 1:
        raise ValueError(f"checkpoint {path!r} has format {state['format']!r}; this version reads format 1")
    return state


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
