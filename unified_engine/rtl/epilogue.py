"""``Epilogue``: the fused post-processing of the systolic array's output rows (DESIGN.md §3).

Every beat is one output row of C fp32 accumulators (C = ``EngineConfig.cols``). It goes
through these stages, one beat per cycle::

    acc ─► + bias, × scale ─► activation ─► round ─► row max ─► out
           (4 + 4, order     (10 + Ls)     (1)      (Lt + 1; the data waits beside it)
            per command)

1. **bias and scale**, in the order the command's ``order`` selects:
   ``BIAS_SCALE``: ``f32_mul(f32_add(acc, bias), scale)``; ``SCALE_BIAS``:
   ``f32_add(f32_mul(acc, scale), bias)`` (the order of ``docs/isa.md`` MATMUL). The bias
   (``isa.BiasMode``) is the beat's bf16 ``bias`` lanes widened to fp32 (``fp.bf16_to_f32``):
   ``COL`` and ``FULL`` add lane k to column k (the bias feeder supplies the column vector
   ``bias[n]`` for every row, or one row of a full matrix per beat), ``ROW`` adds lane 0 to
   every column (a per-row scalar), ``NONE`` adds -0, the identity of ``f32_add`` (``x +
   (-0) = x`` after FTZ and NaN canonicalisation, which ``f32_mul`` applies anyway). A scale
   of 1.0 is the identity of ``f32_mul`` in the same sense.
2. **activation** (``isa.ActKind``; golden ``numerics.activation``): ``IDENTITY`` and
   ``CLAMP`` are the bypass ``f32_min(f32_max(x, lo), hi)`` with (lo, hi) = (-Inf, +Inf) or
   (a, b) (ReLU is a = +0, b = +Inf); ``UNIFIED`` is ``y = (a + c·x)·σ(b·x) + d`` in the
   model's exact order ``z = b⊗x; s = sigmoid(z); u = c⊗x; g = a + u; p = g⊗s; y = p + d``
   where ⊗ is the **zero-dominant** fp32 multiply (a ±0 operand gives a signed zero even
   against ±Inf; NaN still wins). GELU, SiLU, sigmoid and tanh are presets of (a, b, c, d).
3. **round** (``isa.ElemFormat``): ``BF16`` rounds to nearest even (``fp.f32_to_bf16``) and
   puts the bf16 pattern in the upper half of the 32-bit lane, so the lane reads as the fp32
   value of what is written (``fp.f32_to_bf16_f32``); ``FP32`` passes the activated value.
4. **row max** (for softmax): ``f32_max`` over the beat's C values *as written* (the lanes
   of step 3, as docs/isa.md defines it, so that ``exp(x - max)`` is exactly 1 at the maximum;
   because rounding is monotonic this is the bf16 rounding of the maximum of the activated
   values), through a ``MaxTree``, combined with a running maximum kept per tile row: slot
   ``row`` restarts from the beat's own maximum when ``first`` is set and is ``f32_max``-ed
   with it otherwise. The beat reports the slot's value after itself in ``row_max``. There
   are ``config.tile_rows`` slots (+0 after reset), so the rows of one output row block keep
   their maxima across the block's column tiles.

The command (modes and fp32 parameters: an ``EPI`` table entry plus the MATMUL's bias mode and
output format) is a static port, ``cmd``, held stable while a beat is in flight (``busy``).
:func:`epilogue_command` builds a validated one.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Cat, Const, EnableInserter, Module, Mux, Signal, Value
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import EngineConfig
from ..isa import ActKind, BiasMode, ElemFormat
from ..numerics import activation as _act
from ..numerics.fp import f32_order_key, f32_to_bits, ftz32
from ._delay import delay
from .fp import Fp32Adder, Fp32Compare, Fp32Multiplier, Fp32ToBf16, MaxTree
from .transcendental import SigmoidDatapath

__all__ = [
    "COMMAND_LAYOUT",
    "Epilogue",
    "Order",
    "epilogue_command",
]

_NEG_ZERO = 0x80000000
_POS_ZERO = 0x00000000
_POS_INF = 0x7F800000
_NEG_INF = 0xFF800000

_ADD_LATENCY = 4
_MUL_LATENCY = 3  # the activation's multipliers
_SCALE_LATENCY = 4  # the scale multiplier: = _ADD_LATENCY, so the two can swap places


class Order(enum.Enum, shape=1):
    """Order of the bias add and the scale multiply."""

    BIAS_SCALE = 0  #: (acc + bias) · scale
    SCALE_BIAS = 1  #: acc · scale + bias (docs/isa.md MATMUL)


#: The static command port: an ``EPI`` table entry (``act``, ``scale``, ``a``…``d``) plus the
#: bias mode, output format and stage order. fp32 parameters are bit patterns.
COMMAND_LAYOUT = data.StructLayout(
    {
        "bias_mode": BiasMode,
        "act": ActKind,
        "out_fmt": ElemFormat,
        "order": Order,
        "scale": 32,
        "a": 32,
        "b": 32,
        "c": 32,
        "d": 32,
    }
)

_BIAS_MODES = {m.name.lower(): m for m in BiasMode}
_OUT_FORMATS = {f.name.lower(): f for f in ElemFormat}
_ORDERS = {o.name.lower(): o for o in Order}


def _fp32_param(value, name: str, *, allow_inf: bool = False) -> int:
    """Bit pattern of an fp32 parameter: a real number exactly representable, not NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"epilogue_command: {name} must be a real number, got {value!r}")
    with np.errstate(over="ignore"):
        v32 = np.float32(value)
    if np.isnan(v32):
        raise ValueError(f"epilogue_command: {name} must not be NaN")
    if np.isinf(v32) and not allow_inf:
        raise ValueError(f"epilogue_command: {name} must be finite, got {value!r}")
    if np.isinf(v32) and not np.isinf(float(value)):
        raise ValueError(f"epilogue_command: {name}={value!r} overflows fp32")
    if not np.isinf(v32) and float(v32) != float(value):
        raise ValueError(
            f"epilogue_command: {name}={value!r} is not exactly representable in fp32; "
            f"pass numpy.float32({value!r})"
        )
    return int(f32_to_bits(ftz32(v32)))  # a subnormal parameter is read as ±0, as in the model


