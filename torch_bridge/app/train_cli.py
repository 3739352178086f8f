"""``dynfilter-tvm train`` and ``dynfilter-tvm evaluate``: the command-line front of ``torch_bridge.train``.

Single process::

    dynfilter-tvm train --model lenet --data cifar-10-batches-bin --epochs 100 --batch-size 128 \\
        --lr 0.1 --weight-decay 5e-4 --out runs/lenet
    dynfilter-tvm evaluate --checkpoint runs/lenet/best.pt

Several GPUs or nodes: the same command under torchrun, e.g. ``torchrun --nproc_per_node 8 -m
dynfilter_tvm train ...`` (``--batch-size`` is the global batch).
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from typing import Any, Dict, List, Optional

from .options import add_device_argument

__all__ = ["add_train_arguments", "add_evaluate_arguments", "run_train", "run_evaluate", "config_from_args"]


def _model_args(items: List[str], parser: Optional[argparse.ArgumentParser]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            msg = f"--model-arg takes KEY=VALUE, got {item!r}"
            if parser is not None:
                parser.error(msg)
            raise ValueError(msg)
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value  # a plain string
    return out


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    from ..train.loop import TrainConfig

    d = TrainConfig("", "")
    g = p.add_argument_group("model and data")
    g.add_argument("--model", required=True, help="a torch_bridge.models name (lenet, pac_joint_upsample_lite, ...)")
    g.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a constructor argument (repeatable; VALUE a Python literal), e.g. factor=8")
    g.add_argument("--data", required=True,
                   help="CIFAR binary directory, ImageFolder root (root/train, root/val or root/<class>/...), "
                        "or joint-upsampling arrays (.npz, or a directory of <split>.npz / "
                        "<split>_guidance.npy + <split>_target.npy)")
    g.add_argument("--val-data", default=None, help="validation data elsewhere than in --data")
    g.add_argument("--out", default="", help="run directory: checkpoints and logs (default runs/<model>)")
    g = p.add_argument_group("augmentation")
    g.add_argument("--image-size", type=int, default=d.image_size, help="classification input side (default: "
                   "the model's input size, e.g. 32 for lenet; for a model that takes any size, 32 on CIFAR)")
    g.add_argument("--train-aug", dest="aug", default=d.aug, choices=["auto", "crop", "resized_crop", "none"],
                   help="auto: crop (padded random crop) for CIFAR, resized_crop (Inception) otherwise")
    g.add_argument("--padding", type=int, default=d.padding, help="padding of the random crop")
    g.add_argument("--crop-ratio", type=float, default=d.crop_ratio,
                   help="evaluation: resize to size/ratio then center crop (default 1 for CIFAR, 0.875 otherwise)")
    g.add_argument("--no-flip", dest="flip", action="store_false", help="no random horizontal flips")
    g.add_argument("--mean", type=float, nargs=3, default=None, help="normalization mean (default CIFAR's/ImageNet's)")
    g.add_argument("--std", type=float, nargs=3, default=None, help="normalization std")
    g.add_argument("--factor", type=int, default=d.factor, help="joint upsampling: the factor (also the model's; default: --model-arg factor=N)")
    g.add_argument("--crop", type=int, default=d.crop, help="joint upsampling: training crop side (0: whole images)")
    g.add_argument("--downsample", default=d.downsample, choices=["area", "bilinear", "bicubic", "nearest"],
                   help="joint upsampling: how the low-resolution input is made from the target")
    g = p.add_argument_group("optimisation (SGD with momentum, cosine schedule)")
    g.add_argument("--optimizer", default=d.optimizer, choices=["sgd", "adam", "adamw"],
                   help="sgd with momentum (the DDF/ACDA recipe), or adam (the PAC joint-upsampling code's, "
                        "with --lr 1e-4 --weight-decay 0)")
    g.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training data")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch (all processes, all "
                   "accumulation steps)")
    g.add_argument("--accum-steps", type=int, default=d.accum_steps, help="gradient accumulation micro-batches")
    g.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    g.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    g.add_argument("--nesterov", action="store_true", help="SGD with Nesterov momentum")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="L2 penalty (decoupled for adamw)")
    g.add_argument("--no-bias-decay", action="store_true", help="no weight decay on biases and norm parameters")
    g.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, help="linear warm-up (epochs)")
    g.add_argument("--min-lr", type=float, default=d.min_lr, help="learning rate at the end of the cosine")
    g.add_argument("--label-smoothing", type=float, default=d.label_smoothing,
                   help="classification: weight of the uniform distribution mixed into the targets")
    g.add_argument("--clip-grad", type=float, default=d.clip_grad, help="gradient norm clipping (0: off)")
    g.add_argument("--drop-last", action="store_true", help="drop the last incomplete micro-batch of an epoch")
    g = p.add_argument_group("numerics and devices")
    g.add_argument("--amp", action="store_true", help="mixed precision (torch.autocast)")
    g.add_argument("--amp-dtype", default=d.amp_dtype, choices=["auto", "fp16", "bf16"],
                   help="auto: fp16 + GradScaler on CUDA, bf16 on CPU")
    g.add_argument("--dtype", default=d.dtype, choices=["float32", "float64"], help="parameter dtype")
    add_device_argument(g, d.device, "under torchrun a CUDA process uses GPU LOCAL_RANK")
    g.add_argument("--workers", type=int, default=d.workers, help="data loader processes per training process")
    g.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    g.add_argument("--seed", type=int, default=d.seed, help="data order, augmentation and initialisation")
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes")
    g.add_argument("--find-unused-parameters", action="store_true", help="DDP: models with unused parameters")
    g = p.add_argument_group("run control")
    g.add_argument("--save-every", type=int, default=d.save_every,
                   help="also checkpoint every N steps (always at the end of each epoch)")
    g.add_argument("--eval-every", type=int, default=d.eval_every, help="validate every N epochs (and at the end)")
    g.add_argument("--log-every", type=int, default=d.log_every, help="a log.jsonl line every N steps")
    g.add_argument("--max-steps", type=int, default=d.max_steps,
                   help="stop after N steps in all, with a checkpoint (the schedule is unchanged)")
    g.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                   help="continue from CHECKPOINT, or without one from <out>/last.pt when it exists")
    g.add_argument("--overwrite", action="store_true", help="start over even if <out>/last.pt exists")
    g.add_argument("--allow-nan", action="store_true",
                   help="keep training through a NaN or infinite loss (by default the run stops at that step)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def config_from_args(args: argparse.Namespace, parser: Optional[argparse.ArgumentParser] = None):
    from ..train.loop import TrainConfig

    fields = TrainConfig.__dataclass_fields__
    kw = {k: v for k, v in vars(args).items() if k in fields and k != "model_args"}
    return TrainConfig(model_args=_model_args(args.model_arg, parser), **kw)


def _threads(n: int) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def run_train(args: argparse.Namespace, parser: Optional[argparse.ArgumentParser] = None) -> int:
    from ..train.loop import train

    cfg = config_from_args(args, parser)
    _threads(args.threads)
    try:
        train(cfg)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as e:
        print(f"dynfilter-tvm train: error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    return 0


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint of `train` (e.g. runs/lenet/best.pt)")
    p.add_argument("--data", default=None, help="data to evaluate on (default: the checkpoint's)")
    p.add_argument("--split", default="val", choices=["val", "train"], help="which split (evaluation transforms)")
    p.add_argument("--batch-size", type=int, default=256, help="global batch")
    add_device_argument(p)
    p.add_argument("--workers", type=int, default=4, help="data loader processes")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    p.add_argument("--amp", action="store_true", help="mixed precision (torch.autocast)")
    p.add_argument("--amp-dtype", default="auto", choices=["auto", "fp16", "bf16"],
                   help="auto: fp16 on CUDA, bf16 on CPU")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the metrics as JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run_evaluate(args: argparse.Namespace, parser: Optional[argparse.ArgumentParser] = None) -> int:
    from ..train import dist as tdist
    from ..train.loop import evaluate_checkpoint

    _threads(args.threads)
    try:
        m = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.batch_size, args.device, args.workers,
                                args.amp, args.amp_dtype, args.progress)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"dynfilter-tvm evaluate: error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    if tdist.env_from_torchrun().is_main:
        if "top1" in m:
            line = f"top1 {m['top1']:.2f}%  top5 {m['top5']:.2f}%  loss {m['loss']:.4f}"
        else:
            line = f"rmse {m['rmse']:.6g}  rmse_per_image {m['rmse_per_image']:.6g}  loss {m['loss']:.6g}"
        print(f"{m['model']} (epoch {m['epoch']}, step {m['step']}) on {m['n']} {m['split']} samples: {line}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(m, f, indent=1)
    return 0
