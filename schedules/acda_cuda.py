"""Default CUDA schedules for ACDA's atom convolution.

fwd: one block per tile of ``tile`` pixels along a row. The block first builds the tile's
M x k x k atoms in shared memory (threads across atom taps and pixels, each summing the T
bases), then its threads (pixels x channel slices, pixels fastest: coalesced loads) loop over
register tiles of cb adjacent channels (``_tiles``), cb x M accumulators, over the k x k taps:
per tap M atoms from shared memory and cb inputs feed cb x M FMAs (was: one shared load per
FMA, at most 25% of the FMA peak). The atoms of a pixel are built once for all channels, never
stored in global memory. Tap rows stay a loop (the columns are unrolled): unrolling both let
nvcc hoist loads into 80 registers with a spill. At 8x64x56x56 k7 M = 6 (sm_90, nvcc 13 -v):
fp32 cb = 8, 63 registers, no spill, 37,632 B shared, 4 blocks of 256 threads per SM (50%
occupancy; registers bound it: 63 x 256 x 4 <= 65,536); float64 cb = 4, 64 registers, 50%
(was 80 registers + 8 B spill, 38%). sm_80: cb = 4, 64 registers, 50%.
Then (sm_90, float32 and the half types, one channel tile per thread: ``fwd_rows_tile``) the
tap rows are the outer loop of the channel phase (``_fwd_rows``): per tap row the block stages
the input row segment of all its channels ((tile - 1) * s + (k - 1) * d + 1 columns, padding
checked in the copy, a plain loop of rounds: nvcc's unrolled copy took 98 registers) in shared
memory next to the atoms, and its threads read X there: a warp's load of 32 adjacent pixels of
one channel row is one wavefront at every tap column (from global memory 6 of 7 straddled two
lines). The sums stay in registers across the rows; the cast stage sits at the channel-tile
loop, spread over the threads as the sums are (with the tail tile's predicate). At 8x64x56x56
k7 M = 6 fp32: 62 registers, no spill, 47,360 B shared (the 37,632 B atoms and 64 x 38
inputs), 50% (4 blocks of 256 threads); requested bytes 301 MB, 5.4x the minimum (was
568 MB, 10.2x). float64 (78 registers, 38%) and sm_80 (47 KB blocks: 3 per SM, 37.5%) keep
the schedule above, as do tiles with more channels than one register tile (the registered
models' C >= 80: the rows' inputs would be staged again per channel tile).
Then (2026-12-01, issue 15 items 4 and 6; static float32, both archs: ``_atoms_staged``)
the rows schedule builds its atoms from coefficients A and bases P staged in shared memory,
a basis at a time: per basis the block copies A[:, t] of its tile (M x 32 adjacent pixels,
coalesced) and P[t] (k x k), and a thread per (atom group, tap row, pixel) adds mi x k FMAs
on mi coefficients and k bases (broadcast) into registers, storing its atoms once at the
end. Every A element is loaded from global memory once, every P element once per block:
requested bytes at 8x64x56x56 k7 M = 6 T = 18 (``gpu_report``): A 8*6*18*3136*4 B = 10.8 MB
+ P 896 blocks*18*49*4 B = 3.2 MB + X (as before) 8*64*380*62*4 B = 48.2 MB = 62.2 MB, 1.12x
the 55.8 MB minimum (was 301 MB, 5.4x: each thread read A for its tap row and P for its
atom group, k*T*(M + 2k) = 2,520 elements per pixel, 253 MB). No-cache estimate (every
requested byte from DRAM): max(62.2 MB / 3.35 TB/s = 18.6 us, 1.21 GFLOP / 67 TFLOP/s =
18.0 us) = 18.6 us, 1.03x the 18 us roofline (was 90 us, 5.0x). The build's registers live
only before the channel phase, but with its staging loop nvcc 13's ptxas took 74-77
registers next to cb = 8 channel tiles (37.5%; at __launch_bounds__(256, 4) it fitted 62 with
no spill, but TVM 0.27 emits no minimum of blocks from a schedule), so the register tile is
cb = 4 channels (``ROWS_ACC_WORDS``, the channels split over up to ``ROWS_MAX_THREADS`` =
512 threads): 16 slices x 32 pixels, 512 threads, the two atom groups (mi = 3) built in
parallel by 448 of them; ptxas 53 registers, no spill, 47,616 B shared (the stages share the
rows' memory: TVM's storage rewrite), 2 blocks per SM: 50% on sm_90 and sm_80. sm_80 takes
the rows schedule now (was the shared-atoms one: 568 MB, 10.2x). Where the threads do not
cover the k x tile (tap row, pixel) pairs the groups run in turn (A and P staged per group);
cb is the largest whose threads cover them; fewer, ``_atoms_in_shared``. float64
and the shared-atoms schedule keep the per-thread loads. The price is in shared memory: 4
channels per thread load the 6 atoms per tap for 24 FMAs (was 48), so the channel phase's
atom loads double (time estimate below: 89 K clk, 2.5x the roofline, was 71 K, 2.0x, on
sm_90; sm_80's shared-atoms schedule was ~209 K). The registered ACDA models (lenet_acda,
ad_resnet_s/m/l, float32; ptxas, estimates): their C = 80 and 160 fwd layers take the rows
schedule now (blocks over 256 threads only of whole warps dividing 32, else the models' C =
216 ran 432 threads at 44%): requested bytes
1.4-1.8x their minimum (were 6.0-9.6x, the shared-atoms schedule), 46-53 registers, 55-62%
(were 75%), no spills; the five fwd launches below 50% or spilling on sm_80 before (C = 3,
152, 216, 304, 432) are unchanged.
Generic fwd (N, H, W symbolic; ``fwd_rows_shape``, ``generic_tiled``): the same rows schedule
with tiles of X_QUANTUM = 8 pixels (a generic row of 'acc' is whole X_QUANTUM pixels, so no
tile has a tail and TVM proves each tile's row segment inside the padded row: stages of
constant size, 8 x M x k^2 atoms and C x (7 * s + (k-1) * d + 1) inputs; a longer tile's
stages clip to the symbolic row end, which codegen refuses), the grid blockIdx.z / .y / .x
over images, rows and ceil(Wo / 8) tiles (a fused index left the segment unproven),
each pixel's tap-row window declared (``ddf_cuda._declare_read``), one register tile of cb
channels per thread (the largest divisor of C within the arch's ACC_WORDS leaving at least
GENERIC_FWD_THREADS threads), every arch and type (the stages are small: float64 and sm_80
too), k <= UNROLL_TAPS and C / cb * 8 <= MAX_THREADS, else the shared-atoms schedule above.
Each generic build is tried on a copy first and kept only if its stages compact to a constant
size (``common.if_constant``, guarded: TVM refuses some configurations outright, fwd at k = 1
overflowing int32 in its region analysis, and such a trial counts as not constant). A warp is
4 channel slices x 8 pixels: the staged rows' stride padded so that the slices' loads hit
disjoint banks (float32; since 2026-12-02 ``fwd_x_layout``).
8x64x56x56 k7 M = 6 (nvcc 13 -v, estimates), before the staged build below: float32 sm_90
cb = 8, 64 threads, 72 registers, 44%; requested 253 MB of atoms loads (A and P per thread) +
71.6 MB of row segments = 324.5 MB, 5.2x the static's 62.2 MB.
Then (2026-12-01, issue 16 items 1/2/5): the generic builds take the staged atoms build too
(``_atoms_staged``; A from 'Apad', A widened to whole tiles by ``ops.acda``, staged as it is:
a tile's M x 8 coefficients lie inside the widened row, a stage of constant size; a cache of
A read through the inlined 'Apad' had overflowed an int32 bound in TVM's lowering) and
GENERIC_FWD_THREADS = 128, so that the build's 2 x 7 x 8 (atom group, tap row, pixel) triples
run in parallel (one pass: P staged once per block; at 64 threads two passes, P twice, and
ptxas took 70 registers, 44%). 8x64x56x56 k7 M = 6 float32: cb = 4, 16 slices x 8 pixels =
128 threads, 3,136 blocks; ptxas 48 registers on sm_90 and sm_80, no spill, 13,440 B shared,
62% (was 72 registers, 44% on sm_90). Requested (``gpu_report``): A 8*6*18*3136*4 B = 10.8 MB
+ P 3,136 blocks x 18 x 49 x 4 B = 11.1 MB + X 8*64*380*92*4 B = 71.6 MB = 93.5 MB, 1.50x the
static's 62.2 MB, 1.68x the 55.8 MB minimum (was 324.5 MB, 5.2x, 5.8x); no-cache estimate
max(93.5 MB / 3.35 TB/s = 27.9 us, 18.0 us) = 27.9 us, 1.55x the 18 us roofline (was 5.4x).
float64 (mi = 1: the groups in turn, P staged per atom): 297.6 MB (was 1,357 MB), sm_90 72
registers, 44% (as before), sm_80 48, 62%. What is left is the halo: a tile's row segment is
8 + (k-1)*d columns (92 per row against the static's 62: X 71.6 MB against 48.2) and P is
staged per 8 pixels (11.1 MB against 3.2). Longer tiles (or several rows per block) need
stages that TVM sizes as constants, and it does only where it can prove the stage's extent
within the buffer's symbolic one (``CompactBufferAllocation``: a tile of 32 pixels' 38
columns against the padded row's (Wq - 1)*s + (k-1)*d + 1, Wq >= 8; two output rows' 8
input rows against max(H, 1) + 2p): that takes ``ops.acda`` bounding those extents below by
the CUDA tile (as ``_whole_vectors`` does by X_QUANTUM), outside this file. Done next.
Then (2026-12-01, issue 16 items 1/2/5, issue 15 items 4/6): ``ops.acda``'s generic fwd
computes 'acc' over rows of whole ROW_TILE = 32 pixels and pads its copies 'Xpad' and 'Apad'
to them ((Wt - 1)*s + (k-1)*d + 1 columns, Wt = whole 32 of Wo): a tile of up to 32 pixels
then lies inside every padded row, the last one too (its pixels past Wo compute zeros and
are never stored; 'out' keeps the real row), so TVM sizes its stages as constants and the
generic build takes the static design: ``fwd_rows_shape`` picks the largest power of two
from ROW_TILE down to X_QUANTUM whose stages fit 48 KiB, with the static rule for cb
(ROWS_ACC_WORDS, ROWS_MAX_THREADS, threads covering the atoms build). (The tail predicate
that rows of whole X_QUANTUM pixels split by 32 would need is not the way: TVM then cannot
bound the region 'out' reads from 'acc', the scope stops being a stage pipeline and
cache_read / compute_at refuse it.) The CPU schedules compute 'acc' only at the stored
vector tiles, so there only the padded input copy grows (8 columns a row at 56 pixels).
8x64x56x56 k7 M = 6 float32 (nvcc 13 -v, ``gpu_report``, estimates): tile 32, cb = 4, 16
slices, 512 threads, 896 blocks (as the static build), ptxas 58 registers on sm_90 and sm_80
(static 53), no spill, 47,616 B shared, 50% (was 48 registers, 62%, 128 threads); requested
bytes those of the static build, A 10.8 + P 896 x 18 x 49 x 4 B = 3.2 + X 48.2 MB = 62.2 MB,
1.00x the static's, 1.12x the 55.8 MB minimum (was 93.5 MB, 1.50x, 1.68x); no-cache estimate
18.6 us, 1.03x the 18 us roofline (was 1.55x). float16: the same tiles, 51 / 57 registers
(sm_90 / sm_80), 50%, 31.1 MB (was 48 registers, 62%, 46.7 MB), 1.11x its 27.9 MB minimum. float64 keeps 8-pixel tiles (32 would take
75 KB of atoms; 16 pixels' stages take 50,056 B), now cb = 2 (the static rule: 24 words), 32
slices, 256 threads, 48 registers on sm_90 and sm_80, 62% (was cb = 4, 128 threads, 72
registers on sm_90, 44%; sm_80 had cb = 2 already); its rows of whole 32 pixels add a block of zeros per row at 56
pixels (8 tiles, not 7): 3,584 blocks, 316.6 MB (was 297.6 MB). The cost of the fixed tile:
rows narrower than 32 pixels compute a whole tile (at Wo = 14, 2x the static build's 8-pixel
tiles' FMAs; 7 pixels, 4x), which is why CUDA calls still took the static fwd by default.
Then (2026-12-02, issue 16 items 1-2, issue 15 item 4): 2-D tiles. ``ops.acda``'s generic fwd
computes 'acc' over heights of whole FWD_ROWS = 2 rows and rows of whole ROW_TILE = 8 pixels
('Xpad' and 'Apad' padded alike; the padded rows and pixels compute zeros, never stored), and
its rows schedule takes tiles of 2 rows x 8 pixels (``fwd_tile_rows``): the block stages its
whole input window once ((2 - 1)*s + (k-1)*d + 1 rows x (8 - 1)*s + (k-1)*d + 1 columns of
each channel, at the channel-tile loop, not per tap row: 8 x 14 per 16 pixels at k7, against
the static's 7 x 38 per 32), the grid blockIdx.z / .y / .x over images, row pairs and tiles.
A row of 14 / 7 pixels then computes 16 / 8 (as the static's 8- / 4-pixel tiles), an image
of 7 rows 8. Where the window does not fit 48 KiB (float64; stride 2 at 64 channels) a row of
8 pixels, the tap row's segment staged per tap row (the design before, on 8-pixel tiles).
8xCxHxH k7 M = 6 float32 (nvcc 13 -v, ``gpu_report``; estimates), static / generic: C = 64,
sm_90: 2 x 8 tiles, cb = 4, 16 slices, 256 threads, 64 registers, no spill, 48,128 B shared,
4 blocks per SM: 50% (static 45-53 registers, 50-66%); sm_80 cb = 2 (``GENERIC_ROWS_ACC_WORDS_
BEFORE_SM90``: cb = 4 took 80 registers, 3 blocks by shared memory, 37.5%), 512 threads, 40
registers, 75%. Requested at H = 56 / 28 / 14 / 7: 57.1 / 14.1 / 3.0 / 0.6 MB against the
static's 62.2 / 17.1 / 5.0 / 1.5 (0.92 / 0.82 / 0.61 / 0.39x); pixels computed 0.88 / 1.00 /
1.00 / 1.14x the static's (its row tiles of 32 / 16 / 8 / 4). float16 alike (48 / 40
registers, 62 / 75%, 28.5 MB at 56: 0.92x). C = 80 (ad_resnet_s layer3): a row of 8 pixels
(2 x 8 needs 640 threads), 48 / 56 registers (sm_90 / sm_80), 62 / 55%, 0.60x / 0.38x the bytes
at 14 / 7. So CUDA calls of fwd default to the generic build (``GENERIC_DEFAULT``) where its
shape follows the static rule (``_fwd_rows_rule``); C = 152 .. 216 take the generic
fall-back's 8-pixel tiles at 72 registers, 39-44% on sm_90 (none on sm_80), C = 304 and 432
no tiled build: those stay static.
Then (2026-12-02, issue 15 item 4 follow-up): shared-memory banks of the 2 x 8 tiles. A warp
was 2 channel slices x 2 rows x 8 pixels, the slices cb x 112 words apart (0 mod 32), so each
X load took 2 wavefronts (with rows 14 words apart no channel stride parts the slices' 16
banks). ``fwd_x_layout`` picks the threads' order and the staged window's channel stride by a
counter of a warp's banks (``fwd_x_wavefronts``): at C = 64 k7 float32 warps of one row x 4
slices, the channel stride 114 words (cb = 4, sm_90) / 116 (cb = 2, sm_80), the slices' 8
pixels on disjoint banks: 1 wavefront per X load (counted on the CUDA source too). Estimates
(ptxas, ``gpu_report``): sm_90 63 registers, 48,640 B shared, 50%; sm_80 40, 49,152 B, 75%;
requested bytes unchanged (57.1 MB at 56). Tap loop per block (M = 6 atom loads, 1 wavefront
each, and cb X loads per tap): sm_90 8 warps x 49 x (6 + 4 x 1) = 3,920 wavefronts (was
5,488: 0.71x), sm_80 16 x 49 x (6 + 2) = 6,272 (was 7,840: 0.80x); at one wavefront per clock
and SM the 1,568 blocks at 56 take 23.5 us on an H100 (132 SMs, 1.98 GHz; was 32.9), above
its FMAs' 14.1 us: shared memory, not the requested bytes (the report's 17 us), bounds this
kernel. C = 80 (a row of 8, cb = 4: slices 56 words apart) took 1 already; the generic
fall-back (C = 160: 15-word stride) and stride 2 (3 -> 2) gain too; float16 / float64 keep theirs.
dx (static, k <= UNROLL_TAPS; ``_dx_registers``): one launch, the atoms in registers. The
compute indexes the atoms by the input pixel they serve (``ops.acda.acda_dx``); the sum over
(atom, tap) is split (rfactor) into groups of mi atoms x ku tap rows: a block owns a tile of
input pixels of one row, a thread one (group, run of q adjacent pixels) and its q x mi x ku x
k atoms in registers. The atoms are built once: per stage of tb bases the block stages the
coefficients A of its window (M x tb planes of ((k-1)*d + 1) grid rows x (tile + (k-1)*d)
columns, coalesced, zero insertion and padding checked in the copy) in shared memory, and
each thread reads per basis the mi x ku x (q + k - 1) coefficients its run's taps use (a
coefficient serves the k taps of neighbouring pixels that read it) and the bases P (staged
once per block). Per chunk of cc channels the block stages the chunk's dO window (cc x M
planes of the same shape), each thread sums its group's taps per channel (q + k - 1 window
elements per (atom, tap row) feed q x k FMAs; q = 1: one shared load per FMA) and stores its
q partials to shared memory, and the block adds the (M/mi) x (k/ku) partials of each
(channel, pixel). Staged planes: a thread keeps its element of a plane (``_stage_planes``);
with runs the planes are laid out by column phase (``_plane_strides``: the taps' loads are
free of bank conflicts). 8x64x56x56 k7 M = 6 float32: q = 4, mi = ku = 1 (42 partials),
tiles of 28 (7 runs, 2 tiles per row), tb = 1, cc = 1 (``DX_THREAD_WORDS``: the 28 atom
registers and the cc x q partial sums), 294 threads, 13,208 B shared memory, 896 blocks; ptxas
48 registers on sm_90 and sm_80, no spills, 62% occupancy (4 blocks of 10 warps; with cc = 2
sm_80 took 63 registers: 3 blocks, 47%). float64: q = 2, cc = 1, 48 registers, 59% on both. Rows too narrow for 192 threads with runs
(``DX_MIN_THREADS``) keep a pixel per thread (q = 1: the registered models' 7- and 14-pixel
rows). The registered models' 14 dx shapes: no spills, at most 34.5 KB shared memory; float32
40-53 registers on sm_90 (55-75%), 48-70 on sm_80 (44-62%); float64 40-64 on both (47-77%)
(before ``DX_THREAD_WORDS``: float32 49-70 on sm_80, 44-50%; float64 40-92 on sm_80, 31-70%;
the 12 (shape, dtype) pairs whose cc it lowered lost no registers or occupancy). Then sm_80
budgets 25 words (``DX_THREAD_WORDS_BEFORE_SM90``: cc = 4 on the q = 1 rows): float32 40-48
registers on sm_80, 62-77% (was 48-70, 44-62%); float64 unchanged but the 14x14 k5 shape (53 ->
40 registers, 55 -> 77%); nine float64 14-pixel rows (q = 2, 294 threads, 54-64 registers)
stay at 47% on one or both archs (4 blocks need <= 48 registers; cc is 1 there already).
Then (2026-12-01, issue 15 items 4 and 6; static float32 and the half types; ``_dx_rows``)
a block covers several input rows: a thread per (group, input row, run), the
staged planes of A and dO the block's window, (rows + (k-1)*d) grid rows x (tile + (k-1)*d)
columns. Input row i's tap row u reads window row i + (k-1)*d - u, so the rows below share
the window: per row of the block dO and A are staged (k-1)*d + rows over rows times, not k
times. (tile, rows): the fewest window elements over the image with at most
DX_ROWS_THREADS = 608 threads (19 warps: 2 blocks of <= 48 registers per SM), without runs
(q = 1) DX_ROWS_THREADS_NARROW = 512 (16 warps: 2 blocks of <= 64 registers). 8x64x56x56 k7
M = 6: tiles of 8 pixels (2 runs) x 7 rows, 588 threads, 448 blocks, cc = 1, tb = 1, 14,480 B
shared; ptxas 48 registers on sm_90 and sm_80, no spill, 2 blocks: 59% (8 x 8 rows, 672
threads, took 51-54: one block, 33%; 8 x 6 rows, 504 threads, a tail block of 2 rows, 61:
50%); float16 and bfloat16 alike (48 registers, 16,704 B, 59% on both archs; sm_80 had 58-60
registers, 47%; 71.8 MB requested, was 187). Plane layout (``_plane_strides``): row stride
= r (mod 32), r = tile / q runs, so a group's rows x r lanes read consecutive words and the
next tap row's the same words one row lower (a broadcast); the plane stride's offset (mod 32) is the one with the fewest
wavefronts over the block's warps (``_dx_wavefronts``: at 8 x 7 rows 6, one wavefront per
tap load; the offset rows * r - (k-1) * r = 2 took 1.26 on average: warps straddling two
atoms). Requested (``gpu_report._acda_dx_bytes``): per block 13 grid rows (98
real over the 8 row blocks of an image) x 14 columns (92 real over the 7 tiles): P 448 x 882
x 4 B = 1.6 MB + A 8*6*18*98*92*4 B = 31.2 MB + dO 8*64*6*98*92*4 B = 110.8 MB = 143.5 MB,
2.57x the 55.8 MB minimum (was 374 MB: P 3.2 + A 81.4 + dO 289.5, 6.7x); no-cache estimate
max(143.5 MB / 3.35 TB/s = 42.8 us, 18.0 us) = 42.8 us, 2.37x the 18 us roofline (was 6.2x).
The limit: a thread holds its q x k atoms of one (atom, tap row), so a pixel takes M*k*k / (q*k)
= 10.5 threads and a block of 19 warps at most 56 pixels; the window's halo, (8 + 6) x (7 + 6)
grid points per 8 x 7 pixels, is the 2.6x. Reaching 1.5x needs blocks of several hundred
pixels: the atoms out of registers (shared memory holds 1.2 KB of them per pixel in float32)
or rebuilt per chunk of channels. float64 keeps a row per block (its 2-pixel runs: 588
threads for a row already). The registered models' 14 dx shapes (float32, sm_90 and sm_80,
ptxas; against a row per block): all take rows, requested bytes 1.6-2.4x their minimum (were
3.8-5.5x), none more; no spills; 40-63 registers, 50-75% (were 55-77%; the 14x14 stride-2
rows, 490 threads, take 62-63 registers: exactly 50%, were 66-77%).
Then (2026-12-01, issue 15 item 4; ``DX_ROWS_WHOLE_SM``) static float32 and the half types
with runs also consider blocks of exactly 32 warps, one per SM (50% at up to 64 registers,
ptxas' cap under the block's __launch_bounds__), their threads holding runs of up to
DX_RUN_WHOLE_SM = 5 pixels (35 atom registers, ``DX_ATOM_WORDS_WHOLE_SM``; runs of 4 where a
row is too narrow for 5), and take them where their windows hold fewer elements
(``_dx_rows``' cost). Where the 143.5 MB went (``gpu_report._acda_dx_bytes``, per buffer): P
1.6 MB, A 31.2 MB, dO 110.8 MB; A and dO are the minimum's 10.8 + 38.5 MB times the halo,
98 x 92 real grid points of the windows per 56 x 56 pixels: 2.87x. 8x64x56x56 k7 M = 6: runs
of 5, tiles of 15 pixels (3 runs; the row's tail tile of 11) x 8 rows, 1,008 threads, 224
blocks, cc = 1, tb = 1; ptxas 64 registers on sm_90 and sm_80, no spill, 23,744 B shared,
one block per SM: 50%; float16 and bfloat16 64 registers, 28,224 B, 50%. Requested: P 224 x
882 x 4 B = 0.8 MB + A 8*6*18*92*74*4 B = 23.5 MB + dO 8*64*6*92*74*4 B = 83.7 MB = 108.0
MB, 1.94x the 55.8 MB minimum (92 real grid rows over the 7 row blocks' 14-row windows, 74
real columns over the 4 tiles' 21-column windows: a halo of 2.17x); no-cache estimate
max(108.0 MB / 3.35 TB/s = 32.2 us, 18.0 us) = 32.2 us, 1.79x the 18 us roofline (was 42.8
us, 2.37x). Runs of 4 in 32 warps (12 x 8 rows, 59-61 registers) requested 116.9 MB in 280
blocks: 3 rounds of one block per SM on 132 SMs, against 2 for 224. Not reached: 1.5x
(about 90 MB, a halo of 1.79x) takes blocks of about 200 pixels (14 x 14: 1.75x); with a
pixel's 294 atoms in registers that is 57,600 words, all of an SM's 65,536 (a block of 1,024
threads holds at most 64 registers each, 35 of them atoms here: 120 pixels), and shared
memory holds 48 KiB / 1,176 B = 41 pixels' atoms. Rebuilding the atoms per chunk of cc
channels adds T / cc build FMAs per channel FMA (the chunk's dO window, cc x 6 planes of a
200-pixel block's 20 x 20 window, fits 48 KiB for cc <= 5: 3.6 more, 4.6x the FMAs), and
summing dO x A over the atoms first, then the T = 18 bases per tap (against M = 6 atoms),
3.4x the FMAs: both cost more than the halo.
The registered models' dx shapes (float32, sm_90 and sm_80, ptxas): the three 28x28 stride-2
shapes (C = 80, 152, 216) take 32-warp blocks (runs of 4, 16 x 6 rows, 1,008 threads): 50
registers, no spill, 50% (were 48, 59%), requested 1.41-1.51x their minimum (were 1.74-1.86x);
the other 11 shapes as before.
Before (2026-11-30): q = 1, mi = 3 (14 partials), A read from global memory per atom tap
(48 registers, 61%); before that the atoms in shared memory (a tile of 32 pixels filled
37.6 KB) and dO loaded from global memory for every (channel, atom, tap) of every pixel (38x
the minimum bytes; before that, grid-wide atoms through a global scratch, 87x). k > 7 keeps
that shared-atoms schedule (each thread sums its channels' M x k x k taps in a register).
Generic dx (k <= 7; ``dx_tile`` of a generic workload): the atoms-in-registers schedule with
tiles of X_QUANTUM input pixels (a generic row is whole X_QUANTUM pixels; the windows of a
longer tile clip to the symbolic row end), the grid blockIdx.z / .y / .x over images, rows
and tiles, the zero-inserted grid's rows bounded below (``ops.acda``: max(H, 1)); 8 pixels
are too few for runs (q = 4 would leave 84 threads), so q = 1, mi = 3, 14 partials: 112
threads. 8x64x56x56 k7 float32 (nvcc 13, estimates): sm_90 56 registers, 23,744 B shared,
56% (static 48, 62%), sm_80 40 registers; float64 62 / 56. Requested bytes: the A and dO
windows 8 + 6 columns per 8 pixels (92 real per row against the static's 62): 561.5 MB,
1.50x the static's 374 MB (the shared-atoms generic schedule it replaces: 2,141 MB, 5.7x);
5.2x since the static's blocks cover 8 input rows of 15 pixels (``_dx_rows``: 108.0 MB; 3.9x
of its 143.5 MB over 7 rows of 8; the generic keeps a row per block: 112 threads), so
CUDA calls keep the static dx by default (``GENERIC_DEFAULT``); served generic (the
generic shape mode, bundles without ``--input``), one build serves every size. Several input
rows per generic block (``_dx_rows``' design, tried 2026-12-01 at 4 rows x 8 pixels, 448
threads) leave a row tail: TVM then sized the thread's atoms and partial sums over the
symbolic height (2,147,483,647 rows; ``common.constant_stages`` now rejects that size),
as it clips the dO and A windows to it; a bound on the padded height below by the block's
rows in ``ops.acda`` (as fwd's and datoms' tiles need, above) comes first.
Then (2026-12-02, issue 15 item 4, issue 16 items 1/5): ``ops.acda``'s generic dx computes
'acc', its atoms and the zero-inserted grids under them over whole ``DX_ROWS`` = 12 input
rows (max(H, 1) rounded up; the rows past the image compute zeros and are never stored), so
a block of a divisor of DX_ROWS rows has no row tail and TVM sizes its windows as constants:
the generic float32 and half builds take the static design (``dx_tile``: runs dividing the
8-pixel tile, ``_dx_generic_rows``: the most rows of DX_ROWS' divisors within
DX_ROWS_WHOLE_SM threads). 8x64x56x56 k7 M = 6 float32 (nvcc 13 -v, ``gpu_report``,
estimates): runs of 4 (2 per tile) x 42 groups x 12 rows = 1,008 threads, 280 blocks (5 row
blocks over the 60 padded rows x 7 tiles x 8 images), cc = 1, tb = 1; ptxas 59 / 58
registers (sm_90 / sm_80), no spill, 19,712 B shared, one block per SM: 50% (was 112
threads, 56 / 40 registers, 56% / 69%); float16 and bfloat16 63 / 54 registers, 25,408 B,
50%. Requested: P 280 x 882 x 4 B = 1.0 MB + A 8*6*18*80*92*4 B = 25.4 MB + dO
8*64*6*80*92*4 B = 90.4 MB (18 x 14 grid-point windows: 80 real rows over the 5 row blocks,
92 real columns over the 7 tiles; the static runs-of-4 blocks of 12 x 8 rows, transposed)
= 116.9 MB, 1.08x the static build's 108.0 MB, 2.09x the 55.8 MB minimum (was 561.5 MB,
5.2x, 10.1x); no-cache estimate 116.9 MB / 3.35 TB/s = 34.9 us, 1.94x the 18 us roofline
(static 1.79x; was 167.6 us, 9.3x). float64 keeps a row per block (2-pixel runs leave 168
threads: q = 1, as before). The price of a fixed DX_ROWS: an image of 14 or 7 rows computes
24 or 12 rows (the registered Ad-ResNets' 14x14 and 7x7 dx: 1.96x the pixels, the windows'
bytes 0.54-0.73x the static build's), 56 rows 60. (DX_ROWS = 7 would fit 56, 28, 14 and 7
exactly at 588 threads, 448 blocks, 143.5 MB: 1.33x the static's at the benchmark shape.)
Shared-memory wavefronts per block, counted as the static's below: atoms 18 x 6 x 12 x 2 +
18 x 32 x 17 = 12,384, per channel 144 + 320 + 128 + 126 = 718 x 64 = 45,952: 58.3 K per
96 pixels (608 per pixel; static 539) -> 280 x 58.3 K / 132 = 124 K clk (static 110 K); by
rounds of one block per SM 3 x 58.3 K = 175 K against 2 x 64.7 K = 129 K. The staged windows
copy whole phases of the run layout: 20 columns per 14-column window row (static 25 per 21),
neighbours' elements ``gpu_report`` does not count (both builds).
Tried (2026-12-02, issue 15 items 4/6, issue 16 item 5), not landed: fewer dx bytes at the
same shared-memory wavefronts. Of the static 108.0 MB, dO is 83.7 and A 23.5 (P 0.8): the
windows' halo (92 x 74 real grid points per 56 x 56 pixels, 2.17x). With the atoms in
registers a block of 32 warps holds at most 1,008 x 35 / 294 = 120 pixels (15 x 8 has the
fewest window elements of the 120-pixel shapes: 10 x 12 6,880, 20 x 6 7,480 against 6,808),
so fewer bytes need the atoms in phases (the dX sums in shared memory). Counted as above
(a staged plane a warp load and a store per 32 words; per phase the A stages and 11 A + 7 P
loads per basis and warp; per channel and phase the dO planes, 11 tap loads and 5 partial
stores per warp, per 32 pixels 21 partial loads + a load and a store of the sum), over every
32-warp geometry with runs of up to 5: the only ones under 108 MB without more wavefronts on
sm_90 (132 SMs, one block each) are 2 phases of 3 atoms, 30 x 8 pixels (112 blocks, 90.2
MB; 128.6 K per block and by rounds, against 2 rounds of 64.7 K = 129.4 K; 14.40 M over
all blocks against 14.50 M) and 20 x 12 (120 blocks, 86.1 MB, 127.6 K by rounds but 1.06x
over all blocks); <= 83 MB takes 3 or 6 phases, 96 or fewer blocks, 1.5-3x by rounds. On
sm_80 (108 SMs) every phased geometry loses by rounds (112 blocks, 2 rounds: 257 K against
224 in 3, 194 K). Ported onto this file (30 x 8, sm_90 only), it did not build clean: adding
the partials straight into the shared sums took a load, a store and a barrier per partial
(504 wavefronts per channel and phase where 184 were counted); summed in a register first
('acc' split by phase with rfactor), TVM sizes the shared sums by the thread spread's
bounding box (34 rows x 30 per channel: 261 KB), and ptxas spilled 40-196 bytes at 64
registers (the 15 x 8 build's exact cap). Generic: its 8-pixel tiles and DX_ROWS = 12 leave
the same choice (DX_ROWS = 24 in 2 phases, 8 x 24: 99.1 MB, 228 K by rounds against 175 K).
Tried (2026-12-02, issue 15 items 4/6), not landed: longer runs in the 32-warp blocks. Over
every block of at most 1,024 threads (42 groups a run: mi = ku = 1) ``_dx_rows`` picks, with
runs of 6 (42 atom registers) 12 x 12 pixels, 200 blocks, 80 x 80 real grid points (halo
2.04x): 101.5 MB (``gpu_report``, estimate); ptxas (nvcc 13 -v) 64 registers with 120 B
spilled on sm_90, 96 B on sm_80 (DX_SHARED_BYTES raised to 48 KiB for its 42 x 144 partials).
Runs of 7 or 8 (49 / 56 atom registers, not built: more than q = 6, which spills) give
14 x 12 or 16 x 12, 160 blocks, 74 x 80: 93.8 MB, still over 90. The bound: <= 90 MB needs at most ~5,690 real
grid points per image (14 x 14 blocks: 74 x 74, 86.7 MB), 196 pixels x 294 atoms = 57,624
of an SM's 65,536 registers at 50% occupancy, so no atoms-in-registers geometry reaches it.
What would, in arithmetic only: blocks over output pixels (no dO / A halo) adding their
windows' dX partials (C x 21 x 14 per 15 x 8 block) through a global scratch summed by a
second launch: loads A 10.8 + dO 38.5 + P 0.8 + scratch 13.9 = 64.1 MB, writes 13.9 + 6.4;
but a thread's q pixels then scatter to q + k - 1 columns (92 partials per (channel, pixel)
at q = 5, against 42: about 2.2x the partial stores and loads in shared memory), and it
needs ``ops.acda`` to split dX's sum by output block (a rfactor buffer per block would be
dense: blocks x C x H x W).
datoms (static, k <= UNROLL_TAPS, output rows of at least 32 pixels; ``_datoms_rows``): a
block per (image, atom group, tap row u, output row(s), tile of the row), a thread per pixel with mi atoms x k tap columns of dD in
registers (``DATOMS_WORDS``: all 6 atoms in float32, 2 in float64); per chunk of cc channels
the block stages the input row segment of tap row u in shared memory (padding checked in the
copy), so per channel a thread loads mi dO values (coalesced) and k inputs from shared memory
with no padding check in the loop (from global memory, behind one check each, six atoms took
80 registers). 8x64x56x56 k7: 56 threads, 3,136 blocks, 64 registers, 3,968 B, 50% (fp32);
float64 46-56 registers, 56-66%; requested 313 MB, 4.2x (was 899 MB, 12.1x). Symbolic shapes,
k > 7 and narrower rows (the registered models' 7- and 14-pixel rows: blocks of 28-49 threads
took 61-80 registers there, 28-50%; since 2026-12-02 float64 only, see below): the atoms build's register tile (a thread per atom group, tap row and pixel, mi atoms
x k tap columns of dD in registers), the channels in place of the bases.
Then (2026-12-01, issue 15 items 4 and 6; static float32 and the half types, rows of at least
32 pixels, balanced tiles dividing the row; ``_datoms_block``) every tap row in one block: a
block per (image, output row, tile of at most 32 pixels), a thread per (atom group, tap row,
pixel), mi atoms x k tap columns of dD in registers (DATOMS_BLOCK_WORDS: mi = 3 at M = 6 k7,
both groups in the block); per chunk of cc channels the block stages the tile's input window
((k-1)*d + 1 rows x (tile-1)*s + (k-1)*d + 1 columns; rows padded to tile mod 32 words at
stride 1: a warp's consecutive (u, pixel) pairs hit consecutive banks) and the tile's dO for
every atom, so dO is loaded once (the rows schedule: once per tap row, k times, 270 of its
313 MB). 8x64x56x56 k7: tiles of 28, 392 threads, 896 blocks, cc = 4, 9,408 B shared; ptxas
48 registers, no spill, 3 blocks per SM: 61% on sm_90 and sm_80. Requested (``gpu_report``):
dO 8*64*6*3136*4 B = 38.5 MB + X 8*64*380*62*4 B = 48.2 MB = 86.8 MB, 1.17x the 74.5 MB
minimum (was 313 MB, 4.2x); no-cache estimate max(86.8 MB / 3.35 TB/s = 25.9 us, 0.94 GFLOP /
67 TFLOP/s) = 25.9 us, 1.17x the 22.2 us roofline (was 4.2x). float64 keeps the rows schedule
(2 atoms per thread: 588 threads, 55 registers, one block per SM: 30%).
Since 2026-12-02 (issue 15 item 4/6) static rows under DATOMS_MIN_ROW (float32 and the half
types) take ``_datoms_block`` too (they had the register tile: 224.8 / 56.2 / 14.0 MB at
8x64xHxH k7, M = 6, H = 28 / 14 / 7, 10.8 / 11.9 / 12.8x the generic build's 2 x 8 tiles),
in blocks ``_datoms_narrow`` picks: tiles dividing the row, whole rows dividing Ho, the two
atom groups in the block or one per block, within DATOMS_NARROW_THREADS = 512 threads, the
fewest staged window elements. 28: 4 rows x 7 pixels (392 threads, cc = 8); 14: 2 rows x 14
(392); 7: the whole 7 x 7 image per atom group (343 threads, a channel per chunk). Requested
15.7 / 3.8 / 0.80 MB, 0.75 / 0.80 / 0.73x the generic's (float16 / bfloat16 the same ratios);
nvcc 13 ptxas 41-53 registers, no spill, 61% / 61% / 52% on sm_90 and sm_80 (estimates:
``gpu_report``, no GPU). Rows >= 32 pixels: the same PrimFuncs as before.
Generic datoms (k <= 7; ``_datoms_generic``): by rows in tiles of X_QUANTUM pixels, a block per
(image and atom group: blockIdx.z, output row: .y, tile: .x), a thread per (tap row, pixel):
k x 8 threads, mi atoms x k tap columns of dD each (DATOMS_WORDS, as the static), per chunk of
cc channels the tile's window ((k-1)*d + 1 rows x 7*s + (k-1)*d + 1 columns) staged in shared
memory, dO from global memory (8 adjacent pixels per tap row). Where TVM does not compact the
window to a constant size (no padding; stride 2 with dilation 2: the window's rows then are
not proven inside the padded rows) the register tile below. 8x64x56x56 k7 float32 (nvcc 13,
estimates): 56 threads, 3,136 blocks, cc = 16, 6,272 B shared, sm_90 72 registers (44%; static
64, 50%), sm_80 64, no spills; float64 (mi = 2) 48 registers on both. Requested bytes: dO k
times as the static, the windows' 92 real columns per row against the static's 62: 341 MB,
1.09x the static's 313 MB (float64 1.21x: three atom groups each stage the windows); since
the static took ``_datoms_block`` 3.9x its 86.8 MB.
Then (2026-12-01, issue 16 items 1/2/5): the generic builds take ``_datoms_block`` with tiles of
X_QUANTUM pixels (``datoms_block_tile``; grid blockIdx.z / .y / .x over images, output rows,
tiles; each pixel's tap window declared as fwd's; dO widened to whole tiles by ``ops.acda``,
'dOpad', staged as it is: a stage of constant size): a thread per (atom group, tap row,
pixel), every tap row in one block, so dO is staged once per chunk, not loaded per tap row;
float64 too (mi = 1 within DATOMS_BLOCK_WORDS; 336 threads); more than 1024 threads (M >= 19
at k7 in float64) keep ``_datoms_generic``. Chunks of DATOMS_GENERIC_CHUNK = 4 channels (with
8 or 16 sm_90's ptxas took 40 registers and spilled 40 bytes), the window's rows at a stride
of 8 or 24 words (mod 32: a warp's 4 tap rows x 8 pixels on disjoint banks; 24 for the 14
columns at k7). 8x64x56x56 k7 float32: mi = 3, 112 threads, 3,136 blocks, 3,456 B shared;
ptxas 48 registers on sm_90 and sm_80, no spill, 62% (was 72 / 64 registers, 44% / 50%).
Requested (``gpu_report``): dO 8*64*6*3136*4 B = 38.5 MB + X 8*64*380*92*4 B = 71.6 MB =
110.1 MB, 1.27x the static's 86.8 MB, 1.48x the 74.5 MB minimum (was 341.3 MB, 3.9x, 4.6x);
no-cache estimate max(110.1 MB / 3.35 TB/s = 32.9 us, 14.0 us) = 32.9 us, 1.48x the 22.2 us
roofline (was 4.6x). float64: 220.3 MB, 1.48x its minimum (was 969 MB), 38-39 registers, 69%.
Since 2026-12-02 (the figures above: a row per block) the block holds 2 output rows x 8
pixels (``ops.acda`` pads the heights to whole DATOMS_ROWS; stride 1, within 1024 threads):
the 8-row window staged once for both rows, 216 real (row, block) pairs against 380: 38.5 +
40.8 = 79.2 MB, 0.91x the static's 86.8 MB (C = 80: 99.0 against 108.5); 224 threads, ptxas
54 registers on sm_90 and sm_80, no spill, 55% (float64: 672 threads, 40 / 32 registers, no
spill, 66% / 98%); estimates, ``gpu_report``. CUDA calls default to it (GENERIC_DEFAULT).
Padding and zero insertion are index checks in the loads (inlined).

Time estimate (no GPU here: arithmetic, not a measurement), 8x64x56x56 k7, M = 6, T = 18, fp32,
sm_90: per SM and clock 4 warp FMAs (128 lanes) and one L1/shared wavefront (128 B); 132 SMs at
1.98 GHz; a warp's load of 32 consecutive elements is one wavefront, two where it straddles a
128 B line (the X / dO loads at taps v != p: 6 of 7), a warp-uniform load one; the atoms
phase and the channel phase of a block are summed (a barrier between them). 784 warps of
pixels (25,088 px).
- fwd atoms (mi = 3): 784 x 5,292 warp FMAs / (4 x 132) = 7.9 K clk; loads 784 x 7 x 18 x
  (6 + 2 x 7) = 1.98 M wavefronts + 0.23 M shared stores -> 16.7 K clk (was 62.9 K: A and P
  per atom tap).
- fwd channels (cb = 8): 784 x 18,816 warp FMAs / 528 = 27.9 K clk; loads per pixel warp
  64 x 294 / 8 = 2,352 shared + 64 x 7 x 13 = 5,824 X wavefronts -> 48.6 K clk (32.6 K if
  every X load were one wavefront); (was 146 K clk: a shared load per FMA).
- fwd total 65 K clk = 33 us (49 K = 25 us), against the 18 us FP32 roofline: 1.8x (1.4x);
  was 209 K clk = 106 us, 5.9x. Load-bound: an X load feeds M FMAs only.
- fwd by tap rows (sm_90 fp32, now): atoms 16.7 K clk as above; channels per pixel warp
  (block) 2,352 atom + 3,136 X shared loads (one wavefront each: 32 adjacent pixels) + the
  row copies, 7 x (2,432 elements: 76 warp loads of ~3 lines, a warp's 32 elements spanning
  two channel rows, + 76 shared stores) = 2,128 -> 7,616 wavefronts (FMAs 4,704) -> 784 x
  7,616 / 132 = 45.2 K clk (was 48.6 K). Total 61.9 K clk = 31 us, 1.74x the roofline (was
  1.8x). Counted by blocks (896, the 24-pixel tail tiles issuing as full ones): 70.8 K, 2.0x
  (was 74 K).
  What bounds it: 48 sums per thread (64 registers at 50%) give 8 X and 6 atom loads per 48
  FMAs, 0.29 wavefronts per warp FMA against 0.25 of FMA issue, so the channel phase is
  load-bound even with free copies (5,488 per block: 32.6 K clk), and the atoms phase adds
  16.7 K (P, warp-uniform, is 63% of it: k loads per basis for mi x k FMAs, mi = 3 within
  ATOM_WORDS; mi = 6 took 80 registers). Free copies would give 49 K clk = 25 us, 1.4x; the
  1.5x aim needs the atoms phase or the loads per FMA cut further (several pixels per thread
  cost atom loads: cb x q <= 8 at M = 6, and q = 2, cb = 4 loads more per FMA).
- fwd with staged A and P (now, sm_90 and sm_80, cb = 4, 512 threads: 16 warps, 896 blocks,
  6.8 per SM), per block: atoms, per basis A 6 warp loads (~1.75 lines each) + 6 shared
  stores and P 2 + 2 (~19), then 14 warps x (3 A + 7 P) = 140 shared loads (32 adjacent
  words or a broadcast: one wavefront each) -> 18 x 159 = 2,862 + the atom stores 14 x 21 =
  294 (5,292 warp FMAs: 1.3 K clk, hidden) = 3,156; channels 16 warps x 49 taps x (6 atom +
  4 X) = 7,840 (18,816 warp FMAs: 4.7 K clk); the row copies 2,128 as above: 13,124
  wavefronts x 896 / 132 = 89 K clk = 45 us, 2.5x the 18 us roofline (by blocks, as the
  70.8 K above). The DRAM side is at the roofline (62 MB requested); the shared-memory side
  is not: the 6 atom loads per tap now feed 24 FMAs. Left: cb = 8 (the atom loads halved:
  7,448 + 3,156 -> 71 K clk) needs ptxas to keep the staged build within 64 registers.
- dx, the shared-atoms schedule (before): its atoms build reads a coefficient per atom tap
  (the atoms are indexed by the input pixel they serve): per warp 18 x (21 x 13/7 + 7) = 828
  wavefronts, 10,976 warps -> 69 K clk (16.7 K was counted "as fwd", too low); channels 784 x
  (2,352 + 64 x 6 x 7 x 13 = 34,944) / 132 = 221 K clk: 290 K clk = 146 us, 8x.
- dx, atoms in registers, before (mi = 3, ku = 1, q = 1, tiles of 28: 896 blocks x 392
  threads = 10,976 warps): atoms, per warp 18 bases x (21 A loads x 13/7 wavefronts + 21
  warp-uniform P loads) = 1,080 wavefronts -> 10,976 x 1,080 / 132 = 90 K clk; channels, per
  warp 64 x 21 dO shared loads (one wavefront each, the atoms in registers) -> 112 K clk; dO
  windows (289.5 MB: 2.3 M global wavefronts + as many shared stores) 34 K clk; partials 5 K
  and their sums 6 K clk: 247 K clk = 125 us, 6.9x the 18 us roofline (requested bytes 14.8x).
- dx now (q = 4, mi = ku = 1, tb = 1; counted with cc = 2, the same with cc = 1, the default
  now: per chunk of 1 channel 108 + 100 + 40 + 42 = 290 x 64 chunks; 896 blocks of 10 warps,
  6.8 per SM), counted
  per block, a global warp load and a shared store one wavefront each as above, shared loads
  one each (the phase layout: no bank conflicts; checked on the generated addresses). Atoms:
  the A stages 18 x 6 planes x 9 warps (280 words) x 2 = 1,944; per basis and warp 10 A + 7
  P loads: 18 x 10 x 17 = 3,060 (5,040 warp FMAs: 1.3 K clk, hidden) -> 5,004 x 6.8 = 34 K
  clk (was 90 K). Per chunk of 2 channels: dO planes 12 x 9 x 2 = 216; the taps 10 warps x 2
  x 10 loads = 200 (560 warp FMAs: 140 clk); partials 10 x 2 x one 16-byte store per lane (4
  wavefronts) = 80; their sums 2 warps x 42 = 84: 580 x 32 chunks x 6.8 = 126 K clk (was
  157 K). Total 160 K clk = 81 us, 4.5x the 18 us roofline (was 6.9x); requested bytes 6.7x
  the minimum (was 14.8x: A per atom tap, 531 MB, now staged once per block, 81 MB). With
  rows of 34 words (odd stride 35) the runs' loads took 1.9-2.0 wavefronts: 205 K clk, 5.7x.
  Left: the dO window is staged once per input row that reads it (7x the dO minimum; blocks
  of several rows need the atoms of every row), the 42 partials cost a store and a load each
  (30% of the channel phase), and the FMAs are a quarter of the wavefronts.
- dx over 7 input rows (now, float32: tiles of 8 = 2 runs, 588 threads = 19 warps, 448
  blocks, 3.4 per SM), per block, counted as above (one wavefront per shared load: the
  plane layout's, ``_dx_wavefronts``, for the taps' loads):
  atoms, the A stages 18 x 6 planes x (13 x 16 words: 7 warps) x 2 = 1,512, per basis and warp
  10 A + 7 P loads: 18 x 19 x 17 = 5,814 -> 7,326; per channel (cc = 1): dO planes 6 x 7 x 2 =
  84, the taps 19 warps x 10 = 190, partials 19 x 4 = 76, their sums 2 warps x 42 = 84: 434 x
  64 = 27,776; total 35.1 K x 448 / 132 = 119 K clk = 60 us, 3.3x the 18 us roofline (was 160
  K, 4.5x): per pixel 627 wavefronts against 842 (56 pixels per block, was 28). Left: the
  partials (37% of the channel phase) and the taps' loads per FMA (10 per 28).
- dx in blocks of 32 warps (now, float32: runs of 5, tiles of 15 = 3 runs x 8 rows, 1,008
  threads, 224 blocks, one per SM), per block as above: atoms, the A stages 18 x 6 planes x
  (14 x 25 words: 11 warps) x 2 = 2,376, per basis and warp 11 A + 7 P loads: 18 x 32 x 18 =
  10,368 -> 12,744; per channel: dO planes 6 x 11 x 2 = 132, the taps 32 warps x 11 = 352,
  partials 32 x 5 = 160, their sums 4 warps x 42 = 168: 812 x 64 = 51,968; total 64.7 K per
  block, 539 wavefronts per pixel (was 627) -> 224 x 64.7 K / 132 = 110 K clk = 55 us, 3.1x
  the 18 us roofline (was 119 K, 3.3x); counted by rounds of blocks (2 of one per SM against
  2 of two) 129 K against 140 K.
- datoms (mi = 3): 10,976 warps (8 x 2 atom groups x 7 tap rows x 3,136 px / 32), per channel
  21 warp FMAs and 3 dO + 7 input loads (13 wavefronts): FMA 10,976 x 64 x 21 / 528 = 27.9 K
  clk, loads 10,976 x 64 x 16 / 132 = 85 K clk (+ 1.7 K of stores): 44 us (28 us with one
  wavefront per load) against its 16 us roofline (H200 DRAM): 2.7x (1.7x); was about 161 us,
  10x (a thread per atom tap: dO and the input loaded for every FMA).
- datoms by rows (now): 3,136 blocks of 2 warps (32 + 24 pixels of a row), per channel and
  block: dO 2 warps x 6 loads x 1.75 wavefronts (a row starts at y * 56 words: on a 128 B
  line one row in four) = 21, inputs 2 x 7 shared loads = 14 (adjacent pixels: no
  conflicts), the row copy (62 elements, 56 real: ~4.5 line loads + 3 stores) 7.5: 42.5
  wavefronts for 84 warp FMAs (21 clk) -> 3,136 x 64 x 42.5 / 132 = 64.6 K clk, + dD stores
  3,136 x 2 x 42 x 1.75 / 132 = 3.5 K: 68 K clk = 34 us (was 87 K, 44 us): 1.56x its 22 us
  H100 roofline (was 2.0x), 2.2x the 16 us H200 one. Left: the dO loads (half of it; blocks
  of 4 rows would align them, 224 threads: 43.75% at 64 registers) and the loads per FMA
  (13 per 42).
- datoms, every tap row in one block (now, float32): 896 blocks of 13 warps (392 threads),
  per channel and block 13 warps x (3 dO + 7 X shared loads, one wavefront each with the
  window's rows padded; a warp straddling the two atom groups: 2 on 4 lanes) = 130 for 273
  warp FMAs, + the chunk's stages per channel (X 7 rows x 34 and dO 6 x 28: ~42 + 30 and ~36
  + 21 wavefronts per 4 channels) ~32: 162 x 64 channels + dD stores ~400 = 10.8 K per
  block -> 896 x 10.8 K / 132 = 73 K clk = 37 us (the rows schedule: 68 K, 34 us): the
  shared-memory side as before, the DRAM side 3.6x smaller (86.8 MB requested against 313).
"""
from __future__ import annotations

