"""Host runtime: open / BUILD_ID check, allocator, tensors, device CSRs, timing rules."""

import dataclasses
import itertools

import ml_dtypes
import numpy as np
import pytest

from unified_engine import EngineConfig
from unified_engine.asm import Program
from unified_engine.host import (
    Allocator,
    BuildIdMismatch,
    Device,
    Engine,
    NotAnEngine,
    OutOfDeviceMemory,
    TimingParams,
    default_regions,
)
from unified_engine.host.model import ModelDevice
from unified_engine.isa import Opcode, VecOp
from unified_engine.isa_enums import ElemFormat, MemTarget, RowMaxMode, VecBcast
from unified_engine.numerics import fp
from unified_engine.regs import build_id, reg

CFG = EngineConfig.preset("sim_small")


def test_open_model_and_discover_config():
    eng = Engine.open("model", CFG, dram_bytes=1 << 22)
    assert eng.config == CFG
    # a second Engine on the same device discovers the configuration from the descriptor
    again = Engine(eng.device)
    assert again.config == CFG
    assert eng.csr64("BUILD_ID") == build_id(CFG)
    assert eng.csr64("WINDOW_LIMIT") == 1 << 22


def test_build_id_mismatch_raises():
    with pytest.raises(BuildIdMismatch, match="does not match") as err:
        Engine.open("model", CFG, dram_bytes=1 << 22, build_id=0x1234)
    assert err.value.found == 0x1234 and err.value.expected == build_id(CFG)
    device = ModelDevice(CFG, dram_bytes=1 << 22)
    other = dataclasses.replace(CFG, lanes=2)
    with pytest.raises(BuildIdMismatch, match=r"differs in \['lanes'\]"):
        Engine(device, other)


class _NotEngine(Device):
    dram_size = 1 << 16

    def csr_read(self, offset):
        return 0xDEADBEEF

    def csr_write(self, offset, value):
        pass

    def dram_write(self, addr, data):
        pass

    def dram_read(self, addr, nbytes):
        return bytes(nbytes)

    def wait_done(self, timeout):
        return True


def test_not_an_engine_and_bad_backends():
    with pytest.raises(NotAnEngine, match="0xdeadbeef"):
        Engine(_NotEngine())
    with pytest.raises(FileNotFoundError, match="no XDMA device node"):
        Engine.open("xdma", device="/nonexistent/xdma9")
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        Engine.open("gpu")
    with pytest.raises(TypeError, match="needs a Device"):
        Engine("model")


def test_default_regions_cover_dram_without_overlap():
    regions = default_regions(1 << 22)
    spans = sorted(regions.values())
    assert spans[0][0] == 0 and sum(s for _, s in spans) == 1 << 22
    for (b0, s0), (b1, _) in itertools.pairwise(spans):
        assert b0 + s0 == b1 and b1 % 4096 == 0
    with pytest.raises(ValueError, match="too small"):
        default_regions(4096)


def test_allocator_alignment_reuse_and_out_of_memory():
    alloc = Allocator({"a": (100, 1000), "b": (2000, 256)}, alignment=64)
    x = alloc.alloc(10, "a")
    assert x.addr == 128 and x.addr % 64 == 0
    y = alloc.alloc(100, "a", alignment=256)
    assert y.addr == 256
    z = alloc.alloc(30, "a")
    assert z.addr == 192  # the gap between x and y is reused (first fit)
    with pytest.raises(OutOfDeviceMemory, match="region 'b' cannot fit 300 bytes"):
        alloc.alloc(300, "b")
    before = alloc.free_bytes("a")
    for block in (x, y, z):
        alloc.free(block)
    assert alloc.free_bytes("a") == 1000 and before < 1000
    assert alloc.alloc(1000, "a", alignment=4).addr == 100  # fully coalesced
    with pytest.raises(ValueError, match="not a live allocation"):
        alloc.free(x)
    with pytest.raises(ValueError, match="unknown region 'c'"):
        alloc.alloc(1, "c")
    with pytest.raises(ValueError, match="power of two"):
        alloc.alloc(1, "b", alignment=3)
    with pytest.raises(ValueError, match="overlap"):
        Allocator({"a": (0, 100), "b": (50, 100)})


