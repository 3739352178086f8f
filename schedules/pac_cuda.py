"""Default CUDA schedules for PAC. Except conv, conv_dk and conv_dw (below): one thread per
output element (x fastest: coalesced loads), the reduction in a register, padding and zero
insertion as index checks in the loads. Generic builds (symbolic sizes) of those bind the same
loops, the last block's tail predicated; conv, conv_dk and conv_dw have tiled generic builds
("Shape-generic kernels", at the end).

conv (static shapes): an implicit GEMM, M = pixels, N = output channels, K = C*k^2. A block
owns ty x tx output pixels of one image (tx up to 32, a warp's row) and ot*oi output channels;
per chunk of cc input channels (cc*k^2 about K_CHUNK) it builds the modulated taps xk = K * Sz
(cc x k x k x ty x tx, the B operand; padding and zero insertion are index checks in these
loads) and copies the Wt chunk (ot*oi x cc x k x k, the A operand; stored taps-major, so a
thread's oi weights of a tap are one vector load) into shared memory with
cooperative loads, then each thread (yt x tx x ot of them) accumulates a register tile of yi
rows x oi channels (4 x 8 in float32, 4 x 4 in float64) over the chunk: per tap oi Wt words
(broadcast within the warp) and yi xk words (consecutive across the warp) feed yi*oi FMAs.
The adaptive kernel K (the same for every channel) is staged once per block (k x k x ty x tx,
``_kernel_operand``; the adjoint's zero insertion decided in that copy) where that still
fits 50% occupancy (``_half_occupancy_shared``; else xk's prologue loads it per chunk, as it
did everywhere). Whole 4 x 8 tiles of 256 threads with one-channel chunks carry
``__launch_bounds__(256, 4)`` (``_bounded``, ``common.min_blocks``): ptxas otherwise took
64-80 registers.
8x64x128x128 k5 O=64 float32: 4 x 32 pixel tiles, ot*oi = 64, cc = 1 (25-deep chunks), 256
threads, 1,024 blocks, 32,000 B shared memory (xk 12.8 KB + K 12.8 KB + Wt 6.4 KB); ptxas
(sm_90 and sm_80, forward and adjoint): 64 registers, no spills, 4 blocks per SM: 50%
(unbounded: 65-80 registers, 38%). Requested bytes (gpu_report.requested_bytes) 1,289 MB
(X 823 + K 13 + Wt 419 + out 34; K was 839 MB, 2,115 in all): 385 us at the H100's 3.35
TB/s, under the 27.05 GFLOP at 67 TFLOP/s = 404 us, so the no-cache estimate is the FP32
SIMT roofline (was 631 us, 1.56x). Per tap and warp 2 Wt wavefronts (two ld.shared.v4,
broadcast) + 4 xk for 32 FMA instructions: 0.19 x 4 issue slots < 1, FMA-bound (estimates,
no GPU). At pac_joint_upsample-like shapes (32 channels, 64-px rows, k3 and k5 s2) and
C = O = 64 k3 / k7 (ptxas, sm_90 / sm_80, no bound): 64-80 registers, no spills (was 64-128,
with 24-56 B spilled at k3 adjoint). Chunks that cannot fit TILE_SHARED_BYTES (k >= 9 at 64 output channels on wide
images) keep one thread per pixel and block of output channels (CONV_CHANNEL_BLOCK), each
modulated tap loaded once for the block.
conv on tensor cores (float16 and bfloat16 always; float32 with the workload flag ``tf32``,
which the bridge sets on CUDA while torch.backends.cudnn.allow_tf32 is True; sm_80+, static,
O % 16 = Wo % 16 = 0 and C % K = 0, K = 8 channels in TF32, 16 in the half types): the same
GEMM with M = output channels, N = pixels, K = C*k^2 taken K channels of one tap at a time. A
block owns ry output rows (2 where the stride is 1, ``mma_tile``) of 16*wx*xm pixels x 16*wo
channels (2 x 4 x 4 warps of two 16 x 16 tiles each: 64 channels x 2 x 128 pixels); per
chunk of K channels the block stages the chunk's source window once for all tap rows (K
channels x the rows' grid rows plus the halo, the tile's width plus the halo: padding and
zero insertion decided once per element here), then per tap builds that tap's xk from it (a
thread per pixel: its K word loaded once for the K channels, no bounds check, the K results
contiguous; in the half types gathered in registers and stored as two 16-byte vectors) laid
out (y, x, c) in the input's type (the compute rounds K*X to the half types:
``dynfilter_tvm.ops.pac.conv``), each warp loads its B fragments with ldmatrix.x4, the block
stages the tap's Wt laid out (o, c) (K innermost: rows for ldmatrix; in xk's space, dead by
then), rows of both padded from 32 to 48 bytes (``_padded_row``: conflict-free ldmatrix and
xk stores), each warp loads A and issues two mma.sync per tile
(m16n8k8 TF32, or m16n8k16 f16/bf16; float32 accumulators in registers), all through TVM's
tensorize with this module's intrinsics. With one row per block results go through shared
memory (n, y, o, x) to coalesced stores (the half types cast in the fragment store, so their
staging is 16-bit too), with two straight from the fragments to the output (``mma_staged``).
TF32 rounds operands to 10-bit mantissas in the hardware: a schedule choice the workload
carries, so it has its own cache entries. Where the stages would pass 48 KB of static shared
memory (``mma_shared_bytes``) the block takes fewer warps along x, except for the wide tile
(``MMA_WIDE``: 64 output channels, Wo % 128 = 0, Ho % 4 = 0, stride 1): 4 rows of 128 pixels,
2 x 4 x 4 warps of four 16 x 16 tiles (32 accumulators a thread, a B fragment loaded per tile),
its stages in dynamic shared memory (up to the arch's per-block maximum,
``mma_dyn_shared_limit``; TVM's CUDA runtime sets the >48 KB opt-in attribute at launch),
with the block's adaptive kernel K (k*k x its pixels; the adjoint's Kz, its padding and zero
insertion decided in that copy) staged once for every chunk where it fits (``mma_tile``'s
``ks``), where it was loaded per chunk.
8x64x128x128 k5 O=64 (wide tile, K staged): 256 blocks of 1,024 threads; dynamic shared
memory 87,040 B half (the 8 x 132 window of 16 channels 33.8 KB, xk 512 rows x 48 B = 24.6 KB,
Wt 3 KB, K 25 x 512 x 2 B = 25.6 KB), 112,640 B TF32 (K 51.2 KB; sm_80 and sm_90 hold it,
sm_86/89's 99 KB keep the 61,440 B tile, K per chunk); ptxas (sm_90 / sm_80): 64 registers,
no spills: one block per SM, 32 of 64 warps, 50% theoretical occupancy. Requested bytes
(``_conv_mma``), forward and input gradient alike: f16/bf16 109 MB (no-cache est. 32.5 us,
1.19x the 27.3 us aim; was 128 MB, 1.40x, and the input gradient's 2-row tile 197 MB, 2.2x),
TF32 218 MB (65 us, 1.19x the 54.6 us; was 309 MB, 1.69x).
The one-row kernel's shared-memory estimate (about 250 us TF32, 142 us half: ldmatrix alone
3x the tensor-core time at 16 x 32 warp tiles, which this kernel keeps) still bounds it.
At pac_joint_upsample's (factor 4) shapes, 256-thread blocks: no spills, 40-64 registers,
50-75% (ptxas, sm_80 and sm_90, every tensor-core conv of the model); the half types' window
copy unrolls its rounds in groups of at most ``WINDOW_ROUNDS`` (all 6 at 65x64 k3 had spilled
8 bytes on sm_90 with 40 registers), ``WINDOW_ROUNDS_KS`` beside the K copy.
Executed on PoCL with ldmatrix/mma emulated, the half types on 16-bit words
(dynfilter_tvm.emulate).
conv_dk (static shapes, k <= UNROLL_TAPS): the same tap rule as a GEMM per pixel tile, G[c,
tap, pixel] = sum_o Wt[o, c, tap] dO[o, pixel] (M = taps, N = pixels, K = O), then dK = sum_c
Sz(tap) G (see ``_conv_dk_tiled``). A block owns ty x tx pixels of one image (tx up to 32, a
warp's row; ty = yt thread rows x yi register rows), a thread one tap row i and yi pixels of a
column: k x yi values of G and of dK in registers. The dO tile (O x ty x tx) is staged once
per block; per input channel the source window (padding and zero insertion as index checks in
this copy) and Wt[:, c] (O x k x k, each tap row of an output channel padded to 4 words so that
nvcc reads a thread's k weights as one ld.shared.v4 + one scalar, both warp-uniform; not in
float64, where that took 94 registers). 8x64x128x128 k5 O=64 float32: 4 x 32 tiles (yt = yi
= 2), 320 threads, 44,160 B shared memory, 1,024 blocks; ptxas sm_90 47 registers, no
spills, 62% occupancy. sm_80's ptxas took 64 registers for that tile (3 blocks of 10 warps:
47%), as did both archs in the half types (62-63), so those take 1-row register tiles
(DK_REG_Y_SMALL: 2 x 32 tiles, yt = 2, yi = 1, 2,048 blocks, 27,520 B in float32, 13,760 B
in the half types): 47-48 registers, no spills, 4 blocks per SM, 62%; per o and warp 2 Wt
wavefronts + 1 dO for 5 FMA instructions, so 13.4 G / 32 / 5 * 3 = 251 M wavefronts / 132
SMs = 1.90 M clk = 962 us at 1.98 GHz on an H100 (1.5x the 2-row tile's 642 us; requested
994 MB in float32, 12.3x, Wt read per 2-row tile). float64 shrinks the tile to 1 x 32 (yt =
yi = 1; 64 registers on sm_90, 47%; sm_80 68, 39%). Estimate (no GPU: arithmetic): 13.4 G FMAs (G) on FP32 SIMT = 401
us at 67 TFLOP/s; shared memory per o and warp (the PTX's loop body): 2 warp-uniform Wt loads
(v4 + scalar, one wavefront each) + yi = 2 dO words (one each) for k*yi = 10 FMA
instructions: 13.4 G / 32 / 10 * 4 = 168 M wavefronts / 132 SMs = 1.27 M clk = 642 us at
1.98 GHz, 1.6x the FMA time (5 scalar Wt loads: 7 wavefronts, 1.1 ms); larger register
tiles exceeded 64 registers (4 rows: 93). Requested bytes
538 MB (gpu_report.requested_bytes), mostly Wt re-read per tile from L2: 161 us at DRAM
bandwidth. Was a thread per output loading Wt and dO for every (channel, output channel):
128 registers, 25% occupancy, 108 GB requested (32 ms at DRAM bandwidth without caches).
Otherwise a thread per output forms G one input channel at a time.
conv_dk on tensor cores (float16 and bfloat16 always, float32 with the workload flag ``tf32``
as conv; sm_80+, static, O % 16 = C % 16 = Wo % 32 = 0; ``_conv_dk_mma``): the half types'
products are exact in float32, so mma.sync m16n8k16 with f32 accumulators computes the
compute's G (float32) up to summation order; TF32 (m16n8k8, 8 output channels per K step)
rounds G's operands to 10-bit mantissas, the rounding the flag allows. A block owns
a row of 32*wx pixels, 2*wx warps of one 16-pixel tile each (8 warps at 128-pixel rows),
stages its dO tile once ((x, o), rows padded by 16 bytes: conflict-free ldmatrix B), and per
tap and chunk of 16 input channels Wt (c, o) (the A rows); each warp forms its 16 x 16 tile of
G over O by ldmatrix.x4 + mma.sync, stores it to shared memory (float32, laid out (x, c), a
pixel's 16 channels padded to 20 words), and two threads per pixel (DK_MMA_HALVES,
threadIdx.z) each add sum_c Sz G over 8 of the chunk's channels to their own register (G read
as two 16-byte vectors, the source from global memory); per tap the two sums meet in shared
memory (1 KB, in the Wt chunk's space) and the pixel's total is stored. The half types
(where it fits 48 KB: ``dk_mma_window``) take the chunks outside the tap columns and stage
the source window once per tap row and chunk, the dots reading it from shared memory, and
take blocks of ry output rows where the SM fits DK_MMA_MIN_WARPS of them (``dk_mma_rows``:
the weight read once per ry rows; over 48 KB every stage in dynamic shared memory): at
8x64x128x128 k5 O=64 4 rows, 1,024 threads, 154,368 B, 63 registers under
__launch_bounds__(1024, 1), no spills, 50% on sm_90 and sm_80; requested 158.9 MB (one row:
316, the weight 210 -> 52 MB; per tap: 645), no-cache est. 47 us = 1.7x the roofline (one
row 94 us, 3.4x; per tap 192 us, 7.0x); the source window's 83 MB is the largest part left.
Per tap (TF32, and before the window):
8x64x128x128 k5 O=64: 1,024 blocks of 256 threads, 30,976 B shared memory; ptxas 48
registers on sm_90 and sm_80, no spills: 5 blocks of 8 warps, 62.5% (registers and, on
sm_80, shared memory). (4 warps of two 16-pixel tiles sharing their A fragment, a thread per
pixel in the dot, took 68 / 75 registers: 7 blocks, 44% on sm_90, 5 blocks by shared memory,
31% on sm_80; TVM 0.27 emits __launch_bounds__ without a minimum of blocks.)
Estimated (no GPU: arithmetic in ``_conv_dk_mma``) about 179 us, shared-memory bound, 6.5x
the 27.5 us BF16 roofline (the 4-warp blocks: 149 us, their A fragment loaded once for two
tiles, but at 31-44% occupancy; the SIMT kernel: about 962 us at these tiles, 642 us at
float32's). TF32 per tap (sm_86/89, C % 32 != 0): the same 1,024 blocks, 45,056 B (dO rows
of 64 + 4 floats; G, Wt and the sums in one space), ptxas 48 registers on sm_90 (62%), 76 on
sm_80 (38%), no spills; about 287 us shared-memory bound, 1,289 MB requested. TF32 with the
window (sm_90, sm_80; C % 32 = 0): 32-channel chunks, two warps per 16-pixel tile (one per
16-channel M tile) and four threads per pixel in the dot (``dk_mma_halves``), blocks of 2
rows, 1,024 threads, 160,768 B dynamic, <= 64 registers (sm_90 64) under __launch_bounds__(1024, 1),
no spills, 50% on both; requested 422.6 MB, no-cache est. 126 us (2.3x the 55 us TF32
roofline), shared-memory bound est. 331 us (about even with the per-tap build's 314-345).
conv_dw (static shapes): split-K over bands of output rows, partial sums in global scratch,
then a second kernel adding them (see ``conv_dw``); each part a GEMM per tap, dWt[o, c] +=
dO[o, px] (K[px] Sz[c, px]) over its pixels (``_conv_dw_tiled``): a block per (output-channel
tile, input-channel tile, tap, part), 16 x 16 threads with 4 x 4 sums in registers; per chunk
of 32 pixels of a row it stages dO (laid out pixel-major: a thread's 4 channels are one
ld.shared.v4), K and the source at its tap, and each thread does per pixel 16 FMAs (plus 4
multiplies K * Sz) on two vector loads and one broadcast. 8x64x128x128 k5 O=64 float32: one
64 x 64 channel tile, 25 taps x 16 parts = 400 blocks of 256 threads, 16,512 B shared
memory; ptxas 40 registers, no spills, 75% occupancy (sm_90 and sm_80; the adding kernel 29-31
registers). Estimate (arithmetic, no GPU): 13.4 G terms x 1.25 instructions / 32 lanes =
524 M warp instructions / (132 SMs x 4 per clk) = 0.99 M clk = 501 us at 1.98 GHz; shared
memory per pixel and warp 4 wavefronts (dO: 2 distinct channel groups, broadcast; source: 16
distinct 16-byte groups, 2; K: 1) for 5 issue clocks: FMA-bound. 400 blocks fill 3 per SM
(24 of 64 warps), the 16 independent sums per thread covering the FMA latency. Requested
bytes 1.69 GB, 20.9x the minimum (was 161 GB, 1,998x: dO, K and the source per term of
every output, 32 + 29 registers).

Shape-generic kernels (N, H, W, Ho, Wo symbolic; ``GENERIC_TILED``): conv, conv_dk and conv_dw
take the static schedules above with a fixed tile, one build serving every size. TVM sizes a
shared or local stage from the region its tile touches and clips it to the staged buffer's
extent; over a symbolic output that gives ``T.min(Ho, 4)`` rows, a non-constant allocation
that codegen refuses (what kept the first generic kernels per-output). So the sums run over
whole tiles: ``pad_einsum`` pads the output (conv, conv_dk: rows to the tile height, columns
to its width; conv_dw: each row to whole chunks) with producers read as zeros past the real
extent and results never stored there, and every staged buffer then has an extent that is a
multiple of the tile and of the grid, so each tile's region fits provably (constant stages,
checked per build: ``common.if_constant``, else the per-output schedule). conv_dk and conv_dw read
the source at shifted taps, which ``pad_einsum`` refuses: ``reindex`` first turns that read
into a plain operand indexed by the sum's own iterators.
conv (``_conv_generic_tiled``, ``generic_conv_tile``): conv_tile's geometry of a wide image
(TILE_X-pixel rows, REG_Y-row register tiles, fewer rows where the chunk would pass
TILE_SHARED_BYTES), the grid ceil-divided over the output (blockIdx.x tile columns, .y tile
rows, .z images x output-channel tiles: no block index divided by a run-time extent). SIMT in
every dtype: no tensor cores (``generic_serves`` keeps the configurations where a static build
may take them static). K is staged once per block where the static tile would stage it
(``_fit_tile``'s ks): ``_kernel_operand`` copies it (Kz's zero insertion decided in the copy)
into a shared buffer that ``pad_einsum`` pads to whole tiles (zeros past the output), so the
stage compacts to one tile (clipped to the symbolic extent, it had no constant size). Where
cc = 1, xk's copy keeps the tap columns serial around rounds over (i, y, x) (the static build:
tap rows serial), which ptxas fits in 64 registers under the launch bounds (in the static
order it spilled 8 B on sm_80's forward; the spill came and went with single terms of the
source's bounds check). 8x64x128x128 k5 O=64 float32, forward and adjoint: 4 x 32 tiles, 256
threads, 1,024 blocks, 32,000 B shared memory (xk 12.8 KB + K 12.8 KB + Wt 6.4 KB), ptxas 64
registers on sm_90 and sm_80, no spills, 50% occupancy; requested 1,289 MB (was 2,115 / 2,099
MB with K per chunk: 25 x 128^2 x 8 x 64 x 4 B = 839 MB of K, now 13 MB), the static build's:
385 us at 3.35 TB/s < 404 us of FP32 FMAs, so the no-cache estimate is the roofline (1.00x;
was 631 us, 1.56x). Unbounded, registers vary with the configuration (48-128 at C, O in 2-70,
k 2-7, float32 and float64, none spilling; C = O = 64 k3 float32 with K staged: 97 / 85).
conv_dk (``_conv_dk_generic_tiled``, ``generic_dk_tile``): dk_tile's geometry (4 x 32 pixels,
320 threads at k = 5), G's sum padded (its dO tile staged once per block, O x ty x tx) and the
tap sum padded; per input channel the source window is staged as the static build's
(``_staged_window``): a copy of Sz (padding, crop and zero insertion decided in the copy) whose
buffer ``pad_einsum`` pads to whole multiples of the window, so that TVM proves the window
inside its extent and compacts the stage to one window ((ty-1)*s + (k-1)*d + 1 rows x (tx-1)*s
+ (k-1)*d + 1 columns: 8 x 36 at k5); a tail tile's window past the padded grid is left
unwritten and never read (its taps belong to padding pixels, zeros). Where no padding tried
compacts (``_window_pads``: TVM's simplification of the padded extent, int32 overflows in its
bounds; k2 s1 d1, k4 s2 d1, C = O = 64 k3 in float64), each thread loads its k x yi taps per
channel instead (per tap, coalesced along x). float32 at k5 s1 d1, O a multiple of 32
(``_dk_generic_bound``): Wt[:, c] staged o-major ((i, j, o), unpadded; ``_dk_finish``), copied
whole output channels per round (``_dk_wt_copy_rows``), the G loop (o/4, j, o%4, yi): a tap's
weights of 4 output channels one aligned vector (a broadcast), so per 4 channels a warp issues
k vector + 4*yi dO shared loads for 4*k*yi FMAs (k5, yi = 2: 13 wavefronts per 40 FMA
instructions, 3.25 per 10; the padded tap rows, per channel 2 vector loads for 5 weights + 2 dO
words: 4 per 10; counted in the SASS of the G loop, cuobjdump), under __launch_bounds__ of the
fewest blocks for 50% occupancy. 8x64x128x128 k5 O=64 float32: 40,320 B shared memory (padded:
44,160 B, the static build's), __launch_bounds__(320, 4), ptxas 48 registers on sm_90 and sm_80,
no spills, 62% (padded and unbounded: sm_90 48, sm_80 62 registers: 3 blocks, 47%; the padded
stage under the bound spilled 12 B); requested 538 MB, 1.00x the static build's (X 72 MB in its windows; per
tap it was 823 MB, 1.29 GB in all: 2.4x), so CUDA calls take the generic build by default where
it stages (``generic_serves``); float64 1 x 32 tiles as the static, 56 / 91 registers. Per-tap
at k4 s2 d1 C = O = 64 8x128² -> 64²: 1.75x the static build's bytes (static by default).
conv_dw (``_conv_dw_generic_tiled``, k > 1): dw_tile's channel tiles, 32-pixel chunks; split-K over
``generic_dw_parts`` fixed parts of the batch's N*Ho rows (about SPLIT_K_THREADS partial sums,
at most GENERIC_DW_PARTS; parts past the rows stay zero), so the scratch (parts x O x C x k^2)
is constant. 8x64x128x128 k5: 11 parts of 94 rows, 275 blocks of 256 threads, 40 registers,
16,512 B, no spills; 1.684 GB requested, 0.998x the static build's (16 parts).
Executed on PoCL from one lowering at 6 sizes, float32 and float64, blocks in reverse order too
(tests/test_generic_pac.py); arithmetic in gpu_report (``_pac_conv_tiled_bytes``,
``_pac_dk_generic_bytes``, ``_pac_dw_tiled_bytes``); estimates, no GPU.
"""
from __future__ import annotations