import functools
import re

from typing import Optional

import tvm
import tvm.s_tir as s_tir

from dynfilter_tvm.ops.acda import DATOMS_ROWS, DX_ROWS, FWD_ROWS, ROW_TILE, X_QUANTUM, whole
from dynfilter_tvm.ops.common import conv_out_size

from . import register
from .ddf_cuda import _declare_read
from .common import MAX_THREADS, UNROLL_TAPS, bind_flat, extent, if_constant, register_acc, unroll, unroll_taps

SHARED_BYTES = 40 * 1024  # atoms tile in shared memory, under the 48 KiB static limit
MAX_TILE = 32  # pixels per block
ATOM_WORDS = 24  # 32-bit registers for a thread's atom accumulators while building the atoms
# 32-bit registers for a thread's channel accumulators. sm_90 (nvcc 13): fwd at M = 6 takes 8
# channels (4 in float64), 63-64 registers, 50% occupancy. sm_80's ptxas took 80 registers
# (38%) for 8 channels, 64 (50%) for 4: there 24.
ACC_WORDS = 48
ACC_WORDS_BEFORE_SM90 = 24


def _acc_words(target) -> int:
    arch = str(target.attrs.get("arch", "sm_90")) if target is not None else "sm_90"
    digits = re.match(r"sm_(\d+)", arch)
    return ACC_WORDS if digits is None or int(digits[1]) >= 90 else ACC_WORDS_BEFORE_SM90


