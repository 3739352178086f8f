"""Multi-process set-up for ``torchrun`` (torch.distributed + DistributedDataParallel).

``torchrun`` (``python -m torch.distributed.run``) starts one process per GPU (or CPU worker) on
each node and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
``setup`` reads them and initialises the default process group (``nccl`` on GPUs, ``gloo`` on
CPUs). Without them (or with ``WORLD_SIZE=1``) everything runs in this one process.
"""
from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.distributed as dist

__all__ = ["DistEnv", "env_from_torchrun", "setup", "cleanup", "running", "all_reduce_sum", "all_gather_object",
           "barrier", "ShardSampler"]


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this run initialised the process group (and destroys it)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_from_torchrun() -> DistEnv:
    """Rank, world size and local rank from torchrun's environment variables (defaults 0, 1, 0)."""
    try:
        rank = int(os.environ.get("RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
        local = int(os.environ.get("LOCAL_RANK", 0))
    except ValueError as e:
        raise ValueError(f"bad torchrun environment (RANK / WORLD_SIZE / LOCAL_RANK): {e}") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return DistEnv(rank, world, local)


def setup(device: str = "auto"):
    """(DistEnv, torch.device) for this process; initialises the process group under torchrun.

    ``device``: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``. Under torchrun a
    CUDA process uses GPU ``LOCAL_RANK``.
    """
    if dist.is_available() and dist.is_initialized():  # e.g. started by a caller
        env = DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    else:
        env = env_from_torchrun()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda but CUDA is not available")
        if env.distributed or dev.index is None:
            dev = torch.device("cuda", env.local_rank if env.distributed else 0)
        torch.cuda.set_device(dev)
    if env.distributed and not dist.is_initialized():
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch has no torch.distributed")
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kw = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend, **kw)
        env.owns_group = True
    return env, dev


def cleanup(env: DistEnv, finished: bool = False) -> None:
    """Destroy the process group this run initialised.

    ``finished``: every process got here normally, so they first meet at a barrier: no process
    closes its connections while a peer still has a collective in flight (gloo aborts the peer's
    process then). After a failure there is no barrier, which could wait on a dead peer. The
    collection frees DDP's reducer (held in reference cycles) and its hold on the group while
    the interpreter is fully alive, not at exit.
    """
    if env.owns_group and dist.is_initialized():
        try:
            if finished:
                dist.barrier()
        finally:
            gc.collect()
            dist.destroy_process_group()


@contextlib.contextmanager
def running(env: DistEnv):
    """The body of a run: the process group is destroyed at its end, after a barrier when the
    body finished normally (``cleanup``)."""
    try:
        yield
    except BaseException:
        cleanup(env)
        raise
    cleanup(env, finished=True)


def all_reduce_sum(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum of ``t`` over the processes (in place; returned)."""
    if env.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_object(obj: Any, env: DistEnv) -> List[Any]:
    if not env.distributed:
        return [obj]
    out: List[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


class ShardSampler(torch.utils.data.Sampler):
    """Indices ``rank, rank + world, ...``: every sample exactly once over the processes (for
    evaluation; ``DistributedSampler`` would pad with repeats)."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1):
        self.n, self.rank, self.world_size = n, rank, world_size

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))
