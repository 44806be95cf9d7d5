"""Where fuzz programs live in device DRAM, and the reset program that gives both backends the
same on-chip starting state (part of :mod:`unified_engine.fuzz`)."""

from __future__ import annotations

import dataclasses

from .asm import Program
from .config import EngineConfig
from .isa import isa_for

__all__ = ["ZERO_BYTES", "Layout", "layout_for", "reset_program"]

#: Bytes at the end of the data area that stay zero (and end the scratchpad after a reset).
ZERO_BYTES = 4096


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the fuzz programs live in device DRAM.

    The window is ``[data, programs_end)``: the data area (``data_bytes``, rewritten from the
    case's image before each case) followed by the programs region.
    """

    data: int
    data_bytes: int
    programs: int
    programs_bytes: int

    @property
    def window(self) -> tuple[int, int]:
        return self.data, self.programs + self.programs_bytes

    def regions(self) -> dict[str, tuple[int, int]]:
        """Allocator regions for :class:`~unified_engine.host.Engine` (window = their hull)."""
        return {"activations": (self.data, self.data_bytes),
                "programs": (self.programs, self.programs_bytes)}


def layout_for(dram_bytes: int) -> Layout:
    """The default layout: 64 KiB of data at 1 MiB (or at 64 KiB in a small DRAM), programs
    up to 64 KiB below the end of DRAM, so DRAM outside the window exists on both sides."""
    data = (1 << 20) if dram_bytes >= (4 << 20) else (64 << 10)
    data_bytes = 64 << 10
    programs = data + data_bytes
    return Layout(data, data_bytes, programs, dram_bytes - (64 << 10) - programs)


def reset_program(config: EngineConfig, layout: Layout) -> Program:
    """Bring on-chip state to a function of DRAM only: load the scratchpad, bias and scale
    memories from the data area, zero every accumulator tile (a k = 1 MATMUL of zero panels
    with ``acc_out``), reset the address registers and the EPI table, then HALT.

    The last :data:`ZERO_BYTES` of the scratchpad are loaded from the end of the data area,
    which the harness keeps zero: the zero A and B panels of the clearing MATMUL.
    """
    isa = isa_for(config)
    beat = config.axi_bytes
    spad = config.scratchpad_bytes
    zero_rows = ZERO_BYTES // beat
    p = Program(config)
    p.load(layout.data, 0, row_bytes=spad - ZERO_BYTES)
    p.load(layout.data + layout.data_bytes - ZERO_BYTES, config.scratchpad_rows - zero_rows,
           row_bytes=ZERO_BYTES, signal="array")
    p.load(layout.data + spad, 0, row_bytes=config.bias_bytes, mem="bias")
    p.load(layout.data + spad + config.bias_bytes, 0, row_bytes=config.scale_bytes,
           mem="scale")
    tiles = isa.widths.acc_tiles
    n_tiles = min(tiles, 8)
    a_rows = -(-config.tile_rows * 2 // beat)
    p.matmul(config.scratchpad_rows - zero_rows, config.scratchpad_rows - zero_rows // 2, 0,
             k=1, m_tiles=tiles // n_tiles, n_tiles=n_tiles, acc_out=True, wb=False,
             wait="load")
    assert a_rows * tiles // n_tiles <= zero_rows // 2, "the zero A panel does not fit"
    p.fence()
    for ar in range(1, config.address_registers):
        p.ar_set(ar, 0, 0)
    for index in range(isa.widths.epi_entries):
        p.epi(index)
    p.halt(0)
    return p
