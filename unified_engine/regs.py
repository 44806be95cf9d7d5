"""The engine's CSR map, defined once: offsets, access, bitfields, error codes, trace format.

The RTL register file, the host runtime, the ISA simulator, ``docs/registers.md`` and the
exported JSON / C header all read this module.  Every register is 32 bits on AXI-Lite, at a
byte offset from the engine's register base; 64-bit quantities are ``_LO``/``_HI`` pairs
(read ``_LO`` first: the hardware latches ``_HI`` on a ``_LO`` read).

BUILD_ID (:func:`build_id`) is the first 8 bytes of SHA-256 over the configuration
fingerprint, the ISA digest and the register-map digest; the host refuses a device whose
BUILD_ID differs from the one it computes.

Export: ``python -m unified_engine.regs --json`` or ``--header`` (``--preset NAME``,
``-o FILE``).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import struct
import sys
from collections.abc import Mapping
from typing import Any

from amaranth.hdl import unsigned
from amaranth.lib import data, enum

from .config import FORMATS, EngineConfig
from .isa import ISA_VERSION, Queue, isa_for

__all__ = [
    "ID_MAGIC",
    "REGISTERS",
    "REGMAP_VERSION",
    "TRACE_ENTRY",
    "TRACE_UNIT_DISPATCHER",
    "Access",
    "BitField",
    "ErrorCode",
    "Register",
    "TraceKind",
    "TraceMode",
    "build_id",
    "config_descriptor",
    "config_from_descriptor",
    "reg",
    "regmap_c_header",
    "regmap_digest",
    "regmap_json",
]

#: Value of the ID register: ASCII "UENG".
ID_MAGIC = 0x55454E47
#: Register-map version (major, minor); reported in VERSION and part of the regmap digest.
REGMAP_VERSION = (0, 1)


class ErrorCode(enum.Enum, shape=8):
    """Why the engine stopped with STATUS.ERROR set (STATUS.ERROR_CODE)."""

    NONE = 0
    ILLEGAL_INSTRUCTION = 1
    ILLEGAL_OPERAND = 2
    FETCH_OUT_OF_WINDOW = 3
    DMA_OUT_OF_WINDOW = 4
    SRAM_OUT_OF_RANGE = 5
    FIELD_OVERFLOW = 6
    TOKEN_UNDERFLOW = 7
    TOKEN_OVERFLOW = 8
    SYNC_TIMEOUT = 9
    CYCLE_BUDGET = 10
    UNSUPPORTED_FORMAT = 11


#: One-line meaning of each error code (documentation and host exception messages).
ERROR_DOCS: dict[ErrorCode, str] = {
    ErrorCode.NONE: "no error",
    ErrorCode.ILLEGAL_INSTRUCTION: "undefined opcode or enum value, reserved bits set, a queue "
    "waiting on itself, or an invalid GPR override",
    ErrorCode.ILLEGAL_OPERAND: "fields that are each valid but not together (e.g. a MATMUL k "
    "that is not a multiple of the quantization block, or a MATMUL/VECTOR result that "
    "overlaps an operand other than exactly in place)",
    ErrorCode.FETCH_OUT_OF_WINDOW: "an instruction fetch outside the DRAM window",
    ErrorCode.DMA_OUT_OF_WINDOW: "a DMA row outside the DRAM window; nothing of that "
    "instruction was transferred",
    ErrorCode.SRAM_OUT_OF_RANGE: "an on-chip address (scratchpad, accumulator, bias, scale) "
    "past the end of its memory",
    ErrorCode.FIELD_OVERFLOW: "a GPR override value does not fit the field it replaces",
    ErrorCode.TOKEN_UNDERFLOW: "an instruction waits for a dependency token that no earlier "
    "instruction pushed (the program would deadlock)",
    ErrorCode.TOKEN_OVERFLOW: "more unconsumed dependency tokens on a channel than its FIFO holds",
    ErrorCode.SYNC_TIMEOUT: "SYNC WAIT timed out",
    ErrorCode.CYCLE_BUDGET: "the run exceeded CYCLE_BUDGET cycles",
    ErrorCode.UNSUPPORTED_FORMAT: "a number format this engine was built without",
}


class TraceMode(enum.Enum, shape=2):
    """CONTROL.TRACE_MODE: which events the trace buffer records."""

    OFF = 0
    MARKERS = 1  #: TRACE markers, HALT and errors
    ALL = 2  #: also the start and end of every queue instruction


class TraceKind(enum.Enum, shape=4):
    """Kind of a trace-buffer entry."""

    MARKER = 0  #: payload = TRACE marker id
    START = 1  #: payload = pc of the queue instruction that started
    END = 2  #: payload = pc of the queue instruction that finished
    HALT = 3  #: payload = pc of HALT
    ERROR = 4  #: payload = error pc


#: ``unit`` value of dispatcher events (queue events use the Queue number).
TRACE_UNIT_DISPATCHER = 15

#: One 64-bit trace-buffer entry (TRACE_DATA_HI:TRACE_DATA_LO).
TRACE_ENTRY = data.StructLayout({
    "timestamp": unsigned(32),  # cycle count since START, low 32 bits
    "payload": unsigned(24),
    "kind": TraceKind,
    "unit": unsigned(4),
})


class Access(enum.Enum):
    """Software access to a register or field."""

    R = "r"  #: read-only
    RW = "rw"  #: read/write
    W = "w"  #: write-only (reads 0)
    W1 = "w1"  #: write 1 to trigger; reads 0


@dataclasses.dataclass(frozen=True)
class BitField:
    """A named bit range of a register (``lsb`` … ``lsb + width − 1``)."""

    name: str
    lsb: int
    width: int
    doc: str
    access: Access | None = None  # None: the register's access
    enum: type | None = None

    @property
    def mask(self) -> int:
        """Mask of the field in the register word."""
        return ((1 << self.width) - 1) << self.lsb

    def get(self, word: int) -> int:
        """The field's value in ``word``."""
        return (word >> self.lsb) & ((1 << self.width) - 1)


