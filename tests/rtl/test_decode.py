"""The instruction decoder agrees with ``Isa.decode`` on valid, mutated and random words.

Words come from ``Program`` and from ``Isa.make`` with random (corner-biased) field values,
then get mutated: bit flips anywhere, a field set to an arbitrary raw value (undefined enum
values, values past a limit), the token masks and the override pair set at random.  The rule
table is checked on many words in Python (``is_illegal``), the hardware on fewer words in one
simulation per configuration (the decoder is combinational, so a word costs no clock).
"""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from unified_engine import EngineConfig
from unified_engine.asm import Addr, Program, gpr
from unified_engine.isa import (
    QUEUE_OPCODES,
    IllegalInstruction,
    MemTarget,
    Opcode,
    Queue,
    isa_for,
)
from unified_engine.rtl.decode import Decoder, decode_rules, is_illegal

CONFIGS = {
    "sim_small": EngineConfig.preset("sim_small"),
    # 3-row tiles: the accumulator holds a number of tiles that is not a power of two, so
    # MATMUL.acc has a limit below its all-ones value.
    "odd": EngineConfig(rows=3, cols=5, pe_interleave=3, axi_addr_width=40, gprs=8,
                        address_registers=4),
    "default": EngineConfig(),
}


def _value(rng: random.Random, low: int, high: int) -> int:
    pick = rng.random()
    if pick < 0.2:
        return low
    if pick < 0.4:
        return high
    if pick < 0.5:
        return min(high, max(low, rng.choice((0, 1, -1))))
    return rng.randint(low, high)


def random_word(isa, rng: random.Random, opcode: Opcode | None = None) -> int:
    """A valid instruction word of ``opcode`` (random if None) with random fields."""
    op = opcode or rng.choice(list(Opcode))
    values = {}
    for info in isa.fields(op):
        if info.path == "opcode":
            continue
        if info.kind == "enum":
            values[info.path] = rng.choice(list(info.enum))
        else:
            values[info.path] = _value(rng, info.low, info.high)
    queue = QUEUE_OPCODES.get(op)
    own = 0 if queue is None else 1 << queue.value
    keep = 0 if queue is None else 0xF
    values["wait"] &= keep & ~own
    values["signal"] &= keep & ~own
    over = len(isa.overridable(op))
    if over and rng.random() < 0.5:
        values["ovr_field"] = rng.randint(1, over)
        values["ovr_gpr"] = rng.randint(1, isa.config.gprs - 1)
    else:
        values["ovr_field"] = values["ovr_gpr"] = 0
    if op in (Opcode.LOAD, Opcode.STORE):
        w = isa.widths
        limit = {MemTarget.SCRATCHPAD: w.spad_rows, MemTarget.BIAS: w.bias_entries,
                 MemTarget.SCALE: w.scale_entries}[values["mem"]]
        values["sram.imm"] = _value(rng, 0, limit - 1)
    return isa.encode(isa.make(op, **values))


def program_words(config: EngineConfig) -> list[int]:
    """A program touching most instruction forms, as words."""
    p = Program(config)
    p.li(gpr(1), 0xDEADBEEF)
    p.alu("mulhu", gpr(2), gpr(1), gpr(1))
    p.ar_set(1, value=0x1000, inc=-64)
    p.ar_inc_gpr(1, gpr(2), 8)
    p.epi(3, "clamp", a=0.0, b=6.0)
    p.sync("wait", mask=0xF, value=0x3, timeout=100)
    p.trace(0x123456)
    with p.loop(3):
        p.load(dram=Addr(ar=1, inc=True), sram=3, row_bytes=64, rows=2, signal="array",
               override=("rows", gpr(2)))
        p.matmul(a=0, b=Addr(5, ar=1), dst=2, k=16, wait="load", signal="store")
        p.vector("exp", dst=1, length=8, src0=2, wait="array")
        p.store(dram=0x40, sram=Addr(1, ar=1, inc=True), row_bytes=32, wait="array",
                mem="bias")
    p.jump("end", "gtz", rs=gpr(2), link=gpr(3))
    p.fence()
    p.label("end")
    p.halt(7)
    blob = p.encode()
    return [int.from_bytes(blob[i:i + 32], "little") for i in range(0, len(blob), 32)]


def mutate(isa, rng: random.Random, word: int) -> int:
    """One random corruption of ``word``."""
    kind = rng.randrange(6)
    if kind == 0:  # flip 1-3 bits anywhere
        for _ in range(rng.randint(1, 3)):
            word ^= 1 << rng.randrange(256)
        return word
    try:
        op = Opcode(word & 0x3F)
    except ValueError:
        return word ^ 1 << rng.randrange(256)
    fields = [f for f in isa.fields(op) if f.path != "opcode"]
    if kind == 1:  # flip a bit inside the fields
        f = rng.choice(fields)
        return word ^ 1 << (f.offset + rng.randrange(f.width))
    if kind == 2:  # a field gets an arbitrary raw value (top values most interesting)
        f = rng.choice(fields)
        raw = rng.choice(((1 << f.width) - 1, (1 << f.width) - 2, rng.getrandbits(f.width)))
        mask = ((1 << f.width) - 1) << f.offset
        return word & ~mask | (raw & ((1 << f.width) - 1)) << f.offset
    info = {f.path: f for f in fields}
    if kind == 3:  # random token masks
        for path in ("wait", "signal"):
            f = info[path]
            word = word & ~(0xF << f.offset) | rng.getrandbits(4) << f.offset
        return word
    if kind == 4:  # random override pair
        for path in ("ovr_field", "ovr_gpr"):
            f = info[path]
            raw = rng.choice((0, 1, rng.getrandbits(f.width)))
            word = word & ~(((1 << f.width) - 1) << f.offset) | raw << f.offset
        return word
    # another opcode on the same body bits
    return word & ~0x3F | rng.choice([o.value for o in Opcode] + [0, 0x3F, 0x14])


