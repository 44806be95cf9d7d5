"""``QuantEncoder``: bf16 blocks → INT4 / FP4 / IF4 codes and bf16 block scales."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ...config import EngineConfig
from ...isa import WeightFormat
from ...numerics.fp import f32_to_bits
from ...numerics.quant_blocks import BF16_SIGN, scale_reciprocal
from ...numerics.quant_grids import FP4_E2M1, INT4, ElementFormat
from ._arith import BF16_NAN, add_nonnegative_f32, round_product_to_bf16, wire
from ._elements import KEY_BITS, magnitude_key, midpoint_factors, round_to_grid, threshold_key
from ._metric import error_parts, reconstruct_magnitude, square_f32
from .decode import e2m1_doubled_magnitude
from .layout import QuantGeometry

__all__ = ["QuantEncoder"]

_W = WeightFormat
#: Formats this encoder can build (the 8-bit and NVFP4 encoders are host-side for now).
ENCODER_FORMATS = (_W.INT4, _W.FP4, _W.IF4)

_AUX = data.StructLayout({  # one finished block, F → C
    "fmt": WeightFormat, "nonfinite": 1, "s_int": 15, "s_fp": 15,
})


def _block_scale(m: Module, absmax: Value, elem: ElementFormat, name: str) -> Value:
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


def _log2(value: int) -> int:
    return (value - 1).bit_length()


class QuantEncoder(wiring.Component):
    """Encode bf16 blocks into INT4, FP4 or IF4, bit-exact with ``encode_int4/fp4/if4``.

    A block is ``quant_block`` consecutive values arriving ``lanes`` per beat
    (``beats_per_block = quant_block // lanes`` beats). Per block (``docs/numerics-quant.md``):
    ``absmax`` of the flushed magnitudes; ``scale = f32_to_bf16(f32_mul(absmax, R))`` with the
    golden constants ``R`` (1/7 for INT4, 1/6 for FP4); element codes by exact comparison of
    ``|x|`` with ``M·scale`` for every grid midpoint ``M`` (ties to the even code, clamped to
    the top code); IF4 keeps FP4 only if its ``if_metric`` is strictly smaller. Zero blocks
    (scale 0) give all-zero codes; a block holding NaN/±Inf gives zero codes and scale
    ``0xFFC0`` (INT4, IF4) or ``0x7FC0`` (FP4).

    Structure: *fill* (input beats go into a FIFO while a max tree and an accumulator find
    ``absmax``; both scales are computed when the block is complete), *code* (the block's
    beats are read back and compared with the thresholds; for IF4 blocks they are also
    decoded again, ``metric_lanes`` elements per cycle, and run through the squared-error
    trees; codes of both formats wait in a FIFO), *output* (a beat per cycle once the block's
    INT/FP choice is known). The three phases overlap, with back-pressure on ``o`` and gaps on
    ``i`` allowed.

    Throughput: INT4 and FP4 blocks, and IF4 blocks when ``metric_lanes == lanes``, one beat
    per cycle (one block every ``beats_per_block`` cycles); IF4 blocks with a narrower metric
    take ``lanes // metric_lanes`` cycles per beat. ``latency`` (IF4) and ``latency_plain``
    (INT4/FP4): cycles from accepting a block's last beat to offering its first output beat,
    when nothing stalls and the encoder was idle.

    Parameters
    ----------
    config:
        The ``EngineConfig``; needs ``lanes ≤ quant_block`` and at least one of int4, fp4,
        if4 in ``formats`` (only enabled formats are built; IF4 adds the metric datapath).
    metric_lanes:
        Elements per cycle of the IF4 metric datapath (a power of two, 1…lanes; default
        ``lanes``). Its area is about proportional to this (two squared-error units and two
        fp32 adders per element).

    Ports
    -----
    i : In(stream.Signature(ArrayLayout(16, lanes)))
        bf16 input beats, element 0 in the low bits; blocks are consecutive groups of
        ``beats_per_block`` beats.
    fmt : In(isa.WeightFormat)
        Sampled with the first beat of each block. A format that is not built (or NVFP4,
        BF16, the 8-bit ones) encodes the block as zero codes with scale ``0x7FC0``.
    o : Out(stream.Signature(QuantGeometry.beat_layout))
        Codes of one beat (4-bit codes in the low ``4·lanes`` bits, the rest zero) with the
        block's scale in every ``scales`` entry: the decoder's input layout.
    """

    def __init__(self, config: EngineConfig, *, metric_lanes: int | None = None):
        g = QuantGeometry.from_config(config)
        formats = tuple(f for f in g.formats if f in ENCODER_FORMATS)
        if not formats:
            raise ValueError(
                f"QuantEncoder needs int4, fp4 or if4 in EngineConfig.formats, got "
                f"{config.formats}"
            )
        if g.lanes > g.quant_block:
            raise ValueError(
                f"QuantEncoder needs lanes ≤ quant_block (a beat inside one block); got "
                f"lanes={g.lanes}, quant_block={g.quant_block}"
            )
        if metric_lanes is None:
            metric_lanes = g.lanes
        if isinstance(metric_lanes, bool) or not isinstance(metric_lanes, int):
            raise TypeError(f"QuantEncoder: metric_lanes must be an int, got {metric_lanes!r}")
        if not (1 <= metric_lanes <= g.lanes and metric_lanes & (metric_lanes - 1) == 0):
            raise ValueError(
                f"QuantEncoder: metric_lanes={metric_lanes} must be a power of two in "
                f"1…lanes ({g.lanes})"
            )
        self.geometry = g
        self.formats = formats
        self.metric_lanes = metric_lanes
        self.beats_per_block = bpb = g.quant_block // g.lanes
        self._has_if = _W.IF4 in formats
        self._has_int = bool({_W.INT4, _W.IF4} & set(formats))
        self._has_fp = bool({_W.FP4, _W.IF4} & set(formats))
        self._slices = g.lanes // metric_lanes  # metric cycles per beat of an IF4 block
        # Metric stages from c2 to the decision: x̂, |d|, d², the lane tree and the tree over
        # the block's sub-beats (IF4 only; without it the decision is made at c2).
        self._decision_delay = (
            3 + _log2(metric_lanes) + _log2(bpb * self._slices) if self._has_if else 0
        )
        # FIFO depths. x: a block being read back plus the next one filling (full rate) and
        # the fill pipeline. aux: one entry per finished block whose beats are still in x (at
        # most x_depth/bpb + 1) — it never overflows. code: a block plus the beats that follow
        # it while its decision is computed (full rate); dec: one per block in code.
        self._x_depth = 2 * bpb + 8
        self._aux_depth = self._x_depth // bpb + 4
        self._code_depth = bpb + self._decision_delay + 4
        self._dec_depth = self._code_depth // bpb + 3
        # Last input beat → first output beat: beat max, accumulate and scale registers (3),
        # the aux FIFO (2), reading the block back (one cycle per beat or metric slice), c1
        # and c2 (2), the metric (decision_delay), the decision FIFO (2); the output is then
        # offered combinationally.
        self.latency_plain = 3 + 2 + (bpb - 1) + 2 + self._decision_delay + 2
        self.latency = self.latency_plain + (bpb * (self._slices - 1) if self._has_if else 0)
        if self._has_if:
            # Observation signals (not ports): the two IF metrics of each finished block, for
            # tests and tracing. ``metric_valid`` pulses when the block's decision is stored
            # (for every block; the values mean something for IF4 blocks only).
            self.metric_valid = Signal()
            self.metric_int = Signal(32)
            self.metric_fp = Signal(32)
        super().__init__({
            "i": In(stream.Signature(g.bf16_layout)),
            "fmt": In(WeightFormat),
            "o": Out(stream.Signature(g.beat_layout)),
        })

    # ------------------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        lanes, bpb = self.geometry.lanes, self.beats_per_block
        x_fifo, aux_fifo = self._fill(m)

        # Codes of the element formats built (both for IF4, whose choice comes later).
        code_layout = data.StructLayout({
            key: 4 * lanes
            for key, built in (("int", self._has_int), ("fp", self._has_fp)) if built
        })
        dec_layout = data.StructLayout({"scale": 16, "fp": 1})
        m.submodules.code_fifo = code_fifo = SyncFIFOBuffered(width=code_layout.size,
                                                              depth=self._code_depth)
        m.submodules.dec_fifo = dec_fifo = SyncFIFOBuffered(width=dec_layout.size,
                                                            depth=self._dec_depth)
        c2 = self._code(m, x_fifo, aux_fifo, code_fifo, code_layout)

        # The metric (and the decision) advance with en_back; they stall only when a decision
        # must be stored and the decision FIFO is full. Nothing else waits on them, so the
        # output side can always drain the code FIFO once a decision is stored: no deadlock.
        en_back = Signal()
        if self._has_if:
            valid, last, blk, pick_fp, issue_done = self._metric(m, c2, en_back)
            decision_valid = valid & last
            m.d.comb += en_back.eq(~decision_valid | dec_fifo.w_rdy)
        else:
            # No metric: c2's last beat carries the decision, stored once.
            issue, _, issue_done, _ = self._issue(m, c2, en_back, 1)
            m.d.comb += en_back.eq(~(c2["valid"] & c2["last"]) | dec_fifo.w_rdy)
            decision_valid = issue & c2["last"]
            blk, pick_fp = c2["blk"], Const(0, 1)
        m.d.comb += c2["sliced"].eq(issue_done)

        # Decision: the scale (with the INT flag) and which codes the output takes.
        fmt = blk.fmt
        built = set(self.formats)
        take_fp = (fmt == _W.FP4) | ((fmt == _W.IF4) & pick_fp & ~blk.nonfinite)
        known = Cat(*(fmt == f for f in built)).any()
        int_kind = (fmt == _W.INT4) | (fmt == _W.IF4)
        scale = Mux(
            ~known, BF16_NAN,
            Mux(blk.nonfinite, Mux(int_kind, BF16_NAN | BF16_SIGN, BF16_NAN),
                Mux(take_fp, blk.s_fp, Cat(blk.s_int, Const(1, 1)))),
        )
        decision = Signal(dec_layout)
        m.d.comb += [
            decision.scale.eq(scale),
            decision.fp.eq(take_fp),
            dec_fifo.w_data.eq(decision),
            dec_fifo.w_en.eq(decision_valid & en_back),  # (en_back is in `issue` already)
        ]

        # ======== output: a beat per cycle once the head block's decision is stored ========
        codes = data.View(code_layout, code_fifo.r_data)
        head = data.View(dec_layout, dec_fifo.r_data)
        o_beat = Signal(range(bpb), name="o_beat")
        take = Signal()
        m.d.comb += [
            self.o.valid.eq(code_fifo.r_rdy & dec_fifo.r_rdy),
            self.o.payload.codes.eq(
                Mux(head.fp, codes.fp, codes.int) if self._has_int and self._has_fp
                else codes.int if self._has_int else codes.fp),
            take.eq(self.o.valid & self.o.ready),
            code_fifo.r_en.eq(take),
            dec_fifo.r_en.eq(take & (o_beat == bpb - 1)),
        ]
        for k in range(self.geometry.scale_slots):
            m.d.comb += self.o.payload.scales[k].eq(head.scale)
        with m.If(take):
            m.d.sync += o_beat.eq(Mux(o_beat == bpb - 1, 0, o_beat + 1))
        return m

    # ------------------------------------------------------------------------------------------

    def _fill(self, m: Module):
        """Input FIFO, running absmax and the block scales (pushed into the aux FIFO)."""
        lanes, bpb = self.geometry.lanes, self.beats_per_block
        m.submodules.x_fifo = x_fifo = SyncFIFOBuffered(width=16 * lanes, depth=self._x_depth)
        m.submodules.aux_fifo = aux_fifo = SyncFIFOBuffered(width=_AUX.size,
                                                            depth=self._aux_depth)
        accept = Signal()
        m.d.comb += [
            self.i.ready.eq(x_fifo.w_rdy),
            accept.eq(self.i.valid & x_fifo.w_rdy),
            x_fifo.w_data.eq(self.i.payload),
            x_fifo.w_en.eq(accept),
        ]
        in_beat = Signal(range(bpb), name="in_beat")
        first, last = in_beat == 0, in_beat == bpb - 1
        fmt_held = Signal(WeightFormat, name="fmt_held")
        with m.If(accept):
            m.d.sync += in_beat.eq(Mux(last, 0, in_beat + 1))
            with m.If(first):
                m.d.sync += fmt_held.eq(self.fmt)

        # Beat max of the flushed magnitudes: for non-negative bf16 patterns, integer order is
        # value order. NaN/Inf make the block non-finite, which overrides the scale anyway.
        mags, nonfinite_lanes = [], []
        for k in range(lanes):
            x = self.i.payload[k]
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
            f1_nonfinite.eq(Cat(*nonfinite_lanes).any()),
            f1_fmt.eq(Mux(first, self.fmt, fmt_held)),
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
        f3 = Signal(_AUX)
        f3_valid = Signal()
        m.d.sync += [
            f3_valid.eq(f2_done),
            f3.fmt.eq(f2_fmt),
            f3.nonfinite.eq(nonfinite),
            f3.s_int.eq(_block_scale(m, absmax, INT4, "scale_int") if self._has_int else 0),
            f3.s_fp.eq(_block_scale(m, absmax, FP4_E2M1, "scale_fp") if self._has_fp else 0),
        ]
        m.d.comb += [aux_fifo.w_data.eq(f3), aux_fifo.w_en.eq(f3_valid)]
        return x_fifo, aux_fifo

    def _code(self, m: Module, x_fifo, aux_fifo, code_fifo, code_layout) -> dict:
        """Read blocks back (c1: thresholds), round to the grids (c2) and store the codes.

        Returns the c2 stage: its registers and the ``sliced`` input the metric drives (1 when
        the beat in c2 needs no more metric cycles; c2 takes the next beat only then and once
        its codes are in the code FIFO).
        """
        g = self.geometry
        lanes, bpb = g.lanes, self.beats_per_block
        built = set(self.formats)
        en_front = Signal(name="en_front")
        aux = data.View(_AUX, aux_fifo.r_data)
        c_beat = Signal(range(bpb), name="c_beat")
        go = Signal()
        m.d.comb += [
            go.eq(aux_fifo.r_rdy & x_fifo.r_rdy & en_front),
            x_fifo.r_en.eq(go),
            aux_fifo.r_en.eq(go & (c_beat == bpb - 1)),
        ]
        with m.If(go):
            m.d.sync += c_beat.eq(Mux(c_beat == bpb - 1, 0, c_beat + 1))

        def reg(value, name, shape):
            sig = Signal(shape, name=name)
            with m.If(en_front):
                m.d.sync += sig.eq(value)
            return sig

        # c1: the beat, the block info and the thresholds of both grids.
        c1_valid = reg(go, "c1_valid", 1)
        c1_last = reg(c_beat == bpb - 1, "c1_last", 1)
        c1_x = reg(x_fifo.r_data, "c1_x", 16 * lanes)
        c1_blk = reg(aux, "c1_blk", _AUX)
        thresholds = {}
        for key, elem, enabled in (("int", INT4, self._has_int), ("fp", FP4_E2M1, self._has_fp)):
            if enabled:
                scale = aux.s_int if key == "int" else aux.s_fp
                thresholds[key] = [
                    reg(threshold_key(m, f, scale, f"t_{key}{j}"), f"c1_t_{key}{j}", KEY_BITS)
                    for j, f in enumerate(midpoint_factors(elem))
                ]

        # c2: codes. Zero blocks, non-finite blocks and formats not built give code 0.
        known = Cat(*(c1_blk.fmt == f for f in built)).any()
        kill = ~known | c1_blk.nonfinite
        x1 = data.View(g.bf16_layout, c1_x)
        c2_mag = {key: [] for key in thresholds}
        codes_now = Signal(code_layout)
        x_keys = [magnitude_key(m, x1[k][0:15], f"xkey{k}") for k in range(lanes)]
        for key, ts in thresholds.items():
            scale = c1_blk.s_int if key == "int" else c1_blk.s_fp
            off = wire(m, kill | (scale == 0), f"off_{key}")
            codes = []
            for k in range(lanes):
                grid = round_to_grid(m, x_keys[k], ts, f"mag_{key}{k}")
                mag = wire(m, Mux(off, 0, grid), f"mag_{key}{k}_k", 3)
                negative = x1[k][15]
                if key == "int":  # two's complement; no −0
                    codes.append(Mux(negative, (0 - mag)[:4], mag))
                else:  # sign copied, so −0 exists
                    codes.append(Mux(off, 0, Cat(mag, negative)))
                c2_mag[key].append(reg(mag, f"c2_mag_{key}{k}", 3))
            m.d.comb += getattr(codes_now, key).eq(Cat(*codes))

        c2 = dict(
            valid=reg(c1_valid, "c2_valid", 1),
            last=reg(c1_last, "c2_last", 1),
            codes=reg(codes_now, "c2_codes", code_layout),
            x=reg(c1_x, "c2_x", 16 * lanes),
            blk=reg(c1_blk, "c2_blk", _AUX),
            mag=c2_mag,
            sliced=Signal(name="c2_sliced"),
            en_front=en_front,
        )
        # Store the codes once per beat; c2 is free when they are stored and the metric has
        # taken the beat.
        coded = Signal(name="c2_coded")
        write = wire(m, c2["valid"] & ~coded & code_fifo.w_rdy, "code_write")
        m.d.comb += [
            code_fifo.w_data.eq(c2["codes"]),
            code_fifo.w_en.eq(write),
            en_front.eq(~c2["valid"] | ((coded | write) & c2["sliced"])),
        ]
        m.d.sync += coded.eq(Mux(en_front, 0, coded | write))
        return c2

    def _issue(self, m: Module, c2: dict, en: Signal, slices: int):
        """Hand c2's beat to the metric: ``slices`` slices for an IF4 beat, one otherwise.

        Returns ``(issue, final, done, index)``: a slice is taken in this cycle; it is the
        beat's last; every slice of the beat has been taken (then c2 may take the next beat);
        the slice number (``None`` when ``slices == 1``). A non-IF4 beat is issued as one slice
        (slice 0, metric values unused) so that its block still produces exactly one decision,
        in order.
        """
        issued = Signal(name="slice_issued")  # every slice of c2's beat is already issued
        issue = wire(m, c2["valid"] & ~issued & en, "slice_issue")
        index = None
        if slices > 1:
            index = Signal(range(slices), name="slice_index")
            final = wire(m, (c2["blk"].fmt != _W.IF4) | (index == slices - 1), "slice_final")
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

    def _metric(self, m: Module, c2: dict, en: Signal):
        """IF4 metric: slices of c2's beat → x̂ (c3), |d| (c4), d² (c5), lane tree, block tree.

        Returns ``(valid, last, blk, pick_fp, issue_done)`` of the final stage and the
        combinational "c2's beat needs no more slices" flag.
        """
        g = self.geometry
        k_lanes, slices = self.metric_lanes, self._slices

        def reg(value, name, shape):
            sig = Signal(shape, name=name)
            with m.If(en):
                m.d.sync += sig.eq(value)
            return sig

        issue, final, issue_done, index = self._issue(m, c2, en, slices)

        def pick(values: list, width: int) -> list:
            """The elements of the current slice."""
            if slices == 1:
                return values
            word = Cat(*values).word_select(index, width * k_lanes)
            return [word[width * j : width * (j + 1)] for j in range(k_lanes)]

        x2 = data.View(g.bf16_layout, c2["x"])
        xs = pick([x2[k] for k in range(g.lanes)], 16)
        valid, last, blk = (reg(issue, "c3_valid", 1), reg(c2["last"] & final, "c3_last", 1),
                            reg(c2["blk"], "c3_blk", _AUX))
        c3_x = [reg(Mux(x[7:15] == 0, 0, x[0:15]), f"c3_x{k}", 15) for k, x in enumerate(xs)]
        terms = {}
        for key in ("int", "fp"):
            scale = c2["blk"].s_int if key == "int" else c2["blk"].s_fp
            xhat = []
            for k, mag in enumerate(pick(c2["mag"][key], 3)):
                # INT: the value is the magnitude; E2M1: (2·value)·2**-1.
                a, ea = (mag, 0) if key == "int" else (e2m1_doubled_magnitude(mag), -1)
                value = reconstruct_magnitude(m, a, ea, scale, f"xhat_{key}{k}")
                xhat.append(reg(value, f"c3_xhat_{key}{k}", 15))
            terms[key] = xhat

        valid, last, blk = (reg(valid, "c4_valid", 1), reg(last, "c4_last", 1),
                            reg(blk, "c4_blk", _AUX))
        for key in ("int", "fp"):
            parts = []
            for k in range(k_lanes):
                d, emin, inf = error_parts(m, c3_x[k], terms[key][k], f"err_{key}{k}")
                parts.append((reg(d, f"c4_d_{key}{k}", 9), reg(emin, f"c4_e_{key}{k}", 8),
                              reg(inf, f"c4_inf_{key}{k}", 1)))
            terms[key] = parts

        valid, last, blk = (reg(valid, "c5_valid", 1), reg(last, "c5_last", 1),
                            reg(blk, "c5_blk", _AUX))
        for key in ("int", "fp"):
            terms[key] = [reg(square_f32(m, *p, f"sq_{key}{k}"), f"c5_sq_{key}{k}", 32)
                          for k, p in enumerate(terms[key])]

        # Lane tree: neighbours (0,1), (2,3), … as the golden balanced tree.
        level = 0
        while len(terms["int"]) > 1:
            level += 1
            valid, last, blk = (reg(valid, f"t{level}_valid", 1), reg(last, f"t{level}_last", 1),
                                reg(blk, f"t{level}_blk", _AUX))
            for key in ("int", "fp"):
                t = terms[key]
                terms[key] = [reg(add_nonnegative_f32(m, a, b, f"add{level}_{key}{j}"),
                                  f"t{level}_{key}{j}", 32)
                              for j, (a, b) in enumerate(zip(t[0::2], t[1::2], strict=True))]
        sums = {key: terms[key][0] for key in ("int", "fp")}

        # Block tree over the slices of the block, in order: each level adds consecutive pairs
        # of the level below. An IF4 block has 2**n slices, so its last slice closes every
        # level with a pair; a shorter (non-IF4) block closes the levels early (`last`), which
        # keeps every level aligned for the next block.
        span = 1
        while span < self.beats_per_block * slices:
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
                                reg(last, f"b{span}_last", 1), reg(blk, f"b{span}_blk", _AUX))
            sums = out

        # Both metrics are +0, positive or +Inf, so their bit patterns order like values.
        pick_fp = sums["fp"][:31] < sums["int"][:31]
        m.d.comb += [
            self.metric_valid.eq(valid & last & en),
            self.metric_int.eq(sums["int"]),
            self.metric_fp.eq(sums["fp"]),
        ]
        return valid, last, blk, pick_fp, issue_done