@dataclasses.dataclass(frozen=True)
class Register:
    """One 32-bit CSR."""

    name: str
    offset: int
    access: Access
    doc: str
    fields: tuple[BitField, ...] = ()

    def field(self, name: str) -> BitField:
        """A field by name; ``KeyError`` lists the fields."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}; fields: "
                       f"{', '.join(f.name for f in self.fields) or 'none'}")

    def pack(self, **values: int) -> int:
        """A register word from field values (range-checked)."""
        word = 0
        for name, value in values.items():
            f = self.field(name)
            value = value.value if isinstance(value, enum.Enum) else value
            if not 0 <= value < 1 << f.width:
                raise ValueError(f"{self.name}.{name}={value} does not fit {f.width} bits")
            word |= value << f.lsb
        return word


def _pair(name: str, offset: int, access: Access, doc: str) -> tuple[Register, Register]:
    return (Register(f"{name}_LO", offset, access, f"{doc} (bits 31:0)"),
            Register(f"{name}_HI", offset + 4, access, f"{doc} (bits 63:32)"))


_UNITS = tuple(q.name for q in Queue)

#: The config descriptor: one register per ``EngineConfig`` field, from ``CONFIG_BASE``.
CONFIG_BASE = 0x100


def _config_registers() -> list[Register]:
    out = []
    offset = CONFIG_BASE
    for f in dataclasses.fields(EngineConfig):
        if f.name == "clock_mhz":
            # IEEE double bits, so the descriptor reproduces the exact EngineConfig.
            out += _pair("CFG_CLOCK_MHZ", offset, Access.R,
                         "clock_mhz as IEEE-754 binary64 bits")
            offset += 8
        elif f.name == "formats":
            out.append(Register("CFG_FORMATS", offset, Access.R,
                                "enabled formats: bit i = FORMATS[i] ("
                                + ", ".join(f"{i} {n}" for i, n in enumerate(FORMATS)) + ")"))
            offset += 4
        else:
            out.append(Register(f"CFG_{f.name.upper()}", offset, Access.R,
                                f"EngineConfig.{f.name}"))
            offset += 4
    out.append(Register("CFG_ENGINE_INDEX", offset, Access.R,
                        "index of this engine in the SoC (0 … engines − 1)"))
    return out


def _registers() -> tuple[Register, ...]:
    regs: list[Register] = [
        Register("ID", 0x000, Access.R, f"magic {ID_MAGIC:#010x} (ASCII 'UENG')"),
        Register("VERSION", 0x004, Access.R, "register-map and ISA versions", (
            BitField("REGMAP_MINOR", 0, 8, "register-map minor version"),
            BitField("REGMAP_MAJOR", 8, 8, "register-map major version"),
            BitField("ISA_MINOR", 16, 8, "ISA minor version"),
            BitField("ISA_MAJOR", 24, 8, "ISA major version"),
        )),
        *_pair("BUILD_ID", 0x008, Access.R, "hash of config + ISA + register map"),
        Register("CONTROL", 0x010, Access.RW, "run control", (
            BitField("START", 0, 1, "start the program at PROGRAM_ADDR (ignored while BUSY); "
                     "clears STATUS, the counters and the trace", Access.W1),
            BitField("SOFT_RESET", 1, 1, "abort the run, drain the AXI ports, clear the queues, "
                     "tokens and STATUS; GPRs, address registers and the epilogue table keep "
                     "their values", Access.W1),
            BitField("TRACE_MODE", 2, 2, "events recorded in the trace buffer",
                     enum=TraceMode),
            BitField("IRQ_EN", 4, 1, "raise the interrupt when the engine stops"),
        )),
        Register("STATUS", 0x014, Access.R, "run state", (
            BitField("BUSY", 0, 1, "a program is running"),
            BitField("HALTED", 1, 1, "the last run ended with HALT"),
            BitField("ERROR", 2, 1, "the last run stopped with an error"),
            BitField("ERROR_CODE", 8, 8, "why (ErrorCode); 0 without an error",
                     enum=ErrorCode),
        )),
        Register("ERROR_PC", 0x018, Access.R,
                 "index (from PROGRAM_ADDR) of the instruction that stopped the engine"),
        Register("HALT_CODE", 0x01C, Access.R, "code operand of the HALT that ended the run"),
        *_pair("PROGRAM_ADDR", 0x020, Access.RW,
               "DRAM byte address of instruction 0 (32-byte aligned)"),
        *_pair("WINDOW_BASE", 0x028, Access.RW,
               "lowest DRAM byte address the engine may touch"),
        *_pair("WINDOW_LIMIT", 0x030, Access.RW,
               "first DRAM byte address past the window (exclusive)"),
        *_pair("CYCLE_BUDGET", 0x038, Access.RW,
               "stop with CYCLE_BUDGET after this many cycles (0 = no limit)"),
        *_pair("CYCLES", 0x040, Access.R, "cycles from START to the stop of the last run"),
        *_pair("INSTRET", 0x048, Access.R, "instructions dispatched in the last run"),
    ]
    offset = 0x050
    for unit in _UNITS:
        regs += _pair(f"{unit}_BUSY", offset, Access.R,
                      f"cycles the {unit} queue's unit was executing")
        regs += _pair(f"{unit}_STALL", offset + 8, Access.R,
                      f"cycles the {unit} queue's head instruction waited for tokens")
        offset += 16
    regs += [
        *_pair("DISPATCH_STALL", 0x090, Access.R,
               "cycles the dispatcher waited (full queue, fence, SYNC WAIT)"),
        Register("SYNC_FLAGS", 0x0A0, Access.RW, "the shared cross-engine flag word"),
        Register("SYNC_SET", 0x0A4, Access.W1, "write 1s to set sync flags"),
        Register("SYNC_CLEAR", 0x0A8, Access.W1, "write 1s to clear sync flags"),
        Register("GPR_INDEX", 0x0B0, Access.RW, "GPR accessed through GPR_DATA"),
        Register("GPR_DATA", 0x0B4, Access.RW,
                 "value of GPR[GPR_INDEX] (writes while BUSY are ignored): program arguments"),
        Register("TRACE_COUNT", 0x0C0, Access.R,
                 "events recorded since START (saturating); the buffer keeps the first "
                 "trace_depth"),
        Register("TRACE_INDEX", 0x0C4, Access.RW, "trace entry read through TRACE_DATA"),
        *_pair("TRACE_DATA", 0x0C8, Access.R, "trace entry TRACE_INDEX (TRACE_ENTRY layout)"),
        *_config_registers(),
    ]
    return tuple(regs)


#: Every register, in offset order.
REGISTERS: tuple[Register, ...] = _registers()
_BY_NAME = {r.name: r for r in REGISTERS}


def reg(name: str) -> Register:
    """The register called ``name``; ``KeyError`` says the name is unknown."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no register {name!r}") from None