def _tile(wl, wo: int) -> int:
    """Pixels per fwd block: a warp's worth when the atoms fit in shared memory (they are kept
    in the accumulation type: 8 bytes for float64)."""
    per_pixel = wl.p["M"] * wl.p["k"] ** 2 * (8 if wl.dtype == "float64" else 4)
    tile = 1
    while tile * 2 <= min(MAX_TILE, wo) and tile * 2 * per_pixel <= SHARED_BYTES:
        tile *= 2
    return tile


def atoms_per_thread(wl, words: int = ATOM_WORDS) -> int:
    """``mi``: atoms a thread builds per (tap row, pixel), each over the k tap columns (one
    column where the taps stay loops): the largest divisor of M within ``words`` 32-bit
    registers (``ATOM_WORDS`` unless given)."""
    per_m = (wl.p["k"] if wl.p["k"] <= UNROLL_TAPS else 1) * (2 if wl.dtype == "float64" else 1)
    return max(b for b in range(1, wl.p["M"] + 1) if wl.p["M"] % b == 0 and b * per_m <= max(words, per_m))


def _atoms_in_shared(sch, wl, block, threads: int) -> None:
    """The tile's atoms, built by the block's threads into shared memory as a small matrix
    product per pixel, atoms[m, u, v] = sum_t A[m, t] P[t, u, v], register-tiled: a thread owns
    (tap row u, pixel) and ``mi`` atoms x the k tap columns, mi x k accumulators (within
    ``ATOM_WORDS``), so per basis t it loads mi coefficients A and k bases P for mi x k FMAs
    (was: a thread per atom tap, A and P loaded for every FMA, the coefficients k^2 times
    over). Each then stores its mi x k atoms once (a shared accumulator would need a barrier
    inside the guarded loop). Taps beyond ``UNROLL_TAPS`` keep a thread per tap column."""
    p = wl.p
    atoms = sch.get_sblock("atoms")
    sch.compute_at(atoms, block)
    sch.set_scope(atoms, 0, "shared")
    loops = sch.get_loops(atoms)
    own = loops[next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(block))) + 1:]
    # (compute_at dropped the unit-extent ones)
    kept = [nm for nm, n in (("m", p["M"]), ("u", p["k"]), ("v", p["k"])) if n > 1]
    has_t = p["T"] > 1
    has_x = len(own) - len(kept) - has_t  # the tile's pixels: 1 unless a one-pixel tile
    named = dict(zip(kept + ["x"] * has_x + ["t"] * has_t, own))
    unrolled_v = p["k"] <= UNROLL_TAPS
    mi = atoms_per_thread(wl)
    if "m" in named and mi == 1:
        named["mo"] = named.pop("m")
    elif "m" in named and mi < p["M"]:
        named["mo"], named["m"] = sch.split(named["m"], [None, mi])
    outer = [named.get(nm) for nm in ("mo", "u") + (() if unrolled_v else ("v",)) + ("x",)]
    inner = [named.get(nm) for nm in ("t", "m") + (("v",) if unrolled_v else ())]
    outer, inner = [l for l in outer if l is not None], [l for l in inner if l is not None]
    if outer or inner:
        sch.reorder(*outer, *inner)
    fused = sch.fuse(*outer) if len(outer) > 1 else outer[0] if outer else sch.add_unit_loop(atoms)
    _, tx = sch.split(fused, [None, threads])
    sch.bind(tx, "threadIdx.x")
    local = sch.cache_write(atoms, 0, "local")
    sch.reverse_compute_at(local, tx)
    regs = [l for l in inner if l is not named.get("t")]
    if named.get("t") is not None:
        sch.decompose_reduction(atoms, named["t"])
    for loop in regs:
        sch.unroll(loop)
    copy = sch.get_loops(local)
    at = next(i for i, loop in enumerate(copy) if sch.get(loop).same_as(sch.get(tx)))
    for loop in copy[at + 1:]:  # the thread's mi x k atoms: registers, stored once each
        sch.unroll(loop)


