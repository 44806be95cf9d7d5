"""``Soc``: E engines behind one AXI4-Lite register window and one (or E+1) AXI4 memory ports.

::

    host CSRs (AXI4-Lite, 1 MiB) ─► CsrDecoder ─┬─► SocRegisters        block 0   0x00000
                                                ├─► engine 0 CSRs       block 1   0x01000
                                                └─► engine E−1 CSRs     block E
    memory="shared" (DDR):      engine 0…E−1 axi ─┬─► AxiArbiter ─► mem[0]
                                host (XDMA) ──────┘
    memory="per_engine" (HBM):  engine i axi ─► mem[i]        host ─► mem[E]
    sync:  flags ← (flags | OR of every engine's set) & ~(OR of every engine's clear)

The host reaches engine ``i``'s 4 KB register block (``unified_engine.regs``) at
:func:`engine_csr_base` ``(i)`` = ``0x1000·(i + 1)``; block 0 holds the SoC registers
(:data:`SOC_REGISTERS`: magic, engine count, clock, DRAM size, per-engine busy/irq, the shared
flag word).  Blocks past the last engine answer DECERR, so a wrong offset is an error on the
host, never a hang.

Ports
-----
csr : In(axi_lite_signature(addr_width=SOC_CSR_ADDR_WIDTH))
    The host's register window.  One write and one read in flight; 4–5 cycles per access.
host : In(axi4_signature(addr_width, data_width, id_width=host_id_width))
    The host's DMA manager (XDMA H2C/C2H) into device memory, arbitrated with the engines.
mem : Out(axi4_signature(...)).array(ports)
    ``shared``: one port, ID = the manager's ID extended by its index (engines 0…E−1, host E).
    ``per_engine``: port i = engine i, port E = host, IDs unchanged (zero-extended).
    The subordinate must accept AW without waiting for W (the arbiter routes W in AW order,
    after the AW handshake); every shell adapter in ``unified_engine.platforms`` does.
irq, busy : Out(E)
    Each engine's interrupt and STATUS.BUSY.
status : In(8)
    Shell status bits shown in the SoC STATUS register (bit 0 memory calibrated, bit 1 engine
    clock locked, bit 2 PCIe link up).

Engines come from ``engine_factory(config, index)`` (default ``rtl.engine.Engine``); any
component with the engine's members ``axi``, ``csr``, ``sync``, ``irq``, ``busy`` works, e.g.
:class:`IdleEngine` (a shell bring-up placeholder that answers its constant registers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import EngineConfig
from ..isa import SYNC_FLAGS
from ..regs import Access, BitField, Register, build_id, reg, reset_values
from ._arbiter import round_robin
from .axi import AxiResp, axi4_signature, axi_lite_signature
from .engine_if import CSR_ADDR_WIDTH, ENGINE_AXI_ID_WIDTH, engine_signature

__all__ = [
    "ENGINE_CSR_STRIDE",
    "MEMORY_MODES",
    "SOC_CSR_ADDR_WIDTH",
    "SOC_ID_MAGIC",
    "SOC_REGISTERS",
    "SOC_REGMAP_VERSION",
    "SOC_STATUS_BITS",
    "AxiArbiter",
    "CsrDecoder",
    "IdleEngine",
    "Soc",
    "SocRegisters",
    "engine_csr_base",
    "soc_reg",
    "soc_register_values",
]

#: SOC_ID register value: ASCII "UESC".
SOC_ID_MAGIC = 0x55455343
#: SoC register-block version (major, minor).
SOC_REGMAP_VERSION = (0, 1)
#: Byte-address width of the SoC's AXI4-Lite window (1 MiB: up to 255 engine blocks).
SOC_CSR_ADDR_WIDTH = 20
#: Distance between engine register blocks; each block is one engine's 4 KB CSR window.
ENGINE_CSR_STRIDE = 1 << CSR_ADDR_WIDTH
#: ``Soc(memory=...)`` values.
MEMORY_MODES = ("shared", "per_engine")
#: Meaning of the SoC STATUS bits (driven by the board shell through ``Soc.status``).
SOC_STATUS_BITS = ("MEM_READY", "CLOCK_LOCKED", "LINK_UP")


def engine_csr_base(index: int) -> int:
    """Byte offset of engine ``index``'s register block in the SoC window."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 255:
        raise ValueError(f"engine index {index!r} is out of range; allowed 0…254")
    return ENGINE_CSR_STRIDE * (index + 1)


