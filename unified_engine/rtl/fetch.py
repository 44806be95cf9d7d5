"""``InstructionFetch``: instruction words from DRAM through a direct-mapped instruction cache.

The dispatcher asks for instruction ``pc`` (``fetch.req``); the word lives at DRAM byte
address ``a = PROGRAM_ADDR + 32·pc`` (PROGRAM_ADDR bits 4:0 ignored, as in ``docs/isa.md``).
``fetch.resp`` answers every request in order with the 256-bit word, or with ``error`` = 1
(FETCH_OUT_OF_WINDOW) when the 32 bytes at ``a`` are not all inside
``[window_base, window_limit)``; nothing is read from DRAM for such a request.

Cache
-----
``config.icache_instructions`` words in lines of 8 (256 bytes); lines are aligned 256-byte
blocks of DRAM and the cache is indexed and tagged by DRAM address (so a new PROGRAM_ADDR
needs no flush; new DRAM contents do: ``invalidate``, pulsed at START, clears every line in
one cycle; a fill in flight then completes on the bus but does not validate its line).
A miss fills the line with **one** AXI INCR burst: beat-aligned, inside the line, so it never
crosses 4 KB. Near the window edges only the *in-window part* of the line is read: the burst
covers the beats that hold at least one window byte (bytes of those beats outside the window
are discarded, as the memory model and AXI permit for reads). Words the fill did not read
are out of the window, so they are never answered from the cache (the window must only change
together with an ``invalidate``, which START guarantees). A word is written into the cache as
its beats arrive (at AXI widths below 256 bits, one slice of the row per beat; at 512/1024
bits one beat carries 2/4 words and fills a whole row).

``r.resp`` error codes are not checked (the engine has no error code for a failing DRAM).

Ports
-----
``fetch``: ``In(engine_if.fetch_signature())``; ``axi``: AXI4 manager (read channels only,
``ar.id`` = 0; ``aw``/``w`` idle, ``b`` always ready); ``program_addr``, ``window_base``,
``window_limit`` (one more bit), ``invalidate`` (one-cycle pulse).

Timing
------
Hit: the response is valid the cycle after the request is accepted; requests are accepted
every cycle while the responses are taken, so hits stream at one word per cycle.
Miss: ``AXI latency + beats`` cycles of the fill, plus 3 cycles (AR, settling of the cache
RAMs, answer). Out of window: answered the next cycle, like a hit.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..config import EngineConfig
from ..isa import INSTRUCTION_BITS
from .axi import axi4_signature
from .engine_if import ENGINE_AXI_ID_WIDTH, fetch_signature

__all__ = ["LINE_BYTES", "LINE_INSTRUCTIONS", "InstructionFetch"]

INSTRUCTION_BYTES = INSTRUCTION_BITS // 8
#: Instructions per cache line (one AXI burst of 256 bytes).
LINE_INSTRUCTIONS = 8
LINE_BYTES = LINE_INSTRUCTIONS * INSTRUCTION_BYTES


class InstructionFetch(wiring.Component):
    """The instruction fetch unit and its cache (see the module docstring)."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        aw = config.axi_addr_width
        super().__init__({
            "fetch": In(fetch_signature()),
            "axi": Out(axi4_signature(addr_width=aw, data_width=config.axi_data_width,
                                      id_width=ENGINE_AXI_ID_WIDTH)),
            "program_addr": In(aw),
            "window_base": In(aw + 1),
            "window_limit": In(aw + 1),
            "invalidate": In(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        aw = cfg.axi_addr_width
        beat = cfg.axi_bytes
        beat_bits = exact_log2(beat)
        sets = cfg.icache_instructions // LINE_INSTRUCTIONS
        set_bits = exact_log2(sets)
        line_bits = exact_log2(LINE_BYTES)
        row_width = max(INSTRUCTION_BITS, cfg.axi_data_width)  # one beat or one word
        row_bytes_bits = exact_log2(row_width // 8)
        rows = cfg.icache_instructions * INSTRUCTION_BITS // row_width
        tag_lo = line_bits + set_bits
        tag_bits = max(1, aw - tag_lo)

        def row_of(addr):
            return addr[row_bytes_bits:tag_lo]

        def set_of(addr):
            return addr[line_bits:tag_lo]

        def tag_of(addr):
            return addr[tag_lo:aw] if aw > tag_lo else Const(0, 1)

        # Below 256 bits a beat is one slice of a row: write it with that slice's enable.
        m.submodules.words = words = Memory(shape=row_width, depth=rows, init=[])
        slices = row_width // cfg.axi_data_width
        w_port = words.write_port(granularity=cfg.axi_data_width if slices > 1 else None)
        r_port = words.read_port(domain="sync")
        m.submodules.tags = tags = Memory(shape=tag_bits, depth=sets, init=[])
        tag_w = tags.write_port()
        tag_r = tags.read_port(domain="sync")
        line_valid = Signal(sets)

        req, resp, axi = self.fetch.req, self.fetch.resp, self.axi

        # ----- stage 0: accept a pc, compute its address, start the RAM reads ---------------
        full = max(aw, 32 + 5) + 1  # 32·pc + PROGRAM_ADDR without wrapping
        addr = Signal(full)
        m.d.comb += addr.eq(Cat(Const(0, 5), self.program_addr[5:]) + (req.payload << 5))
        # WINDOW_LIMIT may lie past 2**aw (it has one more bit): a word that ends past the top
        # of the address space would wrap to address 0, so it is outside too (as in the model).
        end = addr + INSTRUCTION_BYTES
        outside = (addr < self.window_base) | (end > self.window_limit) | (end > (1 << aw))

        s1_valid = Signal()
        s1_addr = Signal(aw)
        s1_error = Signal()
        answered = Signal()  # resp.valid was high and not taken: keep it high
        accept = Signal()
        m.d.comb += accept.eq(req.valid & req.ready)
        with m.If(accept):
            m.d.sync += [s1_valid.eq(1), s1_addr.eq(addr[:aw]), s1_error.eq(outside)]
        with m.Elif(resp.valid & resp.ready):
            m.d.sync += s1_valid.eq(0)
        # The RAMs read the new request's row, or re-read the held one each cycle (so a held
        # answer stays on the output, and a filled line appears after its fill).
        m.d.comb += [
            r_port.addr.eq(Mux(accept, row_of(addr), row_of(s1_addr))),
            tag_r.addr.eq(Mux(accept, set_of(addr), set_of(s1_addr))),
        ]

        # ----- stage 1: hit check and answer ------------------------------------------------
        idle = Signal()  # the fill FSM is idle and the RAM outputs are current
        hit = Signal()
        m.d.comb += hit.eq(idle & line_valid.bit_select(set_of(s1_addr), 1)
                           & (tag_r.data == tag_of(s1_addr)))
        m.d.comb += resp.valid.eq(s1_valid & (answered | s1_error | hit))
        m.d.sync += answered.eq(resp.valid & ~resp.ready)
        word = r_port.data
        if row_width > INSTRUCTION_BITS:
            word = r_port.data.word_select(
                s1_addr[exact_log2(INSTRUCTION_BYTES):row_bytes_bits], INSTRUCTION_BITS)
        m.d.comb += [
            resp.payload.word.eq(word),
            resp.payload.error.eq(s1_error),
            req.ready.eq(~s1_valid | (resp.valid & resp.ready)),
        ]

        # ----- line fill ------------------------------------------------------------------
        miss = s1_valid & ~s1_error & ~answered & ~hit
        line = Cat(Const(0, line_bits), s1_addr[line_bits:aw])
        first_beat = Cat(Const(0, beat_bits), self.window_base[beat_bits:])
        last_beat = Cat(Const(0, beat_bits), (self.window_limit + beat - 1)[beat_bits:])
        lo = Mux(first_beat > line, first_beat, line)
        hi = Mux(last_beat < line + LINE_BYTES, last_beat, line + LINE_BYTES)
        beats = (hi - lo)[beat_bits:]

        fill_addr = Signal(aw)  # byte address of the next beat
        fill_len = Signal(8)  # AXI len (beats − 1) of the fill burst
        fill_set = Signal(set_bits)
        cancelled = Signal()  # an invalidate came during the fill
        m.d.comb += [
            axi.ar.payload.id.eq(0),
            axi.ar.payload.addr.eq(fill_addr),
            axi.ar.payload.len.eq(fill_len),
            axi.b.ready.eq(1),
        ]
        with m.If(self.invalidate):
            m.d.sync += [line_valid.eq(0), cancelled.eq(1)]

        with m.FSM(name="fill"):
            with m.State("IDLE"):
                m.d.comb += idle.eq(1)
                with m.If(miss):
                    m.d.sync += [
                        fill_addr.eq(lo),
                        fill_len.eq(beats - 1),
                        fill_set.eq(set_of(s1_addr)),
                        cancelled.eq(self.invalidate),
                        line_valid.bit_select(set_of(s1_addr), 1).eq(0),
                    ]
                    # The tag goes in now; the line only counts once its valid bit is set.
                    m.d.comb += [
                        tag_w.addr.eq(set_of(s1_addr)),
                        tag_w.data.eq(tag_of(s1_addr)),
                        tag_w.en.eq(1),
                    ]
                    m.next = "AR"
            with m.State("AR"):
                m.d.comb += axi.ar.valid.eq(1)
                with m.If(axi.ar.ready):
                    m.next = "FILL"
            with m.State("FILL"):
                m.d.comb += axi.r.ready.eq(1)
                m.d.comb += [
                    w_port.addr.eq(row_of(fill_addr)),
                    w_port.data.eq(axi.r.payload.data.replicate(slices)),
                ]
                with m.If(axi.r.valid):
                    if slices > 1:
                        slot = fill_addr[beat_bits:row_bytes_bits]
                        m.d.comb += w_port.en.eq(Const(1, slices) << slot)
                    else:
                        m.d.comb += w_port.en.eq(1)
                    m.d.sync += fill_addr.eq(fill_addr + beat)
                    with m.If(axi.r.payload.last):
                        with m.If(~cancelled & ~self.invalidate):
                            m.d.sync += line_valid.bit_select(fill_set, 1).eq(1)
                        m.next = "SETTLE"
            with m.State("SETTLE"):
                # The RAM outputs of this cycle were read before the last write: wait.
                m.next = "IDLE"
        return m
