"""``VectorUnit``: L fp32 lanes with element-wise ops, functions, cross-lane reductions and
running accumulation across beats (DESIGN.md §3, docs/numerics.md §2, §4, §6).

One beat is L fp32 values. Every beat runs through the same four stages, so all beats take
the same number of cycles and leave in order on one output stream::

    A, B ─► binary op ─► function ─► lane reduction ─► accumulate ─► out
            (4 cycles)   (Lf)        (Lr)              (4 cycles)

* **binary op** (``VectorOp``), per lane: ``COPY`` (A with the storage rule: FTZ, canonical
  NaN), ``ADD``, ``SUB``, ``MUL``, ``MAX``, ``MIN``; golden ``fp.f32_add / f32_sub / f32_mul
  / f32_max / f32_min`` and ``fp.ftz32`` for COPY.
* **function** (``VectorFn``), per lane, on the binary op's result: ``NONE``, ``EXP``,
  ``RECIPROCAL``, ``RSQRT``; golden ``transcendental.exp / reciprocal / rsqrt``. So
  ``exp(a - b)`` (softmax) or ``rsqrt(a·s)`` are one pass; a lone ``exp(a)`` is
  ``COPY`` + ``EXP``.
* **lane reduction** (``Reduce``) of the L function results: ``SUM`` (``MultiInputAdder``, golden
  ``reduce.multi_add(x, guard_bits=config.reduce_guard_bits)``: one rounding for all L lanes) or
  ``MAX`` (``MaxTree``, golden ``reduce.max_reduce``), over the lanes not flagged in
  ``exclude`` (an excluded lane is replaced by the reduction's identity, -0 for SUM and -Inf
  for MAX, which gives exactly the reduction of the other lanes; all lanes excluded gives
  -0 / -Inf).
* **accumulate** (optional, ``accumulate = 1``): a running value across beats, kept per
  *chain* (``chains`` = ``isa.VECTOR_REDUCE_SLOTS`` = 4 independent accumulators). SUM:
  ``acc = f32_add(acc, s)`` in beat order, starting on a ``first`` beat from ``f32_add(+0, s)``
  (``sum_init="zero"``) or from ``s`` itself (``sum_init="value"``, the RSUM slots of
  docs/isa.md; the two differ only for s = -0); MAX: ``acc = f32_max(acc, m)``, starting
  from the beat's own max. Every beat reports the running value after it; the beat
  flagged ``last`` (passed through) carries the row's result. This is the definition a
  reduction longer than one beat has in the kernels (numerics.md §4: ``multi_add`` per beat,
  sequential ``f32_add`` across beats); docs/isa.md's RSUM uses 4 chains, beat j of a row on
  chain j mod 4, and combines the 4 results with one more ``multi_add`` beat. A chain is one
  fp32 register: it is +0 after reset, and a beat that is not ``first`` continues whatever
  its chain holds.

Operand B of the binary op is chosen per beat by ``b_src`` (``BSource``): ``SELF`` (B = A,
e.g. ``MUL`` squares; the B stream is not used), ``STREAM`` (lane k of the B stream),
``LANE0`` (lane 0 of the B stream broadcast to every lane) or ``SCALAR`` (the ``scalar``
port broadcast; the B stream is not used).

All values are fp32 bit patterns; bf16 storage is converted outside the unit (widening is a
16-bit shift, narrowing is ``Fp32ToBf16`` on the store path).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from amaranth.hdl import Array, EnableInserter, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import EngineConfig
from ..isa import VECTOR_REDUCE_SLOTS
from ..numerics.fp import F32_CANONICAL_NAN
from ._delay import delay
from .fp import Fp32Adder, Fp32Compare, Fp32Multiplier, MaxTree
from .multi_add import MultiInputAdder
from .transcendental import ExpDatapath, ReciprocalDatapath, RsqrtDatapath

__all__ = [
    "FUNCTIONS",
    "SUM_INITS",
    "BSource",
    "Reduce",
    "VectorFn",
    "VectorLane",
    "VectorOp",
    "VectorUnit",
]

_POS_ZERO = 0x00000000
_NEG_ZERO = 0x80000000
_NEG_INF = 0xFF800000
_SIGN = 0x80000000

# Latencies of the building blocks chosen here (they are constructor arguments of fp/).
_ADD_LATENCY = 4  # the prototype PE's adder configuration (research/prototype-pe.md)
_MUL_LATENCY = 4  # 3 + an input register, so it lines up with the adder for free
_CMP_LATENCY = 2
_ACC_LATENCY = _ADD_LATENCY  # the running-sum adder
# One chain per interleaved partial sum of the ISA's RSUM (docs/isa.md); with at least as many
# chains as accumulator stages, chains used round-robin never wait.
assert VECTOR_REDUCE_SLOTS >= _ACC_LATENCY
#: ``VectorUnit(sum_init=...)``: how a ``first`` SUM beat starts its chain.
SUM_INITS = ("zero", "value")


class VectorOp(enum.Enum, shape=3):
    """The binary (element-wise) stage of a beat."""

    COPY = 0  #: A (storage rule applied: subnormal → ±0, NaN → canonical)
    ADD = 1  #: f32_add(A, B)
    SUB = 2  #: f32_sub(A, B)
    MUL = 3  #: f32_mul(A, B)
    MAX = 4  #: f32_max(A, B)
    MIN = 5  #: f32_min(A, B)
    # 6 and 7 are unused (the lane computes MAX for them).


class VectorFn(enum.Enum, shape=2):
    """The function applied to the binary op's result."""

    NONE = 0
    EXP = 1  #: transcendental.exp
    RECIPROCAL = 2  #: transcendental.reciprocal
    RSQRT = 3  #: transcendental.rsqrt


