# amaranth: UnusedElaboratable=no
"""``unified_engine.formal.prove``: argument checks and the verdict of a tiny design.

The DMA proofs exercise PASS, FAIL (with the failing assertion's message and step) and
cover runs; this file checks the runner's own contract on a design small enough to take a
couple of seconds.
"""

from __future__ import annotations

import pytest
from amaranth.hdl import Assert, Cover, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from unified_engine.formal import prove


class Counter(wiring.Component):
    """Counts ``inc`` pulses up to ``stop``; asserts it never passes ``bound``."""

    def __init__(self, stop: int, bound: int) -> None:
        self.stop, self.bound = stop, bound
        super().__init__({"inc": In(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        count = Signal(8)
        with m.If(self.inc & (count < self.stop)):
            m.d.sync += count.eq(count + 1)
        m.d.comb += [Assert(count <= self.bound, "count bounded"), Cover(count == 3)]
        return m


def test_counterexample(tmp_path):
    bad = prove(Counter(5, 4), mode="bmc", depth=8, workdir=tmp_path)
    assert bad.status == "FAIL" and bad.step == 5, bad.summary()
    assert bad.failed and bad.failed[0].endswith("(count bounded)")
    assert (bad.workdir / "engine_0" / "trace.vcd").exists()


@pytest.mark.formal
def test_induction_and_cover():
    assert prove(Counter(5, 5), mode="prove", depth=3).passed  # inductive
    # a real failure at step 5, beyond the base case: induction fails, nothing is proved
    assert prove(Counter(5, 4), mode="prove", depth=3).status == "UNKNOWN"
    cover = prove(Counter(5, 5), mode="cover", depth=5)
    assert cover.passed and list(cover.reached.values()) == [3]


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode='sim'"):
        prove(Counter(1, 1), mode="sim")
    with pytest.raises(ValueError, match="depth=0"):
        prove(Counter(1, 1), depth=0)
    with pytest.raises(ValueError, match="solver='cvc5'"):
        prove(Counter(1, 1), solver="cvc5")
    with pytest.raises(TypeError, match=r"wiring\.Component"):
        prove(Module())
