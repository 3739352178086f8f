"""Command-line errors are one line on stderr with a nonzero exit status, never a traceback:
``--device`` names (one shared type function for demo, check, train and evaluate), a CUDA device
on a machine without one, an LLVM CPU name LLVM does not know, a tuning log for another CPU in
``benchmarks/bench_tuned.py``, ``--thread-time`` with more than one thread, an image size the model cannot take, a NaN loss, and files that
are not training checkpoints. Plus ``train --help``: every option explained, defaults shown.
All on tiny data; no kernel is compiled.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from dynfilter_tvm.__main__ import main as cli
from dynfilter_tvm.target import host_cpu_name, resolve
from torch_bridge.app.options import device_type
from torch_bridge.train import checkpoint as ckpt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_CUDA = not torch.cuda.is_available()


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (conftest)


def _run(argv, capsys):
    """(exit status, stderr) of the command line in this process: returned or via SystemExit."""
    capsys.readouterr()
    try:
        code = cli(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        if not isinstance(e.code, (int, type(None))):  # SystemExit("message") prints it
            print(e.code, file=sys.stderr)
    return code, capsys.readouterr().err


def _one_line_error(code, err, *needles):
    assert code not in (0, None), err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "error:" in lines[0], err
    for n in needles:
        assert n in lines[0], (n, err)
    return lines[0]


def _tiny_cifar(root, n=16, seed=0):
    """A CIFAR-10 binary directory of n random 32x32 images (training split only)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
    y = rng.integers(0, 10, (n, 1), dtype=np.uint8)
    os.makedirs(root, exist_ok=True)
    np.concatenate([y, x], 1).tofile(os.path.join(root, "data_batch_1.bin"))
    return str(root)


