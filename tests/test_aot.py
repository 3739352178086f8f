"""Ahead-of-time kernel bundles (``dynfilter-tvm compile``, ``dynfilter_tvm.load_bundle``).

CPU only: a CUDA bundle (sm_90 and sm_80 side by side, plus this CPU) is built without a GPU
through the stub libcuda and its device code listed with cuobjdump; an LLVM bundle runs the
DDF op in a fresh process with compiling forbidden; damaged, foreign and misfit bundles are
refused with clear messages.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import tvm

from dynfilter_tvm import aot, cache
from dynfilter_tvm.__main__ import main
from dynfilter_tvm.files import sha256_bytes, sha256_file
from dynfilter_tvm.target import cpu_target, cuda_target, host_cpu_name
from dynfilter_tvm.workload import Workload

SHAPE = "1x8x9x9"  # DDFPack(8, 3) on 1x8x9x9: ddf.fwd, dx, ds, dc
PARAMS = dict(B=1, C=8, G=1, H=9, W=9, combine="mul", d=1, k=3, s=1)
KERNELS = ("fwd", "dx", "ds", "dc")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No bundles or JIT settings leak in or out; an empty kernel cache of its own."""
    monkeypatch.delenv(aot.ENV_BUNDLE, raising=False)
    monkeypatch.delenv(aot.ENV_JIT, raising=False)
    monkeypatch.setenv("DYNFILTER_TVM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_memory", {})
    monkeypatch.setattr(cache, "stats", dict.fromkeys(cache.stats, 0))
    aot.clear_bundles()
    yield
    aot.clear_bundles()


@pytest.fixture(scope="module")
def llvm_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("aot") / "llvm-bundle"
    assert main(["compile", "--target", "llvm", "--op", "ddf", "--input", SHAPE, "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def cuda_bundle(tmp_path_factory) -> Path:
    if aot.find_nvcc() is None:
        pytest.skip("nvcc is not installed: no CUDA device code can be built")
    if not aot.toolchain._cuda_driver_present() and not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("no GPU driver and no C compiler (gcc/cc) for the stub libcuda.so.1")
    out = tmp_path_factory.mktemp("aot") / "cuda-bundle"
    argv = ["compile", "--target", "sm_90", "--target", "sm_80", "--target", "llvm",
            "--op", "ddf", "--input", SHAPE, "--no-backward", "-o", str(out)]
    assert main(argv) == 0
    return out


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / aot.MANIFEST).read_text())


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(bundle, dst)
    return dst


def _edit_manifest(bundle: Path, edit) -> None:
    m = _manifest(bundle)
    edit(m)
    (bundle / aot.MANIFEST).write_text(json.dumps(m))


# -- CUDA: device code, several archs ---------------------------------------------------------


def test_cuda_bundle_holds_device_code_for_each_arch(cuda_bundle):
    m = _manifest(cuda_bundle)
    assert (m["format"], m["format_version"], m["tvm"]) == (aot.FORMAT, aot.FORMAT_VERSION, tvm.__version__)
    by_name = {t["name"]: t for t in m["targets"]}
    assert sorted(by_name) == sorted(["cuda-sm_90", "cuda-sm_80", f"llvm-{host_cpu_name()}"])
    tool = aot.find_cuobjdump()
    for arch in ("sm_90", "sm_80"):
        entry = by_name[f"cuda-{arch}"]
        lib = (cuda_bundle / entry["library"]).read_bytes()
        dev = entry["device_code"]
        blob = (cuda_bundle / dev["file"]).read_bytes()
        assert dev["archs"] == [arch] and dev["format"] in ("fatbin", "cubin")
        assert sha256_bytes(lib) == entry["sha256"] and sha256_bytes(blob) == dev["sha256"]
        assert blob[:4] in (aot.manifest._FATBIN_MAGIC, aot.manifest._ELF_MAGIC)
        assert lib.find(blob) >= 0, "the library must embed the device code"
        assert b"__global__" not in lib, "CUDA source in the library"
        [k] = entry["kernels"]  # --no-backward: the forward kernel only
        assert Workload.from_json(k["workload"]) == Workload.make("ddf", "fwd", PARAMS, "float32")
        assert k["symbol"] == aot.kernel_symbol(Workload.make("ddf", "fwd", PARAMS, "float32"))
        if tool is not None:
            listing = subprocess.run([tool, "--list-elf", str(cuda_bundle / dev["file"])],
                                     capture_output=True, text=True, check=True).stdout
            assert f".{arch}.cubin" in listing, listing
    if tool is None:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump): ELF listing not checked")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_only_bundle_is_refused_without_that_gpu(cuda_bundle, tmp_path):
    b = _copy(cuda_bundle, tmp_path)
    _edit_manifest(b, lambda m: m.update(targets=[t for t in m["targets"] if t["name"].startswith("cuda-")]))
    with pytest.raises(aot.BundleError, match=r"cuda-sm_90, cuda-sm_80; this machine is CPU .*no CUDA GPU"):
        aot.load_bundle(b)


