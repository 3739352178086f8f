import os
import tempfile

# Tests build into a cache of their own (fresh per run unless DYNFILTER_TVM_CACHE is set), so
# they exercise compiling and never depend on kernels left by an earlier run.
if "DYNFILTER_TVM_CACHE" not in os.environ:
    os.environ["DYNFILTER_TVM_CACHE"] = tempfile.mkdtemp(prefix="dynfilter_tvm_test_cache_")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny tensors or models: on a busy machine a second
    OpenMP thread waiting at every barrier makes each step up to 100x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def no_kernels(monkeypatch):
    """Fail any compiled-kernel lookup: for paths that must not run (or build) a kernel."""
    import dynfilter_tvm

    def fail(*args, **kwargs):
        raise AssertionError("a compiled kernel was requested")

    monkeypatch.setattr(dynfilter_tvm, "get_kernel", fail)