def word_set(config: EngineConfig, count: int, seed: int) -> list[int]:
    isa = isa_for(config)
    rng = random.Random(seed)
    base = program_words(config)
    words = list(base)
    while len(words) < count:
        w = rng.choice(base) if rng.random() < 0.1 else random_word(isa, rng)
        if rng.random() < 0.7:
            for _ in range(rng.choice((1, 1, 1, 2))):
                w = mutate(isa, rng, w)
        words.append(w)
    return words


def reference(isa, word: int) -> bool:
    try:
        isa.decode(word)
    except IllegalInstruction:
        return True
    return False


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_rule_table_matches_isa_decode(name):
    config = CONFIGS[name]
    isa = isa_for(config)
    rules = decode_rules(isa)
    words = word_set(config, 10000, seed=sorted(CONFIGS).index(name))
    expected = [reference(isa, w) for w in words]
    got = [is_illegal(isa, w, rules) for w in words]
    bad = [hex(w) for w, e, g in zip(words, expected, got, strict=True) if e != g]
    assert not bad, f"{len(bad)} disagreements, e.g. {bad[:3]}"
    # the set exercises both outcomes
    assert 0.2 < sum(expected) / len(expected) < 0.8


def run_decoder(config: EngineConfig, words: list[int]) -> list[tuple[int, int, int, int]]:
    dut = Decoder(config)
    out = []

    async def bench(ctx):
        for w in words:
            ctx.set(dut.word, w)
            out.append((ctx.get(dut.illegal), ctx.get(dut.opcode.as_value()),
                        ctx.get(dut.queue_op), ctx.get(dut.queue.as_value())))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_decoder_rtl_matches_isa_decode(name):
    config = CONFIGS[name]
    isa = isa_for(config)
    words = word_set(config, 4000, seed=10 + sorted(CONFIGS).index(name))
    got = run_decoder(config, words)
    for w, (illegal, opcode, queue_op, queue) in zip(words, got, strict=True):
        assert illegal == reference(isa, w), f"word {w:#066x}"
        if not illegal:
            op = Opcode(w & 0x3F)
            assert opcode == op.value
            assert queue_op == (op in QUEUE_OPCODES)
            if queue_op:
                assert Queue(queue) is QUEUE_OPCODES[op]


def test_every_rule_fires():
    """Each kind of rule is hit on its own by a minimal corruption of a valid word."""
    config = CONFIGS["odd"]
    isa = isa_for(config)
    rng = random.Random(3)

    def field(op, path):
        return isa.field_info(op, path)

    def put(word, info, raw):
        mask = ((1 << info.width) - 1) << info.offset
        return word & ~mask | raw << info.offset

    nop = isa.encode(isa.make(Opcode.NOP))
    alu = isa.encode(isa.make(Opcode.ALU))
    load = isa.encode(isa.make(Opcode.LOAD))
    mm = isa.encode(isa.make(Opcode.MATMUL))
    acc = field(Opcode.MATMUL, "acc")
    assert acc.limit is not None and acc.limit < 1 << acc.width
    cases = {
        "opcode": nop & ~0x3F,
        "reserved": nop | 1 << 255,
        "enum": put(alu, field(Opcode.ALU, "op"), 31),
        "limit": put(mm, acc, acc.limit),
        "dispatcher tokens": put(nop, field(Opcode.NOP, "signal"), 1),
        "own queue": put(load, field(Opcode.LOAD, "wait"), 1 << Queue.LOAD.value),
        "override pair": put(load, field(Opcode.LOAD, "ovr_gpr"), 1),
        "override index": put(put(load, field(Opcode.LOAD, "ovr_gpr"), 1),
                              field(Opcode.LOAD, "ovr_field"),
                              len(isa.overridable(Opcode.LOAD)) + 1),
        "sram limit": put(put(load, field(Opcode.LOAD, "mem"), MemTarget.BIAS.value),
                          field(Opcode.LOAD, "sram.imm"), isa.widths.bias_entries),
    }
    legal = [nop, alu, load, mm, put(mm, acc, acc.limit - 1),
             put(load, field(Opcode.LOAD, "sram.imm"), isa.widths.bias_entries),
             random_word(isa, rng, Opcode.VECTOR)]
    got = run_decoder(config, list(cases.values()) + legal)
    for (name, word), (illegal, *_) in zip(cases.items(), got, strict=False):
        assert reference(isa, word), name
        assert illegal == 1, name
    for word, (illegal, *_) in zip(legal, got[len(cases):], strict=True):
        assert not reference(isa, word)
        assert illegal == 0
