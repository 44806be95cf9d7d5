"""Tensor-parallel ops on a :class:`~.multi.MultiEngine`: one op split over E engines.

::

    multi = Engine.open("model", engines=4)
    c, run = shard_matmul(multi, a, b, split="m")      # run.cycles: the SoC's cycles

Strategies (E engines, shares as even as the tiles allow; an engine with an empty share only
takes part in the barrier)

``shard_matmul(split="m")``
    Rows of A (and C) in shares of whole array tiles; B is read by every engine.  Bit-exact
    with ``Engine.matmul``: each output is the same sequential fp32 sum.
``shard_matmul(split="n")``
    Columns of B (and C) in shares of whole column tiles; A is read by every engine.
    Bit-exact.
``shard_matmul(split="k")``
    K in E shares: engine i computes the fp32 partial ``A[:, Kᵢ] · B[Kᵢ, :]`` into DRAM,
    a barrier, then each engine reduce-adds a share of the rows of the E partials in fp32
    (``((P₀ + P₁) + P₂) + …``) and rounds to bf16 — all in one program per engine, no host
    round-trip.  The summation order differs from the single engine's, so results differ;
    :func:`ksplit_bound` is the documented bound.
``shard_rowwise`` (``rmsnorm``, ``layernorm``, ``softmax``)
    Rows in E shares; bit-exact (rows are independent).
``shard_attention``
    KV heads (with their query-head groups) in E shares; bit-exact.

How the programs are made: every op but the K split runs the kernel library's own host code
(``Engine.matmul``, ``Engine.rmsnorm``, ``Engine.attention``, …) on each engine's share with
its ``run`` *captured* (:func:`captured`): the kernels and GPR arguments the op would run are
recorded instead, each gets a closing barrier (:func:`~.multi.link`), and all engines run
together (:meth:`~.multi.MultiEngine.run_all`) — so no kernel is duplicated here.  An op that
runs several kernels on one engine (attention: K panel packing, then attention) runs them in
as many rounds, one ``run_all`` each: linking two kernels into one program is not safe in
general, since a kernel may leave dependency tokens that the next would pop.  Operands are
uploaded as device tensors first, so the ops return device results, read back after the run;
the temporaries an op frees at its end are not reallocated before the run (nothing else
allocates on that engine in between).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import ml_dtypes
import numpy as np

from unified_engine.asm import Program
from unified_engine.firmware.common import ceil_div
from unified_engine.firmware.gemm import GemmSpec, build_gemm
from unified_engine.firmware.layout import epi_spec
from unified_engine.numerics import fp

from .engine import Engine, RunResult
from .multi import BARRIER_TIMEOUT, MultiEngine, barrier, link, split
from .ops import choose_tiling_cached
from .ops_io import as_operand
from .tensor import DeviceTensor
from .weights import pack_bf16

__all__ = ["ShardRun", "captured", "ksplit_bound", "shard_attention", "shard_matmul",
           "shard_matmul_device", "shard_rowwise"]

_BF16 = np.dtype(ml_dtypes.bfloat16)
_SPLITS = ("m", "n", "k")
_ROWWISE = ("rmsnorm", "layernorm", "softmax")


@dataclasses.dataclass(frozen=True)
class ShardRun:
    """What a sharded op did: ``shares[i]`` = (start, size) of engine i's share of the split
    dimension; ``rounds``: per :meth:`~.multi.MultiEngine.run_all` (most ops need one; an op
    whose single-engine form runs several kernels runs them in as many rounds), the
    :class:`RunResult` of each engine."""

    op: str
    split: str
    shares: tuple[tuple[int, int], ...]
    rounds: tuple[tuple[RunResult, ...], ...]

    @property
    def cycles(self) -> int:
        """SoC cycles: per round the slowest engine's (they start together), summed."""
        return sum(max(r.cycles for r in rnd) for rnd in self.rounds)

    @property
    def engines(self) -> int:
        return len(self.rounds[0])


@contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[bytes, dict[int, int]]]]:
    """Inside the block, ``engine.run(program, args=…)`` records ``(image, args)`` in the
    yielded list and returns an empty :class:`RunResult` instead of running."""
    calls: list[tuple[bytes, dict[int, int]]] = []

    def record(program: Any, *, args: dict[int, int] | None = None, **_: Any) -> RunResult:
        blob = program.encode() if isinstance(program, Program) else bytes(program)
        calls.append((blob, dict(args or {})))
        return RunResult(0, 0, 0, {}, [], 0)

    engine.run = record  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        del engine.run


def _run(multi: MultiEngine, op: str, how: str, shares: list[tuple[int, int]],
         calls: list[list[tuple[bytes, dict[int, int]]]], timeout: float | None,
         trace: bool | str = False) -> ShardRun:
    """Run the captured kernels: round r runs each engine's r-th kernel, closed by a barrier
    (an engine without one only takes part in the barrier)."""
    cfg, e = multi.config, len(multi)
    rounds = []
    for r in range(max(1, *(len(c) for c in calls))):
        programs, args = [], []
        for i, c in enumerate(calls):
            tail = barrier(cfg, i, e, 0, BARRIER_TIMEOUT)
            tail.halt()
            if r < len(c):
                blob, a = c[r]
                programs.append(link(cfg, blob, tail))
                args.append(a)
            else:
                programs.append(tail)
                args.append(None)
        rounds.append(tuple(multi.run_all(programs, args=args, timeout=timeout,
                                          trace=trace)))
    return ShardRun(op, how, tuple(shares), tuple(rounds))


def _bits(x: Any, name: str) -> tuple[np.ndarray, Any]:
    op = as_operand(x, name)
    bits = op.bits if op.bits is not None else op.device.bits()
    return bits, op


def _out(bits: np.ndarray, like: Any) -> Any:
    """bf16 bits in the kind of the first argument (numpy float32 / bf16; torch as numpy)."""
    if like.kind == "numpy" and like.dtype == _BF16:
        return bits.view(_BF16)
    return fp.bf16_to_f32(bits)


def _upload(engine: Engine, bits: np.ndarray) -> DeviceTensor:
    return engine.tensor(np.ascontiguousarray(bits).view(_BF16), dtype="bf16")


def _per_engine(multi: MultiEngine, shares: list[tuple[int, int]],
                op: Callable[[Engine, int, int], DeviceTensor | None],
                ) -> tuple[list[list], list[DeviceTensor | None]]:
    """Capture ``op(engine, start, size)`` on every engine with a non-empty share."""
    calls, outs = [], []
    for eng, (start, size) in zip(multi, shares, strict=True):
        with captured(eng) as c:
            outs.append(op(eng, start, size) if size else None)
        calls.append(c)
    return calls, outs


def _read(outs: list[DeviceTensor | None], temps: list[DeviceTensor]) -> list[np.ndarray]:
    try:
        return [o.bits() for o in outs if o is not None]
    finally:
        for t in [*outs, *temps]:
            if t is not None:
                t.free()


# ----- matmul ------------------------------------------------------------------------------


