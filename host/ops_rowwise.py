"""Row-wise ops of :class:`~unified_engine.host.Engine`: softmax, norms, element-wise ops,
standalone activations (kernels in ``unified_engine.firmware.rowwise``).

All work on the last dimension of ``x[..., N]`` (leading dimensions are flattened into rows)
and return the kind of ``x``.  ``Engine.last_run.ideal_cycles`` is the DRAM bound of the model:
``max(bytes read, bytes written) / dram_bytes_per_cycle`` (reads and writes use separate AXI
channels in the timing model).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from unified_engine.firmware.common import KernelError
from unified_engine.firmware.layout import epi_spec
from unified_engine.firmware.rowwise import RowwiseSpec, build_rowwise, choose_rows
from unified_engine.isa import f32_bits

from .ops_io import Operand, as_operand, to_kind

__all__ = ["RowwiseOps"]


def _rows_of(op: Operand) -> tuple[int, int]:
    if op.ndim < 1 or any(d == 0 for d in op.shape):
        raise ValueError(f"{op.name} must be [..., N] with non-empty dimensions, got {op.shape}")
    n = op.shape[-1]
    return math.prod(op.shape[:-1]) if op.ndim > 1 else 1, n


def _eps_bits(eps: Any) -> int:
    if isinstance(eps, bool) or not isinstance(eps, int | float | np.floating):
        raise TypeError(f"eps must be a real number, not {eps!r}")
    e32 = np.float32(eps)
    if not (math.isfinite(float(eps)) and e32 >= np.float32(2.0**-126)):
        raise ValueError(f"eps={eps!r} must be a positive normal fp32 number")
    return f32_bits(float(e32))


def _vector_arg(engine, v: Any, name: str, n: int) -> Operand:
    op = as_operand(v, name)
    if op.shape != (n,):
        raise ValueError(f"{name} must be [N] = [{n}], got {op.shape}")
    return op


class RowwiseOps:
    """Mixin; see the module docstring."""

    def _rowwise(self, name: str, xo: Operand, spec: RowwiseSpec, vectors: dict[str, Operand],
                 y: Operand | None = None, extra_read: int = 0, raw: bool = False) -> Any:
        from .ops import UnsupportedOp

        m, n = _rows_of(xo)
        bucket = 1 << (m - 1).bit_length()
        try:
            rb = choose_rows(self.config, spec, bucket)
        except KernelError as exc:
            raise UnsupportedOp(str(exc)) from None
        spec = dataclasses.replace(spec, rb=rb)
        kernel = self._kernel("rowwise", spec, lambda: build_rowwise(self.config, spec))
        with self._temps() as temps:
            x_dev = self._upload(xo, temps, (m, n))
            args = {"m": m, "x": x_dev.addr}
            if y is not None:
                args["y"] = self._upload(y, temps).addr
            for key, op in vectors.items():
                args[key] = self._upload(op, temps).addr
            out = self.empty((m, 8), "uint32") if raw else self.empty((m, n), "bf16")
            try:
                args["out"] = out.addr
                result = self.run(kernel.blob, args=kernel.gprs(**args))
            except BaseException:
                out.free()
                raise
        read = 2 * m * n + extra_read + sum(2 * n for _ in vectors)
        ideal = max(read, out.nbytes) / self._dram_bpc()
        self._record(name, [result], [kernel.name], ideal)
        if raw:
            try:
                return out.numpy()
            finally:
                out.free()
        return to_kind(out, xo, xo.shape)

    def argmax_top4(self, x: Any) -> tuple[Any, Any]:
        """The 4 largest elements of each row of ``x[..., N]`` and their indices, best first.

        Ranking as ``numerics.reduce.argmax_top4`` (NaN above +Inf, ties to the lower index).
        Returns ``(values, indices)`` of shape ``[..., 4]``: values in x's kind and dtype
        (numpy float32 for a DeviceTensor), indices int64 (torch.int64 for torch input); rows
        shorter than 4 fill the rest with −Inf and index −1.
        """
        xo = as_operand(x, "x")
        _, n = _rows_of(xo)
        raw = self._rowwise("argmax_top4", xo, RowwiseSpec("argmax4", n, 1), {}, raw=True)
        idx = raw[:, :4].astype(np.int64)
        idx[raw[:, :4] == 0xFFFFFFFF] = -1
        vals = raw[:, 4:].view(np.float32)
        shape = (*xo.shape[:-1], 4)
        idx, vals = idx.reshape(shape), vals.reshape(shape)
        if xo.kind == "torch":
            import torch

            return torch.from_numpy(vals.copy()).to(xo.dtype), torch.from_numpy(idx)
        if xo.kind == "numpy":
            return vals.astype(xo.dtype), idx
        return vals, idx

    def softmax(self, x: Any, dim: int = -1) -> Any:
        """Softmax over the last dimension: ``e = exp(x − max)`` in fp32, ``e / Σe`` in bf16."""
        xo = as_operand(x, "x")
        _rows_of(xo)
        if dim not in (-1, xo.ndim - 1):
            raise ValueError(f"softmax runs over the last dimension (dim=-1), not dim={dim}")
        return self._rowwise("softmax", xo, RowwiseSpec("softmax", xo.shape[-1], 1), {})

    def rmsnorm(self, x: Any, gamma: Any = None, eps: float = 1e-6) -> Any:
        """``x / sqrt(mean(x²) + eps) · gamma`` over the last dimension (HF ``RMSNorm``)."""
        xo = as_operand(x, "x")
        _, n = _rows_of(xo)
        vecs = {} if gamma is None else {"gamma": _vector_arg(self, gamma, "gamma", n)}
        spec = RowwiseSpec("rmsnorm", n, 1, eps=_eps_bits(eps), gamma=gamma is not None)
        return self._rowwise("rmsnorm", xo, spec, vecs)

    def layernorm(self, x: Any, gamma: Any = None, beta: Any = None, eps: float = 1e-5) -> Any:
        """``(x − mean) / sqrt(var + eps) · gamma + beta`` over the last dimension (biased
        variance, as ``torch.nn.functional.layer_norm``)."""
        xo = as_operand(x, "x")
        _, n = _rows_of(xo)
        vecs = {}
        if gamma is not None:
            vecs["gamma"] = _vector_arg(self, gamma, "gamma", n)
        if beta is not None:
            vecs["beta"] = _vector_arg(self, beta, "beta", n)
        spec = RowwiseSpec("layernorm", n, 1, eps=_eps_bits(eps), gamma=gamma is not None,
                           beta=beta is not None)
        return self._rowwise("layernorm", xo, spec, vecs)

    def add(self, x: Any, y: Any) -> Any:
        """``x + y`` with y a tensor of x's shape, a row vector ``[N]``, a per-row column
        ``[..., 1]`` or a scalar."""
        return self._eltwise("add", x, y)

    def sub(self, x: Any, y: Any) -> Any:
        """``x − y`` (broadcasting as :meth:`add`)."""
        return self._eltwise("sub", x, y)

    def mul(self, x: Any, y: Any) -> Any:
        """``x · y`` (broadcasting as :meth:`add`)."""
        return self._eltwise("mul", x, y)

    def _eltwise(self, binop: str, x: Any, y: Any) -> Any:
        xo = as_operand(x, "x")
        m, n = _rows_of(xo)
        if isinstance(y, int | float | np.floating) and not isinstance(y, bool):
            if not math.isfinite(float(y)) and not math.isinf(float(y)):
                raise ValueError(f"scalar operand must not be NaN, got {y!r}")
            bits = f32_bits(float(np.float32(y)))
            spec = RowwiseSpec("eltwise", n, 1, binop=binop, bcast="scalar", scalar=bits)
            return self._rowwise(binop, xo, spec, {})
        yo = as_operand(y, "y")
        if yo.shape == xo.shape:
            bcast, extra = "tensor", 2 * m * n
        elif yo.shape == (n,) or (yo.ndim == xo.ndim and all(d == 1 for d in yo.shape[:-1])
                                  and yo.shape[-1] == n):
            yo.shape = (n,)
            if yo.bits is not None:
                yo.bits = yo.bits.reshape(n)
            bcast, extra = "col", 2 * n
        elif yo.shape == (*xo.shape[:-1], 1):
            bcast, extra = "row", 2 * m
        else:
            raise ValueError(f"cannot broadcast y of shape {yo.shape} to x of shape {xo.shape};"
                             " allowed: the same shape, [N], [..., 1] or a scalar")
        spec = RowwiseSpec("eltwise", n, 1, binop=binop, bcast=bcast)
        if bcast == "col":
            return self._rowwise(binop, xo, spec, {"y": yo})
        return self._rowwise(binop, xo, spec, {}, y=yo, extra_read=extra)

    def activation(self, x: Any, activation: Any, scale: float | None = None) -> Any:
        """``act(x · scale)`` element-wise (the epilogue's activation block on the vector
        unit); ``activation`` as in :meth:`matmul`."""
        xo = as_operand(x, "x")
        _, n = _rows_of(xo)
        spec = RowwiseSpec("activation", n, 1, epi=epi_spec(activation, scale))
        return self._rowwise("activation", xo, spec, {})
