"""The build flow behind ``python build.py``: configuration resolution, outputs, CLI errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    result = build("kintex7", out=tmp_path, rows=2, cols=2, pe_interleave=2)
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
