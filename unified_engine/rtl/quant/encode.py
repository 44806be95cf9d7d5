"""``QuantEncoder``: bf16 blocks → block-quantized codes and block scales, every format."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ...config import EngineConfig
from ...isa import WeightFormat
from ...numerics.quant_blocks import BF16_SIGN, NVFP4_BLOCK, NVFP4_E4M3_NAN
from ...numerics.quant_grids import FP4_E2M1, FP8_E4M3, INT4, INT8
from ._arith import BF16_NAN, EXP_SHAPE, wire
from ._elements import KEY_BITS, magnitude_key, midpoint_factors, round_to_grid, threshold_key
from ._encode_fill import NVFP4_FILL_STAGES, build_fill
from ._encode_metric import build_issue, build_metric
from ._grid import FRAC_FP, FRAC_INT, divide_start, divide_steps, round_fp_grid, round_int_grid
from ._nvfp4 import DIVISOR_BITS
from .layout import EIGHT_BIT_FORMATS, QuantGeometry

__all__ = ["ENCODER_FORMATS", "QuantEncoder"]

_W = WeightFormat
#: Formats this encoder can build: every block-quantized format.
ENCODER_FORMATS = tuple(f for f in WeightFormat if f is not _W.BF16)

_INT_KINDS = (_W.INT4, _W.IF4, _W.INT8, _W.IF8)  # formats that can emit INT codes
_FP_KINDS = (_W.FP4, _W.IF4, _W.FP8, _W.IF8, _W.NVFP4)


def _log2(value: int) -> int:
    return (value - 1).bit_length()


def _split(total: int, parts: int) -> list[int]:
    """``total`` division steps spread over ``parts`` pipeline segments, early ones heavier."""
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


class QuantEncoder(wiring.Component):
    """Encode bf16 blocks into any block-quantized format, bit-exact with ``quant_blocks``.

    A block is ``quant_block`` consecutive values (NVFP4: 16) arriving ``lanes`` per beat.
    Per block (``docs/numerics.md`` §5, golden ``encode_int4/fp4/if4/nvfp4/int8/fp8/if8``):
    ``absmax`` of the flushed magnitudes, then

    * bf16-scaled formats: ``scale = f32_to_bf16(f32_mul(absmax, R))`` with the golden
      constants ``R`` (1/7 INT4, 1/6 FP4, 1/127 INT8, 1/448 FP8); element magnitude code =
      the grid value nearest ``|x| / scale``, ties to the even code, clamped to the top code;
      IF4/IF8 keep the FP codes only if their ``if_metric`` is strictly smaller;
    * NVFP4: E4M3 block scale ``e4m3(absmax / (6·ts))`` (RNE, subnormals kept, saturating at
      448) with the fp32 tensor scale ``ts``; E2M1 codes of ``|x| / (block_scale·ts)``.

    Zero blocks (scale 0) give all-zero codes; a block holding NaN/±Inf gives zero codes and
    scale ``0xFFC0`` (INT/IF formats), ``0x7FC0`` (FP4, FP8) or ``0x007F`` (NVFP4).

    How element codes are found: a format whose grid has few midpoints (INT4, E2M1) compares
    ``|x|`` with the exact thresholds ``M·scale`` (``_elements.py``) — unless a divider is
    built for its grid anyway: when an 8-bit format or NVFP4 is built, ``|x| / divisor`` is
    divided per lane (restoring division, ``div_steps`` steps per pipeline stage) and the
    quotient rounded onto the grid (``_grid.py``); INT4/FP4 then share those dividers.

    Structure: *fill* (input beats go into a FIFO while a max tree and an accumulator find
    ``absmax``; the scales — for NVFP4 after a pipelined division — are computed when the
    block is complete), *code* (the block's beats are read back, divided where needed and
    rounded; for IF blocks they are also decoded again, ``metric_lanes`` elements per cycle,
    and run through the squared-error trees; codes of both element formats wait in a FIFO),
    *output* (a beat per cycle once the block's INT/FP choice is known). The three phases
    overlap, with back-pressure on ``o`` and gaps on ``i`` allowed.

    Throughput: one beat per cycle (one block every ``beats_per_block`` cycles), except IF
    blocks with a narrower metric, which take ``lanes // metric_lanes`` cycles per beat.
    ``latency`` (IF blocks), ``latency_plain`` (other bf16-scaled blocks) and
    ``latency_nvfp4``: cycles from accepting a block's last beat to offering its first output
    beat, when nothing stalls and the encoder was idle.

    Parameters
    ----------
    config:
        The ``EngineConfig``; every block format in ``formats`` is built (IF4/IF8 add the
        metric datapath). Needs ``lanes ≤ quant_block`` (and ``lanes ≤ 16`` with NVFP4): a
        beat lies inside one block.
    metric_lanes:
        Elements per cycle of the IF metric datapath (a power of two, 1…lanes; default
        ``lanes``). Its area is about proportional to this (two squared-error units and two
        fp32 adders per element).
    div_steps:
        Division steps per pipeline stage (≥ 1, default 3): fewer steps, more stages and a
        shorter critical path. Only matters when a divider is built.

    Ports
    -----
    i : In(stream.Signature(ArrayLayout(16, lanes)))
        bf16 input beats, element 0 in the low bits; blocks are consecutive groups of
        ``beats_per_block`` beats (``beats_per_nvfp4_block`` for NVFP4 blocks).
    fmt : In(isa.WeightFormat)
        Sampled with the first beat of each block. A format that is not built (or BF16)
        encodes the block as zero codes with scale ``0x7FC0``.
    tensor_scale : In(32)
        Only when NVFP4 is built: the fp32 tensor scale (a positive normal, as the dispatcher
        checks), sampled with the first beat of each block.
    o : Out(stream.Signature(QuantGeometry.beat_layout))
        Codes of one beat (4-bit codes in the low ``4·lanes`` bits and the rest zero; 8-bit
        codes fill the field) with the block's scale entry in every ``scales`` slot: bf16
        bits with the INT flag, or for NVFP4 the E4M3 code in the low byte. This is the
        decoder's input layout.
    """

    def __init__(self, config: EngineConfig, *, metric_lanes: int | None = None,
                 div_steps: int = 3):
        g = QuantGeometry.from_config(config)
        formats = tuple(f for f in g.formats if f in ENCODER_FORMATS)
        if not formats:
            raise ValueError(
                f"QuantEncoder needs a block format in EngineConfig.formats (int4, fp4, if4, "
                f"nvfp4, int8, fp8, if8), got {config.formats}"
            )
        built = set(formats)
        nv = _W.NVFP4 in built
        if g.lanes > g.quant_block or (nv and g.lanes > NVFP4_BLOCK):
            raise ValueError(
                f"QuantEncoder needs lanes ≤ quant_block (a beat inside one block) and, with "
                f"NVFP4, lanes ≤ {NVFP4_BLOCK}; got lanes={g.lanes}, "
                f"quant_block={g.quant_block}"
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
        if isinstance(div_steps, bool) or not isinstance(div_steps, int) or div_steps < 1:
            raise ValueError(f"QuantEncoder: div_steps must be an int ≥ 1, got {div_steps!r}")
        self.geometry = g
        self.formats = formats
        self.metric_lanes = metric_lanes
        self.beats_per_block = bpb = g.quant_block // g.lanes
        self.beats_per_nvfp4_block = NVFP4_BLOCK // g.lanes if nv else None
        self._has_nv = nv
        self._has_if = bool({_W.IF4, _W.IF8} & built)
        self._has_int = bool(set(_INT_KINDS) & built)
        self._has_fp = bool(set(_FP_KINDS) & built)
        # Which element grids are divided (else compared with thresholds), and the width of
        # the magnitude codes each key carries (7 bits when its 8-bit grid is built).
        self._int_div = bool({_W.INT8, _W.IF8} & built)
        self._fp_div = bool({_W.FP8, _W.IF8, _W.NVFP4} & built)
        self._mag_bits = {"int": 7 if self._int_div else 3,
                          "fp": 7 if {_W.FP8, _W.IF8} & built else 3}
        totals = ([FRAC_INT + 1] if self._int_div else []) + ([FRAC_FP + 1] if self._fp_div
                                                                else [])
        self._div_segments = max([1] + [-(-t // div_steps) for t in totals])
        self._slices = g.lanes // metric_lanes  # metric cycles per beat of an IF block
        # Metric stages from c2 to the decision: x̂, |d|, d², the lane tree and the tree over
        # the block's sub-beats (IF only; without it the decision is made at c2).
        self._decision_delay = (
            3 + _log2(metric_lanes) + _log2(bpb * self._slices) if self._has_if else 0
        )
        fill_extra = NVFP4_FILL_STAGES if nv else 0  # the NVFP4 block scale's stages
        # FIFO depths. x: a block being read back plus the next one filling (full rate) and
        # the fill pipeline. aux: one entry per finished block whose beats are still in x (at
        # most x_depth/bpb + 1) — it never overflows. code: a block plus the beats that follow
        # it while its decision is computed (full rate); dec: one per block in code.
        self._x_depth = 2 * bpb + 8 + fill_extra
        shortest = self.beats_per_nvfp4_block if nv else bpb  # beats of the shortest block
        self._aux_depth = self._x_depth // shortest + 4
        self._code_depth = bpb + self._decision_delay + 4
        self._dec_depth = self._code_depth // shortest + 3
        # Last input beat → first output beat: beat max, accumulate and scale registers (3,
        # plus the NVFP4 stages), the aux FIFO (2), reading the block back (one cycle per beat
        # or metric slice), the division stages, c1 and c2 (2), the metric (decision_delay),
        # the decision FIFO (2); the output is then offered combinationally.
        self.latency_plain = (3 + fill_extra + 2 + (bpb - 1) + self._div_segments - 1 + 2
                              + self._decision_delay + 2)
        self.latency = self.latency_plain + (bpb * (self._slices - 1) if self._has_if else 0)
        self.latency_nvfp4 = (self.latency_plain - bpb + self.beats_per_nvfp4_block
                              if nv else None)
        aux = {"fmt": WeightFormat, "nonfinite": 1, "s_int": 15, "s_fp": 15}
        if nv:
            aux.update(nv_div=DIVISOR_BITS, nv_exp=EXP_SHAPE)
        self._aux = data.StructLayout(aux)  # one finished block, fill → code
        if self._has_if:
            # Observation signals (not ports): the two IF metrics of each finished block, for
            # tests and tracing. ``metric_valid`` pulses when the block's decision is stored
            # (for every block; the values mean something for IF blocks only).
            self.metric_valid = Signal()
            self.metric_int = Signal(32)
            self.metric_fp = Signal(32)
        members = {
            "i": In(stream.Signature(g.bf16_layout)),
            "fmt": In(WeightFormat),
            "o": Out(stream.Signature(g.beat_layout)),
        }
        if nv:
            members["tensor_scale"] = In(32)
        super().__init__(members)

    def _last_beat(self, beat: Value, nvfp4: Value) -> Value:
        """``beat`` is the last of a block (an NVFP4 block if ``nvfp4``)."""
        last = beat == self.beats_per_block - 1
        if self._has_nv and self.beats_per_nvfp4_block != self.beats_per_block:
            last = Mux(nvfp4, beat == self.beats_per_nvfp4_block - 1, last)
        return last

    def _is(self, fmt: Value, *formats: WeightFormat) -> Value:
        """``fmt`` is one of ``formats`` that is built (constant 0 if none is)."""
        terms = [fmt == f for f in formats if f in self.formats]
        return Cat(*terms).any() if terms else Const(0, 1)

    # ------------------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        lanes = self.geometry.lanes
        x_fifo, aux_fifo = build_fill(self, m)

        # Codes of the element formats built (both for IF, whose choice comes later).
        code_layout = data.StructLayout({
            key: self.geometry.code_bits * lanes
            for key, built in (("int", self._has_int), ("fp", self._has_fp)) if built
        })
        dec_layout = data.StructLayout({"scale": 16, "fp": 1, "nv": 1})
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
            valid, last, blk, pick_fp, issue_done = build_metric(self, m, c2, en_back)
            decision_valid = valid & last
            m.d.comb += en_back.eq(~decision_valid | dec_fifo.w_rdy)
        else:
            # No metric: c2's last beat carries the decision, stored once.
            issue, _, issue_done, _ = build_issue(self, m, c2, en_back, 1)
            m.d.comb += en_back.eq(~(c2["valid"] & c2["last"]) | dec_fifo.w_rdy)
            decision_valid = issue & c2["last"]
            blk, pick_fp = c2["blk"], Const(0, 1)
        m.d.comb += c2["sliced"].eq(issue_done)

        # Decision: the scale entry (with the INT flag) and which codes the output takes.
        fmt = blk.fmt
        is_nv = self._is(fmt, _W.NVFP4)
        take_fp = (self._is(fmt, _W.FP4, _W.FP8, _W.NVFP4)
                   | (self._is(fmt, _W.IF4, _W.IF8) & pick_fp & ~blk.nonfinite))
        known = self._is(fmt, *self.formats)
        int_kind = self._is(fmt, *_INT_KINDS)
        nonfinite_scale = Mux(int_kind, BF16_NAN | BF16_SIGN,
                              Mux(is_nv, NVFP4_E4M3_NAN, BF16_NAN))
        # s_fp holds the E4M3 code (high bits zero) for an NVFP4 block.
        scale = Mux(~known, BF16_NAN,
                    Mux(blk.nonfinite, nonfinite_scale,
                        Mux(take_fp, blk.s_fp, Cat(blk.s_int, Const(1, 1)))))
        decision = Signal(dec_layout)
        m.d.comb += [
            decision.scale.eq(scale),
            decision.fp.eq(take_fp),
            decision.nv.eq(is_nv),
            dec_fifo.w_data.eq(decision),
            dec_fifo.w_en.eq(decision_valid & en_back),  # (en_back is in `issue` already)
        ]

        # ======== output: a beat per cycle once the head block's decision is stored ========
        codes = data.View(code_layout, code_fifo.r_data)
        head = data.View(dec_layout, dec_fifo.r_data)
        o_beat = Signal(range(self.beats_per_block), name="o_beat")
        o_last = wire(m, self._last_beat(o_beat, head.nv), "o_last")
        take = Signal()
        m.d.comb += [
            self.o.valid.eq(code_fifo.r_rdy & dec_fifo.r_rdy),
            self.o.payload.codes.eq(
                Mux(head.fp, codes.fp, codes.int) if self._has_int and self._has_fp
                else codes.int if self._has_int else codes.fp),
            take.eq(self.o.valid & self.o.ready),
            code_fifo.r_en.eq(take),
            dec_fifo.r_en.eq(take & o_last),
        ]
        for k in range(self.geometry.scale_slots):
            m.d.comb += self.o.payload.scales[k].eq(head.scale)
        with m.If(take):
            m.d.sync += o_beat.eq(Mux(o_last, 0, o_beat + 1))
        return m

    # ------------------------------------------------------------------------------------------

    def _divisor(self, m: Module, key: str, blk, name: str) -> Value:
        """Normalised divisor significand of the ``key`` grid for block ``blk``."""
        if key == "int":
            return Cat(blk.s_int[0:7], 1)
        sig = Cat(blk.s_fp[0:7], 1)
        if not self._has_nv:
            return sig
        wide = Cat(Const(0, DIVISOR_BITS - 8), sig)
        return wire(m, Mux(blk.fmt == _W.NVFP4, blk.nv_div, wide), name, DIVISOR_BITS)

    def _divide(self, m: Module, front: dict, reg) -> tuple[dict, dict]:
        """Division segments from the FIFO read (c0) to c1, with registers between them.

        ``front`` holds the c0 values (valid, last, x, blk); returns them as they enter c1
        and, per ``(key, lane)``, the quotient bits and remainder computed so far (all the
        steps: the last segment ends at c1).
        """
        g = self.geometry
        segs = self._div_segments
        plans = {}
        if self._int_div:
            plans["int"] = _split(FRAC_INT + 1, segs)
        if self._fp_div:
            plans["fp"] = _split(FRAC_FP + 1, segs)
        state = {}
        shapes = {"valid": 1, "last": 1, "x": 16 * g.lanes, "blk": self._aux}
        for seg in range(segs):
            x = data.View(g.bf16_layout, front["x"])
            for key, plan in plans.items():
                divisor = self._divisor(m, key, front["blk"], f"div_{key}_s{seg}")
                for k in range(g.lanes):
                    steps, name = plan[seg], f"div_{key}{k}_s{seg}"
                    if seg == 0:
                        sig = Cat(Const(0, len(divisor) - 8), x[k][0:7], 1)
                        q, rem = divide_start(m, sig, divisor, name)
                        steps -= 1
                    else:
                        q, rem = state[key, k]
                    if steps:
                        q, rem = divide_steps(m, q, rem, divisor, steps, name)
                    state[key, k] = (q, rem)
            if seg < segs - 1:
                front = {n: reg(v, f"d{seg + 1}_{n}", shapes[n]) for n, v in front.items()}
                state = {(key, k): (reg(q, f"d{seg + 1}_q_{key}{k}", len(q)),
                                    reg(rem, f"d{seg + 1}_r_{key}{k}", len(rem)))
                         for (key, k), (q, rem) in state.items()}
        return front, state

    def _grid_code(self, m: Module, key: str, c1: dict, k: int, wide: Value) -> Value:
        """Magnitude code of lane ``k`` on the ``key`` grid, from its quotient (c1 → c2)."""
        built = set(self.formats)
        x = data.View(self.geometry.bf16_layout, c1["x"])[k]
        blk = c1["blk"]
        q, sticky = c1["div"][key, k]
        if key == "int":
            d = wire(m, x[7:15] - blk.s_int[7:15], f"int{k}_d", EXP_SHAPE)
            both = {_W.INT4, _W.IF4} & built and {_W.INT8, _W.IF8} & built
            top = Mux(wide, INT8.max_code, INT4.max_code) if both else (
                INT8.max_code if {_W.INT8, _W.IF8} & built else INT4.max_code)
            return round_int_grid(m, q, sticky, d, top, f"int{k}_grid")
        e_div = blk.s_fp[7:15]
        if self._has_nv:
            e_div = Mux(blk.fmt == _W.NVFP4, blk.nv_exp, e_div)
        d = wire(m, x[7:15] - e_div, f"fp{k}_d", EXP_SHAPE)
        options = []
        if {_W.FP4, _W.IF4, _W.NVFP4} & built:
            options.append(round_fp_grid(m, q, sticky, d, mant=1, emin=0,
                                         max_code=FP4_E2M1.max_code, name=f"fp{k}_e2m1"))
        if {_W.FP8, _W.IF8} & built:
            options.append(round_fp_grid(m, q, sticky, d, mant=3, emin=-6,
                                         max_code=FP8_E4M3.max_code, name=f"fp{k}_e4m3"))
        return Mux(wide, options[1], options[0]) if len(options) == 2 else options[0]

    def _code(self, m: Module, x_fifo, aux_fifo, code_fifo, code_layout) -> dict:
        """Read blocks back (division stages, c1: thresholds or quotients), round to the
        grids (c2) and store the codes.

        Returns the c2 stage: its registers and the ``sliced`` input the metric drives (1 when
        the beat in c2 needs no more metric cycles; c2 takes the next beat only then and once
        its codes are in the code FIFO).
        """
        g = self.geometry
        lanes = g.lanes
        built = set(self.formats)
        en_front = Signal(name="en_front")
        aux = data.View(self._aux, aux_fifo.r_data)
        c_beat = Signal(range(self.beats_per_block), name="c_beat")
        c_last = wire(m, self._last_beat(c_beat, aux.fmt == _W.NVFP4), "c_last")
        go = Signal()
        m.d.comb += [
            go.eq(aux_fifo.r_rdy & x_fifo.r_rdy & en_front),
            x_fifo.r_en.eq(go),
            aux_fifo.r_en.eq(go & c_last),
        ]
        with m.If(go):
            m.d.sync += c_beat.eq(Mux(c_last, 0, c_beat + 1))

        def reg(value, name, shape):
            sig = Signal(shape, name=name)
            with m.If(en_front):
                m.d.sync += sig.eq(value)
            return sig

        front, quotients = self._divide(
            m, dict(valid=go, last=c_last, x=x_fifo.r_data, blk=aux), reg)

        # c1: the beat, the block info, the thresholds (compared grids) and the quotients.
        c1 = dict(
            valid=reg(front["valid"], "c1_valid", 1),
            last=reg(front["last"], "c1_last", 1),
            x=reg(front["x"], "c1_x", 16 * lanes),
            blk=reg(front["blk"], "c1_blk", self._aux),
            div={kk: (reg(q, f"c1_q_{kk[0]}{kk[1]}", len(q)),
                      reg(rem != 0, f"c1_sticky_{kk[0]}{kk[1]}", 1))
                 for kk, (q, rem) in quotients.items()},
        )
        thresholds = {}
        for key, elem, compared in (("int", INT4, self._has_int and not self._int_div),
                                    ("fp", FP4_E2M1, self._has_fp and not self._fp_div)):
            if compared:
                scale = front["blk"].s_int if key == "int" else front["blk"].s_fp
                thresholds[key] = [
                    reg(threshold_key(m, f, scale, f"t_{key}{j}"), f"c1_t_{key}{j}", KEY_BITS)
                    for j, f in enumerate(midpoint_factors(elem))
                ]

        # c2: codes. Zero blocks, non-finite blocks and formats not built give code 0.
        blk = c1["blk"]
        known = self._is(blk.fmt, *built)
        kill = ~known | blk.nonfinite
        wide = wire(m, self._is(blk.fmt, *EIGHT_BIT_FORMATS), "c1_wide")
        x1 = data.View(g.bf16_layout, c1["x"])
        if thresholds:
            x_keys = [magnitude_key(m, x1[k][0:15], f"xkey{k}") for k in range(lanes)]
        c2_mag = {}
        codes_now = Signal(code_layout)
        for key in code_layout.members:
            width = self._mag_bits[key]
            scale = blk.s_int if key == "int" else blk.s_fp
            off = wire(m, kill | (scale == 0), f"off_{key}")
            c2_mag[key] = []
            narrow, full = [], []
            for k in range(lanes):
                x = x1[k]
                if key in thresholds:
                    grid = round_to_grid(m, x_keys[k], thresholds[key], f"mag_{key}{k}")
                else:
                    grid = self._grid_code(m, key, c1, k, wide)
                mag = wire(m, Mux(off | (x[7:15] == 0), 0, grid), f"mag_{key}{k}_k", width)
                negative = x[15]
                if key == "int":  # two's complement; no −0
                    narrow.append(Mux(negative, (0 - mag)[:4], mag[:3]))
                    full.append(Mux(negative, (0 - mag)[:8], mag))
                else:  # sign copied, so −0 exists
                    narrow.append(Mux(off, 0, Cat(mag[:3], negative)))
                    full.append(Mux(off, 0, Cat(mag[:7], negative)))
                c2_mag[key].append(reg(mag, f"c2_mag_{key}{k}", width))
            field = Cat(*narrow)
            if width == 7:
                field = Mux(wide, Cat(*full), field)
            m.d.comb += getattr(codes_now, key).eq(field)

        c2 = dict(
            valid=reg(c1["valid"], "c2_valid", 1),
            last=reg(c1["last"], "c2_last", 1),
            codes=reg(codes_now, "c2_codes", code_layout),
            x=reg(c1["x"], "c2_x", 16 * lanes),
            blk=reg(blk, "c2_blk", self._aux),
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