def _soc_registers() -> tuple[Register, ...]:
    r, rw = Access.R, Access.RW
    return (
        Register("SOC_ID", 0x000, r, f"magic {SOC_ID_MAGIC:#010x} (ASCII 'UESC')"),
        Register("SOC_VERSION", 0x004, r, "SoC register-block version", (
            BitField("MINOR", 0, 8, "minor version"), BitField("MAJOR", 8, 8, "major version"))),
        Register("ENGINES", 0x008, r, "number of engines E"),
        Register("ENGINE_BASE", 0x00C, r, "offset of engine 0's register block"),
        Register("ENGINE_STRIDE", 0x010, r, "distance between engine register blocks"),
        Register("CLOCK_KHZ", 0x014, r, "engine clock target in kHz"),
        Register("DRAM_SIZE_LO", 0x018, r, "device DRAM bytes (bits 31:0)"),
        Register("DRAM_SIZE_HI", 0x01C, r, "device DRAM bytes (bits 63:32)"),
        Register("MEM_PORTS", 0x020, r, "memory ports: 1 shared, or E + 1 (one per engine "
                 "plus the host's)"),
        Register("STATUS", 0x024, r, "shell status", tuple(
            BitField(name, i, 1, doc) for i, (name, doc) in enumerate(zip(SOC_STATUS_BITS, (
                "the memory controller finished calibration",
                "the engine clock generator is locked",
                "the PCIe link is up"), strict=True)))),
        Register("BUILD_ID_LO", 0x028, r, "BUILD_ID of the engines (bits 31:0)"),
        Register("BUILD_ID_HI", 0x02C, r, "BUILD_ID of the engines (bits 63:32)"),
        Register("SYNC_FLAGS", 0x030, r, "the shared cross-engine flag word"),
        Register("BUSY", 0x034, r, "bit i: engine i is busy (STATUS.BUSY)"),
        Register("IRQ", 0x038, r, "bit i: engine i's interrupt line"),
        Register("SCRATCH", 0x03C, rw, "read/write scratch word (bus test)"),
        Register("BOARD", 0x040, r, "board code (four ASCII characters, little-endian)"),
    )


#: The SoC register block (block 0 of the window), in offset order.
SOC_REGISTERS: tuple[Register, ...] = _soc_registers()
_SOC_BY_NAME = {r.name: r for r in SOC_REGISTERS}


def soc_reg(name: str) -> Register:
    """The SoC register called ``name``."""
    try:
        return _SOC_BY_NAME[name]
    except KeyError:
        raise KeyError(f"no SoC register {name!r}") from None


def soc_register_values(config: EngineConfig, *, dram_size: int, memory: str = "shared",
                        board_code: int = 0) -> dict[str, int]:
    """The constant SoC registers of a build (what the hardware reads back)."""
    bid = build_id(config)
    return {
        "SOC_ID": SOC_ID_MAGIC,
        "SOC_VERSION": SOC_REGMAP_VERSION[0] << 8 | SOC_REGMAP_VERSION[1],
        "ENGINES": config.engines,
        "ENGINE_BASE": engine_csr_base(0),
        "ENGINE_STRIDE": ENGINE_CSR_STRIDE,
        "CLOCK_KHZ": round(config.clock_mhz * 1000),
        "DRAM_SIZE_LO": dram_size & 0xFFFFFFFF,
        "DRAM_SIZE_HI": dram_size >> 32 & 0xFFFFFFFF,
        "MEM_PORTS": 1 if memory == "shared" else config.engines + 1,
        "BUILD_ID_LO": bid & 0xFFFFFFFF,
        "BUILD_ID_HI": bid >> 32,
        "BOARD": board_code & 0xFFFFFFFF,
    }


# ----- AXI4-Lite register-file helper -----------------------------------------------------------


