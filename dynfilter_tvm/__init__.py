"""dynfilter-tvm: dynamic (per-pixel) convolutions compiled with TVM.

The core knows workloads, targets, schedules and compiled modules, and nothing of torch.nn;
``torch_bridge`` turns it into PyTorch ops and layers.
"""
__version__ = "0.1.0"

from . import ops  # noqa: E402,F401  (registers every operator's kernels)
from .aot import load_bundle  # noqa: E402
from .cache import cache_dir, get as get_kernel  # noqa: E402
from .target import cpu_target, cuda_target, resolve as resolve_target  # noqa: E402
from .workload import Workload  # noqa: E402

__all__ = ["Workload", "get_kernel", "load_bundle", "cache_dir", "cpu_target", "cuda_target", "resolve_target"]
