"""MultiEngine on the Verilated 2-engine SoC (sim_small): a barrier, a deadlock ending in
SYNC_TIMEOUT with soft-reset recovery, and sharded matmuls bit-exact with the single-engine
model; the SoC's cycles next to the multi-engine model's."""

import dataclasses

import numpy as np
import pytest

from firmware import golden as G
from unified_engine.host import Engine
from unified_engine.host.multi import MultiDeviceError, barrier
from unified_engine.host.ops_shard import shard_matmul
from unified_engine.regs import ErrorCode

pytestmark = pytest.mark.slow  # one Verilator build of the 2-engine SoC (minutes, then cached)

DRAM = 1 << 22
CFG = dataclasses.replace(G.small_config(), engines=2)


@pytest.fixture(scope="module")
def soc():
    m = Engine.open("verilator", CFG, engines=2, dram_bytes=DRAM)
    yield m
    m.close()


def test_barrier_and_deadlock_on_the_rtl(soc):
    c = soc.config
    progs = []
    for i in range(2):
        b = barrier(c, i, 2, 0, timeout=100_000)
        b.halt(i + 1)
        progs.append(b)
    assert [r.halt_code for r in soc.run_all(progs)] == [1, 2]
    assert soc.sync_flags == 0b11
    lonely = barrier(c, 0, 2, 0, timeout=3_000)
    lonely.halt()
    stay = barrier(c, 1, 2, 1, timeout=3_000)  # engine 1 waits at another barrier
    stay.halt()
    with pytest.raises(MultiDeviceError) as err:
        soc.run_all([lonely, stay])
    assert err.value.engines == [0, 1]
    assert all(f.code is ErrorCode.SYNC_TIMEOUT and f.pc == 1 for f in err.value.failures)
    soc.soft_reset()
    assert [r.halt_code for r in soc.run_all(progs)] == [1, 2]


@pytest.mark.parametrize("split_dim", ["m", "n", "k"])
def test_sharded_matmul_on_the_rtl_matches_the_model(soc, split_dim):
    rng = np.random.default_rng(21)
    a = rng.standard_normal((19, 24)).astype(np.float32)
    b = rng.standard_normal((24, 11)).astype(np.float32)
    c_rtl, run_rtl = shard_matmul(soc, a, b, split_dim)
    model = Engine.open("model", CFG, engines=2, dram_bytes=DRAM)
    c_model, run_model = shard_matmul(model, a, b, split_dim)
    # the K split is deterministic too: the same programs give the same bits
    np.testing.assert_array_equal(c_rtl, c_model)
    if split_dim != "k":
        single = Engine.open("model", CFG, dram_bytes=DRAM)
        np.testing.assert_array_equal(c_rtl, single.matmul(a, b))
    print(f"\n{split_dim}-split 19×24×11: RTL {run_rtl.cycles} cycles, model "
          f"{run_model.cycles} cycles")
    # the model's timing is calibrated to the RTL (host.timing); a loose sanity band here
    assert 0.5 < run_model.cycles / run_rtl.cycles < 2.0
