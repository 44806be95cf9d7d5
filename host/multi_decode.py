"""Tensor-parallel decode: a model runner's GEMVs split over the engines of a MultiEngine.

:class:`TensorParallel` stands in for the :class:`~.engine.Engine` a
:class:`~.models.decoder.DecoderModel` runs on: it *is* engine 0 of the MultiEngine (every op
and every tensor goes there; the weights live in its slice of the shared DRAM) except
``matmul`` of two device tensors whose rows fill at least one array tile per engine — the
decode step's GEMVs (``W[N, K] · x[K, 1]``, the weight as the streamed A operand) — which runs
on all engines with :func:`~.ops_shard.shard_matmul_device`: engine i streams rows
``Nᵢ`` of W and writes its rows of the one result, bit-exact with the single engine.  The
rest of the step (embedding, norms, RoPE, attention, residuals, argmax) stays on engine 0,
one op after another.  ``last_run.cycles`` of a sharded op is the SoC's (the slowest engine).

This is row-parallel GEMV only, with a host start per op (as the single-engine runner has):
no cross-op fusion, no per-engine KV caches.
"""

from __future__ import annotations

from typing import Any

from .multi import MultiEngine
from .ops import OpRun
from .ops_shard import ShardRun, shard_matmul_device
from .tensor import DeviceTensor

__all__ = ["TensorParallel"]


class TensorParallel:
    """Engine 0 of ``multi`` with its large device-tensor matmuls on all engines (module
    doc).  ``sharded`` counts the ops that ran on all engines."""

    def __init__(self, multi: MultiEngine) -> None:
        if not isinstance(multi, MultiEngine):
            raise TypeError(f"TensorParallel needs a MultiEngine, not {type(multi).__name__}")
        object.__setattr__(self, "multi", multi)
        object.__setattr__(self, "sharded", 0)
        object.__setattr__(self, "_last", None)  # (OpRun, engine 0's last_run then)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.multi[0], name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "run_timeout":
            for eng in self.multi:
                eng.run_timeout = value
        else:
            setattr(self.multi[0], name, value)

    @property
    def last_run(self) -> OpRun | None:
        """The most recent op's :class:`~.ops.OpRun` (a sharded one, or engine 0's)."""
        mine = self._last
        own = self.multi[0].last_run
        if mine is not None and own is mine[1]:
            return mine[0]
        return own

    def matmul(self, a: Any, b: Any, bias: Any = None, activation: Any = None,
               scale: float | None = None, softmax: bool = False) -> Any:
        """``Engine.matmul``; on all engines for device ``a``/``b``/``bias`` (module doc)."""
        multi = self.multi
        rows = a.shape[0] if isinstance(a, DeviceTensor) and len(a.shape) == 2 else 0
        if softmax or not isinstance(b, DeviceTensor) or \
                (bias is not None and not isinstance(bias, DeviceTensor)) or \
                rows < len(multi) * multi.config.tile_rows:
            return multi[0].matmul(a, b, bias=bias, activation=activation, scale=scale,
                                   softmax=softmax)
        out, run = shard_matmul_device(multi, a, b, bias, activation, scale)
        object.__setattr__(self, "sharded", self.sharded + 1)
        object.__setattr__(self, "_last", (_op_run(run, a.shape[0] * a.shape[1] * b.shape[1],
                                                   multi), multi[0].last_run))
        return out


def _op_run(run: ShardRun, macs: int, multi: MultiEngine) -> OpRun:
    ideal = macs / (multi.config.macs_per_cycle * len(multi))
    cycles = run.cycles
    return OpRun("matmul", cycles, ideal, ideal / cycles if cycles else 0.0,
                 tuple(r for rnd in run.rounds for r in rnd), ("gemm (sharded)",))
