"""Transcendental units of the vector unit: exp, exp2, reciprocal, rsqrt and sigmoid.

Each function comes in two forms:

* ``*Datapath``: a fixed-latency pipeline with plain ports ``x: In(32)`` and
  ``result: Out(32)`` (fp32 bit patterns) and a ``latency`` attribute, one input per cycle,
  stalled with ``EnableInserter`` (the convention of ``rtl.fp``);
* the stream unit (``Exp``, ``Exp2``, ``Reciprocal``, ``Rsqrt``, ``Sigmoid``): the same
  datapath behind ``amaranth.lib.stream`` ports ``i`` / ``o`` with back-pressure.

All are bit-exact with ``unified_engine.numerics.transcendental`` for the same table
parameters; their ROMs are built by that module's generator functions.

Tables are ``amaranth.lib.memory.Memory`` instances with one registered read port and no
write port, not constant ``Array``/case muxes: the registered read is a pipeline boundary
anyway, so it costs nothing; synthesis picks a LUT ROM or a block RAM by size (Yosys maps all
three to LUTs); and ``EnableInserter`` gates the read-port enable, so a stall freezes it like
every other register. Wide multiplies are split into 24 × 17 unsigned partial products (one
DSP48E1/E2 each), registered, and summed in the next stage; the measured Yosys estimates
are in ``tests/rtl/test_transcendental.py::test_synth_estimate``.
"""

from ._stream import StreamPipeline
from .exp import Exp, Exp2, ExpDatapath
from .reciprocal import Reciprocal, ReciprocalDatapath, reciprocal_delta_widths
from .rsqrt import Rsqrt, RsqrtDatapath, rsqrt_delta_widths
from .sigmoid import Sigmoid, SigmoidDatapath

__all__ = [
    "Exp",
    "Exp2",
    "ExpDatapath",
    "Reciprocal",
    "ReciprocalDatapath",
    "Rsqrt",
    "RsqrtDatapath",
    "Sigmoid",
    "SigmoidDatapath",
    "StreamPipeline",
    "reciprocal_delta_widths",
    "rsqrt_delta_widths",
]