def _serve_lite(m: Module, bus, words: dict[int, Value], name: str,
                writable: dict[int, Signal] | None = None) -> None:
    """Serve a 4 KB AXI4-Lite subordinate ``bus`` from ``words`` (word offset → value).

    A write is taken when AW and W are both valid (B OKAY the next cycle); a read when AR is
    valid (R the next cycle, unmapped offsets read 0).  ``writable`` registers take the
    written bytes (``strb``); writes elsewhere are ignored, as on the engine's own CSR block.
    """
    writable = writable or {}
    with m.FSM(name=f"{name}_wr"):
        with m.State("IDLE"):
            take = bus.aw.valid & bus.w.valid
            m.d.comb += [bus.aw.ready.eq(take), bus.w.ready.eq(take)]
            with m.If(take):
                offset = bus.aw.payload.addr[2:]
                for word, target in writable.items():
                    with m.If(offset == word >> 2):
                        strb = bus.w.payload.strb
                        m.d.sync += target.eq(Cat(*(
                            Mux(strb[i], bus.w.payload.data[8 * i:8 * i + 8],
                                target[8 * i:8 * i + 8]) for i in range(4))))
                m.next = "RESP"
        with m.State("RESP"):
            m.d.comb += [bus.b.valid.eq(1), bus.b.payload.resp.eq(AxiResp.OKAY)]
            with m.If(bus.b.ready):
                m.next = "IDLE"
    rdata = Signal(32, name=f"{name}_rdata")
    with m.FSM(name=f"{name}_rd"):
        with m.State("IDLE"):
            m.d.comb += bus.ar.ready.eq(1)
            with m.If(bus.ar.valid):
                with m.Switch(bus.ar.payload.addr[2:]):
                    for word, value in words.items():
                        with m.Case(word >> 2):
                            m.d.sync += rdata.eq(value)
                    with m.Default():
                        m.d.sync += rdata.eq(0)
                m.next = "RESP"
        with m.State("RESP"):
            m.d.comb += [bus.r.valid.eq(1), bus.r.payload.data.eq(rdata),
                         bus.r.payload.resp.eq(AxiResp.OKAY)]
            with m.If(bus.r.ready):
                m.next = "IDLE"


