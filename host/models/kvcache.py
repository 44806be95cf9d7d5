"""The KV cache: per layer, keys and values of every past position in device DRAM.

Layout per layer: ``k``, ``v`` bf16 ``[Hkv, capacity, D]`` (head-major, so each KV head's rows
are contiguous and the whole buffer *is* ``Engine.attention``'s ``[1, Hkv, Sk, D]`` operand
with ``Sk = capacity``).  New rows are appended on the device by :func:`.runtime.copy_rows`
(one LOAD/STORE program per ``(S, capacity)`` shape, addresses in GPRs).  Attention always
reads the full buffer with a boolean mask ``[S, capacity]`` that admits, for query row ``i``
at position ``p + i``, the keys ``j ≤ p + i``; key blocks that are masked everywhere are
skipped by the attention kernel, so the cost follows the filled length, not the capacity,
and the compiled attention program changes only when the number of filled key blocks does.
Unfilled rows are zero, so a masked key contributes exactly ``0 · v = 0``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unified_engine.firmware.common import round_up

from .runtime import CopySpec, copy_rows

__all__ = ["KVCache"]


class KVCache:
    """Keys/values of ``layers`` layers, ``capacity`` positions (rounded up to ``granule``).

    Attributes
    ----------
    length : int
        Positions filled so far (the next token's position).
    k, v : list[DeviceTensor]
        Per layer ``[kv_heads, capacity, head_dim]`` bf16.
    """

    def __init__(self, engine: Any, layers: int, kv_heads: int, head_dim: int, capacity: int,
                 granule: int = 64) -> None:
        if capacity < 1:
            raise ValueError(f"KV cache capacity must be ≥ 1, not {capacity}")
        self.engine = engine
        self.kv_heads, self.head_dim = kv_heads, head_dim
        self.capacity = round_up(capacity, granule)
        self.length = 0
        zeros = np.zeros((kv_heads, self.capacity, head_dim), np.float32)
        self.k: list = []
        self.v: list = []
        try:
            for _ in range(layers):
                self.k.append(engine.tensor(zeros, dtype="bf16"))
                self.v.append(engine.tensor(zeros, dtype="bf16"))
        except BaseException:
            self.free()
            raise

    def check_room(self, s: int) -> None:
        """``ValueError`` unless ``s`` more positions fit."""
        if self.length + s > self.capacity:
            raise ValueError(f"the KV cache holds {self.capacity} positions; {self.length} are "
                             f"used and {s} more do not fit")

    def append(self, layer: int, k: Any, v: Any) -> list:
        """Copy ``k``, ``v`` (device ``[Hkv, S, D]``) to positions ``length … length+S−1``
        of ``layer``; returns the two RunResults.  (:meth:`advance` moves ``length``.)"""
        s = k.shape[-2]
        self.check_room(s)
        row = self.head_dim * 2
        spec = CopySpec(groups=self.kv_heads, rows=s, row_bytes=row, src_pitch=s * row,
                        dst_pitch=self.capacity * row)
        offset = self.length * row
        return [copy_rows(self.engine, k.addr, self.k[layer].addr + offset, spec),
                copy_rows(self.engine, v.addr, self.v[layer].addr + offset, spec)]

    def advance(self, s: int) -> None:
        """Mark ``s`` more positions filled (after every layer appended them)."""
        self.check_room(s)
        self.length += s

    def mask(self, s: int) -> np.ndarray:
        """Boolean ``[s, capacity]``: query ``i`` (position ``length + i``) sees keys ≤ it."""
        pos = self.length + np.arange(s)[:, None]
        return np.arange(self.capacity)[None, :] <= pos

    def free(self) -> None:
        """Release the device buffers."""
        for t in self.k + self.v:
            t.free()
        self.k, self.v = [], []
