"""``python -m unified_engine.host.generate`` on a narrow random GPT-2 with the real
tokenizer (the SmolLM2 CLI run is in test_smollm2.py, marked slow)."""

import io
import re

import pytest

from unified_engine.host import generate

from .conftest import need_gpt2_tokenizer


def test_generate_cli_streams_and_reports(capsys):
    pytest.importorskip("transformers")
    need_gpt2_tokenizer()
    out = io.StringIO()
    rc = generate.main(["--model", "gpt2", "--layers", "1", "--hidden", "64", "--heads", "2",
                        "--prompt", "Hello, my name is", "--max-new-tokens", "2",
                        "--ignore-eos", "--weights", "lm_head=bf16,*=int4"], out=out)
    assert rc == 0
    text = out.getvalue()
    assert text.startswith("Hello, my name is")
    assert re.search(r"prefill: 5 tokens, [\d,]+ cycles \([\d,]+ cycles/token\)", text)
    assert re.search(r"decode:  1 tokens, [\d,]+ cycles/token", text)
    for board, mhz in (("kintex7", 200), ("ku15p", 333), ("alveo_u50", 300)):
        assert re.search(rf"{board}\s+{mhz} MHz\s+[\d.]+\s+[\d.]+", text), text
    assert re.search(r"alveo_u50\s+8 engines\s+[\d.]+ tok/s \((engines|dram)-bound\)", text)
    assert "weights lm_head=bf16,*=int4" in capsys.readouterr().err


def test_generate_cli_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        generate.main(["--max-new-tokens", "0"])
    with pytest.raises(SystemExit):
        generate.main(["--model", "gpt-5"])
    with pytest.raises(SystemExit):
        generate.main(["--no-gemv", "--gemv-all"])