def _tiny_imagefolder(root, n=8):
    """An ImageFolder tree (two classes) of n random 32x32 PNGs: not CIFAR, so the data says
    nothing about the input size."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for i in range(n):
        d = os.path.join(root, str(i % 2))
        os.makedirs(d, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(os.path.join(d, f"{i}.png"))
    return str(root)


TRAIN_FAST = ["--workers", "0", "--no-progress", "--batch-size", "4"]


# ----------------------------------------------------------------------------------------------
# --device


@pytest.mark.parametrize("verb", ["demo", "check", "train", "evaluate"])
@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu"])
def test_device_unknown_name_is_one_line(verb, device, capsys, tmp_path):
    required = {"train": ["--model", "lenet", "--data", str(tmp_path)], "evaluate": ["--checkpoint", "x.pt"]}
    code, err = _run([verb, *required.get(verb, []), "--device", device], capsys)
    _one_line_error(code, err, "--device", repr(device), "cpu, cuda, cuda:N or auto")


@pytest.mark.skipif(not NO_CUDA, reason="needs a machine without CUDA")
@pytest.mark.parametrize("verb", ["demo", "check", "train", "evaluate"])
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_device_cuda_without_gpu_is_one_line(verb, device, capsys, tmp_path):
    required = {"train": ["--model", "lenet", "--data", _tiny_cifar(tmp_path / "c")],
                "evaluate": ["--checkpoint", str(tmp_path / "x.pt")]}
    code, err = _run([verb, *required.get(verb, []), "--device", device], capsys)
    _one_line_error(code, err, "--device", "CUDA is not available")


def test_device_type_accepts_the_documented_names():
    assert [device_type(d) for d in ("cpu", "auto", "CPU", " auto ")] == ["cpu", "auto", "cpu", "auto"]
    if torch.cuda.is_available():
        assert device_type("cuda") == "cuda" and device_type("cuda:0") == "cuda:0"
        with pytest.raises(argparse.ArgumentTypeError, match="CUDA device"):
            device_type(f"cuda:{torch.cuda.device_count()}")
    for bad in ("gpu", "cuda:", "cuda:-1", "mps", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="unknown device"):
            device_type(bad)


# ----------------------------------------------------------------------------------------------
# LLVM CPU names


def test_unknown_llvm_cpu_is_an_error(capsys, tmp_path):
    with pytest.raises(ValueError, match="knows no CPU 'nonexistentcpu'"):
        resolve("llvm:nonexistentcpu")
    with pytest.raises(ValueError, match="did you mean skylake"):
        resolve("llvm:skylak")
    with pytest.raises(ValueError, match="knows no CPU 'foo'"):
        resolve('{"kind": "llvm", "mcpu": "foo"}')
    assert str(resolve("llvm:skylake").attrs["mcpu"]) == "skylake"  # a known name still works
    resolve("llvm")  # and this CPU's own name

    out = tmp_path / "bundle"
    code, err = _run(["compile", "--target", "llvm:nonexistentcpu", "-o", str(out), "--op", "ddf",
                      "--input", "1x4x8x8", "--no-backward", "--kernels", "fwd"], capsys)
    _one_line_error(code, err, "nonexistentcpu")
    assert not out.exists(), "no bundle for a generic CPU"
    code, err = _run(["tune", "--target", "llvm:nonexistentcpu", "--op", "ddf", "--input", "1x4x8x8"], capsys)
    _one_line_error(code, err, "nonexistentcpu")


# ----------------------------------------------------------------------------------------------
# --thread-time with more than one thread (bench_generic.py, bench_ddf_kernels.py)


@pytest.mark.parametrize("script,extra", [("bench_generic.py", ["--op", "ddf"]), ("bench_ddf_kernels.py", [])])
def test_bench_thread_time_needs_one_thread(script, extra):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", script), *extra, "--threads", "2",
                        "--thread-time"], capture_output=True, text=True, env=env, timeout=300, cwd=REPO,
                       check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"{script}: error: --thread-time measures the calling thread only: use it with --threads 1"), r.stderr


def test_time_interleaved_takes_the_clock_it_is_given():
    """The benchmarks' ``--thread-time`` reaches ``harness.time_interleaved`` as its clock: a
    call that sleeps costs its sleep in wall time and next to nothing in thread CPU time."""
    import time

    from torch_bridge.app.bench.harness import time_interleaved

    fns = {"sleep": lambda: time.sleep(0.004)}
    cpu = torch.device("cpu")
    assert time_interleaved(fns, cpu, repeats=3, min_time=0.01)["sleep"] >= 4.0
    assert time_interleaved(fns, cpu, repeats=3, min_time=0.0, clock=time.thread_time)["sleep"] < 2.0


# ----------------------------------------------------------------------------------------------
# bench_tuned.py with a log for another CPU


def test_bench_tuned_without_a_log_for_this_cpu_says_what_to_do():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("DYNFILTER_TVM_TUNING_LOGS", None)
    # 3 cores: no shipped log is for that, whatever this CPU is (the shipped one is llvm-znver4-1c)
    r = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "bench_tuned.py"), "--threads", "3"],
                       capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("bench_tuned.py: error: ") and f"llvm-{host_cpu_name()}-3c" in r.stderr, r.stderr
    assert re.search(r"logs found: .*llvm-znver4-1c", r.stderr), r.stderr
    assert "dynfilter-tvm tune --op ddf" in r.stderr and "--target llvm --threads 3" in r.stderr, r.stderr


# ----------------------------------------------------------------------------------------------
# train: the model's input size, --help, NaN loss


def test_lenet_takes_its_input_size_by_default(capsys, tmp_path):
    data = _tiny_imagefolder(str(tmp_path / "tree"))
    out = tmp_path / "run"
    code, err = _run(["train", "--model", "lenet", "--data", data, "--epochs", "1", *TRAIN_FAST, "--out", str(out)],
                     capsys)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["data"]["image_size"] == 32
    code, err = _run(["train", "--model", "lenet", "--data", data, "--epochs", "1", "--image-size", "64",
                      *TRAIN_FAST, "--out", str(tmp_path / "run64")], capsys)
    _one_line_error(code, err, "--image-size 64", "lenet takes 32x32 inputs only")


def test_train_help_explains_every_option_with_defaults(capsys):
    from torch_bridge.app import train_cli

    p = argparse.ArgumentParser()
    train_cli.add_train_arguments(p)
    train_cli.add_evaluate_arguments(q := argparse.ArgumentParser())
    for parser in (p, q):
        undocumented = [a.option_strings[0] for a in parser._actions if not a.help]
        assert not undocumented, undocumented
    with pytest.raises(SystemExit) as e:
        cli(["train", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # (wrapped lines joined)
    for option, default in [("--epochs EPOCHS", "100"), ("--momentum MOMENTUM", "0.9"),
                            ("--weight-decay WEIGHT_DECAY", "0.0001"), ("--label-smoothing LABEL_SMOOTHING", "0.0"),
                            ("--lr LR", "0.1"), ("--batch-size BATCH_SIZE", "128")]:
        entry = text[text.index(option + " "):]
        entry = entry[:entry.index(" --", len(option))]  # up to the next option
        assert f"(default: {default})" in entry, entry
    assert "--allow-nan" in text


def test_nan_loss_stops_training_naming_the_step(capsys, tmp_path):
    data = _tiny_cifar(tmp_path / "c")
    argv = ["train", "--model", "lenet", "--data", data, "--epochs", "2", "--lr", "1e30", *TRAIN_FAST]
    code, err = _run([*argv, "--out", str(tmp_path / "a")], capsys)
    line = _one_line_error(code, err, "--allow-nan")
    assert re.search(r"loss is (nan|inf|-inf) at step \d+ \(epoch 1\)", line), line
    events = [json.loads(s) for s in open(tmp_path / "a" / "log.jsonl")]
    assert events[-1]["type"] == "non_finite_loss"
    code, err = _run([*argv, "--out", str(tmp_path / "b"), "--allow-nan"], capsys)
    assert code == 0, err
    assert (tmp_path / "b" / "last.pt").exists()


# ----------------------------------------------------------------------------------------------
# checkpoints that are not ours


def test_foreign_checkpoints_are_named_as_such(capsys, tmp_path):
    files = {"garbage.pt": os.urandom(2000), "text.pt": b"hello world\n", "empty.pt": b""}
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw)
    torch.save({"weight": torch.zeros(2)}, tmp_path / "state_dict.pt")  # torch reads it; not a run's
    torch.save([1, 2], tmp_path / "list.pt")
    for name in [*files, "state_dict.pt", "list.pt"]:
        code, err = _run(["evaluate", "--checkpoint", str(tmp_path / name), "--workers", "0"], capsys)
        line = _one_line_error(code, err, name, "not a checkpoint of dynfilter-tvm train")
        assert "weights_only" not in line, line
        assert not line.rstrip().endswith(":"), line  # a reason follows
    with pytest.raises(ValueError, match=r"is empty \(0 bytes\)"):
        ckpt.load(str(tmp_path / "empty.pt"))
    with pytest.raises(ValueError, match="not a file written by torch.save"):
        ckpt.load(str(tmp_path / "text.pt"))
    # resuming from one is refused the same way
    code, err = _run(["train", "--model", "lenet", "--data", _tiny_cifar(tmp_path / "c"), *TRAIN_FAST,
                      "--resume", str(tmp_path / "garbage.pt"), "--out", str(tmp_path / "r")], capsys)
    _one_line_error(code, err, "not a checkpoint of dynfilter-tvm train")
