"""Execute CUDA schedules without a GPU: on an OpenCL CPU device (PoCL), checked against float64.

Two ways to run a scheduled IRModule (the one ``build.schedule`` gives for a CUDA target):

* ``opencl``: TVM's own OpenCL lowering of the scheduled TIR (target ``opencl`` with
  ``thread_warp_size: 1``, so cross-thread reductions go through local memory);
* ``cuda``: TVM's sm_90 CUDA source, translated to OpenCL C (:func:`cuda_to_opencl`): thread
  indices, ``__shared__``, ``__syncthreads`` and pointer qualifiers mapped, and every warp
  shuffle (``__shfl_sync``, ``__shfl_down_sync``, ...) emulated through a local-memory exchange
  between barriers (lane = linear thread id % 32; a lane outside the block reads NaN). The
  tensor-core PTX of TVM's mma intrinsics (``ldmatrix.x4`` on 32-bit words, ``mma.sync``
  m16n8k8 TF32 and m16n8k16 f16/bf16 with f32 accumulators) is emulated the same way:
  fragments to local memory, a barrier, each lane assembling its registers from the PTX
  fragment layouts, operands truncated to TF32 (checked within ``TF32_TOLERANCE``) or
  unpacked from their 16-bit halves (products exact in float32, as in the hardware). Kernels
  with tensor-core instructions run this way only (TVM's OpenCL lowering has no such
  intrinsics), and every thread of the block must reach each one (uniform loops, no
  thread-dependent branch around it: true of the pac.conv schedule).

Launch geometry and scratch buffers come from the host function after TVM's own host/device
split (one ``call_ffi_kernel`` per launch, in order). Every buffer lies between guard zones of
NaN at least as long as itself (inputs: ``0xFF`` bytes; outputs and scratch: the same with the
sign bit clear, so a NaN read from an input's guard and carried by x86 arithmetic, payload and
all, into an output's guard still changes it), outputs and scratch start as NaN, and every
``__local`` array is set to NaN when a group starts. After the launches: a changed guard byte
is an out-of-bounds write, a changed input a stray write, a NaN in the output an unwritten
element or an out-of-bounds read that reached a result; the output must match the unscheduled
compute built for LLVM in float64 (:func:`reference`) on the same (rounded) inputs.

A generic workload (symbolic B, H, W: ``Workload.with_symbolic``) runs from one lowering at
any concrete sizes (``check(..., sizes={"B": 1, "H": 37, "W": 53})``): launch extents, scalar
kernel arguments and scratch sizes that depend on the symbolic variables are kept as the host
function's expressions and evaluated for the call (:func:`resolve`).

Half types (float16, bfloat16; the ``cuda`` way only): PoCL has neither, so their buffers,
shared and local arrays hold the 16-bit words (``ushort``), and every conversion in TVM's
source becomes an integer-exact helper: a half value read as float (``(float)x``) widens its
bits, a cast to the half type (``(half)(e)``, ``__float2half_rn``, ``__float2bfloat16_rn``)
rounds to nearest even (``tvm_f2h``, ``tvm_f2bf``: bit-faithful, subnormals, overflow to
infinity and NaN included); copies stay copies. Guard and poison words (0xFFFF, 0x7FFF) are NaNs
in both.

Limits: no half arithmetic in the kernels beyond conversions (TVM's code for these kernels
converts to float32 first). PoCL runs the work-items of a group one after another between
barriers, so a race that needs truly concurrent warps stays invisible (a missing barrier is
still caught when the data it guarded is read: the reader then runs before the writer and
sees NaN). Shuffles must be reached by every thread of the block (all of this project's sit
at a kernel's top level; a nested one is refused, except a read of the thread's own lane,
which needs no exchange: ``tvm_shfl_self``). Static shared
memory over the target's per-block limit is refused for the ``cuda`` way, as nvcc would.
Dynamic shared memory (TVM's "shared.dyn" scope: one ``extern __shared__`` byte array, its size
the launch parameter ``tirx.use_dyn_shared_memory`` of the host code) becomes a ``__local``
kernel argument sized at each launch from that parameter (``cl.LocalMemory``), poisoned byte
by byte like the static arrays; launches over the arch's opt-in maximum are refused
(:func:`check_dyn_shared`).
Needs numpy and pyopencl with an OpenCL device that has ``cl_khr_fp64`` (imported lazily).
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

WAYS = ("opencl", "cuda")
DTYPES = ("float32", "float64")
# Half types run the ``cuda`` way only, stored as 16-bit words (see :func:`cuda_to_opencl`).
HALF_DTYPES = ("float16", "bfloat16")
# Relative to the largest reference value. Half types: the reference is the float64 compute on
# the same (half) inputs; the kernel rounds each modulated tap K*X to the half type (a relative
# error up to u = 2^-11 float16, 2^-8 bfloat16), sums the C*k^2 products in float32 (their
# errors of random sign add like a random walk, as the products do: about u of the largest
# output), then rounds the output (u of it): e.g. 2.6e-4..3.7e-4 (float16) and 1.8e-3..4.1e-3
# (bfloat16) at the test shapes, so 4u leaves room and stays far under the O(1) error of a
# wrong fragment layout.
TOLERANCE = {"float32": 1e-4, "float64": 1e-10, "float16": 4 * 2.0 ** -11, "bfloat16": 4 * 2.0 ** -8}
# Kernels on emulated TF32 tensor cores: each operand keeps 10 of float32's 23 mantissa bits
# (truncated), so a product is off by up to 2^-9 of itself; the errors of the C*k^2 products of
# random sign add like a random walk, as the products do, so the error stays about 2^-10 of the
# largest output (measured 5e-4 to 1.3e-3 at the test shapes), well over float32's 1e-4 and far
# under the O(1) error of a wrong fragment layout.
TF32_TOLERANCE = 5e-3
WARP = 32
GUARD_BYTE = 0xFF  # 0xFF.. is a NaN in float32 and float64


def _guard(itemsize: int, written: bool) -> np.ndarray:
    """One guard element's bytes (little-endian): all GUARD_BYTE, for a buffer the kernels write
    with the sign bit clear (0x7FFF..: still a NaN in every float type)."""
    g = np.full(itemsize, GUARD_BYTE, np.uint8)
    if written:
        g[-1] = 0x7F
    return g

OPENCL_TARGET = {"kind": "opencl", "max_threads_per_block": 1024, "max_shared_memory_per_block": 49152,
                 "thread_warp_size": 1}


class EmulationError(RuntimeError):
    """The emulator cannot run this module (PoCL missing, an unsupported construct)."""


class CheckFailed(AssertionError):
    """The kernel ran and got something wrong (the message says what)."""


@dataclasses.dataclass
class Launch:
    kernel: str
    args: List[str]  # buffer names: the PrimFunc's parameters or scratch allocations
    grid: Tuple[int, int, int]  # generic kernels: entries may be expressions (str) until resolved
    block: Tuple[int, int, int]
    scalars: List[str] = dataclasses.field(default_factory=list)  # scalar arguments (expressions), after the buffers
    dyn_shared: object = 0  # bytes of dynamic shared memory (TVM's launch parameter; may be an expression)


@dataclasses.dataclass
class Lowered:
    """Device source (OpenCL C once translated), its launches and the scratch they share."""

    source: str
    launches: List[Launch]
    scratch: Dict[str, Tuple[int, str]]  # name -> (elements, dtype); elements may be an expression
    lets: Dict[str, str] = dataclasses.field(default_factory=dict)  # host let-bindings the expressions use


class _T:
    """The TVMScript integer operations host expressions use, on Python ints (``//`` and ``%``
    are floor division and modulo in both)."""
    min, max = staticmethod(min), staticmethod(max)
    floordiv, floormod = staticmethod(lambda a, b: a // b), staticmethod(lambda a, b: a % b)
    truncdiv = staticmethod(lambda a, b: abs(a) // abs(b) * (1 if (a >= 0) == (b >= 0) else -1))
    Cast = staticmethod(lambda dtype, v: int(v))
    Select = if_then_else = staticmethod(lambda c, a, b: a if c else b)
    int32 = int64 = staticmethod(int)


def resolve(lowered: Lowered, values: Dict[str, int]) -> Lowered:
    """``lowered`` with every launch extent, scalar argument and scratch size evaluated for the
    symbolic variables ``values`` (e.g. ``{"B": 2, "H": 37, "W": 53}``)."""
    env = dict(values)
    for name, expr in lowered.lets.items():  # in order: a let may use earlier ones
        try:
            env[name] = _eval(expr, env)
        except EmulationError:  # the packed API's own (argument unpacking): not shape arithmetic
            pass
    launches = [Launch(ln.kernel, ln.args, tuple(_eval(g, env) for g in ln.grid),
                       tuple(_eval(b, env) for b in ln.block), [str(_eval(a, env)) for a in ln.scalars],
                       _eval(ln.dyn_shared, env))
                for ln in lowered.launches]
    scratch = {n: (_eval(size, env), dtype) for n, (size, dtype) in lowered.scratch.items()}
    return Lowered(lowered.source, launches, scratch)


def _eval(expr, env) -> int:
    if isinstance(expr, int):
        return expr
    try:
        return int(eval(expr, {"__builtins__": {}, "T": _T}, env))  # the host function's own text
    except Exception as err:
        raise EmulationError(f"cannot evaluate launch expression {expr!r} with {sorted(env)}: {err}") from None


# -- lowering -------------------------------------------------------------------------------
def lower(mod, target) -> Lowered:
    """TVM's build up to code generation (as ``tvm.tirx.build``): the device source and, read
    from the host function, the launches and global scratch allocations."""
    import tvm
    from tvm.target import Target
    from tvm.tirx.build import codegen_build, split_host_device_mods

    target = Target(target, Target("llvm"))
    with target:
        mod = tvm.tirx.transform.BindTarget(target)(mod)
        from .build import TIR_PIPELINE  # build's pipeline (launch bounds the schedule asks for)

        pipeline, finalize_host, finalize_device = tvm.tirx.get_tir_pipeline(TIR_PIPELINE)
        mod = pipeline(mod)
        host, devices = split_host_device_mods(mod)
        sources = [codegen_build(finalize_device()(dev), t).inspect_source() for t, dev in devices.items()]
    if len(sources) != 1:
        raise EmulationError(f"expected one device module, got {len(sources)} (unscheduled module?)")
    launches, scratch, lets = _host_launches(host.script())
    return Lowered(sources[0], launches, scratch, lets)


DYN_SHARED_TAG = "tirx.use_dyn_shared_memory"  # TVM's launch parameter of the dynamic shared bytes (last)
# dynamic shared memory per block with the opt-in attribute (cudaFuncAttributeMaxDynamicSharedMemorySize,
# which TVM's CUDA runtime sets for launches over 48 KB): 227 KB on sm_90, 163 KB on sm_80
MAX_DYN_SHARED = {"sm_80": 163 * 1024, "sm_90": 227 * 1024}
_CALL = re.compile(r'T\.call_ffi_kernel\("(\w+)", (.*?), launch_params=\[(.*?)\]')
_ALLOC = re.compile(r'^\s*(\w+) = T\.alloc_buffer\(\(([^,]+?),?\)(?:, "(\w+)")?\)', re.M)
_VIEW = re.compile(r'^\s*(\w+) = (\w+)\.view\(', re.M)
_LET = re.compile(r'^\s*(\w+): T\.let\[T\.u?int\d+\] = (.+)$', re.M)


def _host_launches(script: str):
    """Parse the host function's TVMScript: launches in order, scratch allocations."""
    views = dict(_VIEW.findall(script))
    scratch = {name: (_int_or_expr(n), dtype or "float32") for name, n, dtype in _ALLOC.findall(script)}
    lets = dict(_LET.findall(script))
    launches = []
    for name, args, params in _CALL.findall(script):
        params = [p.strip().strip('"') for p in params.split(",")]
        items = _split_args(args)
        bufs, dims = items[:len(items) - len(params)], items[len(items) - len(params):]
        nbuf = next((i for i, b in enumerate(bufs) if not b.endswith(".data")), len(bufs))
        if any(b.endswith(".data") for b in bufs[nbuf:]):
            raise EmulationError(f"unsupported launch (buffers after scalar arguments): {name}({args})")
        geo = {"blockIdx": [1, 1, 1], "threadIdx": [1, 1, 1]}
        dyn = 0
        for p, d in zip(params, dims):
            kind, _, axis = p.partition(".")
            if p == DYN_SHARED_TAG:  # the launch's dynamic shared memory, in bytes (T.int64(n) in static builds)
                dyn = _int_or_expr(d)
                try:
                    dyn = _eval(dyn, {})
                except EmulationError:  # symbolic: evaluated by resolve()
                    pass
            elif kind not in geo:
                raise EmulationError(f"unsupported launch parameter {p!r} in {name}")
            else:
                geo[kind]["xyz".index(axis)] = _int_or_expr(d)
        names = [views.get(b[:-5], b[:-5]) for b in bufs[:nbuf]]
        launches.append(Launch(name, names, tuple(geo["blockIdx"]), tuple(geo["threadIdx"]), bufs[nbuf:], dyn))
    if not launches:
        raise EmulationError("no kernel launch in the host function")
    return launches, scratch, lets


