"""Static GPU report: what each CUDA kernel should cost, from its code and its shapes (no GPU).

Per kernel (forward and every gradient) at the benchmark shapes, for sm_90 and sm_80:

* registers per thread, spill bytes (stores + loads), static shared memory per block: from
  ``nvcc -cubin -Xptxas -v`` on the CUDA source TVM generates for the default schedule, plus
  the launch's dynamic shared memory (TVM's launch parameter; ptxas counts static only): the
  smem column is their sum, marked "dyn" where a dynamic part is in it;
* threads per block and blocks (the launch of TVM's host code; several launches per
  workload are listed one per line);
* theoretical occupancy: resident warps per SM / 64, limited by 32 blocks and 2048 threads
  per SM, 65536 registers per SM (allocated per warp in units of 256), shared memory (228 KB per
  SM on sm_90, 164 KB on sm_80; 1 KB reserved per block);
* minimum DRAM bytes: every input read once and the output written once (:func:`min_bytes`);
* FLOPs: 2 per multiply-add, 1 per other multiply or add, of the useful work (:func:`flops`);
* roofline time max(bytes / bandwidth, FLOPs / peak) on an H100 SXM (3.35 TB/s) and an H200
  (4.8 TB/s) at 67 TFLOP/s FP32 (SIMT), and on the H200 at 495 TFLOP/s (TF32) and 990 TFLOP/s
  (BF16, with 2-byte data) dense tensor-core peaks;
* the schedule's own estimate of the bytes its loads request from global memory
  (:func:`requested_bytes`, documented per schedule), and its ratio to the minimum;
* the schedule's no-cache estimate of its H100 time, max(requested bytes / 3.35 TB/s, FLOPs /
  the peak of the units its device code uses: tensor cores where it has ``mma`` instructions,
  TF32 or FP16/BF16 by their operand type (:func:`mma_kind`), else FP32 SIMT): an upper bound
  that counts every requested byte as DRAM traffic (L1/L2 hits, which the schedules' docstrings
  estimate, make it faster), against the H100 roofline of the kernel's aim (:func:`aim_peak`:
  bandwidth-bound kernels at FP32 SIMT, the GEMM-shaped PAC kernels at the TF32 tensor-core
  peak where float32 may run as TF32 (the ``tf32`` rows), at the FP16/BF16 one in the half
  types, at FP32 SIMT in float32 without the flag; the float32 report lists PAC conv in float16
  and bfloat16 too, with 2-byte data), and whether
  the launch meets issue 15's aims: no spills, theoretical occupancy >= 50%, estimate within
  1.5x of that roofline (:func:`aims`).

The DDF, ACDA and PAC kernels are listed twice per benchmark shape: static builds, and the generic ones
(B, H, W symbolic, :func:`generic_workloads`: "... generic" layers), each built and lowered
once, its registers, spills and shared memory those of the one build, its grid resolved at the
benchmark size from its launch code, its requested bytes counted over its fixed tiles
(``requested_bytes(wl, generic=...)``).

These are estimates, not measurements: no kernel runs. Run ``dynfilter-tvm gpu-report``.
"""
from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from .workload import Workload

H100_BW, H200_BW = 3.35e12, 4.8e12
FP32_SIMT, TF32_TC, BF16_TC = 67e12, 495e12, 990e12
SM = {  # per SM: shared memory (bytes), plus the fixed limits below
    "sm_90": 228 * 1024,
    "sm_80": 164 * 1024,
}
REGS_PER_SM, THREADS_PER_SM, BLOCKS_PER_SM, WARPS_PER_SM = 65536, 2048, 32, 64


# -- the benchmark workloads ------------------------------------------------------------------
def _ddf(B, C, H, W):
    return dict(B=B, C=C, H=H, W=W, G=1, k=3, s=1, d=1, combine="mul")


def benchmark_workloads(dtype: str = "float32") -> Dict[str, List[Workload]]:
    """The benchmark shapes of each layer: the kernels its forward and backward run."""
    pac = dict(N=8, C=64, O=64, H=128, W=128, Ho=128, Wo=128, k=5, s=1, z=1, p=2, d=1)
    acda = dict(N=8, C=64, H=56, W=56, M=6, T=18, k=7, s=1, d=1, p=3)  # T = (k // 2) * M bases
    mk = Workload.make
    out = {}
    for name, p in (("DDF 8x256x56x56 k3", _ddf(8, 256, 56, 56)), ("DDF 2x256x200x300 k3", _ddf(2, 256, 200, 300))):
        out[name] = [mk("ddf", k, p, dtype) for k in ("fwd", "dx", "ds", "dc")]
    out["PAC conv 8x64x128x128 k5"] = [
        mk("pac", "conv", dict(pac, a=0), dtype),
        mk("pac", "conv", dict(pac, a=1), dtype),  # dX: the adjoint (mirrored taps, weight^T)
        *([mk("pac", "conv", dict(pac, a=a, tf32=1), dtype) for a in (0, 1)] if dtype == "float32" else []),
        # half types run conv on f16/bf16 tensor cores (always): listed in the float32 report too
        *([mk("pac", "conv", dict(pac, a=a), half) for half in ("float16", "bfloat16") for a in (0, 1)]
          if dtype == "float32" else []),
        # conv_dk's half types run on f16/bf16 tensor cores (sm_80+): listed in the float32 report
        *([mk("pac", "conv_dk", pac, half) for half in ("float16", "bfloat16")] if dtype == "float32" else []),
        mk("pac", "conv_dk", pac, dtype),
        *([mk("pac", "conv_dk", dict(pac, tf32=1), dtype)] if dtype == "float32" else []),  # TF32 tensor cores
        mk("pac", "conv_dw", pac, dtype)]
    out["ACDA 8x64x56x56 k7"] = [mk("acda", k, acda, dtype) for k in ("fwd", "dx", "datoms")]
    return out


def generic_workloads(dtype: str = "float32") -> Dict[str, List[tuple]]:
    """The DDF, ACDA and PAC benchmark shapes served by the generic kernels (B, H, W symbolic: one
    build for every size): per layer, (generic workload, its sizes there). Reported at those sizes from
    one symbolic build each (its code, registers and launch bounds are the same at every size;
    the grid and the requested bytes are those of the size)."""
    mk = Workload.make
    out = {}
    for name, (B, C, H, W) in (("DDF 8x256x56x56 k3 generic", (8, 256, 56, 56)),
                               ("DDF 2x256x200x300 k3 generic", (2, 256, 200, 300))):
        p = dict(_ddf(None, C, None, None))
        out[name] = [(mk("ddf", k, p, dtype), dict(B=B, H=H, W=W)) for k in ("fwd", "dx", "ds", "dc")]
    acda = dict(N=None, C=64, H=None, W=None, M=6, T=18, k=7, s=1, d=1, p=3)  # as benchmark_workloads'
    out["ACDA 8x64x56x56 k7 generic"] = [(mk("acda", k, acda, dtype), dict(N=8, H=56, W=56))
                                         for k in ("fwd", "dx", "datoms")]
    # PAC: the generic conv (forward and input gradient), conv_dk and conv_dw are tiled
    # (schedules.pac_cuda GENERIC_TILED)
    sym = dict(N=None, C=64, O=64, H=None, W=None, Ho=None, Wo=None, k=5, s=1, z=1, p=2, d=1)
    at = dict(N=8, H=128, W=128, Ho=128, Wo=128)
    out["PAC conv 8x64x128x128 k5 generic"] = [
        *((mk("pac", "conv", dict(sym, a=a), dtype), at) for a in (0, 1)),
        (mk("pac", "conv_dk", sym, dtype), at), (mk("pac", "conv_dw", sym, dtype), at)]
    return out


_SHORT = {"float16": "(f16)", "bfloat16": "(bf16)"}


def _label(wl: Workload) -> str:
    return (f"{wl.op}.{wl.kernel}" + ("(adj)" if wl.p.get("a") else "") + ("(tf32)" if wl.p.get("tf32") else "")
            + _SHORT.get(wl.dtype, ""))


# -- work and traffic ---------------------------------------------------------------------------
def _sizes(wl: Workload) -> List[int]:
    from . import registry

    return [math.prod(int(n) for n in t.shape) for t in registry.compute(wl)]


def min_bytes(wl: Workload, itemsize: int = 4) -> int:
    """Every input read once and the output written once (a perfect cache)."""
    return sum(_sizes(wl)) * itemsize


def _dims(wl: Workload):
    from .ops.common import conv_out_size, out_size

    p = dict(wl.p)
    if wl.op == "ddf":
        p["Ho"], p["Wo"] = out_size(p["H"], p["s"]), out_size(p["W"], p["s"])
    elif wl.op == "acda":
        p["Ho"], p["Wo"] = (conv_out_size(n, p["k"], p["s"], p["p"], p["d"]) for n in (p["H"], p["W"]))
    return p


def flops(wl: Workload) -> int:
    """Useful FLOPs (2 per multiply-add, 1 per other multiply or add; taps that fall on
    inserted zeros of an adjoint are not counted), per kernel:

    ddf.fwd/dx: k^2 taps per output pixel of the forward, each a combine (S*C or S+C) and a
    multiply-add; ddf.ds: per (pixel, tap) and channel dO*X (*C) + add; ddf.dc: per
    (channel, tap, pixel) dO*X (*S) + add. pac.conv: C*k^2 multiply-adds per output plus the
    modulation K*X once per (input channel, tap, pixel); conv_dk: G = sum_o W*dO (O
    multiply-adds) and one multiply-add with the source per (channel, tap, pixel); conv_dw: per
    (o, c, tap, pixel) dO*K*X + add. acda: the atoms (T multiply-adds per atom tap and pixel)
    plus M*k^2 multiply-adds per (channel, pixel) (fwd, dx), or C per atom tap and pixel (datoms).
    """
    p = _dims(wl)
    k2 = p["k"] ** 2
    if wl.op == "ddf":
        taps = p["B"] * p["C"] * p["Ho"] * p["Wo"] * k2
        return taps * (3 if wl.kernel in ("fwd", "dx") or p["combine"] == "mul" else 2)
    if wl.op == "pac":
        pix = p["N"] * p["Ho"] * p["Wo"] * k2
        if wl.kernel == "conv":
            return pix * p["C"] * (2 * p["O"] + 1)
        if wl.kernel == "conv_dk":
            return pix * p["C"] * (2 * p["O"] + 2)
        if wl.kernel == "conv_dw":
            return pix * p["C"] * p["O"] * 3
    if wl.op == "acda":
        pix = p["N"] * p["Ho"] * p["Wo"]
        atoms = pix * p["M"] * k2 * 2 * p["T"]
        if wl.kernel == "datoms":
            return pix * p["M"] * k2 * 2 * p["C"]
        return atoms + pix * p["C"] * p["M"] * k2 * 2
    raise KeyError(f"no FLOP formula for {wl.op}.{wl.kernel}")


