"""Training and evaluation (torch_bridge.train, ``dynfilter-tvm train`` / ``evaluate``) on CPU.

Data readers and their errors, loss going down on real data (scikit-learn's bundled 8x8 digits,
upscaled to 32x32 RGB, as an ImageFolder tree and in the CIFAR binary format), gradient
accumulation = a bigger batch, resuming after a kill = an uninterrupted run (bit for bit), DDP in
two processes with gloo = one process, the evaluate command, joint upsampling with
``pac_joint_upsample_lite``. Small models and data: the whole file takes well under a minute.
"""
from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from dynfilter_tvm.__main__ import main as cli
from torch_bridge.train import checkpoint as ckpt
from torch_bridge.train.data import CIFARBinary, DataSpec, ImageFolder, UpsampleArrays, build_dataset
from torch_bridge.train.loop import TrainConfig, cosine_lambda, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (conftest)


# ----------------------------------------------------------------------------------------------
# data helpers


def _digits(n: int, start: int = 0):
    """n of scikit-learn's bundled digits (no download) as uint8 (n, 3, 32, 32) and labels."""
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    img = d.images[start:start + n] * (255 / 16)
    img = np.kron(img, np.ones((1, 4, 4))).round().astype(np.uint8)  # 8x8 -> 32x32
    return np.repeat(img[:, None], 3, axis=1), d.target[start:start + n].astype(np.uint8)


def _write_imagefolder(root, images, labels, ext=".png"):
    from PIL import Image

    for i, (im, y) in enumerate(zip(images, labels)):
        d = os.path.join(root, str(int(y)))
        os.makedirs(d, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(im.transpose(1, 2, 0))).save(os.path.join(d, f"{i}{ext}"))


def _write_cifar(path, images, labels, fine=None):
    """CIFAR-10 records (label + 3072 bytes), or CIFAR-100 ones (coarse, fine + 3072) with ``fine``."""
    rows = [np.asarray(labels, np.uint8)[:, None]]
    if fine is not None:
        rows.append(np.asarray(fine, np.uint8)[:, None])
    rows.append(np.asarray(images, np.uint8).reshape(len(labels), -1))
    np.concatenate(rows, 1).tofile(path)


@pytest.fixture(scope="module")
def digits_cifar(tmp_path_factory):
    """A CIFAR-10 binary directory of 48 training and 16 test digits."""
    root = tmp_path_factory.mktemp("digits_cifar")
    x, y = _digits(64)
    _write_cifar(root / "data_batch_1.bin", x[:24], y[:24])
    _write_cifar(root / "data_batch_2.bin", x[24:48], y[24:48])
    _write_cifar(root / "test_batch.bin", x[48:], y[48:])
    return str(root)


def _cfg(data, out, **kw):
    base = dict(model="lenet", data=data, out=str(out), epochs=1, batch_size=8, lr=0.05, weight_decay=5e-4,
                workers=0, progress=False, log_every=1)
    base.update(kw)
    return TrainConfig(**base)


def _same_weights(a, b, exact=True, rtol=1e-10, atol=1e-12):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if exact:
            assert torch.equal(sa[k], sb[k]), k
        else:
            torch.testing.assert_close(sa[k], sb[k], rtol=rtol, atol=atol, msg=k)


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------------------------
# readers and errors


def test_imagefolder_reader(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, ext, size in (("cat", ".png", (40, 30)), ("dog", ".jpg", (20, 50))):
        os.makedirs(tmp_path / cls)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}{ext}")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    ds = ImageFolder(str(tmp_path))
    assert ds.classes == ["cat", "dog"] and len(ds) == 4
    img, label = ds[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 30, 40) and label == 0
    assert ds[3][0].shape == (3, 50, 20) and ds[3][1] == 1
    exact = np.asarray(Image.open(tmp_path / "cat" / "0.png"))
    assert torch.equal(img, torch.from_numpy(exact.copy()).permute(2, 0, 1))

    spec = DataSpec(str(tmp_path), image_size=16, aug="resized_crop")
    tr, ev = build_dataset(spec, "train", train=True), build_dataset(spec, "train", train=False)
    assert build_dataset(spec, "val", train=False) is None  # a flat tree has no validation split
    x, y = tr[3]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 1
    assert torch.equal(tr[3][0], x)  # the augmentation is a function of (seed, epoch, index)
    tr.set_epoch(1)
    assert not torch.equal(tr[3][0], x)
    assert torch.equal(ev[3][0], ev[3][0]) and ev[3][0].shape == (3, 16, 16)


