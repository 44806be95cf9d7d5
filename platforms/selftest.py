"""``SelfTest``: a board image that runs one engine program from block RAM and shows the result.

For boards without a shell of ours (the open-toolchain ``ulx3s``)::

    reset ─► BootSequencer ──AXI4-Lite──► EngineTop ──AXI4──► AxiRam (program + data)
                  └──► leds: HALT_CODE, or 0x80 | ERROR_CODE if the run stopped with an error

After reset the sequencer writes the engine's DRAM window (the whole RAM), PROGRAM_ADDR = 0 and
CONTROL.START, polls STATUS until HALTED or ERROR, then latches the outcome into ``leds``.  The
program (:func:`selftest_program`) copies a block through the scratchpad and halts with
:data:`SELFTEST_HALT_CODE`, so a board showing that code has fetched, decoded, moved data both
ways over AXI and halted; :func:`selftest_image` is the RAM contents, also used by the tests.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import Out

from unified_engine.asm import Program
from unified_engine.config import EngineConfig
from unified_engine.regs import reg
from unified_engine.rtl.axi import axi_lite_signature
from unified_engine.rtl.engine_if import CSR_ADDR_WIDTH, ENGINE_AXI_ID_WIDTH

from .axi_ram import AxiRam

__all__ = ["SELFTEST_HALT_CODE", "SelfTest", "selftest_image", "selftest_program"]

#: HALT code of a successful self-test (what the LEDs show).
SELFTEST_HALT_CODE = 0x5A
#: RAM layout (bytes): program at 0, source block, destination block.
SRC, DST, BLOCK = 0x400, 0x800, 128
#: Bytes of block RAM behind the engine.
RAM_BYTES = 4096

# Sequencer operations: (kind, CSR offset, value); READ latches the value onto the LEDs.
_WRITE, _POLL, _SHOW = 0, 1, 2


def selftest_program(config: EngineConfig) -> Program:
    """Copy ``BLOCK`` bytes from ``SRC`` to ``DST`` through the scratchpad, then HALT."""
    p = Program(config)
    row = config.axi_bytes
    p.load(dram=SRC, sram=0, rows=BLOCK // row, row_bytes=row, signal="store")
    p.store(dram=DST, sram=0, rows=BLOCK // row, row_bytes=row, wait="load")
    p.halt(SELFTEST_HALT_CODE)
    return p


def selftest_image(config: EngineConfig) -> bytes:
    """The RAM contents: the program at 0 and a counting pattern at ``SRC``."""
    image = bytearray(RAM_BYTES)
    code = selftest_program(config).encode()
    assert len(code) <= SRC, "the self-test program outgrew its slot"
    image[:len(code)] = code
    image[SRC:SRC + BLOCK] = bytes((7 * i + 3) & 0xFF for i in range(BLOCK))
    return bytes(image)


def _sequence() -> list[tuple[int, int, int]]:
    def off(name: str) -> int:
        return reg(name).offset

    return [(_WRITE, off("WINDOW_BASE_LO"), 0), (_WRITE, off("WINDOW_BASE_HI"), 0),
            (_WRITE, off("WINDOW_LIMIT_LO"), RAM_BYTES), (_WRITE, off("WINDOW_LIMIT_HI"), 0),
            (_WRITE, off("PROGRAM_ADDR_LO"), 0), (_WRITE, off("PROGRAM_ADDR_HI"), 0),
            (_WRITE, off("CONTROL"), reg("CONTROL").pack(START=1)),
            (_POLL, off("STATUS"), reg("STATUS").pack(HALTED=1, ERROR=1)),
            (_SHOW, off("HALT_CODE"), 0)]


class BootSequencer(wiring.Component):
    """Runs :func:`_sequence` once after reset over an AXI4-Lite manager port."""

    def __init__(self) -> None:
        super().__init__({"csr": Out(axi_lite_signature(addr_width=CSR_ADDR_WIDTH)),
                          "leds": Out(8), "done": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        steps = _sequence()
        m.submodules.rom = rom = Memory(shape=2 + CSR_ADDR_WIDTH + 32, depth=len(steps),
                                        init=[k | o << 2 | v << (2 + CSR_ADDR_WIDTH)
                                              for k, o, v in steps])
        port = rom.read_port(domain="comb")
        pc = Signal(range(len(steps) + 1))
        kind, offset, value = port.data[:2], port.data[2:2 + CSR_ADDR_WIDTH], \
            port.data[2 + CSR_ADDR_WIDTH:]
        status = reg("STATUS")
        error = Signal()
        bus = self.csr
        m.d.comb += [port.addr.eq(pc), bus.aw.payload.addr.eq(offset),
                     bus.ar.payload.addr.eq(offset), bus.w.payload.data.eq(value),
                     bus.w.payload.strb.eq(0xF), bus.b.ready.eq(1), bus.r.ready.eq(1)]
        aw_done, w_done = Signal(), Signal()
        with m.FSM():
            with m.State("FETCH"):
                with m.If(pc == len(steps)):
                    m.next = "DONE"
                with m.Elif(kind == _WRITE):
                    m.next = "WRITE"
                with m.Else():
                    m.next = "READ"
            with m.State("WRITE"):
                m.d.comb += [bus.aw.valid.eq(~aw_done), bus.w.valid.eq(~w_done)]
                m.d.sync += [aw_done.eq(aw_done | bus.aw.ready), w_done.eq(w_done | bus.w.ready)]
                with m.If(bus.b.valid):
                    m.d.sync += [aw_done.eq(0), w_done.eq(0), pc.eq(pc + 1)]
                    m.next = "FETCH"
            with m.State("READ"):
                m.d.comb += bus.ar.valid.eq(1)
                with m.If(bus.ar.ready):
                    m.next = "READ_WAIT"
            with m.State("READ_WAIT"):
                data = bus.r.payload.data
                with m.If(bus.r.valid & (kind == _POLL) & ((data & value) != 0)):
                    m.d.sync += [pc.eq(pc + 1), error.eq(status.field("ERROR").get(data)),
                                 self.leds.eq(0x80 | status.field("ERROR_CODE").get(data))]
                with m.Elif(bus.r.valid & (kind == _SHOW)):
                    m.d.sync += pc.eq(pc + 1)
                    with m.If(~error):  # after an error the LEDs keep 0x80 | ERROR_CODE
                        m.d.sync += self.leds.eq(data[:8])
                with m.If(bus.r.valid):  # a POLL that missed reads again
                    m.next = "FETCH"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
        return m


class SelfTest(wiring.Component):
    """``EngineTop(config)`` + :class:`AxiRam` holding :func:`selftest_image` + the sequencer.

    ``leds``: the result byte (see the module docstring); ``done``: the sequence finished.
    """

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        super().__init__({"leds": Out(8), "done": Out(1)})

    def elaborate(self, platform) -> Module:
        from unified_engine.rtl.top import EngineTop

        m = Module()
        cfg = self.config
        image = selftest_image(cfg)
        beat = cfg.axi_bytes
        words = [int.from_bytes(image[i:i + beat], "little") for i in range(0, len(image), beat)]
        m.submodules.engine = engine = EngineTop(cfg)
        m.submodules.ram = ram = AxiRam(depth=len(words), addr_width=cfg.axi_addr_width,
                                        data_width=cfg.axi_data_width,
                                        id_width=ENGINE_AXI_ID_WIDTH, init=words)
        m.submodules.boot = boot = BootSequencer()
        wiring.connect(m, engine.axi, ram.axi)
        wiring.connect(m, boot.csr, engine.csr)
        m.d.comb += [self.leds.eq(boot.leds), self.done.eq(boot.done)]
        return m
