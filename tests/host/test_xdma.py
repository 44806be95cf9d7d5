"""The ``"xdma"`` backend against stand-ins of the driver's device nodes.

``ModelCard`` plays a card: its DMA nodes are real files (one sparse file is the device DRAM;
``_h2c_0`` and ``_c2h_0`` point at it, so the transport's ``os.pread``/``os.pwrite`` code runs
as on hardware) and its user node answers the SoC register block and, per engine, the model
backend's CSRs over that same DRAM.  A run through ``Engine.open("xdma")`` must therefore give
the model backend's results bit for bit.  The real-board test runs only with ``/dev/xdma*``.
"""

import dataclasses
import glob
import os
import struct

import numpy as np
import pytest

from unified_engine import EngineConfig
from unified_engine.host import Engine
from unified_engine.host.errors import DeviceBusy, DeviceTimeout, NotAnEngine
from unified_engine.host.model import ModelDevice
from unified_engine.host.xdma import FileNode, XdmaDevice, XdmaError
from unified_engine.regs import build_id, reg, reset_values
from unified_engine.rtl.soc import engine_csr_base, soc_reg, soc_register_values

CFG = dataclasses.replace(EngineConfig.preset("sim_small"), engines=2, address_registers=16)
DRAM = 1 << 22


class UserNode:
    """The AXI-Lite BAR: SoC block 0, engine i's CSRs (a ModelDevice) at block i + 1."""

    def __init__(self, values, models):
        self.values, self.models = values, models
        self.accesses = 0

    def pread(self, n, offset):
        assert n == 4 and offset % 4 == 0, "register reads are aligned 32-bit"
        self.accesses += 1
        block, low = divmod(offset, 0x1000)
        if block == 0:
            by_offset = {soc_reg(k).offset: v for k, v in self.values.items()}
            return struct.pack("<I", by_offset.get(low, 0))
        return struct.pack("<I", self.models[block - 1].csr_read(low))

    def pwrite(self, data, offset):
        assert len(data) == 4 and offset % 4 == 0, "register writes are aligned 32-bit"
        block, low = divmod(offset, 0x1000)
        if block:
            self.models[block - 1].csr_write(low, int.from_bytes(bytes(data), "little"))
        return 4

    def close(self):
        pass


class ModelCard:
    """A card in ``folder``: nodes ``xdma0_user`` (model), ``xdma0_h2c_0``/``_c2h_0`` (files)."""

    def __init__(self, folder, config=CFG, dram=DRAM):
        self.prefix = str(folder / "xdma0")
        path = folder / "xdma0_dram"
        with open(path, "wb") as f:
            f.truncate(dram)
        os.symlink(path, f"{self.prefix}_h2c_0")
        os.symlink(path, f"{self.prefix}_c2h_0")
        self.dram = np.memmap(path, np.uint8, mode="r+")
        self.models = []
        for i in range(config.engines):
            model = ModelDevice(config, engine_index=i, dram_bytes=4096)
            model._dram = model.machine.dram = self.dram  # the card's one DRAM
            self.models.append(model)
        self.user = UserNode(soc_register_values(config, dram_size=dram), self.models)
        self.opened = []

    def nodes(self, path, kind):
        self.opened.append((os.path.basename(path), kind))
        return self.user if kind == "user" else FileNode(path)


