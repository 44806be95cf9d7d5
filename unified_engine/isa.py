"""The instruction set, defined once: opcodes, modes and 256-bit instruction layouts.

Everything that knows an instruction's bit layout reads it from here: the assembler
(``unified_engine.asm``), the ISA simulator (``unified_engine.host``), the RTL decoder (which
``View``\\ s an instruction word through :attr:`Isa.instruction`), the generated documentation
(``docs/isa.md``) and the ISA hash in the engine's BUILD_ID.

Word format
-----------
One instruction is one 256-bit little-endian word (32 bytes).  At 256-bit AXI that is exactly
one beat; at 64/128-bit AXI it is 4/2 beats; at 512/1024-bit AXI one beat carries 2/4
instructions.  Instruction addresses (jump targets, ``ERROR_PC``) count instructions from the
program start (``PROGRAM_ADDR``), so a program is position independent in DRAM.

Every class starts with the same :data:`header <Isa.header>`: the 6-bit :class:`Opcode` in bits
``[5:0]``, the dependency-token masks ``wait``/``signal`` and the GPR field override
(``ovr_field``/``ovr_gpr``).  The class-specific fields follow in declaration order; the rest of
the word is a ``reserved`` field that must be zero.  Field widths that depend on the engine
(scratchpad address bits, GPR index bits, …) come from :class:`~unified_engine.EngineConfig`,
so the layouts are built per configuration by :func:`isa_for`.

Queues and dependency tokens
----------------------------
LOAD, MATMUL, VECTOR and STORE instructions are dispatched in program order to four queues
(:class:`Queue`) that run concurrently; every other instruction executes in the dispatcher.
Ordering between queues is explicit, as in VTA, generalised from VTA's three-stage chain to
four queues: bit *q* of ``wait`` pops one token from the channel *q → self* before the
instruction starts; bit *q* of ``signal`` pushes one token on the channel *self → q* when it
finishes.  A queue never waits on or signals itself.

Address operands
----------------
Addresses are *address operands*: ``imm`` plus address register ``ar`` (``ar = 0`` reads as
zero), with ``inc = 1`` post-incrementing that register by its increment once the instruction
has been dispatched (each register at most once per instruction).  The header's GPR override
replaces one numeric field (``ovr_field`` indexes :meth:`Isa.overridable`, 1-based) with the
value of GPR ``ovr_gpr`` at dispatch, so runtime sizes come from registers; a value that does
not fit the field stops the engine with ``FIELD_OVERFLOW``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from amaranth.hdl import Shape, unsigned
from amaranth.lib import data, enum

from .config import EngineConfig
from .isa_enums import (
    EPI_ENTRIES,
    INSTRUCTION_BITS,
    INSTRUCTION_BYTES,
    ISA_VERSION,
    QUEUE_OPCODES,
    SYNC_FLAGS,
    TOKEN_FIFO_DEPTH,
    VECTOR_REDUCE_SLOTS,
    ActKind,
    AluOp,
    ArOp,
    BiasMode,
    ElemFormat,
    IllegalInstruction,
    JumpCond,
    JumpMode,
    MemTarget,
    Opcode,
    OutLayout,
    Queue,
    RowMaxMode,
    SyncOp,
    VecBcast,
    VecOp,
    WeightFormat,
    f32_bits,
)

__all__ = [
    "EPI_ENTRIES",
    "INSTRUCTION_BITS",
    "INSTRUCTION_BYTES",
    "ISA_VERSION",
    "QUEUE_OPCODES",
    "SYNC_FLAGS",
    "TOKEN_FIFO_DEPTH",
    "VECTOR_REDUCE_SLOTS",
    "WIDTH_SYMBOLS",
    "ActKind",
    "AluOp",
    "ArOp",
    "BiasMode",
    "ElemFormat",
    "FieldInfo",
    "IllegalInstruction",
    "Instruction",
    "Isa",
    "IsaWidths",
    "JumpCond",
    "JumpMode",
    "MemTarget",
    "Opcode",
    "OutLayout",
    "Queue",
    "RowMaxMode",
    "SyncOp",
    "VecBcast",
    "VecOp",
    "WeightFormat",
    "f32_bits",
    "isa_for",
]

#: ISA version (major, minor); part of the ISA hash.
# ----- declarative field specification ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _F:
    """One leaf field: name, width (int, symbolic width key or enum), meaning."""

    name: str
    width: int | str | type
    doc: str
    unit: str = ""
    kind: str = "uint"  # uint | sint | word | bool | enum | f32 | mask
    override: bool = False
    limit: str | None = None  # IsaWidths attribute: exclusive upper bound of the value


@dataclasses.dataclass(frozen=True)
class _S:
    """A named group of fields (becomes a nested StructLayout)."""

    name: str
    fields: tuple
    doc: str


def _addr(name: str, space: str, doc: str, unit: str) -> _S:
    limit = {"spad": "spad_rows", "acc": "acc_tiles"}.get(space)
    return _S(
        name,
        (
            _F("imm", space, f"{doc}: immediate part", unit, override=True, limit=limit),
            _F("ar", "ar", "address register added to imm (0 = none)"),
            _F("inc", 1, "post-increment that address register", kind="bool"),
        ),
        doc,
    )


_HEADER = (
    _F("opcode", Opcode, "instruction class", kind="enum"),
    _F("wait", 4, "pop one token from queue q → this queue for each set bit q", kind="mask"),
    _F("signal", 4, "push one token to queue q for each set bit q when done", kind="mask"),
    _F("ovr_field", 5, "field replaced by a GPR: 1-based index into Isa.overridable (0 = none)"),
    _F("ovr_gpr", "gpr", "GPR whose value replaces field ovr_field (0 = none)"),
)

_DMA = (
    _F("mem", MemTarget, "on-chip memory side of the transfer", kind="enum"),
    _addr("dram", "dram", "DRAM byte address of row 0", "bytes"),
    _addr("sram", "sram", "on-chip address of row 0", "rows / entries (see mem)"),
    _F("rows", 20, "number of 2-D rows (0 = nothing)", "rows", override=True),
    _F("row_bytes", 24, "bytes per row", "bytes", override=True),
    _F("dram_stride", 32, "DRAM distance between row starts", "bytes", override=True),
    _F("sram_stride", 24, "on-chip distance between row starts (0 = row_bytes, packed)",
       "bytes", override=True),
)

_MATMUL = (
    _addr("a", "spad", "A panel (K-major tiles of tile_rows bf16)", "rows"),
    _addr("b", "spad", "B panel (K-major tiles of cols elements)", "rows"),
    _addr("dst", "spad", "output block", "rows"),
    _F("m_tiles", 16, "output row tiles (tile_rows = P·R rows each)", "tiles", override=True),
    _F("n_tiles", 16, "output column tiles (cols columns each)", "tiles", override=True),
    _F("k", 20, "reduction length", "elements", override=True),
    _F("acc", "acc", "accumulator tile of output tile (0, 0)", "tiles", override=True,
       limit="acc_tiles"),
    _F("acc_in", 1, "start from the accumulator instead of +0", kind="bool"),
    _F("acc_out", 1, "write the fp32 sums to the accumulator", kind="bool"),
    _F("wb", 1, "apply the epilogue and write the output block to dst", kind="bool"),
    _F("b_fmt", WeightFormat, "format of the B panel", kind="enum"),
    _F("qscale", "scale", "scale-memory entry of the first B block scale", "entries",
       override=True, limit="scale_entries"),
    _F("bias_mode", BiasMode, "epilogue bias", kind="enum"),
    _F("bias", "bias", "bias-memory entry of the first bias", "entries", override=True,
       limit="bias_entries"),
    _F("epi", 4, "epilogue table entry (scale, activation)", limit="epi_entries"),
    _F("rowmax", RowMaxMode, "running row maximum of the written values", kind="enum"),
    _addr("rmax", "spad", "fp32 row maxima (one per output row)", "rows"),
    _F("out_fmt", ElemFormat, "output element format", kind="enum"),
    _F("out_layout", OutLayout, "output block layout", kind="enum"),
    _F("dst_pitch", 20, "ROW_MAJOR output: bytes between output rows (0 = packed)", "bytes",
       override=True),
)

_VECTOR = (
    _F("op", VecOp, "operation", kind="enum"),
    _addr("src0", "spad", "first operand", "rows"),
    _addr("src1", "spad", "second operand (see bcast)", "rows"),
    _addr("dst", "spad", "result", "rows"),
    _F("length", 20, "elements per row", "elements", override=True),
    _F("rows", 20, "rows", "rows", override=True),
    _F("src0_stride", "spad", "rows between src0 rows (0 = packed)", "rows", override=True),
    _F("src1_stride", "spad", "rows between src1 rows (0 = packed)", "rows", override=True),
    _F("dst_stride", "spad", "rows between dst rows (0 = packed)", "rows", override=True),
    _F("src0_fmt", ElemFormat, "src0 element format", kind="enum"),
    _F("src1_fmt", ElemFormat, "src1 element format", kind="enum"),
    _F("dst_fmt", ElemFormat, "dst element format", kind="enum"),
    _F("bcast", VecBcast, "how src1 (or imm) is broadcast", kind="enum"),
    _F("imm", 32, "fp32 scalar operand (bcast = SCALAR, FILL)", kind="f32"),
    _F("epi", 4, "epilogue table entry for ACTIVATE", limit="epi_entries"),
    _F("accumulate", 1, "reductions: combine with the value already in dst", kind="bool"),
    _F("qfmt", WeightFormat, "QUANTIZE/DEQUANTIZE format", kind="enum"),
    _F("qscale", "scale", "scale-memory entry of the first block scale", "entries",
       override=True, limit="scale_entries"),
)

_BODIES: dict[str, tuple] = {
    "nop": (),
    "halt": (_F("code", 16, "value reported in the HALT_CODE register"),),
    "alu": (
        _F("op", AluOp, "operation", kind="enum"),
        _F("use_imm", 1, "src2 = imm instead of GPR[rs2]", kind="bool"),
        _F("rd", "gpr", "destination GPR (writes to r0 are dropped)"),
        _F("rs1", "gpr", "first source GPR"),
        _F("rs2", "gpr", "second source GPR (use_imm = 0)"),
        _F("imm", 32, "32-bit immediate (use_imm = 1)", kind="word"),
    ),
    "jump": (
        _F("cond", JumpCond, "condition on GPR[rs]", kind="enum"),
        _F("mode", JumpMode, "target formation", kind="enum"),
        _F("rs", "gpr", "GPR tested by cond"),
        _F("rt", "gpr", "target GPR (mode = REG)"),
        _F("link", "gpr", "GPR that receives pc + 1 when the jump is taken (0 = none)"),
        _F("offset", 32, "target (ABS) or signed offset (REL, REG)", "instructions",
           kind="word"),
    ),
    "loop": (
        _F("rc", "gpr", "loop counter GPR: rc ← rc − 1; jump while rc ≠ 0"),
        _F("offset", 32, "signed offset of the loop start from this instruction",
           "instructions", kind="sint"),
    ),
    "areg": (
        _F("op", ArOp, "operation", kind="enum"),
        _F("ar", "ar", "address register written (ar0 is always 0)"),
        _F("rs", "gpr", "source GPR (SET_GPR, ADD_GPR, INC_GPR)"),
        _F("value", "dram", "value immediate", kind="word"),
        _F("inc", "dram", "increment immediate (two's complement)", kind="word"),
    ),
    "sync": (
        _F("op", SyncOp, "operation", kind="enum"),
        _F("mask", SYNC_FLAGS, "flags affected / tested", kind="mask"),
        _F("value", SYNC_FLAGS, "WAIT: required values of the masked flags", kind="mask"),
        _F("timeout", 32, "WAIT: cycles before SYNC_TIMEOUT (0 = test once)", "cycles"),
    ),
    "trace": (_F("marker", 24, "marker id written to the trace buffer"),),
    "epi": (
        _F("index", 4, "table entry written", limit="epi_entries"),
        _F("act", ActKind, "activation", kind="enum"),
        _F("scale", 32, "fp32 multiplier applied before bias and activation", kind="f32"),
        _F("a", 32, "fp32 activation parameter a", kind="f32"),
        _F("b", 32, "fp32 activation parameter b", kind="f32"),
        _F("c", 32, "fp32 activation parameter c", kind="f32"),
        _F("d", 32, "fp32 activation parameter d", kind="f32"),
    ),
    "dma": _DMA,
    "matmul": _MATMUL,
    "vector": _VECTOR,
}

#: Layout (body) name of each opcode; LOAD and STORE share the DMA layout.
_BODY_OF: dict[Opcode, str] = {
    Opcode.NOP: "nop",
    Opcode.HALT: "halt",
    Opcode.ALU: "alu",
    Opcode.JUMP: "jump",
    Opcode.LOOP: "loop",
    Opcode.AREG: "areg",
    Opcode.SYNC: "sync",
    Opcode.TRACE: "trace",
    Opcode.EPI: "epi",
    Opcode.LOAD: "dma",
    Opcode.STORE: "dma",
    Opcode.MATMUL: "matmul",
    Opcode.VECTOR: "vector",
}


# ----- widths from the configuration -----------------------------------------------------------

#: Symbol used for each configuration-dependent width in the documentation.
WIDTH_SYMBOLS = {
    "spad": "SA",
    "acc": "AC",
    "bias": "BI",
    "scale": "SC",
    "sram": "SR",
    "gpr": "G",
    "ar": "AR",
    "dram": "DA",
}


def _bits(count: int) -> int:
    """Bits to index ``count`` items (at least 1)."""
    return max(1, (count - 1).bit_length())


@dataclasses.dataclass(frozen=True)
class IsaWidths:
    """Configuration-dependent field widths (bits) and value limits of the ISA.

    ``spad``: scratchpad row address; ``acc``: accumulator tile index; ``bias``/``scale``:
    bias/scale-memory entry index; ``sram``: the widest of spad/bias/scale (DMA on-chip
    address); ``gpr``/``ar``: register indices; ``dram``: DRAM byte address
    (= ``axi_addr_width``, also the width of an address register).
    """

    spad: int
    acc: int
    bias: int
    scale: int
    sram: int
    gpr: int
    ar: int
    dram: int
    spad_rows: int
    acc_tiles: int
    bias_entries: int
    scale_entries: int
    epi_entries: int = EPI_ENTRIES

    @classmethod
    def from_config(cls, config: EngineConfig) -> IsaWidths:
        acc_tiles = config.accumulator_bytes // (config.tile_rows * config.cols * 4)
        spad = config.scratchpad_addr_bits
        bias = _bits(config.bias_entries)
        scale = _bits(config.scale_entries)
        return cls(
            spad=spad,
            acc=_bits(acc_tiles),
            bias=bias,
            scale=scale,
            sram=max(spad, bias, scale),
            gpr=config.gpr_index_bits,
            ar=config.address_register_index_bits,
            dram=config.axi_addr_width,
            spad_rows=config.scratchpad_rows,
            acc_tiles=acc_tiles,
            bias_entries=config.bias_entries,
            scale_entries=config.scale_entries,
        )


# ----- field metadata ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One leaf field of an instruction layout, with its position read from the layout.

    ``path`` is the dotted name (``"dram.imm"``; header fields have no prefix), ``offset`` and
    ``width`` are bit positions in the 256-bit word, ``kind`` is one of ``uint``, ``sint``
    (two's complement), ``word`` (a raw word that accepts signed or unsigned values), ``bool``,
    ``enum``, ``f32`` (an fp32 bit pattern) or ``mask``; ``enum`` is the enum class for
    ``kind == "enum"``; ``width_key`` is the symbolic width (``"spad"``…) or ``None``;
    ``limit`` is a tighter exclusive upper bound from the configuration (or ``None``).
    """

    path: str
    offset: int
    width: int
    kind: str
    doc: str
    unit: str
    override: bool
    enum: type | None
    width_key: str | None
    limit: int | None

    @property
    def low(self) -> int:
        """Smallest accepted value."""
        if self.kind in ("sint", "word"):
            return -(1 << (self.width - 1))
        return 0

    @property
    def high(self) -> int:
        """Largest accepted value."""
        if self.kind == "sint":
            return (1 << (self.width - 1)) - 1
        top = (1 << self.width) - 1
        return top if self.limit is None else min(top, self.limit - 1)

    def check(self, value: Any, where: str) -> int | enum.Enum:
        """Validate ``value`` for this field; return it normalised (enum member or int)."""
        if self.kind == "enum":
            if isinstance(value, self.enum):
                return value
            if isinstance(value, str):
                try:
                    return self.enum[value.upper()]
                except KeyError:
                    pass
            names = ", ".join(m.name for m in self.enum)
            raise ValueError(f"{where}.{self.path}={value!r} is not allowed; allowed: {names}")
        if isinstance(value, enum.Enum) or not isinstance(value, int) or \
                (isinstance(value, bool) and self.kind != "bool"):
            raise TypeError(
                f"{where}.{self.path} must be an int, not {value!r} ({type(value).__name__})"
            )
        value = int(value)
        if not self.low <= value <= self.high:
            unit = f" {self.unit}" if self.unit else ""
            raise ValueError(
                f"{where}.{self.path}={value} is out of range; allowed {self.low}…{self.high}"
                f" ({self.width}-bit{unit} field)"
            )
        if self.kind == "word":  # canonical form: the raw unsigned word
            value &= (1 << self.width) - 1
        return value