# the rows schedule's atoms build (``_atoms_staged``): 32-bit registers for a thread's atoms
# (mi atoms x k tap columns of one tap row); M = 6, k = 7 float32: mi = 3, 21 words
STAGED_ATOM_WORDS = 24


def staged_atoms_per_thread(wl) -> int:
    """``mi`` of :func:`_atoms_staged`: the largest divisor of M whose mi x k atoms fit
    STAGED_ATOM_WORDS 32-bit registers (3 at M = 6, k = 7 float32)."""
    per_m = wl.p["k"] * (2 if wl.dtype == "float64" else 1)
    return max(b for b in range(1, wl.p["M"] + 1) if wl.p["M"] % b == 0 and (b == 1 or b * per_m <= STAGED_ATOM_WORDS))


def staged_atoms_bytes(wl, tile: int) -> Optional[int]:
    """Shared memory of :func:`_atoms_staged`'s stage of one basis (the tile's M coefficients
    and the basis' k x k taps), or None where it does not apply: more atom words per thread
    than STAGED_ATOM_WORDS."""
    p = wl.p
    item = 8 if wl.dtype == "float64" else 4
    if p["k"] * item // 4 > STAGED_ATOM_WORDS:
        return None
    return (p["M"] * tile + p["k"] ** 2) * {"float64": 8, "float32": 4}.get(wl.dtype, 2)


