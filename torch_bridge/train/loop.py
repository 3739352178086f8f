"""The training and evaluation loops.

``train(TrainConfig)`` trains a registered model (``torch_bridge.models``) on local data (see
``data``) with the papers' recipe: SGD with momentum, weight decay, a cosine learning-rate
schedule (per optimizer step, optional linear warm-up; Adam instead of SGD for the PAC paper's
joint upsampling, whose official code uses Adam with lr 1e-4), optionally mixed precision
(``torch.autocast``: bf16 on CPU, fp16 with a ``GradScaler`` on CUDA) and gradient accumulation.
Under ``torchrun`` it runs data-parallel with ``DistributedDataParallel``.

Batches: ``batch_size`` is the global batch, the samples of one optimizer step over all
processes; each process runs ``accum_steps`` micro-batches of ``batch_size / (world_size *
accum_steps)``. The gradient of a step is that of the mean loss over its samples, so the result
does not depend on how the batch is split (up to rounding).

Data order and resuming: the sample order of an epoch is a function of (seed, epoch) (a
``DistributedSampler``, also with one process), and each sample's augmentation is a function of
(seed, epoch, index) (``data.Augmented``). A checkpoint (``last.pt``: model, optimizer, scheduler,
grad scaler, epoch, step, the running epoch metrics, every process's RNG states) is written at
the end of each epoch and, with ``save_every``, every that many steps; a resumed run skips the
samples already consumed in the epoch and continues as if never stopped (bit for bit on the same
machine and process count). ``best.pt`` keeps the best validation result.

Logs (main process only): ``metrics.csv`` (one row per epoch), ``log.jsonl`` (steps, epochs,
events), ``config.json``, and a tqdm progress bar.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from . import checkpoint as ckpt
from . import dist as tdist
from .data import DataSpec, build_dataset
from .logs import CLASSIFY_FIELDS, UPSAMPLE_FIELDS, RunLog

__all__ = ["TrainConfig", "NonFiniteLoss", "train", "evaluate", "evaluate_checkpoint", "Meter", "cosine_lambda",
           "ResumableSampler", "model_kwargs"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class NonFiniteLoss(ValueError):
    """The training loss became NaN or infinite (``TrainConfig.allow_nan`` is off)."""


@dataclass
class TrainConfig:
    """Everything a training run needs (the ``dynfilter-tvm train`` options)."""

    model: str
    data: str
    out: str = ""  # "" -> runs/<model>
    model_args: Dict[str, Any] = field(default_factory=dict)
    val_data: Optional[str] = None
    # data and augmentation (see data.DataSpec)
    image_size: int = 0
    aug: str = "auto"
    padding: int = 4
    crop_ratio: float = 0.0
    flip: bool = True
    mean: Optional[Sequence[float]] = None
    std: Optional[Sequence[float]] = None
    factor: int = 0
    crop: int = 0
    downsample: str = "area"
    # optimisation
    optimizer: str = "sgd"  # sgd (momentum; the DDF / ACDA recipe) or adam / adamw (PAC joint upsampling: lr 1e-4)
    epochs: int = 100
    batch_size: int = 128
    accum_steps: int = 1
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    no_bias_decay: bool = False
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    clip_grad: float = 0.0
    drop_last: bool = False
    # numerics and devices
    amp: bool = False
    amp_dtype: str = "auto"  # auto: fp16 on CUDA, bf16 on CPU
    dtype: str = "float32"
    device: str = "auto"
    workers: int = 4
    seed: int = 0
    sync_bn: bool = False
    find_unused_parameters: bool = False
    # run control
    save_every: int = 0  # also checkpoint every N optimizer steps (0: at epoch ends only)
    eval_every: int = 1  # validate every N epochs (and after the last)
    log_every: int = 10  # a log.jsonl line every N steps
    max_steps: int = 0  # stop (with a checkpoint) after N steps in all; the schedule is unchanged
    resume: Optional[str] = None  # a checkpoint path, or "auto": <out>/last.pt when it exists
    overwrite: bool = False
    progress: bool = True
    allow_nan: bool = False  # keep going through a non-finite loss (default: stop with an error naming the step)

    def data_spec(self) -> DataSpec:
        return DataSpec(self.data, self.val_data, "", self.image_size, self.aug, self.padding, self.crop_ratio,
                        self.flip, self.mean, self.std, self.factor, self.crop, self.downsample)

    def to_dict(self) -> Dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


# ----------------------------------------------------------------------------------------------
# pieces


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (order a function of seed and epoch) that can start ``start``
    samples into this process's share of the epoch."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.start = 0

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


def cosine_lambda(total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> Callable[[int], float]:
    """LR multiplier after ``step`` optimizer steps: linear warm-up to 1 over ``warmup_steps``,
    then half a cosine from 1 down to ``min_ratio`` at ``total_steps``."""
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return f


class Meter:
    """Running sums of a task's metrics on the device (no host sync per batch); ``result`` after
    ``all_reduce``. classify: loss, top-1, top-5 (%); upsample: loss, RMSE over all pixels and
    the mean of per-image RMSEs."""

    def __init__(self, task: str, device=None):
        self.task = task
        self.sums = torch.zeros(5, dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, out: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> None:
        n = target.shape[0]
        s = self.sums
        s[0] += n
        s[1] += loss.detach().double() * n
        if self.task == "classify":
            correct = out.topk(min(5, out.shape[1]), dim=1).indices.eq(target[:, None])
            s[2] += correct[:, 0].sum()
            s[3] += correct.any(1).sum()
        else:
            err = (out.detach().double() - target.double()) ** 2
            s[2] += err.sum()
            s[3] += err.numel()
            s[4] += err.flatten(1).mean(1).sqrt().sum()

    def all_reduce(self, env: tdist.DistEnv) -> "Meter":
        tdist.all_reduce_sum(self.sums, env)
        return self

    def result(self) -> Dict[str, float]:
        s = self.sums.tolist()
        n = max(s[0], 1.0)
        if self.task == "classify":
            return {"loss": s[1] / n, "top1": 100 * s[2] / n, "top5": 100 * s[3] / n, "n": int(s[0])}
        return {"loss": s[1] / n, "rmse": math.sqrt(s[2] / max(s[3], 1.0)), "rmse_per_image": s[4] / n,
                "n": int(s[0])}


def _loss(task: str, out: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    if out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()
    if task == "classify":
        return F.cross_entropy(out, target, label_smoothing=label_smoothing)
    return F.mse_loss(out, target.to(out.dtype))


def _to_device(batch, device, dtype):
    moved = []
    for t in batch:
        t = t.to(device, non_blocking=True)
        moved.append(t.to(dtype) if t.is_floating_point() else t)
    return moved


def _autocast(device: torch.device, amp: bool, amp_dtype: str, dtype: str):
    """(autocast context factory, use a GradScaler)."""
    if not amp:
        return contextlib.nullcontext, False
    if dtype != "float32":
        raise ValueError("mixed precision (--amp) needs --dtype float32")
    name = amp_dtype if amp_dtype != "auto" else ("fp16" if device.type == "cuda" else "bf16")
    if name not in ("fp16", "bf16"):
        raise ValueError(f"unknown --amp-dtype {amp_dtype!r} (auto, fp16 or bf16)")
    half = torch.float16 if name == "fp16" else torch.bfloat16
    return (lambda: torch.autocast(device.type, dtype=half)), name == "fp16"


def model_kwargs(name: str, model_args: Dict[str, Any], task: str, base) -> Dict[str, Any]:
    """``model_args`` completed from the data: the constructor arguments the model's registry
    entry names (``ModelSpec.data_args``: ``num_classes``, or ``channels``, ``guide_channels``)
    that were not given."""
    from torch_bridge.models import model_spec

    spec = model_spec(name)
    kw = dict(model_args)
    derived = {"num_classes": base.num_classes} if task == "classify" else \
        {"channels": base.channels, "guide_channels": base.guide_channels}
    for k, v in derived.items():
        if k not in kw and k in spec.data_args:
            kw[k] = v
    return kw


@torch.no_grad()
def evaluate(model: nn.Module, loader, task: str, device, dtype=torch.float32, autocast=contextlib.nullcontext,
             env: Optional[tdist.DistEnv] = None, progress: bool = False) -> Dict[str, float]:
    """Metrics of ``model`` over ``loader`` (summed over the processes)."""
    from tqdm import tqdm

    env = env or tdist.DistEnv()
    was_training = model.training
    model.eval()
    meter = Meter(task, device)
    for batch in tqdm(loader, desc="eval", leave=False, disable=not progress, dynamic_ncols=True):
        *inputs, target = _to_device(batch, device, dtype)
        with autocast():
            out = model(*inputs)
        meter.update(out, target, _loss(task, out, target))
    model.train(was_training)
    return meter.all_reduce(env).result()


def _format(prefix: str, m: Dict[str, float]) -> str:
    keys = [k for k in ("loss", "top1", "top5", "rmse", "rmse_per_image") if k in m]
    return " ".join(f"{prefix}{k} {m[k]:.4f}" if k in ("loss", "rmse", "rmse_per_image") else
                    f"{prefix}{k} {m[k]:.2f}%" for k in keys)


# ----------------------------------------------------------------------------------------------
# training


class _Run:
    """One training run: set up in small steps (each a method below), then :meth:`run`."""

    def __init__(self, cfg: TrainConfig, env: tdist.DistEnv, device: torch.device, on_step):
        self.cfg, self.env, self.device, self.on_step = cfg, env, device, on_step
        self.out = cfg.out or os.path.join("runs", cfg.model)
        self.last_path = os.path.join(self.out, "last.pt")
        self.best_path = os.path.join(self.out, "best.pt")
        self._check_config()
        state = self._resume_state()
        self._build_data()
        self._build_model()
        self._build_loaders()
        self._build_optimizer()
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.meter = Meter(self.task, device)
        self.best: Optional[float] = None
        self.val_metrics: Dict[str, float] = {}
        if state is not None:
            self._load(state)
        else:
            torch.manual_seed(cfg.seed + 1_000_003 * (env.rank + 1))  # the run's randomness (dropout, ...)

        self.ddp = self.model
        if env.distributed:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters)
        self._open_logs(state)

    def _check_config(self) -> None:
        """dtype, AMP, and a global batch that splits over processes and accumulation steps."""
        cfg, env, device = self.cfg, self.env, self.device
        if cfg.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {cfg.dtype!r} (float32 or float64)")
        self.dtype = DTYPES[cfg.dtype]
        self.autocast, self.use_scaler = _autocast(device, cfg.amp, cfg.amp_dtype, cfg.dtype)
        for k in ("epochs", "batch_size", "accum_steps"):
            if getattr(cfg, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(cfg, k)}")
        per = env.world_size * cfg.accum_steps
        if cfg.batch_size % per:
            raise ValueError(f"the batch size ({cfg.batch_size}, global) must be a multiple of processes x "
                             f"accumulation steps ({env.world_size} x {cfg.accum_steps})")
        self.micro = cfg.batch_size // per

    def _resume_state(self) -> Optional[Dict[str, Any]]:
        """The checkpoint to resume from (``--resume``, or ``auto``: the run's last), or None."""
        cfg = self.cfg
        self.resume_path = None
        if cfg.resume and cfg.resume != "auto":
            self.resume_path = cfg.resume
        elif os.path.isfile(self.last_path):
            if cfg.resume == "auto":
                self.resume_path = self.last_path
            elif not cfg.overwrite:
                raise FileExistsError(f"{self.last_path} exists: pass --resume to continue that run or --overwrite "
                                      f"to start over (or choose another --out)")
        state = ckpt.load_run(self.resume_path) if self.resume_path else None
        if state is not None and state.get("model_name") != cfg.model:
            raise ValueError(f"checkpoint {self.resume_path} is of model {state.get('model_name')!r}, "
                             f"not {cfg.model!r}")
        return state

    def _build_data(self) -> None:
        """Seeds, the task and the train/val datasets."""
        cfg = self.cfg
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % (1 << 32))
        torch.manual_seed(cfg.seed)
        spec = cfg.data_spec()
        spec.factor = spec.factor or int(cfg.model_args.get("factor", 0))
        if "factor" in cfg.model_args and spec.factor != cfg.model_args["factor"]:
            raise ValueError(f"--factor {spec.factor} but the model's factor is {cfg.model_args['factor']}")
        self.spec = spec.resolved()
        self.task = self.spec.task
        if self.task == "classify":
            self._image_size(bool(spec.image_size))
        if self.task == "upsample":
            cfg.model_args.setdefault("factor", self.spec.factor)
        self.train_set = build_dataset(self.spec, "train", train=True, seed=cfg.seed)
        if self.train_set is None:
            raise FileNotFoundError(f"no training split in {cfg.data!r}")
        self.val_set = build_dataset(self.spec, "val", train=False, seed=cfg.seed)
        base = self.train_set.base
        self.classes = list(getattr(base, "classes", []))
        if self.val_set is not None and self.task == "classify" and \
                list(getattr(self.val_set.base, "classes", self.classes)) != self.classes:
            raise ValueError(f"the validation classes differ from the training classes "
                             f"({len(self.val_set.base.classes)} vs {len(self.classes)})")

    def _image_size(self, given: bool) -> None:
        """The model's input size drives the default image size (a model whose classifier fixes
        it, e.g. lenet's 32, gets it on any data; others get their usual size, except on CIFAR
        where the data's 32 stays); a size the model cannot take is an error here, not a shape
        mismatch in its classifier."""
        from torch_bridge.models import model_spec

        mspec = model_spec(self.cfg.model)
        if not given and (mspec.fixed_size or self.spec.format != "cifar"):
            self.spec.image_size = mspec.input_size
        try:
            mspec.check_size(self.spec.image_size)
        except ValueError as err:
            raise ValueError(f"--image-size {self.spec.image_size}: {err}") from None

    def _build_model(self) -> None:
        cfg, env = self.cfg, self.env
        self.model_kwargs = model_kwargs(cfg.model, cfg.model_args, self.task, self.train_set.base)
        from torch_bridge.models import get_model

        model = get_model(cfg.model, **self.model_kwargs)
        if cfg.sync_bn and env.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device, self.dtype)

    def _build_loaders(self) -> None:
        """The data order (resumable sampler), steps per epoch and the loaders."""
        cfg, env = self.cfg, self.env
        self.sampler = ResumableSampler(self.train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True,
                                        seed=cfg.seed, drop_last=False)
        per_rank = self.sampler.num_samples
        batches = per_rank // self.micro if cfg.drop_last else -(-per_rank // self.micro)
        self.steps_per_epoch = -(-batches // cfg.accum_steps)
        if self.steps_per_epoch < 1:
            raise ValueError(f"{len(self.train_set)} training samples make no batch of {cfg.batch_size}")
        self.total_steps = cfg.epochs * self.steps_per_epoch
        cuda = self.device.type == "cuda"
        self.loader = DataLoader(self.train_set, batch_size=self.micro, sampler=self.sampler,
                                 num_workers=cfg.workers, pin_memory=cuda, drop_last=cfg.drop_last,
                                 generator=torch.Generator().manual_seed(cfg.seed),
                                 persistent_workers=False)
        self.val_loader = None
        if self.val_set is not None:
            self.val_loader = DataLoader(self.val_set, batch_size=max(1, cfg.batch_size // env.world_size),
                                         sampler=tdist.ShardSampler(len(self.val_set), env.rank, env.world_size),
                                         num_workers=cfg.workers, pin_memory=cuda)

    def _build_optimizer(self) -> None:
        """Parameter groups (no decay on biases and norms with ``no_bias_decay``), the optimizer,
        the cosine schedule and the AMP grad scaler."""
        cfg = self.cfg
        decay, no_decay = [], []
        for n, p in self.model.named_parameters():
            if p.requires_grad:
                (no_decay if cfg.no_bias_decay and p.ndim <= 1 else decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        if cfg.optimizer == "sgd":
            self.opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                       weight_decay=cfg.weight_decay)
        elif cfg.optimizer in ("adam", "adamw"):
            self.opt = (torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW)(
                groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r} (sgd, adam or adamw)")
        warmup = round(cfg.warmup_epochs * self.steps_per_epoch)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, cosine_lambda(self.total_steps, warmup, cfg.min_lr / cfg.lr if cfg.lr else 0.0))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.use_scaler)

    def _open_logs(self, state: Optional[Dict[str, Any]]) -> None:
        """Metric logs (fresh for a new run), the run's config.json and its first event."""
        cfg, env, device = self.cfg, self.env, self.device
        fields = CLASSIFY_FIELDS if self.task == "classify" else UPSAMPLE_FIELDS
        if env.is_main and state is None:
            os.makedirs(self.out, exist_ok=True)
            for name in ("metrics.csv", "log.jsonl"):  # a fresh run starts fresh logs
                p = os.path.join(self.out, name)
                if os.path.exists(p):
                    os.remove(p)
        self.log = RunLog(self.out, fields, enabled=env.is_main)
        if env.is_main:
            with open(os.path.join(self.out, "config.json"), "w") as f:
                json.dump({"config": cfg.to_dict(), "data": self.spec.to_dict(), "task": self.task,
                           "model_kwargs": self.model_kwargs, "world_size": env.world_size,
                           "micro_batch": self.micro, "steps_per_epoch": self.steps_per_epoch}, f, indent=1,
                          default=str)
            self.log.event("resume" if state is not None else "start", step=self.global_step, epoch=self.epoch,
                           world_size=env.world_size, device=str(device), checkpoint=self.resume_path)

    # checkpoints -------------------------------------------------------------------------------

    def _state(self) -> Dict[str, Any]:
        rngs = tdist.all_gather_object(ckpt.rng_state(), self.env)  # collective: every process calls it
        return {
            "format": 1,
            "model_name": self.cfg.model,
            "model_kwargs": self.model_kwargs,
            "task": self.task,
            "data": self.spec.to_dict(),
            "classes": self.classes,
            "dtype": self.cfg.dtype,
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,  # epochs completed
            "step_in_epoch": self.step_in_epoch,  # optimizer steps done in the current epoch
            "global_step": self.global_step,
            "world_size": self.env.world_size,
            "micro_batch": self.micro,
            "accum_steps": self.cfg.accum_steps,
            "meter": self.meter.sums.cpu(),
            "best": self.best,
            "val": self.val_metrics,
            "rng": rngs,
        }

    def save(self, best: bool = False) -> None:
        state = self._state()
        if self.env.is_main:
            ckpt.save(state, self.last_path)
            if best:
                ckpt.save(state, self.best_path)

    def _load(self, s: Dict[str, Any]) -> None:
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["optimizer"])
        self.sched.load_state_dict(s["scheduler"])
        if s.get("scaler"):
            self.scaler.load_state_dict(s["scaler"])
        self.epoch, self.step_in_epoch, self.global_step = s["epoch"], s["step_in_epoch"], s["global_step"]
        self.best, self.val_metrics = s.get("best"), dict(s.get("val") or {})
        same_split = (s["world_size"], s["micro_batch"], s["accum_steps"]) == \
            (self.env.world_size, self.micro, self.cfg.accum_steps)
        if self.step_in_epoch and not same_split:
            warnings.warn(f"resuming mid-epoch with another split of the batch (processes, micro-batch, "
                          f"accumulation: {s['world_size']}, {s['micro_batch']}, {s['accum_steps']} -> "
                          f"{self.env.world_size}, {self.micro}, {self.cfg.accum_steps}): the rest of epoch "
                          f"{self.epoch + 1} is restarted", stacklevel=2)
            self.step_in_epoch = 0
        if self.step_in_epoch:
            self.meter.sums.copy_(s["meter"])
        rngs = s.get("rng") or []
        if len(rngs) == self.env.world_size:
            ckpt.set_rng_state(rngs[self.env.rank])
        else:
            torch.manual_seed(self.cfg.seed + 1_000_003 * (self.env.rank + 1) + self.global_step)

    # the loop ----------------------------------------------------------------------------------

    def _step(self, group: List[Sequence[torch.Tensor]]) -> torch.Tensor:
        """One optimizer step over the micro-batches of ``group``; the step's mean loss."""
        cfg = self.cfg
        sizes = [len(b[-1]) for b in group]
        total = sum(sizes)
        self.opt.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        for j, batch in enumerate(group):
            *inputs, target = _to_device(batch, self.device, self.dtype)
            sync = j == len(group) - 1 or not self.env.distributed
            with (contextlib.nullcontext() if sync else self.ddp.no_sync()):
                with self.autocast():
                    out = self.ddp(*inputs)
                loss = _loss(self.task, out, target, cfg.label_smoothing)
                self.scaler.scale(loss * (sizes[j] / total)).backward()
            self.meter.update(out.detach(), target, loss)
            step_loss += loss.detach().double() * (sizes[j] / total)
        if not cfg.allow_nan:
            self._check_finite(step_loss)
        if cfg.clip_grad > 0:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        return step_loss

    def _check_finite(self, step_loss: torch.Tensor) -> None:
        """Stop at a NaN or infinite loss, before the step spoils the weights (every process
        together: the flag is summed over them). ``allow_nan`` skips this check."""
        bad = (~torch.isfinite(step_loss)).to(torch.float64).reshape(1)
        tdist.all_reduce_sum(bad, self.env)
        if bad.item():
            step = self.global_step + 1
            what = f"{float(step_loss)}" if self.env.world_size == 1 else "not finite (in some process)"
            if self.env.is_main:
                self.log.event("non_finite_loss", step=step, epoch=self.epoch + 1)
            last = f" (last checkpoint: {self.last_path})" if os.path.isfile(self.last_path) else ""
            raise NonFiniteLoss(f"the loss is {what} at step {step} (epoch {self.epoch + 1}): training stopped "
                                f"before that step's update{last}; try a lower --lr or --clip-grad, or pass "
                                f"--allow-nan to continue anyway")

    def run(self) -> Dict[str, Any]:
        from tqdm import tqdm

        cfg, env = self.cfg, self.env
        stopped = False
        train_metrics: Dict[str, float] = {}
        if env.is_main:
            print(f"training {cfg.model} ({self.task}) on {len(self.train_set)} samples"
                  f"{f', validating on {len(self.val_set)}' if self.val_set is not None else ''}: "
                  f"{cfg.epochs} epochs x {self.steps_per_epoch} steps of {cfg.batch_size} "
                  f"({env.world_size} process(es) x {cfg.accum_steps} x {self.micro}) on {self.device}"
                  + (f", resuming at epoch {self.epoch + 1} step {self.global_step}" if self.resume_path else ""),
                  flush=True)
        while self.epoch < cfg.epochs and not stopped:
            e = self.epoch
            self.train_set.set_epoch(e)
            self.sampler.set_epoch(e)
            self.sampler.start = self.step_in_epoch * cfg.accum_steps * self.micro
            if not self.step_in_epoch:
                self.meter.sums.zero_()
            t0 = time.perf_counter()
            self.model.train()
            it = iter(self.loader)
            bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, desc=f"epoch {e + 1}/{cfg.epochs}",
                       disable=not (cfg.progress and env.is_main), dynamic_ncols=True, leave=False,
                       file=sys.stderr)
            t_log, n_log = time.perf_counter(), 0
            while self.step_in_epoch < self.steps_per_epoch:
                if cfg.max_steps and self.global_step >= cfg.max_steps:  # (resumed with the same limit)
                    stopped = True
                    break
                group = list(itertools.islice(it, cfg.accum_steps))
                if not group:
                    break
                loss = self._step(group)
                self.global_step += 1
                self.step_in_epoch += 1
                n_log += sum(len(b[-1]) for b in group) * env.world_size
                bar.update(1)
                if cfg.log_every and self.global_step % cfg.log_every == 0:
                    now = time.perf_counter()
                    lv = float(loss)
                    lr = self.sched.get_last_lr()[0]
                    bar.set_postfix(loss=f"{lv:.4f}", lr=f"{lr:.3g}")
                    self.log.event("step", epoch=e + 1, step=self.global_step, loss=lv, lr=lr,
                                   samples_per_s=n_log / max(now - t_log, 1e-9))
                    t_log, n_log = now, 0
                stop = bool(cfg.max_steps) and self.global_step >= cfg.max_steps
                if stop or (cfg.save_every and self.global_step % cfg.save_every == 0
                            and self.step_in_epoch < self.steps_per_epoch):
                    self.save()
                if self.on_step is not None:
                    self.on_step(self.global_step)
                if stop:
                    stopped = True
                    break
            bar.close()
            del it
            if stopped:
                if env.is_main:
                    print(f"stopped after step {self.global_step} (--max-steps); resume with --resume", flush=True)
                    self.log.event("stop", step=self.global_step, epoch=e + 1)
                break
            # end of epoch: metrics, validation, checkpoint
            # (a run stopped on an epoch's last step resumes here, with that epoch's sums)
            train_metrics = self.meter.all_reduce(env).result()
            self.epoch += 1
            self.step_in_epoch = 0
            self.meter.sums.zero_()
            val = {}
            last = self.epoch == cfg.epochs
            if self.val_loader is not None and (last or (cfg.eval_every and self.epoch % cfg.eval_every == 0)):
                val = evaluate(self.model, self.val_loader, self.task, self.device, self.dtype, self.autocast,
                               env, progress=cfg.progress and env.is_main)
                self.val_metrics = val
            better = False
            if val:
                score = val["top1"] if self.task == "classify" else -val["rmse"]
                better = self.best is None or score > self.best
                if better:
                    self.best = score
            self.save(best=better)
            if env.is_main:
                acc = "top1" if self.task == "classify" else "rmse"
                rec = {"epoch": self.epoch, "step": self.global_step, "lr": self.sched.get_last_lr()[0],
                       "train_loss": train_metrics["loss"], f"train_{acc}": train_metrics[acc],
                       "epoch_time_s": time.perf_counter() - t0}
                rec.update({f"val_{k}": v for k, v in val.items() if k != "n"})
                self.log.epoch(rec)
                print(f"epoch {self.epoch}/{cfg.epochs} step {self.global_step} lr {rec['lr']:.4g} "
                      f"{_format('train ', train_metrics)}"
                      + (f" | {_format('val ', val)}" if val else "") + f" ({rec['epoch_time_s']:.1f} s)",
                      flush=True)
        return {"epoch": self.epoch, "step": self.global_step, "stopped": stopped, "train": train_metrics,
                "val": self.val_metrics, "checkpoint": self.last_path, "out": self.out, "model": self.model}


