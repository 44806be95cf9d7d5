"""IF4/IF8 selection metric of ``QuantEncoder`` (golden model: ``quant_blocks.if_metric``).

The code stage's c2 register holds a beat's magnitude codes of both element formats; the
metric takes it in ``lanes // metric_lanes`` slices: x̂ = ``bf16(value(code)·|scale|)`` (c3),
``|d| = ||x| − |x̂||`` (c4), ``d²`` (c5), a balanced lane tree and a tree over the block's
slices, both of ``f32_add`` (``_metric.py`` explains why each piece is exact and cheap). The
INT grid's x̂ is ``code·scale`` (INT4 or INT8 magnitude), the FP grid's ``e2m1(code)`` or
``e4m3(code)`` times the scale, chosen by the block's code width.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data

from ...isa import WeightFormat
from ._arith import add_nonnegative_f32, wire
from ._grid import reconstruct
from ._metric import error_parts, square_f32
from .decode import e2m1_doubled_magnitude
from .layout import EIGHT_BIT_FORMATS

__all__ = ["build_issue", "build_metric"]

_W = WeightFormat


def _is_if(enc, fmt):
    return Cat(*(fmt == f for f in (_W.IF4, _W.IF8) if f in enc.formats)).any()


def build_issue(enc, m: Module, c2: dict, en: Signal, slices: int):
    """Hand c2's beat to the metric: ``slices`` slices for an IF beat, one otherwise.

    Returns ``(issue, final, done, index)``: a slice is taken in this cycle; it is the
    beat's last; every slice of the beat has been taken (then c2 may take the next beat);
    the slice number (``None`` when ``slices == 1``). A non-IF beat is issued as one slice
    (slice 0, metric values unused) so that its block still produces exactly one decision,
    in order.
    """
    issued = Signal(name="slice_issued")  # every slice of c2's beat is already issued
    issue = wire(m, c2["valid"] & ~issued & en, "slice_issue")
    index = None
    if slices > 1:
        index = Signal(range(slices), name="slice_index")
        final = wire(m, ~_is_if(enc, c2["blk"].fmt) | (index == slices - 1), "slice_final")
    else:
        final = Const(1, 1)
    with m.If(c2["en_front"]):  # c2 takes a new beat (or stays empty)
        m.d.sync += issued.eq(0)
        if slices > 1:
            m.d.sync += index.eq(0)
    with m.Elif(issue):
        m.d.sync += issued.eq(final)
        if slices > 1:
            m.d.sync += index.eq(Mux(final, 0, index + 1))
    return issue, final, issued | (issue & final), index


def _fp_value(enc, m: Module, mag, wide, name: str):
    """``(A, ea)`` with ``value = A·2**ea`` of an FP magnitude code (E2M1, or E4M3 if wide)."""
    built = set(enc.formats)
    has4, has8 = _W.IF4 in built, _W.IF8 in built
    if has8:
        e, mant = mag[3:7], mag[0:3]
        a8 = Mux(e == 0, mant, Cat(mant, 1))
        ea8 = wire(m, Mux(e == 0, 1, e) - 10, f"{name}_ea8", 6)  # signed 6: −9…5
        ea8 = ea8.as_signed()
    if has4 and has8:
        return (wire(m, Mux(wide, a8, e2m1_doubled_magnitude(mag[:3])), f"{name}_a", 4),
                wire(m, Mux(wide, ea8, -1), f"{name}_ea", 6).as_signed())
    if has8:
        return a8, ea8
    return e2m1_doubled_magnitude(mag[:3]), -1


def build_metric(enc, m: Module, c2: dict, en: Signal):
    """Build the metric of ``enc`` on its c2 stage, advancing with ``en``.

    Returns ``(valid, last, blk, pick_fp, issue_done)`` of the final stage and the
    combinational "c2's beat needs no more slices" flag.
    """
    g = enc.geometry
    k_lanes, slices = enc.metric_lanes, enc._slices
    aux = enc._aux

    def reg(value, name, shape):
        sig = Signal(shape, name=name)
        with m.If(en):
            m.d.sync += sig.eq(value)
        return sig

    issue, final, issue_done, index = build_issue(enc, m, c2, en, slices)

    def pick(values: list, width: int) -> list:
        """The elements of the current slice."""
        if slices == 1:
            return values
        word = Cat(*values).word_select(index, width * k_lanes)
        return [word[width * j : width * (j + 1)] for j in range(k_lanes)]

    x2 = data.View(g.bf16_layout, c2["x"])
    xs = pick([x2[k] for k in range(g.lanes)], 16)
    blk2 = c2["blk"]
    wide = Cat(*(blk2.fmt == f for f in EIGHT_BIT_FORMATS & set(enc.formats))).any()
    valid, last, blk = (reg(issue, "c3_valid", 1), reg(c2["last"] & final, "c3_last", 1),
                        reg(blk2, "c3_blk", aux))
    c3_x = [reg(Mux(x[7:15] == 0, 0, x[0:15]), f"c3_x{k}", 15) for k, x in enumerate(xs)]
    terms = {}
    for key in ("int", "fp"):
        scale = blk2.s_int if key == "int" else blk2.s_fp
        width = enc._mag_bits[key]
        xhat = []
        for k, mag in enumerate(pick(c2["mag"][key], width)):
            if key == "int":  # INT8 magnitudes only matter for IF8 blocks
                a, ea = (mag if _W.IF8 in enc.formats else mag[:3]), 0
            else:
                a, ea = _fp_value(enc, m, mag, wide, f"fpv{k}")
            value = reconstruct(m, a, ea, scale, f"xhat_{key}{k}")
            xhat.append(reg(value, f"c3_xhat_{key}{k}", 15))
        terms[key] = xhat

    valid, last, blk = (reg(valid, "c4_valid", 1), reg(last, "c4_last", 1),
                        reg(blk, "c4_blk", aux))
    for key in ("int", "fp"):
        parts = []
        for k in range(k_lanes):
            d, emin, inf = error_parts(m, c3_x[k], terms[key][k], f"err_{key}{k}")
            parts.append((reg(d, f"c4_d_{key}{k}", 9), reg(emin, f"c4_e_{key}{k}", 8),
                          reg(inf, f"c4_inf_{key}{k}", 1)))
        terms[key] = parts

    valid, last, blk = (reg(valid, "c5_valid", 1), reg(last, "c5_last", 1),
                        reg(blk, "c5_blk", aux))
    for key in ("int", "fp"):
        terms[key] = [reg(square_f32(m, *p, f"sq_{key}{k}"), f"c5_sq_{key}{k}", 32)
                      for k, p in enumerate(terms[key])]

    # Lane tree: neighbours (0,1), (2,3), … as the golden balanced tree.
    level = 0
    while len(terms["int"]) > 1:
        level += 1
        valid, last, blk = (reg(valid, f"t{level}_valid", 1), reg(last, f"t{level}_last", 1),
                            reg(blk, f"t{level}_blk", aux))
        for key in ("int", "fp"):
            t = terms[key]
            terms[key] = [reg(add_nonnegative_f32(m, a, b, f"add{level}_{key}{j}"),
                              f"t{level}_{key}{j}", 32)
                          for j, (a, b) in enumerate(zip(t[0::2], t[1::2], strict=True))]
    sums = {key: terms[key][0] for key in ("int", "fp")}

    # Block tree over the slices of the block, in order: each level adds consecutive pairs
    # of the level below. An IF block has 2**n slices, so its last slice closes every level
    # with a pair; a shorter (non-IF) block closes the levels early (`last`), which keeps
    # every level aligned for the next block.
    span = 1
    while span < enc.beats_per_block * slices:
        span *= 2
        have = Signal(name=f"b{span}_have")  # the first of a pair is held
        held = {key: Signal(32, name=f"b{span}_held_{key}") for key in sums}
        out = {key: Signal(32, name=f"b{span}_{key}") for key in sums}
        with m.If(en & valid):
            m.d.sync += have.eq(~(have | last))
            with m.If(~have):
                m.d.sync += [held[key].eq(sums[key]) for key in sums]
        with m.If(en):
            m.d.sync += [out[key].eq(add_nonnegative_f32(m, held[key], sums[key],
                                                         f"badd{span}_{key}"))
                         for key in sums]
        valid, last, blk = (reg(valid & (have | last), f"b{span}_valid", 1),
                            reg(last, f"b{span}_last", 1), reg(blk, f"b{span}_blk", aux))
        sums = out

    # Both metrics are +0, positive or +Inf, so their bit patterns order like values.
    pick_fp = sums["fp"][:31] < sums["int"][:31]
    m.d.comb += [
        enc.metric_valid.eq(valid & last & en),
        enc.metric_int.eq(sums["int"]),
        enc.metric_fp.eq(sums["fp"]),
    ]
    return valid, last, blk, pick_fp, issue_done
