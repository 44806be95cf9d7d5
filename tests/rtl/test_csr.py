# amaranth: UnusedElaboratable=no
"""CsrBlock: the CSR map over AXI4-Lite against the model backend (``host/model.py``).

The harness puts the CSR block next to small stand-ins for what it talks to: a GPR file that
ignores writes to r0 (as the dispatcher does), the SoC's sync-flag register
(``flags ← (flags | set) & ~clear``) and a trace "buffer" whose entry for index i is a fixed
function of i (0 past ``count``, one cycle late like the real one).  Status is driven by the
test.  Reads are compared with a ``ModelDevice`` that saw the same writes; where the RTL
stores fewer bits than the model (documented in ``rtl/csr.py``) the model value is reduced
to the stored bits.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Array, Cat, Elaboratable, Module, Mux, Signal
from amaranth.lib import wiring
from simhelpers import run

from unified_engine.config import EngineConfig
from unified_engine.host.model import ModelDevice
from unified_engine.regs import REGISTERS, TRACE_ENTRY, ErrorCode, TraceMode, reg, reset_values
from unified_engine.rtl.csr import CsrBlock
from unified_engine.rtl.engine_if import TRACE_SOURCES
from unified_engine.rtl.trace import TraceBuffer

CTRL = reg("CONTROL")
STATUS = reg("STATUS")
_BY_NAME = {r.name: r for r in REGISTERS}
_COUNTERS = ("CYCLES", "INSTRET", "LOAD_BUSY", "LOAD_STALL", "ARRAY_BUSY", "ARRAY_STALL",
             "VECTOR_BUSY", "VECTOR_STALL", "STORE_BUSY", "STORE_STALL", "DISPATCH_STALL")


def small(**changes) -> EngineConfig:
    return dataclasses.replace(EngineConfig.preset("sim_small"), **changes)


def trace_rom(index: int) -> int:
    return (index ^ 0xA5A5A5A5) | ((~index & 0xFFFFFFFF) << 32)


class Harness(Elaboratable):
    """CsrBlock + GPR file + sync-flag register + trace stand-in (see the module docstring)."""

    def __init__(self, config: EngineConfig, engine_index: int = 0) -> None:
        self.config = config
        self.csr = CsrBlock(config, engine_index)
        self.gprs = [Signal(32, name=f"gpr{i}") for i in range(config.gprs)]
        self.flags = Signal(32)
        self.trace_count = Signal(32)
        self.gpr_writes = Signal(16)  # number of gpr.we pulses (r0 included)

    def elaborate(self, platform):
        m = Module()
        m.submodules.csr = csr = self.csr
        gprs = Array(self.gprs)
        m.d.comb += csr.gpr.rdata.eq(gprs[csr.gpr.index])
        with m.If(csr.gpr.we):
            m.d.sync += self.gpr_writes.eq(self.gpr_writes + 1)
            with m.If(csr.gpr.index != 0):
                m.d.sync += gprs[csr.gpr.index].eq(csr.gpr.wdata)
        m.d.sync += self.flags.eq((self.flags | csr.sync.set) & ~csr.sync.clear)
        m.d.comb += csr.sync.flags.eq(self.flags)
        index = csr.trace.index
        entry = Cat(index ^ 0xA5A5A5A5, ~index)
        m.d.sync += csr.trace.entry.eq(Mux(index < self.trace_count, entry, 0))
        m.d.comb += csr.trace.count.eq(self.trace_count)
        return m


class Manager:
    """AXI4-Lite manager for a testbench: AW/W in a chosen order, random B/R back-pressure.
    A handshake that takes more than ``TIMEOUT`` cycles fails the test (instead of hanging)."""

    TIMEOUT = 100

    def __init__(self, bus, rng, stall: float = 0.4) -> None:
        self.bus, self.rng, self.stall = bus, rng, stall

    async def _send(self, ctx, channel, **payload) -> None:
        for name, value in payload.items():
            ctx.set(getattr(channel.payload, name), value)
        ctx.set(channel.valid, 1)
        for _ in range(self.TIMEOUT):
            _, _, ready = await ctx.tick().sample(channel.ready)
            if ready:
                break
        else:
            raise AssertionError("the subordinate never took the request")
        ctx.set(channel.valid, 0)

    async def _receive(self, ctx, channel):
        for _ in range(self.TIMEOUT):
            ready = bool(self.rng.random() >= self.stall)
            ctx.set(channel.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(channel.valid, channel.payload)
            if valid and ready:
                ctx.set(channel.ready, 0)
                return payload
        raise AssertionError("no response")

    async def write(self, ctx, addr: int, data: int, strb: int = 0xF, order: str = "same",
                    gap: int = 0) -> None:
        """``order``: "same" (AW and W together), "aw" (AW, ``gap`` idle cycles, W) or "w"."""
        bus = self.bus
        if order == "same":
            ctx.set(bus.aw.payload.addr, addr)
            ctx.set(bus.w.payload.data, data)
            ctx.set(bus.w.payload.strb, strb)
            ctx.set(bus.aw.valid, 1)
            ctx.set(bus.w.valid, 1)
            aw_done = w_done = False
            for _ in range(self.TIMEOUT):
                if aw_done and w_done:
                    break
                _, _, aw_ready, w_ready = await ctx.tick().sample(bus.aw.ready, bus.w.ready)
                aw_done |= bool(aw_ready)
                w_done |= bool(w_ready)
                ctx.set(bus.aw.valid, not aw_done)
                ctx.set(bus.w.valid, not w_done)
            assert aw_done and w_done, "the subordinate never took AW and W"
        else:
            first, second = (("aw", "w") if order == "aw" else ("w", "aw"))
            for k, channel in enumerate((first, second)):
                if k and gap:
                    await ctx.tick().repeat(gap)
                if channel == "aw":
                    await self._send(ctx, bus.aw, addr=addr)
                else:
                    await self._send(ctx, bus.w, data=data, strb=strb)
        resp = await self._receive(ctx, bus.b)
        assert resp.resp == 0

    async def read(self, ctx, addr: int) -> int:
        await self._send(ctx, self.bus.ar, addr=addr)
        payload = await self._receive(ctx, self.bus.r)
        assert payload.resp == 0
        return payload.data


def response_monitor(bus):
    """A process asserting the AXI rules on B and R: valid held until ready, payload stable."""

    async def monitor(ctx):
        prev = None
        async for sample in ctx.tick().sample(bus.b.valid, bus.b.ready, bus.r.valid,
                                              bus.r.ready, bus.r.payload.data):
            bv, br, rv, rr, rd = sample[2:]
            if prev is not None:
                pbv, pbr, prv, prr, prd = prev
                assert not (pbv and not pbr) or bv, "B valid dropped before ready"
                assert not (prv and not prr) or (rv and rd == prd), "R changed before ready"
            prev = (bv, br, rv, rr, rd)

    return monitor


def bytemask(strb: int) -> int:
    return sum(0xFF << 8 * i for i in range(4) if strb >> i & 1)


def merge(old: int, data: int, strb: int) -> int:
    mask = bytemask(strb)
    return (old & ~mask | data & mask) & 0xFFFFFFFF


class Reference:
    """A ``ModelDevice`` plus the documented reductions to the bits the RTL stores."""

    def __init__(self, config: EngineConfig, engine_index: int = 0) -> None:
        self.config = config
        self.model = ModelDevice(config, dram_bytes=4096, engine_index=engine_index)
        self.aw = config.axi_addr_width

    def write(self, name: str, data: int, strb: int) -> None:
        r = _BY_NAME[name]
        model = self.model
        if r.access.value == "w1":
            model.csr_write(r.offset, data & bytemask(strb))
        elif r.access.value == "rw":
            model.csr_write(r.offset, merge(model.csr_read(r.offset), data, strb))
        # read-only: ignored by both

    def _u64(self, base: str) -> int:
        return (self.model.csr_read(reg(f"{base}_LO").offset)
                | self.model.csr_read(reg(f"{base}_HI").offset) << 32)

    def read(self, name: str) -> int:
        aw = self.aw
        value = self.model.csr_read(_BY_NAME[name].offset)
        base, half = name[:-3], name[-2:]
        if name == "CONTROL":
            return value & (CTRL.field("TRACE_MODE").mask | CTRL.field("IRQ_EN").mask)
        if base in ("PROGRAM_ADDR", "WINDOW_BASE", "WINDOW_LIMIT"):
            v = self._u64(base)
            if base == "PROGRAM_ADDR":
                v &= (1 << aw) - 1 & ~0x1F
            else:
                v = v & (1 << aw) - 1 | int(v >> aw != 0) << aw
            return v & 0xFFFFFFFF if half == "LO" else v >> 32
        return value


async def rtl_read(ctx, mgr, name: str) -> int:
    return await mgr.read(ctx, _BY_NAME[name].offset)


@pytest.mark.parametrize("config, engine_index", [
    (EngineConfig(), 0),
    (small(engines=4), 3),
])
def test_reset_values(config, engine_index):
    h = Harness(config, engine_index)
    ref = Reference(config, engine_index)
    const = reset_values(config, engine_index)
    unmapped = [0x098, 0x09C, 0x0AC, 0x0B8, 0x0D0, 0x0FC, 0x150, 0xFFC]
    got = {}

    async def bench(ctx):
        mgr = Manager(h.csr.bus, np.random.default_rng(0), stall=0.0)
        for r in REGISTERS:
            got[r.name] = await mgr.read(ctx, r.offset)
        got["unmapped"] = [await mgr.read(ctx, a) for a in unmapped]
        got["unaligned ID"] = await mgr.read(ctx, reg("ID").offset + 3)

    run(h, bench)
    for r in REGISTERS:
        want = const.get(r.name, ref.read(r.name))
        assert got[r.name] == want, r.name
    assert got["unmapped"] == [0] * len(unmapped)
    assert got["unaligned ID"] == const["ID"]


@pytest.mark.parametrize("config, seed", [
    (small(), 1),  # 32-bit addresses
    (EngineConfig(), 2),  # 34-bit
    (small(axi_addr_width=64), 3),
])
def test_random_accesses_match_model(config, seed):
    """Reads and writes with random values, byte strobes, AW/W order and gaps, and B/R
    back-pressure; every read is compared with the model."""
    rng = np.random.default_rng(seed)
    h = Harness(config)
    ref = Reference(config)
    rw = ["CONTROL", "PROGRAM_ADDR_LO", "PROGRAM_ADDR_HI", "WINDOW_BASE_LO", "WINDOW_BASE_HI",
          "WINDOW_LIMIT_LO", "WINDOW_LIMIT_HI", "CYCLE_BUDGET_LO", "CYCLE_BUDGET_HI",
          "SYNC_FLAGS", "SYNC_SET", "SYNC_CLEAR", "GPR_INDEX", "GPR_DATA", "TRACE_INDEX"]
    readable = [*rw, "ID", "BUILD_ID_HI", "STATUS", "CYCLES_LO", "CFG_GPRS", "TRACE_COUNT",
                "TRACE_DATA_LO"]
    ops = []
    for _ in range(140):
        name = str(rng.choice([*rw, "ID", "STATUS", "CYCLES_HI"]))
        value = int(rng.integers(1 << 32))
        if name == "CONTROL":
            value &= ~0b11  # START is tested with a driven status (no program to run)
        elif name == "GPR_INDEX" and rng.random() < 0.8:
            value %= config.gprs  # mostly a valid GPR
        elif name.startswith(("WINDOW", "PROGRAM")) and rng.random() < 0.5:
            value &= 0x3  # small HI words: addresses inside the space
        strb = 0xF if rng.random() < 0.5 else int(rng.integers(16))
        if name.startswith("WINDOW") and name.endswith("_HI"):
            strb = 0xF  # partial strobes on a folded HI word are not modelled
        order = str(rng.choice(["same", "aw", "w"]))
        ops.append(("w", name, value, strb, order, int(rng.integers(4))))
        ops.append(("r", str(rng.choice(readable)), 0, 0, "", 0))
    mismatches = []

    async def bench(ctx):
        mgr = Manager(h.csr.bus, rng)
        for kind, name, value, strb, order, gap in ops:
            if kind == "w":
                await mgr.write(ctx, _BY_NAME[name].offset, value, strb, order, gap)
                ref.write(name, value, strb)
            else:
                got, want = await rtl_read(ctx, mgr, name), ref.read(name)
                if got != want:
                    mismatches.append((name, hex(got), hex(want)))
        for r in REGISTERS:  # final state of every register
            got, want = await rtl_read(ctx, mgr, r.name), ref.read(r.name)
            if got != want:
                mismatches.append((r.name, hex(got), hex(want)))

    run(h, bench, processes=[response_monitor(h.csr.bus)])
    assert not mismatches


def test_control_outputs_follow_registers():
    config = small()
    h = Harness(config)
    aw = config.axi_addr_width

    async def bench(ctx):
        mgr = Manager(h.csr.bus, np.random.default_rng(3), stall=0.2)
        ctl = h.csr.control
        await mgr.write(ctx, reg("PROGRAM_ADDR_LO").offset, 0x1234_567F)
        await mgr.write(ctx, reg("WINDOW_BASE_LO").offset, 0x1000)
        await mgr.write(ctx, reg("WINDOW_LIMIT_LO").offset, 0xFFFF_FFFF)
        await mgr.write(ctx, reg("WINDOW_LIMIT_HI").offset, 0x100)  # past the 32-bit space
        await mgr.write(ctx, reg("CYCLE_BUDGET_HI").offset, 0xDEAD_BEEF)
        await mgr.write(ctx, reg("CYCLE_BUDGET_LO").offset, 0x0BAD_F00D, strb=0b0101)
        await mgr.write(ctx, CTRL.offset, CTRL.pack(TRACE_MODE=2, IRQ_EN=1))
        assert ctx.get(ctl.program_addr) == 0x1234_5660
        assert ctx.get(ctl.window_base) == 0x1000
        limit = ctx.get(ctl.window_limit)
        assert limit >= 1 << aw and limit & ((1 << aw) - 1) == 0xFFFF_FFFF
        assert ctx.get(ctl.cycle_budget) == 0xDEAD_BEEF_00AD_000D
        assert ctx.get(ctl.trace_mode) == TraceMode.ALL
        await mgr.write(ctx, reg("WINDOW_LIMIT_HI").offset, 0)
        assert ctx.get(ctl.window_limit) == 0xFFFF_FFFF

    run(h, bench)


def test_write_waits_for_both_channels():
    h = Harness(small())
    off = reg("TRACE_INDEX").offset

    async def bench(ctx):
        bus = h.csr.bus
        for first, second, value in (("aw", "w", 7), ("w", "aw", 9)):
            ch = getattr(bus, first)
            if first == "aw":
                ctx.set(bus.aw.payload.addr, off)
            else:
                ctx.set(bus.w.payload.data, value)
                ctx.set(bus.w.payload.strb, 0xF)
            ctx.set(ch.valid, 1)
            await ctx.tick()
            ctx.set(ch.valid, 0)
            for _ in range(6):
                await ctx.tick()
                assert not ctx.get(bus.b.valid)
                assert ctx.get(h.csr.trace.index) == (0 if value == 7 else 7)
            other = getattr(bus, second)
            if second == "aw":
                ctx.set(bus.aw.payload.addr, off)
            else:
                ctx.set(bus.w.payload.data, value)
                ctx.set(bus.w.payload.strb, 0xF)
            ctx.set(other.valid, 1)
            await ctx.tick()
            ctx.set(other.valid, 0)
            ctx.set(bus.b.ready, 1)
            while not (await ctx.tick().sample(bus.b.valid))[2]:
                pass
            ctx.set(bus.b.ready, 0)
            assert ctx.get(h.csr.trace.index) == value

    run(h, bench)


def test_start_soft_reset_status_and_irq():
    h = Harness(small())
    pulses = []  # (cycle, kind, trace_mode at the pulse)

    async def watch(ctx):
        cycle = 0
        ctl = h.csr.control
        async for sample in ctx.tick().sample(ctl.start, ctl.soft_reset, ctl.trace_mode):
            start, soft, mode = sample[2:]
            if start:
                pulses.append((cycle, "start", mode))
            if soft:
                pulses.append((cycle, "soft_reset", mode))
            cycle += 1

    async def bench(ctx):
        mgr = Manager(h.csr.bus, np.random.default_rng(4), stall=0.0)
        st = h.csr.status
        busy_mask = STATUS.field("BUSY").mask
        await mgr.write(ctx, CTRL.offset, CTRL.pack(IRQ_EN=1))
        await mgr.write(ctx, reg("TRACE_INDEX").offset, 5)
        # START with TRACE_MODE in the same word: one pulse, the new mode already visible
        await mgr.write(ctx, CTRL.offset, CTRL.pack(START=1, TRACE_MODE=1, IRQ_EN=1))
        await ctx.tick()  # let the watcher see the edge
        assert [p[1:] for p in pulses] == [("start", TraceMode.MARKERS)]
        assert await rtl_read(ctx, mgr, "TRACE_INDEX") == 0
        # before the core reports busy, STATUS already says BUSY (and not the last stop)
        ctx.set(st.halted, 1)
        assert await rtl_read(ctx, mgr, "STATUS") == busy_mask
        assert not ctx.get(h.csr.irq)
        ctx.set(st.busy, 1)
        ctx.set(st.halted, 0)
        await ctx.tick().repeat(2)
        await mgr.write(ctx, CTRL.offset, CTRL.pack(START=1, IRQ_EN=1))  # ignored: busy
        await ctx.tick()
        assert len(pulses) == 1
        await mgr.write(ctx, reg("GPR_INDEX").offset, 3)
        await mgr.write(ctx, reg("GPR_DATA").offset, 0x55)  # ignored: busy
        assert ctx.get(h.gpr_writes) == 0
        # the run stops with an error: STATUS, ERROR_PC and the interrupt
        ctx.set(st.busy, 0)
        ctx.set(st.error, 1)
        ctx.set(st.error_code, ErrorCode.SYNC_TIMEOUT)
        ctx.set(st.error_pc, 77)
        await ctx.tick().repeat(2)
        assert ctx.get(h.csr.irq)
        assert await rtl_read(ctx, mgr, "STATUS") == STATUS.pack(
            ERROR=1, ERROR_CODE=ErrorCode.SYNC_TIMEOUT)
        assert await rtl_read(ctx, mgr, "ERROR_PC") == 77
        await mgr.write(ctx, CTRL.offset, CTRL.pack(IRQ_EN=0))
        assert not ctx.get(h.csr.irq)
        await mgr.write(ctx, CTRL.offset, CTRL.pack(IRQ_EN=1))
        assert ctx.get(h.csr.irq)
        # START with byte 0 disabled does nothing; START | SOFT_RESET is only a soft reset
        await mgr.write(ctx, CTRL.offset, CTRL.pack(START=1, IRQ_EN=1), strb=0b1110)
        await ctx.tick()
        assert len(pulses) == 1
        await mgr.write(ctx, CTRL.offset, CTRL.pack(START=1, SOFT_RESET=1, IRQ_EN=1))
        await ctx.tick()
        assert [p[1] for p in pulses] == ["start", "soft_reset"]
        ctx.set(st.error, 0)
        ctx.set(st.error_code, ErrorCode.NONE)
        ctx.set(st.halted, 1)  # as if the last run had halted
        await ctx.tick().repeat(2)
        assert ctx.get(h.csr.irq)
        # START again: irq drops (the stale HALTED is masked until the core reports busy)
        # and returns when the new run has stopped
        await mgr.write(ctx, CTRL.offset, CTRL.pack(START=1, IRQ_EN=1, TRACE_MODE=2))
        await ctx.tick()
        assert pulses[-1][1:] == ("start", TraceMode.ALL)
        assert not ctx.get(h.csr.irq)
        ctx.set(st.busy, 1)
        ctx.set(st.halted, 0)
        await ctx.tick().repeat(2)
        assert not ctx.get(h.csr.irq)
        ctx.set(st.busy, 0)
        ctx.set(st.halted, 1)
        await ctx.tick().repeat(2)
        assert ctx.get(h.csr.irq)

    run(h, bench, processes=[watch])


def test_status_counters_and_64bit_latch():
    rng = np.random.default_rng(5)
    h = Harness(small())
    values = {name: int(rng.integers(1 << 63)) for name in _COUNTERS}
    mismatches = []

    async def bench(ctx):
        mgr = Manager(h.csr.bus, rng)
        st = h.csr.status
        for name, v in values.items():
            ctx.set(getattr(st, name.lower()), v)
        ctx.set(st.halted, 1)
        ctx.set(st.halt_code, 0xBEEF)
        ctx.set(st.error_pc, 0xFFFF_FFFE)
        for name, v in values.items():
            lo = await rtl_read(ctx, mgr, f"{name}_LO")
            hi = await rtl_read(ctx, mgr, f"{name}_HI")
            if lo | hi << 32 != v:
                mismatches.append(name)
        assert await rtl_read(ctx, mgr, "HALT_CODE") == 0xBEEF
        assert await rtl_read(ctx, mgr, "ERROR_PC") == 0xFFFF_FFFE
        assert await rtl_read(ctx, mgr, "STATUS") == STATUS.pack(HALTED=1)
        # the counter carries between the LO and the HI read: HI is the latched one
        ctx.set(st.cycles, 0x1_FFFF_FFFF)
        assert await rtl_read(ctx, mgr, "CYCLES_LO") == 0xFFFF_FFFF
        ctx.set(st.cycles, 0x2_0000_0000)
        assert await rtl_read(ctx, mgr, "CYCLES_HI") == 1
        assert await rtl_read(ctx, mgr, "CYCLES_HI") == 1  # still latched
        await rtl_read(ctx, mgr, "INSTRET_LO")  # another pair takes the latch
        assert await rtl_read(ctx, mgr, "CYCLES_HI") == 2  # live again
        ctx.set(st.instret, 0x7_0000_0000)
        assert await rtl_read(ctx, mgr, "INSTRET_HI") == values["INSTRET"] >> 32

    run(h, bench, processes=[response_monitor(h.csr.bus)])
    assert not mismatches


def test_gpr_and_sync_ports():
    config = small()
    h = Harness(config)

    async def bench(ctx):
        mgr = Manager(h.csr.bus, np.random.default_rng(6))
        await mgr.write(ctx, reg("GPR_INDEX").offset, 5)
        await mgr.write(ctx, reg("GPR_DATA").offset, 0x1122_3344)
        await mgr.write(ctx, reg("GPR_DATA").offset, 0xAA00_BB00, strb=0b1010)
        assert ctx.get(h.gprs[5]) == 0xAA22_BB44
        assert await rtl_read(ctx, mgr, "GPR_DATA") == 0xAA22_BB44
        await mgr.write(ctx, reg("GPR_INDEX").offset, config.gprs + 5)  # out of range
        await mgr.write(ctx, reg("GPR_DATA").offset, 1)
        assert await rtl_read(ctx, mgr, "GPR_DATA") == 0
        assert ctx.get(h.gpr_writes) == 2 and ctx.get(h.gprs[5]) == 0xAA22_BB44
        # sync flags: SET / CLEAR are W1, SYNC_FLAGS writes set 1s and clear 0s per byte
        await mgr.write(ctx, reg("SYNC_SET").offset, 0x8000_00F1)
        await mgr.write(ctx, reg("SYNC_CLEAR").offset, 0x0000_0031)
        assert ctx.get(h.flags) == 0x8000_00C0
        await mgr.write(ctx, reg("SYNC_FLAGS").offset, 0x0102_0304, strb=0b0011)
        assert ctx.get(h.flags) == 0x8000_0304
        assert await rtl_read(ctx, mgr, "SYNC_FLAGS") == 0x8000_0304
        assert await rtl_read(ctx, mgr, "SYNC_SET") == 0

    run(h, bench)


def test_trace_readout():
    h = Harness(small())
    got = []

    async def bench(ctx):
        mgr = Manager(h.csr.bus, np.random.default_rng(7))
        ctx.set(h.trace_count, 6)
        for i in (0, 1, 5, 6, 1000):
            await mgr.write(ctx, reg("TRACE_INDEX").offset, i)
            lo = await rtl_read(ctx, mgr, "TRACE_DATA_LO")
            hi = await rtl_read(ctx, mgr, "TRACE_DATA_HI")
            got.append(lo | hi << 32)
        assert await rtl_read(ctx, mgr, "TRACE_COUNT") == 6
        assert await rtl_read(ctx, mgr, "TRACE_INDEX") == 1000

    run(h, bench)
    assert got == [trace_rom(0), trace_rom(1), trace_rom(5), 0, 0]


class WithTrace(Elaboratable):
    """CsrBlock reading a real TraceBuffer (cleared by START, mode from CONTROL)."""

    def __init__(self, config: EngineConfig) -> None:
        self.csr = CsrBlock(config)
        self.buf = TraceBuffer(config)

    def elaborate(self, platform):
        m = Module()
        m.submodules.csr, m.submodules.buf = self.csr, self.buf
        wiring.connect(m, self.csr.trace, self.buf.read)
        m.d.comb += [self.buf.clear.eq(self.csr.control.start),
                     self.buf.mode.eq(self.csr.control.trace_mode)]
        return m


def test_trace_buffer_through_csr():
    config = small(trace_depth=16)
    dut = WithTrace(config)
    rng = np.random.default_rng(8)
    offered = []  # (cycle, source index, kind, unit, payload)
    got = {}

    async def bench(ctx):
        mgr = Manager(dut.csr.bus, rng, stall=0.3)
        await mgr.write(ctx, CTRL.offset, CTRL.pack(START=1, TRACE_MODE=TraceMode.ALL))
        for cycle in range(12):
            for i, name in enumerate(TRACE_SOURCES):
                src = getattr(dut.buf.sources, name)
                fire = rng.random() < 0.2
                ctx.set(src.valid, fire)
                if fire:
                    ev = (int(rng.integers(5)), int(rng.integers(16)), int(rng.integers(1 << 24)))
                    ctx.set(src.event.as_value(), ev[0] | ev[1] << 4 | ev[2] << 8)
                    offered.append((cycle, i, *ev))
            await ctx.tick()
        for name in TRACE_SOURCES:
            ctx.set(getattr(dut.buf.sources, name).valid, 0)
        await ctx.tick().repeat(len(offered) + 2)
        got["count"] = await rtl_read(ctx, mgr, "TRACE_COUNT")
        entries = []
        for i in range(min(got["count"], config.trace_depth) + 1):
            await mgr.write(ctx, reg("TRACE_INDEX").offset, i)
            lo = await rtl_read(ctx, mgr, "TRACE_DATA_LO")
            entries.append(lo | await rtl_read(ctx, mgr, "TRACE_DATA_HI") << 32)
        got["entries"] = entries

    run(dut, bench)
    offered.sort()
    assert got["count"] == len(offered) > config.trace_depth
    entries = got["entries"]
    assert entries[-1] == 0  # past the last entry
    fields = dict(TRACE_ENTRY)

    def field(word: int, name: str) -> int:
        return word >> fields[name].offset & (1 << fields[name].width) - 1

    t0 = field(entries[0], "timestamp") - offered[0][0]  # the cycle count at our cycle 0
    assert 0 <= t0 < 20  # START came a few cycles before
    kept = offered[:config.trace_depth]
    assert [[field(w, f) for f in ("timestamp", "kind", "unit", "payload")]
            for w in entries[:-1]] == [[t0 + c, kind, unit, p] for c, _, kind, unit, p in kept]


def test_bad_parameters():
    with pytest.raises(ValueError, match="engine_index=1 is out of range"):
        CsrBlock(EngineConfig(), 1)
    with pytest.raises(TypeError, match="EngineConfig"):
        CsrBlock({"rows": 8})