@dataclasses.dataclass(frozen=True, eq=True)
class Instruction:
    """A decoded instruction: its opcode and every leaf field by dotted path.

    Create instructions with :class:`unified_engine.asm.Program` (which validates) or with
    :meth:`Isa.make`; :meth:`Isa.decode` returns them from words.  Two instructions are equal
    when they encode to the same word.
    """

    opcode: Opcode
    fields: Mapping[str, Any]

    def __getitem__(self, path: str) -> Any:
        return self.fields[path]

    @property
    def queue(self) -> Queue | None:
        """The queue this instruction is dispatched to, or ``None`` for dispatcher ops."""
        return QUEUE_OPCODES.get(self.opcode)


# ----- the ISA for one configuration -----------------------------------------------------------


class Isa:
    """The instruction layouts and codec for one :class:`EngineConfig`.

    Use :func:`isa_for` (cached) rather than constructing this directly.

    Attributes
    ----------
    widths : IsaWidths
        Configuration-dependent widths.
    header : data.StructLayout
        The common header (first field of every class).
    layouts : dict[str, data.StructLayout]
        One 256-bit layout per body name (``"dma"``, ``"matmul"``, …).
    instruction : data.UnionLayout
        Union of all class layouts: what the RTL decoder views an instruction word as.
    """

    def __init__(self, config: EngineConfig) -> None:
        if not isinstance(config, EngineConfig):
            raise TypeError(f"Isa needs an EngineConfig, not {type(config).__name__}")
        self.config = config
        self.widths = IsaWidths.from_config(config)
        self.header = self._struct(_HEADER)
        self.layouts: dict[str, data.StructLayout] = {}
        self._fields: dict[str, tuple[FieldInfo, ...]] = {}
        for body, spec in _BODIES.items():
            layout = self._class_layout(body, spec)
            self.layouts[body] = layout
            self._fields[body] = tuple(self._leaves(layout, (_S("header", _HEADER, ""), *spec)))
        self.instruction = data.UnionLayout(dict(self.layouts))
        self._overridable = {
            body: tuple(
                f for f in fields if f.override and not f.path.startswith(("opcode", "ovr"))
            )
            for body, fields in self._fields.items()
        }
        # ovr_field is 5 bits: index 0 means "no override", so at most 31 targets.
        assert all(len(over) < 32 for over in self._overridable.values())

    # -- layout construction --

    def _shape(self, f: _F):
        if isinstance(f.width, type):
            return f.width
        width = f.width if isinstance(f.width, int) else getattr(self.widths, f.width)
        return unsigned(width)

    def _struct(self, spec: tuple) -> data.StructLayout:
        members = {}
        for f in spec:
            members[f.name] = self._struct(f.fields) if isinstance(f, _S) else self._shape(f)
        return data.StructLayout(members)

    def _class_layout(self, body: str, spec: tuple) -> data.StructLayout:
        members = {"header": self.header, **self._struct(spec).members}
        used = sum(Shape.cast(s).width if not isinstance(s, data.Layout) else s.size
                   for s in members.values())
        if used > INSTRUCTION_BITS:
            raise ValueError(
                f"the {body.upper()} instruction needs {used} bits for this EngineConfig but an "
                f"instruction is {INSTRUCTION_BITS} bits; reduce scratchpad_bytes (address "
                f"{self.widths.spad} bits), accumulator_bytes, bias_bytes/scale_bytes, gprs, "
                f"address_registers or axi_addr_width"
            )
        if used < INSTRUCTION_BITS:
            members["reserved"] = unsigned(INSTRUCTION_BITS - used)
        return data.StructLayout(members)

    def _leaves(self, layout: data.StructLayout, spec: tuple, base: int = 0,
                prefix: str = "") -> Iterator[FieldInfo]:
        """Walk the layout (positions come from amaranth) alongside the spec (meaning)."""
        by_name = {f.name: f for f in spec}
        for name, field in layout:
            if name == "reserved":
                continue
            f = by_name[name]
            offset = base + field.offset
            if isinstance(f, _S):
                sub_prefix = "" if name == "header" else f"{prefix}{name}."
                yield from self._leaves(field.shape, f.fields, offset, sub_prefix)
                continue
            width = Shape.cast(field.shape).width
            key = f.width if isinstance(f.width, str) else None
            yield FieldInfo(
                path=prefix + name,
                offset=offset,
                width=width,
                kind=f.kind,
                doc=f.doc,
                unit=f.unit,
                override=f.override,
                enum=f.width if isinstance(f.width, type) else None,
                width_key=key,
                limit=getattr(self.widths, f.limit) if f.limit else None,
            )

    # -- metadata --

    def body(self, opcode: Opcode) -> str:
        """Layout name of an opcode (``"dma"`` for LOAD and STORE)."""
        return _BODY_OF[Opcode(opcode)]

    def layout(self, opcode: Opcode) -> data.StructLayout:
        """The 256-bit layout of ``opcode``."""
        return self.layouts[self.body(opcode)]

    def fields(self, opcode: Opcode) -> tuple[FieldInfo, ...]:
        """Every leaf field of ``opcode``, header first, in bit order."""
        return self._fields[self.body(opcode)]

    def field_info(self, opcode: Opcode, path: str) -> FieldInfo:
        """The :class:`FieldInfo` of one field; ``KeyError`` names the valid paths."""
        for f in self.fields(opcode):
            if f.path == path:
                return f
        valid = ", ".join(f.path for f in self.fields(opcode))
        raise KeyError(f"{Opcode(opcode).name} has no field {path!r}; fields: {valid}")

    def overridable(self, opcode: Opcode) -> tuple[FieldInfo, ...]:
        """Fields a GPR may override; ``ovr_field = i`` names entry ``i − 1``."""
        return self._overridable[self.body(opcode)]

    # -- construction, validation, codec --

    def make(self, opcode: Opcode, **values: Any) -> Instruction:
        """Build a validated :class:`Instruction`; omitted fields are 0 (first enum member).

        Dotted paths are passed with ``__`` (``dram__imm=4``) or through a dict
        (``make(op, **{"dram.imm": 4})``).  Raises ``ValueError``/``TypeError`` naming the
        field, the value and the allowed range.
        """
        opcode = Opcode(opcode)
        known = {f.path: f for f in self.fields(opcode) if f.path != "opcode"}
        given = {k.replace("__", "."): v for k, v in values.items()}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(
                f"{opcode.name} has no field(s) {unknown}; fields: {', '.join(known)}"
            )
        fields = {}
        for path, info in known.items():
            value = given.get(path, next(iter(info.enum)) if info.kind == "enum" else 0)
            if info.kind == "bool" and isinstance(value, bool):
                value = int(value)
            fields[path] = info.check(value, opcode.name)
        ins = Instruction(opcode, fields)
        self.validate(ins)
        return ins

    def validate(self, ins: Instruction) -> None:
        """Check the cross-field rules of ``ins`` (token masks, override, limits).

        Raises ``ValueError`` (an :class:`IllegalInstruction` for rules the hardware checks at
        decode: tokens and override).
        """
        name = ins.opcode.name
        for info in self.fields(ins.opcode):
            if info.path != "opcode":
                info.check(ins.fields[info.path], name)
        queue = ins.queue
        wait, signal = ins.fields["wait"], ins.fields["signal"]
        if queue is None and (wait or signal):
            raise IllegalInstruction(
                f"{name} runs in the dispatcher and takes no dependency tokens; "
                f"got wait={wait:#x} signal={signal:#x}"
            )
        if queue is not None and (wait | signal) & (1 << queue.value):
            raise IllegalInstruction(
                f"{name} is on the {queue.name} queue and cannot wait on or signal its own "
                f"queue; got wait={wait:#06b} signal={signal:#06b}"
            )
        ovr_field, ovr_gpr = ins.fields["ovr_field"], ins.fields["ovr_gpr"]
        if (ovr_field == 0) != (ovr_gpr == 0):
            raise IllegalInstruction(
                f"{name}: ovr_field and ovr_gpr must both be 0 or both be set; "
                f"got ovr_field={ovr_field} ovr_gpr={ovr_gpr}"
            )
        over = self.overridable(ins.opcode)
        if ovr_field > len(over):
            allowed = ", ".join(f"{i + 1}={f.path}" for i, f in enumerate(over)) or "none"
            raise IllegalInstruction(
                f"{name}: ovr_field={ovr_field} names no overridable field; allowed: {allowed}"
            )
        if ins.opcode in (Opcode.LOAD, Opcode.STORE):
            limit = {
                MemTarget.SCRATCHPAD: self.widths.spad_rows,
                MemTarget.BIAS: self.widths.bias_entries,
                MemTarget.SCALE: self.widths.scale_entries,
            }[ins.fields["mem"]]
            if ins.fields["sram.imm"] >= limit:
                raise ValueError(
                    f"{name}.sram.imm={ins.fields['sram.imm']} is out of range for "
                    f"mem={ins.fields['mem'].name}; allowed 0…{limit - 1}"
                )

    def encode(self, ins: Instruction) -> int:
        """The 256-bit word of a validated instruction, as an int (bit 0 = LSB)."""
        self.validate(ins)
        word = 0
        for info in self.fields(ins.opcode):
            value = ins.opcode if info.path == "opcode" else ins.fields[info.path]
            if isinstance(value, enum.Enum):
                value = value.value
            word |= (int(value) & ((1 << info.width) - 1)) << info.offset
        return word

    def decode(self, word: int) -> Instruction:
        """Decode a 256-bit word; raise :class:`IllegalInstruction` for a malformed one."""
        if not isinstance(word, int) or not 0 <= word < 1 << INSTRUCTION_BITS:
            raise ValueError(f"an instruction word is a {INSTRUCTION_BITS}-bit int, got {word!r}")
        raw_op = word & 0x3F
        try:
            opcode = Opcode(raw_op)
        except ValueError:
            raise IllegalInstruction(f"opcode {raw_op:#04x} is not defined") from None
        fields: dict[str, Any] = {}
        used = 0
        for info in self.fields(opcode):
            mask = (1 << info.width) - 1
            used |= mask << info.offset
            raw = (word >> info.offset) & mask
            if info.path == "opcode":
                continue
            if info.kind == "enum":
                try:
                    fields[info.path] = info.enum(raw)
                except ValueError:
                    raise IllegalInstruction(
                        f"{opcode.name}.{info.path}={raw} is not a valid {info.enum.__name__}"
                    ) from None
            elif info.kind == "sint" and raw >> (info.width - 1):
                fields[info.path] = raw - (1 << info.width)
            else:
                fields[info.path] = raw
        if word & ~used:
            raise IllegalInstruction(
                f"{opcode.name}: reserved bits are not zero ({word & ~used:#x})"
            )
        ins = Instruction(opcode, fields)
        try:
            self.validate(ins)
        except IllegalInstruction:
            raise
        except ValueError as exc:
            raise IllegalInstruction(str(exc)) from None
        return ins

    def encode_bytes(self, instructions) -> bytes:
        """Concatenate the little-endian 32-byte words of ``instructions``."""
        return b"".join(
            self.encode(i).to_bytes(INSTRUCTION_BYTES, "little") for i in instructions
        )

    def decode_bytes(self, blob: bytes) -> list[Instruction]:
        """Decode a program image (a multiple of 32 bytes) into instructions."""
        if len(blob) % INSTRUCTION_BYTES:
            raise ValueError(
                f"a program image is a multiple of {INSTRUCTION_BYTES} bytes, got {len(blob)}"
            )
        out = []
        for pc in range(len(blob) // INSTRUCTION_BYTES):
            chunk = blob[pc * INSTRUCTION_BYTES:(pc + 1) * INSTRUCTION_BYTES]
            try:
                out.append(self.decode(int.from_bytes(chunk, "little")))
            except IllegalInstruction as exc:
                raise IllegalInstruction(f"instruction {pc}: {exc}") from None
        return out

    def nested(self, ins: Instruction) -> dict[str, Any]:
        """The instruction as the nested dict ``Layout.const`` takes (for the RTL/tests)."""
        out: dict[str, Any] = {"header": {"opcode": ins.opcode}}
        header_paths = {f.name for f in _HEADER}
        for path, value in ins.fields.items():
            node = out["header"] if path in header_paths else out
            *parents, leaf = path.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value.value if isinstance(value, enum.Enum) else value
        return out

    # -- identity --

    def describe(self) -> dict[str, Any]:
        """JSON-compatible description of every enum and layout (what the ISA hash covers)."""
        enums = [Opcode, Queue, AluOp, JumpCond, JumpMode, ArOp, SyncOp, ActKind, MemTarget,
                 ElemFormat, WeightFormat, BiasMode, RowMaxMode, OutLayout, VecOp, VecBcast]
        return {
            "version": list(ISA_VERSION),
            "instruction_bits": INSTRUCTION_BITS,
            "epi_entries": EPI_ENTRIES,
            "sync_flags": SYNC_FLAGS,
            "token_fifo_depth": TOKEN_FIFO_DEPTH,
            "vector_reduce_slots": VECTOR_REDUCE_SLOTS,
            "enums": {e.__name__: {m.name: m.value for m in e} for e in enums},
            "opcodes": {op.name: self.body(op) for op in Opcode},
            "layouts": {
                body: [[f.path, f.offset, f.width, f.kind] for f in fields]
                for body, fields in self._fields.items()
            },
        }

    def digest(self) -> bytes:
        """SHA-256 of :meth:`describe` (canonical JSON): the ISA part of BUILD_ID."""
        text = json.dumps(self.describe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).digest()


@functools.lru_cache(maxsize=32)
def isa_for(config: EngineConfig) -> Isa:
    """The (cached) :class:`Isa` of ``config``."""
    return Isa(config)