def _choice(table: dict, value, what: str):
    if not isinstance(value, str) or value not in table:
        raise ValueError(
            f"epilogue_command: unknown {what} {value!r}; allowed: {', '.join(table)}"
        )
    return table[value]


def epilogue_command(
    *,
    bias: str = "none",
    scale=1.0,
    activation: str = "identity",
    params=None,
    output: str = "bf16",
    order: str = "scale_bias",
) -> data.Const:
    """A validated value for ``Epilogue.cmd``.

    Parameters
    ----------
    bias:
        ``"none"``, ``"row"``, ``"col"`` or ``"full"`` (``isa.BiasMode``).
    scale:
        fp32 scale factor (finite, exactly representable in fp32).
    activation, params:
        As ``numerics.activation.activate``: a preset (``"gelu"``, ``"silu"``,
        ``"sigmoid"``, ``"tanh"``; no params), ``"unified"`` with ``(a, b, c, d)`` (finite),
        ``"identity"`` or ``"relu"`` (no params), or ``"clamp"`` with ``(lo, hi)`` (±Inf
        allowed, lo <= hi with -0 < +0). Presets become ``UNIFIED`` with the model's
        parameters, ``relu`` becomes ``CLAMP`` with (+0, +Inf).
    output:
        ``"bf16"`` or ``"fp32"`` (``isa.ElemFormat``).
    order:
        ``"scale_bias"`` (acc·scale + bias; the default, the ISA's MATMUL order) or
        ``"bias_scale"`` ((acc + bias)·scale).

    Returns
    -------
    ``amaranth.lib.data.Const`` of :data:`COMMAND_LAYOUT`, for ``ctx.set(dut.cmd, value)`` or
    ``dut.cmd.eq(value)``. Subnormal parameters are stored as ±0 (the models read them so).
    """
    fields = dict(
        bias_mode=_choice(_BIAS_MODES, bias, "bias mode"),
        out_fmt=_choice(_OUT_FORMATS, output, "output format"),
        order=_choice(_ORDERS, order, "order"),
        scale=_fp32_param(scale, "scale"),
        a=0, b=0, c=0, d=0,
    )  # fmt: skip
    if not isinstance(activation, str) or activation not in _act.MODES:
        raise ValueError(f"epilogue_command: unknown activation {activation!r}; allowed: "
                         f"{', '.join(_act.MODES)}")  # fmt: skip
    takes = {"unified": 4, "clamp": 2}.get(activation, 0)
    if takes == 0 and params is not None:
        raise ValueError(f"epilogue_command: activation {activation!r} takes no params, "
                         f"got {params!r}")  # fmt: skip
    if takes and (not isinstance(params, tuple | list) or len(params) != takes):
        names = "(a, b, c, d)" if takes == 4 else "(lo, hi)"
        raise ValueError(f"epilogue_command: activation {activation!r} needs params={names}, "
                         f"got {params!r}")  # fmt: skip
    if activation in _act.ACTIVATIONS or activation == "unified":
        values = _act.ACTIVATIONS[activation] if activation != "unified" else params
        fields["act"] = ActKind.UNIFIED
        for name, value in zip("abcd", values, strict=True):
            fields[name] = _fp32_param(value, name)
    elif activation in ("clamp", "relu"):
        bounds = params if activation == "clamp" else (0.0, np.inf)
        lo, hi = (_fp32_param(v, n, allow_inf=True)
                  for v, n in zip(bounds, ("lo", "hi"), strict=True))  # fmt: skip
        keys = f32_order_key(np.array([lo, hi], np.uint32).view(np.float32))
        if keys[0] > keys[1]:
            raise ValueError(f"epilogue_command: clamp needs lo <= hi, got {params!r}")
        fields.update(act=ActKind.CLAMP, a=lo, b=hi)
    else:
        fields["act"] = ActKind.IDENTITY
    return COMMAND_LAYOUT.const(fields)


