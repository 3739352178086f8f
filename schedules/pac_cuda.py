"""Default CUDA schedules for PAC: one thread per output element (x fastest: coalesced loads),
the reduction in a register, padding and zero insertion as index checks in the loads. Generic
builds (symbolic sizes) bind the same loops, the last block's tail predicated.

conv: each thread keeps a block of output channels of its pixel in registers, so a modulated
tap (kernel x source) is loaded once for the block. conv_dk: each thread forms G (the weight
times the output gradient, summed over output channels) one input channel at a time.
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


@register("pac", "conv", "cuda")
def conv(sch, wl, target):
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
