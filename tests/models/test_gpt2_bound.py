"""GPT-2 (random weights, GPT-2 small's width) against transformers within the documented
bound (slow: a few minutes)."""

import pytest

from unified_engine.host import Engine

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("layers", [2, 4])
def test_random_gpt2_within_the_documented_bound(layers):
    """GPT-2 small's width, random weights: the bound of docs/models.md (twice the worst
    error measured over 3 seeds of 2 and 4 layers)."""
    pytest.importorskip("transformers")
    from unified_engine.host.models import gpt2_spec
    from unified_engine.host.models.evaluate import random_model_errors

    with Engine.open("model", dram_bytes=1 << 30) as eng:
        (agree,) = random_model_errors(gpt2_spec(layers), [7], 64, eng)
    assert agree.max_abs_rel <= 0.21 and agree.cosine_min >= 0.9996, agree
    assert agree.top1_in_top4 == 1.0, agree
