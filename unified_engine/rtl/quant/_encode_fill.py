"""Fill stage of ``QuantEncoder``: input FIFO, running absmax and the per-block scales.

Input beats go into the x FIFO (read back by the code stage) while a max tree and an
accumulator find the block's ``absmax``; when the block is complete its scales are computed
and pushed into the aux FIFO, one entry per block (layout ``QuantEncoder._aux``):

* ``s_int`` / ``s_fp``: 15-bit bf16 scale magnitudes ``f32_to_bf16(f32_mul(absmax, R))`` with
  the golden constants ``R = 1/7, 1/6`` (4-bit formats) or ``1/127, 1/448`` (8-bit formats);
  for an NVFP4 block ``s_fp`` holds the E4M3 block-scale code instead.
* ``nv_div`` / ``nv_exp`` (NVFP4 built): the element divisor ``value(block scale) · ts``.

Stages: f1 (beat max), f2 (absmax accumulator), with NVFP4 three more (the ``amax / (6·ts)``
division in two halves, its E4M3 rounding), then the aux register. This stage never stalls:
``i.ready`` is the x FIFO's ``w_rdy``, and the aux FIFO holds an entry for every block whose
beats are still in the x FIFO (see ``QuantEncoder``'s depths).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, ValueCastable
from amaranth.lib.fifo import SyncFIFOBuffered

from ...isa import WeightFormat
from ...numerics.fp import f32_to_bits
from ...numerics.quant_blocks import scale_reciprocal
from ...numerics.quant_grids import FP4_E2M1, FP8_E4M3, INT4, INT8, ElementFormat
from ._arith import round_product_to_bf16, wire
from ._grid import FRAC_FP, divide_start, divide_steps, round_fp_grid
from ._nvfp4 import SCALE_DIVISOR_BITS, element_divisor, scale_divisor
from .layout import EIGHT_BIT_FORMATS

__all__ = ["NVFP4_FILL_STAGES", "block_scale", "build_fill"]

_W = WeightFormat
#: Stages the NVFP4 block scale adds after f2: two halves of the division, the rounding.
NVFP4_FILL_STAGES = 3


def block_scale(m: Module, absmax: Value, elem: ElementFormat, name: str) -> Value:
    """15-bit ``|f32_to_bf16(f32_mul(absmax, R))|`` for a flushed bf16 ``absmax`` magnitude.

    ``R = scale_reciprocal(elem)`` is the golden fp32 constant; the product of the 8-bit and
    24-bit significands is rounded exactly like the golden model (it cannot overflow: R < 1).
    """
    r_bits = int(f32_to_bits(scale_reciprocal(elem)))
    r_exp, r_sig = (r_bits >> 23) & 0xFF, (r_bits & 0x7FFFFF) | 0x800000
    exp = absmax[7:15]
    product = Cat(absmax[0:7], 1) * Const(r_sig, 24)
    magnitude, flush = round_product_to_bf16(m, product, exp + (r_exp - 127), name)
    return Mux((exp == 0) | flush, 0, magnitude)


def _scales(m: Module, enc, fmt: Value, absmax: Value, key: str) -> Value:
    """The bf16 scale of the ``key`` ("int"/"fp") element format for this block's width."""
    built = set(enc.formats)
    narrow, wide = {"int": (INT4, INT8), "fp": (FP4_E2M1, FP8_E4M3)}[key]
    narrow_built = built & ({_W.INT4, _W.IF4} if key == "int" else {_W.FP4, _W.IF4})
    wide_built = built & ({_W.INT8, _W.IF8} if key == "int" else {_W.FP8, _W.IF8})
    options = []
    if narrow_built:
        options.append(block_scale(m, absmax, narrow, f"scale_{key}4"))
    if wide_built:
        options.append(block_scale(m, absmax, wide, f"scale_{key}8"))
    if len(options) == 2:
        is_wide = Cat(*(fmt == f for f in EIGHT_BIT_FORMATS & built)).any()
        return Mux(is_wide, options[1], options[0])
    return options[0] if options else Const(0, 15)


