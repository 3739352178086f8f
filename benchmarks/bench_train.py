"""Training-step benchmark: whole networks with the compiled dynamic layers vs the same networks on
the plain-PyTorch reference ops vs a standard ResNet-50.

    python benchmarks/bench_train.py [--device cpu|cuda|auto] [--batch B] [--size S] [--threads N]
                                     [--models ddf_resnet50,ad_resnet_s] [--no-amp] [--repeats R]
                                     [--json out.json]

One step = forward + cross-entropy loss + backward + SGD step (momentum 0.9, weight decay 1e-4,
learning rate 0 so that the weights, and the cost, stay the same), in training mode, for:

* ``ddf_resnet50`` (every bottleneck's 3x3 a DDFPack) on the TVM kernels, and ``reference``: the
  same network with every DDFPack on ``ddf_reference`` (unfold);
* ``ad_resnet_s`` (7x7 ACDA in stages 3-4) on the TVM kernels, and ``reference``: every
  ACDAConv2d on the official unfold + einsum atom convolution;
* ``resnet50``, the floor of the ratios.

(``torch_bridge.nn.use_reference_ops`` makes the reference twins.) Defaults: on GPU
batch 8 at 224x224 under AMP (float16 autocast with a gradient scaler); on CPU batch 2 at
112x112 in float32 (``--amp`` there is bfloat16 autocast). Prints median times and peak memory
(CUDA: the allocator's peak; CPU: peak resident memory, measured in a child process) with ratios
to resnet50, then each dynamic network against its reference twin. Results go to
benchmarks/RESULTS.md by hand, with command and machine.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

FLOOR = "resnet50"
MODELS = ("ddf_resnet50", "ad_resnet_s")


def train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, amp_dtype) -> Callable[[], torch.Tensor]:
    """A closure running one SGD training step of ``model`` on (x, y); returns the loss.

    The learning rate is 0: the step does all its work (momentum, weight decay, the update),
    but the weights stay put, so every repeat costs the same. With a real one the network soon
    fits the one fixed batch, its gradients shrink into denormal floats and CPU steps slow down
    tenfold."""
    device = x.device
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = F.cross_entropy(model(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss.detach()

    return step


def build_variants(names, device: torch.device, batch: int, size: int, amp_dtype) -> Dict[str, Callable]:
    from torch_bridge.models import get_model
    from torch_bridge.nn import use_reference_ops

    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    variants = {}
    for name in names:
        torch.manual_seed(0)
        model = get_model(name).to(device).train()
        twin = use_reference_ops(copy.deepcopy(model))
        variants[f"{name} dynfilter_tvm"] = train_step(model, x, y, amp_dtype)
        variants[f"{name} reference"] = train_step(twin, x, y, amp_dtype)
    torch.manual_seed(0)
    variants[FLOOR] = train_step(get_model(FLOOR).to(device).train(), x, y, amp_dtype)
    return variants


def print_pairs(rows: List[Dict], names) -> None:
    """Each dynamic network on the TVM kernels against its reference twin."""
    by = {r["variant"]: r for r in rows}
    for name in names:
        a, b = by.get(f"{name} dynfilter_tvm"), by.get(f"{name} reference")
        if not a or not b:
            continue
        mem = (f", peak memory x{a['peak_mib'] / b['peak_mib']:.2f}"
               if a["peak_mib"] is not None and b["peak_mib"] else "")
        print(f"{name}: dynfilter_tvm vs reference ops: time x{a['ms'] / b['ms']:.2f}{mem}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto")
    ap.add_argument("--batch", type=int, default=0, help="batch size (default: 8 on GPU, 2 on CPU)")
    ap.add_argument("--size", type=int, default=0, help="image size (default: 224 on GPU, 112 on CPU)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch and TVM (0: all cores)")
    ap.add_argument("--models", default=",".join(MODELS), help=f"dynamic networks (default {','.join(MODELS)})")
    amp = ap.add_mutually_exclusive_group()
    amp.add_argument("--amp", dest="amp", action="store_true", default=None,
                     help="autocast (float16 on GPU, bfloat16 on CPU); default on GPU only")
    amp.add_argument("--no-amp", dest="amp", action="store_false")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if a.threads:  # TVM reads it when its pool starts, at the first kernel call
        os.environ["TVM_NUM_THREADS"] = str(a.threads)
        torch.set_num_threads(a.threads)

    from torch_bridge.app.bench.harness import add_cpu_memory, machine_description, measure_pass, print_table

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    gpu = device.type == "cuda"
    batch, size = a.batch or (8 if gpu else 2), a.size or (224 if gpu else 112)
    use_amp = gpu if a.amp is None else a.amp
    amp_dtype = (torch.float16 if gpu else torch.bfloat16) if use_amp else None
    names = [n.strip() for n in a.models.split(",") if n.strip()]
    print(f"machine: {machine_description(device)}")
    print(f"one training step (forward, loss, backward, SGD) at {batch}x3x{size}x{size}, "
          f"{'AMP ' + str(amp_dtype).replace('torch.', '') if amp_dtype else 'float32'}", flush=True)
    shape = f"{batch}x3x{size}x{size}"
    rows = measure_pass("train step", shape, build_variants(names, device, batch, size, amp_dtype), device,
                        a.repeats)
    if not gpu:
        rows = add_cpu_memory(rows, sys.argv if argv is None else [sys.argv[0], *argv])
    print_table(rows, FLOOR)
    print_pairs(rows, names)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine_description(device), "batch": batch, "size": size,
                       "amp": str(amp_dtype), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