def train(cfg: TrainConfig, on_step: Optional[Callable[[int], None]] = None) -> Dict[str, Any]:
    """Train as ``cfg`` says (see the module docstring). Returns the final metrics (``train``,
    ``val``), ``epoch``, ``step``, ``stopped`` (by ``max_steps``), ``checkpoint`` and ``model``
    (the trained module, unwrapped from DDP).

    ``on_step(global_step)`` is called after each optimizer step (and its checkpoint, if one is
    due); an exception raised there ends the run as a kill would.
    """
    env, device = tdist.setup(cfg.device)
    with tdist.running(env):
        return _Run(cfg, env, device, on_step).run()


def evaluate_checkpoint(path: str, data: Optional[str] = None, split: str = "val", batch_size: int = 256,
                        device: str = "auto", workers: int = 4, amp: bool = False, amp_dtype: str = "auto",
                        progress: bool = False) -> Dict[str, Any]:
    """Metrics of the model in checkpoint ``path`` on the ``split`` (``val`` or ``train``, with
    the evaluation transforms) of the checkpoint's data, or of ``data`` (same format and task)."""
    from torch_bridge.models import get_model

    if split not in ("train", "val"):
        raise ValueError(f"split must be train or val, got {split!r}")
    env, dev = tdist.setup(device)
    with tdist.running(env):
        s = ckpt.load_run(path)
        spec = DataSpec(**s["data"])
        if data:
            spec.data, spec.val_data, spec.format = data, None, ""
        spec = spec.resolved()
        if spec.task != s["task"]:
            raise ValueError(f"{spec.data!r} is {spec.task} data but the checkpoint's model does {s['task']}")
        ds = build_dataset(spec, split, train=False)
        if ds is None:
            raise FileNotFoundError(f"no {split} split in {spec.val_data if split == 'val' and spec.val_data else spec.data!r}")
        if s["task"] == "classify" and s.get("classes") and list(ds.base.classes) != list(s["classes"]):
            raise ValueError(f"the classes of {spec.data!r} ({len(ds.base.classes)}) are not the checkpoint's "
                             f"({len(s['classes'])})")
        dtype = DTYPES[s.get("dtype", "float32")]
        model = get_model(s["model_name"], **s["model_kwargs"])
        model.load_state_dict(s["model"])
        model.to(dev, dtype)
        autocast, _ = _autocast(dev, amp, amp_dtype, s.get("dtype", "float32"))
        loader = DataLoader(ds, batch_size=max(1, batch_size // env.world_size),
                            sampler=tdist.ShardSampler(len(ds), env.rank, env.world_size), num_workers=workers,
                            pin_memory=dev.type == "cuda")
        m = evaluate(model, loader, s["task"], dev, dtype, autocast, env, progress=progress and env.is_main)
        m.update(split=split, epoch=s["epoch"], step=s["global_step"], model=s["model_name"], checkpoint=path)
        return m