def build_fill(enc, m: Module):
    """Build the fill stage of ``enc`` (a ``QuantEncoder``) in ``m``; returns the two FIFOs."""
    g = enc.geometry
    lanes, bpb = g.lanes, enc.beats_per_block
    m.submodules.x_fifo = x_fifo = SyncFIFOBuffered(width=16 * lanes, depth=enc._x_depth)
    m.submodules.aux_fifo = aux_fifo = SyncFIFOBuffered(width=enc._aux.size,
                                                        depth=enc._aux_depth)
    accept = Signal()
    m.d.comb += [
        enc.i.ready.eq(x_fifo.w_rdy),
        accept.eq(enc.i.valid & x_fifo.w_rdy),
        x_fifo.w_data.eq(enc.i.payload),
        x_fifo.w_en.eq(accept),
    ]
    # The block's format (and NVFP4 tensor scale) is sampled with its first beat.
    in_beat = Signal(range(bpb), name="in_beat")
    first = in_beat == 0
    fmt_held = Signal(WeightFormat, name="fmt_held")
    fmt_now = wire(m, Mux(first, enc.fmt, fmt_held), "fmt_now", WeightFormat)
    last = wire(m, enc._last_beat(in_beat, fmt_now == _W.NVFP4), "in_last")
    with m.If(accept):
        m.d.sync += in_beat.eq(Mux(last, 0, in_beat + 1))
        with m.If(first):
            m.d.sync += fmt_held.eq(enc.fmt)
    if enc._has_nv:
        ts_held = Signal(32, name="ts_held")
        ts_now = wire(m, Mux(first, enc.tensor_scale, ts_held), "ts_now", 32)
        with m.If(accept & first):
            m.d.sync += ts_held.eq(enc.tensor_scale)

    # Beat max of the flushed magnitudes: for non-negative bf16 patterns, integer order is
    # value order. NaN/Inf make the block non-finite, which overrides the scale anyway.
    mags, nonfinite_lanes = [], []
    for k in range(lanes):
        x = enc.i.payload[k]
        mags.append(wire(m, Mux(x[7:15] == 0, 0, x[0:15]), f"in_mag{k}", 15))
        nonfinite_lanes.append(x[7:15] == 0xFF)
    level = 0
    while len(mags) > 1:
        level += 1
        mags = [wire(m, Mux(a >= b, a, b), f"in_max{level}_{j}", 15)
                for j, (a, b) in enumerate(zip(mags[0::2], mags[1::2], strict=True))]

    f1_valid, f1_first, f1_last = Signal(), Signal(), Signal()
    f1_max, f1_nonfinite = Signal(15), Signal()
    f1_fmt = Signal(WeightFormat)
    m.d.sync += [
        f1_valid.eq(accept), f1_first.eq(first), f1_last.eq(last), f1_max.eq(mags[0]),
        f1_nonfinite.eq(Cat(*nonfinite_lanes).any()), f1_fmt.eq(fmt_now),
    ]
    absmax, nonfinite, f2_done = Signal(15), Signal(), Signal()
    f2_fmt = Signal(WeightFormat)
    m.d.sync += f2_done.eq(f1_valid & f1_last)
    with m.If(f1_valid):
        m.d.sync += [
            absmax.eq(Mux(f1_first | (f1_max > absmax), f1_max, absmax)),
            nonfinite.eq(f1_nonfinite | (nonfinite & ~f1_first)),
            f2_fmt.eq(f1_fmt),
        ]
    block = dict(valid=f2_done, fmt=f2_fmt, nonfinite=nonfinite, absmax=absmax)
    if enc._has_nv:
        f1_ts, f2_ts = Signal(32), Signal(32)
        m.d.sync += f1_ts.eq(ts_now)
        with m.If(f1_valid):
            m.d.sync += f2_ts.eq(f1_ts)
        block["ts"] = f2_ts
        block = _nvfp4_scale(m, block)

    aux = Signal(enc._aux)
    aux_valid = Signal()
    fmt, absmax = block["fmt"], block["absmax"]
    m.d.sync += [
        aux_valid.eq(block["valid"]),
        aux.fmt.eq(fmt),
        aux.nonfinite.eq(block["nonfinite"]),
        aux.s_int.eq(_scales(m, enc, fmt, absmax, "int")),
    ]
    s_fp = _scales(m, enc, fmt, absmax, "fp")
    if enc._has_nv:
        is_nv = fmt == _W.NVFP4
        divisor, exp = element_divisor(m, block["nv_code"], block["ts"], "nv_div")
        m.d.sync += [
            aux.s_fp.eq(Mux(is_nv, block["nv_code"], s_fp)),
            aux.nv_div.eq(divisor),
            aux.nv_exp.eq(exp),
        ]
    else:
        m.d.sync += aux.s_fp.eq(s_fp)
    m.d.comb += [aux_fifo.w_data.eq(aux), aux_fifo.w_en.eq(aux_valid)]
    return x_fifo, aux_fifo


def _nvfp4_scale(m: Module, block: dict) -> dict:
    """Three stages after f2: ``amax / (6·ts)`` (two halves of the division), E4M3 rounding.

    Returns the block record after them, with ``nv_code`` (7-bit E4M3 code; 0 for a zero
    ``amax``) added. Every other field is only delayed.
    """
    def stage(values: dict, name: str) -> dict:
        out = {}
        for key, value in values.items():
            shape = value.shape() if isinstance(value, ValueCastable) else \
                Value.cast(value).shape()
            sig = Signal(shape, name=f"{name}_{key}", reset_less=key != "valid")
            m.d.sync += sig.eq(value)
            out[key] = sig
        return out

    absmax, ts = block["absmax"], block["ts"]
    divisor, div_exp = scale_divisor(m, ts, "nv_s6")
    x = Cat(Const(0, SCALE_DIVISOR_BITS - 8), absmax[0:7], 1)
    q, rem = divide_start(m, x, divisor, "nv_sdiv0")
    half = (FRAC_FP + 1) // 2
    q, rem = divide_steps(m, q, rem, divisor, half - 1, "nv_sdiv1")
    n1 = stage({**block, "q": q, "rem": rem, "divisor": divisor,
                "d": wire(m, absmax[7:15] - div_exp, "nv_d", div_exp.shape())}, "n1")
    q, rem = divide_steps(m, n1["q"], n1["rem"], n1["divisor"], FRAC_FP + 1 - half, "nv_sdiv2")
    n2 = stage({**{k: n1[k] for k in block}, "q": q, "sticky": rem != 0, "d": n1["d"]}, "n2")
    code = round_fp_grid(m, n2["q"], n2["sticky"], n2["d"], mant=3, emin=-6,
                         max_code=FP8_E4M3.max_code, name="nv_scale")
    code = Mux(n2["absmax"][7:15] == 0, 0, code)
    return stage({**{k: n2[k] for k in block}, "nv_code": code}, "n3")
