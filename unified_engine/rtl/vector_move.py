"""``VectorMove``: the VECTOR queue's unit for QUANTIZE, DEQUANTIZE and TRANSPOSE.

The element-wise VECTOR operations run in ``VectorExec``; the queue controller hands this unit
the three ops that move and re-encode data rather than compute on it. Each op has its own
engine (``vector_move_quant.py``, ``vector_move_dequant.py``, ``vector_move_transpose.py``);
this module accepts the command, starts the engine of its op and routes the memory ports to
it. Only one instruction runs at a time.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from ..config import EngineConfig
from ..isa import VecOp, isa_for
from ..numerics.quant_blocks import NVFP4_BLOCK
from .engine_if import UnitSignature, memory_geometry, sram_port_signature
from .vector_move_dequant import DequantizeEngine
from .vector_move_quant import QuantizeEngine
from .vector_move_transpose import TransposeEngine

__all__ = ["VectorMove"]


class VectorMove(wiring.Component):
    """VECTOR QUANTIZE / DEQUANTIZE / TRANSPOSE, bit-exact with ``host/units.py``.

    The command is the resolved VECTOR word (``engine_if.UnitSignature``: effective row
    addresses in ``src0.imm`` / ``dst.imm``, the effective scale entry in ``qscale``, every
    rule of ``_vector_quant`` / ``_vector_transpose`` already checked). An instruction with
    ``rows = 0`` or ``length = 0`` (a token-only one) or another op finishes at once without
    touching memory.

    Parameters
    ----------
    config:
        The engine configuration. QUANTIZE/DEQUANTIZE are built when it has a block format.
    encode_lanes:
        Values per cycle of the QUANTIZE encoder (power of two ≤ ``min(lanes, 16)``; default
        ``min(lanes, 4)``: the all-format encoder is large and QUANTIZE is rare on device).
    metric_lanes:
        The encoder's IF4/IF8 metric width (default ``encode_lanes``).
    decode_lanes:
        Values per cycle of the DEQUANTIZE decoder (default ``min(lanes, 16)``).
    tile_rows:
        TRANSPOSE tile height (default ``min(lanes, 16)``; see ``TransposeEngine``).

    Ports
    -----
    unit : Out(UnitSignature())
        ``cmd`` (ready while idle) and the ``done`` pulse (one cycle after the last write of
        the instruction was accepted; the cycle after the command for an empty one).
    spad : Out(sram_port_signature(memory_geometry(config)["spad"]))
        Scratchpad client port (reads and writes, one request per cycle).
    scale : Out(sram_port_signature(memory_geometry(config)["scale"]))
        Scale-memory client port (QUANTIZE writes entries, DEQUANTIZE reads them).

    Timing: the command is latched and the engine starts the next cycle. Every op is bound
    by the one scratchpad port, which carries its reads *and* its writes (the timing model's
    ``rows·ceil(length/L)`` assumes one beat per cycle each way), and by its datapath width.
    Measured on the default configuration (``SramModel`` answering in one cycle, command to
    ``done``; timing model in brackets):

    * TRANSPOSE bf16 32 × 64: 266 cycles [140] — ``2·length·ceil(rows/T)`` plus a cycle per
      tile; bf16 → fp32 (8-row tiles for fp32 rows): 402.
    * QUANTIZE 4 × 256 (INT4 or IF8): 315 [76] — ``length/encode_lanes`` per row plus the
      encoder latency (about 40 cycles with an IF format).
    * DEQUANTIZE 4 × 256 INT4 → bf16: 86 [76]; IF8 → fp32: 165 (port-bound: 160 requests).

    Area (yosys ``synth_xilinx -family xc7`` estimates, ``kintex7`` preset, all formats):
    TRANSPOSE engine (T = 16) 4.2 K LUT / 4.3 K FF; DEQUANTIZE (16 lanes) 4.7 K LUT, 17 DSP;
    QUANTIZE 11.6 K LUT, 15 DSP at ``encode_lanes=4`` (8.2 K LUT with ``encode_lanes=2,
    metric_lanes=1``).
    """

    def __init__(self, config: EngineConfig, *, encode_lanes: int | None = None,
                 metric_lanes: int | None = None, decode_lanes: int | None = None,
                 tile_rows: int | None = None):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"VectorMove needs an EngineConfig, got {type(config).__name__}")
        geometry = memory_geometry(config)
        self.config = config
        self._layout = isa_for(config).layouts["vector"]
        self.has_quant = any(f != "bf16" for f in config.formats)
        cap = min(config.lanes, NVFP4_BLOCK)
        for name, value in (("encode_lanes", encode_lanes), ("decode_lanes", decode_lanes)):
            if value is not None and not (
                    isinstance(value, int) and not isinstance(value, bool)
                    and 2 <= value <= cap and value & (value - 1) == 0):
                raise ValueError(f"VectorMove: {name}={value!r} must be a power of two in "
                                 f"2…{cap} (lanes and the NVFP4 block bound it)")
        self.encode_lanes = encode_lanes or min(config.lanes, 4)
        self.decode_lanes = decode_lanes or cap
        self.metric_lanes = metric_lanes
        self.tile_rows = TransposeEngine.default_tile_rows(config) if tile_rows is None \
            else tile_rows
        TransposeEngine.check_tile_rows(config, self.tile_rows)
        super().__init__({
            "unit": Out(UnitSignature()),
            "spad": Out(sram_port_signature(geometry["spad"])),
            "scale": Out(sram_port_signature(geometry["scale"])),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        engines = {VecOp.TRANSPOSE: TransposeEngine(cfg, tile_rows=self.tile_rows)}
        if self.has_quant:
            engines[VecOp.QUANTIZE] = QuantizeEngine(cfg, lanes=self.encode_lanes,
                                                     metric_lanes=self.metric_lanes)
            engines[VecOp.DEQUANTIZE] = DequantizeEngine(cfg, lanes=self.decode_lanes)
        for op, engine in engines.items():
            m.submodules[op.name.lower()] = engine

        ins = Signal(self._layout)
        busy = Signal()  # an instruction is latched (its engine runs, or it ends at once)
        start = Signal()  # the cycle after the command: the engine starts
        cmd = self.unit.cmd
        m.d.comb += cmd.ready.eq(~busy)
        m.d.sync += start.eq(cmd.valid & cmd.ready)
        with m.If(cmd.valid & cmd.ready):
            m.d.sync += [ins.eq(data.View(self._layout, cmd.payload)), busy.eq(1)]

        empty = (ins.rows == 0) | (ins.length == 0)
        selected = {op: ins.op == op for op in engines}
        known = Cat(*selected.values()).any()
        for op, engine in engines.items():
            m.d.comb += [engine.ins.eq(ins), engine.start.eq(start & selected[op] & ~empty)]
        done = Signal()
        m.d.comb += [
            done.eq((start & (empty | ~known)) | Cat(*(e.done for e in engines.values())).any()),
            self.unit.done.eq(done),
        ]
        with m.If(done):
            m.d.sync += busy.eq(0)

        # Memory ports: the engine of the latched op owns them (idle engines do not request).
        for op, engine in engines.items():
            with m.If(selected[op]):
                wiring.connect(m, engine.spad, wiring.flipped(self.spad))
                if hasattr(engine, "scale"):
                    wiring.connect(m, engine.scale, wiring.flipped(self.scale))
        return m
