"""MultiEngine on the model backend: opening E engines, the shared flag bus (timing, clear wins
over set, data handed over through DRAM), run_all errors, deadlock → SYNC_TIMEOUT on every
waiting engine, host timeout and soft reset, bad engine counts."""

import dataclasses
import itertools

import numpy as np
import pytest

from firmware import golden as G
from unified_engine.asm import Program
from unified_engine.host import Engine
from unified_engine.host.errors import DeviceTimeout
from unified_engine.host.multi import (
    MAX_ENGINES,
    MultiDeviceError,
    MultiEngine,
    barrier,
    check_engines,
    link,
    shared_timing,
    split,
)
from unified_engine.host.multi_model import FlagBus
from unified_engine.isa import SYNC_FLAGS, Opcode, SyncOp, isa_for
from unified_engine.regs import ErrorCode, TraceKind

DRAM = 1 << 22


def cfg(engines: int = 4):
    return dataclasses.replace(G.small_config(), engines=engines)


def multi(e: int = 2) -> MultiEngine:
    return Engine.open("model", cfg(), engines=e, dram_bytes=DRAM)


def halt(config, code: int = 0) -> Program:
    p = Program(config)
    p.halt(code)
    return p


# ----- opening ---------------------------------------------------------------------------------


def test_open_gives_a_plain_engine_for_one_and_a_multi_engine_for_more():
    assert type(Engine.open("model", cfg(), engines=1, dram_bytes=DRAM)) is Engine
    m = multi(3)
    assert isinstance(m, MultiEngine) and len(m) == 3
    assert [eng.csr("CFG_ENGINE_INDEX") for eng in m] == [0, 1, 2]
    # every engine sees the one DRAM
    m[2].write(0x100, b"\x12\x34")
    assert m[0].read(0x100, 2) == b"\x12\x34"


@pytest.mark.parametrize("bad, exc, text", [
    (0, ValueError, "allowed 1…16"), (MAX_ENGINES + 1, ValueError, "allowed 1…16"),
    (-2, ValueError, "out of range"), ("2", TypeError, "must be an int"),
    (True, TypeError, "must be an int"), (2.0, TypeError, "must be an int")])
def test_bad_engine_counts_are_rejected(bad, exc, text):
    with pytest.raises(exc, match=text):
        Engine.open("model", cfg(), engines=bad, dram_bytes=DRAM)


def test_more_engines_than_the_config_has_is_rejected():
    with pytest.raises(ValueError, match=r"config.engines=2"):
        Engine.open("model", cfg(2), engines=3, dram_bytes=DRAM)
    with pytest.raises(ValueError, match="allowed 1…3"):
        check_engines(4, available=3)


def test_unknown_multi_backend():
    with pytest.raises(ValueError, match="multi-engine backends"):
        Engine.open("xdma", cfg(), engines=2)


def test_shared_timing_divides_the_dram_bandwidth():
    c = cfg()
    one = shared_timing(c, 1)
    assert one.dram_bytes_per_cycle == c.axi_bytes
    assert shared_timing(c, 4).dram_bytes_per_cycle == c.axi_bytes / 4
    assert shared_timing(c, 4, "full").dram_bytes_per_cycle == c.axi_bytes
    with pytest.raises(ValueError, match="allowed: fair, full"):
        shared_timing(c, 2, "half")


def test_split_covers_the_range_in_aligned_shares():
    for total, parts, align in ((37, 3, 4), (3, 4, 4), (0, 2, 1), (64, 4, 8), (45, 2, 1)):
        shares = split(total, parts, align)
        assert len(shares) == parts
        assert sum(s for _, s in shares) == total
        starts = [a for a, _ in shares]
        assert starts == sorted(starts)
        for (a, s), (b, _) in itertools.pairwise(shares):
            assert a + s == b
        nonempty = [s for _, s in shares if s]
        assert all(s % align == 0 for s in nonempty[:-1])


# ----- the flag bus -----------------------------------------------------------------------------


def test_flag_bus_word_follows_the_rtl_rule():
    """flags ← (flags | sets) & ~clears per cycle; a change at cycle c is seen from c + 1."""

    class M:  # stands in for a Machine (the bus only needs its identity)
        pass

    a, b = M(), M()
    bus = FlagBus([a, b])
    bus.pulse(a, 10, SyncOp.SET, 0b0110)
    bus.pulse(b, 10, SyncOp.CLEAR, 0b0100)   # same cycle: clear wins
    bus.pulse(b, 20, SyncOp.SET, 0b1000)
    bus.pulse(a, 15, SyncOp.FENCE, 0xFF)     # FENCE changes nothing
    assert bus._word_at(10) == 0
    assert bus._word_at(11) == 0b0010
    assert bus._word_at(20) == 0b0010
    assert bus._word_at(21) == 0b1010
    assert bus.word() == 0b1010
    bus.host_write("SYNC_SET", 1 << (SYNC_FLAGS - 1))
    assert bus.word() == 0b1010 | 1 << (SYNC_FLAGS - 1)
    bus.host_write("SYNC_CLEAR", 0b10)
    assert bus.word() == 0b1000 | 1 << (SYNC_FLAGS - 1)


