"""Training and evaluation of the model zoo (``dynfilter-tvm train`` / ``dynfilter-tvm evaluate``).

``data``        local datasets (ImageFolder, CIFAR binary, joint-upsampling arrays) and transforms
``loop``        ``TrainConfig``, ``train``, ``evaluate``, ``evaluate_checkpoint``
``checkpoint``  atomic checkpoint writes, RNG states
``dist``        torchrun / DistributedDataParallel set-up
``logs``        metrics.csv and log.jsonl
``cli``         the command line
"""
from .data import CIFARBinary, DataSpec, ImageFolder, UpsampleArrays, build_dataset  # noqa: F401
from .loop import TrainConfig, evaluate, evaluate_checkpoint, train  # noqa: F401

__all__ = ["TrainConfig", "train", "evaluate", "evaluate_checkpoint", "DataSpec", "build_dataset", "ImageFolder",
           "CIFARBinary", "UpsampleArrays"]
