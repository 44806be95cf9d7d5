"""Formal harnesses of the LOAD and STORE units' AXI side: ``LoadHarness`` and ``StoreHarness``.

Each wraps the real ``LoadUnit`` / ``StoreUnit`` (burst issuers, read buffer / response FIFO,
realigner, credit and outstanding counters, AXI and on-chip ports as built) and checks its
ports against the AXI rules.  The command front end ``DmaCommand`` (window check; its
``(rows − 1)·stride`` multiplier is out of reach of a SAT solver over long traces) is replaced
by :class:`FrontModel`, which keeps ``DmaCommand``'s handshake and hands the data path a *free*
job constrained by what ``dma_command_harness.py`` proves of ``DmaCommand``'s jobs:

* every row has at least one byte, the DRAM and on-chip rows have equal lengths, and
  neither side's rows wrap around its address space;
* every DRAM row lies in ``[window_base, window_limit)``.  Stated for the rows the unit's
  AXI address issuer reaches: the harness follows it (a row ends with the burst that ends on
  the row's last beat) and assumes the current row inside; rows never reached are left free,
  so this environment is a superset of the proved one.

The job, the window, the command's verdict (start or refuse), every AXI / on-chip READY and
response are free inputs; the environment keeps the protocol (``Assume``): stream rules on
every channel it drives, R beats only for requested beats (``RLAST`` free: the unit ignores
it), a W beat accepted only once its AW was accepted (a subordinate may always wait for
that), B only for a burst whose last W beat was accepted, one on-chip response per read
request at least a cycle later, and a window that does not change while a command is in
flight.

Properties (``Assert``), both units:

* **window**: every beat of every AR / AW burst holds at least one window byte (reads fetch
  whole beats; the bytes around the rows are discarded); STORE: every W byte whose strobe is
  set lies in the window (the exact bytes written);
* **4 KB / burst**: bursts are beat aligned, at most the unit's chunk long, and never cross a
  4 KB boundary;
* **handshake**: on AR, AW, W and every on-chip request: VALID held until READY, payload
  stable while VALID and not READY;
* **one response per request**: STORE: WLAST exactly on the last beat of each AW burst, at
  most ``max_outstanding`` bursts without B; LOAD: never more R beats outstanding than the
  read buffer holds and R never back-pressured; on-chip: reads only (STORE) / writes only
  (LOAD), only to the memory the job names;
* **command**: no AXI or on-chip request outside a started command (so none for a refused
  one); ``done`` only once every AXI response has arrived (LOAD: all R beats; STORE: all W
  beats sent and all B received).

Tests of the tests: ``limit_slack`` lets the job's rows end up to that many bytes past the
limit (the window property must then fail); ``chunk_scale`` multiplies the unit's burst chunk
(2 with a 4 KB chunk breaks the 4 KB rule, which must then fail).
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cover, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In
from amaranth.utils import exact_log2

from unified_engine.config import EngineConfig
from unified_engine.isa import MemTarget
from unified_engine.rtl.dma import MEMORIES, LoadUnit, StoreUnit
from unified_engine.rtl.dma_command import DmaCommand, job_layout

from .props import beats_in_window, byte_in_window, in_4k_page, stream_rules

__all__ = ["FrontModel", "LoadHarness", "StoreHarness"]


class FrontModel(wiring.Component):
    """``DmaCommand``'s handshake without its arithmetic: a command is accepted while idle;
    in the next cycle the model either starts the data path with the free job ``job_in``
    (latched at acceptance) or, if ``refuse`` was high at acceptance, ends the command with
    ``done`` and ``error``; after a start, ``done`` pulses in the first cycle ``busy`` is low.
    """

    def __init__(self, config: EngineConfig) -> None:
        reference = DmaCommand(config)
        reference._MustUse__silence = True  # built only for its signature
        members = dict(reference.signature.members)
        super().__init__({**members, "job_in": In(job_layout(config)), "refuse": In(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        cmd, done = self.unit.cmd, self.unit.done
        refusing = Signal()
        error = Signal()
        m.d.comb += self.error.eq(error)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += cmd.ready.eq(1)
                with m.If(cmd.valid):
                    m.d.sync += [self.job.eq(self.job_in), refusing.eq(self.refuse),
                                 error.eq(0)]
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                with m.If(refusing):
                    m.d.comb += done.eq(1)
                    m.d.sync += error.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.start.eq(1)
                    m.next = "RUN"
            with m.State("RUN"), m.If(~self.busy):
                m.d.comb += done.eq(1)
                m.next = "IDLE"
        return m


def _with_front(unit_class):
    """``unit_class`` with its ``DmaCommand`` replaced by a :class:`FrontModel` (the units
    build their front end in ``_front``; this mirrors its connections)."""

    class Unit(unit_class):
        def __init__(self, config: EngineConfig, *, chunk_scale: int = 1, **kwargs) -> None:
            super().__init__(config, **kwargs)
            self.chunk_beats *= chunk_scale
            self.front = FrontModel(config)

        def _front(self, m: Module):
            m.submodules.command = front = self.front
            wiring.connect(m, wiring.flipped(self.unit), front.unit)
            m.d.comb += [front.window_base.eq(self.window_base),
                         front.window_limit.eq(self.window_limit),
                         self.error.eq(front.error)]
            return front

    Unit.__name__ = unit_class.__name__
    return Unit


class _UnitHarness(wiring.Component):
    """What the LOAD and STORE harnesses share: the unit with a model front end, the
    command / window / job environment and the command-level properties."""

    unit_class: type

    def __init__(self, config: EngineConfig, *, max_rows: int | None = None,
                 limit_slack: int = 0, chunk_scale: int = 1, **unit_args) -> None:
        self._config = config
        self._max_rows = max_rows
        self._slack = limit_slack
        self.dut = _with_front(self.unit_class)(config, chunk_scale=chunk_scale, **unit_args)
        front = self.dut.front
        super().__init__({**self.dut.signature.members,
                          "job_in": In(front.job_in.shape()), "refuse": In(1)})

    # -- pieces for the subclasses --

    @staticmethod
    def _address_channel(axi):
        """The channel that carries this unit's bursts (AR or AW)."""
        raise NotImplementedError

    def _common(self, m: Module):
        """Connect the unit; the environment of the command, window and job; the walk of the
        rows the data path has reached; command-level properties.  Returns ``running`` (a
        started command is in flight), ``done`` and ``row`` (the issuer's row)."""
        config, dut, front = self._config, self.dut, self.dut.front
        m.submodules.dut = dut
        wiring.connect(m, wiring.flipped(self.unit), dut.unit)
        wiring.connect(m, wiring.flipped(self.axi), dut.axi)
        for name, _ in MEMORIES:
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(dut, name))
        m.d.comb += [
            dut.window_base.eq(self.window_base),
            dut.window_limit.eq(self.window_limit),
            self.error.eq(dut.error),
            front.job_in.eq(self.job_in),
            front.refuse.eq(self.refuse),
        ]
        base, limit = self.window_base, self.window_limit
        cmd, done, job = dut.unit.cmd, dut.unit.done, front.job
        stream_rules(m, cmd, "cmd", environment=True)

        accepted = cmd.valid & cmd.ready
        in_flight = Signal()
        running = Signal()
        with m.If(accepted):
            m.d.sync += in_flight.eq(1)
        with m.Elif(done):
            m.d.sync += [in_flight.eq(0), running.eq(0)]
        with m.If(front.start):
            m.d.sync += running.eq(1)
        m.d.comb += [
            Assert(cmd.ready == ~in_flight, "cmd.ready exactly while no command is in flight"),
            Assert(~done | in_flight, "done only for an accepted command"),
        ]

        # The window only changes while idle, and lies in the address space (the jobs
        # DmaCommand starts never run past its top, whatever the limit: proved in
        # dma_command_harness.py, so a larger limit adds no job here).
        prev_base = Signal.like(base)
        prev_limit = Signal.like(limit)
        m.d.sync += [prev_base.eq(base), prev_limit.eq(limit)]
        m.d.comb += [
            Assume(~in_flight | ((base == prev_base) & (limit == prev_limit))),
            Assume(limit <= 2 ** config.axi_addr_width),
        ]

        # What DmaCommand guarantees of a started job (proved in dma_command_harness.py).
        sram_top = 2 ** len(job.sram.first)
        m.d.comb += Assume(Value.cast(job.mem) <= max(t.value for t in MemTarget))
        with m.If(front.start):
            m.d.comb += [
                Assume(job.rows != 0),
                Assume(job.rows <= (self._max_rows or 2 ** len(job.rows) - 1)),
                Assume(job.dram.first <= job.dram.last),
                Assume(job.sram.first <= job.sram.last),
                Assume(job.dram.last - job.dram.first == job.sram.last - job.sram.first),
            ]

        # The rows the data path has reached.  ``row`` follows the unit's AXI address
        # issuer: it moves to the next row when a burst ending on the current row's last beat
        # is first presented (every row's last burst does; no other burst does).  The current
        # row (while ``row < rows``: only rows of the job) is assumed inside the window, and
        # both sides of it inside their address spaces.
        lb = exact_log2(config.axi_bytes)
        # Wide enough for a row past the window (row < limit ≤ 2**aw, plus a stride).
        wide = max(config.axi_addr_width, len(job.dram.stride)) + 2
        row = Signal.like(job.rows)
        d_first, d_last = Signal(wide), Signal(wide)
        s_last = Signal(wide)
        burst = self._address_channel(dut.axi)
        waited = Signal()
        m.d.sync += waited.eq(burst.valid & ~burst.ready)
        presented = burst.valid & ~waited
        row_end = ((burst.payload.addr >> lb) + burst.payload.len) == (d_last >> lb)
        with m.If(front.start):
            m.d.sync += [row.eq(0), d_first.eq(job.dram.first), d_last.eq(job.dram.last),
                         s_last.eq(job.sram.last)]
        with m.Elif(presented & row_end):
            m.d.sync += [row.eq(row + 1),
                         d_first.eq(d_first + job.dram.stride),
                         d_last.eq(d_last + job.dram.stride),
                         s_last.eq(s_last + job.sram.stride)]
        with m.If(running & (row < job.rows)):
            m.d.comb += [
                Assume(d_first >= base),
                Assume(d_last < limit + self._slack),
                Assume(s_last < sram_top),
            ]

        # On-chip ports: the environment answers one beat per read, a cycle later at the
        # earliest; the unit keeps the stream rules and talks only to the job's memory.
        for name, target in MEMORIES:
            port = getattr(dut, name)
            stream_rules(m, port.req, name)
            reads = Signal(8, name=f"{name}_reads")
            asked = port.req.valid & port.req.ready & ~port.req.payload.write
            m.d.sync += reads.eq(reads + asked - port.resp.valid)
            m.d.comb += [
                Assume(~port.resp.valid | (reads != 0)),
                Assert(~port.req.valid | (running & (job.mem == target)),
                       f"{name}: requests only for a started command, to the job's memory"),
            ]
        return running, done, row

    def _covers(self, channel, running, done, row) -> list:
        """Vacuity guards (mode "cover"): a full-chunk burst, a burst ending on a 4 KB
        boundary, a burst of a second row, a started command that ends."""
        lb = exact_log2(self._config.axi_bytes)
        p = channel.payload
        page_end = (p.addr + ((p.len + 1) << lb))[:12] == 0
        return [
            Cover(channel.valid & (p.len == self.dut.chunk_beats - 1)),
            Cover(channel.valid & page_end),
            Cover(channel.valid & (row == 1)),
            Cover(done & running),
        ]

    def _burst(self, m: Module, channel, name: str, running) -> None:
        """AR / AW rules: stream rules, only while running, beat aligned, at most a chunk,
        no 4 KB crossing, every beat meets the window."""
        lb = exact_log2(self._config.axi_bytes)
        p = channel.payload
        stream_rules(m, channel, name)
        with m.If(channel.valid):
            m.d.comb += [
                Assert(running, f"{name}: requests only for a started command"),
                Assert(p.addr[:lb] == 0, f"{name}: beat aligned"),
                Assert(p.len < self.dut.chunk_beats, f"{name}: at most one chunk"),
                Assert(in_4k_page(p.addr, p.len, lb), f"{name}: no 4 KB crossing"),
                Assert(beats_in_window(p.addr, p.len, lb, self.window_base,
                                       self.window_limit),
                       f"{name}: every beat meets the window"),
            ]