def test_a_set_flag_releases_a_wait_on_the_next_cycle():
    """Engine 0: LOAD; SET; TRACE 1; HALT — the SET pulses after the LOAD, at cycle s, and
    the TRACE dispatches at s + 1.  Engine 1: WAIT; TRACE 2; HALT — the flag is visible at
    s + 1, the WAIT retires at s + 2, where TRACE 2 dispatches.  (All in the first
    instruction-cache line, so no fetch stall moves a marker.)"""
    m = multi(2)
    c = m.config
    p0 = Program(c)
    p0.load(dram=0x2000, sram=0, row_bytes=512)
    p0.sync("set", mask=0b100)
    p0.trace(1)
    p0.halt()
    p1 = Program(c)
    p1.sync("wait", mask=0b100, value=0b100, timeout=100_000)
    p1.trace(2)
    p1.halt()
    r0, r1 = m.run_all([p0, p1], trace="markers")
    marker = {}
    for r in (r0, r1):
        for e in r.trace:
            if e.kind is TraceKind.MARKER:
                marker[e.payload] = e.timestamp
    assert marker[1] > 64  # the LOAD took DRAM latency
    assert marker[2] == marker[1] + 1
    assert r1.counters["dispatch_stall"] >= marker[2] - 2  # the wait is a dispatch stall
    assert m.sync_flags == 0b100


@pytest.mark.parametrize("order", [0, 1])
def test_set_and_clear_in_the_same_cycle_clear_wins(order):
    m = multi(2)
    c = m.config
    progs = []
    for op in ("set", "clear"):
        p = Program(c)
        p.sync(op, mask=0b1)
        p.halt()
        progs.append(p)
    if order:
        progs.reverse()
    m.run_all(progs, flags=0)
    assert m.sync_flags == 0
    # and a lone SET does set it (the test above is not vacuous)
    m.run_all([progs[0] if not order else progs[1], halt(c)], flags=0)
    assert m.sync_flags == 1


def test_data_handed_over_through_dram_after_a_barrier():
    """Each engine writes its own block, passes a barrier, then copies the next engine's
    block: every copy must hold the other engine's data (written before its SET)."""
    e = 3
    m = multi(e)
    c = m.config
    n = 256
    src = [0x10000 + i * 0x1000 for i in range(e)]
    dst = [0x20000 + i * 0x1000 for i in range(e)]
    data = [np.arange(n, dtype=np.uint8) * (i + 3) for i in range(e)]
    staging = [0x30000 + i * 0x1000 for i in range(e)]
    for i in range(e):
        m.write(staging[i], data[i].tobytes())
        m.write(src[i], bytes(n))
    progs = []
    for i in range(e):
        p = Program(c)
        # a slow producer: engine i writes its block (staging → src) with a delay of i NOPs
        for _ in range(40 * i):
            p.nop()
        p.load(dram=staging[i], sram=0, row_bytes=n, signal="store")
        p.store(dram=src[i], sram=0, row_bytes=n, wait="load")
        b = barrier(c, i, e, 0, timeout=1_000_000)
        b.load(dram=src[(i + 1) % e], sram=16, row_bytes=n, signal="store")
        b.store(dram=dst[i], sram=16, row_bytes=n, wait="load")
        b.halt(i)
        progs.append(link(c, p.encode() + halt(c).encode(), b))
    results = m.run_all(progs)
    assert [r.halt_code for r in results] == list(range(e))
    for i in range(e):
        assert m.read(dst[i], n) == data[(i + 1) % e].tobytes()
    # the barrier holds the fast engines until the slowest arrives
    assert min(r.cycles for r in results) > 40 * (e - 1)


# ----- errors, deadlock, recovery ---------------------------------------------------------------


def test_run_all_validates_its_arguments():
    m = multi(2)
    c = m.config
    with pytest.raises(ValueError, match="sequence of 2 programs"):
        m.run_all([halt(c)])
    with pytest.raises(ValueError, match="args must have 2 entries"):
        m.run_all([halt(c), halt(c)], args=[{}])
    with pytest.raises(ValueError, match="flags must be a 32-bit"):
        m.run_all([halt(c), halt(c)], flags=1 << 32)
    with pytest.raises(ValueError, match="trace must be"):
        m.run_all([halt(c), halt(c)], trace="some")
    with pytest.raises(IndexError, match="engines 0…1"):
        m[2]


def test_a_failing_engine_is_reported_with_its_index_code_and_pc():
    m = multi(2)
    c = m.config
    bad = Program(c)
    bad.nop()
    bad.load(dram=m.device.dram_size, sram=0, row_bytes=64)  # past DRAM
    bad.halt()
    with pytest.raises(MultiDeviceError) as err:
        m.run_all([halt(c, 7), bad])
    (f,) = err.value.failures
    assert f.index == 1 and f.pc == 1 and f.code is not ErrorCode.NONE
    assert err.value.results[0].halt_code == 7 and err.value.results[1] is None
    assert "engine 1" in str(err.value)