def shard_matmul(multi: MultiEngine, a: Any, b: Any, split_dim: str = "m", *,
                 timeout: float | None = None, trace: bool | str = False
                 ) -> tuple[Any, ShardRun]:
    """``a @ b`` (bf16 in, fp32 accumulation, bf16 out) on all engines of ``multi``.

    ``split_dim``: ``"m"``, ``"n"`` or ``"k"`` (module doc).  ``a`` [M, K], ``b`` [K, N] as
    for ``Engine.matmul`` (numpy float32 / bf16 or device tensors); returns ``(c, run)`` with
    ``c`` numpy (float32, or bf16 if ``a`` is bf16).  ``timeout`` (host seconds) and
    ``trace`` go to :meth:`~.multi.MultiEngine.run_all`.
    """
    if not isinstance(multi, MultiEngine):
        raise TypeError(f"shard_matmul needs a MultiEngine, not {type(multi).__name__}")
    if split_dim not in _SPLITS:
        raise ValueError(f"split_dim={split_dim!r}; allowed: {', '.join(_SPLITS)}")
    a_bits, ao = _bits(a, "a")
    b_bits, _ = _bits(b, "b")
    if a_bits.ndim != 2 or b_bits.ndim != 2 or 0 in a_bits.shape or 0 in b_bits.shape:
        raise ValueError(f"a must be [M, K] and b [K, N] with non-empty dimensions, got "
                         f"{a_bits.shape} and {b_bits.shape}")
    (m, k), (kb, n) = a_bits.shape, b_bits.shape
    if k != kb:
        raise ValueError(f"matmul shapes do not match: a is {a_bits.shape}, b is "
                         f"{b_bits.shape} (a's K={k} ≠ b's K={kb})")
    cfg, e = multi.config, len(multi)
    if split_dim == "k":
        return _matmul_k(multi, a_bits, b_bits, ao, timeout, trace)
    temps: list[DeviceTensor] = []
    if split_dim == "m":
        shares = split(m, e, cfg.tile_rows)
        b_host = b_bits.view(_BF16)

        def op(eng: Engine, start: int, size: int) -> DeviceTensor:
            a_i = _upload(eng, a_bits[start:start + size])
            temps.append(a_i)
            return eng.matmul(a_i, b_host)
    else:
        shares = split(n, e, cfg.cols)
        a_dev = _upload(multi[0], a_bits)
        temps.append(a_dev)

        def op(eng: Engine, start: int, size: int) -> DeviceTensor:
            return eng.matmul(a_dev, np.ascontiguousarray(b_bits[:, start:start + size])
                              .view(_BF16))
    try:
        calls, outs = _per_engine(multi, shares, op)
        run = _run(multi, "matmul", split_dim, shares, calls, timeout, trace)
    except BaseException:
        _read([], temps)
        raise
    parts = _read(outs, temps)
    c = np.concatenate(parts, axis=0 if split_dim == "m" else 1)
    return _out(c, ao), run


def shard_matmul_device(multi: MultiEngine, a: DeviceTensor, b: DeviceTensor,
                        bias: DeviceTensor | None = None, activation: Any = None,
                        scale: float | None = None, *, timeout: float | None = None
                        ) -> tuple[DeviceTensor, ShardRun]:
    """``act(a @ b · scale + bias)`` for device tensors, rows of ``a`` split over the
    engines, every engine writing its rows of one new bf16 result tensor (in engine 0's
    slice) — nothing goes through the host, so a model can keep its activations on the
    device.  ``b`` is read row-major (``Engine.matmul``'s ``kn`` mode for a device B),
    ``bias`` is ``[N]`` or ``[M, N]``.  Bit-exact with ``Engine.matmul`` (the same kernel
    and sums per row)."""
    if not isinstance(multi, MultiEngine):
        raise TypeError(f"shard_matmul_device needs a MultiEngine, not {type(multi).__name__}")
    for name, t in (("a", a), ("b", b), ("bias", bias)):
        if t is None and name == "bias":
            continue
        if not isinstance(t, DeviceTensor) or t.dtype != "bf16":
            raise TypeError(f"{name} must be a bf16 DeviceTensor, not {type(t).__name__}")
    if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[0] or \
            0 in a.shape or 0 in b.shape:
        raise ValueError(f"a must be [M, K] and b [K, N] with non-empty dimensions, got "
                         f"{a.shape} and {b.shape}")
    (m, k), n = a.shape, b.shape[1]
    bias_mode = "none"
    if bias is not None:
        if tuple(bias.shape) in ((n,), (1, n)):
            bias_mode = "col"
        elif tuple(bias.shape) == (m, n):
            bias_mode = "full"
        else:
            raise ValueError(f"bias must be [N] = [{n}] or [M, N] = [{m}, {n}], got "
                             f"{bias.shape}")
    cfg, e = multi.config, len(multi)
    epi = epi_spec(activation, scale)
    shares = split(m, e, cfg.tile_rows)
    out = multi.empty((m, n), "bf16")
    calls = []
    try:
        for eng, (m0, mi) in zip(multi, shares, strict=True):
            if not mi:
                calls.append([])
                continue
            # the tiling the single engine picks for all M rows (its M-block size is the
            # better choice for a share too; any tiling serves any runtime M)
            tiling = choose_tiling_cached(eng, eng._m_bucket(m), k, n, b_fmt="bf16",
                                          bias=bias_mode, softmax=False, b_mode="kn")
            spec = GemmSpec(k=k, n=n, b_mode="kn", b_fmt="bf16", bias=bias_mode, epi=epi,
                            out_fmt="bf16", softmax=False, tiling=tiling)
            kernel = eng._kernel("gemm", spec, lambda spec=spec: build_gemm(cfg, spec))
            args = {"m": mi, "a": a.addr + m0 * k * 2, "b": b.addr, "c": out.addr + m0 * n * 2}
            if bias_mode != "none":
                args["bias"] = bias.addr + (m0 * n * 2 if bias_mode == "full" else 0)
            calls.append([(kernel.blob, kernel.gprs(**args))])
        run = _run(multi, "matmul", "m", shares, calls, timeout)
    except BaseException:
        out.free()
        raise
    return out, run


