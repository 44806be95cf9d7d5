"""Hand-written programs on the model backend: DMA copy, tiled matmul, jumps, HALT, errors."""

import ml_dtypes
import numpy as np
import pytest

from unified_engine import EngineConfig
from unified_engine.asm import Addr, Program, gpr
from unified_engine.host import DeviceError, DeviceTimeout, Engine, RaceError
from unified_engine.isa import Opcode, f32_bits
from unified_engine.numerics import fp
from unified_engine.regs import ErrorCode, reg

CFG = EngineConfig.preset("sim_small")  # 2×2 array, P = 2 (tile 4×2), 64-bit AXI


@pytest.fixture
def eng():
    return Engine.open("model", CFG, dram_bytes=1 << 22)


def random_bf16(rng, shape, scale=1.0):
    return fp.f32_to_bf16(rng.standard_normal(shape).astype(np.float32) * np.float32(scale))


def test_strided_dma_copy(eng):
    """Gather a 5×12-byte block out of a matrix and scatter it into another with new strides."""
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (9, 40), dtype=np.uint8)
    a = eng.tensor(src)
    dst = eng.tensor(np.zeros((7, 24), np.uint8))
    p = Program(CFG)
    # rows 2..6, bytes 3..14 of src → scratchpad row 5, 16-byte pitch (2 scratchpad rows)
    p.load(dram=a.addr + 2 * 40 + 3, sram=5, rows=5, row_bytes=12, dram_stride=40,
           sram_stride=16, signal="store")
    p.store(dram=dst.addr + 24 + 2, sram=5, rows=5, row_bytes=12, dram_stride=24,
            sram_stride=16, wait="load")
    p.halt()
    eng.run(p)
    expect = np.zeros((7, 24), np.uint8)
    expect[1:6, 2:14] = src[2:7, 3:15]
    np.testing.assert_array_equal(dst.numpy(), expect)
    spad = eng.device.machine.spad
    assert bytes(spad[5 * 8 + 16:5 * 8 + 28]) == src[3, 3:15].tobytes()
    assert not spad[5 * 8 + 12:5 * 8 + 16].any()  # the pitch gap is untouched


