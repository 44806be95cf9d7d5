"""The ISA simulator's timing model: documented cycle costs of every instruction.

The rules model what the RTL (``unified_engine/rtl``) does, calibrated by microbenchmarks on the
Verilator backend (single instructions of each kind and size, timed with the trace buffer's
START/END events; ``tests/cosim/test_cosim_timing.py`` checks every kernel within 5 %).  Each
rule names the parameter that carries it.  Notation: R×C array, P = ``pe_interleave``,
TR = P·R tile rows, L = ``lanes``, B = ``axi_bytes``.

Dispatcher (in order)
    * A dispatcher instruction costs 1 cycle; a taken JUMP/LOOP adds ``branch_penalty``;
      ``MULHU`` adds ``mul_latency − 1``, ``DIVU``/``REMU`` add ``div_latency − 1``.
    * Instruction fetch (``rtl/fetch.py``) goes through a direct-mapped cache of
      ``icache_instructions`` in aligned lines of ``icache_line`` instructions, indexed by DRAM
      address; a miss costs ``dram_latency + ceil(line bytes / dram_bytes_per_cycle) +
      fetch_overhead`` (AR, cache RAM settling, answer).  The front end
      (``rtl/dispatch_fetch.py``) asks for pc + 1 when pc enters the instruction register,
      so a miss overlaps the previous instruction's dispatch; its AR goes out
      ``fetch_ar_delay`` cycles after the request.
    * Fetch fills and LOADs share the AXI read data channel, which returns bursts in AR
      order: a fill waits for the R beats of a LOAD whose AR came first, and a LOAD's data
      waits behind a fill whose AR came first — the one in flight, or the one the front end
      starts while the LOAD is dispatched (it runs ahead: pc + 1 at once, pc + 2 when the
      LOAD retires, then one instruction per dispatch; predicted up to the LOAD's AR,
      ``load_ar_delay`` cycles after its start, stopping at a branch or a wait).  The
      waiting side is delayed until the other's last beat.
    * A queue instruction passes ``rtl/checks.py`` InstructionChecker, which holds the
      dispatcher ``check_steps[opcode] + check_overhead`` cycles (one step per rule: 3 for
      LOAD/STORE, 11 for MATMUL, 17 for VECTOR; an instruction that does nothing — no rows,
      tiles or bytes — takes a single step); the unit sees the command ``issue_latency``
      cycles after that.  It is dispatched once its queue has a free slot
      (``queue_depth`` entries; a slot frees when its instruction starts).
    * SYNC SET/CLEAR/FENCE and HALT wait until every queue is idle; EPI waits until the ARRAY
      and VECTOR queues are idle; HALT stops ``halt_latency`` cycles after its dispatch at the
      earliest.  SYNC WAIT that is not satisfied costs its timeout.

Queues (each executes its instructions in order, one at a time)
    An instruction starts at ``max(issue, previous end + unit_gap, arrival of every token it
    pops)`` and pushes its tokens at its end.  Costs (command to ``done``):

    * LOAD/STORE (``rtl/dma*.py``): ``dram_latency + ceil(beats · B / dram_bytes_per_cycle) +
      load_overhead`` (``store_overhead``).  Packed transfers (``dram_stride = row_bytes`` and
      on-chip rows packed) are one row; otherwise every row costs ``max(DRAM beats, on-chip
      beats)`` plus a flush cycle when the DRAM and on-chip offsets inside a beat differ.  Rows
      pipeline, so the latency is paid once, as long as at most ``dma_outstanding`` bursts
      (one per row and per aligned chunk of ``dma_chunk_beats`` beats) are in flight: burst i
      starts its data no earlier than ``dram_latency`` after burst i − ``dma_outstanding``
      completed (last R beat; B response for a STORE), which makes many short rows cost
      about the latency per ``dma_outstanding`` rows.  0 rows: 1 cycle.
    * MATMUL (``rtl/matmul_unit.py``) with T = m_tiles·n_tiles tiles:
      ``T · P·max(k, R) + C + TR + matmul_overhead``: each tile streams P·max(k, R) k-steps,
      the array drain (C + TR), the epilogue and the writer are paid once.  Without write-back
      (``wb = 0``) ``matmul_nowb_overhead`` replaces ``matmul_overhead``;  ``acc_in`` adds
      ``R·P + R + P + 1`` per tile (reading the accumulator tile back), rowmax UPDATE adds
      ``rowmax_update``.  Quantized B is decoded on the fly at no extra cost.
    * VECTOR element ops and reductions (``rtl/vector_exec*.py``): ``vector_latency`` + the
      VectorUnit's latency ``24 + Lr`` (Lr, the lane adder tree: 6 for L ≤ 4, 8 for L = 8 or
      16) (+ ``reduce_latency`` for RSUM/RMAX/RSUMSQ/ARGMAX4; + for ARGMAX4 ``argmax_latency``
      + ArgmaxTop4's ``2 + (L > 1) + log2(L / min(L, 4))`` + ``ceil(32 / B) − 1`` result rows;
      + ``activate_latency`` for ACTIVATE, + ``one_lane_latency`` for RECIP/RSQRT) plus, per row,
      ``max(ceil(beats · c), w)`` where beats = ceil(length / L), c = the scratchpad rows a
      beat reads (``L·bytes/B`` for src0 and a TENSOR src1; at least 1) and w = the rows the
      result row writes, ``ceil(length · dst bytes / B)`` (writes go to a second port, one row
      per cycle; reductions write a few bytes per row and have no w).  ACTIVATE
      runs on ``max(1, L // 8)`` lanes (a row costs at least ceil(length / those lanes)); RECIP
      and RSQRT on one lane (a row costs at least ``length + beats``).
    * VectorMove (``rtl/vector_move*.py``): TRANSPOSE in tiles of T = min(L, 16) source rows
      (fp32 result: at most B/4) × one source beat (Ps = B / source bytes elements):
      ``ceil(length / Ps) · rows + ceil(rows / T) · length + tiles · transpose_tile_latency +
      move_latency`` (each tile reads its rows, waits for the last answer, writes one segment
      per column); QUANTIZE per row ``max(ceil(length / L), reads + writes)`` +
      ``quantize_latency``; DEQUANTIZE per row ``max(ceil(length / L) (twice for fp32), reads +
      writes)`` + ``move_latency`` (one scratchpad port carries reads and writes).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from unified_engine.config import EngineConfig
from unified_engine.isa import Opcode, VecOp
from unified_engine.isa_enums import ElemFormat, MemTarget, RowMaxMode, VecBcast, WeightFormat

__all__ = ["TimingParams"]

_BINARY = frozenset({VecOp.ADD, VecOp.SUB, VecOp.MUL, VecOp.MAX, VecOp.MIN})
_REDUCE = frozenset({VecOp.RSUM, VecOp.RMAX, VecOp.RSUMSQ, VecOp.ARGMAX4})
_ESIZE = {ElemFormat.BF16: 2, ElemFormat.FP32: 4}
_WEIGHT_BITS = {WeightFormat.BF16: 16, WeightFormat.INT4: 4, WeightFormat.FP4: 4,
                WeightFormat.IF4: 4, WeightFormat.NVFP4: 4, WeightFormat.INT8: 8,
                WeightFormat.FP8: 8, WeightFormat.IF8: 8}


def _empty(opcode: Opcode, f: dict[str, Any]) -> bool:
    """The instruction does nothing (the checker's and the units' early exit)."""
    if opcode in (Opcode.LOAD, Opcode.STORE):
        return f["rows"] == 0 or f["row_bytes"] == 0
    if opcode is Opcode.MATMUL:
        return f["m_tiles"] == 0 or f["n_tiles"] == 0
    return f["rows"] == 0 or f["length"] == 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class TimingParams:
    """Cycle-cost parameters of the model (see the module docstring for the rules).

    Use :meth:`for_config` for the defaults of an engine; every field is overridable with
    ``dataclasses.replace``.  ``dram_bytes_per_cycle`` defaults to one AXI beat per cycle
    (the anchor's DDR4 x32 at 1:1 clock delivers exactly 32 B/cycle).  The defaults were
    measured on the Verilated RTL of ``sim_small``; the latencies that grow with the datapath
    (``vector_latency``, ``matmul_overhead``) are the ones to re-measure on a larger engine.
    """

    dram_bytes_per_cycle: float
    #: first-beat latency of every AXI read burst and B latency after the last W beat (the
    #: Verilator harness's DRAM model uses the same number)
    dram_latency: int = 64
    queue_depth: int = 8
    icache_line: int = 8
    #: fetch miss: AR, settling of the cache RAMs and the answer (``rtl/fetch.py``)
    fetch_overhead: int = 3
    #: fetch miss: cycles from the request to the fill's AR (hit check, AR state)
    fetch_ar_delay: int = 2
    #: LOAD: cycles from the command to its first AR (``rtl/dma.py``: the window check)
    load_ar_delay: int = 3
    branch_penalty: int = 3
    mul_latency: int = 2
    div_latency: int = 34
    #: InstructionChecker steps per queue opcode (``rtl/checks.py``: one rule per step)
    check_steps_dma: int = 3
    check_steps_matmul: int = 11
    check_steps_vector: int = 17
    #: dispatcher cycles per queue instruction beyond its checker steps (decode, override,
    #: address operands, checker pipeline, queue push)
    check_overhead: int = 6
    #: cycles from the end of dispatch to the unit taking the command (queue FIFO, command
    #: register)
    issue_latency: int = 3
    #: a unit takes its next command this many cycles after ``done`` (idle handshake)
    unit_gap: int = 1
    #: HALT: cycles from its dispatch to STATUS.DONE when nothing is outstanding
    halt_latency: int = 4
    #: AXI bursts of one kind the DRAM accepts in flight (the Verilator harness's
    #: ``max_outstanding``; a LOAD burst is in flight until its last R beat, a STORE burst
    #: until its B response)
    dma_outstanding: int = 8
    #: DMA bursts are cut at aligned chunks of this many beats (``rtl/dma.py`` max_burst)
    dma_chunk_beats: int = 64
    #: LOAD: read buffer 2, realigner 1, done 1, AR issue 3 (``rtl/dma.py``)
    load_overhead: int = 7
    #: STORE: on-chip read 1, response FIFO 2, realigner 1, B handling (``rtl/dma.py``)
    store_overhead: int = 8
    #: MATMUL with write-back: setup, first k-step, epilogue, out FIFO and writer (the array
    #: drain C + TR is added separately)
    matmul_overhead: int = 68
    #: MATMUL without write-back (``wb = 0``): setup and first k-step only
    matmul_nowb_overhead: int = 14
    #: rowmax UPDATE: the read-merge-write of the last rmax lines
    rowmax_update: int = 13
    #: VECTOR element op around the VectorUnit: command register, request, memory, row FIFO
    #: (2), framer, converter, writer (the unit itself: :meth:`vector_unit_latency`)
    vector_latency: int = 7
    #: RSUM/RMAX/RSUMSQ/ARGMAX4: the RowFinisher
    reduce_latency: int = 8
    #: ARGMAX4 beyond ArgmaxTop4's tree and the extra rows of the 32-byte result
    #: (:meth:`argmax_extra`)
    argmax_latency: int = 0
    #: ACTIVATE: the Activation datapath
    activate_latency: int = 38
    #: RECIP/RSQRT: the one-lane function's serializer
    one_lane_latency: int = 1
    #: TRANSPOSE/DEQUANTIZE: VectorMove command latch and last answer
    move_latency: int = 2
    #: TRANSPOSE: per tile, the wait for the last read answer
    transpose_tile_latency: int = 1
    #: QUANTIZE: the encoder pipeline (an IF format's metric search dominates)
    quantize_latency: int = 40

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

    # ----- dispatcher ----------------------------------------------------------------------

    def fetch_miss(self) -> int:
        """Cycles to fill one instruction-cache line."""
        return (self.dram_latency + math.ceil(self.icache_line * 32 / self.dram_bytes_per_cycle)
                + self.fetch_overhead)

    def fill_beats(self) -> int:
        """Cycles the AXI read data channel carries one instruction-cache line."""
        return math.ceil(self.icache_line * 32 / self.dram_bytes_per_cycle)

    def check_cycles(self, opcode: Opcode, f: dict[str, Any] | None = None) -> int:
        """Dispatcher cycles of a queue instruction (InstructionChecker included).

        ``f`` (resolved fields) lets an empty instruction (no rows / tiles / bytes) take the
        checker's single step; without it the full step count is charged."""
        if f is not None and _empty(opcode, f):
            return 1 + self.check_overhead
        steps = {Opcode.LOAD: self.check_steps_dma, Opcode.STORE: self.check_steps_dma,
                 Opcode.MATMUL: self.check_steps_matmul}.get(opcode, self.check_steps_vector)
        return steps + self.check_overhead

    # ----- queue units ---------------------------------------------------------------------

    @staticmethod
    def vector_unit_latency(config: EngineConfig) -> int:
        """The VectorUnit's fixed latency (``rtl/vector.py``): binary op 4 + functions 16 +
        the lane reduction tree (``rtl/multi_add.py``: ``max(1, s) + 1 + s + 3`` with s =
        ceil(ceil_log2(L) / 2) adder stages) + the accumulator 4 — whatever the op."""
        s = -(-max(0, (config.lanes - 1).bit_length()) // 2)
        return 4 + 16 + (max(1, s) + 1 + s + 3) + 4

    def argmax_extra(self, config: EngineConfig) -> int:
        """ARGMAX4's additions: ArgmaxTop4's latency (``rtl/argmax.py``: 2 + (g > 1) +
        log2(L / g), g = min(L, 4)) and the scratchpad rows of a 32-byte result after the
        first."""
        lanes = config.lanes
        group = min(lanes, 4)
        tree = 2 + (group > 1) + (lanes // group).bit_length() - 1
        return self.argmax_latency + tree + max(0, -(-32 // config.axi_bytes) - 1)

    def cost(self, config: EngineConfig, opcode: Opcode, f: dict[str, Any]) -> int:
        """Cycles of the queue instruction ``opcode`` with resolved fields ``f``."""
        if opcode in (Opcode.LOAD, Opcode.STORE):
            return self.dma(config, f, store=opcode is Opcode.STORE)
        if opcode is Opcode.MATMUL:
            return self.matmul(config, f)
        return self.vector(config, f)

    def dma(self, config: EngineConfig, f: dict[str, Any], store: bool = False) -> int:
        """Cycles of a LOAD/STORE with resolved fields ``f`` (byte addresses)."""
        rows, row_bytes = f["rows"], f["row_bytes"]
        if rows == 0 or row_bytes == 0:
            return 1
        b = config.axi_bytes
        dram, stride = f["dram"], f["dram_stride"]
        sram_stride = f["sram_stride"] or row_bytes
        # scratchpad addresses count B-byte rows, bias/scale addresses 2-byte entries
        sram = f["sram"] * (b if f["mem"] is MemTarget.SCRATCHPAD else 2)

        def span(addr: int, n: int) -> int:
            return (addr + n - 1) // b - addr // b + 1

        if stride == row_bytes and sram_stride == row_bytes:
            rows, row_bytes = 1, rows * row_bytes  # packed: merged into one row
        chunk = self.dma_chunk_beats * b
        per_beat = b / self.dram_bytes_per_cycle
        window = self.dma_outstanding
        t = 0.0  # cycles of data transfer so far (first beat = 0)
        ends: list[float] = []  # when each burst's data ended
        for r in range(rows):
            d, s = dram + r * stride, sram + r * sram_stride
            cycles = max(span(d, row_bytes), span(s, row_bytes)) + (d % b != s % b)
            bursts = (d + row_bytes - 1) // chunk - d // chunk + 1
            for _ in range(bursts):
                if len(ends) >= window:
                    # the burst `window` places back must be complete (its last R beat, or
                    # its B response) before this one's AR/AW, whose data then takes the
                    # latency again
                    t = max(t, ends[-window] + self.dram_latency)
                t += cycles / bursts * per_beat
                ends.append(t)
        overhead = self.store_overhead if store else self.load_overhead
        return self.dram_latency + math.ceil(t - 1e-9) + overhead

    def matmul(self, config: EngineConfig, f: dict[str, Any]) -> int:
        """Cycles of a MATMUL with resolved fields ``f``."""
        tiles = f["m_tiles"] * f["n_tiles"]
        if tiles == 0:
            return 1
        r, p = config.rows, config.pe_interleave
        cycles = tiles * p * max(f["k"], r) + config.cols + config.tile_rows
        cycles += self.matmul_overhead if f["wb"] else self.matmul_nowb_overhead
        if f["acc_in"]:
            cycles += tiles * (r * p + r + p + 1)
        if f["rowmax"] is RowMaxMode.UPDATE:
            cycles += self.rowmax_update
        return cycles

    def vector(self, config: EngineConfig, f: dict[str, Any]) -> int:
        """Cycles of a VECTOR instruction with resolved fields ``f``."""
        rows, length, op = f["rows"], f["length"], f["op"]
        if rows == 0 or length == 0:
            return 1
        lanes, b = config.lanes, config.axi_bytes
        beats = math.ceil(length / lanes)
        if op is VecOp.TRANSPOSE:
            # tiles of T source rows × one source beat: read T rows, wait for the last
            # answer, write one segment per column (rtl/vector_move_transpose.py)
            per_beat = b // _ESIZE[f["src0_fmt"]]
            tile = min(lanes, 16)
            if f["dst_fmt"] is ElemFormat.FP32:
                tile = min(tile, b // 4)
            groups, col_tiles = math.ceil(rows / tile), math.ceil(length / per_beat)
            return (col_tiles * rows + groups * length
                    + groups * col_tiles * self.transpose_tile_latency + self.move_latency)
        if op in (VecOp.QUANTIZE, VecOp.DEQUANTIZE):
            code = math.ceil(length * _WEIGHT_BITS[f["qfmt"]] / 8 / b)
            if op is VecOp.QUANTIZE:
                per_row = max(beats, math.ceil(2 * length / b) + code)
                return rows * per_row + self.quantize_latency
            wide = f["dst_fmt"] is ElemFormat.FP32
            out = math.ceil(length * (4 if wide else 2) / b)
            per_row = max(beats * (2 if wide else 1), code + out)
            return rows * per_row + self.move_latency

        def rows_per_beat(fmt: ElemFormat) -> float:
            return lanes * (4 if fmt is ElemFormat.FP32 else 2) / b

        reads = 0.0 if op is VecOp.FILL else rows_per_beat(f["src0_fmt"])
        if op in _BINARY and f["bcast"] is VecBcast.TENSOR:
            reads += rows_per_beat(f["src1_fmt"])
        per_row = math.ceil(beats * max(1.0, reads))
        latency = self.vector_latency + self.vector_unit_latency(config)
        if op not in _REDUCE:
            # the write port takes one scratchpad row per cycle: an fp32 result row of a
            # bf16-wide beat needs more rows than its read
            per_row = max(per_row, math.ceil(length * _ESIZE[f["dst_fmt"]] / b))
        if op in _REDUCE:
            latency += self.reduce_latency
            if op is VecOp.ARGMAX4:
                latency += self.argmax_extra(config)
        elif op is VecOp.ACTIVATE:
            latency += self.activate_latency
            per_row = max(per_row, math.ceil(length / max(1, lanes // 8)))
        elif op in (VecOp.RECIP, VecOp.RSQRT):
            latency += self.one_lane_latency
            per_row = max(per_row, length + beats)
        return latency + rows * per_row
