"""Block-quantized weight tensors: host ``quantize`` / ``dequantize`` and the packed layout.

A weight matrix is ``[N, K]`` row-major; blocks of ``B`` consecutive elements run along K
(``B = EngineConfig.quant_block``, 64 by default; NVFP4 always uses 16).  The per-block
arithmetic lives in ``quant_blocks.py`` (encoders/decoders) and ``quant_grids.py`` (element
grids); this module packs codes and scales into a ``QuantizedTensor`` and defines its bytes.
The full contract, with bit layouts, is ``docs/numerics.md §5``.

Packed layout of a ``QuantizedTensor`` (also its ``to_bytes()`` image, little-endian):

1. ``codes``: ``uint8 [N, K/2]`` for the 4-bit formats (byte ``j`` of a row holds element
   ``2j`` in bits 3:0 and element ``2j+1`` in bits 7:4) or ``uint8 [N, K]`` for the 8-bit ones;
   row-major.
2. ``scales``: ``uint16 [N, K/B]`` bf16 bits (two bytes each, low byte first), or for NVFP4
   ``uint8 [N, K/16]`` E4M3FN bits; row-major.
3. NVFP4 only: the fp32 tensor scale, 4 bytes, little-endian.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config import FORMATS, EngineConfig
from .fp import f32_to_bf16
from .quant_blocks import (
    NVFP4_BLOCK,
    NVFP4_E4M3_NAN,
    decode_fp4,
    decode_fp8,
    decode_if4,
    decode_if8,
    decode_int4,
    decode_int8,
    decode_nvfp4,
    encode_fp4,
    encode_fp8,
    encode_if4,
    encode_if8,
    encode_int4,
    encode_int8,
    encode_nvfp4,
    if_metric,
    nvfp4_tensor_scale,
    scale_reciprocal,
)

__all__ = [
    "DEFAULT_BLOCK",
    "NVFP4_BLOCK",
    "NVFP4_E4M3_NAN",
    "QUANT_FORMATS",
    "QuantizedTensor",
    "decode_fp4",
    "decode_fp8",
    "decode_if4",
    "decode_if8",
    "decode_int4",
    "decode_int8",
    "decode_nvfp4",
    "dequantize",
    "element_bits",
    "encode_fp4",
    "encode_fp8",
    "encode_if4",
    "encode_if8",
    "encode_int4",
    "encode_int8",
    "encode_nvfp4",
    "if_metric",
    "nvfp4_tensor_scale",
    "pack_nibbles",
    "quantize",
    "scale_reciprocal",
    "unpack_nibbles",
]

#: The block-quantized formats: every engine format except the bf16 storage format.
QUANT_FORMATS: tuple[str, ...] = tuple(f for f in FORMATS if f != "bf16")

#: Default block length along K: ``EngineConfig``'s default ``quant_block``.
DEFAULT_BLOCK: int = EngineConfig().quant_block

# name -> (element bits, encode, decode); NVFP4's encode/decode also take the tensor scale.
_CODECS = {
    "int4": (4, encode_int4, decode_int4),
    "fp4": (4, encode_fp4, decode_fp4),
    "if4": (4, encode_if4, decode_if4),
    "nvfp4": (4, encode_nvfp4, decode_nvfp4),
    "int8": (8, encode_int8, decode_int8),
    "fp8": (8, encode_fp8, decode_fp8),
    "if8": (8, encode_if8, decode_if8),
}
if set(_CODECS) != set(QUANT_FORMATS):  # config.FORMATS is the single list of format names
    raise ImportError(
        f"quant.py implements {sorted(_CODECS)} but config.FORMATS lists {sorted(QUANT_FORMATS)}"
    )


def _check_format(fmt) -> str:
    if not isinstance(fmt, str):
        raise TypeError(f"format must be a str, one of {', '.join(QUANT_FORMATS)}; got {fmt!r}")
    if fmt not in _CODECS:
        raise ValueError(f"unknown quantized format {fmt!r}; allowed: {', '.join(QUANT_FORMATS)}")
    return fmt


def element_bits(fmt: str) -> int:
    """Bits per element code of ``fmt`` (4 or 8)."""
    return _CODECS[_check_format(fmt)][0]


def _block_for(fmt: str, block) -> int:
    """The block length ``fmt`` uses: 16 for NVFP4, else a valid ``EngineConfig.quant_block``."""
    if isinstance(block, bool) or not isinstance(block, int | np.integer):
        raise TypeError(f"block must be an int, got {block!r} ({type(block).__name__})")
    if fmt == "nvfp4":
        return NVFP4_BLOCK  # fixed by the format; quant_block does not apply
    try:
        EngineConfig(quant_block=int(block))  # the one place the allowed range is defined
    except ValueError as exc:
        raise ValueError(f"block={block} is not a valid quant_block: {exc}") from None
    return int(block)


def pack_nibbles(codes) -> np.ndarray:
    """Pack 4-bit codes ``uint8 [..., 2m]`` into ``uint8 [..., m]``: even index → bits 3:0."""
    c = np.asarray(codes)
    if c.dtype != np.uint8 or c.ndim < 1 or c.shape[-1] % 2:
        raise ValueError(
            f"pack_nibbles needs uint8 codes with an even last axis, got {c.dtype} {c.shape}"
        )
    if c.size and int(c.max()) > 0xF:
        raise ValueError(f"pack_nibbles: 4-bit codes must be 0…15, found {int(c.max())}")
    return (c[..., 0::2] | (c[..., 1::2] << 4)).astype(np.uint8)


def unpack_nibbles(packed) -> np.ndarray:
    """Inverse of ``pack_nibbles``: ``uint8 [..., m]`` → ``uint8 [..., 2m]``."""
    p = np.asarray(packed)
    if p.dtype != np.uint8 or p.ndim < 1:
        raise ValueError(f"unpack_nibbles needs a uint8 array, got {p.dtype} {p.shape}")
    out = np.empty((*p.shape[:-1], 2 * p.shape[-1]), np.uint8)
    out[..., 0::2] = p & 0xF
    out[..., 1::2] = p >> 4
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class QuantizedTensor:
    """A packed block-quantized ``[N, K]`` weight matrix (layout in the module docstring).

    Parameters
    ----------
    fmt:
        One of ``QUANT_FORMATS``.
    shape:
        ``(N, K)`` of the weight matrix.
    codes:
        ``uint8 [N, K/2]`` (4-bit formats, two codes per byte) or ``uint8 [N, K]``.
    scales:
        ``uint16 [N, K/block]`` bf16 bits, or ``uint8 [N, K/16]`` E4M3FN bits for NVFP4.
    block:
        Elements per block along K (16 for NVFP4).
    tensor_scale:
        NVFP4's fp32 per-tensor scale (``np.float32``); ``None`` for every other format.

    The arrays are stored as read-only copies.
    """

    fmt: str
    shape: tuple[int, int]
    codes: np.ndarray
    scales: np.ndarray
    block: int
    tensor_scale: np.float32 | None = None

    def __post_init__(self) -> None:
        fmt = _check_format(self.fmt)
        shape = self.shape
        if (
            not isinstance(shape, tuple)
            or len(shape) != 2
            or not all(isinstance(d, int | np.integer) and d > 0 for d in shape)
        ):
            raise ValueError(f"QuantizedTensor.shape must be (N, K) positive ints, got {shape!r}")
        n, k = int(shape[0]), int(shape[1])
        block = self.block
        if fmt == "nvfp4" and block != NVFP4_BLOCK:
            raise ValueError(f"QuantizedTensor: nvfp4 blocks are {NVFP4_BLOCK}, got block={block}")
        block = _block_for(fmt, block)
        if k % block:
            raise ValueError(f"QuantizedTensor: K={k} is not a multiple of block={block}")
        code_cols = k // 2 if element_bits(fmt) == 4 else k
        scale_dtype = np.uint8 if fmt == "nvfp4" else np.uint16
        for name, arr, dtype, want in (
            ("codes", self.codes, np.uint8, (n, code_cols)),
            ("scales", self.scales, scale_dtype, (n, k // block)),
        ):
            a = np.asarray(arr)
            if a.dtype != dtype or a.shape != want:
                raise ValueError(
                    f"QuantizedTensor({fmt}, shape={shape}, block={block}).{name} must be "
                    f"{np.dtype(dtype)} {want}, got {a.dtype} {a.shape}"
                )
            a = a.copy()
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        ts = self.tensor_scale
        if fmt == "nvfp4":
            if not isinstance(ts, np.float32):
                raise ValueError(
                    f"QuantizedTensor: nvfp4 needs a np.float32 tensor_scale, got {ts!r}"
                )
        elif ts is not None:
            raise ValueError(f"QuantizedTensor: tensor_scale is only for nvfp4, not {fmt}")
        object.__setattr__(self, "shape", (n, k))
        object.__setattr__(self, "block", block)

    @property
    def nbytes(self) -> int:
        """Bytes of the packed image (codes + scales + NVFP4's 4-byte tensor scale)."""
        return self.codes.nbytes + self.scales.nbytes + (4 if self.fmt == "nvfp4" else 0)

    @property
    def bits_per_weight(self) -> float:
        """Storage cost per weight, scales included (e.g. 4.25 for IF4 at block 64)."""
        return 8 * self.nbytes / (self.shape[0] * self.shape[1])

    def to_bytes(self) -> bytes:
        """The packed image: codes, then scales (little-endian), then NVFP4's fp32 tensor scale."""
        scale_dtype = "u1" if self.fmt == "nvfp4" else "<u2"
        out = self.codes.tobytes() + self.scales.astype(scale_dtype).tobytes()
        if self.fmt == "nvfp4":
            out += np.asarray(self.tensor_scale, dtype="<f4").tobytes()
        return out

    @classmethod
    def from_bytes(
        cls, data: bytes, fmt: str, shape: tuple[int, int], block: int = DEFAULT_BLOCK
    ) -> QuantizedTensor:
        """Rebuild a tensor from ``to_bytes()`` output; ``fmt``/``shape``/``block`` describe it.

        The length must match exactly. For NVFP4 ``block`` is ignored (always 16).
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"from_bytes needs bytes, got {type(data).__name__}")
        fmt = _check_format(fmt)
        block = _block_for(fmt, block)
        if not (isinstance(shape, tuple) and len(shape) == 2):
            raise ValueError(f"from_bytes: shape must be an (N, K) tuple, got {shape!r}")
        n, k = shape
        if not all(isinstance(d, int | np.integer) and d > 0 for d in shape) or k % block:
            raise ValueError(
                f"from_bytes: shape {shape} must be positive with K a multiple of block={block}"
            )
        code_bytes = n * (k // 2 if element_bits(fmt) == 4 else k)
        scale_dtype = np.dtype("u1") if fmt == "nvfp4" else np.dtype("<u2")
        scale_bytes = n * (k // block) * scale_dtype.itemsize
        total = code_bytes + scale_bytes + (4 if fmt == "nvfp4" else 0)
        raw = bytes(data)
        if len(raw) != total:
            raise ValueError(
                f"from_bytes: {fmt} {shape} block {block} needs exactly {total} bytes "
                f"({code_bytes} codes + {scale_bytes} scales"
                + (" + 4 tensor scale" if fmt == "nvfp4" else "")
                + f"), got {len(raw)}"
            )
        codes = np.frombuffer(raw, np.uint8, code_bytes).reshape(n, -1)
        scales = np.frombuffer(raw, scale_dtype, n * (k // block), code_bytes).reshape(n, -1)
        ts = None
        if fmt == "nvfp4":
            ts = np.float32(np.frombuffer(raw, "<f4", 1, code_bytes + scale_bytes)[0])
        return cls(
            fmt, (int(n), int(k)), codes, scales.astype(scale_dtype.newbyteorder("=")), block, ts
        )

    def unpacked_codes(self) -> np.ndarray:
        """Codes ``uint8 [N, K]``, one per byte."""
        return unpack_nibbles(self.codes) if element_bits(self.fmt) == 4 else self.codes.copy()

    def dequantize(self) -> np.ndarray:
        """bf16 bits ``uint16 [N, K]``: exactly what the RTL decoder outputs."""
        n, k = self.shape
        codes = self.unpacked_codes().reshape(n, k // self.block, self.block)
        decode = _CODECS[self.fmt][2]
        if self.fmt == "nvfp4":
            out = decode(codes, self.scales, self.tensor_scale)
        else:
            out = decode(codes, self.scales)
        return out.reshape(n, k)


def _to_bf16_bits(w) -> np.ndarray:
    """The host input as bf16 bits: uint16/bfloat16 as is, float16/32/64 rounded (see quantize)."""
    arr = np.asarray(w)
    if arr.dtype.name == "bfloat16":
        return arr.view(np.uint16)
    if arr.dtype == np.uint16:
        return arr
    if arr.dtype in (np.float16, np.float32, np.float64):
        with np.errstate(over="ignore"):  # out-of-range float64 → ±Inf, rejected below
            return f32_to_bf16(arr.astype(np.float32))
    raise TypeError(
        "quantize expects float16/float32/float64 weights or bf16 bit patterns (uint16 or "
        f"ml_dtypes.bfloat16), got dtype {arr.dtype}"
    )


def _reject_nonfinite(bits: np.ndarray, original: np.ndarray, block: int) -> None:
    bad = (bits & 0x7F80) == 0x7F80  # bf16 exponent all ones: Inf or NaN
    if not bad.any():
        return
    row, col = (int(i) for i in np.argwhere(bad)[0])
    value = np.asarray(original)[row, col]
    first, last = col // block * block, (col // block + 1) * block - 1
    raise ValueError(
        f"quantize: {int(bad.sum())} non-finite weight(s); first at row {row}, "
        f"block {col // block} (columns {first}…{last}), column {col}: "
        f"{value!r} (bf16 0x{int(bits[row, col]):04X}). Quantized formats need finite weights "
        "(a float beyond the bf16 range rounds to Inf)."
    )


def quantize(w, fmt: str, block: int = DEFAULT_BLOCK) -> QuantizedTensor:
    """Quantize an ``[N, K]`` weight matrix (blocks along K) into ``fmt``.

    Parameters
    ----------
    w:
        2-D array. bf16 bit patterns (``uint16`` or ``ml_dtypes.bfloat16``) are used as is;
        ``float16``/``float32``/``float64`` are first rounded to bf16 with ``fp.f32_to_bf16``
        (float64 goes through float32 first — a double rounding that can differ from a direct
        float64 → bf16 RNE by one bf16 ulp in rare ties; pass bf16 bits to avoid it).
        Subnormal bf16 values are read as ±0 (the engine's FTZ rule).
    fmt:
        One of ``QUANT_FORMATS``.
    block:
        Block length along K, a valid ``EngineConfig.quant_block`` (power of two, 16…256);
        ignored for ``"nvfp4"``, whose blocks are always 16.

    Raises
    ------
    TypeError
        Wrong dtype or argument type.
    ValueError
        Not 2-D or empty, unknown format, invalid block, K not a multiple of the block, or a
        NaN/Inf weight (the message names the row and block).
    """
    fmt = _check_format(fmt)
    block = _block_for(fmt, block)
    arr = np.asarray(w)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(
            f"quantize needs a non-empty 2-D [N, K] weight matrix, got shape {arr.shape}"
        )
    bits = _to_bf16_bits(arr)
    n, k = bits.shape
    if k % block:
        raise ValueError(
            f"quantize: K={k} is not a multiple of the {fmt} block size {block}; "
            f"pad K to a multiple of {block}"
        )
    _reject_nonfinite(bits, arr, block)
    blocks = bits.reshape(n, k // block, block)
    bits_per_code, encode, _ = _CODECS[fmt]
    tensor_scale = None
    if fmt == "nvfp4":
        tensor_scale = nvfp4_tensor_scale(bits)
        codes, scales = encode(blocks, tensor_scale)
    else:
        codes, scales = encode(blocks)
    codes = codes.reshape(n, k)
    if bits_per_code == 4:
        codes = pack_nibbles(codes)
    return QuantizedTensor(fmt, (n, k), codes, scales, block, tensor_scale)


def dequantize(q: QuantizedTensor) -> np.ndarray:
    """bf16 bits ``uint16 [N, K]`` of a ``QuantizedTensor`` (what the RTL decoder outputs)."""
    if not isinstance(q, QuantizedTensor):
        raise TypeError(f"dequantize needs a QuantizedTensor, got {type(q).__name__}")
    return q.dequantize()
