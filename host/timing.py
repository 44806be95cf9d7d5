"""The ISA simulator's timing model: documented cycle costs of every instruction.

The model backend counts cycles with these rules so kernels can be tuned before RTL exists;
the RTL's exact counts will replace them (each rule below names the parameter that the RTL
measurement is expected to calibrate).  Notation: R×C array, P = ``pe_interleave``,
TR = P·R tile rows, L = ``lanes``, B = ``axi_bytes``.

Dispatcher (in order, one instruction per cycle)
    * Every instruction costs 1 dispatch cycle; a taken JUMP/LOOP adds ``branch_penalty``;
      ``MULHU`` adds ``mul_latency − 1``, ``DIVU``/``REMU`` add ``div_latency − 1``.
    * Instruction fetch goes through a direct-mapped cache of ``icache_instructions`` in lines
      of ``icache_line`` instructions; a miss costs ``dram_latency + ceil(line bytes /
      dram_bytes_per_cycle)``.
    * A queue instruction is dispatched once its queue has a free slot (``queue_depth``
      entries; a slot frees when its instruction starts).
    * SYNC SET/CLEAR/FENCE and HALT wait until every queue is idle; EPI waits until the ARRAY
      and VECTOR queues are idle; SYNC WAIT that is not satisfied costs its timeout.

Queues (each executes its instructions in order, one at a time)
    An instruction starts at ``max(dispatch + 1, previous end in its queue, arrival of every
    token it pops)`` and pushes its tokens at its end.  Costs:

    * LOAD/STORE: ``dram_latency + ceil(beats · B / dram_bytes_per_cycle)`` where ``beats``
      counts the B-byte AXI beats each row touches (a misaligned row touches one more); rows are
      pipelined, so the latency is paid once per instruction.  0 rows: 1 cycle.
    * MATMUL with T = m_tiles·n_tiles tiles: ``fill + T·max(P·k, TR) + TR + epilogue_latency``
      with ``fill = R + C − 2 + pe_latency``: operands skew through the array once, each tile
      takes P·k cycles (every PE does P MACs per k step), results drain through shadow
      registers (TR cycles, one row of C per cycle) overlapped with the next tile, and the last
      tile's drain is exposed.  Quantized B is decoded on the fly at no extra cost.
    * VECTOR: ``vector_latency + rows · ceil(length / L)`` (one L-element beat per cycle per
      operand row; TRANSPOSE: ``length · ceil(rows / L)``).
"""

from __future__ import annotations

import dataclasses
import math

from unified_engine.config import EngineConfig

__all__ = ["TimingParams"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TimingParams:
    """Cycle-cost parameters of the model (see the module docstring for the rules).

    Use :meth:`for_config` for the defaults of an engine; every field is overridable with
    ``dataclasses.replace``.  ``dram_bytes_per_cycle`` defaults to one AXI beat per cycle
    (the anchor's DDR4 x32 at 1:1 clock delivers exactly 32 B/cycle).
    """

    dram_bytes_per_cycle: float
    dram_latency: int = 64
    queue_depth: int = 8
    icache_line: int = 8
    branch_penalty: int = 2
    mul_latency: int = 3
    div_latency: int = 32
    pe_latency: int = 6
    epilogue_latency: int = 40
    vector_latency: int = 12

    def __post_init__(self) -> None:
        bpc = self.dram_bytes_per_cycle
        if isinstance(bpc, bool) or not isinstance(bpc, int | float) or not bpc > 0:
            raise ValueError(f"dram_bytes_per_cycle must be a positive number, not {bpc!r}")
        for f in dataclasses.fields(self):
            if f.name == "dram_bytes_per_cycle":
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"TimingParams.{f.name} must be an int ≥ 0, not {value!r}")
        if self.queue_depth < 1 or self.icache_line < 1:
            raise ValueError("TimingParams.queue_depth and icache_line must be ≥ 1")

    @classmethod
    def for_config(cls, config: EngineConfig, **overrides) -> TimingParams:
        """Defaults for ``config`` (DRAM at one AXI beat per cycle), with ``overrides``."""
        if not isinstance(config, EngineConfig):
            raise TypeError(f"for_config needs an EngineConfig, not {type(config).__name__}")
        return cls(**{"dram_bytes_per_cycle": float(config.axi_bytes), **overrides})

    # ----- costs -------------------------------------------------------------------------

    def fetch_miss(self) -> int:
        """Cycles to fill one instruction-cache line."""
        return self.dram_latency + math.ceil(self.icache_line * 32 / self.dram_bytes_per_cycle)

    def dma(self, config: EngineConfig, dram: int, rows: int, row_bytes: int,
            stride: int) -> int:
        """Cycles of a LOAD/STORE of ``rows`` × ``row_bytes`` at ``dram`` with ``stride``."""
        if rows == 0 or row_bytes == 0:
            return 1
        b = config.axi_bytes
        if stride % b == 0:
            # every row has the same alignment
            first = dram // b
            per_row = (dram + row_bytes - 1) // b - first + 1
            beats = per_row * rows
        else:
            beats = sum((dram + r * stride + row_bytes - 1) // b - (dram + r * stride) // b + 1
                        for r in range(rows))
        return self.dram_latency + math.ceil(beats * b / self.dram_bytes_per_cycle)

    def matmul(self, config: EngineConfig, m_tiles: int, n_tiles: int, k: int) -> int:
        """Cycles of a MATMUL of ``m_tiles × n_tiles`` tiles over ``k``."""
        tiles = m_tiles * n_tiles
        if tiles == 0:
            return 1
        tr = config.tile_rows
        fill = config.rows + config.cols - 2 + self.pe_latency
        return fill + tiles * max(config.pe_interleave * k, tr) + tr + self.epilogue_latency

    def vector(self, config: EngineConfig, rows: int, length: int, transpose: bool) -> int:
        """Cycles of a VECTOR op over ``rows`` × ``length`` elements."""
        if rows == 0 or length == 0:
            return 1
        lanes = config.lanes
        beats = length * math.ceil(rows / lanes) if transpose else rows * math.ceil(length / lanes)
        return self.vector_latency + beats
