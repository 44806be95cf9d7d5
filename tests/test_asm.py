"""The Program builder: fields, labels, loops, validation and the text/bytes round trip."""

import pytest

from unified_engine import EngineConfig
from unified_engine.asm import Addr, Program, decode, disassemble, gpr
from unified_engine.isa import (
    ActKind,
    AluOp,
    ArOp,
    BiasMode,
    IllegalInstruction,
    JumpCond,
    JumpMode,
    Opcode,
    Queue,
    SyncOp,
    VecBcast,
    VecOp,
    isa_for,
)

CFG = EngineConfig.preset("sim_small")


def every_class_program() -> Program:
    p = Program(CFG)
    p.nop()
    p.ar_set(1, value=0x1000, inc=-64)
    p.ar_set_gpr(2, gpr(3), offset=8)
    p.ar_add_gpr(2, gpr(4))
    p.ar_inc_gpr(3, gpr(5), offset=-1)
    p.li(gpr(1), -7)
    p.alu("mulhu", gpr(2), gpr(1), gpr(1))
    p.load(dram=Addr(0x40, ar=1, inc=True), sram=Addr(3, ar=2), row_bytes=96, rows=5,
           dram_stride=4096, sram_stride=128, signal=["array", "store"])
    p.load(dram=0, sram=17, row_bytes=2, mem="bias", override=("row_bytes", gpr(6)))
    p.matmul(a=Addr(0, ar=3, inc=True), b=64, dst=Addr(128, ar=4), k=300, m_tiles=3,
             n_tiles=2, acc=5, acc_in=True, acc_out=True, bias_mode="full", bias=100,
             epi=2, rowmax="update", rmax=Addr(400, ar=5, inc=True), out_fmt="fp32",
             out_layout="a_panel", wait="load", signal=Queue.VECTOR)
    p.vector("argmax4", dst=7, length=1000, rows=4, src0=Addr(9, ar=1), dst_fmt="fp32",
             src0_stride=8, imm=-3.25, wait=0b0010, signal="store")
    p.vector("add", dst=1, src0=2, src1=3, length=16, bcast="row", override=("rows", gpr(2)))
    p.store(dram=Addr(0x2000, ar=6, inc=True), sram=7, row_bytes=32, rows=4,
            dram_stride=64, wait=["vector", "array"], signal="load")
    p.epi(3, "unified", scale=0.125, a=0.0, b=1.702, c=1.0, d=0.0)
    p.epi(4, ActKind.CLAMP, a=0.0, b=float("inf"))
    p.sync("set", mask=0b1010)
    p.sync(SyncOp.WAIT, mask=0xFF, value=0x0F, timeout=1000)
    p.fence()
    p.trace(0xABCDE)
    p.label("target")
    p.jump("target", "nez", gpr(2))
    p.jump(gpr(7), link=gpr(8))
    p.jump(3)
    p.loop_end(gpr(9), "target")
    p.halt(0x1234)
    return p


def test_every_class_round_trips_through_bytes():
    p = every_class_program()
    blob = p.encode()
    assert len(blob) == 32 * len(p)
    assert {ins.opcode for ins in p.instructions()} == set(Opcode)
    assert decode(blob, CFG) == p.instructions()
    assert isa_for(CFG).encode_bytes(decode(blob, CFG)) == blob


