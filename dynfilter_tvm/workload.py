"""A workload: one kernel of one operator at fixed shapes, parameters and dtype.

Everything that selects or keys compiled code starts from a :class:`Workload`: the build
path, the on-disk cache, tuning records and AOT bundles all use :meth:`Workload.key`.

A parameter whose value is ``None`` is *symbolic*: the kernel is built once for every value,
which it reads from its tensors' shapes at the call (a *generic* workload, e.g. any batch,
height and width). A workload with every value fixed is *static*.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping

_DTYPES = ("float16", "bfloat16", "float32", "float64")


_SCALARS = (int, float, str, bool, type(None))


def _freeze(value: Any) -> Any:
    if type(value) in _SCALARS:  # the common case first: this runs on every kernel call
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    raise TypeError(f"workload parameter values must be ints, floats, strings or tuples, got {value!r}")


def _typed(value: Any) -> Any:
    """``value`` with its type beside it (recursively): ``1``, ``1.0`` and ``True`` are equal
    in Python but have different keys (JSON ``1``, ``1.0``, ``true``) and build differently."""
    if type(value) is tuple:
        return tuple, tuple(_typed(v) for v in value)
    return type(value), value


@dataclasses.dataclass(frozen=True, eq=False)
class Workload:
    """``op``/``kernel`` name the compute (e.g. ``ddf``/``fwd``); ``params`` fix every shape
    (``None``: symbolic, see the module docstring). Two workloads are equal exactly when their
    keys are (:meth:`key`), which hashing needs no JSON for: every kernel call looks one up."""

    op: str
    kernel: str
    params: tuple  # sorted ((name, value), ...): hashable and order-independent
    dtype: str

    @classmethod
    def make(cls, op: str, kernel: str, params: Mapping[str, Any], dtype: str) -> "Workload":
        if dtype not in _DTYPES:
            raise ValueError(f"unsupported dtype {dtype!r}; expected one of {_DTYPES}")
        return cls(op, kernel, tuple(sorted((k, _freeze(v)) for k, v in params.items())), dtype)

    @property
    def p(self) -> dict:
        return dict(self.params)

    def to_json(self) -> dict:
        return {"op": self.op, "kernel": self.kernel, "params": self.p, "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Workload":
        try:
            return cls.make(str(data["op"]), str(data["kernel"]), dict(data["params"]), str(data["dtype"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed workload description {data!r}: {err}") from None

    @property
    def kind(self) -> str:
        """'generic' (some parameter symbolic) or 'static'."""
        return "generic" if any(v is None for _, v in self.params) else "static"

    def with_symbolic(self, names) -> "Workload":
        """The same kernel with the parameters ``names`` symbolic."""
        params = self.p
        missing = [n for n in names if n not in params]
        if missing:
            raise KeyError(f"{self.op}.{self.kernel} has no parameters {missing}")
        params.update({n: None for n in names})
        return Workload.make(self.op, self.kernel, params, self.dtype)

    def key(self) -> str:
        """Stable text key (JSON with sorted keys)."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    def _identity(self) -> tuple:
        ident = self.__dict__.get("_ident")
        if ident is None:  # computed once per instance (frozen: set past the dataclass guard)
            ident = (self.op, self.kernel, self.dtype, self.params,
                     tuple([_typed(v) if type(v) is tuple else type(v) for _, v in self.params]))
            object.__setattr__(self, "_ident", ident)
        return ident

    def __eq__(self, other) -> bool:
        return isinstance(other, Workload) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def digest(self) -> str:
        return hashlib.sha256(self.key().encode()).hexdigest()[:20]

    def __str__(self) -> str:
        args = ",".join(f"{k}={'?' if v is None else v}" for k, v in self.params)
        return f"{self.op}.{self.kernel}[{args}]:{self.dtype}"