def requested_bytes(wl: Workload, itemsize: int = 4, arch: str = "sm_90",
                    generic: Optional[Workload] = None) -> int:
    """The default schedule's own count of the bytes its global loads request: loads issued
    per thread x element size, summed over all threads, counting a warp-uniform load once per
    thread and assuming no cache (L1/L2 hits make the DRAM traffic smaller). Loads masked off
    by an index check (padding, inserted zeros) are not issued.

    ddf.fwd, ddf.dx (the tiled schedule, :func:`_ddf_tiled_bytes`): loads plus the one store
    of each output element (those two count the stores too, so that their ratio is the whole
    traffic against the minimum). A block owns a ty x tx pixel tile of one (b, head) and a
    chunk of cc channels: per channel it stages the input tile with its halo and the k^2 taps of
    C; S once per chunk. fwd: X = B*C*Ry*Rx, where Ry = the sum over row tiles of the input rows
    inside the tile's window ((ty-1)*s + (k-1)*d + 1 rows; padding is an index check, not a
    load), Rx likewise; S = B*G*k^2*Ho*Wo*(Cg/cc) (each thread its own pixel's taps); C =
    B*C*k^2*tiles; out = B*C*Ho*Wo. dx: tiles of its phase grid (``ops.ddf.dx_grid``: H x W at
    stride 1), dO = B*C*Ry*Rx with the dO rows a tile's taps read (grid rows i..i+t-1 read
    rows i//s + p//s - max(off) .. (i+t-1)//s + p//s - min(off), off = q0(r) + j*d/g over the
    phases and taps of ``ops.ddf._phase_taps``: t + (k-1)*d rows at stride 1, about t/s +
    (k-1)*d/s at stride s, where the zero-inserted grid had t + (k-1)*d; only real dO elements
    are loaded); S = B*G*k^2*Ry*Rx*(Cg/cc) (the k^2 planes staged over the same window); C =
    B*C*k^2*tiles; dX = B*C*H*W. At 8x256x56x56 k3
    (16 x 16 tiles, cc = 32, 4 x 4 tiles; Ry = Rx = 17+18+18+9 = 62): fwd X = 8*256*62^2*4 B =
    31.5 MB, S = 8*9*56^2*8*4 B = 7.2 MB, C = 8*256*9*16*4 B = 1.2 MB, out = 25.7 MB: 65.6 MB,
    1.25x the 52.4 MB minimum (was 694 MB of loads, 13.2x). Where no tile fits (huge k or
    dilation) or the shape is symbolic, the thread-per-output schedule: X, S and C per tap of
    every output (loads only, as before); its dx counts every tap.
    ddf.ds (the tiled schedule, :func:`_ddf_ds_bytes`; loads and stores of both kernels): the
    forward's pixel tiles of one (b, head), a thread per pixel over the block's channels
    (nb channel blocks): dO = B*C*Ho*Wo (once), X = B*C*Ry*Rx (the tiles' windows, as fwd),
    C = B*C*k^2*tiles ('mul'), with nb > 1 the scratch nb*B*G*k^2*Ho*Wo stored and loaded
    again, dS = B*G*k^2*Ho*Wo. At 8x256x56x56 k3 (nb = 4): dO 25.7 MB + X 31.5 MB + C 1.2 MB
    + scratch 2*3.6 MB + dS 0.9 MB = 66.5 MB, 1.27x the 52.4 MB minimum. ddf.dc (the streaming schedule, :func:`_ddf_dc_bytes`;
    loads and stores of both kernels): a block per (b, head, cc channels, column block), nx
    lanes along x, X staged in tiles of ty output rows x nx columns: dO = B*C*Ho*Wo, X =
    B*C*Ry*Rx (windows of (ty-1)*s + (k-1)*d + 1 rows, (nx-1)*s + (k-1)*d + 1 columns), S =
    B*G*(Cg/cc)*k^2*Ho*Wo ('mul'), the scratch nb*B*C*k^2 stored and loaded again (nb column
    blocks), dC = B*C*k^2. At 8x256x56x56 k3 (cc = 16, nx = 32, ty = 8, nb = 2; Ry = 68, Rx =
    58): dO 25.7 MB + X 8*256*68*58*4 B = 32.3 MB + S 8*16*9*56^2*4 B = 14.5 MB + scratch
    2*0.15 MB + dC 0.07 MB = 72.8 MB, 1.39x. Where those schedules fall back (k > 7, symbolic shapes, no tile fits):
    per output (pixel, tap) of ds, dO, X and C for each of the head's channels; per output
    (channel, tap) of dc, dO, X and S for each pixel (loads only).
    ``generic``: the bytes of the generic build ``generic`` (B, H, W symbolic) at static
    ``wl``'s sizes (DDF: :func:`_ddf_generic_bytes`; ACDA: below; PAC conv, conv_dk, conv_dw:
    :func:`_pac_conv_tiled_bytes`, :func:`_pac_dk_generic_bytes` (its staged source windows,
    :func:`_x_windows`: 538 MB at 8x64x128x128 k5, 1.00x the static build's), :func:`_pac_dw_tiled_bytes`):
    the same accounting over its fixed tiles
    and padded grids (fwd: 16 x 16 tiles over rows in pairs and columns in 16s; dx: the
    ``schedules.ddf_cuda.generic_dx_tile`` over ``dx_grid``'s generic grid, whole s*8 columns;
    ds: 32 x 8 tiles over rows of whole 8 pixels, ``_generic_ds_channel_blocks``' scratch; dc:
    8 lanes x 16-row tiles, a column block per 8 columns); tiles over padding only load
    nothing but C. Where the generic build is per-output, the per-output counts. pac.conv, the tiled implicit GEMM (:func:`_pac_conv_tiled_bytes`,
    loads plus the output's stores): each block builds its tile's modulated taps once per
    output-channel tile, so X = N*C*Ty*Tx*nO and K = N*C*k^2*Ho*Wo*nO (Ty, Tx: the (output,
    tap) pairs along each axis that land on a real source element, nO = ceil(O / (ot*oi));
    the adjoint's Kz counts real taps like X; where the static build stages K once per tile,
    ``conv_tile``'s ``ks``, K = N*k^2*Ho*Wo*nO), Wt = N*tiles*O*C*k^2 (every pixel tile reads the
    whole weight), out = N*O*Ho*Wo. At 8x64x128x128 k5 O=64 (4 x 32 tiles, nO = 1, 128
    tiles per image; Ty = Tx = 128*5 - 6 = 634): X = 8*64*634^2*4 B = 823 MB, K = 8*25*128^2*4 B
    = 13 MB (per channel, as both builds loaded it before they staged it: 839 MB), Wt =
    8*128*64*64*25*4 B = 419 MB, out = 34 MB: 1.29 GB, 16x the 80.6 MB minimum (the generic
    build too; 2.1 GB, 26x, with K per channel), against 67 GB
    (832x) for the thread-per-output schedule. Almost all of it repeats
    what the block read one channel earlier (K, the whole tile per channel) or what another
    block read (Wt, 400 KB in all; X, the halo): L1 and L2 hits; the H100's L2 serves such
    traffic at several TB/s, so at 26.8 GFLOP the kernel stays bound by its FP32 FMAs (400 us
    at 67 TFLOP/s). Where the chunk does not fit (k >= 13 on wide rows) or the shape is
    symbolic, the thread-per-output schedule. The tensor-core conv (TF32 with ``tf32``; float16
    and bfloat16 always): a block owns 16*wo channels x ry rows of P = 16*wx*xm pixels and, per
    chunk of kc input channels (8 in TF32, 16 in the half types), stages the source window of
    its rows and all tap rows once and loads K once per (tap, pixel) for the kc channels, or,
    where the arch's shared memory holds it (``mma_tile``'s ``ks``: the wide tile), once per
    block for all chunks: X = N*C*nO*Ry*Rx (Ry, Rx: the real elements of the tiles' windows,
    (ry-1)*s + (k-1)*d + 1 rows, (P-1)*s + (k-1)*d + 1 columns, summed over the tiles), K =
    N*(C/kc)*nO*k^2*Ho*Wo (ks: N*nO*k^2*Ho*Wo; the adjoint's Kz: real taps, as above), Wt =
    N*tiles*O*C*k^2, out as above. At
    8x64x128x128 k5 (64 channels x 2 rows x 128 pixels, nO = 1, 512 blocks; Ry = 64*6 - 4 =
    380, Rx = 128 of a 132-wide window): X = 8*64*380*128*4 B = 100 MB, K =
    8*8*25*128^2*4 B = 105 MB, Wt 210 MB, out 34 MB: 448 MB, 5.6x the minimum (TF32; 724 MB
    with one row per block and a window row per tap row; 2.1 GB with xk's X and K loaded per
    (channel, tap, pixel)); f16/bf16 198 MB, 4.9x (2-byte elements, K per 16 channels; was
    336 MB). The wide tile (4 rows x 128 pixels, 256 blocks; Ry = 32*8 - 4 = 252) with K
    staged (sm_80, sm_90; the half types on every sm_80+ arch): X 66 MB, K = 8*25*128^2*4 B =
    13 MB, Wt 105 MB, out 34 MB: 218 MB TF32 (309 MB with K per chunk: sm_86/89's 99 KB);
    f16/bf16 109 MB (128 MB with K per chunk). The weight, read whole by each block (400 KB,
    an L2 hit), is still the largest part.
    pac.conv_dk, the tiled schedule (:func:`_pac_dk_tiled_bytes`, loads plus the output's
    stores): a block per (n, ty x tx pixel tile) stages its dO tile once and, per input
    channel, the source window and Wt[:, c]: dO = N*O*Ho*Wo, X = N*C*Ry*Rx (Ry, Rx: the real
    source elements in the tiles' windows of (t-1)*s + (k-1)*d + 1 grid positions, summed over
    the tiles along each axis; padding and inserted zeros are index checks), Wt =
    N*tiles*C*O*k^2, dK = N*k^2*Ho*Wo. At 8x64x128x128 k5 O=64 float32 (4 x 32 tiles, 32 x 4
    tiles per image; Ry = 32*8 - 4 = 252, Rx = 4*36 - 4 = 140): dO 33.6 MB + X
    8*64*252*140*4 B = 72.3 MB + Wt 8*128*64*64*25*4 B = 419 MB + dK 13.1 MB = 538 MB, 6.7x
    the 80.6 MB minimum (was 108 GB, 1,342x, a thread per output loading W and dO for every
    (channel, output channel)). sm_80 (and the half types) take 2 x 32 tiles
    (``schedules.pac_cuda.DK_REG_Y_SMALL``): Wt 838 MB, Ry = 64*6 - 4 = 380, in all 994 MB
    in float32, 12.3x. The tensor-core conv_dk (float16, bfloat16 on sm_80+,
    ``schedules.pac_cuda._conv_dk_mma``): a block per ry rows of 32*wx pixels (``dk_mma_rows``)
    stages its dO tile once and per (tap, channel chunk) Wt[:, chunk, tap] (:func:`_pac_dk_mma_parts`); without
    the window each thread reads its pixel's source at every (tap, channel) from global memory
    (real elements only): dO = N*O*Ho*Wo, X = N*C*Ty*Tx (as conv's), Wt = blocks*O*C*k^2, dK =
    N*k^2*Ho*Wo; with it (the half types; TF32 on sm_90 and sm_80 where C % 32 = 0) the
    block stages the source window per tap row and chunk (``schedules.pac_cuda.dk_mma_window``,
    per arch): X = N*C*Ty*Rx (Rx: the real columns of each block's window, :func:`_real_taps`;
    Ty: with tr tap rows per window, ``dk_mma_tap_rows``, the real rows of each block's k / tr
    windows, :func:`_pac_dk_window_rows`). At 8x64x128x128 k5 O=64 (4 x 128 pixels, 256 blocks),
    2-byte elements: dO 16.8 MB + X 8*64*634*128*2 B = 83.1 MB + Wt 256*102,400*2 B = 52.4
    MB + dK 6.6 MB = 158.9 MB, 3.9x the 40.3 MB minimum (one row, 1,024 blocks: Wt 210 MB, 316
    MB; per-tap loads: X 8*64*634^2*2 B = 412 MB, 645 MB, 16.0x). TF32 (2 x 128 pixels, 512
    blocks, 4-byte elements): dO 33.6 + X 166.2 + Wt 209.7 + dK 13.1 = 422.6 MB, 5.2x the 80.6
    MB minimum (was one row per tap: 1,289 MB, 16.0x, which sm_86/89 keep). Wt (410 KB in all) is L2-resident, so the DRAM traffic is
    near the minimum and the kernel is bound by its 13.4 G FMAs on FP32 SIMT (407 us at 67
    TFLOP/s). Where the tap loops stay loops (k > 7), the tile cannot fit or the shape is
    symbolic, a thread per output: conv_dk below.
    pac.conv_dw, the tiled split-K (:func:`_pac_dw_tiled_bytes`; loads plus the partial sums
    stored and loaded once): a block per (output-channel tile, input-channel tile, tap, part)
    stages per chunk of pixels dO (its channels), K (its tap) and the source at its tap (its
    channels): dO = N*O*Ho*Wo*k^2*nC, K = N*k^2*Ho*Wo*nO*nC, X = N*C*Ty*Tx*nO (Ty, Tx the real
    (output, tap) pairs per axis, as conv; nO, nC the channel tiles), scratch 2*parts*O*C*k^2.
    At 8x64x128x128 k5 O=64 (one 64 x 64 channel tile, 16 parts): dO 8*64*128^2*25*4 B = 839
    MB + K 13 MB + X 8*64*634^2*4 B = 823 MB + scratch 13 MB = 1.69 GB, 20.9x the 80.6 MB
    minimum (was 161 GB, 1,998x, dO, K and X per term of every output); dO and X repeat per tap
    (25x), from L2. Bound by its 13.4 G terms on FP32 SIMT (3 FLOPs each: 601 us).
    Otherwise:
    a thread per pixel and block of b output channels loads K
    and X for each (channel, tap) and b weights; conv_dk: per (pixel, tap), for each channel
    X and O pairs (W, dO); conv_dw: per (o, c, tap), dO, K and X for each pixel, plus
    (split-K, static shapes) the partial sums of each band of rows, stored and loaded once
    (8x64x128x128 k5: 16 parts x 102,400 x 2 x 4 B = 13 MB next to 161 GB of loads). acda.fwd: each
    block builds its tile's atoms from A and P (``schedules.acda_cuda._atoms_in_shared``: a
    thread per (atom group, tap row, pixel) loads, per basis t, the group's mi coefficients A
    and the row's k bases P, the latter warp-uniform: k*T*(M + (M/mi)*k) elements per pixel;
    beyond ``UNROLL_TAPS`` a thread per tap, k^2*T*(M + M/mi)),
    then loads X for each (channel, tap) of its pixels (atoms from shared memory); acda.dx: the
    same tiling over input pixels (atoms indexed by the input pixel they serve,
    ``ops.acda.acda_dx``), then dO for each (channel, atom, tap) of its pixels; counted as if
    issued where dO or A is an inserted zero or padding (an upper bound: those loads are
    masked). At 8x64x56x56 k7, M = 6, T = 18, float32 (mi = 3): atoms 25,088 px * 7*18*(6 +
    2*7) * 4 B = 252.9 MB (was 1,062 MB, A and P per atom tap), fwd X 25,088 * 64 * 49 * 4 B =
    314.7 MB: 567.6 MB, 10.2x the minimum (was 1,377 MB, 24.7x). Static float32 fwd by tap
    rows (``schedules.acda_cuda._fwd_rows``, sm_90 and sm_80) stages A and P for its atoms
    build (``_atoms_staged``, :func:`_acda_fwd_staged_atoms_bytes`): every A element once,
    P per block and pass of atom groups, N*M*T*Ho*Wo + blocks*passes*T*k^2, and X per block
    and tap row over the real part of its row segment (:func:`_acda_fwd_rows_bytes`): at
    8x64x56x56 k7 A 8*6*18*3136*4 B = 10.8 MB + P 896*1*18*49*4 B = 3.2 MB + X 8*64*380*62*4 B
    = 48.2 MB = 62.2 MB, 1.12x the minimum (was 301 MB, 5.4x, on sm_90 with the per-thread
    atoms loads above; 567.6 MB on sm_80). acda.dx, static with k <= 7
    (the atoms-in-registers schedule, :func:`_acda_dx_bytes`; loads only, real elements
    only: the copies' masked loads fetch nothing): P once per block (T*k^2); per block the
    coefficients A of its window for every basis (M*T planes, staged in shared memory), and
    per block and channel chunk the dO window of its input rows (C*M planes); a plane is
    ((k-1)*d + rows) grid rows x (tile + (k-1)*d) columns, rows = the block's input rows
    (``schedules.acda_cuda._dx_rows``: float32 and the half types with runs; else 1). At
    8x64x56x56 k7 float32 (tiles of 15 x 8 rows, 1,008 threads, 224 blocks): P 0.8 MB, A
    23.5 MB, dO 83.7 MB: 108.0 MB, 1.94x (tiles of 8 x 7 rows, 448 blocks, before it: P
    448*882*4 B = 1.6 MB, A 8*6*18*98*92*4 B = 31.2 MB, dO 8*64*6*98*92*4 B = 110.8 MB; 98 =
    the real grid rows over the 8 row blocks' 13-row windows, 10 + 6*13 + 10; 92 = the real
    columns over the 7 tiles' 14-column windows, 11 + 5*14 + 11: 143.5 MB, 2.57x; a row per block, tiles of 28,
    896 blocks: P 3.2 MB, A 8*6*18*380*62*4 B = 81.4 MB, dO 8*64*6*380*62*4 B = 289.5 MB, 380 = the
    real rows over the 56 windows, 62 = 31 + 31 real columns: 374 MB, 6.7x); float64 keeps the row per block,
    748 MB in 8-byte words; before that 824 MB, 14.8x, A read per (atom tap, basis, input
    pixel): 531 MB; before that
    2,141 MB, 38x, dO loaded for each (channel, atom, tap) of every pixel; before that
    4,868 MB, 87x, with the grid-wide atoms written to and read back from global
    scratch, one launch more). acda.datoms: the atoms build's register
    tile with the channels in place of the bases: per thread (atom group, tap row, pixel) and
    channel, mi values of dO and the k inputs of its row (held in registers): (M/mi)*k*C*(mi +
    k) elements per pixel; at 8x64x56x56 k7 25,088 * 2*7*64*10 * 4 B = 899 MB, 12.1x (was
    3,776 MB, 50.7x: dO and X per atom tap and channel). Static float32 and half-type datoms
    keeps every tap row in one block (rows under 32 pixels since 2026-12-02: several rows per
    block, at 7 x 7 a block per atom group, 0.73-0.80x the generic build's bytes at 28, 14, 7) (``schedules.acda_cuda._datoms_block``,
    :func:`_acda_datoms_block_bytes`): dO staged once, N*C*M*Ho*Wo, and per block and channel its input window's real elements: at
    8x64x56x56 k7 (tiles of 28) 38.5 MB + 8*64*380*62*4 B = 48.2 MB = 86.8 MB, 1.17x (the
    rows schedule before it: dO once per tap row, 313 MB, 4.2x). Generic ACDA builds
    (``generic``; rows of whole X_QUANTUM = 8 pixels, fwd's of whole ROW_TILE = 8 and heights
    of whole FWD_ROWS = 2): fwd in tiles of ``fwd_rows_shape`` where
    ``schedules.acda_cuda.generic_tiled``, its atoms from staged A and P where
    ``staged_atoms_plan`` (:func:`_acda_fwd_staged_atoms_bytes` with ``generic``: A once, P per
    block and pass, the blocks over the tiles of 2 rows x 8 pixels), else the per-thread count
    above over the padded image, X per block the real elements of its whole window
    (:func:`_acda_block_windows`; a window of 8 x 14 per 2 x 8 pixels at k7; where the build
    takes a row of 8 pixels, float64, per tap row the row's segment): at 8x64x56x56 k7 float32 A 10.8 + P 1,568 x 18 x 49 x 4 B = 5.5 + X 40.8 MB =
    57.1 MB, 0.92x the static's 62.2 (a row of 32 pixels before: the static's count, 1.00x;
    8-pixel tiles before that:
    A 10.8 MB + P 3,136 x 18 x 49 x 4 B = 11.1 MB + X 8*64*380*92*4 B = 71.6 MB = 93.5 MB,
    1.50x; the per-thread atoms loads before that: 324.5 MB, 5.2x); datoms with every tap row in one block in
    8-pixel tiles where ``generic_tiled(..., stage="dOpad_shared")``
    (:func:`_acda_datoms_generic_bytes`): dO once, 8*64*6*3136*4 B = 38.5 MB, + X 71.6 MB =
    110.1 MB, 1.27x the static's 86.8 MB (by rows before: dO per tap row, 341.3 MB, 3.9x); dx the
    atoms-in-registers count in blocks of 12 rows x 8 pixels over the rows padded to whole
    ``ops.acda.DX_ROWS`` (:func:`_acda_dx_bytes`): P 280 blocks x 882 + A 8*6*18*80*92 + dO
    8*64*6*80*92 elements = 116.9 MB, 1.08x the static's 108.0 MB (a row per block before:
    P 3,136 x 882 + A 8*6*18*380*92 + dO 8*64*6*380*92 = 561.5 MB, 5.2x); elsewhere the fall-backs'
    counts over the padded rows (the generic register-tile datoms loads the input per (atom,
    tap): mi x k per channel, not k; dx the shared-atoms count).
    """
    p = _dims(wl)
    k2 = p["k"] ** 2
    if wl.op == "ddf":
        tiled = _ddf_generic_bytes(wl, p, generic) if generic is not None else {
            "fwd": _ddf_tiled_bytes, "dx": _ddf_tiled_bytes, "ds": _ddf_ds_bytes, "dc": _ddf_dc_bytes}[wl.kernel](wl, p)
        if tiled is not None:
            return tiled * itemsize
        out_pix = p["B"] * p["C"] * p["Ho"] * p["Wo"]
        loads = {"fwd": out_pix * k2 * 3, "dx": out_pix * k2 * 3,
                 "ds": out_pix * k2 * (3 if p["combine"] == "mul" else 2),
                 "dc": out_pix * k2 * (3 if p["combine"] == "mul" else 2)}[wl.kernel]
        return loads * itemsize
    if wl.op == "pac":
        pix = p["N"] * p["Ho"] * p["Wo"]
        if generic is not None:  # conv and conv_dk have tiled generic builds (schedules.pac_cuda.GENERIC_TILED)
            tiled = {"conv": _pac_conv_tiled_bytes, "conv_dk": _pac_dk_generic_bytes,
                     "conv_dw": _pac_dw_tiled_bytes}.get(wl.kernel, lambda *_: None)(wl, p, generic)
        else:
            tiled = {"conv": lambda wl_, p_: _pac_conv_tiled_bytes(wl_, p_, arch=arch),
                     "conv_dk": lambda wl_, p_: _pac_dk_tiled_bytes(wl_, p_, arch),
                     "conv_dw": _pac_dw_tiled_bytes}.get(wl.kernel, lambda *_: None)(wl, p)
        if tiled is not None:
            return tiled * itemsize
        if wl.kernel == "conv":
            block = max(b for b in range(1, 9) if p["O"] % b == 0)  # schedules.pac_cuda.CONV_CHANNEL_BLOCK
            return pix * (p["O"] // block) * p["C"] * k2 * (2 + block) * itemsize
        if wl.kernel == "conv_dk":
            return pix * k2 * p["C"] * (1 + 2 * p["O"]) * itemsize
        if wl.kernel == "conv_dw":
            from schedules.pac_cuda import dw_rows

            rows = dw_rows(generic or wl)  # split-K (static only): + the partial sums, written and read once
            parts = p["N"] * -(-p["Ho"] // rows) if rows else 0
            return (pix * k2 * p["C"] * p["O"] * 3 + 2 * parts * p["O"] * p["C"] * k2) * itemsize
    if wl.op == "acda":
        from schedules.acda_cuda import atoms_per_thread
        from schedules.common import UNROLL_TAPS

        from .ops.acda import FWD_ROWS, ROW_TILE, X_QUANTUM

        # a generic build computes rows of whole X_QUANTUM pixels (fwd: ROW_TILE; ops.acda): its
        # atoms and register tiles run over the padded row (the loads past it are masked: an
        # upper bound)
        quantum = 1 if generic is None else ROW_TILE if wl.kernel == "fwd" else X_QUANTUM
        wq = -(-p["Wo"] // quantum) * quantum
        # (the generic fwd's tiles: FWD_ROWS rows, its heights whole FWD_ROWS)
        rows = 1 if generic is None or wl.kernel != "fwd" else FWD_ROWS
        pix = p["N"] * -(-p["Ho"] // rows) * rows * wq
        k, M, T, mi = p["k"], p["M"], p["T"], atoms_per_thread(wl)
        cols = k if k <= UNROLL_TAPS else 1  # tap columns per thread
        atoms = (M // mi) * k * (k // cols) * T * (mi + cols)  # per pixel of the tile
        if wl.kernel == "fwd":
            rows = _acda_fwd_rows_bytes(wl, p, arch, generic)
            staged = _acda_fwd_staged_atoms_bytes(wl, p, arch, generic) if rows is not None else None
            built = staged if staged is not None else pix * atoms
            return (built + (rows if rows is not None else pix * p["C"] * k2)) * itemsize
        if wl.kernel == "dx":
            tiled = _acda_dx_bytes(wl, p, generic, arch)
            if tiled is not None:
                return tiled * itemsize
            wq = -(-p["W"] // quantum) * quantum
            return p["N"] * p["H"] * wq * (atoms + p["C"] * M * k2) * itemsize  # the fwd's tiling
        if wl.kernel == "datoms":
            rows = (_acda_datoms_block_bytes(wl, p) or _acda_datoms_rows_bytes(wl, p) if generic is None
                    else _acda_datoms_generic_bytes(wl, p, generic))
            if rows is not None:
                return rows * itemsize
            # the atoms build's register tile, channels for bases; the generic one loads the
            # input per (atom, tap) (its padded row inlined: mi guarded loads per tap)
            return pix * (M // mi) * k * (k // cols) * p["C"] * (mi + cols * (mi if generic is not None else 1)) * itemsize
    raise KeyError(f"no request estimate for {wl.op}.{wl.kernel}")


def _ddf_tiled_bytes(wl: Workload, p: dict) -> Optional[int]:
    """Elements requested by the tiled ddf.fwd / ddf.dx schedule (see :func:`requested_bytes`),
    or None where that schedule falls back to a thread per output."""
    from dynfilter_tvm.ops.ddf import _phase_taps, dx_grid
    from schedules.ddf_cuda import _chunk, _tile

    if wl.kind != "static":
        return None
    B, C, G, k, s, d, H, W = (p[n] for n in ("B", "C", "G", "k", "s", "d", "H", "W"))
    Ho, Wo, pad, halo = p["Ho"], p["Wo"], (k - 1) // 2 * d, (k - 1) * d
    fwd = wl.kernel == "fwd"
    grid = (Ho, Wo) if fwd else dx_grid(H, W, k, s, d)
    tile = _tile(wl, wl.kernel, *grid)
    if tile is None:
        return None
    nj, _, dg, _, q0, _ = _phase_taps(k, s, d)
    offs = [q0(r) + j * dg for r in range(s) for j in range(nj)]  # dx: y = hh//s + p//s - off

    def real(n_in: int, n_out: int, n_grid: int, t: int) -> tuple:
        """(tiles, elements loaded over all tiles' windows) along one axis."""
        if fwd:  # windows on the padded input; rows p .. p+n_in-1 are real
            return _input_windows(n_in, n_out, t, s, pad, halo)
        return _dx_windows(n_out, n_grid, t, s, pad, offs)

    (ty_n, ry), (tx_n, rx) = real(H, Ho, grid[0], tile[0]), real(W, Wo, grid[1], tile[1])
    tiles, chunks = ty_n * tx_n, (C // G) // _chunk(C // G)
    staged = B * C * ry * rx
    s_loads = B * G * k * k * (Ho * Wo if fwd else ry * rx) * chunks
    return staged + s_loads + B * C * k * k * tiles + B * C * (Ho * Wo if fwd else H * W)


def _ddf_generic_bytes(wl: Workload, p: dict, generic: Workload) -> Optional[int]:
    """Elements requested by the generic DDF build ``generic`` at static ``wl``'s sizes (see
    :func:`requested_bytes`), or None where that build is per-output."""
    from dynfilter_tvm import registry
    from dynfilter_tvm.ops.ddf import FWD_ROW_QUANTUM, FWD_ROWS, ROW_QUANTUM, _phase_taps
    from schedules import ddf_cuda as D
    from schedules.common import UNROLL_TAPS

    B, C, G, k, s, d, H, W, Ho, Wo = (p[n] for n in ("B", "C", "G", "k", "s", "d", "H", "W", "Ho", "Wo"))
    if not (1 < k <= UNROLL_TAPS) or wl.kernel not in D.GENERIC_TILED:
        return None
    pad, halo, cg, k2 = (k - 1) // 2 * d, (k - 1) * d, C // G, k * k
    up = lambda n, q: -(-n // q) * q  # noqa: E731
    if wl.kernel == "fwd":
        if D._tile(generic, "fwd", "H", "W") != (D.TILE, D.TILE):
            return None
        (ty_n, ry), (tx_n, rx) = (_input_windows(n, up(no, q), D.TILE, s, pad, halo)
                                  for n, no, q in ((H, Ho, FWD_ROWS), (W, Wo, FWD_ROW_QUANTUM)))
        chunks = cg // D._chunk(cg)
        return B * C * ry * rx + B * G * k2 * Ho * Wo * chunks + B * C * k2 * ty_n * tx_n + B * C * Ho * Wo
    if wl.kernel == "dx":
        tile = D.generic_dx_tile(generic, registry.prim_func(generic))
        if tile is None:
            return None
        nj, _, dg, _, q0, _ = _phase_taps(k, s, d)
        offs = [q0(r) + j * dg for r in range(s) for j in range(nj)]
        pm = pad % s
        # ops.ddf.dx_grid of a generic build: at stride 1 rows of whole FWD_ROW_QUANTUM (the CPU's
        # 16-lane tiles), so up to one column block of padding that still loads its C
        grid = (H, up(W, FWD_ROW_QUANTUM)) if s == 1 else (up(H + pm, s), up(W + pm, s * ROW_QUANTUM))

        (ty_n, ry), (tx_n, rx) = (_dx_windows(Ho, grid[0], tile[0], s, pad, offs),
                                  _dx_windows(Wo, grid[1], tile[1], s, pad, offs))
        chunks = cg // D._chunk(cg)
        return B * C * ry * rx + B * G * k2 * ry * rx * chunks + B * C * k2 * ty_n * tx_n + B * C * H * W
    if wl.kernel == "ds":
        tile = D.generic_ds_tile(generic, registry.prim_func(generic))
        if tile is None:
            return None
        wq = up(Wo, ROW_QUANTUM)
        (ty_n, ry), (tx_n, rx) = (_input_windows(n, no, t, s, pad, halo)
                                  for n, no, t in ((H, Ho, tile[0]), (W, wq, tile[1])))
        c_loads = B * C * k2 * ty_n * tx_n if p["combine"] == "mul" else 0
        nb = D._generic_ds_channel_blocks(generic)
        scratch = 2 * nb * B * G * k2 * Ho * wq if nb > 1 else 0  # (the padded columns too)
        return B * C * Ho * Wo + B * C * ry * rx + c_loads + scratch + B * G * k2 * Ho * Wo
    layout = D._dc_layout(generic, "Ho", "Wo")  # dc: the streaming schedule, 8 lanes along x
    if layout is None:
        return None
    cc, nx, ty = layout
    (_, ry), (tx_n, rx) = (_input_windows(n, no, t, s, pad, halo) for n, no, t in ((H, Ho, ty), (W, Wo, nx)))
    s_loads = B * G * (cg // cc) * k2 * Ho * Wo if p["combine"] == "mul" else 0
    return B * C * Ho * Wo + B * C * ry * rx + s_loads + 2 * tx_n * B * C * k2 + B * C * k2


def _dx_windows(n_out: int, n_grid: int, t: int, s: int, pad: int, offs: list) -> tuple:
    """(tiles, real dO elements over all tiles' windows) along one axis of DDF dx's phase grid
    (``n_grid`` positions in tiles of t): grid rows i .. i+t-1 read dO rows from
    i//s + p//s - max(offs) to (i+t-1)//s + p//s - min(offs) (stride 1: t + (k-1)*d rows)."""
    wins = [range(i // s + pad // s - max(offs), (min(i + t, n_grid) - 1) // s + pad // s - min(offs) + 1)
            for i in range(0, n_grid, t)]
    return len(wins), sum(1 for w in wins for y in w if 0 <= y < n_out)


def _input_windows(n_in: int, n_out: int, t: int, s: int, pad: int, halo: int) -> tuple:
    """(tiles, real input elements over all tiles' windows) along one axis, for tiles of t
    outputs whose windows ((t-1)*s + halo + 1 on the padded input) are staged; padding is an
    index check, not a load."""
    starts = range(0, n_out, t)
    wins = [range(i * s, min(i * s + (t - 1) * s + halo + 1, n_in + 2 * pad)) for i in starts]
    return len(wins), sum(1 for w in wins for r in w if pad <= r < pad + n_in)


def _ddf_ds_bytes(wl: Workload, p: dict) -> Optional[int]:
    """Elements requested by the tiled ddf.ds schedule (loads and the stores of dS), or None
    where it falls back to the per-output one."""
    from schedules.common import UNROLL_TAPS
    from schedules.ddf_cuda import _ds_channel_blocks, _tile

    if wl.kind != "static" or p["k"] > UNROLL_TAPS:
        return None
    B, C, G, k, s, d, H, W, Ho, Wo = (p[n] for n in ("B", "C", "G", "k", "s", "d", "H", "W", "Ho", "Wo"))
    tile = _tile(wl, "fwd", Ho, Wo)
    if tile is None:
        return None
    pad, halo = (k - 1) // 2 * d, (k - 1) * d
    (ty_n, ry), (tx_n, rx) = (_input_windows(n, no, t, s, pad, halo) for n, no, t in ((H, Ho, tile[0]), (W, Wo, tile[1])))
    c_loads = B * C * k * k * ty_n * tx_n if p["combine"] == "mul" else 0
    nb = _ds_channel_blocks(wl, ty_n * tx_n)
    scratch = 2 * nb * B * G * k * k * Ho * Wo if nb > 1 else 0  # stored, then loaded
    return B * C * Ho * Wo + B * C * ry * rx + c_loads + scratch + B * G * k * k * Ho * Wo


def _ddf_dc_bytes(wl: Workload, p: dict) -> Optional[int]:
    """Elements requested by the streaming ddf.dc schedule (loads and the stores of dC), or
    None where it falls back to the per-output one."""
    from schedules.common import UNROLL_TAPS
    from schedules.ddf_cuda import _dc_column_blocks, _dc_layout

    if wl.kind != "static" or p["k"] > UNROLL_TAPS or p["s"] > 1:  # as schedules.ddf_cuda._dc_streaming
        return None
    B, C, G, k, s, d, H, W, Ho, Wo = (p[n] for n in ("B", "C", "G", "k", "s", "d", "H", "W", "Ho", "Wo"))
    layout = _dc_layout(wl, Ho, Wo)
    if layout is None:
        return None
    cc, nx, ty = layout
    pad, halo = (k - 1) // 2 * d, (k - 1) * d
    (_, ry), (_, rx) = (_input_windows(n, no, t, s, pad, halo) for n, no, t in ((H, Ho, ty), (W, Wo, nx)))
    s_loads = B * G * (C // G // cc) * k * k * Ho * Wo if p["combine"] == "mul" else 0
    scratch = _dc_column_blocks(wl, cc, nx, Wo)[0] * B * C * k * k  # stored, then loaded
    return B * C * Ho * Wo + B * C * ry * rx + s_loads + 2 * scratch + B * C * k * k


def _pac_real_pairs(n_src: int, n_out: int, p: dict) -> int:
    """(output, tap) pairs along one axis of a PAC workload ``p`` whose tap lands on a real
    source element (not padding, not a transposed conv's inserted zero; the mirrored taps of
    the adjoint cover the same set)."""
    k, s, z, pad, d = (p[n] for n in ("k", "s", "z", "p", "d"))
    return sum(1 for y in range(n_out) for i in range(k)
               if (y * s + i * d - pad) % z == 0 and 0 <= (y * s + i * d - pad) // z < n_src)


def _pac_conv_tiled_bytes(wl: Workload, p: dict, generic: Optional[Workload] = None,
                          arch: str = "sm_90") -> Optional[int]:
    """Elements requested by the tiled pac.conv schedule (see :func:`requested_bytes`), or None
    where that schedule keeps a thread per output. ``generic``: the generic build's (SIMT, its
    fixed tile ``generic_conv_tile``; the sum runs over whole tiles, but the loads of the
    padding rows and columns are masked: the same count over its tiles). ``arch``: the
    tensor-core tile's (``mma_tile``: whether K is staged once per block depends on the arch's
    shared memory)."""
    from schedules.pac_cuda import MMA_DTYPES, conv_tile, generic_conv_tile, generic_tiled, mma_tile

    if generic is not None:
        from . import registry

        tc = None
        t = generic_conv_tile(generic) if generic_tiled(generic, registry.prim_func(generic)) else None
    else:
        from .target import cuda_target

        tc = mma_tile(wl, cuda_target(arch))
        t = conv_tile(wl) if wl.kind == "static" else None
    if tc is None and t is None:
        return None
    N, C, O, k, s, z, pad, d = (p[n] for n in ("N", "C", "O", "k", "s", "z", "p", "d"))

    def real(n_src: int, n_out: int) -> int:
        return _pac_real_pairs(n_src, n_out, p)

    if tc is not None:  # the mma schedule: 16*wo channels x ry rows of 16*wx*xm pixels
        wo, wx, xm, ry, ks = tc
        o_tiles, pix_tiles = O // (16 * wo), p["Ho"] * p["Wo"] // (16 * wx * xm * ry)
        kc = 8 * MMA_DTYPES[wl.dtype][1]  # channels per chunk (as the schedule's kc)
        # per kc-channel chunk a block stages the source window of its ry rows and all tap rows
        # (real elements only) and loads its K (Kz: real taps) once per (tap, pixel), or (ks)
        # once per block for every chunk
        x_loads = N * C * o_tiles * _real_taps(p["H"], p["Ho"], ry, k, s, z, pad, d)[1] * _real_taps(
            p["W"], p["Wo"], 16 * wx * xm, k, s, z, pad, d)[1]
        k_loads = N * (1 if ks else C // kc) * o_tiles * (
            real(p["H"], p["Ho"]) * real(p["W"], p["Wo"]) if p["a"] else k * k * p["Ho"] * p["Wo"])
        return x_loads + k_loads + N * pix_tiles * O * C * k * k + N * O * p["Ho"] * p["Wo"]
    else:
        o_tiles = -(-O // (t["ot"] * t["oi"]))
        pix_tiles = -(-p["Ho"] // t["ty"]) * -(-p["Wo"] // t["tx"])
    taps = real(p["H"], p["Ho"]) * real(p["W"], p["Wo"])
    x_loads = N * C * taps * o_tiles
    # Kz: real taps only; loaded per chunk of channels with the taps, or once per tile where
    # the static build stages it (``ks``: ``schedules.pac_cuda._kernel_operand``)
    k_loads = (1 if t["ks"] else C) * (taps if p["a"] else k * k * p["Ho"] * p["Wo"]) * N * o_tiles
    return x_loads + k_loads + N * pix_tiles * O * C * k * k + N * O * p["Ho"] * p["Wo"]


def _real_taps(n_src: int, n_out: int, t: int, k: int, s: int, z: int, pad: int, d: int) -> tuple:
    """(tiles, real source elements over all tiles' windows) along one axis, for tiles of t
    outputs each staging the grid window (t-1)*s + (k-1)*d + 1 of the virtual source (S
    zero-inserted by z, shifted by pad): only positions on a real element are loaded."""
    starts = range(0, n_out, t)

    def real(Y: int) -> bool:
        return (Y - pad) % z == 0 and 0 <= (Y - pad) // z < n_src

    wins = [range(y0 * s, (min(y0 + t, n_out) - 1) * s + (k - 1) * d + 1) for y0 in starts]
    return len(wins), sum(1 for w in wins for Y in w if real(Y))


def _acda_fwd_rows_bytes(wl: Workload, p: dict, arch: str, generic: Optional[Workload] = None) -> Optional[int]:
    """Input elements loaded by acda.fwd's tap-row schedule (``schedules.acda_cuda._fwd_rows``),
    or None where fwd keeps the shared-atoms one (X per (channel, tap) of every pixel): per
    block and tap row, the real elements of each channel's input row segment. ``generic``: its
    generic build's tiles (``fwd_rows_shape``: 2 rows x 8 pixels in float32, each block's
    window once; a row of 8 pixels per tap row) where that build takes the rows schedule
    (``generic_tiled``)."""
    from schedules.acda_cuda import fwd_rows_tile, generic_tiled

    from . import registry
    from .target import cuda_target

    target = cuda_target(arch)
    if generic is not None:
        if not generic_tiled(generic, registry.prim_func(generic), target):
            return None
        from schedules.acda_cuda import fwd_tile_rows

        from .ops.acda import FWD_ROWS, ROW_TILE, whole

        rows = fwd_tile_rows(generic, fwd_rows_tile(generic, target))
        if rows > 1:  # tiles of FWD_ROWS rows x ROW_TILE pixels, each block's window staged once
            return p["N"] * p["C"] * sum(r * c for r, c in _acda_block_windows(p, rows, ROW_TILE))
        # a row of ROW_TILE pixels, its segment per tap row, over the heights of whole FWD_ROWS
        rows, cols = _acda_real_windows(dict(p, Ho=whole(p["Ho"], FWD_ROWS)), ROW_TILE)
        return p["N"] * p["C"] * rows * cols
    else:
        tile = fwd_rows_tile(wl, target)
    if tile is None:
        return None
    rows, cols = _acda_real_windows(p, tile)
    return p["N"] * p["C"] * rows * cols


def _acda_block_windows(p: dict, r: int, tile: int) -> list:
    """(real input rows, real input columns) of each block's window of an ACDA tile of ``r``
    output rows x ``tile`` pixels over the image, (r-1)*s + (k-1)*d + 1 padded rows x (tile-1)*s
    + (k-1)*d + 1 padded columns (padding is not loaded)."""
    H, W, k, s, d, pad = (p[n] for n in ("H", "W", "k", "s", "d", "p"))

    def real(n_out, size, n):
        span = (n - 1) * s + (k - 1) * d + 1
        return [sum(1 for Y in range(y0 * s, y0 * s + span) if pad <= Y < pad + size) for y0 in range(0, n_out, n)]

    return [(a, b) for a in real(p["Ho"], H, r) for b in real(p["Wo"], W, tile)]


def _acda_fwd_staged_atoms_bytes(wl: Workload, p: dict, arch: str, generic: Optional[Workload] = None) -> Optional[int]:
    """Elements the atoms build of acda.fwd's rows schedule loads where it stages A and P
    (``schedules.acda_cuda._atoms_staged``; ``generic``: ``wl``'s sizes served by that generic
    build, which the caller checked is tiled), or None where it does not: per block and basis,
    the real coefficients of its tile (every A element once in all: tiles partition the rows,
    a tail tile's masked loads fetch nothing) and the basis' k x k taps, once per pass of atom
    groups: N*M*T*Ho*Wo + blocks*passes*T*k^2."""
    from schedules.acda_cuda import fwd_staged_plan

    from .target import cuda_target

    plan = fwd_staged_plan(wl, cuda_target(arch), generic)
    if plan is None:
        return None
    return p["N"] * p["M"] * p["T"] * p["Ho"] * p["Wo"] + plan["blocks"] * plan["passes"] * p["T"] * p["k"] ** 2


def _acda_real_windows(p: dict, tile: int, r: int = 1) -> tuple:
    """(real input rows over the (block of r output rows, tap row) windows, real input columns
    over the row tiles' windows) of an ACDA row-tiled schedule: r output rows at tap row u read
    the (r-1)*s + 1 padded rows from y0*s + u*d, a tile of ``tile`` output pixels (tile-1)*s +
    (k-1)*d + 1 padded columns (both cut at the padded input's end, also for a tail); padding
    is not loaded."""
    H, W, k, s, d, pad = (p[n] for n in ("H", "W", "k", "s", "d", "p"))
    rows = sum(1 for y0 in range(0, p["Ho"], r) for u in range(k)
               for Y in range(y0 * s + u * d, min(y0 * s + u * d + (r - 1) * s + 1, H + 2 * pad)) if pad <= Y < pad + H)
    span, width = (tile - 1) * s + (k - 1) * d + 1, W + 2 * pad
    cols = sum(1 for x0 in range(0, p["Wo"], tile) for X in range(x0 * s, min(x0 * s + span, width))
               if pad <= X < pad + W)
    return rows, cols


def _acda_datoms_block_bytes(wl: Workload, p: dict) -> Optional[int]:
    """Elements loaded by acda.datoms' tap-block schedule (``schedules.acda_cuda._datoms_block``),
    or None where it does not apply: per block (image, r output rows, tile; one per atom group
    where ``groups`` > 1) and channel the real elements of its staged dO (dO once in all, the
    blocks partition it) and of its input window, (r-1)*s + (k-1)*d + 1 rows from y*s (the rows
    between the taps too, at d > 1) x (tile-1)*s + (k-1)*d + 1 columns:
    N*C*M*Ho*Wo + N*C*groups*(the windows' real elements)."""
    from schedules.acda_cuda import datoms_block_tile

    t = datoms_block_tile(wl)
    if t is None:
        return None
    windows = t["groups"] * sum(a * b for a, b in _acda_block_windows(p, t["rows"], t["tile"]))
    return p["N"] * p["C"] * p["M"] * p["Ho"] * p["Wo"] + p["N"] * p["C"] * windows


def _acda_datoms_rows_bytes(wl: Workload, p: dict) -> Optional[int]:
    """Elements loaded by acda.datoms' rows schedule (``schedules.acda_cuda._datoms_rows``), or
    None where it keeps the register tile: a thread per (atom group, tap row u, pixel) loads its
    mi values of dO per channel (dO k times in all), and per block (image, atom group, u,
    output rows, tile) and channel the real elements of its input row segments."""
    from schedules.acda_cuda import datoms_tile

    t = datoms_tile(wl)
    if t is None:
        return None
    rows, cols = _acda_real_windows(p, t["tile"], t["rows"])
    return p["N"] * p["k"] * p["C"] * p["M"] * p["Ho"] * p["Wo"] + p["N"] * (p["M"] // t["mi"]) * p["C"] * rows * cols


def _acda_datoms_generic_bytes(wl: Workload, p: dict, generic: Workload) -> Optional[int]:
    """Elements loaded by the generic acda.datoms' tiled schedules, or None where that build keeps
    the register tile. ``schedules.acda_cuda._datoms_block`` in tiles of r (``datoms_block_tile``:
    ops.acda DATOMS_ROWS, or one) rows x X_QUANTUM pixels (the build stages 'dOpad'): dO once
    (over the rows and heights padded to whole tiles: the loads past the image are masked,
    counted as an upper bound) and per block and channel the real elements of its window,
    (r-1)*s + (k-1)*d + 1 rows x (X_QUANTUM - 1)*s + (k-1)*d + 1 columns (at 8x64x56x56 k7
    float32, r = 2: 38.5 + 40.8 = 79.2 MB, 0.91x the static's 86.8; r = 1: 110.1 MB). ``_datoms_generic`` (over 1024 threads for
    that): a thread per (tap row, pixel of an X_QUANTUM tile) loads its mi values of dO per
    channel (dO k times in all, over the rows padded to whole tiles: the loads past Wo are
    masked, counted as an upper bound), and per block (image, atom group, output row, tile) and
    channel the real elements of its staged window, (k-1)*d + 1 input rows (the rows between
    the taps too, at d > 1) x (X_QUANTUM - 1)*s + (k-1)*d + 1 columns."""
    from schedules.acda_cuda import datoms_block_tile, datoms_generic_shape, generic_tiled

    from . import registry
    from .ops.acda import X_QUANTUM, whole

    func = registry.prim_func(generic)
    if not generic_tiled(generic, func):
        return None
    N, C, H, M, k, s, d, pad = (p[n] for n in ("N", "C", "H", "M", "k", "s", "d", "p"))
    wq = whole(p["Wo"])
    rows = sum(1 for y in range(p["Ho"]) for Y in range(y * s, y * s + (k - 1) * d + 1) if pad <= Y < pad + H)
    _, cols = _acda_real_windows(p, X_QUANTUM)
    if generic_tiled(generic, func, stage="dOpad_shared"):  # the block schedule: dO staged once, X once per tile
        r = datoms_block_tile(generic)["rows"]
        windows = sum(a * b for a, b in _acda_block_windows(p, r, X_QUANTUM))
        return N * C * M * whole(p["Ho"], r) * wq + N * C * windows
    mi = datoms_generic_shape(generic)["mi"]
    return N * k * C * M * p["Ho"] * wq + N * (M // mi) * C * rows * cols


def _acda_dx_bytes(wl: Workload, p: dict, generic: Optional[Workload] = None, arch: str = "sm_90") -> Optional[int]:
    """Elements loaded by acda.dx's atoms-in-registers schedule (``schedules.acda_cuda.dx_tile``;
    see :func:`requested_bytes`), or None where it keeps the shared-atoms one. ``generic``: the
    generic build's tiles (X_QUANTUM pixels, blocks of rows dividing ``ops.acda.DX_ROWS``,
    over the rows padded to whole DX_ROWS, where ``generic_tiled``); its windows past the image
    hold no dO element (not loaded). Not counted (either build): the staged windows copy whole
    phases of the run layout (q > 1: 20 columns per 14-column window row at 8x64x56x56 k7
    generic, 25 per 21 static), the extra columns neighbours' elements."""
    from schedules.acda_cuda import dx_tile, generic_tiled

    from . import registry
    from .target import cuda_target

    if generic is not None and not generic_tiled(generic, registry.prim_func(generic), cuda_target(arch)):
        return None
    t = dx_tile(generic if generic is not None else wl)
    if t is None:
        return None
    N, C, H, W, M, T, k, s, d, pad = (p[n] for n in ("N", "C", "H", "W", "M", "T", "k", "s", "d", "p"))
    e, tile = d * (k - 1), t["tile"]

    def real(Y: int, n_out: int) -> bool:  # a zero-inserted grid position holding a dO element
        return (Y - e) % s == 0 and 0 <= (Y - e) // s < n_out

    # the window of input rows h0 .. h0 + R - 1 (R = the block's rows, ``_dx_rows``): grid rows
    # h0 + pad .. h0 + R - 1 + pad + e. A generic build's blocks run over the rows padded to
    # whole DX_ROWS (``ops.acda``) and whole X_QUANTUM columns, their windows whole
    from .ops.acda import DX_ROWS, whole

    r = t.get("rows", 1)
    Hb, Wb = (H, W) if generic is None else (whole(H, DX_ROWS), whole(W))
    rows = sum(1 for h0 in range(0, Hb, r) for Y in range(h0 + pad, min(h0 + r, Hb) + pad + e) if real(Y, p["Ho"]))
    cols = sum(1 for w0 in range(0, Wb, tile) for X in range(w0 + pad, min(w0 + tile, Wb) + pad + e) if real(X, p["Wo"]))
    blocks = N * -(-Hb // r) * -(-Wb // tile)
    # P per block; per block the coefficients A of its window for every basis (staged once,
    # coalesced, then read from shared memory), and the dO window per channel chunk
    return blocks * T * k * k + N * M * T * rows * cols + N * C * M * rows * cols


def _pac_dw_tiled_bytes(wl: Workload, p: dict, generic: Optional[Workload] = None) -> Optional[int]:
    """Elements requested by the tiled pac.conv_dw schedule (see :func:`requested_bytes`), or
    None where it keeps a thread per output. ``generic``: the generic build's (its channel
    tiles as the static one's, ``generic_dw_parts`` parts over the batch's rows; the padding
    of a row to whole chunks is masked, not loaded). At 8x64x128x128 k5: 11 parts (16 static),
    scratch 2*11*64*64*25*4 B = 9 MB: 1.684 GB, 0.997x the static build's."""
    from schedules.pac_cuda import dw_rows, dw_tile, generic_dw_parts, generic_dw_tile, generic_tiled

    if generic is not None:
        from . import registry

        if not generic_tiled(generic, registry.prim_func(generic)):
            return None
        t = generic_dw_tile(generic)
    else:
        t = dw_tile(wl)
    if t is None:
        return None
    N, C, O, k, s, z, pad, d = (p[n] for n in ("N", "C", "O", "k", "s", "z", "p", "d"))
    n_o, n_c = -(-O // (t["ot"] * t["oi"])), -(-C // (t["ct"] * t["ci"]))
    pix = N * p["Ho"] * p["Wo"]

    def real(n_src: int, n_out: int) -> int:
        return _pac_real_pairs(n_src, n_out, p)

    rows = dw_rows(wl)
    parts = generic_dw_parts(generic) if generic is not None else N * -(-p["Ho"] // rows) if rows else 0
    return (pix * O * k * k * n_c + pix * k * k * n_o * n_c + N * C * real(p["H"], p["Ho"]) * real(p["W"], p["Wo"]) * n_o
            + 2 * parts * O * C * k * k)


def _pac_dk_generic_bytes(wl: Workload, p: dict, generic: Workload) -> Optional[int]:
    """Elements requested by the generic conv_dk build ``generic`` at static ``wl``'s sizes
    (``schedules.pac_cuda._conv_dk_generic_tiled``), or None where it is per-output: the static
    tiled count over its fixed tile (``generic_dk_tile``). Where it stages the source window
    (``generic_dk_staged``): per tile and input channel the X rows and columns under the
    tile's window (:func:`_x_windows`: the padded tail tile's whole window, X's elements only;
    at z = 1 exactly the static count's real elements), so at sizes that are whole tiles the
    static build's bytes. At 8x64x128x128 k5 O=64 float32 (4 x 32 tiles, 32 x 4 per image;
    windows of 8 x 36 grid positions, X rows 32*8 - 4 = 252, columns 4*36 - 4 = 140): dO
    33.6 MB + X 8*64*252*140*4 B = 72.3 MB + Wt 8*128*64*64*25*4 B = 419 MB + dK 13.1 MB =
    538 MB, 1.00x the static build's (6.7x the minimum); float64 1 x 32 tiles, as the static.
    Otherwise (per-tap loads, the fallback where the window does not compact:
    ``schedules.pac_cuda._window_pads``) the source per tap: X = N*C*Ty*Tx, the real (output,
    tap) pairs per axis as conv's: 823 MB at that shape, 1.29 GB in all, 2.4x (what the generic
    conv_dk did everywhere before); 1.75x at k4 s2 d1 C = O = 64 8x128² -> 64²."""
    from . import registry
    from schedules.pac_cuda import generic_dk_staged, generic_dk_tile, generic_tiled

    func = registry.prim_func(generic)
    if not generic_tiled(generic, func):
        return None
    t = generic_dk_tile(generic)
    N, C, O, k = (p[n] for n in ("N", "C", "O", "k"))
    pix, tiles = p["Ho"] * p["Wo"], -(-p["Ho"] // t["ty"]) * -(-p["Wo"] // t["tx"])
    if generic_dk_staged(generic, func):
        x = _x_windows(p["H"], p["Ho"], t["ty"], p) * _x_windows(p["W"], p["Wo"], t["tx"], p)
    else:
        x = _pac_real_pairs(p["H"], p["Ho"], p) * _pac_real_pairs(p["W"], p["Wo"], p)
    return N * O * pix + N * C * x + N * tiles * C * O * k * k + N * k * k * pix


def _x_windows(n_src: int, n_out: int, t: int, p: dict) -> int:
    """Source elements along one axis that the generic conv_dk's staged windows load, summed
    over its tiles of t outputs: tile y0's window covers grid positions y0*s .. (y0+t-1)*s +
    (k-1)*d (the whole padded tile), i.e. X rows floor((y0*s - pad) / z) .. floor(((y0+t-1)*s
    + (k-1)*d - pad) / z), of which those inside X (0 .. n_src-1) are loaded."""
    k, s, z, pad, d = (p[n] for n in ("k", "s", "z", "p", "d"))
    total = 0
    for y0 in range(0, n_out, t):
        lo, hi = (y0 * s - pad) // z, ((y0 + t - 1) * s + (k - 1) * d - pad) // z
        total += max(0, min(hi, n_src - 1) - max(lo, 0) + 1)
    return total


def _pac_dk_mma_parts(wl: Workload, p: dict, wx: int, ry: int = 1, window=None, tr: int = 1) -> dict:
    """Elements requested per buffer (dO, X, Wt, dK) by the tensor-core conv_dk at blocks of
    ry rows x 32*wx pixels (``schedules.pac_cuda._conv_dk_mma``, ``dk_mma_rows``; see
    :func:`requested_bytes`): Wt whole per block. X: with the source window staged
    (``dk_mma_window``) the real elements of each block's window per group of tr tap rows
    (``dk_mma_tap_rows``) and channel (rows: the real grid rows of the (ry-1)s + (tr-1)d + 1
    the window spans, the last group's past k included where they are real: the build stages
    them for the zero-weight taps; at tr = 1 the real (output row, tap row) pairs; columns: the
    real positions of the (32*wx-1)s + (k-1)d + 1 grid columns, :func:`_real_taps`), else each
    pixel's real taps. ``window`` None: ``dk_mma_window`` as built for sm_90."""
    from schedules.pac_cuda import dk_mma_window

    N, C, O, k = (p[n] for n in ("N", "C", "O", "k"))
    pix = p["Ho"] * p["Wo"]
    rows = _pac_real_pairs(p["H"], p["Ho"], p) if tr == 1 else _pac_dk_window_rows(p, ry, tr)
    if dk_mma_window(wl, wx) if window is None else window:
        cols = _real_taps(p["W"], p["Wo"], 32 * wx, k, *(p[n] for n in ("s", "z", "p", "d")))[1]
    else:
        cols = _pac_real_pairs(p["W"], p["Wo"], p)
    return {"dO": N * O * pix, "X": N * C * rows * cols, "Wt": N * pix // (32 * wx * ry) * O * C * k * k,
            "dK": N * k * k * pix}


def _pac_dk_window_rows(p: dict, ry: int, tr: int) -> int:
    """Real grid rows of the tensor-core conv_dk's windows over its blocks of ry output rows
    and its groups of tr tap rows (ceil(k / tr) groups; a window (ry-1)s + (tr-1)d + 1 rows,
    clipped to the grid)."""
    k, s, z, pad, d = (p[n] for n in ("k", "s", "z", "p", "d"))
    grid = (p["Ho"] - 1) * s + (k - 1) * d + 1

    def real(Y: int) -> bool:
        return Y < grid and (Y - pad) % z == 0 and 0 <= (Y - pad) // z < p["H"]

    return sum(1 for y0 in range(0, p["Ho"], ry) for g in range(-(-k // tr))
               for Y in range(y0 * s + g * tr * d, (y0 + ry - 1) * s + (g * tr + tr - 1) * d + 1) if real(Y))


def _pac_dk_tiled_bytes(wl: Workload, p: dict, arch: str = "sm_90") -> Optional[int]:
    """Elements requested by the tiled pac.conv_dk schedule for ``arch`` (see
    :func:`requested_bytes`), or None where it keeps a thread per output."""
    from schedules.pac_cuda import dk_mma_rows, dk_mma_tap_rows, dk_mma_tile, dk_mma_window, dk_tile

    from .target import cuda_target

    N, C, O, k, s, z, pad, d = (p[n] for n in ("N", "C", "O", "k", "s", "z", "p", "d"))
    wx = dk_mma_tile(wl, cuda_target(arch))
    if wx is not None:  # tensor cores: a block per ry rows of 32*wx pixels
        target = cuda_target(arch)
        ry = dk_mma_rows(wl, wx, target)
        parts = _pac_dk_mma_parts(wl, p, wx, ry, dk_mma_window(wl, wx, target), dk_mma_tap_rows(wl, wx, ry, target))
        return sum(parts.values())
    t = dk_tile(wl, cuda_target(arch))
    if t is None:
        return None
    ty_n, ry = _real_taps(p["H"], p["Ho"], t["ty"], k, s, z, pad, d)
    tx_n, rx = _real_taps(p["W"], p["Wo"], t["tx"], k, s, z, pad, d)
    pix = p["Ho"] * p["Wo"]
    return N * O * pix + N * C * ry * rx + N * ty_n * tx_n * C * O * k * k + N * k * k * pix


# -- the aims ------------------------------------------------------------------------------------
AIM_OCCUPANCY, AIM_ROOFLINE = 0.5, 1.5
_MMA = re.compile(r"\bmma\.sync|\bwmma\b|nvcuda::wmma")
_MMA_KIND = re.compile(r"\bmma\.sync\.aligned\.m\d+n\d+k\d+\.row\.col\.f32\.(tf32|f16|bf16)\.")


def mma_kind(src: str) -> Optional[str]:
    """The tensor-core operand type of a kernel's device code ('tf32', 'f16', 'bf16'; 'mma'
    for other tensor-core code), or None without tensor-core instructions."""
    m = _MMA_KIND.search(src)
    return m[1] if m else "mma" if _MMA.search(src) else None


def aim_peak(wl: Workload) -> float:
    """The compute peak of a kernel's roofline aim: PAC's convolution and its gradients are
    GEMMs (pixels x output channels x C*k^2) that belong on tensor cores: FP16/BF16 in the half
    types, TF32 in float32 where the workload carries the ``tf32`` flag (what a GPU runs while
    ``torch.backends.cudnn.allow_tf32`` is set). Float32 without the flag must keep float32
    products (issue 15 item 3: TF32 exactly when the flag is set; cuDNN's conv2d then leaves
    tensor cores too), so its roofline is the FP32 SIMT peak, as for the bandwidth-bound
    stencils of DDF and ACDA."""
    if wl.op == "pac" and wl.kernel in ("conv", "conv_dk", "conv_dw"):
        if wl.dtype in _SHORT:
            return BF16_TC
        if wl.dtype == "float32" and wl.p.get("tf32"):
            return TF32_TC
    return FP32_SIMT


def estimate_s(requested: float, flops_: float, uses_mma, bw: float = H100_BW) -> float:
    """Estimated time of a schedule: its requested bytes at full bandwidth, or its FLOPs at the
    peak of the units its code uses, whichever is longer (latency and occupancy ignored).
    ``uses_mma``: falsy (FP32 SIMT), 'f16' / 'bf16' (the FP16/BF16 tensor-core peak) or any
    other true value (TF32)."""
    peak = BF16_TC if uses_mma in ("f16", "bf16") else TF32_TC if uses_mma else FP32_SIMT
    return max(requested / bw, flops_ / peak)


def aims(r: dict) -> str:
    """'ok', or the aims a report row misses (spills, occupancy < 50%, estimate > 1.5x roofline)."""
    miss = []
    if r["spill"]:
        miss.append("spills")
    if r["occupancy"] < AIM_OCCUPANCY:
        miss.append("occupancy")
    if r["estimate"] > AIM_ROOFLINE * r["roofline"]:
        miss.append(f"{r['estimate'] / r['roofline']:.1f}x roofline")
    return "ok" if not miss else ", ".join(miss)


# -- resources from ptxas -----------------------------------------------------------------------
_PTXAS_FUNC = re.compile(r"Compiling entry function '(\w+)'")
_PTXAS_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_USED = re.compile(r"Used (\d+) registers")
_PTXAS_SMEM = re.compile(r"(\d+) bytes smem")


def ptxas_resources(cuda_source: str, arch: str, nvcc: str = "nvcc") -> Dict[str, dict]:
    """Per kernel: registers per thread, spill bytes, static shared memory, from nvcc -Xptxas -v."""
    with tempfile.TemporaryDirectory() as tmp:
        cu = Path(tmp) / "k.cu"
        cu.write_text(cuda_source)
        res = subprocess.run([nvcc, f"-arch={arch}", "-cubin", "-Xptxas", "-v", "-o", str(cu.with_suffix(".cubin")),
                              str(cu)], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"nvcc failed for {arch}:\n{res.stderr[-2000:]}")
    out, name = {}, None
    for line in res.stderr.splitlines():
        if m := _PTXAS_FUNC.search(line):
            name = m[1]
            out[name] = {"regs": 0, "spill": 0, "smem": 0}
        elif name and (m := _PTXAS_STACK.search(line)):
            out[name]["spill"] = int(m[2]) + int(m[3])
        elif name and (m := _PTXAS_USED.search(line)):
            smem = _PTXAS_SMEM.search(line)  # sm_90 puts a stack size between the two
            out[name]["regs"], out[name]["smem"] = int(m[1]), int(smem[1]) if smem else 0
    return out


def occupancy(arch: str, threads: int, regs: int, smem: int) -> float:
    """Theoretical occupancy (resident warps / 64) of a kernel on one SM."""
    warps = -(-threads // 32)
    limits = [BLOCKS_PER_SM, THREADS_PER_SM // (warps * 32)]
    if regs:
        per_warp = -(-regs * 32 // 256) * 256
        limits.append((REGS_PER_SM // per_warp) // warps)
    if smem:
        limits.append(SM[arch] // (-(-smem // 128) * 128 + 1024))
    return min(limits) * warps / WARPS_PER_SM


# -- the report ---------------------------------------------------------------------------------
def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f}"


def launch_resources(built: Workload, arch: str, sizes: Optional[dict] = None) -> List[dict]:
    """Per launch of ``built``'s CUDA build for ``arch`` (no GPU: ptxas and the lowered launch
    configuration; a generic build resolved at ``sizes``): launch (the kernel's name), threads,
    blocks (None for an unresolved generic build), regs, spill, smem (static + dynamic, per block), dyn, occupancy, mma."""
    from . import emulate
    from .build import build
    from .target import cuda_target

    target = cuda_target(arch)
    src = build(built, target).mod.imports[0].inspect_source()
    res = ptxas_resources(src, arch)
    mma = mma_kind(src)
    low = emulate.lower(emulate.scheduled(built, arch), target)
    out = []
    for ln in (emulate.resolve(low, sizes).launches if sizes else low.launches):
        threads = math.prod(ln.block)
        r = dict(res[ln.kernel])
        r["dyn"] = int(ln.dyn_shared)
        r["smem"] += r["dyn"]
        blocks = math.prod(ln.grid) if all(isinstance(g, int) for g in ln.grid) else None  # None: symbolic
        out.append(dict(r, launch=ln.kernel, threads=threads, blocks=blocks, mma=mma,
                        occupancy=occupancy(arch, threads, r["regs"], r["smem"])))
    return out


def rows(archs=("sm_90", "sm_80"), dtype: str = "float32", progress=None) -> List[dict]:
    from . import emulate

    out = []
    entries = [(layer, wl, None) for layer, wls in benchmark_workloads(dtype).items() for wl in wls]
    entries += [(layer, gwl, sizes) for layer, items in generic_workloads(dtype).items() for gwl, sizes in items]
    for layer, built, sizes in entries:
        # generic rows: the symbolic build (code, registers), at the layer's sizes (the rest)
        wl = emulate.concrete(built, sizes) if sizes else built
        if progress:
            progress(f"{layer}: {_label(wl)}")
        item = 2 if wl.dtype in ("float16", "bfloat16") else 4 if wl.dtype == "float32" else 8
        base = {"layer": layer, "kernel": _label(wl), "flops": flops(wl), "bytes": min_bytes(wl, item),
                "bytes_bf16": min_bytes(wl, 2)}
        base["roofline"] = max(base["bytes"] / H100_BW, base["flops"] / aim_peak(wl))
        for arch in archs:
            # schedules may differ per arch
            base["requested"] = requested_bytes(wl, item, arch, generic=built if sizes else None)
            for r in launch_resources(built, arch, sizes):
                row = dict(base, arch=arch, estimate=estimate_s(base["requested"], base["flops"], r["mma"]), **r)
                out.append(dict(row, aims=aims(row)))
    return out


def format_table(rs: List[dict]) -> str:
    head = ("| layer | kernel | arch | launch | threads | blocks | regs | spill B | smem B | occ. | "
            "min DRAM MB | GFLOP | H100 us | H200 us | H200 TF32 us | H200 BF16 us | requested MB | req/min | "
            "mma | no-cache est. H100 us | aim H100 us | aims |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rs:
        t = {bw: max(r["bytes"] / bw, r["flops"] / FP32_SIMT) for bw in (H100_BW, H200_BW)}
        tf32 = max(r["bytes"] / H200_BW, r["flops"] / TF32_TC)
        bf16 = max(r["bytes_bf16"] / H200_BW, r["flops"] / BF16_TC)
        lines.append(
            f"| {r['layer']} | {r['kernel']} | {r['arch']} | {r['launch']} | {r['threads']} | {r['blocks']:,} | "
            f"{r['regs']} | {r['spill']} | {r['smem']:,}{' dyn' if r.get('dyn') else ''} | {r['occupancy']:.0%} | {r['bytes'] / 1e6:,.1f} | "
            f"{r['flops'] / 1e9:,.2f} | {_us(t[H100_BW])} | {_us(t[H200_BW])} | {_us(tf32)} | {_us(bf16)} | "
            f"{r['requested'] / 1e6:,.0f} | {r['requested'] / r['bytes']:,.1f} | {r['mma'] or 'no'} | "
            f"{_us(r['estimate'])} | {_us(r['roofline'])} | {r['aims']} |")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", nargs="+", default=["sm_90", "sm_80"], help="CUDA archs (default: sm_90 sm_80)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run_cli(args: argparse.Namespace) -> int:
    progress = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_table(rows(tuple(args.arch), progress=progress)))
    print("\nEstimates from the generated code and the shapes, not measurements (no GPU ran). Per workload "
          "(repeated on each of its launches): min DRAM bytes, FLOPs, rooflines = max(min DRAM bytes / bandwidth, "
          "FLOPs / peak) with H100 SXM 3.35 TB/s, H200 4.8 TB/s, FP32 SIMT 67 TFLOP/s, TF32 495 and BF16 990 "
          "TFLOP/s dense tensor cores (BF16 with 2-byte data), and the schedule's requested bytes. no-cache est. = "
          "the schedule's time on an H100 if every requested byte came from DRAM (requested bytes / bandwidth or FLOPs / the peak of the units its code uses: "
          "tensor cores where it has mma instructions, TF32 or FP16/BF16 as the mma column says, else FP32 SIMT); "
          "aim = the H100 roofline of its aim (tensor cores for PAC conv/conv_dk/conv_dw: TF32 for the (tf32) rows, "
          "FP16/BF16 for the (f16)/(bf16) rows; FP32 SIMT otherwise, float32 without the tf32 flag included); aims: no spills, occupancy >= 50%, "
          "no-cache est. <= 1.5x aim.")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="dynfilter-tvm gpu-report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run_cli(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
