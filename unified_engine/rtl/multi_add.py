"""``MultiInputAdder``: the vector unit's n-input fp32 adder tree (golden: ``reduce.multi_add``).

One alignment, one integer adder tree, one normalisation and one rounding for all n inputs, so
the result is the same bits as ``unified_engine.numerics.reduce.multi_add(x, guard_bits=G)``
(see ``docs/numerics.md §4``), not a chain of two-input fp32 additions.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Cat, Const, EnableInserter, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import EngineConfig
from ..numerics.fp import F32_CANONICAL_NAN
from ..numerics.reduce import DEFAULT_GUARD_BITS, MAX_GUARD_BITS, multi_add_adder_width

__all__ = ["MAX_INPUTS", "MultiInputAdder"]

#: Largest fan-in accepted (the golden model's int64 adder then still has room for G = 24).
MAX_INPUTS = 1024

_SIG_BITS = 24  # fp32 significand with its hidden bit
_F32_POS_INF = 0x7F800000
_F32_NEG_INF = 0xFF800000
# Tree levels evaluated between two pipeline registers. An 8-bit compare-and-select or a
# ~30…40-bit carry chain is about 1.2…1.6 ns on Kintex-7 -2, so two of them plus routing fit
# a 200 MHz cycle; a third would not.
_LEVELS_PER_STAGE = 2


def _register(m: Module, value, name: str) -> Signal:
    """A register (in ``m``'s sync domain) that takes ``value`` every enabled cycle."""
    value = Value.cast(value)
    sig = Signal(value.shape(), name=name)
    m.d.sync += sig.eq(value)
    return sig


def _register_all(m: Module, values: Sequence, name: str) -> list[Signal]:
    return [_register(m, v, f"{name}{k}") for k, v in enumerate(values)]


def _tree_level(nodes: list, combine) -> list:
    """One level of a binary tree; an odd node out rides on to the next level unchanged."""
    out = [combine(nodes[k], nodes[k + 1]) for k in range(0, len(nodes) - 1, 2)]
    if len(nodes) % 2:
        out.append(nodes[-1])
    return out


def _adder_level(
    m: Module, nodes: list[Value], carries: list[Value], name: str
) -> tuple[list[Value], list[Value]]:
    """One level of the two's-complement adder tree; each adder also adds one of ``carries``.

    Nodes are raw two's-complement bit vectors; a sum is one bit wider than its wider operand,
    which is enough (a node over k addends holds a value in [-k·2**W, k·2**W)). Returns the
    new nodes and the carries still pending. The sums are named combinational signals, so
    that a sign extension in the next level reuses them instead of copying the expression.
    """
    out, pending = [], list(carries)
    for k in range(0, len(nodes) - 1, 2):
        a, b = nodes[k], nodes[k + 1]
        width = max(len(a), len(b)) + 1
        a, b = (Cat(v, v[-1].replicate(width - len(v))) for v in (a, b))  # sign-extend
        cin = pending.pop() if pending else Const(0, 1)
        # The carry-in rides on an extra low bit so that one carry chain is inferred.
        total = Signal(width, name=f"{name}_{k // 2}")
        m.d.comb += total.eq((Cat(Const(1, 1), a) + Cat(cin, b))[1 : width + 1])
        out.append(total)
    if len(nodes) % 2:
        out.append(nodes[-1])
    return out, pending


def _trailing_zeros(value: Value) -> Value:
    """Trailing-zero count of a non-zero ``value``: isolate the lowest 1 (``v & -v``), then
    encode its position (count bit b is the OR of the one-hot bits whose position has bit b).
    """
    lowest = (value & (~value + 1))[: len(value)]
    return Cat(
        *(
            Cat(*(lowest[p] for p in range(len(value)) if p >> b & 1)).any()
            for b in range(ceil_log2(len(value)))
        )
    )


def _leading_zeros(value: Value) -> Value:
    """Leading-zero count of a non-zero ``value`` as a balanced mux tree (log depth).

    The input is padded at the bottom with ones to a power of two, which does not change the
    count of a non-zero value; the count of zero is unspecified (callers test for zero).
    """
    width = len(value)
    padded = 1 << ceil_log2(width)
    if padded != width:
        value = Cat(Const(-1, unsigned(padded - width)), value)

    def tree(bits: Value) -> Value:
        # Count of a power-of-two-wide slice (log2(len) bits). The all-zero test of the upper
        # half is a flat OR, not taken from the recursion, so no subexpression is duplicated
        # (the simulator expands expression trees; a shared one would grow exponentially).
        if len(bits) == 1:
            return Const(0, unsigned(0))
        half = len(bits) // 2
        hi_zero = ~bits[half:].any()
        return Cat(Mux(hi_zero, tree(bits[:half]), tree(bits[half:])), hi_zero)

    return tree(value)


class MultiInputAdder(wiring.Component):
    """Sum of ``n`` fp32 values per cycle with one normalisation and one rounding.

    Golden model: ``reduce.multi_add(x, guard_bits=guard_bits)``, bit for bit: FTZ inputs;
    every significand aligned to the largest exponent in a window of 24 + G bits with a
    per-addend sticky jam; the signed aligned integers summed exactly; one round to nearest
    even; a result below 2**-126 flushed to a signed zero, a biased exponent of 255 or more
    ±Inf. Any NaN or both infinities give the canonical NaN, otherwise an Inf input gives that
    Inf; an exact zero sum is +0 unless every input is -0.

    Parameters
    ----------
    n:
        Number of inputs, 1…``MAX_INPUTS`` (need not be a power of two).
    guard_bits:
        G, the window bits below an aligned significand's LSB, 0…24 (default 3). The engine
        uses ``EngineConfig.reduce_guard_bits`` (see ``from_config``).

    Ports
    -----
    i : In(stream.Signature(ArrayLayout(32, n)))
        n fp32 bit patterns per transfer.
    o : Out(stream.Signature(32))
        Their sum, one fp32 bit pattern per input transfer, in order.

    Pipeline (one register after each step; L = ceil(log2 n) tree levels)
    ----------------------------------------------------------------------
    1. decode (FTZ, special flags) and the max-exponent tree, 2 levels per stage:
       ``max(1, ceil(L / 2))`` stages;
    2. align: ``emax - E``, right shift in the (24 + G)-bit window, sticky jam (from the
       significand's trailing-zero count, beside the shifter), ones' complement of a negative
       addend: 1 stage;
    3. the integer adder tree, 2 levels per stage: ``ceil(L / 2)`` stages; it is
       ``multi_add_adder_width(n, G)`` bits wide at its root, and the +1s that complete the
       negations ride on the adders' carry-ins;
    4. absolute value (taking the one remaining +1) and leading-zero count: 1 stage;
    5. normalising left shift, round and sticky bits: 1 stage;
    6. RNE increment, exponent, range checks and specials mux: 1 stage (the output register).

    ``latency`` (an attribute) is the sum: 6 cycles for n = 2 or 4, 8 for n = 8 or 16.

    Flow control: a transfer on ``i`` produces one on ``o`` exactly ``latency`` cycles later
    when ``o`` is never stalled, so the unit accepts one input every cycle (full throughput).
    Back-pressure stalls the whole pipeline: every register, the output register included,
    holds while ``o.valid & ~o.ready``, and ``i.ready = ~o.valid | o.ready`` (a combinational
    path from ``o.ready`` to ``i.ready``). Bubbles inside the pipeline are not squeezed out
    during a stall; there is no skid buffer, so the unit adds no buffering of its own.
    """

    def __init__(self, n: int, guard_bits: int = DEFAULT_GUARD_BITS):
        for name, value, high in (("n", n, MAX_INPUTS), ("guard_bits", guard_bits, MAX_GUARD_BITS)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"MultiInputAdder: {name} must be an int, got {value!r}")
            low = 1 if name == "n" else 0
            if not low <= value <= high:
                raise ValueError(
                    f"MultiInputAdder: {name}={value} is out of range; allowed {low}…{high}"
                )
        self.n = n
        self.guard_bits = guard_bits
        #: Width of the aligned-addend window, 24 + G.
        self.window = _SIG_BITS + guard_bits
        #: Width of the two's-complement adder tree at its root.
        self.adder_width = multi_add_adder_width(n, guard_bits)
        self.tree_levels = ceil_log2(n)
        tree_stages = -(-self.tree_levels // _LEVELS_PER_STAGE)
        self.latency = (
            max(1, tree_stages)  # decode + max exponent
            + 1  # align
            + tree_stages  # adder tree
            + 3  # abs/LZC, normalise, round/pack
        )
        super().__init__(
            {
                "i": In(stream.Signature(data.ArrayLayout(32, n))),
                "o": Out(stream.Signature(32)),
            }
        )

    @classmethod
    def from_config(cls, config: EngineConfig) -> MultiInputAdder:
        """The vector unit's lane reduction (n = lanes, G = ``config.reduce_guard_bits``)."""
        if not isinstance(config, EngineConfig):
            raise TypeError(
                f"MultiInputAdder.from_config needs an EngineConfig, got {type(config).__name__}"
            )
        return cls(config.lanes, config.reduce_guard_bits)

    def elaborate(self, platform):
        m = Module()
        pipe = Module()  # every register of the datapath; all hold together on a stall
        enable = Signal()
        m.d.comb += [
            enable.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(enable),
        ]
        m.submodules.pipe = EnableInserter(enable)(pipe)

        n, g, w = self.n, self.guard_bits, self.window

        # ---- 1. decode (FTZ; Inf/NaN only steer the result mux) and the max-exponent tree.
        # A zero, subnormal, Inf or NaN input gets exponent 0 and so adds nothing: every
        # normal number has an exponent of at least 1.
        exps, fracs, signs = [], [], []
        nan, pos_inf, neg_inf, neg_zero = [], [], [], []
        for k in range(n):
            x = self.i.payload[k]
            sign, exp, frac = x[31], x[23:31], x[0:23]
            special = exp == 0xFF
            exps.append(Mux(special, 0, exp))
            fracs.append(frac)
            signs.append(sign)
            nan.append(special & (frac != 0))
            pos_inf.append(special & (frac == 0) & ~sign)
            neg_inf.append(special & (frac == 0) & sign)
            neg_zero.append(sign & (exp == 0))  # -0 or a negative subnormal, i.e. -0 after FTZ
        flags = {
            "nan": Cat(*nan).any(),
            "pos_inf": Cat(*pos_inf).any(),
            "neg_inf": Cat(*neg_inf).any(),
            "all_neg_zero": Cat(*neg_zero).all(),
        }
        valid = self.i.valid

        def register_flags(name: str) -> dict[str, Signal]:
            return {key: _register(pipe, v, f"{name}_{key}") for key, v in flags.items()}

        nodes = list(exps)
        stage = 0
        while True:
            for _ in range(_LEVELS_PER_STAGE):
                if len(nodes) > 1:
                    nodes = _tree_level(nodes, lambda a, b: Mux(a >= b, a, b))
            name = f"max{stage}"
            nodes = _register_all(pipe, nodes, f"{name}_node")
            exps = _register_all(pipe, exps, f"{name}_exp")
            fracs = _register_all(pipe, fracs, f"{name}_frac")
            signs = _register_all(pipe, signs, f"{name}_sign")
            flags = register_flags(name)
            valid = _register(pipe, valid, f"{name}_valid")
            stage += 1
            if len(nodes) == 1:
                break
        emax = nodes[0]

        # ---- 2. align: A = (M << G) >> (emax - E), OR-ing every bit shifted out into A's LSB,
        # then the ones' complement of A for a negative input (the +1 is added in step 3).
        shift_bits = w.bit_length()  # shifting by w (or more) leaves nothing in the window
        addends = []
        for exp, frac, sign in zip(exps, fracs, signs, strict=True):
            zero = exp == 0
            sig = Cat(frac, Const(1, 1))
            dist = (emax - exp)[:8]  # emax >= exp, so 0…254
            amount = Mux(zero | (dist >= w), w, dist[:shift_bits])
            window = (Cat(Const(0, unsigned(g)), sig) >> amount)[:w]
            # The lowest 1 of M (at its trailing-zero count tz) sits at window position
            # tz + G, so some 1 is shifted out iff emax - E > tz + G. This compare needs only
            # registered values, so it runs beside the shifter.
            tz = _trailing_zeros(sig)
            lost = ~zero & (emax > exp + tz + g)
            addends.append(Cat(window | lost, Const(0, 1)) ^ sign.replicate(w + 1))
        addends = _register_all(pipe, addends, "aln_addend")
        carries = _register_all(pipe, signs, "aln_carry")
        emax = _register(pipe, emax, "aln_emax")
        flags = register_flags("aln")
        valid = _register(pipe, valid, "aln_valid")

        # ---- 3. the exact two's-complement adder tree (associative: any shape works). A
        # negative addend is -A = ~A + 1: each adder takes one pending +1 as its carry-in. n
        # addends need n of them and the tree has n - 1 adders, so one is left for step 4.
        nodes = addends
        stage = 0
        while len(nodes) > 1:
            for level in range(_LEVELS_PER_STAGE):
                if len(nodes) > 1:
                    nodes, carries = _adder_level(pipe, nodes, carries, f"sum{stage}_{level}")
            name = f"add{stage}"
            nodes = _register_all(pipe, nodes, f"{name}_node")
            carries = _register_all(pipe, carries, f"{name}_carry")
            emax = _register(pipe, emax, f"{name}_emax")
            flags = register_flags(name)
            valid = _register(pipe, valid, f"{name}_valid")
            stage += 1
        (total,), (carry,) = nodes, carries
        assert len(total) == self.adder_width, (len(total), self.adder_width)

        # ---- 4. |sum| and its leading-zero count. |sum| < 2**(adder_width - 1).
        mag_bits = self.adder_width - 1
        # The sum is total + carry. For total < 0 its magnitude is -(total + carry) =
        # ~total + 1 - carry = ~total + ~carry (total = -1, carry = 1 gives 0, as it should);
        # otherwise total + carry.
        negative = total[-1]
        mag = ((total ^ negative.replicate(len(total))) + (carry ^ negative))[:mag_bits]
        lzc = _leading_zeros(mag)
        zero = ~mag.any()
        mag = _register(pipe, mag, "lzc_mag")
        lzc = _register(pipe, lzc, "lzc_count")
        zero = _register(pipe, zero, "lzc_zero")
        negative = _register(pipe, negative, "lzc_neg")
        emax = _register(pipe, emax, "lzc_emax")
        flags = register_flags("lzc")
        valid = _register(pipe, valid, "lzc_valid")

        # ---- 5. normalise: leading 1 to the top; keep 24 bits, the rest are round + sticky.
        # (A sum narrower than 24 bits is shifted up with zeros below: nothing to round.)
        normal = (mag << lzc)[:mag_bits]
        keep = normal[mag_bits - _SIG_BITS :]
        round_bit = normal[mag_bits - _SIG_BITS - 1] if mag_bits > _SIG_BITS else Const(0, 1)
        sticky = normal[: mag_bits - _SIG_BITS - 1].any() if mag_bits > _SIG_BITS + 1 else 0
        # Biased exponent of `keep` read as 1.xxx: emax - G + (bit length - 24), and the bit
        # length is mag_bits - lzc = 24 + G + ceil(log2 n) - lzc.
        exponent = emax + self.tree_levels - lzc
        round_up = _register(pipe, round_bit & (sticky | keep[0]), "nrm_round_up")
        keep = _register(pipe, keep, "nrm_keep")
        exponent = _register(pipe, exponent, "nrm_exp")
        zero = _register(pipe, zero, "nrm_zero")
        negative = _register(pipe, negative, "nrm_neg")
        flags = register_flags("nrm")
        valid = _register(pipe, valid, "nrm_valid")

        # ---- 6. round to nearest even, renormalise a carry-out, range checks, specials.
        rounded = keep + round_up  # 25 bits; a carry-out leaves the low 23 bits zero
        biased = exponent + rounded[_SIG_BITS]
        signed_zero = Cat(Const(0, 31), negative)
        signed_inf = Cat(Const(0, 23), Const(0xFF, 8), negative)
        normal = Cat(rounded[:23], biased[:8], negative)
        finite = Mux(biased <= 0, signed_zero, Mux(biased >= 0xFF, signed_inf, normal))
        finite = Mux(zero, Cat(Const(0, 31), flags["all_neg_zero"]), finite)
        result = Mux(
            flags["nan"] | (flags["pos_inf"] & flags["neg_inf"]),
            F32_CANONICAL_NAN,
            Mux(flags["pos_inf"], _F32_POS_INF, Mux(flags["neg_inf"], _F32_NEG_INF, finite)),
        )
        result = _register(pipe, result[:32], "out_result")
        valid = _register(pipe, valid, "out_valid")
        m.d.comb += [self.o.payload.eq(result), self.o.valid.eq(valid)]
        return m