class BSource(enum.Enum, shape=2):
    """Where operand B of the binary op comes from."""

    SELF = 0  #: B = A (no B beat is consumed)
    STREAM = 1  #: lane k of the B stream
    LANE0 = 2  #: lane 0 of the B stream, broadcast
    SCALAR = 3  #: the ``scalar`` port, broadcast (no B beat is consumed)


class Reduce(enum.Enum, shape=2):
    """The cross-lane reduction of a beat."""

    NONE = 0  #: ``reduce`` output is +0
    SUM = 1  #: reduce.multi_add
    MAX = 2  #: reduce.max_reduce


#: Function units a ``VectorUnit`` can be built with (constructor argument ``functions``).
FUNCTIONS: tuple[str, ...] = ("exp", "reciprocal", "rsqrt")
_FUNCTION_CODE = {"exp": VectorFn.EXP, "reciprocal": VectorFn.RECIPROCAL, "rsqrt": VectorFn.RSQRT}


_DATAPATHS = {"exp": ExpDatapath, "reciprocal": ReciprocalDatapath, "rsqrt": RsqrtDatapath}


def _check_functions(owner: str, functions) -> tuple[str, ...]:
    if isinstance(functions, str) or not isinstance(functions, Iterable):
        raise TypeError(
            f"{owner}: functions must be a collection of names from {FUNCTIONS}, "
            f"got {functions!r}"
        )
    names = tuple(functions)
    unknown = [n for n in names if n not in FUNCTIONS]
    if unknown:
        raise ValueError(f"{owner}: unknown function(s) {unknown}; allowed: {FUNCTIONS}")
    if len(set(names)) != len(names):
        raise ValueError(f"{owner}: functions lists a name twice: {names}")
    return tuple(n for n in FUNCTIONS if n in names)


def _check_function_lanes(functions, lanes: int) -> dict[str, int]:
    """``functions`` of a VectorUnit as {name: number of lanes that have the unit}."""
    if isinstance(functions, Mapping):
        names = _check_functions("VectorUnit", functions.keys())
        counts = {}
        for name in names:
            count = functions[name]
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= lanes:
                raise ValueError(
                    f"VectorUnit: functions[{name!r}] must be a lane count in 0…{lanes}, "
                    f"got {count!r}"
                )
            if count:
                counts[name] = count
        return counts
    return dict.fromkeys(_check_functions("VectorUnit", functions), lanes)