def _int_or_expr(text: str):
    text = text.strip()
    return int(text) if text.isdigit() else text


def _split_args(args: str) -> List[str]:
    """Split a call's arguments at top-level commas (expressions may hold calls)."""
    out, depth, cur = [], 0, ""
    for ch in args:
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return out + [cur.strip()] if cur.strip() else out


# -- CUDA -> OpenCL C -----------------------------------------------------------------------
_PRELUDE = r"""
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
inline int tvm_lid(void) {
  return (int)(get_local_id(0) + get_local_size(0) * (get_local_id(1) + get_local_size(1) * get_local_id(2)));
}
inline int tvm_nthreads(void) { return (int)(get_local_size(0) * get_local_size(1) * get_local_size(2)); }
"""

# 16-bit floats as ushort words: widening is exact; narrowing rounds to nearest even like the
# hardware's cvt.rn (float16: subnormals below 2^-14, overflow from 65520 to infinity).
_HALF = r"""
inline float tvm_h2f(ushort h) {
  uint s = (uint)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1fu) return as_float(s | 0x7f800000u | (m << 13));
  if (e == 0u) { float v = (float)m * 5.9604644775390625e-8f; return s ? -v : v; }
  return as_float(s | ((e + 112u) << 23) | (m << 13));
}
inline ushort tvm_f2h(float f) {
  uint x = as_uint(f), s = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return (ushort)(s | 0x7e00u);
  if (ax >= 0x477ff000u) return (ushort)(s | 0x7c00u);
  if (ax < 0x38800000u) return (ushort)(s | (uint)rint(as_float(ax) * 16777216.0f));
  return (ushort)(s | ((ax + 0xfffu + ((ax >> 13) & 1u) - 0x38000000u) >> 13));
}
inline float tvm_bf2f(ushort h) { return as_float((uint)h << 16); }
inline ushort tvm_f2bf(float f) {
  uint x = as_uint(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (ushort)((x >> 16) | 0x40u);
  return (ushort)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
"""

