"""The build flow behind ``python build.py``: configuration resolution, outputs, CLI errors,
the board plans (shell-only, tiny configurations), estimates, sweeps and the summary."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
from amaranth.hdl import Fragment

from unified_engine import EngineConfig
from unified_engine.build import BOARDS, BuildError, build, main, resolve_config
from unified_engine.regs import build_id

ROOT = Path(__file__).resolve().parent.parent


def test_every_board_has_a_preset():
    for board in BOARDS:
        assert resolve_config(board) == EngineConfig.preset(board)


def test_overrides_apply_and_validate():
    config = resolve_config("kintex7", rows=4, cols=4, clock_mhz=None)
    assert (config.rows, config.cols, config.clock_mhz) == (4, 4, 200.0)
    with pytest.raises(BuildError, match="rows=40 is out of range"):
        resolve_config("kintex7", rows=40)
    with pytest.raises(BuildError, match="unknown board 'zcu102'"):
        resolve_config("zcu102")


def test_build_writes_config_summary_and_verilog(tmp_path):
    result = build("kintex7", out=tmp_path, plan=False, rows=2, cols=2, pe_interleave=2)
    names = {p.name for p in result.files}
    assert {"config.json", "summary.txt", "regmap.json", "regmap.h", "systolic_array.v"} <= names
    regmap = json.loads((tmp_path / "regmap.json").read_text())
    assert regmap["build_id"] == f"{build_id(result.config):016x}"
    saved = json.loads((tmp_path / "config.json").read_text())
    assert EngineConfig.from_dict(saved["config"]) == result.config
    assert saved["fingerprint"] == f"{result.config.fingerprint():016x}"
    verilog = (tmp_path / "systolic_array.v").read_text()
    assert "module systolic_array" in verilog and "endmodule" in verilog


def test_cli_reports_invalid_parameters(capsys, tmp_path):
    assert main(["--board", "kintex7", "--lanes", "12", "--out", str(tmp_path)]) == 2
    assert "lanes=12 must be a power of two" in capsys.readouterr().err


def test_cli_summary_without_verilog(tmp_path):
    env_python = sys.executable
    out = subprocess.run(
        [env_python, str(ROOT / "build.py"), "--board", "alveo_u50", "--no-verilog",
         "--out", str(tmp_path)],
        capture_output=True, text=True, check=True,
        env={"UNIFIED_ENGINE_NO_VENV": "1", "PATH": "/usr/bin:/bin"},
    )
    assert "× 8" in out.stdout and "config.json" in out.stdout


# ----- board plans ------------------------------------------------------------------------------

TINY = dict(engines=2, rows=2, cols=2)
MEMORY_IP = {"kintex7": "mig_0", "ku15p": "ddr4_0", "alveo_u50": "hbm_0"}


def _verilator_present():
    from unified_engine.host.verilator_build import VerilatorNotFound, find_toolchain

    try:
        find_toolchain()
    except VerilatorNotFound:
        return False
    return True


@pytest.mark.parametrize(("board", "lint"), [
    ("kintex7", False),  # the default tier: the plan without the Verilator lint (seconds)
    *[pytest.param(b, True, marks=pytest.mark.slow) for b in BOARDS],
])
def test_shell_only_plan_is_complete_and_lints_clean(tmp_path, board, lint, capsys):
    if board == "ku15p":  # through the command line
        argv = ["--board", board, "--shell-only", "--no-vivado", "--engines", "2", "--rows",
                "2", "--cols", "2", "--out", str(tmp_path), *([] if lint else ["--no-lint"])]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "plan: elaborating the ku15p top" in out and "vivado/top.v" in out
        assert "Gen3 x8 XDMA" in out
        files = list(tmp_path.rglob("*"))
    else:
        files = build(board, out=tmp_path, shell_only=True, verilog=False, vivado=False,
                      lint=lint, **TINY).files
    names = {p.relative_to(tmp_path).as_posix() for p in files}
    for name in ("config.json", "summary.txt", "summary.json", "regmap.json", "regmap.h",
                 "soc_regmap.json", "soc_regmap.h", "build.sh", "program.sh",
                 "vivado/top.v", "vivado/top.xdc", "vivado/top.tcl", "vivado/build_top.sh",
                 "vivado/program.tcl", "vivado/ip/create_ips.tcl", "vivado/ip/xdma_0.tcl",
                 "vivado/ip/clk_engine.tcl", f"vivado/ip/{MEMORY_IP[board]}.tcl",
                 "sim/stand_ins.v"):
        assert name in names, name
    tcl = (tmp_path / "vivado/top.tcl").read_text()
    assert "source [file join [pwd] ip create_ips.tcl]" in tcl
    assert "set_clock_groups -name ue_async -asynchronous" in tcl
    assert "write_cfgmem" in tcl and "write_bitstream" in tcl
    xdc = (tmp_path / "vivado/top.xdc").read_text()
    assert "create_clock -name pcie_refclk -period 10.000" in xdc
    assert "BITSTREAM.CONFIG.UNUSEDPIN PULLUP" in xdc
    assert "GTTX" not in xdc and "LOC ~" not in xdc  # IP-placed pins, N sides: no LOC
    verilog = (tmp_path / "vivado/top.v").read_text()
    assert "module top(" in verilog and "xdma_0 xdma (" in verilog
    summary = (tmp_path / "summary.txt").read_text()
    assert "SHELL ONLY" in summary and "not estimated" in summary
    assert "next            sh " in summary
    if lint and _verilator_present():
        assert "lint            verilator --lint-only" in summary and ": clean" in summary
        assert (tmp_path / "lint.log").exists()
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["board"] == board and data["config"]["engines"] == 2
    soc = json.loads((tmp_path / "soc_regmap.json").read_text())
    assert soc["engine_bases"] == [0x1000, 0x2000]
    if board == "kintex7":  # the card's quirks
        assert "set_property LOC GTXE2_CHANNEL_X0Y23" in xdc  # lane 0 on the last channel
        assert "set_property INTERNAL_VREF 0.750 [get_iobanks 11]" in xdc
        assert "AK27" not in xdc  # DDR3 pins: placed by the MIG project, not the XDC
        prj = (tmp_path / "vivado/ip/mig_0.prj").read_text()
        assert 'PADName="AK27"' in prj and "<ECC>Enabled</ECC>" in prj
        assert "-interface BPIx16" in tcl
    if board == "alveo_u50":
        assert "set_operating_conditions -design_power_budget 63" in xdc
        assert "hbm_cattrip_0__io" in verilog


def test_unfit_and_invalid_requests_are_refused(tmp_path):
    with pytest.raises(BuildError, match=r"cannot fit: .* need ≥ 16384 DSPs"):
        build("kintex7", out=tmp_path, engines=16, rows=32, cols=32)
    with pytest.raises(BuildError, match="HBM ports are 256-bit"):
        build("alveo_u50", out=tmp_path, shell_only=True, verilog=False,
              axi_data_width=512, **TINY)
    with pytest.raises(BuildError, match="engines=17 is out of range"):
        build("alveo_u50", out=tmp_path, engines=17)
    with pytest.raises(BuildError, match="XDMA's 256-bit bus is wider"):
        build("ku15p", out=tmp_path, shell_only=True, verilog=False, axi_data_width=128,
              lanes=8, engines=1)


def _fake_estimator(lut_per_engine):
    def estimator(design, top, family):
        Fragment.get(design, None)  # elaborate it, as Yosys would
        if top == "engine":
            return {"LUT": lut_per_engine, "LUTRAM": 100, "FF": 20_000, "DSP": 70,
                    "BRAM36": 130, "BRAM18": 3, "URAM": 0}
        return {"LUT": 2_000, "FF": 3_000, "DSP": 0, "BRAM36": 0, "BRAM18": 0, "URAM": 0}
    return estimator


def test_estimate_is_summarised_and_an_overflow_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIFIED_ENGINE_CACHE", str(tmp_path / "cache"))
    result = build("kintex7", out=tmp_path / "ok", plan=False, verilog=False, estimate=True,
                   shell_only=True, estimator=_fake_estimator(50_000), **TINY)
    fits = result.summary["fits"]
    # 2 engines × (50 000 + 100 LUTRAM) + fabric 2 000 + the board's shell allowance
    assert fits["LUT"]["used"] == 2 * 50_100 + 2_000 + 30_000
    assert fits["BRAM36"]["used"] == 2 * 132 + 40 and all(f["ok"] for f in fits.values())
    text = (tmp_path / "ok/summary.txt").read_text()
    assert "estimate (yosys synth_xilinx -family xc7" in text and "NO" not in text
    with pytest.raises(BuildError, match="does not fit kintex7: LUT over budget"):
        build("kintex7", out=tmp_path / "big", plan=False, verilog=False, estimate=True,
              shell_only=True, estimator=_fake_estimator(200_000), **TINY)
    forced = build("kintex7", out=tmp_path / "forced", plan=False, verilog=False,
                   estimate=True, shell_only=True, force=True,
                   estimator=_fake_estimator(200_000), **TINY)
    assert not forced.summary["fits"]["LUT"]["ok"]


def test_sweep_writes_csv_and_markdown(tmp_path, monkeypatch):
    from unified_engine.build import parse_sweep, sweep

    monkeypatch.setenv("UNIFIED_ENGINE_CACHE", str(tmp_path / "cache"))
    params = parse_sweep(["engines=1,2,4,8"])
    result = sweep("alveo_u50", params, out=tmp_path, shell_only=True,
                   estimator=_fake_estimator(90_000), rows=4, cols=4)
    assert [r["engines"] for r in result.rows] == [1, 2, 4, 8]
    assert [r["peak_gflops"] for r in result.rows] == [9.6, 19.2, 38.4, 76.8]
    # 8 × 90 100 + fabric + shell = 767 800 LUT > 70 % of 871 680
    assert [r["fits"] for r in result.rows] == ["yes", "yes", "yes", "no"]
    csv_text = (tmp_path / "sweep.csv").read_text().splitlines()
    assert csv_text[0].startswith("engines,clock_mhz,macs_per_cycle,peak_gflops") and \
        len(csv_text) == 5
    assert "| engines |" in (tmp_path / "sweep.md").read_text()
    # the chart (SVG always; PNG only with matplotlib): one bar per row, red where it cannot fit
    svg = ElementTree.parse(tmp_path / "sweep.svg").getroot()
    bars = [e for e in svg.iter("{http://www.w3.org/2000/svg}rect") if e.get("x")]
    assert [b.get("fill") for b in bars] == ["#4878a8"] * 3 + ["#c05050"]
    heights = [float(b.get("height")) for b in bars]
    assert heights == sorted(heights) and heights[0] > 0
    assert (tmp_path / "sweep.png").exists() == (importlib.util.find_spec("matplotlib")
                                                 is not None)
    quick = sweep("kintex7", parse_sweep(["rows=8,32", "cols=32"]), out=tmp_path / "q",
                  estimate=False, engines=4)
    assert [r["fits"] for r in quick.rows] == ["maybe", "no"]
    assert quick.rows[1]["source"] == "lower bound (cannot fit)"


def test_sweep_arguments_are_checked():
    from unified_engine.build import parse_sweep

    assert parse_sweep(["clock=200,250.5"]) == {"clock_mhz": [200.0, 250.5]}
    with pytest.raises(BuildError, match="cannot sweep 'gprs'"):
        parse_sweep(["gprs=8,16"])
    with pytest.raises(BuildError, match="expected NAME=V1,V2"):
        parse_sweep(["engines"])
    with pytest.raises(BuildError, match="values must be numbers"):
        parse_sweep(["engines=a,b"])


@pytest.mark.slow
@pytest.mark.parametrize("board", BOARDS)
def test_plan_with_the_real_engine(tmp_path, board):
    """The whole design (real engines, tiny arrays) elaborates and lints clean."""
    result = build(board, out=tmp_path, verilog=False, vivado=False, rows=2, cols=2,
                   engines=1)
    assert ": clean" in result.summary["lint"] or "skipped" in result.summary["lint"]


@pytest.mark.synth
def test_yosys_estimate_of_a_shell_only_build(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIFIED_ENGINE_CACHE", str(tmp_path / "cache"))
    result = build("ku15p", out=tmp_path, plan=False, verilog=False, estimate=True,
                   shell_only=True, engines=1, rows=2, cols=2)
    est = result.summary["estimate"]
    assert est["fabric"]["LUT"] > 100 and est["engine"]["DSP"] == 0


def test_program_says_what_is_missing(tmp_path, monkeypatch, capsys):
    """``--program`` of an existing build: no bitstream, then no programmer on PATH."""
    out = tmp_path / "k7"
    assert main(["--board", "kintex7", "--program", "--no-verilog", "--out", str(out)]) == 2
    assert "no bitstream at" in capsys.readouterr().err
    (out / "vivado").mkdir(parents=True)
    (out / "vivado" / "top.bit").write_bytes(b"\0" * 16)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["--board", "kintex7", "--program", "--no-verilog", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no programmer found" in err and "hw_server" in err and "openFPGALoader" in err


def test_open_board_refuses_pcie_only_options(capsys):
    for extra in (["--sweep", "engines=1,2"], ["--engines", "2"], ["--shell-only"]):
        assert main(["--board", "ulx3s", *extra]) == 2
        assert "self-test image" in capsys.readouterr().err