class SocRegisters(wiring.Component):
    """The SoC register block (:data:`SOC_REGISTERS`) on a 4 KB AXI4-Lite subordinate port.

    ``flags``, ``busy``, ``irq`` and ``status`` are sampled when a read is accepted; the
    constants come from :func:`soc_register_values`.  Latency: R one cycle after AR, B one
    cycle after AW and W are both valid.
    """

    def __init__(self, config: EngineConfig, *, dram_size: int, memory: str = "shared",
                 board_code: int = 0) -> None:
        self.config = config
        self.values = soc_register_values(config, dram_size=dram_size, memory=memory,
                                          board_code=board_code)
        super().__init__({
            "bus": In(axi_lite_signature(addr_width=CSR_ADDR_WIDTH)),
            "flags": In(SYNC_FLAGS),
            "busy": In(config.engines),
            "irq": In(config.engines),
            "status": In(8),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        scratch = Signal(32, name="scratch")
        words: dict[int, Value] = {soc_reg(n).offset: Const(v, 32)
                                   for n, v in self.values.items()}
        words.update({
            soc_reg("STATUS").offset: self.status,
            soc_reg("SYNC_FLAGS").offset: self.flags,
            soc_reg("BUSY").offset: self.busy,
            soc_reg("IRQ").offset: self.irq,
            soc_reg("SCRATCH").offset: scratch,
        })
        _serve_lite(m, self.bus, words, "soc", {soc_reg("SCRATCH").offset: scratch})
        return m


# ----- AXI4-Lite decoder ----------------------------------------------------------------------


class CsrDecoder(wiring.Component):
    """Split a 1 MiB AXI4-Lite window into ``n`` 4 KB blocks (block k at ``k·0x1000``).

    Ports ``bus`` (subordinate side, ``SOC_CSR_ADDR_WIDTH`` address bits) and ``t[k]``
    (manager side, 12 address bits).  An access to a block ≥ ``n`` is answered DECERR (reads
    return 0) without touching any target.  One write and one read are in flight at a time,
    each registered: a write costs 2 cycles plus the target's latency, a read likewise.
    """

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 255:
            raise ValueError(f"CsrDecoder: n={n!r} must be an int in 1…255")
        self.n = n
        super().__init__({
            "bus": In(axi_lite_signature(addr_width=SOC_CSR_ADDR_WIDTH)),
            "t": Out(axi_lite_signature(addr_width=CSR_ADDR_WIDTH)).array(n),
        })

    def _block(self, addr: Value) -> tuple[Value, Value]:
        index = addr[CSR_ADDR_WIDTH:]
        return index, index < self.n

    def elaborate(self, platform) -> Module:
        m = Module()
        bus, targets = self.bus, list(self.t)

        # --- writes: IDLE → (FWD → WAIT) → RESP
        w_sel = Signal(range(max(2, self.n)), name="w_sel")
        w_addr = Signal(CSR_ADDR_WIDTH, name="w_addr")
        w_data = Signal(32, name="w_data")
        w_strb = Signal(4, name="w_strb")
        w_resp = Signal(2, name="w_resp")
        aw_sent = Signal(name="aw_sent")
        w_sent = Signal(name="w_sent")
        for t in targets:
            m.d.comb += [t.aw.payload.addr.eq(w_addr), t.w.payload.data.eq(w_data),
                         t.w.payload.strb.eq(w_strb)]
        with m.FSM(name="wr"):
            with m.State("IDLE"):
                take = bus.aw.valid & bus.w.valid
                m.d.comb += [bus.aw.ready.eq(take), bus.w.ready.eq(take)]
                index, hit = self._block(bus.aw.payload.addr)
                with m.If(take):
                    m.d.sync += [w_sel.eq(index), w_addr.eq(bus.aw.payload.addr),
                                 w_data.eq(bus.w.payload.data), w_strb.eq(bus.w.payload.strb),
                                 aw_sent.eq(0), w_sent.eq(0)]
                    with m.If(hit):
                        m.next = "FWD"
                    with m.Else():
                        m.d.sync += w_resp.eq(AxiResp.DECERR)
                        m.next = "RESP"
            with m.State("FWD"):
                for k, t in enumerate(targets):
                    with m.If(w_sel == k):
                        m.d.comb += [t.aw.valid.eq(~aw_sent), t.w.valid.eq(~w_sent)]
                        with m.If(t.aw.ready):
                            m.d.sync += aw_sent.eq(1)
                        with m.If(t.w.ready):
                            m.d.sync += w_sent.eq(1)
                        done_aw = aw_sent | t.aw.ready
                        done_w = w_sent | t.w.ready
                        with m.If(done_aw & done_w):
                            m.next = "WAIT"
            with m.State("WAIT"):
                for k, t in enumerate(targets):
                    with m.If(w_sel == k):
                        m.d.comb += t.b.ready.eq(1)
                        with m.If(t.b.valid):
                            m.d.sync += w_resp.eq(t.b.payload.resp)
                            m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += [bus.b.valid.eq(1), bus.b.payload.resp.eq(w_resp)]
                with m.If(bus.b.ready):
                    m.next = "IDLE"

        # --- reads: IDLE → (FWD → WAIT) → RESP
        r_sel = Signal(range(max(2, self.n)), name="r_sel")
        r_addr = Signal(CSR_ADDR_WIDTH, name="r_addr")
        r_data = Signal(32, name="r_data")
        r_resp = Signal(2, name="r_resp")
        for t in targets:
            m.d.comb += t.ar.payload.addr.eq(r_addr)
        with m.FSM(name="rd"):
            with m.State("IDLE"):
                m.d.comb += bus.ar.ready.eq(1)
                index, hit = self._block(bus.ar.payload.addr)
                with m.If(bus.ar.valid):
                    m.d.sync += [r_sel.eq(index), r_addr.eq(bus.ar.payload.addr)]
                    with m.If(hit):
                        m.next = "FWD"
                    with m.Else():
                        m.d.sync += [r_data.eq(0), r_resp.eq(AxiResp.DECERR)]
                        m.next = "RESP"
            with m.State("FWD"):
                for k, t in enumerate(targets):
                    with m.If(r_sel == k):
                        m.d.comb += t.ar.valid.eq(1)
                        with m.If(t.ar.ready):
                            m.next = "WAIT"
            with m.State("WAIT"):
                for k, t in enumerate(targets):
                    with m.If(r_sel == k):
                        m.d.comb += t.r.ready.eq(1)
                        with m.If(t.r.valid):
                            m.d.sync += [r_data.eq(t.r.payload.data),
                                         r_resp.eq(t.r.payload.resp)]
                            m.next = "RESP"
            with m.State("RESP"):
                m.d.comb += [bus.r.valid.eq(1), bus.r.payload.data.eq(r_data),
                             bus.r.payload.resp.eq(r_resp)]
                with m.If(bus.r.ready):
                    m.next = "IDLE"
        return m


# ----- AXI4 arbiter -----------------------------------------------------------------------------


def _pick(index: Value, values: Sequence[Value]) -> Value:
    """``values[index]`` as a mux chain (the last value for an index past the end)."""
    out = Value.cast(values[-1])
    for k in range(len(values) - 2, -1, -1):
        out = Mux(index == k, values[k], out)
    return out


class AxiArbiter(wiring.Component):
    """``n`` AXI4 managers onto one AXI4 port; each manager's IDs are extended by its index.

    Parameters
    ----------
    n:
        Managers (ports ``m[0] … m[n−1]``, subordinate side), ≥ 1.
    addr_width, data_width, id_width:
        AXI4 parameters of the managers; ``bus`` has ``id_width + ceil_log2(n)`` ID bits, the
        manager's index in the top bits.
    write_depth:
        Write bursts granted on AW whose W beats are not finished yet (W routing FIFO).

    Behaviour: AR and AW are each granted round-robin (a request waiting for ``bus`` keeps the
    grant, so the payload is stable); W beats come from the manager of the oldest granted AW
    whose last beat has not passed (AXI write-data order); R and B go to the manager named by
    the ID's top bits (a response naming no manager is accepted and dropped).  Every path is
    combinational except the W routing FIFO (one cycle from AW to the first W beat).
    Throughput: one AR, one AW, one W, one R and one B per cycle.
    """

    def __init__(self, n: int, *, addr_width: int, data_width: int, id_width: int,
                 write_depth: int = 4) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"AxiArbiter: n must be an int ≥ 1, got {n!r}")
        if isinstance(write_depth, bool) or not isinstance(write_depth, int) or \
                write_depth < 1:
            raise ValueError(f"AxiArbiter: write_depth must be an int ≥ 1, got {write_depth!r}")
        self.n, self.id_width, self.write_depth = n, id_width, write_depth
        self.index_bits = ceil_log2(n)
        sig = axi4_signature(addr_width=addr_width, data_width=data_width, id_width=id_width)
        super().__init__({
            "m": In(sig).array(n),
            "bus": Out(axi4_signature(addr_width=addr_width, data_width=data_width,
                                      id_width=id_width + self.index_bits)),
        })

    def _out_id(self, id_: Value, index: Value) -> Value:
        return Cat(id_, index[:self.index_bits]) if self.index_bits else id_

    def _route(self, m: Module, channel: str) -> None:
        """R or B: each response to the manager its ID names."""
        src = getattr(self.bus, channel)
        mans = [getattr(p, channel) for p in self.m]
        index = src.payload.id[self.id_width:] if self.index_bits else Const(0, 1)
        for k, dst in enumerate(mans):
            m.d.comb += dst.valid.eq(src.valid & (index == k))
            for name, _field in dst.payload.shape():
                value = getattr(src.payload, name)
                m.d.comb += getattr(dst.payload, name).eq(
                    value[:self.id_width] if name == "id" else value)
        m.d.comb += src.ready.eq(Mux(index < self.n, _pick(index, [d.ready for d in mans]), 1))

    def elaborate(self, platform) -> Module:
        m = Module()
        bus, mans = self.bus, list(self.m)

        # AR: sticky round-robin straight to the bus.
        ar = round_robin(m, Cat(*(p.ar.valid for p in mans)),
                         bus.ar.valid & bus.ar.ready, "ar", sticky=True)
        m.d.comb += [
            bus.ar.valid.eq(ar.any),
            bus.ar.payload.addr.eq(_pick(ar.index, [p.ar.payload.addr for p in mans])),
            bus.ar.payload.len.eq(_pick(ar.index, [p.ar.payload.len for p in mans])),
            bus.ar.payload.id.eq(self._out_id(
                _pick(ar.index, [p.ar.payload.id for p in mans]), ar.index)),
        ]
        for k, p in enumerate(mans):
            m.d.comb += p.ar.ready.eq(bus.ar.ready & ar.grant[k])
        self._route(m, "r")

        # AW: granted only while the W routing FIFO has room for the burst's owner.
        m.submodules.w_order = order = SyncFIFOBuffered(width=max(1, self.index_bits),
                                                        depth=self.write_depth)
        aw = round_robin(m, Cat(*(p.aw.valid for p in mans)),
                         bus.aw.valid & bus.aw.ready, "aw", sticky=True)
        m.d.comb += [
            bus.aw.valid.eq(aw.any & order.w_rdy),
            bus.aw.payload.addr.eq(_pick(aw.index, [p.aw.payload.addr for p in mans])),
            bus.aw.payload.len.eq(_pick(aw.index, [p.aw.payload.len for p in mans])),
            bus.aw.payload.id.eq(self._out_id(
                _pick(aw.index, [p.aw.payload.id for p in mans]), aw.index)),
            order.w_en.eq(bus.aw.valid & bus.aw.ready),
            order.w_data.eq(aw.index),
        ]
        for k, p in enumerate(mans):
            m.d.comb += p.aw.ready.eq(bus.aw.ready & order.w_rdy & aw.grant[k])

        # W: from the owner of the oldest unfinished burst.
        owner = order.r_data
        m.d.comb += [
            bus.w.valid.eq(order.r_rdy & _pick(owner, [p.w.valid for p in mans])),
            bus.w.payload.eq(_pick(owner, [p.w.payload.as_value() for p in mans])),
            order.r_en.eq(bus.w.valid & bus.w.ready & bus.w.payload.last),
        ]
        for k, p in enumerate(mans):
            m.d.comb += p.w.ready.eq(bus.w.ready & order.r_rdy & (owner == k))
        self._route(m, "b")
        return m


def _bridge(m: Module, manager, subordinate) -> None:
    """Connect an AXI4 manager port to a subordinate port of another ID width (IDs are
    zero-extended towards the subordinate and truncated on the way back)."""
    for ch in ("aw", "w", "ar"):
        src, dst = getattr(manager, ch), getattr(subordinate, ch)
        m.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready)]
        for name, _field in src.payload.shape():
            m.d.comb += getattr(dst.payload, name).eq(getattr(src.payload, name))
    for ch in ("b", "r"):
        src, dst = getattr(subordinate, ch), getattr(manager, ch)
        m.d.comb += [dst.valid.eq(src.valid), src.ready.eq(dst.ready)]
        for name, _field in dst.payload.shape():
            m.d.comb += getattr(dst.payload, name).eq(getattr(src.payload, name))