def test_cifar_binary_reader(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (7, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, 7)
    _write_cifar(tmp_path / "data_batch_1.bin", x[:4], y[:4])
    _write_cifar(tmp_path / "data_batch_2.bin", x[4:], y[4:])
    _write_cifar(tmp_path / "test_batch.bin", x[:2], y[:2])
    ds = CIFARBinary(str(tmp_path))
    assert len(ds) == 7 and ds.num_classes == 10
    for i in range(7):
        assert torch.equal(ds[i][0], torch.from_numpy(x[i])) and ds[i][1] == y[i]
    assert len(CIFARBinary(str(tmp_path), train=False)) == 2
    spec = DataSpec(str(tmp_path))
    val = build_dataset(spec, "val", train=False)
    assert len(val) == 2 and val[0][0].shape == (3, 32, 32)  # CIFAR: no resize, normalized

    c100 = tmp_path / "c100"
    c100.mkdir()
    _write_cifar(c100 / "train.bin", x, y, fine=rng.integers(0, 100, 7))
    ds = CIFARBinary(str(c100))
    assert ds.num_classes == 100 and torch.equal(ds[6][0], torch.from_numpy(x[6]))


def test_bad_inputs(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(str(tmp_path / "missing"))
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        ImageFolder(str(tmp_path / "flat"))
    (tmp_path / "tree" / "a").mkdir(parents=True)
    (tmp_path / "tree" / "b").mkdir()
    _write_imagefolder(str(tmp_path / "tree"), np.zeros((1, 3, 8, 8), np.uint8), [0])
    os.rename(tmp_path / "tree" / "0", tmp_path / "tree" / "a" / "x")
    with pytest.raises(ValueError, match=r"class folder .*/b' holds no image"):
        ImageFolder(str(tmp_path / "tree"))

    (tmp_path / "c10").mkdir()
    _write_cifar(tmp_path / "c10" / "data_batch_1.bin", np.zeros((2, 3, 32, 32)), [1, 2])
    with open(tmp_path / "c10" / "data_batch_1.bin", "ab") as f:
        f.write(b"\0" * 100)  # a partial record
    with pytest.raises(ValueError, match="truncated"):
        CIFARBinary(str(tmp_path / "c10"))
    with pytest.raises(FileNotFoundError, match="test_batch.bin"):
        CIFARBinary(str(tmp_path / "c10"), train=False)
    _write_cifar(tmp_path / "c10" / "data_batch_1.bin", np.zeros((2, 3, 32, 32)), [1, 12])
    with pytest.raises(ValueError, match="label 12"):
        CIFARBinary(str(tmp_path / "c10"))

    np.savez(tmp_path / "pairs.npz", guidance=np.zeros((2, 16, 16, 3), np.uint8), target=np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="mismatched pair shapes"):
        UpsampleArrays(str(tmp_path / "pairs.npz"))
    np.savez(tmp_path / "count.npz", guidance=np.zeros((2, 3, 16, 16)), target=np.zeros((3, 16, 16)))
    with pytest.raises(ValueError, match="2 guidance images but 3 targets"):
        UpsampleArrays(str(tmp_path / "count.npz"))
    np.savez(tmp_path / "keys.npz", image=np.zeros((2, 3, 16, 16)), target=np.zeros((2, 16, 16)))
    with pytest.raises(ValueError, match="lacks array"):
        UpsampleArrays(str(tmp_path / "keys.npz"))
    np.save(tmp_path / "train_guidance.npy", np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(FileNotFoundError, match="train_target.npy"):
        UpsampleArrays((str(tmp_path / "train_guidance.npy"), str(tmp_path / "train_target.npy")))

    # the command line reports them (exit status 2), as it does a missing factor or an unknown model
    assert cli(["train", "--model", "lenet", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli(["train", "--model", "lenet", "--data", str(tmp_path / "c10"), "--out", str(tmp_path / "o")]) == 2
    assert "label 12" in capsys.readouterr().err
    np.savez(tmp_path / "ok.npz", guidance=np.zeros((2, 3, 16, 16)), target=np.zeros((2, 16, 16)))
    assert cli(["train", "--model", "pac_joint_upsample_lite", "--data", str(tmp_path / "ok.npz"),
                "--out", str(tmp_path / "o")]) == 2
    assert "--factor" in capsys.readouterr().err
    assert cli(["train", "--model", "no_such_model", "--data", str(tmp_path / "ok.npz"), "--factor", "4",
                "--out", str(tmp_path / "o")]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_atomic_checkpoint(tmp_path):
    path = str(tmp_path / "ck.pt")
    ckpt.save({"a": torch.arange(3), "rng": ckpt.rng_state()}, path)
    draws = torch.rand(4), np.random.rand(4)
    with pytest.raises(Exception):
        ckpt.save({"a": lambda: 0}, path)  # fails while writing: the old file stays, no temp file left
    state = ckpt.load(path)  # (weights_only)
    assert torch.equal(state["a"], torch.arange(3)) and os.listdir(tmp_path) == ["ck.pt"]
    ckpt.set_rng_state(state["rng"])
    assert torch.equal(torch.rand(4), draws[0]) and np.array_equal(np.random.rand(4), draws[1])
    f = cosine_lambda(10, warmup_steps=2)
    assert [round(f(s), 6) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]


# ----------------------------------------------------------------------------------------------
# training


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """lenet trained by the command line on 320 digits as an ImageFolder tree (validation: 160)."""
    root = tmp_path_factory.mktemp("digits")
    x, y = _digits(480)
    _write_imagefolder(str(root / "train"), x[:320], y[:320])
    _write_imagefolder(str(root / "val"), x[320:], y[320:], ext=".jpg")
    out = root / "run"
    rc = cli(["train", "--model", "lenet", "--data", str(root), "--image-size", "32", "--train-aug", "crop",
              "--padding", "2", "--no-flip", "--mean", "0.5", "0.5", "0.5", "--std", "0.5", "0.5", "0.5",
              "--epochs", "8", "--batch-size", "32", "--lr", "0.1", "--weight-decay", "5e-4", "--workers", "0",
              "--log-every", "1", "--no-progress", "--out", str(out)])
    assert rc == 0
    return root, out


def test_loss_goes_down_on_digits(digits_run):
    _, out = digits_run
    rows = _csv(out / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < 0.3 * losses[0], losses
    assert float(rows[-1]["val_top1"]) > 50, rows[-1]  # 10 classes: chance is 10% (seeds 0-2: 73-78%)
    assert float(rows[-1]["val_top5"]) >= float(rows[-1]["val_top1"])
    assert float(rows[-1]["lr"]) == 0  # the cosine ends at --min-lr 0
    steps = [json.loads(l) for l in open(out / "log.jsonl")]
    assert steps[0]["type"] == "start" and sum(s["type"] == "step" for s in steps) == 80
    assert {"last.pt", "best.pt", "config.json"} <= set(os.listdir(out))


def test_evaluate_command(digits_run, capsys, tmp_path):
    root, out = digits_run
    capsys.readouterr()
    js = tmp_path / "m.json"
    assert cli(["evaluate", "--checkpoint", str(out / "last.pt"), "--workers", "0", "--no-progress",
                "--batch-size", "64", "--json", str(js)]) == 0
    printed = capsys.readouterr().out
    assert "lenet (epoch 8, step 80) on 160 val samples: top1" in printed and "top5" in printed
    m = json.loads(js.read_text())
    last = _csv(out / "metrics.csv")[-1]
    assert m["n"] == 160 and abs(m["top1"] - float(last["val_top1"])) < 1e-6
    assert abs(m["loss"] - float(last["val_loss"])) < 1e-4
    assert cli(["evaluate", "--checkpoint", str(out / "last.pt"), "--split", "train", "--workers", "0",
                "--no-progress"]) == 0
    assert "on 320 train samples" in capsys.readouterr().out
    assert cli(["evaluate", "--checkpoint", str(tmp_path / "none.pt")]) == 2


def test_gradient_accumulation_equals_bigger_batch(digits_cifar, tmp_path):
    common = dict(dtype="float64", epochs=2, batch_size=16, lr=0.1, warmup_epochs=0.5)  # 3 steps an epoch
    big = train(_cfg(digits_cifar, tmp_path / "big", **common))
    acc = train(_cfg(digits_cifar, tmp_path / "acc", accum_steps=4, **common))  # micro-batches of 4
    assert big["step"] == acc["step"] == 6
    _same_weights(big["model"], acc["model"], exact=False)
    small = train(_cfg(digits_cifar, tmp_path / "small", **dict(common, batch_size=4, epochs=1)))
    assert small["step"] == 12  # (and a different batch does give other weights)
    assert not torch.allclose(small["model"].conv1.weight, big["model"].conv1.weight)


def test_resume_after_kill_is_exact(digits_cifar, tmp_path):
    common = dict(epochs=2, batch_size=8, momentum=0.9, warmup_epochs=1, aug="crop")  # 6 steps an epoch
    ref = train(_cfg(digits_cifar, tmp_path / "ref", **common))

    def kill_at_9(step):
        if step == 9:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):  # checkpoints at steps 4, 6 (epoch end) and 8, killed at 9
        train(_cfg(digits_cifar, tmp_path / "run", save_every=4, **common), on_step=kill_at_9)
    state = ckpt.load(str(tmp_path / "run" / "last.pt"))
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 8)
    with pytest.raises(FileExistsError, match="--resume"):
        train(_cfg(digits_cifar, tmp_path / "run", **common))
    res = train(_cfg(digits_cifar, tmp_path / "run", resume="auto", **common))
    assert res["step"] == 12
    _same_weights(ref["model"], res["model"])
    # the epoch metrics were carried over the interruption too
    assert [r["train_loss"] for r in _csv(tmp_path / "run" / "metrics.csv")] == \
        [r["train_loss"] for r in _csv(tmp_path / "ref" / "metrics.csv")]

    # the command line: --max-steps stops with a checkpoint, --resume goes on
    args = ["train", "--model", "lenet", "--data", digits_cifar, "--epochs", "2", "--batch-size", "8", "--lr", "0.05",
            "--weight-decay", "5e-4", "--warmup-epochs", "1", "--workers", "0", "--no-progress", "--out",
            str(tmp_path / "cli")]
    assert cli(args + ["--max-steps", "3"]) == 0
    assert ckpt.load(str(tmp_path / "cli" / "last.pt"))["global_step"] == 3
    assert cli(args + ["--resume", "--max-steps", "6"]) == 0  # stops on the epoch's last step
    assert ckpt.load(str(tmp_path / "cli" / "last.pt"))["global_step"] == 6
    assert cli(args + ["--resume", "--max-steps", "6"]) == 0  # nothing left to do
    assert cli(args + ["--resume"]) == 0
    final = ckpt.load(str(tmp_path / "cli" / "last.pt"))
    assert final["global_step"] == 12
    assert [r["epoch"] for r in _csv(tmp_path / "cli" / "metrics.csv")] == ["1", "2"]
    assert [r["train_loss"] for r in _csv(tmp_path / "cli" / "metrics.csv")] == \
        [r["train_loss"] for r in _csv(tmp_path / "ref" / "metrics.csv")]
    for k, v in ref["model"].state_dict().items():
        assert torch.equal(final["model"][k], v), k


def test_amp_bf16_on_cpu(digits_cifar, tmp_path):
    res = train(_cfg(digits_cifar, tmp_path / "amp", amp=True))
    assert res["step"] == 6 and np.isfinite(res["train"]["loss"]) and np.isfinite(res["val"]["loss"])
    with pytest.raises(ValueError, match="--dtype float32"):
        train(_cfg(digits_cifar, tmp_path / "amp64", amp=True, dtype="float64"))


_DDP_SCRIPT = """
import os, sys, torch
torch.set_num_threads(1)
from torch_bridge.train.loop import TrainConfig, train
data, out = sys.argv[1:3]
res = train(TrainConfig(model="lenet", data=data, out=out, dtype="float64", epochs=1, batch_size=16,
                        accum_steps=2, lr=0.1, weight_decay=5e-4, workers=0, progress=False, save_every=2))
torch.save(res["model"].state_dict(), os.path.join(out, f"rank{os.environ['RANK']}.pt"))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_one(digits_cifar, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT)
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(script), digits_cifar,
                        str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k  # DDP keeps the replicas identical
    state = ckpt.load(str(out / "last.pt"))  # written by rank 0 only
    assert state["world_size"] == 2 and state["micro_batch"] == 4 and len(state["rng"]) == 2
    assert "training lenet" in p.stdout and p.stdout.count("epoch 1/1") == 1  # printed once

    # one process with the same global batch (16) sees the same samples per step: same weights
    single = train(_cfg(digits_cifar, tmp_path / "single", dtype="float64", batch_size=16, lr=0.1))
    for k, v in single["model"].state_dict().items():
        torch.testing.assert_close(r0[k], v, rtol=1e-10, atol=1e-12, msg=k)


def test_joint_upsampling_loss_goes_down(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n, h = 24, 32
    yy, xx = np.mgrid[0:h, 0:h] / h
    guide = np.zeros((n, h, h, 3), np.uint8)
    target = np.zeros((n, h, h), np.float32)
    for i in range(n):  # a piecewise-smooth target whose edges the guidance shows
        a, b, c = rng.uniform(0.2, 0.8, 3)
        mask = (xx * np.cos(6 * c) + yy * np.sin(6 * c)) > a
        target[i] = mask * b + 0.3 * np.sin(6 * xx + c)
        guide[i] = np.stack([mask, 1 - mask, 0.5 * mask], -1) * 200 + rng.integers(0, 30, (h, h, 3))
    np.savez(tmp_path / "train.npz", guidance=guide[:16], target=target[:16])
    np.save(tmp_path / "val_guidance.npy", guide[16:].transpose(0, 3, 1, 2))  # (N, C, H, W) works too
    np.save(tmp_path / "val_target.npy", target[16:, None])
    spec = DataSpec(str(tmp_path), factor=4, crop=16)
    low, g, t = build_dataset(spec, "train", train=True)[0]  # a random 16x16 window, target downsampled x4
    assert low.shape == (1, 4, 4) and g.shape == (3, 16, 16) and t.shape == (1, 16, 16)
    torch.testing.assert_close(low, torch.nn.functional.avg_pool2d(t, 4))
    assert float(g.max()) <= 1 and len(build_dataset(spec, "val", train=False)) == 8

    out = tmp_path / "run"
    rc = cli(["train", "--model", "pac_joint_upsample_lite", "--factor", "4", "--data", str(tmp_path),
              "--optimizer", "adam", "--lr", "5e-3", "--weight-decay", "0", "--epochs", "8", "--batch-size", "4",
              "--workers", "0", "--no-progress", "--out", str(out)])
    assert rc == 0
    rows = _csv(out / "metrics.csv")
    first, last = float(rows[0]["train_loss"]), float(rows[-1]["train_loss"])
    assert last < 0.5 * first, (first, last)
    assert float(rows[-1]["val_rmse"]) < float(rows[0]["val_rmse"])
    capsys.readouterr()
    assert cli(["evaluate", "--checkpoint", str(out / "best.pt"), "--workers", "0", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "pac_joint_upsample_lite" in printed and "on 8 val samples: rmse" in printed
