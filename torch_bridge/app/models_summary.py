"""Parameters and FLOPs (multiply-adds) of the registered models: ``python -m dynfilter_tvm models``.

FLOPs are counted analytically, from the shapes seen by forward hooks during one forward (eval
mode, no gradient) with the compiled kernels skipped (``torch_bridge.app.workloads.recording``:
nothing compiles, the dynamic ops return zeros, every shape is as in a real run). **One
multiply-add counts as one FLOP** (the convention of the ~4.1 GFLOPs usually quoted for
ResNet-50 and of the DDF paper's Tables 4 and 5); biases, BatchNorm, activations, pooling,
FilterNorm and other element-wise work are not counted. Per layer, with N the batch and Ho x Wo
the output size:

* ``nn.Conv2d``: N*Cout*Ho*Wo * (Cin/groups)*kh*kw; ``nn.ConvTranspose2d``: N*Cin*H*W *
  (Cout/groups)*kh*kw (each input pixel times each tap); ``nn.Linear``: outputs * in_features;
* ``DDFPack``: its branches' convolutions (above) plus 2*N*C*k*k*Ho*Wo for the op, one
  multiply-add applying each filter tap and one operation combining the spatial and channel
  filters ('mul' or 'add') per tap -- the paper's §4.1 counts these as 3nck^2 FLOPs with a
  multiply-add as 2; ``DDFUpPack`` the same for each of its S*S filterings;
* ``ACDAConv2d``: its generator's convolutions plus the atoms' reconstruction N*M*T*k*k*Ho*Wo,
  the atom convolution N*C*M*k*k*Ho*Wo and the 1x1 coefficient convolution N*C*M*Cout*Ho*Wo
  (as ``torch_bridge.app.costs.acda_costs``, without its bias additions);
* PAC layers: the convolution (N*Cout*Cin*k*k*Ho*Wo; ``shared_filters``: N*C*k*k*Ho*Wo), the
  scaling of each input tap by the adapting kernel (N*Cin*k*k*Ho*Wo) and the kernel itself,
  one multiply-add per guidance channel and tap (N*Cg*k*k*Ho*Wo; nothing when a kernel is passed
  in); ``PacConvTranspose2d`` counts the convolution and scaling per input pixel (as
  ``nn.ConvTranspose2d``) and the kernel per output pixel; ``PacPool2d`` N*C*k*k*Ho*Wo plus the
  kernel.

What it gives at 1x3x224x224 against the DDF paper (Tables 4, 5 and 3(c)):

    model           parameters    FLOPs      paper
    resnet50        25,557,032    4.089 G    25.6M, 4.1B
    resnet101       44,549,160    7.801 G    44.5M, 7.8B
    ddf_resnet50    16,843,748    2.279 G    16.8M, 2.3B (Table 3(c): 2.298B)
    ddf_resnet101   28,146,912    4.051 G    28.1M, 4.1B
    ddf_resnet152   37,462,900    5.829 G    -

ResNet-50's 4,089,184,256 is the well-known 4.1 GFLOPs (torchvision's 4.09). DDF-ResNet-50
drops ResNet-50's sixteen 3x3 convolutions (1,849.7M) and keeps 2,239.5M; its DDF layers add
12.4M (spatial branches, nck^2 summed over the blocks), 2.5M (channel branches) and 24.8M (the
DDF ops, 2nck^2). The paper's 2.298B lies between our 2.279G and the 2.307G of counting the DDF
layers the way its §4.1 does (5nck^2 + 2 sigma c^2 (1 + k^2), a multiply-add as two FLOPs):
0.8 % above the one, 0.4 % below the other; its exact counter is not published. Tables 4 and 5
round to 2.3B and 4.1B, which both of ours match.
"""
from __future__ import annotations

import argparse
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ["count_flops", "model_inputs", "summarize", "PAPER", "add_arguments", "run_cli"]