# A warp shuffle as an exchange through local memory: every thread stores its value, then
# reads its source lane's; the leading barrier keeps the previous exchange's reads before
# this one's stores. Lanes outside the block (a partial last warp) read NaN.
_SHUFFLES = r"""
#define TVM_SHFL(T, BUF)                                                                    \
inline T tvm_xchg_##T(__local T* buf, T v, int from) {                                     \
  int lid = tvm_lid();                                                                     \
  barrier(CLK_LOCAL_MEM_FENCE); buf[lid] = v; barrier(CLK_LOCAL_MEM_FENCE);                \
  return from < tvm_nthreads() ? buf[from] : (T)NAN;                                       \
}                                                                                          \
T __attribute__((overloadable)) tvm_shfl_sync(__local float* xf, __local double* xd,       \
                                              uint mask, T v, int src, int width) {        \
  int lid = tvm_lid(), lane = lid % 32;                                                    \
  return tvm_xchg_##T(BUF, v, lid - lane + lane / width * width + src % width);            \
}                                                                                          \
T __attribute__((overloadable)) tvm_shfl_down_sync(__local float* xf, __local double* xd,  \
                                                   uint mask, T v, int delta, int width) { \
  int lid = tvm_lid();                                                                     \
  return tvm_xchg_##T(BUF, v, lid % 32 % width + delta < width ? lid + delta : lid);       \
}                                                                                          \
T __attribute__((overloadable)) tvm_shfl_up_sync(__local float* xf, __local double* xd,    \
                                                 uint mask, T v, int delta, int width) {   \
  int lid = tvm_lid();                                                                     \
  return tvm_xchg_##T(BUF, v, lid % 32 % width >= delta ? lid - delta : lid);              \
}                                                                                          \
T __attribute__((overloadable)) tvm_shfl_xor_sync(__local float* xf, __local double* xd,   \
                                                  uint mask, T v, int lanes, int width) {  \
  int lid = tvm_lid(), lane = lid % 32;                                                    \
  return tvm_xchg_##T(BUF, v, lid - lane + (lane ^ lanes));                                \
}
TVM_SHFL(float, xf)
TVM_SHFL(double, xd)
float __attribute__((overloadable)) tvm_shfl_self(float v, int src) { return tvm_lid() % 32 == src % 32 ? v : NAN; }
double __attribute__((overloadable)) tvm_shfl_self(double v, int src) { return tvm_lid() % 32 == src % 32 ? v : NAN; }
"""

