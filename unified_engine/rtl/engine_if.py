"""Internal interfaces of the engine: the contracts between its blocks, defined once.

Every block of the engine top (``rtl/engine.py``) talks to the others only through the
signatures and layouts here, so each block can be built and tested on its own.

On-chip memories (``SramPort``)
-------------------------------
The scratchpad, the bias memory and the scale memory are each an array of *rows* of one AXI
beat (``config.axi_bytes`` bytes; byte ``x`` of a memory is byte ``x % B`` of row ``x // B``,
little-endian inside the row).  A block reaches a memory through a client port
(:func:`sram_port_signature`, client side):

* ``req`` (client → memory): ``addr`` (row), ``write``, ``data`` (the row), ``be`` (byte
  enables; a write changes only the enabled bytes).
* ``resp`` (memory → client, ``always_ready``): one beat per *read* request, in request order,
  at least one cycle after the request is accepted.  The client must take it when it is valid,
  so a client only issues a read when it has room for the answer.

A write accepted in an earlier cycle than a read (on any port of the same memory) is seen by
that read.  Nothing else is ordered between ports.

Queue units (``UnitSignature``)
-------------------------------
Each queue's execution unit (LOAD/STORE DMA, MATMUL, VECTOR) takes one instruction at a time:

* ``cmd`` (stream, unit side ``In``): the *resolved* 256-bit instruction word in its ISA
  layout (``isa_for(config).layouts[...]``), as the dispatcher made it: the GPR override is
  applied, every address operand's ``imm`` holds the *effective* address (``imm + AR[ar]``,
  already checked against the memory it names) with ``ar = 0`` and ``inc = 0``, and
  ``ovr_field = ovr_gpr = 0``.  The dispatcher has already checked every rule of
  ``host/units.py`` that raises ``Stop`` (window, SRAM ranges, formats, operand combinations),
  so a unit may assume a valid instruction.  ``ready`` is high only while the unit is idle.
* ``done`` (unit ``Out``): one-cycle pulse when the accepted instruction has finished, i.e.
  all of its memory writes have been performed (accepted by the memory / answered by AXI B).

The dependency tokens are handled by the queue controller around the unit, not by the unit.

Epilogue table
--------------
``EPI_ENTRY`` is one entry of the table written by the ``EPI`` instruction; units that use it
get the whole table as an ``In(EPI_TABLE)`` port and index it with the instruction's ``epi``
field.  The table only changes while the ARRAY and VECTOR queues are idle.
"""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import EngineConfig
from ..isa import EPI_ENTRIES, INSTRUCTION_BITS, SYNC_FLAGS, ActKind
from ..regs import ErrorCode, TraceKind, TraceMode
from .axi import axi4_signature, axi_lite_signature

__all__ = [
    "ADDRESS_GROUPS",
    "CSR_ADDR_WIDTH",
    "ENGINE_AXI_ID_WIDTH",
    "EPI_ENTRY",
    "EPI_TABLE",
    "MAX_ADDRESS_GROUPS",
    "TRACE_EVENT",
    "TRACE_SOURCES",
    "MemoryGeometry",
    "UnitSignature",
    "address_groups",
    "check_in_layout",
    "check_out_layout",
    "control_signature",
    "engine_signature",
    "fetch_signature",
    "gpr_port_signature",
    "memory_geometry",
    "sram_port_signature",
    "status_layout",
    "sync_signature",
    "trace_source_signature",
]

#: One epilogue-table entry (fp32 values are bit patterns).
EPI_ENTRY = data.StructLayout({
    "act": ActKind,
    "scale": unsigned(32),
    "a": unsigned(32),
    "b": unsigned(32),
    "c": unsigned(32),
    "d": unsigned(32),
})
#: The whole table, indexed by the ``epi`` field of MATMUL / VECTOR.
EPI_TABLE = data.ArrayLayout(EPI_ENTRY, EPI_ENTRIES)

#: One trace event as produced by the dispatcher and the queues (the trace buffer adds the
#: timestamp).  ``unit`` is a ``Queue`` value or ``regs.TRACE_UNIT_DISPATCHER``.
TRACE_EVENT = data.StructLayout({
    "kind": TraceKind,
    "unit": unsigned(4),
    "payload": unsigned(24),
})


