"""``Decoder``: is a 256-bit word an instruction that ``Isa.decode`` accepts?

The dispatcher runs every fetched word through this check before it executes it; a word the
ISA simulator would reject with :class:`~unified_engine.isa.IllegalInstruction` stops the
engine with ``ILLEGAL_INSTRUCTION``.  ``illegal`` is 1 exactly when ``isa_for(config).decode``
raises for the word:

* the opcode (bits ``[5:0]``) is not an :class:`~unified_engine.isa.Opcode`;
* an enum field holds a value its enum does not define;
* a bit outside every field of the opcode's layout (``reserved``) is set;
* a field holds a value at or above its ``FieldInfo.limit`` (e.g. an accumulator tile index
  past the accumulator);
* a dispatcher instruction has ``wait``/``signal`` ≠ 0, or a queue instruction waits on or
  signals its own queue;
* ``ovr_field``/``ovr_gpr`` are not both zero or both non-zero, or ``ovr_field`` is larger
  than the number of overridable fields of the opcode;
* LOAD/STORE ``sram.imm`` is at or above the size of the memory ``mem`` names.

Everything is derived from the ISA description (``isa.fields``, ``isa.overridable``, the
layouts): :func:`decode_rules` turns it into a small table of rules per opcode, which the
hardware elaborates (fields are read by name through ``View``\\ s of the layouts) and which
:func:`is_illegal` evaluates in Python, so the table itself can be checked against
``Isa.decode`` on many words quickly.

The decoder is purely combinational (no clock): ``illegal``, ``opcode``, ``queue_op`` and
``queue`` follow ``word`` in the same cycle.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Module, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import EngineConfig
from ..isa import INSTRUCTION_BITS, QUEUE_OPCODES, FieldInfo, Isa, MemTarget, Opcode, Queue, isa_for

__all__ = ["Decoder", "OpcodeRules", "decode_rules", "field_of", "is_illegal"]


@dataclasses.dataclass(frozen=True)
class OpcodeRules:
    """What makes a word with a defined opcode illegal (see the module docstring).

    ``reserved``: mask of the bits no field of the layout covers; ``enums``: enum fields with
    the raw values they accept (only enums that leave some values undefined); ``limits``:
    fields whose largest legal raw value ``FieldInfo.high`` is below their all-ones value;
    ``queue``: the opcode's queue (``None``: a dispatcher instruction); ``overridable``: the
    number of fields a GPR may override; ``sram_limits``: LOAD/STORE only, the exclusive
    bound of ``sram.imm`` for each ``mem`` value.
    """

    opcode: Opcode
    reserved: int
    enums: tuple[tuple[FieldInfo, frozenset[int]], ...]
    limits: tuple[FieldInfo, ...]
    queue: Queue | None
    overridable: int
    sram_limits: tuple[tuple[int, int], ...] = ()


def _sram_limits(isa: Isa) -> tuple[tuple[int, int], ...]:
    """Entries of each memory a DMA ``sram.imm`` may name (the rule of ``Isa.validate``)."""
    w = isa.widths
    sizes = {MemTarget.SCRATCHPAD: w.spad_rows, MemTarget.BIAS: w.bias_entries,
             MemTarget.SCALE: w.scale_entries}
    return tuple((mem.value, sizes[mem]) for mem in MemTarget)


def decode_rules(isa: Isa) -> dict[Opcode, OpcodeRules]:
    """The rule table of every opcode of ``isa``."""
    rules = {}
    for op in Opcode:
        fields = isa.fields(op)
        used = 0
        enums, limits = [], []
        for info in fields:
            used |= ((1 << info.width) - 1) << info.offset
            if info.path == "opcode":
                continue
            if info.kind == "enum":
                values = frozenset(member.value for member in info.enum)
                if len(values) < 1 << info.width:
                    enums.append((info, values))
            elif info.kind != "sint" and info.high < (1 << info.width) - 1:
                limits.append(info)
        rules[op] = OpcodeRules(
            opcode=op,
            reserved=((1 << INSTRUCTION_BITS) - 1) & ~used,
            enums=tuple(enums),
            limits=tuple(limits),
            queue=QUEUE_OPCODES.get(op),
            overridable=len(isa.overridable(op)),
            sram_limits=_sram_limits(isa) if op in (Opcode.LOAD, Opcode.STORE) else (),
        )
    return rules


def _raw(word: int, info: FieldInfo) -> int:
    return (word >> info.offset) & ((1 << info.width) - 1)


def is_illegal(isa: Isa, word: int, rules: dict[Opcode, OpcodeRules] | None = None) -> bool:
    """Evaluate the rule table in Python: True iff ``isa.decode(word)`` would raise."""
    rules = rules or decode_rules(isa)
    try:
        op = Opcode(word & 0x3F)
    except ValueError:
        return True
    r = rules[op]
    info = {f.path: f for f in isa.fields(op)}
    if word & r.reserved:
        return True
    if any(_raw(word, f) not in values for f, values in r.enums):
        return True
    if any(_raw(word, f) > f.high for f in r.limits):
        return True
    wait, signal = _raw(word, info["wait"]), _raw(word, info["signal"])
    if r.queue is None and (wait | signal):
        return True
    if r.queue is not None and (wait | signal) >> r.queue.value & 1:
        return True
    ovr_field, ovr_gpr = _raw(word, info["ovr_field"]), _raw(word, info["ovr_gpr"])
    if (ovr_field == 0) != (ovr_gpr == 0) or ovr_field > r.overridable:
        return True
    if r.sram_limits:
        mem, imm = _raw(word, info["mem"]), _raw(word, info["sram.imm"])
        if any(mem == value and imm >= limit for value, limit in r.sram_limits):
            return True
    return False


def field_of(isa: Isa, view: data.View, path: str):
    """The member of an instruction ``view`` (a ``View`` of one of ``isa.layouts``) named by a
    ``FieldInfo.path``: header fields live under ``header``, groups are dotted."""
    if path in isa.header.members:
        return view.header[path]
    node = view
    for part in path.split("."):
        node = node[part]
    return node


class Decoder(wiring.Component):
    """Combinational legality check of one instruction word (see the module docstring).

    Ports
    -----
    word : In(256)
        The instruction word.
    illegal : Out(1)
        ``isa.decode(word)`` would raise ``IllegalInstruction``.
    opcode : Out(Opcode)
        Bits ``[5:0]`` (meaningful when ``illegal`` is 0).
    queue_op : Out(1), queue : Out(Queue)
        The opcode is LOAD/STORE/MATMUL/VECTOR, and its queue.
    """

    def __init__(self, config: EngineConfig) -> None:
        if not isinstance(config, EngineConfig):
            raise TypeError(f"Decoder needs an EngineConfig, not {type(config).__name__}")
        self.config = config
        self.isa = isa_for(config)
        super().__init__({
            "word": In(INSTRUCTION_BITS),
            "illegal": Out(1),
            "opcode": Out(Opcode, init=Opcode.NOP),
            "queue_op": Out(1),
            "queue": Out(Queue),
        })

    def elaborate(self, platform):
        m = Module()
        isa = self.isa
        rules = decode_rules(isa)
        header = data.View(isa.header, self.word[:isa.header.size])
        m.d.comb += self.opcode.eq(header.opcode)
        with m.Switch(header.opcode.as_value()):
            for op, r in rules.items():
                with m.Case(op):
                    m.d.comb += self.illegal.eq(self._illegal(isa, op, r))
                    if r.queue is not None:
                        m.d.comb += [self.queue_op.eq(1), self.queue.eq(r.queue)]
            with m.Default():
                m.d.comb += self.illegal.eq(1)
        return m

    def _illegal(self, isa: Isa, op: Opcode, r: OpcodeRules) -> Value:
        layout = isa.layout(op)
        view = data.View(layout, self.word)

        def raw(path: str) -> Value:
            return Value.cast(field_of(isa, view, path))

        terms = []
        if "reserved" in layout.members:
            field = layout["reserved"]
            # The layout's reserved member is exactly the rule table's reserved mask.
            assert r.reserved == ((1 << field.width) - 1) << field.offset
            terms.append(view.reserved != 0)
        else:
            assert r.reserved == 0
        for info, values in r.enums:
            terms.append(~raw(info.path).matches(*sorted(values)))
        for info in r.limits:
            terms.append(raw(info.path) > info.high)
        tokens = raw("wait") | raw("signal")
        if r.queue is None:
            terms.append(tokens != 0)
        else:
            terms.append(tokens[r.queue.value])
        ovr_field, ovr_gpr = raw("ovr_field"), raw("ovr_gpr")
        terms.append((ovr_field == 0) != (ovr_gpr == 0))
        terms.append(ovr_field > r.overridable)
        for value, limit in r.sram_limits:
            terms.append((raw("mem") == value) & (raw("sram.imm") >= limit))
        illegal = terms[0]
        for term in terms[1:]:
            illegal = illegal | term
        return illegal
