"""The op API: ``Engine.matmul``, ``Engine.linear``, norms, softmax, attention, …

:class:`EngineOps` is mixed into :class:`~unified_engine.host.Engine`.  Each op validates its
arguments on the host (``ValueError`` for shapes and values, ``TypeError`` for types and
dtypes), converts operands (``host.ops_io``), fetches a compiled kernel from the program cache
(``unified_engine.firmware``; runtime sizes travel in GPRs), runs it and converts the result
back.  Temporary device buffers are freed whatever happens, so the engine stays usable after
any error.  ``Engine.last_run`` describes the most recent op run (:class:`OpRun`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from unified_engine import firmware as fw
from unified_engine.firmware.common import Kernel, KernelError, ceil_div
from unified_engine.firmware.gemm import GemmSpec, build_gemm, choose_tiling
from unified_engine.firmware.layout import epi_spec
from unified_engine.firmware.transpose import build_transpose, transpose_spec

from .errors import EngineError
from .ops_attention import AttentionOps
from .ops_io import Operand, as_operand, to_kind, upload
from .ops_misc import MiscOps
from .ops_rowwise import RowwiseOps
from .tensor import DeviceTensor
from .weights import PackedWeight, pack_bf16, pack_quantized

__all__ = ["EngineOps", "OpRun", "UnsupportedOp"]

_QUANT = ("int4", "fp4", "if4", "nvfp4", "int8", "fp8", "if8")
_NEG_INF_BF16 = 0xFF80


class UnsupportedOp(EngineError, ValueError):
    """The op cannot run on this engine configuration (e.g. a row that does not fit on chip)."""


@dataclasses.dataclass(frozen=True)
class OpRun:
    """What the last op did on the device.

    Attributes
    ----------
    op : str
        The op's name.
    cycles : int
        Device cycles of all its runs (program start to HALT, DMA included).
    ideal_cycles : float
        The bound the op is measured against: MACs / (R·C) for array ops, otherwise the
        minimum DRAM traffic divided by the DRAM bytes per cycle.
    utilization : float
        ``ideal_cycles / cycles``.
    runs : tuple
        The :class:`~unified_engine.host.RunResult` of each program run.
    kernels : tuple[str, ...]
        Names of the kernels that ran.
    """

    op: str
    cycles: int
    ideal_cycles: float
    utilization: float
    runs: tuple
    kernels: tuple[str, ...]

    @property
    def counters(self) -> dict[str, int]:
        """Per-queue busy/stall counters summed over the runs."""
        out: dict[str, int] = {}
        for r in self.runs:
            for key, value in r.counters.items():
                out[key] = out.get(key, 0) + value
        return out


def _dims(op: Operand, ndim: int, what: str) -> tuple[int, ...]:
    if op.ndim != ndim:
        raise ValueError(f"{op.name} must be {ndim}-D ({what}), got shape {op.shape}")
    if any(d == 0 for d in op.shape):
        raise ValueError(f"{op.name} has an empty dimension {op.shape}; sizes must be ≥ 1")
    return op.shape


class EngineOps(RowwiseOps, MiscOps, AttentionOps):
    """Op methods of :class:`~unified_engine.host.Engine` (mixin; see the module docstring)."""

    # provided by Engine
    config: Any
    tensor: Callable
    empty: Callable
    run: Callable

    # ----- infrastructure -----------------------------------------------------------------

    @property
    def kernel_cache(self) -> fw.ProgramCache:
        """The engine's program cache (compiled kernels by op and static parameters)."""
        cache = self.__dict__.get("_kernel_cache")
        if cache is None:
            cache = self.__dict__["_kernel_cache"] = fw.ProgramCache()
        return cache

    @property
    def last_run(self) -> OpRun | None:
        """The :class:`OpRun` of the most recent op (``None`` before the first)."""
        return self.__dict__.get("_last_op")

    def _kernel(self, op: str, params: Any, build: Callable[[], Kernel]) -> Kernel:
        try:
            return self.kernel_cache.get(op, self.config, params, build)
        except KernelError as exc:
            raise UnsupportedOp(str(exc)) from None

    @contextmanager
    def _temps(self) -> Iterator[list]:
        """Collects temporary device buffers and frees them on exit (also on errors)."""
        temps: list = []
        try:
            yield temps
        finally:
            for t in reversed(temps):
                t.free()

    def _upload(self, op: Operand, temps: list, shape: tuple[int, ...] | None = None
                ) -> DeviceTensor:
        t = upload(self, op, shape)
        if op.device is None:
            temps.append(t)
        return t

    def _dram_bpc(self) -> float:
        timing = getattr(getattr(self.device, "machine", None), "timing", None)
        return timing.dram_bytes_per_cycle if timing is not None else float(self.config.axi_bytes)

    def _record(self, op: str, runs: list, kernels: list[str], ideal: float) -> None:
        cycles = sum(r.cycles for r in runs)
        self.__dict__["_last_op"] = OpRun(op, cycles, float(ideal),
                                          ideal / cycles if cycles else 0.0, tuple(runs),
                                          tuple(kernels))

    def _m_bucket(self, m: int) -> int:
        """Rows the tiling is chosen for: M rounded up to a power of two of array tiles, so
        one compiled program serves a whole range of sequence lengths."""
        tr = self.config.tile_rows
        tiles = ceil_div(m, tr)
        return tr * (1 << (tiles - 1).bit_length())

    # ----- weights --------------------------------------------------------------------------

    def pack_weight(self, w: Any) -> PackedWeight:
        """Upload a ``linear`` weight ``w[N, K]`` once, in the kernels' bf16 panel layout."""
        op = as_operand(w, "w")
        _dims(op, 2, "[N, K]")
        return pack_bf16(self, self._host_bits(op))

    def quantize(self, w: Any, fmt: str) -> PackedWeight:
        """Quantize ``w[N, K]`` to ``fmt`` and keep it on the device for ``linear``.

        ``fmt``: ``"int4"``, ``"fp4"``, ``"if4"``, ``"nvfp4"``, ``"int8"``, ``"fp8"``,
        ``"if8"`` (``numerics.quant``; blocks of ``config.quant_block`` along K, NVFP4 16).
        K must be a multiple of the block and the weights finite (``ValueError`` otherwise);
        the format must be built into the engine (``UnsupportedOp``).
        """
        if not isinstance(fmt, str) or fmt not in _QUANT:
            raise ValueError(f"unknown quantized format {fmt!r}; allowed: {', '.join(_QUANT)}")
        if fmt not in self.config.formats:
            raise UnsupportedOp(f"format {fmt!r} is not built into this engine (formats: "
                                f"{', '.join(self.config.formats)})")
        op = as_operand(w, "w")
        _dims(op, 2, "[N, K]")
        return pack_quantized(self, self._host_bits(op), fmt)

    def _host_bits(self, op: Operand) -> np.ndarray:
        return op.bits if op.bits is not None else op.device.bits()

    # ----- matmul / linear ---------------------------------------------------------------------

    def matmul(self, a: Any, b: Any, bias: Any = None, activation: Any = None,
               scale: float | None = None, softmax: bool = False) -> Any:
        """``act(a @ b · scale + bias)`` (bf16 in, fp32 accumulation, bf16 out).

        Parameters
        ----------
        a : [M, K] array or DeviceTensor
        b : [K, N] array or DeviceTensor (a DeviceTensor is read with strided DMA)
        bias : None, [N] (per column) or [M, N] (full matrix)
        activation : None, "gelu", "silu", "sigmoid", "tanh", "relu" or (a, b, c, d)
            (the unified ``(a + c·x)·σ(b·x) + d``).
        scale : fp32 multiplier applied to the fp32 sums before the bias.
        softmax : softmax over each output row (after the epilogue).

        Returns the kind of ``a`` (numpy/torch with a's dtype, or a DeviceTensor).
        Accumulation is sequential fp32 in k order, bit-exact with ``numerics.fp.pe_matmul``.
        """
        ao = as_operand(a, "a")
        bo = as_operand(b, "b")
        m, k = _dims(ao, 2, "[M, K]")
        kb, n = _dims(bo, 2, "[K, N]")
        if kb != k:
            raise ValueError(f"matmul shapes do not match: a is {ao.shape}, b is {bo.shape} "
                             f"(a's K={k} ≠ b's K={kb})")
        return self._gemm("matmul", ao, m, k, n, ("kn", bo), bias, activation, scale, softmax)

    def linear(self, x: Any, w: Any, bias: Any = None, activation: Any = None,
               scale: float | None = None) -> Any:
        """``act(x @ wᵀ · scale + bias)`` with torch ``F.linear`` shapes.

        ``x`` is ``[..., K]`` (leading dimensions are flattened into M), ``w`` is ``[N, K]``
        (a host array, a bf16 DeviceTensor, or a :class:`PackedWeight` from
        :meth:`pack_weight` / :meth:`quantize`), ``bias`` is ``[N]``.  Host weights are packed
        per call; pack them once with :meth:`pack_weight` for repeated use.
        """
        xo = as_operand(x, "x")
        if xo.ndim < 1 or any(d == 0 for d in xo.shape):
            raise ValueError(f"x must be [..., K] with non-empty dimensions, got {xo.shape}")
        k = xo.shape[-1]
        m = math.prod(xo.shape[:-1]) if xo.ndim > 1 else 1
        if isinstance(w, PackedWeight):
            if w.engine is not self:
                raise ValueError("the packed weight belongs to another engine")
            n, kw = w.shape
            source: tuple = ("packed", w)
        else:
            wo = as_operand(w, "w")
            n, kw = _dims(wo, 2, "[N, K]")
            source = ("nk", wo)
        if kw != k:
            raise ValueError(f"linear shapes do not match: x is {xo.shape}, w is "
                             f"{(n, kw)} (x's K={k} ≠ w's K={kw})")
        if bias is not None:
            bo = as_operand(bias, "bias")
            if bo.shape != (n,):
                raise ValueError(f"linear bias must be [N] = [{n}], got {bo.shape}")
        out_shape = (*xo.shape[:-1], n) if xo.ndim > 1 else (n,)
        return self._gemm("linear", xo, m, k, n, source, bias, activation, scale, False,
                          out_shape=out_shape)

    def _gemm(self, name: str, ao: Operand, m: int, k: int, n: int, source: tuple, bias: Any,
              activation: Any, scale: float | None, softmax: bool,
              out_shape: tuple[int, ...] | None = None) -> Any:
        epi = epi_spec(activation, scale)
        if not isinstance(softmax, bool):
            raise TypeError(f"softmax must be a bool, not {softmax!r}")
        bias_mode, bo = "none", None
        if bias is not None:
            bo = as_operand(bias, "bias")
            if bo.shape == (n,):
                bias_mode = "col"
            elif bo.shape == (m, n):
                bias_mode = "full"
            else:
                raise ValueError(f"bias must be [N] = [{n}] or [M, N] = [{m}, {n}], got "
                                 f"{bo.shape}")
        kind, src = source
        b_fmt = src.fmt if kind == "packed" else "bf16"
        b_mode = "kn" if kind == "kn" and src.kind == "device" else "panel"
        # softmax always has a bias: zeros + −Inf on pad columns (see firmware.gemm)
        bias_mode_k = "col" if softmax and bias_mode == "none" else bias_mode
        cfg = self.config
        try:
            tiling = choose_tiling_cached(self, self._m_bucket(m), k, n, b_fmt=b_fmt,
                                          bias=bias_mode_k, softmax=softmax, b_mode=b_mode)
        except UnsupportedOp:
            if not softmax:
                raise
            return self._gemm_then_softmax(name, ao, m, k, n, source, bias, activation, scale,
                                           out_shape)
        spec = GemmSpec(k=k, n=n, b_mode=b_mode, b_fmt=b_fmt, bias=bias_mode_k, epi=epi,
                        out_fmt="bf16", softmax=softmax, tiling=tiling)
        kernel = self._kernel("gemm", spec, lambda: build_gemm(cfg, spec))
        nb = tiling.nt * cfg.cols
        npad = ceil_div(n, nb) * nb
        runs: list = []
        names: list[str] = []
        with self._temps() as temps:
            a_dev = self._upload(ao, temps, (m, k))
            args = {"m": m, "a": a_dev.addr}
            # B operand
            if kind == "packed":
                args["b"] = src.codes.addr
                if src.scales is not None:
                    args["qs"] = src.scales.addr
            elif kind == "kn":
                if src.device is not None:
                    args["b"] = src.device.addr
                else:
                    packed = pack_bf16(self, np.ascontiguousarray(src.bits.T),
                                       region="activations")
                    temps.append(packed)
                    args["b"] = packed.codes.addr
            elif src.device is None:  # "nk": a host [N, K] weight, packed on the host
                packed = pack_bf16(self, src.bits, region="activations")
                temps.append(packed)
                args["b"] = packed.codes.addr
            else:  # "nk": a device [N, K] weight, packed into panels by the engine
                panel = self._pack_on_device(src.device, 1, n, k, runs, names)
                temps.append(panel)
                args["b"] = panel.addr
            # bias
            if bias_mode_k != "none":
                args["bias"] = self._bias_arg(bo, bias_mode_k, m, n, npad, softmax, temps)
            out = self.empty((m, n), "bf16")
            try:
                args["c"] = out.addr
                result = self.run(kernel.blob, args=kernel.gprs(**args))
            except BaseException:
                out.free()
                raise
        self._record(name, [*runs, result], [*names, kernel.name],
                     m * n * k / cfg.macs_per_cycle)
        return to_kind(out, ao, out_shape or (m, n))

    def _pack_on_device(self, x: DeviceTensor, g: int, r: int, w: int, runs: list,
                        names: list[str]) -> DeviceTensor:
        """B panels of ``g`` device matrices ``[r, w]`` (zero pad columns), on the device."""
        cfg = self.config
        tiles = ceil_div(r, cfg.cols)
        try:
            spec = transpose_spec(cfg, "panel", g, r, w)
        except KernelError as exc:
            raise UnsupportedOp(str(exc)) from None
        kernel = self._kernel("transpose", spec, lambda: build_transpose(cfg, spec))
        panel = self.empty((g * tiles * w * cfg.cols,), "bf16")
        try:
            runs.append(self.run(kernel.blob, args=kernel.gprs(x=x.addr, out=panel.addr)))
        except BaseException:
            panel.free()
            raise
        names.append(kernel.name)
        return panel

    def transpose(self, x: Any) -> Any:
        """Swap the last two dimensions: ``x[..., M, N]`` → ``[..., N, M]`` (bits kept)."""
        xo = as_operand(x, "x")
        if xo.ndim < 2 or any(d == 0 for d in xo.shape):
            raise ValueError(f"x must be [..., M, N] with non-empty dimensions, got {xo.shape}")
        *lead, m, n = xo.shape
        g = math.prod(lead) if lead else 1
        cfg = self.config
        try:
            spec = transpose_spec(cfg, "transpose", g, m, n)
        except KernelError as exc:
            raise UnsupportedOp(str(exc)) from None
        kernel = self._kernel("transpose", spec, lambda: build_transpose(cfg, spec))
        with self._temps() as temps:
            x_dev = self._upload(xo, temps, (g * m, n))
            out = self.empty((*lead, n, m), "bf16")
            try:
                result = self.run(kernel.blob, args=kernel.gprs(x=x_dev.addr, out=out.addr))
            except BaseException:
                out.free()
                raise
        self._record("transpose", [result], [kernel.name], 2 * g * m * n / self._dram_bpc())
        return to_kind(out, xo, (*lead, n, m))

    def _gemm_then_softmax(self, name: str, ao: Operand, m: int, k: int, n: int,
                           source: tuple, bias: Any, activation: Any, scale: float | None,
                           out_shape: tuple[int, ...] | None) -> Any:
        """Fallback of ``softmax=True`` when a row block of N logits does not fit on chip:
        the bf16 logits go to DRAM and the row-wise softmax kernel reads them back."""
        dev = Operand(ao.name, ao.shape, "device", None, device=None)
        with self._temps() as temps:
            dev.device = self._upload(ao, temps, (m, k))
            logits = self._gemm(name, dev, m, k, n, source, bias, activation, scale, False)
            temps.append(logits)
            first = self.last_run
            y = self.softmax(logits)
        second = self.last_run
        self._record(name, [*first.runs, *second.runs], [*first.kernels, *second.kernels],
                     first.ideal_cycles)
        return to_kind(y, ao, out_shape or (m, n))

    def _bias_arg(self, bo: Operand | None, mode: str, m: int, n: int, npad: int,
                  softmax: bool, temps: list) -> int:
        """Device address of the bias in the layout the kernel reads."""
        if not softmax:
            return self._upload(bo, temps).addr
        # softmax: pad columns get −Inf so they never win the row maximum
        if mode == "col":
            row = np.zeros(npad, np.uint16)
            if bo is not None:
                row[:n] = self._host_bits(bo).reshape(n)
            row[n:] = _NEG_INF_BF16
            t = self.tensor(row.view(np.uint8), dtype="uint8")
        else:
            full = np.full((m, npad), _NEG_INF_BF16, np.uint16)
            full[:, :n] = self._host_bits(bo).reshape(m, n)
            t = self.tensor(full.view(np.uint8).reshape(-1), dtype="uint8")
        temps.append(t)
        return t.addr


def choose_tiling_cached(engine: EngineOps, m: int, k: int, n: int, **kw: Any):
    """:func:`firmware.gemm.choose_tiling`, memoized per engine."""
    cache = engine.__dict__.setdefault("_tiling_cache", {})
    key = (m, k, n, tuple(sorted(kw.items())))
    if key not in cache:
        try:
            cache[key] = choose_tiling(engine.config, m, k, n, **kw)
        except KernelError as exc:
            raise UnsupportedOp(str(exc)) from None
    return cache[key]