# Tensor-core instructions (TVM's inline PTX for its mma intrinsics), emulated warp-cooperatively
# like the shuffles: each lane stores its fragment registers in local memory, a barrier, then each
# lane assembles its results from the PTX fragment layouts, lane = linear thread id % 32.
# ldmatrix.x4 (.b16, not transposed, 32-bit words): lane l gives the row address of row l % 8 of
# matrix l / 8 (4 words a row); register m of lane L is word L % 4 of row L / 4 of matrix m.
# mma.m16n8k8 .tf32 (PTX ISA fragment layouts, g = lane / 4, t = lane % 4): A a0 (g, t), a1 (g+8,
# t), a2 (g, t+4), a3 (g+8, t+4); B b0 (k = t, n = g), b1 (k = t+4, n = g); C/D c0, c1 (g, 2t +
# 0|1), c2, c3 (g+8, ..). Operands are cut to TF32 as the hardware reads them (the low 13
# mantissa bits ignored: truncation), products and sums in float32.
_MMA = r"""
inline float tvm_tf32(uint bits) { return as_float(bits & 0xffffe000u); }
void tvm_ldmatrix_x4(__local uint* xch, __local const uint* row, uint* d0, uint* d1, uint* d2, uint* d3) {
  int lid = tvm_lid(), lane = lid % 32, base = lid - lane;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int w = 0; w < 4; ++w) xch[lid * 6 + w] = row[w];
  barrier(CLK_LOCAL_MEM_FENCE);
  uint* d[4] = {d0, d1, d2, d3};
  for (int m = 0; m < 4; ++m) *d[m] = xch[(base + TVM_LDM_SRC(m, lane)) * 6 + lane % 4];
}
// A warp's fragments into the exchange buffer (6 words a lane), read back by any lane.
void tvm_mma_stage(__local uint* xch, int lid, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1) {
  barrier(CLK_LOCAL_MEM_FENCE);
  xch[lid * 6 + 0] = a0; xch[lid * 6 + 1] = a1; xch[lid * 6 + 2] = a2; xch[lid * 6 + 3] = a3;
  xch[lid * 6 + 4] = b0; xch[lid * 6 + 5] = b1;
  barrier(CLK_LOCAL_MEM_FENCE);
}
// m16n8k16 f16/bf16 (bf != 0): A a0..a3 (g, 2t+h), (g+8, 2t+h), (g, 2t+8+h), (g+8, 2t+8+h); B
// b0, b1 (k = 2t+h | 2t+8+h, n = g); the lower index in the low 16 bits; C/D as m16n8k8.
inline float tvm_half_at(uint w, int h, int bf) {
  ushort v = (ushort)(h ? w >> 16 : w & 0xffffu);
  return bf ? tvm_bf2f(v) : tvm_h2f(v);
}
// One product term of either shape: mode < 0 m16n8k8 tf32, else m16n8k16 (mode: bf).
inline float tvm_mma_term(__local uint* xch, int mode, int base, int row, int col, int k) {
  if (mode < 0) {
    uint a = xch[(base + TVM_MMA_A_LANE(row, k)) * 6 + row / 8 + 2 * (k / 4)];
    uint b = xch[(base + 4 * col + k % 4) * 6 + 4 + k / 4];
    return tvm_tf32(a) * tvm_tf32(b);
  }
  uint a = xch[(base + TVM_MMA16_A_LANE(row, k)) * 6 + row / 8 + 2 * (k / 8)];
  uint b = xch[(base + 4 * col + k % 8 / 2) * 6 + 4 + k / 8];
  return tvm_half_at(a, k % 2, mode) * tvm_half_at(b, k % 2, mode);
}
void tvm_mma_tile(__local uint* xch, int mode, float* d0, float* d1, float* d2, float* d3,
                  uint a0, uint a1, uint a2, uint a3, uint b0, uint b1,
                  float c0, float c1, float c2, float c3) {
  int lid = tvm_lid(), lane = lid % 32, base = lid - lane, g = lane / 4, t = lane % 4;
  tvm_mma_stage(xch, lid, a0, a1, a2, a3, b0, b1);
  float c[4] = {c0, c1, c2, c3};
  float* d[4] = {d0, d1, d2, d3};
  float r[4];
  for (int q = 0; q < 4; ++q) {
    int row = g + 8 * (q / 2), col = 2 * t + q % 2;
    float s = c[q];
    for (int k = 0; k < (mode < 0 ? 8 : 16); ++k) s += tvm_mma_term(xch, mode, base, row, col, k);
    r[q] = s;
  }
  for (int q = 0; q < 4; ++q) *d[q] = r[q];
}
#define tvm_mma_m16n8k8_tf32(xch, ...) tvm_mma_tile(xch, -1, __VA_ARGS__)
#define tvm_mma_m16n8k16(xch, bf, ...) tvm_mma_tile(xch, bf, __VA_ARGS__)
"""
# The lane layouts as macros, so a negative control can break one (tests/test_cuda_emulated.py).
_MMA_LAYOUT = ("#define TVM_LDM_SRC(m, lane) ((m) * 8 + (lane) / 4)\n#define TVM_MMA_A_LANE(row, k) (4 * ((row) % 8) + (k) % 4)\n"
               "#define TVM_MMA16_A_LANE(row, k) (4 * ((row) % 8) + (k) % 8 / 2)\n")
_ASM = re.compile(r'__asm__ __volatile__\(\s*((?:"[^"]*"\s*)+):(.*?)\);', re.S)
_CVTA = re.compile(r'unsigned int (\w+) = __cvta_generic_to_shared\((.*?)\);\n')
_LDMATRIX = "ldmatrix.sync.aligned.m8n8.x4.shared.b16"
_MMA_TF32 = "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32"
_MMA_HALF = {"mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32": 0, "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32": 1}


def _asm_operands(text: str) -> List[str]:
    """The expressions of an asm statement's operand list ('"=r"(expr), "r"(expr)')."""
    return [re.sub(r'^"=?[rfl]"\s*', "", item).strip() for item in _split_args(text) if item.strip()]


def _emulate_asm(body: str, name: str) -> str:
    """Replace TVM's inline PTX (ldmatrix, mma) by calls of the warp-cooperative emulation."""
    body = _CVTA.sub(lambda m: f"__local const uint* {m[1]} = (__local const uint*)({m[2]});\n", body)

    def repl(m):
        template = "".join(re.findall(r'"([^"]*)"', m[1]))
        outs, _, ins = m[2].partition(":")
        outs, ins = _asm_operands(outs), _asm_operands(ins)
        if template.startswith(_LDMATRIX) and len(outs) == 4 and len(ins) == 1:
            return f"tvm_ldmatrix_x4(tvm_mma_x, {ins[0]}, " + ", ".join(f"&({o})" for o in outs) + ");"
        if template.startswith(_MMA_TF32) and len(outs) == 4 and len(ins) == 10:
            return "tvm_mma_m16n8k8_tf32(tvm_mma_x, " + ", ".join([f"&({o})" for o in outs] + ins) + ");"
        half = next((bf for t, bf in _MMA_HALF.items() if template.startswith(t)), None)
        if half is not None and len(outs) == 4 and len(ins) == 10:
            return f"tvm_mma_m16n8k16(tvm_mma_x, {half}, " + ", ".join([f"&({o})" for o in outs] + ins) + ");"
        raise EmulationError(f"{name}: inline PTX not emulated: {template.split('{')[0].strip()!r}")

    return _ASM.sub(repl, body)


_KERNEL = re.compile(r'extern "C" __global__ void (?:__launch_bounds__\((\d+)(?:, \d+)?\) )?(\w+)\((.*?)\) \{')
_SHARED = re.compile(r'^[ \t]*__shared__ (?:alignas\(\d+\) )?(\w+) (\w+)\[(\d+)\];\n', re.M)
# TVM's dynamic shared memory (scope "shared.dyn": one merged byte array, sized by the launch)
_DYN_SHARED = re.compile(r'^[ \t]*extern __shared__ (?:__align__\(\d+\) )?uchar (\w+)\[\];\n', re.M)
DYN_BYTES = "tvm_dyn_shared_bytes"  # the kernel parameter that carries its size (poisoning)
_REPLACE = [
    (r'\(\(int\)threadIdx\.([xyz])\)', lambda m: f"((int)get_local_id({'xyz'.index(m[1])}))"),
    (r'\(\(int\)blockIdx\.([xyz])\)', lambda m: f"((int)get_group_id({'xyz'.index(m[1])}))"),
    (r'\bthreadIdx\.([xyz])', lambda m: f"((int)get_local_id({'xyz'.index(m[1])}))"),
    (r'\bblockIdx\.([xyz])', lambda m: f"((int)get_group_id({'xyz'.index(m[1])}))"),
    (r'\bblockDim\.([xyz])', lambda m: f"((int)get_local_size({'xyz'.index(m[1])}))"),
    (r'\bgridDim\.([xyz])', lambda m: f"((int)get_num_groups({'xyz'.index(m[1])}))"),
    (r'__syncthreads\(\)', 'barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)'),
    (r'__activemask\(\)', '0xffffffffu'),
    (r'\b__shfl(_down|_up|_xor)?_sync\(', r'tvm_shfl\1_sync(tvm_xf, tvm_xd, '),
    (r'alignas\(\d+\) ', ''),
    (r'\bint64_t\b', 'long'), (r'\buint64_t\b', 'ulong'), (r'\bint32_t\b', 'int'),
    (r'\b(sqrt|exp|log|fabs|fmax|fmin|floor|ceil|pow)f\(', r'\1('),
]
_UNSUPPORTED = re.compile(r'threadIdx|blockIdx|__shfl|__global__|__device__|__shared__|__syncthreads|'
                          r'__restrict__|extern "C"|\bhalf\b|__nv_bfloat16|asm\b|__asm__|__cvta')