def _is_zero(x: Value) -> Value:
    return x[23:31] == 0  # ±0 or a subnormal, which the multiplier reads as ±0


def _is_inf(x: Value) -> Value:
    return (x[23:31] == 0xFF) & (x[0:23] == 0)


def _zero_dominant_mul(m: Module, a: Value, b: Value, name: str) -> Value:
    """``Fp32Multiplier`` with the activation block's rule: ±0 × ±Inf is a signed zero (the
    XOR of the signs) instead of NaN; everything else, NaN operands included, is unchanged.
    Latency ``_MUL_LATENCY``."""
    mul = Fp32Multiplier(latency=_MUL_LATENCY)
    m.submodules[name] = mul
    m.d.comb += [mul.a.eq(a), mul.b.eq(b)]
    a, b = Value.cast(a), Value.cast(b)
    override = delay(m, (_is_zero(a) & _is_inf(b)) | (_is_inf(a) & _is_zero(b)), _MUL_LATENCY,
                     f"{name}_zd")  # fmt: skip
    sign = delay(m, a[31] ^ b[31], _MUL_LATENCY, f"{name}_sign")
    return Mux(override, Cat(Const(0, 31), sign), mul.result)


class Epilogue(wiring.Component):
    """Bias, scale, activation, output rounding and running row max of C lanes per beat.

    See the module docstring for the stages, their order and golden models.

    Parameters
    ----------
    config:
        ``cols`` (C, lanes per beat) and ``tile_rows`` (row-max slots) are used.

    Ports
    -----
    i : In(stream.Signature(i_layout))
        One output row per transfer: ``acc`` (ArrayLayout(32, C), fp32 accumulators),
        ``bias`` (ArrayLayout(16, C), bf16 bias lanes; only lane 0 is read in ``ROW`` mode,
        none in ``NONE``), ``row`` (row-max slot, ``row_bits`` wide, < ``slots``), ``first``
        (restart that slot's running max) and ``last`` (passed through).
    cmd : In(COMMAND_LAYOUT)
        The command; hold it stable while ``busy``.
    o : Out(stream.Signature(o_layout))
        One result per input beat, in order: ``data`` (ArrayLayout(32, C), see the rounding
        stage), ``row_max`` (fp32, the slot's running max after this beat), and ``row``,
        ``first``, ``last`` passed through.
    busy : Out(1)
        A beat is in the pipeline or waiting on ``o``.

    Timing
    ------
    ``latency = 8 + (10 + Ls) + 1 + Lt + 1`` cycles from input to output transfer in every
    mode: bias and scale 4 + 4, activation with Ls = ``SigmoidDatapath().latency`` (28), the
    bf16 rounding 1, the max tree Lt = ``ceil(log2 C)`` and the running max 1; 51 for C = 8,
    49 for C = 2. One beat per cycle; the whole pipeline holds while ``o.valid & ~o.ready``,
    and ``i.ready = ~o.valid | o.ready`` (combinational from ``o.ready``, no skid buffer). With
    ``o`` always ready it takes the array's always-ready result stream directly.
    """

    def __init__(self, config: EngineConfig):
        if not isinstance(config, EngineConfig):
            raise TypeError(f"Epilogue needs an EngineConfig, got {type(config).__name__}")
        self.config = config
        self.cols = cols = config.cols
        self.slots = config.tile_rows
        self.row_bits = max(1, ceil_log2(self.slots))
        # Built here (not in elaborate) so that their latencies are known up front.
        self._sigmoids = [SigmoidDatapath() for _ in range(cols)]
        self._max_tree = MaxTree(cols)
        self.sigmoid_latency = self._sigmoids[0].latency
        assert self.sigmoid_latency >= _ADD_LATENCY, "g = a + c·x must fit beside the sigmoid"
        self.activation_latency = 2 * _MUL_LATENCY + self.sigmoid_latency + _ADD_LATENCY
        self.latency = (
            _ADD_LATENCY + _SCALE_LATENCY + self.activation_latency + 1
            + self._max_tree.latency + 1
        )  # fmt: skip
        self.i_layout = data.StructLayout(
            {
                "acc": data.ArrayLayout(32, cols),
                "bias": data.ArrayLayout(16, cols),
                "row": self.row_bits,
                "first": 1,
                "last": 1,
            }
        )
        self.o_layout = data.StructLayout(
            {
                "data": data.ArrayLayout(32, cols),
                "row_max": 32,
                "row": self.row_bits,
                "first": 1,
                "last": 1,
            }
        )
        super().__init__(
            {
                "i": In(stream.Signature(self.i_layout)),
                "cmd": In(COMMAND_LAYOUT),
                "o": Out(stream.Signature(self.o_layout)),
                "busy": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        pipe = Module()  # every register of the datapath; all hold together on a stall
        enable = Signal()
        m.submodules.pipe = EnableInserter(enable)(pipe)
        m.d.comb += [enable.eq(~self.o.valid | self.o.ready), self.i.ready.eq(enable)]
        cols, cmd, beat = self.cols, self.cmd, self.i.payload

        valid = Signal(self.latency, name="valid")  # valid[t]: a beat at depth t + 1
        pipe.d.sync += valid.eq(Cat(self.i.valid, valid[:-1]))
        m.d.comb += self.busy.eq(valid.any())

        # ---- 1. bias and scale, 4 + 4 cycles. One adder and one multiplier per column; the
        # order swaps their inputs (each sees one beat per cycle either way).
        scale_first = cmd.order == Order.SCALE_BIAS
        scaled = []
        for k in range(cols):
            lane = Mux(cmd.bias_mode == BiasMode.ROW, beat.bias[0], beat.bias[k])
            bias = Mux(cmd.bias_mode == BiasMode.NONE, _NEG_ZERO, Cat(Const(0, 16), lane))
            add = Fp32Adder(latency=_ADD_LATENCY)
            mul = Fp32Multiplier(latency=_SCALE_LATENCY)
            pipe.submodules[f"bias_add{k}"] = add
            pipe.submodules[f"scale_mul{k}"] = mul
            late_bias = delay(pipe, bias, _SCALE_LATENCY, f"bias_late{k}")
            pipe.d.comb += [
                add.a.eq(Mux(scale_first, mul.result, beat.acc[k])),
                add.b.eq(Mux(scale_first, late_bias, bias)),
                mul.a.eq(Mux(scale_first, beat.acc[k], add.result)),
                mul.b.eq(cmd.scale),
            ]
            scaled.append(Mux(scale_first, add.result, mul.result))

        # ---- 2. activation, 10 + Ls cycles (the bypass is delayed to match).
        clamp = cmd.act == ActKind.CLAMP
        lo, hi = Mux(clamp, cmd.a, _NEG_INF), Mux(clamp, cmd.b, _POS_INF)
        ls = self.sigmoid_latency
        activated = Signal(data.ArrayLayout(32, cols))
        for k, x in enumerate(scaled):
            # Bypass: min(max(x, lo), hi), 2 cycles, then delayed to the unified path's depth.
            cmp_lo, cmp_hi = Fp32Compare(latency=1), Fp32Compare(latency=1)
            pipe.submodules[f"clamp_lo{k}"] = cmp_lo
            pipe.submodules[f"clamp_hi{k}"] = cmp_hi
            pipe.d.comb += [
                cmp_lo.a.eq(x), cmp_lo.b.eq(lo), cmp_hi.a.eq(cmp_lo.max), cmp_hi.b.eq(hi),
            ]  # fmt: skip
            bypass = delay(pipe, cmp_hi.min, self.activation_latency - 2, f"bypass{k}")
            # Unified: z = b⊗x; s = sigmoid(z); u = c⊗x; g = a + u; p = g⊗s; y = p + d.
            z = _zero_dominant_mul(pipe, cmd.b, x, f"z_mul{k}")
            sig = self._sigmoids[k]
            pipe.submodules[f"sigmoid{k}"] = sig
            pipe.d.comb += sig.x.eq(z)
            # u and g are computed late, from x delayed, so that g is ready exactly when s is
            # (s at 3 + Ls, g at delay + 3 + 4) and neither needs a second delay line.
            late_x = delay(pipe, x, ls - _ADD_LATENCY, f"x_late{k}")
            u = _zero_dominant_mul(pipe, cmd.c, late_x, f"u_mul{k}")
            g_add = Fp32Adder(latency=_ADD_LATENCY)
            pipe.submodules[f"g_add{k}"] = g_add
            pipe.d.comb += [g_add.a.eq(cmd.a), g_add.b.eq(u)]
            p = _zero_dominant_mul(pipe, g_add.result, sig.result, f"p_mul{k}")
            y_add = Fp32Adder(latency=_ADD_LATENCY)
            pipe.submodules[f"y_add{k}"] = y_add
            pipe.d.comb += [y_add.a.eq(p), y_add.b.eq(cmd.d)]
            m.d.comb += activated[k].eq(Mux(cmd.act == ActKind.UNIFIED, y_add.result, bypass))

        # ---- 3. round, 1 cycle: the lanes as written.
        written = Signal(data.ArrayLayout(32, cols))
        for k in range(cols):
            rnd = Fp32ToBf16(latency=1)
            pipe.submodules[f"round{k}"] = rnd
            pipe.d.comb += rnd.a.eq(activated[k])
            wide = delay(pipe, activated[k], 1, f"fp32_{k}")
            m.d.comb += written[k].eq(
                Mux(cmd.out_fmt == ElemFormat.BF16, Cat(Const(0, 16), rnd.result), wide)
            )

        # ---- 4. running row max of the written values, Lt + 1 cycles.
        depth = _ADD_LATENCY + _SCALE_LATENCY + self.activation_latency + 1  # `written` is here
        tree = self._max_tree
        pipe.submodules.max_tree = tree
        pipe.d.comb += [tree.inputs[k].eq(written[k]) for k in range(cols)]
        meta = Signal(data.StructLayout({"row": self.row_bits, "first": 1, "last": 1}))
        m.d.comb += [meta.row.eq(beat.row), meta.first.eq(beat.first), meta.last.eq(beat.last)]
        meta_tree = delay(pipe, meta, depth + tree.latency, "meta_tree")
        valid_tree = valid[depth + tree.latency - 1]
        slots = Array(Signal(32, name=f"row_max{r}") for r in range(self.slots))
        # One-cycle read-modify-write of a slot (a compare and a mux), so a slot may recur in
        # back-to-back beats without a hazard.
        merge = Fp32Compare(latency=0)
        m.submodules.row_merge = merge
        current = Signal(32)
        m.d.comb += [
            merge.a.eq(tree.result),
            merge.b.eq(slots[meta_tree.row]),
            current.eq(Mux(meta_tree.first, tree.result, merge.max)),
        ]
        with pipe.If(valid_tree):
            pipe.d.sync += slots[meta_tree.row].eq(current)
        row_max = Signal(32)
        pipe.d.sync += row_max.eq(current)
        meta_out = delay(pipe, meta_tree, 1, "meta_out")
        out_lanes = delay(pipe, written, tree.latency + 1, "out_lanes")

        out = self.o.payload
        m.d.comb += [
            self.o.valid.eq(valid[-1]),
            out.data.eq(out_lanes),
            out.row_max.eq(row_max),
            out.row.eq(meta_out.row),
            out.first.eq(meta_out.first),
            out.last.eq(meta_out.last),
        ]
        return m
