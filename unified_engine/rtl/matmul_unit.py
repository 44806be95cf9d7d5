"""``MatmulUnit``: the ARRAY queue's execution unit — MATMUL with the fused epilogue.

Semantics are ``host/units.py: matmul`` (docs/isa.md, MATMUL), bit for bit. The unit takes one
resolved instruction at a time (``engine_if.UnitSignature``) and walks its output tiles (i, j)
in row-block order (``for i < m_tiles: for j < n_tiles``), each tile TR × C, TR = P·R::

    spad ─► A rows ─► Unpacker(TR·16) ──────────────────┐
        └─► B rows ─► Unpacker(16/8/4·C) ─► BOperand ─┐  │   (k = 0: one -0 × +0 beat)
    scale ─► WindowReader (k-block scales, NVFP4 ts) ─┘  ▼
                                                  join ─► ops FIFO ─► SystolicArray ◄─ init
    accumulator Memory ─(acc_in)─► init FIFO ─────────────────────────────────┘   │
                       ◄─(acc_out)──────────────────────────────────────────── results
    bias ─► WindowReader ─► bias beats ─┐                                         │ (wb)
                                        ▼                                         ▼
                                  Epilogue ◄──────────────────────── result FIFO (2·TR rows)
                                     │
              ┌──────────────────────┴──── out FIFO ─────────┐
              ▼ ROW_MAJOR / B_PANEL rows     A_PANEL ▼        ▼ rowmax (last column tile)
          segments ◄──────────── PanelTransposer   RowMaxWriter (UPDATE: read, f32_max)
              └─► SegmentWriter ─► spad writes

Operands
--------
* **A** (tile i: k vectors of TR bf16 from row ``a + i·ceil(k·TR·2/B)``) and **B** (tile j: k
  vectors of C elements from row ``b + j·ceil(k·C·bits/8/B)``) are read row by row through the
  one scratchpad port, each into its own row FIFO (reads are issued only when the FIFO has
  room for the answer), and cut into k-steps by an ``Unpacker``. A_i is re-read for every
  j and B_j for every i (a tile needs all of both; nothing larger than a row is buffered).
* Quantized B: ``BOperand`` decodes each column with its own block scale; the scales of a
  k-block (C consecutive scale entries, ``qscale [+2] + (j·k/block + kb)·C``) are read by a
  ``WindowReader`` on the scale port, the NVFP4 tensor scale once per instruction first.
* ``acc_in``: the accumulator tile ``acc + i·n_tiles + j`` streams from the accumulator
  memory (``acc_tiles·TR`` rows of C fp32, owned by this unit: ``acc_memory``) into the
  array's ``init`` port; ``acc_out`` writes the result rows back (one row per cycle, as the
  array emits them).

Epilogue and output
-------------------
``wb`` sends the result rows through a result FIFO into the ``Epilogue`` (``Order.SCALE_BIAS``,
the EPI entry ``epi``, the bias beat of the row: ROW entry ``bias + m``, COL ``bias + n``,
FULL ``bias + m·N + n``, read by a ``WindowReader`` on the bias port). The array only starts
a tile when the result FIFO is sure to have room for it (credits), because the array's
results cannot wait. Rows become scratchpad segments: ROW_MAJOR and B_PANEL write each row
as C·e contiguous bytes; A_PANEL goes through the ``PanelTransposer`` (columns of the tile);
rowmax INIT/UPDATE writes the epilogue's running maximum of each row after its last column
tile (``RowMaxWriter``). ``done`` pulses when every write has been accepted.

Scratchpad port arbitration: one request register in front of the port; A and B reads take
turns, then the rowmax read, then writes. Reads are bounded by the row FIFOs, so writes are
served whenever the array does not need the port.

Performance (cycles; default config R = C = 8, P = 4, TR = 32, B = 32 bytes)
----------------------------------------------------------------------------
* Array: one k-step every P cycles while the operand path keeps up; tiles with k ≥ R follow
  each other without a bubble, so a tile costs ``P·max(k, R)`` cycles (an ``acc_in`` tile
  adds the array's init load, ``R·P + R + P + 1``). Measured: 128 cycles per k = 32 tile for
  bf16 and 256 per k = 64 tile for INT4 B, with or without FULL bias (ideal memory);
  ~2 % more with 15 % scratchpad stalls and 2-cycle read latency.
* Scratchpad bandwidth: a k-step needs ``(TR·2 + C·bits/8) / B`` rows: 2.5 rows per 4 cycles
  for bf16 B (the port is 62 % busy), 2.125 for 4-bit B. A configuration that needs more than
  P rows per k-step runs at the port's rate instead.
* The epilogue and write-back of tile t overlap the k-loop of tile t + 1 (TR segments per
  tile, each one row write when aligned, in the port's idle cycles). Bias beats for a tile
  are prefetched into a TR-deep FIFO during the previous tile.
* Fixed cost per instruction (measured, ideal memory): ``P·max(k, R) + 112`` cycles for
  one tile at the default configuration (2 setup cycles, ~8 to the first k-step through the
  request register, row FIFO, unpacker and ops FIFO, the array's C + 4 + TR drain, the
  epilogue's 51 and ~6 through the out FIFO and writer); + ~32 for rowmax UPDATE (the last
  lines' read-merge-write) and + ~36 for A_PANEL (a tile's last column needs its last row).
  sim_small (2×2, P = 2): ``P·max(k, R) + 77``. The unit takes the next instruction only
  when idle, so this is paid once per instruction.

Restrictions
------------
The unit streams, while the ISA simulator reads all operands before it writes. So, unlike
the simulator, the output block and the rmax vector must not overlap the A or B panels or
each other, and a ROW_MAJOR ``dst_pitch`` must be 0 or at least N·e (overlapping output rows
are written in tile order, not in row order). The dispatcher refuses such instructions
with ILLEGAL_OPERAND (`rtl/checks.py`, docs/isa.md "Operand overlap").
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, fifo, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import EngineConfig
from ..isa import BiasMode, ElemFormat, OutLayout, RowMaxMode, WeightFormat, isa_for
from ..numerics.quant_blocks import NVFP4_BLOCK
from .engine_if import EPI_ENTRY, EPI_TABLE, UnitSignature, memory_geometry, sram_port_signature
from .epilogue import Epilogue, Order
from .matmul_bdecode import BOperand
from .matmul_loops import LoopNest
from .matmul_output import PanelTransposer, RowMaxWriter, SegmentWriter, pack_elements
from .matmul_stream import Unpacker, WindowReader
from .quant.layout import EIGHT_BIT_FORMATS, QuantGeometry
from .systolic import SystolicArray

__all__ = ["MatmulUnit"]


class _State(enum.Enum):
    IDLE = 0
    SETUP1 = 1  # row counts, sizes, the EPI entry
    SETUP2 = 2  # strides; start every sequencer
    RUN = 3
    DONE = 4  # nothing to do (m_tiles or n_tiles = 0)


_TAG_A, _TAG_B, _TAG_RMAX = 0, 1, 2


class MatmulUnit(wiring.Component):
    """The MATMUL execution unit (see the module docstring).

    Parameters
    ----------
    config:
        The engine configuration.
    epilogue_lanes:
        Width W of the ``Epilogue`` (default C): a result row passes it in C/W beats, so an
        epilogue of W < C columns costs about W/C of the full one (docs/resources.md) and
        handles W/C rows per cycle, which the result FIFO absorbs as long as a tile's
        ``P·max(k, R)`` cycles exceed its ``TR·C/W`` epilogue beats.

    Ports
    -----
    unit : Out(UnitSignature())
        ``cmd`` (the resolved instruction word, viewed through
        ``isa_for(config).layouts["matmul"]``) and ``done``.
    spad, bias, scale : Out(sram_port_signature(...))
        Client ports of the scratchpad (reads and writes), the bias memory and the scale
        memory (reads only).
    epi : In(EPI_TABLE)
        The epilogue table.

    Attributes
    ----------
    acc_memory : amaranth.lib.memory.Memory
        The accumulator: ``acc_tiles · TR`` rows of C fp32 (row ``t·TR + r`` is row r of tile
        t, lane c in bits 32c…32c+31). Only this unit uses it.
    array, epilogue :
        The ``SystolicArray`` and ``Epilogue`` instances (for their latencies).
    """

    def __init__(self, config: EngineConfig, *, epilogue_lanes: int | None = None) -> None:
        if not isinstance(config, EngineConfig):
            raise TypeError(f"MatmulUnit needs an EngineConfig, got {type(config).__name__}")
        lanes = config.cols if epilogue_lanes is None else epilogue_lanes
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 2 or \
                config.cols % lanes:
            raise ValueError(f"MatmulUnit: epilogue_lanes={epilogue_lanes!r} must be an int "
                             f"≥ 2 dividing cols={config.cols}")
        self.epilogue_lanes = lanes
        self.config = config
        self.isa = isa_for(config)
        self.geometry = memory_geometry(config)
        self.tile_rows, self.cols, self.beat = config.tile_rows, config.cols, config.axi_bytes
        self.acc_tiles = self.isa.widths.acc_tiles
        self.acc_memory = Memory(shape=32 * self.cols, depth=self.acc_tiles * self.tile_rows,
                                 init=[])
        self.array = SystolicArray(config, accumulate=True)
        self.epilogue = Epilogue(config if lanes == config.cols else
                                 dataclasses.replace(config, cols=lanes))
        geo = self.geometry
        super().__init__({
            "unit": Out(UnitSignature()),
            "spad": Out(sram_port_signature(geo["spad"])),
            "bias": Out(sram_port_signature(geo["bias"])),
            "scale": Out(sram_port_signature(geo["scale"])),
            "epi": In(EPI_TABLE),
        })

    # ----- elaboration: one method per part, sharing the namespace `u` ----------------------

    @staticmethod
    def _entry_bits(geometry) -> int:
        return geometry.addr_bits + (geometry.beat_bytes // 2 - 1).bit_length()

    def elaborate(self, platform):
        m = Module()
        cfg, geo = self.config, self.geometry
        u = SimpleNamespace(
            tr=self.tile_rows, c=self.cols, beat=self.beat,
            lb=(self.beat - 1).bit_length(),  # log2 B
            rw=geo["spad"].addr_bits,  # scratchpad row address
            bw=self._entry_bits(geo["bias"]),
            scw=self._entry_bits(geo["scale"]),
            aw=max(1, ceil_log2(self.acc_tiles * self.tile_rows)),
            qformats=QuantGeometry.from_config(cfg).formats,
        )
        u.sw = u.rw + u.lb  # scratchpad byte address
        m.submodules.array = u.array = self.array
        m.submodules.epilogue = u.ep = self.epilogue
        m.submodules.acc_memory = self.acc_memory
        self._command(m, u)
        self._sequencers(m, u)
        self._scratchpad(m, u)
        self._operands(m, u)
        self._accumulator(m, u)
        self._epilogue_path(m, u)
        self._output_path(m, u)

        # completion: every result row is in, and (wb) out and written
        out_idle = (~u.out_seq.running & u.transposer.idle & (u.rmax_fifo.level == 0) &
                    u.rmw.idle & u.writer.idle)
        finished = ~u.res_seq.running & (~u.view.wb | out_idle) & ~u.rq_valid
        running = u.state == _State.RUN
        m.d.comb += self.unit.done.eq((u.state == _State.DONE) | (running & finished))
        with m.If(running & finished):
            m.d.sync += u.state.eq(_State.IDLE)
        return m

    def _command(self, m, u) -> None:
        """Latch the word, derive sizes (SETUP1) and strides (SETUP2, which starts the run)."""
        cfg, tr, c_n, beat, lb = self.config, u.tr, u.c, u.beat, u.lb
        u.state = state = Signal(_State)
        u.view = view = Signal(self.isa.layouts["matmul"], name="word")
        cmd = self.unit.cmd
        m.d.comb += cmd.ready.eq(state == _State.IDLE)
        with m.If(cmd.valid & cmd.ready):
            m.d.sync += view.eq(cmd.payload)
        mt, nt, k = view.m_tiles, view.n_tiles, view.k
        u.a_rows = a_rows = Signal(len(k) + ceil_log2(2 * tr) + 1)
        u.b_rows = b_rows = Signal(len(k) + ceil_log2(2 * c_n) + 1)
        u.blocks = blocks = Signal(len(k))
        u.fp32_out = fp32_out = view.out_fmt == ElemFormat.FP32
        n_cols = Signal(len(nt) + ceil_log2(c_n + 1))  # N
        m_rows = Signal(len(mt) + ceil_log2(tr + 1))  # M
        pitch = Signal(max(u.sw, len(view.dst_pitch)) + 1)
        u.epi = epi = Signal(EPI_ENTRY)
        u.nv = nv = view.b_fmt == WeightFormat.NVFP4
        u.quant = quant = view.b_fmt != WeightFormat.BF16
        eight = Cat(*(view.b_fmt == fmt for fmt in EIGHT_BIT_FORMATS)).any()

        # B chunk sizes the Unpacker knows: bf16, then 8-bit and 4-bit if built.
        u.b_sizes = [16 * c_n]
        if set(u.qformats) & EIGHT_BIT_FORMATS:
            u.b_sizes.append(8 * c_n)
        if set(u.qformats) - EIGHT_BIT_FORMATS:
            u.b_sizes.append(4 * c_n)
        u.b_sel = Signal(range(len(u.b_sizes)))

        e_bytes = Mux(fp32_out, 4, 2)
        with m.Switch(state):
            with m.Case(_State.IDLE), m.If(cmd.valid):
                payload = data.View(self.isa.layouts["matmul"], cmd.payload)
                nothing = (payload.m_tiles == 0) | (payload.n_tiles == 0)
                m.d.sync += state.eq(Mux(nothing, _State.DONE, _State.SETUP1))
            with m.Case(_State.SETUP1):
                nib = Mux(quant, Mux(eight, 2, 1), 4)  # nibbles per B element
                block_shift = Mux(nv, NVFP4_BLOCK.bit_length() - 1,
                                  cfg.quant_block.bit_length() - 1)
                m.d.sync += [
                    a_rows.eq((k * (2 * tr) + beat - 1) >> lb),
                    b_rows.eq((k * c_n * nib + 2 * beat - 1) >> (lb + 1)),
                    blocks.eq(k >> block_shift),
                    n_cols.eq(nt * c_n),
                    m_rows.eq(mt * tr),
                    epi.eq(self.epi[view.epi]),
                    u.b_sel.eq(Mux(quant, Mux(eight, 1, len(u.b_sizes) - 1), 0)),
                    pitch.eq(Mux(view.dst_pitch != 0, view.dst_pitch, nt * c_n * e_bytes)),
                    state.eq(_State.SETUP2),
                ]
            with m.Case(_State.SETUP2):
                m.d.sync += state.eq(_State.RUN)
            with m.Case(_State.DONE):
                m.d.sync += state.eq(_State.IDLE)
        u.start = start = state == _State.SETUP2

        # strides (registered in SETUP2, used from RUN on; all modulo the address width)
        u.out_s = out_si, out_sj, out_sr = [Signal(u.sw, name=f"out_s{n}") for n in "ijr"]
        u.bias_s = bias_si, bias_sj, bias_sr = [Signal(u.bw, name=f"bias_s{n}") for n in "ijr"]
        u.scale_sj = Signal(u.scw)
        with m.If(start):
            row_bytes = c_n * e_bytes
            with m.Switch(view.out_layout):
                with m.Case(OutLayout.ROW_MAJOR):
                    m.d.sync += [out_si.eq(pitch * tr), out_sj.eq(row_bytes), out_sr.eq(pitch)]
                with m.Case(OutLayout.B_PANEL):
                    panel = (m_rows * row_bytes + beat - 1) >> lb << lb
                    m.d.sync += [out_si.eq(tr * row_bytes), out_sj.eq(panel),
                                 out_sr.eq(row_bytes)]
                with m.Default():  # A_PANEL: one address per tile; rows go to the transposer
                    panel = (n_cols * tr * e_bytes + beat - 1) >> lb << lb
                    m.d.sync += [out_si.eq(panel), out_sj.eq(c_n * tr * e_bytes), out_sr.eq(0)]
            with m.Switch(view.bias_mode):
                with m.Case(BiasMode.ROW):
                    m.d.sync += [bias_si.eq(tr), bias_sj.eq(0), bias_sr.eq(1)]
                with m.Case(BiasMode.COL):
                    m.d.sync += [bias_si.eq(0), bias_sj.eq(c_n), bias_sr.eq(0)]
                with m.Default():
                    m.d.sync += [bias_si.eq(n_cols * tr), bias_sj.eq(c_n), bias_sr.eq(n_cols)]
            m.d.sync += u.scale_sj.eq(blocks * c_n)

    def _sequencers(self, m, u) -> None:
        """The loop nests over (i, j, …) of every stream (see ``LoopNest``)."""
        view, tr, start = u.view, u.tr, u.start
        mt, nt, k = view.m_tiles, view.n_tiles, view.k
        tiles = [mt, nt]
        rows = [*tiles, Const(tr)]
        acc_base = view.acc * tr
        acc_strides = [nt * tr, Const(tr), Const(1)]
        u.a_seq = LoopNest(m, "a_seq", [*tiles, u.a_rows],
                           {"row": (u.rw, view.a.imm, [u.a_rows, Const(0), Const(1)])})
        u.b_seq = LoopNest(m, "b_seq", [*tiles, u.b_rows],
                           {"row": (u.rw, view.b.imm, [Const(0), u.b_rows, Const(1)])})
        u.dummy = LoopNest(m, "dummy", tiles)  # k = 0: one identity beat per tile
        u.init_seq = LoopNest(m, "init_seq", rows, {"row": (u.aw, acc_base, acc_strides)})
        u.res_seq = LoopNest(m, "res_seq", rows, {"row": (u.aw, acc_base, acc_strides)})
        u.bias_seq = LoopNest(m, "bias_seq", rows, {"e": (u.bw, view.bias, u.bias_s)})
        u.ein_seq = LoopNest(m, "ein_seq", rows)
        u.out_seq = LoopNest(m, "out_seq", rows, {
            "out": (u.sw, view.dst.imm << u.lb, u.out_s),
            "rmax": (u.sw, view.rmax.imm << u.lb, [Const(4 * tr), Const(0), Const(4)]),
        })
        u.scale_seq = LoopNest(m, "scale_seq", [*tiles, u.blocks], {
            "e": (u.scw, view.qscale + Mux(u.nv, 2, 0), [Const(0), u.scale_sj, Const(u.c)])})
        wb = view.wb
        u.go_quant = start & (k != 0) & u.quant & bool(u.qformats)
        m.d.comb += [
            u.a_seq.start.eq(start & (k != 0)),
            u.b_seq.start.eq(start & (k != 0)),
            u.dummy.start.eq(start & (k == 0)),
            u.init_seq.start.eq(start & view.acc_in),
            u.res_seq.start.eq(start),
            u.bias_seq.start.eq(start & wb & (view.bias_mode != BiasMode.NONE)),
            u.ein_seq.start.eq(start & wb),
            u.out_seq.start.eq(start & wb),
            u.scale_seq.start.eq(u.go_quant),
        ]

    def _scratchpad(self, m, u) -> None:
        """The scratchpad port: one request register, A/B reads in turn, then the rowmax
        read, then writes; answers routed by a tag queue into the A and B row FIFOs."""
        tr, c_n, beat, rw = u.tr, u.c, u.beat, u.rw
        a_seq, b_seq = u.a_seq, u.b_seq
        spad = self.spad
        rows_a = -(-2 * tr // beat)  # rows per A k-step
        depth_a = max(4, 2 * rows_a + 2)
        depth_b = 4
        u.a_rows_fifo = a_rows_fifo = m.submodules.a_rows = fifo.SyncFIFO(
            width=8 * beat + 1, depth=depth_a)
        u.b_rows_fifo = b_rows_fifo = m.submodules.b_rows = fifo.SyncFIFO(
            width=8 * beat + 1, depth=depth_b)
        tags = m.submodules.tags = fifo.SyncFIFO(width=3, depth=16)
        a_out = Signal(range(depth_a + 1))  # reads in flight
        b_out = Signal(range(depth_b + 1))
        u.writer = writer = m.submodules.writer = SegmentWriter(beat, rw, 4 * c_n)
        u.rmw = rmw = m.submodules.rowmax = RowMaxWriter(beat, rw, 4 * c_n)

        u.rq_valid = rq_valid = Signal()
        rq = Signal.like(spad.req.payload)
        m.d.comb += [spad.req.valid.eq(rq_valid), spad.req.payload.eq(rq)]
        load = ~rq_valid | spad.req.ready
        a_want = a_seq.running & (a_rows_fifo.level + a_out < depth_a)
        b_want = b_seq.running & (b_rows_fifo.level + b_out < depth_b)
        last_a = Signal()  # A and B take turns when both want the port
        pick_a = a_want & (~b_want | ~last_a)
        grant_a = load & pick_a
        grant_b = load & ~pick_a & b_want
        grant_r = load & ~a_want & ~b_want & rmw.rd.valid
        grant_w = load & ~a_want & ~b_want & ~rmw.rd.valid & writer.o.valid
        m.d.comb += [
            a_seq.step.eq(grant_a),
            b_seq.step.eq(grant_b),
            rmw.rd.ready.eq(grant_r),
            writer.o.ready.eq(grant_w),
            tags.w_en.eq(grant_a | grant_b | grant_r),
            tags.w_data.eq(Mux(grant_a, Cat(Const(_TAG_A, 2), a_seq.last[2]),
                               Mux(grant_b, Cat(Const(_TAG_B, 2), b_seq.last[2]),
                                   Const(_TAG_RMAX, 3)))),
        ]
        with m.If(grant_a | grant_b):
            m.d.sync += last_a.eq(grant_a)
        with m.If(load):
            m.d.sync += rq_valid.eq(grant_a | grant_b | grant_r | grant_w)
            with m.If(grant_a):
                m.d.sync += [rq.addr.eq(a_seq.addr["row"]), rq.write.eq(0)]
            with m.Elif(grant_b):
                m.d.sync += [rq.addr.eq(b_seq.addr["row"]), rq.write.eq(0)]
            with m.Elif(grant_r):
                m.d.sync += [rq.addr.eq(rmw.rd.payload), rq.write.eq(0)]
            with m.Elif(grant_w):
                w = writer.o.payload
                m.d.sync += [rq.addr.eq(w.addr), rq.write.eq(1), rq.data.eq(w.data),
                             rq.be.eq(w.be)]

        resp = spad.resp
        tag = tags.r_data[:2]
        # An answer without a tag (a read issued before a soft reset of this unit) is dropped.
        answer = resp.valid & tags.r_rdy
        resp_a = answer & (tag == _TAG_A)
        resp_b = answer & (tag == _TAG_B)
        m.d.comb += [
            tags.r_en.eq(resp.valid),
            a_rows_fifo.w_en.eq(resp_a),
            a_rows_fifo.w_data.eq(Cat(resp.payload, tags.r_data[2])),
            b_rows_fifo.w_en.eq(resp_b),
            b_rows_fifo.w_data.eq(Cat(resp.payload, tags.r_data[2])),
            rmw.rd_valid.eq(answer & (tag == _TAG_RMAX)),
            rmw.rd_data.eq(resp.payload),
        ]
        m.d.sync += [a_out.eq(a_out + grant_a - resp_a), b_out.eq(b_out + grant_b - resp_b)]


    def _operands(self, m, u) -> None:
        """Row FIFOs → unpackers → B decode (+ scale windows) → join → ops FIFO → array."""
        cfg, geo, view, tr, c_n, beat = self.config, self.geometry, u.view, u.tr, u.c, u.beat
        k, array, start = view.k, u.array, u.start
        a_rows_fifo, b_rows_fifo, dummy, scale_seq = (
            u.a_rows_fifo, u.b_rows_fifo, u.dummy, u.scale_seq)
        unpack_a = m.submodules.unpack_a = Unpacker(8 * beat, [16 * tr], len(k))
        unpack_b = m.submodules.unpack_b = Unpacker(8 * beat, u.b_sizes, len(k))
        for fifo_, unpack in ((a_rows_fifo, unpack_a), (b_rows_fifo, unpack_b)):
            m.d.comb += [
                unpack.i.valid.eq(fifo_.r_rdy),
                unpack.i.payload.data.eq(fifo_.r_data[:8 * beat]),
                unpack.i.payload.last.eq(fifo_.r_data[8 * beat]),
                fifo_.r_en.eq(unpack.i.ready),
                unpack.count.eq(k),
            ]
        m.d.comb += [unpack_a.sel.eq(0), unpack_b.sel.eq(u.b_sel)]

        bop = m.submodules.b_operand = BOperand(cfg)
        tensor_scale = Signal(32)
        m.d.comb += [
            bop.chunk.valid.eq(unpack_b.o.valid),
            bop.chunk.payload.data.eq(unpack_b.o.payload.data[:16 * c_n]),
            bop.chunk.payload.first.eq(unpack_b.o.payload.first),
            unpack_b.o.ready.eq(bop.chunk.ready),
            bop.fmt.eq(view.b_fmt),
            bop.tensor_scale.eq(tensor_scale),
        ]

        # scale windows: the NVFP4 tensor scale first, then one per (tile, k-block)
        scale_rd = m.submodules.scale_reader = WindowReader(geo["scale"], c_n, u.scw)
        wiring.connect(m, wiring.flipped(self.scale), scale_rd.port)
        ts_req, ts_wait = Signal(), Signal()
        m.d.comb += scale_rd.flush.eq(start)
        with m.If(u.go_quant):
            m.d.sync += [ts_req.eq(u.nv), ts_wait.eq(u.nv)]
        sreq = scale_rd.req
        m.d.comb += [
            sreq.valid.eq(ts_req | scale_seq.running),
            sreq.payload.entry.eq(Mux(ts_req, view.qscale, scale_seq.addr["e"])),
            sreq.payload.count.eq(Mux(ts_req, 2, c_n)),
            scale_seq.step.eq(sreq.ready & ~ts_req),
        ]
        with m.If(sreq.valid & sreq.ready & ts_req):
            m.d.sync += ts_req.eq(0)
        so = scale_rd.o
        with m.If(so.valid & ts_wait):
            m.d.sync += [tensor_scale.eq(Cat(so.payload[0], so.payload[1])), ts_wait.eq(0)]
        m.d.comb += [
            bop.scales.valid.eq(so.valid & ~ts_wait),
            bop.scales.payload.eq(so.payload),
            so.ready.eq(ts_wait | bop.scales.ready),
        ]

        ops_fifo = m.submodules.ops_fifo = fifo.SyncFIFOBuffered(
            width=array.ops_layout.size, depth=4)
        beat_in = Signal(array.ops_layout)
        a_o, b_o = unpack_a.o, bop.o
        k0 = k == 0
        m.d.comb += [
            ops_fifo.w_en.eq(Mux(k0, dummy.running, a_o.valid & b_o.valid)),
            a_o.ready.eq(~k0 & ops_fifo.w_rdy & b_o.valid),
            b_o.ready.eq(~k0 & ops_fifo.w_rdy & a_o.valid),
            dummy.step.eq(k0 & ops_fifo.w_rdy),
            beat_in.a.as_value().eq(Mux(k0, Const(0x8000, 16).replicate(tr),
                                        a_o.payload.data)),
            beat_in.b.as_value().eq(Mux(k0, 0, b_o.payload.as_value())),
            beat_in.first.eq(k0 | a_o.payload.first),
            beat_in.last.eq(k0 | a_o.payload.last),
            beat_in.acc.eq(view.acc_in),
            ops_fifo.w_data.eq(beat_in),
        ]

        # ---- array input, with result-FIFO credits -----------------------------------------
        u.res_depth = res_depth = 2 * tr
        u.reserved = reserved = Signal(range(res_depth + tr + 1))
        u.ops_beat = ops_beat = data.View(array.ops_layout, ops_fifo.r_data)
        credit_ok = reserved <= res_depth - tr
        m.d.comb += [
            array.ops.valid.eq(ops_fifo.r_rdy & (~ops_beat.first | ~view.wb | credit_ok)),
            array.ops.payload.eq(ops_beat),
            ops_fifo.r_en.eq(array.ops.valid & array.ops.ready),
        ]


    def _accumulator(self, m, u) -> None:
        """acc_in rows into the array's init port; result rows to the accumulator (acc_out)
        and the result FIFO (wb)."""
        view, c_n, array, init_seq, res_seq = u.view, u.c, u.array, u.init_seq, u.res_seq
        rp = self.acc_memory.read_port()
        wp = self.acc_memory.write_port()
        init_fifo = m.submodules.init_fifo = fifo.SyncFIFO(width=32 * c_n, depth=4)
        in_flight = Signal()
        issue = init_seq.running & (init_fifo.level + in_flight < 4)
        m.d.comb += [
            rp.addr.eq(init_seq.addr["row"]),
            rp.en.eq(issue),
            init_seq.step.eq(issue),
            init_fifo.w_en.eq(in_flight),
            init_fifo.w_data.eq(rp.data),
            array.init.valid.eq(init_fifo.r_rdy),
            array.init.payload.as_value().eq(init_fifo.r_data),
            init_fifo.r_en.eq(array.init.ready),
        ]
        m.d.sync += in_flight.eq(issue)

        res = array.results
        u.res_fifo = res_fifo = m.submodules.res_fifo = fifo.SyncFIFOBuffered(
            width=32 * c_n, depth=u.res_depth)
        m.d.comb += [
            res_seq.step.eq(res.valid),
            wp.addr.eq(res_seq.addr["row"]),
            wp.data.eq(res.payload.data),
            wp.en.eq(res.valid & view.acc_out),
            res_fifo.w_en.eq(res.valid & view.wb),
            res_fifo.w_data.eq(res.payload.data),
        ]


    def _epilogue_path(self, m, u) -> None:
        """Bias windows, result rows in C/W parts into the epilogue, credits, its command."""
        geo, view, tr, c_n, ep, epi = self.geometry, u.view, u.tr, u.c, u.ep, u.epi
        bias_seq, ein_seq, res_fifo, array = u.bias_seq, u.ein_seq, u.res_fifo, u.array
        bias_rd = m.submodules.bias_reader = WindowReader(geo["bias"], c_n, u.bw)
        wiring.connect(m, wiring.flipped(self.bias), bias_rd.port)
        m.d.comb += [
            bias_rd.flush.eq(u.start),
            bias_rd.req.valid.eq(bias_seq.running),
            bias_rd.req.payload.entry.eq(bias_seq.addr["e"]),
            bias_rd.req.payload.count.eq(Mux(view.bias_mode == BiasMode.ROW, 1, c_n)),
            bias_seq.step.eq(bias_rd.req.ready),
        ]
        # A tile's bias beats are fetched during the previous tile's k-loop (a FULL window
        # takes 2-3 cycles, the epilogue wants one per cycle while a tile's rows pass).
        bias_fifo = m.submodules.bias_fifo = fifo.SyncFIFOBuffered(width=16 * c_n, depth=tr)
        m.d.comb += [
            bias_fifo.w_en.eq(bias_rd.o.valid),
            bias_fifo.w_data.eq(bias_rd.o.payload),
            bias_rd.o.ready.eq(bias_fifo.w_rdy),
        ]
        need_bias = view.bias_mode != BiasMode.NONE
        # A row enters the epilogue in C/W parts (W = epilogue_lanes); only part 0 of a row
        # block's first column tile restarts the row maximum, so it spans all parts.
        u.lanes, u.parts = lanes, parts = self.epilogue_lanes, c_n // self.epilogue_lanes
        part = Signal(range(parts))
        last_part = part == parts - 1
        row_bias = view.bias_mode == BiasMode.ROW  # its entry is lane 0 of every part
        ei = ep.i
        m.d.comb += [
            ei.valid.eq(res_fifo.r_rdy & (bias_fifo.r_rdy | ~need_bias)),
            ei.payload.acc.as_value().eq(res_fifo.r_data.word_select(part, 32 * lanes)),
            ei.payload.bias.as_value().eq(Mux(row_bias, bias_fifo.r_data[:16 * lanes],
                                              bias_fifo.r_data.word_select(part, 16 * lanes))),
            ei.payload.row.eq(ein_seq.idx[2]),
            ei.payload.first.eq((ein_seq.idx[1] == 0) & (part == 0)),
            ei.payload.last.eq(ein_seq.last[1]),
        ]
        ein = ei.valid & ei.ready
        row_in = ein & last_part
        with m.If(ein):
            m.d.sync += part.eq(Mux(last_part, 0, part + 1))
        m.d.comb += [
            res_fifo.r_en.eq(row_in),
            bias_fifo.r_en.eq(row_in & need_bias),
            ein_seq.step.eq(row_in),
        ]
        reserve = array.ops.valid & array.ops.ready & u.ops_beat.first & view.wb
        m.d.sync += u.reserved.eq(u.reserved + Mux(reserve, tr, 0) - row_in)
        ec = ep.cmd
        m.d.comb += [
            ec.bias_mode.eq(view.bias_mode),
            ec.act.eq(epi.act),
            ec.out_fmt.eq(view.out_fmt),
            ec.order.eq(Order.SCALE_BIAS),
            ec.scale.eq(epi.scale),
            ec.a.eq(epi.a), ec.b.eq(epi.b), ec.c.eq(epi.c), ec.d.eq(epi.d),
        ]


    def _output_path(self, m, u) -> None:
        """Epilogue rows → out FIFO → row segments / transposer / row maxima → writer."""
        view, tr, c_n, ep, out_seq = u.view, u.tr, u.c, u.ep, u.out_seq
        lanes, parts, rmw, writer = u.lanes, u.parts, u.rmw, u.writer
        eo_layout = data.StructLayout({"lanes": data.ArrayLayout(32, c_n), "row_max": 32})
        eo_fifo = m.submodules.eo_fifo = fifo.SyncFIFOBuffered(width=eo_layout.size, depth=4)
        eo_in = Signal(eo_layout)
        out_part = Signal(range(parts))  # reassemble the parts of a row
        held = Signal(32 * lanes * (parts - 1))
        out_last = out_part == parts - 1
        m.d.comb += [
            eo_in.lanes.as_value().eq(Cat(held, ep.o.payload.data)),
            eo_in.row_max.eq(ep.o.payload.row_max),
            eo_fifo.w_data.eq(eo_in),
            eo_fifo.w_en.eq(ep.o.valid & out_last),
            ep.o.ready.eq(eo_fifo.w_rdy | ~out_last),
        ]
        with m.If(ep.o.valid & ep.o.ready):
            m.d.sync += out_part.eq(Mux(out_last, 0, out_part + 1))
            if parts > 1:
                with m.If(~out_last):
                    m.d.sync += held.word_select(out_part, 32 * lanes).eq(ep.o.payload.data)
        eo = data.View(eo_layout, eo_fifo.r_data)
        rmax_layout = data.StructLayout({"addr": u.sw, "value": 32, "last": 1})
        u.rmax_fifo = rmax_fifo = m.submodules.rmax_fifo = fifo.SyncFIFO(
            width=rmax_layout.size, depth=tr)
        u.transposer = transposer = m.submodules.transposer = PanelTransposer(tr, c_n, u.sw)
        a_panel = view.out_layout == OutLayout.A_PANEL
        need_rmax = view.wb & (view.rowmax != RowMaxMode.NONE) & out_seq.last[1]
        row_seg_ready = Signal()
        sink_ready = Mux(a_panel, transposer.i.ready, row_seg_ready)
        offer = eo_fifo.r_rdy & rmax_fifo.w_rdy
        eo_take = offer & sink_ready
        rmax_in = Signal(rmax_layout)
        m.d.comb += [
            eo_fifo.r_en.eq(eo_take),
            out_seq.step.eq(eo_take),
            rmax_in.addr.eq(out_seq.addr["rmax"]),
            rmax_in.value.eq(eo.row_max),
            rmax_in.last.eq(out_seq.final),
            rmax_fifo.w_data.eq(rmax_in),
            rmax_fifo.w_en.eq(eo_take & need_rmax),
            transposer.i.valid.eq(offer & a_panel),
            transposer.i.payload.lanes.eq(eo.lanes),
            transposer.i.payload.base.eq(out_seq.addr["out"]),
            transposer.out_fmt.eq(view.out_fmt),
        ]
        rm_in = data.View(rmax_layout, rmax_fifo.r_data)
        m.d.comb += [
            rmw.i.valid.eq(rmax_fifo.r_rdy),
            rmw.i.payload.addr.eq(rm_in.addr),
            rmw.i.payload.value.eq(rm_in.value),
            rmw.i.payload.last.eq(rm_in.last),
            rmax_fifo.r_en.eq(rmw.i.ready),
            rmw.update.eq(view.rowmax == RowMaxMode.UPDATE),
        ]
        # writer input: rowmax segments first, then the A panel pieces or the rows
        row_seg = Signal.like(writer.i.payload)
        m.d.comb += [
            row_seg.addr.eq(out_seq.addr["out"]),
            row_seg.nbytes.eq(Mux(u.fp32_out, 4 * c_n, 2 * c_n)),
            row_seg.data.eq(pack_elements(eo.lanes, view.out_fmt, 32 * c_n)),
        ]
        main_valid = Mux(a_panel, transposer.o.valid, offer)
        wi = writer.i
        m.d.comb += [
            wi.valid.eq(rmw.o.valid | main_valid),
            wi.payload.eq(Mux(rmw.o.valid, rmw.o.payload,
                              Mux(a_panel, transposer.o.payload, row_seg))),
            rmw.o.ready.eq(wi.ready),
            transposer.o.ready.eq(wi.ready & ~rmw.o.valid & a_panel),
            row_seg_ready.eq(wi.ready & ~rmw.o.valid & ~a_panel),
        ]

