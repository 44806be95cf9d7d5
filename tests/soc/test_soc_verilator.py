"""Two engines of the Verilated SoC run two programs that synchronise through the flag bus.

Engine 0 computes a matmul tile and publishes it (SYNC SET flag 0), then waits for flag 1;
engine 1 waits for flag 0, copies the tile and answers with flag 1.  Engine 1 is started first
and must still be waiting (its copy untouched) until engine 0 runs; both halt, the copy equals
the tile, the tile equals the bit-exact golden model (and float64 within bf16 rounding), and
the same two programs run in order on the ISA simulator give the same DRAM bytes.  A negative
control shows that the wait really waits: engine 1 alone stops with SYNC_TIMEOUT.
"""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import pytest

from firmware import golden as G
from unified_engine.asm import Program
from unified_engine.host import Engine
from unified_engine.host.engine import default_regions
from unified_engine.host.errors import DeviceError
from unified_engine.numerics import fp
from unified_engine.regs import ErrorCode, reg
from unified_engine.rtl.soc import soc_reg

pytestmark = pytest.mark.slow  # one Verilator build of the 2-engine SoC (minutes, then cached)

DRAM = 1 << 22
K = 8
# DRAM addresses of the operands (in engine 0's half) and results
AT, B, C, D = 0x1000, 0x2000, 0x3000, 0x3800
A_BUF, B_BUF, O_BUF = 0, 64, 256  # scratchpad rows
F_TILE, F_DONE = 0b01, 0b10       # flag 0: the tile is in DRAM; flag 1: it was copied


def config():
    return dataclasses.replace(G.small_config(), engines=2)


def producer(cfg) -> Program:
    """C = A·B for one (TR × C) tile from Aᵀ [K, TR] and B [K, C], then SET flag 0 (SET waits
    for every queue, so the STORE is complete) and wait for flag 1."""
    tr, c = cfg.tile_rows, cfg.cols
    p = Program(cfg)
    p.load(dram=B, sram=B_BUF, rows=K, row_bytes=c * 2, dram_stride=c * 2)
    p.load(dram=AT, sram=A_BUF, rows=K, row_bytes=tr * 2, dram_stride=tr * 2, signal="array")
    p.matmul(a=A_BUF, b=B_BUF, dst=O_BUF, k=K, m_tiles=1, n_tiles=1, wait="load",
             signal="store")
    p.store(dram=C, sram=O_BUF, rows=tr, row_bytes=c * 2, wait="array")
    p.sync("set", mask=F_TILE)
    p.sync("wait", mask=F_DONE, value=F_DONE, timeout=1_000_000)
    p.halt(0x10)
    return p


def consumer(cfg, timeout: int = 1_000_000) -> Program:
    """Wait for flag 0, copy the tile C → D through the scratchpad, SET flag 1."""
    nbytes = cfg.tile_rows * cfg.cols * 2
    p = Program(cfg)
    p.sync("wait", mask=F_TILE, value=F_TILE, timeout=timeout)
    p.load(dram=C, sram=0, rows=1, row_bytes=nbytes, signal="store")
    p.store(dram=D, sram=0, rows=1, row_bytes=nbytes, wait="load")
    p.sync("set", mask=F_DONE)
    p.halt(0x11)
    return p


def start(eng: Engine, program: Program) -> None:
    """START without waiting (``Engine.run`` would block until HALT)."""
    eng.set_csr64("PROGRAM_ADDR", eng.load_program(program))
    eng.set_csr("CONTROL", reg("CONTROL").pack(START=1))


def operands(cfg):
    rng = np.random.default_rng(7)
    a = fp.f32_to_bf16(rng.standard_normal((cfg.tile_rows, K)).astype(np.float32))
    b = fp.f32_to_bf16(rng.standard_normal((K, cfg.cols)).astype(np.float32))
    return a, b