class LoadHarness(_UnitHarness):
    """``LoadUnit`` with its properties (module docstring); ``unit_args`` go to the unit."""

    unit_class = LoadUnit

    @staticmethod
    def _address_channel(axi):
        return axi.ar

    def elaborate(self, platform) -> Module:
        m = Module()
        running, done, row = self._common(m)
        axi, dut = self.dut.axi, self.dut
        self._burst(m, axi.ar, "ar", running)

        # R: beats requested and not yet returned; the environment returns no more.
        pending = Signal(range(dut.read_buffer + 2 * dut.chunk_beats + 1))
        asked = Mux(axi.ar.valid & axi.ar.ready, axi.ar.payload.len + 1, 0)
        got = axi.r.valid & axi.r.ready
        m.d.sync += pending.eq(pending + asked - got)
        stream_rules(m, axi.r, "r", environment=True)
        m.d.comb += [
            Assume(~axi.r.valid | (pending != 0)),
            Assume(~axi.b.valid),
            Assert(pending <= dut.read_buffer, "r: outstanding beats fit the read buffer"),
            Assert(~axi.r.valid | axi.r.ready, "r: never back-pressured"),
            Assert(~axi.aw.valid & ~axi.w.valid, "no write requests"),
            Assert(~done | ((pending == 0) & ~axi.ar.valid), "done: every read answered"),
        ]
        for name, _ in MEMORIES:
            port = getattr(dut, name)
            m.d.comb += Assert(~port.req.valid | port.req.payload.write,
                               f"{name}: writes only")
        m.d.comb += [
            *self._covers(axi.ar, running, done, row),
        ]
        return m


