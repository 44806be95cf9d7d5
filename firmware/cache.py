"""The program cache: compiled kernels keyed by (op, engine configuration, static parameters).

Runtime sizes (the row count M, tensor addresses) are GPR arguments of a kernel, not part of
the key, so e.g. one compiled ``linear`` serves every sequence length in its M bucket.  The
cache is bounded (least recently used kernels are dropped) and counts hits and misses so tests
and users can see whether a call recompiled.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable

from unified_engine.config import EngineConfig

from .common import Kernel

__all__ = ["ProgramCache"]


class ProgramCache:
    """LRU cache of :class:`~.common.Kernel` objects.

    Parameters
    ----------
    capacity:
        Kernels kept (≥ 1); the least recently used one is dropped beyond it.
    """

    def __init__(self, capacity: int = 256) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"ProgramCache capacity must be an int ≥ 1, not {capacity!r}")
        self.capacity = capacity
        self._kernels: collections.OrderedDict[tuple, Kernel] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._kernels)

    def get(self, op: str, config: EngineConfig, params: Hashable,
            build: Callable[[], Kernel]) -> Kernel:
        """The kernel for ``(op, config, params)``, building it with ``build()`` on a miss."""
        key = (op, config.fingerprint(), params)
        kernel = self._kernels.get(key)
        if kernel is not None:
            self.hits += 1
            self._kernels.move_to_end(key)
            return kernel
        self.misses += 1
        kernel = build()
        self._kernels[key] = kernel
        if len(self._kernels) > self.capacity:
            self._kernels.popitem(last=False)
        return kernel

    def keys(self) -> list[tuple]:
        """The cached keys, least recently used first."""
        return list(self._kernels)

    def clear(self) -> None:
        """Drop every kernel and reset the counters."""
        self._kernels.clear()
        self.hits = self.misses = 0