_HALF_TYPES = {"half": ("tvm_h2f", "tvm_f2h", "__float2half_rn"), "nv_bfloat16": ("tvm_bf2f", "tvm_f2bf", "__float2bfloat16_rn")}


def _operand_end(text: str, i: int) -> int:
    """End of the C operand starting at ``i``: a parenthesized expression, a name or a call,
    with optional subscripts."""
    def close(j):  # j at an opening bracket
        depth = 0
        for k in range(j, len(text)):
            depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(text[k], 0)
            if depth == 0:
                return k + 1
        raise EmulationError("unbalanced brackets in the CUDA source")
    if text[i] == "(":
        j = close(i)
    else:
        m = re.compile(r"\w+").match(text, i)
        if not m:
            raise EmulationError(f"unsupported cast operand: {text[i:i + 40]!r}")
        j = m.end()
        if j < len(text) and text[j] == "(":  # a call
            j = close(j)
    while j < len(text) and text[j] == "[":  # postfix subscripts bind tighter than the cast
        j = close(j)
    return j


def _half_words(body: str) -> str:
    """A kernel on 16-bit floats rewritten onto ``ushort`` words (see the module docstring):
    ``(float)x`` of a half value widens its bits, ``(half)e`` of a float rounds to nearest even
    (of a half value it is a copy), and the type becomes ``ushort``."""
    for typ, (widen, narrow, intrinsic) in _HALF_TYPES.items():
        if not re.search(r"\b" + typ + r"\b", body):
            continue
        names = set(re.findall(r"\b" + typ + r"\s*\*?\s*(?:__restrict__\s+)?(\w+)", body))
        cast = re.compile(r"\((float|" + typ + r")\)")

        def convert(text: str) -> str:
            out, pos = [], 0
            while m := cast.search(text, pos):
                end = _operand_end(text, m.end())
                operand = text[m.end():end]
                lead = re.match(r"[\s(]*(\w+)", operand)
                # a half array, or a pointer cast to the half type (TVM's reads of dynamic
                # shared memory: ``((half*)buf_dyn_shmem_ptr)[i]``)
                is_half = bool(lead) and (lead[1] in names or lead[1] == typ)
                inner = convert(operand)
                if m[1] == "float":
                    repl = f"{widen}({inner})" if is_half else m[0] + inner
                else:
                    repl = f"({inner})" if is_half else f"{narrow}({inner})"
                out += [text[pos:m.start()], repl]
                pos = end
            return "".join(out) + text[pos:]

        body = convert(body.replace(intrinsic + "(", narrow + "("))
        body = re.sub(r"\b" + typ + r"\b", "ushort", body)
    # fragments are read as 32-bit words: keep the 16-bit arrays word-aligned
    # (private arrays here; shared ones are hoisted with an alignment in _translate_kernel)
    return re.sub(r"(?<!__shared__ )alignas\((\d+)\) (ushort \w+\[\d+\]);", r"\2 __attribute__((aligned(\1)));", body)


def cuda_to_opencl(cuda: str, max_shared_bytes: int = 49152) -> str:
    """TVM's CUDA source as OpenCL C, shuffles emulated (see the module docstring)."""
    body = cuda[cuda.index('extern "C" __global__'):] if 'extern "C" __global__' in cuda else ""
    if not body:
        raise EmulationError("no __global__ kernel in the CUDA source")
    body = "\n".join(line for line in body.splitlines()  # prototypes
                     if not (line.startswith('extern "C" __global__') and line.rstrip().endswith(");")))
    if "__device__" in body:
        raise EmulationError("CUDA __device__ functions are not translated")
    body = _half_words(body)
    out, pos = [], 0
    for m in _KERNEL.finditer(body):
        end = _kernel_end(body, m.end())
        out.append(body[pos:m.start()])
        out.append(_translate_kernel(m, body[m.end():end], max_shared_bytes))
        pos = end
    out.append(body[pos:])
    src = "".join(out)
    left = sorted(set(_UNSUPPORTED.findall(src)))
    if left:
        raise EmulationError(f"untranslated CUDA constructs: {left}")
    return _PRELUDE + _HALF + _SHUFFLES + (_MMA_LAYOUT + _MMA if "tvm_mma_x" in src else "") + src


def _kernel_end(src: str, start: int) -> int:
    depth = 1
    for i in range(start, len(src)):
        depth += {"{": 1, "}": -1}.get(src[i], 0)
        if depth == 0:
            return i
    raise EmulationError("unbalanced braces in the CUDA source")


