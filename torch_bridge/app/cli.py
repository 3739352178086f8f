"""The command line (the application layer's entry): ``python -m dynfilter_tvm
{demo,check,costs,compile,tune,logs,gpu-report,gpu-suite,models,train,evaluate}`` (also installed as
``dynfilter-tvm``).

demo   the ACDA toy pattern detection (one Conv vs one ACDA layer, paper Fig. 6): trains both,
       checks translation equivariance, writes a figure
check  every operator family's kernels (DDF, ACDA, PAC) checked against their plain-PyTorch definitions, then DDF timed
costs  parameters and FLOPs of Conv vs ACDA layers next to the ACDA paper's Table 6
compile  ahead-of-time kernel bundle for a model or layer: one library per target (CUDA device
       code or this CPU), loaded with dynfilter_tvm.load_bundle or $DYNFILTER_TVM_BUNDLE
tune   autotune the kernels a model or layer needs with MetaSchedule, into tuning_logs/<target>/
logs   tuning logs: show (tuned vs default times), merge, export and import (validated)
gpu-report  static per-kernel CUDA resources, occupancy and rooflines at the benchmark shapes (estimates)
models parameters and FLOPs (multiply-adds) of every registered model at its usual input size
train  train a registered model on local data (CIFAR binary, ImageFolder, joint-upsampling arrays):
       SGD + cosine schedule, AMP, gradient accumulation, checkpoints and resume, torchrun + DDP
evaluate  top-1/top-5 accuracy or RMSE of a training checkpoint
gpu-suite  the GPU evidence in one command into one folder (cuda tests, stream contract,
       benchmarks, short tuning, AOT bundle); --dry-run runs the CPU-side parts
"""
from __future__ import annotations

import argparse
import sys
import time

from .options import CliParser, DefaultsHelpFormatter, add_device_argument


def _device(name: str):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def demo(args) -> int:
    """ACDA toy demo: Conv vs ACDA on the toy pattern detection task."""
    import torch

    from . import demo as acda_toy

    device = _device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    res = acda_toy.run(device, steps=args.steps, out_png=args.out, seed=args.seed, optimizer=args.optimizer)
    ok = res["acda"]["equivariant"] and res["conv"]["equivariant"]
    if not ok:
        print("translation equivariance check FAILED", file=sys.stderr)
    return 0 if ok else 1


def check(args) -> int:
    """Every operator family's kernels against their references, then a short DDF timing."""
    import torch

    from .bench import families
    from .bench.harness import memory_phase, run_shapes

    device = _device(args.device)
    torch.manual_seed(0)
    fams = families()
    print(f"dynfilter-tvm check on {device}: {', '.join(f.NAME for f in fams.values())} compiled with TVM")
    if not memory_phase():  # (the child that measures CPU memory skips the checks)
        t = time.perf_counter()
        for fam in fams.values():
            print(f"{fam.TITLE}:")
            fam.check(device)
        print(f"correct: forward and all gradients match the plain-PyTorch definitions "
              f"({time.perf_counter() - t:.1f} s, kernels compiled or loaded from the cache)")
    shapes = [(2, 64, 56, 56, 3)] if device.type == "cpu" else [(8, 256, 56, 56, 3)]
    run_shapes(fams["ddf"], device, shapes, compile_ref=args.compile, argv=["-m", "dynfilter_tvm", *sys.argv[1:]],
               repeats=5)
    return 0


def costs(args) -> int:
    from . import costs as costs_mod

    return costs_mod.run_cli(args, args.parser)


def models(args) -> int:
    from . import models_summary

    return models_summary.run_cli(args, args.parser)


def train(args) -> int:
    from . import train_cli

    return train_cli.run_train(args, args.parser)


def evaluate(args) -> int:
    from . import train_cli

    return train_cli.run_evaluate(args, args.parser)


class _TrainHelp(DefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, the description (train_cli's docstring, with its examples) as written."""


def main(argv=None) -> int:
    parser = CliParser(prog="dynfilter-tvm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="ACDA toy pattern detection: Conv vs ACDA, equivariance, figure")
    add_device_argument(p)
    p.add_argument("--steps", type=int, default=1500, help="step budget per layer (stops earlier on a plateau)")
    p.add_argument("--out", default="toy_acda.png", help="figure path (PNG)")
    p.add_argument("--seed", type=int, default=0, help="scene and initialisation seed")
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd", "sgd_momentum"],
                   help="adam (lr 3e-3, default), sgd (the paper's: lr 0.01) or sgd_momentum (lr 0.01, 0.9)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    p.set_defaults(func=demo)

    p = sub.add_parser("check", help="check the DDF, ACDA and PAC kernels against their references, time DDF")
    add_device_argument(p)
    p.add_argument("--compile", action="store_true", help="also time the reference under torch.compile")
    p.set_defaults(func=check)

    from . import costs as costs_mod

    p = sub.add_parser("costs", help="params and FLOPs of Conv vs ACDA layers next to the paper's Table 6")
    costs_mod.add_arguments(p)
    p.set_defaults(func=costs, parser=p)

    from dynfilter_tvm import aot

    from . import compile_cli

    p = sub.add_parser("compile", help="ahead-of-time kernel bundle (CUDA device code or CPU) for a model or layer",
                       description=aot.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    compile_cli.add_arguments(p)
    p.set_defaults(func=compile_cli.run_cli, parser=p)

    from dynfilter_tvm import logs_cli, tune as tune_mod

    from . import tune_cli

    p = sub.add_parser("tune", help="autotune the kernels of a model or layer with MetaSchedule into tuning_logs/",
                       description=tune_mod.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tune_cli.add_arguments(p)
    p.set_defaults(func=tune_cli.run_cli)
    p = sub.add_parser("logs", help="tuning logs: show, merge, export, import")
    logs_cli.add_arguments(p)
    p.set_defaults(func=logs_cli.run_cli)

    from dynfilter_tvm import gpu_report

    p = sub.add_parser("gpu-report", help="static GPU report: registers, shared memory, occupancy, rooflines (estimates)",
                       description=gpu_report.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu_report.add_arguments(p)
    p.set_defaults(func=gpu_report.run_cli)

    from . import train_cli

    p = sub.add_parser("train", help="train a model on local data (SGD + cosine, AMP, checkpoints, torchrun)",
                       description=train_cli.__doc__, formatter_class=_TrainHelp)
    train_cli.add_train_arguments(p)
    p.set_defaults(func=train, parser=p)

    p = sub.add_parser("evaluate", help="top-1/top-5 accuracy or RMSE of a training checkpoint",
                       formatter_class=DefaultsHelpFormatter)
    train_cli.add_evaluate_arguments(p)
    p.set_defaults(func=evaluate, parser=p)

    from . import models_summary

    p = sub.add_parser("models", help="params and FLOPs of the registered models (DDF-ResNets vs the paper)")
    models_summary.add_arguments(p)
    p.set_defaults(func=models, parser=p)

    from . import gpu_suite

    p = sub.add_parser("gpu-suite", help="GPU evidence in one run: cuda tests, stream contract, benchmarks, tuning, AOT",
                       description=gpu_suite.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu_suite.add_arguments(p)
    p.set_defaults(func=gpu_suite.run_cli)

    args = parser.parse_args(argv)
    return args.func(args)

