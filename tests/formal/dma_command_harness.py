"""Formal harness of ``DmaCommand``, the DMA units' front end with the DRAM window check.

``CommandHarness`` has the ports of ``DmaCommand``; every input is free (the instruction word,
its VALID, the window registers, the data path's ``busy``) except where an ``Assume`` says
otherwise.  What it proves (``Assert``), for *any* 256-bit LOAD/STORE word and window:

1. **Window decision** (``host/units.py: dma``): a command starts its data path iff it moves at
   least one byte and its DRAM bytes ``[dram, dram + (rows − 1)·dram_stride + row_bytes)``
   (exact integers, no wrap) lie in ``[window_base, window_limit)``; a non-empty command
   outside the window ends with ``done`` and ``error``; an empty one with ``done`` alone.
2. **The job is the instruction**: on ``start`` the job handed to the data path describes the
   same bytes (the packed case merged into one row) and every row of it lies in the window:
   ``first ≥ base``, ``first ≤ last``, ``last + (rows − 1)·stride < limit`` (rows grow
   monotonically with the stride, so the first and last row bound all of them).  This is the
   precondition under which the burst issuer is proved (``issuer_harness.py``).
3. **Command handshake**: ``cmd.ready`` exactly while no command is in flight; one ``start`` at
   most and exactly one ``done`` per accepted command; ``start`` in cycle 2 after acceptance,
   ``done`` no earlier than the data path's ``busy`` falls; ``error`` changes only when a command
   is accepted or refused.

Environment: the window registers do not change while a command is in flight (the CSR block
only writes them while the engine is idle); the command stream keeps the stream rules.  The
window limit is free over its whole range, including values past ``2^axi_addr_width``
(which the CSR block keeps, "a limit of 2**40 still covers all of a 34-bit space"): a
transfer must still never run past the top of the address space (finding F1 of
``docs/reliability.md``, fixed in ``DmaCommand``'s CHECK state).

``limit_slack`` (test of the test): the design sees ``window_limit + limit_slack`` while the
properties use the true limit, i.e. a window comparison that is off by ``limit_slack`` bytes.
Any ``limit_slack > 0`` must make the proof fail.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cover, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.utils import exact_log2

from unified_engine.config import EngineConfig
from unified_engine.isa import MemTarget, isa_for
from unified_engine.rtl.dma_command import DmaCommand

from .props import stream_rules

__all__ = ["CommandHarness"]


class CommandHarness(wiring.Component):
    """``DmaCommand`` with its properties (module docstring)."""

    def __init__(self, config: EngineConfig, *, limit_slack: int = 0) -> None:
        self._config = config
        self._slack = limit_slack
        self.dut = DmaCommand(config)
        super().__init__(self.dut.signature)

    def elaborate(self, platform) -> Module:
        m = Module()
        config = self._config
        m.submodules.dut = dut = self.dut
        wiring.connect(m, wiring.flipped(self.unit), dut.unit)
        m.d.comb += [
            dut.window_base.eq(self.window_base),
            dut.window_limit.eq(self.window_limit + self._slack),
            dut.busy.eq(self.busy),
            self.error.eq(dut.error),
            self.start.eq(dut.start),
            self.job.eq(dut.job),
        ]
        base, limit = self.window_base, self.window_limit
        cmd, done, job = dut.unit.cmd, dut.unit.done, dut.job
        stream_rules(m, cmd, "cmd", environment=True)

        # The accepted command, as the monitor saw it, and the product (rows − 1)·dram_stride
        # of the specification, computed at acceptance as two half-width products summed in
        # the design's order (exact at full width, so the order is immaterial).  A SAT solver
        # cannot prove two differently built 20×32-bit multipliers or re-associated sums of
        # their outputs equal in reasonable time; built alike they are merged by structural
        # hashing, while a wrong split, shift, width or operand in the design still shows
        # as a difference.
        layout = isa_for(config).layouts["dma"]
        fields = data.View(layout, cmd.payload)
        cur = Signal(layout)
        half = (len(fields.dram_stride) + 1) // 2
        rows_m1 = (fields.rows - 1)[:len(fields.rows)]
        prod_lo = Signal(len(fields.rows) + half)
        prod_hi = Signal(len(fields.rows) + len(fields.dram_stride) - half)
        accepted = cmd.valid & cmd.ready
        in_flight = Signal()
        started = Signal()
        age = Signal(range(4))  # acceptance is cycle 0: 1 in the next cycle, saturating at 3
        with m.If(accepted):
            m.d.sync += [
                cur.eq(fields), in_flight.eq(1), started.eq(0), age.eq(1),
                prod_lo.eq(rows_m1 * fields.dram_stride[:half]),
                prod_hi.eq(rows_m1 * fields.dram_stride[half:]),
            ]
        with m.Else():
            with m.If(done):
                m.d.sync += in_flight.eq(0)
            with m.If(dut.start):
                m.d.sync += started.eq(1)
            with m.If(age != 3):
                m.d.sync += age.eq(age + 1)

        # Window registers only change while idle.
        prev_base = Signal.like(base)
        prev_limit = Signal.like(limit)
        m.d.sync += [prev_base.eq(base), prev_limit.eq(limit)]
        m.d.comb += Assume(~in_flight | ((base == prev_base) & (limit == prev_limit)))

        # The specification (host/units.py: dma), at full width.
        empty = (cur.rows == 0) | (cur.row_bytes == 0)
        product = prod_lo + (prod_hi << half)
        end = cur.dram.imm + cur.row_bytes + prod_lo + (prod_hi << half)
        # the simulator's window is [base, limit) inside DRAM, which is inside the address space
        inside = (cur.dram.imm >= base) & (end <= limit) & (end <= 2 ** config.axi_addr_width)

        # 3. Command handshake.
        m.d.comb += [
            Assert(cmd.ready == ~in_flight, "cmd.ready exactly while no command is in flight"),
            Assert(~done | in_flight, "done only for an accepted command"),
            Assert(~dut.start | (in_flight & ~started & (age == 2)),
                   "start once, in cycle 2 after acceptance"),
            Assert(~in_flight | started | (age < 3), "by cycle 3 a command started or ended"),
            Assert(~(done & started) | ~self.busy, "done only once the data path is idle"),
        ]
        # ``error`` is a register: it may change in the cycle after an acceptance (cleared) or
        # after a ``done`` (set for a refused command), and at no other time.
        prev_error = Signal()
        may_change = Signal()
        expect_error = Signal()
        m.d.sync += [prev_error.eq(dut.error), may_change.eq(accepted | done)]
        with m.If(done):
            m.d.sync += expect_error.eq(~started & ~empty)
        m.d.comb += Assert((dut.error == prev_error) | may_change,
                           "error changes only when a command is accepted or ends")
        with m.If(~in_flight & (age != 0)):
            m.d.comb += Assert(dut.error == expect_error,
                               "after done: error iff the command was refused")
        with m.If(in_flight):
            m.d.comb += Assert(~dut.error, "error low while a command is in flight")

        # 1. The window decision.
        m.d.comb += [
            Assert(~dut.start | (~empty & inside), "start only for an in-window command"),
            Assert(~dut.start | (end <= 2 ** config.axi_addr_width),
                   "start only for a transfer inside the address space"),
            Assert(~(done & ~started) | empty | ~inside,
                   "an in-window command is not refused"),
        ]

        # 2. The job: the instruction's bytes.
        sram_stride = Mux(cur.sram_stride == 0, cur.row_bytes, cur.sram_stride)
        packed = (cur.dram_stride == cur.row_bytes) & (sram_stride == cur.row_bytes)
        # Bytes per job row: the whole transfer if packed (rows·row_bytes), else row_bytes.
        count = Mux(packed, cur.row_bytes + product, cur.row_bytes)
        lb = exact_log2(config.axi_bytes)
        sram_first = Mux(cur.mem == MemTarget.SCRATCHPAD, cur.sram.imm << lb,
                         cur.sram.imm << 1)
        with m.If(in_flight & (age != 0)):
            m.d.comb += [
                Assert(job.mem == cur.mem, "job: memory"),
                Assert(job.dram.first == cur.dram.imm, "job: DRAM start"),
                Assert(job.dram.stride == cur.dram_stride, "job: DRAM stride"),
                Assert(job.sram.first == sram_first[:len(job.sram.first)], "job: on-chip start"),
                Assert(job.sram.stride == sram_stride, "job: on-chip stride"),
            ]
        with m.If(dut.start):
            m.d.comb += [
                Assert(job.rows == Mux(packed, 1, cur.rows), "job: rows (packed → one)"),
                # Addresses are modulo 2**axi_addr_width in the data path; that nothing wraps
                # follows from the window decision (end ≤ limit ≤ 2**axi_addr_width): row r
                # of the job is [first + r·stride, last + r·stride] ⊆ [dram, end).
                Assert(job.dram.last == (cur.dram.imm + count - 1)[:len(job.dram.last)],
                       "job: DRAM row length"),
                Assert(job.sram.last == (sram_first + count - 1)[:len(job.sram.last)],
                       "job: on-chip row length"),
            ]

        # Vacuity guards (mode "cover"): each verdict is reachable.
        m.d.comb += [
            Cover(dut.start & (end == limit) & (cur.rows > 1) & ~packed),
            Cover(dut.start & packed & (cur.rows > 1)),
            Cover(done & ~started & ~empty & (end == limit + 1)),
            Cover(done & ~started & ~empty & (cur.dram.imm + 1 == base)),
            Cover(done & ~started & empty),
        ]
        return m
