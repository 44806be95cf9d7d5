"""``QuantDecoder``: block-quantized codes → bf16, one beat of ``lanes`` elements per cycle."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...config import EngineConfig
from ...isa import WeightFormat
from ...numerics.quant_grids import FP4_E2M1
from ._arith import (
    BF16_INF,
    BF16_NAN,
    EXP_SHAPE,
    leading_zeros_small,
    narrow_mul,
    round_product_to_bf16,
    wire,
)
from .layout import QuantGeometry

__all__ = ["QuantDecoder", "e2m1_doubled_magnitude"]

_W = WeightFormat

# E2M1 magnitudes times two are small integers {0, 1, 2, 3, 4, 6, 8, 12}: the element value
# is that integer times 2**-1. Taken from the golden grid, not retyped.
_E2M1_DOUBLED = [int(v * 2) for v in FP4_E2M1.magnitudes]
assert all(2 * FP4_E2M1.magnitudes == _E2M1_DOUBLED)


def e2m1_doubled_magnitude(magnitude_code):
    """4-bit ``2·|e2m1|`` of a 3-bit E2M1 magnitude code (a constant table lookup)."""
    table = Cat(*(Const(k, 4) for k in _E2M1_DOUBLED))
    return table.word_select(magnitude_code, 4)


class QuantDecoder(wiring.Component):
    """Decode a stream of block-quantized beats into bf16, bit-exact with ``quant_blocks``.

    Per element (golden models ``decode_int4/fp4/if4/nvfp4/int8/fp8/if8``):
    ``bf16 = f32_to_bf16(f32_mul(value(code), |scale|))``; for IF4/IF8 the scale's sign bit
    picks the INT (set) or FP (clear) code table; for NVFP4
    ``bf16 = f32_to_bf16(f32_mul(e2m1(code) · e4m3(block_scale), tensor_scale))``.

    Datapath per lane: the code (times the E4M3 scale for NVFP4) is an exact integer ``A`` of
    at most 8 bits times a power of two; it is normalised and multiplied by the scale's
    significand (8 bits, or the fp32 tensor scale's 24 bits when NVFP4 is built), and the
    product is rounded exactly as the golden model does (``_arith.round_product_to_bf16``).
    Special values follow ``fp.f32_mul``: NaN codes or scales give ``0x7FC0``, ``0 × Inf`` is
    NaN, a product below 2**-126 is a signed zero, ±Inf on overflow.

    Parameters
    ----------
    config:
        The ``EngineConfig``. ``lanes`` sets the beat width; the formats built are the
        enabled block formats of ``config.formats`` (disabled ones cost no logic).

    Ports
    -----
    i : In(stream.Signature(QuantGeometry.beat_layout))
        Codes and scale(s) of one beat (see ``layout.py``).
    fmt : In(isa.WeightFormat)
        Format of the beat on ``i``, sampled with each accepted beat (may change every beat).
        ``BF16`` or a format that is not built decodes every element to NaN ``0x7FC0``.
    tensor_scale : In(32)
        Only when NVFP4 is built: the fp32 tensor scale (bit pattern), sampled with each beat.
    o : Out(stream.Signature(ArrayLayout(16, lanes)))
        ``lanes`` bf16 values, element 0 in the low bits.

    Timing: a three-stage pipeline (code decode | multiply | round); ``LATENCY = 3`` cycles
    from an accepted beat to its output beat, one beat per cycle. Back-pressure stalls the
    whole pipeline: ``i.ready = ~o.valid | o.ready`` (combinational from ``o.ready``; put a
    skid buffer after the decoder if that path is too long).
    """

    LATENCY = 3

    def __init__(self, config: EngineConfig):
        geometry = QuantGeometry.from_config(config)
        if not geometry.formats:
            raise ValueError(
                "QuantDecoder needs at least one block format in EngineConfig.formats "
                f"(got {config.formats}); allowed: int4, fp4, if4, nvfp4, int8, fp8, if8"
            )
        self.geometry = geometry
        members = {
            "i": In(stream.Signature(geometry.beat_layout)),
            "fmt": In(WeightFormat),
            "o": Out(stream.Signature(geometry.bf16_layout)),
        }
        if _W.NVFP4 in geometry.formats:
            members["tensor_scale"] = In(32)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        g = self.geometry
        built = set(g.formats)
        has_nv = _W.NVFP4 in built
        b_bits = 24 if has_nv else 8  # the scale significand the product needs
        # The code's integer A: ≤ 8 (INT4), ≤ 12 (E2M1), ≤ 15 (E4M3) fit 4 bits; INT8 (≤ 128)
        # and NVFP4's e2m1·e4m3 (≤ 180) need 8. Only the built formats size the multiplier.
        a_bits = 8 if built & {_W.INT8, _W.IF8, _W.NVFP4} else 4

        en = Signal()  # the whole pipeline advances
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        v1, v2 = Signal(), Signal()
        with m.If(en):
            m.d.sync += [v1.eq(self.i.valid), v2.eq(v1), self.o.valid.eq(v2)]

        # ---- stage 1: decode format, scales and codes into (sign, A, exponent, class) ----
        fmt = self.fmt
        is_fmt = {f: wire(m, fmt == f, f"is_{f.name.lower()}") if f in built else Const(0, 1)
                  for f in WeightFormat}
        any_built = wire(m, Cat(*(is_fmt[f] for f in built)).any(), "fmt_built")

        slots = []  # per scales entry: decoded bf16 fields (and the raw entry for NVFP4)
        for k in range(g.scale_slots):
            raw = self.i.payload.scales[k]
            exp, frac = raw[7:15], raw[0:7]
            slots.append(dict(
                raw=raw, exp=exp, sig=Cat(frac, 1), int_flag=raw[15],
                zero=wire(m, exp == 0, f"slot{k}_zero"),
                inf=wire(m, (exp == 0xFF) & (frac == 0), f"slot{k}_inf"),
                nan=wire(m, (exp == 0xFF) & (frac != 0), f"slot{k}_nan"),
            ))
        for k, slot in enumerate(slots):
            # Element table of the bf16-scaled formats: IF picks by the scale's INT flag.
            flag = slot["int_flag"]
            slot["kinds"] = [
                wire(m, is_fmt[_W.INT4] | (is_fmt[_W.IF4] & flag), f"slot{k}_int4"),
                wire(m, is_fmt[_W.FP4] | (is_fmt[_W.IF4] & ~flag), f"slot{k}_fp4"),
                wire(m, is_fmt[_W.INT8] | (is_fmt[_W.IF8] & flag), f"slot{k}_int8"),
                wire(m, is_fmt[_W.FP8] | (is_fmt[_W.IF8] & ~flag), f"slot{k}_fp8"),
            ]
        if has_nv:
            ts = self.tensor_scale
            ts_exp, ts_frac = ts[23:31], ts[0:23]
            tscale = dict(
                exp=ts_exp, sig=Cat(ts_frac, 1), sign=ts[31],
                zero=wire(m, ts_exp == 0, "ts_zero"),
                inf=wire(m, (ts_exp == 0xFF) & (ts_frac == 0), "ts_inf"),
                nan=wire(m, (ts_exp == 0xFF) & (ts_frac != 0), "ts_nan"),
            )

        # Registered per-slot scale significands; the lane multiplier picks its own in stage 2.
        r_bf16_sig = [Signal(8, name=f"s1_scale_sig{k}") for k in range(g.scale_slots)]
        r_nv = Signal(name="s1_nvfp4")
        with m.If(en):
            m.d.sync += [r.eq(s["sig"]) for r, s in zip(r_bf16_sig, slots, strict=True)]
            m.d.sync += r_nv.eq(is_fmt[_W.NVFP4])
        if has_nv:
            r_ts_sig = Signal(24, name="s1_ts_sig")
            with m.If(en):
                m.d.sync += r_ts_sig.eq(tscale["sig"])

        lanes = []
        for lane in range(g.lanes):
            bslot = slots[g.bf16_slot(lane)]
            code4 = self.i.payload.codes[4 * lane : 4 * lane + 4]
            code8 = (self.i.payload.codes[8 * lane : 8 * lane + 8] if g.code_bits == 8
                     else Const(0, 8))
            kind_int4, kind_fp4, kind_int8, kind_fp8 = bslot["kinds"]

            a = Signal(a_bits, name=f"l{lane}_a")  # |code value| / 2**ea, an exact integer
            ea = Signal(EXP_SHAPE, name=f"l{lane}_ea")
            sign = Signal(name=f"l{lane}_sign")
            code_nan = Signal(name=f"l{lane}_code_nan")
            # The scale the product uses: the bf16 block scale, or NVFP4's fp32 tensor scale.
            s_exp = Signal(8, name=f"l{lane}_s_exp")
            s_zero, s_inf, s_nan = (Signal(name=f"l{lane}_s_{n}") for n in ("zero", "inf", "nan"))
            m.d.comb += [s_exp.eq(bslot["exp"]), s_zero.eq(bslot["zero"]),
                         s_inf.eq(bslot["inf"]), s_nan.eq(bslot["nan"])]

            # One branch per element kind that is built; the first true condition wins (the
            # format flags are one-hot).
            branches = []
            if built & {_W.INT4, _W.IF4}:  # two's complement −8…7
                branches.append((kind_int4, [
                    sign.eq(code4[3]), a.eq(Mux(code4[3], (0 - code4)[:4], code4))]))
            if built & {_W.FP4, _W.IF4}:  # E2M1: sign | magnitude code, value = k · 2**-1
                branches.append((kind_fp4, [
                    sign.eq(code4[3]), a.eq(e2m1_doubled_magnitude(code4[:3])), ea.eq(-1)]))
            if built & {_W.INT8, _W.IF8}:  # two's complement −128…127
                branches.append((kind_int8, [
                    sign.eq(code8[7]), a.eq(Mux(code8[7], (0 - code8)[:8], code8))]))
            if built & {_W.FP8, _W.IF8}:  # E4M3FN: (8 + m)·2**(e − 10), subnormal m·2**−9
                e, mant = code8[3:7], code8[0:3]
                branches.append((kind_fp8, [
                    sign.eq(code8[7]),
                    a.eq(Mux(e == 0, mant, Cat(mant, 1))),
                    ea.eq(Mux(e == 0, 1, e) - 10),
                    code_nan.eq(code8[:7] == 0x7F),  # 0x7F / 0xFF are NaN
                ]))
            if has_nv:
                # e2m1(code) · e4m3(scale) is exact: (k · i) · 2**(−1 + max(e, 1) − 10).
                s8 = slots[g.nvfp4_slot(lane)]["raw"][:8]
                e, mant = s8[3:7], s8[0:3]
                branches.append((is_fmt[_W.NVFP4], [
                    sign.eq(code4[3] ^ s8[7] ^ tscale["sign"]),
                    a.eq(narrow_mul(m, e2m1_doubled_magnitude(code4[:3]),
                                    Mux(e == 0, mant, Cat(mant, 1)), f"l{lane}_nv_a")),
                    ea.eq(Mux(e == 0, 1, e) - 11),
                    code_nan.eq(s8[:7] == 0x7F),
                    s_exp.eq(tscale["exp"]), s_zero.eq(tscale["zero"]),
                    s_inf.eq(tscale["inf"]), s_nan.eq(tscale["nan"]),
                ]))
            for k, (condition, statements) in enumerate(branches):
                with (m.If if k == 0 else m.Elif)(condition):
                    m.d.comb += statements

            a_zero = a == 0
            lz = leading_zeros_small(m, a, f"l{lane}_lz")
            r = dict(
                sign=Signal(name=f"s1_l{lane}_sign"),
                a=Signal(a_bits, name=f"s1_l{lane}_a"),
                exp=Signal(EXP_SHAPE, name=f"s1_l{lane}_exp"),
                nan=Signal(name=f"s1_l{lane}_nan"),
                inf=Signal(name=f"s1_l{lane}_inf"),
                zero=Signal(name=f"s1_l{lane}_zero"),
            )
            with m.If(en):
                m.d.sync += [
                    r["sign"].eq(sign),
                    r["a"].eq((a << lz)[:a_bits]),
                    # biased exponent of the product when its leading one is at bit W-2
                    r["exp"].eq(s_exp + ea - lz + (a_bits - 1)),
                    r["nan"].eq(~any_built | code_nan | s_nan | (a_zero & s_inf)),
                    r["inf"].eq(s_inf & ~a_zero),
                    r["zero"].eq(a_zero | s_zero),
                ]
            lanes.append(r)

        # ---- stage 2: the exact significand product ----
        stage2 = []
        for lane, r in enumerate(lanes):
            sig = Cat(Const(0, b_bits - 8), r_bf16_sig[g.bf16_slot(lane)])
            if has_nv:
                sig = Mux(r_nv, r_ts_sig, sig)
            p = dict(
                product=Signal(a_bits + b_bits, name=f"s2_l{lane}_product"),
                **{k: Signal.like(v, name=f"s2_l{lane}_{k}") for k, v in r.items() if k != "a"},
            )
            # A 4-bit A (no INT8/FP8/NVFP4 built) multiplies in LUTs; otherwise a DSP slice.
            product = narrow_mul(m, r["a"], sig, f"s2_l{lane}_mul") if a_bits <= 4 else r["a"] * sig
            with m.If(en):
                m.d.sync += p["product"].eq(product)
                m.d.sync += [p[k].eq(v) for k, v in r.items() if k != "a"]
            stage2.append(p)

        # ---- stage 3: round (fp32 then bf16), specials, output register ----
        for lane, p in enumerate(stage2):
            magnitude, flush = round_product_to_bf16(m, p["product"], p["exp"], f"s3_l{lane}")
            sign = p["sign"]
            result = Mux(
                p["nan"], BF16_NAN,
                Mux(p["inf"], Cat(Const(BF16_INF, 15), sign),
                    Mux(p["zero"] | flush, Cat(Const(0, 15), sign), Cat(magnitude, sign))),
            )
            with m.If(en):
                m.d.sync += self.o.payload[lane].eq(result)
        return m