class StoreHarness(_UnitHarness):
    """``StoreUnit`` with its properties (module docstring); ``unit_args`` go to the unit."""

    unit_class = StoreUnit

    @staticmethod
    def _address_channel(axi):
        return axi.aw

    def elaborate(self, platform) -> Module:
        m = Module()
        config, dut = self._config, self.dut
        running, done, row = self._common(m)
        axi = dut.axi
        lb = exact_log2(config.axi_bytes)
        self._burst(m, axi.aw, "aw", running)
        stream_rules(m, axi.w, "w")

        # Accepted AW bursts whose W beats are not all accepted, oldest first.
        depth = dut.max_outstanding
        addr_q = [Signal.like(axi.aw.payload.addr, name=f"q_addr{i}") for i in range(depth)]
        len_q = [Signal.like(axi.aw.payload.len, name=f"q_len{i}") for i in range(depth)]
        count = Signal(range(depth + 1))
        beat = Signal(8)  # W beats accepted of the oldest burst
        unanswered = Signal(range(depth + 1))  # bursts with all W beats, no B yet
        aw_take = axi.aw.valid & axi.aw.ready
        w_take = axi.w.valid & axi.w.ready
        b_take = axi.b.valid & axi.b.ready
        w_last = w_take & (beat == len_q[0])
        for i in range(depth):
            # Shift out the oldest on its last W beat; append at the first free slot.
            nxt_addr = addr_q[i + 1] if i + 1 < depth else addr_q[i]
            nxt_len = len_q[i + 1] if i + 1 < depth else len_q[i]
            slot = count - w_last
            with m.If(aw_take & (slot == i)):
                m.d.sync += [addr_q[i].eq(axi.aw.payload.addr),
                             len_q[i].eq(axi.aw.payload.len)]
            with m.Elif(w_last):
                m.d.sync += [addr_q[i].eq(nxt_addr), len_q[i].eq(nxt_len)]
        m.d.sync += [
            count.eq(count + aw_take - w_last),
            unanswered.eq(unanswered + w_last - b_take),
        ]
        with m.If(w_take):
            m.d.sync += beat.eq(Mux(w_last, 0, beat + 1))

        stream_rules(m, axi.b, "b", environment=True)
        m.d.comb += [
            Assume(~axi.w.ready | (count != 0)),
            Assume(~axi.b.valid | (unanswered != 0)),
            Assume(~axi.r.valid),
            Assert(count + unanswered <= depth, "aw: at most max_outstanding bursts without B"),
            Assert(axi.b.ready, "b: always ready"),
            Assert(~axi.ar.valid, "no read requests"),
            Assert(~w_take | (axi.w.payload.last == (beat == len_q[0])),
                   "w: WLAST exactly on the last beat of its burst"),
            Assert(~axi.w.valid | running, "w: only for a started command"),
            Assert(~done | ((count == 0) & (unanswered == 0) & ~axi.aw.valid & ~axi.w.valid),
                   "done: every W beat sent and every B received"),
        ]

        # Every byte written (strobe set) is inside the window.
        w_addr = addr_q[0] + (beat << lb)
        strb = axi.w.payload.strb
        with m.If(w_take):
            m.d.comb += [
                Assert(~strb[i] | byte_in_window(w_addr + i, self.window_base,
                                                 self.window_limit),
                       f"w: byte {i} written inside the window")
                for i in range(config.axi_bytes)
            ]

        for name, _ in MEMORIES:
            port = getattr(dut, name)
            m.d.comb += Assert(~port.req.valid | ~port.req.payload.write,
                               f"{name}: reads only")
        m.d.comb += [
            *self._covers(axi.aw, running, done, row),
            Cover(w_take & (strb != 0) & (w_addr + config.axi_bytes > self.window_limit)),
        ]
        return m