@pytest.fixture
def card(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIFIED_ENGINE_LOCK_DIR", str(tmp_path))
    return ModelCard(tmp_path)


def open_engine(card, **kw):
    return Engine.open("xdma", CFG, device=card.prefix, node_factory=card.nodes, **kw)


def test_open_checks_identity_and_learns_the_card(card):
    with open_engine(card, engine=1) as eng:
        assert eng.config == CFG
        assert eng.csr64("BUILD_ID") == build_id(CFG)
        assert eng.csr("CFG_ENGINE_INDEX") == 1
        assert eng.device.base == engine_csr_base(1)
        assert eng.device.dram_size == DRAM and eng.device.engines == 2
        assert eng.device.soc_read("ENGINES") == 2
    assert ("xdma0_h2c_0", "h2c") in card.opened and ("xdma0_c2h_0", "c2h") in card.opened


def test_run_matches_the_model_backend_bit_for_bit(card):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((9, 40)).astype(np.float32)
    b = rng.standard_normal((40, 6)).astype(np.float32)
    with open_engine(card, engine=0, chunk=4096) as eng:
        got = eng.matmul(a, b)
    ref = Engine.open("model", dataclasses.replace(CFG), dram_bytes=DRAM).matmul(a, b)
    assert got.dtype == ref.dtype and np.array_equal(got.view(np.uint16), ref.view(np.uint16))


def test_dma_is_chunked_and_lands_in_device_dram(card):
    with open_engine(card, chunk=4096) as eng:
        data = np.random.default_rng(1).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
        eng.write(0x3003, data)  # unaligned, three chunks
        assert card.dram[0x3003:0x3003 + len(data)].tobytes() == data
        assert eng.read(0x3003, len(data)) == data
        with pytest.raises(ValueError, match="past the end of device DRAM"):
            eng.read(DRAM - 8, 16)


def test_second_process_on_the_same_engine_is_refused(card):
    first = open_engine(card, engine=0)
    try:
        with pytest.raises(DeviceBusy, match=f"in use by process {os.getpid()}"):
            open_engine(card, engine=0)
        other = open_engine(card, engine=1)  # another engine of the card is free
        other.close()
    finally:
        first.close()
    open_engine(card, engine=0).close()  # released on close


def test_bad_arguments_and_a_card_without_the_soc(card, tmp_path):
    with pytest.raises(ValueError, match="engine=2 is out of range"):
        XdmaDevice(CFG, device=card.prefix, engine=2, node_factory=card.nodes)
    with XdmaDevice(CFG, device=card.prefix, node_factory=card.nodes) as dev, \
            pytest.raises(ValueError, match="CSR offset"):
        dev.csr_read(0x1000)
    with pytest.raises(ValueError, match="csr='ioctl'"):
        XdmaDevice(device=card.prefix, csr="ioctl")
    blank = tmp_path / "blank_user"
    blank.write_bytes(bytes(1 << 20))
    with pytest.raises(NotAnEngine, match="SOC_ID reads 0x00000000"):
        XdmaDevice(device=str(tmp_path / "blank"), node_factory=lambda p, k: FileNode(p))
    with pytest.raises(FileNotFoundError, match="no XDMA device node"):
        XdmaDevice(device=str(tmp_path / "missing"))


def _register_image(config, dram):
    """A 1 MiB user BAR image with the SoC block and engine 0's constant registers."""
    image = bytearray(1 << 20)
    for name, value in soc_register_values(config, dram_size=dram).items():
        struct.pack_into("<I", image, soc_reg(name).offset, value)
    for name, value in reset_values(config, 0).items():
        struct.pack_into("<I", image, engine_csr_base(0) + reg(name).offset, value)
    return bytes(image)


@pytest.mark.parametrize("csr", ["pread", "mmap"])
def test_real_file_nodes_for_registers(tmp_path, monkeypatch, csr):
    """Registers through plain files (pread or mmap): the node code paths the driver sees."""
    monkeypatch.setenv("UNIFIED_ENGINE_LOCK_DIR", str(tmp_path))
    prefix = tmp_path / "xdma1"
    (tmp_path / "xdma1_user").write_bytes(_register_image(CFG, 1 << 20))
    for kind in ("h2c_0", "c2h_0"):
        with open(f"{prefix}_{kind}", "wb") as f:
            f.truncate(1 << 20)
    with Engine.open("xdma", CFG, device=str(prefix), csr=csr) as eng:
        assert eng.config == CFG and eng.device.engines == 2
        eng.set_csr("GPR_INDEX", 7)  # a plain file keeps what is written
        assert eng.csr("GPR_INDEX") == 7
        # Engine.open programmed the window over the DRAM the SoC block reports, at the
        # engine's block in the BAR
        assert eng.csr64("WINDOW_LIMIT") == 1 << 20
    image = (tmp_path / "xdma1_user").read_bytes()
    where = engine_csr_base(0) + reg("WINDOW_LIMIT_LO").offset
    assert struct.unpack_from("<I", image, where)[0] == 1 << 20


class _SlowNode(FileNode):
    def pwrite(self, data, offset):
        raise OSError(110, "Connection timed out")  # what the driver returns (ETIMEDOUT)


def test_dma_timeouts_and_failures_are_reported(card):
    def nodes(path, kind):
        return _SlowNode(path) if kind == "h2c" else card.nodes(path, kind)

    with XdmaDevice(CFG, device=card.prefix, node_factory=nodes) as dev, \
            pytest.raises(DeviceTimeout, match="timed out in the driver"):
        dev.dram_write(0, b"x" * 64)
    with XdmaDevice(CFG, device=card.prefix, node_factory=card.nodes) as dev:
        dev.close()
        with pytest.raises(XdmaError, match="is closed"):
            dev.dram_read(0, 4)


@pytest.mark.hw
@pytest.mark.skipif(not glob.glob("/dev/xdma*_user"), reason="needs a card with the XDMA "
                    "driver (/dev/xdma*_user)")
def test_real_board_identifies_and_moves_data():
    prefix = sorted(glob.glob("/dev/xdma*_user"))[0][:-len("_user")]
    with Engine.open("xdma", device=prefix) as eng:
        data = np.random.default_rng(2).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
        block = eng.alloc(len(data))
        eng.write(block.addr, data)
        assert eng.read(block.addr, len(data)) == data
