"""``ScalarUnit``: the dispatcher's register files and the instructions that use them.

State
-----
* GPR file: ``config.gprs`` × 32 bits, r0 reads 0 (writes to r0 are dropped).  A
  ``lib.memory.Memory`` with three combinational read ports (two for instructions, one for
  the host's GPR_INDEX/GPR_DATA) and one write port.
* Address registers: ``config.address_registers`` × (value, increment), each
  ``axi_addr_width`` bits; AR0 is always (0, 0).  A ``Memory`` with one combinational read
  port per address group (``engine_if.MAX_ADDRESS_GROUPS``) and one write port.

Instructions (semantics exactly as ``host/isasim.py``)
------------------------------------------------------
* ``ALU`` (every ``AluOp``; 32-bit wrap; DIVU by 0 gives 0xFFFFFFFF, REMU by 0 gives rs1),
  ``JUMP`` (condition on signed GPR[rs]; ABS / REL / REG targets modulo 2**32; ``link`` gets
  pc + 1 when taken), ``LOOP`` (rc ← rc − 1, taken while ≠ 0) and ``AREG`` (SET, SET_GPR,
  ADD_GPR, INC_GPR with sign-extended GPR; modulo 2**W; writes to AR0 are dropped).
* Resolve of a queue instruction (LOAD/STORE/MATMUL/VECTOR): the GPR override
  (``ovr_field`` names ``isa.overridable(op)[ovr_field − 1]``; a GPR value above the field's
  ``high`` is ``FIELD_OVERFLOW`` and changes nothing), then the effective address
  ``imm + AR[ar]`` (mod 2**W) of each address group in ``engine_if.address_groups`` order
  (``check.addr[i]``), then the post-increments: each AR named by a group with ``inc = 1``
  is advanced by its increment once, after all addresses were formed from the old values.

Ports
-----
word : In(256), pc : In(32)
    The instruction and its index; held stable from ``start`` to ``done``.
start : In(1)
    One-cycle request to execute ``word`` (only ALU, JUMP, LOOP, AREG and queue opcodes).
done : Out(1)
    The instruction is finished (in the ``start`` cycle itself for every ALU op except
    MUL/MULHU/DIVU/REMU, and for JUMP/LOOP/AREG); GPR/AR writes are visible the next cycle.
taken, target : Out(1), Out(32)
    With ``done``: the next pc is ``target`` (JUMP/LOOP taken), else pc + 1.
error : Out(ErrorCode)
    With ``done``: ``FIELD_OVERFLOW`` or ``NONE``.
check : Out(check_in_layout(config))
    From ``done`` of a queue instruction until the next ``start``: the word with the override
    applied, the effective addresses and the pc (the ``InstructionChecker`` input).
gpr : In(gpr_port_signature(config)), host_access : In(1)
    Host access to the GPRs; ``gpr.we`` writes only while ``host_access`` (not running).

A soft reset is a ``ResetInserter`` around the unit: it drops a multi-cycle operation, and the
register files (memories, which a reset does not touch) keep their contents.

Cycles (``start`` to ``done``): 0 for the single-cycle ops (``done`` in the ``start`` cycle);
MUL/MULHU 1; DIVU/REMU 33 (one quotient bit per cycle); a queue instruction's resolve
1 + max(1, n) with n the number of address registers it post-increments (one AR write per
cycle), or 0 on FIELD_OVERFLOW.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import EngineConfig
from ..isa import INSTRUCTION_BITS, QUEUE_OPCODES, AluOp, ArOp, JumpCond, JumpMode, Opcode, isa_for
from ..regs import ErrorCode
from .decode import field_of
from .engine_if import MAX_ADDRESS_GROUPS, address_groups, check_in_layout, gpr_port_signature

__all__ = ["ScalarUnit", "ar_entry_layout"]


def ar_entry_layout(config: EngineConfig) -> data.StructLayout:
    """One address register: its value and its post-increment (two's complement)."""
    w = config.axi_addr_width
    return data.StructLayout({"value": w, "inc": w})


class ScalarUnit(wiring.Component):
    """GPRs, address registers, ALU, branches and queue-instruction resolve (see module doc)."""

    def __init__(self, config: EngineConfig) -> None:
        if not isinstance(config, EngineConfig):
            raise TypeError(f"ScalarUnit needs an EngineConfig, not {type(config).__name__}")
        self.config = config
        self.isa = isa_for(config)
        super().__init__({
            "word": In(INSTRUCTION_BITS),
            "pc": In(32),
            "start": In(1),
            "done": Out(1),
            "taken": Out(1),
            "target": Out(32),
            "error": Out(ErrorCode),
            "check": Out(check_in_layout(config)),
            "gpr": In(gpr_port_signature(config)),
            "host_access": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, isa = self.config, self.isa
        aw = cfg.axi_addr_width

        # ---- register files ----
        m.submodules.gprs = gprs = Memory(shape=32, depth=cfg.gprs, init=[])
        gpr_a = gprs.read_port(domain="comb")
        gpr_b = gprs.read_port(domain="comb")
        gpr_h = gprs.read_port(domain="comb")
        gpr_w = gprs.write_port()
        m.submodules.ars = ars = Memory(shape=ar_entry_layout(cfg), depth=cfg.address_registers,
                                        init=[])
        ar_r = [ars.read_port(domain="comb") for _ in range(MAX_ADDRESS_GROUPS)]
        ar_w = ars.write_port()

        # GPR writes: the instruction's (while running) or the host's (while idle); never r0.
        wr_en = Signal()
        wr_addr = Signal.like(gpr_w.addr)
        wr_data = Signal(32)
        m.d.comb += [
            gpr_h.addr.eq(self.gpr.index),
            self.gpr.rdata.eq(gpr_h.data),
            gpr_w.addr.eq(Mux(wr_en, wr_addr, self.gpr.index)),
            gpr_w.data.eq(Mux(wr_en, wr_data, self.gpr.wdata)),
            gpr_w.en.eq(Mux(wr_en, wr_addr != 0,
                            self.host_access & self.gpr.we & (self.gpr.index != 0))),
        ]

        def write_gpr(index: Value, value: Value) -> None:
            m.d.comb += [wr_en.eq(1), wr_addr.eq(index), wr_data.eq(value)]

        ins = data.View(isa.instruction, self.word)
        header = data.View(isa.header, self.word[:isa.header.size])
        opcode = header.opcode
        alu, jump, loop, areg = ins.alu, ins.jump, ins.loop, ins.areg

        # ---- operand reads (port A: first source / override GPR, port B: second source) ----
        with m.Switch(opcode):
            with m.Case(Opcode.ALU):
                m.d.comb += [gpr_a.addr.eq(alu.rs1), gpr_b.addr.eq(alu.rs2)]
            with m.Case(Opcode.JUMP):
                m.d.comb += [gpr_a.addr.eq(jump.rs), gpr_b.addr.eq(jump.rt)]
            with m.Case(Opcode.LOOP):
                m.d.comb += gpr_a.addr.eq(loop.rc)
            with m.Case(Opcode.AREG):
                m.d.comb += gpr_a.addr.eq(areg.rs)
            with m.Default():
                m.d.comb += gpr_a.addr.eq(header.ovr_gpr)
        a = gpr_a.data
        b = Mux(alu.use_imm, alu.imm, gpr_b.data)

        # ---- ALU, single-cycle part ----
        alu_out = Signal(32)
        sa, sb = a.as_signed(), b.as_signed()
        shamt = b[:5]
        with m.Switch(alu.op):
            for op, value in {
                AluOp.ADD: a + b, AluOp.SUB: a - b, AluOp.AND: a & b, AluOp.OR: a | b,
                AluOp.XOR: a ^ b, AluOp.SHL: a << shamt, AluOp.SHR: a >> shamt,
                AluOp.SRA: sa >> shamt, AluOp.MIN: Mux(sa < sb, a, b),
                AluOp.MAX: Mux(sa < sb, b, a), AluOp.MINU: Mux(a < b, a, b),
                AluOp.MAXU: Mux(a < b, b, a), AluOp.SLT: sa < sb, AluOp.SLTU: a < b,
                AluOp.SEQ: a == b,
            }.items():
                with m.Case(op):
                    m.d.comb += alu_out.eq(value)  # .eq keeps the low 32 bits
        alu_op = alu.op.as_value()

        # ---- multiplier (registered product) and restoring divider ----
        product = Signal(64)
        div_rem = Signal(32)
        div_quo = Signal(32)
        div_den = Signal(32)
        div_left = Signal(range(33))
        shifted = Cat(div_quo[31], div_rem)  # 33 bits: rem·2 + next dividend bit
        fits = shifted >= div_den

        # ---- JUMP / LOOP ----
        v = a.as_signed()
        cond = Signal()
        with m.Switch(jump.cond):
            for c, value in {
                JumpCond.ALWAYS: 1, JumpCond.EQZ: v == 0, JumpCond.NEZ: v != 0,
                JumpCond.LTZ: v < 0, JumpCond.GEZ: v >= 0, JumpCond.GTZ: v > 0,
                JumpCond.LEZ: v <= 0,
            }.items():
                with m.Case(c):
                    m.d.comb += cond.eq(value)
        jump_target = Signal(32)
        with m.Switch(jump.mode):
            with m.Case(JumpMode.ABS):
                m.d.comb += jump_target.eq(jump.offset)
            with m.Case(JumpMode.REL):
                m.d.comb += jump_target.eq(self.pc + jump.offset)
            with m.Default():  # REG (the decoder rejects the undefined mode)
                m.d.comb += jump_target.eq(gpr_b.data + jump.offset)
        loop_count = Signal(32)
        m.d.comb += loop_count.eq(a - 1)

        # ---- AREG ----
        cur = ar_r[0].data
        ar_new = Signal(ar_entry_layout(cfg))
        m.d.comb += ar_new.eq(cur)
        with m.Switch(areg.op):
            with m.Case(ArOp.SET):
                m.d.comb += [ar_new.value.eq(areg.value), ar_new.inc.eq(areg.inc)]
            with m.Case(ArOp.SET_GPR):
                m.d.comb += ar_new.value.eq(a + areg.value)
            with m.Case(ArOp.ADD_GPR):
                m.d.comb += ar_new.value.eq(cur.value + a + areg.value)
            with m.Case(ArOp.INC_GPR):
                m.d.comb += ar_new.inc.eq(a.as_signed() + areg.inc)

        # ---- queue instruction: override, addresses, post-increments ----
        over_ok = Signal()  # the override (if any) fits its field
        m.d.comb += over_ok.eq(1)
        bump_pending = Signal(MAX_ADDRESS_GROUPS)
        bump_ar = [Signal.like(ar_w.addr, name=f"bump_ar{i}") for i in range(MAX_ADDRESS_GROUPS)]
        bump_val = [Signal(ar_entry_layout(cfg), name=f"bump_val{i}")
                    for i in range(MAX_ADDRESS_GROUPS)]
        # queue opcodes grouped by layout (LOAD and STORE share one)
        queue_bodies: dict[str, list[Opcode]] = {}
        for op in QUEUE_OPCODES:
            queue_bodies.setdefault(isa.body(op), []).append(op)

        def override(op: Opcode) -> None:
            """In the start cycle: check the override and register the overridden word."""
            body_out = data.View(isa.layout(op), self.check.word)
            with m.Switch(header.ovr_field):
                for i, info in enumerate(isa.overridable(op)):
                    with m.Case(i + 1):
                        m.d.comb += over_ok.eq(a <= info.high)
                        m.d.sync += field_of(isa, body_out, info.path).eq(a)

        def resolve(op: Opcode) -> None:
            """In the ADDR cycle: effective addresses and the post-increments to perform."""
            body = data.View(isa.layout(op), self.check.word)
            groups = address_groups(isa, op)
            seen = []  # (ar, inc) of earlier groups
            for i in range(len(groups), MAX_ADDRESS_GROUPS):
                m.d.sync += [self.check.addr[i].eq(0), bump_pending[i].eq(0)]
            for i, g in enumerate(groups):
                imm = Value.cast(field_of(isa, body, f"{g}.imm"))
                ar = Value.cast(field_of(isa, body, f"{g}.ar"))
                inc = Value.cast(field_of(isa, body, f"{g}.inc"))
                port = ar_r[i]
                m.d.comb += port.addr.eq(ar)
                m.d.sync += self.check.addr[i].eq((imm + port.data.value)[:aw])
                again = Const(0, 1)
                for ar_h, inc_h in seen:
                    again = again | (inc_h & (ar_h == ar))
                seen.append((ar, inc))
                m.d.sync += [
                    bump_pending[i].eq(inc & (ar != 0) & ~again),
                    bump_ar[i].eq(ar),
                    bump_val[i].value.eq(port.data.value + port.data.inc),
                    bump_val[i].inc.eq(port.data.inc),
                ]

        done = self.done
        with m.FSM(name="scalar"):
            with m.State("IDLE"), m.If(self.start), m.Switch(opcode):
                with m.Case(Opcode.ALU):
                    with m.If(alu_op.matches(AluOp.MUL, AluOp.MULHU)):
                        m.d.sync += product.eq(a * b)
                        m.next = "MUL"
                    with m.Elif(alu_op.matches(AluOp.DIVU, AluOp.REMU)):
                        m.d.sync += [div_rem.eq(0), div_quo.eq(a), div_den.eq(b),
                                     div_left.eq(32)]
                        m.next = "DIV"
                    with m.Else():
                        m.d.comb += done.eq(1)
                        write_gpr(alu.rd, alu_out)
                with m.Case(Opcode.JUMP):
                    m.d.comb += [done.eq(1), self.taken.eq(cond),
                                 self.target.eq(jump_target)]
                    with m.If(cond):
                        write_gpr(jump.link, self.pc + 1)
                with m.Case(Opcode.LOOP):
                    m.d.comb += [done.eq(1), self.taken.eq(loop_count != 0),
                                 self.target.eq(self.pc + loop.offset)]
                    write_gpr(loop.rc, loop_count)
                with m.Case(Opcode.AREG):
                    m.d.comb += [done.eq(1), ar_r[0].addr.eq(areg.ar),
                                 ar_w.addr.eq(areg.ar), ar_w.data.eq(ar_new),
                                 ar_w.en.eq(areg.ar != 0)]
                for ops in queue_bodies.values():
                    with m.Case(*ops):
                        m.d.sync += [self.check.word.eq(self.word),
                                     self.check.pc.eq(self.pc)]
                        override(ops[0])
                        with m.If(~over_ok):
                            m.d.comb += [done.eq(1),
                                         self.error.eq(ErrorCode.FIELD_OVERFLOW)]
                        with m.Else():
                            m.next = "ADDR"
                with m.Default():
                    m.d.comb += done.eq(1)
            with m.State("MUL"):
                m.d.comb += done.eq(1)
                write_gpr(alu.rd, Mux(alu.op == AluOp.MUL, product[:32], product[32:]))
                m.next = "IDLE"
            with m.State("DIV"):
                with m.If(div_left == 0):
                    m.d.comb += done.eq(1)
                    write_gpr(alu.rd, Mux(alu.op == AluOp.DIVU, div_quo, div_rem))
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [
                        div_rem.eq(Mux(fits, shifted - div_den, shifted)),
                        div_quo.eq(Cat(fits, div_quo[:31])),
                        div_left.eq(div_left - 1),
                    ]
            with m.State("ADDR"):
                with m.Switch(opcode):
                    for ops in queue_bodies.values():
                        with m.Case(*ops):
                            resolve(ops[0])
                m.next = "BUMP"
            with m.State("BUMP"):
                # one register per cycle, lowest group first; all values were read in ADDR
                rest = Signal(MAX_ADDRESS_GROUPS)
                m.d.comb += rest.eq(bump_pending)
                with m.Switch(bump_pending):
                    for i in range(MAX_ADDRESS_GROUPS):
                        with m.Case("-" * (MAX_ADDRESS_GROUPS - 1 - i) + "1" + "0" * i):
                            m.d.comb += [ar_w.addr.eq(bump_ar[i]), ar_w.data.eq(bump_val[i]),
                                         ar_w.en.eq(1), rest.eq(bump_pending & ~(1 << i))]
                m.d.sync += bump_pending.eq(rest)
                with m.If(rest == 0):
                    m.d.comb += done.eq(1)
                    m.next = "IDLE"
        return m