def _matmul_k(multi: MultiEngine, a_bits: np.ndarray, b_bits: np.ndarray, ao: Any,
              timeout: float | None, trace: bool | str) -> tuple[Any, ShardRun]:
    """K-split with the reduce-add stage (module doc)."""
    cfg, e = multi.config, len(multi)
    (m, k), n = a_bits.shape, b_bits.shape[1]
    shares = split(k, e, max(1, cfg.axi_bytes // 2))
    rows = split(m, e)
    temps: list[DeviceTensor] = []
    programs, args = [], []
    try:
        out = multi.empty((m, n), "bf16")
        temps.append(out)
        partials = []
        for eng, (_, kk) in zip(multi, shares, strict=True):
            partials.append(eng.empty((m, n), "fp32") if kk else None)
            temps.append(partials[-1])
        live = [p for p in partials if p is not None]
        for i, (eng, (k0, kk)) in enumerate(zip(multi, shares, strict=True)):
            parts: list[bytes] = []
            a_arg: dict[int, int] = {}
            if kk:
                a_i = _upload(eng, a_bits[:, k0:k0 + kk])
                panel = pack_bf16(eng, np.ascontiguousarray(b_bits[k0:k0 + kk].T),
                                  region="activations")
                temps += [a_i, panel.codes]
                tiling = choose_tiling_cached(eng, eng._m_bucket(m), kk, n, b_fmt="bf16",
                                              bias="none", softmax=False, b_mode="panel",
                                              out_fmt="fp32")
                spec = GemmSpec(k=kk, n=n, b_mode="panel", b_fmt="bf16", bias="none",
                                epi=epi_spec(None, None), out_fmt="fp32", softmax=False,
                                tiling=tiling)
                kernel = eng._kernel("gemm", spec, lambda spec=spec: build_gemm(cfg, spec))
                a_arg = kernel.gprs(m=m, a=a_i.addr, b=panel.codes.addr,
                                    c=partials[i].addr)
                parts.append(kernel.blob)
            first = barrier(cfg, i, e, 0, BARRIER_TIMEOUT)
            r0, rr = rows[i]
            reduce_ = _reduce_program(cfg, [p.addr + r0 * n * 4 for p in live],
                                      out.addr + r0 * n * 2, rr * n)
            tail = barrier(cfg, i, e, 1, BARRIER_TIMEOUT)
            tail.halt()
            body = first.encode() + reduce_.encode()
            image = link(cfg, *parts, body + tail.encode()) if parts else \
                body + tail.encode()
            programs.append(image)
            args.append(a_arg)
        runs = multi.run_all(programs, args=args, timeout=timeout, trace=trace)
        c = out.bits()
    finally:
        _read([], temps)
    return _out(c, ao), ShardRun("matmul", "k", tuple(shares), (tuple(runs),))


def _reduce_program(cfg: Any, partials: list[int], out: int, count: int) -> Program:
    """``out[0:count] = bf16(((p₀ + p₁) + …))`` over fp32 vectors at ``partials`` — chunks
    through the scratchpad, each step fenced (no tokens: the preceding kernel may leave some
    in its channels)."""
    b = cfg.axi_bytes
    chunk = max(cfg.lanes, (cfg.scratchpad_bytes // 10) // b * b // 4)
    x_rows = ceil_div(chunk * 4, b)
    x, y, z = 0, x_rows, 2 * x_rows
    p = Program(cfg)
    for off in range(0, count, chunk):
        n = min(chunk, count - off)
        p.load(dram=partials[0] + off * 4, sram=x, row_bytes=n * 4)
        p.fence()
        for addr in partials[1:]:
            p.load(dram=addr + off * 4, sram=y, row_bytes=n * 4)
            p.fence()
            p.vector("add", dst=x, src0=x, src1=y, length=n, src0_fmt="fp32",
                     src1_fmt="fp32", dst_fmt="fp32")
            p.fence()
        p.vector("copy", dst=z, src0=x, length=n, src0_fmt="fp32", dst_fmt="bf16")
        p.fence()
        p.store(dram=out + off * 2, sram=z, row_bytes=n * 2)
        p.fence()
    return p


def ksplit_bound(a_bits: np.ndarray, b_bits: np.ndarray, c1_bits: np.ndarray,
                 c2_bits: np.ndarray) -> np.ndarray:
    """Element-wise bound on ``|c1 − c2|`` for two bf16 results of ``a @ b`` computed with
    fp32 RNE additions of the exact products in two different orders (each rounded once to
    bf16 at the end; the K-split adds a double rounding fp32 → bf16 after its last add).

    Derivation (Higham, *Accuracy and Stability*, §4.2): any order of summing the K exact
    products pᵢ in fp32 gives ŝ with ``|ŝ − s| ≤ γ_{K−1} Σ|pᵢ|`` (γₙ = n·u / (1 − n·u),
    u = 2⁻²⁴; the reduce tree of depth (K/E − 1) + (E − 1) ≤ K − 1 is covered), plus at most
    ``K · 2⁻¹²⁶`` for results flushed to zero (FTZ).  Rounding ŝ to bf16 moves it by at most
    half an ulp, ≤ 2⁻⁸·|ŝ| ≤ 2⁻⁸/(1 − 2⁻⁸)·|bf16(ŝ)|.  So
    ``|c1 − c2| ≤ 2·(γ_{K−1} Σ|pᵢ| + K·2⁻¹²⁶) + 2⁻⁸/(1 − 2⁻⁸)·(|c1| + |c2|)``.
    ``Σ|pᵢ|`` is computed exactly enough in float64 from the data.
    """
    a = fp.bf16_to_f32(a_bits).astype(np.float64)
    b = fp.bf16_to_f32(b_bits).astype(np.float64)
    k = a.shape[1]
    u = 2.0 ** -24
    gamma = (k - 1) * u / (1 - (k - 1) * u)
    s = np.abs(a) @ np.abs(b)
    c1 = np.abs(fp.bf16_to_f32(c1_bits).astype(np.float64))
    c2 = np.abs(fp.bf16_to_f32(c2_bits).astype(np.float64))
    half_ulp = 2.0 ** -8 / (1 - 2.0 ** -8)
    return 2 * (gamma * s * (1 + 1e-12) + k * 2.0 ** -126) + half_ulp * (c1 + c2)


# ----- row-wise ----------------------------------------------------------------------------


def shard_rowwise(multi: MultiEngine, op: str, x: Any, *args: Any, timeout: float | None = None,
                  **kwargs: Any) -> tuple[Any, ShardRun]:
    """``Engine.<op>(x, *args, **kwargs)`` with the rows of ``x[..., N]`` split over the
    engines; ``op``: ``"rmsnorm"``, ``"layernorm"`` or ``"softmax"``.  Returns ``(y, run)``
    with ``y`` numpy shaped like ``x``."""
    if not isinstance(multi, MultiEngine):
        raise TypeError(f"shard_rowwise needs a MultiEngine, not {type(multi).__name__}")
    if op not in _ROWWISE:
        raise ValueError(f"op={op!r}; allowed: {', '.join(_ROWWISE)}")
    x_bits, xo = _bits(x, "x")
    if x_bits.ndim < 1 or 0 in x_bits.shape:
        raise ValueError(f"x must be [..., N] with non-empty dimensions, got {x_bits.shape}")
    shape = x_bits.shape
    n = shape[-1]
    flat = x_bits.reshape(-1, n)
    shares = split(flat.shape[0], len(multi))
    temps: list[DeviceTensor] = []

    def one(eng: Engine, start: int, size: int) -> DeviceTensor:
        x_i = _upload(eng, flat[start:start + size])
        temps.append(x_i)
        return getattr(eng, op)(x_i, *args, **kwargs)
    try:
        calls, outs = _per_engine(multi, shares, one)
        run = _run(multi, op, "rows", shares, calls, timeout)
    except BaseException:
        _read([], temps)
        raise
    y = np.concatenate(_read(outs, temps), axis=0).reshape(shape)
    return _out(y, xo), run


# ----- attention ---------------------------------------------------------------------------


def shard_attention(multi: MultiEngine, q: Any, k: Any, v: Any, *,
                    timeout: float | None = None, **kwargs: Any) -> tuple[Any, ShardRun]:
    """``Engine.attention(q, k, v, **kwargs)`` with the KV heads (and their query-head
    groups) split over the engines.  ``q`` [B, Hq, Sq, D] (or [Hq, Sq, D]), ``k``, ``v``
    [B, Hkv, Sk, D] (or [Hkv, Sk, D]); returns ``(o, run)`` with ``o`` numpy shaped like
    ``q``."""
    if not isinstance(multi, MultiEngine):
        raise TypeError(f"shard_attention needs a MultiEngine, not {type(multi).__name__}")
    q_bits, qo = _bits(q, "q")
    k_bits, _ = _bits(k, "k")
    v_bits, _ = _bits(v, "v")
    if q_bits.ndim not in (3, 4) or k_bits.ndim != q_bits.ndim or v_bits.shape != k_bits.shape:
        raise ValueError(f"q must be [B, Hq, Sq, D] or [Hq, Sq, D] and k, v alike with the same "
                         f"shape; got {q_bits.shape}, {k_bits.shape}, {v_bits.shape}")
    q4 = q_bits.reshape((1,) * (4 - q_bits.ndim) + q_bits.shape)
    k4 = k_bits.reshape((1,) * (4 - k_bits.ndim) + k_bits.shape)
    v4 = v_bits.reshape(k4.shape)
    hq, hk = q4.shape[1], k4.shape[1]
    if hk == 0 or hq % hk:
        raise ValueError(f"query heads ({hq}) must be a multiple of KV heads ({hk})")
    g = hq // hk
    shares = split(hk, len(multi))
    temps: list[DeviceTensor] = []

    def one(eng: Engine, start: int, size: int) -> DeviceTensor:
        qi = _upload(eng, q4[:, start * g:(start + size) * g])
        ki = _upload(eng, k4[:, start:start + size])
        vi = _upload(eng, v4[:, start:start + size])
        temps.extend((qi, ki, vi))
        return eng.attention(qi, ki, vi, **kwargs)
    try:
        calls, outs = _per_engine(multi, shares, one)
        run = _run(multi, "attention", "heads", shares, calls, timeout)
    except BaseException:
        _read([], temps)
        raise
    o = np.concatenate(_read(outs, temps), axis=1).reshape(q_bits.shape)
    return _out(o, qo), run