# ----- config descriptor and identity ---------------------------------------------------------


def config_descriptor(config: EngineConfig, engine_index: int = 0) -> dict[str, int]:
    """The values of the ``CFG_*`` registers for ``config``."""
    if not isinstance(config, EngineConfig):
        raise TypeError(f"config_descriptor needs an EngineConfig, not {type(config).__name__}")
    if not 0 <= engine_index < config.engines:
        raise ValueError(f"engine_index={engine_index} is out of range; allowed 0…"
                         f"{config.engines - 1}")
    out: dict[str, int] = {}
    for f in dataclasses.fields(EngineConfig):
        value = getattr(config, f.name)
        if f.name == "clock_mhz":
            bits = struct.unpack("<Q", struct.pack("<d", value))[0]
            out["CFG_CLOCK_MHZ_LO"] = bits & 0xFFFFFFFF
            out["CFG_CLOCK_MHZ_HI"] = bits >> 32
        elif f.name == "formats":
            out["CFG_FORMATS"] = sum(1 << FORMATS.index(n) for n in value)
        else:
            out[f"CFG_{f.name.upper()}"] = value
    out["CFG_ENGINE_INDEX"] = engine_index
    return out


def config_from_descriptor(words: Mapping[str, int]) -> EngineConfig:
    """Rebuild the :class:`EngineConfig` from ``CFG_*`` register values (inverse of
    :func:`config_descriptor`); raises ``ValueError`` for missing or invalid values."""
    fields: dict[str, Any] = {}
    try:
        for f in dataclasses.fields(EngineConfig):
            if f.name == "clock_mhz":
                bits = words["CFG_CLOCK_MHZ_LO"] | words["CFG_CLOCK_MHZ_HI"] << 32
                fields[f.name] = struct.unpack("<d", struct.pack("<Q", bits))[0]
            elif f.name == "formats":
                mask = words["CFG_FORMATS"]
                fields[f.name] = tuple(n for i, n in enumerate(FORMATS) if mask >> i & 1)
            else:
                fields[f.name] = words[f"CFG_{f.name.upper()}"]
    except KeyError as exc:
        raise ValueError(f"config descriptor is missing {exc.args[0]}") from None
    return EngineConfig(**fields)