def test_mixed_bundle_loads_the_targets_that_fit(cuda_bundle):
    bundle = aot.load_bundle(cuda_bundle)
    assert bundle.targets == [f"llvm-{host_cpu_name()}"]
    if not torch.cuda.is_available():
        assert sorted(bundle.skipped) == ["cuda-sm_80", "cuda-sm_90"]
    wl = Workload.make("ddf", "fwd", PARAMS, "float32")
    assert cache.get(wl, cpu_target()) is not None and aot.stats["bundle_hits"] >= 1
    assert cache.stats["built"] == 0


def test_cuda_module_with_source_is_refused(tmp_path, monkeypatch):
    """Without TVM's CUDA runtime (as in this process) TVM keeps CUDA source: refused, even
    past the early check that the runtime is loaded."""
    if tvm.runtime.enabled("cuda"):
        pytest.skip("TVM's CUDA runtime is loaded here")
    wl = Workload.make("ddf", "fwd", PARAMS, "float32")
    mod, _ = aot.schedule_kernels([wl], cuda_target("sm_90"))
    with pytest.raises(aot.BundleError, match="not loaded in the build process"):
        aot.writer._compile_library(mod, cuda_target("sm_90"), tmp_path, "cuda-sm_90")
    monkeypatch.setattr(tvm.runtime, "enabled", lambda target: True)
    with pytest.raises(aot.BundleError, match="holds CUDA source, not device code"):
        aot.writer._compile_library(mod, cuda_target("sm_90"), tmp_path, "cuda-sm_90")
    assert not list(tmp_path.iterdir())


# -- LLVM: manifest, and a fresh process that may not compile ---------------------------------


def test_llvm_manifest(llvm_bundle):
    m = _manifest(llvm_bundle)
    [entry] = m["targets"]
    assert entry["name"] == f"llvm-{host_cpu_name()}" and entry["target"]["mcpu"] == host_cpu_name()
    assert entry["device_code"] is None
    assert sha256_file(llvm_bundle / entry["library"]) == entry["sha256"]
    assert sorted(Path(p).name for p in llvm_bundle.iterdir()) == sorted([aot.MANIFEST, entry["library"]])
    kernels = {Workload.from_json(k["workload"]).kernel: k for k in entry["kernels"]}
    assert sorted(kernels) == sorted(KERNELS)
    for name, k in kernels.items():
        wl = Workload.make("ddf", name, PARAMS, "float32")
        assert Workload.from_json(k["workload"]) == wl and k["symbol"] == aot.kernel_symbol(wl)
        assert k["schedule"] and k["compute"]
    fwd = kernels["fwd"]["signature"]
    assert [a["name"] for a in fwd] == ["X", "S", "C", "out"]
    assert fwd[0] == {"name": "X", "shape": [1, 1, 8, 9, 9], "dtype": "float32"}
    assert fwd[1]["shape"] == [1, 1, 3, 3, 9, 9] and fwd[3]["shape"] == [1, 1, 8, 9, 9]


