"""Reference results for the kernel tests, composed from the numerics golden models.

Each function follows the op's definition in docs/ops.md / docs/isa.md step by step with the
``unified_engine.numerics`` models (never the ISA simulator's code), so a kernel that tiles,
splits or reorders anything wrongly gives different bits.  The float64 helpers give the
independent tolerance checks.
"""

from __future__ import annotations

import numpy as np

from unified_engine.numerics import activation as act
from unified_engine.numerics import fp, reduce, transcendental

F32 = np.float32
SLOTS = 4  # isa.VECTOR_REDUCE_SLOTS, restated from docs/isa.md


def b16(x) -> np.ndarray:
    """float32 data → bf16 bits (the engine's rounding)."""
    return fp.f32_to_bf16(np.asarray(x, np.float32))


def w32(bits) -> np.ndarray:
    """bf16 bits → float32."""
    return fp.bf16_to_f32(np.asarray(bits, np.uint16))


def epilogue(s: np.ndarray, bias=None, activation=None, scale=None) -> np.ndarray:
    """``act(s·scale + bias)`` in the MATMUL epilogue's order (fp32)."""
    y = fp.f32_mul(s, F32(1.0 if scale is None else scale))
    if bias is not None:
        y = fp.f32_add(y, w32(bias))
    if activation is None:
        return y
    if activation == "relu":
        return act.clamp(y, F32(0.0), F32(np.inf))
    params = act.ACTIVATIONS[activation] if isinstance(activation, str) else \
        tuple(F32(v) for v in activation)
    return act.unified_activation(y, *params)


def gemm(a_bits, b_bits, bias=None, activation=None, scale=None) -> np.ndarray:
    """bf16 bits of ``act(A·B·scale + bias)``; ``bias`` bits are [N] or [M, N]."""
    s = fp.pe_accumulate(a_bits, b_bits)
    if bias is not None and np.ndim(bias) == 1:
        bias = np.asarray(bias)[None, :]
    return fp.f32_to_bf16(epilogue(s, bias, activation, scale))