import functools

from . import register
from tvm import tirx

from .common import MAX_THREADS, UNROLL_TAPS, extent, if_constant, min_blocks, register_acc, threads_for, unroll, unroll_taps

CONV_CHANNEL_BLOCK = 8  # output channels per thread


def bind_flat(sch, loops):
    """``common.bind_flat``; a symbolic extent (generic build) takes MAX_THREADS threads, the
    tail predicated."""
    fused = sch.fuse(*loops)
    n = sch.get(fused).extent
    bx, tx = sch.split(fused, [None, threads_for(int(n)) if isinstance(n, tirx.IntImm) else MAX_THREADS])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    return tx


def _inline(sch, *names) -> None:
    for name in names:
        sch.compute_inline(sch.get_sblock(name))


def _modulated_stages(wl):
    """The stages inlined into a conv/pool sum: the adjoints also zero-insert the kernel."""
    return ("Sz", "Kz", "xk") if wl.p["a"] else ("Sz", "xk")


def _thread_per_output(sch, n_spatial: int, taps=()):
    """Bind the first n_spatial loops of 'acc' over the grid; the rest is the thread's sum."""
    acc = sch.get_sblock("acc")
    loops = sch.get_loops(acc)
    tx = bind_flat(sch, loops[:n_spatial])
    red = loops[n_spatial:]
    if red:
        register_acc(sch, acc, red[0], tx)
    else:
        sch.reverse_compute_at(sch.get_sblock("out"), tx)
    return acc


# -- conv: an implicit GEMM over pixel tiles x output-channel tiles ---------------------------
TILE_X = 32  # threads along x: a warp reads one row of a staged plane (no bank conflicts)
PIXEL_THREADS = 32  # threads per output-channel slice (narrow images: several rows)
REG_Y = 4  # rows of a thread's register tile (contiguous: the cast stage writes exactly those)
CHANNEL_THREADS = 8  # threads along output channels
K_CHUNK = 32  # target reduction chunk (channels x taps) staged per step
TILE_SHARED_BYTES = 24 * 1024  # shared memory the staged chunk may take per block (occupancy)
SM80_SHARED = 164 * 1024  # shared memory per SM on sm_80 (sm_90: 228 KB)


def _reg_o(dtype: str) -> int:
    """Output channels of a thread's register tile (half the float32 count in float64)."""
    return 4 if dtype == "float64" else 8