@pytest.fixture(scope="module")
def soc():
    from unified_engine.host.verilator_soc import SocVerilatorDevice

    device = SocVerilatorDevice(config(), dram_bytes=DRAM)
    yield device
    device.close()


def engines(soc):
    """An ``Engine`` per SoC engine: separate program regions, both windows over all DRAM."""
    cfg, half = config(), DRAM // 2
    out = []
    for i in range(2):
        eng = Engine(soc.engine(i), cfg, regions=default_regions(half // 2, half + i * half // 2))
        eng.set_csr64("WINDOW_BASE", 0)
        eng.set_csr64("WINDOW_LIMIT", DRAM)
        out.append(eng)
    return out


def clear_flags(eng: Engine) -> None:
    eng.set_csr("SYNC_CLEAR", 0xFFFF_FFFF)
    assert eng.csr("SYNC_FLAGS") == 0


def test_the_wait_waits_without_the_other_engine(soc):
    e0, e1 = engines(soc)
    clear_flags(e0)
    with pytest.raises(DeviceError) as err:
        e1.run(consumer(config(), timeout=3_000))
    assert err.value.code is ErrorCode.SYNC_TIMEOUT
    assert not e0.busy


def test_two_engines_synchronise_through_the_flag_bus(soc):
    cfg = config()
    e0, e1 = engines(soc)
    clear_flags(e0)
    a, b = operands(cfg)
    soc.dram_write(AT, np.ascontiguousarray(a.T).tobytes())
    soc.dram_write(B, b.tobytes())
    nbytes = cfg.tile_rows * cfg.cols * 2
    soc.dram_write(C, bytes(nbytes))
    soc.dram_write(D, bytes(nbytes))

    start(e1, consumer(cfg))
    soc.run_cycles(5_000)  # engine 1 alone: it must sit in its SYNC WAIT
    assert soc.engines_busy == 0b10
    assert soc.dram_read(D, nbytes) == bytes(nbytes)
    start(e0, producer(cfg))
    assert e0.device.wait_done(60) and e1.device.wait_done(60)

    status = reg("STATUS")
    for eng, code in ((e0, 0x10), (e1, 0x11)):
        word = eng.csr("STATUS")
        assert status.field("HALTED").get(word) and not status.field("ERROR").get(word)
        assert eng.csr("HALT_CODE") == code
    assert soc.csr_read(soc_reg("SYNC_FLAGS").offset) == F_TILE | F_DONE
    assert e1.csr64("CYCLES") > 5_000  # it waited through engine 0's whole run

    tile = np.frombuffer(soc.dram_read(C, nbytes), np.uint16).reshape(cfg.tile_rows, cfg.cols)
    np.testing.assert_array_equal(tile, fp.pe_matmul(a, b))
    ref = fp.bf16_to_f32(a).astype(np.float64) @ fp.bf16_to_f32(b).astype(np.float64)
    np.testing.assert_allclose(tile.view(ml_dtypes.bfloat16).astype(np.float64), ref,
                               rtol=2**-7, atol=1e-6)
    assert soc.dram_read(D, nbytes) == tile.tobytes()

    # the ISA simulator, one engine, the programs in dependency order (the host plays the
    # other engine's flag): the same DRAM bytes
    model = Engine.open("model", cfg, dram_bytes=DRAM, regions=default_regions(DRAM // 2,
                                                                               DRAM // 2))
    model.set_csr64("WINDOW_BASE", 0)
    model.write(AT, np.ascontiguousarray(a.T).tobytes())
    model.write(B, b.tobytes())
    model.set_csr("SYNC_SET", F_DONE)
    model.run(producer(cfg))
    model.set_csr("SYNC_CLEAR", F_DONE)
    model.run(consumer(cfg))
    assert model.read(C, nbytes) == soc.dram_read(C, nbytes)
    assert model.read(D, nbytes) == soc.dram_read(D, nbytes)
    assert model.csr("SYNC_FLAGS") == F_TILE | F_DONE
