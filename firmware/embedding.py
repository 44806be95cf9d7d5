"""Embedding lookup: ``out[t] = table[ids[t]]`` as a DMA gather.

The ISA has no data-dependent addressing (by design: every DMA address is an immediate, an
address register or a GPR), so the host bakes the row addresses into the program: runs of
consecutive ids become one 2-D LOAD each, gathered into a staging block of RB rows that one
STORE writes out.  Staging blocks are double buffered (tokens LOAD → STORE, STORE → LOAD [2]).
The program depends on the ids, so it is built per call and not cached.
"""

from __future__ import annotations

from collections.abc import Sequence

from unified_engine.config import EngineConfig

from .common import Kernel, KernelError, SpadPlan, ceil_div, new_program

__all__ = ["build_embedding"]


def build_embedding(config: EngineConfig, ids: Sequence[int], table_addr: int, d: int,
                    out_addr: int) -> Kernel:
    """Gather rows ``ids`` of a bf16 ``[V, d]`` table at ``table_addr`` into ``out_addr``."""
    b = config.axi_bytes
    pitch = ceil_div(d * 2, b)
    rb = max(1, min(len(ids), (config.scratchpad_rows // 2) // pitch, 256))
    if pitch > config.scratchpad_rows // 2:
        raise KernelError(f"an embedding row of {d} elements does not fit the scratchpad")
    plan = SpadPlan(config)
    banks = (plan.alloc("bank0", rb * pitch), plan.alloc("bank1", rb * pitch))
    p = new_program(config)
    p.token("store", "load")
    p.token("store", "load")
    row = d * 2
    for blk, start in enumerate(range(0, len(ids), rb)):
        chunk = list(ids[start:start + rb])
        bank = banks[blk % 2]
        # runs of consecutive ids → one strided LOAD each
        runs: list[tuple[int, int, int]] = []          # (first id, length, staging row)
        for r, i in enumerate(chunk):
            if runs and runs[-1][0] + runs[-1][1] == i:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1, runs[-1][2])
            else:
                runs.append((i, 1, r))
        for j, (first, length, r) in enumerate(runs):
            p.load(dram=table_addr + first * row, sram=bank + r * pitch, rows=length,
                   row_bytes=row, dram_stride=row, sram_stride=pitch * b,
                   wait="store" if j == 0 else (),
                   signal="store" if j == len(runs) - 1 else ())
        p.store(dram=out_addr + start * row, sram=bank, rows=len(chunk), row_bytes=row,
                dram_stride=row, sram_stride=pitch * b, wait="load", signal="load")
    p.halt()
    return Kernel(f"embedding(t={len(ids)}, d={d})", config, p.encode(), {}, {"rb": rb})
