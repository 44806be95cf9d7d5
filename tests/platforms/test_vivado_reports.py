"""Reading Vivado's utilization and timing reports into the build summary (the report layouts
of 7-series and UltraScale+ parts, with and without the newer "Prohibited" column)."""

from pathlib import Path

import pytest

from unified_engine.platforms.vivado import parse_timing, parse_utilization

UTIL_7SERIES = """\
1. Slice Logic
--------------

+----------------------------+--------+-------+-----------+-------+
|          Site Type         |  Used  | Fixed | Available | Util% |
+----------------------------+--------+-------+-----------+-------+
| Slice LUTs                 | 151234 |     0 |    298600 | 50.65 |
|   LUT as Logic             | 149000 |     0 |    298600 | 49.90 |
| Slice Registers            | 201000 |     0 |    597200 | 33.66 |
+----------------------------+--------+-------+-----------+-------+

3. Memory
---------

+-------------------+------+-------+-----------+-------+
|     Site Type     | Used | Fixed | Available | Util% |
+-------------------+------+-------+-----------+-------+
| Block RAM Tile    |  412 |     0 |       955 | 43.14 |
|   RAMB36/FIFO*    |  400 |     0 |       955 | 41.88 |
+-------------------+------+-------+-----------+-------+

4. DSP
------

+----------------+------+-------+-----------+-------+
|    Site Type   | Used | Fixed | Available | Util% |
+----------------+------+-------+-----------+-------+
| DSPs           |  232 |     0 |      1920 | 12.08 |
|   DSP48E1 only |  232 |       |           |       |
+----------------+------+-------+-----------+-------+
"""

UTIL_USP = """\
+----------------------------+--------+-------+------------+-----------+-------+
|          Site Type         |  Used  | Fixed | Prohibited | Available | Util% |
+----------------------------+--------+-------+------------+-----------+-------+
| CLB LUTs*                  | 200000 |     0 |          0 |    522720 | 38.26 |
| CLB Registers              | 300000 |     0 |          0 |   1045440 | 28.70 |
+----------------------------+--------+-------+------------+-----------+-------+
+-------------------+------+-------+------------+-----------+-------+
|     Site Type     | Used | Fixed | Prohibited | Available | Util% |
+-------------------+------+-------+------------+-----------+-------+
| Block RAM Tile    | 64.5 |     0 |          0 |       984 |  6.55 |
| URAM              |   60 |     0 |          0 |       128 | 46.88 |
| DSPs              |  260 |     0 |          0 |      1968 | 13.21 |
+-------------------+------+-------+------------+-----------+-------+
"""

#: An excerpt of report_timing_summary (the three sections the parser reads).
TIMING = (Path(__file__).parent / "data" / "timing_summary.rpt").read_text()


def test_utilization_7series_and_ultrascale_plus():
    k7 = parse_utilization(UTIL_7SERIES)
    assert k7["LUT"] == {"used": 151234.0, "available": 298600.0, "percent": 50.65}
    assert k7["FF"]["used"] == 201000 and k7["BRAM36"]["used"] == 412
    assert k7["DSP"]["available"] == 1920 and "URAM" not in k7
    usp = parse_utilization(UTIL_USP)
    assert usp["LUT"]["used"] == 200000 and usp["LUT"]["available"] == 522720
    assert usp["BRAM36"]["used"] == 64.5 and usp["URAM"]["percent"] == 46.88
    with pytest.raises(ValueError, match="not a Vivado utilization report"):
        parse_utilization("hello")


def test_timing_summary_and_achieved_clocks():
    t = parse_timing(TIMING)
    assert (t["wns"], t["tns"], t["whs"], t["met"]) == (-0.214, -3.118, 0.021, False)
    engine = t["clocks"]["clk_out1_clk_engine"]
    assert engine["period"] == 5.0 and engine["target_mhz"] == 200.0
    assert engine["wns"] == -0.214 and engine["achieved_mhz"] == round(1000 / 5.214, 1)
    assert t["clocks"]["pcie_refclk"]["achieved_mhz"] == round(1000 / 2.9, 1)
    assert t["clocks"]["clk200_0__p"]["wns"] is None
    with pytest.raises(ValueError, match="not a timing summary report"):
        parse_timing(UTIL_7SERIES)
