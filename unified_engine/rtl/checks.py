"""``InstructionChecker``: the dispatch-time operand checks of the queue instructions.

The ISA simulator applies every queue instruction at dispatch, in program order, and stops
with an error code the moment an instruction's operands are invalid (``host/units.py`` raises
``Stop``).  The RTL makes the same decision at the same point: the dispatcher passes each
LOAD / STORE / MATMUL / VECTOR instruction (GPR override applied, address operands resolved to
effective addresses) through this checker *before* it enters its queue, so a bad instruction
stops the engine with the simulator's error code and pc, and no unit ever sees it.  The units
can then assume valid operands (``engine_if.UnitSignature``).

Rules (each exactly as ``host/units.py``; the first failing rule, in the simulator's order,
gives the code):

* LOAD/STORE (``dma``): nothing if ``rows`` or ``row_bytes`` is 0; DRAM bytes
  ``[dram, dram + (rows−1)·dram_stride + row_bytes)`` inside the window, else
  DMA_OUT_OF_WINDOW; on-chip bytes inside the memory named by ``mem``, else SRAM_OUT_OF_RANGE.
* MATMUL: nothing if ``m_tiles`` or ``n_tiles`` is 0; ``b_fmt`` built in (UNSUPPORTED_FORMAT);
  ``k`` a multiple of the block for quantized B (ILLEGAL_OPERAND); A panel, B panel, the block
  scales, the accumulator tiles (when ``acc_in``/``acc_out``), the bias (``wb`` with bias), the
  output block and the row maxima inside their memories (SRAM_OUT_OF_RANGE).
* VECTOR: nothing if ``rows`` or ``length`` is 0; ``accumulate`` only on RSUM/RMAX/RSUMSQ;
  QUANTIZE/DEQUANTIZE format, block multiple, NVFP4 tensor scale (``imm`` a positive normal
  fp32), ``src0_fmt`` = BF16 for QUANTIZE; every operand and result span inside the scratchpad
  and the scale entries inside the scale memory.
* Operand overlap, last (ILLEGAL_OPERAND; docs/isa.md "Operand overlap"): the MATMUL output
  block and row maxima must not overlap the A / B panels or each other and a ROW_MAJOR
  ``dst_pitch`` must be 0 or ≥ N·e; a VECTOR ``dst`` must not overlap ``src0`` or ``src1``
  unless it is exactly in place (element-wise op, same start, format and row stride, rows not
  overlapping each other); TRANSPOSE destination rows must not overlap each other.  Overlap
  means intersecting byte extents ``[start, start + (rows − 1)·stride + row_bytes)``.

Two checks of the simulator depend on memory *contents* and cannot be made at dispatch: the
NVFP4 tensor scale of a MATMUL (read from the scale memory) and the DRAM size (the window is
what the hardware knows; the host keeps the window inside DRAM).  The first is left to the
MATMUL unit; see ``docs/isa.md``.

Implementation: the rules become a list of *steps* per opcode, each ``start + row_bytes +
(rows − 1)·stride ≤ limit`` (a span; no rows or no bytes passes) or a plain condition, checked
one per cycle through a 3-stage pipeline with one shared multiplier (select → multiply →
compare).  An instruction takes ``steps + 4`` cycles.  The overlap rule costs one step per
MATMUL / VECTOR: the span steps of the operands save their ends (the ``base + product`` the
compare stage forms anyway) and a last *late* step compares the extents in the compare stage,
without another multiplication.

Ports
-----
i : In(stream.Signature(check_in_layout(config)))
    The instruction (override applied), the effective addresses of its address groups
    (``engine_if.address_groups`` order) and its pc.
o : Out(stream.Signature(check_out_layout()))
    The resolved word (``imm`` of each group = its effective address, ``ar``/``inc``/override
    fields 0), the error code (``NONE`` = dispatch it) and the pc.
window_base, window_limit : In(axi_addr_width + 1)
    The DRAM window (CSRs).
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import EngineConfig
from ..isa import (
    BiasMode,
    ElemFormat,
    MemTarget,
    Opcode,
    OutLayout,
    RowMaxMode,
    VecBcast,
    VecOp,
    WeightFormat,
    isa_for,
)
from ..regs import ErrorCode
from .engine_if import address_groups, check_in_layout, check_out_layout

__all__ = ["InstructionChecker"]

_QUEUE_OPS = (Opcode.LOAD, Opcode.STORE, Opcode.MATMUL, Opcode.VECTOR)
_NVFP4_BLOCK = 16
_F32_MIN_NORMAL = 0x00800000
_F32_INF = 0x7F800000


#: Operand extents a span step can save for the overlap step (one register pair each).
_SLOTS = ("dst", "src0", "src1", "a", "b")


@dataclasses.dataclass
class _Step:
    """One check: fails if ``en`` and (``fail`` or the span leaves ``limit``, or ``late``).

    ``save``: a span step that passes records its end ``start + row_bytes + (rows − 1)·stride``
    in that :data:`_SLOTS` register.  ``late``: a condition evaluated in the compare stage (so
    it may use the ends saved by earlier steps; at least one step must separate them, which
    the pipeline guarantees as the saving steps come before).
    """

    code: ErrorCode
    en: Value
    fail: Value | None = None  # a plain condition
    start: Value | int = 0  # span: start + row_bytes + (rows − 1)·stride ≤ limit
    row_bytes: Value | int = 0
    stride: Value | int = 0
    rows: Value | int = 0
    limit: Value | int = 0
    save: str | None = None
    late: Value | None = None


def _ceil_div_pow2(x: Value, d: int) -> Value:
    """ceil(x / d) for a power-of-two constant d."""
    shift = d.bit_length() - 1
    return (x + (d - 1)) >> shift


class InstructionChecker(wiring.Component):
    """Dispatch-time operand checks of LOAD/STORE/MATMUL/VECTOR (see the module docstring)."""

    def __init__(self, config: EngineConfig) -> None:
        if not isinstance(config, EngineConfig):
            raise TypeError(f"InstructionChecker needs an EngineConfig, not "
                            f"{type(config).__name__}")
        self.config = config
        self.isa = isa_for(config)
        aw = config.axi_addr_width
        super().__init__({
            "i": In(stream.Signature(check_in_layout(config))),
            "o": Out(stream.Signature(check_out_layout())),
            "window_base": In(aw + 1),
            "window_limit": In(aw + 1),
        })

    # ----- rule lists -------------------------------------------------------------------------

    def _overlap(self, a, a_start, b: str, b_start) -> Value:
        """Byte extents of operand ``a`` and saved operand ``b`` intersect (both non-empty).
        ``a`` is a slot name (start ``a_start``) or a ``(start, end)`` pair that is known to
        be non-empty."""
        if isinstance(a, str):
            has_a, end_a = self._has[a], self._ends[a]
        else:
            (a_start, end_a), has_a = a, Const(1, 1)
        return has_a & self._has[b] & (a_start < self._ends[b]) & (b_start < end_a)

    def _dma_steps(self, d, addr) -> tuple[Value, list[_Step]]:
        cfg = self.config
        one = Const(1, 1)
        empty = (d.rows == 0) | (d.row_bytes == 0)
        unit = Mux(d.mem == MemTarget.SCRATCHPAD, cfg.axi_bytes, 2)
        size = Mux(d.mem == MemTarget.SCRATCHPAD, cfg.scratchpad_bytes,
                   Mux(d.mem == MemTarget.BIAS, cfg.bias_bytes, cfg.scale_bytes))
        sstride = Mux(d.sram_stride == 0, d.row_bytes, d.sram_stride)
        steps = [
            _Step(ErrorCode.DMA_OUT_OF_WINDOW, one, fail=addr[0] < self.window_base),
            _Step(ErrorCode.DMA_OUT_OF_WINDOW, one, start=addr[0], row_bytes=d.row_bytes,
                  stride=d.dram_stride, rows=d.rows,
                  # never past the top of the address space, whatever WINDOW_LIMIT says
                  limit=Mux(self.window_limit > (1 << cfg.axi_addr_width),
                            1 << cfg.axi_addr_width, self.window_limit)),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, one, start=addr[1] * unit, row_bytes=d.row_bytes,
                  stride=sstride, rows=d.rows, limit=size),
        ]
        return empty, steps

    def _matmul_steps(self, mm, addr) -> tuple[Value, list[_Step]]:
        cfg = self.config
        beat, tr, cols = cfg.axi_bytes, cfg.tile_rows, cfg.cols
        one = Const(1, 1)
        empty = (mm.m_tiles == 0) | (mm.n_tiles == 0)
        fmt = mm.b_fmt
        enabled = [WeightFormat[n.upper()] for n in cfg.formats]
        supported = Const(0, 1)
        for f in enabled:
            supported = supported | (fmt == f)
        quantized = fmt != WeightFormat.BF16
        nv = fmt == WeightFormat.NVFP4
        block_mask = Mux(nv, _NVFP4_BLOCK - 1, cfg.quant_block - 1)
        a_bytes = mm.k * (tr * 2)
        a_rows = _ceil_div_pow2(a_bytes, beat)
        bits = Signal(range(17), name="chk_b_bits")
        b_bytes = Signal(range(((1 << 20) * cols * 16) // 8 + 1), name="chk_b_bytes")
        self._comb += [
            bits.eq(Mux(fmt == WeightFormat.BF16, 16,
                        Mux((fmt == WeightFormat.INT8) | (fmt == WeightFormat.FP8)
                            | (fmt == WeightFormat.IF8), 8, 4))),
        ]
        self._comb.append(b_bytes.eq(_ceil_div_pow2(mm.k * cols * bits, 8)))
        b_rows = _ceil_div_pow2(b_bytes, beat)
        blocks = Mux(nv, mm.k >> 4, mm.k >> (cfg.quant_block.bit_length() - 1))
        scale_entries = cfg.scale_bytes // 2
        tiles = Signal(32, name="chk_tiles")
        self._comb.append(tiles.eq(mm.m_tiles * mm.n_tiles))
        big_m = mm.m_tiles * tr
        big_n = mm.n_tiles * cols
        uses_acc = mm.acc_in | mm.acc_out
        acc_tiles = self.isa.widths.acc_tiles
        with_bias = mm.wb & (mm.bias_mode != BiasMode.NONE)
        n_bias = Mux(mm.bias_mode == BiasMode.ROW, big_m,
                     Mux(mm.bias_mode == BiasMode.COL, big_n, tiles * (tr * cols)))
        e = Mux(mm.out_fmt == ElemFormat.BF16, 2, 4)
        layout = mm.out_layout
        a_tile = big_n * tr * e
        b_tile = big_m * cols * e
        pitch = Mux(mm.dst_pitch == 0, big_n * e, mm.dst_pitch)
        dst_row_bytes = Mux(layout == OutLayout.ROW_MAJOR, big_n * e,
                            Mux(layout == OutLayout.A_PANEL, a_tile, b_tile))
        dst_stride = Mux(layout == OutLayout.ROW_MAJOR, pitch,
                         Mux(layout == OutLayout.A_PANEL, _ceil_div_pow2(a_tile, beat) * beat,
                             _ceil_div_pow2(b_tile, beat) * beat))
        dst_rows = Mux(layout == OutLayout.ROW_MAJOR, big_m,
                       Mux(layout == OutLayout.A_PANEL, mm.m_tiles, mm.n_tiles))
        with_rmax = mm.wb & (mm.rowmax != RowMaxMode.NONE)
        rmax = (addr[3] * beat, addr[3] * beat + big_m * 4)  # packed: no multiply needed
        steps = [
            _Step(ErrorCode.UNSUPPORTED_FORMAT, one, fail=~supported),
            _Step(ErrorCode.ILLEGAL_OPERAND, quantized, fail=(mm.k & block_mask) != 0),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, one, start=addr[0] * beat, row_bytes=a_bytes,
                  stride=a_rows * beat, rows=mm.m_tiles, limit=cfg.scratchpad_bytes, save="a"),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, one, start=addr[1] * beat, row_bytes=b_bytes,
                  stride=b_rows * beat, rows=mm.n_tiles, limit=cfg.scratchpad_bytes, save="b"),
            # block scales of all n tiles (the simulator checks them tile by tile, in order;
            # the last tile's is the binding one), then the NVFP4 tensor-scale entries
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, quantized,
                  start=mm.qscale + Mux(nv, 2, 0), row_bytes=blocks * cols,
                  stride=blocks * cols, rows=mm.n_tiles, limit=scale_entries),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, nv, fail=mm.qscale + 2 > scale_entries),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, uses_acc, fail=mm.acc + tiles > acc_tiles),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, with_bias, start=mm.bias * 2,
                  row_bytes=n_bias * 2, stride=0, rows=1, limit=cfg.bias_bytes),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, mm.wb, start=addr[2] * beat,
                  row_bytes=dst_row_bytes, stride=dst_stride, rows=dst_rows,
                  limit=cfg.scratchpad_bytes, save="dst"),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, with_rmax, start=addr[3] * beat,
                  row_bytes=big_m * 4, stride=0, rows=1, limit=cfg.scratchpad_bytes),
            # operand overlap (last, as in the simulator): ROW_MAJOR rows written in tile
            # order must not overlap; the output block and the row maxima must not overlap
            # the A / B panels the unit is still reading, nor each other
            _Step(ErrorCode.ILLEGAL_OPERAND, mm.wb, late=(
                ((layout == OutLayout.ROW_MAJOR) & (mm.dst_pitch != 0)
                 & (mm.dst_pitch < big_n * e))
                | self._overlap("dst", addr[2] * beat, "a", addr[0] * beat)
                | self._overlap("dst", addr[2] * beat, "b", addr[1] * beat)
                | (with_rmax & (self._overlap(rmax, None, "a", addr[0] * beat)
                                | self._overlap(rmax, None, "b", addr[1] * beat)
                                | self._overlap(rmax, None, "dst", addr[2] * beat))))),
        ]
        return empty, steps

    def _vector_steps(self, v, addr) -> tuple[Value, list[_Step]]:
        cfg = self.config
        beat = cfg.axi_bytes
        spad = cfg.scratchpad_bytes
        dst, src0, src1 = addr[0], addr[1], addr[2]
        op = v.op
        empty = (v.rows == 0) | (v.length == 0)
        reduction = (op == VecOp.RSUM) | (op == VecOp.RMAX) | (op == VecOp.RSUMSQ)
        quant = (op == VecOp.QUANTIZE) | (op == VecOp.DEQUANTIZE)
        transpose = op == VecOp.TRANSPOSE
        argmax = op == VecOp.ARGMAX4
        binary = ((op == VecOp.ADD) | (op == VecOp.SUB) | (op == VecOp.MUL)
                  | (op == VecOp.MAX) | (op == VecOp.MIN))
        plain = ~quant & ~transpose

        def esize(fmt):
            return Mux(fmt == ElemFormat.BF16, 2, 4)

        def stride_of(field, row_bytes):
            return Mux(field == 0, _ceil_div_pow2(row_bytes, beat), field) * beat

        e0, e1, ed = esize(v.src0_fmt), esize(v.src1_fmt), esize(v.dst_fmt)
        # quantized formats
        fmt = v.qfmt
        enabled = [WeightFormat[n.upper()] for n in cfg.formats]
        supported = Const(0, 1)
        for f in enabled:
            supported = supported | (fmt == f)
        nv = fmt == WeightFormat.NVFP4
        eight = (fmt == WeightFormat.INT8) | (fmt == WeightFormat.FP8) | (fmt == WeightFormat.IF8)
        block_shift = Mux(nv, 4, cfg.quant_block.bit_length() - 1)
        block_mask = Mux(nv, _NVFP4_BLOCK - 1, cfg.quant_block - 1)
        code_bytes = Mux(eight, v.length, v.length >> 1)
        n_scales = v.rows * (v.length >> block_shift)
        ts = v.imm
        ts_bad = (ts[31] == 1) | (ts < _F32_MIN_NORMAL) | (ts >= _F32_INF)
        q_src_bytes = Mux(op == VecOp.QUANTIZE, v.length * 2, code_bytes)
        q_dst_bytes = Mux(op == VecOp.QUANTIZE, code_bytes, v.length * ed)
        # element-wise and reductions
        src0_bytes = v.length * e0
        per_row = Mux(argmax, 32, ed)
        row_result = reduction | argmax
        tensor = binary & (v.bcast == VecBcast.TENSOR)
        packed1 = binary & ((v.bcast == VecBcast.ROW) | (v.bcast == VecBcast.COL))
        packed1_bytes = Mux(v.bcast == VecBcast.ROW, v.rows, v.length) * e1
        dst_bytes = v.length * ed
        t_dst_bytes = v.rows * ed
        elementwise = plain & ~row_result

        def in_place(src, fmt, stride_field):
            """dst is exactly this TENSOR operand: same start, format and row stride, and
            rows that do not overlap each other (or a single row)."""
            same_stride = (stride_of(v.dst_stride, dst_bytes)
                           == stride_of(stride_field, dst_bytes))
            return ((dst == src) & (v.dst_fmt == fmt)
                    & ((v.rows == 1)
                       | (same_stride & (stride_of(v.dst_stride, dst_bytes) >= dst_bytes))))

        in_place0 = elementwise & in_place(src0, v.src0_fmt, v.src0_stride)
        in_place1 = tensor & in_place(src1, v.src1_fmt, v.src1_stride)
        one = Const(1, 1)
        scale_entries = cfg.scale_bytes // 2
        steps = [
            _Step(ErrorCode.ILLEGAL_OPERAND, v.accumulate, fail=~reduction),
            # QUANTIZE / DEQUANTIZE
            _Step(ErrorCode.ILLEGAL_OPERAND, quant, fail=fmt == WeightFormat.BF16),
            _Step(ErrorCode.UNSUPPORTED_FORMAT, quant, fail=~supported),
            _Step(ErrorCode.ILLEGAL_OPERAND, quant, fail=(v.length & block_mask) != 0),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, quant,
                  start=v.qscale * 2, row_bytes=(n_scales + Mux(nv, 2, 0)) * 2, stride=0,
                  rows=1, limit=scale_entries * 2),
            _Step(ErrorCode.ILLEGAL_OPERAND, quant & nv, fail=ts_bad),
            _Step(ErrorCode.ILLEGAL_OPERAND, op == VecOp.QUANTIZE,
                  fail=v.src0_fmt != ElemFormat.BF16),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, quant, start=src0 * beat, row_bytes=q_src_bytes,
                  stride=stride_of(v.src0_stride, q_src_bytes), rows=v.rows, limit=spad,
                  save="src0"),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, quant, start=dst * beat, row_bytes=q_dst_bytes,
                  stride=stride_of(v.dst_stride, q_dst_bytes), rows=v.rows, limit=spad,
                  save="dst"),
            # TRANSPOSE
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, transpose, start=src0 * beat,
                  row_bytes=src0_bytes, stride=stride_of(v.src0_stride, src0_bytes),
                  rows=v.rows, limit=spad, save="src0"),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, transpose, start=dst * beat,
                  row_bytes=t_dst_bytes, stride=stride_of(v.dst_stride, t_dst_bytes),
                  rows=v.length, limit=spad, save="dst"),
            # element-wise, reductions, ARGMAX4
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, plain & (op != VecOp.FILL), start=src0 * beat,
                  row_bytes=src0_bytes, stride=stride_of(v.src0_stride, src0_bytes),
                  rows=v.rows, limit=spad, save="src0"),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, row_result, start=dst * beat,
                  row_bytes=v.rows * per_row, stride=0, rows=1, limit=spad, save="dst"),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, tensor, start=src1 * beat,
                  row_bytes=v.length * e1, stride=stride_of(v.src1_stride, v.length * e1),
                  rows=v.rows, limit=spad, save="src1"),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, packed1, start=src1 * beat,
                  row_bytes=packed1_bytes, stride=0, rows=1, limit=spad, save="src1"),
            _Step(ErrorCode.SRAM_OUT_OF_RANGE, elementwise, start=dst * beat,
                  row_bytes=dst_bytes, stride=stride_of(v.dst_stride, dst_bytes),
                  rows=v.rows, limit=spad, save="dst"),
            # operand overlap (last, as in the simulator): dst must not overlap a source it
            # is still reading, except exactly in place; TRANSPOSE rows must not overlap
            _Step(ErrorCode.ILLEGAL_OPERAND, one, late=(
                (self._overlap("dst", dst * beat, "src0", src0 * beat) & ~in_place0)
                | (self._overlap("dst", dst * beat, "src1", src1 * beat) & ~in_place1)
                | (transpose & (v.length > 1)
                   & (stride_of(v.dst_stride, t_dst_bytes) < t_dst_bytes)))),
        ]
        return empty, steps

    # ----- elaboration ------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        self._comb = []
        isa = self.isa
        held = Signal(check_in_layout(self.config), name="chk_held")
        word = held.word
        ins = data.View(isa.instruction, word)
        opcode = word[:6]
        addr = held.addr
        # operand extents saved by span steps for the overlap step (ends fit: the span
        # passed its ≤ memory-size check before it is saved)
        self._ends = {n: Signal(66, name=f"chk_end_{n}") for n in _SLOTS}
        self._has = {n: Signal(name=f"chk_has_{n}") for n in _SLOTS}

        plans = {
            Opcode.LOAD: self._dma_steps(ins.dma, addr),
            Opcode.STORE: self._dma_steps(ins.dma, addr),
            Opcode.MATMUL: self._matmul_steps(ins.matmul, addr),
            Opcode.VECTOR: self._vector_steps(ins.vector, addr),
        }
        m.d.comb += self._comb
        n_steps = max(len(steps) for _, steps in plans.values())

        # ---- the resolved word ----
        resolved = Signal(len(word), name="chk_resolved")
        m.d.comb += resolved.eq(word)
        header = isa.header
        for field in ("ovr_field", "ovr_gpr"):
            f = header[field]
            m.d.comb += resolved[f.offset:f.offset + f.width].eq(0)
        with m.Switch(opcode):
            for op in _QUEUE_OPS:
                with m.Case(op.value):
                    for i, group in enumerate(address_groups(isa, op)):
                        for leaf in ("imm", "ar", "inc"):
                            info = isa.field_info(op, f"{group}.{leaf}")
                            value = addr[i] if leaf == "imm" else 0
                            m.d.comb += resolved[info.offset:info.offset + info.width].eq(value)

        # ---- step pipeline: S0 select, S1 multiply, S2 compare ----
        busy = Signal(name="chk_busy")
        issue = Signal(range(n_steps + 1), name="chk_issue")  # next step to select
        issuing = Signal(name="chk_issuing")
        slot_bits = (len(_SLOTS) + 1).bit_length()
        s1 = {k: Signal(name=f"chk_s1_{k}", shape=s) for k, s in
              (("valid", 1), ("last", 1), ("en", 1), ("fail", 1), ("base", 64),
               ("rows_m1", 21), ("stride", 44), ("limit", 64), ("span", 1), ("code", 8),
               ("slot", slot_bits), ("late", 1))}
        s2 = {k: Signal(name=f"chk_s2_{k}", shape=s) for k, s in
              (("valid", 1), ("last", 1), ("en", 1), ("fail", 1), ("base", 64),
               ("prod", 65), ("limit", 64), ("span", 1), ("code", 8), ("slot", slot_bits),
               ("late", 1))}
        result = Signal(ErrorCode, name="chk_result")
        finished = Signal(name="chk_finished")

        m.d.comb += self.i.ready.eq(~busy)
        with m.If(self.i.valid & ~busy):
            m.d.sync += [held.eq(self.i.payload), busy.eq(1), issue.eq(0), issuing.eq(1),
                         finished.eq(0), result.eq(ErrorCode.NONE)]
            m.d.sync += [h.eq(0) for h in self._has.values()]

        # S0: select step `issue` of this opcode
        sel = {k: Signal(s1[k].shape(), name=f"chk_sel_{k}") for k in s1}
        m.d.comb += sel["valid"].eq(issuing & ~finished)
        with m.Switch(opcode):
            for op in _QUEUE_OPS:
                empty, steps = plans[op]
                with m.Case(op.value):
                    with m.If(empty):
                        m.d.comb += sel["last"].eq(1)
                    with m.Switch(issue):
                        for k, st in enumerate(steps):
                            with m.Case(k):
                                m.d.comb += [
                                    sel["last"].eq(empty | (k == len(steps) - 1)),
                                    sel["en"].eq(st.en & ~empty),
                                    sel["code"].eq(st.code.value),
                                ]
                                if st.late is not None:
                                    m.d.comb += sel["late"].eq(1)
                                elif st.fail is not None:
                                    m.d.comb += sel["fail"].eq(st.fail)
                                else:
                                    if st.save is not None:
                                        m.d.comb += sel["slot"].eq(_SLOTS.index(st.save) + 1)
                                    m.d.comb += [
                                        sel["span"].eq((st.rows != 0)
                                                       & (st.row_bytes != 0)),
                                        sel["base"].eq(st.start + st.row_bytes),
                                        sel["rows_m1"].eq(st.rows - 1),
                                        sel["stride"].eq(st.stride),
                                        sel["limit"].eq(st.limit),
                                    ]
            with m.Default():  # not a queue op: nothing to check
                m.d.comb += sel["last"].eq(1)
        with m.If(sel["valid"]):
            m.d.sync += issue.eq(issue + 1)
            with m.If(sel["last"]):
                m.d.sync += issuing.eq(0)
        m.d.sync += [s1[k].eq(sel[k]) for k in s1]
        # S1: multiply
        m.d.sync += [s2[k].eq(s1[k]) for k in s2 if k in s1]
        m.d.sync += s2["prod"].eq(s1["rows_m1"] * s1["stride"])
        # S2: compare; the first failing step wins (later ones are still in flight).  The
        # opcode's late (overlap) condition reads the extents saved by earlier steps.
        end = s2["base"] + s2["prod"]
        span_fail = s2["span"] & (end > s2["limit"])
        late_fail = Signal(name="chk_late_fail")
        with m.Switch(opcode):
            for op in _QUEUE_OPS:
                lates = [st.late for st in plans[op][1] if st.late is not None]
                assert len(lates) <= 1, "one late step per opcode"
                if lates:
                    with m.Case(op.value):
                        m.d.comb += late_fail.eq(lates[0])
        fails = s2["en"] & (s2["fail"] | span_fail | (s2["late"] & late_fail))
        with m.If(s2["valid"] & ~finished):
            with m.If(fails):
                m.d.sync += [result.eq(s2["code"]), finished.eq(1), issuing.eq(0)]
            with m.Elif(s2["last"]):
                m.d.sync += finished.eq(1)
            with m.If(s2["en"]):
                for i, name in enumerate(_SLOTS):
                    with m.If(s2["slot"] == i + 1):
                        m.d.sync += [self._ends[name].eq(end), self._has[name].eq(s2["span"])]
        # a failure stops the steps behind it
        with m.If(finished):
            m.d.sync += [s1["valid"].eq(0), s2["valid"].eq(0)]

        m.d.comb += [
            self.o.valid.eq(busy & finished),
            self.o.payload.word.eq(resolved),
            self.o.payload.error.eq(result),
            self.o.payload.pc.eq(held.pc),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [busy.eq(0), finished.eq(0)]
        return m
