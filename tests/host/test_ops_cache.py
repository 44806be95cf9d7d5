"""Runtime sizes through GPRs and the program cache."""

import numpy as np

from firmware import golden as G
from unified_engine.host import Engine
from unified_engine.numerics import fp

SMALL = G.small_config()


def test_one_program_serves_many_sequence_lengths():
    eng = Engine.open("model", SMALL, dram_bytes=1 << 24)
    rng = np.random.default_rng(0)
    w = eng.pack_weight(rng.standard_normal((24, 40)).astype(np.float32))
    wb = w.dequantized()
    misses = eng.kernel_cache.misses
    images = None
    for m in (70, 100, 128, 99, 65):                 # one M bucket (65…128 rows)
        x = rng.standard_normal((m, 40)).astype(np.float32)
        G.assert_bits_equal(G.b16(eng.linear(x, w)), fp.pe_matmul(G.b16(x), wb.T), f"m={m}")
        if images is None:
            images = len(eng._programs)
    assert eng.kernel_cache.misses == misses + 1
    assert eng.kernel_cache.hits >= 4
    # no new program image was placed in device memory after the first call
    assert len(eng._programs) == images


def test_row_ops_reuse_their_program_across_row_counts():
    eng = Engine.open("model", SMALL, dram_bytes=1 << 24)
    rng = np.random.default_rng(1)
    g = rng.standard_normal(32).astype(np.float32)
    before = eng.kernel_cache.misses
    for m in (9, 16, 13):
        x = rng.standard_normal((m, 32)).astype(np.float32)
        G.assert_bits_equal(G.b16(eng.rmsnorm(x, g)),
                            G.rmsnorm_rows(G.b16(x), G.b16(g), 1e-6, SMALL))
    assert eng.kernel_cache.misses == before + 1


def test_cache_is_bounded_lru():
    from unified_engine.firmware import ProgramCache
    from unified_engine.firmware.common import Kernel

    cache = ProgramCache(capacity=2)
    built = []

    def build(name):
        built.append(name)
        return Kernel(name, SMALL, b"\0" * 32, {})

    for name in ("a", "b", "a", "c", "b"):
        cache.get("op", SMALL, name, lambda n=name: build(n))
    assert built == ["a", "b", "c", "b"]          # "b" was evicted by "c" (LRU)
    assert (cache.hits, cache.misses, len(cache)) == (1, 4, 2)
