"""PyTorch bridge of dynfilter-tvm, in layers (each imports only those below it)::

    app        command-line verbs, demo, benchmarks, workload recording, FLOP counting
    train      training and evaluation loop
    models     registered models (DDF-ResNets, Ad-ResNets, LeNet, PAC upsamplers)
    nn         drop-in layers, conv hot-swap, the reference switch
    functional the public ops (``torch_bridge.functional``)
    ops | reference   custom ops on the compiled kernels | plain-PyTorch definitions (no TVM)
    runtime    the only module that calls the compiler core (``dynfilter_tvm``)

Importing the package itself loads nothing: ``torch_bridge.reference`` works without TVM.
"""
import importlib

_SUBMODULES = ("functional", "nn", "models", "reference", "train", "ops", "runtime", "app")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