def describe() -> dict[str, Any]:
    """JSON-compatible description of the map (what :func:`regmap_digest` covers)."""
    return {
        "version": list(REGMAP_VERSION),
        "id_magic": ID_MAGIC,
        "registers": [
            {
                "name": r.name,
                "offset": r.offset,
                "access": r.access.value,
                "doc": r.doc,
                "fields": [
                    {"name": f.name, "lsb": f.lsb, "width": f.width, "doc": f.doc,
                     "access": (f.access or r.access).value,
                     **({"enum": {m.name: m.value for m in f.enum}} if f.enum else {})}
                    for f in r.fields
                ],
            }
            for r in REGISTERS
        ],
        "error_codes": {e.name: {"value": e.value, "doc": ERROR_DOCS[e]} for e in ErrorCode},
        "trace_entry": [[name, f.offset, f.width] for name, f in
                        ((n, f) for n, f in TRACE_ENTRY)],
        "trace_kinds": {k.name: k.value for k in TraceKind},
        "trace_unit_dispatcher": TRACE_UNIT_DISPATCHER,
    }


def regmap_digest() -> bytes:
    """SHA-256 of :func:`describe` (canonical JSON): the register-map part of BUILD_ID."""
    text = json.dumps(describe(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).digest()


def build_id(config: EngineConfig) -> int:
    """The 64-bit BUILD_ID of an engine built from ``config``."""
    if not isinstance(config, EngineConfig):
        raise TypeError(f"build_id needs an EngineConfig, not {type(config).__name__}")
    h = hashlib.sha256()
    h.update(config.fingerprint().to_bytes(8, "big"))
    h.update(isa_for(config).digest())
    h.update(regmap_digest())
    return int.from_bytes(h.digest()[:8], "big")


def reset_values(config: EngineConfig, engine_index: int = 0) -> dict[str, int]:
    """Read values of the constant registers (ID, VERSION, BUILD_ID, CFG_*)."""
    bid = build_id(config)
    return {
        "ID": ID_MAGIC,
        "VERSION": reg("VERSION").pack(REGMAP_MINOR=REGMAP_VERSION[1],
                                       REGMAP_MAJOR=REGMAP_VERSION[0],
                                       ISA_MINOR=ISA_VERSION[1], ISA_MAJOR=ISA_VERSION[0]),
        "BUILD_ID_LO": bid & 0xFFFFFFFF,
        "BUILD_ID_HI": bid >> 32,
        **config_descriptor(config, engine_index),
    }


# ----- export -----------------------------------------------------------------------------------


def regmap_json(config: EngineConfig) -> str:
    """The register map plus this configuration's constant values and BUILD_ID, as JSON."""
    out = describe()
    out["build_id"] = f"{build_id(config):016x}"
    out["config"] = config.to_dict()
    out["values"] = reset_values(config)
    return json.dumps(out, indent=2, sort_keys=False) + "\n"


def regmap_c_header(config: EngineConfig) -> str:
    """A C header with every offset, field shift/mask, error code and constant value."""
    bid = build_id(config)
    lines = [
        "/* Generated by unified_engine.regs -- do not edit. */",
        f"/* config fingerprint {config.fingerprint():016x} */",
        "#ifndef UNIFIED_ENGINE_REGS_H",
        "#define UNIFIED_ENGINE_REGS_H",
        "",
        f"#define UE_ID_MAGIC 0x{ID_MAGIC:08X}u",
        f"#define UE_BUILD_ID 0x{bid:016X}ull",
        "",
    ]
    for r in REGISTERS:
        lines.append(f"#define UE_REG_{r.name} 0x{r.offset:03X}u  /* {r.access.value}: "
                     f"{r.doc.replace('*/', '* /')} */")
        for f in r.fields:
            lines.append(f"#define UE_{r.name}_{f.name}_SHIFT {f.lsb}u")
            lines.append(f"#define UE_{r.name}_{f.name}_MASK 0x{f.mask:08X}u")
    lines.append("")
    for e in ErrorCode:
        lines.append(f"#define UE_ERR_{e.name} {e.value}u  /* {ERROR_DOCS[e]} */")
    lines.append("")
    for k in TraceKind:
        lines.append(f"#define UE_TRACE_{k.name} {k.value}u")
    lines.append("")
    for name, value in reset_values(config).items():
        if name.startswith("CFG_"):
            lines.append(f"#define UE_{name}_VALUE 0x{value:08X}u")
    lines += ["", "#endif /* UNIFIED_ENGINE_REGS_H */", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m unified_engine.regs --json|--header [--preset NAME] [-o FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m unified_engine.regs",
                                     description="Export the engine register map.")
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--json", action="store_true", help="JSON register map")
    kind.add_argument("--header", action="store_true", help="C header")
    parser.add_argument("--preset", default=None,
                        help="EngineConfig preset (default: EngineConfig())")
    parser.add_argument("-o", "--output", default=None, help="write to FILE instead of stdout")
    args = parser.parse_args(argv)
    try:
        config = EngineConfig.preset(args.preset) if args.preset else EngineConfig()
    except ValueError as exc:
        parser.error(str(exc))
    text = regmap_json(config) if args.json else regmap_c_header(config)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
