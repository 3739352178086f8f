"""Parameters and FLOPs of a convolution and of an ACDA layer, against Table 6 of the ACDA paper.

Wang et al., ICCV 2021, §4.4 / Table 6: one layer with 256 input and output channels on a
100x100 feature map, kernel sizes 3, 5 and 7, in millions. Everything here is analytic, from
the layer configuration (``tests/test_costs.py`` checks the parameter counts against the real
``nn.Conv2d`` / ``ACDAConv2d`` modules and the FLOPs against PyTorch's FLOP counter).

FLOP convention -- worked out from the table: **one multiply-add counts as one FLOP, plus one
addition per output element for the bias**. The Conv row is then exact:
256*256*9*100*100 + 256*100*100 = 5,900.8M (5x5: 16,386.6M, 7x7: 32,115.2M), and so is
ACDA (conv only) = atom convolution C_in*M*k^2*HW + coefficient 1x1 convolution
C_in*M*C_out*HW + bias C_out*HW = 4,073.0M / 4,318.7M / 4,687.4M with M = 6 atoms. (The
formula in §4.4's text, with factors (1 + l^2), gives other numbers -- 6,553.6M for the 3x3
Conv -- the table does not use it.) BatchNorm and tanh are not counted (BN folds into the
preceding convolution at inference).

ACDA layer, as in the official ``Conv_DCFD`` and ``torch_bridge.nn.ACDAConv2d``:

* atom generation: 3x3 conv C_in -> inter (stride s) + BN + tanh, then 3x3 conv
  inter -> M*T + BN + tanh, inter = max(64, M*T // 2), T = (k // 2) * M bases; then the atoms
  D = alpha . bases, M*T*k^2 multiply-adds per pixel ("reconstruction");
* atom convolution: every input channel with each of the pixel's M atoms, C_in*M*k^2 per pixel;
* coefficient convolution: 1x1, C_in*M -> C_out, with bias.

Where our numbers differ from the paper's, and why:

* Conv params for 7x7: the table prints 3.12M; 256*256*49 + 256 = 3,211,520 is 3.21M
  (the digits look transposed; 3x3 and 5x5 match).
* ACDA (+ atom generation): the paper adds a constant ~238.3M FLOPs for every k, and
  ~0.02M parameters per scale (0.41 / 0.43 / 0.45M in all). The official generator costs
  far more: its first 3x3 convolution from 256 channels alone is 147,520 parameters and
  1,475.2M FLOPs, and its second grows with k (M*T = 36 / 72 / 108 outputs). §4.4 says the
  table uses d = 64 and a 1x1 first convolution (l_a = 1), which we also compute (``first=1``
  rows: 0.43 / 0.45 / 0.47M, 4,448 / 4,917 / 5,528M FLOPs), but no single generator gives
  the paper's numbers: its parameter increments per scale (~0.02M) match the second
  convolution (64*9*36 = 20,736 per scale) and leave almost nothing (< ~0.01M) for any first
  convolution from 256 channels, while its FLOP overhead does not grow with k at all.
* The bases are fixed in the paper and the official code; ``ACDAConv2d(bases_grad=True)``
  (the default there) learns them: + T*k^2 parameters (54 / 300 / 882), no FLOPs.

Run ``python -m dynfilter_tvm costs``.
"""
from __future__ import annotations

import argparse
import math
from typing import Dict, Iterable, List, Optional

__all__ = ["conv_costs", "acda_costs", "table6", "format_table6", "PAPER_TABLE6", "add_arguments", "run_cli"]

#: Table 6 of the paper, in millions: {k: {row: (FLOPs, params)}}
PAPER_TABLE6 = {
    3: {"conv": (5900.8, 0.59), "acda_conv": (4073.0, 0.39), "acda_total": (4311.2, 0.41)},
    5: {"conv": (16386.6, 1.64), "acda_conv": (4318.7, 0.39), "acda_total": (4557.0, 0.43)},
    7: {"conv": (32115.2, 3.12), "acda_conv": (4687.4, 0.39), "acda_total": (4925.7, 0.45)},
}