def _translate_kernel(m, body: str, max_shared_bytes: int) -> str:
    threads, name, params = int(m[1] or 1024), m[2], m[3]
    params = ", ".join(("__global " if "*" in p else "") + p.strip().replace("__restrict__", "restrict")
                       for p in params.split(","))  # scalars (generic kernels' sizes) stay private
    shared = _SHARED.findall(body)  # hoisted: OpenCL wants __local at kernel scope
    body = _SHARED.sub("", body)
    nbytes = sum(int(n) * {"float": 4, "double": 8, "int": 4, "uint": 4, "ushort": 2}[t] for t, _, n in shared)
    if nbytes > max_shared_bytes:
        raise CheckFailed(f"{name}: {nbytes} bytes of static shared memory, over the {max_shared_bytes}-byte "
                          "per-block limit (nvcc would refuse it)")
    # dynamic shared memory: a __local kernel argument (first, then its size in bytes) that
    # execute() sizes from the launch (cl.LocalMemory), as the CUDA launch does
    dyn = _DYN_SHARED.findall(body)
    body = _DYN_SHARED.sub("", body)
    if len(dyn) > 1:
        raise EmulationError(f"{name}: more than one dynamic shared array")
    if dyn:
        params = f"__local uchar* {dyn[0]}, const uint {DYN_BYTES}" + (", " + params if params.strip() else "")
    for t, n, _ in shared + [("uchar", d, None) for d in dyn]:  # TVM casts shared arrays to (volatile T*): keep them __local
        body = body.replace(f"((volatile {t}*){n})", f"((volatile __local {t}*){n})")
        # and to another element type where StorageRewrite shares one allocation between types
        body = re.sub(r"\(\((\w+)\*\)" + n + r"\)", lambda m: f"((__local {m[1]}*){n})", body)
        # and a vector access into it (``*(uint4*)(n + i)``: TVM's vectorized copies)
        body = re.sub(r"\((\w+)\*\)\(" + n + r"\b", lambda m: f"(__local {m[1]}*)({n}", body)
        # and a vector access into such a cast (``*(float4*)(((float*)n) + i)``)
        body = re.sub(r"\((\w+)\*\)\(\(\(__local (\w+)\*\)" + n + r"\)",
                      lambda m: f"(__local {m[1]}*)(((__local {m[2]}*){n})", body)
    # a shuffle from the thread's own lane (TVM's warp-memory lowering of a fragment read, e.g.
    # the plain mma store) needs no exchange: it returns the value (NaN if src is another lane)
    body = re.sub(r"__shfl_sync\(__activemask\(\), ([^,()]+(?:\[[^,]*?\])?), \(\(int\)threadIdx\.x\), 32\)",
                  r"tvm_shfl_self(\1, ((int)threadIdx.x))", body)
    for line in body.splitlines():
        if "__shfl" in line and not re.match(r"  \S", line):
            raise EmulationError(f"{name}: a warp shuffle below the kernel's top level: {line.strip()}")
    if "__asm__" in body:
        body = _emulate_asm(body, name)
    for pattern, repl in _REPLACE:
        body = re.sub(pattern, repl, body)
    body = re.sub(r'\(unsigned \*\)', '(uint *)', body)  # fragment registers (private arrays)
    decls = "".join(f"\n  __local {t} {n}[{size}]" + (" __attribute__((aligned(16)))" if t == "ushort" else "") + ";"
                    for t, n, size in shared)
    if "tvm_shfl" in body:
        decls += f"\n  __local float tvm_xf[{threads}];\n  __local double tvm_xd[{threads}];"
    if "tvm_mma_x" in body:
        decls += f"\n  __local uint tvm_mma_x[{threads * 6}];"
    return f"__kernel void {name}({params}) {{{decls}{body}"


# -- instrumentation of OpenCL C --------------------------------------------------------------
_LOCAL_DECL = re.compile(r'^([ \t]*)__local (float|double|ushort) (\w+)\[(\d+)\]((?: __attribute__\(\(aligned\(\d+\)\)\))?);[ \t]*\n', re.M)
_POISON = {"float": "NAN", "double": "NAN", "ushort": "0xFFFFu"}  # 0xFFFF: NaN as float16 and bfloat16


def poison_local(src: str) -> str:
    """Fill every ``__local`` float array (16-bit words: 0xFFFF) with NaN when a group starts (then a barrier), so a
    read before the write it should wait for yields NaN instead of a stale value."""
    out, pos = [], 0
    for m in re.finditer(r'__kernel void (\w+)\(.*?\) \{\n', src):
        end = _kernel_end(src, m.end())
        body = src[m.end():end]
        decls = _LOCAL_DECL.findall(body)
        body = _LOCAL_DECL.sub("", body)
        init = "".join(f"  __local {t} {n}[{size}]{attr};\n" for _, t, n, size, attr in decls)
        dyn = re.match(r"__local uchar\* (\w+), const uint " + DYN_BYTES, src[m.end(1) + 1:])
        if decls or dyn:
            init += "".join(f"  for (int i = tvm_lid(); i < {size}; i += tvm_nthreads()) {n}[i] = ({t}){_POISON[t]};\n"
                            for _, t, n, size, _ in decls)
            if dyn:  # 0xFF bytes: NaN in every float type, 16-bit words included
                init += f"  for (uint i = tvm_lid(); i < {DYN_BYTES}; i += tvm_nthreads()) {dyn[1]}[i] = (uchar)0xFF;\n"
            init += "  barrier(CLK_LOCAL_MEM_FENCE);\n"
        out += [src[pos:m.end()], init, body]
        pos = end
    out.append(src[pos:])
    text = "".join(out)
    return text if "tvm_lid" in text.split("__kernel", 1)[0] else _PRELUDE + text


# -- execution ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _device():
    """The first OpenCL device with float64; raises EmulationError with the reason otherwise."""
    try:
        import pyopencl as cl
    except Exception as err:  # ImportError, or a broken ICD loader
        raise EmulationError(f"pyopencl cannot be imported: {err}") from None
    try:
        devices = [d for p in cl.get_platforms() for d in p.get_devices()]
    except Exception as err:
        raise EmulationError(f"no OpenCL platform (is pocl-binary-distribution installed?): {err}") from None
    devices = [d for d in devices if "cl_khr_fp64" in d.extensions]
    if not devices:
        raise EmulationError("no OpenCL device with float64 (cl_khr_fp64)")
    if devices[0].version.endswith("-generic"):
        _name_cpu_for_pocl(devices[0])
    ctx = cl.Context([devices[0]])
    return cl, ctx, cl.CommandQueue(ctx), devices[0]


_BASELINE_CPU = None  # keeps the C string alive for PoCL


def _name_cpu_for_pocl(dev) -> None:
    """PoCL names a CPU its LLVM does not know (here LLVM 14 and AMD Zen 5) 'generic', which its
    own clang then refuses: every build fails with "unknown target CPU 'generic'"
    (pocl/pocl#1049; PoCL 3.0 has no option to override it). Point the device's ``llvm_cpu``
    (a char* in PoCL's device struct, found as the pointer to "generic") at "x86-64", the
    baseline every x86-64 CPU runs. Only readable memory is inspected."""
    global _BASELINE_CPU
    import ctypes

    maps = []
    with open("/proc/self/maps") as f:
        for line in f:
            span, perms = line.split()[:2]
            if perms.startswith("rw"):
                maps.append(tuple(int(x, 16) for x in span.split("-")))

    def readable(addr: int, n: int) -> bool:
        return any(lo <= addr and addr + n <= hi for lo, hi in maps)

    _BASELINE_CPU = ctypes.create_string_buffer(b"x86-64")
    for addr in range(dev.int_ptr, dev.int_ptr + 8192, 8):
        if not readable(addr, 8):
            break
        ptr = ctypes.c_void_p.from_address(addr).value
        if ptr and readable(ptr, 8) and ctypes.string_at(ptr, 8) == b"generic\0":
            ctypes.c_void_p.from_address(addr).value = ctypes.addressof(_BASELINE_CPU)
            return


