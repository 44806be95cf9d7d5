"""Read side of the VECTOR execution unit: scratchpad rows of an operand → lane beats.

:class:`OperandReader` walks one 2-D scratchpad operand (``rows`` operand rows of ``length``
bf16 or fp32 elements, operand row *r* starting at scratchpad row ``base + r·stride``; see
docs/isa.md "VECTOR operands"), issues one read request per scratchpad row it touches, and
cuts the returned rows into beats of ``lanes`` fp32 bit patterns (bf16 is widened by a 16-bit
shift; FTZ and NaN canonicalisation happen in the datapath, whose every operation applies
them). :class:`ScalarSerializer` turns the beats of a packed element vector (per-row
scalars: ROW broadcast, the old reduction results) into one value per transfer.

Geometry (B = bytes per scratchpad row, L = lanes; ``2·L ≤ B`` always holds): a bf16 beat is
``2·L`` bytes, so one row holds ``B / 2L`` beats; an fp32 beat is ``4·L`` bytes, ``B / 4L``
beats per row when ``4·L ≤ B``, otherwise (``4·L = 2·B``) every beat spans two rows and the
reader keeps the first one in a register. Every operand row starts on a fresh scratchpad row
and its last beat may be short.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..config import EngineConfig
from .engine_if import memory_geometry

__all__ = ["COUNT_BITS", "OperandReader", "ScalarSerializer", "beat_layout", "packed_rows"]

#: Width of the ISA's ``length`` / ``rows`` fields (docs/isa.md: 20-bit, no anchor limits).
COUNT_BITS = 20


def beat_layout(lanes: int) -> data.StructLayout:
    """One operand beat: ``data`` (fp32 bit patterns), ``count`` (valid lanes 1…L: less
    than L only on an operand row's last beat) and ``last`` (the operand row's last beat)."""
    return data.StructLayout({
        "data": data.ArrayLayout(32, lanes),
        "count": unsigned(ceil_log2(lanes + 1)),
        "last": 1,
    })


def packed_rows(m: Module, length, fp32, beat_bytes: int, width: int, name: str) -> Signal:
    """Scratchpad rows of one packed row of ``length`` elements: ``ceil(length·e / B)``."""
    nbytes = Mux(fp32, length << 2, length << 1)
    rows = Signal(width, name=name)
    m.d.comb += rows.eq((nbytes + beat_bytes - 1) >> exact_log2(beat_bytes))
    return rows


class OperandReader(wiring.Component):
    """Read one operand from the scratchpad and deliver it as lane beats, with read-ahead.

    Parameters
    ----------
    config:
        ``lanes`` (L), ``axi_bytes`` (B) and the scratchpad geometry are used.
    depth:
        Scratchpad rows of read-ahead (the row FIFO; the reader never has more rows requested
        or waiting than this, so it can always take the answers).
    cache_rows:
        With ``repeat`` (the same operand row for every row, COL broadcast) and an operand row
        of at most this many scratchpad rows, the rows read for operand row 0 are kept in a
        local memory and every later operand row is read from there, not from the port
        (0 = no cache).

    Ports
    -----
    start : In(1)
        Pulse: sample ``cfg`` and begin (the previous run must have delivered all its beats).
    cfg : In(cfg_layout)
        ``base`` (first scratchpad row), ``stride`` (rows between operand rows, 0 = packed:
        ``ceil(length·e / B)``), ``rows`` (operand rows, 0 = read nothing), ``length``
        (elements per operand row, ≥ 1 when ``rows`` > 0), ``fp32`` (element format; else
        bf16), ``repeat`` (every operand row is the same row: stride 0, e.g. COL broadcast).
    req : Out(stream.Signature(addr))
        Read requests (scratchpad row addresses), in order; the client arbitrates them onto
        the memory port. ``valid`` never depends on ``ready``; the address is held until taken.
    fill : In(stream.Signature(8·B, always_ready=True))
        The answer rows, in request order (the client routes the port's responses here).
    beats : Out(stream.Signature(beat_layout(L)))
        The operand, beat by beat, operand rows back to back.

    Timing
    ------
    One request per cycle while read-ahead credit lasts; a beat is available the cycle after
    its (last) row enters the FIFO (``SyncFIFOBuffered``: 2 cycles from ``fill``). One beat per
    cycle, except fp32 beats spanning two rows (one per two rows). Cached rows need no port
    cycle; they start once every row of operand row 0 has been answered.
    """

    def __init__(self, config: EngineConfig, *, depth: int = 8, cache_rows: int = 0):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"OperandReader needs an EngineConfig, got {type(config).__name__}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
            raise ValueError(f"OperandReader: depth must be an int ≥ 2, got {depth!r}")
        if isinstance(cache_rows, bool) or not isinstance(cache_rows, int) or cache_rows < 0:
            raise ValueError(f"OperandReader: cache_rows must be an int ≥ 0, got {cache_rows!r}")
        self.config = config
        self.lanes = config.lanes
        self.beat_bytes = config.axi_bytes
        self.depth = depth
        self.cache_rows = cache_rows
        geometry = memory_geometry(config)["spad"]
        self.addr_bits = geometry.addr_bits
        self.cfg_layout = data.StructLayout({
            "base": unsigned(self.addr_bits),
            "stride": unsigned(self.addr_bits),
            "rows": unsigned(COUNT_BITS),
            "length": unsigned(COUNT_BITS),
            "fp32": 1,
            "repeat": 1,
        })
        super().__init__({
            "start": In(1),
            "cfg": In(self.cfg_layout),
            "req": Out(stream.Signature(unsigned(self.addr_bits))),
            "fill": In(stream.Signature(unsigned(8 * self.beat_bytes), always_ready=True)),
            "beats": Out(stream.Signature(beat_layout(self.lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, bb = self.lanes, self.beat_bytes
        cfg = Signal(self.cfg_layout)
        with m.If(self.start):
            m.d.sync += cfg.eq(self.cfg)

        # ---- derived sizes (combinational from the registered command).
        addr_w = self.addr_bits + 1  # a packed row can be as long as the whole scratchpad
        per_row = packed_rows(m, cfg.length, cfg.fp32, bb, addr_w, "per_row")
        stride = Mux(cfg.repeat, 0, Mux(cfg.stride != 0, cfg.stride, per_row))
        beats_per_row = Signal(COUNT_BITS)
        last_count = Signal(len(self.beats.payload.count))
        m.d.comb += [
            beats_per_row.eq((cfg.length + lanes - 1) >> exact_log2(lanes)),
            last_count.eq(((cfg.length - 1) & (lanes - 1)) + 1),
        ]

        # ---- row FIFO with credits: a request needs a free place for its answer.
        fifo = SyncFIFOBuffered(width=8 * bb, depth=self.depth)
        m.submodules.fifo = fifo
        credits = Signal(range(self.depth + 1), init=self.depth)
        issue = Signal()  # a row is requested (from the port or the cache) this cycle
        m.d.sync += credits.eq(credits - issue + fifo.r_en)

        # ---- address generator: operand row r, row q inside it.
        row = Signal(COUNT_BITS)  # row == cfg.rows (both 0 after reset): nothing to request
        q = Signal(addr_w)
        row_base = Signal(self.addr_bits)
        wanted = (row != cfg.rows) & (credits != 0)
        local = Signal()  # this row comes from the cache
        m.d.comb += [
            self.req.valid.eq(wanted & ~local),
            self.req.payload.eq(row_base + q),
            issue.eq(self.req.valid & self.req.ready),
        ]
        with m.If(self.start):
            m.d.sync += [row.eq(0), q.eq(0), row_base.eq(self.cfg.base)]
        with m.Elif(issue):
            with m.If(q == per_row - 1):
                m.d.sync += [q.eq(0), row.eq(row + 1), row_base.eq(row_base + stride)]
            with m.Else():
                m.d.sync += q.eq(q + 1)

        fill_data, fill_valid = self.fill.payload, self.fill.valid
        if self.cache_rows:
            # Operand row 0's rows are written into the cache as they arrive; the later
            # operand rows are read from it once all of them have (so the FIFO stays in order).
            cache = Memory(shape=8 * bb, depth=self.cache_rows, init=[])
            m.submodules.cache = cache
            wr, rd = cache.write_port(), cache.read_port(transparent_for=())
            cached = cfg.repeat & (per_row <= self.cache_rows)
            filled = Signal(addr_w)  # rows of operand row 0 answered so far
            complete = filled == per_row
            m.d.comb += [
                wr.addr.eq(filled), wr.data.eq(self.fill.payload),
                wr.en.eq(self.fill.valid & cached & ~complete),
                local.eq(cached & (row != 0)),
                rd.addr.eq(q),
            ]  # fmt: skip
            with m.If(self.start):
                m.d.sync += filled.eq(0)
            with m.Elif(self.fill.valid & ~complete):
                m.d.sync += filled.eq(filled + 1)
            with m.If(wanted & local & complete):
                m.d.comb += issue.eq(1)
            answer = Signal()
            m.d.sync += answer.eq(wanted & local & complete)
            fill_data = Mux(answer, rd.data, self.fill.payload)
            fill_valid = answer | self.fill.valid
        m.d.comb += [fifo.w_data.eq(fill_data), fifo.w_en.eq(fill_valid)]

        # ---- extractor: FIFO head → beats.
        beat = Signal(COUNT_BITS)  # beat index inside the operand row
        is_last = beat == beats_per_row - 1
        sub = Signal(range(max(2, bb // (2 * lanes))))  # beat position inside the row
        split = 4 * lanes > bb  # an fp32 beat spans two rows (4·L = 2·B)
        head = fifo.r_data
        h16 = [head[16 * i:16 * i + 16] for i in range(bb // 2)]
        h32 = [head[32 * i:32 * i + 32] for i in range(bb // 4)]
        per_row_bf16 = bb // (2 * lanes)
        per_row_fp32 = 1 if split else bb // (4 * lanes)

        out = self.beats.payload
        low = Signal(8 * bb)  # split fp32: the first row of the beat
        second = Signal()  # split fp32: `low` holds the first row, the head is the second
        low32 = [low[32 * i:32 * i + 32] for i in range(bb // 4)]
        for i in range(lanes):
            bf16 = Array(h16[s * lanes + i] for s in range(per_row_bf16))[sub] \
                if per_row_bf16 > 1 else h16[i]
            if split:
                half = lanes // 2
                fp32 = Mux(second, low32[i], h32[i]) if i < half else h32[i - half]
            else:
                fp32 = Array(h32[s * lanes + i] for s in range(per_row_fp32))[sub] \
                    if per_row_fp32 > 1 else h32[i]
            m.d.comb += out.data[i].eq(Mux(cfg.fp32, fp32, Cat(Const(0, 16), bf16)))
        m.d.comb += [out.last.eq(is_last), out.count.eq(Mux(is_last, last_count, lanes))]

        per_row_now = Mux(cfg.fp32, per_row_fp32, per_row_bf16)
        row_done = is_last | (sub == per_row_now - 1)  # the beat uses the row's last bytes
        if split:
            # The beat needs two rows unless it is a short last beat that fits in one.
            two_rows = cfg.fp32 & ~(is_last & (last_count <= lanes // 2))
            latch = two_rows & ~second  # take the first row into `low`, no beat yet
            m.d.comb += self.beats.valid.eq(fifo.r_rdy & ~latch)
            with m.If(fifo.r_rdy & latch):
                m.d.sync += [low.eq(head), second.eq(1)]
        else:
            latch = 0
            m.d.comb += self.beats.valid.eq(fifo.r_rdy)
        sent = self.beats.valid & self.beats.ready
        with m.If(sent):
            m.d.sync += [
                beat.eq(Mux(is_last, 0, beat + 1)),
                sub.eq(Mux(row_done, 0, sub + 1)),
            ]
            if split:
                m.d.sync += second.eq(0)
        m.d.comb += fifo.r_en.eq((sent & row_done) | (fifo.r_rdy & latch))
        with m.If(self.start):
            m.d.sync += [beat.eq(0), sub.eq(0)]
            if split:
                m.d.sync += second.eq(0)
        return m


class ScalarSerializer(wiring.Component):
    """One element per transfer out of the beats of a packed vector (per-row scalars).

    Ports
    -----
    beats : In(stream.Signature(beat_layout(L)))
        A packed vector as :class:`OperandReader` delivers it (one operand row).
    o : Out(stream.Signature(32))
        Lane 0, 1, … of each beat in turn (``count`` of them), one per transfer.

    No added latency (``o`` is combinational from the beat); one element per cycle.
    """

    def __init__(self, lanes: int):
        self.lanes = lanes
        super().__init__({
            "beats": In(stream.Signature(beat_layout(lanes))),
            "o": Out(stream.Signature(32)),
        })

    def elaborate(self, platform):
        m = Module()
        index = Signal(range(max(2, self.lanes)))
        beat = self.beats.payload
        end = index == beat.count - 1
        m.d.comb += [
            self.o.valid.eq(self.beats.valid),
            self.o.payload.eq(Array(beat.data[i] for i in range(self.lanes))[index]),
            self.beats.ready.eq(self.o.ready & end),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += index.eq(Mux(end, 0, index + 1))
        return m