# ----- placeholder engine -----------------------------------------------------------------------


class IdleEngine(wiring.Component):
    """An engine-shaped placeholder: answers its constant registers, never uses memory.

    Same members as ``rtl.engine.Engine``.  Its CSR block returns ID, VERSION, BUILD_ID and the
    config descriptor of ``(config, engine_index)`` (so the host identifies it), STATUS = 0
    (idle, never halted) and 0 elsewhere, and ignores writes.  It never issues an AXI request,
    never sets or clears a sync flag and never interrupts.  Board shells built with it are
    PCIe/DDR bring-up images (``build.py --shell-only``).
    """

    def __init__(self, config: EngineConfig, engine_index: int = 0) -> None:
        if not isinstance(config, EngineConfig):
            raise TypeError(f"IdleEngine needs an EngineConfig, not {type(config).__name__}")
        self.config, self.engine_index = config, engine_index
        self.values = reset_values(config, engine_index)
        super().__init__(engine_signature(config))

    def elaborate(self, platform) -> Module:
        m = Module()
        words = {reg(name).offset: Const(value, 32) for name, value in self.values.items()}
        _serve_lite(m, self.csr, words, "csr")
        m.d.comb += [self.axi.r.ready.eq(1), self.axi.b.ready.eq(1)]
        return m


