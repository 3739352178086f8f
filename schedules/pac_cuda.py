"""Default CUDA schedules for PAC: one thread per output element (x fastest: coalesced loads),
the reduction in a register, padding and zero insertion as index checks in the loads. Generic
builds (symbolic sizes) bind the same loops, the last block's tail predicated.

conv (static shapes): an implicit GEMM, M = pixels, N = output channels, K = C*k^2. A block
owns ty x tx output pixels of one image (tx up to 32, a warp's row) and ot*oi output channels;
per chunk of cc input channels (cc*k^2 about K_CHUNK) it builds the modulated taps xk = K * Sz
(cc x k x k x ty x tx, the B operand; padding and zero insertion are index checks in these
loads) and copies the Wt chunk (ot*oi x cc x k x k, the A operand) into shared memory with
cooperative loads, then each thread (yt x tx x ot of them) accumulates a register tile of yi
rows x oi channels (4 x 8 in float32, 4 x 4 in float64) over the chunk: per tap oi Wt words
(broadcast within the warp) and yi xk words (consecutive across the warp) feed yi*oi FMAs.
8x64x128x128 k5 O=64 float32: 4 x 32 pixel tiles, ot*oi = 64, cc = 1 (25-deep chunks), 256
threads, 19.2 KB shared memory, 1,024 blocks; ptxas: 64 registers, no spills (estimate: see
gpu_report.requested_bytes). Symbolic shapes (generic builds), and chunks that cannot fit
TILE_SHARED_BYTES (k >= 13 on wide images), keep one thread per pixel and block of output
channels (CONV_CHANNEL_BLOCK), each modulated tap loaded once for the block.
conv_dk: each thread forms G (the weight times the output gradient, summed over output
channels) one input channel at a time.
"""
from __future__ import annotations

from . import register
from tvm import tirx

from .common import MAX_THREADS, register_acc, threads_for, unroll, unroll_taps

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


def _reg_o(dtype: str) -> int:
    """Output channels of a thread's register tile (half the float32 count in float64)."""
    return 4 if dtype == "float64" else 8


def conv_tile(wl):
    """The tiled conv's geometry for a static workload: dict(ty, tx, yt, yi, ot, oi, cc) (pixel
    tile ty x tx; threads yt x tx x ot; register tile yi x oi; cc input channels per chunk), or
    None where the staged chunk cannot fit TILE_SHARED_BYTES (huge k: thread per output)."""
    p = wl.p
    if wl.kind != "static":
        return None
    C, O, k, Ho, Wo = p["C"], p["O"], p["k"], p["Ho"], p["Wo"]
    item = 8 if wl.dtype == "float64" else 4
    k2 = k * k
    tx = min(TILE_X, Wo)
    yi = min(REG_Y, Ho)
    yt = max(1, min(PIXEL_THREADS // tx, -(-Ho // yi)))
    oi = min(_reg_o(wl.dtype), O)
    ot = min(CHANNEL_THREADS, -(-O // oi))
    cc = max(n for n in range(1, C + 1) if C % n == 0 and (n == 1 or n * k2 <= K_CHUNK))

    def shared(yi_):
        return (cc * k2 * yi_ * yt * tx + ot * oi * cc * k2) * item  # xk chunk + Wt chunk

    while shared(yi) > TILE_SHARED_BYTES and yi > 1:
        yi -= 1
    if shared(yi) > TILE_SHARED_BYTES:
        return None
    return dict(ty=yi * yt, tx=tx, yt=yt, yi=yi, ot=ot, oi=oi, cc=cc)


def _cooperative(sch, block, loop, threads: int) -> None:
    """Stage ``block`` (already in shared scope) at ``loop``, its loops fused and spread over
    the block's ``threads``."""
    sch.compute_at(block, loop)
    loops = sch.get_loops(block)
    at = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(loop)))
    loops = loops[at + 1:]  # compute_at made none for unit-extent axes
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0] if loops else sch.add_unit_loop(block)
    _, tx = sch.split(fused, [None, threads])
    sch.bind(tx, "threadIdx.x")


def _conv_tiled(sch, wl, t) -> None:
    """A block per (n, ot*oi output channels, ty x tx pixels), a thread per (o slice, row
    slice, column) keeping yi x oi accumulators. Per chunk of cc input channels the block
    builds the modulated taps xk (cc x k x k x ty x tx: the GEMM's B operand, K times the
    source, padding and zero insertion as index checks) and copies the Wt chunk (its A
    operand) into shared memory; each thread then runs its register tile over the chunk."""
    for name in _modulated_stages(wl)[:-1]:  # Sz (Kz): read by the xk prologue only
        sch.compute_inline(sch.get_sblock(name))
    acc = sch.get_sblock("acc")
    n, o, y, x, c, i, j = sch.get_loops(acc)
    ob, ot, oi = sch.split(o, [None, t["ot"], t["oi"]])
    yb, yt, yi = sch.split(y, [None, t["yt"], t["yi"]])
    xb, xt = sch.split(x, [None, t["tx"]])
    co, ci = sch.split(c, [None, t["cc"]])
    sch.reorder(n, ob, yb, xb, ot, yt, xt, co, ci, i, j, oi, yi)
    blk = sch.fuse(n, ob, yb, xb)
    thr = sch.fuse(ot, yt, xt)
    sch.bind(blk, "blockIdx.x")
    sch.bind(thr, "threadIdx.x")
    threads = t["ot"] * t["yt"] * t["tx"]
    xk = sch.get_sblock("xk")
    sch.set_scope(xk, 0, "shared")  # before compute_at: the staged region covers the whole tile
    _cooperative(sch, xk, co, threads)
    wt = sch.cache_read(acc, 0, "shared")
    # taps-major, output channels innermost: a thread's oi weights of a tap are contiguous, so
    # nvcc reads them as vectors (ld.shared.v4) instead of oi scalar loads
    sch.transform_layout(wt, ("write", 0), lambda o, c, i, j: (c, i, j, o))
    _cooperative(sch, wt, co, threads)
    unroll(sch, oi, yi)
    unroll_taps(sch, wl, j)
    sch.set_scope(acc, 0, "local")
    sch.decompose_reduction(acc, co)
    sch.reverse_compute_at(sch.get_sblock("out"), thr)


@register("pac", "conv", "cuda")
def conv(sch, wl, target):
    t = conv_tile(wl)
    if t is not None:
        _conv_tiled(sch, wl, t)
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
    _inline(sch, *_modulated_stages(wl))
    _thread_per_output(sch, 4)


@register("pac", "conv_dk", "cuda")
def conv_dk(sch, wl, target):
    _inline(sch, "Sz")
    acc = sch.get_sblock("acc")
    n, g, i, j, y, x, c = sch.get_loops(acc)
    tx = bind_flat(sch, [n, g, i, j, y, x])
    G = sch.get_sblock("G")
    sch.compute_at(G, c)
    sch.set_scope(G, 0, "local")
    register_acc(sch, acc, c, tx)


@register("pac", "conv_dw", "cuda")
def conv_dw(sch, wl, target):
    _inline(sch, "Sz")
    _thread_per_output(sch, 4)


@register("pac", "pool_dk", "cuda")
@register("pac", "dist", "cuda")
def per_tap(sch, wl, target):
    """Kernel-shaped results: a thread sums the channels (G = 1) or is one element."""
    _inline(sch, "Sz")
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