def conv_tile(wl):
    """The tiled conv's geometry for a static workload: dict(ty, tx, yt, yi, ot, oi, cc, ks)
    (pixel tile ty x tx; threads yt x tx x ot; register tile yi x oi; cc input channels per
    chunk; ks: K staged once per block), or None where the staged chunk cannot fit
    TILE_SHARED_BYTES (huge k: thread per output)."""
    p = wl.p
    if wl.kind != "static":
        return None
    tx = min(TILE_X, p["Wo"])
    yi = min(REG_Y, p["Ho"])
    return _fit_tile(wl, tx, yi, max(1, min(PIXEL_THREADS // tx, -(-p["Ho"] // yi))))


def _fit_tile(wl, tx: int, yi: int, yt: int):
    """``conv_tile`` / ``generic_conv_tile`` for pixel threads yt x tx: the channel split, the
    register rows yi cut until the xk and Wt chunks fit TILE_SHARED_BYTES (None if none), and
    ``ks``: whether the tile's K (k^2 x ty x tx) fits beside them at 50% occupancy."""
    p = wl.p
    C, O, k2 = p["C"], p["O"], p["k"] ** 2
    item = 8 if wl.dtype == "float64" else 4
    oi = min(_reg_o(wl.dtype), O)
    ot = min(CHANNEL_THREADS, -(-O // oi))
    cc = max(n for n in range(1, C + 1) if C % n == 0 and (n == 1 or n * k2 <= K_CHUNK))

    def shared(yi_, ks=0):  # xk chunk + Wt chunk (+ the tile's K, ``_kernel_operand``)
        return ((cc + ks) * k2 * yi_ * yt * tx + ot * oi * cc * k2) * item

    while shared(yi) > TILE_SHARED_BYTES and yi > 1:
        yi -= 1
    if shared(yi) > TILE_SHARED_BYTES:
        return None
    # K staged where the block still fits 50% occupancy with it (sm_80's shared memory)
    ks = shared(yi, 1) <= _half_occupancy_shared(ot * yt * tx)
    return dict(ty=yi * yt, tx=tx, yt=yt, yi=yi, ot=ot, oi=oi, cc=cc, ks=ks)


def _half_occupancy_shared(threads: int) -> int:
    """Static shared memory a block of ``threads`` may take so that blocks filling half of
    an SM's 2,048 threads fit sm_80's 164 KB (1 KB of it reserved per block), at most 48 KB."""
    blocks = min(32, max(1, 1024 // threads))  # (at most 32 resident blocks per SM)
    return min(48 * 1024, SM80_SHARED // blocks - 1024)


def _cooperative(sch, block, loop, threads: int, serial: int = 0, lead: int = 0) -> None:
    """Stage ``block`` (already in shared scope) at ``loop``, its loops fused and spread over
    the block's ``threads``; ``serial``: that many leading loops stay serial around them,
    the ``lead``-th loop moved first."""
    sch.compute_at(block, loop)
    loops = sch.get_loops(block)
    at = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(loop)))
    loops = loops[at + 1:]  # compute_at made none for unit-extent axes
    if lead:
        loops.insert(0, loops.pop(lead))
        sch.reorder(*loops)
    loops = loops[serial:]
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0] if loops else sch.add_unit_loop(block)
    _, tx = sch.split(fused, [None, threads])
    sch.bind(tx, "threadIdx.x")


def _conv_tile_loops(sch, acc, t) -> tuple:
    """The tiled conv's loops of ``acc`` in their order: (n, ob, yb, xb) the block, (ot, yt, xt)
    the thread, (co, ci, i, j) the reduction in chunks of cc channels, (oi, yi) the register
    tile."""
    n, o, y, x, c, i, j = sch.get_loops(acc)
    ob, ot, oi = sch.split(o, [None, t["ot"], t["oi"]])
    yb, yt, yi = sch.split(y, [None, t["yt"], t["yi"]])
    xb, xt = sch.split(x, [None, t["tx"]])
    co, ci = sch.split(c, [None, t["cc"]])
    order = (n, ob, yb, xb, ot, yt, xt, co, ci, i, j, oi, yi)
    sch.reorder(*order)
    return order


def _conv_finish(sch, wl, acc, co, thr, threads: int, oi, yi, j) -> None:
    """The tiled conv's tail, static and generic alike: the Wt chunk staged per chunk ``co``,
    the oi x yi register tile unrolled (and the taps ``j`` where short), each thread storing
    its own outputs."""
    wt = sch.cache_read(acc, 0, "shared")
    # taps-major, output channels innermost: a thread's oi weights of a tap are contiguous, so
    # nvcc reads them as vectors (ld.shared.v4) instead of oi scalar loads
    sch.transform_layout(wt, ("write", 0), lambda o, c, i, j_: (c, i, j_, o))
    _cooperative(sch, wt, co, threads)
    unroll(sch, oi, yi)
    unroll_taps(sch, wl, j)
    sch.set_scope(acc, 0, "local")
    sch.decompose_reduction(acc, co)
    sch.reverse_compute_at(sch.get_sblock("out"), thr)
    if _bounded(wl, threads):
        min_blocks(sch, 4)  # 64 registers: 4 blocks of 256 threads per SM


BOUNDED_THREADS = 256


def _bounded(wl, threads: int) -> bool:
    """Whether the tiled conv asks for ``__launch_bounds__(256, 4)`` (``common.min_blocks``): ptxas
    then keeps 64 registers, 50% occupancy. Only for whole 4 x 8 register tiles over 256
    threads and one input channel per chunk (k = 4..5 in float32: ``_fit_tile``), where the 32
    accumulators, 8 weights and 4 taps fit 64 registers but ptxas took 64-80 unbounded and 64
    without spills bounded (8x64x128x128 k5 O=64 forward, adjoint, s2, generic; sm_90 and
    sm_80). Elsewhere the bound did harm: at k3 (2-channel chunks) ptxas spilled 60-196 B
    under it (even where it took 56-64 registers unbounded), at 128-thread blocks (O = 32) 48
    B, and at k7 (1-row tiles) it took 64 registers where 48 sufficed (62% occupancy)."""
    t = conv_tile(wl) if wl.kind == "static" else generic_conv_tile(wl)
    return (threads == BOUNDED_THREADS and t["cc"] == 1 and t["yi"] == REG_Y
            and t["oi"] == 8 and t["ot"] * t["oi"] >= 64)


def _conv_tiled(sch, wl, t) -> None:
    """A block per (n, ot*oi output channels, ty x tx pixels), a thread per (o slice, row
    slice, column) keeping yi x oi accumulators. Per chunk of cc input channels the block
    builds the modulated taps xk (cc x k x k x ty x tx: the GEMM's B operand, K times the
    source, padding and zero insertion as index checks) and copies the Wt chunk (its A
    operand) into shared memory; each thread then runs its register tile over the chunk."""
    if t["ks"]:
        kr = _kernel_operand(sch, wl)
    else:
        _inline(sch, *_modulated_stages(wl)[:-1])  # Sz (Kz): read by the xk prologue only
    acc = sch.get_sblock("acc")
    n, ob, yb, xb, ot, yt, xt, co, ci, i, j, oi, yi = _conv_tile_loops(sch, acc, t)
    blk = sch.fuse(n, ob, yb, xb)
    thr = sch.fuse(ot, yt, xt)
    sch.bind(blk, "blockIdx.x")
    sch.bind(thr, "threadIdx.x")
    threads = t["ot"] * t["yt"] * t["tx"]
    xk = sch.get_sblock("xk")
    sch.set_scope(xk, 0, "shared")  # before compute_at: the staged region covers the whole tile
    # both copies with their first loop (xk: channels, or tap rows where cc = 1; K: tap rows)
    # serial around the spread copy: ptxas then fit 64 registers without spills under the
    # launch bounds on sm_90 and sm_80 (with flat copies: 32 B spilled on sm_90); at k3 in
    # 2-channel chunks the tap rows too (``_xk_serial``)
    _cooperative(sch, xk, co, threads, serial=_xk_serial(wl, t))
    if t["ks"]:
        sch.set_scope(kr, 0, "shared")
        _cooperative(sch, kr, thr, threads, serial=1)  # once per block: K is the same for every channel
    _conv_finish(sch, wl, acc, co, thr, threads, oi, yi, j)


def _xk_serial(wl, t) -> int:
    """Loops of the xk copy (channels, tap rows, tap columns, rows, columns of the chunk) kept
    serial around the part spread over the threads: the channels, and at k3 in 2-channel chunks
    (cc = 2: even C) the tap rows too. With the tap rows spread as well, nvcc unrolled the copy's
    rounds and kept each round's tap offsets (divisions by k, and in the generic build the
    products with the symbolic widths) in registers across the chunk loop: C = O = 64 k3, ptxas
    (nvcc 13), sm_90 / sm_80, forward and adjoint: generic float32 97 / 85 -> 66 / 75-79
    registers (2 -> 3 blocks of 256 threads per SM: 25% -> 37.5%), static float32 72-73 / 80 ->
    65-66 / 74-80, static float64 78 / 80-116 -> 62-66 / 62-70 (sm_90 forward 3 -> 4 blocks,
    sm_80 2 -> 3 blocks); generic C = 64, O = 70: 80 registers with 16 B spilled -> 63, none
    (benchmarks/RESULTS.md "PAC CUDA conv at k3: the xk copy's tap rows serial"). In 3-channel
    chunks (C = 6, 3) ptxas went either way (C = 6, O = 70: 80 registers -> 64 with 24-32 B
    spilled on sm_90), so they keep the channels alone, as do the other kernel sizes with 2-channel
    chunks (k4 at even C, some k1 and k2: not measured). The copy's rounds then cover a tap row
    of a channel: at k3, 256 threads, 12 rounds per chunk (two per tap row, the second half
    full) where there were 10."""
    return 2 if t["cc"] == 2 and wl.p["k"] == 3 else 1


def _kernel_operand(sch, wl, pad=None):
    """Sz (and Kz) inlined into xk, and xk's read of the adaptive kernel turned into a plain
    operand indexed by (n, i, j, y, x) (``reindex``; Kz's zero insertion and padding decided
    in that copy): the block the tiled conv stages once per tile, where xk re-read K per
    chunk of channels (C / cc times). ``pad`` (ty, tx; the generic build): that copy runs over
    (Ho, Wo) rounded up to whole tiles, zeros past the output (``pad_einsum``), so that its
    stage compacts to one tile (a tile clipped to the symbolic extent is no constant size)."""
    sch.compute_inline(sch.get_sblock("Sz"))
    xk = sch.get_sblock("xk")
    kname = "Kz" if wl.p["a"] else "K"
    kr = sch.reindex(xk, ("read", _read_index(sch, xk, kname)))
    if wl.p["a"]:
        sch.compute_inline(sch.get_sblock("Kz"))
    if pad is None:
        return kr
    # a shared copy of the operand (a plain copy: ``pad_einsum`` takes it, where the adjoint's
    # shifted read of Kz was no einsum), padded; K (Kz) and the padding inline into the copy
    copy = sch.cache_read(xk, _read_index(sch, xk, sch.get(kr).writes[0].source.name), "shared")
    sch.pad_einsum(copy, [1, 1, 1, *pad])
    while sch.get_producers(copy):
        sch.compute_inline(sch.get_producers(copy)[0])
    while not sch.get(sch.get_consumers(copy)[0]).same_as(sch.get(xk)):
        sch.compute_inline(sch.get_consumers(copy)[0])  # the copy back to (Ho, Wo)
    return copy



def generic_conv_tile(wl):
    """The generic (symbolic N, Ho, Wo) conv's fixed tile: the static geometry of a wide image
    (rows of TILE_X pixels, REG_Y-row register tiles, ``conv_tile``'s channel split), or None
    where its chunk cannot fit TILE_SHARED_BYTES (then a thread per pixel). K staged (``ks``)
    as the static tile would: ``_kernel_operand`` pads its copy to whole tiles."""
    return _fit_tile(wl, TILE_X, REG_Y, max(1, PIXEL_THREADS // TILE_X))


GENERIC_TILED = ("conv", "conv_dk", "conv_dw")  # generic kernels with a tiled schedule (where it fits: generic_tiled)
# those CUDA calls take by default (generic_serves): their requested bytes at the benchmark
# shape 1.00x (conv: K staged once per tile, as the static build), 1.00x (conv_dk with its
# staged window) and 0.998x (conv_dw) the static builds'
# (conv_dk only where its window is staged: generic_dk_staged; per tap it was 2.4x)
GENERIC_DEFAULT = ("conv", "conv_dk", "conv_dw")


def generic_tiled(wl, func) -> bool:
    """Whether the generic CUDA build of PAC kernel ``wl`` (unscheduled PrimFunc ``func``)
    takes a tiled schedule (shared-memory stages), not the per-output one: its default
    schedule applied to a copy, the answer read off the staged tiles. ``dispatch`` serves
    CUDA calls generic where this holds."""
    return wl.kernel in GENERIC_TILED and 'scope="shared"' in _scheduled_script(wl, func)


def generic_dk_staged(wl, func) -> bool:
    """Whether the generic conv_dk build stages its source window (``_staged_window``), not
    the per-tap loads of the fallback (``conv_dk``)."""
    return wl.kernel == "conv_dk" and "Sz_shared" in _scheduled_script(wl, func)


def _scheduled_script(wl, func) -> str:
    import tvm
    import tvm.s_tir as s_tir

    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    _SCHEDULED[wl.kernel](sch, wl, None)
    return sch.mod.script()


def generic_serves(wl, func, target) -> bool:
    """Whether CUDA calls of generic PAC workload ``wl``'s configuration are served by its
    generic build by default (``dispatch``): the build is tiled (``generic_tiled``; conv_dk's
    with its source window staged, ``generic_dk_staged``) and no static build of the
    configuration could take tensor cores, which the generic one never does (``_may_use_mma``:
    conv and conv_dk in the half types and in float32 flagged ``tf32``, on sm_80+
    with O and C whole mma tiles; Wo's divisibility depends on the size, so such
    configurations stay static at every size)."""
    if wl.kernel not in GENERIC_DEFAULT or _may_use_mma(wl, target):
        return False
    script = _scheduled_script(wl, func)  # (once: conv_dk's tries each lower a copy)
    return 'scope="shared"' in script and (wl.kernel != "conv_dk" or "Sz_shared" in script)


def _may_use_mma(wl, target) -> bool:
    """Whether ``mma_tile`` (conv) or ``dk_mma_tile`` (conv_dk) could apply to some static size
    of ``wl``'s configuration."""
    p = wl.p
    sm80 = target is None or _sm(target) >= 80
    if wl.kernel == "conv_dk":
        return _dk_mma_dtype(wl) and sm80 and p["O"] % 16 == 0 and p["C"] % 16 == 0
    if wl.kernel != "conv" or wl.dtype not in MMA_DTYPES or (wl.dtype == "float32" and not p.get("tf32")):
        return False
    return sm80 and p["O"] % 16 == 0 and p["C"] % (8 * MMA_DTYPES[wl.dtype][1]) == 0


def _generic_tiled_conv(sch, wl) -> bool:
    """Apply the generic tiled conv if it fits and its stages compact to a constant size."""
    t = generic_conv_tile(wl)
    return t is not None and if_constant(sch, lambda sch_: _conv_generic_tiled(sch_, wl, t), guard=True)


def _conv_generic_tiled(sch, wl, t) -> None:
    """``_conv_tiled`` over symbolic N, Ho, Wo: a fixed tile, the grid ceil-divided over the
    output (blockIdx.x tile columns, .y tile rows, .z images x output-channel tiles: no block
    index divided by a run-time extent), the tail tiles predicated; K staged once per block
    where ``t["ks"]`` (its copy padded to whole tiles: ``_kernel_operand``)."""
    if t["ks"]:
        kr = _kernel_operand(sch, wl, pad=(t["ty"], t["tx"]))
    else:
        _inline(sch, *_modulated_stages(wl)[:-1])
    # the sum over whole tiles: xk_pad and acc_pad of (Ho, Wo) rounded up to the tile
    sch.pad_einsum(sch.get_sblock("acc"), [1, 1, t["ty"], t["tx"], 1, 1, 1])
    sch.compute_inline(sch.get_sblock("xk"))
    sch.compute_inline(sch.get_sblock("acc_pad"))
    acc = sch.get_sblock("acc")
    n, ob, yb, xb, ot, yt, xt, co, ci, i, j, oi, yi = _conv_tile_loops(sch, acc, t)
    sch.bind(sch.fuse(n, ob), "blockIdx.z")
    sch.bind(yb, "blockIdx.y")
    sch.bind(xb, "blockIdx.x")
    thr = sch.fuse(ot, yt, xt)
    sch.bind(thr, "threadIdx.x")
    threads = t["ot"] * t["yt"] * t["tx"]
    xk = sch.get_sblock("xk_pad")
    sch.set_scope(xk, 0, "shared")
    # one loop of the chunk serial around the spread copy: with one flat copy, nvcc kept the
    # per-round offsets of the symbolic rows (the rounds' taps times W) in registers across the
    # channel loop (ptxas, C = O = 64 float32, sm_90 / sm_80: k5 79 / 79 -> 64 / 80, k3 127 /
    # 128 -> 95 / 84 registers). The channels where cc > 1; where cc = 1 the tap columns j, the
    # rounds spreading (i, y, x), so that a round's column check is its j's alone: with the tap
    # rows serial (the static build's order) ptxas spilled 8 B on sm_80 under the launch bounds
    # (forward, K staged)
    _cooperative(sch, xk, co, threads, serial=_xk_serial(wl, t), lead=1 if t["cc"] == 1 and wl.p["k"] > 1 else 0)
    if t["ks"]:
        sch.set_scope(kr, 0, "shared")  # once per block, as the static build
        _cooperative(sch, kr, thr, threads, serial=1)
    _conv_finish(sch, wl, acc, co, thr, threads, oi, yi, j)

# -- conv on tensor cores: mma.sync TF32 (m16n8k8) and float16/bfloat16 (m16n8k16) -------------
# Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k8 / mma.m16n8k16"), lane = 4 g + t,
# e elements per 32-bit register (1: tf32, 2: f16/bf16; the lower index in the low half), K =
# 8e: A (16 x K, M x K) registers (g, e t + h), (g+8, ..), (g, e t + 4e + h), (g+8, ..); B (K x
# 8, K x N) (e t + h, g), (e t + 4e + h, g); C (16 x 8, f32) c0, c1 (g, 2t + 0|1), c2, c3 (g+8,
# ..). A warp tile is 16 output channels (M) x 16 pixels along x (N, two n8 halves) x K input
# channels: fragments (lane, local element) as below, the halves' B in registers 2h, 2h+1 and
# their C in locals 4h..4h+3 (TVM's 16x16 float32 accumulator layout, so its fill and store
# intrinsics serve).
MMA_WARPS_O, MMA_WARPS_X = 4, 4  # warps per block along output channels and along x (16 each)
# 16-pixel tiles per warp along x (each A fragment feeds all of them): two halve the warps that
# repeat a chunk's fixed work (fragment addresses, staging set-up) per mma
MMA_TILES_X = 2
MMA_DTYPES = {"float32": ("tf32", 1), "float16": ("fp16", 2), "bfloat16": ("bf16", 2)}  # PTX type, e


def _frag_a(i, k, e=1):
    return 4 * (i % 8) + k % (4 * e) // e, e * (i // 8 + 2 * (k // (4 * e))) + k % e


def _frag_b(k, n, e=1):
    return 4 * (n % 8) + k % (4 * e) // e, e * (2 * (n // 8) + k // (4 * e)) + k % e


def _frag_c(i, j):
    return 4 * (i % 8) + (j % 8) // 2, 4 * (j // 8) + 2 * (i // 8) + j % 2


def _ldmatrix_intrin(frag, row_addr, dtype: str, e: int, scope: str = "shared"):
    """shared (16 rows x 32 bytes: 8e elements) -> warp fragments with ldmatrix.x4 (b16, not
    transposed): lane l gives the address of row l % 8 of 8 x 16-byte matrix l // 8
    (``row_addr``), and register m of lane L receives word L % 4 of row L // 4 of matrix m --
    the mma fragment layouts, for 32-bit (tf32) and 16-bit (f16, bf16) elements alike."""
    from tvm.script import tirx as T

    K, L = 8 * e, 4 * e  # row length, elements per lane

    @T.prim_func(s_tir=True)
    def desc(w: T.handle, s: T.handle) -> None:
        shared = T.match_buffer(s, (16, K), dtype, align=16, offset_factor=1, scope=scope)
        warp = T.match_buffer(w, (32, L), dtype, align=16, offset_factor=1, scope="warp")
        with T.sblock("root"):
            T.reads(shared[0:16, 0:K])
            T.writes(warp[0:32, 0:L])
            for a0, a1 in T.grid(16, K):
                with T.sblock("load"):
                    v0, v1 = T.axis.remap("SS", [a0, a1])
                    T.reads(shared[v0, v1])
                    lane, loc = T.meta_var(frag(v0, v1))
                    T.writes(warp[lane, loc])
                    warp[lane, loc] = shared[v0, v1]

    @T.prim_func(s_tir=True)
    def impl(w: T.handle, s: T.handle) -> None:
        s0 = T.int32()
        s1 = T.int32()
        shared = T.match_buffer(s, (16, K), dtype, align=16, offset_factor=1, scope=scope, strides=[s0, s1])
        warp = T.match_buffer(w, (32, L), dtype, align=16, offset_factor=1, scope="warp")
        with T.sblock("root"):
            T.reads(shared[0:16, 0:K])
            T.writes(warp[0:32, 0:L])
            for tx in T.thread_binding(0, 32, "threadIdx.x"):
                T.evaluate(T.ptx_legacy.ldmatrix(False, 4, ".b16", warp.data, warp.elem_offset + L * tx,
                                                 shared.access_ptr("r"), row_addr(tx, s0), dtype=dtype))
    return desc, impl


def _mma_intrin(dtype: str, ptx_type: str, e: int):
    """C (16 x 16, f32) += A (16 x 8e) B (8e x 16): two mma.sync (m16n8k8 tf32 or m16n8k16
    f16/bf16, f32 accumulators), one per n8 half."""
    from tvm.script import tirx as T

    K, L = 8 * e, 4 * e
    shape = f"m16n8k{K}"
    fa, fb = (lambda i, k: _frag_a(i, k, e)), (lambda k, n: _frag_b(k, n, e))
    f32 = (lambda v: v) if dtype == "float32" else (lambda v: T.Cast("float32", v))

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (32, L), dtype, align=16, offset_factor=1, scope="warp")
        B = T.match_buffer(b, (32, L), dtype, align=16, offset_factor=1, scope="warp")
        C = T.match_buffer(c, (32, 8), "float32", align=16, offset_factor=1, scope="warp")
        with T.sblock("root"):
            T.reads(C[0:32, 0:8], A[0:32, 0:L], B[0:32, 0:L])
            T.writes(C[0:32, 0:8])
            for i, j, k in T.grid(16, 16, K):
                with T.sblock("C"):
                    vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                    lc, oc = T.meta_var(_frag_c(vi, vj))
                    la, oa = T.meta_var(fa(vi, vk))
                    lb, ob = T.meta_var(fb(vk, vj))
                    T.reads(C[lc, oc], A[la, oa], B[lb, ob])
                    T.writes(C[lc, oc])
                    C[lc, oc] = C[lc, oc] + f32(A[la, oa]) * f32(B[lb, ob])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (32, L), dtype, align=16, offset_factor=1, scope="warp")
        B = T.match_buffer(b, (32, L), dtype, align=16, offset_factor=1, scope="warp")
        C = T.match_buffer(c, (32, 8), "float32", align=16, offset_factor=1, scope="warp")
        with T.sblock("root"):
            T.reads(C[0:32, 0:8], A[0:32, 0:L], B[0:32, 0:L])
            T.writes(C[0:32, 0:8])
            for tx in T.thread_binding(0, 32, "threadIdx.x"):
                T.evaluate(T.ptx_legacy.mma(shape, "row", "col", ptx_type, ptx_type, "fp32",
                                            A.data, A.elem_offset + tx * L, B.data, B.elem_offset + tx * L,
                                            C.data, C.elem_offset + tx * 8, False, dtype="float32"))
                T.evaluate(T.ptx_legacy.mma(shape, "row", "col", ptx_type, ptx_type, "fp32",
                                            A.data, A.elem_offset + tx * L, B.data, B.elem_offset + tx * L + L // 2,
                                            C.data, C.elem_offset + tx * 8 + 4, False, dtype="float32"))
    return desc, impl


MMA_FILL = "dynfilter_pac_mma_fill"


def _store_name(dtype: str, scope: str = "shared") -> str:
    return f"dynfilter_pac_mma_store_{scope}" + ("" if dtype == "float32" else "_" + MMA_DTYPES[dtype][0])


def _store_cast_intrin(dtype: str, transposed: bool = False, scope: str = "shared"):
    """Accumulator fragments (f32, TVM's 16x16 layout, rows = M) -> ``scope`` (16 x 16) in
    ``dtype``, cast on the way where it is not float32, C[m, n] (``transposed``: C[n, m]), by
    plain stores (no tvm_access_ptr, whose type check fails where StorageRewrite shares one
    allocation between types: the half types' staging, conv_dk's O = 256)."""
    from tvm.script import tirx as T

    def at(m, n):  # the element a fragment's (row m, column n) goes to
        return (n, m) if transposed else (m, n)

    def val(x):
        return x if dtype == "float32" else T.Cast(dtype, x)

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, c: T.handle) -> None:
        C_warp = T.match_buffer(a, (32, 8), "float32", scope="warp")
        C = T.match_buffer(c, (16, 16), dtype, scope=scope)
        with T.sblock("root"):
            T.reads(C_warp[0:32, 0:8])
            T.writes(C[0:16, 0:16])
            for i0, i1 in T.grid(16, 16):
                with T.sblock("C_warp"):
                    v0, v1 = T.axis.remap("SS", [i0, i1])
                    lane, loc = T.meta_var(_frag_c(v0, v1))
                    r, q = T.meta_var(at(v0, v1))
                    T.reads(C_warp[lane, loc])
                    T.writes(C[r, q])
                    C[r, q] = val(C_warp[lane, loc])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, c: T.handle) -> None:
        s0 = T.int32()
        s1 = T.int32()
        C_warp = T.match_buffer(a, (32, 8), "float32", scope="warp", offset_factor=1)
        C = T.match_buffer(c, (16, 16), dtype, scope=scope, offset_factor=1, strides=[s0, s1])
        with T.sblock("root"):
            T.reads(C_warp[0:32, 0:8])
            T.writes(C[0:16, 0:16])
            for tx in T.thread_binding(0, 32, "threadIdx.x"):
                for loc in T.serial(8):  # the inverse of _frag_c
                    r, q = T.meta_var(at(8 * (loc % 4 // 2) + tx // 4, 8 * (loc // 4) + 2 * (tx % 4) + loc % 2))
                    C[r, q] = val(C_warp[tx, loc])
    return desc, impl


def _store_global_intrin(dtype: str):
    """Accumulator fragments -> the output (n, o, y, x) directly, a 16 x 16 (o, x) tile of one
    row (the region (16, 1, 16)), cast where ``dtype`` is not float32: lane 4g + t stores the
    pairs (g | g + 8, 2t + 0|1) of both n8 halves (as ``_store_cast_intrin``)."""
    from tvm.script import tirx as T

    def val(x):
        return x if dtype == "float32" else T.Cast(dtype, x)

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, c: T.handle) -> None:
        C_warp = T.match_buffer(a, (32, 8), "float32", scope="warp")
        C = T.match_buffer(c, (16, 1, 16), dtype)
        with T.sblock("root"):
            T.reads(C_warp[0:32, 0:8])
            T.writes(C[0:16, 0, 0:16])
            for i0, i1 in T.grid(16, 16):
                with T.sblock("C_warp"):
                    v0, v1 = T.axis.remap("SS", [i0, i1])
                    lane, loc = T.meta_var(_frag_c(v0, v1))
                    T.reads(C_warp[lane, loc])
                    T.writes(C[v0, 0, v1])
                    C[v0, 0, v1] = val(C_warp[lane, loc])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, c: T.handle) -> None:
        s0 = T.int32()
        s1 = T.int32()
        s2 = T.int32()
        C_warp = T.match_buffer(a, (32, 8), "float32", scope="warp", offset_factor=1)
        C = T.match_buffer(c, (16, 1, 16), dtype, offset_factor=1, strides=[s0, s1, s2])
        with T.sblock("root"):
            T.reads(C_warp[0:32, 0:8])
            T.writes(C[0:16, 0, 0:16])
            for tx in T.thread_binding(0, 32, "threadIdx.x"):
                for loc in T.serial(8):  # the inverse of _frag_c
                    C[8 * (loc % 4 // 2) + tx // 4, 0, 8 * (loc // 4) + 2 * (tx % 4) + loc % 2] = val(C_warp[tx, loc])
    return desc, impl


DYN = "_dyn"  # suffix of the ldmatrix intrinsics reading dynamic shared memory


def _intrin_names(dtype: str):
    """(load A, load B, mma) intrinsic names of ``dtype`` (the f32 fill and store are shared)."""
    return tuple(f"dynfilter_pac_{MMA_DTYPES[dtype][0]}_{what}" for what in ("load_a", "load_b", "mma"))


@functools.lru_cache(maxsize=None)
def _register_mma_intrinsics(dtype: str) -> None:
    from tvm.s_tir import TensorIntrin
    from tvm.s_tir.tensor_intrin.cuda import get_mma_fill_intrin, get_mma_store_intrin

    ptx_type, e = MMA_DTYPES[dtype]
    load_a, load_b, mma = _intrin_names(dtype)
    # A: Wt as (o, c) rows; B: xk as (x, c) rows (K innermost, so ldmatrix reads K-contiguous
    # rows); a matrix's 16 bytes are 4e elements
    for scope, suffix in (("shared", ""), ("shared.dyn", DYN)):  # the conv's stages may be dynamic
        TensorIntrin.register(load_a + suffix, *_ldmatrix_intrin(
            lambda i, k: _frag_a(i, k, e), lambda l, s: s * ((l // 8) % 2 * 8 + l % 8) + (l // 16) * 4 * e,
            dtype, e, scope), override=True)
        TensorIntrin.register(load_b + suffix, *_ldmatrix_intrin(
            lambda n, k: _frag_b(k, n, e), lambda l, s: s * ((l // 16) * 8 + l % 8) + (l // 8) % 2 * 4 * e,
            dtype, e, scope), override=True)
    TensorIntrin.register(mma, *_mma_intrin(dtype, ptx_type, e), override=True)
    TensorIntrin.register(MMA_FILL, *get_mma_fill_intrin("float32", 8), override=True)
    TensorIntrin.register(_store_name(dtype), *(get_mma_store_intrin("float32", 8, "shared", True)
                                                if dtype == "float32" else _store_cast_intrin(dtype)), override=True)
    TensorIntrin.register(_store_name(dtype, "global"), *_store_global_intrin(dtype), override=True)


def _sm(target) -> int:
    """The target's compute capability as an int (sm_90a -> 90; 0 if unknown)."""
    digits = "".join(ch for ch in str(target.attrs.get("arch", "")) if ch.isdigit())
    return int(digits) if digits else 0


def mma_tile(wl, target=None):
    """(warps along o, warps along x, 16-pixel tiles per warp, output rows per block, K staged)
    of the tensor-core conv, or None where it does not apply. It applies to float16 and bfloat16
    always and to float32 flagged ``tf32``, static, with whole tiles (O % 16, C % K, Wo % 16; K
    = 8 channels in TF32, 16 in half types), for sm_80 or newer (TF32 and bf16 mma.sync
    appeared with Ampere). Rows: up to MMA_ROWS, a warp row each (at most MMA_MAX_WARPS warps),
    where they divide Ho and the stride is 1 (a tap row's window rows are then contiguous: with
    stride s the window would span (ry-1)*s + 1 grid rows for ry used ones). Blocks of 64+
    output channels take the wide tile (``MMA_WIDE``: 4 rows of 128 pixels, 1,024 threads,
    half the Wt passes of 2 rows) where it divides the output and its stages fit the target's
    dynamic shared memory per block (``mma_dyn_shared_limit``), with the adaptive kernel K
    staged once per block (``ks``: k*k x the block's pixels) where that fits too; smaller
    blocks keep the static tiles (checked at pac_joint_upsample's shapes), K loaded per chunk."""
    p = wl.p
    if wl.dtype not in MMA_DTYPES or wl.kind != "static" or (wl.dtype == "float32" and not p.get("tf32")):
        return None
    if target is not None and _sm(target) < 80:
        return None
    if p["O"] % 16 or p["C"] % (8 * MMA_DTYPES[wl.dtype][1]) or p["Wo"] % 16:
        return None
    if (p["O"] % (16 * MMA_WARPS_O) == 0 and p["Wo"] % (16 * MMA_WIDE[0] * MMA_WIDE[1]) == 0
            and p["Ho"] % MMA_WIDE[2] == 0 and p["s"] == 1):
        limit = mma_dyn_shared_limit(target)
        for ks in (True, False):
            # not the half types' input gradient without K staged: its Kz loads (bounds-checked)
            # from global memory next to 32 accumulators spilled 16-308 B under ptxas's 64
            # registers (sm_80, sm_90, every variant tried)
            if (ks or not (p["a"] and wl.dtype in HALF_MMA)) and \
                    mma_shared_bytes(wl, MMA_WARPS_O, *MMA_WIDE, ks) <= limit:
                return (MMA_WARPS_O, *MMA_WIDE, ks)
    wo = max(w for w in (1, 2, 4) if w <= MMA_WARPS_O and p["O"] // 16 % w == 0)
    wx = max(w for w in (1, 2, 4, 8) if w <= MMA_WARPS_X and p["Wo"] // 16 % w == 0)
    xm = max(m for m in (1, 2) if m <= MMA_TILES_X and p["Wo"] // (16 * wx) % m == 0)
    rows = [r for r in (1, 2, 4) if r <= MMA_ROWS and p["Ho"] % r == 0 and (r == 1 or p["s"] == 1)]

    def fit(wx_):  # the most rows that fit the threads and shared memory
        return max((r for r in rows if wo * wx_ * r <= MMA_MAX_WARPS
                    and mma_shared_bytes(wl, wo, wx_, xm, r) <= MMA_SHARED_BYTES), default=None)
    while fit(wx) is None and wx > 1:  # large k
        wx //= 2
    return None if fit(wx) is None else (wo, wx, xm, fit(wx), False)


MMA_SHARED_BYTES = 48 * 1024  # static shared memory per block (nvcc's limit)
MMA_ROWS = 2  # most output rows per block (each a pass over Wt fewer: Wt dominates the bytes)
MMA_MAX_WARPS = 32  # 1,024 threads (<= 64 registers a thread, or the block cannot launch)
# the wide tile (warps along x, 16-pixel tiles per warp, rows) of 1,024-thread blocks of 64
# output channels: 16 x 64 warp tiles (32 accumulators a thread), 4 rows x 128 pixels a block,
# its stages in dynamic shared memory (over nvcc's 48 KB static limit) up to MMA_DYN_SHARED_BYTES
MMA_WIDE = (2, 4, 4)
MMA_DYN_SHARED_BYTES = 96 * 1024  # within every sm_80+ part's per-block opt-in maximum (99 KB on sm_86/89)
# larger opt-in maxima of dynamic shared memory per block, by compute capability (CUDA
# programming guide, "Technical Specifications per Compute Capability"): A100 (8.0), Orin
# (8.7), H100/H200 (9.0)
MMA_DYN_SHARED_MAX = {80: 163 * 1024, 87: 163 * 1024, 90: 227 * 1024}
WINDOW_ROUNDS = 5  # most window-copy rounds unrolled together, half types (5 of 20 at the benchmark shape)
# ... with K staged (``ks``): its copy next to groups of 5 spilled 8 B (f16 forward, sm_90)
WINDOW_ROUNDS_KS = 2


def mma_dyn_shared_limit(target=None) -> int:
    """Dynamic shared memory a tensor-core conv block may take on ``target`` (MMA_DYN_SHARED_MAX;
    elsewhere, and without a target, MMA_DYN_SHARED_BYTES, which every sm_80+ part allows)."""
    return MMA_DYN_SHARED_MAX.get(_sm(target), MMA_DYN_SHARED_BYTES) if target is not None else MMA_DYN_SHARED_BYTES


def _padded_row(kc: int) -> int:
    """Elements per staged row of K = kc channels (32 bytes in every type): 48 bytes, three
    16-byte units. ldmatrix reads 8 rows of 16 bytes per phase; at a 48-byte stride their
    16-byte units 0, 3, 6, .., 21 cover all 8 bank groups (mod 8), one wavefront; a 32-byte
    stride maps rows r and r + 4 to the same banks, two."""
    return kc + kc // 2


def mma_staged(ry: int) -> bool:
    """Whether the results go through shared memory to coalesced stores: one row per block.
    With two rows the staging (64 x 256 outputs: 32 KB half, 64 KB TF32) would pass 48 KB next
    to the chunk's stages (StorageRewrite put the half types' in Wt's space: 53.5 KB), so
    each warp stores its fragments to the output directly (8-byte f32 / 4-byte half pairs, a
    quarter-warp per 32-byte row segment; the same bytes, in more transactions)."""
    return ry == 1


def mma_shared_bytes(wl, wo: int, wx: int, xm: int, ry: int = 1, ks: bool = False) -> int:
    """Shared memory of the tensor-core conv: one tap's xk (P rows, P = 16*wx*xm*ry
    pixels), the chunk's source window (K channels x ry rows x the tile's columns and halo)
    and the tap row's Wt chunk (k x 16*wo rows), rows of K channels padded to 48 bytes
    (``_padded_row``), in the input's type, plus, with one row per block, the result staging
    (16*wo x P, same type) that StorageRewrite places in xk's and the window's space, dead by
    then (ptxas at the benchmark shape, 2 rows: 36,096 B in every type, xk 12 KB + window
    8.4 KB + Wt 15 KB; before, one row and xk per tap row: 48,128 B TF32, 46,080 B half);
    ``ks``: the block's K (k*k x P, in dynamic shared memory) besides."""
    item, e = (4, 1) if wl.dtype == "float32" else (2, 2)
    k, row, pix = wl.p["k"], _padded_row(8 * e), 16 * wx * xm * ry
    s, d = wl.p["s"], wl.p["d"]
    window = 8 * e * ((ry - 1) * s + (k - 1) * d + 1) * ((16 * wx * xm - 1) * s + (k - 1) * d + 1)
    staging = 16 * wo * pix if mma_staged(ry) else 0

    def aligned(n):  # each allocation 64-byte aligned
        return -(-n * item // 64) * 64
    # StorageRewrite puts the tap's Wt in xk's space (B is in registers by then: one more
    # barrier), and the staging (after the loop) in the window's or xk's where it fits
    static = max(aligned(max(row * pix, 16 * wo * row)) + aligned(window), aligned(staging))
    if static <= MMA_SHARED_BYTES and not ks:
        return static
    # over nvcc's static limit the stages go to dynamic shared memory ("shared.dyn"), where
    # TVM's planner (MergeDynamicSharedMemoryAllocations) keeps xk, Wt, the window and K apart
    stages = aligned(row * pix) + aligned(16 * wo * row) + aligned(window) + (aligned(k * k * pix) if ks else 0)
    return max(stages, aligned(staging))


def _conv_mma(sch, wl, wo: int, wx: int, xm: int, ry: int = 1, ks: bool = False) -> None:
    """A block per (n, ry output rows, 16*wx*xm pixels, 16*wo output channels), a warp per xm
    16 x 16 (channels x pixels) tiles of one row (rows on threadIdx.z); stages over 48 KB in
    dynamic shared memory (the wide tile, ``mma_tile``). Per chunk of K = 8e
    input channels the block stages the source window once for all tap rows (K channels x
    (ry-1)*s + (k-1)*d + 1 grid rows: the only bounds checks); per tap (i, j) it builds that
    tap's xk from the window (K x the block's pixels, laid out (y, x, c): B rows
    K-contiguous; in the input's type; a thread per pixel over the K channels: one K load,
    vector stores), each warp loads its B fragments with ldmatrix, then the block stages the
    tap's Wt (laid out (o, c), a thread per (o, c); StorageRewrite puts it in xk's space,
    dead once B is in registers), each warp loads A and issues two mma.sync per tile; rows of
    xk and Wt padded to 48 bytes. With one row the accumulators go through shared memory (n,
    y, o, x) to coalesced stores, with two straight to the output (``mma_staged``). xk and Wt
    per tap, not per tap row (5 x 256 rows x 48 B = 60 KB for xk at two rows), leave room in
    48 KB for two rows per block and the whole window (f16 at the benchmark: 25 KB).

    Requested bytes (``gpu_report.requested_bytes``; the report's no-cache estimate, H100 3.35
    TB/s), 8x64x128x128 k5 O=64: X = N*C*(ry+4)/ry*Ho*128 (a window of ry+4 rows per chunk),
    K = N*(C/K)*25*Ho*Wo (once per chunk), Wt = N*(Ho*Wo/(ry*128))*O*C*25, out = N*O*Ho*Wo.
    float16/bf16: before (one row, a window row per tap row: X = N*C*634*128) 83 + 26 + 210 +
    17 = 336 MB (100 us, 3.7x the 27 us aim); now 50 + 26 + 105 + 17 = 198 MB (59 us, 2.2x).
    TF32 (4-byte, 8 channels a chunk): 166 + 105 + 420 + 34 = 724 MB (216 us, 3.9x the 55 us
    aim) -> 100 + 105 + 210 + 34 = 448 MB (134 us, 2.4x). The wide tile (``MMA_WIDE``, ry =
    4, 16 x 64 warp tiles: 32 accumulators a thread, B fragments loaded per 16-pixel tile so
    that ptxas fits 64 registers without spills; 2 x 4 x 4 = 32 warps), stages in dynamic
    shared memory (61,440 B): X over 252 real window rows per 32 row tiles, Wt per 512 pixels:
    half 33 + 26 + 52 + 17 = 128 MB (38 us, 1.40x the 27 us aim), TF32 66 + 105 + 105 + 34 =
    309 MB (92 us, 1.69x the 55 us): K was loaded once per chunk (C/K = 8 times in TF32, 4 in
    the half types). With K staged once per block (``ks``: the reindexed K, or the adjoint's Kz
    with its bounds checks, 25 taps x 512 pixels copied by all 1,024 threads before the chunk
    loop, x fastest: coalesced loads, conflict-free reads in xk's build; 25.6 KB half, 51.2 KB
    TF32, in dynamic shared memory beside the stages: 87,040 B and 112,640 B, within sm_80's
    163 KB and sm_90's 227 KB per block, so 1 block of 32 warps per SM, 50%, as before; TF32
    keeps the 61,440 B tile on sm_86/89, 99 KB), K = N*k^2*Ho*Wo per output-channel tile: 26
    -> 6.5 MB half, 105 -> 13 MB TF32: half 33 + 6.5 + 52 + 17 = 109 MB (32.5 us, 1.19x the
    27.3 us aim), TF32 66 + 13 + 105 + 34 = 218 MB (65 us, 1.19x the 54.6 us). The half types'
    input gradient takes the wide tile only so (its Kz loads from global memory, bounds-checked,
    next to 32 accumulators spilled 16-308 B; read from shared memory, no spills): 197 MB
    (2.2x, 2-row tile) -> 109 MB. The K copy cost the half types' forward 8 B of spills (sm_90)
    with the window copy unrolled in groups of 5 rounds; groups of WINDOW_ROUNDS_KS = 2 leave
    none (ptxas, sm_80 and sm_90, every type and direction). Left in the bytes: Wt, read whole
    per block (105 MB TF32, 48%; 52 MB half).

    The shared-memory and issue figures below were worked out for the one-row kernel (xk and
    Wt per tap row); the two-row kernel has the same per-pixel ldmatrix and xk work, ry times
    fewer Wt stores per pixel, fewer window stores per pixel, and more barriers (3 per tap).

    Estimate (no GPU: arithmetic, forward, 8x64x128x128 k5 O=64, per block and chunk, interior
    rows). H100 SXM: 132 SMs at 1.83 GHz; per SM and clock 4 warp instructions issued, one
    m16n8k8 TF32 (or one m16n8k16 f16/bf16) mma retired, and 128 bytes of shared memory, one
    wavefront (a warp's access takes one per distinct 128-byte bank row it needs: 16-byte
    accesses at least 4, ldmatrix.x4 at least 4). 1,024 blocks x 40 chunks (TF32; 20 in the
    half types), 320 mma per block and chunk (16 warps x 2 tiles x 5 taps x 2 n8 halves), so
    320 clocks: the tensor-core bound, 54 us TF32, 27 us f16/bf16.

    Shared-memory wavefronts (the binding count), TF32 (8 channels; was -> now, rows padded):
    ldmatrix 240 x4 per chunk (16 warps x 5 taps x (1 A + 2 B)) 1,920 -> 960 (rows of 32 bytes
    put rows r and r + 4 of a phase on the same banks: 8 wavefronts, 4 at 48 bytes); xk stores
    40 st.shared.v4 (640 (tap, pixel) tasks x 2 / 32) 320 -> 160 (the same 2-way conflict per
    8-lane phase, gone); xk's window reads 20 x 8 scalar, 160; Wt stores 80 (16 warps x 5
    taps) 80 -> 160 (at a 12-word row lanes 24-31 meet lanes 4-7's banks); window stores 33:
    2,513 -> 1,473 wavefronts: 1,024 x 40 x 1,473 / 132 / 1.83 GHz = about 250 us, 4.5x the
    TF32 roofline (was 426 us, 7.7x). float16 (bf16 alike; 16 channels): ldmatrix 1,920 -> 960;
    xk stores 2,560 -> 160: were 16 st.shared.u16 per task (TVM's scalar conversions; nvcc
    merges no stores across them) at a 32-byte lane stride, each 8 wavefronts (32 lanes on 4
    banks), now the K results gathered in registers and stored as 2 st.shared.v4; window reads
    20 x 16, 320; Wt stores 160; window stores 80: 5,040 -> 1,680 wavefronts, 1,024 x 20 x
    1,680 / 132 / 1.83 GHz = about 142 us, 5.3x the 27 us roofline (was 427 us, 15.8x). The
    result staging (once per block) is left out: about 110 wavefronts per chunk if spread.

    Issue (PTX of ``nvcc -arch=sm_90 -ptx``; each basic block of the chunk loop times the warps
    that run it): TF32, a tap row's 8 chunks unrolled: 1,480 warp instructions per chunk after
    the first (window 168; xk 416: 21 per task; Wt, 15 ldmatrix and 20 mma 896, 56 per warp),
    2,924 for the first: 1,660 on average, 415 clocks. float16: 3,406 after the first (window
    about 430, xk 2,016: 101 per task and 16 channels, of which 48 conversions, 16 scalar
    16-bit window loads, 16 multiplies, 8 packing moves, 2 vector stores; the rest 960), 3,870
    for the first: 3,522 on average, 880 clocks (was 3,638 / 910 with 16 scalar stores per
    task). Both under the shared-memory count; both over the 320 mma clocks. The issue-only
    figures given before (TF32 1,682 on average, 71 us, 1.30x; f16 4,180, 89 us, 3.3x) left
    out the shared-memory wavefronts. Earlier kernels by the issue count: TF32 4,992 (xk per
    (channel, tap, pixel) from global memory with the tap's bounds checks, 32 warps), 212 us;
    the window with one tile per warp 4,174, 177 us; two tiles per warp without unrolling
    2,940, 125 us; f16 7,616, 161 us.

    What is left, to reach 1.5x: ldmatrix alone is 3x the mma clocks at these 16 x 32 warp
    tiles (1,536 bytes of fragments per 4 mma). 32 x 32 warp tiles need 2 wavefronts per mma,
    32 x 64 1.5 (64 accumulator registers a thread: over 64 in all, below 50% occupancy), so
    the 1.5x aim and the 50% occupancy aim conflict for mma.sync from shared memory; wgmma
    (sm_90, operands read from shared memory by the warpgroup's 64-row tiles) is the way
    there. Then the prologue: the half types' 48 conversions per task (16 redundant, of the K
    word: nvcc does not merge cuda_fp16's inline-asm conversions; f16 products could run as
    half2, bit-identical to rounding the float32 product; bf16 ones not, below 2^-126) and the
    window's scalar 16-bit reads (320 wavefronts; a (x, c) window would read 2 vectors but
    store 4-way conflicted)."""
    _register_mma_intrinsics(wl.dtype)
    load_a, load_b, mma = _intrin_names(wl.dtype)
    e = MMA_DTYPES[wl.dtype][1]
    kc = 8 * e
    wide = xm > MMA_TILES_X  # the wide tile (MMA_WIDE): registers are short (32 accumulators)
    if ks:  # xk's read of K (Kz) as an operand indexed (n, i, j, y, x), staged once per block below
        xk = sch.get_sblock("xk")
        kr = sch.reindex(xk, ("read", _read_index(sch, xk, "Kz" if wl.p["a"] else "K")))
    if wl.p["a"]:  # Kz (the adjoint's kernel on the source grid): read once per (tap, pixel)
        sch.compute_inline(sch.get_sblock("Kz"))  # (ks: its padding decided in K's copy)
    acc = sch.get_sblock("acc")
    n, o, y, x, c, i, j = sch.get_loops(acc)
    warps = wo * wx * ry
    ob, ow, ot = sch.split(o, [None, wo, 16])
    yb, yw = sch.split(y, [None, ry])
    xb, xw, xi, xt = sch.split(x, [None, wx, xm, 16])
    co, ct = sch.split(c, [None, kc])
    # tap rows outside the channel chunks: a chunk's source window is ry rows (the shared
    # memory of the (ry + k - 1)-row window would pass 48 KB next to xk, Wt and the result staging)
    sch.reorder(n, ob, yb, xb, yw, ow, xw, co, i, j, xi, ot, xt, ct)
    outer = sch.blockize(ot)
    blk = sch.fuse(n, ob, yb, xb)
    sch.bind(blk, "blockIdx.x")
    # the rows on threadIdx.z: with one fused warp index the regions of the stages below
    # spanned 8 rows, not 2 (TVM's bound of a row index thr // (wo * wx) under compute_at)
    thr = sch.fuse(ow, xw)
    sch.bind(thr, "threadIdx.y")
    if ry > 1:
        sch.bind(yw, "threadIdx.z")

    def bind_warps(loop):  # a loop of extent warps: warp indices (z, y) as the mma's
        if ry > 1:
            tz, loop = sch.split(loop, [ry, None])
            sch.bind(tz, "threadIdx.z")
        sch.bind(loop, "threadIdx.y")

    def spread(loops):  # over every thread of the block, threadIdx.x fastest
        _, ty, tx = sch.split(sch.fuse(*loops) if len(loops) > 1 else loops[0], [None, warps, 32])
        bind_warps(ty)
        sch.bind(tx, "threadIdx.x")

    def inner_loops(block, loop):
        loops = sch.get_loops(block)
        at = next(k for k, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(loop)))
        return loops[at + 1:]  # compute_at makes none for unit extents

    # xk = K * window: a thread per (tap j, pixel x) over the chunk's K channels, so that its
    # K word is loaded once for all K channels and its K results are contiguous (layout (j, x,
    # c): vector stores); the window (below) leaves no bounds check here
    xk = sch.get_sblock("xk")
    # stages over nvcc's 48 KB static limit in dynamic shared memory (one merged allocation,
    # sized by the launch; TVM's CUDA runtime sets the >48 KB opt-in attribute)
    sh = "shared.dyn" if ks or mma_shared_bytes(wl, wo, wx, xm, ry) > MMA_SHARED_BYTES else "shared"
    sch.set_scope(xk, 0, sh)
    sch.transform_layout(xk, ("write", 0), lambda n_, c_, i_, j_, y_, x_: (n_, i_, j_, y_, x_, c_))
    # the B fragments at j before xk is (else cache_read puts them under j already, over the
    # block's pixels, not the warp's)
    b_w = sch.cache_read(outer, 1, "warp")
    sch.compute_at(b_w, xi if wide else j)  # wide: per tile (4 registers, not 16)
    sch.compute_at(xk, j)
    xc, *xyx = inner_loops(xk, j)  # (c, y, x); y is gone where ry = 1
    sch.reorder(*xyx, xc)
    if ry > 1:  # a row per warp row (threadIdx.z): spread over all threads, the region
        # bounds ignored the predicate of the idle ones (8 rows of xk, not 2)
        sch.bind(xyx[0], "threadIdx.z")
        _, ty, tx = sch.split(xyx[1], [None, wo * wx, 32])
        sch.bind(ty, "threadIdx.y")
        sch.bind(tx, "threadIdx.x")
    else:
        spread(xyx)
    sch.unroll(xc)
    if e == 2:
        # half types: a thread's K results go to registers first, then to shared memory as two
        # 16-byte vector stores (TVM writes the 16-bit results of its scalar conversions one by
        # one, and nvcc does not merge stores across them: 16 scalar stores per thread, at a
        # 32-byte stride across the warp 8 shared-memory wavefronts each; TVM's own vectorized
        # cast of the 16-bit product does not compile: make_ulonglong4 with 8 arguments)
        xk_out = sch.cache_write(xk, 0, "local")
        sch.reverse_compute_at(xk_out, sch.get_loops(xk)[-2])
        vo, vi = sch.split(sch.get_loops(xk_out)[-1], [None, 8])
        sch.unroll(vo)
        sch.vectorize(vi)
    else:  # float32: nvcc already merges a thread's 8 stores into two st.shared.v4
        xk_out = xk
    # rows padded from 32 to 48 bytes (_padded_row): the 8 rows an ldmatrix phase reads, and
    # the 16-byte stores of 8 consecutive pixels, then fall in distinct bank groups (at 32
    # bytes rows r and r + 4 share banks: two wavefronts per 8 x 16-byte matrix or phase)
    sch.storage_align(xk_out, 0, 4, kc, _padded_row(kc) - kc)
    # the source window of the chunk: K channels x one grid row (the tile's width plus the
    # halo), padding and zero insertion decided once per element here, not once per tap
    sz = sch.get_sblock("Sz")
    sch.set_scope(sz, 0, sh)
    sch.compute_at(sz, co)
    # a warp per 32 columns of one channel, a column block's channels on consecutive warps: a
    # thread's channel stays fixed and its column steps by a constant per round (no division
    # by the window's width; fewer registers, which the unrolled chunk loop below needs)
    sc, *sy, sx = inner_loops(sz, co)  # sy: the window's rows
    sxo, sxi = sch.split(sx, [None, 32])
    sch.reorder(sxo, sc, *sy, sxi)
    srounds, sty = sch.split(sch.fuse(sxo, sc, *sy), [None, warps])
    # rounds unrolled: per-thread predicates hoisted (fewer instructions); without it ptxas
    # took 32 registers and spilled 40 B on sm_80 at pac_joint_upsample's 64x64 f16 adjoint.
    # The half types unroll them in groups of at most WINDOW_ROUNDS: all 6 rounds of a
    # 16-channel chunk of 66 columns on 8 warps spilled 8 B on sm_90 (65x64 k3, 40 registers),
    # 2 x 3 do not. TF32 keeps every round in one group (its 9 at 128x128 k5 s2 as 3 x 3
    # spilled 8 B on sm_80). ptxas (nvcc 13) choices, checked at every model shape
    rounds, most = extent(sch, srounds), WINDOW_ROUNDS_KS if ks else WINDOW_ROUNDS
    group = rounds if wl.dtype == "float32" else max(u for u in range(1, most + 1) if rounds % u == 0)
    sch.unroll(srounds if group == rounds else sch.split(srounds, [None, group])[1])
    bind_warps(sty)
    sch.bind(sxi, "threadIdx.x")
    # the tap's Wt chunk laid out (o, c) (rows of K channels for ldmatrix), a thread per (o,
    # c); the A fragments placed at j before it is (as B's)
    wt = sch.cache_read(outer, 0, sh)
    sch.transform_layout(wt, ("write", 0), lambda o_, c_, i_, j_: (i_, j_, o_, c_))
    a_w = sch.cache_read(outer, 0, "warp")
    sch.compute_at(a_w, j)
    sch.compute_at(wt, j)
    sch.storage_align(wt, 0, 2, kc, _padded_row(kc) - kc)  # A rows: as xk's
    spread(inner_loops(wt, j))  # (o, c)
    if ks:  # the block's K (k*k x its pixels, x fastest: coalesced, conflict-free reads), once
        # for every chunk (K is the same for every channel)
        sch.set_scope(kr, 0, sh)
        sch.compute_at(kr, thr)
        spread(inner_loops(kr, thr))
    c_w = sch.cache_write(outer, 0, "warp")
    sch.reverse_compute_at(c_w, thr)
    sch.decompose_reduction(outer, co)
    sch.unroll(i)  # a chunk's tap rows unrolled (fragment and staging addresses fold)
    sch.transform_layout(a_w, ("write", 0), lambda i_, j_, o_, c_: (
        i_, j_, o_ // 16, c_ // kc, *_frag_a(o_ % 16, c_ % kc, e)))
    sch.transform_layout(b_w, ("write", 0), lambda n_, i_, j_, y_, x_, c_: (
        n_, i_, j_, y_, x_ // 16, c_ // kc, *_frag_b(c_ % kc, x_ % 16, e)))
    sch.transform_layout(c_w, ("read", 0), lambda n_, o_, y_, x_: (n_, y_, o_ // 16, x_ // 16, *_frag_c(o_ % 16, x_ % 16)))
    store = sch.get_sblock("acc_warp")  # the copy cache_write made: fragments -> 'acc'
    staged = mma_staged(ry)
    if not staged:  # straight from the fragments to the output
        sch.reverse_compute_inline(sch.get_sblock("out"))
    elif wl.dtype == "float32":  # staged as float32 (the same-typed xk space is reused for it)
        sch.set_scope(store, 0, "shared")
        out = sch.get_sblock("out")
    else:  # the cast to the half type in the fragment store: half-sized staging
        sch.reverse_compute_inline(sch.get_sblock("out"))
        out = sch.cache_write(store, 0, "shared")
    if staged:
        sch.transform_layout(store, ("write", 0), lambda n_, o_, y_, x_: (n_, y_, o_, x_))
        sch.reverse_compute_at(out, blk)
        lo = sch.get_loops(out)
        at = next(k for k, lp in enumerate(lo) if sch.get(lp).same_as(sch.get(blk)))
        _, ty, tx = sch.split(sch.fuse(*lo[at + 1:]), [None, warps, 32])
        bind_warps(ty)
        sch.bind(tx, "threadIdx.x")
    if sh != "shared":
        load_a, load_b = load_a + DYN, load_b + DYN
    sch.tensorize(sch.get_loops(a_w)[-2], load_a)
    bx, bc = sch.get_loops(b_w)[-2:]  # the warp's xm tiles of 16 pixels, each one B fragment
    bxo, bxi = sch.split(bx, [None, 16])
    sch.reorder(bxo, bxi, bc)
    sch.tensorize(bxi, load_b)
    so, sx = sch.get_loops(store)[-2:]
    sxo, sxi = sch.split(sx, [None, 16])
    sch.reorder(sxo, so, sxi)
    sch.tensorize(sch.get_loops(acc)[-3], mma)
    sch.tensorize(sch.get_loops(sch.get_sblock("acc_init"))[-2], MMA_FILL)
    sch.tensorize(sch.get_loops(store)[-2], _store_name(wl.dtype, "shared" if staged else "global"))


@register("pac", "conv", "cuda")
def conv(sch, wl, target):
    tc = mma_tile(wl, target)
    if tc is not None:
        _conv_mma(sch, wl, *tc)
        return
    t = conv_tile(wl)
    if t is not None:
        _conv_tiled(sch, wl, t)
        return
    if wl.kind == "generic" and _generic_tiled_conv(sch, wl):
        return
    _inline(sch, *_modulated_stages(wl))
    acc = sch.get_sblock("acc")
    n, o, y, x, c, i, j = sch.get_loops(acc)
    block = max(b for b in range(1, CONV_CHANNEL_BLOCK + 1) if wl.p["O"] % b == 0)
    oo, oi = sch.split(o, [None, block])
    sch.reorder(n, oo, y, x, c, i, j, oi)
    tx = bind_flat(sch, [n, oo, y, x])
    unroll(sch, oi)
    unroll_taps(sch, wl, j)
    register_acc(sch, acc, c, tx)


@register("pac", "pool", "cuda")
def pool(sch, wl, target):
    """A thread per element of the sum, which runs over rows padded to whole vectors for the
    CPU's sake (``ops.pac.pool``): threads past a row's Wo outputs (at most 7 per row) sum zeros
    and store nothing. (A thread per output with the sum computed at it trips
    ``decompose_reduction``, whose bindings it finds not quasi-affine.)"""
    _inline(sch, *_modulated_stages(wl), *(() if wl.p["a"] else ("Kp",)))
    _thread_per_output(sch, 4)


# -- conv_dk: the tap-rule GEMM per pixel tile (G = Wt^T dO, then a dot with the source) --------
DK_TILE_X = 32  # pixels per thread row along x (a warp's row: conflict-free shared loads)
DK_PIXEL_THREADS = 64  # threads per tap row (yt rows of DK_TILE_X)
DK_REG_Y = 2  # rows of a thread's register tile (float32 on sm_90 and newer)
# sm_80's ptxas took 64 registers for 2 rows in float32 (3 blocks of 10 warps: 47%), and both
# archs 62-63 in the half types (47%); one row: 47-48 registers, 4 blocks, 62%
DK_REG_Y_SMALL = 1
DK_SHARED_BYTES = 44 * 1024  # dO tile + Wt chunk + source tile (<= 48 KiB static; 50% occupancy)


def dk_tile(wl, target=None):
    """conv_dk's tiled geometry: dict(ty, tx, yt, yi) (pixel tile ty x tx, threads k x yt x
    tx, a register tile of k tap columns x yi rows), or None for a thread per output (symbolic
    shapes, tap loops not unrolled, or a tile that cannot fit DK_SHARED_BYTES). yi starts at
    DK_REG_Y in float32 on sm_90 (``target`` None: sm_90), else at DK_REG_Y_SMALL (occupancy:
    see there). Shrinks the thread rows first, then the register rows, until the dO tile (O x
    ty x tx), one channel of Wt (O x k^2) and the source window fit."""
    p = wl.p
    if wl.kind != "static" or p["k"] > UNROLL_TAPS:
        return None
    Ho, Wo = p["Ho"], p["Wo"]
    tx = min(DK_TILE_X, Wo)
    wide = wl.dtype == "float64" or (wl.dtype == "float32" and (target is None or _sm(target) >= 90))
    yi = min(DK_REG_Y if wide else DK_REG_Y_SMALL, Ho)
    yt = max(1, min(DK_PIXEL_THREADS // tx, -(-Ho // yi)))

    return _dk_fit(wl, yt, yi, tx)


def _dk_fit(wl, yt: int, yi: int, tx: int):
    """conv_dk's tile dict(ty, tx, yt, yi): thread rows ``yt``, then register rows ``yi``,
    shrunk until the dO tile (O x ty x tx), one channel of Wt (O x k^2, rows padded where
    ``_dk_wt_padded``) and the source window fit DK_SHARED_BYTES; None where nothing fits."""
    def shared(yt_, yi_):
        return _dk_shared(wl, yt_ * yi_, tx)

    while shared(yt, yi) > DK_SHARED_BYTES and (yt > 1 or yi > 1):
        if yt > 1:
            yt -= 1
        else:
            yi -= 1
    if shared(yt, yi) > DK_SHARED_BYTES:
        return None
    return dict(ty=yt * yi, tx=tx, yt=yt, yi=yi)


def _dk_shared(wl, ty: int, tx: int, o_major: bool = False) -> int:
    """Bytes of conv_dk's shared stages for a ty x tx tile: the dO tile (O x ty x tx), one
    channel of Wt (O x k x k, tap rows padded to 4 words where ``_dk_wt_padded`` and not
    ``o_major``), the source window."""
    O, k = wl.p["O"], wl.p["k"]
    wy, wx = _dk_window(wl, ty, tx)
    row = -(-k // 4) * 4 if _dk_wt_padded(wl) and not o_major else k
    return (O * ty * tx + O * k * row + wy * wx) * (8 if wl.dtype == "float64" else 4)


def _dk_window(wl, ty: int, tx: int) -> tuple:
    """Rows and columns of the source window that a ty x tx pixel tile of conv_dk reads."""
    k, s, d = wl.p["k"], wl.p["s"], wl.p["d"]
    return (ty - 1) * s + (k - 1) * d + 1, (tx - 1) * s + (k - 1) * d + 1


def _dk_wt_padded(wl) -> bool:
    """conv_dk stages Wt with each tap row padded to 4 words (vector loads), except in float64,
    where ptxas then took 94 registers instead of 64."""
    return wl.dtype != "float64"


def _read_index(sch, block, buffer: str) -> int:
    return next(i for i, r in enumerate(sch.get(block).reads) if r.source.name == buffer)


def _dk_g_registers(sch, wl, c):
    """conv_dk's G = sum_o Wt dO, a thread's k tap columns x yi rows of it in registers per
    input channel (the loop ``c``); returns G's block."""
    G = sch.get_sblock("G")
    sch.compute_at(G, c)
    sch.set_scope(G, 0, "local")
    loops = sch.get_loops(G)
    at = next(q for q, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(c)))
    own = loops[at + 1:]  # (j, yi, o), unit extents dropped; o is the reduction
    regs = own[:-1] if wl.p["O"] > 1 else own
    if wl.p["O"] > 1:
        if regs:
            sch.reorder(own[-1], *regs)
        sch.decompose_reduction(G, own[-1])
    unroll(sch, *regs)  # the register tile of G (O = 1 included)
    return G


def _dk_finish(sch, wl, G, acc, c, thr, threads: int, o_major: bool = False) -> None:
    """conv_dk's tail, static and generic alike: Wt[:, c] staged per input channel, the
    accumulators (k tap columns x yi rows) in registers, each thread storing its own.
    ``o_major`` (the generic build where bounded, ``_dk_generic_bound``): the stage (i, j, o),
    unpadded, so that a thread's G loop reads a tap's weights of DK_O_VECTOR output channels as
    one aligned vector (broadcast), copied by ``_dk_wt_copy_rows``."""
    wsh = sch.cache_read(G, _read_index(sch, G, "Wt"), "shared")
    if o_major:
        sch.transform_layout(wsh, ("write", 0), lambda o_, c_, i_, j_: (c_, i_, j_, o_))
        _dk_wt_copy_rows(sch, wl, wsh, c, threads)
    else:
        if _dk_wt_padded(wl):
            # a tap row's k weights of one output channel contiguous and 16-byte aligned (rows
            # padded to 4 words): nvcc reads them as vectors, one broadcast wavefront each
            sch.transform_layout(wsh, ("write", 0), lambda o_, c_, i_, j_: (c_, i_, o_, j_))
            sch.storage_align(wsh, 0, 2, 4, 0)
        _cooperative(sch, wsh, c, threads)
    unroll(sch, *sch.get_loops(acc)[-2:])  # j, yi: the register tile
    sch.set_scope(acc, 0, "local")
    sch.decompose_reduction(acc, c)
    sch.reverse_compute_at(sch.get_sblock("out"), thr)


def _conv_dk_tiled(sch, wl, t) -> None:
    """A block per (n, ty x tx pixels), a thread per (tap row i, row slice, column) keeping
    k tap columns x yi rows of dK in registers. The block stages its dO tile (O x ty x tx)
    once; per input channel c it stages the source window (padding and zero insertion as
    index checks in this copy) and Wt[:, c] (O x k x k), then each thread forms its k x yi
    values of G = sum_o Wt dO in registers (per o: k weights, a warp-wide broadcast, and yi
    dO words for k*yi FMAs) and adds source x G to its accumulators."""
    k = wl.p["k"]
    acc = sch.get_sblock("acc")
    n, g, i, j, y, x, c = sch.get_loops(acc)
    yb, yt, yi = sch.split(y, [None, t["yt"], t["yi"]])
    xb, xt = sch.split(x, [None, t["tx"]])
    sch.reorder(n, g, yb, xb, i, yt, xt, c, j, yi)
    blk = sch.fuse(n, g, yb, xb)
    thr = sch.fuse(i, yt, xt)
    sch.bind(blk, "blockIdx.x")
    sch.bind(thr, "threadIdx.x")
    threads = k * t["yt"] * t["tx"]
    sz = sch.get_sblock("Sz")
    sch.set_scope(sz, 0, "shared")  # before compute_at: the window covers every thread's taps
    _cooperative(sch, sz, c, threads)
    G = _dk_g_registers(sch, wl, c)
    dsh = sch.cache_read(G, _read_index(sch, G, "dO"), "shared")
    _cooperative(sch, dsh, blk, threads)
    _dk_finish(sch, wl, G, acc, c, thr, threads)


# -- conv_dk on tensor cores (float16, bfloat16): G = Wt^T dO by mma.sync, the dot with the source
# threads per pixel in the dot (threadIdx.z), each summing half of a chunk's channels: twice
# the warps per block, one 16-pixel tile each (occupancy: see ``_conv_dk_mma``)
DK_MMA_HALVES = 2
DK_MMA_WARPS = 4  # 32-pixel column groups per block (threadIdx.y)
DK_MMA_MIN_WARPS = 32  # resident warps per SM asked of ptxas (__launch_bounds__: 50% occupancy)
DK_MMA_BOUNDED_O = 64  # up to this many output channels (more took 80+ registers unbounded: spills)
DK_MMA_ROWS = (4, 2)  # output rows per block, the most that fit (``dk_mma_rows``: fewer weight passes)
DK_MMA_TAP_ROWS = (3, 2)  # tap rows per staged window, the most that fit (``dk_mma_tap_rows``: fewer source passes)
# TF32 with the window: 32-channel chunks (two 16-channel warp tiles per 16 pixels) and four
# threads per pixel in the dot (8 channels each, as the half types' two), so that a pixel's
# float32 dO row (272 B at O = 64) is shared by twice the threads: ``_conv_dk_mma``
DK_TF32_HALVES = 4
DK_TF32_ROWS = (2, 1)
HALF_MMA = ("float16", "bfloat16")  # conv_dk on tensor cores (their products exact in float32)


def _dk_mma_dtype(wl) -> bool:
    """Whether conv_dk's type may take tensor cores: the half types (products exact in
    float32), float32 flagged ``tf32`` (operands rounded to TF32, as the flag allows)."""
    return wl.dtype in HALF_MMA or (wl.dtype == "float32" and bool(wl.p.get("tf32")))


def _dk_mma_row(n: int, item: int = 2) -> int:
    """Elements per staged row of n = O values of ``item`` bytes (O % 16 = 0): padded by 16
    bytes, so the row stride is an odd number of 16-byte units and the 8 rows an ldmatrix
    phase reads fall on 8 distinct bank groups."""
    return n + 16 // item


def dk_mma_halves(wl, window: bool) -> int:
    """Threads per pixel in the tensor-core conv_dk's dot (threadIdx.z), 8 of a chunk's
    channels each: DK_TF32_HALVES for TF32 with the window (32-channel chunks), else
    DK_MMA_HALVES (16-channel chunks). The chunk is 8 x this many channels."""
    return DK_TF32_HALVES if window and wl.dtype == "float32" else DK_MMA_HALVES


def dk_mma_shared_bytes(wl, wx: int, window=None, ry: int = 1, tr: int = 1) -> int:
    """Shared memory of the tensor-core conv_dk (``window``: with the source window
    staged; None: the half types' static rule, ``dk_mma_window`` without a target; ``ry``:
    output rows per block, ``dk_mma_rows``, over 48 KB dynamic, where TVM's planner keeps the
    five stages apart as below). Without the window: the dO tile (P = 32*wx*ry pixels x O, rows
    padded: ``_dk_mma_row``), the Wt chunk of a tap (16 channels x O, rows
    padded; the halves' sums of a tap, DK_MMA_HALVES x P float32, take its space, or more where
    they do not fit) and G of one tap and chunk (P pixels x 16 channels float32, a pixel's
    channels padded to 20 words: conflict-free fragment stores and vector loads), dO and Wt in
    the input's type. In float32 (TF32) TVM's StorageRewrite gives all three of Wt, the sums
    and G one space (one type; ThreadSync adds the barrier between the last A fragment load and
    G's store), as ptxas reports. With the window each apart, 64-byte aligned: dO as above, Wt
    and G of a chunk of cw = 8 h channels (h: ``dk_mma_halves``; G's pixel rows cw + 4 words),
    the h threads' k sums of a tap row (h x k x P float32) and the window (cw channels x ry
    rows x (32*wx-1)s + (k-1)d + 1 columns). 8x64x128x128 k5 O=64: half types 18,432 + 2,304 +
    10,240 + 5,120 + 4,224 = 40,320 B at one row, at 4 rows 73,728 + 2,304 + 40,960 + 20,480 +
    16,896 = 154,368 B (without the window 18,432 + 2,304 + 10,240 = 30,976 B); TF32 without
    the window 34,816 + max(4,352, 1,024, 10,240) = 45,056 B, with it (h = 4, cw = 32) at 2
    rows 69,632 + 8,704 + 36,864 + 20,480 + 33,792 = 169,472 B apart (one row 89,088 B); Wt and G
    merged by TVM's dynamic planner (counted so here): 160,768 B (one row 80,384 B)."""
    O, k, pix, item = wl.p["O"], wl.p["k"], 32 * wx * ry, 4 // MMA_DTYPES[wl.dtype][1]
    row = _dk_mma_row(O, item) * item
    if window is None:
        window = wl.dtype in HALF_MMA and dk_mma_shared_bytes(wl, wx, True) <= MMA_SHARED_BYTES
    if window:
        h = dk_mma_halves(wl, True)
        cw, cols = 8 * h, (32 * wx - 1) * wl.p["s"] + (k - 1) * wl.p["d"] + 1
        wt, g = cw * row, pix * (cw + 4) * 4
        rows = (ry - 1) * wl.p["s"] + (tr - 1) * wl.p["d"] + 1  # of the window (tr tap rows)
        parts = (pix * row, *((max(wt, g),) if item == 4 else (wt, g)), h * tr * k * pix * 4, cw * rows * cols * item)
        return sum(-(-b // 64) * 64 for b in parts)
    wt, g = max(16 * row, DK_MMA_HALVES * pix * 4), pix * 20 * 4
    return pix * row + (max(wt, g) if item == 4 else wt + g)


def _dk_mma_fit(wl, wx: int, rows, target=None):
    """The most of ``rows`` output rows per block with the window whose blocks of
    DK_MMA_MIN_WARPS warps fit an SM's shared memory (dynamic over 48 KB: sm_80, sm_87, sm_90,
    ``MMA_DYN_SHARED_MAX``, the SM's own 1 KB per block counted; ``target`` None: sm_90), with
    ry > 1 where the stride is 1 (a tap row's window rows then contiguous) and ry divides Ho;
    None if none fits."""
    p = wl.p
    limit = MMA_DYN_SHARED_MAX.get(_sm(target) if target is not None else 90, MMA_SHARED_BYTES)
    for ry in rows:
        blocks = DK_MMA_MIN_WARPS // (dk_mma_halves(wl, True) * wx * ry)
        need = dk_mma_shared_bytes(wl, wx, True, ry)
        if (ry == 1 or (p["s"] == 1 and p["Ho"] % ry == 0)) and blocks >= 1 and need <= limit \
                and blocks * (need + 1024) <= limit + 1024:
            return ry
    return None


def dk_mma_window(wl, wx: int, target=None) -> bool:
    """Whether the tensor-core conv_dk stages its source window per tap row and chunk
    (``_dk_mma_window``): in the half types where it fits 48 KB of static shared memory; in
    TF32 (32-channel chunks, ``dk_mma_halves``: C % 32 = 0, O <= DK_MMA_BOUNDED_O) where
    blocks of 2 or 1 rows reach 50% in the SM's dynamic shared memory (``_dk_mma_fit``;
    ``target`` None: sm_90): 2 rows (160,768 B at 128-pixel rows, one block of 32 warps per
    SM) on sm_90 and sm_80; where Ho is odd 1 row (80,384 B, two blocks of 16 warps per SM,
    sm_80 included). (TF32 with the half types' 16-channel chunks, two threads per pixel, could
    not: 62,976 B per 8 warps.)"""
    if wl.dtype in HALF_MMA:
        return dk_mma_shared_bytes(wl, wx, True) <= MMA_SHARED_BYTES
    p = wl.p
    return p["C"] % 32 == 0 and p["O"] <= DK_MMA_BOUNDED_O and _dk_mma_fit(wl, wx, DK_TF32_ROWS, target) is not None


def dk_mma_rows(wl, wx: int, target=None) -> int:
    """Output rows per block of the tensor-core conv_dk (``_conv_dk_mma``), with the source
    window staged (``dk_mma_window``) and O <= DK_MMA_BOUNDED_O (64 registers under the launch
    bounds): the most of DK_MMA_ROWS (half types) or DK_TF32_ROWS (TF32) whose blocks of
    DK_MMA_MIN_WARPS warps fit (``_dk_mma_fit``); else 1 (sm_86/89: 99 KB per block, 100 per SM)."""
    if not dk_mma_window(wl, wx, target) or wl.p["O"] > DK_MMA_BOUNDED_O:
        return 1
    return _dk_mma_fit(wl, wx, DK_MMA_ROWS if wl.dtype in HALF_MMA else DK_TF32_ROWS, target) or 1


def dk_mma_tap_rows(wl, wx: int, ry: int, target=None) -> int:
    """Tap rows per staged source window of the half types' tensor-core conv_dk
    (``_conv_dk_mma``; ``ry``: ``dk_mma_rows``; ``target`` None: sm_90): the most of
    DK_MMA_TAP_ROWS dividing k whose window ((ry-1)s + (tr-1)d + 1 rows) and tr x k sums per
    thread still leave the SM DK_MMA_MIN_WARPS warps; else 1. A block then stages
    k / tr windows per chunk (each source row read k / tr times rather than k). Only divisors
    of k: a last group past k (k5 in 3s) would put its zero-weight tap row's window rows past
    the grid's end, which TVM clips, and the clipped window stage no longer compacts (740 KB
    at the benchmark shape). 2x32x65x64 k3 O=32: 3 (73,344 B, 2 blocks of 16 warps on sm_90
    and sm_80); the benchmark's and pac_joint_upsample's k5: 1."""
    if wl.dtype not in HALF_MMA or not dk_mma_window(wl, wx, target) or wl.p["O"] > DK_MMA_BOUNDED_O:
        return 1
    limit = MMA_DYN_SHARED_MAX.get(_sm(target) if target is not None else 90, MMA_SHARED_BYTES)
    blocks = DK_MMA_MIN_WARPS // (DK_MMA_HALVES * wx * ry)
    for tr in DK_MMA_TAP_ROWS:
        need = dk_mma_shared_bytes(wl, wx, True, ry, tr)
        if wl.p["k"] % tr == 0 and blocks >= 1 and need <= limit and blocks * (need + 1024) <= limit + 1024:
            return tr
    return 1


def dk_mma_tile(wl, target=None):
    """32-pixel groups per block (wx; DK_MMA_HALVES * wx warps) of the tensor-core conv_dk, or
    None where it does not apply: float16 and
    bfloat16 (their products are exact in float32, so f32-accumulating mma.sync computes what
    the compute defines) and float32 flagged ``tf32`` (TF32 operands), static, O % 16 = C %
    16 = Wo % 32 = 0, sm_80 or newer (``target`` None: sm_90), a row's block within 48 KB of
    static shared memory (blocks of several rows: ``dk_mma_rows``)."""
    p = wl.p
    if not _dk_mma_dtype(wl) or wl.kind != "static" or (target is not None and _sm(target) < 80):
        return None
    if p["O"] % 16 or p["C"] % 16 or p["Wo"] % 32:
        return None
    wx = max(w for w in (1, 2, 4, 8) if w <= DK_MMA_WARPS and p["Wo"] // 32 % w == 0)
    while dk_mma_shared_bytes(wl, wx) > MMA_SHARED_BYTES and wx > 1:
        wx //= 2
    return wx if dk_mma_shared_bytes(wl, wx) <= MMA_SHARED_BYTES else None


def _dk_mma_window(sch, co, warps: int, bind_zyx, ry: int = 1, scope: str = "shared",
                   halves: int = DK_MMA_HALVES) -> None:
    """Stage the tensor-core conv_dk's source window at ``co`` (a tap row's chunk): 16
    channels x ry rows x (32*wx-1)s + (k-1)d + 1 grid columns, padding and zero insertion
    decided in this copy, read by the k tap columns' dots. Channels (and rows) over the warps,
    columns over the lanes (a copy spread over the fused index divided by the window's width
    per element: 79 registers on sm_80 unbounded, spills under the launch bounds)."""
    sz = sch.get_sblock("Sz")
    sch.set_scope(sz, 0, scope)
    sch.compute_at(sz, co)
    sc, sx = sch.get_loops(sz)[-2:] if ry == 1 else (sch.fuse(*sch.get_loops(sz)[-3:-1]), sch.get_loops(sz)[-1])
    scr, scz, scy = sch.split(sc, [None, halves, warps])
    sxr, sxt = sch.split(sx, [None, 32])
    sch.reorder(scr, sxr, scz, scy, sxt)
    bind_zyx(scz, scy, sxt)


DK_STORE_T_F32 = "dynfilter_pac_dk_mma_store_shared_t_f32"


def _conv_dk_mma(sch, wl, wx: int, ry: int = 1, window=None, tr: int = 1) -> None:
    """float16 / bfloat16 (mma.sync m16n8k16) and float32 flagged ``tf32`` (m16n8k8 TF32: e = 1,
    K steps of 8 output channels, rows of 32-bit words; ``_register_mma_intrinsics``' TF32
    fragments, conv's): the same schedule.

    A block per (n, output row y, P = 32*wx pixels; ry rows: below), 2*wx warps (threadIdx.y along x,
    threadIdx.z the two 16-pixel tiles of a 32-pixel group) of one 16-pixel tile each. The
    block stages its dO tile once (laid out (x, o): B rows of 16 output channels, contiguous,
    rows padded by 16 bytes, ``_dk_mma_row``). Per tap (i, j) and chunk of 16 input channels
    it stages Wt[:, chunk, i, j] (laid out (c, o): A rows, padded alike), then each warp forms
    G[c, x] = sum_o Wt[o, c, i, j] dO[o, x] for its 16 channels x 16 pixels (per 16 output
    channels one ldmatrix.x4 for A and one for B, two mma.sync m16n8k16, f32 accumulators)
    and stores it to shared memory (float32, laid out (x, c), a pixel's 16 channels padded to
    20 words); after a barrier two threads per pixel (``rfactor`` over DK_MMA_HALVES halves
    of the chunk, threadIdx.z) each read their 8 values of G as two 16-byte vectors and add
    sum_c Sz G over them to their own register (the source from global memory, padding and
    zero insertion as index checks; each element is read by the k^2 taps around it, L1
    hits). After the last chunk of a tap both store their sums to shared memory (the Wt
    chunk's space) and, after a barrier, each adds the pair and stores the pixel's dK (both
    threads of a pixel: the same value). Taps outside the channel chunks: one accumulator per
    thread (with the chunks outside the taps the k accumulators were indexed by a loop
    variable: local memory).

    The half types where it fits 48 KB (``dk_mma_window``, every shape checked): the chunks
    outside the tap columns, so per tap row i and chunk the block stages the source window
    once (16 channels x (P-1)s + (k-1)d + 1 grid columns, ``_dk_mma_window``: padding and
    zero insertion in this copy) and the k tap columns' dots read it from shared memory at
    offset j*d; a thread sums a (tap, chunk)'s 8 products in a register (a second ``rfactor``,
    over the chunks) and adds that once to its half's sum of the tap in shared memory
    (DK_MMA_HALVES x k x P float32), the pair added per tap row (TF32: below). k accumulators in registers
    instead took 64 registers with 16-24 B of spills under the launch bounds (80 on sm_80
    without). ``__launch_bounds__`` for 4 blocks of 8 warps (``common.min_blocks``, O <=
    DK_MMA_BOUNDED_O): sm_80's ptxas took 79 registers without. 8x64x128x128 k5 O=64 f16 /
    bf16: 40,320 B, 63 / 64 registers (sm_90 / sm_80), no spills, 4 blocks of 8 warps: 50%
    (both archs; the per-tap build 48 registers, 62.5%). Requested bytes 645 -> 316 MB (the
    source 412 -> 83 MB: ``gpu_report._pac_dk_mma_parts``): no-cache est. 192 -> 94 us, 3.4x
    the 27.5 us roofline. Shared memory per chunk and tap (as below): + 64 window loads (8
    warps x 8 channels, 64 B rows: 1 each) + 16 for the sums' load and store + 16 for the
    window copy (80 per tap row), in all about 515 wavefronts = 218 us, against 422 + the
    per-tap source loads' 64 L1 wavefronts (L1 and shared memory share one array) = 486: about
    even (1.06x), the L2 traffic of the source gone. TF32 in 16-channel chunks: 62,976 B, no
    50% (see TF32 with the window, below).

    Blocks of ry rows (``dk_mma_rows``, the window's build, stride 1): ry x wx warps per half
    (threadIdx.y: the row and the 32-column group fused), P = 32*wx*ry pixels; G's warp tiles
    take their row from threadIdx.y too (each fragment's region one row), the window is ry
    rows (16 channels x ry fused over the warps), and every stage goes to dynamic shared memory
    over 48 KB (the ``DYN`` ldmatrix and G store intrinsics). The weight is then read once per
    ry rows; the window per tap row stays ry rows per block, so the source's bytes do not
    change. 8x64x128x128 k5 O=64 f16 / bf16: 4 rows, 1,024 threads, 256 blocks, 154,368 B
    (``dk_mma_shared_bytes``), 63 registers under __launch_bounds__(1024, 1) on sm_90 and
    sm_80, no spills, one block: 50% (2 rows: 512 threads, 78,336 B, 63 registers, 2 blocks,
    50%); requested 316 -> 158.9 MB (dO 16.8 + source 83.1 + weight 210 -> 52.4 + dK 6.6,
    ``gpu_report._pac_dk_mma_parts``): no-cache est. 158.9 MB / 3.35 TB/s = 47 us, 1.7x the
    27.5 us roofline (was 94 us, 3.4x). Shared memory per 8 warps' chunk: the Wt chunk's 32
    stores now serve 4 rows (8 per 128 pixels): 515 -> 491 wavefronts, about 208 us (was 218),
    still the bound of this estimate. sm_86/89 (99 KB per block, 100 per SM: 2 rows would run
    one 16-warp block, 33%) keep one row. Left: 1.5x (141 MB) needs the source below 65 MB,
    e.g. the chunk's window of ry + k - 1 rows staged once for all tap rows (4 rows: 83.1 x 8
    / 20 = 33 MB, 109 MB in all), whose k^2 sums per pixel (2 x 25 x 512 x 4 B = 100 KB) do
    not fit next to the rest.

    Groups of tr tap rows (``dk_mma_tap_rows``: tr | k, where tr x k sums per thread and the
    taller window still leave DK_MMA_MIN_WARPS warps per SM): the tap-row loop split (after the
    rfactors, whose blocks would drop the split's predicate), the chunks outside the tr tap
    rows, so per group and chunk one window of (ry-1)s + (tr-1)d + 1 rows serves tr tap rows
    (the dots read it at row offset ii*d) and each thread keeps h x tr x k sums. At
    2x32x65x64 k3 O=32 (f16, 4 rows of 64 pixels): all 3 tap rows, 6 window
    rows per chunk where 3 x 4 = 12 were staged: 73,344 B, 61 / 60 registers (sm_90 / sm_80,
    f16), no spills, 2 blocks of 16 warps, 50%; requested 2.83 -> 2.04 MB (the source 1.56 ->
    0.78). Shared memory: the window copy's wavefronts halve (6 rows staged per chunk where 12
    were: per 8 warps' (tap, chunk) 16 -> 8), the ldmatrix, G's stores and loads, the dots'
    window reads and the sums' per-tap updates unchanged (the sums only indexed over more
    tap rows): fewer in all, not slower. At the benchmark's k5 (3 and 2 do not
    divide 5) nothing changes: groups of 3 with a zero-weight sixth tap row (G padded, its
    mma blocks then free of the split's predicate, which tensorize refuses) lowered on sm_90
    to 61 registers without spills and 125.4 MB requested (37 us, 1.36x the 27.5 us
    roofline; the source 83.1 -> 49.7 MB), but the last group's window
    reaches past the grid, TVM clips that stage and it no longer compacts (740,224 B).

    Why 8 warps: 4 warps of two tiles sharing their A fragment, a thread per pixel in the dot,
    took 68 registers on sm_90 (7 blocks: 44%) and 75 on sm_80 (5 blocks by 31 KB of shared
    memory: 31%); TVM 0.27 emits __launch_bounds__(128) without a minimum of blocks
    (``__launch_bounds__(128, 8)``, edited into that source, gave 64 / 63 registers without
    spills, but 7 blocks by shared memory on sm_90). The same 31 KB for 8 warps, 48 registers:
    5 blocks of 8 warps, 62.5% on both (sm_90: registers, 65,536 / (48 x 256) = 5; sm_80:
    shared memory, 164 KB / 32,000 B = 5).

    Estimate of the per-tap build (no GPU: arithmetic; 8x64x128x128 k5 O=64 float16/bfloat16, per block of 8 warps
    and chunk (tap, 16 channels); H100 SXM as ``_conv_mma``: 132 SMs at 1.83 GHz, per SM and
    clock one m16n8k16 mma and one shared-memory wavefront). 1,024 blocks x 25 taps x 4
    chunks = 102,400 chunks of 64 mma (8 warps x 4 K steps x 2 n8 halves): 6.55 M mma / 132 =
    49.6 K clk = 27 us, the tensor-core bound (the BF16 roofline, 28 us). Shared memory
    wavefronts per chunk: ldmatrix 64 x4 (8 warps x 4 K steps x (1 A + 1 B)), 4 each at the
    padded rows: 256; G fragment stores 64 st.shared.f32 (8 warps x 8), 1 each: a lane (g, t)
    writes pixel 2t (+1) channel g (+8) at word 20 x + c, banks 8t + g + const, 32 distinct
    (laid out (c, x) with 136-word rows they took 2 each, unpadded 8): 64; the dot's G loads 8
    warps x 2 ld.shared.v4, 4 each (a quarter warp's 8 pixels at 80 bytes: 8 distinct bank
    groups): 64; the Wt chunk's 16-bit stores 32 (4 per thread), lanes along o: 16 consecutive
    words, 1 each (lanes along c: 2 each, channel rows 8 apart sharing banks): 32; the halves'
    sums, per tap 8 warps x (1 store + 2 loads) = 24, per chunk 6; in all 422 wavefronts = 422
    clk per chunk, 6.6x the mma's 64: 102,400 x 422 / 132 / 1.83 GHz = about 179 us, 6.5x the
    27.5 us roofline (the 4-warp blocks: 352 wavefronts, 48 ldmatrix with A shared by two
    tiles, 149 us, at 31-44% occupancy; earlier 448, 190 us, with G (c, x) and the Wt copy's
    lanes along c; the SIMT conv_dk in the half types: about 962 us). (The (c, x) fragment
    stores as 8-byte pairs failed in TVM's LowerWarpMemory: a vector load from warp memory.)
    Issue: about 100 warp instructions per warp and chunk (8 ldmatrix, 8 mma, 8 fragment
    stores, the Wt copy about 24, the dot about 50: 8 x (G load, source load with its checks,
    conversion, FMA)), 800 per block / 4 schedulers = 200 clk, under the wavefronts. Requested
    bytes (``gpu_report.requested_bytes``): 645 MB, 16x the minimum (the source per tap 412
    MB, from L1; the weight per block 210 MB, from L2): 193 us at 3.35 TB/s, 7.0x the roofline.

    What is left: B (dO) fragments reloaded per chunk are half of the ldmatrix wavefronts
    (kept in registers: 16 more per thread at 16-pixel tiles); A is loaded by each of the 8
    warps (two 16-channel M tiles per warp: G twice the shared memory, sm_80 under 50%);
    registers grow with O (O = 128 k7: 64 / 80, O = 256: 164 / 168; the staging copies and
    the K loop, which nvcc unrolls); requested bytes: the source window (above) cut them to
    316 MB (3.4x); the weight's 210 MB (Wt read whole, 205 KB, by each of the 1,024 blocks)
    is what is left: 1.5x (141 MB) needs about 512-pixel blocks (Wt 52 MB, window 8 x 132 per
    channel: 35 MB; 110 MB in all), whose dO tile (64 KB in the half types) needs dynamic
    shared memory and 16+ warps per block for 50%.

    TF32 (the same shape, float32 flagged ``tf32``; P = 128, 8 warps): per chunk 8 warps x 8 K
    steps x 2 n8 halves = 128 mma m16n8k8 (one per SM and clock, half of m16n8k16's FLOPs: the
    TF32 peak): 102,400 x 128 / 132 = 99 K clk = 54 us (the 55 us TF32 roofline). Wavefronts per
    chunk: ldmatrix 8 x 8 x 2 = 128 x4, 4 each: 512; G's fragment stores 64 and the dot's loads
    64, as above (G is float32 in every type); the Wt chunk's 32-bit stores, lanes along o, 32
    consecutive words: 32; the halves' sums 6; in all 678 = 5.3x the mma's 128: 102,400 x 678 /
    132 / 1.83 GHz = about 287 us, 5.2x the roofline, 2.2x under float32's SIMT kernel (642 us,
    its shared-memory estimate on sm_90). StorageRewrite gives G, the Wt chunk and the sums one
    float32 space (ThreadSync then adds a barrier before G's store): 34,816 B of dO + 10,240 B
    = 45,056 B (``dk_mma_shared_bytes``), the 128-pixel block fitting 48 KB. ptxas: 48
    registers on sm_90, no spills, 5 blocks of 8 warps (registers and shared memory), 62.5%;
    sm_80 76 registers and 3 blocks by shared memory (164 KB / 46 KB): 38%, under the 50% aim
    (64-pixel blocks, 4 warps: 72 registers, 7 blocks, 44%, and 1.7 GB requested). 50% on
    sm_80 needs 4 such blocks, under 39 KB each, which float32's dO tile (32 KB unpadded) and G
    (10 KB) do not leave: the dO tile staged in parts over O, or G kept out of shared memory.
    Requested bytes 1,289 MB (16.0x the 80.6 MB minimum, 385 us at 3.35 TB/s: the source per
    tap 824 MB and the weight per block 420 MB, from L1 and L2). This per-tap build stays where
    the window does not apply (sm_86/89, C % 32 != 0, O > DK_MMA_BOUNDED_O).

    TF32 with the window (``dk_mma_window``: C % 32 = 0, O <= DK_MMA_BOUNDED_O, where blocks of
    2 or 1 rows reach 50% in the SM's dynamic shared memory, ``_dk_mma_fit``: sm_90, sm_80).
    The half types' layout could not reach 50% in float32 on any SM: per pixel the dO row (272
    B at O = 64), G (80), the two threads' k sums (40) and the window (about 66) are 458 B, and
    50% (1,024 threads at two per pixel) means 512 pixels per SM: 235 KB; without the window
    352 B, 180 KB, over sm_80's 164 KB. So twice the threads per pixel: chunks of 32 channels,
    two warps per 16-pixel tile (one per 16-channel M tile: threadIdx.z = 2 channel tiles x 2
    pixel tiles; the ldmatrix, mma and fragment store as above) and four threads per pixel in
    the dot (``dk_mma_halves``, 8 channels each as before; G's pixel rows 36 words, fragment
    stores at banks 8t + g and quarter-warp vector loads at 9-unit strides: conflict-free), so
    256 pixels (2 rows of 128) take 1,024 threads. A tap row's k totals: thread z of a pixel
    adds the four sums of taps z, z + 4 (k = 5: the second pass for z = 0 only) and stores
    that dK, rather than each thread every tap (4x the loads and 4 stores of one value).
    8x64x128x128 k5 O=64: 512 blocks, dO 69,632 + max(Wt 8,704, G 36,864) (one float32 space:
    TVM's dynamic planner merges them, as StorageRewrite does in static memory) + the sums
    20,480 + the window (32 x 2 x 132 x 4) 33,792 = 160,768 B dynamic
    (``dk_mma_shared_bytes``), one block per SM on sm_90 and sm_80 (163 KB), ptxas 64 registers
    on sm_90, <= 64 on sm_80 (55 before the totals were spread over z) under
    __launch_bounds__(1024, 1), no spills: 50% on both (was
    62% / 38%). Requested (``gpu_report._pac_dk_mma_parts``): dO 33.6 + source
    8*64*634*128*4 B = 166.2 + weight 512 x 409.6 KB = 209.7 + dK 13.1 = 422.6 MB (was 1,289:
    source 823 -> 166, weight 419 -> 210): no-cache est. 126 us, 2.3x the 55 us roofline
    (was 385 us, 7.0x). Shared-memory wavefronts per unit of 16 channels x 128 pixels x one
    tap (102,400 units; a block's (tap, chunk) is 4): ldmatrix 512 (32 warps x 8 K steps x 2,
    4 each, / 4), G stores 64, G loads 64, the dot's window reads 64 (8 per thread), Wt stores
    16 (32 x 64 words per 256 pixels), the sums' read-modify-write 16, the window copy 16 (64
    rows x 5 column steps per tap row's 20 units), the sums' init and totals 8 (320 per tap
    row's 40 units), the dO tile's stores 20 (8-way conflicts, lanes along x at 68-word rows:
    4,096 per block over its 200 units, as in the per-tap build) = 780; the per-tap build: 678
    + 20 (dO) + its source loads from L1 (one array with shared memory), 64 wavefronts (115
    where the four taps off 128-byte alignment take two lines) = 762-813. About even
    (0.96-1.02x): 102,400 x 780 / 132 / 1.83 GHz = 331 us shared-memory bound (per tap
    314-345 us), now the bound of this estimate (was the 385 us of requested bytes). sm_86/89
    (99 KB per block, 100 per SM) keep the per-tap build. Left: 1.5x (275 MB) needs the weight
    under about 60 MB, i.e. 4+ rows per block, whose 321 KB do not fit."""
    from tvm.s_tir import TensorIntrin

    _register_mma_intrinsics(wl.dtype)
    load_a, load_b, mma = _intrin_names(wl.dtype)
    if window is None:
        window = dk_mma_window(wl, wx)
    e, O, halves = MMA_DTYPES[wl.dtype][1], wl.p["O"], dk_mma_halves(wl, window)
    kk, row = 8 * e, _dk_mma_row(O, 4 // e)  # output channels per mma K step; staged row length
    cw, warps = 8 * halves, wx * ry  # channels per chunk; warps per half (threadIdx.y: ry x wx)
    # over 48 KB (ry rows: ``dk_mma_rows``) every stage in dynamic shared memory
    dyn = dk_mma_shared_bytes(wl, wx, window, ry, tr) > MMA_SHARED_BYTES
    sh = "shared.dyn" if dyn else "shared"
    if dyn:
        load_a, load_b = load_a + DYN, load_b + DYN
    # G's fragment store, float32 by plain stores (TVM's own uses tvm_access_ptr, whose type
    # check fails where StorageRewrite gives G's space to the 16-bit staging: O = 256)
    store_t = DK_STORE_T_F32 + (DYN if dyn else "")
    TensorIntrin.register(store_t, *_store_cast_intrin("float32", True, sh), override=True)
    if not window:
        sch.compute_inline(sch.get_sblock("Sz"))
    acc = sch.get_sblock("acc")
    n, g, i, j, y, x, c = sch.get_loops(acc)
    xb, xw, xt = sch.split(x, [None, wx, 32])
    co, ch, cl = sch.split(c, [None, halves, cw // halves])
    yr = None
    if ry > 1:
        y, yr = sch.split(y, [None, ry])
    # window: the chunks outside the tap columns (the source window of a tap row and chunk
    # staged once), else the taps outside the chunks
    sch.reorder(n, g, y, xb, i, *((co, j) if window else (j, co)), ch, *((yr,) if yr else ()), xw, xt, cl)
    if yr is not None:  # a warp per (row, 32 columns)
        xw = sch.fuse(yr, xw)
    # each half of the chunk's channels summed by its own threads (threadIdx.z), the halves
    # added once per tap row (per tap) through shared memory
    rf = part = sch.rfactor(ch, 0)
    if window:  # a thread's products of a (tap, chunk) summed in a register (``part``), added
        # to its half's k sums of the tap row (shared memory) once
        part = sch.rfactor(sch.get_loops(rf)[5], 0)
    n, g, y, xb, i, t1, t2, ch, xw, xt, cl = sch.get_loops(part)
    co, j = (t1, t2) if window else (t2, t1)
    ii = ()  # tr tap rows per window (``dk_mma_tap_rows``, tr | k): the chunks outside them
    if tr > 1:
        i, *ii = sch.split(i, [None, tr])
        sch.reorder(co, *ii)
    tap = j if window else co  # the loop of one tap and chunk
    blk = sch.fuse(n, g, y, xb)
    sch.bind(blk, "blockIdx.x")

    def bind_zyx(*loops):  # (z,) y, x
        for lp, tag in zip(loops[::-1], ("threadIdx.x", "threadIdx.y", "threadIdx.z")):
            sch.bind(lp, tag)

    bind_zyx(ch, xw, xt)

    def spread(block, loop):  # the block's loops under ``loop`` over every thread
        loops = sch.get_loops(block)
        at = next(q for q, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(loop)))
        inner = loops[at + 1:]
        fused = sch.fuse(*inner) if len(inner) > 1 else inner[0]
        bind_zyx(*sch.split(fused, [None, halves, warps, 32])[1:])

    G = sch.get_sblock("G")
    sch.set_scope(G, 0, sh)
    sch.compute_at(G, tap)
    gc, *gy, gx, go = sch.get_loops(G)[-4 if ry > 1 else -3:]
    gcw, gc = sch.split(gc, [cw // 16, 16])
    gxw, gxm, gxt = sch.split(gx, [wx, 2, 16])
    goo, got = sch.split(go, [None, kk])
    sch.reorder(*gy, gxw, gcw, gxm, goo, gc, gxt, got)
    if gy:  # the warp's row fixed by threadIdx.y: its fragments' regions one row
        gxw = sch.fuse(*gy, gxw)
    gxm = sch.fuse(gcw, gxm)  # a warp per 16-channel x 16-pixel tile (threadIdx.z: halves)
    outer = sch.blockize(gc)
    sch.bind(gxw, "threadIdx.y")
    sch.bind(gxm, "threadIdx.z")
    d_at, w_at = _read_index(sch, outer, "dO"), _read_index(sch, outer, "Wt")
    dsh = sch.cache_read(outer, d_at, sh)
    sch.compute_at(dsh, blk)
    sch.transform_layout(dsh, ("write", 0), lambda n_, o_, y_, x_: (n_, y_, x_, o_))
    sch.storage_align(dsh, 0, 2, O, row - O)
    spread(dsh, blk)
    wsh = sch.cache_read(outer, w_at, sh)
    sch.compute_at(wsh, tap)
    sch.transform_layout(wsh, ("write", 0), lambda o_, c_, i_, j_: (i_, j_, c_, o_))
    sch.storage_align(wsh, 0, 2, O, row - O)
    # lanes along o: a warp's 16-bit stores fill 16 consecutive words of one row (one
    # wavefront; lanes along c met 2-way conflicts, rows 8 apart sharing banks). The global
    # reads are scattered either way (o and c strides of C*k^2 and k^2 elements)
    sch.reorder(*sch.get_loops(wsh)[-2:][::-1])
    spread(wsh, tap)
    if window:
        _dk_mma_window(sch, co, warps, bind_zyx, ry, sh, halves)
    a_w = sch.cache_read(outer, w_at, "warp")
    b_w = sch.cache_read(outer, d_at, "warp")
    sch.compute_at(a_w, goo)
    sch.compute_at(b_w, goo)
    c_w = sch.cache_write(outer, 0, "warp")
    sch.reverse_compute_at(c_w, gxm)
    sch.decompose_reduction(outer, goo)
    sch.transform_layout(a_w, ("write", 0), lambda i_, j_, c_, o_: (
        i_, j_, c_ // 16, o_ // kk, *_frag_a(c_ % 16, o_ % kk, e)))
    sch.transform_layout(b_w, ("write", 0), lambda n_, y_, x_, o_: (
        n_, y_, x_ // 16, o_ // kk, *_frag_b(o_ % kk, x_ % 16, e)))
    sch.transform_layout(c_w, ("read", 0), lambda n_, c_, i_, j_, y_, x_: (
        n_, i_, j_, y_, c_ // 16, x_ // 16, *_frag_c(c_ % 16, x_ % 16)))
    # G staged (x, c) innermost: a pixel's channels contiguous (the dot's vector loads)
    sch.transform_layout(c_w, ("write", 0), lambda n_, c_, i_, j_, y_, x_: (n_, i_, j_, y_, x_, c_))
    sch.tensorize(sch.get_loops(a_w)[-2], load_a)
    sch.tensorize(sch.get_loops(b_w)[-2], load_b)
    sc, sx = sch.get_loops(c_w)[-2:]
    sxo, sxi = sch.split(sx, [None, 16])
    sch.reorder(sxo, sc, sxi)
    sch.tensorize(sch.get_loops(G)[-3], mma)
    sch.tensorize(sch.get_loops(sch.get_sblock("G_init"))[-2], MMA_FILL)
    store = sch.blockize(sc)
    # a pixel's 16 channels padded to 20 words: a fragment store's lanes (4 pixel pairs x 8
    # channels) then fill 32 distinct banks, and a quarter warp's 16-byte loads 8 distinct
    # bank groups (at 16 words both conflict)
    sch.storage_align(store, 0, 4, 16, 4)  # (32-channel chunks: 36 words, as conflict-free)
    sch.tensorize(store, store_t)
    # the dot reads its pixel's 8 values of G (its half) as two 16-byte vectors
    g_at = next(q for q, r in enumerate(sch.get(part).reads) if r.source.name.startswith("G"))
    g_loc = sch.cache_read(part, g_at, "local")
    cl_o, _ = sch.split(cl, [None, 4])
    sch.compute_at(g_loc, cl_o)
    sch.vectorize(sch.get_loops(g_loc)[-1])
    # the halves' sums: window, per tap row k per thread in shared memory, each added once per
    # (tap, chunk) from ``part``'s register; else per tap in registers over the chunks, then
    # through shared memory
    sch.set_scope(rf, 0, sh)
    if window:
        sch.set_scope(part, 0, "local")
        sch.decompose_reduction(part, cl_o)
        sch.reverse_compute_at(rf, xt)
        init = sch.decompose_reduction(rf, co)
        loops = sch.get_loops(init)
        ij, iz, *ixy = loops[next(q for q, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(i))) + 1:]
        if ii:  # (tap row, j): one loop
            ij = sch.fuse(ij, iz)
            iz, *ixy = ixy
        sch.unroll(ij)  # (j, half, [x group: none at wx = 1], lane)
        sch.bind(iz, "threadIdx.z")
        bind_zyx(*ixy)
    else:
        copy = sch.cache_write(rf, 0, "local")  # rf now sums in registers, ``copy`` stores them
        sch.reverse_compute_at(copy, j)
        cz, cxy = sch.get_loops(copy)[-2:]
        bind_zyx(cz, *sch.split(cxy, [warps, 32]))
        bind_zyx(*sch.get_loops(sch.decompose_reduction(rf, co))[-3:])
    acc = sch.get_sblock("acc")
    sch.reverse_compute_at(acc, i if window else j)
    az, *aj, axy = sch.get_loops(acc)[-3 - len(ii) if window else -2:]
    if ry > 1:  # (az, j, y, x): the pixels' loops fused
        az, *aj, ay, axy = sch.get_loops(acc)[-4 - len(ii):]
        axy = sch.fuse(ay, axy)
    if len(aj) > 1:  # (tap row, j): one loop
        aj = [sch.fuse(*aj)]
    ay, ax = sch.split(axy, [warps, 32])
    if window and halves > DK_MMA_HALVES:  # a tap row's k totals over the pixel's threads (each
        # reads the h sums of its taps; not h times every tap's, nor h stores of one dK)
        ajo, ajz = sch.split(aj[0], [None, halves])
        sch.reorder(ay, ax, ajz, ajo, az)
        bind_zyx(ajz, ay, ax)
        aj = [ajo]
    else:
        sch.reorder(ay, ax, *aj, az)  # both threads of a pixel add the pair (the same total)
        bind_zyx(ay, ax)
    sch.set_scope(acc, 0, "local")
    sch.decompose_reduction(acc, az)
    sch.reverse_compute_at(sch.get_sblock("out"), aj[0] if window else ax)
    if window:
        sch.unroll(aj[0])
    if window and O <= DK_MMA_BOUNDED_O:
        min_blocks(sch, DK_MMA_MIN_WARPS // (halves * warps))  # 64 registers: 50% occupancy


def generic_dk_tile(wl):
    """The generic (symbolic N, Ho, Wo) conv_dk's fixed tile: ``dk_tile``'s geometry of a wide
    image (DK_TILE_X-pixel rows, DK_PIXEL_THREADS // DK_TILE_X thread rows of DK_REG_Y
    register rows), shrunk alike until the dO tile, one channel of Wt and the source window
    fit DK_SHARED_BYTES, or None (k > UNROLL_TAPS, or no tile fits: a thread per output)."""
    if wl.p["k"] > UNROLL_TAPS:
        return None
    return _dk_fit(wl, max(1, DK_PIXEL_THREADS // DK_TILE_X), DK_REG_Y, DK_TILE_X)


def _conv_dk_generic_tiled(sch, wl, t, pads=None):
    """``_conv_dk_tiled`` over symbolic N, Ho, Wo. Both sums run over whole tiles: G's
    (``pad_einsum``: dO read as zeros past the image, the staged dO tile a constant size) and
    the tap sum's (after ``reindex`` turns its source read into a plain operand, so that it
    pads too): the tail tiles compute zeros that are never stored. ``pads`` (``_window_pads``):
    per input channel the block stages its source window (``_staged_window``), else (None)
    each thread loads its k x yi taps per input channel from global memory (coalesced along
    x; the fallback where no window compacts: ``conv_dk``). The grid: blockIdx.x tile
    columns, .y tile rows, .z images. Where ``_dk_generic_bound`` asks launch bounds, Wt is
    staged o-major and G's sum over o runs 4 channels a step (one weight vector per tap)."""
    ty, tx = t["ty"], t["tx"]
    sch.pad_einsum(sch.get_sblock("G"), [1, 1, 1, 1, ty, tx, 1])
    to_g = sch.get_consumers(sch.get_sblock("G"))[0]  # G_pad -> G (the padded sum's copy)
    acc = sch.get_sblock("acc")
    sch.reindex(acc, ("read", _read_index(sch, acc, "Sz")))
    sch.pad_einsum(acc, [1, 1, 1, 1, ty, tx, 1])
    acc = sch.get_sblock("acc")
    sz_pad, g_pad = sorted(sch.get_producers(acc), key=lambda b: sch.get(b).name_hint != "Sz_reindex_pad")
    sch.compute_inline(to_g)  # G -> the tap sum's padded copy of G -> the tap sum
    sch.compute_inline(g_pad)
    sch.compute_inline(sch.get_sblock("Sz_reindex_reindex"))
    sch.compute_inline(sz_pad)
    if pads is None:
        sch.compute_inline(sch.get_sblock("Sz"))
    sch.compute_inline(sch.get_sblock("acc_pad"))
    n, g, i, j, y, x, c = sch.get_loops(acc)
    yb, yt, yi = sch.split(y, [None, t["yt"], t["yi"]])
    xb, xt = sch.split(x, [None, tx])
    sch.reorder(n, g, yb, xb, i, yt, xt, c, j, yi)
    sch.bind(sch.fuse(n, g), "blockIdx.z")
    sch.bind(yb, "blockIdx.y")
    sch.bind(xb, "blockIdx.x")
    thr = sch.fuse(i, yt, xt)
    sch.bind(thr, "threadIdx.x")
    threads = wl.p["k"] * t["yt"] * tx
    if pads is not None:
        _cooperative(sch, _staged_window(sch, acc, pads), c, threads)
    G = _dk_g_registers(sch, wl, c)
    dsh = sch.get_sblock("dO_pad")
    sch.set_scope(dsh, 0, "shared")
    _cooperative(sch, dsh, xb, threads)
    bound = _dk_generic_bound(wl, t)
    _dk_finish(sch, wl, G, acc, c, thr, threads, o_major=bool(bound))
    if bound:
        loops = sch.get_loops(G)
        at = next(q for q, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(c)))
        own = loops[at + 2:]  # (j, yi) after the sum over o, unit extents dropped
        oi = sch.split(loops[at + 1], [None, DK_O_VECTOR])[1]
        if own:
            sch.reorder(own[0], oi)  # (o4, j, oi, yi): one vector of weights live at a time
        unroll(sch, oi)
        min_blocks(sch, bound)


DK_O_VECTOR = 4  # output channels of one shared vector load of Wt (o-major stage, float32)
DK_O_MAJOR_K = 5  # the o-major stage's kernel size (k <= 4: 40-56 registers padded and unbounded, 56-75%)
DK_O_MAJOR_O = 32  # its output channels: multiples of this (fewer, or 48: ptxas spilled 12-44 B)
DK_SPARE_REGS = 16  # registers besides G's loop (addresses, bounds, the copies' offsets)


def _dk_generic_bound(wl, t) -> int:
    """Blocks per SM that the generic conv_dk asks of ptxas (``__launch_bounds__``,
    ``common.min_blocks``) with Wt staged o-major (``_dk_finish``), or 0 (padded tap rows,
    unbounded): the fewest blocks that hold half an SM's warps (50% occupancy), where sm_80's
    shared memory holds them (sm_90's holds more) and the registers they leave a thread (a
    quarter of the register file per scheduler, in 8s: 3 blocks of 14 warps leave 40) hold G and
    the accumulators (2 k yi), yi dO words and a weight per vector lane, and DK_SPARE_REGS. Only
    float32, k = DK_O_MAJOR_K, s = d = 1 and O a multiple of DK_O_MAJOR_O, where ptxas kept
    to the bound without spills on sm_80 and sm_90 (C = 16, O = 32 and 64, z = 1 and 2);
    elsewhere it spilled 8-44 B (d = 2 at k5 / k7, k6 s2, O = 24 / 48 at k5, O = 96 at k7: the
    copies' offsets and bounds live across the c loop). At k5 O = 64: 4 blocks of 320 threads,
    48 registers (the padded stage unbounded took 62 on sm_80, 3 blocks of 44,160 B: 47%)."""
    p, yi = wl.p, t["yi"]
    if wl.dtype != "float32" or p["k"] != DK_O_MAJOR_K or p["s"] != 1 or p["d"] != 1 or p["O"] % DK_O_MAJOR_O:
        return 0
    warps = -(-p["k"] * t["yt"] * t["tx"] // 32)
    blocks = -(-32 // warps)
    regs = 65536 // 4 // (-(-blocks * warps // 4) * 32) // 8 * 8
    smem = -(-_dk_shared(wl, t["ty"], t["tx"], o_major=True) // 128) * 128 + 1024  # 1 KB reserved per block
    need = 2 * p["k"] * yi + DK_O_VECTOR * (yi + 1) + DK_SPARE_REGS
    return blocks if need <= regs and SM80_SHARED // smem >= blocks else 0


def _dk_wt_copy_rows(sch, wl, wsh, c, threads: int) -> None:
    """Copy the o-major Wt stage threads // k^2 whole output channels per round, a thread
    always at the same tap (thread % k^2) and channel offset (thread // k^2): its global and
    shared offsets are one base each plus the round's multiple, where the flat (o, tap) order
    over all threads left 2 offsets per round live across the c loop (5 rounds at k5: ptxas
    spilled 40 B of them at 48 registers). The global reads stay runs of k^2 words (Wt[o, c])."""
    sch.compute_at(wsh, c)
    loops = sch.get_loops(wsh)
    at = next(q for q, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(c)))
    o, *taps = loops[at + 1:]  # (o, i, j), unit extents dropped
    oi = sch.split(o, [None, threads // wl.p["k"] ** 2])[1]
    sch.bind(sch.split(sch.fuse(oi, *taps) if taps else oi, [None, threads])[1], "threadIdx.x")


def _staged_window(sch, acc, pads):
    """Stage the generic conv_dk's source window: a shared copy of Sz (the virtual grid, as
    the static build: padding, crop and zero insertion decided once per element in the copy)
    read by the tap sum ``acc``, its buffer padded to whole multiples of ``pads`` (rows,
    columns; each at least the tile's window: ``_window_pads``), so that its extent is
    provably at least one window and the stage compacts to exactly one. TVM clips a stage to
    its buffer's extent unless it proves that the window fits
    (``CanProveLessEqualThanSymbolicShapeValue``: the window at most the extent, or at most
    the constant factor c of an extent c * (...)); over Sz itself that gave min(Ho + 4, 8)
    rows at k5 with 4-row tiles, a size that codegen refuses. The tap sum reads only taps of
    real pixels, inside the grid, so what a tail tile's copy leaves unwritten past the padded
    extent is never read. Returns the copy's block (shared scope)."""
    copy = sch.cache_read(acc, _read_index(sch, acc, "Sz"), "shared")
    sch.pad_einsum(copy, [1, 1, *pads])
    while sch.get_producers(copy):
        sch.compute_inline(sch.get_producers(copy)[0])  # Sz and its padded copy
    while not sch.get(sch.get_consumers(copy)[0]).same_as(sch.get(acc)):
        sch.compute_inline(sch.get_consumers(copy)[0])  # the copy back to Sz's extent
    return copy


def _window_pads(wl, t, tries: int = 4) -> list:
    """Candidate paddings (rows, columns) of the staged window (``_staged_window``), in the
    order ``conv_dk`` tries them: the window itself, then up to ``tries`` - 1 more elements
    per axis. Whether TVM compacts the stage depends on how it simplifies the padded extent
    (E + m - 1) // m * m of Sz's extent E = s*Ho + (k-1)d + 1 - s, and on whether its bounds
    over the unbounded symbolic sizes overflow int32 in the compaction (at k5, m = 9 and 37
    overflow where 8 and 36 compact); no rule found predicts it, so each build checks
    (``common.if_constant``, guarded: TVM's region arithmetic over the symbolic extents
    overflows int32 for some windows, a failure that counts as not constant). None of these compact at k2 s1 d1, k4 s2 d1 (E = s*Ho + 1 or + 2:
    TVM's simplified sums) nor C = O = 64 k3 in float64 (every m overflowed): per-tap loads.
    (Staging X instead, whose extent H pads to a product, overflowed at k3 s2 d1 and spilled
    12-24 B at z = 2 and at k2 s1 float64: its taps' index checks.)"""
    wy, wx = _dk_window(wl, t["ty"], t["tx"])
    return [(wy + i, wx + i) for i in range(tries)]


@register("pac", "conv_dk", "cuda")
def conv_dk(sch, wl, target):
    wx = dk_mma_tile(wl, target)
    if wx is not None:
        ry = dk_mma_rows(wl, wx, target)
        _conv_dk_mma(sch, wl, wx, ry, dk_mma_window(wl, wx, target), dk_mma_tap_rows(wl, wx, ry, target))
        return
    t = dk_tile(wl, target)
    if t is not None:
        _conv_dk_tiled(sch, wl, t)
        return
    if wl.kind == "generic" and "conv_dk" in GENERIC_TILED:
        t = generic_dk_tile(wl)
        # the first that compacts: a staged window (each candidate padding), else per-tap loads
        if t is not None and any(if_constant(sch, lambda sch_, pads=pads: _conv_dk_generic_tiled(sch_, wl, t, pads), guard=True)
                                 for pads in (*_window_pads(wl, t), None)):
            return
    _inline(sch, "Sz")
    acc = sch.get_sblock("acc")
    n, g, i, j, y, x, c = sch.get_loops(acc)
    tx = bind_flat(sch, [n, g, i, j, y, x])
    G = sch.get_sblock("G")
    sch.compute_at(G, c)
    sch.set_scope(G, 0, "local")
    register_acc(sch, acc, c, tx)


SPLIT_K_THREADS = 1 << 20  # conv_dw: split the pixel sum until about this many partial sums


def dw_rows(wl):
    """conv_dw's split-K: output rows per part (parts = N * ceil(Ho / rows)), or None for no
    split (symbolic shapes, or already SPLIT_K_THREADS outputs, or a single row)."""
    p = wl.p
    if wl.kind != "static":
        return None
    outputs = p["O"] * p["C"] * p["k"] ** 2
    parts = min(-(-SPLIT_K_THREADS // outputs), p["N"] * p["Ho"])
    if parts <= 1:
        return None
    rows = min(p["Ho"], -(-p["N"] * p["Ho"] // parts))
    return rows if p["N"] * -(-p["Ho"] // rows) > 1 else None


DW_REG = 4  # output channels and input channels of a thread's register tile (4 x 4)
DW_THREADS = 16  # threads along each of O and C (16 x 16 = 256 per block)
DW_CHUNK_X = 32  # pixels of a row staged per step
DW_MIN_THREADS = 128  # per block: halve the register tile below this many


def generic_dw_tile(wl):
    """The generic conv_dw's tile: ``dw_tile``'s channel geometry, chunks of DW_CHUNK_X pixels;
    None at k = 1 (``reindex`` of the source read fails on the unit tap axes: the per-output
    schedule)."""
    return dw_tile(wl, generic=True) if wl.p["k"] > 1 else None


def dw_tile(wl, generic: bool = False):
    """conv_dw's tiled geometry: dict(oi, ot, ci, ct, cx) (register tile oi x ci, threads ot x
    ct, cx pixels per staged chunk), or None for the per-output split-K (symbolic shapes)."""
    p = wl.p
    if wl.kind != "static" and not generic:
        return None
    O, C = p["O"], p["C"]
    oi, ci = min(DW_REG, O), min(DW_REG, C)

    def threads(oi_, ci_):
        return min(DW_THREADS, -(-O // oi_)) * min(DW_THREADS, -(-C // ci_))

    # few channels: smaller register tiles, so that a block keeps DW_MIN_THREADS threads
    while threads(oi, ci) < DW_MIN_THREADS and (oi > 1 or ci > 1):
        if oi >= ci:
            oi //= 2
        else:
            ci //= 2
    return dict(oi=oi, ot=min(DW_THREADS, -(-O // oi)), ci=ci, ct=min(DW_THREADS, -(-C // ci)),
                cx=DW_CHUNK_X if generic else min(DW_CHUNK_X, p["Wo"]))


def _conv_dw_tiled(sch, wl, t, rows) -> None:
    """Split-K as below, each part a tiled GEMM per tap: a block per (output- and input-channel
    tile, tap (i, j), band of rows), a thread per (ot, ct) keeping oi x ci sums in registers.
    Per chunk of cx pixels of a row the block stages dO (its output channels), K (its tap) and
    the source at its tap (its input channels, padding and zero insertion as index checks in
    the copy), then each thread adds, per pixel, its oi x ci products dO * (K * source)."""
    acc = sch.get_sblock("acc")
    o, c, i, j, n, y, x = sch.get_loops(acc)
    if rows is not None:
        yo, yi = sch.split(y, [None, rows])
        rf = sch.rfactor(sch.fuse(n, yo), 0)
        o, c, i, j, part, yi, x = sch.get_loops(rf)
    else:  # a single part: the whole sum in one kernel
        rf, part, yi = acc, n, y
    ob, ot, oi = sch.split(o, [None, t["ot"], t["oi"]])
    cb, ct, ci = sch.split(c, [None, t["ct"], t["ci"]])
    xo, xi = sch.split(x, [None, t["cx"]])
    sch.reorder(ob, cb, i, j, part, ot, ct, yi, xo, xi, oi, ci)
    blk = sch.fuse(ob, cb, i, j, part)
    thr = sch.fuse(ot, ct)
    sch.bind(blk, "blockIdx.x")
    sch.bind(thr, "threadIdx.x")
    threads = t["ot"] * t["ct"]
    reads = [r.source.name for r in sch.get(rf).reads]
    dsh = sch.cache_read(rf, reads.index("dO"), "shared")
    ksh = sch.cache_read(rf, reads.index("K"), "shared")
    # pixels outermost in the copies' layout: a warp's oi (ci) words of a pixel are adjacent
    sch.transform_layout(dsh, ("write", 0), lambda n_, o_, y_, x_: (n_, y_, x_, o_))
    sz = sch.get_sblock("Sz")
    sch.set_scope(sz, 0, "shared")
    sch.transform_layout(sz, ("write", 0), lambda n_, c_, y_, x_: (n_, y_, x_, c_))
    for stage in (dsh, ksh, sz):
        _cooperative(sch, stage, xo, threads)
    unroll(sch, oi, ci)
    if rows is None:
        register_acc(sch, acc, yi, thr)
        return
    part_local = sch.cache_write(rf, 0, "local")
    sch.reverse_compute_at(part_local, thr)
    sch.decompose_reduction(rf, yi)
    o, c, i, j, part = sch.get_loops(acc)
    register_acc(sch, acc, part, bind_flat(sch, [o, c, i, j]))


def generic_dw_parts(wl) -> int:
    """The generic conv_dw's split-K: a fixed count of parts (the batch's rows, N*Ho of them,
    shared out evenly), as many as the static split would make of a large batch (about
    SPLIT_K_THREADS partial sums in all), at most GENERIC_DW_PARTS (few channels: the parts
    past N*Ho rows run empty, and the second kernel adds every part)."""
    p = wl.p
    return max(1, min(GENERIC_DW_PARTS, -(-SPLIT_K_THREADS // (p["O"] * p["C"] * p["k"] ** 2))))


GENERIC_DW_PARTS = 256


def _conv_dw_generic_tiled(sch, wl, t, parts: int) -> None:
    """``_conv_dw_tiled`` over symbolic N, Ho, Wo: the rows of the batch (n, y fused, N*Ho)
    split into ``parts`` fixed parts (the last ones predicated, empty where N*Ho < parts: their
    partial sums stay zero), so that the scratch has a constant size; each row's pixels padded
    to whole chunks of cx (``pad_einsum``, after ``reindex`` turns the source read into a plain
    operand: dO, K and the source read as zeros past the row), so that the staged chunks have a
    constant size. Then the static schedule: a block per (channel tiles, tap, part), per chunk
    dO, K and the source at the tap staged, oi x ci sums per thread; a second kernel adds the
    parts."""
    acc = sch.get_sblock("acc")
    sch.reindex(acc, ("read", _read_index(sch, acc, "Sz")))
    sch.pad_einsum(acc, [1, 1, 1, 1, 1, 1, t["cx"]])
    _inline(sch, "Sz", "Sz_reindex_reindex")
    acc = sch.get_sblock("acc")
    o, c, i, j, n, y, x = sch.get_loops(acc)
    part, _ = sch.split(sch.fuse(n, y), [parts, None])
    rf = sch.rfactor(part, 0)
    o, c, i, j, part, r, x = sch.get_loops(rf)
    ob, ot, oi = sch.split(o, [None, t["ot"], t["oi"]])
    cb, ct, ci = sch.split(c, [None, t["ct"], t["ci"]])
    xo, xi = sch.split(x, [None, t["cx"]])
    sch.reorder(ob, cb, i, j, part, ot, ct, r, xo, xi, oi, ci)
    sch.bind(sch.fuse(ob, cb, i, j, part), "blockIdx.x")
    thr = sch.fuse(ot, ct)
    sch.bind(thr, "threadIdx.x")
    threads = t["ot"] * t["ct"]
    dsh, ksh, sz = (sch.get_sblock(n_) for n_ in ("dO_pad", "K_pad", "Sz_reindex_pad"))
    # pixels outermost: a warp's oi (ci) words of a pixel are adjacent (as the static one)
    sch.transform_layout(dsh, ("write", 0), lambda n_, o_, y_, x_: (n_, y_, x_, o_))
    sch.transform_layout(sz, ("write", 0), lambda c_, i_, j_, n_, y_, x_: (i_, j_, n_, y_, x_, c_))
    for stage in (dsh, ksh, sz):
        sch.set_scope(stage, 0, "shared")
        _cooperative(sch, stage, xo, threads)
    unroll(sch, oi, ci)
    part_local = sch.cache_write(rf, 0, "local")
    sch.reverse_compute_at(part_local, thr)
    sch.decompose_reduction(rf, r)
    o, c, i, j, part = sch.get_loops(acc)
    register_acc(sch, acc, part, bind_flat(sch, [o, c, i, j]))


@register("pac", "conv_dw", "cuda")
def conv_dw(sch, wl, target):
    """dWt is tiny (O*C*k^2) and each element sums every pixel of the batch: one thread per
    element leaves the GPU mostly idle with long serial sums (8x64x128x128 k5: 102,400 threads
    x 131,072 terms). Split-K over pixels: rfactor the sum over (image, band of ``rows`` output
    rows) into partial sums in global scratch (a thread per part and element, its sum in a
    register), then a second kernel adds the parts (a thread per element). 8x64x128x128 k5:
    16 parts of 94 rows, 1.6M threads of 12,032 terms, 6.5 MB of partial sums written and
    read once."""
    t = dw_tile(wl)
    if t is not None:
        _conv_dw_tiled(sch, wl, t, dw_rows(wl))
        return
    if wl.kind == "generic" and "conv_dw" in GENERIC_TILED:
        t = generic_dw_tile(wl)
        if t is not None and if_constant(sch, lambda sch_: _conv_dw_generic_tiled(sch_, wl, t, generic_dw_parts(wl))):
            return
    _inline(sch, "Sz")
    rows = dw_rows(wl)
    if rows is None:
        _thread_per_output(sch, 4)
        return
    acc = sch.get_sblock("acc")
    o, c, i, j, n, y, x = sch.get_loops(acc)
    yo, yi = sch.split(y, [None, rows])
    rf = sch.rfactor(sch.fuse(n, yo), 0)
    o, c, i, j, part, yi, x = sch.get_loops(rf)
    sch.reorder(part, o, c, i, j)  # threads across (c, i, j) of one output channel: dO broadcast
    tx = bind_flat(sch, [part, o, c, i, j])
    partial = sch.cache_write(rf, 0, "local")
    sch.reverse_compute_at(partial, tx)
    sch.decompose_reduction(rf, yi)
    o, c, i, j, part = sch.get_loops(acc)
    register_acc(sch, acc, part, bind_flat(sch, [o, c, i, j]))


@register("pac", "pool_dk", "cuda")
@register("pac", "dist", "cuda")
def per_tap(sch, wl, target):
    """Kernel-shaped results: a thread sums the channels (G = 1) or is one element. (The channel
    sum runs over rows padded for the CPU, ``ops.pac.pool_dk``: threads past a row's Wo outputs
    sum zeros and store nothing.)"""
    _inline(sch, "Sz", *(("Rp",) if wl.p["G"] == 1 else ()))
    if wl.p["G"] == 1:
        _thread_per_output(sch, 6)
    else:
        sch.compute_inline(sch.get_sblock("acc"))
        bind_flat(sch, sch.get_loops(sch.get_sblock("out")))


@register("pac", "dist_df", "cuda")
def dist_df(sch, wl, target):
    _inline(sch, "Sz", "Kz")
    _thread_per_output(sch, 4)


@register("pac", "dist_df0", "cuda")
def dist_df0(sch, wl, target):
    _inline(sch, "Sz")
    _thread_per_output(sch, 4)


_SCHEDULED = {"conv": conv, "conv_dk": conv_dk, "conv_dw": conv_dw}  # generic_tiled's kernels