def test_tensors_round_trip_and_bf16_rounding():
    eng = Engine.open("model", CFG, dram_bytes=1 << 22)
    x = np.array([[1.0, -2.5, 3.1415927], [1e-3, 65504.0, -0.0]], np.float32)
    t = eng.tensor(x, dtype="bf16")
    assert t.shape == (2, 3) and t.dtype == "bf16" and t.nbytes == 12
    assert t.addr % 64 == 0
    # reference rounding: ml_dtypes (RNE) for these normal values
    np.testing.assert_array_equal(t.bits(), x.astype(ml_dtypes.bfloat16).view(np.uint16))
    assert t.numpy().dtype == ml_dtypes.bfloat16
    f = eng.tensor(x)
    np.testing.assert_array_equal(f.numpy(), x)
    u = eng.tensor(np.arange(5, dtype=np.int64), dtype="int8")
    np.testing.assert_array_equal(u.numpy(), np.arange(5, dtype=np.int8))
    with pytest.raises(TypeError, match="float64 data is ambiguous"):
        eng.tensor(np.ones(3))
    with pytest.raises(TypeError, match="without loss"):
        eng.tensor(np.array([300]), dtype="uint8")
    with pytest.raises(ValueError, match="unknown device dtype"):
        eng.tensor(x, dtype="fp16")
    t.write(np.zeros((2, 3), np.float32))
    assert not t.bits().any()
    with pytest.raises(ValueError, match="does not match"):
        t.write(np.zeros((3, 2), np.float32))
    e = eng.empty((4, 4), "fp32")
    assert e.nbytes == 64
    free_before = eng.allocator.free_bytes("activations")
    e.free()
    assert eng.allocator.free_bytes("activations") > free_before


def test_torch_interop():
    torch = pytest.importorskip("torch")
    eng = Engine.open("model", CFG, dram_bytes=1 << 22)
    x = torch.tensor([1.5, -2.0, 3.0], dtype=torch.bfloat16)
    t = eng.tensor(x)
    assert t.dtype == "bf16"
    assert torch.equal(t.torch(), x)


def test_gpr_access_and_program_cache():
    eng = Engine.open("model", CFG, dram_bytes=1 << 22)
    eng.set_gpr(3, -1)
    assert eng.gpr(3) == 0xFFFFFFFF
    with pytest.raises(ValueError, match="allowed 1…15"):
        eng.set_gpr(0, 1)
    p = Program(CFG)
    p.halt()
    a = eng.load_program(p)
    assert eng.load_program(p.encode()) == a  # same image, same place
    with pytest.raises(ValueError, match="different EngineConfig"):
        eng.load_program(Program(EngineConfig()))
    with pytest.raises(ValueError, match="multiple of 32"):
        eng.load_program(b"\x01" * 31)


def test_model_device_csr_rules():
    dev = ModelDevice(CFG, dram_bytes=1 << 16)
    with pytest.raises(ValueError, match="no CSR at offset 0x2"):
        dev.csr_read(2)
    with pytest.raises(ValueError, match="32-bit"):
        dev.csr_write(reg("SYNC_FLAGS").offset, 1 << 32)
    dev.csr_write(reg("ID").offset, 0)  # read-only: ignored
    assert dev.csr_read(reg("ID").offset) == 0x55454E47
    with pytest.raises(ValueError, match="past the end of device DRAM"):
        dev.dram_read((1 << 16) - 4, 8)
    with pytest.raises(ValueError, match="dram_bytes"):
        ModelDevice(CFG, dram_bytes=100)


def test_program_addr_can_be_polled_through_status():
    """A host that only polls STATUS (like a hardware driver) sees the run finish."""
    eng = Engine.open("model", CFG, dram_bytes=1 << 22)
    p = Program(CFG)
    with p.loop(2000):
        p.nop()
    p.halt(1)
    eng.set_csr64("PROGRAM_ADDR", eng.load_program(p))
    eng.set_csr("CONTROL", reg("CONTROL").pack(START=1))
    for _ in range(10_000):
        if not eng.busy:
            break
    assert not eng.busy and eng.csr("HALT_CODE") == 1