class VectorLane(wiring.Component):
    """One fp32 lane: the binary op, then the function, as a fixed-latency pipeline.

    Golden model per element: ``fn(op(a, b))`` with the ``fp`` / ``transcendental`` models
    listed at :class:`VectorOp` and :class:`VectorFn`. No handshake (the convention of
    ``rtl.fp``): one operand set per cycle, the result ``latency`` cycles later; stall it with
    ``EnableInserter``. The selectors travel down the lane with their operands, so they may
    change every cycle.

    Parameters
    ----------
    functions:
        Function units to build (a subset of :data:`FUNCTIONS`); a function that was not
        built gives the canonical NaN.

    Ports
    -----
    a, b : In(32)
        fp32 operands (``b`` is ignored by ``COPY``).
    op : In(VectorOp)
    fn : In(VectorFn)
    result : Out(32)
        ``fn(op(a, b))``, ``latency`` cycles later.

    Timing
    ------
    ``latency = 4 + Lf``: the binary op takes 4 cycles whatever the op (``Fp32Adder`` 4,
    ``Fp32Multiplier`` 4, ``Fp32Compare`` 2 + 2 delay); the functions are padded to the
    deepest one built, Lf (exp 11, reciprocal 11, rsqrt 16; 0 with none), and ``NONE`` is a
    delay line of that depth.
    """

    def __init__(self, *, functions: Iterable[str] = FUNCTIONS):
        self.functions = _check_functions("VectorLane", functions)
        # Built here (not in elaborate) so that their latencies are known up front.
        self._units = {name: _DATAPATHS[name]() for name in self.functions}
        self.binop_latency = _ADD_LATENCY
        self.function_latency = max((u.latency for u in self._units.values()), default=0)
        self.latency = self.binop_latency + self.function_latency
        super().__init__(
            {"a": In(32), "b": In(32), "op": In(VectorOp), "fn": In(VectorFn), "result": Out(32)}
        )

    def elaborate(self, platform):
        m = Module()
        a, b, op = self.a, self.b, self.op

        # ---- binary op, 4 cycles.
        add, mul = Fp32Adder(latency=_ADD_LATENCY), Fp32Multiplier(latency=_MUL_LATENCY)
        cmp = Fp32Compare(latency=_CMP_LATENCY)
        m.submodules.add, m.submodules.mul, m.submodules.cmp = add, mul, cmp
        m.d.comb += [
            add.a.eq(a),
            add.b.eq(b ^ Mux(op == VectorOp.SUB, _SIGN, 0)),  # a - b = a + (-b), as fp.f32_sub
            mul.a.eq(a),
            mul.b.eq(b),
            cmp.a.eq(a),
            # COPY is max(A, A): the comparator's flush and NaN canonicalisation.
            cmp.b.eq(Mux(op == VectorOp.COPY, a, b)),
        ]
        op_cmp = delay(m, op, _CMP_LATENCY, "op_cmp")
        minmax = Mux(op_cmp == VectorOp.MIN, cmp.min, cmp.max)
        minmax = delay(m, minmax, self.binop_latency - _CMP_LATENCY, "minmax")
        op_bin = delay(m, op_cmp, self.binop_latency - _CMP_LATENCY, "op_bin")
        binop = Signal(32)
        m.d.comb += binop.eq(
            Mux(
                (op_bin == VectorOp.ADD) | (op_bin == VectorOp.SUB),
                add.result,
                Mux(op_bin == VectorOp.MUL, mul.result, minmax),
            )
        )

        # ---- function, Lf cycles.
        lf = self.function_latency
        fn = delay(m, delay(m, self.fn, self.binop_latency, "fn_bin"), lf, "fn_out")
        result = Mux(fn == VectorFn.NONE, delay(m, binop, lf, "bypass"), F32_CANONICAL_NAN)
        for name, unit in self._units.items():
            m.submodules[name] = unit
            m.d.comb += unit.x.eq(binop)
            out = delay(m, unit.result, lf - unit.latency, name)
            result = Mux(fn == _FUNCTION_CODE[name], out, result)
        m.d.comb += self.result.eq(result)
        return m


