# amaranth: UnusedElaboratable=no
"""LoadUnit / StoreUnit RTL vs the ISA simulator's ``host.units.dma``, memory for memory.

Each test runs a sequence of resolved LOAD or STORE instructions through the unit, with the
DRAM behind ``AxiSlaveModel`` (latency, random stalls, window and burst-rule checks) and the
three on-chip memories behind ``SramModel`` (random stalls, read latency), and after every
command compares DRAM, scratchpad, bias and scale memory with a ``host.isasim.Machine`` that
ran ``host.units.dma`` on identical initial memories.  Descriptors are random: odd addresses,
strides below / equal / above ``row_bytes`` (overlapping rows), 1-byte rows, rows across 4 KB
boundaries, packed (merged) transfers, all three memories.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator
from memmodels import AxiSlaveModel, SramModel

from unified_engine.config import EngineConfig
from unified_engine.host.isasim import Machine
from unified_engine.host.units import Stop, dma
from unified_engine.isa import MemTarget, Opcode, isa_for
from unified_engine.regs import ErrorCode
from unified_engine.rtl.dma import MEMORIES, LoadUnit, StoreUnit
from unified_engine.rtl.engine_if import memory_geometry

SMALL = EngineConfig.preset("sim_small")
DEFAULT = EngineConfig()
MEM_NAMES = {target: name for name, target in MEMORIES}


@dataclasses.dataclass
class Cmd:
    """A resolved DMA instruction (what the dispatcher hands the unit)."""

    mem: MemTarget
    dram: int
    sram: int
    rows: int
    row_bytes: int
    dram_stride: int
    sram_stride: int

    def fields(self) -> dict:
        return dataclasses.asdict(self)

    def word(self, config: EngineConfig, store: bool) -> int:
        isa = isa_for(config)
        ins = isa.make(Opcode.STORE if store else Opcode.LOAD, **{
            "mem": self.mem, "dram.imm": self.dram, "sram.imm": self.sram, "rows": self.rows,
            "row_bytes": self.row_bytes, "dram_stride": self.dram_stride,
            "sram_stride": self.sram_stride})
        return isa.encode(ins)


@dataclasses.dataclass
class Result:
    cycles: list[int]  # command accepted → done, per command
    error: list[bool]  # ``error`` after each done
    error_later: list[bool]  # ``error`` just before the next command (or the end)
    axi: AxiSlaveModel
    r_refused: int = 0  # cycles with R valid and not ready (LOAD never back-pressures R)


def run_unit(config: EngineConfig, store: bool, cmds: list[Cmd], dram: np.ndarray,
             mems: dict[str, np.ndarray], window: tuple[int, int], *, latency: int = 4,
             axi_stall: float = 0.0, sram_stall: float = 0.0, sram_latency: int = 1,
             seed: int = 0, check=None, gap: int = 0, **unit_args) -> Result:
    """Run ``cmds`` one after the other on a fresh unit; the memories are modified in place.

    ``check(index)`` (optional) is called after each command's ``done``; ``gap`` idle cycles
    separate the commands.
    """
    dut = (StoreUnit if store else LoadUnit)(config, **unit_args)
    axi = AxiSlaveModel(dut.axi, dram, latency=latency, stall=axi_stall, window=window,
                        seed=seed)
    srams = [SramModel(getattr(dut, name), mems[name], config.axi_bytes, stall=sram_stall,
                       latency=sram_latency, jitter=1 if sram_stall else 0, seed=seed + k + 1)
             for k, (name, _) in enumerate(MEMORIES)]
    result = Result([], [], [], axi)
    words = [c.word(config, store) for c in cmds]

    async def bench(ctx):
        ctx.set(dut.window_base, window[0])
        ctx.set(dut.window_limit, window[1])
        cmd = dut.unit.cmd
        for index, word in enumerate(words):
            ctx.set(cmd.payload, word)
            ctx.set(cmd.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(cmd.ready)
                if ready:
                    break
            ctx.set(cmd.valid, 0)
            cycles = 0
            while True:
                cycles += 1
                _, _, done, ready = await ctx.tick().sample(dut.unit.done, cmd.ready)
                assert not ready, f"command {index}: cmd.ready while busy"
                if done:
                    break
                assert cycles < 20000, f"command {index} never finished"
            result.cycles.append(cycles)
            result.error.append(bool(ctx.get(dut.error)))
            if check is not None:
                check(index)
            for _ in range(gap):
                assert not ctx.get(dut.unit.done), "done pulsed while idle"
                await ctx.tick()
            result.error_later.append(bool(ctx.get(dut.error)))
        await ctx.tick().repeat(2)

    async def watch_r(ctx):
        r = dut.axi.r
        async for _, _, valid, ready in ctx.tick().sample(r.valid, r.ready):
            result.r_refused += bool(valid and not ready)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_process(watch_r)
    sim.add_process(axi.process)
    for model in srams:
        sim.add_process(model.process)
    sim.run()
    return result


def reference(config: EngineConfig, dram: np.ndarray, mems: dict[str, np.ndarray],
              window: tuple[int, int]) -> Machine:
    machine = Machine(config, dram.copy())
    machine.window = window
    for name in ("spad", "bias", "scale"):
        getattr(machine, name)[:] = mems[name]
    return machine


def check_against_model(config: EngineConfig, store: bool, cmds: list[Cmd], *,
                        dram_bytes: int = 1 << 16, window: tuple[int, int] | None = None,
                        seed: int = 0, **run_args) -> Result:
    """Run ``cmds`` on the RTL and on the ISA simulator; compare every memory after each."""
    rng = np.random.default_rng(seed)
    dram = rng.integers(0, 256, dram_bytes, dtype=np.uint8)
    geometry = memory_geometry(config)
    mems = {name: rng.integers(0, 256, geometry[name].nbytes, dtype=np.uint8)
            for name, _ in MEMORIES}
    window = window or (0, dram_bytes)
    machine = reference(config, dram, mems, window)
    expected_error: list[bool] = []

    def check(index: int) -> None:
        try:
            dma(machine, cmds[index].fields(), store)
            expected_error.append(False)
        except Stop as stop:
            assert stop.code == ErrorCode.DMA_OUT_OF_WINDOW, stop.detail
            expected_error.append(True)
        for name in ("spad", "bias", "scale"):
            _assert_same(mems[name], getattr(machine, name), name, index, cmds[index])
        _assert_same(dram, machine.dram, "dram", index, cmds[index])

    result = run_unit(config, store, cmds, dram, mems, window, seed=seed, check=check,
                      **run_args)
    assert len(result.cycles) == len(cmds)
    assert result.error == expected_error
    return result


def _assert_same(got: np.ndarray, want: np.ndarray, name: str, index: int, cmd: Cmd) -> None:
    bad = np.flatnonzero(got != want)
    if len(bad):
        raise AssertionError(
            f"command {index} {cmd}: {name} differs at {len(bad)} byte(s), first "
            f"{[hex(int(b)) for b in bad[:8]]}: got {got[bad[:8]]}, want {want[bad[:8]]}")


# ------------------------------------------------------------------------------ descriptors


def random_cmd(rng: np.random.Generator, config: EngineConfig, window: tuple[int, int],
               mem: MemTarget | None = None, big: bool = False) -> Cmd:
    """A random valid descriptor inside ``window`` and the on-chip memory."""
    beat = config.axi_bytes
    geometry = memory_geometry(config)
    if mem is None:
        mem = [MemTarget.SCRATCHPAD, MemTarget.BIAS, MemTarget.SCALE][rng.integers(0, 3)]
    size = geometry[MEM_NAMES[mem]].nbytes
    unit = beat if mem == MemTarget.SCRATCHPAD else 2
    kind = rng.integers(0, 4)
    if kind == 0:  # tiny rows (bias entries, single bytes)
        row_bytes = int(rng.integers(1, 5))
    elif kind == 1:  # around a beat
        row_bytes = int(rng.integers(beat - 2, beat + 3))
    else:
        row_bytes = int(rng.integers(1, (8 if big else 3) * beat + 1))
    rows = int(rng.integers(1, 9 if not big else 17))
    if rng.random() < 0.15:
        rows = 1

    def stride(lowest: int) -> int:
        choice = rng.integers(0, 4)
        if choice == 0:
            return row_bytes
        if choice == 1:  # overlapping rows (later rows win)
            return int(rng.integers(lowest, row_bytes + 1))
        return row_bytes + int(rng.integers(1, 3 * beat))

    sram_stride = 0 if rng.random() < 0.3 else stride(1)  # 0 would mean row_bytes
    dram_stride = stride(0)  # 0: every row at the same DRAM bytes
    if rng.random() < 0.25:  # packed: the unit merges the rows into one run
        sram_stride, dram_stride = rng.choice([0, row_bytes]), row_bytes
    ss = sram_stride or row_bytes
    extent = (rows - 1) * ss + row_bytes
    while extent > size:
        rows = max(1, rows // 2)
        extent = (rows - 1) * ss + row_bytes
    first_byte = int(rng.integers(0, size - extent + 1))
    sram = first_byte // unit
    dram_extent = (rows - 1) * dram_stride + row_bytes
    lo, hi = window
    assert hi - lo >= dram_extent
    if rng.random() < 0.4:  # start just before a 4 KB boundary
        boundaries = list(range((lo // 4096 + 1) * 4096, hi, 4096))
        start = boundaries[rng.integers(0, len(boundaries))] - int(rng.integers(1, 2 * beat))
        dram = min(max(start, lo), hi - dram_extent)
    else:
        dram = int(rng.integers(lo, hi - dram_extent + 1))
    return Cmd(mem, dram, int(sram), rows, row_bytes, int(dram_stride), int(sram_stride))


# ------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("store", [False, True], ids=["load", "store"])
def test_small_examples(store):
    """Hand-picked shapes: aligned, odd offsets both ways, 1-byte rows, packed, overlaps."""
    b = SMALL.axi_bytes
    cmds = [
        Cmd(MemTarget.SCRATCHPAD, 0x1000, 3, 1, 4 * b, 4 * b, 0),
        Cmd(MemTarget.SCRATCHPAD, 0x1003, 5, 3, 13, 40, 21),
        Cmd(MemTarget.SCRATCHPAD, 0x2005, 7, 4, 2 * b + 3, 100, 0),
        Cmd(MemTarget.BIAS, 0x0FFD, 3, 5, 1, 7, 3),
        Cmd(MemTarget.SCALE, 0x0FF1, 11, 6, 5, 5, 0),
        Cmd(MemTarget.SCRATCHPAD, 0x3002, 9, 5, 12, 5, 7),
        Cmd(MemTarget.BIAS, 0x4001, 0, 3, 6, 0, 6),
        Cmd(MemTarget.SCRATCHPAD, 0x5000, 0, 0, 8, 8, 0),
        Cmd(MemTarget.SCRATCHPAD, 0x5000, 0, 3, 0, 8, 0),
    ]
    check_against_model(SMALL, store, cmds)


@pytest.mark.parametrize("store", [False, True], ids=["load", "store"])
def test_random_small(store):
    """Random descriptors on sim_small (64-bit AXI) with AXI and on-chip stalls."""
    rng = np.random.default_rng(11 + store)
    window = (0x0800, 0x7C00)
    cmds = [random_cmd(rng, SMALL, window) for _ in range(40)]
    result = check_against_model(SMALL, store, cmds, dram_bytes=1 << 15, window=window,
                                 seed=3 + store, latency=5, axi_stall=0.2, sram_stall=0.2,
                                 sram_latency=2)
    assert result.r_refused == 0
    assert not any(result.error)


@pytest.mark.parametrize("store", [False, True], ids=["load", "store"])
def test_random_small_bursts(store):
    """Short bursts (max_burst = 4): chunk cuts inside rows, many bursts per row."""
    rng = np.random.default_rng(21 + store)
    window = (0, 1 << 14)
    cmds = [random_cmd(rng, SMALL, window, big=True) for _ in range(10)]
    check_against_model(SMALL, store, cmds, dram_bytes=1 << 14, seed=5, latency=9,
                        axi_stall=0.1, max_burst=4, **({} if store else {"read_buffer": 8}))


@pytest.mark.parametrize("store", [False, True], ids=["load", "store"])
def test_random_default(store):
    """A few random descriptors on the default engine (256-bit AXI, 4 KB = 128 beats), with
    max_burst = 256 so that the 4 KB boundary is what cuts the bursts."""
    rng = np.random.default_rng(31 + store)
    window = (0x1000, 0x7000)
    cmds = [random_cmd(rng, DEFAULT, window, big=True) for _ in range(8)]
    cmds.append(Cmd(MemTarget.SCRATCHPAD, 0x1FE5, 4, 1, 5000, 5000, 0))  # crosses 4 KB
    result = check_against_model(DEFAULT, store, cmds, dram_bytes=1 << 15, window=window,
                                 seed=7, latency=6, axi_stall=0.1, sram_stall=0.1,
                                 max_burst=256)
    bursts = result.axi.write_bursts if store else result.axi.read_bursts
    assert max(beats for _, beats in bursts) == 128


@pytest.mark.parametrize("store", [False, True], ids=["load", "store"])
def test_window_refusal(store):
    """Out-of-window commands: no AXI access, error until the next command, done pulses."""
    b = SMALL.axi_bytes
    window = (0x1001, 0x3000)
    cmds = [
        Cmd(MemTarget.SCRATCHPAD, 0x1000, 0, 1, 8, 8, 0),  # starts one byte before
        Cmd(MemTarget.SCRATCHPAD, 0x1001, 0, 1, 8, 8, 0),  # inside (clears the error)
        Cmd(MemTarget.BIAS, 0x2FF0, 0, 2, 8, 9, 0),  # ends one byte after
        Cmd(MemTarget.SCALE, 0x2FF0, 0, 2, 8, 8, 0),  # ends exactly at the limit
        # (rows − 1)·stride wraps 32-bit addresses back into the window: still refused
        Cmd(MemTarget.SCRATCHPAD, 0x1100, 0, 3, 4 * b, 0x8000_0000, 0),
        Cmd(MemTarget.SCRATCHPAD, 0x1100, 0, 0, 4 * b, 0x8000_0000, 0),  # empty: no check
        Cmd(MemTarget.SCRATCHPAD, 0xFFFF_FFF0, 0, 1, 32, 32, 0),  # past the address space
    ]
    result = check_against_model(SMALL, store, cmds, dram_bytes=0x4000, window=window,
                                 gap=3)
    assert result.error == [True, False, True, False, True, False, True]
    assert result.error_later == result.error
    bursts = result.axi.write_bursts if store else result.axi.read_bursts
    assert bursts == [(0x1000, 2), (0x2FF0 & ~7, 2)]
    refused = [c for c, e in zip(result.cycles, result.error, strict=True) if e]
    assert max(refused) <= 4  # a refusal costs no AXI round trip


def test_parameters():
    with pytest.raises(ValueError, match="max_burst"):
        LoadUnit(SMALL, max_burst=48)
    with pytest.raises(ValueError, match="max_burst"):
        StoreUnit(SMALL, max_burst=512)
    with pytest.raises(ValueError, match="read_buffer"):
        LoadUnit(SMALL, max_burst=64, read_buffer=32)
    with pytest.raises(ValueError, match="sram_buffer"):
        StoreUnit(SMALL, sram_buffer=0)
    with pytest.raises(TypeError):
        LoadUnit("sim_small")


# ------------------------------------------------------------------------------ throughput


def _throughput(config: EngineConfig, store: bool, cmd: Cmd, **run_args) -> tuple[int, int]:
    """(beats moved, cycles from acceptance to done) of one command."""
    beats = -(-cmd.rows * cmd.row_bytes // config.axi_bytes)
    result = check_against_model(config, store, [cmd], dram_bytes=1 << 15, **run_args)
    return beats, result.cycles[0]


@pytest.mark.parametrize("config", [SMALL, DEFAULT], ids=["sim_small", "default"])
@pytest.mark.parametrize("store", [False, True], ids=["load", "store"])
def test_throughput_contiguous(store, config):
    """4 KB contiguous (512 beats on sim_small, 128 on the default engine), no stalls, DRAM
    latency 8: the whole command, window check and latency included, streams one beat per
    cycle after a fixed cost of at most 10 cycles + the latency (≥ 0.85 beat/cycle)."""
    cmd = Cmd(MemTarget.SCRATCHPAD, 0x1000, 0, 1, 4096, 4096, 0)
    beats, cycles = _throughput(config, store, cmd, latency=8)
    assert cycles <= beats + 8 + 10, cycles
    assert beats / cycles >= 0.85, f"{beats / cycles:.3f} beat/cycle"


@pytest.mark.parametrize("store", [False, True], ids=["load", "store"])
def test_throughput_strided(store):
    """32 rows of 4 beats, DRAM pitch 100 bytes (misaligned rows), packed on chip: one beat
    per cycle per row plus the realignment cost (≤ 1 extra beat per row)."""
    cmd = Cmd(MemTarget.SCRATCHPAD, 0x1003, 0, 32, 32, 100, 0)
    beats, cycles = _throughput(SMALL, store, cmd, latency=8)
    assert beats / cycles >= 0.7, f"{beats / cycles:.3f} beat/cycle"


@pytest.mark.parametrize("store", [False, True], ids=["load", "store"])
def test_throughput_tiny_rows(store):
    """64 rows of 2 bytes (bias entries), DRAM pitch 64, packed on chip: rows pipeline, about
    one cycle per row (one one-beat burst each), no per-row round trip."""
    cmd = Cmd(MemTarget.BIAS, 0x1001, 0, 64, 2, 64, 0)
    _, cycles = _throughput(SMALL, store, cmd, latency=8)
    assert cycles <= 64 + 8 + 20, cycles


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("store", [False, True], ids=["load", "store"])
def test_random_sweep(store, seed):
    """More random descriptors, stall and latency settings per seed, both configurations."""
    rng = np.random.default_rng(100 + seed)
    stalls = [(0.0, 0.0, 1), (0.3, 0.0, 1), (0.0, 0.4, 3), (0.3, 0.3, 2)][seed]
    for config, count in ((SMALL, 60), (DEFAULT, 15)):
        window = (int(rng.integers(0, 64)), (1 << 15) - int(rng.integers(0, 64)))
        cmds = [random_cmd(rng, config, window, big=bool(rng.random() < 0.3))
                for _ in range(count)]
        extra = {"max_burst": int(2 ** rng.integers(0, 9))}
        if not store:
            extra["read_buffer"] = max(extra["max_burst"], int(rng.integers(1, 300)))
        result = check_against_model(config, store, cmds, dram_bytes=1 << 15, window=window,
                                     seed=seed, latency=int(rng.integers(1, 12)),
                                     axi_stall=stalls[0], sram_stall=stalls[1],
                                     sram_latency=stalls[2], **extra)
        assert result.r_refused == 0