#: the papers' numbers: {model: (parameters, FLOPs)} (DDF paper Tables 4/5, Ad-ResNet Table 2)
PAPER: Dict[str, Tuple[Optional[float], Optional[float]]] = {
    "resnet50": (25.6e6, 4.1e9),
    "resnet101": (44.5e6, 7.8e9),
    "ddf_resnet50": (16.8e6, 2.3e9),
    "ddf_resnet101": (28.1e6, 4.1e9),
    "ad_resnet_s": (3.85e6, None),
    "ad_resnet_m": (9.83e6, None),
    "ad_resnet_l": (18.19e6, None),
}

PAC_FACTORS = (4, 8, 16)


def _arg(args, kwargs, index: int, name: str):
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _first_tensor(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _pac_flops(m, args, kwargs, output) -> int:
    from torch_bridge.nn import PacConvTranspose2d, PacPool2d

    x = _arg(args, kwargs, 0, "input_2d")
    guide = _arg(args, kwargs, 1, "input_for_kernel")
    kernel = _arg(args, kwargs, 2, "kernel")
    out = _first_tensor(output)
    taps = math.prod(m.kernel_size)
    n, c_in = x.shape[:2]
    out_px = out.shape[-2] * out.shape[-1]
    # The kernel: one multiply-add per guidance channel and tap (the guidance defaults to the input).
    c_g = (guide if torch.is_tensor(guide) else x).shape[1]
    flops = 0 if kernel is not None else n * c_g * taps * out_px
    if isinstance(m, PacPool2d):
        return flops + n * c_in * taps * out_px
    c_out = out.shape[1]
    px = x.shape[-2] * x.shape[-1] if isinstance(m, PacConvTranspose2d) else out_px
    conv = n * c_in * taps * px * (1 if m.shared_filters else c_out)
    return flops + conv + n * c_in * taps * px


def _layer_flops(m: nn.Module, args, kwargs, output) -> Optional[Tuple[str, int]]:
    """(kind, FLOPs) of one call of a counted layer, None for the others."""
    from torch_bridge.nn import ACDAConv2d, DDFPack, DDFUpPack, PacConv2d, PacConvTranspose2d, PacPool2d

    if isinstance(m, nn.Conv2d):
        out = output
        return "conv", out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    if isinstance(m, nn.ConvTranspose2d):
        x = args[0]
        return "conv", x.numel() * (m.out_channels // m.groups) * math.prod(m.kernel_size)
    if isinstance(m, nn.Linear):
        return "linear", output.numel() * m.in_features
    if isinstance(m, (DDFPack, DDFUpPack)):
        return "ddf op", 2 * output.numel() * m.kernel_size ** 2
    if isinstance(m, ACDAConv2d):
        x = args[0] if args else kwargs["input"]
        n, c, _, _ = x.shape
        px = output.shape[-2] * output.shape[-1]
        taps, atoms, bases = m.kernel_size ** 2, m.num_bases, m.tem_size
        return "acda op", n * px * (atoms * bases * taps + c * atoms * taps + c * atoms * m.out_channels)
    if isinstance(m, (PacConv2d, PacConvTranspose2d, PacPool2d)):
        return "pac op", _pac_flops(m, args, kwargs, output)
    return None


def count_flops(model: nn.Module, *inputs: torch.Tensor, run_kernels: bool = False) -> Dict[str, int]:
    """FLOPs (multiply-adds) of one forward of ``model(*inputs)``, by kind: ``conv``,
    ``linear``, ``ddf op``, ``acda op``, ``pac op`` (the dynamic ops themselves; their branch
    and generator convolutions are under ``conv``) and ``total``. The model runs once in eval
    mode without gradients; the compiled kernels are skipped unless ``run_kernels``, which
    changes no count. See the module docstring for what is counted."""
    from torch_bridge.app.workloads import recording

    counts: Dict[str, int] = {}

    def hook(m, args, kwargs, output):
        found = _layer_flops(m, args, kwargs, output)
        if found is not None:
            counts[found[0]] = counts.get(found[0], 0) + found[1]

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in model.modules()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), recording(execute=run_kernels):
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    counts["total"] = sum(counts.values())
    return counts


def model_inputs(name: str, model: nn.Module, batch: int = 1, size: Optional[int] = None) -> List[torch.Tensor]:
    """Random inputs for the registered model ``name`` (its ``ModelSpec.example_inputs``)."""
    from ..models import model_spec

    return model_spec(name).example_inputs(model, batch, size)


def _variants(names: Sequence[str], factors: Sequence[int]) -> List[Tuple[str, str, dict]]:
    """(row label, model name, constructor kwargs): one row per registered variant; a guided
    model gets one row per upsampling factor in ``factors``."""
    from ..models import model_spec

    rows = []
    for name in names:
        spec = model_spec(name)
        variants = [{"factor": f} for f in factors] if spec.guided else spec.variants
        for kw in variants:
            label = " ".join([name] + [f"x{v}" if k == "factor" else f"{k}={v}" for k, v in kw.items()])
            rows.append((label, name, dict(kw)))
    return rows


def summarize(names: Optional[Sequence[str]] = None, batch: int = 1, size: Optional[int] = None,
              factors: Sequence[int] = PAC_FACTORS) -> List[dict]:
    """Rows {label, name, input, params, flops (by kind, with total)} for the registered models
    ``names`` (default all)."""
    from ..models import MODELS, count_parameters, get_model

    names = list(names) if names else list(MODELS)
    rows = []
    for label, name, kw in _variants(names, factors):
        torch.manual_seed(0)
        model = get_model(name, **kw)
        inputs = model_inputs(name, model, batch, size)
        rows.append({"label": label, "name": name, "input": " + ".join("x".join(map(str, t.shape)) for t in inputs),
                     "params": count_parameters(model), "flops": count_flops(model, *inputs)})
    return rows


def _fmt_flops(n: float) -> str:
    return f"{n / 1e9:.3f} G" if n >= 1e9 else f"{n / 1e6:.2f} M"


def _fmt_paper(name: str) -> str:
    params, flops = PAPER.get(name, (None, None))
    parts = [f"{params / 1e6:g}M" if params else "", f"{flops / 1e9:g}B" if flops else ""]
    return ", ".join(p for p in parts if p)


def format_rows(rows: List[dict]) -> str:
    lines = [f"{'model':<28} {'input':<24} {'parameters':>12} {'FLOPs':>10} {'dynamic ops':>12}   paper (at 224)",
             "-" * 100]
    for r in rows:
        fl = r["flops"]
        dyn = sum(v for k, v in fl.items() if k.endswith(" op"))
        dyn_s = _fmt_flops(dyn) if dyn else "-"
        lines.append(f"{r['label']:<28} {r['input']:<24} {r['params']:>12,} {_fmt_flops(fl['total']):>10} "
                     f"{dyn_s:>12}   {_fmt_paper(r['name'])}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="registered models (default: all)")
    p.add_argument("--batch", type=int, default=1, help="batch size (FLOPs scale with it)")
    p.add_argument("--size", type=int, default=None,
                   help="input size (default 224; the PAC upsamplers' guide 256; the LeNets always 32)")
    p.add_argument("--factors", type=int, nargs="+", default=list(PAC_FACTORS),
                   help="upsampling factors of the PAC upsamplers (default 4 8 16)")


def run_cli(args, parser: Optional[argparse.ArgumentParser] = None) -> int:
    from ..models import MODELS

    unknown = [n for n in args.names if n not in MODELS]
    if unknown:
        msg = f"unknown model(s) {', '.join(unknown)}; available: {', '.join(MODELS)}"
        if parser is not None:
            parser.error(msg)
        raise SystemExit(msg)
    if args.batch < 1 or (args.size is not None and args.size < 1):
        msg = "--batch and --size must be positive"
        if parser is not None:
            parser.error(msg)
        raise SystemExit(msg)
    rows = summarize(args.names, args.batch, args.size, args.factors)
    print("FLOPs: multiply-adds of convolutions, linear layers and the dynamic ops (DDF, ACDA, PAC),\n"
          "biases and element-wise work not counted; 'dynamic ops' is the share of the ops themselves\n"
          "(their filter-generating convolutions are in the total)\n")
    print(format_rows(rows))
    return 0