def test_deadlock_times_out_on_every_waiting_engine_and_soft_reset_recovers():
    e = 3
    m = multi(e)
    c = m.config
    timeout = 5_000
    progs = []
    for i in range(e - 1):
        b = barrier(c, i, e, 0, timeout=timeout)
        b.halt()
        progs.append(b)
    progs.append(halt(c, 9))  # engine 2 never arrives
    with pytest.raises(MultiDeviceError) as err:
        m.run_all(progs)
    assert err.value.engines == [0, 1]
    for f in err.value.failures:
        assert f.code is ErrorCode.SYNC_TIMEOUT
        assert f.pc == 1  # the WAIT after the SET
        assert "did not match" in f.detail
    for i in range(e - 1):
        assert m[i].csr64("CYCLES") >= timeout
    assert err.value.results[2].halt_code == 9
    assert "engine 0: SYNC_TIMEOUT at instruction 1" in str(err.value)
    m.soft_reset()
    assert m.busy == []
    # the same barrier with every engine arriving works
    progs = []
    for i in range(e):
        b = barrier(c, i, e, 0, timeout=timeout)
        b.halt(i)
        progs.append(b)
    assert [r.halt_code for r in m.run_all(progs)] == [0, 1, 2]
    assert m.sync_flags == 0b111


def test_host_timeout_soft_resets_every_engine():
    m = multi(2)
    c = m.config
    spin = Program(c)
    spin.label("top")
    spin.jump("top")
    spin.halt()
    with pytest.raises(DeviceTimeout, match=r"engines \[0, 1\]"):
        m.run_all([spin, spin], timeout=0.3)
    assert m.busy == []
    assert [r.halt_code for r in m.run_all([halt(c, 1), halt(c, 2)])] == [1, 2]


def test_a_single_engine_multi_works_and_matches_the_plain_engine():
    m = Engine.open("model", cfg(), engines=1, dram_bytes=DRAM)
    mm = MultiEngine.open("model", cfg(), engines=1, dram_bytes=DRAM)
    p = Program(m.config)
    p.load(dram=0x1000, sram=0, row_bytes=64)
    p.halt(4)
    r1 = m.run(p)
    (r2,) = mm.run_all([p])
    assert (r1.cycles, r1.instructions, r1.halt_code) == (r2.cycles, r2.instructions, 4)


def test_dram_is_shared_by_the_engines_that_use_it():
    """A LOAD-bound program alone gets the whole bandwidth; two at once each get half (the
    fair rule, checked against one engine whose timing has half the bandwidth); an engine
    without DMA does not count."""
    from unified_engine.host.engine import default_regions

    m = multi(2)
    c = m.config
    p = Program(c)
    p.load(dram=0x8000, sram=0, row_bytes=4096)
    p.halt()
    alone = m[0].run(p).cycles
    both = m.run_all([p, p])
    with_idle = m.run_all([p, halt(c)])
    half = Engine.open("model", c, dram_bytes=DRAM, timing=shared_timing(c, 2),
                       regions=default_regions(DRAM // 2))
    assert with_idle[0].cycles == alone
    assert both[0].cycles == both[1].cycles == half.run(p).cycles > alone


def test_barrier_and_link_validate_their_arguments():
    c = cfg()
    assert len(barrier(c, 1, 4, 7).instructions()) == 2
    with pytest.raises(ValueError, match=r"4 engines have 8 barriers \(0…7\)"):
        barrier(c, 0, 4, 8)
    with pytest.raises(ValueError, match="engine=2 must be in 0…1"):
        barrier(c, 2, 2)
    no_halt = Program(c)
    no_halt.nop()
    with pytest.raises(ValueError, match="part 0 must end with its only HALT"):
        link(c, no_halt, halt(c))
    absolute = Program(c)
    absolute.jump(1)  # an absolute target
    absolute.halt()
    with pytest.raises(ValueError, match="part 1 has absolute jumps at"):
        link(c, halt(c), absolute)
    other = Program(dataclasses.replace(c, engines=2))
    other.halt()
    with pytest.raises(ValueError, match="different EngineConfig"):
        link(c, other, halt(c))
    with pytest.raises(ValueError, match="non-empty program image"):
        link(c, b"", halt(c))
    # a linked image: the first HALT became a FENCE, one HALT left at the end
    image = link(c, halt(c, 1), halt(c, 2))
    first, second = (isa_for(c).decode(int.from_bytes(image[i:i + 32], "little"))
                     for i in (0, 32))
    assert len(image) == 64
    assert first.opcode is Opcode.SYNC and first["op"] is SyncOp.FENCE
    assert second.opcode is Opcode.HALT and second["code"] == 2