def _out_hw(h: int, w: int, stride: int) -> int:
    return math.ceil(h / stride) * math.ceil(w / stride)


def conv_costs(c_in: int, c_out: int, k: int, h: int, w: int, stride: int = 1, bias: bool = True) -> Dict[str, int]:
    """A k x k ``nn.Conv2d`` ('same' padding) on an h x w input: params and FLOPs
    (multiply-adds + bias additions)."""
    hw = _out_hw(h, w, stride)
    return {"params": c_in * c_out * k * k + (c_out if bias else 0),
            "flops": c_in * c_out * k * k * hw + (c_out * hw if bias else 0)}


def acda_costs(c_in: int, c_out: int, k: int, h: int, w: int, stride: int = 1, num_bases: int = 6,
               bias: bool = True, bases_grad: bool = False, first: int = 3) -> Dict[str, Dict[str, int]]:
    """An ``ACDAConv2d`` on an h x w input, part by part: ``{part: {"params", "flops"}}`` with
    parts ``atom_conv``, ``coefficient``, ``gen_conv1``, ``gen_bn1``, ``gen_conv2``,
    ``gen_bn2``, ``reconstruction``, ``bases`` and the sums ``conv_only`` (the two-stage
    convolution) and ``total``. ``first`` is the generator's first kernel size (3 in the
    official code; 1 is the paper's §4.4 l_a = 1)."""
    M = num_bases
    T = (k // 2) * M
    MT = M * T
    inter = max(64, MT // 2)
    hw = _out_hw(h, w, stride)
    parts = {
        "atom_conv": {"params": 0, "flops": c_in * M * k * k * hw},
        "coefficient": {"params": c_in * M * c_out + (c_out if bias else 0),
                        "flops": c_in * M * c_out * hw + (c_out * hw if bias else 0)},
        "gen_conv1": {"params": c_in * inter * first * first + inter,
                      "flops": c_in * inter * first * first * hw + inter * hw},
        "gen_bn1": {"params": 2 * inter, "flops": 0},
        "gen_conv2": {"params": inter * MT * 9 + MT, "flops": inter * MT * 9 * hw + MT * hw},
        "gen_bn2": {"params": 2 * MT, "flops": 0},
        "reconstruction": {"params": 0, "flops": MT * k * k * hw},
        "bases": {"params": T * k * k if bases_grad else 0, "flops": 0},
    }
    total = lambda names: {q: sum(parts[n][q] for n in names) for q in ("params", "flops")}  # noqa: E731
    parts["conv_only"] = total(["atom_conv", "coefficient"])
    parts["total"] = total([n for n in parts if n != "conv_only"])
    return parts


def table6(channels: int = 256, size: int = 100, kernels: Iterable[int] = (3, 5, 7),
           num_bases: int = 6) -> List[dict]:
    """Rows of our Table 6 (raw counts) with the paper's numbers (millions) where it has them."""
    rows = []
    for k in kernels:
        conv = conv_costs(channels, channels, k, size, size)
        acda = acda_costs(channels, channels, k, size, size, num_bases=num_bases)
        acda1 = acda_costs(channels, channels, k, size, size, num_bases=num_bases, first=1)
        paper = PAPER_TABLE6.get(k) if (channels, size, num_bases) == (256, 100, 6) else None
        rows.append({"k": k, "conv": conv, "acda_conv": acda["conv_only"], "acda_total": acda["total"],
                     "acda_total_first1": acda1["total"], "acda_parts": acda, "paper": paper})
    return rows


_LABELS = [
    ("conv", "Conv"),
    ("acda_conv", "ACDA (conv only)"),
    ("acda_total", "ACDA (+ atom generation)"),
    ("acda_total_first1", "  same, 1x1 first gen. conv"),
]


def format_table6(rows: List[dict]) -> str:
    """Side-by-side text table: ours | paper, FLOPs and params in millions."""
    ks = [r["k"] for r in rows]
    head = f"{'':<30}" + "".join(f"{f'{k}x{k}: ours':>14}{'paper':>10}" for k in ks)
    lines = []
    for q, qname, fmt in (("flops", "FLOPs (M)", "{:,.1f}"), ("params", "Params (M)", "{:.2f}")):
        lines.append(qname)
        for key, label in _LABELS:
            cells = ""
            for r in rows:
                ours = fmt.format(r[key][q] / 1e6)
                paper = r["paper"].get(key) if r["paper"] else None
                p = "" if paper is None else fmt.format(paper[0 if q == "flops" else 1])
                cells += f"{ours:>14}{p:>10}"
            lines.append(f"  {label:<28}" + cells)
    parts = []
    for r in rows:
        a = r["acda_parts"]
        f = {n: f"{a[n]['flops'] / 1e6:,.1f}" for n in a}
        q = {n: f"{a[n]['params']:,}" for n in a}
        parts.append(f"  {r['k']}x{r['k']}: FLOPs (M) atom conv {f['atom_conv']}, coefficient {f['coefficient']}, "
                     f"gen conv1 {f['gen_conv1']}, gen conv2 {f['gen_conv2']}, "
                     f"reconstruction {f['reconstruction']}")
        parts.append(f"       params coefficient {q['coefficient']}, gen conv1 {q['gen_conv1']} "
                     f"(+{q['gen_bn1']} BN), gen conv2 {q['gen_conv2']} (+{q['gen_bn2']} BN)")
    title = "ACDA parts (official generator: 3x3 C_in->64 + BN, 3x3 64->M*T + BN):"
    return "\n".join([head, *lines, title, *parts])


_NOTES = """\
FLOPs = multiply-adds (one multiply-add = one FLOP) + one addition per output for the bias:
the convention that reproduces the paper's Conv and ACDA (conv only) rows exactly.
Differences from the paper:
- Conv 7x7 params: 256*256*49 + 256 = 3,211,520 = 3.21M; the paper prints 3.12M (transposed digits).
- ACDA (+ atom generation): the paper's overhead is ~238M FLOPs for every k and ~0.02M
  params per scale. The official generator (3x3 convs, 256 -> 64 -> M*T) costs 1,475M FLOPs and
  0.15M params in its first conv alone, and its second conv grows with k. A 1x1 first conv
  (d = 64, l_a = 1, as in the paper's section 4.4) is closer but not equal: no single generator
  gives both the paper's FLOPs (constant in k) and params (growing with k)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command line options (shared with ``python -m dynfilter_tvm costs``)."""
    p.add_argument("--channels", type=int, default=256, help="input = output channels (paper: 256)")
    p.add_argument("--size", type=int, default=100, help="feature map side (paper: 100)")
    p.add_argument("--kernels", type=int, nargs="+", default=[3, 5, 7], help="kernel sizes (paper: 3 5 7)")
    p.add_argument("--num-bases", type=int, default=6, help="atoms M and bases per scale (paper: 6)")


def run_cli(args: argparse.Namespace, parser: Optional[argparse.ArgumentParser] = None) -> int:
    """Print the table for parsed ``args`` (see ``add_arguments``)."""
    for k in args.kernels:
        if k < 3 or k % 2 == 0:
            msg = f"kernel sizes must be odd and >= 3, got {k}"
            if parser is not None:
                parser.error(msg)
            raise ValueError(msg)
    print(f"One layer, {args.channels} -> {args.channels} channels, {args.size}x{args.size}, "
          f"M = {args.num_bases} (paper's Table 6: 256, 100x100, M = 6)")
    print(format_table6(table6(args.channels, args.size, args.kernels, args.num_bases)))
    print(_NOTES)
    return 0
