"""``VectorExec``: the VECTOR queue's execution unit for the element-wise, function, reduction
and argmax operations (docs/isa.md "VECTOR"; golden model ``host.units.vector``).

Handled: COPY, FILL, ADD/SUB/MUL/MAX/MIN (bcast TENSOR, ROW, COL, SCALAR), EXP, RECIP, RSQRT,
ACTIVATE, RSUM, RMAX, RSUMSQ (with ``accumulate``) and ARGMAX4, every src0/src1/dst format.
QUANTIZE, DEQUANTIZE and TRANSPOSE belong to ``VectorMove``; given one, this unit finishes at
once without touching memory.

Structure (one scratchpad port, shared by reads and writes)::

    spad ─► OperandReader src0 ─► BeatFeeder ─► VectorUnit ─┬─► BeatFramer ──────────┐
         ─► OperandReader src1 ─┬─(TENSOR/COL B beats)┘     ├─► Activation ─► (framer)│
            (+ COL cache)       └─► ScalarSerializer         ├─► RowFinisher ─┐       │
                                   (ROW scalars, old dst)    └─► ArgmaxTop4 ──┴► WordPacker
    spad ◄─ RowWriter ◄─ OutConverter ◄── (framer: element rows | packer: per-row results)

Every operand beat becomes one ``VectorUnit`` beat (COPY/FILL/EXP/RECIP/RSQRT: op COPY with
the function; binary ops: B from the src1 beats, the per-row scalar or ``imm``; ACTIVATE:
MUL by the entry's scale, then the activation; RSUMSQ: MUL with B = A). Reductions use the
unit's 4 accumulate chains (beat j of a row on chain j mod 4, as docs/isa.md defines RSUM);
the finisher merges them. The readers request rows ahead with credits (``read_ahead`` rows
each) and the arbiter puts one request per cycle on the port: the writer's pending row first,
otherwise the readers in turn; a request that is not taken is held unchanged. Answers are
routed back by a tag FIFO.

Operand overlap: the result is exact when ``dst`` does not overlap a source, and for the
in-place case where ``dst`` is ``src0`` (or a TENSOR ``src1``) with the same start, row
stride (not overlapping its own rows) and element format — every scratchpad row is read once
before it is written. Other overlaps may read bytes that the instruction already wrote (the
ISA simulator reads everything first); such instructions are refused at dispatch with
ILLEGAL_OPERAND (docs/isa.md "Operand overlap").

Timing
------
``unit.cmd.ready`` is high while idle; ``done`` pulses in the cycle the last write is taken
(the cycle after the command for rows = 0, length = 0 or a ``VectorMove`` op). Latency of a
one-beat instruction with a memory that answers in 1 cycle: ``VectorUnit.latency`` + 8 for an
element op (command register, request, memory, row FIFO 2, framer, converter, writer: 1 each;
the unit is 14 cycles for L = 4 without functions, 30 with EXP), + 38 for ACTIVATE
(``Activation``), + ``RowFinisher.latency`` (8) for a reduction (the packer replaces the
framer), and + ``ArgmaxTop4.latency`` + the result's extra rows (32 bytes: 3 more on
sim_small) for ARGMAX4.
Narrow operations add ``L / n - 1`` cycles.

Throughput is the port's: one request per cycle, and in steady state the port never idles.
A beat costs the scratchpad rows it reads (src0; a TENSOR src1; a COL src1 only in the first
row when it fits the ``col_cache``): one per bf16 beat when ``B = 2·L`` (the default engine
and sim_small), two per fp32 beat, a fraction when a row holds several beats; plus the rows
written. So a bf16 unary op streams one beat per 2 cycles, a bf16 binary TENSOR op one per
3, a reduction one per cycle (its results are a few bytes per row). With ``write_port=True``
the writes go to a second port and a unary op streams one beat per cycle. An operation whose
function (or the activation) is built in ``n < L`` lanes runs ``L / n`` sub-beats per beat.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..config import EngineConfig
from ..isa import ElemFormat, VecBcast, VecOp, isa_for
from .argmax import ArgmaxTop4
from .engine_if import (
    EPI_ENTRY,
    EPI_TABLE,
    UnitSignature,
    memory_geometry,
    sram_port_signature,
)
from .vector import BSource, Reduce, VectorFn, VectorOp, VectorUnit
from .vector_exec_act import Activation
from .vector_exec_feed import BeatFeeder
from .vector_exec_pack import BeatFramer, WordPacker
from .vector_exec_read import OperandReader, ScalarSerializer
from .vector_exec_reduce import RowFinisher
from .vector_exec_write import OutConverter, OutMode, RowWriter

__all__ = ["VectorExec"]


class _Path(enum.Enum, shape=2):
    """Where the vector unit's output beats go."""

    ELEMENT = 0  #: element results → framer
    ACTIVATE = 1  #: → activation → framer
    REDUCE = 2  #: chain values → finisher → packer
    ARGMAX = 3  #: → argmax → packer