# ----- the SoC ---------------------------------------------------------------------------------


def _default_engine(config: EngineConfig, index: int) -> wiring.Component:
    from .engine import Engine

    return Engine(config, index)


class Soc(wiring.Component):
    """E engines, their CSR decoder, memory interconnect and shared sync-flag word.

    Parameters
    ----------
    config:
        The engine configuration; ``config.engines`` engines are built.
    dram_size:
        Bytes of device memory (reported in DRAM_SIZE; the engines' window limits are the
        host's business).
    memory:
        ``"shared"`` (one memory port for everything) or ``"per_engine"`` (port i for engine
        i, port E for the host: one HBM pseudo-channel each).
    host_id_width:
        AXI ID bits of the ``host`` port (XDMA: 4).
    engine_factory:
        ``(config, index) → engine component`` (default ``rtl.engine.Engine``).
    board_code:
        Value of the BOARD register.
    """

    def __init__(self, config: EngineConfig, *, dram_size: int, memory: str = "shared",
                 host_id_width: int = 4,
                 engine_factory: Callable[[EngineConfig, int], wiring.Component] | None = None,
                 board_code: int = 0) -> None:
        if not isinstance(config, EngineConfig):
            raise TypeError(f"Soc needs an EngineConfig, not {type(config).__name__}")
        if memory not in MEMORY_MODES:
            raise ValueError(f"Soc: memory={memory!r}; allowed: {', '.join(MEMORY_MODES)}")
        if isinstance(dram_size, bool) or not isinstance(dram_size, int) or \
                not 0 < dram_size <= 1 << config.axi_addr_width:
            raise ValueError(f"Soc: dram_size={dram_size!r} must be an int in 1…2**"
                             f"{config.axi_addr_width} (axi_addr_width)")
        if isinstance(host_id_width, bool) or not isinstance(host_id_width, int) or \
                not 1 <= host_id_width <= 8:
            raise ValueError(f"Soc: host_id_width={host_id_width!r} must be an int in 1…8")
        self.config, self.memory, self.dram_size = config, memory, dram_size
        self.board_code = board_code
        self.engine_factory = engine_factory or _default_engine
        e = config.engines
        self.manager_id_width = max(ENGINE_AXI_ID_WIDTH, host_id_width)
        if memory == "shared":
            self.mem_ports = 1
            self.mem_id_width = self.manager_id_width + ceil_log2(e + 1)
        else:
            self.mem_ports = e + 1
            self.mem_id_width = self.manager_id_width
        aw, dw = config.axi_addr_width, config.axi_data_width
        super().__init__({
            "csr": In(axi_lite_signature(addr_width=SOC_CSR_ADDR_WIDTH)),
            "host": In(axi4_signature(addr_width=aw, data_width=dw, id_width=host_id_width)),
            "mem": Out(axi4_signature(addr_width=aw, data_width=dw,
                                      id_width=self.mem_id_width)).array(self.mem_ports),
            "irq": Out(e),
            "busy": Out(e),
            "status": In(8),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg, e = self.config, self.config.engines
        engines = [self.engine_factory(cfg, i) for i in range(e)]
        for i, engine in enumerate(engines):
            m.submodules[f"engine{i}"] = engine

        # --- CSRs
        m.submodules.regs = regs = SocRegisters(cfg, dram_size=self.dram_size,
                                                memory=self.memory, board_code=self.board_code)
        m.submodules.decoder = decoder = CsrDecoder(e + 1)
        wiring.connect(m, wiring.flipped(self.csr), decoder.bus)
        wiring.connect(m, decoder.t[0], regs.bus)
        for i, engine in enumerate(engines):
            wiring.connect(m, decoder.t[i + 1], engine.csr)

        # --- shared sync flags: every engine sees the same word one cycle after a request
        flags = Signal(SYNC_FLAGS, name="sync_flags")
        sets = reduce(lambda a, b: a | b, (eng.sync.set for eng in engines))
        clears = reduce(lambda a, b: a | b, (eng.sync.clear for eng in engines))
        m.d.sync += flags.eq((flags | sets) & ~clears)
        for engine in engines:
            m.d.comb += engine.sync.flags.eq(flags)

        # --- status
        m.d.comb += [
            self.irq.eq(Cat(*(eng.irq for eng in engines))),
            self.busy.eq(Cat(*(eng.busy for eng in engines))),
            regs.flags.eq(flags), regs.busy.eq(self.busy), regs.irq.eq(self.irq),
            regs.status.eq(self.status),
        ]

        # --- memory
        host = self.host
        if self.memory == "shared":
            m.submodules.arbiter = arb = AxiArbiter(
                e + 1, addr_width=cfg.axi_addr_width, data_width=cfg.axi_data_width,
                id_width=self.manager_id_width)
            for i, engine in enumerate(engines):
                _bridge(m, engine.axi, arb.m[i])
            _bridge(m, host, arb.m[e])
            _bridge(m, arb.bus, self.mem[0])
        else:
            for i, engine in enumerate(engines):
                _bridge(m, engine.axi, self.mem[i])
            _bridge(m, host, self.mem[e])
        return m
