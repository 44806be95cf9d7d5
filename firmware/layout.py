"""Host-side data layouts the kernels read: B panels (bf16 and quantized) and epilogue specs.

**B panel in DRAM** (``PanelLayout``): the weight of a ``linear`` (``w[N, K]``) or the right
operand of a ``matmul`` (``b[K, N]``) is stored as ``ceil(N/C)`` tiles, tile *j* holding, for
k = 0…K−1, the C values ``B[k, j·C + c]`` (``B = wᵀ``) — exactly the MATMUL B-panel layout of
``docs/isa.md``, so one contiguous DMA per tile and K chunk fills the scratchpad.  Columns past N
are zero.  A bf16 tile is ``K·C·2`` bytes.

**Quantized panel**: the same tile order with element codes instead of bf16 (4-bit codes packed
two per byte, element 2n of the tile's flat ``[K][C]`` stream in the low nibble), followed by a
scale region: 4 bytes of header (NVFP4's fp32 tensor scale, else 0) and then, per tile *j*, the
``K/block × C`` scale entries in ``[block][column]`` order (bf16 bits, or an E4M3 code in the low
byte for NVFP4) — the order the MATMUL reads them from the scale memory for a K chunk.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from unified_engine.isa import ActKind, f32_bits
from unified_engine.numerics import activation as act_mod
from unified_engine.numerics import quant

__all__ = [
    "EpiSpec",
    "epi_spec",
    "pack_bf16_panel",
    "pack_quant_panel",
    "panel_tiles",
]


def panel_tiles(n: int, cols: int) -> int:
    """Number of C-wide tiles of an N-column B operand."""
    return -(-n // cols)


def pack_bf16_panel(b_kn: np.ndarray, cols: int) -> np.ndarray:
    """bf16 bits ``[K, N]`` → panel order ``uint16 [ceil(N/C), K, C]`` (zero padded)."""
    b = np.asarray(b_kn, np.uint16)
    k, n = b.shape
    tiles = panel_tiles(n, cols)
    padded = np.zeros((k, tiles * cols), np.uint16)
    padded[:, :n] = b
    return np.ascontiguousarray(padded.reshape(k, tiles, cols).transpose(1, 0, 2))


@dataclasses.dataclass(frozen=True)
class QuantPanel:
    """A quantized weight in panel order (see the module docstring)."""

    codes: bytes          # tiles × K·C·bits/8 bytes
    scales: bytes         # 4-byte header + tiles × (K/block)·C entries × 2 bytes
    tile_code_bytes: int
    tile_scale_entries: int


def pack_quant_panel(q: quant.QuantizedTensor, cols: int) -> QuantPanel:
    """Re-lay a ``QuantizedTensor`` of ``w[N, K]`` into the quantized panel layout."""
    n, k = q.shape
    block = q.block
    tiles = panel_tiles(n, cols)
    bits = quant.element_bits(q.fmt)
    codes = q.unpacked_codes()                           # [N, K], one code per byte
    pad_n = tiles * cols
    full = np.zeros((pad_n, k), np.uint8)
    full[:n] = codes
    # tile j: flat stream over (k', c) of w[j·C + c, k']
    stream = full.reshape(tiles, cols, k).transpose(0, 2, 1).reshape(tiles, k * cols)
    if bits == 4:
        stream = quant.pack_nibbles(stream)
    scales = np.zeros((pad_n, k // block), np.uint16)
    scales[:n] = q.scales.astype(np.uint16)
    # tile j: [block][column]
    tile_scales = scales.reshape(tiles, cols, k // block).transpose(0, 2, 1)
    header = np.zeros(2, np.uint16)
    if q.fmt == "nvfp4":
        header = np.asarray([q.tensor_scale], "<f4").view("<u2")
    scale_blob = header.astype("<u2").tobytes() + \
        np.ascontiguousarray(tile_scales).astype("<u2").tobytes()
    return QuantPanel(np.ascontiguousarray(stream).tobytes(), scale_blob,
                      k * cols * bits // 8, (k // block) * cols)


@dataclasses.dataclass(frozen=True)
class EpiSpec:
    """An epilogue-table entry: ``y = act(x·scale + bias)`` (fields as EPI encodes them)."""

    act: ActKind
    scale: int   # fp32 bits
    a: int
    b: int
    c: int
    d: int

    @property
    def is_identity(self) -> bool:
        return self.act is ActKind.IDENTITY and self.scale == f32_bits(1.0)


_ACT_NAMES = ("gelu", "silu", "sigmoid", "tanh", "relu", "identity")


def epi_spec(activation=None, scale: float | None = None) -> EpiSpec:
    """Validate an ``activation=``/``scale=`` pair and encode it as an epilogue entry.

    ``activation``: ``None``/``"identity"``, ``"gelu"``, ``"silu"``, ``"sigmoid"``, ``"tanh"``,
    ``"relu"`` or explicit unified parameters ``(a, b, c, d)`` (finite, exactly representable
    in fp32).  ``scale``: a finite float representable in fp32 (default 1).
    """
    if scale is None:
        scale_bits = f32_bits(1.0)
    else:
        if isinstance(scale, bool) or not isinstance(scale, int | float | np.floating):
            raise TypeError(f"scale must be a real number, not {scale!r}")
        if not math.isfinite(float(scale)) or float(np.float32(scale)) != float(scale) or \
                not math.isfinite(float(np.float32(scale))):
            raise ValueError(f"scale={scale!r} must be finite and exactly representable in "
                             "fp32 (pass numpy.float32(value))")
        scale_bits = f32_bits(float(scale))
    zero = f32_bits(0.0)
    if activation is None or activation == "identity":
        return EpiSpec(ActKind.IDENTITY, scale_bits, zero, zero, zero, zero)
    if isinstance(activation, str):
        if activation == "relu":
            return EpiSpec(ActKind.CLAMP, scale_bits, zero, f32_bits(float("inf")), zero, zero)
        if activation not in act_mod.ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; allowed: "
                             f"{', '.join(_ACT_NAMES)} or (a, b, c, d)")
        p = act_mod.ACTIVATIONS[activation]
        return EpiSpec(ActKind.UNIFIED, scale_bits, *(f32_bits(float(v)) for v in p))
    if isinstance(activation, tuple | list) and len(activation) == 4:
        vals = []
        for name, v in zip("abcd", activation, strict=True):
            if isinstance(v, bool) or not isinstance(v, int | float | np.floating):
                raise TypeError(f"activation parameter {name}={v!r} must be a real number")
            if not math.isfinite(float(v)) or float(np.float32(v)) != float(v):
                raise ValueError(f"activation parameter {name}={v!r} must be finite and "
                                 "exactly representable in fp32")
            vals.append(f32_bits(float(v)))
        return EpiSpec(ActKind.UNIFIED, scale_bits, *vals)
    raise TypeError(f"activation must be a name ({', '.join(_ACT_NAMES)}), a 4-tuple "
                    f"(a, b, c, d) or None, not {activation!r}")