_BINARY = {VecOp.ADD: VectorOp.ADD, VecOp.SUB: VectorOp.SUB, VecOp.MUL: VectorOp.MUL,
           VecOp.MAX: VectorOp.MAX, VecOp.MIN: VectorOp.MIN}  # fmt: skip
_FUNCTION = {VecOp.EXP: ("exp", VectorFn.EXP), VecOp.RECIP: ("reciprocal", VectorFn.RECIPROCAL),
             VecOp.RSQRT: ("rsqrt", VectorFn.RSQRT)}  # fmt: skip


#: Element path cycles outside the vector unit: command register, read request, memory (1),
#: row FIFO (2), framer, converter, write request.
_OVERHEAD = 8


class VectorExec(wiring.Component):
    """The VECTOR execution unit (element-wise ops, functions, reductions, argmax).

    Parameters
    ----------
    config:
        The engine (``lanes``, ``axi_bytes``, scratchpad size, ``reduce_guard_bits``).
    functions:
        Function units, as :class:`~.vector.VectorUnit` takes them: names built in every lane,
        or ``{name: n}`` to build one in lanes 0…n-1 only (n a power of two), so that EXP,
        RECIP or RSQRT runs n elements per cycle (L / n cycles per beat). A function left out
        gives canonical NaNs. Default ``{"exp": L, "reciprocal": 1, "rsqrt": 1}``: softmax's
        EXP streams at full rate, while RECIP and RSQRT are applied by the kernels to one
        value per row (reciprocal and rsqrt are 26 of a lane's 37 DSP slices,
        docs/resources.md). ``vector.FUNCTIONS`` builds all three everywhere.
    act_lanes:
        Lanes of the ACTIVATE block (0 or a power of two dividing L; default ``max(1, L // 8)``:
        matmul outputs are activated in the array's epilogue, so ACTIVATE is the rarer path).
        Each lane is a sigmoid datapath, three multipliers and two adders (Yosys xc7 estimate:
        2.7 K LUT, 24 DSP); with n < L, ACTIVATE runs L / n cycles per beat. 0 leaves the
        block out (ACTIVATE then writes ``x·scale``, not the ISA's result).
    read_ahead:
        Scratchpad rows each operand reader may have requested or buffered (≥ 2).
    col_cache:
        Scratchpad rows of the COL-broadcast cache (default 64: 1024 bf16 elements on the
        default engine; 0 = none). A COL vector that fits is read from the port for the first
        row only, so a COL binary op costs the port what a ROW one does.
    write_port:
        Give the writes their own port ``spad_w`` (same signature as ``spad``), so reads and
        writes never share a cycle's request slot.

    Ports
    -----
    unit : Out(UnitSignature())
        ``cmd`` (the resolved VECTOR word) in, ``done`` pulse out (engine_if).
    spad : Out(sram_port_signature(memory_geometry(config)["spad"]))
        The scratchpad (client side).
    epi : In(EPI_TABLE)
        The epilogue table (ACTIVATE reads entry ``epi``; its ``scale`` and activation).
    spad_w : Out(same as spad)
        Only with ``write_port=True``: the write port (its ``resp`` is unused).

    Attributes
    ----------
    latency:
        Cycles from the command transfer to ``done`` of a one-beat element-wise instruction
        with a memory that answers in 1 cycle (``VectorUnit.latency + 8``; module docstring).
    function_lanes, act_lanes, widths:
        ``{function: lanes built}``, the activation lanes, and the beat widths the unit runs
        at (L first, then the narrow ones).
    """

    def __init__(self, config: EngineConfig, *,
                 functions: Iterable[str] | Mapping[str, int] | None = None,
                 act_lanes: int | None = None, read_ahead: int = 8, col_cache: int = 64,
                 write_port: bool = False):  # fmt: skip
        if not isinstance(config, EngineConfig):
            raise TypeError(f"VectorExec needs an EngineConfig, got {type(config).__name__}")
        self.config = config
        self.lanes = lanes = config.lanes
        self.isa = isa_for(config)
        self.geometry = memory_geometry(config)["spad"]
        # Everything is checked before any sub-block is built (an unused elaboratable warns).
        if functions is None:
            functions = {"exp": lanes, "reciprocal": 1, "rsqrt": 1}
        act_lanes = max(1, lanes // 8) if act_lanes is None else act_lanes
        if isinstance(act_lanes, bool) or not isinstance(act_lanes, int) or not (
                act_lanes == 0 or (0 < act_lanes <= lanes and lanes % act_lanes == 0
                                   and act_lanes & (act_lanes - 1) == 0)):  # fmt: skip
            raise ValueError(f"VectorExec: act_lanes must be 0 or a power of two dividing "
                             f"lanes={lanes}, got {act_lanes!r}")  # fmt: skip
        if isinstance(read_ahead, bool) or not isinstance(read_ahead, int) or read_ahead < 2:
            raise ValueError(f"VectorExec: read_ahead (reader FIFO depth) must be an int ≥ 2, "
                             f"got {read_ahead!r}")  # fmt: skip
        if isinstance(col_cache, bool) or not isinstance(col_cache, int) or col_cache < 0:
            raise ValueError(f"VectorExec: col_cache must be an int ≥ 0 (rows), got {col_cache!r}")
        if isinstance(functions, Mapping):
            for name, n in functions.items():
                if isinstance(n, int) and n & (n - 1):
                    raise ValueError(f"VectorExec: functions[{name!r}] = {n} lanes must be a "
                                     f"power of two (a beat runs as L / n sub-beats)")
        self._vu = VectorUnit(config, functions=functions, sum_init="value")
        self.function_lanes = dict(self._vu.function_lanes)
        self.act_lanes = act_lanes
        widths = {lanes, *self.function_lanes.values()}
        if act_lanes:
            widths.add(act_lanes)
        self.widths = tuple(sorted(widths, reverse=True))  # widths[0] = L, the wide case
        self.latency = self._vu.latency + _OVERHEAD
        self.read_ahead = read_ahead
        self.col_cache = col_cache
        self.write_port = bool(write_port)
        self._act = Activation(act_lanes) if act_lanes else None
        self._argmax = ArgmaxTop4.from_config(config)
        self._finisher = RowFinisher(config)
        port = sram_port_signature(self.geometry)
        ports = {"unit": Out(UnitSignature()), "spad": Out(port), "epi": In(EPI_TABLE)}
        if self.write_port:
            ports["spad_w"] = Out(port)
        super().__init__(ports)

    def _width_index(self, n: int) -> int:
        return self.widths.index(n) if n in self.widths else 0

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        ins = Signal(self.isa.layouts["vector"])
        m.submodules.vu = vu = self._vu
        m.submodules.argmax = argmax = self._argmax
        m.submodules.finisher = finisher = self._finisher
        m.submodules.reader0 = reader0 = OperandReader(self.config, depth=self.read_ahead)
        m.submodules.reader1 = reader1 = OperandReader(self.config, depth=self.read_ahead,
                                                       cache_rows=self.col_cache)
        m.submodules.serializer = serializer = ScalarSerializer(lanes)
        m.submodules.feeder = feeder = BeatFeeder(lanes, vu.a_layout, self.widths)
        m.submodules.framer = framer = BeatFramer(lanes, self.widths)
        m.submodules.packer = packer = WordPacker(lanes)
        m.submodules.converter = converter = OutConverter(lanes)
        m.submodules.writer = writer = RowWriter(self.config)

        # ---- command: IDLE → SETUP (decode, start the blocks) → RUN → done.
        start = Signal()
        run = Signal()
        cmd = self.unit.cmd
        m.d.comb += cmd.ready.eq(~start & ~run)
        m.d.sync += start.eq(cmd.valid & cmd.ready)
        with m.If(cmd.valid & cmd.ready):
            m.d.sync += ins.eq(cmd.payload)

        op, bcast = ins.op, ins.bcast
        binary = Signal()
        reduction = Signal()
        handled = Signal()
        m.d.comb += [
            binary.eq(Cat(*(op == o for o in _BINARY)).any()),
            reduction.eq((op == VecOp.RSUM) | (op == VecOp.RMAX) | (op == VecOp.RSUMSQ)),
            handled.eq(Cat(*(op == o for o in VecOp if o not in (
                VecOp.QUANTIZE, VecOp.DEQUANTIZE, VecOp.TRANSPOSE))).any()),
        ]
        empty = (ins.rows == 0) | (ins.length == 0) | ~handled
        b_stream = binary & ((bcast == VecBcast.TENSOR) | (bcast == VecBcast.COL))
        row_scalar = binary & (bcast == VecBcast.ROW)
        prev = reduction & ins.accumulate
        fp32 = {name: getattr(ins, f"{name}_fmt") == ElemFormat.FP32
                for name in ("src0", "src1", "dst")}
        entry = self.epi[ins.epi]

        # What the datapath does (combinational from the held instruction).
        path = Signal(_Path)
        ctl = feeder.cfg
        with m.Switch(op):
            for vop, unit_op in _BINARY.items():
                with m.Case(vop):
                    m.d.comb += [
                        ctl.op.eq(unit_op),
                        ctl.b_src.eq(Mux(b_stream, BSource.STREAM, BSource.SCALAR)),
                    ]
            for vop, (name, fn) in _FUNCTION.items():
                with m.Case(vop):
                    m.d.comb += [ctl.op.eq(VectorOp.COPY), ctl.fn.eq(fn),
                                 ctl.width.eq(self._width_index(self.function_lanes.get(
                                     name, lanes)))]  # fmt: skip
            with m.Case(VecOp.ACTIVATE):
                m.d.comb += [ctl.op.eq(VectorOp.MUL), ctl.b_src.eq(BSource.SCALAR)]
                if self._act is not None:
                    m.d.comb += [path.eq(_Path.ACTIVATE),
                                 ctl.width.eq(self._width_index(self.act_lanes))]
            with m.Case(VecOp.RSUM, VecOp.RMAX):
                m.d.comb += [ctl.op.eq(VectorOp.COPY), path.eq(_Path.REDUCE)]
            with m.Case(VecOp.RSUMSQ):
                m.d.comb += [ctl.op.eq(VectorOp.MUL), ctl.b_src.eq(BSource.SELF),
                             path.eq(_Path.REDUCE)]  # fmt: skip
            with m.Case(VecOp.ARGMAX4):
                m.d.comb += [ctl.op.eq(VectorOp.COPY), path.eq(_Path.ARGMAX)]
            with m.Default():  # COPY, FILL
                m.d.comb += ctl.op.eq(VectorOp.COPY)
        m.d.comb += [
            ctl.rows.eq(ins.rows),
            ctl.length.eq(ins.length),
            ctl.fill.eq(op == VecOp.FILL),
            ctl.row_scalar.eq(row_scalar),
            ctl.reduce.eq(Mux(reduction, Mux(op == VecOp.RMAX, Reduce.MAX, Reduce.SUM),
                              Reduce.NONE)),
            ctl.accumulate.eq(reduction),
            ctl.imm.eq(Mux(op == VecOp.ACTIVATE, entry.scale, ins.imm)),
        ]
        path_now = Signal(_Path)
        go = Signal()
        m.d.comb += go.eq(start & ~empty)
        with m.If(go):
            m.d.sync += path_now.eq(path)

        # Readers: src0 (not FILL); src1 for TENSOR/COL (beats) or ROW (scalars); the old dst
        # values of an accumulating reduction (scalars).
        r0, r1 = reader0.cfg, reader1.cfg
        m.d.comb += [
            r0.base.eq(ins.src0.imm), r0.stride.eq(ins.src0_stride), r0.length.eq(ins.length),
            r0.rows.eq(Mux(op == VecOp.FILL, 0, ins.rows)), r0.fp32.eq(fp32["src0"]),
            r1.base.eq(Mux(prev, ins.dst.imm, ins.src1.imm)),
            r1.stride.eq(ins.src1_stride),
            r1.repeat.eq(bcast == VecBcast.COL),
            r1.fp32.eq(Mux(prev, fp32["dst"], fp32["src1"])),
            r1.rows.eq(Mux(b_stream, ins.rows, Mux(row_scalar | prev, 1, 0))),
            r1.length.eq(Mux(b_stream, ins.length, ins.rows)),
        ]  # fmt: skip
        for block in (reader0, reader1, feeder, framer, finisher, writer):
            m.d.comb += block.start.eq(go)

        # Output side.
        per_row_out = (path == _Path.ELEMENT) | (path == _Path.ACTIVATE)
        m.d.comb += [
            framer.cfg.rows.eq(ins.rows),
            framer.cfg.last_count.eq(((ins.length - 1) & (lanes - 1)) + 1),
            framer.cfg.width.eq(ctl.width),
            finisher.cfg.max.eq(op == VecOp.RMAX),
            finisher.cfg.accumulate.eq(prev),
            finisher.cfg.rows.eq(ins.rows),
            writer.cfg.base.eq(ins.dst.imm),
            writer.cfg.stride.eq(Mux(per_row_out, ins.dst_stride, 0)),
            writer.cfg.length.eq(Mux(per_row_out, ins.length, 0)),
            writer.cfg.fp32.eq(fp32["dst"] | (op == VecOp.ARGMAX4)),
        ]
        out_mode = Signal(OutMode)
        with m.If(go):
            m.d.sync += out_mode.eq(Mux(op == VecOp.ARGMAX4, OutMode.RAW,
                                        Mux(fp32["dst"], OutMode.FP32, OutMode.BF16)))
        m.d.comb += [converter.mode.eq(out_mode), packer.group8.eq(path_now == _Path.ARGMAX)]
        # The table entry and the scalar operand are registered for the run (the table may
        # only change while the unit is idle; registering keeps its 16-way mux off the lanes).
        held_entry = Signal(EPI_ENTRY)
        held_imm = Signal(32)
        with m.If(go):
            m.d.sync += [held_entry.eq(entry), held_imm.eq(ctl.imm)]

        # ---- input side: src0 beats and per-row scalars into the feeder, B beats.
        held_row_scalar = Signal()
        held_b_stream = Signal()
        held_prev = Signal()
        with m.If(go):
            m.d.sync += [held_row_scalar.eq(row_scalar), held_b_stream.eq(b_stream),
                         held_prev.eq(prev)]  # fmt: skip
        wiring.connect(m, reader0.beats, feeder.src0)
        wiring.connect(m, feeder.a, vu.a)
        m.d.comb += [
            vu.scalar.eq(Mux(held_row_scalar, feeder.scalar_value, held_imm)),
            vu.b.payload.eq(reader1.beats.payload.data),
            vu.b.valid.eq(held_b_stream & reader1.beats.valid),
            serializer.beats.payload.eq(reader1.beats.payload),
            serializer.beats.valid.eq(~held_b_stream & reader1.beats.valid),
            reader1.beats.ready.eq(Mux(held_b_stream, vu.b.ready, serializer.beats.ready)),
            feeder.scalar.payload.eq(serializer.o.payload),
            feeder.scalar.valid.eq(held_row_scalar & serializer.o.valid),
            finisher.prev.payload.eq(serializer.o.payload),
            finisher.prev.valid.eq(held_prev & serializer.o.valid),
            serializer.o.ready.eq(Mux(held_row_scalar, feeder.scalar.ready,
                                      finisher.prev.ready)),
        ]  # fmt: skip

        # ---- vector-unit output → framer / activation / finisher / argmax.
        o = vu.o.payload
        to = {p: Signal(name=f"to_{p.name.lower()}") for p in _Path}
        for p, sig in to.items():
            m.d.comb += sig.eq(vu.o.valid & (path_now == p))
        ready = {
            _Path.ELEMENT: framer.i.ready,
            _Path.REDUCE: finisher.i.ready,
            _Path.ARGMAX: argmax.i.ready,
            _Path.ACTIVATE: self._act.i.ready if self._act is not None else 0,
        }
        m.d.comb += vu.o.ready.eq(
            Mux(path_now == _Path.ELEMENT, ready[_Path.ELEMENT],
                Mux(path_now == _Path.REDUCE, ready[_Path.REDUCE],
                    Mux(path_now == _Path.ARGMAX, ready[_Path.ARGMAX],
                        ready[_Path.ACTIVATE]))))  # fmt: skip
        last_count = Signal(range(lanes + 1))
        with m.If(go):
            m.d.sync += last_count.eq(((ins.length - 1) & (lanes - 1)) + 1)
        m.d.comb += [
            finisher.i.payload.reduce.eq(o.reduce),
            finisher.i.payload.first.eq(o.first),
            finisher.i.payload.last.eq(o.last),
            finisher.i.payload.chain.eq(o.chain),
            finisher.i.valid.eq(to[_Path.REDUCE]),
            argmax.i.payload.data.eq(o.data),
            argmax.i.payload.count.eq(Mux(o.last, last_count, lanes)),
            argmax.i.payload.last.eq(o.last),
            argmax.i.valid.eq(to[_Path.ARGMAX]),
        ]
        framer_in = framer.i.payload
        if self._act is not None:
            act = self._act
            m.submodules.act = act
            n = self.act_lanes
            m.d.comb += [
                act.entry.eq(held_entry),
                act.i.valid.eq(to[_Path.ACTIVATE]),
                act.i.payload.last.eq(o.last),
                *(act.i.payload.data[k].eq(o.data[k]) for k in range(n)),
                act.o.ready.eq(framer.i.ready),
            ]
            from_act = path_now == _Path.ACTIVATE
            m.d.comb += [
                framer.i.valid.eq(Mux(from_act, act.o.valid, to[_Path.ELEMENT])),
                framer_in.last.eq(Mux(from_act, act.o.payload.last, o.last)),
                *(framer_in.data[k].eq(Mux(from_act, act.o.payload.data[k], o.data[k]))
                  for k in range(n)),
                *(framer_in.data[k].eq(o.data[k]) for k in range(n, lanes)),
            ]
        else:
            m.d.comb += [
                framer.i.valid.eq(to[_Path.ELEMENT]),
                framer_in.last.eq(o.last),
                framer_in.data.eq(o.data),
            ]

        # ---- per-row results → packer (finisher: 1 word; argmax: 4 indices + 4 values).
        argmax_row = Signal(len(ins.rows))
        argmax_end = argmax_row == ins.rows - 1
        with m.If(argmax.o.valid & argmax.o.ready):
            m.d.sync += argmax_row.eq(argmax_row + 1)
        with m.If(go):
            m.d.sync += argmax_row.eq(0)
        from_argmax = path_now == _Path.ARGMAX
        words = packer.i.payload.words
        m.d.comb += [
            packer.i.valid.eq(Mux(from_argmax, argmax.o.valid, finisher.o.valid)),
            packer.i.payload.end.eq(Mux(from_argmax, argmax_end, finisher.o.payload.end)),
            words[0].eq(Mux(from_argmax, argmax.o.payload.indices[0],
                            finisher.o.payload.value)),
            *(words[k].eq(argmax.o.payload.indices[k]) for k in range(1, 4)),
            *(words[4 + k].eq(argmax.o.payload.values[k]) for k in range(4)),
            argmax.o.ready.eq(from_argmax & packer.i.ready),
            finisher.o.ready.eq(~from_argmax & packer.i.ready),
        ]  # fmt: skip

        # ---- converter input: framer (element paths) or packer (per-row results).
        packed = (path_now == _Path.REDUCE) | (path_now == _Path.ARGMAX)
        m.d.comb += [
            converter.i.valid.eq(Mux(packed, packer.o.valid, framer.o.valid)),
            converter.i.payload.eq(Mux(packed, packer.o.payload, framer.o.payload)),
            packer.o.ready.eq(packed & converter.i.ready),
            framer.o.ready.eq(~packed & converter.i.ready),
        ]
        wiring.connect(m, converter.o, writer.i)

        # ---- the scratchpad port(s).
        write_done = self._port(m, reader0, reader1, writer)

        # ---- finish.
        with m.If(go):
            m.d.sync += run.eq(1)
        with m.If(write_done):
            m.d.sync += run.eq(0)
        m.d.comb += self.unit.done.eq((start & empty) | write_done)
        return m

    def _port(self, m: Module, reader0, reader1, writer) -> Signal:
        """Arbitrate the readers' and the writer's requests onto the port; route the answers.

        Returns the signal that pulses when the instruction's last write is taken.
        """
        port = self.spad
        wreq = writer.req
        write_done = Signal()
        m.d.comb += write_done.eq(wreq.valid & wreq.ready & wreq.payload.end)
        tags = SyncFIFO(width=1, depth=2 * self.read_ahead)
        m.submodules.tags = tags

        if self.write_port:
            wport = self.spad_w
            m.d.comb += [
                wport.req.valid.eq(wreq.valid),
                wport.req.payload.addr.eq(wreq.payload.addr),
                wport.req.payload.write.eq(1),
                wport.req.payload.data.eq(wreq.payload.data),
                wport.req.payload.be.eq(wreq.payload.be),
                wreq.ready.eq(wport.req.ready),
            ]
            writes = Const(0, 1)
        else:
            writes = wreq.valid

        # Grant: 0 = reader0, 1 = reader1, 2 = writer. A request shown but not taken keeps
        # its grant, so the port's payload is stable while valid & ~ready.
        held = Signal()
        held_grant = Signal(2)
        turn = Signal()  # the reader preferred next
        grant = Signal(2)
        with m.If(held):
            m.d.comb += grant.eq(held_grant)
        with m.Elif(writes):
            m.d.comb += grant.eq(2)
        with m.Elif(reader1.req.valid & (turn | ~reader0.req.valid)):
            m.d.comb += grant.eq(1)
        with m.Else():
            m.d.comb += grant.eq(0)
        valid = Mux(grant == 2, writes, Mux(grant == 1, reader1.req.valid, reader0.req.valid))
        req = port.req
        m.d.comb += [
            req.valid.eq(valid),
            req.payload.write.eq(grant == 2),
            req.payload.addr.eq(Mux(grant == 2, wreq.payload.addr,
                                    Mux(grant == 1, reader1.req.payload,
                                        reader0.req.payload))),
            req.payload.data.eq(wreq.payload.data),
            req.payload.be.eq(Mux(grant == 2, wreq.payload.be, 0)),
            reader0.req.ready.eq(req.ready & (grant == 0)),
            reader1.req.ready.eq(req.ready & (grant == 1)),
        ]  # fmt: skip
        if not self.write_port:
            m.d.comb += wreq.ready.eq(req.ready & (grant == 2))
        taken = req.valid & req.ready
        m.d.sync += [held.eq(req.valid & ~req.ready), held_grant.eq(grant)]
        read = taken & (grant != 2)
        with m.If(read):
            m.d.sync += turn.eq(~grant[0])
        m.d.comb += [tags.w_en.eq(read), tags.w_data.eq(grant[0])]

        resp = port.resp
        m.d.comb += [
            tags.r_en.eq(resp.valid),
            reader0.fill.payload.eq(resp.payload),
            reader1.fill.payload.eq(resp.payload),
            reader0.fill.valid.eq(resp.valid & ~tags.r_data),
            reader1.fill.valid.eq(resp.valid & tags.r_data),
        ]
        return write_done
