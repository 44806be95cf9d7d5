"""``StreamPipeline``: a valid/ready stream around a fixed-latency fp32 datapath."""

from __future__ import annotations

from typing import Any

from amaranth.hdl import Cat, EnableInserter, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamPipeline"]


class StreamPipeline(wiring.Component):
    """Streams fp32 values through a fixed-latency datapath, one per cycle.

    ``datapath`` is a component class with ports ``x: In(32)`` and ``result: Out(32)`` and a
    classmethod ``check_params(**params)`` that validates ``params`` and returns the latency.
    The datapath itself is built in :meth:`elaborate`, so a unit that is only constructed (to
    read ``latency``, say) leaves no unused elaboratable behind.

    Every register of the datapath, its ROM read ports included, is clock-enabled by
    ``advance = o.ready | ~o.valid`` (via ``EnableInserter``): a stalled output freezes the
    whole pipe, and an empty output slot lets it move so that bubbles drain. ``i.ready``
    equals ``advance``, so with ``o.ready`` held high the unit accepts a value every cycle and
    each result leaves exactly ``latency`` cycles after its input. ``i.ready`` depends
    combinationally on ``o.ready`` (there is no skid buffer).

    Attributes
    ----------
    latency : int
        Cycles from an accepted input to its result when the output is not stalled.

    Ports
    -----
    i : In(stream.Signature(32))
        fp32 bit patterns in.
    o : Out(stream.Signature(32))
        Results, in input order.
    """

    def __init__(self, datapath: type[wiring.Component], **params: Any):
        check = getattr(datapath, "check_params", None)
        if not isinstance(datapath, type) or not callable(check):
            raise TypeError(
                f"StreamPipeline: datapath must be a component class with a check_params "
                f"classmethod, got {datapath!r}"
            )
        self.latency = check(**params)
        self._datapath = datapath
        self._params = params
        super().__init__({"i": In(stream.Signature(32)), "o": Out(stream.Signature(32))})

    def elaborate(self, platform):
        m = Module()
        datapath = self._datapath(**self._params)
        assert datapath.latency == self.latency
        advance = Signal()
        m.submodules.datapath = EnableInserter(advance)(datapath)
        # valid[k] says whether stage k+1 of the datapath holds a real input.
        valid = Signal(self.latency)
        with m.If(advance):
            m.d.sync += valid.eq(Cat(self.i.valid, valid[:-1]))
        m.d.comb += [
            advance.eq(self.o.ready | ~self.o.valid),
            self.i.ready.eq(advance),
            datapath.x.eq(self.i.payload),
            self.o.payload.eq(datapath.result),
            self.o.valid.eq(valid[-1]),
        ]
        return m
