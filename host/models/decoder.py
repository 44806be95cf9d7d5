"""A decoder-only transformer on an :class:`~unified_engine.host.Engine` (any backend).

:class:`DecoderModel` holds the weights on the device (linear layers as ``PackedWeight`` in the
formats of a :class:`~.formats.WeightFormats` policy, norms/biases/tables as bf16 tensors) and
runs every step with the kernel library — nothing of a forward pass is computed on the host:

* **prefill** (``S`` prompt tokens) and **decode** (one token) are the same code path: embed,
  the blocks (each appends its keys/values to the :class:`~.kvcache.KVCache` in device DRAM and
  attends over the cache with a causal mask), final norm, LM head on the last row (or every row
  for teacher forcing), and ``argmax_top4`` on the device for greedy decoding;
* compiled programs come from ``Engine.kernel_cache``: ``linear`` and the row-wise ops take
  the row count as a GPR argument (one program per power-of-two row bucket), the KV append and
  RoPE programs depend only on ``S``, attention on the number of filled key blocks — so decode
  steps reuse the same programs across sequence lengths;
* every op's device cycles go to :attr:`DecoderModel.log` (:class:`~.runtime.CycleLog`) under
  the names ``embed``, ``norm``, ``attn.q|k|v|o``, ``heads`` (head-major transposes),
  ``rope``, ``kv_append``, ``attention``, ``residual``, ``mlp.*``, ``lm_head``, ``argmax``.

Subclasses (:class:`~.llama.LlamaModel`, :class:`~.gpt2.Gpt2Model`) implement ``_embed`` and
``block``.  Activations stay bf16 on the device between ops (the engine's storage format);
the ``transformers`` reference computes in float32 — :mod:`.reference` measures the gap.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from unified_engine.numerics import fp

from .formats import WeightFormats, upload_linear
from .kvcache import KVCache
from .runtime import CycleLog, Scope, run_timeout, view
from .spec import ModelSpec, ModelWeights

__all__ = ["DecoderModel", "Step"]


@dataclasses.dataclass(frozen=True)
class Step:
    """One generation step (:meth:`DecoderModel.generate`).

    Attributes
    ----------
    token : int
        The greedy next token (top-1 of the device's ``argmax_top4``).
    top4 : tuple[int, ...]
        The four best token ids, best first.
    phase : ``"prefill"`` or ``"decode"``.
    tokens : int
        Tokens the step processed (the prompt length for prefill, 1 for decode).
    cycles : int
        Device cycles of the step (every program it ran, START to HALT).
    breakdown : dict[str, int]
        ``cycles`` split by op name (see the module docstring).
    seconds : float
        Host wall time of the step (simulation included).
    """

    token: int
    top4: tuple[int, ...]
    phase: str
    tokens: int
    cycles: int
    breakdown: dict[str, int]
    seconds: float


@dataclasses.dataclass
class Linear:
    """A linear layer on the device: ``packed`` (``PackedWeight``, any format), optionally
    the bf16 weight row-major ``[N, K]`` for one-row products, and a bias ``[N]``."""

    name: str
    tag: str                  # its name in the cycle log ("attn.q", "mlp.down", "lm_head", …)
    packed: Any
    rowmajor: Any = None
    bias: Any = None


class DecoderModel(abc.ABC):
    """Weights on ``engine`` plus the forward pass; see the module docstring.

    Parameters
    ----------
    engine : Engine
    weights : ModelWeights
    formats : a format name or a :class:`~.formats.WeightFormats` policy for the linear layers
    layers : only these block indices are uploaded (``run_block`` uses one); ``None`` = the
        whole model with embeddings and LM head.
    gemv : ``True``: keep bf16 linear weights also row-major, so one-row steps (decode)
        multiply with the weight as the array's A operand (about 3× fewer cycles at M = 1 on
        the default 8×8, P = 4 array; bit-identical results) at the price of a second copy of
        bf16 weights in DRAM.  ``"all"``: quantized layers too keep a row-major bf16 copy of
        their *decoded* values (``PackedWeight.dequantized``: exactly what the array multiplies
        with, so still bit-identical) — 4-bit numerics at bf16 GEMV speed, but 2 more bytes per
        weight in DRAM and no 4-bit saving of decode bandwidth.  ``False``: no copies.
    timeout : host seconds each program may run (:func:`~.runtime.run_timeout`; ``None``:
        the engine's default, 60 s, too short for big steps on the ISA simulator).
    progress : called with a message while weights upload (quantizing takes a while).
    """

    #: cycle-log names of the linear layers (by their short name)
    _tags: ClassVar[dict[str, str]] = {}

    def __init__(self, engine: Any, weights: ModelWeights, formats: Any = "bf16", *,
                 layers: Sequence[int] | None = None, gemv: bool | str = True,
                 timeout: float | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        if gemv not in (True, False, "all"):
            raise ValueError(f"gemv must be True, False or 'all', not {gemv!r}")
        self.engine = engine
        self.gemv: bool | str = gemv
        self.timeout = timeout
        self.spec: ModelSpec = weights.spec
        self.formats = WeightFormats(formats)
        self.log = CycleLog()
        self.full = layers is None
        self.layer_ids = list(range(self.spec.layers)) if layers is None else list(layers)
        self._owned: list = []
        self.blocks: dict[int, dict[str, Any]] = {}
        try:
            for i in self.layer_ids:
                if progress:
                    progress(f"uploading block {i + 1}/{self.spec.layers}")
                self.blocks[i] = self._upload_block(weights, i)
            if self.full:
                if progress:
                    progress("uploading embeddings and LM head")
                self._upload_globals(weights)
        except BaseException:
            self.free()
            raise

    # ----- weights -------------------------------------------------------------------------

    def _tensor(self, arr: np.ndarray) -> Any:
        t = self.engine.tensor(np.ascontiguousarray(arr, np.float32), dtype="bf16",
                               region="params")
        self._owned.append(t)
        return t

    def _linear(self, name: str, w: np.ndarray, bias: np.ndarray | None = None) -> Linear:
        w = np.ascontiguousarray(w, np.float32)
        fmt = self.formats(name)
        pw = upload_linear(self.engine, w, fmt)
        self._owned.append(pw)
        rowmajor = None
        if fmt == "bf16" and self.gemv:
            rowmajor = self._tensor(w)
        elif self.gemv == "all":        # the decoded values, exact in bf16
            rowmajor = self._tensor(fp.bf16_to_f32(pw.dequantized()))
        short = name.rsplit(".", 1)[-1]
        return Linear(name, self._tags.get(short, short), pw, rowmajor,
                      None if bias is None else self._tensor(bias))

    def _apply(self, lin: Linear, x: Any, activation: str | None = None) -> Any:
        """``act(x · Wᵀ + b)`` for device ``x`` ``[S, K]``: ``Engine.linear`` on the packed
        weight, or, for one row and a row-major copy (see ``gemv``), the same sums as
        ``W · xᵀ`` (``Engine.matmul`` with the weight as the streamed A operand: ``N/(P·R)``
        array tiles instead of ``N/C``; each output is still one k-ordered fp32 dot product
        with the same epilogue, so the bits are identical — ``tests/models/test_decoder.py``
        checks it)."""
        if x.shape[0] == 1 and lin.rowmajor is not None:
            n, k = lin.rowmajor.shape
            bias = None if lin.bias is None else view(lin.bias, (n, 1))
            y = self._op(lin.tag, self.engine.matmul, lin.rowmajor, view(x, (k, 1)),
                         bias=bias, activation=activation)
            y.shape = (1, n)
            return y
        return self._op(lin.tag, self.engine.linear, x, lin.packed, bias=lin.bias,
                        activation=activation)

    @abc.abstractmethod
    def _upload_block(self, weights: ModelWeights, i: int) -> dict[str, Any]:
        """Upload block ``i``'s weights; returns its device tensors by name."""

    @abc.abstractmethod
    def _upload_globals(self, weights: ModelWeights) -> None:
        """Upload the weights outside the blocks (embeddings, final norm, LM head)."""

    def free(self) -> None:
        """Release every device buffer of the model."""
        for t in reversed(self._owned):
            t.free()
        self._owned.clear()
        self.blocks.clear()

    @property
    def weight_bytes(self) -> int:
        """Device bytes of the uploaded weights (packed/quantized linears, tables, norms)."""
        return sum(t.nbytes for t in self._owned)

    @property
    def decode_bytes_per_token(self) -> int:
        """Weight bytes one decode step streams from DRAM: every linear layer once, through
        its row-major copy when it has one (the GEMV path), else its packed weight."""
        total = 0
        linears = [v for blk in self.blocks.values() for v in blk.values()
                   if isinstance(v, Linear)]
        if self.full:
            linears.append(self.lm_head)
        for lin in linears:
            total += (lin.rowmajor if lin.rowmajor is not None else lin.packed).nbytes
        return total

    # ----- op wrappers ---------------------------------------------------------------------

    def _op(self, name: str, fn: Callable, *args: Any, **kw: Any) -> Any:
        out = fn(*args, **kw)
        self.log.add(name, self.engine.last_run.cycles)
        return out

    def _heads(self, sc: Scope, t: Any, heads: int, s: int) -> Any:
        """``[S, H·D]`` → ``[H, S, D]`` (two transposes; a view when S = 1)."""
        d = self.spec.head_dim
        if s == 1:
            return view(t, (heads, 1, d))
        hd_s = sc(self._op("heads", self.engine.transpose, t))            # [H·D, S]
        return sc(self._op("heads", self.engine.transpose, view(hd_s, (heads, d, s))))

    def _merge(self, sc: Scope, o: Any, heads: int, s: int) -> Any:
        """``[1, H, S, D]`` → ``[S, H·D]`` (the inverse of :meth:`_heads`)."""
        d = self.spec.head_dim
        if s == 1:
            return view(o, (1, heads * d))
        hds = sc(self._op("heads", self.engine.transpose, view(o, (heads, s, d))))  # [H, D, S]
        return sc(self._op("heads", self.engine.transpose, view(hds, (heads * d, s))))

    def _attend(self, sc: Scope, i: int, q: Any, k: Any, v: Any, cache: KVCache, s: int) -> Any:
        """Append ``k``/``v`` ``[Hkv, S, D]`` to the cache, attend ``q`` ``[Hq, S, D]`` over it
        with the causal mask; returns ``[S, Hq·D]``."""
        slot = self.layer_ids.index(i)         # the cache holds the uploaded blocks only
        for run in cache.append(slot, k, v):
            self.log.add("kv_append", run.cycles)
        spec = self.spec
        shape_kv = (1, spec.kv_heads, cache.capacity, spec.head_dim)
        o = sc(self._op("attention", self.engine.attention,
                        view(q, (1, spec.heads, s, spec.head_dim)),
                        view(cache.k[slot], shape_kv), view(cache.v[slot], shape_kv),
                        mask=cache.mask(s)))
        return self._merge(sc, o, spec.heads, s)

    # ----- forward -------------------------------------------------------------------------

    def new_cache(self, capacity: int) -> KVCache:
        """An empty KV cache for ``capacity`` positions (≤ ``spec.max_positions``)."""
        if capacity > self.spec.max_positions:
            raise ValueError(f"{capacity} positions exceed the model's maximum "
                             f"{self.spec.max_positions}")
        return KVCache(self.engine, len(self.layer_ids), self.spec.kv_heads,
                       self.spec.head_dim, capacity)

    @abc.abstractmethod
    def block(self, i: int, x: Any, cache: KVCache) -> Any:
        """Block ``i`` on the device hidden state ``x`` ``[S, H]`` at position
        ``cache.length``; returns the new hidden state (a new tensor; ``x`` is kept)."""

    @abc.abstractmethod
    def _embed(self, ids: np.ndarray, pos: int) -> Any:
        """The device hidden state ``[len(ids), H]`` for ``ids`` starting at position ``pos``."""

    def _final_norm(self, x: Any) -> Any:
        raise NotImplementedError

    def forward(self, ids: Sequence[int], cache: KVCache, logits: str = "last") -> Any:
        """Run ``ids`` (at positions ``cache.length …``) through the model.

        Returns the bf16 logits as a device tensor: ``[1, V]`` for the last position
        (``logits="last"``) or ``[S, V]`` for every position (``"all"``, teacher forcing).
        The cache advances by ``S``.
        """
        if not self.full:
            raise ValueError("this model holds only some blocks; use block() / run_block")
        ids = np.asarray(ids, np.int64).reshape(-1)
        if ids.size == 0:
            raise ValueError("forward needs at least one token")
        if logits not in ("last", "all"):
            raise ValueError(f"logits must be 'last' or 'all', not {logits!r}")
        s = int(ids.size)
        cache.check_room(s)
        with run_timeout(self.engine, self.timeout):
            return self._forward(ids, cache, logits, s)

    def _forward(self, ids: np.ndarray, cache: KVCache, logits: str, s: int) -> Any:
        x = self._embed(ids, cache.length)
        try:
            for i in self.layer_ids:
                nxt = self.block(i, x, cache)
                x.free()
                x = nxt
            cache.advance(s)
            with Scope() as sc:
                rows = x if logits == "all" else view(x, (1, self.spec.hidden_size),
                                                     (s - 1) * self.spec.hidden_size)
                h = sc(self._final_norm(rows))
                return self._apply(self.lm_head, h)
        finally:
            x.free()

    def next_tokens(self, logits: Any) -> tuple[np.ndarray, np.ndarray]:
        """Device ``argmax_top4`` of ``[R, V]`` logits: ``(values [R, 4], ids [R, 4])``."""
        with run_timeout(self.engine, self.timeout):
            return self._op("argmax", self.engine.argmax_top4, logits)

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Teacher forcing: float32 logits ``[S, V]`` of every position of ``ids`` (one
        prefill; row ``t`` predicts token ``t+1``)."""
        cache = self.new_cache(len(ids))
        try:
            out = self.forward(ids, cache, logits="all")
            try:
                return fp.bf16_to_f32(out.bits())
            finally:
                out.free()
        finally:
            cache.free()

    def generate(self, prompt: Sequence[int], max_new_tokens: int,
                 stop: Sequence[int] = ()) -> Iterator[Step]:
        """Greedy decoding: yields a :class:`Step` per new token (the first is the prefill).

        Stops after ``max_new_tokens`` tokens or when a token in ``stop`` is produced.
        """
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be ≥ 1")
        cache = self.new_cache(len(prompt) + max_new_tokens)
        try:
            feed: list[int] = list(prompt)
            for n in range(max_new_tokens):
                phase = "prefill" if n == 0 else "decode"
                t0 = time.perf_counter()
                with self.log.section() as cycles:
                    out = self.forward(feed, cache)
                    try:
                        _, idx = self.next_tokens(out)
                    finally:
                        out.free()
                top4 = tuple(int(i) for i in idx[0])
                step = Step(top4[0], top4, phase, len(feed), sum(cycles.values()),
                            dict(cycles), time.perf_counter() - t0)
                yield step
                if step.token in stop:
                    return
                feed = [step.token]
        finally:
            cache.free()
