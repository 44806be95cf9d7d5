"""Bad programs on the RTL: each stops the engine with the ISA simulator's error code and pc,
the host raises a clear exception, and the engine runs the next program correctly (after a soft
reset where the issue asks for one)."""

from __future__ import annotations

import numpy as np
import pytest

from firmware import golden as G
from unified_engine.asm import Program, gpr
from unified_engine.host import Engine
from unified_engine.host.errors import DeviceError, DeviceTimeout
from unified_engine.isa import INSTRUCTION_BYTES
from unified_engine.regs import ErrorCode


@pytest.fixture(scope="module")
def engines():
    config = G.small_config()
    model = Engine.open("model", config, dram_bytes=1 << 22)
    rtl = Engine.open("verilator", config, dram_bytes=1 << 22)
    yield model, rtl
    model.close()
    rtl.close()


def _good_program(config, src: int, dst: int) -> Program:
    p = Program(config)
    p.load(src + 3, 2, row_bytes=100, rows=3, dram_stride=130, signal="store")
    p.store(dst + 1, 2, row_bytes=300, wait="load")
    p.alu("add", gpr(1), gpr(0), 1234)
    p.halt(5)
    return p


def _check_recovers(eng: Engine, soft_reset: bool) -> None:
    """After a failed run the next program must run correctly."""
    if soft_reset:
        eng.soft_reset()
    src, dst = eng.alloc(1024), eng.alloc(1024)
    data = np.random.default_rng(1).integers(0, 256, 1024, dtype=np.uint8).tobytes()
    eng.write(src.addr, data)
    result = eng.run(_good_program(eng.config, src.addr, dst.addr))
    assert result.halt_code == 5 and eng.gpr(1) == 1234
    want = b"".join(data[3 + 130 * r:103 + 130 * r] for r in range(3))
    assert eng.read(dst.addr + 1, 300) == want
    eng.free(src)
    eng.free(dst)


def _error_of(eng: Engine, program, **kw) -> tuple[ErrorCode, int]:
    with pytest.raises(DeviceError) as info:
        eng.run(program, **kw)
    assert info.value.code.name in str(info.value)  # the message names the error
    return info.value.code, info.value.pc


def _illegal_opcode(config) -> bytes:
    p = Program(config)
    p.alu("add", gpr(2), gpr(0), 1)
    blob = bytearray(p.encode())
    blob += (0x3F).to_bytes(INSTRUCTION_BYTES, "little")  # opcode 0x3F is not defined
    return bytes(blob)


def _out_of_window(config) -> Program:
    p = Program(config)
    p.alu("add", gpr(2), gpr(0), 1)
    p.load((1 << 22) - 16, 0, row_bytes=64)  # past the end of the window (= DRAM)
    p.halt()
    return p


def _sync_timeout(config) -> Program:
    p = Program(config)
    p.sync("wait", mask=0b10, value=0b10, timeout=200)
    p.halt()
    return p


def _never_halts(config) -> Program:
    p = Program(config)
    p.label("spin")
    p.alu("add", gpr(3), gpr(3), 1)
    p.jump("spin")
    return p


@pytest.mark.parametrize(("name", "make", "code"), [
    ("illegal opcode", _illegal_opcode, ErrorCode.ILLEGAL_INSTRUCTION),
    ("DMA out of window", _out_of_window, ErrorCode.DMA_OUT_OF_WINDOW),
    ("SYNC WAIT timeout", _sync_timeout, ErrorCode.SYNC_TIMEOUT),
])
def test_bad_program_same_error_as_model(engines, name, make, code):
    model, rtl = engines
    program = make(model.config)
    want = _error_of(model, program)
    got = _error_of(rtl, program)
    assert want[0] is code
    assert got == want, f"{name}: RTL stopped with {got}, the simulator with {want}"
    assert not rtl.busy
    _check_recovers(rtl, soft_reset=True)


def test_cycle_budget_stops_a_program_that_never_halts(engines):
    _, rtl = engines
    code, _ = _error_of(rtl, _never_halts(rtl.config), cycle_budget=5000)
    assert code is ErrorCode.CYCLE_BUDGET
    assert 5000 <= rtl.csr64("CYCLES") <= 5100
    _check_recovers(rtl, soft_reset=True)


def test_host_timeout_soft_resets_a_hung_engine(engines):
    _, rtl = engines
    with pytest.raises(DeviceTimeout, match="soft-reset"):
        rtl.run(_never_halts(rtl.config), timeout=0.2)
    assert not rtl.busy
    _check_recovers(rtl, soft_reset=False)
