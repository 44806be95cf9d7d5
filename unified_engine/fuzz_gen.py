"""Random, mutated and garbage fuzz programs (part of :mod:`unified_engine.fuzz`).

:class:`Generator` draws one :class:`Case` (program image, data-area image, GPR arguments,
sync flags) from a seeded ``numpy`` generator; :func:`cases` yields one case of each of
:data:`KINDS` per seed.  What each kind contains is described in :mod:`unified_engine.fuzz`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from .asm import Addr, Program, gpr
from .config import EngineConfig
from .fuzz_layout import ZERO_BYTES, Layout
from .isa import (
    INSTRUCTION_BYTES,
    ActKind,
    AluOp,
    BiasMode,
    ElemFormat,
    JumpCond,
    Opcode,
    OutLayout,
    Queue,
    RowMaxMode,
    SyncOp,
    VecBcast,
    VecOp,
    WeightFormat,
    isa_for,
)

__all__ = ["KINDS", "Case", "Generator", "cases"]

#: Program kinds, in the order :func:`cases` cycles through them.
KINDS = ("valid", "mutated", "garbage")

_QUEUE_OF = {"load": Queue.LOAD, "store": Queue.STORE, "matmul": Queue.ARRAY,
             "vector": Queue.VECTOR}
#: fp32 immediates: ordinary values and the special cases (±0, ±Inf, NaN, subnormal, huge).
_IMMS = (0.0, -0.0, 1.0, -1.0, 0.5, 3.0, -2.5, 1e-3, 1e30, -1e30, float("inf"),
         float("-inf"), 0x7FC00000, 0x7F800001, 0x00000001, 0x80000001)
#: VECTOR ops that read src0 and src1 element-wise (in-place dst = src0 is exact on the RTL).
_ELEMENTWISE = {VecOp.COPY, VecOp.FILL, VecOp.ADD, VecOp.SUB, VecOp.MUL, VecOp.MAX, VecOp.MIN,
                VecOp.EXP, VecOp.RECIP, VecOp.RSQRT, VecOp.ACTIVATE}


class Generator:
    """Random programs for one configuration and :class:`Layout`.

    Parameters
    ----------
    config, layout:
        The engine and where its data and programs live.
    rng:
        The random source (``numpy.random.Generator``); equal seeds give equal programs.
    """

    #: GPRs the generator's loops use as counters (never written by generated ALU ops).
    LOOP_GPRS = 2

    def __init__(self, config: EngineConfig, layout: Layout, rng: np.random.Generator) -> None:
        self.config = config
        self.layout = layout
        self.rng = rng
        self.isa = isa_for(config)
        self.rows = config.scratchpad_rows
        self.beat = config.axi_bytes
        # scratchpad slots: operands of one instruction come from different slots mostly
        self.slot_rows = max(16, self.rows // 8)
        self.data_gprs = list(range(1, config.gprs - self.LOOP_GPRS))
        # ARs: the low half for DRAM addresses, the high half for scratchpad rows
        half = max(1, config.address_registers // 2)
        self.dram_ars = list(range(1, half))
        self.spad_ars = list(range(half, config.address_registers))

    # -- small draws --

    def _p(self, prob: float) -> bool:
        return bool(self.rng.random() < prob)

    def _int(self, low: int, high: int) -> int:
        """Uniform in [low, high]."""
        return int(self.rng.integers(low, high + 1))

    def _pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    def _imm(self) -> float | int:
        if self._p(0.6):
            return float(np.float32(self.rng.standard_normal() * 4))
        return self._pick(_IMMS)

    def _spad(self, slot: int | None = None) -> int:
        """A scratchpad row: inside a slot (so operands rarely overlap), rarely anywhere."""
        if self._p(0.03):
            return self._int(0, self.rows - 1)
        slot = self._int(0, self.rows // self.slot_rows - 2) if slot is None else slot
        return slot * self.slot_rows + self._int(0, self.slot_rows // 4)

    def _dram(self, nbytes: int) -> int:
        """A DRAM byte address for ``nbytes``: in the data area, rarely at or past its edges."""
        lo, size = self.layout.data, self.layout.data_bytes
        r = self.rng.random()
        if r < 0.03:  # straddles the window's lower edge
            return lo - self._int(1, 64)
        if r < 0.05:  # past the window's upper edge
            return self.layout.window[1] - self._int(0, 64)
        # the end of the data area stays zero (the reset program's zero panels)
        return lo + self._int(0, max(0, size - ZERO_BYTES - nbytes - 1))

    # -- queue instructions (fields only; tokens are added by the block builder) --

    def _dma(self, store: bool) -> dict[str, Any]:
        mem = self._pick(["scratchpad"] * 6 + ["bias", "scale"])
        rows = self._int(1, 4) if self._p(0.9) else self._int(0, 40)
        row_bytes = self._int(1, 48) if self._p(0.95) else self._int(0, 600)
        dram_stride = self._pick([row_bytes, row_bytes, self._int(0, 96)])
        sram_stride = self._pick([0, 0, self._int(1, 96)])
        if mem == "scratchpad":
            sram: int | Addr = self._spad()
            if self._p(0.15):
                sram = Addr(imm=self._int(0, 64), ar=self._pick(self.spad_ars),
                            inc=self._p(0.5))
        else:
            entries = (self.config.bias_entries if mem == "bias" else self.config.scale_entries)
            sram = self._int(0, entries - 1) if self._p(0.95) else entries - 1
        dram: int | Addr = self._dram(max(row_bytes, (rows - 1) * dram_stride + row_bytes))
        if self._p(0.2):
            dram = Addr(imm=self._int(0, 256), ar=self._pick(self.dram_ars), inc=self._p(0.5))
        return {"kind": "store" if store else "load", "dram": dram, "sram": sram,
                "row_bytes": row_bytes, "rows": rows, "dram_stride": dram_stride,
                "sram_stride": sram_stride, "mem": mem}

    def _matmul(self) -> dict[str, Any]:
        fmt = WeightFormat.BF16 if self._p(0.7) else self._pick(list(WeightFormat))
        block = self.config.quant_block
        k = self._int(1, 24) if fmt is WeightFormat.BF16 else self._pick([block, 2 * block])
        if self._p(0.05):
            k = self._int(0, 200)
        slots = self.rng.permutation(self.rows // self.slot_rows - 1)
        bias_mode = self._pick(list(BiasMode))
        rowmax = self._pick([RowMaxMode.NONE] * 3 + [RowMaxMode.INIT, RowMaxMode.UPDATE])
        out_fmt = self._pick(list(ElemFormat))
        layout = self._pick([OutLayout.ROW_MAJOR] * 2 + [OutLayout.A_PANEL, OutLayout.B_PANEL])
        m_tiles, n_tiles = self._int(1, 3), self._int(1, 3)
        big_n = n_tiles * self.config.cols * (2 if out_fmt is ElemFormat.BF16 else 4)
        pitch = self._pick([0, 0, big_n, big_n + self._int(1, 20), self._int(1, 64)])
        acc_in, acc_out = self._p(0.3), self._p(0.4)
        return {"kind": "matmul", "a": self._spad(int(slots[0])), "b": self._spad(int(slots[1])),
                "dst": self._spad(int(slots[2])), "rmax": self._spad(int(slots[3])), "k": k,
                "m_tiles": m_tiles if self._p(0.97) else 0, "n_tiles": n_tiles,
                "acc": self._int(0, 16) if self._p(0.95) else self._int(0, 127),
                "acc_in": acc_in, "acc_out": acc_out, "wb": self._p(0.9) or not acc_out,
                "b_fmt": fmt, "qscale": self._int(0, 64), "bias_mode": bias_mode,
                "bias": self._int(0, 64), "epi": self._int(0, 15), "rowmax": rowmax,
                "out_fmt": out_fmt, "out_layout": layout,
                "dst_pitch": pitch if layout is OutLayout.ROW_MAJOR else 0}

    def _vector(self) -> dict[str, Any]:
        op = self._pick(list(VecOp))
        slots = self.rng.permutation(self.rows // self.slot_rows - 1)
        length = self._int(1, 20) if self._p(0.95) else self._int(0, 300)
        qfmt = WeightFormat.BF16
        if op in (VecOp.QUANTIZE, VecOp.DEQUANTIZE):
            qfmt = self._pick(list(WeightFormat)[1:]) if self._p(0.95) else WeightFormat.BF16
            length = self.config.quant_block * self._int(1, 2) if self._p(0.9) else length
        src0, src1, dst = (self._spad(int(s)) for s in slots[:3])
        if op in _ELEMENTWISE and self._p(0.2):
            dst = src0  # in place
        return {"kind": "vector", "op": op, "dst": dst, "length": length,
                "rows": self._int(1, 4) if self._p(0.95) else self._int(0, 9),
                "src0": src0, "src1": src1,
                "src0_stride": self._pick([0, 0, self._int(1, 12)]),
                "src1_stride": self._pick([0, 0, self._int(1, 12)]),
                "dst_stride": self._pick([0, 0, self._int(1, 12)]),
                "src0_fmt": self._pick(list(ElemFormat)), "src1_fmt": self._pick(list(ElemFormat)),
                "dst_fmt": self._pick(list(ElemFormat)), "bcast": self._pick(list(VecBcast)),
                "imm": self._imm(), "epi": self._int(0, 15),
                "accumulate": op in (VecOp.RSUM, VecOp.RMAX, VecOp.RSUMSQ) and self._p(0.3),
                "qfmt": qfmt, "qscale": self._int(0, 64)}

    def _queue_op(self) -> dict[str, Any]:
        r = self.rng.random()
        if r < 0.25:
            return self._dma(store=False)
        if r < 0.45:
            return self._dma(store=True)
        if r < 0.7:
            return self._matmul()
        return self._vector()

    def _emit_queue(self, p: Program, op: dict[str, Any], wait: int, signal: int) -> None:
        fields = {k: v for k, v in op.items() if k != "kind"}
        kind = op["kind"]
        override = None
        if self._p(0.05):  # a runtime field from a GPR (value set by an earlier ALU op)
            opcode = {"load": Opcode.LOAD, "store": Opcode.STORE, "matmul": Opcode.MATMUL,
                      "vector": Opcode.VECTOR}[kind]
            paths = [f.path for f in self.isa.overridable(opcode)]
            override = (self._pick(paths), gpr(self._pick(self.data_gprs)))
        if kind in ("load", "store"):
            getattr(p, kind)(wait=wait, signal=signal, override=override, **fields)
        elif kind == "matmul":
            p.matmul(wait=wait, signal=signal, override=override, **fields)
        else:
            p.vector(fields.pop("op").name.lower(), wait=wait, signal=signal,
                     override=override, **fields)

    # -- dispatcher instructions --

    def _scalar(self, p: Program) -> None:
        r = self.rng.random()
        if r < 0.45:
            op = self._pick(list(AluOp))
            rd = gpr(self._pick(self.data_gprs))
            rs1 = gpr(self._pick([0, *self.data_gprs]))
            if self._p(0.6):
                small = self._int(0, 64)
                src2: Any = self._pick([small, small, self._int(0, 0xFFFFFFFF), 0x80000000])
            else:
                src2 = gpr(self._pick([0, *self.data_gprs]))
            p.alu(op, rd, rs1, src2)
        elif r < 0.65:
            ar = self._int(1, self.config.address_registers - 1)
            if ar in self.dram_ars:
                base = self.layout.data + self._int(0, self.layout.data_bytes // 2)
                step = self._pick([0, self._int(1, 256), -self._int(1, 64)])
            else:
                base, step = self._int(0, self.rows // 2), self._pick([0, 1, 4, -1])
            if self._p(0.8):
                p.ar_set(ar, base, step & 0xFFFFFFFF)
            else:
                getattr(p, self._pick(["ar_set_gpr", "ar_add_gpr", "ar_inc_gpr"]))(
                    ar, gpr(self._pick([0, *self.data_gprs])), self._int(0, 64))
        elif r < 0.75:
            act = self._pick(list(ActKind))
            params = [self._pick([0.0, 1.0, -1.0, 0.5, 1.702, 2.0]) for _ in range(4)]
            if act is ActKind.CLAMP:
                params[:2] = sorted(params[:2])
            p.epi(self._int(0, 15), act, scale=self._pick([1.0, 0.5, -2.0, 0.125]), a=params[0],
                  b=params[1], c=params[2], d=params[3])
        elif r < 0.85:
            p.trace(self._int(0, (1 << 24) - 1))
        elif r < 0.92:
            p.nop()
        else:
            op = self._pick([SyncOp.SET, SyncOp.CLEAR, SyncOp.FENCE, SyncOp.FENCE, SyncOp.WAIT])
            mask = self._int(0, 15)
            # WAIT on no flag passes; on some flag it may time out (SYNC_TIMEOUT)
            if op is SyncOp.WAIT and self._p(0.5):
                mask = 0
            p.sync(op, mask, value=self._int(0, 15), timeout=self._int(0, 300))

    # -- whole programs --

    def _block(self, p: Program) -> None:
        """A straight-line block of scalars and queue instructions, then FENCE.

        Consecutive queue instructions on different queues are chained: the earlier one
        signals the later one's queue and the later one waits, so the block runs in program
        order (same-queue neighbours are ordered by their queue)."""
        items: list[dict[str, Any] | None] = [
            None if self._p(0.4) else self._queue_op() for _ in range(self._int(1, 5))]
        ops = [op for op in items if op is not None]
        tokens = {id(op): [0, 0] for op in ops}  # wait, signal
        for first, second in itertools.pairwise(ops):
            qa, qb = _QUEUE_OF[first["kind"]], _QUEUE_OF[second["kind"]]
            if qa is not qb:
                tokens[id(first)][1] |= 1 << qb.value
                if self._p(0.97):  # noise: rarely forget the wait (possible race)
                    tokens[id(second)][0] |= 1 << qa.value
        for item in items:
            if item is None:
                self._scalar(p)
                continue
            wait, signal = tokens[id(item)]
            others = [x for x in Queue if x is not _QUEUE_OF[item["kind"]]]
            if self._p(0.02):  # noise: a wait nobody signalled (TOKEN_UNDERFLOW)
                wait |= 1 << self._pick(others).value
            if self._p(0.01):  # noise: a token no one waits for
                signal |= 1 << self._pick(others).value
            self._emit_queue(p, item, wait, signal)
        p.fence()

    def valid(self, blocks: int | None = None) -> Program:
        """A valid-looking program of ``blocks`` blocks (random if None), ending in HALT.

        Forward jumps land and counted loops (1…3 iterations, at most ``LOOP_GPRS`` deep,
        counters in the top GPRs) open and close only between blocks; no jump enters or
        leaves a loop body."""
        p = Program(self.config)
        # address registers: DRAM ones into the data area, scratchpad ones to small rows
        for ar in self.dram_ars:
            p.ar_set(ar, self.layout.data + self._int(0, self.layout.data_bytes // 2),
                     self._int(0, 256))
        for ar in self.spad_ars:
            p.ar_set(ar, self._int(0, self.rows // 2), self._pick([0, 1, 4]))
        labels = 0
        open_jumps: list[str] = []  # forward jumps of the innermost open loop (or top level)
        stack: list[tuple[Any, list[str]]] = []  # open loops: (context, outer open_jumps)

        def land_all() -> None:
            for name in open_jumps:
                p.label(name)
            open_jumps.clear()

        for _ in range(self._int(2, 8) if blocks is None else blocks):
            while open_jumps and self._p(0.5):
                p.label(open_jumps.pop())
            r = self.rng.random()
            if r < 0.15:
                labels += 1
                name = f"fwd{labels}"
                cond = self._pick(list(JumpCond))
                rs = gpr(self._pick(self.data_gprs)) if cond is not JumpCond.ALWAYS else None
                p.jump(name, cond, rs)
                open_jumps.append(name)
            elif r < 0.3 and len(stack) < self.LOOP_GPRS:
                ctx = p.loop(self._int(1, 3), counter=gpr(self.config.gprs - 1 - len(stack)))
                ctx.__enter__()
                stack.append((ctx, open_jumps))
                open_jumps = []
            elif r < 0.4 and stack:
                land_all()
                ctx, open_jumps = stack.pop()
                ctx.__exit__(None, None, None)
            self._block(p)
        while stack:
            land_all()
            ctx, open_jumps = stack.pop()
            ctx.__exit__(None, None, None)
        land_all()
        p.halt(self._int(0, 0xFFFF))
        return p

    def mutate(self, blob: bytes) -> bytes:
        """``blob`` with 1…4 mutations: bit flips, field rewrites, word swaps/duplicates."""
        words = [int.from_bytes(blob[i:i + INSTRUCTION_BYTES], "little")
                 for i in range(0, len(blob), INSTRUCTION_BYTES)]
        for _ in range(self._int(1, 4)):
            i = self._int(0, len(words) - 1)
            r = self.rng.random()
            if r < 0.4:  # flip 1…3 bits anywhere
                for _ in range(self._int(1, 3)):
                    words[i] ^= 1 << self._int(0, 255)
            elif r < 0.8:  # rewrite one decoded field with a random value of its width
                op = words[i] & 0x3F
                try:
                    fields = self.isa.fields(Opcode(op))
                except ValueError:
                    continue
                f = self._pick(fields[1:]) if len(fields) > 1 else fields[0]
                value = self._pick([0, 1, (1 << f.width) - 1, self._int(0, (1 << f.width) - 1)])
                mask = ((1 << f.width) - 1) << f.offset
                words[i] = words[i] & ~mask | value << f.offset
            elif r < 0.9:  # duplicate a word (shifts everything after it)
                words.insert(i, words[i])
            elif len(words) > 1:  # drop a word
                del words[i]
        return b"".join(w.to_bytes(INSTRUCTION_BYTES, "little") for w in words)

    def garbage(self, count: int | None = None) -> bytes:
        """``count`` random words: a third raw random bits (with a defined opcode half of
        the time), two thirds a defined opcode with every field random in its width and the
        reserved bits zero (these often decode: random but well-formed instructions)."""
        out = []
        for _ in range(self._int(1, 12) if count is None else count):
            opcode = self._pick(list(Opcode))
            if self._p(0.33):
                word = int.from_bytes(self.rng.bytes(INSTRUCTION_BYTES), "little")
                if self._p(0.5):
                    word = word & ~0x3F | opcode.value
            else:
                word = opcode.value
                for f in self.isa.fields(opcode)[1:]:
                    top = (1 << f.width) - 1
                    value = self._pick([0, 0, 1, top, self._int(0, top)])
                    if f.path in ("wait", "signal", "ovr_field") and self._p(0.7):
                        value = 0  # fewer instant token / override errors
                    if f.kind == "enum" and self._p(0.8):
                        value = self._pick(list(f.enum)).value
                    if f.limit is not None and self._p(0.8):
                        value %= f.limit
                    word |= value << f.offset
            out.append(word.to_bytes(INSTRUCTION_BYTES, "little"))
        return b"".join(out)

    def data_image(self) -> np.ndarray:
        """Initial bytes of the data area: bf16 values of all magnitudes, special values and raw
        bytes; the last :data:`ZERO_BYTES` are zero (see :func:`reset_program`)."""
        size = self.layout.data_bytes
        vals = (self.rng.standard_normal(size // 2) * 3).astype(np.float32)
        bits = (vals.view(np.uint32) >> 16).astype(np.uint16)
        special = np.array([0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0x0001, 0x7F7F], np.uint16)
        pick = self.rng.random(bits.size) < 0.03
        bits[pick] = special[self.rng.integers(0, special.size, int(pick.sum()))]
        img = bits.view(np.uint8).copy()
        raw = self.rng.random(img.size) < 0.05
        img[raw] = self.rng.integers(0, 256, int(raw.sum()), dtype=np.uint8)
        img[-ZERO_BYTES:] = 0
        return img

    def case(self, seed: int, kind: str) -> Case:
        """One case of ``kind`` (see :data:`KINDS`)."""
        if kind == "valid":
            blob = self.valid().encode()
        elif kind == "mutated":
            blob = self.mutate(self.valid().encode())
        elif kind == "garbage":
            blob = self.garbage()
        else:
            raise ValueError(f"unknown case kind {kind!r}; allowed: {', '.join(KINDS)}")
        gprs = {i: int(self.rng.integers(0, 1 << 32)) if self._p(0.2) else self._int(0, 64)
                for i in range(1, self.config.gprs)}
        return Case(seed, kind, blob, self.data_image(), gprs, self._int(0, 15))


@dataclasses.dataclass(frozen=True)
class Case:
    """One fuzz case: the program image, the data-area image, GPR arguments, sync flags."""

    seed: int
    kind: str
    blob: bytes
    data: np.ndarray
    gprs: dict[int, int]
    sync_flags: int


def cases(config: EngineConfig, layout: Layout, seeds, kinds=KINDS) -> Iterator[Case]:
    """One case of each kind per seed (seeded ``numpy`` generators: reproducible)."""
    for seed in seeds:
        for i, kind in enumerate(kinds):
            rng = np.random.default_rng([seed, i])
            yield Generator(config, layout, rng).case(seed, kind)
