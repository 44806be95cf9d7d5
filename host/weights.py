"""Device-resident weights in the kernels' B-panel layout (bf16 or block-quantized).

``Engine.pack_weight(w)`` and ``Engine.quantize(w, fmt)`` return a :class:`PackedWeight`: the
``[N, K]`` weight of a ``linear`` re-laid on the host into C-column tiles (see
``unified_engine.firmware.layout``) and uploaded once, so every later ``linear`` streams it with
one contiguous DMA per tile and K chunk.  Quantized weights are decoded on the fly by the array
(``MATMUL b_fmt``), bit-exactly as ``numerics.quant`` decodes them.
"""

from __future__ import annotations

import typing

import numpy as np

from unified_engine.firmware.layout import pack_bf16_panel, pack_quant_panel
from unified_engine.numerics import quant

from .tensor import DeviceTensor

if typing.TYPE_CHECKING:
    from .engine import Engine

__all__ = ["PackedWeight"]


class PackedWeight:
    """A ``linear`` weight ``w[N, K]`` on the device in panel layout.

    Attributes
    ----------
    shape : tuple[int, int]
        ``(N, K)``.
    fmt : str
        ``"bf16"`` or a quantized format (``"int4"``, ``"fp4"``, ``"if4"``, ``"nvfp4"``,
        ``"int8"``, ``"fp8"``, ``"if8"``).
    codes : DeviceTensor
        The panel tiles (bf16 bits or element codes), raw bytes.
    scales : DeviceTensor | None
        Quantized formats: the scale region (4-byte header + per-tile scales).
    qtensor : numerics.quant.QuantizedTensor | None
        The host-side quantized tensor (what ``numerics.quant.dequantize`` decodes).
    """

    def __init__(self, engine: Engine, shape: tuple[int, int], fmt: str, codes: DeviceTensor,
                 scales: DeviceTensor | None, qtensor: quant.QuantizedTensor | None) -> None:
        self.engine = engine
        self.shape = shape
        self.fmt = fmt
        self.codes = codes
        self.scales = scales
        self.qtensor = qtensor

    def __repr__(self) -> str:
        return f"PackedWeight(shape={self.shape}, fmt={self.fmt}, addr={self.codes.addr:#x})"

    @property
    def nbytes(self) -> int:
        """Device bytes of the packed weight."""
        return self.codes.nbytes + (self.scales.nbytes if self.scales is not None else 0)

    def dequantized(self) -> np.ndarray:
        """bf16 bits ``[N, K]`` of the values the engine multiplies with."""
        if self.qtensor is not None:
            return self.qtensor.dequantize()
        n, k = self.shape
        cols = self.engine.config.cols
        tiles = self.codes.bits().view(np.uint16).reshape(-1, k, cols)
        return np.ascontiguousarray(tiles.transpose(0, 2, 1).reshape(-1, k)[:n])

    def free(self) -> None:
        """Release the device memory."""
        self.codes.free()
        if self.scales is not None:
            self.scales.free()


def pack_bf16(engine: Engine, w_bits: np.ndarray, region: str = "params") -> PackedWeight:
    """Upload bf16 bits ``w[N, K]`` as a panel weight."""
    n, k = w_bits.shape
    panel = pack_bf16_panel(np.ascontiguousarray(w_bits.T), engine.config.cols)
    codes = engine.tensor(panel.reshape(-1).view(np.uint8), dtype="uint8", region=region)
    return PackedWeight(engine, (n, k), "bf16", codes, None, None)


def pack_quantized(engine: Engine, w_bits: np.ndarray, fmt: str,
                   region: str = "params") -> PackedWeight:
    """Quantize bf16 bits ``w[N, K]`` (``numerics.quant.quantize``) and upload the panel."""
    q = quant.quantize(w_bits, fmt, block=engine.config.quant_block)
    panel = pack_quant_panel(q, engine.config.cols)
    codes = engine.tensor(np.frombuffer(panel.codes, np.uint8), dtype="uint8", region=region)
    try:
        scales = engine.tensor(np.frombuffer(panel.scales, np.uint8), dtype="uint8",
                               region=region)
    except Exception:
        codes.free()
        raise
    return PackedWeight(engine, q.shape, fmt, codes, scales, q)