class MemoryGeometry:
    """Rows and address bits of one on-chip memory (rows of ``beat_bytes`` bytes)."""

    def __init__(self, name: str, nbytes: int, beat_bytes: int) -> None:
        if nbytes % beat_bytes:
            raise ValueError(f"{name}: {nbytes} bytes is not a whole number of "
                             f"{beat_bytes}-byte rows")
        self.name = name
        self.nbytes = nbytes
        self.beat_bytes = beat_bytes
        self.rows = nbytes // beat_bytes
        self.addr_bits = max(1, (self.rows - 1).bit_length())

    def __repr__(self) -> str:
        return f"MemoryGeometry({self.name!r}, rows={self.rows}, beat_bytes={self.beat_bytes})"


def memory_geometry(config: EngineConfig) -> dict[str, MemoryGeometry]:
    """Geometry of the three DMA-reachable memories: ``spad``, ``bias``, ``scale``."""
    b = config.axi_bytes
    return {
        "spad": MemoryGeometry("spad", config.scratchpad_bytes, b),
        "bias": MemoryGeometry("bias", config.bias_bytes, b),
        "scale": MemoryGeometry("scale", config.scale_bytes, b),
    }


def sram_port_signature(geometry: MemoryGeometry) -> wiring.Signature:
    """Client side of a memory port (see the module docstring)."""
    beat = geometry.beat_bytes
    return wiring.Signature({
        "req": Out(stream.Signature(data.StructLayout({
            "addr": unsigned(geometry.addr_bits),
            "write": 1,
            "data": unsigned(8 * beat),
            "be": unsigned(beat),
        }))),
        "resp": In(stream.Signature(unsigned(8 * beat), always_ready=True)),
    })


class UnitSignature(wiring.Signature):
    """Unit side of a queue unit's command port: ``cmd`` in, ``done`` pulse out."""

    def __init__(self) -> None:
        super().__init__({
            "cmd": In(stream.Signature(unsigned(INSTRUCTION_BITS))),
            "done": Out(1),
        })


def sync_signature() -> wiring.Signature:
    """Engine side of the SoC's shared sync-flag word: read it, request set / clear bits.

    ``set`` and ``clear`` are one-cycle requests (bit masks); the SoC applies
    ``flags ← (flags | set) & ~clear`` and the new value is visible on ``flags`` one cycle
    later.
    """
    return wiring.Signature({
        "flags": In(SYNC_FLAGS),
        "set": Out(SYNC_FLAGS),
        "clear": Out(SYNC_FLAGS),
    })


def engine_signature(config: EngineConfig, *, sync: bool = True) -> wiring.Signature:
    """The ports of one engine as a SoC or a board sees it.

    ``axi``: AXI4 manager (instructions and data, ``ENGINE_AXI_ID_WIDTH`` ID bits);
    ``csr``: AXI4-Lite subordinate of the register map (``CSR_ADDR_WIDTH`` address bits);
    ``sync``: the shared sync-flag bus (:func:`sync_signature`) — only with ``sync=True``, for
    an engine whose flag word lives outside it (in the SoC); ``irq``, ``busy``.
    """
    members = {
        "axi": Out(axi4_signature(addr_width=config.axi_addr_width,
                                  data_width=config.axi_data_width,
                                  id_width=ENGINE_AXI_ID_WIDTH)),
        "csr": In(axi_lite_signature(addr_width=CSR_ADDR_WIDTH, data_width=32)),
    }
    if sync:
        members["sync"] = Out(sync_signature())
    return wiring.Signature({**members, "irq": Out(1), "busy": Out(1)})


def gpr_port_signature(config: EngineConfig) -> wiring.Signature:
    """Host access to the GPR file (CSR GPR_INDEX / GPR_DATA), from the CSR block's side.

    ``index`` selects the GPR; ``rdata`` is its value (combinational); ``we`` writes ``wdata``
    (ignored by the dispatcher while a program runs, and for r0).
    """
    return wiring.Signature({
        "index": Out(config.gpr_index_bits),
        "rdata": In(32),
        "we": Out(1),
        "wdata": Out(32),
    })


