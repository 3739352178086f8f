"""ACDA benchmark: the whole ``ACDAConv2d`` (atom generator + fused TVM atom convolution + 1x1
coefficient convolution) against the same layer with the official unfold + einsum atom
convolution (eager and ``torch.compile``) and against ``conv2d`` of the same kernel size
and channels; forward (eval mode) and forward+backward (training mode)."""
from __future__ import annotations

import json
from typing import Dict, List, Optional

import torch
import torch.nn as nn

from .benchmark import machine_description, peak_memory_mib, print_table, time_interleaved
from .nn import ACDAConv2d
from .reference import acda_atom_conv2d_reference

FLOOR = "conv2d"


def bench_shape(N, C, H, W, k, device, dtype=torch.float32, compile_ref=True, repeats=7,
                num_bases=6) -> List[Dict]:
    """Rows of {shape, pass, variant, ms, peak_mib} for C -> C channels, stride 1."""
    layer = ACDAConv2d(C, C, k, padding=k // 2, num_bases=num_bases).to(device, dtype)
    conv = nn.Conv2d(C, C, k, padding=k // 2).to(device, dtype)
    x = torch.randn(N, C, H, W, device=device, dtype=dtype)
    variants = {
        "dynfilter_tvm": layer,
        "unfold eager": lambda t: layer.forward_with(acda_atom_conv2d_reference, t),
    }
    if compile_ref:
        variants["unfold torch.compile"] = torch.compile(
            lambda t: layer.forward_with(acda_atom_conv2d_reference, t))
    variants[FLOOR] = conv

    def fwd(fn):
        def run():
            with torch.no_grad():
                return fn(x)
        return run

    leaf = x.detach().requires_grad_()

    def fwd_bwd(fn):
        def run():
            leaf.grad = None
            for m in (layer, conv):
                m.zero_grad(set_to_none=True)
            out = fn(leaf)
            out.sum().backward()
            return out
        return run

    rows, shape = [], f"{N}x{C}x{H}x{W} k{k}"
    for label, mode, wrap in (("forward", False, fwd), ("forward+backward", True, fwd_bwd)):
        layer.train(mode)
        conv.train(mode)
        fns = {n: wrap(f) for n, f in variants.items()}
        times = time_interleaved(fns, device, repeats=repeats)
        for name, fn in fns.items():
            rows.append({"shape": shape, "pass": label, "variant": name, "ms": times[name],
                         "peak_mib": peak_memory_mib(fn, device)})
    return rows


def run(device: torch.device, shapes, compile_ref: bool, json_path: Optional[str] = None, repeats: int = 7):
    print(f"machine: {machine_description(device)}")
    rows = []
    for i, (N, C, H, W, k) in enumerate(shapes, 1):
        print(f"[{i}/{len(shapes)}] timing ACDAConv2d N={N} C={C}->{C} {H}x{W} k={k} ...", flush=True)
        rows += bench_shape(N, C, H, W, k, device, compile_ref=compile_ref, repeats=repeats)
    print_table(rows, FLOOR)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"machine": machine_description(device), "rows": rows}, f, indent=1)
    return rows