def tiled_matmul_program(cfg, at_addr, b_addr, c_addr, m, k, n, racy=False):
    """C[M,N] = A[M,K]·B[K,N]; DRAM holds Aᵀ [K, M] and B [K, N] row-major, bf16.

    The m-tile loop walks Aᵀ and C with auto-incrementing address registers; B's n-tile
    panels are gathered once by a second counted loop.
    """
    tr, c = cfg.tile_rows, cfg.cols
    beat = cfg.axi_bytes
    a_rows = -(-k * tr * 2 // beat)
    b_rows = -(-k * c * 2 // beat)
    a_buf, b_buf, o_buf = 0, 64, 256
    p = Program(cfg)
    p.ar_set(1, at_addr, inc=tr * 2)        # A tile mt: column block of Aᵀ
    p.ar_set(2, c_addr, inc=tr * n * 2)     # C rows of tile mt
    p.ar_set(3, b_addr, inc=c * 2)          # B tile nt: column block of B
    p.ar_set(4, b_buf, inc=b_rows)          # …into consecutive B-panel tiles
    with p.loop(n // c):
        p.load(dram=Addr(ar=3, inc=True), sram=Addr(ar=4, inc=True), rows=k, row_bytes=c * 2,
               dram_stride=n * 2)
    p.token("array", "load")                # A buffer starts free
    p.token("store", "array")               # output buffer starts free
    with p.loop(m // tr):
        p.load(dram=Addr(ar=1, inc=True), sram=a_buf, rows=k, row_bytes=tr * 2,
               dram_stride=m * 2, wait="array", signal="array")
        p.matmul(a=a_buf, b=b_buf, dst=o_buf, k=k, m_tiles=1, n_tiles=n // c,
                 wait=["load", "store"], signal=["load", "store"])
        p.store(dram=Addr(ar=2, inc=True), sram=o_buf, rows=tr, row_bytes=n * 2,
                wait="array", signal=() if racy else "array")
    p.halt()
    assert a_rows * beat <= b_buf * beat
    return p


def test_tiled_matmul_with_counted_loops_is_bit_exact(eng):
    rng = np.random.default_rng(1)
    m, k, n = 12, 20, 6  # 3 m-tiles of 4, 3 n-tiles of 2
    a = random_bf16(rng, (m, k))
    b = random_bf16(rng, (k, n))
    at = eng.tensor(np.ascontiguousarray(a.T))
    bt = eng.tensor(b)
    out = eng.empty((m, n), "uint16")
    prog = tiled_matmul_program(CFG, at.addr, bt.addr, out.addr, m, k, n)
    result = eng.run(prog)
    np.testing.assert_array_equal(out.numpy(), fp.pe_matmul(a, b))
    # an independent check of the arithmetic: float64 matmul, within bf16 rounding
    ref = fp.bf16_to_f32(a).astype(np.float64) @ fp.bf16_to_f32(b).astype(np.float64)
    got = out.numpy().view(ml_dtypes.bfloat16).astype(np.float64)
    np.testing.assert_allclose(got, ref, rtol=2**-7, atol=1e-6)
    assert result.counters["array_busy"] > 0 and result.counters["load_busy"] > 0
    # overlap: the run is shorter than the units' busy time added up
    busy = sum(v for key, v in result.counters.items() if key.endswith("_busy"))
    assert result.cycles < busy
    # 3 AREG, 1+2·3 (B loop), 2 tokens, 1 + 4·3 (A loop), HALT
    assert result.instructions == 4 + 1 + 2 * 3 + 2 + 1 + 4 * 3 + 1


def test_missing_token_is_reported_as_a_race(eng):
    rng = np.random.default_rng(2)
    m, k, n = 8, 8, 2
    at = eng.tensor(np.ascontiguousarray(random_bf16(rng, (m, k)).T))
    bt = eng.tensor(random_bf16(rng, (k, n)))
    out = eng.empty((m, n), "uint16")
    prog = tiled_matmul_program(CFG, at.addr, bt.addr, out.addr, m, k, n, racy=True)
    # without the store → array token, the second MATMUL waits on a token nobody pushed
    with pytest.raises(DeviceError) as err:
        eng.run(prog)
    assert err.value.code is ErrorCode.TOKEN_UNDERFLOW
    # a program that simply forgets its tokens races: the MATMUL may read B before it loads
    p = Program(CFG)
    p.load(dram=bt.addr, sram=0, rows=1, row_bytes=32)
    p.matmul(a=8, b=0, dst=16, k=4)
    p.halt()
    with pytest.raises(RaceError, match="write/read conflict on spad"):
        eng.run(p)


def test_conditional_jumps_and_loop_arithmetic(eng):
    p = Program(CFG)
    r1, r2, r3 = gpr(1), gpr(2), gpr(3)
    p.li(r2, 0)
    p.jump("negative", "ltz", r1)
    with p.loop(r1) as i:        # r2 = 1 + 2 + … + r1 (0 when r1 = 0)
        p.add(r2, r2, i)
    p.beqz(r2, "zero")
    p.halt(1)
    p.label("zero")
    p.halt(2)
    p.label("negative")
    p.sub(r3, gpr(0), r1)        # r3 = −r1
    p.halt(3)
    for value, code in ((5, 1), (0, 2), (-7, 3)):
        result = eng.run(p, args={1: value})
        assert result.halt_code == code
        if value > 0:
            assert eng.gpr(2) == value * (value + 1) // 2
        if value < 0:
            assert eng.gpr(3) == -value


def test_halt_sets_status_and_counters(eng):
    p = Program(CFG)
    p.nop()
    p.trace(42)
    p.halt(0xBEEF)
    result = eng.run(p, trace="markers")
    status = eng.csr("STATUS")
    assert reg("STATUS").field("HALTED").get(status) == 1
    assert reg("STATUS").field("BUSY").get(status) == 0
    assert reg("STATUS").field("ERROR").get(status) == 0
    assert result.halt_code == 0xBEEF and result.instructions == 3
    assert [e.kind.name for e in result.trace] == ["MARKER", "HALT"]
    assert result.trace[0].payload == 42 and result.trace[1].payload == 2
    assert result.trace[0].timestamp < result.trace[1].timestamp <= result.cycles


def test_out_of_window_dma_stops_with_error_and_writes_nothing(eng):
    base, limit = eng.csr64("WINDOW_BASE"), eng.csr64("WINDOW_LIMIT")
    assert limit == eng.device.dram_size
    eng.set_csr64("WINDOW_LIMIT", limit - 4096)   # the last page is outside the window
    guard = eng.device.dram_read(limit - 4096 - 64, 128)
    p = Program(CFG)
    p.nop()
    # rows 0..3 inside the window, row 4 straddles its end
    p.store(dram=limit - 4096 - 64, sram=0, rows=5, row_bytes=16, dram_stride=16)
    p.halt()
    eng.device.machine.spad[:80] = 0xAA
    with pytest.raises(DeviceError) as err:
        eng.run(p)
    exc = err.value
    assert exc.code is ErrorCode.DMA_OUT_OF_WINDOW and exc.code_name == "DMA_OUT_OF_WINDOW"
    assert exc.pc == 1
    assert "DMA_OUT_OF_WINDOW" in str(exc) and "instruction 1" in str(exc)
    status = eng.csr("STATUS")
    assert reg("STATUS").field("ERROR").get(status) == 1
    assert reg("STATUS").field("ERROR_CODE").get(status) == ErrorCode.DMA_OUT_OF_WINDOW.value
    assert reg("STATUS").field("HALTED").get(status) == 0
    assert eng.csr("ERROR_PC") == 1
    assert eng.device.dram_read(limit - 4096 - 64, 128) == guard  # nothing written
    assert base == 0


@pytest.mark.parametrize("case", ["illegal", "fetch", "budget", "sync", "overflow", "sram",
                                  "format", "epi"])
def test_error_codes(eng, case):
    if case == "format":
        cfg = EngineConfig(**{**CFG.to_dict(), "formats": ("bf16",)})
        eng = Engine.open("model", cfg, dram_bytes=1 << 22)
    p = Program(eng.config)
    expect_pc = None
    if case == "illegal":
        p.jump(5)                      # index 5: past the program, zeroed DRAM → opcode 0
        p.halt()
        code, expect_pc = ErrorCode.ILLEGAL_INSTRUCTION, 5
    elif case == "fetch":
        p.jump(1 << 30)                # far outside DRAM
        code, expect_pc = ErrorCode.FETCH_OUT_OF_WINDOW, 1 << 30
    elif case == "budget":
        p.label("spin")
        p.jump("spin")
        code = ErrorCode.CYCLE_BUDGET
    elif case == "sync":
        p.sync("wait", mask=0b100, value=0b100, timeout=500)
        p.halt()
        code, expect_pc = ErrorCode.SYNC_TIMEOUT, 0
    elif case == "overflow":
        p.li(gpr(1), 1 << 20)          # does not fit the 20-bit rows field
        p.load(dram=0, sram=0, row_bytes=8, override=("rows", gpr(1)))
        p.halt()
        code, expect_pc = ErrorCode.FIELD_OVERFLOW, 1
    elif case == "sram":
        p.load(dram=0, sram=CFG.scratchpad_rows - 1, row_bytes=16)
        p.halt()
        code, expect_pc = ErrorCode.SRAM_OUT_OF_RANGE, 0
    elif case == "format":
        p.matmul(a=0, b=64, dst=128, k=64, b_fmt="int4")
        p.halt()
        code, expect_pc = ErrorCode.UNSUPPORTED_FORMAT, 0
    else:
        # the builder refuses a > b, so assemble the word directly
        isa = p.isa
        bad = isa.make(Opcode.EPI, index=1, act="clamp", a=f32_bits(1.0), b=f32_bits(-1.0))
        p = isa.encode_bytes([bad, isa.make(Opcode.HALT)])
        code, expect_pc = ErrorCode.ILLEGAL_OPERAND, 0
    with pytest.raises(DeviceError) as err:
        eng.run(p, cycle_budget=20_000 if case == "budget" else 0)
    assert err.value.code is code
    if expect_pc is not None:
        assert err.value.pc == expect_pc
    assert eng.csr("ERROR_PC") == err.value.pc
    if case == "budget":
        assert eng.csr64("CYCLES") > 20_000


def test_sync_flags_from_the_host_and_the_program(eng):
    p = Program(CFG)
    p.sync("wait", mask=0b1, value=0b1, timeout=10)
    p.sync("set", mask=0b110)
    p.sync("clear", mask=0b010)
    p.halt()
    eng.set_csr("SYNC_SET", 0b1)
    eng.run(p)
    assert eng.csr("SYNC_FLAGS") == 0b101


def test_timeout_soft_resets_and_the_engine_recovers(eng):
    spin = Program(CFG)
    spin.label("spin")
    spin.jump("spin")
    with pytest.raises(DeviceTimeout, match="soft-reset"):
        eng.run(spin, timeout=0.05)
    assert not eng.busy
    ok = Program(CFG)
    ok.halt(9)
    assert eng.run(ok).halt_code == 9