_FRESH = """
import json, torch
from torch_bridge.functional import ddf
from torch_bridge.reference import ddf_reference
from dynfilter_tvm import aot, cache
torch.manual_seed(0)
ins = [torch.randn(1, 8, 9, 9), torch.randn(1, 8, 3, 3), torch.randn(1, 9, 9, 9)]
x, c, s = [t.clone().requires_grad_() for t in ins]
out = ddf(x, c, s)
grad = torch.randn_like(out)
got = (out, *torch.autograd.grad(out, (x, c, s), grad))
ref_in = [t.double().requires_grad_() for t in ins]
ref = ddf_reference(*ref_in)
want = (ref, *torch.autograd.grad(ref, ref_in, grad.double()))
for g, w in zip(got, want):
    assert g.dtype == torch.float32
    torch.testing.assert_close(g.double(), w, atol=1e-4, rtol=1e-4)
print(json.dumps({"cache": cache.stats, "aot": aot.stats}))
"""


def test_bundle_runs_in_fresh_process_without_compiling(llvm_bundle, tmp_path):
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    env = dict(os.environ, DYNFILTER_TVM_BUNDLE=str(llvm_bundle), DYNFILTER_TVM_JIT="off",
               DYNFILTER_TVM_CACHE=str(empty))
    res = subprocess.run([sys.executable, "-c", _FRESH], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    stats = json.loads(res.stdout.strip().splitlines()[-1])
    assert stats["cache"]["built"] == 0 and stats["cache"]["disk_hits"] == 0
    assert stats["aot"]["bundle_hits"] == len(KERNELS)
    assert not list(empty.iterdir()), "nothing may be written to the cache"


def test_missing_kernel_with_jit_off_is_a_clear_error(llvm_bundle, monkeypatch):
    aot.load_bundle(llvm_bundle)
    monkeypatch.setenv(aot.ENV_JIT, "off")
    held = Workload.make("ddf", "fwd", PARAMS, "float32")
    assert cache.get(held, cpu_target()) is not None  # served from the bundle
    other = Workload.make("ddf", "fwd", dict(PARAMS, H=10), "float32")
    with pytest.raises(aot.KernelUnavailableError) as err:
        cache.get(other, cpu_target())
    msg = str(err.value)
    # the shapes asked for, and the generic kernel that would have served them
    assert "ddf.fwd[B=1,C=8,G=1,H=10," in msg and "DYNFILTER_TVM_JIT=off" in msg
    assert "nor its generic kernel ddf.fwd[B=?,C=8,G=1,H=?," in msg
    assert str(llvm_bundle) in msg and "holds 4 kernels" in msg and "H=9" in msg
    assert cache.stats["built"] == 0


def test_jit_off_without_bundle(monkeypatch):
    monkeypatch.setenv(aot.ENV_JIT, "off")
    with pytest.raises(aot.KernelUnavailableError, match="no kernel bundle is loaded"):
        cache.get(Workload.make("ddf", "fwd", PARAMS, "float32"), cpu_target())


def test_missing_kernel_compiles_when_allowed(llvm_bundle):
    aot.load_bundle(llvm_bundle)
    cache.get(Workload.make("ddf", "fwd", dict(PARAMS, H=10), "float32"), cpu_target())
    assert cache.stats["built"] == 1


# -- refusals -----------------------------------------------------------------------------------


def _flip_library_byte(b: Path) -> None:
    lib = b / _manifest(b)["targets"][0]["library"]
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lib.write_bytes(bytes(data))


def _other_cpu(m: dict) -> None:
    other = "skylake" if host_cpu_name() != "skylake" else "znver4"
    m["targets"][0]["target"]["mcpu"] = other
    m["targets"][0]["name"] = f"llvm-{other}"


DAMAGE = {
    "library-checksum": (_flip_library_byte, "fails its checksum"),
    "library-missing": (lambda b: (b / _manifest(b)["targets"][0]["library"]).unlink(), "is missing"),
    "other-tvm": (lambda b: _edit_manifest(b, lambda m: m.update(tvm="0.26.0")),
                  r"built with TVM 0\.26\.0, this machine has TVM"),
    "format-version": (lambda b: _edit_manifest(b, lambda m: m.update(format_version=2)),
                       "format version 2 is not supported"),
    "other-cpu": (lambda b: _edit_manifest(b, _other_cpu),
                  r"holds kernels for llvm-(skylake|znver4); this machine is CPU "),
    "truncated": (lambda b: (b / aot.MANIFEST).write_text((b / aot.MANIFEST).read_text()[:300]),
                  "not valid JSON"),
    "not-utf8": (lambda b: (b / aot.MANIFEST).write_bytes(b"\xff\xfe{}"), "not valid JSON"),
    "duplicate-key": (lambda b: (b / aot.MANIFEST).write_text('{"format": 1, "format": 2}'), "duplicate key"),
    "path-escape": (lambda b: _edit_manifest(b, lambda m: m["targets"][0].update(library="../evil.so")),
                    "malformed bundle manifest: file name"),
    "name-mismatch": (lambda b: _edit_manifest(b, lambda m: m["targets"][0].update(name="llvm-other")),
                      "does not match its target"),
    "bad-workload": (lambda b: _edit_manifest(b, lambda m: m["targets"][0]["kernels"][0].update(
        workload={"op": "ddf", "kernel": "fwd", "params": {"B": {"x": 1}}, "dtype": "float32"})),
        "malformed workload"),
    "no-manifest": (lambda b: (b / aot.MANIFEST).unlink(), "no bundle manifest"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_or_foreign_bundle_is_refused(llvm_bundle, tmp_path, damage):
    b = _copy(llvm_bundle, tmp_path)
    spoil, message = DAMAGE[damage]
    spoil(b)
    with pytest.raises(aot.BundleError, match=message):
        aot.load_bundle(b)
    assert not aot.loader._bundles and not aot.loader._index


def test_refused_env_bundle_fails_every_lookup(llvm_bundle, tmp_path, monkeypatch):
    b = _copy(llvm_bundle, tmp_path)
    _flip_library_byte(b)
    monkeypatch.setenv(aot.ENV_BUNDLE, os.pathsep.join(["", str(b)]))
    wl = Workload.make("ddf", "fwd", PARAMS, "float32")
    for _ in range(2):  # not only the first: a refused bundle never silently turns into JIT
        with pytest.raises(aot.BundleError, match="DYNFILTER_TVM_BUNDLE: .*fails its checksum"):
            cache.get(wl, cpu_target())
    assert cache.stats["built"] == 0


def test_cross_compiled_cpu_bundle_is_refused_here(tmp_path):
    other = "skylake" if host_cpu_name() != "skylake" else "znver4"
    wl = Workload.make("ddf", "fwd", PARAMS, "float32")
    aot.compile_bundle([wl], [f"llvm:{other}"], tmp_path / "b", progress=None)
    assert _manifest(tmp_path / "b")["targets"][0]["name"] == f"llvm-{other}"
    with pytest.raises(aot.BundleError, match=f"holds kernels for llvm-{other}; this machine is CPU {host_cpu_name()}"):
        aot.load_bundle(tmp_path / "b")


def test_output_must_be_new_or_empty(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(aot.BundleError, match="exists and is not an empty directory"):
        aot.compile_bundle([Workload.make("ddf", "fwd", PARAMS, "float32")], ["llvm"], out, progress=None)
    assert (out / "keep.txt").read_text() == "user data"
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "no temporary directory left behind"
