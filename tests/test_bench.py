"""The benchmark suite (unified_engine.bench, bench_scaling, bench_plot) on the model backend at
small sizes: row contents against hand-derived ideals, output formats, argument errors."""

from __future__ import annotations

import json

import pytest

from unified_engine import bench, bench_plot, bench_scaling
from unified_engine.config import EngineConfig


@pytest.fixture(scope="module")
def small_run():
    return bench.run_benchmarks("model", "default", size=64, heads=1,
                                ops=["mm", "if4", "if4_matvec", "add", "rmsnorm"])


def test_rows_against_hand_derived_ideals(small_run):
    config, dram, rows = small_run
    assert config == EngineConfig()
    # the model's DRAM: 64 cycles latency, one 256-bit beat (32 B) per cycle
    assert dram == {"latency": 64, "bytes_per_cycle": 32}
    by = {r.key: r for r in rows}
    assert list(by) == ["mm", "if4", "if4_matvec", "add", "rmsnorm"]
    macs_per_cycle = 8 * 8
    assert by["mm"].ideal_cycles == 64 ** 3 / macs_per_cycle
    assert by["if4"].ideal_cycles == 64 ** 3 / macs_per_cycle
    assert by["if4_matvec"].ideal_cycles == 64 * 64 / macs_per_cycle
    # A + B: reads 2·64·64 bf16, writes 64·64 → bound max(16384, 8192) / 32 B per cycle
    assert by["add"].ideal_cycles == 2 * 64 * 64 * 2 / 32
    for r in rows:
        assert 0 < r.utilization <= 1
        assert r.utilization == pytest.approx(r.ideal_cycles / r.cycles)
        assert r.anchor_cycles is None and r.speedup is None   # anchor only at 1024
        assert r.backend == "model" and r.seconds > 0
    gflops = 2 * 64 ** 3 / (by["mm"].cycles / 200e6) / 1e9
    assert by["mm"].rate == f"{gflops:.2f} GFLOP/s"
    # a matvec fills one of the TR = R·P = 32 rows of a row tile
    assert by["if4_matvec"].utilization <= 1 / 32


def test_markdown_and_json(small_run, tmp_path):
    config, dram, rows = small_run
    text = bench.markdown(config, rows, "model", "default", dram)
    assert "DRAM model 64 cycles latency, 32 B/cycle per direction" in text
    assert text.count("\n| ") == len(rows) + 1                # header + one line per row
    doc = bench.to_json(config, rows, "model", "default", dram, 64)
    json.dumps(doc)
    assert doc["rows"][0]["key"] == "mm" and doc["dram_model"] == dram
    # the plot of two "files"
    path = tmp_path / "u.png"
    bench_plot.utilization_png({"a": rows, "b": doc["rows"]}, path, title="t")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_cli_json_png(tmp_path, capsys):
    js, png, plot = tmp_path / "b.json", tmp_path / "b.png", tmp_path / "p.png"
    assert bench.main(["--size", "32", "--ops", "mm", "transpose", "--json", str(js),
                       "--png", str(png)]) == 0
    doc = json.loads(js.read_text())
    assert [r["key"] for r in doc["rows"]] == ["mm", "transpose"]
    assert doc["size"] == 32 and png.read_bytes()[:4] == b"\x89PNG"
    assert "| A·Bᵀ | 32³ |" in capsys.readouterr().out
    assert bench_plot.main([str(js), "--png", str(plot)]) == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(SystemExit):
        bench_plot.main([str(tmp_path / "x.json"), "--png", str(plot)])


@pytest.mark.parametrize("argv", [["--ops", "nope"], ["--size", "8"], ["--heads", "0"],
                                  ["--backend", "xdma"], ["--preset", "huge"]])
def test_cli_rejects_bad_arguments(argv):
    with pytest.raises(SystemExit):
        bench.main(argv)


def test_api_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown op key"):
        bench.run_benchmarks(ops=["mm", "nope"])
    with pytest.raises(ValueError, match="size must be"):
        bench.run_benchmarks(size=8)
    with pytest.raises(ValueError, match="allowed: model, verilator"):
        bench.open_engine("xdma", EngineConfig())
    with pytest.raises(ValueError, match="unknown preset"):
        bench.config_for("huge")
    with pytest.raises(ValueError, match="model backend only"):
        bench_scaling.main("verilator")
    with pytest.raises(ValueError, match="nothing to plot"):
        bench_plot.utilization_png({}, "x.png")


def test_scaling_configs_and_bounds():
    cfgs = [bench_scaling.array_config(s, a) for s, a in bench_scaling.ARRAYS]
    assert [(c.rows, c.cols, c.axi_data_width, c.lanes) for c in cfgs] == \
        [(4, 4, 128, 8), (8, 8, 256, 16), (16, 16, 512, 32)]
    assert cfgs[1] == EngineConfig()                             # 8×8 is the default engine
    # same number of TR×C fp32 output tiles in every accumulator
    tiles = {c.accumulator_bytes // (c.tile_rows * c.cols * 4) for c in cfgs}
    assert len(tiles) == 1
    rows = bench_scaling.array_sweep(size=64)
    assert [r["ideal_cycles"] for r in rows] == [64 ** 3 / 16, 64 ** 3 / 64, 64 ** 3 / 256]
    small = bench_scaling.small_m_sweep(k=128, n=128, ms=(1, 8))
    assert [(r["m"], r["format"]) for r in small] == [(1, "bf16"), (8, "bf16"), (1, "if4"),
                                                      (8, "if4")]
    for r in small:
        assert r["row_tile_bound"] == r["m"] / 32
        assert r["utilization"] <= r["row_tile_bound"]      # a pass computes 32 rows
    bf16 = next(r for r in small if r["format"] == "bf16")
    assert bf16["weight_bytes"] >= 128 * 128 * 2
    assert "| 16×16 | 512 | 32 | 256 |" in bench_scaling.markdown(rows, small)
