"""The layering of the code (README "Architecture"): the import-linter contracts in
pyproject.toml hold, the core imports light, the references import without TVM, and the
shipped tuning logs survive a regular (non-editable) install."""
from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=kw.pop("cwd", ROOT),
                          **kw)


def test_import_contracts_hold():
    lint = shutil.which("lint-imports")
    assert lint, "import-linter is in the test extra (pip install -e .[test])"
    res = subprocess.run([lint, "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def test_forbidden_core_list_is_whole():
    """The contract that keeps schedules and computes off the rest of the core names every
    core module but ``ops``: a new core module must be added there."""
    import dynfilter_tvm

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (rule,) = [c for c in contracts if c["name"].startswith("schedules and operator computes")]
    core = {f"dynfilter_tvm.{m.name}" for m in pkgutil.iter_modules(dynfilter_tvm.__path__)
            if m.name not in ("ops", "__main__")}
    assert core == set(rule["forbidden_modules"])


def test_core_import_is_light():
    res = _run("import sys, dynfilter_tvm; heavy = [m for m in ('torch', 'tvm', 'tvm.s_tir.meta_schedule', "
               "'dynfilter_tvm.aot.writer', 'torch_bridge') if m in sys.modules]; print(heavy)")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
    # (``import tvm`` itself loads MetaSchedule in TVM 0.27; the cache needs TVM, not the writer)
    res = _run("import sys, dynfilter_tvm.cache; print('dynfilter_tvm.aot.writer' in sys.modules)")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False"]


def test_references_run_without_tvm():
    """In a process where ``import tvm`` fails, the plain-PyTorch references import and run."""
    code = """
import builtins, sys
real = builtins.__import__
def no_tvm(name, *a, **kw):
    if name == 'tvm' or name.startswith(('tvm.', 'tvm_ffi')):
        raise ImportError('tvm is blocked in this test')
    return real(name, *a, **kw)
builtins.__import__ = no_tvm
import torch
from torch_bridge.reference import (acda_atom_conv2d_reference, ddf_reference, pacconv2d_reference,
                                    packernel2d_reference)
x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
y = ddf_reference(x, torch.randn(1, 4, 3, 3, dtype=torch.float64), torch.randn(1, 9, 6, 6, dtype=torch.float64))
k, _ = packernel2d_reference(x, kernel_size=3, padding=1)
z = pacconv2d_reference(x, k, torch.randn(2, 4, 3, 3, dtype=torch.float64), padding=1)
a = acda_atom_conv2d_reference(x, torch.randn(1, 6, 6, 6, dtype=torch.float64),
                               torch.randn(3, 3, 3, dtype=torch.float64), padding=1)
assert 'tvm' not in sys.modules
print(tuple(y.shape), tuple(z.shape), tuple(a.shape))
"""
    res = _run(code)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split("\n")[0] == "(1, 4, 6, 6) (1, 2, 6, 6) (1, 8, 6, 6)"


@pytest.mark.slow
def test_regular_install_finds_shipped_tuning_logs(tmp_path):
    """``pip install .`` (not editable) into a fresh venv that sees the system site-packages (for
    TVM and torch; only the build backend comes from the index), run from another directory: the
    shipped logs are found
    inside the installed package and load."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    src = tmp_path / "src"  # a copy: an install must not write build/ or egg-info into the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "*.egg-info", "build", "__pycache__",
                                                               ".pytest_cache", "benchmarks"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DYNFILTER_TVM_TUNING_LOGS")}
    res = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(src)],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    code = """
import json, pathlib
import dynfilter_tvm, tuning_logs
from dynfilter_tvm import tuning_log
root = tuning_log.default_root()
assert 'site-packages' in str(root), root
names = sorted(p.name for p in root.iterdir() if (p / 'manifest.json').is_file())
log = tuning_log.TuningLog.load(root / names[0])
print(pathlib.Path(dynfilter_tvm.__file__).parent.parent == root.parent, names, len(log.entries))
"""
    work = tmp_path / "elsewhere"
    work.mkdir()
    res = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=work, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    same_site, rest = res.stdout.strip().split(" ", 1)
    assert same_site == "True" and rest.startswith("['llvm-znver4-1c']"), res.stdout
    assert int(rest.rsplit(" ", 1)[1]) == 16  # its 16 DDF kernels