class VectorUnit(wiring.Component):
    """L fp32 lanes, cross-lane SUM/MAX reductions and per-chain running accumulation.

    See the module docstring for the stages and their golden models. The lanes are L
    :class:`VectorLane` s; operand B is selected per beat before them.

    Parameters
    ----------
    config:
        ``lanes`` (L) and ``reduce_guard_bits`` (G of the SUM tree) are used.
    functions:
        Which function units to build: a subset of :data:`FUNCTIONS` (in every lane; default
        all), or a mapping ``{name: n}`` that builds the unit in lanes 0 … n-1 only. A lane
        without the requested function gives the canonical NaN, so misuse is visible.
        Leaving all out removes the function stage (``Lf = 0``). Area: reciprocal and rsqrt
        are 26 of a lane's 37 DSP slices (Yosys estimate, xc7), and kernels mostly apply
        them to one scalar per row (1/sum, rsqrt(mean square)); with L = 16,
        ``{"exp": 16, "reciprocal": 1, "rsqrt": 1}`` keeps softmax and RMSNorm at full
        speed with 202 DSP instead of 592 (30.8 K LUT).
    sum_init:
        ``"zero"`` (default) or ``"value"``: how a ``first`` SUM beat starts its chain (see the
        module docstring).

    Ports
    -----
    a : In(stream.Signature(a_layout))
        One beat per transfer. ``a_layout`` fields: ``data`` (ArrayLayout(32, L), operand A),
        ``op`` (VectorOp), ``fn`` (VectorFn), ``b_src`` (BSource), ``reduce`` (Reduce),
        ``accumulate``, ``first``, ``last`` (1 bit each), ``chain`` (``chain_bits``) and
        ``exclude`` (L bits: lanes left out of the reduction).
    b : In(stream.Signature(ArrayLayout(32, L)))
        Operand B. One B beat is consumed together with each A beat whose ``b_src`` is
        ``STREAM`` or ``LANE0``, and none otherwise; such an A beat waits for its B beat.
    scalar : In(32)
        Broadcast operand for ``b_src = SCALAR``, sampled when the A beat is accepted.
    o : Out(stream.Signature(o_layout))
        One result per A beat, in order. ``o_layout``: ``data`` (ArrayLayout(32, L), the
        function results), ``reduce`` (32: the beat's reduction, or the chain's running value
        with ``accumulate``; +0 with ``Reduce.NONE``), and ``first``, ``last``, ``chain``
        passed through.

    Timing
    ------
    ``latency = 4 + Lf + Lr + 4`` cycles from the A transfer to the result, whatever the op:
    ``4 + Lf`` is the lane (:class:`VectorLane`; Lf = 16 with all functions, set by rsqrt),
    ``Lr = max(MultiInputAdder(L).latency, MaxTree(L).latency)`` (at the time of writing 6
    for L = 2 and 4, 8 for L = 16) and 4 is the accumulator: 30 cycles for L = 4 and 32 for
    L = 16 with all functions (the ``latency`` attribute is authoritative).
    Throughput is one beat per cycle, with one exception: an ``accumulate`` beat that is not
    ``first`` waits while an earlier beat of the same chain is still inside the 4-cycle
    accumulator (a read-after-write hazard; the result is forwarded the cycle it appears).
    So one chain accumulates a beat every 4 cycles and ``chains`` = 4 chains used round-robin
    (e.g. 4 rows interleaved beat by beat) accumulate one beat per cycle.

    Flow control: the pipeline holds as a whole while ``o.valid & ~o.ready``; ``a.ready``
    depends combinationally on ``o.ready`` (and on ``b.valid`` for a beat that needs B), and
    there is no skid buffer. The B stream's payload is read only in the transfer cycle.

    Attributes
    ----------
    lanes, chains, chain_bits, latency, function_latency, reduce_latency, functions,
    function_lanes ({name: lanes that have it}), a_layout, o_layout.
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        functions: Iterable[str] | Mapping[str, int] = FUNCTIONS,
        sum_init: str = "zero",
    ):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"VectorUnit needs an EngineConfig, got {type(config).__name__}")
        self.config = config
        self.lanes = lanes = config.lanes
        #: {function name: number of lanes (from lane 0) that have it}
        self.function_lanes = _check_function_lanes(functions, lanes)
        self.functions = tuple(self.function_lanes)
        if sum_init not in SUM_INITS:
            raise ValueError(
                f"VectorUnit: sum_init must be one of {SUM_INITS}, got {sum_init!r}"
            )
        self.sum_init = sum_init
        self.chains = VECTOR_REDUCE_SLOTS
        self.chain_bits = ceil_log2(self.chains)

        # Built here (not in elaborate) so that their latencies are known up front.
        lane_functions = [
            [name for name, count in self.function_lanes.items() if k < count]
            for k in range(lanes)
        ]
        # Lane 0 has every function that is built, so it is the deepest; shallower lanes
        # get a delay line on their output.
        self._lanes = [VectorLane(functions=names) for names in lane_functions]
        self.function_latency = self._lanes[0].function_latency
        self._sum_tree = MultiInputAdder.from_config(config)
        self._max_tree = MaxTree(lanes)
        self.binop_latency = self._lanes[0].binop_latency
        self.reduce_latency = max(self._sum_tree.latency, self._max_tree.latency)
        self.accumulate_latency = _ACC_LATENCY
        self.latency = (
            self.binop_latency + self.function_latency + self.reduce_latency + _ACC_LATENCY
        )

        lanes_layout = data.ArrayLayout(32, lanes)
        self.a_layout = data.StructLayout(
            {
                "data": lanes_layout,
                "op": VectorOp,
                "fn": VectorFn,
                "b_src": BSource,
                "reduce": Reduce,
                "accumulate": 1,
                "first": 1,
                "last": 1,
                "chain": self.chain_bits,
                "exclude": lanes,
            }
        )
        self.o_layout = data.StructLayout(
            {"data": lanes_layout, "reduce": 32, "first": 1, "last": 1, "chain": self.chain_bits}
        )
        super().__init__(
            {
                "a": In(stream.Signature(self.a_layout)),
                "b": In(stream.Signature(lanes_layout)),
                "scalar": In(32),
                "o": Out(stream.Signature(self.o_layout)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        # Two clock-enable domains. `front` (operand stages up to the reduction trees) also
        # stops on an accumulator hazard; `back` (accumulator and output) stops only when the
        # output is stalled, so an in-flight accumulation can finish and clear the hazard.
        front, back = Module(), Module()
        front_en, back_en, hazard = Signal(), Signal(), Signal()
        m.submodules.front = EnableInserter(front_en)(front)
        m.submodules.back = EnableInserter(back_en)(back)
        m.d.comb += [
            back_en.eq(~self.o.valid | self.o.ready),
            front_en.eq(back_en & ~hazard),
        ]

        # ---- input join: B is consumed with A only when the beat reads the B stream.
        a, b = self.a.payload, self.b.payload
        needs_b = (a.b_src == BSource.STREAM) | (a.b_src == BSource.LANE0)
        b_ok = ~needs_b | self.b.valid
        m.d.comb += [
            self.a.ready.eq(front_en & b_ok),
            self.b.ready.eq(front_en & self.a.valid & needs_b),
        ]
        meta_layout = data.StructLayout(
            {
                "reduce": Reduce,
                "accumulate": 1,
                "first": 1,
                "last": 1,
                "chain": self.chain_bits,
                "exclude": lanes,
            }
        )
        meta = Signal(meta_layout)
        m.d.comb += [getattr(meta, f).eq(getattr(a, f)) for f in meta_layout.members]
        valid = Signal()
        m.d.comb += valid.eq(self.a.valid & b_ok)

        # ---- stages 1 and 2: the lanes (binary op, function), 4 + Lf cycles.
        lf = self.function_latency
        fn_out = Signal(data.ArrayLayout(32, lanes))
        for k, lane in enumerate(self._lanes):
            front.submodules[f"lane{k}"] = lane
            front.d.comb += [
                lane.a.eq(a.data[k]),
                lane.b.eq(
                    Mux(
                        a.b_src == BSource.SCALAR,
                        self.scalar,
                        Mux(
                            a.b_src == BSource.LANE0,
                            b[0],
                            Mux(a.b_src == BSource.STREAM, b[k], a.data[k]),
                        ),
                    )
                ),
                lane.op.eq(a.op),
                lane.fn.eq(a.fn),
                fn_out[k].eq(delay(front, lane.result, lf - lane.function_latency, f"pad{k}")),
            ]
        meta_fn = delay(front, meta, self.binop_latency + lf, "meta_fn")

        # ---- stage 3: lane reductions, Lr cycles.
        lr = self.reduce_latency
        front.submodules.sum_tree = sum_tree = self._sum_tree
        front.submodules.max_tree = max_tree = self._max_tree
        for k in range(lanes):
            off = meta_fn.exclude[k]
            front.d.comb += [
                sum_tree.i.payload[k].eq(Mux(off, _NEG_ZERO, fn_out[k])),
                max_tree.inputs[k].eq(Mux(off, _NEG_INF, fn_out[k])),
            ]
        # The tree runs in lock-step with this pipeline (same clock enable); its own
        # handshake is tied off so its internal enable is always 1.
        front.d.comb += [sum_tree.i.valid.eq(1), sum_tree.o.ready.eq(1)]
        t_red = self.binop_latency + lf + lr
        # The lane mask is used up; the rest rides on to the accumulator.
        red_layout = data.StructLayout(
            {name: meta_layout.members[name] for name in meta_layout.members if name != "exclude"}
        )
        meta_red = Signal(red_layout)
        m.d.comb += [getattr(meta_red, f).eq(getattr(meta_fn, f)) for f in red_layout.members]
        meta_red = delay(front, meta_red, lr, "meta_red")
        valid_red = delay(front, valid, t_red, "valid_red", reset_less=False)
        lanes_red = delay(front, fn_out, lr, "lanes_red")
        total = delay(front, sum_tree.o.payload, lr - sum_tree.latency, "sum")
        largest = delay(front, max_tree.result, lr - max_tree.latency, "max")
        reduced = Signal(32)
        m.d.comb += reduced.eq(
            Mux(
                meta_red.reduce == Reduce.SUM,
                total,
                Mux(meta_red.reduce == Reduce.MAX, largest, _POS_ZERO),
            )
        )

        # ---- stage 4: accumulate across beats (back domain), 4 cycles.
        acc_on = meta_red.accumulate & (meta_red.reduce != Reduce.NONE)
        is_sum = meta_red.reduce == Reduce.SUM
        chain = meta_red.chain
        # In-flight bookkeeping of the accumulator pipe: stage j holds the beat that entered
        # it j cycles ago (1 … 4; stage 4's result is on the adder output right now).
        track_layout = data.StructLayout(
            {"valid": 1, "acc": 1, "sum": 1, "first": 1, "last": 1, "chain": self.chain_bits}
        )
        track_in = Signal(track_layout)
        m.d.comb += [
            track_in.valid.eq(valid_red & ~hazard),
            track_in.acc.eq(acc_on),
            track_in.sum.eq(is_sum),
            track_in.first.eq(meta_red.first),
            track_in.last.eq(meta_red.last),
            track_in.chain.eq(chain),
        ]
        track = [track_in]
        for j in range(1, _ACC_LATENCY + 1):
            reg = Signal(track_layout, name=f"acc_track{j}")
            back.d.sync += reg.eq(track[-1])
            track.append(reg)

        def same_chain(t):
            return t.valid & t.acc & (t.chain == chain)

        # Read-after-write hazard: a continuing beat needs its chain's previous result, which
        # is still in stages 1 … 3. (Stage 4's result is forwarded; a `first` beat reads
        # nothing, and in-order writes keep its own result the newest.)
        in_flight = same_chain(track[1])
        for j in range(2, _ACC_LATENCY):
            in_flight = in_flight | same_chain(track[j])
        m.d.comb += hazard.eq(valid_red & acc_on & ~meta_red.first & in_flight)

        last = track[_ACC_LATENCY]
        acc_regs = Array(Signal(32, name=f"acc_chain{c}") for c in range(self.chains))
        acc_result = Signal(32)
        previous = Mux(same_chain(last), acc_result, acc_regs[chain])
        back.submodules.acc_add = acc_add = Fp32Adder(latency=_ACC_LATENCY)
        start = _POS_ZERO if self.sum_init == "zero" else _NEG_ZERO
        back.submodules.acc_max = acc_max = Fp32Compare(latency=1)
        back.d.comb += [
            acc_add.a.eq(reduced),
            # A first beat adds +0 ("zero": f32_add(+0, s)) or -0, the identity ("value": s).
            acc_add.b.eq(Mux(meta_red.first, start, previous)),
            acc_max.a.eq(reduced),
            acc_max.b.eq(Mux(meta_red.first, _NEG_INF, previous)),  # max(-Inf, m) = m
        ]
        running_max = delay(back, acc_max.max, _ACC_LATENCY - 1, "acc_max")
        m.d.comb += acc_result.eq(Mux(last.sum, acc_add.result, running_max))
        with back.If(last.valid & last.acc):
            back.d.sync += acc_regs[last.chain].eq(acc_result)

        plain = delay(back, reduced, _ACC_LATENCY, "reduce_plain")
        lanes_out = delay(back, lanes_red, _ACC_LATENCY, "lanes_out")
        out = self.o.payload
        m.d.comb += [
            self.o.valid.eq(last.valid),
            out.data.eq(lanes_out),
            out.reduce.eq(Mux(last.acc, acc_result, plain)),
            out.first.eq(last.first),
            out.last.eq(last.last),
            out.chain.eq(last.chain),
        ]
        return m
