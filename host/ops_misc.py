"""``Engine.embedding`` and ``Engine.rope`` (kernels in ``firmware.embedding`` / ``.rope``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from unified_engine.firmware.common import KernelError
from unified_engine.firmware.embedding import build_embedding
from unified_engine.firmware.rope import build_rope, rope_spec

from .ops_io import as_operand, to_kind

__all__ = ["MiscOps"]


def _ids_array(ids: Any) -> np.ndarray:
    if type(ids).__module__.split(".")[0] == "torch":
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError("ids must not be empty")
    return arr


class MiscOps:
    """Mixin; see the module docstring."""

    def embedding(self, ids: Any, table: Any) -> Any:
        """``table[ids]``: rows of a ``[V, D]`` table gathered by DMA.

        ``ids``: integers of any shape (numpy, torch or a list) with 0 ≤ id < V
        (``IndexError`` otherwise); ``table``: host array or bf16 DeviceTensor.  Returns
        ``[*ids.shape, D]`` in the kind of ``table``.
        """
        from .ops import UnsupportedOp

        idx = _ids_array(ids)
        to = as_operand(table, "table")
        if to.ndim != 2 or 0 in to.shape:
            raise ValueError(f"table must be a non-empty [V, D] matrix, got {to.shape}")
        v, d = to.shape
        flat = idx.reshape(-1).astype(np.int64)
        bad = (flat < 0) | (flat >= v)
        if bad.any():
            raise IndexError(f"id {int(flat[bad][0])} is out of range for a table of {v} rows "
                             f"(allowed 0…{v - 1})")
        with self._temps() as temps:
            t_dev = self._upload(to, temps)
            out = self.empty((flat.size, d), "bf16")
            try:
                kernel = build_embedding(self.config, flat.tolist(), t_dev.addr, d, out.addr)
                result = self.run(kernel.blob)
            except KernelError as exc:
                out.free()
                raise UnsupportedOp(str(exc)) from None
            except BaseException:
                out.free()
                raise
        self._record("embedding", [result], [kernel.name],
                     2 * flat.size * d / self._dram_bpc())
        return to_kind(out, to, (*idx.shape, d))

    def rope(self, x: Any, cos: Any, sin: Any) -> Any:
        """Rotary embedding ``x·cos + rotate_half(x)·sin`` (Hugging Face convention).

        ``x``: ``[..., S, D]``; ``cos``, ``sin``: ``[S, D]`` (leading size-1 dimensions are
        allowed), shared by every leading slice of x.  D/2 elements must fill whole AXI beats
        (``UnsupportedOp`` otherwise).  Returns the kind of ``x``.
        """
        from .ops import UnsupportedOp

        xo = as_operand(x, "x")
        if xo.ndim < 2 or 0 in xo.shape:
            raise ValueError(f"x must be [..., S, D] with non-empty dimensions, got {xo.shape}")
        *lead, s, d = xo.shape
        ops = []
        for name, t in (("cos", cos), ("sin", sin)):
            o = as_operand(t, name)
            core = tuple(o.shape)
            while len(core) > 2 and core[0] == 1:
                core = core[1:]
            if core != (s, d):
                raise ValueError(f"{name} must be [S, D] = [{s}, {d}], got {o.shape}")
            if o.bits is not None:
                o.bits = o.bits.reshape(s, d)
            ops.append(o)
        g = math.prod(lead) if lead else 1
        try:
            spec = rope_spec(self.config, g, s, d)
        except KernelError as exc:
            raise UnsupportedOp(str(exc)) from None
        kernel = self._kernel("rope", spec, lambda: build_rope(self.config, spec))
        with self._temps() as temps:
            x_dev = self._upload(xo, temps, (g * s, d))
            c_dev, s_dev = (self._upload(o, temps) for o in ops)
            out = self.empty((g * s, d), "bf16")
            try:
                result = self.run(kernel.blob, args=kernel.gprs(
                    x=x_dev.addr, cos=c_dev.addr, sin=s_dev.addr, out=out.addr))
            except BaseException:
                out.free()
                raise
        # x, cos and sin in, y out
        self._record("rope", [result], [kernel.name], 2 * g * s * d / self._dram_bpc())
        return to_kind(out, xo, xo.shape)
