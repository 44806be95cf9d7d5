"""AXI4 (full) and AXI4-Lite signatures of our own, built from ``amaranth.lib.stream``.

Each AXI channel is one stream: ``valid``/``ready`` are the channel's VALID/READY and the
payload is a ``StructLayout`` of the channel's fields, so the stream rules are the AXI
handshake rules (VALID must not wait for READY; the payload is stable while VALID and not
READY).  Signatures are written from the *manager* (master) side; a subordinate (slave) uses
``.flip()``.

Field names follow the AXI specification (IHI 0022) in lower case.  Only the signals this
engine needs are present: no QoS, region, user, cache, prot or lock signals (a shell adds
constants for them); ``burst`` is always INCR, ``size`` is always the full data width, so
neither is a port — the Verilog wrapper of a board shell drives ``AxSIZE = log2(bytes)`` and
``AxBURST = INCR``.
"""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "AXI_BOUNDARY",
    "AXI_MAX_BURST",
    "AxiResp",
    "axi4_signature",
    "axi_lite_signature",
]

#: A burst must not cross a 4 KB address boundary (AXI spec A3.4.1).
AXI_BOUNDARY = 4096
#: Longest INCR burst of AXI4, in beats.
AXI_MAX_BURST = 256


class AxiResp:
    """Values of the 2-bit RESP field."""

    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


def _check(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}={value!r} is out of range; allowed {low}…{high}")


def axi4_signature(*, addr_width: int, data_width: int, id_width: int = 1) -> wiring.Signature:
    """The AXI4 manager signature: channels ``aw``, ``w``, ``b``, ``ar``, ``r``.

    ``aw``/``ar`` payload: ``id``, ``addr`` (byte address), ``len`` (beats − 1, 0…255).
    ``w`` payload: ``data``, ``strb`` (one bit per byte), ``last``.
    ``b`` payload: ``id``, ``resp``.  ``r`` payload: ``id``, ``data``, ``resp``, ``last``.
    """
    _check("addr_width", addr_width, 12, 64)
    _check("id_width", id_width, 1, 16)
    if data_width not in (32, 64, 128, 256, 512, 1024):
        raise ValueError(f"data_width={data_width!r} is not an AXI data width; allowed "
                         "32, 64, 128, 256, 512, 1024")
    addr = data.StructLayout({"id": unsigned(id_width), "addr": unsigned(addr_width),
                              "len": unsigned(8)})
    return wiring.Signature({
        "aw": Out(stream.Signature(addr)),
        "w": Out(stream.Signature(data.StructLayout({
            "data": unsigned(data_width), "strb": unsigned(data_width // 8), "last": 1}))),
        "b": In(stream.Signature(data.StructLayout({"id": unsigned(id_width),
                                                    "resp": unsigned(2)}))),
        "ar": Out(stream.Signature(addr)),
        "r": In(stream.Signature(data.StructLayout({
            "id": unsigned(id_width), "data": unsigned(data_width), "resp": unsigned(2),
            "last": 1}))),
    })


def axi_lite_signature(*, addr_width: int, data_width: int = 32) -> wiring.Signature:
    """The AXI4-Lite manager signature (``aw``, ``w``, ``b``, ``ar``, ``r``)."""
    _check("addr_width", addr_width, 2, 64)
    if data_width not in (32, 64):
        raise ValueError(f"AXI4-Lite data_width={data_width!r}; allowed 32, 64")
    return wiring.Signature({
        "aw": Out(stream.Signature(data.StructLayout({"addr": unsigned(addr_width)}))),
        "w": Out(stream.Signature(data.StructLayout({
            "data": unsigned(data_width), "strb": unsigned(data_width // 8)}))),
        "b": In(stream.Signature(data.StructLayout({"resp": unsigned(2)}))),
        "ar": Out(stream.Signature(data.StructLayout({"addr": unsigned(addr_width)}))),
        "r": In(stream.Signature(data.StructLayout({"data": unsigned(data_width),
                                                    "resp": unsigned(2)}))),
    })