def staged_atoms_plan(wl, tile: int, threads: int) -> Optional[dict]:
    """How :func:`_atoms_staged` builds a tile of ``tile`` pixels with ``threads`` threads:
    dict(mi: atoms per thread, passes: 1 where the (atom group, tap row, pixel) triples run in
    parallel, else M / mi, the groups in turn, A and P staged per group), or None where it does
    not apply: taps not unrolled, more (tap row, pixel) pairs than ``threads`` or a single one.
    Generic builds too (since 2026-12-01: A staged from its widened rows, 'Apad', see
    :func:`_atoms_staged`)."""
    p = wl.p
    k, M = p["k"], p["M"]
    if k > UNROLL_TAPS or k * tile > threads or k * tile < 2 or staged_atoms_bytes(wl, tile) is None:
        return None
    mi = staged_atoms_per_thread(wl)
    return dict(mi=mi, passes=1 if M // mi * k * tile <= threads else M // mi)


def fwd_staged_plan(wl, target, generic=None) -> Optional[dict]:
    """:func:`staged_atoms_plan` of fwd's rows schedule for ``target`` (None where fwd does not
    take it), with its ``tile`` and ``blocks``: static ``wl``, or ``wl``'s sizes served by the
    ``generic`` build (its tiles over rows of whole X_QUANTUM pixels; the caller checks that
    the build is tiled, ``generic_tiled``)."""
    built = generic if generic is not None else wl
    shape = fwd_rows_shape(built, target) if built.kind == "static" or generic is not None else None
    if shape is None:
        return None
    tile, slices, _ = shape
    plan = staged_atoms_plan(built, tile, slices * tile)
    if plan is None:
        return None
    p = wl.p
    wo = conv_out_size(p["W"], p["k"], p["s"], p["p"], p["d"])
    ho = conv_out_size(p["H"], p["k"], p["s"], p["p"], p["d"])
    if generic is not None:  # its tiles of (FWD_ROWS or one) rows x ROW_TILE pixels over whole FWD_ROWS (ops.acda)
        rows = fwd_tile_rows(built, tile)
        return dict(plan, tile=tile, blocks=p["N"] * whole(ho, FWD_ROWS) // rows * -(-wo // ROW_TILE))
    return dict(plan, tile=tile, blocks=p["N"] * ho * -(-wo // tile))


def _atoms_staged(sch, wl, block, tile: int, threads: int, rows: int = 1) -> bool:
    """The tile's atoms in shared memory (M x k x k x ``tile``), built a basis at a time from
    coefficients A and bases P staged in shared memory: per basis t the block copies A[:, t]
    of its tile (M rows of adjacent pixels: coalesced) and P[t] (k x k); each thread owns (atom
    group, tap row u, pixel) and mi atoms x k tap columns in registers
    (``staged_atoms_per_thread``) and per basis reads mi coefficients and k bases
    (warp-uniform: one broadcast each) for mi x k FMAs; after the last basis it stores its mi
    x k atoms once. The (group, u, pixel) triples run in parallel where the block's
    ``threads`` cover them, else the groups in turn (A and P staged again per group). Every A
    element is then loaded from global memory once per block, every P element once per block
    (and group): was per thread, A k times and P M/mi times per pixel, 84% of the kernel's
    requested bytes at 8x64x56x56 k7. Returns False, scheduling nothing, where the taps are
    not unrolled, the (u, pixel) pairs exceed ``threads`` or are a single one (then
    :func:`_atoms_in_shared`)."""
    p = wl.p
    k, M = p["k"], p["M"]
    plan = staged_atoms_plan(wl, tile, threads)
    if plan is None:
        return False
    mi, parallel = plan["mi"], plan["passes"] == 1
    atoms = sch.get_sblock("atoms")
    staged = []
    for name in ("A", "P"):
        reads = [r.source.name for r in sch.get(atoms).reads]
        # generic: A's rows widened to whole tiles ('Apad', ops.acda), staged as it is (a tile's
        # coefficients inside the widened row: constant size; a cache of A read through the
        # inlined 'Apad' overflowed an int32 bound in TVM's lowering)
        if name == "A" and "Apad" in reads:
            staged.append(sch.get_sblock("Apad"))
            sch.set_scope(staged[-1], 0, "shared")
            continue
        staged.append(sch.cache_read(atoms, reads.index(name), "shared"))
    # the atoms accumulate in the threads' registers, then their owners copy them to shared memory
    acc = sch.get_sblock("acc")
    reads = [r.source.name for r in sch.get(acc).reads]
    sh = sch.cache_read(acc, reads.index("atoms"), "shared")
    sch.set_scope(atoms, 0, "local")
    sch.compute_at(sh, block)
    sch.compute_at(atoms, block)

    def below(blk, loop):
        loops = sch.get_loops(blk)
        return loops[next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(loop))) + 1:]

    def threads_over(named):
        """(group,) u, pixel fused and bound as the build's threads; returns the register loops."""
        spatial = [named[nm] for nm in (("mo",) if parallel else ()) + ("u", "y", "x") if nm in named]
        regs = [named[nm] for nm in ("m", "v") if nm in named]
        sch.reorder(*spatial, *regs)
        fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
        _, tx = sch.split(fused, [None, threads])
        sch.bind(tx, "threadIdx.x")
        return regs

    def split_groups(named):
        if "m" in named and mi == 1:
            named["mo"] = named.pop("m")
        elif "m" in named and mi < M:
            named["mo"], named["m"] = sch.split(named["m"], [None, mi])
        return named

    # (compute_at dropped the unit-extent loops)
    named = split_groups(dict(zip([nm for nm, n in (("m", M), ("u", k), ("v", k), ("y", rows), ("x", tile // rows),
                                                    ("t", p["T"]))
                                   if n > 1], below(atoms, block))))
    to = named.pop("t", None)
    mo = None if parallel else named.pop("mo", None)
    if to is not None:  # the bases outside the threads, the groups (if serial) outside the bases
        sch.reorder(*[lp for lp in (mo, to) if lp is not None], *[lp for nm, lp in named.items()])
    regs = threads_over(named)
    if to is not None:
        init = sch.decompose_reduction(atoms, to)
        unroll(sch, *sch.get_loops(init)[-len(regs):] if regs else [])
        sch.annotate(to, "disable_unroll", 1)
    for stage in staged:
        _stage(sch, stage, to if to is not None else mo if mo is not None else block, threads, rolled=True)
    unroll(sch, *regs)
    # each thread stores its mi x k atoms (serial groups: per group, the next reuses the registers)
    if mo is not None:
        sch.reverse_compute_at(sh, mo)
    named = dict(zip([nm for nm, n in (("m", mi if mo is not None else M), ("u", k), ("v", k), ("y", rows),
                                        ("x", tile // rows)) if n > 1],
                     below(sh, mo if mo is not None else block)))
    unroll(sch, *threads_over(named if mo is not None else split_groups(named)))
    return True


def _tile_shape(wl, target, wo, per_channel: int):
    """(tile, slices, cb) of :func:`_tiles` for a row of ``wo`` pixels."""
    # a generic row is whole X_QUANTUM pixels: tiles of at most that many have no tail
    tile = _tile(wl, wo if isinstance(wo, int) else X_QUANTUM)
    C, want = wl.p["C"], max(1, MAX_THREADS // tile)
    most = min(max(1, _acc_words(target) // (per_channel * (2 if wl.dtype == "float64" else 1))), max(1, C // want))
    cb = max(b for b in range(1, most + 1) if C % b == 0)
    return tile, min(C // cb, want), cb


def _tiles(sch, wl, target, c, x, per_channel: int, shape=None):
    """Shared by fwd and dx: split the pixels ``x`` of a row into tiles of ``tile`` (one block
    each) and the channels ``c`` into (co, ci, cb): ``slices`` threads per pixel (threads:
    slices x pixels, pixels fastest, so loads coalesce), each looping over ``co`` register
    tiles of ``cb`` adjacent channels (adjacent: the cast stage then writes exactly the
    tile). ``cb`` is the largest divisor of C (no predicate inside the unrolled tile) with
    ``per_channel`` accumulators each within ``ACC_WORDS`` 32-bit registers (24 before sm_90) (float64 takes
    two), and small enough to leave ``MAX_THREADS / tile`` slices where C allows. One
    shared-memory atom then feeds cb FMAs (nvcc loads it once per tap for the whole tile:
    checked in the PTX). Returns (tile loop, pixel loop, co, ci, cb)."""
    tile, slices, cb = shape or _tile_shape(wl, target, extent(sch, x), per_channel)
    xo, xi = sch.split(x, [None, tile])
    co, ci, cbi = sch.split(c, [None, slices, cb])
    return xo, xi, co, ci, cbi


@register("acda", "fwd", "cuda")
def fwd(sch, wl, target):
    if wl.kind == "generic":  # the rows schedule where its stages compact to a constant size
        if fwd_rows_shape(wl, target) is not None and if_constant(sch, lambda s: _fwd_rows(s, wl, target), guard=True):
            return
    elif _fwd_rows(sch, wl, target):
        return
    sch.compute_inline(sch.get_sblock("Xpad"))
    if wl.p["W"] is None:
        sch.compute_inline(sch.get_sblock("Apad"))
    acc = sch.get_sblock("acc")
    n, c, m, y, x, u, v = sch.get_loops(acc)
    xo, xi, co, ci, cbi = _tiles(sch, wl, target, c, x, wl.p["M"])
    # per tap: M atoms from shared memory and cb inputs, cb x M FMAs
    sch.reorder(n, y, xo, ci, xi, co, u, v, cbi, m)
    block = sch.fuse(n, y, xo)
    threads = sch.fuse(ci, xi)
    sch.bind(block, "blockIdx.x")
    sch.bind(threads, "threadIdx.x")
    unroll(sch, cbi, m)
    # the tap columns only: unrolling both tap loops made nvcc hoist loads (80 registers)
    unroll_taps(sch, wl, v)
    _atoms_in_shared(sch, wl, block, extent(sch, threads))
    sch.set_scope(acc, 0, "local")
    sch.reverse_compute_at(sch.get_sblock("out"), co)
    sch.decompose_reduction(acc, u)


STATIC_SHARED_BYTES = 48 * 1024  # CUDA's limit on static shared memory per block


def fwd_shared_bytes(wl, tile: int) -> int:
    """Shared memory of :func:`_fwd_rows`: the tile's atoms (accumulation type) and one input
    row segment of every channel (input type)."""
    p = wl.p
    atoms = tile * p["M"] * p["k"] ** 2 * (8 if wl.dtype == "float64" else 4)
    rows = fwd_tile_rows(wl, tile)
    cols = (tile // rows - 1) * p["s"] + (p["k"] - 1) * p["d"] + 1
    # tiles of several rows: the block's whole window, (rows - 1) * s + (k - 1) * d + 1 input
    # rows, staged once (else a row segment per tap row)
    window = (rows - 1) * p["s"] + (p["k"] - 1) * p["d"] + 1 if rows > 1 else 1
    return atoms + p["C"] * window * cols * {"float64": 8, "float32": 4}.get(wl.dtype, 2)


def fwd_tile_rows(wl, tile: int) -> int:
    """Output rows of :func:`_fwd_rows`' tiles of ``tile`` pixels: generic builds' tiles are
    rows of ROW_TILE pixels (FWD_ROWS of them, or one), static ones a single row."""
    return tile // ROW_TILE if wl.kind == "generic" else 1


def fwd_rows_tile(wl, target) -> Optional[int]:
    """The pixels per block of :func:`_fwd_rows`, or None where fwd keeps the shared-atoms
    schedule: symbolic shapes, taps beyond UNROLL_TAPS, float64 (``ROWS_F64``), more channels
    than one register tile per thread (ROWS_ACC_WORDS) over ROWS_MAX_THREADS threads covers
    (each tile would need the rows' inputs staged again: the models' C = 80 .. 432), or more
    than 48 KiB of shared memory. Static builds take it on sm_80 too since the register tile is
    ROWS_ACC_WORDS on every arch (was: sm_90 only, 48 words, 256 threads; on sm_80 its 47 KB
    blocks fitted 3 per SM, 37.5%)."""
    shape = fwd_rows_shape(wl, target)
    return shape[0] if shape is not None else None


# static rows schedule: 32-bit registers for a thread's channel sums (cb x M), and threads per
# block (slices x pixels). At 8x64x56x56 k7 M = 6: cb = 4, 16 slices x 32 pixels, 53 registers
# with the staged atoms build on sm_90 and sm_80 (with 48 words, cb = 8 and 256 threads: 74-77
# registers on sm_90, 37.5%: see the module docstring)
ROWS_ACC_WORDS = 24
ROWS_MAX_THREADS = 512
# float64 keeps the shared-atoms schedule (4-channel tiles took 78 registers, 38%, on sm_90;
# and a 32-pixel tile's atoms take 75 KB in float64)
ROWS_F64 = False
# generic fwd rows where no tile fits the static rule (C = 160): tiles of X_QUANTUM, one register
# tile of cb channels within the arch's ACC_WORDS leaving at least this many threads where C
# allows (the rule of the generic 8-pixel tiles before ROW_TILE)
GENERIC_FWD_THREADS = 128
# generic fwd tiles of FWD_ROWS rows before sm_90: 32-bit registers for a thread's channel sums.
# Their blocks take 48 KB of shared memory, 3 per SM on sm_80; at 8x64 k7 M = 6 float32 cb = 4
# (24 words, 256 threads) took 80 registers there (37.5%), cb = 2 (12 words, 512 threads) 40
# (75%); sm_90 keeps cb = 4: 64 registers, 4 blocks of 256 threads, 50%
GENERIC_ROWS_ACC_WORDS_BEFORE_SM90 = 12

def _fwd_rows_rule(wl, target) -> bool:
    """Whether :func:`fwd_rows_shape` finds a tile by the static rule (not the generic
    fall-back's: C = 152 .. 432 at k7, 72 registers, 39-44% on sm_90, none on sm_80)."""
    return fwd_rows_shape(wl, target, fallback=False) is not None


def fwd_rows_shape(wl, target, fallback: bool = True) -> Optional[tuple]:
    """(tile, slices, cb) of :func:`_fwd_rows` (see :func:`fwd_rows_tile`), or None.

    Static builds: the warp-sized tile of :func:`_tile`, one register tile of cb channels per
    thread, cb the largest divisor of C within ROWS_ACC_WORDS whose C / cb slices x tile
    threads stay within ROWS_MAX_THREADS and, where C allows, cover the k x tile (tap row,
    pixel) pairs of the staged atoms build (``staged_atoms_plan``); the tile's atoms, its input
    row segments and the build's stages of one basis within 48 KiB. 8x64x56x56 k7 M = 6: tile
    32, cb = 4, 16 slices (was cb = 8, 8 slices: see ROWS_ACC_WORDS).

    Generic builds (W symbolic): the same rule with tiles of FWD_ROWS rows x ROW_TILE pixels,
    else (the stages over 48 KiB) a row of ROW_TILE pixels (the generic fwd's heights and rows
    are whole tiles, ``ops.acda``, so no tile has a tail and its staged window provably lies in
    the padded copy: stages of constant size); before sm_90 the 2-row tiles' channel sums
    within GENERIC_ROWS_ACC_WORDS_BEFORE_SM90. 8x64x56x56 k7 M = 6: float32 and the half types
    2 x 8 pixels, cb = 4, 16 slices on sm_90 (cb = 2, 32 slices on sm_80), the window 8 x 14
    per 16 pixels; float64 a row of 8 (2 x 8 pixels' stages exceed 48 KiB), cb = 2, 32
    slices. ``fallback=False``: None where only the rule below finds one. Where no tile fits
    that rule (C = 160: 40 slices of 8 pixels are 10 warps), the rule of the generic 8-pixel
    tiles before: cb the largest divisor of C within the arch's ACC_WORDS leaving at least
    GENERIC_FWD_THREADS threads (C = 160: cb = 8, 20 slices, 160 threads)."""
    p = wl.p
    if p["k"] > UNROLL_TAPS:
        return None
    if wl.kind == "static":
        if wl.dtype == "float64" and not ROWS_F64:
            return None
        tiles = [_tile(wl, conv_out_size(p["W"], p["k"], p["s"], p["p"], p["d"]))]
    else:  # FWD_ROWS rows x ROW_TILE pixels, else (float64) a row of them
        tiles, least = [FWD_ROWS * ROW_TILE, ROW_TILE], ROW_TILE
    for tile in tiles:
        budget = ROWS_ACC_WORDS
        if fwd_tile_rows(wl, tile) > 1 and _acc_words(target) < ACC_WORDS:
            budget = GENERIC_ROWS_ACC_WORDS_BEFORE_SM90
        words = max(1, budget // (p["M"] * (2 if wl.dtype == "float64" else 1)))
        # over 256 threads, whole warps dividing 32: at <= 64 registers whole blocks then fill 32
        # warps (50%; the models' C = 216 at 432 threads, 14 warps: 2 blocks, 44%)
        fits = [b for b in range(1, min(words, p["C"]) + 1) if p["C"] % b == 0 and p["C"] // b * tile <= ROWS_MAX_THREADS
                and (p["C"] // b * tile <= MAX_THREADS or 32 % -(-(p["C"] // b * tile) // 32) == 0)]
        if not fits:
            continue
        # the largest whose threads cover the atoms build's (tap row, pixel) pairs (_atoms_staged);
        # where none does, the most threads (C = 3: 96 threads, not 32 with 138 registers)
        cover = [b for b in fits if p["C"] // b * tile >= p["k"] * tile]
        cb = max(cover) if cover else min(fits)
        staged = staged_atoms_bytes(wl, tile)
        if fwd_shared_bytes(wl, tile) + (staged or 0) <= STATIC_SHARED_BYTES:
            return tile, p["C"] // cb, cb
    if wl.kind == "generic" and fallback:  # none fits (C = 160: 40 slices of 8 pixels, 10 warps) the rule before
        tile = least
        words = max(1, _acc_words(target) // (p["M"] * (2 if wl.dtype == "float64" else 1)))
        fits = [b for b in range(1, min(words, p["C"]) + 1) if p["C"] % b == 0 and p["C"] // b * tile <= MAX_THREADS]
        cb = max([b for b in fits if p["C"] // b * tile >= GENERIC_FWD_THREADS] or fits[:1] or [0])
        if cb and fwd_shared_bytes(wl, tile) <= STATIC_SHARED_BYTES:
            return tile, p["C"] // cb, cb
    return None


def _bind_grid(sch, wl, n, y, xo):
    """A block per (image, row, tile of the row). Static: one fused blockIdx.x. Generic:
    blockIdx.z, .y, .x over the images, rows and tiles (ceil-divided symbolic extents), so that
    TVM bounds a tile's index by its own loop, not by a division of a fused index (through
    which it could not prove a staged segment inside the padded row: a stage of no constant
    size); returns the innermost block loop."""
    if wl.kind != "generic":
        block = sch.fuse(n, y, xo)
        sch.bind(block, "blockIdx.x")
        return block
    sch.bind(n, "blockIdx.z")
    sch.bind(y, "blockIdx.y")
    sch.bind(xo, "blockIdx.x")
    return xo


@functools.lru_cache(maxsize=None)
def fwd_x_wavefronts(order: tuple, cb: int, s: int, channel: int, row: int) -> int:
    """Shared-memory wavefronts of one X load of the generic fwd rows (``_fwd_rows``) per warp,
    the most over the block's warps: the block's threads are ``order``'s (name, extent) pairs
    fused, outermost first ('c' channel slices, 'y' rows, 'x' pixels of the tile), and thread
    (c, y, x) reads word c * cb * ``channel`` + y * s * ``row`` + x * s of the staged window
    (the tap's offset is the same for every thread); a warp takes as many wavefronts as the
    most distinct words one of the 32 banks serves (equal words broadcast)."""
    names = [nm for nm, _ in order]
    extents = [e for _, e in order]
    lanes = 1
    for e in extents:
        lanes *= e
    total = 0
    for w0 in range(0, lanes, 32):
        banks = {}
        for lane in range(w0, min(w0 + 32, lanes)):
            at, rest = {}, lane
            for nm, e in zip(reversed(names), reversed(extents)):
                rest, at[nm] = divmod(rest, e)
            word = at.get("c", 0) * cb * channel + at.get("y", 0) * s * row + at.get("x", 0) * s
            banks.setdefault(word % 32, set()).add(word)
        total = max(total, max(len(w) for w in banks.values()))
    return total


def fwd_x_layout(wl, target) -> Optional[dict]:
    """The thread order and staged-window channel stride of the generic fwd rows for
    ``target`` (float32; None otherwise: threads (slice, row, pixel), strides unpadded):
    dict(order, channel, window, row, wavefronts, plain). Of the orders (slice, row, pixel)
    and (row, slice, pixel) and the channel strides from the plain one (``window``: window
    rows x ``row`` words) up to 31 words more whose padding keeps the stages within 48 KiB
    (``fwd_shared_bytes``, for all C channels), the fewest wavefronts per
    X load (:func:`fwd_x_wavefronts`), then the least padding, then the order before. 2 x 8
    tiles (a warp was 2 slices x 2 rows x 8 pixels, the slices 112 words apart at k7 = 0 mod
    32: 2 wavefronts; with rows 14 words apart no channel stride separates them): a warp of
    one row and 4 slices at a stride with cb * stride = 8 (mod 32): at C = 64 k7, 114 words
    (cb = 4, sm_90) or 116 (cb = 2, sm_80), 1 wavefront, 512 / 1,024 B more shared memory.
    ``plain``: the wavefronts of the build before (slice, row, pixel; unpadded)."""
    shape = fwd_rows_shape(wl, target)
    if wl.kind != "generic" or wl.dtype != "float32" or shape is None:
        return None
    p = wl.p
    tile, slices, cb = shape
    rows = fwd_tile_rows(wl, tile)
    cols = (ROW_TILE - 1) * p["s"] + (p["k"] - 1) * p["d"] + 1
    # the window: (rows - 1) * s + (k-1) * d + 1 input rows (several rows), else a tap row's segment
    window = ((rows - 1) * p["s"] + (p["k"] - 1) * p["d"] + 1 if rows > 1 else 1) * cols
    room = STATIC_SHARED_BYTES - fwd_shared_bytes(wl, tile) - (staged_atoms_bytes(wl, tile) or 0)
    before = (("c", slices), ("y", rows), ("x", ROW_TILE))
    orders = [before] + ([(("y", rows), ("c", slices), ("x", ROW_TILE))] if rows > 1 else [])
    plain = fwd_x_wavefronts(before, cb, p["s"], window, cols)
    best = min(((fwd_x_wavefronts(order, cb, p["s"], channel, cols), channel - window, i, order, channel)
                for i, order in enumerate(orders) for channel in range(window, window + 32)
                if (channel - window) * p["C"] * 4 <= room), key=lambda b: b[:3])
    return dict(order=best[3], channel=best[4], window=window, row=cols, wavefronts=best[0], plain=plain)


def _fwd_rows(sch, wl, target) -> bool:
    """fwd a tap row at a time (static, unrolled taps, one register tile of channels per
    thread; returns False, scheduling nothing, otherwise): per tap row u the block builds the
    row's M x k atoms of its tile in shared memory and stages the input row segment (the
    block's channels x (tile - 1) * s + (k - 1) * d + 1 columns, padding checked in the copy)
    in shared memory, then each thread adds the row's k taps for its cb channels x M atoms
    (registers, across the rows)."""
    p = wl.p
    shape = fwd_rows_shape(wl, target)
    if shape is None:
        return False
    staged = staged_atoms_plan(wl, shape[0], shape[0] * shape[1]) is not None
    if wl.kind == "generic" and not staged:
        sch.compute_inline(sch.get_sblock("Apad"))
    acc = sch.get_sblock("acc")
    n, c, m, y, x, u, v = sch.get_loops(acc)
    generic = wl.kind == "generic"
    rows = fwd_tile_rows(wl, shape[0])
    if generic:  # tiles of rows x ROW_TILE pixels
        tile, slices, cb = shape
        y, yi = sch.split(y, [None, rows]) if rows > 1 else (y, None)
        xo, xi = sch.split(x, [None, ROW_TILE])
        co, ci, cbi = sch.split(c, [None, slices, cb])
        # the threads in the order of fwd_x_layout (a warp's X loads on disjoint banks)
        layout = fwd_x_layout(wl, target)
        order = [nm for nm, _ in layout["order"]] if layout else ["c", "y", "x"]
        lanes = [lp for lp in ({"c": ci, "y": yi, "x": xi}[nm] for nm in order) if lp is not None]
        sch.reorder(n, y, xo, co, u, *lanes, v, cbi, m)
        block = _bind_grid(sch, wl, n, y, xo)
        threads = sch.fuse(*lanes)
    else:
        xo, xi, co, ci, cbi = _tiles(sch, wl, target, c, x, p["M"], shape)
        tile, slices, cb = extent(sch, xi), extent(sch, ci), extent(sch, cbi)
        sch.reorder(n, y, xo, co, u, ci, xi, v, cbi, m)
        block = _bind_grid(sch, wl, n, y, xo)
        threads = sch.fuse(ci, xi)
    sch.bind(threads, "threadIdx.x")
    nthreads = extent(sch, threads)
    unroll(sch, v, cbi, m)
    if not _atoms_staged(sch, wl, block, tile, nthreads, rows):
        _atoms_in_shared(sch, wl, block, nthreads)
    xpad = sch.get_sblock("Xpad")
    sch.set_scope(xpad, 0, "shared")
    if wl.kind == "generic":
        # each pixel's whole row window at the tap row (affine in the pixel): else TVM clips
        # the tile's segment to the padded row's symbolic end, a stage of no constant size
        s, span = p["s"], (p["k"] - 1) * p["d"] + 1
        _declare_read(sch, acc, "Xpad", lambda n, c, m, y, x, u, v: (
            (n, n + 1), (c, c + 1), (y * s, y * s + span) if rows > 1 else (y * s + u * p["d"], y * s + u * p["d"] + 1),
            (x * s, x * s + span)))
    # rolled: unrolled, nvcc hoisted the copy's loads next to the 48 sums (98 registers on
    # sm_90; 64 kept a loop)
    _stage(sch, xpad, co if rows > 1 else u, nthreads, rolled=True)
    if generic and layout and layout["channel"] != layout["window"]:  # the channels' stride padded
        sch.storage_align(xpad, 0, 1, 32, layout["channel"] % 32)
    sch.set_scope(acc, 0, "local")
    sch.decompose_reduction(acc, u)
    # the cast stage at the channel-tile loop, spread over the threads as the sums are
    # (thread = (slice, pixel), its cb x M results serial), so each reads its own registers
    out = sch.get_sblock("out")
    if wl.kind == "generic":
        # the iteration order the threads take, fixed before the move: the tail predicate
        # (x < Wo) leaves the moved block's binding non-affine, and reorder then refuses it
        if order[0] == "y":
            sch.transform_block_layout(out, lambda n, c, m, y, x: (n, y, c // cb, x, c % cb, m))
        else:
            sch.transform_block_layout(out, lambda n, c, m, y, x: (n, c // cb, y, x, c % cb, m))
        sch.reverse_compute_at(out, co)
        extents = dict(c=slices, y=rows, x=ROW_TILE)
        named = _named_below(sch, out, co, tuple((nm, extents[nm]) for nm in order) + (("cb", cb), ("m", p["M"])))
        spatial = [named[nm] for nm in order if nm in named]
        _spread(sch, out, spatial, nthreads)
        unroll(sch, *[named[nm] for nm in ("cb", "m") if nm in named])
        return True
    sch.reverse_compute_at(out, co)
    named = _named_below(sch, out, co, (("c", slices * cb), ("m", p["M"]), ("x", tile)))
    if "c" in named and cb > 1:
        named["c"], named["cb"] = sch.split(named["c"], [slices, cb])
    spatial = [named[nm] for nm in ("c", "x") if nm in named]
    serial = [named[nm] for nm in ("cb", "m") if nm in named]
    sch.reorder(*spatial, *serial)
    _spread(sch, out, spatial, nthreads)
    unroll(sch, *serial)
    return True


DX_CHUNK = 8  # most channels per staged dO window (cc x M x k rows x (tile + (k-1)*d) columns)
DX_ATOM_WORDS = 28  # 32-bit registers for a thread's atoms: q pixels x mi atoms x ku tap rows x k columns
# 32-bit registers for a thread's atoms and its cc x q partial sums together. At 8x64x56x56 k7
# float32 (q = 4, 28 atom words) cc = 2 (36 words) took 63 registers on sm_80 (294 threads: 3
# blocks, 47%), cc = 1 (32) 48 on sm_80 and sm_90 (4 blocks, 62%)
DX_THREAD_WORDS = 32
# sm_80: 25 (cc = 4 next to q = 1's 21 atom words). With 32 (cc = 8) sm_80's ptxas took 63-70
# registers on the registered models' q = 1 rows (14 and 7 pixels, float32): 44-47%; with 25,
# 40-48 registers, 66-77% (sm_90 took 39-53 with cc = 8: it keeps 32)
DX_THREAD_WORDS_BEFORE_SM90 = 25
DX_A_BYTES = 12 * 1024  # a stage of staged coefficients A (several bases)
DX_THREADS = 1024  # most threads per dx block
DX_MIN_THREADS = 192  # runs only where the block keeps this many threads (narrow rows: q = 1)
DX_RUN = 4  # most adjacent pixels per dx thread (a register window along the row)
DX_SHARED_BYTES = 40 * 1024  # the dO window, the partial sums and the bases (<= 48 KiB static)
# most threads of a dx block over several input rows (``_dx_rows``): 19 warps, so that two
# blocks of <= 48 registers fit an SM's 65,536 (59% occupancy; 21 warps at 8 x 8 rows took
# 51-54 registers: one block)
DX_ROWS_THREADS = 608
# q = 1 (rows too narrow for runs; cc up to 8 channels' partials next to 21 atom words): 16
# warps, so that two blocks fit at up to 64 registers (sm_90 took 40-53 on the models' rows)
DX_ROWS_THREADS_NARROW = 512
# with runs, also a block of exactly DX_ROWS_WHOLE_SM / 32 = 32 warps (993-1024 threads), runs
# of up to DX_RUN_WHOLE_SM pixels within DX_ATOM_WORDS_WHOLE_SM registers, where its window
# elements are fewer: one such block per SM is 50% at up to 64 registers, ptxas' cap under
# TVM's __launch_bounds__ (a spill would show in ptxas -v; none below 50%). 8x64x56x56 k7:
# runs of 5, 15 pixels x 8 rows, 1,008 threads, 64 registers, no spill (runs of 4 at 32 warps:
# 12 x 8, 59-61 registers, 280 blocks: 3 waves of one block per SM on 132 SMs); 0 turns it off
DX_ROWS_WHOLE_SM = 1024
DX_RUN_WHOLE_SM = 5
DX_ATOM_WORDS_WHOLE_SM = 35


def dx_tile(wl, target=None):
    """dx's atoms-in-registers geometry: dict(tile, q, cc, ku, mi, parts) (tile input pixels of
    a row per block; a thread per (group of mi atoms x ku tap rows, run of q adjacent pixels),
    parts groups; cc channels per staged chunk: the largest divisor of C up to DX_CHUNK whose
    window fits DX_SHARED_BYTES and whose cc x q partial sums fit DX_THREAD_WORDS registers next
    to the atoms, DX_THREAD_WORDS_BEFORE_SM90 before sm_90; ``target`` None: sm_90), or None for the shared-atoms schedule (symbolic shapes; taps
    not unrolled: a thread's atoms would not stay in registers). The run comes first: q
    pixels x k tap columns of one (atom, tap row) read q + k - 1 window elements per channel
    for q x k FMAs (q = 1: one load per FMA), then tap rows, then atoms, all within
    DX_ATOM_WORDS registers; q divides the tile (no predicate inside a run). nvcc's unrolling
    of the window copy is erratic: on 14-pixel rows cc = 4 took 107 registers, cc = 8 47
    (sm_90, before the runs). Static float32 and half builds then take blocks over several
    input rows (``_dx_rows``, with ``rows``): at most DX_ROWS_THREADS threads (without runs
    DX_ROWS_THREADS_NARROW), or, with runs, blocks of exactly 32 warps whose threads hold runs
    of up to DX_RUN_WHOLE_SM pixels within DX_ATOM_WORDS_WHOLE_SM registers, whichever
    stages fewer window elements. Generic float32 and half builds: tiles of X_QUANTUM pixels,
    runs dividing them, blocks of a divisor of ``ops.acda.DX_ROWS`` rows
    (``_dx_generic_rows``; the generic rows are computed in whole DX_ROWS, so no tail);
    float64 a row per block."""
    p = wl.p
    if p["k"] > UNROLL_TAPS:
        return None
    if wl.kind != "static":  # rows of whole X_QUANTUM pixels: tiles of that many, no tail
        p = dict(p, W=X_QUANTUM)
    M, T, k, d = p["M"], p["T"], p["k"], p["d"]
    item = 8 if wl.dtype == "float64" else 4
    # generic float32 and half types: blocks of a divisor of DX_ROWS input rows (``ops.acda``
    # computes whole DX_ROWS rows), runs dividing the tile
    rows_of = _dx_generic_rows if wl.kind != "static" and item == 4 else None
    t = _dx_runs(p, DX_ATOM_WORDS // (item // 4), DX_RUN, rows_of)
    if t is None:
        return None
    if wl.kind == "static" and item == 4:  # blocks over several input rows
        if t["q"] == 1:
            t.update(_dx_rows(p, t, DX_ROWS_THREADS_NARROW))
        else:
            t.update(_dx_rows(p, t, DX_ROWS_THREADS))
            whole = _dx_runs(p, DX_ATOM_WORDS_WHOLE_SM, DX_RUN_WHOLE_SM) if DX_ROWS_WHOLE_SM else None
            if whole is not None and whole["q"] > 1:
                whole.update(_dx_rows(p, whole, 0, DX_ROWS_WHOLE_SM))
                if "cost" in whole and ("cost" not in t or whole["cost"] < t["cost"]):
                    t = whole
    t.pop("cost", None)
    q, ku, mi, parts = t["q"], t["ku"], t["mi"], t["parts"]
    tile, rows = t["tile"], t["rows"]
    # the block's window plane (zero-inserted grid), as laid out in shared memory
    _, plane = _plane_strides(t, k, d, tile + (k - 1) * d)

    def shared(cc: int) -> int:  # dO window + partial sums + bases
        return (cc * M * plane + parts * cc * tile * rows + T * k * k) * item

    # the thread's registers: its atoms plus a partial sum per (channel of the chunk, pixel of the run)
    held = q * mi * ku * k * (item // 4)
    budget = DX_THREAD_WORDS if _acc_words(target) == ACC_WORDS else DX_THREAD_WORDS_BEFORE_SM90
    fits = [b for b in range(1, DX_CHUNK + 1) if p["C"] % b == 0 and shared(b) <= DX_SHARED_BYTES
            and (b == 1 or held + b * q * (item // 4) <= budget)]
    # bases per stage of staged coefficients (M x tb planes)
    tb = max(b for b in range(1, T + 1) if T % b == 0 and (b == 1 or M * b * plane * item <= DX_A_BYTES))
    return dict(t, cc=max(fits), tb=tb) if fits else None


def _dx_generic_rows(per_row: int) -> int:
    """Input rows of a generic dx block (float32 and the half types) of ``per_row`` threads a
    row: the largest divisor of ``ops.acda.DX_ROWS`` within DX_ROWS_WHOLE_SM threads (a block of
    up to 32 warps, one per SM at up to 64 registers: 50%). At M = 6 k7: 12 rows of 84 threads."""
    return max(b for b in range(1, DX_ROWS + 1) if DX_ROWS % b == 0 and b * per_row <= DX_ROWS_WHOLE_SM)


def _dx_runs(p: dict, words: int, run: int, rows_of=None) -> Optional[dict]:
    """dict(tile, q, ku, mi, parts, rows) of :func:`dx_tile` for a thread's ``words`` atom
    registers and runs of at most ``run`` pixels (None: over 1024 partial sums); ``rows_of``
    (generic builds): the block's rows for its threads per row (else 1), runs dividing the
    tile."""
    M, k = p["M"], p["k"]
    for q in (b for b in range(run, 0, -1) if (b == 1 or b * k <= words) and (rows_of is None or p["W"] % b == 0)):
        # divisors (rfactor refuses the predicate of a partial group), the tap rows first
        ku = max(b for b in range(1, k + 1) if k % b == 0 and (b == 1 or q * b * k <= words))
        mi = max(b for b in range(1, M + 1) if M % b == 0 and (b == 1 or q * b * ku * k <= words))
        parts = M // mi * (k // ku)  # partial sums per (channel, pixel)
        if parts > 1024:
            return None
        most = min(MAX_TILE, p["W"], DX_THREADS * q // parts) // q * q
        if most < q:
            continue
        tile = -(-p["W"] // -(-p["W"] // most))  # balanced: 56 = 2 x 28, not 32 + 24
        tile = min(most, -(-tile // q) * q)  # whole runs
        rows = rows_of(parts * tile // q) if rows_of is not None else 1
        if q == 1 or parts * tile // q * rows >= DX_MIN_THREADS:
            break
    return dict(tile=tile, q=q, ku=ku, mi=mi, parts=parts, rows=rows)


def _dx_rows(p: dict, t: dict, most_threads: int = DX_ROWS_THREADS, whole_sm: int = 0) -> dict:
    """(tile, rows, cost) of a dx block over several input rows (static float32 and the half
    types): the block's window, (rows + (k-1)*d) grid rows x (tile + (k-1)*d) columns per
    staged plane of dO or A, serves rows x tile input pixels, so the dO and A requested fall
    with it. Over tiles of whole runs (balanced along the row) and row counts (balanced down
    the image) with at most ``most_threads`` threads (parts x tile / q x rows:
    DX_ROWS_THREADS with runs, DX_ROWS_THREADS_NARROW without) or, where ``whole_sm``
    (DX_ROWS_WHOLE_SM), exactly whole_sm / 32 warps, the pair with the fewest window elements
    over the image (cost: blocks x plane, then blocks; the fewer blocks on a tie, k = 1: no
    halo, the largest blocks). 8x64x56x56 k7 (42 parts): runs of 4, 8 x 7 rows, 588 threads,
    14 x 13 per 56 pixels (before, tiles of 28 x 1 row: 34 x 7 per 28); of 32 warps, runs of
    5, 15 x 8 rows, 1,008 threads: 21 x 14 per 120 (what ``dx_tile`` takes)."""
    W, H, k, d, q, parts = p["W"], p["H"], p["k"], p["d"], t["q"], t["parts"]
    e = (k - 1) * d
    lo, hi = (whole_sm - 31, whole_sm) if whole_sm else (1, most_threads)
    best = None
    for n_w in range(1, W + 1):
        tile = -(-W // n_w)
        tile = -(-tile // q) * q  # whole runs
        if tile > min(MAX_TILE, W + q - 1) or parts * tile // q > hi:
            continue
        for n_h in range(1, H + 1):
            rows = -(-H // n_h)
            threads = parts * tile // q * rows
            if threads > hi:
                continue
            if threads < lo:
                break  # fewer rows only leave the class
            blocks = -(-W // tile) * -(-H // rows)
            cost = (blocks * (tile + e) * (rows + e), blocks)
            if best is None or cost < best[0]:
                best = (cost, tile, rows)
            if not whole_sm:
                break  # more row blocks only cost more
    return {} if best is None else dict(tile=best[1], rows=best[2], cost=best[0])


def _dx_registers(sch, wl, t) -> None:
    """dX[c, px] = sum over groups (sum_{m, u, v in the group} dO[c, m, tap] atoms[m, u, v,
    px]), the groups (mi atoms x ku tap rows, ``dx_tile``) split off by rfactor: a thread per
    (group, run of q adjacent pixels) builds its q x mi x ku x k atoms in registers (per stage
    of tb bases the block stages their coefficients A over its window in shared memory; per
    basis a thread reads the mi x ku x (q + k - 1) it needs and the bases P, staged once per
    block), then, per chunk of cc channels, sums its group's taps against the chunk's dO
    window (cc x M x ((k-1)*d + 1) grid rows x (tile + (k-1)*d) columns in shared memory: per
    (atom, tap row) q + k - 1 elements for q x k FMAs, nvcc loading each once) and stores its
    q partials to shared memory; the block then adds the partials of each (channel, pixel).
    The atoms stay in the thread's registers across the chunks' thread loops (each bound to
    the same threadIdx.x: a local buffer is private to its thread)."""
    ku, mi = t["ku"], t["mi"]
    acc = sch.get_sblock("acc")
    n, c, h, w, m, u, v = sch.get_loops(acc)
    mo, m_in = sch.split(m, [None, mi])
    uo, ui = sch.split(u, [None, ku])
    sch.reorder(mo, uo, m_in, ui, v)
    rf = sch.rfactor(sch.fuse(mo, uo), 0)  # acc_rf[(atom group, tap rows), n, c, h, w]: its taps' sum
    n, c, h, w, mu, m_in, ui, v = sch.get_loops(rf)
    rows = t.get("rows", 1)
    wo, wt, wq = sch.split(w, [None, t["tile"] // t["q"], t["q"]])
    co, ci = sch.split(c, [None, t["cc"]])
    if rows > 1:  # a block over several input rows: a thread per (group, row, run)
        ho, hi = sch.split(h, [None, rows])
        sch.reorder(n, ho, wo, co, mu, hi, wt, ci, m_in, ui, wq, v)
        block = _bind_grid(sch, wl, n, ho, wo)
        thr = sch.fuse(mu, hi, wt)
    else:
        sch.reorder(n, h, wo, co, mu, wt, ci, m_in, ui, wq, v)
        block = _bind_grid(sch, wl, n, h, wo)
        thr = sch.fuse(mu, wt)
    sch.bind(thr, "threadIdx.x")
    threads = extent(sch, thr)
    # the thread's k x k atoms, built once before the channel loop (a thread loop of their own,
    # bound like the sums': registers private to the thread across the chunks)
    atoms = sch.get_sblock("atoms")
    sch.compute_at(atoms, block)
    sch.set_scope(atoms, 0, "local")
    named = _named_below(sch, atoms, block, (("m", wl.p["M"]), ("u", wl.p["k"]), ("v", wl.p["k"]), ("h", rows),
                                             ("w", t["tile"]), ("t", wl.p["T"])))
    if "m" in named:
        named["mo"], named["m"] = sch.split(named["m"], [None, mi])
    if "u" in named:
        named["uo"], named["u"] = sch.split(named["u"], [None, ku])
    if "w" in named and t["q"] > 1:
        named["w"], named["wq"] = sch.split(named["w"], [None, t["q"]])
    outer = [named[nm] for nm in ("mo", "uo", "h", "w") if nm in named]  # as the sums' threads
    taps = [named[nm] for nm in ("m", "u", "wq", "v") if nm in named]
    # the bases in stages of tb: the block stages their coefficients (all M atoms x the k grid
    # rows x the tile's columns + halo) in shared memory, coalesced, then each thread reads its
    # mi x ku x (q + k - 1) of them per basis (nvcc loads each once: no index checks left)
    to = None
    if "t" in named:
        to, named["t"] = sch.split(named["t"], [None, t["tb"]])
    sch.reorder(*([to] if to is not None else []), *outer, *([named["t"]] if "t" in named else []), *taps)
    a_thr = sch.fuse(*outer) if len(outer) > 1 else outer[0] if outer else sch.add_unit_loop(atoms)
    sch.bind(a_thr, "threadIdx.x")
    if to is not None:
        sch.decompose_reduction(atoms, to)
    unroll(sch, *taps)
    au = sch.get_sblock("Au")
    sch.set_scope(au, 0, "shared")
    _swizzle_runs(sch, au, t, wl.p["k"], wl.p["d"], t["tile"] + (wl.p["k"] - 1) * wl.p["d"])
    _stage_planes(sch, au, to if to is not None else block, threads)
    psh = sch.cache_read(atoms, next(q for q, r in enumerate(sch.get(atoms).reads) if r.source.name == "P"), "shared")
    _stage(sch, psh, block, threads)
    # the chunk's dO window (zero insertion and padding as index checks in this copy)
    dou = sch.get_sblock("dOu")
    sch.set_scope(dou, 0, "shared")
    _swizzle_runs(sch, dou, t, wl.p["k"], wl.p["d"], t["tile"] + (wl.p["k"] - 1) * wl.p["d"])
    _stage_planes(sch, dou, co, threads)
    # the partial sums: a register per channel, then stored to shared memory for the m-sum
    sch.set_scope(rf, 0, "shared")
    part = sch.cache_write(rf, 0, "local")
    sch.reverse_compute_at(part, ci)
    sch.decompose_reduction(rf, m_in)
    unroll(sch, m_in, ui, wq, v)
    # the block adds the partials of each (channel, pixel) of the chunk, then the cast stage
    # stores them; both placed at the chunk loop before either is spread over the threads, so
    # that each has exactly the chunk's cc x tile region and its own split predicate, with
    # the same thread per (channel, pixel): the sum stays in that thread's register. (The
    # cast computed at the sums' thread loop lost their predicate: TVM widens a stage's region
    # to every thread. With one channel per chunk the spare threads then stored an unset
    # register into the next tile, another block's pixels: a race PoCL, running blocks in
    # order, does not show.)
    sch.reverse_compute_at(acc, co)
    out = sch.get_sblock("out")
    sch.reverse_compute_at(out, co)
    named = _named_below(sch, acc, co, (("m", t["parts"]), ("c", t["cc"]), ("h", rows), ("w", t["tile"])))
    spatial = [named[nm] for nm in ("c", "h", "w") if nm in named]
    if "m" in named:
        sch.reorder(*spatial, named["m"])
    _spread(sch, acc, spatial, threads)
    sch.set_scope(acc, 0, "local")
    if "m" in named:
        sch.decompose_reduction(acc, named["m"])
    loops = sch.get_loops(out)
    own = loops[next(q for q, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(co))) + 1:]
    _spread(sch, out, own, threads)


def _plane_strides(t: dict, k: int, d: int, cols: int):
    """(row stride, plane stride) in words of a staged window plane ((k-1)*d + 1 grid rows x
    cols) as ``_swizzle_runs`` lays it out. Runs (q > 1): a row is q phases of ceil((cols +
    q - 1) / q) words (column x at phase x % q, word x // q), so the threads of neighbouring
    runs, q columns apart, read neighbouring words. With one atom and one tap row per group
    and d = 1 (r = tile / q runs, lane L = g * r + wt of group g = m * k + u and run wt), row
    stride R = -r and plane stride P = r * k (mod 32) put every load of the taps at bank
    (m * P - u * R + wt) = (r * g + wt) = L mod 32 (the rows of a plane are in reverse
    tap-row order, hence -r): conflict-free (at 8x64x56x56 k7: R = 57, P = 401; with rows
    of 34 words, 2.7 wavefronts per load). Otherwise rows are padded to an odd stride."""
    q, rows = t["q"], (k - 1) * d + t.get("rows", 1)
    if q == 1:
        return cols + 1 - cols % 2, rows * (cols + 1 - cols % 2)
    row = q * -(-(cols + q - 1) // q)
    if t["mi"] != 1 or t["ku"] != 1 or d != 1:
        row += 1 - row % 2
        return row, rows * row
    r = t["tile"] // q
    if t.get("rows", 1) > 1:
        # a block over several input rows (``_dx_rows``; lane L = (g * rows + i) * r + wt for
        # input row i): input row i's tap row u reads window row i + k-1 - u, so with R = r the
        # rows x r lanes of a group read rows x r consecutive words, and the next group (tap
        # row u + 1) the same words one row lower (a broadcast). Where a warp straddles two
        # atoms, their words collide unless P places the next atom's rows apart: the offset of
        # P (mod 32) with the fewest wavefronts over the block's warps (``_dx_wavefronts``; at
        # 8 x 7 rows P = 6 (mod 32): 1 per load, P = 2 took 1.26)
        row = _aligned(row, 32, r % 32)
        return row, _dx_plane(t["parts"] // k, k, t["rows"], r, row, rows)
    row = _aligned(row, 32, -r % 32)
    return row, _aligned(rows * row, 32, r * k % 32)


@functools.lru_cache(maxsize=None)
def _dx_plane(n_m: int, k: int, rows: int, r: int, row: int, window: int) -> int:
    """The plane stride (>= window x row words) of dx's staged window with the fewest
    wavefronts (:func:`_dx_wavefronts`), the smallest on a tie."""
    return min((_aligned(window * row, 32, off) for off in range(32)),
               key=lambda pl: (_dx_wavefronts(n_m, k, rows, r, row, pl), pl))


def _dx_wavefronts(n_m: int, k: int, rows: int, r: int, row: int, plane: int) -> int:
    """Shared-memory wavefronts of one tap load of dx's staged window over a block's warps
    (lane L = ((m * k + u) * rows + i) * r + wt reads word m * plane + (i + k-1 - u) * row +
    wt): per warp the most distinct words on one of the 32 banks (equal words broadcast)."""
    lanes = n_m * k * rows * r
    total = 0
    for w0 in range(0, lanes, 32):
        banks = {}
        for lane in range(w0, min(w0 + 32, lanes)):
            g, rest = divmod(lane, rows * r)
            i, wt = divmod(rest, r)
            m, u = divmod(g, k)
            word = m * plane + (i + k - 1 - u) * row + wt
            banks.setdefault(word % 32, set()).add(word)
        total += max(len(w) for w in banks.values())
    return total


def _aligned(n: int, factor: int, offset: int) -> int:
    """The smallest stride >= n of the form j * factor + offset (as storage_align)."""
    return n + (offset - n) % factor


def _swizzle_runs(sch, block, t: dict, k: int, d: int, cols: int) -> None:
    """Lay a staged window (..., planes, grid rows, columns) out as ``_plane_strides`` says."""
    row, plane = _plane_strides(t, k, d, cols)
    if t["q"] == 1:
        sch.storage_align(block, 0, 3, 2, 1)
        return
    q = t["q"]
    sch.transform_layout(block, ("write", 0), lambda n, c, m, y, x: (n, c, m, y, x % q, x // q), pad_value=0.0)
    sch.storage_align(block, 0, 3, 32, row % 32)
    sch.storage_align(block, 0, 2, 32, plane % 32)


def _loops_below(sch, block, loop) -> list:
    """``block``'s loops nested under ``loop``."""
    loops = sch.get_loops(block)
    at = next(q for q, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(loop)))
    return loops[at + 1:]


def _named_below(sch, block, loop, dims) -> dict:
    """``block``'s loops under ``loop`` by name: ``dims`` lists (name, extent) in loop order
    (TVM keeps no loop for a unit extent)."""
    return dict(zip([nm for nm, e in dims if e > 1], _loops_below(sch, block, loop)))


def _spread(sch, block, loops, threads: int):
    """``block``'s ``loops`` fused (a unit loop where there are none) and split over the
    block's ``threads`` (the split's predicate keeps spare threads out); returns the rounds
    loop."""
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0] if loops else sch.add_unit_loop(block)
    rounds, tx = sch.split(fused, [None, threads])
    sch.bind(tx, "threadIdx.x")
    return rounds


def _stage_planes(sch, block, loop, threads: int) -> None:
    """As :func:`_stage` for a stack of planes (the dO window: cc x M planes of grid rows x
    columns): the block's threads take the largest trailing group of axes that fits them (one
    plane), the leading axes stay a loop. A thread then keeps its element of the plane, so a
    round's global address is the last one's plus a constant and the padding / zero-insertion
    check is loop-invariant. (Spread flat over the threads, each round re-derived the element's
    indices by division, and nvcc's unrolled copy took 79-87 registers; sm_90.)"""
    sch.compute_at(block, loop)
    own = _loops_below(sch, block, loop)
    inner, size = 0, 1
    while inner < len(own) and size * extent(sch, own[-1 - inner]) <= threads:
        size *= extent(sch, own[-1 - inner])
        inner += 1
    plane = own[-inner:] if inner else own  # a row wider than the block: spread flat
    # split by the thread count even though it fits: the split's predicate keeps the extra
    # threads out (a smaller loop bound to threadIdx.x as it stands was widened to every
    # thread, writing past the plane into the next one's rows)
    _spread(sch, block, plane, threads)


def _stage(sch, block, loop, threads: int, rolled: bool = False):
    """Compute ``block`` (already in shared scope) at ``loop``, its loops fused and spread over
    the block's ``threads``; returns the rounds loop. ``rolled``: the rounds stay a loop
    ("#pragma unroll 1") where there are several, so that nvcc does not hoist the copy's loads
    next to the sums (registers)."""
    sch.compute_at(block, loop)
    rounds = _spread(sch, block, _loops_below(sch, block, loop), threads)
    if rolled and extent(sch, rounds) > 1:
        sch.annotate(rounds, "disable_unroll", 1)
    return rounds


# generic kernels with a tiled schedule like the static one (fwd: _fwd_rows; datoms: _datoms_generic)
GENERIC_TILED = ("fwd", "dx", "datoms")


# generic kernels CUDA calls default to where tiled (dispatch): those within ~1.1x the static
# build's requested bytes and FMAs at the report's and the registered Ad-ResNets' rows (56, 28,
# 14, 7 pixels; estimates, ``gpu_report``). fwd since 2026-12-02: tiles of FWD_ROWS = 2 rows x
# ROW_TILE = 8 pixels over rows and heights padded to whole tiles (ops.acda), the block's input
# window staged once: at 8x64xHxH k7 float32 0.92 / 0.82 / 0.61 / 0.39x the static's bytes and
# 0.88 / 1.00 / 1.00 / 1.14x its FMAs at H = 56 / 28 / 14 / 7 (was 1.00x the bytes at 56, but
# a fixed 1 x 32 tile: 2x / 4x the FMAs at 14 / 7). datoms since 2026-12-02 (its block
# schedule only, dO staged): tiles of DATOMS_ROWS = 2 rows x 8 pixels over heights padded to
# whole tiles (ops.acda), every tap row in one block: 0.91 / 0.093 / 0.084 / 0.078x the
# static's bytes (79.2 MB against 86.8 at 56; the static's register tile below 32 pixels; since
# the static's narrow-row blocks, _datoms_narrow: 1.33 / 1.25 / 1.37x at 28 / 14 / 7) and
# 1.00 / 1.14 / 1.14 / 1.31x its FMAs at H = 56 / 28 / 14 / 7 (was 1.27x the bytes at 56, a
# row of 8 pixels per block). dx requests 1.08x (116.9 MB
# against 108.0: blocks of 12 rows x 8 pixels over the rows padded to whole ops.acda DX_ROWS,
# against the static's 8 rows of 15 pixels; was 5.2x, a row per block), but images of 14 and
# 7 rows compute 24 and 12 (1.96x the static's pixels): it stays static. datoms stays generic
# at rows under 32 pixels although the static's blocks now request less there: the difference
# is at most 5.1 MB (20.8 against 15.7 at 8x64x28²: about 1.5 us at 3.35 TB/s, estimated),
# where a static build per size costs seconds; the static switch (dispatch) serves hot shapes.
GENERIC_DEFAULT = ("fwd", "datoms")


def generic_default(wl, func, target=None) -> bool:
    """Whether CUDA calls of ACDA kernel ``wl`` default to its generic build: in
    GENERIC_DEFAULT and :func:`generic_tiled`."""
    if wl.kernel == "fwd" and not _fwd_rows_rule(wl, target):
        return False
    # datoms: the block schedule only (its rows fall-back, _datoms_generic, loads dO k times)
    stage = "dOpad_shared" if wl.kernel == "datoms" else None
    return wl.kernel in GENERIC_DEFAULT and generic_tiled(wl, func, target, stage)


def generic_tiled(wl, func, target=None, stage: Optional[str] = None) -> bool:
    """Whether the generic CUDA build of ACDA kernel ``wl`` (unscheduled PrimFunc ``func``) for
    ``target`` (None: sm_90) takes the static kernel's tiled schedule: fwd's rows schedule
    (:func:`fwd_rows_shape`: k <= UNROLL_TAPS, the channels in one register tile of at most
    MAX_THREADS / X_QUANTUM slices, the stages within 48 KiB), datoms' (:func:`_datoms_block`
    with tiles of X_QUANTUM pixels, else :func:`_datoms_generic`: k <= UNROLL_TAPS), each where
    TVM compacts its stages to a constant size; read off the scheduled module (both stage the
    input rows, 'Xpad', in shared memory; the fallbacks inline them; ``stage``: whether it
    stages that buffer instead, e.g. 'dOpad_shared': datoms' block schedule). ``dispatch``
    serves CUDA calls of such kernels generic by default."""
    if wl.kernel not in GENERIC_TILED:
        return False
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    {"fwd": fwd, "dx": dx, "datoms": datoms}[wl.kernel](sch, wl, target)
    # (dx: the staged dO window of the atoms-in-registers schedule)
    return (stage or ("dOu_shared" if wl.kernel == "dx" else "Xpad_shared")) in sch.mod.script()


@register("acda", "dx", "cuda")
def dx(sch, wl, target):
    t = dx_tile(wl, target)
    if t is not None and wl.kind == "static":
        _dx_registers(sch, wl, t)
        return
    if t is not None and if_constant(sch, lambda s: _dx_registers(s, wl, t), guard=True):  # generic, 8-pixel tiles
        return
    for name in ("dOu", "Au"):
        sch.compute_inline(sch.get_sblock(name))
    acc = sch.get_sblock("acc")
    n, c, h, w, m, u, v = sch.get_loops(acc)
    xo, xi, co, ci, cbi = _tiles(sch, wl, target, c, w, 1)
    # per (atom, tap): one atom from shared memory feeds cb channels
    sch.reorder(n, h, xo, ci, xi, co, m, u, v, cbi)
    block = sch.fuse(n, h, xo)
    threads = sch.fuse(ci, xi)
    sch.bind(block, "blockIdx.x")
    sch.bind(threads, "threadIdx.x")
    unroll(sch, cbi)
    unroll_taps(sch, wl, v)
    _atoms_in_shared(sch, wl, block, extent(sch, threads))
    sch.set_scope(acc, 0, "local")
    sch.reverse_compute_at(sch.get_sblock("out"), co)
    sch.decompose_reduction(acc, m)


# 32-bit registers for the rows schedule's dD tile (mi atoms x k tap columns). At 8x64x56x56
# k7 M = 6: float32 all 6 atoms, 64 registers (50%); float64 with 42 words (3 atoms) took
# 76-78 registers (38%), with 28 (2 atoms) 56 (56%), sm_90 and sm_80
DATOMS_WORDS, DATOMS_WORDS_F64 = 42, 28
DATOMS_TILE = 128  # most pixels (threads) per datoms block of the rows schedule
DATOMS_THREADS = 64  # narrower rows: this many pixels' worth of whole rows per block
# rows narrower than a warp keep the register tile: on the registered models' 7- and 14-pixel
# rows (blocks of 28-49 threads) nvcc took 61-80 registers, 28-50% (the register tile: 44, 62%)
DATOMS_MIN_ROW = 32
DATOMS_CHUNK = 16  # most channels per staged input row segment
DATOMS_SHARED_BYTES = 12 * 1024  # the staged row segments of a chunk


def datoms_tile(wl):
    """Geometry of :func:`_datoms_rows`: dict(tile, rows, mi, cc), or None (symbolic shapes, taps
    beyond UNROLL_TAPS, output rows under DATOMS_MIN_ROW: the register tile schedule below)."""
    p = wl.p
    if wl.kind != "static" or p["k"] > UNROLL_TAPS:
        return None
    wo = conv_out_size(p["W"], p["k"], p["s"], p["p"], p["d"])
    if wo < DATOMS_MIN_ROW:
        return None
    tile = -(-wo // -(-wo // DATOMS_TILE))  # balanced tiles of whole rows where they fit
    ho = conv_out_size(p["H"], p["k"], p["s"], p["p"], p["d"])
    # a divisor of Ho: with a tail block TVM sized the staged rows loosely (22 of 4 needed)
    rows = max(b for b in range(1, ho + 1) if ho % b == 0 and (b == 1 or b * tile <= DATOMS_THREADS))
    # a chunk's staged segments: (rows - 1) * s + 1 input rows x the tile's window, per channel
    plane = ((rows - 1) * p["s"] + 1) * ((tile - 1) * p["s"] + (p["k"] - 1) * p["d"] + 1)
    item = {"float64": 8, "float32": 4}.get(wl.dtype, 2)
    return dict(tile=tile, rows=rows, mi=atoms_per_thread(wl, DATOMS_WORDS_F64 if wl.dtype == "float64" else DATOMS_WORDS),
                cc=max(b for b in range(1, DATOMS_CHUNK + 1) if p["C"] % b == 0
                       and (b == 1 or b * plane * item <= DATOMS_SHARED_BYTES)))


def _datoms_rows(sch, wl, t) -> None:
    """dD by output rows: a block per (image, atom group, tap row u, ``rows`` output rows, tile
    of the row; rows > 1 where rows are narrower than DATOMS_THREADS pixels, so that a block
    keeps its lanes busy), a thread per pixel keeping mi atoms x k tap columns of dD in
    registers. Per chunk of cc channels the block stages the input row segments its pixels
    read at tap row u ((tile - 1) * s + (k - 1) * d + 1 columns each, padding checked in the
    copy) in shared memory; per
    channel a thread loads its mi values of dO (adjacent pixels: coalesced) and its k inputs
    from shared memory, none behind a padding check, for mi x k FMAs. (The register tile
    below loaded the inputs from global memory behind one padding check each: with all six
    atoms per thread nvcc then took 80 registers.)"""
    p = wl.p
    acc = sch.get_sblock("acc")
    n, m, u, v, y, x, c = sch.get_loops(acc)
    mi, threads = t["mi"], t["rows"] * t["tile"]
    mo, m_in = sch.split(m, [None, mi])
    yo, yi = sch.split(y, [None, t["rows"]])
    xo, xi = sch.split(x, [None, t["tile"]])
    co, ci = sch.split(c, [None, t["cc"]])
    sch.reorder(n, mo, u, yo, xo, co, yi, xi, ci, m_in, v)
    block = sch.fuse(n, mo, u, yo, xo)
    sch.bind(block, "blockIdx.x")
    sch.bind(sch.fuse(yi, xi), "threadIdx.x")
    unroll(sch, m_in, v)
    # the chunk's channels a plain loop: nvcc unrolled 16 of them next to the 42 sums (72-102
    # registers on the models' 7- and 14-pixel rows)
    sch.annotate(ci, "disable_unroll", 1)
    xpad = sch.get_sblock("Xpad")
    sch.set_scope(xpad, 0, "shared")
    rounds = _stage(sch, xpad, co, threads)
    sch.annotate(rounds, "disable_unroll", 1)  # as fwd's copy: its loads next to the sums
    sch.set_scope(acc, 0, "local")
    sch.decompose_reduction(acc, co)
    # the cast stage after the channel loop, a thread per pixel as the sums (the tail tile's
    # predicate with it), its mi x k results from its registers
    out = sch.get_sblock("out")
    sch.reverse_compute_at(out, block)
    named = _named_below(sch, out, block, (("m", mi), ("v", p["k"]), ("y", t["rows"]), ("x", t["tile"])))
    serial = [named[nm] for nm in ("m", "v") if nm in named]
    spatial = [named[nm] for nm in ("y", "x") if nm in named]
    sch.reorder(*spatial, *serial)
    _spread(sch, out, spatial, threads)
    unroll(sch, *serial)


def datoms_generic_shape(wl) -> dict:
    """Geometry of :func:`_datoms_generic`: dict(mi, cc, threads)."""
    p = wl.p
    rows, cols = (p["k"] - 1) * p["d"] + 1, (X_QUANTUM - 1) * p["s"] + (p["k"] - 1) * p["d"] + 1
    item = {"float64": 8, "float32": 4}.get(wl.dtype, 2)
    cc = max(b for b in range(1, DATOMS_CHUNK + 1) if p["C"] % b == 0
             and (b == 1 or b * rows * cols * item <= DATOMS_SHARED_BYTES))
    return dict(mi=atoms_per_thread(wl, DATOMS_WORDS_F64 if wl.dtype == "float64" else DATOMS_WORDS), cc=cc,
                threads=p["k"] * X_QUANTUM)


def _datoms_generic(sch, wl) -> None:
    """Generic dD (N, H, W symbolic; k <= UNROLL_TAPS) as the rows schedule with tiles of
    X_QUANTUM pixels: a block per (image, atom group, output row, tile; blockIdx.z / .y / .x),
    a thread per (tap row u, pixel) keeping mi atoms x k tap columns of dD in registers. Per
    chunk of cc channels the block stages the tile's input window ((k-1)*d + 1 rows x
    (X_QUANTUM - 1)*s + (k-1)*d + 1 columns per channel, padding checked in the copy) in shared
    memory; per channel a thread loads its mi values of dO (8 adjacent pixels per tap row) and
    its k inputs from shared memory for mi x k FMAs. (The static rows schedule has a block per
    tap row and a whole row of pixels; a generic tile longer than X_QUANTUM would have a
    staged window TVM clips to the symbolic row end.)"""
    p = wl.p
    g = datoms_generic_shape(wl)
    mi, threads = g["mi"], g["threads"]
    sch.compute_inline(sch.get_sblock("dOpad"))
    acc = sch.get_sblock("acc")
    n, m, u, v, y, x, c = sch.get_loops(acc)
    mo, m_in = sch.split(m, [None, mi])
    xo, xi = sch.split(x, [None, X_QUANTUM])
    co, ci = sch.split(c, [None, g["cc"]])
    sch.reorder(n, mo, y, xo, co, u, xi, ci, m_in, v)
    sch.bind(sch.fuse(n, mo), "blockIdx.z")
    sch.bind(y, "blockIdx.y")
    sch.bind(xo, "blockIdx.x")
    sch.bind(sch.fuse(u, xi), "threadIdx.x")
    unroll(sch, m_in, v)
    sch.annotate(ci, "disable_unroll", 1)  # as the static rows schedule's
    xpad = sch.get_sblock("Xpad")
    sch.set_scope(xpad, 0, "shared")
    s, span = p["s"], (p["k"] - 1) * p["d"] + 1
    # each pixel's whole tap window (affine in the pixel; see _fwd_rows)
    _declare_read(sch, acc, "Xpad", lambda n_, m_, u_, v_, y_, x_, c_: (
        (n_, n_ + 1), (c_, c_ + 1), (y_ * s, y_ * s + span), (x_ * s, x_ * s + span)))
    rounds = _stage(sch, xpad, co, threads)
    sch.annotate(rounds, "disable_unroll", 1)
    sch.set_scope(acc, 0, "local")
    sch.decompose_reduction(acc, co)
    # the cast stage after the channel loop, a thread per (u, pixel) as the sums (the tail's
    # predicate with it): the order fixed before the move (see _fwd_rows)
    out = sch.get_sblock("out")
    sch.transform_block_layout(out, lambda n_, m_, u_, v_, y_, x_: (n_, m_ // mi, y_, u_, x_, m_ % mi, v_))
    sch.reverse_compute_at(out, xo)
    named = _named_below(sch, out, xo, (("u", p["k"]), ("x", X_QUANTUM), ("m", mi), ("v", p["k"])))
    spatial = [named[nm] for nm in ("u", "x") if nm in named]
    _spread(sch, out, spatial, threads)
    unroll(sch, *[named[nm] for nm in ("m", "v") if nm in named])


DATOMS_BLOCK_TILE = 32  # most pixels of a row per block of the tap-block schedule
DATOMS_BLOCK_WORDS = 24  # its register tile: mi atoms x k tap columns (3 x 7 at M = 6 k7 float32)
# generic builds' channels per chunk: at 8x64x56x56 k7 float32 with 8 or 16 sm_90's ptxas took
# 40 registers and spilled 40 bytes (sm_80: 48, none); with 4, 48 on both, no spill
DATOMS_GENERIC_CHUNK = 4
# static rows under DATOMS_MIN_ROW (``_datoms_narrow``): most threads per block. With 1024, 784
# threads at 28 px (48 registers) and 686 at 7 px took one block per SM: 39% / 34% (sm_90)
DATOMS_NARROW_THREADS = 512
DATOMS_NARROW_TILES = 4  # and at most this many tiles per row (no 2-pixel tiles of tall blocks)


def datoms_block_tile(wl):
    """Geometry of :func:`_datoms_block`: dict(tile, mi, cc, threads, rows, groups), or None:
    static float64 (2 atoms per thread: 588 threads at M = 6 k7, 55 registers, one block per
    SM: 30%), taps beyond UNROLL_TAPS, more than 1024 threads. Static rows of at least
    DATOMS_MIN_ROW pixels: balanced tiles of at most DATOMS_BLOCK_TILE pixels (dividing the
    row), a row per block; narrower: :func:`_datoms_narrow`. ``groups``: blocks per (image,
    rows, tile), one per atom group where > 1."""
    p = wl.p
    if p["k"] > UNROLL_TAPS:
        return None
    if wl.kind == "static":
        if wl.dtype == "float64":
            return None
        wo = conv_out_size(p["W"], p["k"], p["s"], p["p"], p["d"])
        tile = -(-wo // -(-wo // DATOMS_BLOCK_TILE))
        mi = atoms_per_thread(wl, DATOMS_BLOCK_WORDS)
    rows = groups = 1
    if wl.kind == "static" and wo < DATOMS_MIN_ROW:
        tile, rows, groups = _datoms_narrow(wl, wo, mi)
    if wl.kind != "static":  # generic: tiles of DATOMS_ROWS rows x X_QUANTUM pixels (whole tiles: ops.acda)
        wo = tile = X_QUANTUM
        mi = atoms_per_thread(wl, DATOMS_BLOCK_WORDS)
        # one row per block where the threads would not fit (e.g. 20 atoms x k7) and at strides
        # over 1 (the window grows by s rows per row; at stride 3 k5 sm_80's ptxas spilled 32 B)
        rows = DATOMS_ROWS if p["s"] == 1 and p["M"] // mi * p["k"] * DATOMS_ROWS * tile <= 1024 else 1
    threads = p["M"] // mi // groups * p["k"] * rows * tile
    if wo % tile or threads > 1024:
        return None
    item = {"float64": 8, "float32": 4}.get(wl.dtype, 2)
    window = (rows - 1) * p["s"] + (p["k"] - 1) * p["d"] + 1
    plane = window * ((tile - 1) * p["s"] + (p["k"] - 1) * p["d"] + 1) + p["M"] // groups * rows * tile
    # a channel per chunk with the atom groups in the grid: at 8x64x7x7 k7 (343 threads, 11
    # warps) with 2-16 channels ptxas capped the registers at 40 for a 4th block per SM and
    # spilled 8-24 bytes (sm_90, sm_80); with 1, 47-53 registers, no spill, 3 blocks: 52%
    most = 1 if groups > 1 else DATOMS_CHUNK if wl.kind == "static" else DATOMS_GENERIC_CHUNK
    cc = max(b for b in range(1, most + 1) if p["C"] % b == 0 and (b == 1 or b * plane * item <= DATOMS_SHARED_BYTES))
    return dict(tile=tile, mi=mi, cc=cc, threads=threads, rows=rows, groups=groups)


def _datoms_narrow(wl, wo: int, mi: int) -> tuple:
    """(tile, rows, groups) of a static :func:`_datoms_block` at output rows under
    DATOMS_MIN_ROW: tiles dividing the row (at most DATOMS_NARROW_TILES per row), ``rows``
    dividing Ho (stride 1 only, as the generic build's), the atom groups in the block (groups
    = 1) or one per block (groups = M / mi: dO still staged once, the window once per group),
    within DATOMS_NARROW_THREADS threads (a single row with every group: 1024); of these the
    one staging the fewest window elements per channel (padding counted), ties to the larger
    tile and the fewer threads."""
    p = wl.p
    k, s, d = p["k"], p["s"], p["d"]
    ho = conv_out_size(p["H"], k, s, p["p"], d)
    best = (None, (wo, 1, 1))  # over 1024 threads: datoms_block_tile declines
    for groups in sorted({1, p["M"] // mi}):
        for tile in (t for t in range(wo, 0, -1) if wo % t == 0 and wo // t <= DATOMS_NARROW_TILES):
            for rows in (r for r in range(1, ho + 1) if ho % r == 0 and (r == 1 or s == 1)):
                threads = p["M"] // mi // groups * k * rows * tile
                if threads > (1024 if (rows, groups) == (1, 1) else DATOMS_NARROW_THREADS):
                    continue
                staged = (groups * (ho // rows) * ((rows - 1) * s + (k - 1) * d + 1)
                          * (wo // tile) * ((tile - 1) * s + (k - 1) * d + 1))
                key = (staged, -tile, threads)
                if best[0] is None or key < best[0]:
                    best = key, (tile, rows, groups)
    return best[1]


def _datoms_block(sch, wl, t) -> None:
    """dD with every tap row in one block: a block per (image, output row, tile of the row; static
    rows under DATOMS_MIN_ROW: several rows, and one block per atom group where ``groups`` > 1;
    generic: tiles of ``rows`` = DATOMS_ROWS rows x X_QUANTUM pixels where the threads fit, the
    input window of both rows staged once: at 8x64x56x56 k7 float32 0.72x the bytes of a row
    per block, 54 registers, no spill, 224 threads, sm_90 and sm_80; estimates, ``gpu_report``),
    a thread per (output row of the tile, atom group, tap row u, pixel) keeping mi atoms x k tap
    columns in registers;
    per chunk of cc channels the block stages the tile's input window and its dO (every atom)
    in shared memory, so dO is loaded once (the rows schedule loads it per tap row: k times)."""
    p = wl.p
    mi, tile, threads, rows = t["mi"], t["tile"], t["threads"], t["rows"]
    generic = wl.kind == "generic"
    acc = sch.get_sblock("acc")
    dO_at = [r.source.name for r in sch.get(acc).reads].index("dOpad" if generic else "dO")
    n, m, u, v, y, x, c = sch.get_loops(acc)
    mo, m_in = sch.split(m, [None, mi])
    y, yi = sch.split(y, [None, rows]) if rows > 1 else (y, None)
    xo, xi = sch.split(x, [None, tile])
    co, ci = sch.split(c, [None, t["cc"]])
    # (the tile's rows outermost: the cast stage's order below, which keeps y whole)
    grid_groups = t.get("groups", 1) > 1  # static narrow rows: a block per atom group
    thread_loops = [lp for lp in (yi, None if grid_groups else mo, u, xi) if lp is not None]
    sch.reorder(*([n, mo] if grid_groups else [n]), y, xo, co, *thread_loops, ci, m_in, v)
    block = _bind_grid(sch, wl, sch.fuse(n, mo) if grid_groups else n, y, xo)
    sch.bind(sch.fuse(*thread_loops), "threadIdx.x")
    unroll(sch, m_in, v)
    sch.annotate(ci, "disable_unroll", 1)
    xpad = sch.get_sblock("Xpad")
    sch.set_scope(xpad, 0, "shared")
    if generic:  # each pixel's whole tap window (affine in the pixel; see _fwd_rows)
        s, span = p["s"], (p["k"] - 1) * p["d"] + 1
        _declare_read(sch, acc, "Xpad", lambda n_, m_, u_, v_, y_, x_, c_: (
            (n_, n_ + 1), (c_, c_ + 1), (y_ * s, y_ * s + span), (x_ * s, x_ * s + span)))
    if p["s"] == 1 and p["d"] == 1 and wl.dtype == "float32":
        # a warp's 32 threads are consecutive (tap row, pixel) pairs reading X[u][x + v]: with
        # the window's row stride = tile (mod 32 words) their banks are consecutive too (the
        # plain 34-word rows at tile 28: 2 wavefronts per load). Generic (tiles of 8: a warp
        # is 4 tap rows x 8 pixels): a stride of 8 or 24 (mod 32), the rows on disjoint banks
        # (24 words for the 14 columns at k7, not 40: smaller chunks of the window)
        cols = tile + (p["k"] - 1)
        stride = next(r for r in range(cols, cols + 32) if r % 32 in (8, 24)) if generic else tile
        sch.storage_align(xpad, 0, 2, 32, stride % 32)
    if generic:  # dO widened to whole tiles (ops.acda), staged as it is: a tile's stage of constant size
        dos = sch.get_sblock("dOpad")
        sch.set_scope(dos, 0, "shared")
    else:
        dos = sch.cache_read(acc, dO_at, "shared")
    for stage in (xpad, dos):
        _stage(sch, stage, co, threads, rolled=True)
    sch.set_scope(acc, 0, "local")
    sch.decompose_reduction(acc, co)
    out = sch.get_sblock("out")
    if generic:
        # the order the threads take, fixed before the move (see _fwd_rows' tail predicate)
        sch.transform_block_layout(out, lambda n_, m_, u_, v_, y_, x_: (n_, y_, m_ // mi, u_, x_, m_ % mi, v_))
        sch.reverse_compute_at(out, block)
        named = _named_below(sch, out, block, (("y", rows), ("mo", p["M"] // mi), ("u", p["k"]), ("x", tile),
                                               ("m", mi), ("v", p["k"])))
        _spread(sch, out, [named[nm] for nm in ("y", "mo", "u", "x") if nm in named], threads)
        unroll(sch, *[named[nm] for nm in ("m", "v") if nm in named])
        return
    sch.reverse_compute_at(out, block)
    named = _named_below(sch, out, block, (("m", mi if grid_groups else p["M"]), ("u", p["k"]), ("v", p["k"]),
                                           ("y", rows), ("x", tile)))
    if "m" in named and mi == 1 and not grid_groups:
        named["mo"] = named.pop("m")
    elif "m" in named and mi < p["M"] and not grid_groups:  # (grid_groups: m is the group's mi)
        named["mo"], named["m"] = sch.split(named["m"], [None, mi])
    spatial = [named[nm] for nm in ("y", "mo", "u", "x") if nm in named]
    serial = [named[nm] for nm in ("m", "v") if nm in named]
    sch.reorder(*spatial, *serial)
    _spread(sch, out, spatial, threads)
    unroll(sch, *serial)


@register("acda", "datoms", "cuda")
def datoms(sch, wl, target):
    """The same register tile as the atoms build (``atoms_per_thread``): a thread per (atom
    group, tap row, pixel) keeps mi atoms x k tap columns of dD in registers; per channel it
    loads mi values of dO and k of the input row for mi x k FMAs (was: a thread per atom tap,
    dO and X loaded for every FMA). Threads run along the pixels of a row (coalesced).
    Unrolled taps: :func:`_datoms_block` (static float32 and half-type rows of whole tiles, narrow
    rows in the blocks of :func:`_datoms_narrow`; generic builds in
    tiles of DATOMS_ROWS rows x X_QUANTUM pixels where their stages compact), else :func:`_datoms_rows` (static) or
    :func:`_datoms_generic` (generic)."""
    t = datoms_block_tile(wl)
    if t is not None and wl.kind == "static":
        _datoms_block(sch, wl, t)
        return
    if t is not None and if_constant(sch, lambda s: _datoms_block(s, wl, t), guard=True):  # generic, X_QUANTUM tiles
        return
    t = datoms_tile(wl)
    if t is not None:
        _datoms_rows(sch, wl, t)
        return
    if wl.kind == "generic" and wl.p["k"] <= UNROLL_TAPS and if_constant(sch, lambda s: _datoms_generic(s, wl), guard=True):
        return
    generic = wl.p["W"] is None
    if generic:
        for name in ("dOpad", "Xpad"):
            sch.compute_inline(sch.get_sblock(name))
    acc = sch.get_sblock("acc")
    n, m, u, v, y, x, c = sch.get_loops(acc)
    mi, cols = atoms_per_thread(wl), wl.p["k"] <= UNROLL_TAPS
    if mi == 1:
        mo, inner = m, []
    elif mi < wl.p["M"]:
        mo, m_in = sch.split(m, [None, mi])
        inner = [m_in]
    else:
        mo, inner = None, [m]
    if cols:
        inner.append(v)
    outer = [l for l in (n, mo, u) if l is not None] + ([] if cols else [v]) + [y, x]
    sch.reorder(*outer, c, *inner)
    tx = bind_flat(sch, outer)
    register_acc(sch, acc, c, tx)
    for loop in inner:
        sch.unroll(loop)
    if generic:  # the segment's region is not constant under the fused symbolic index
        return
    # the padded input row segment in registers, loaded once per channel for all mi atoms
    # (inlined, each (atom, tap) statement kept its own guarded load: 21 loads, not 7)
    xpad = sch.get_sblock("Xpad")
    depth = len(sch.get_loops(acc)) - len(inner)  # the loops down to c
    sch.compute_at(xpad, sch.get_loops(acc)[depth - 1])
    sch.set_scope(xpad, 0, "local")
    for loop in sch.get_loops(xpad)[depth:]:
        sch.unroll(loop)
    loops = sch.get_loops(sch.get_sblock("out"))
    at = next(i for i, loop in enumerate(loops) if sch.get(loop).same_as(sch.get(tx)))
    for loop in loops[at + 1:]:  # the thread's mi x k results, from registers
        sch.unroll(loop)