def test_timing_rules():
    tm = TimingParams.for_config(CFG)
    assert tm.dram_bytes_per_cycle == CFG.axi_bytes
    b = CFG.axi_bytes

    def dma(dram, rows, row_bytes, stride, sram=0, sram_stride=0):
        return tm.dma(CFG, {"dram": dram, "rows": rows, "row_bytes": row_bytes,
                            "dram_stride": stride, "sram": sram, "sram_stride": sram_stride,
                            "mem": MemTarget.SCRATCHPAD})

    base = tm.dram_latency + tm.load_overhead
    # 3 rows of 20 bytes at a beat-aligned stride of 3 beats: 3 beats per row
    assert dma(0, 3, 20, 3 * b, sram_stride=3 * b) == base + 9
    # misaligned start: bytes 4..23 touch 3 beats, plus the realigner's flush cycle
    assert dma(4, 1, 20, 20) == base + 3 + 1
    # packed rows are merged into one transfer
    assert dma(0, 4, 20, 20) == base + -(-80 // b)
    half = dataclasses.replace(tm, dram_bytes_per_cycle=b / 2)
    assert half.dma(CFG, {"dram": 0, "rows": 1, "row_bytes": 8 * b, "dram_stride": 8 * b,
                          "sram": 0, "sram_stride": 0, "mem": MemTarget.SCRATCHPAD}) == \
        base + 16

    def mm(m, n, k, **kw):
        f = {"m_tiles": m, "n_tiles": n, "k": k, "wb": 1, "acc_in": 0,
             "rowmax": RowMaxMode.NONE, **kw}
        return tm.matmul(CFG, f)

    drain = CFG.cols + CFG.tile_rows
    p, r = CFG.pe_interleave, CFG.rows
    assert mm(2, 3, 10) == 6 * p * max(10, r) + drain + tm.matmul_overhead
    assert mm(1, 1, 1) == p * r + drain + tm.matmul_overhead  # k below R: R k-steps
    assert mm(1, 1, 10, wb=0) == p * 10 + drain + tm.matmul_nowb_overhead
    assert mm(1, 2, 10, acc_in=1) == mm(1, 2, 10) + 2 * (r * p + r + p + 1)
    vec = {"op": VecOp.COPY, "rows": 3, "length": 10, "src0_fmt": ElemFormat.BF16,
           "src1_fmt": ElemFormat.BF16, "dst_fmt": ElemFormat.BF16, "bcast": VecBcast.TENSOR}
    beats = -(-10 // CFG.lanes)
    # the VectorUnit's documented latency: 4 (binary op) + 16 (functions) + the lane adder
    # tree (6 for 4 lanes, 8 for 8 or 16) + 4 (accumulator)
    tree = {2: 6, 4: 6, 8: 8, 16: 8}[CFG.lanes]
    assert tm.vector_unit_latency(CFG) == 24 + tree
    fixed = tm.vector_latency + 24 + tree
    # a bf16 beat reads L·2/B scratchpad rows (≥ 1 per beat); TENSOR src1 reads as many again
    reads = max(1.0, CFG.lanes * 2 / b)
    assert tm.vector(CFG, vec) == fixed + 3 * -(-beats * reads // 1)
    assert tm.vector(CFG, {**vec, "op": VecOp.ADD}) == fixed + 3 * -(-beats * 2 * reads // 1)
    assert tm.vector(CFG, {**vec, "rows": 0}) == 1
    # the checker: one step per rule, a single step for an instruction that does nothing
    assert tm.check_cycles(Opcode.VECTOR, vec) == tm.check_steps_vector + tm.check_overhead
    assert tm.check_cycles(Opcode.VECTOR, {**vec, "length": 0}) == 1 + tm.check_overhead
    assert tm.check_cycles(Opcode.LOAD, {"rows": 2, "row_bytes": 0}) == 1 + tm.check_overhead
    with pytest.raises(ValueError, match="dram_bytes_per_cycle"):
        TimingParams(dram_bytes_per_cycle=0)


def test_matmul_cycles_follow_the_timing_model():
    eng = Engine.open("model", CFG, dram_bytes=1 << 22)
    tm = eng.device.machine.timing
    p = Program(CFG)
    p.matmul(a=0, b=100, dst=200, k=50, m_tiles=2, n_tiles=2)
    p.halt()
    result = eng.run(p)
    f = {"m_tiles": 2, "n_tiles": 2, "k": 50, "wb": 1, "acc_in": 0, "rowmax": RowMaxMode.NONE}
    cost = tm.matmul(CFG, f)
    assert result.counters["array_busy"] == cost
    # cycles = icache miss, the checker, the command issue, the matmul, the unit's idle
    # handshake, then HALT's cycle
    assert result.cycles == tm.fetch_miss() + tm.check_cycles(Opcode.MATMUL) + \
        tm.issue_latency + cost + tm.unit_gap + 1
    macs = 2 * CFG.tile_rows * 2 * CFG.cols * 50
    assert 0 < result.utilization(macs, CFG) <= 1


def test_bf16_values_survive_a_dma_round_trip_exactly():
    eng = Engine.open("model", CFG, dram_bytes=1 << 22)
    special = np.array([0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC1, 0x0001, 0x3F80, 0xC000],
                       np.uint16)
    src = eng.tensor(special)
    dst = eng.empty((8,), "uint16")
    p = Program(CFG)
    p.load(dram=src.addr, sram=0, row_bytes=16, signal="store")
    p.store(dram=dst.addr, sram=0, row_bytes=16, wait="load")
    p.halt()
    eng.run(p)
    np.testing.assert_array_equal(dst.numpy(), special)  # DMA never touches the bits
    assert fp.bf16_to_f32(special).dtype == np.float32