def test_builder_sets_the_fields_it_is_given():
    ins = every_class_program().instructions()
    load = ins[7]
    assert load.opcode is Opcode.LOAD
    assert (load["dram.imm"], load["dram.ar"], load["dram.inc"]) == (0x40, 1, 1)
    assert (load["sram.imm"], load["sram.ar"], load["sram.inc"]) == (3, 2, 0)
    assert (load["rows"], load["row_bytes"], load["dram_stride"], load["sram_stride"]) == \
        (5, 96, 4096, 128)
    assert load["signal"] == (1 << Queue.ARRAY.value) | (1 << Queue.STORE.value)
    bias_load = ins[8]
    assert bias_load["mem"].name == "BIAS"
    paths = [f.path for f in isa_for(CFG).overridable(Opcode.LOAD)]
    assert paths[bias_load["ovr_field"] - 1] == "row_bytes" and bias_load["ovr_gpr"] == 6
    mm = ins[9]
    assert (mm["k"], mm["m_tiles"], mm["n_tiles"], mm["acc"]) == (300, 3, 2, 5)
    assert mm["bias_mode"] is BiasMode.FULL and mm["rowmax"].name == "UPDATE"
    assert mm["wait"] == 1 << Queue.LOAD.value and mm["signal"] == 1 << Queue.VECTOR.value
    vec = ins[10]
    assert vec["op"] is VecOp.ARGMAX4 and vec["imm"] == 0xC0500000  # -3.25
    assert ins[11]["bcast"] is VecBcast.ROW
    assert ins[1]["op"] is ArOp.SET and ins[1]["inc"] == (1 << CFG.axi_addr_width) - 64
    alu = ins[5]
    assert (alu["op"], alu["use_imm"], alu["rd"], alu["rs1"], alu["imm"]) == \
        (AluOp.ADD, 1, 1, 0, 0xFFFFFFF9)
    assert ins[6]["use_imm"] == 0 and ins[6]["rs2"] == 1
    assert ins[13]["act"] is ActKind.UNIFIED and ins[13]["scale"] == 0x3E000000
    assert ins[14]["act"] is ActKind.CLAMP and ins[14]["b"] == 0x7F800000


def test_labels_and_jump_targets():
    ins = every_class_program().instructions()
    target = 19
    rel = ins[target]
    assert rel["mode"] is JumpMode.REL and rel["offset"] == 0 and rel["cond"] is JumpCond.NEZ
    reg = ins[20]
    assert reg["mode"] is JumpMode.REG and reg["rt"] == 7 and reg["link"] == 8
    assert ins[21]["mode"] is JumpMode.ABS and ins[21]["offset"] == 3
    assert ins[22]["offset"] == target - 22


def test_forward_label_and_unbound_label():
    p = Program(CFG)
    p.jump("end")
    p.nop()
    p.label("end")
    p.halt()
    assert p.instructions()[0]["offset"] == 2
    p2 = Program(CFG)
    p2.jump("nowhere")
    with pytest.raises(ValueError, match=r"instruction 0 .*'nowhere' is never bound"):
        p2.encode()
    with pytest.raises(ValueError, match="already bound"):
        p.label("end")


def test_counted_loop_structure():
    p = Program(CFG)
    with p.loop(5) as rc:
        p.nop()
        with p.loop(3) as inner:
            p.nop()
    p.halt()
    ins = p.instructions()
    assert rc.index == CFG.gprs - 1 and inner.index == CFG.gprs - 2
    # li rc,5 ; nop ; li inner,3 ; nop ; loop inner ; loop rc ; halt
    assert [i.opcode for i in ins] == [Opcode.ALU, Opcode.NOP, Opcode.ALU, Opcode.NOP,
                                       Opcode.LOOP, Opcode.LOOP, Opcode.HALT]
    assert ins[0]["imm"] == 5 and ins[2]["imm"] == 3
    assert ins[4]["rc"] == inner.index and ins[4]["offset"] == 3 - 4
    assert ins[5]["rc"] == rc.index and ins[5]["offset"] == 1 - 5


def test_loop_with_register_count_guards_zero():
    p = Program(CFG)
    with p.loop(gpr(4)) as rc:
        p.nop()
    p.halt()
    ins = p.instructions()
    # mov rc, r4 ; beqz rc -> end ; nop ; loop ; halt
    assert ins[0]["rs1"] == 4 and ins[0]["rd"] == rc.index
    assert ins[1]["cond"] is JumpCond.EQZ and 1 + ins[1]["offset"] == 4
    assert ins[3].opcode is Opcode.LOOP