def row_sum(x: np.ndarray, lanes: int, guard_bits: int) -> np.ndarray:
    """RSUM of docs/isa.md: multi_add per beat of ``lanes``, beats into 4 interleaved fp32
    slots with f32_add, then one multi_add of the used slots."""
    slots: list = [None] * SLOTS
    for j in range(-(-x.shape[1] // lanes)):
        s = reduce.multi_add(x[:, j * lanes:(j + 1) * lanes], axis=1, guard_bits=guard_bits)
        q = j % SLOTS
        slots[q] = s if slots[q] is None else fp.f32_add(slots[q], s)
    parts = [s for s in slots if s is not None]
    return reduce.multi_add(np.stack(parts, axis=1), axis=1, guard_bits=guard_bits)


def softmax_rows(x_bits, config) -> np.ndarray:
    """Row softmax of bf16 bits as the kernels compute it: e = exp(x − max) (fp32),
    r = 1/Σe, y = bf16(e·r)."""
    x = w32(x_bits)
    m = reduce.max_reduce(x, axis=1)
    e = transcendental.exp(fp.f32_sub(x, m[:, None]))
    s = row_sum(e, config.lanes, config.reduce_guard_bits)
    r = transcendental.reciprocal(s)
    return fp.f32_to_bf16(fp.f32_mul(e, r[:, None]))


def softmax64(x: np.ndarray) -> np.ndarray:
    """float64 row softmax."""
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def matmul_bound(a32: np.ndarray, b32: np.ndarray) -> np.ndarray:
    """docs/numerics.md §3: |ŝ − s| ≤ (K−1)·2⁻²⁴·Σ|aₖbₖ| before the bf16 rounding."""
    k = a32.shape[1]
    return max(k - 1, 0) * 2.0**-24 * (np.abs(a32.astype(np.float64)) @
                                       np.abs(b32.astype(np.float64)))


def assert_bits_equal(got_bits, want_bits, what: str = "") -> None:
    """Bit-for-bit equality with a readable first mismatch."""
    got = np.asarray(got_bits)
    want = np.asarray(want_bits)
    assert got.shape == want.shape, f"{what}: shape {got.shape} ≠ {want.shape}"
    bad = np.argwhere(got != want)
    if bad.size:
        i = tuple(bad[0])
        raise AssertionError(f"{what}: {len(bad)} of {got.size} differ; first at {i}: got "
                             f"{int(got[i]):#x}, want {int(want[i]):#x}")


def small_config():
    """``sim_small`` (2×2 array, P = 2, 4 lanes, 64-bit AXI, 16 KiB scratchpad) with the 16
    address registers the kernel library needs: tiny tiles, so small shapes exercise many
    M/N blocks and K chunks."""
    import dataclasses

    from unified_engine import EngineConfig

    return dataclasses.replace(EngineConfig.preset("sim_small"), address_registers=16)


def _per_row_norm(x, inv_n, eps_bits):
    """s·(1/N) + eps, then rsqrt (the per-row fp32 scalar chain of the norms)."""
    ms = fp.f32_mul(x, F32(inv_n))
    ms = fp.f32_add(ms, fp.f32_from_bits(np.uint32(eps_bits)))
    return transcendental.rsqrt(ms)


def rmsnorm_rows(x_bits, gamma_bits, eps, config) -> np.ndarray:
    """RMSNorm as docs/ops.md defines it: ss = RSUMSQ x, r = rsqrt(ss·RNE(1/N) + eps),
    y = bf16((x·r)·γ) with the product x·r kept in fp32."""
    x = w32(x_bits)
    n = x.shape[1]
    ss = row_sum(fp.f32_mul(x, x), config.lanes, config.reduce_guard_bits)
    r = _per_row_norm(ss, F32(1.0 / n), fp.f32_to_bits(F32(eps)))
    t = fp.f32_mul(x, r[:, None])
    if gamma_bits is not None:
        t = fp.f32_mul(t, w32(gamma_bits)[None, :])
    return fp.f32_to_bf16(t)


def layernorm_rows(x_bits, gamma_bits, beta_bits, eps, config) -> np.ndarray:
    """LayerNorm as docs/ops.md defines it (two-pass mean / biased variance in fp32)."""
    x = w32(x_bits)
    n = x.shape[1]
    inv_n = F32(1.0 / n)
    mean = fp.f32_mul(row_sum(x, config.lanes, config.reduce_guard_bits), inv_n)
    xc = fp.f32_sub(x, mean[:, None])
    var = row_sum(fp.f32_mul(xc, xc), config.lanes, config.reduce_guard_bits)
    r = _per_row_norm(var, inv_n, fp.f32_to_bits(F32(eps)))
    t = fp.f32_mul(xc, r[:, None])
    if gamma_bits is not None:
        t = fp.f32_mul(t, w32(gamma_bits)[None, :])
    if beta_bits is not None:
        t = fp.f32_add(t, w32(beta_bits)[None, :])
    return fp.f32_to_bf16(t)


NEG_FLT_MAX = F32(-3.4028234663852886e38)


def flash_attention(q_bits, k_bits, v_bits, mask_bits, scale, mb, nbk, config) -> np.ndarray:
    """The online-softmax algorithm of docs/ops.md for one stacked query matrix ``[Mq, D]``
    and one KV head ``[Sk, D]``, blocks of ``mb`` queries × ``nbk`` keys (bf16 bits out).

    Per key block: S = (Q·Kᵀ)·scale (+ mask) in fp32; m' = max(m, rowmax S); α = exp(m − m');
    P = bf16(exp(S − m')); l = l·α + Σ P; O = O·α + P·V; at the end bf16(O·(1/l)).
    """
    mq = q_bits.shape[0]
    sk = k_bits.shape[0]
    out = np.empty((mq, v_bits.shape[1]), np.uint16)
    for r0 in range(0, mq, mb):
        q = q_bits[r0:r0 + mb]
        rows = q.shape[0]
        m = np.full(rows, NEG_FLT_MAX, F32)
        l_sum = np.zeros(rows, F32)
        o = np.zeros((rows, v_bits.shape[1]), F32)
        for c0 in range(0, sk, nbk):
            keys = min(nbk, sk - c0)
            s = fp.f32_mul(fp.pe_accumulate(q, k_bits[c0:c0 + keys].T), F32(scale))
            if mask_bits is not None:
                s = fp.f32_add(s, w32(mask_bits[r0:r0 + rows, c0:c0 + keys]))
            m_new = fp.f32_max(m, reduce.max_reduce(s, axis=1))
            alpha = transcendental.exp(fp.f32_sub(m, m_new))
            p = fp.f32_to_bf16(transcendental.exp(fp.f32_sub(s, m_new[:, None])))
            l_sum = fp.f32_add(fp.f32_mul(l_sum, alpha),
                               row_sum(w32(p), config.lanes, config.reduce_guard_bits))
            o = fp.f32_add(fp.f32_mul(o, alpha[:, None]),
                           fp.pe_accumulate(p, v_bits[c0:c0 + keys]))
            m = m_new
        r = transcendental.reciprocal(l_sum)
        out[r0:r0 + rows] = fp.f32_to_bf16(fp.f32_mul(o, r[:, None]))
    return out