def available() -> Optional[str]:
    """None when an OpenCL device can run the check, else the reason it cannot."""
    try:
        _device()
    except EmulationError as err:
        return str(err)
    return None


@functools.lru_cache(maxsize=256)
def _program(source: str):
    cl, ctx, _, _ = _device()
    try:
        return cl.Program(ctx, source).build()
    except cl.RuntimeError as err:
        raise EmulationError(f"OpenCL build failed: {err}\n--- source ---\n{source[:4000]}") from None


def execute(lowered: Lowered, inputs: Sequence[np.ndarray], names: Sequence[str], out_shape, out_dtype) -> np.ndarray:
    """Run the launches on ``inputs`` (named ``names``, the output last); return the output
    after checking guards and inputs (CheckFailed otherwise)."""
    cl, ctx, queue, dev = _device()
    prog = _program(lowered.source)
    align = max(dev.mem_base_addr_align // 8, 8)
    bufs = {}  # name -> (whole buffer, data sub-buffer, host array with guards, guard elements)

    def alloc(name, data: np.ndarray, written: bool = True):
        n, item = data.size, data.itemsize
        guard = -(-max(n, 256) * item // align) * align // item  # >= the buffer, aligned
        host = np.empty(guard * 2 + n, data.dtype)
        pattern = _guard(item, written)
        host.view(np.uint8).reshape(-1, item)[:] = pattern
        host[guard:guard + n] = data.ravel()
        whole = cl.Buffer(ctx, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR, hostbuf=host)
        sub = whole.get_sub_region(guard * item, max(n, 1) * item)
        bufs[name] = (whole, sub, host, guard, pattern)

    for name, arr in zip(names[:-1], inputs):
        alloc(name, arr, written=False)
    out = np.empty(out_shape, host_dtype(out_dtype))
    out.view(np.uint8)[:] = GUARD_BYTE  # NaN in every float type
    alloc(names[-1], out)
    for name, (n, dtype) in lowered.scratch.items():
        alloc(name, np.full(n, np.nan, dtype))
    for ln in lowered.launches:
        missing = [a for a in ln.args if a not in bufs]
        if missing:
            raise EmulationError(f"{ln.kernel}: arguments {missing} are neither parameters nor scratch")
        glob = tuple(g * b for g, b in zip(ln.grid, ln.block))
        scalars = [t(int(v)) for t, v in zip(_scalar_types(lowered.source, ln.kernel, len(ln.scalars)), ln.scalars)]
        takes_dyn = re.search(r"__kernel void " + ln.kernel + r"\(__local uchar\* ", lowered.source) is not None
        if takes_dyn != bool(ln.dyn_shared):
            raise EmulationError(f"{ln.kernel}: dynamic shared memory in the kernel ({takes_dyn}) and the launch "
                                 f"({ln.dyn_shared} bytes) disagree")
        dyn = [cl.LocalMemory(int(ln.dyn_shared)), np.uint32(ln.dyn_shared)] if takes_dyn else []
        cl.Kernel(prog, ln.kernel)(queue, glob, ln.block, *dyn, *[bufs[a][1] for a in ln.args], *scalars)
    results = {}
    for name, (whole, _, host, guard, pattern) in bufs.items():
        back = np.empty_like(host)
        cl.enqueue_copy(queue, back, whole)
        n = host.size - 2 * guard
        raw = back.view(np.uint8).reshape(-1, host.itemsize)
        bad = np.flatnonzero((np.r_[raw[:guard], raw[guard + n:]] != pattern).any(axis=1))
        if bad.size:
            where = [int(i) - guard if i < guard else int(i - guard) + n for i in bad[:5]]
            raise CheckFailed(f"out-of-bounds write: guard zone of '{name}' changed at element offsets "
                              f"{where} (relative to its start; {n} elements)")
        results[name] = back[guard:guard + n]
    queue.finish()
    for name, arr in zip(names[:-1], inputs):
        if not np.array_equal(results[name].view(np.uint8), np.ascontiguousarray(arr).ravel().view(np.uint8)):
            raise CheckFailed(f"input '{name}' was written to")
    return results[names[-1]].reshape(out_shape)


def _scalar_types(source: str, kernel: str, n: int) -> list:
    """numpy types of a kernel's last ``n`` (scalar) parameters, from its OpenCL signature."""
    if not n:
        return []
    m = re.search(r'__kernel void ' + kernel + r'\((.*?)\)', source, re.S)
    params = _split_args(m[1]) if m else []
    return [np.int64 if re.match(r'(const )?(long|ulong|int64_t)\b', p) else np.int32 for p in params[-n:]]


# -- the check ------------------------------------------------------------------------------
def host_dtype(dtype: str):
    """numpy type of a buffer of ``dtype``: bfloat16 (numpy has none) as its 16-bit words."""
    return np.uint16 if dtype == "bfloat16" else np.dtype(dtype)


def from_float32(x: np.ndarray, dtype: str) -> np.ndarray:
    """``x`` rounded to ``dtype`` (nearest even), in its host representation."""
    if dtype != "bfloat16":
        return x.astype(dtype)
    w = np.ascontiguousarray(x, np.float32).view(np.uint32)
    return ((w + 0x7FFF + ((w >> 16) & 1)) >> 16).astype(np.uint16)  # finite inputs only


def to_float64(x: np.ndarray, dtype: str) -> np.ndarray:
    """Host-representation values as float64 (exact)."""
    if dtype == "bfloat16":
        return (x.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return np.asarray(x, np.float64)


def make_inputs(workload, seed: int = 0) -> Tuple[List[np.ndarray], List[str], tuple, str]:
    """Random normal inputs in the workload's dtype (host representation, :func:`host_dtype`),
    the buffer names, the output shape/dtype."""
    from . import registry

    tensors = registry.compute(workload)
    rng = np.random.default_rng(seed)
    ins = [from_float32(rng.standard_normal([int(n) for n in t.shape]).astype(np.float32), str(t.dtype))
           if str(t.dtype) in HALF_DTYPES else rng.standard_normal([int(n) for n in t.shape]).astype(str(t.dtype))
           for t in tensors[:-1]]
    out = tensors[-1]
    return ins, [t.op.name for t in tensors], tuple(int(n) for n in out.shape), str(out.dtype)


@functools.lru_cache(maxsize=64)
def _reference_lib(workload64):
    import tvm

    from . import registry

    return tvm.compile(registry.prim_func(workload64), target="llvm")


def reference(workload, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """The unscheduled compute in float64 (built for LLVM) on ``inputs`` (upcast exactly;
    half types from their host representation)."""
    import tvm

    from .workload import Workload

    wl64 = Workload(workload.op, workload.kernel, workload.params, "float64")
    _, _, shape, _ = make_inputs(wl64)
    args = [tvm.runtime.tensor(to_float64(a, workload.dtype)) for a in inputs]
    out = tvm.runtime.tensor(np.zeros(shape, np.float64))
    _reference_lib(wl64)(*args, out)
    return out.numpy()


def shipped_cuda_records(root=None) -> List[Tuple[str, object, str, Callable]]:
    """Every record of every CUDA tuning log under ``root`` (default: the shipped
    ``tuning_logs/``): (log name, workload, record id, a function returning the scheduled
    module, or raising ``TuningLogError`` when the record is stale or does not apply)."""
    from pathlib import Path

    from . import tuning_log as tl_mod

    root = Path(root) if root is not None else tl_mod.default_root()
    out = []
    for path in sorted(p for p in root.iterdir() if (p / tl_mod.MANIFEST).is_file()):
        tl = tl_mod.TuningLog.load(path)
        if tl.target.get("kind") != "cuda":
            continue
        for entry in tl.entries.values():
            for rec in tl.records.get(entry.shash, ()):
                def apply(entry=entry, rec=rec):
                    mod = tl_mod.mod_of(entry.workload)
                    if tl_mod.structural_hash(mod) != entry.shash:
                        raise tl_mod.TuningLogError(f"stale record: the compute of {entry.workload} changed")
                    return tl_mod.apply_record(mod, rec.raw)
                out.append((tl.target_name, entry.workload, tl_mod.record_id(rec.raw), apply))
    return out


def scheduled(workload, arch: str = "sm_90", tuned: bool = False):
    """The CUDA-scheduled module of ``workload`` (the default schedule unless ``tuned``)."""
    from .build import schedule
    from .target import cuda_target

    return schedule(workload, cuda_target(arch), tuned=tuned)[0]


def prepare(workload, way: str, mod=None, arch: str = "sm_90") -> Lowered:
    """Lower ``mod`` (default: the workload's default CUDA schedule) one of the two ways, to
    OpenCL C with poisoned local memory."""
    from tvm.target import Target

    from .target import cuda_target

    mod = mod if mod is not None else scheduled(workload, arch)
    if way == "opencl":
        low = lower(mod, Target(OPENCL_TARGET))
    elif way == "cuda":
        target = cuda_target(arch)
        low = lower(mod, target)
        low.source = cuda_to_opencl(low.source, int(target.attrs["max_shared_memory_per_block"]))
        check_dyn_shared(low.launches, arch)
    else:
        raise ValueError(f"way must be one of {WAYS}, got {way!r}")
    low.source = poison_local(low.source)
    return low


def check_dyn_shared(launches: Sequence[Launch], arch: str) -> None:
    """CheckFailed where a launch asks for more dynamic shared memory than ``arch`` allows a
    block even with the opt-in attribute (a real launch would fail; PoCL has megabytes)."""
    limit = MAX_DYN_SHARED.get(arch[:5], 48 * 1024)  # other archs: the default without opt-in
    for ln in launches:
        if isinstance(ln.dyn_shared, int) and ln.dyn_shared > limit:
            raise CheckFailed(f"{ln.kernel}: {ln.dyn_shared} bytes of dynamic shared memory, over {arch}'s "
                              f"{limit}-byte per-block maximum")


def concrete(workload, sizes: Optional[Dict[str, int]]):
    """The static workload of generic ``workload`` at ``sizes`` (every symbolic value given)."""
    from .workload import Workload

    if workload.kind == "static":
        if sizes:
            raise ValueError(f"sizes given for static workload {workload}")
        return workload
    params = {k: sizes.get(k, v) if v is None else v for k, v in workload.p.items()} if sizes else workload.p
    missing = [k for k, v in params.items() if v is None]
    if missing:
        raise ValueError(f"generic workload {workload} needs sizes for {missing}")
    return Workload.make(workload.op, workload.kernel, params, workload.dtype)


def check(workload, way: str, mod=None, *, arch: str = "sm_90", seed: int = 0,
          mutate: Optional[Callable[[Lowered], None]] = None, sizes: Optional[Dict[str, int]] = None,
          lowered: Optional[Lowered] = None) -> float:
    """Run ``workload``'s CUDA schedule (or ``mod``) one way on PoCL; CheckFailed unless the
    guards, inputs and every output element are right. Returns the relative error.
    ``mutate`` edits the lowered kernels first (the negative controls). A generic workload runs
    at ``sizes`` (its symbolic values); ``lowered`` reuses one :func:`prepare` for several sizes."""
    if workload.dtype not in DTYPES and not (workload.dtype in HALF_DTYPES and way == "cuda"):
        raise EmulationError(f"{workload.dtype}: PoCL runs float32 and float64, and half types the 'cuda' way")
    static = concrete(workload, sizes)
    low = lowered if lowered is not None else prepare(workload, way, mod, arch)
    if workload.kind == "generic":
        low = resolve(low, {k: v for k, v in static.p.items() if workload.p[k] is None})
    if mutate is not None:
        mutate(low)
    workload = static
    inputs, names, shape, dtype = make_inputs(workload, seed)
    got = to_float64(execute(low, inputs, names, shape, dtype), dtype)
    nan = int(np.isnan(got).sum())
    if nan:
        first = np.argwhere(np.isnan(got))[0].tolist()
        raise CheckFailed(f"{nan} of {got.size} output elements are NaN (unwritten, or an out-of-bounds read "
                          f"reached them), first at {first}")
    want = reference(workload, inputs)
    err = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-30))
    tol = TF32_TOLERANCE if "tvm_mma_m16n8k8_tf32(" in low.source else TOLERANCE[workload.dtype]
    if not err <= tol:
        worst = np.unravel_index(np.abs(got - want).argmax(), got.shape)
        raise CheckFailed(f"relative error {err:.3e} > {tol:.0e}; worst at "
                          f"{list(map(int, worst))}: got {got[worst]!r}, want {want[worst]!r}")
    return err


def check_sizes(workload, way: str, sizes: Sequence[Dict[str, int]], *, arch: str = "sm_90") -> List[float]:
    """:func:`check` of a generic ``workload`` at each of ``sizes`` from one lowering (what one
    shape-generic build must survive); the relative error at each."""
    low = prepare(workload, way, arch=arch)
    return [check(workload, way, arch=arch, sizes=s, lowered=low) for s in sizes]
