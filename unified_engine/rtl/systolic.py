"""``SystolicArray``: output-stationary R×C bf16 array with fp32 accumulation (DESIGN.md §3).

Dataflow
--------
Each PE(i, j) holds P interleaved fp32 accumulators (P = ``pe_interleave``), so one tile is
(P·R) × C outputs: PE row i owns tile rows ``i·P … i·P+P-1``. One input beat (a *k-step*)
carries column k of the A tile (P·R bf16) and row k of the B tile (C bf16); the array spends
P cycles on it, issuing in slot s = 0…P-1 the values ``A[i·P + s, k]`` to PE row i while B row
k is held. A and the flags travel right, B travels down, one register per PE; delay lines at
the edges skew the unskewed input so that A[m, k] and B[k, n] meet in the right PE.

Drain
-----
Finished sums leave through one *drain chain* per column: a shift register that moves up one
position per cycle, towards the top edge where the results come out. PE row i writes its
results into position ``p_i = i·(P-1)``. Because a PE's P results finish on consecutive cycles
and PE row i finishes i cycles after row 0, result (i, s) reaches the top exactly
``i·P + s`` cycles after result (0, 0): the tile comes out as P·R consecutive rows in order,
with no arbitration and no stall, while the next tile is already accumulating (the chain
registers are the shadow registers; (P-1)·32 flip-flops per PE). Column j runs j cycles
behind column 0; a deskew delay line per column aligns a row before it is emitted.

Accumulate into existing values (``accumulate=True``)
-----------------------------------------------------
A tile whose first k-step has ``acc = 1`` starts every output from an fp32 value of the
``init`` stream instead of +0 (for K split over several tiles: the result is bit-identical to
one long accumulation, ``fp.pe_accumulate(a, b, acc)``). The P·R init rows travel *up the same
drain chains* behind the previous tile's results (the shadow path loaded in reverse): row
``i·P + s`` enters at the bottom of every column and is taken by PE row i when it passes, in
the cycle in which that PE's adder is at slot s; it then waits in the accumulator (adding the
identity -0 each round) until the tile's first product arrives. The rows enter only once
they are sure to trail every result of the previous tile on the chain (R + P + 2 cycles after
its last k-step), and the tile starts after the last row, so an ``acc`` tile starts
``R·P + R + P + 1`` cycles (plus up to P-1 to reach phase 0) later than a plain tile would;
plain tiles are never delayed. Choosing the chain for this costs no extra storage: init and
results share the (P-1)·32 chain flip-flops per PE, plus a row tag of ceil(log2 R) bits.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import EngineConfig
from .fp import Fp32ToBf16
from .pe import PE, pe_config

__all__ = ["SystolicArray"]

_BF16_NEG_ZERO = 0x8000  # idle A operand: (-0) × (+0) = -0, the identity of the fp32 add


class SystolicArray(wiring.Component):
    """Output-stationary systolic array of R×C ``PE`` s with P interleaved outputs per PE.

    Parameters
    ----------
    config:
        ``rows`` (R), ``cols`` (C) and ``pe_interleave`` (P) are used.
    output_bf16:
        Round the results to bf16 (RNE, ``fp.f32_to_bf16``) before emitting them (+1 cycle).
    accumulate:
        Build the ``init`` stream and the ``acc`` flag (tiles that start from given values).

    Ports
    -----
    ops : In(stream.Signature(StructLayout))
        One k-step per beat: ``a`` (ArrayLayout(bf16, P·R): column k of the A tile, element m
        is tile row m), ``b`` (ArrayLayout(bf16, C): row k of the B tile), ``first`` (k = 0 of
        a tile), ``last`` (k = K-1) and, with ``accumulate``, ``acc`` (only meaningful with
        ``first``). A tile is the K beats from ``first`` to ``last``; K ≥ 1.
        The array reads a beat during P consecutive cycles, starting in a cycle whose internal
        phase is 0, and asserts ``ready`` in the last of them (the stream rules keep the
        payload stable meanwhile). So, with ``valid`` held high, one beat is accepted every P
        cycles and tiles follow each other without a bubble; a beat arriving late waits for
        the next phase-0 cycle (at most P-1 cycles). ``ready`` depends combinationally on
        ``valid`` and on the payload's ``first``/``last``/``acc`` flags (stream rule 4).
    init : In(stream.Signature(ArrayLayout(fp32, C)))   (``accumulate`` only)
        The P·R initial rows of an ``acc`` tile in tile-row order, pulled before the tile
        starts (see the module docstring). Subnormal values are flushed, NaNs canonicalised.
    results : Out(stream.Signature(StructLayout, always_ready=True))
        One tile row per beat: ``data`` (ArrayLayout(fp32 or bf16, C)) plus ``first`` / ``last``
        marking tile rows 0 and P·R-1. Rows come out in order, one per cycle, with no
        back-pressure: the consumer must take a beat whenever ``valid`` is high.

    Timing
    ------
    * ``latency``: if the beat with a tile's last k-step is accepted (``valid & ready``) in
      cycle t, tile row m is on ``results`` in cycle ``t + latency + m``;
      ``latency = C + 4`` (+1 with ``output_bf16``).
    * Throughput: R·C MACs per cycle. A tile takes ``P·K`` cycles; tiles with K ≥ R run
      back-to-back with no idle cycle. A tile with K < R would overtake the previous tile on
      the drain chains, so the array delays its last k-step until ``P·R - P + 1`` cycles after
      the previous tile's last k-step (each tile then takes P·R cycles). An ``acc`` tile
      starts R·P + R + P + 1 cycles later than a plain one (module docstring).
    * Pipeline depth: the first k-step reaches PE(i, j)'s adder ``i + j + 3`` cycles after it
      is issued; a sum spends P cycles in the adder and ``i·P`` on the chain.

    Attributes
    ----------
    latency, tile_rows, chain_length:
        See above; ``chain_length`` = (R-1)(P-1), the drain-chain depth below the top register.
    debug_collision : Signal
        Not a port. High in a cycle in which a drain-chain entry would be overwritten, which
        the design rules out; simulation tests assert it never rises.
    """

    def __init__(self, config: EngineConfig, *, output_bf16: bool = False, accumulate: bool = True):
        config = pe_config(config)
        for name, value in (("output_bf16", output_bf16), ("accumulate", accumulate)):
            if not isinstance(value, bool):
                raise TypeError(f"SystolicArray: {name} must be a bool, got {value!r}")
        self.config = config
        self.rows, self.cols, self.interleave = config.rows, config.cols, config.pe_interleave
        self.output_bf16 = output_bf16
        self.accumulate = accumulate
        r, c, p = self.rows, self.cols, self.interleave
        self.tile_rows = p * r
        self.chain_length = (r - 1) * (p - 1)
        self.latency = c + 4 + int(output_bf16)

        fields = {
            "a": data.ArrayLayout(16, p * r),
            "b": data.ArrayLayout(16, c),
            "first": 1,
            "last": 1,
        }
        if accumulate:
            fields["acc"] = 1
        self.ops_layout = data.StructLayout(fields)
        self.result_layout = data.StructLayout(
            {"data": data.ArrayLayout(16 if output_bf16 else 32, c), "first": 1, "last": 1}
        )
        members = {
            "ops": In(stream.Signature(self.ops_layout)),
            "results": Out(stream.Signature(self.result_layout, always_ready=True)),
        }
        if accumulate:
            self.init_layout = data.ArrayLayout(32, c)
            members["init"] = In(stream.Signature(self.init_layout))
        super().__init__(members)
        self.debug_collision = Signal()

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _delay(m: Module, value, cycles: int, name: str, *, reset: bool = False):
        """``value`` delayed by ``cycles`` registers (a skew line); 0 returns it unchanged.

        Data lines have no reset (so they can become SRLs); flag lines pass ``reset=True``.
        """
        for k in range(cycles):
            reg = Signal(Value.cast(value).shape(), name=f"{name}_d{k}", reset_less=not reset)
            m.d.sync += reg.eq(value)
            value = reg
        return value

    def elaborate(self, platform):
        m = Module()
        r, c, p = self.rows, self.cols, self.interleave
        tile_rows, chain_len = self.tile_rows, self.chain_length
        ops = self.ops.payload

        # ---- input control ----------------------------------------------------------------
        # `phase` is the slot (0…P-1) issued in this cycle. The PE adders interleave outputs
        # by absolute cycle, so a beat may only start in phase 0.
        phase = Signal(range(p), name="phase")
        if p > 1:
            m.d.sync += phase.eq(Mux(phase == p - 1, 0, phase + 1))
        # Cycles since the last slot of the previous tile's last k-step (saturating).
        throttle = tile_rows - p + 1  # K < R tiles must not overtake on the drain chain
        init_wait = r + p + 2  # init rows must trail the previous tile's results
        saturate = max(throttle, init_wait)
        since = Signal(range(saturate + 1), init=saturate)

        active = Signal()  # consuming a beat, slots 1…P-1
        start = Signal()
        issue = Signal()
        init_ready_for_tile = Signal()
        acc_first = (ops.first & ops.acc) if self.accumulate else Const(0, 1)
        can_start = (
            self.ops.valid & (~ops.last | (since >= throttle)) & (~acc_first | init_ready_for_tile)
        )
        m.d.comb += [
            start.eq((phase == 0) & can_start),
            issue.eq(Mux(phase == 0, start, active)),
            self.ops.ready.eq(issue & (phase == p - 1)),
        ]
        if p > 1:
            with m.If(phase == 0):
                m.d.sync += active.eq(start)
            with m.Elif(phase == p - 1):
                m.d.sync += active.eq(0)
        tile_end = issue & ops.last & (phase == p - 1)
        m.d.sync += since.eq(Mux(tile_end, 1, Mux(since == saturate, saturate, since + 1)))

        # ---- issue stage: slot `phase` of the beat, or the identity operands when idle ----
        a_issue = []
        for i in range(r):
            a_sel = Array(ops.a[i * p + s] for s in range(p))[phase]
            a_issue.append(Mux(issue, a_sel, _BF16_NEG_ZERO))
        b_issue = [Mux(issue, ops.b[j], 0) for j in range(c)]
        clear_issue = issue & ops.first & ~acc_first
        last_issue = issue & ops.last

        # ---- skew lines (the first register of each is the ingress register) -------------
        pes = [[PE(self.config) for _ in range(c)] for _ in range(r)]
        for i in range(r):
            for j in range(c):
                m.submodules[f"pe_{i}_{j}"] = pes[i][j]
        for i in range(r):
            flags = self._delay(m, Cat(clear_issue, last_issue), i + 1, f"fskew{i}", reset=True)
            m.d.comb += [
                pes[i][0].a_in.eq(self._delay(m, a_issue[i], i + 1, f"askew{i}")),
                Cat(pes[i][0].clear_in, pes[i][0].last_in).eq(flags),
            ]
        for j in range(c):
            m.d.comb += pes[0][j].b_in.eq(self._delay(m, b_issue[j], j + 1, f"bskew{j}"))
        for i in range(r):
            for j in range(c):
                pe = pes[i][j]
                if j + 1 < c:
                    right = pes[i][j + 1]
                    m.d.comb += [
                        right.a_in.eq(pe.a_out),
                        right.clear_in.eq(pe.clear_out),
                        right.last_in.eq(pe.last_out),
                    ]
                if i + 1 < r:
                    m.d.comb += pes[i + 1][j].b_in.eq(pe.b_out)

        # ---- init injection (accumulate) ---------------------------------------------------
        tag_bits = max(1, (r - 1).bit_length())
        if self.accumulate:
            inject_valid, inject_tag = self._init_control(
                m, phase, since, init_wait, start, ops, init_ready_for_tile, tag_bits
            )

        # ---- drain chains ------------------------------------------------------------------
        # Position q of column j: `data` (no reset), `res` (holds a result), and with
        # `accumulate` also `ini` (holds an init value) and `tag` (the PE row it is for).
        # The chain runs between insertion points are only P-1 deep: as SRLs they would cost a
        # LUT per bit to save two flip-flops, a bad trade in this LUT-bound array, so they are
        # kept as flip-flops (`keep` for Yosys, `shreg_extract` for Vivado).
        top_pos = chain_len + 1 if self.accumulate else chain_len
        no_srl = {"keep": 1, "shreg_extract": "no"}
        collisions = []
        tops = []
        for j in range(c):
            chain = [
                SimpleNamespace(
                    data=Signal(32, name=f"chain{j}_{q}_data", reset_less=True, attrs=no_srl),
                    res=Signal(name=f"chain{j}_{q}_res"),
                    ini=Signal(name=f"chain{j}_{q}_ini"),
                    tag=Signal(tag_bits, name=f"chain{j}_{q}_tag", reset_less=True, attrs=no_srl),
                )
                for q in range(top_pos + 1)
            ]
            if self.accumulate:
                # Bottom register: the init row, skewed by j like everything in column j.
                bottom = chain[top_pos]
                entry = Cat(self.init.payload[j], inject_tag)
                m.d.sync += [
                    Cat(bottom.data, bottom.tag).eq(self._delay(m, entry, j, f"iskew{j}")),
                    bottom.ini.eq(self._delay(m, inject_valid, j, f"ivskew{j}", reset=True)),
                ]
            for q in range(chain_len + 1):
                here = chain[q]
                below = chain[q + 1] if q + 1 <= top_pos else None
                writers = [i for i in range(r) if i * (p - 1) == q]
                insert = Signal(name=f"insert{j}_{q}")
                insert_data = Signal(32, name=f"insert_data{j}_{q}")
                m.d.comb += insert.eq(Cat(pes[i][j].result_valid for i in writers).any())
                for i in writers:  # at most one writer per cycle (P = 1 shares position 0)
                    with m.If(pes[i][j].result_valid):
                        m.d.comb += insert_data.eq(pes[i][j].result)
                if below is None:
                    m.d.sync += [here.data.eq(insert_data), here.res.eq(insert)]
                    continue
                # PE row i takes the init row tagged i as it passes its position.
                takes = []
                if self.accumulate:
                    for i in writers:
                        take = below.ini & (below.tag == i)
                        m.d.comb += [
                            pes[i][j].init_take.eq(take),
                            pes[i][j].init_value.eq(below.data),
                        ]
                        takes.append(take)
                taken = Signal(name=f"taken{j}_{q}")
                m.d.comb += taken.eq(Cat(takes).any() if takes else 0)
                m.d.sync += [
                    here.data.eq(Mux(insert, insert_data, below.data)),
                    here.res.eq(insert | below.res),
                ]
                if self.accumulate:
                    m.d.sync += [
                        here.ini.eq(below.ini & ~taken & ~insert),
                        here.tag.eq(below.tag),
                    ]
                collision = Signal(name=f"collision{j}_{q}")
                m.d.comb += collision.eq(insert & (below.res | (below.ini & ~taken)))
                collisions.append(collision)
            tops.append(chain[0])
        m.d.comb += self.debug_collision.eq(Cat(collisions).any())

        # ---- deskew and output -------------------------------------------------------------
        valid = tops[c - 1].res  # the last column needs no deskew
        row_data = [self._delay(m, tops[j].data, c - 1 - j, f"oskew{j}") for j in range(c)]
        if self.output_bf16:
            for j in range(c):
                m.submodules[f"to_bf16_{j}"] = conv = Fp32ToBf16(latency=1)
                m.d.comb += conv.a.eq(row_data[j])
                row_data[j] = conv.result
            valid = self._delay(m, valid, 1, "bf16_valid")
        count = Signal(range(tile_rows), name="out_row")
        with m.If(valid):
            m.d.sync += count.eq(Mux(count == tile_rows - 1, 0, count + 1))
        out = self.results.payload
        m.d.comb += [
            self.results.valid.eq(valid),
            out.first.eq(count == 0),
            out.last.eq(count == tile_rows - 1),
        ]
        for j in range(c):
            m.d.comb += out.data[j].eq(row_data[j])
        return m

    def _init_control(self, m, phase, since, init_wait, start, ops, ready_for_tile, tag_bits):
        """Pull the P·R init rows of an ``acc`` tile into the chains at the right phases.

        Row ``m = i·P + s`` must reach PE row i while that PE's adder is at slot s; with the
        pipeline above that means it is accepted in a cycle of phase ``(m + 2 - L) mod P``
        (L = chain_length). The first row may enter only ``R + P + 2`` cycles after the
        previous tile's last k-step: from then on every init row trails every result of
        that tile on the chain, so neither overwrites the other.
        """
        p = self.interleave
        tile_rows, chain_len = self.tile_rows, self.chain_length
        idle, load, ready = 0, 1, 2
        state = Signal(range(3), name="init_state")
        row = Signal(range(tile_rows), name="init_row")
        slot = Signal(range(p), name="init_slot")  # row mod P
        tag = Signal(tag_bits, name="init_tag")  # row // P: the PE row that takes it
        target = Signal(range(p), init=(2 - chain_len) % p, name="init_phase")
        accept = Signal()
        m.d.comb += [
            self.init.ready.eq((state == load) & (phase == target) & (since >= init_wait)),
            accept.eq(self.init.valid & self.init.ready),
            ready_for_tile.eq(state == ready),
        ]
        with m.If(accept):
            m.d.sync += [
                row.eq(Mux(row == tile_rows - 1, 0, row + 1)),
                slot.eq(Mux(slot == p - 1, 0, slot + 1)),
                tag.eq(Mux(slot == p - 1, Mux(row == tile_rows - 1, 0, tag + 1), tag)),
                target.eq(Mux(target == p - 1, 0, target + 1)),
            ]
        # The acc tile's first beat waits at the input (it cannot start before READY).
        waiting = self.ops.valid & ops.first & ops.acc & (phase == 0)
        with m.If((state == idle) & waiting):
            m.d.sync += state.eq(load)
        with m.Elif((state == load) & accept & (row == tile_rows - 1)):
            m.d.sync += state.eq(ready)
        with m.Elif((state == ready) & start):
            m.d.sync += state.eq(idle)
        return accept, tag