def test_loop_count_validation():
    p = Program(CFG)
    with pytest.raises(ValueError, match="loop count=0 is out of range"), p.loop(0):
        pass
    with pytest.raises(TypeError), p.loop(2.0):
        pass
    with pytest.raises(ValueError, match="cannot be r0"), p.loop(2, counter=gpr(0)):
        pass


def test_validation_errors_name_index_field_and_range():
    p = Program(CFG)
    p.nop()
    with pytest.raises(ValueError) as err:
        p.load(dram=0, sram=0, row_bytes=1 << 24)
    assert str(err.value).startswith("instruction 1 (LOAD): LOAD.row_bytes=16777216 is out of "
                                     "range; allowed 0…16777215")
    with pytest.raises(ValueError, match=r"MATMUL\.a\.imm=2048 .*allowed 0…2047"):
        p.matmul(a=2048, b=0, dst=0, k=1)
    with pytest.raises(ValueError, match="r16 does not exist; allowed r0…r15"):
        p.li(gpr(16), 1)
    with pytest.raises(ValueError, match="ar=8 is out of range; allowed 1…7"):
        p.ar_set(8, 0)
    with pytest.raises(ValueError, match="unknown queue 'dma'"):
        p.load(dram=0, sram=0, row_bytes=4, signal="dma")
    with pytest.raises(IllegalInstruction, match="own queue"):
        p.store(dram=0, sram=0, row_bytes=4, wait="store")
    with pytest.raises(ValueError, match="cannot override 'k'"):
        p.load(dram=0, sram=0, row_bytes=4, override=("k", gpr(1)))
    with pytest.raises(ValueError, match="must not be r0"):
        p.load(dram=0, sram=0, row_bytes=4, override=("rows", gpr(0)))
    with pytest.raises(ValueError, match="needs an address register"):
        Addr(5, inc=True)
    with pytest.raises(ValueError, match="needs the tested register"):
        p.jump("x", "nez")
    with pytest.raises(ValueError, match="overflows fp32"):
        p.epi(0, scale=1e40)
    with pytest.raises(ValueError, match="UNIFIED parameters must be finite"):
        p.epi(0, "unified", b=float("inf"))
    with pytest.raises(ValueError, match="CLAMP needs a ≤ b"):
        p.epi(0, "clamp", a=0.0, b=-0.0)
    with pytest.raises(ValueError, match=r"VECTOR.op=.softmax' is not allowed"):
        p.vector("softmax", dst=0, length=1)
    assert len(p) == 1  # nothing was added by the failed calls


def test_jump_offset_range_checked_at_resolution():
    p = Program(CFG)
    p.jump(0xFFFFFFFF)  # largest absolute index is fine
    with pytest.raises(TypeError, match="jump target"):
        p.jump(-1)


def test_disassembly_text():
    p = every_class_program()
    text = p.disassemble()
    lines = text.splitlines()
    assert "target:" in lines
    assert "     7: load signal=array,store dram=ar1+0x40++ sram=ar2+0x3 rows=5 row_bytes=96 " \
        "dram_stride=4096 sram_stride=128" in lines
    assert any("load mem=bias dram=0x0 sram=0x11 rows=1 row_bytes=r6" in line for line in lines)
    assert any("vector.add" in line and "rows=r2" in line and "bcast=row" in line
               for line in lines)
    assert any("epi index=3 act=unified scale=0.125" in line and "b=1.70" in line
               for line in lines)
    assert any("jump.nez r2, -> 19" in line for line in lines)
    assert any("jump.always [r7+0] link=r8" in line for line in lines)
    assert any("loop r9 -> 19" in line for line in lines)
    assert any("halt code=4660" in line for line in lines)
    raw = disassemble(p.encode(), CFG)
    assert raw == "\n".join(line for line in lines if not line.endswith(":")) + "\n"


def test_program_needs_a_config():
    with pytest.raises(TypeError, match="EngineConfig"):
        Program("kintex7")
    assert Program().config == EngineConfig()
