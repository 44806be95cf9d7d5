"""AXI adapters between the SoC and the board's IP: clock crossing, width upsizing, AXI3 bursts.

The SoC (``rtl/soc.py``) speaks the engine's AXI4 (``rtl/axi.py``: INCR bursts of full-width
beats, up to 256 beats, never across 4 KB).  The vendor IP around it does not always: the XDMA
runs on the PCIe user clock at 128 bits on a Kintex-7, the DDR controllers take 512-bit beats
on their own ``ui_clk``, and each HBM port is AXI3 (16-beat bursts).  These blocks close the
gaps; they are ordinary Amaranth components, tested in simulation
(``tests/platforms/test_shell_axi.py``), so the shell needs no Vivado interconnect IP.

* :class:`AxiCdc` — any AXI4 / AXI4-Lite signature across two clock domains, one
  ``AsyncFIFO`` per channel (channels are independent streams, so this is a complete clock
  converter).
* :class:`AxiUpsizer` — narrow manager → wide subordinate (128→256, 256→512).
* :class:`Axi3Splitter` — AXI4 bursts → bursts of at most 16 beats (HBM ports).

Upsizer and splitter issue every downstream request with ID 0, so the subordinate answers in
request order; the original IDs travel in small FIFOs and are put back on R and B.  Both accept
AW without waiting for W and never make W wait for a downstream AW handshake beyond their own
FIFOs, so they can sit in front of subordinates that wait for W before AWREADY.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import AsyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from unified_engine.rtl.axi import AXI_MAX_BURST, axi4_signature

__all__ = ["Axi3Splitter", "AxiCdc", "AxiUpsizer"]

_FORWARD = ("aw", "w", "ar")  # manager → subordinate channels
_BACKWARD = ("b", "r")        # subordinate → manager channels


class AxiCdc(wiring.Component):
    """Carry an AXI4 or AXI4-Lite port from ``s_domain`` to ``m_domain``.

    Parameters
    ----------
    signature:
        The manager-side signature (``axi4_signature(...)`` or ``axi_lite_signature(...)``);
        port ``s`` is its subordinate side in ``s_domain``, ``m`` its manager side in
        ``m_domain``.
    depth:
        Entries of each channel's FIFO (a power of two; 16 keeps a 16-beat burst in flight
        across the crossing at full rate).

    Latency: about 3 destination cycles per channel (Gray-code pointer synchronizers).
    Throughput: one transfer per cycle of the slower clock on every channel.  Both domains must
    be reset together (the FIFOs are emptied by the write-side reset).
    """

    def __init__(self, signature: wiring.Signature, *, s_domain: str, m_domain: str,
                 depth: int = 16) -> None:
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"AxiCdc: depth={depth!r} must be a power of two ≥ 2")
        self.s_domain, self.m_domain, self.depth = s_domain, m_domain, depth
        super().__init__({"s": In(signature), "m": Out(signature)})

    def elaborate(self, platform) -> Module:
        m = Module()
        for name in _FORWARD + _BACKWARD:
            forward = name in _FORWARD
            src = getattr(self.s if forward else self.m, name)
            dst = getattr(self.m if forward else self.s, name)
            w_dom, r_dom = ((self.s_domain, self.m_domain) if forward
                            else (self.m_domain, self.s_domain))
            fifo = AsyncFIFO(width=len(src.payload.as_value()), depth=self.depth,
                             w_domain=w_dom, r_domain=r_dom)
            m.submodules[f"{name}_fifo"] = fifo
            m.d.comb += [
                fifo.w_data.eq(src.payload), fifo.w_en.eq(src.valid), src.ready.eq(fifo.w_rdy),
                dst.valid.eq(fifo.r_rdy), dst.payload.eq(fifo.r_data), fifo.r_en.eq(dst.ready),
            ]
        return m


def _info(fields: dict[str, int]) -> data.StructLayout:
    return data.StructLayout(fields)


class AxiUpsizer(wiring.Component):
    """Narrow AXI4 manager (``s``) onto a wider AXI4 subordinate (``m``), same clock.

    Parameters
    ----------
    addr_width:
        Address bits of both ports.
    narrow_width, wide_width:
        Data widths in bits (powers of two, ``wide_width`` = 2…16 × ``narrow_width``).
    id_width:
        ID bits of ``s``; ``m`` has one ID bit and always uses ID 0.
    outstanding:
        Bursts in flight per direction.

    Each narrow burst becomes one wide burst over the wide beats it touches (its start address
    rounded down to a wide beat); narrow write beats are packed into their byte lanes, so the
    bytes a burst does not write keep WSTRB 0; read beats are unpacked from the lanes.  A burst
    never crosses 4 KB (the narrow one does not), and is never longer than the narrow one.

    Latency: AW/AR and B/R combinational (plus the subordinate's); W: a wide beat leaves in the
    cycle its last narrow beat arrives.  Throughput: one narrow beat per cycle each way.
    """

    def __init__(self, *, addr_width: int, narrow_width: int, wide_width: int, id_width: int,
                 outstanding: int = 8) -> None:
        ratio = wide_width // narrow_width
        if wide_width % narrow_width or ratio < 2 or ratio > 16 or ratio & (ratio - 1):
            raise ValueError(f"AxiUpsizer: wide_width={wide_width} must be 2…16 × "
                             f"narrow_width={narrow_width} (a power of two)")
        self.ratio, self.id_width, self.outstanding = ratio, id_width, outstanding
        self.narrow_bytes = narrow_width // 8
        super().__init__({
            "s": In(axi4_signature(addr_width=addr_width, data_width=narrow_width,
                                   id_width=id_width)),
            "m": Out(axi4_signature(addr_width=addr_width, data_width=wide_width,
                                    id_width=1)),
        })

    def _request(self, m: Module, src, dst, info_fifo, extra_fifo=None) -> Signal:
        """AW or AR: the wide request, and the burst's info pushed on acceptance."""
        lane_bits = exact_log2(self.ratio)
        nb_bits = exact_log2(self.narrow_bytes)
        lane = src.payload.addr[nb_bits:nb_bits + lane_bits]
        room = info_fifo.w_rdy & (extra_fifo.w_rdy if extra_fifo is not None else 1)
        wide_low = nb_bits + lane_bits
        m.d.comb += [
            dst.valid.eq(src.valid & room),
            src.ready.eq(dst.ready & room),
            dst.payload.addr.eq(Cat(Const(0, wide_low), src.payload.addr[wide_low:])),
            dst.payload.len.eq((lane + src.payload.len) >> lane_bits),
            dst.payload.id.eq(0),
            info_fifo.w_en.eq(dst.valid & dst.ready),
            info_fifo.w_data.eq(Cat(lane, src.payload.id, src.payload.len)),
        ]
        if extra_fifo is not None:
            m.d.comb += [extra_fifo.w_en.eq(dst.valid & dst.ready),
                         extra_fifo.w_data.eq(src.payload.id)]
        return lane

    def elaborate(self, platform) -> Module:
        m = Module()
        s, o = self.s, self.m
        r, nbits = self.ratio, 8 * self.narrow_bytes
        lane_bits = exact_log2(r)
        info = _info({"lane": lane_bits, "id": self.id_width, "len": 8})
        depth = self.outstanding
        m.submodules.w_info = w_info = SyncFIFOBuffered(width=info.size, depth=depth)
        m.submodules.b_ids = b_ids = SyncFIFOBuffered(width=self.id_width, depth=depth)
        m.submodules.r_info = r_info = SyncFIFOBuffered(width=info.size, depth=depth)
        self._request(m, s.aw, o.aw, w_info, b_ids)
        self._request(m, s.ar, o.ar, r_info)

        # --- W: pack narrow beats into the lanes of one wide beat
        head = data.View(info, w_info.r_data)
        in_burst = Signal(name="w_in_burst")
        lane_reg = Signal(lane_bits, name="w_lane")
        acc_data = Signal(len(o.w.payload.data), name="w_acc_data")
        acc_strb = Signal(len(o.w.payload.strb), name="w_acc_strb")
        lane = Mux(in_burst, lane_reg, head.lane)
        beat_data = Signal.like(acc_data)
        beat_strb = Signal.like(acc_strb)
        with m.Switch(lane):
            for k in range(r):
                with m.Case(k):
                    m.d.comb += [
                        beat_data.eq(acc_data),
                        beat_data.word_select(k, nbits).eq(s.w.payload.data),
                        beat_strb.eq(acc_strb),
                        beat_strb.word_select(k, self.narrow_bytes).eq(s.w.payload.strb),
                    ]
        emit = (lane == r - 1) | s.w.payload.last
        m.d.comb += [
            o.w.valid.eq(s.w.valid & w_info.r_rdy & emit),
            o.w.payload.data.eq(beat_data),
            o.w.payload.strb.eq(beat_strb),
            o.w.payload.last.eq(s.w.payload.last),
            s.w.ready.eq(w_info.r_rdy & (~emit | o.w.ready)),
        ]
        with m.If(s.w.valid & s.w.ready):
            m.d.sync += [in_burst.eq(~s.w.payload.last), lane_reg.eq(lane + 1)]
            with m.If(emit):
                m.d.sync += [acc_data.eq(0), acc_strb.eq(0)]
            with m.Else():
                m.d.sync += [acc_data.eq(beat_data), acc_strb.eq(beat_strb)]
        m.d.comb += w_info.r_en.eq(s.w.valid & s.w.ready & s.w.payload.last)

        # --- B: one per burst, in order; put the ID back
        m.d.comb += [
            s.b.valid.eq(o.b.valid & b_ids.r_rdy),
            s.b.payload.id.eq(b_ids.r_data),
            s.b.payload.resp.eq(o.b.payload.resp),
            o.b.ready.eq(s.b.ready & b_ids.r_rdy),
            b_ids.r_en.eq(s.b.valid & s.b.ready),
        ]

        # --- R: unpack each wide beat into its narrow beats
        rhead = data.View(info, r_info.r_data)
        r_in_burst = Signal(name="r_in_burst")
        r_lane_reg = Signal(lane_bits, name="r_lane")
        r_left = Signal(9, name="r_left")  # narrow beats still to deliver, in a burst
        r_lane = Mux(r_in_burst, r_lane_reg, rhead.lane)
        left = Mux(r_in_burst, r_left, rhead.len + 1)
        final = left == 1
        m.d.comb += [
            s.r.valid.eq(o.r.valid & r_info.r_rdy),
            s.r.payload.data.eq(o.r.payload.data.word_select(r_lane, nbits)),
            s.r.payload.resp.eq(o.r.payload.resp),
            s.r.payload.id.eq(rhead.id),
            s.r.payload.last.eq(final),
            o.r.ready.eq(s.r.ready & r_info.r_rdy & ((r_lane == r - 1) | final)),
            r_info.r_en.eq(s.r.valid & s.r.ready & final),
        ]
        with m.If(s.r.valid & s.r.ready):
            m.d.sync += [r_in_burst.eq(~final), r_lane_reg.eq(r_lane + 1), r_left.eq(left - 1)]
        return m


class Axi3Splitter(wiring.Component):
    """AXI4 manager (``s``) onto a subordinate that takes at most ``max_beats``-beat bursts.

    Parameters
    ----------
    addr_width, data_width, id_width:
        Port parameters (``m`` has one ID bit and always uses ID 0).
    max_beats:
        Longest downstream burst (AXI3: 16).
    outstanding:
        Upstream bursts in flight per direction.

    A burst of N beats becomes ⌈N / max_beats⌉ consecutive bursts (the last may be shorter);
    W passes through with WLAST added after every ``max_beats`` beats; the B responses of the
    pieces merge into one (the worst RESP), and R's RLAST is kept only on the last piece.
    Latency: one cycle on AW/AR (registered split), none on W/R/B.  Throughput: one request
    piece, W beat, R beat and B per cycle.
    """

    def __init__(self, *, addr_width: int, data_width: int, id_width: int, max_beats: int = 16,
                 outstanding: int = 8) -> None:
        if max_beats < 1 or max_beats & (max_beats - 1) or max_beats > AXI_MAX_BURST:
            raise ValueError(f"Axi3Splitter: max_beats={max_beats!r} must be a power of two "
                             f"in 1…{AXI_MAX_BURST}")
        self.max_beats, self.id_width, self.outstanding = max_beats, id_width, outstanding
        self.beat_bytes = data_width // 8
        super().__init__({
            "s": In(axi4_signature(addr_width=addr_width, data_width=data_width,
                                   id_width=id_width)),
            "m": Out(axi4_signature(addr_width=addr_width, data_width=data_width,
                                    id_width=1)),
        })

    def _split(self, m: Module, src, dst, info_fifo, name: str) -> None:
        """AW or AR: register one request, issue it in ``max_beats`` pieces."""
        shift = exact_log2(self.max_beats)
        busy = Signal(name=f"{name}_busy")
        addr = Signal.like(src.payload.addr, name=f"{name}_addr")
        left = Signal(9, name=f"{name}_left")  # beats still to request
        m.d.comb += [
            src.ready.eq(~busy & info_fifo.w_rdy),
            info_fifo.w_en.eq(src.valid & src.ready),
            info_fifo.w_data.eq(Cat(src.payload.id, src.payload.len >> shift)),
            dst.valid.eq(busy),
            dst.payload.addr.eq(addr),
            dst.payload.len.eq(Mux(left > self.max_beats, self.max_beats, left) - 1),
            dst.payload.id.eq(0),
        ]
        with m.If(src.valid & src.ready):
            m.d.sync += [busy.eq(1), addr.eq(src.payload.addr), left.eq(src.payload.len + 1)]
        with m.If(dst.valid & dst.ready):
            m.d.sync += [addr.eq(addr + self.max_beats * self.beat_bytes),
                         left.eq(left - self.max_beats)]
            with m.If(left <= self.max_beats):
                m.d.sync += busy.eq(0)

    def elaborate(self, platform) -> Module:
        m = Module()
        s, o = self.s, self.m
        shift = exact_log2(self.max_beats)
        pieces_bits = max(1, 8 - shift)
        info = _info({"id": self.id_width, "last_piece": pieces_bits})
        m.submodules.w_info = w_info = SyncFIFOBuffered(width=info.size, depth=self.outstanding)
        m.submodules.r_info = r_info = SyncFIFOBuffered(width=info.size, depth=self.outstanding)
        self._split(m, s.aw, o.aw, w_info, "aw")
        self._split(m, s.ar, o.ar, r_info, "ar")

        # --- W: WLAST after every max_beats beats of a burst
        count = Signal(max(1, shift), name="w_count")
        m.d.comb += [
            o.w.valid.eq(s.w.valid),
            s.w.ready.eq(o.w.ready),
            o.w.payload.data.eq(s.w.payload.data),
            o.w.payload.strb.eq(s.w.payload.strb),
            o.w.payload.last.eq(s.w.payload.last |
                                (count == self.max_beats - 1 if shift else 1)),
        ]
        with m.If(s.w.valid & s.w.ready):
            m.d.sync += count.eq(Mux(s.w.payload.last, 0, count + 1))

        # --- B: one upstream response after the last piece's, with the worst RESP
        bhead = data.View(info, w_info.r_data)
        b_piece = Signal(pieces_bits, name="b_piece")
        b_worst = Signal(2, name="b_worst")
        b_final = b_piece == bhead.last_piece
        resp = Mux(o.b.payload.resp > b_worst, o.b.payload.resp, b_worst)
        m.d.comb += [
            s.b.valid.eq(o.b.valid & w_info.r_rdy & b_final),
            s.b.payload.id.eq(bhead.id),
            s.b.payload.resp.eq(resp),
            o.b.ready.eq(w_info.r_rdy & (~b_final | s.b.ready)),
            w_info.r_en.eq(s.b.valid & s.b.ready),
        ]
        with m.If(o.b.valid & o.b.ready):
            m.d.sync += [b_piece.eq(Mux(b_final, 0, b_piece + 1)),
                         b_worst.eq(Mux(b_final, 0, resp))]

        # --- R: pass through; RLAST only at the end of the last piece
        rhead = data.View(info, r_info.r_data)
        r_piece = Signal(pieces_bits, name="r_piece")
        r_final = r_piece == rhead.last_piece
        m.d.comb += [
            s.r.valid.eq(o.r.valid & r_info.r_rdy),
            o.r.ready.eq(s.r.ready & r_info.r_rdy),
            s.r.payload.data.eq(o.r.payload.data),
            s.r.payload.resp.eq(o.r.payload.resp),
            s.r.payload.id.eq(rhead.id),
            s.r.payload.last.eq(o.r.payload.last & r_final),
            r_info.r_en.eq(s.r.valid & s.r.ready & s.r.payload.last),
        ]
        with m.If(o.r.valid & o.r.ready & o.r.payload.last):
            m.d.sync += r_piece.eq(Mux(r_final, 0, r_piece + 1))
        return m