def control_signature(config: EngineConfig) -> wiring.Signature:
    """Run control, from the CSR block's side (registers of ``regs.py``).

    ``start`` / ``soft_reset`` are one-cycle pulses (CONTROL.START / SOFT_RESET);
    the others hold the register values.  ``window_limit`` has one more bit than an address so
    that a window can end at the top of the address space.
    """
    aw = config.axi_addr_width
    return wiring.Signature({
        "start": Out(1),
        "soft_reset": Out(1),
        "program_addr": Out(aw),
        "window_base": Out(aw + 1),
        "window_limit": Out(aw + 1),
        "cycle_budget": Out(64),
        "trace_mode": Out(TraceMode),
    })


def status_layout() -> data.StructLayout:
    """What the engine core reports to the CSR block (STATUS, ERROR_PC, counters)."""
    counters = {f"{q}_{kind}": unsigned(64) for q in ("load", "array", "vector", "store")
                for kind in ("busy", "stall")}
    return data.StructLayout({
        "busy": 1,
        "halted": 1,
        "error": 1,
        "error_code": ErrorCode,
        "error_pc": unsigned(32),
        "halt_code": unsigned(16),
        "cycles": unsigned(64),
        "instret": unsigned(64),
        "dispatch_stall": unsigned(64),
        **counters,
    })


# ----- top-level ports, fetch, checker, trace sources -------------------------------------------

#: AXI ID width of the engine's manager port (IDs name the internal managers: fetch, DMA).
ENGINE_AXI_ID_WIDTH = 2
#: Byte-address width of the engine's AXI4-Lite CSR port (a 4 KB register block per engine).
CSR_ADDR_WIDTH = 12

#: Trace event sources, in the order the trace buffer numbers them (lower index is written
#: first when several fire in one cycle): the dispatcher, then START and END of each queue.
TRACE_SOURCES = ("dispatcher", *(
    f"{q}_{edge}" for q in ("load", "array", "vector", "store") for edge in ("start", "end")))


def trace_source_signature() -> wiring.Signature:
    """One trace event source (producer side): ``valid`` for one cycle with ``event``."""
    return wiring.Signature({"valid": Out(1), "event": Out(TRACE_EVENT)})


def fetch_signature() -> wiring.Signature:
    """Dispatcher side of the instruction fetch.

    ``req``: the instruction index (pc, from PROGRAM_ADDR) the dispatcher wants next.
    ``resp``: for each request, in order, the 256-bit ``word`` or ``error`` = 1 if its DRAM
    address ``PROGRAM_ADDR + 32·pc`` (32 bytes) is not inside the window (FETCH_OUT_OF_WINDOW;
    nothing is read from DRAM then).
    """
    return wiring.Signature({
        "req": Out(stream.Signature(unsigned(32))),
        "resp": In(stream.Signature(data.StructLayout({
            "word": unsigned(INSTRUCTION_BITS), "error": 1}))),
    })


#: Address-operand groups in the order ``host/isasim.py`` resolves them.
ADDRESS_GROUPS = ("dram", "sram", "a", "b", "dst", "rmax", "src0", "src1")
#: At most this many address groups in one instruction (MATMUL: a, b, dst, rmax).
MAX_ADDRESS_GROUPS = 4


def address_groups(isa, opcode) -> tuple[str, ...]:
    """The address-operand groups of ``opcode`` in ``ADDRESS_GROUPS`` order."""
    paths = {f.path for f in isa.fields(opcode)}
    return tuple(g for g in ADDRESS_GROUPS if f"{g}.imm" in paths)


def check_in_layout(config: EngineConfig) -> data.StructLayout:
    """Input of the instruction checker: a queue instruction at dispatch.

    ``word``: the instruction with the GPR override applied (address operands still as
    written); ``addr[i]``: the effective address ``imm + AR[ar]`` (modulo 2**axi_addr_width)
    of the i-th group of :func:`address_groups`; ``pc`` travels along.
    """
    return data.StructLayout({
        "word": unsigned(INSTRUCTION_BITS),
        "addr": data.ArrayLayout(unsigned(config.axi_addr_width), MAX_ADDRESS_GROUPS),
        "pc": unsigned(32),
    })


def check_out_layout() -> data.StructLayout:
    """Output of the instruction checker: the resolved word (see ``UnitSignature``), the
    error the ISA simulator would raise for it (``ErrorCode.NONE`` if it may run), the pc."""
    return data.StructLayout({
        "word": unsigned(INSTRUCTION_BITS),
        "error": ErrorCode,
        "pc": unsigned(32),
    })
