"""Functional semantics of the queue instructions (DMA, MATMUL, VECTOR) for the ISA simulator.

Each function takes the machine state (``host.isasim.Machine``) and the instruction's fields
*resolved at dispatch* (GPR override applied; every address operand group replaced by its
effective address, e.g. ``f["dram"]``), performs the instruction on the memories with the
``unified_engine.numerics`` golden models, and returns its memory footprint
``(reads, writes)`` as lists of :class:`Span` (for the model's race detector).  A fault raises
:class:`Stop` with the error code the RTL reports; nothing is modified before the checks pass.

Data layouts (also in ``docs/isa.md``): B = AXI bytes per scratchpad row, TR = tile rows,
C = array columns, e = 2 (bf16) or 4 (fp32) bytes.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from unified_engine.isa import (
    VECTOR_REDUCE_SLOTS,
    ActKind,
    BiasMode,
    ElemFormat,
    MemTarget,
    OutLayout,
    RowMaxMode,
    VecBcast,
    VecOp,
    WeightFormat,
)
from unified_engine.numerics import fp
from unified_engine.regs import ErrorCode

if typing.TYPE_CHECKING:
    from .isasim import Machine

__all__ = ["Span", "Stop", "dma", "matmul", "vector"]


class Stop(Exception):
    """An instruction fault: the engine stops with ``code``."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Span(NamedTuple):
    """``rows`` byte ranges ``[start + r·stride, + row_bytes)`` of one memory ``space``."""

    space: str
    start: int
    row_bytes: int
    stride: int
    rows: int

    @property
    def end(self) -> int:
        return self.start + (self.rows - 1) * self.stride + self.row_bytes

    def overlaps(self, other: Span) -> bool:
        """True if any byte of ``self`` is also in ``other`` (exact for 2-D patterns)."""
        if self.space != other.space or not self.rows or not other.rows:
            return False
        if self.end <= other.start or other.end <= self.start:
            return False
        small, big = (self, other) if self.rows <= other.rows else (other, self)
        if big.rows == 1 or big.stride <= big.row_bytes or small.rows > 4096:
            return True  # contiguous (or too many rows to check): the bounding box decides
        for r in range(small.rows):
            lo = small.start + r * small.stride
            hi = lo + small.row_bytes
            # rows of `big` that could intersect [lo, hi)
            first = max(0, (lo - big.start - big.row_bytes) // big.stride)
            last = min(big.rows - 1, (hi - big.start) // big.stride)
            for q in range(first, last + 1):
                b_lo = big.start + q * big.stride
                if b_lo < hi and lo < b_lo + big.row_bytes:
                    return True
        return False


def _span(space: str, start: int, nbytes: int) -> Span:
    return Span(space, start, nbytes, nbytes, 1)


# ----- memory helpers -------------------------------------------------------------------------


def _check(mem: np.ndarray, space: str, start: int, row_bytes: int, stride: int,
           rows: int) -> None:
    if rows == 0 or row_bytes == 0:
        return
    end = start + (rows - 1) * stride + row_bytes
    if start < 0 or end > mem.size:
        raise Stop(ErrorCode.SRAM_OUT_OF_RANGE,
                   f"{space} bytes {start:#x}…{end - 1:#x} are past its end ({mem.size:#x})")


def _read(mem: np.ndarray, start: int, row_bytes: int, stride: int, rows: int) -> np.ndarray:
    """Copy ``rows`` × ``row_bytes`` bytes out of ``mem`` (uint8 [rows, row_bytes])."""
    if rows == 1 or stride == row_bytes:
        return mem[start:start + rows * row_bytes].reshape(rows, row_bytes).copy()
    idx = start + np.arange(rows)[:, None] * stride + np.arange(row_bytes)[None, :]
    return mem[idx]


def _write(mem: np.ndarray, start: int, stride: int, data: np.ndarray) -> None:
    """Write ``data`` (uint8 [rows, row_bytes]) row by row; later rows win on overlap."""
    rows, row_bytes = data.shape
    if rows == 1 or stride == row_bytes:
        mem[start:start + data.size] = data.reshape(-1)
    elif stride > row_bytes:
        idx = start + np.arange(rows)[:, None] * stride + np.arange(row_bytes)[None, :]
        mem[idx] = data
    else:  # overlapping rows: keep the sequential meaning
        for r in range(rows):
            mem[start + r * stride:start + r * stride + row_bytes] = data[r]


def _rows_for(nbytes: int, beat: int) -> int:
    return -(-nbytes // beat)


# ----- operand overlap (docs/isa.md, "Operand overlap") ----------------------------------------
# The RTL's MATMUL and VECTOR units stream: they write results while still reading operands,
# whereas this model reads every operand before it writes.  The two agree only when no result
# shares a byte with an operand the instruction still reads, so such instructions are refused
# (ILLEGAL_OPERAND) after all range checks and before anything is written, exactly where
# ``rtl.checks`` refuses them.  Overlap is judged on byte *extents* ``[start, Span.end)`` (not
# row by row), which is what the checker can afford at dispatch.


def _intersect(a: Span | None, b: Span | None) -> bool:
    """True if both spans are non-empty and their byte extents intersect."""
    if a is None or b is None or not (a.rows and a.row_bytes and b.rows and b.row_bytes):
        return False
    return a.start < b.end and b.start < a.end


def _in_place(dst: Span, src: Span) -> bool:
    """The exact in-place case the streaming units handle: same start and row size (so the
    same element format), and one row or the same row stride with rows that do not overlap
    each other (every row is read before it is written)."""
    if dst.start != src.start or dst.row_bytes != src.row_bytes or dst.rows != src.rows:
        return False
    return dst.rows == 1 or (dst.stride == src.stride and dst.stride >= dst.row_bytes)


def _check_overlap(who: str, dst: Span, sources: dict[str, Span | None],
                   in_place: tuple[str, ...] = ()) -> None:
    """ILLEGAL_OPERAND if ``dst`` overlaps a source (names in ``in_place`` may instead be
    exactly in place)."""
    for name, src in sources.items():
        if name in in_place and src is not None and _in_place(dst, src):
            continue
        if _intersect(dst, src):
            raise Stop(ErrorCode.ILLEGAL_OPERAND,
                       f"{who} bytes {dst.start:#x}…{dst.end - 1:#x} overlap {name} bytes "
                       f"{src.start:#x}…{src.end - 1:#x} (only an exact in-place element-wise "
                       f"VECTOR is allowed)")


# ----- DMA ------------------------------------------------------------------------------------


def dma(m: Machine, f: dict[str, Any], store: bool) -> tuple[list[Span], list[Span]]:
    """LOAD (DRAM → on-chip) or STORE (on-chip → DRAM), 2-D strided."""
    rows, row_bytes = f["rows"], f["row_bytes"]
    if rows == 0 or row_bytes == 0:
        return [], []
    mem_kind = f["mem"]
    mem, space, unit = {
        MemTarget.SCRATCHPAD: (m.spad, "spad", m.config.axi_bytes),
        MemTarget.BIAS: (m.bias, "bias", 2),
        MemTarget.SCALE: (m.scale, "scale", 2),
    }[mem_kind]
    dram, dram_stride = f["dram"], f["dram_stride"]
    sram = f["sram"] * unit
    sram_stride = f["sram_stride"] or row_bytes
    last = dram + (rows - 1) * dram_stride + row_bytes
    if dram < m.window[0] or last > m.window[1]:
        raise Stop(ErrorCode.DMA_OUT_OF_WINDOW,
                   f"DRAM bytes {dram:#x}…{last - 1:#x} are outside the window "
                   f"[{m.window[0]:#x}, {m.window[1]:#x})")
    if last > m.dram.size:
        raise Stop(ErrorCode.DMA_OUT_OF_WINDOW,
                   f"DRAM bytes {dram:#x}…{last - 1:#x} are past the end of DRAM "
                   f"({m.dram.size:#x})")
    _check(mem, space, sram, row_bytes, sram_stride, rows)
    d_span = Span("dram", dram, row_bytes, dram_stride, rows)
    s_span = Span(space, sram, row_bytes, sram_stride, rows)
    if store:
        _write(m.dram, dram, dram_stride, _read(mem, sram, row_bytes, sram_stride, rows))
        return [s_span], [d_span]
    _write(mem, sram, sram_stride, _read(m.dram, dram, row_bytes, dram_stride, rows))
    return [d_span], [s_span]


# ----- quantized formats ------------------------------------------------------------------------


def _quant():
    from unified_engine.numerics import quant

    return quant


_FORMAT_NAMES = {w: w.name.lower() for w in WeightFormat}


def _elem_bits(fmt: WeightFormat) -> int:
    return 16 if fmt is WeightFormat.BF16 else _quant().element_bits(_FORMAT_NAMES[fmt])


def _check_format(m: Machine, fmt: WeightFormat, who: str) -> None:
    if _FORMAT_NAMES[fmt] not in m.config.formats:
        raise Stop(ErrorCode.UNSUPPORTED_FORMAT,
                   f"{who} format {fmt.name} is not built into this engine "
                   f"(formats: {', '.join(m.config.formats)})")


def _block(m: Machine, fmt: WeightFormat) -> int:
    return 16 if fmt is WeightFormat.NVFP4 else m.config.quant_block


def _unpack_codes(raw: np.ndarray, count: int, bits: int) -> np.ndarray:
    return _quant().unpack_nibbles(raw)[:count] if bits == 4 else raw[:count]


def _tensor_scale(m: Machine, entry: int) -> np.float32:
    if (entry + 2) * 2 > m.scale.size:
        raise Stop(ErrorCode.SRAM_OUT_OF_RANGE, f"scale entries {entry}…{entry + 1} are past "
                   f"the end of the scale memory")
    ts = m.scale[entry * 2:entry * 2 + 4].view(np.float32)[0]
    if not (np.isfinite(ts) and ts >= np.float32(2.0**-126)):
        raise Stop(ErrorCode.ILLEGAL_OPERAND,
                   f"NVFP4 tensor scale {float(ts)!r} is not a positive normal fp32")
    return ts


def _decode_blocks(m: Machine, fmt: WeightFormat, codes: np.ndarray, qscale: int,
                   offset: int) -> np.ndarray:
    """bf16 bits of ``codes [groups, blocks, block]``; scales in ``[groups, blocks]`` order.

    The scales are consecutive scale-memory entries from ``qscale + offset`` on; for NVFP4
    entries ``qscale`` and ``qscale + 1`` hold the fp32 tensor scale (low half first), the
    block scales start two entries later and each is an E4M3 code in its entry's low byte.
    """
    q = _quant()
    groups, blocks, _ = codes.shape
    count = groups * blocks
    first = qscale + offset + (2 if fmt is WeightFormat.NVFP4 else 0)
    _check(m.scale, "scale", first * 2, 2 * count, 1, 1)
    entries = m.scale[first * 2:(first + count) * 2].view(np.uint16).reshape(groups, blocks)
    if fmt is WeightFormat.NVFP4:
        scales = (entries & 0xFF).astype(np.uint8)
        return q.decode_nvfp4(codes, scales, _tensor_scale(m, qscale))
    return getattr(q, f"decode_{_FORMAT_NAMES[fmt]}")(codes, entries.copy())


# ----- epilogue table ---------------------------------------------------------------------------


def _activation(m: Machine, entry: int, x: np.ndarray, bias=None) -> np.ndarray:
    """``act(x · scale + bias)`` with epilogue-table entry ``entry`` (bias optional)."""
    e = m.epi[entry]
    y = fp.f32_mul(x, np.uint32(e["scale"]).view(np.float32))
    if bias is not None:
        y = fp.f32_add(y, bias)
    kind = e["act"]
    if kind is ActKind.IDENTITY:
        return y
    a, b, c, d = (np.uint32(e[n]).view(np.float32) for n in "abcd")
    from unified_engine.numerics import activation

    if kind is ActKind.CLAMP:
        return activation.clamp(y, a, b)
    return activation.unified_activation(y, a, b, c, d)


# ----- MATMUL ---------------------------------------------------------------------------------


def _bf16_elems(mem: np.ndarray, start: int, count: int) -> np.ndarray:
    return mem[start:start + 2 * count].view(np.uint16)


def matmul(m: Machine, f: dict[str, Any]) -> tuple[list[Span], list[Span]]:
    """Array matmul with fused epilogue (see docs/isa.md, "MATMUL")."""
    cfg = m.config
    beat, tr, cols = cfg.axi_bytes, cfg.tile_rows, cfg.cols
    mt, nt, k = f["m_tiles"], f["n_tiles"], f["k"]
    if mt == 0 or nt == 0:
        return [], []
    fmt = f["b_fmt"]
    _check_format(m, fmt, "MATMUL b_fmt")
    block = _block(m, fmt)
    if fmt is not WeightFormat.BF16 and k % block:
        raise Stop(ErrorCode.ILLEGAL_OPERAND,
                   f"MATMUL k={k} is not a multiple of the {fmt.name} block ({block})")
    big_m, big_n = mt * tr, nt * cols
    reads: list[Span] = []
    writes: list[Span] = []

    # A panel: tile i holds k vectors of TR bf16, row-aligned tiles.
    a_bytes = k * tr * 2
    a_rows = _rows_for(a_bytes, beat)
    a_start = f["a"] * beat
    _check(m.spad, "scratchpad (A)", a_start, a_bytes, a_rows * beat, mt)
    a_full = np.empty((big_m, k), np.uint16)
    for i in range(mt):
        tile = _bf16_elems(m.spad, a_start + i * a_rows * beat, k * tr).reshape(k, tr)
        a_full[i * tr:(i + 1) * tr] = tile.T
    a_span = Span("spad", a_start, a_bytes, a_rows * beat, mt)
    reads.append(a_span)

    # B panel: tile j holds k vectors of C elements in b_fmt, row-aligned tiles.
    bits = _elem_bits(fmt)
    b_bytes = -(-k * cols * bits // 8)
    b_rows = _rows_for(b_bytes, beat)
    b_start = f["b"] * beat
    _check(m.spad, "scratchpad (B)", b_start, b_bytes, b_rows * beat, nt)
    b_full = np.empty((k, big_n), np.uint16)
    for j in range(nt):
        start = b_start + j * b_rows * beat
        if fmt is WeightFormat.BF16:
            tile = _bf16_elems(m.spad, start, k * cols).reshape(k, cols)
        else:
            codes = _unpack_codes(m.spad[start:start + b_bytes], k * cols, bits)
            blocks = k // block
            # [k, C] → [blocks, C, block]: column c of block kb is one quantization block
            by_block = codes.reshape(blocks, block, cols).transpose(0, 2, 1)
            dec = _decode_blocks(m, fmt, np.ascontiguousarray(by_block), f["qscale"],
                                 j * blocks * cols)
            tile = dec.transpose(0, 2, 1).reshape(k, cols)
        b_full[:, j * cols:(j + 1) * cols] = tile
    b_span = Span("spad", b_start, b_bytes, b_rows * beat, nt)
    reads.append(b_span)
    if fmt is not WeightFormat.BF16:
        extra = 2 if fmt is WeightFormat.NVFP4 else 0
        reads.append(_span("scale", f["qscale"] * 2, 2 * (extra + nt * (k // block) * cols)))

    # Accumulator tiles acc + i·n_tiles + j.
    uses_acc = f["acc_in"] or f["acc_out"]
    if uses_acc and f["acc"] + mt * nt > m.acc.shape[0]:
        raise Stop(ErrorCode.SRAM_OUT_OF_RANGE,
                   f"accumulator tiles {f['acc']}…{f['acc'] + mt * nt - 1} are past the last "
                   f"tile ({m.acc.shape[0] - 1})")
    acc_span = Span("acc", f["acc"] * tr * cols * 4, mt * nt * tr * cols * 4,
                    mt * nt * tr * cols * 4, 1)
    acc_block = m.acc[f["acc"]:f["acc"] + mt * nt].reshape(mt, nt, tr, cols) if uses_acc else None
    init = None
    if f["acc_in"]:
        init = acc_block.transpose(0, 2, 1, 3).reshape(big_m, big_n)
        reads.append(acc_span)

    # Epilogue operands are checked before anything is written.
    bias_mode = f["bias_mode"]
    if f["wb"] and bias_mode is not BiasMode.NONE:
        count = {BiasMode.ROW: big_m, BiasMode.COL: big_n, BiasMode.FULL: big_m * big_n}
        n_bias = count[bias_mode]
        _check(m.bias, "bias", f["bias"] * 2, 2 * n_bias, 1, 1)
        reads.append(_span("bias", f["bias"] * 2, 2 * n_bias))
    out_e = 2 if f["out_fmt"] is ElemFormat.BF16 else 4
    if f["wb"]:
        dst_span = _out_span(cfg, f, big_m, big_n, out_e)
        _check(m.spad, "scratchpad (dst)", dst_span.start, dst_span.row_bytes, dst_span.stride,
               dst_span.rows)
        rmax_span = None
        if f["rowmax"] is not RowMaxMode.NONE:
            _check(m.spad, "scratchpad (rmax)", f["rmax"] * beat, 4 * big_m, 1, 1)
            rmax_span = _span("spad", f["rmax"] * beat, 4 * big_m)
        # the unit writes output rows in tile order, not row order
        if f["out_layout"] is OutLayout.ROW_MAJOR and 0 < f["dst_pitch"] < big_n * out_e:
            raise Stop(ErrorCode.ILLEGAL_OPERAND,
                       f"MATMUL ROW_MAJOR dst_pitch={f['dst_pitch']} is below a row of "
                       f"N·e = {big_n * out_e} bytes (0 or ≥ N·e)")
        _check_overlap("MATMUL dst", dst_span, {"A": a_span, "B": b_span})
        if rmax_span is not None:
            _check_overlap("MATMUL rmax", rmax_span, {"A": a_span, "B": b_span, "dst": dst_span})

    sums = fp.pe_accumulate(a_full, b_full, init)
    if f["acc_out"]:
        acc_block[...] = sums.reshape(mt, tr, nt, cols).transpose(0, 2, 1, 3)
        writes.append(acc_span)
    if not f["wb"]:
        return reads, writes

    bias = None
    if bias_mode is not BiasMode.NONE:
        b = fp.bf16_to_f32(_bf16_elems(m.bias, f["bias"] * 2, n_bias))
        bias = {BiasMode.ROW: lambda: b[:, None], BiasMode.COL: lambda: b[None, :],
                BiasMode.FULL: lambda: b.reshape(big_m, big_n)}[bias_mode]()
    y = _activation(m, f["epi"], sums, bias)
    if f["out_fmt"] is ElemFormat.BF16:
        out_bits = fp.f32_to_bf16(y)
        written = fp.bf16_to_f32(out_bits)
    else:
        written = fp.ftz32(y)
        out_bits = fp.f32_to_bits(written)
    _write_output(m, f, out_bits, big_m, big_n)
    writes.append(dst_span)
    if f["rowmax"] is not RowMaxMode.NONE:
        from unified_engine.numerics.reduce import max_reduce

        rmax = max_reduce(written, axis=1)
        start = f["rmax"] * beat
        view = m.spad[start:start + 4 * big_m].view(np.float32)
        if f["rowmax"] is RowMaxMode.UPDATE:
            reads.append(_span("spad", start, 4 * big_m))
            rmax = fp.f32_max(view, rmax)
        view[:] = rmax
        writes.append(_span("spad", start, 4 * big_m))
    return reads, writes


def _out_span(cfg, f: dict[str, Any], big_m: int, big_n: int, e: int) -> Span:
    beat = cfg.axi_bytes
    start = f["dst"] * beat
    layout = f["out_layout"]
    if layout is OutLayout.ROW_MAJOR:
        pitch = f["dst_pitch"] or big_n * e
        return Span("spad", start, big_n * e, pitch, big_m)
    if layout is OutLayout.A_PANEL:
        tile = big_n * cfg.tile_rows * e
        return Span("spad", start, tile, _rows_for(tile, beat) * beat, big_m // cfg.tile_rows)
    tile = big_m * cfg.cols * e
    return Span("spad", start, tile, _rows_for(tile, beat) * beat, big_n // cfg.cols)


def _write_output(m: Machine, f: dict[str, Any], bits: np.ndarray, big_m: int,
                  big_n: int) -> None:
    cfg = m.config
    raw = np.ascontiguousarray(bits)
    e = raw.dtype.itemsize
    span = _out_span(cfg, f, big_m, big_n, e)
    layout = f["out_layout"]
    if layout is OutLayout.ROW_MAJOR:
        data = raw.view(np.uint8).reshape(big_m, big_n * e)
    elif layout is OutLayout.A_PANEL:
        tr = cfg.tile_rows
        # tile i: for n: TR elements (rows i·TR … i·TR + TR − 1)
        data = np.ascontiguousarray(raw.reshape(big_m // tr, tr, big_n).transpose(0, 2, 1))
        data = data.view(np.uint8).reshape(big_m // tr, -1)
    else:
        c = cfg.cols
        data = np.ascontiguousarray(raw.reshape(big_m, big_n // c, c).transpose(1, 0, 2))
        data = data.view(np.uint8).reshape(big_n // c, -1)
    _write(m.spad, span.start, span.stride, data)


# ----- VECTOR ---------------------------------------------------------------------------------


def _esize(fmt: ElemFormat) -> int:
    return 2 if fmt is ElemFormat.BF16 else 4


def _to_f32(raw: np.ndarray, fmt: ElemFormat) -> np.ndarray:
    if fmt is ElemFormat.BF16:
        return fp.bf16_to_f32(raw.view(np.uint16))
    return fp.ftz32(raw.view(np.float32))


def _from_f32(x: np.ndarray, fmt: ElemFormat) -> np.ndarray:
    if fmt is ElemFormat.BF16:
        return fp.f32_to_bf16(x).view(np.uint8)
    return fp.f32_to_bits(fp.ftz32(x)).view(np.uint8)


def _operand(m: Machine, addr: int, stride_rows: int, fmt: ElemFormat, rows: int,
             length: int, who: str) -> tuple[np.ndarray, Span]:
    """fp32 ``[rows, length]`` of a 2-D scratchpad operand and its span."""
    beat = m.config.axi_bytes
    e = _esize(fmt)
    row_bytes = length * e
    stride = (stride_rows or _rows_for(row_bytes, beat)) * beat
    start = addr * beat
    _check(m.spad, f"scratchpad ({who})", start, row_bytes, stride, rows)
    raw = _read(m.spad, start, row_bytes, stride, rows)
    return _to_f32(raw.reshape(-1), fmt).reshape(rows, length), Span("spad", start, row_bytes,
                                                                      stride, rows)


def _packed(m: Machine, addr: int, count: int, fmt: ElemFormat, who: str):
    start = addr * m.config.axi_bytes
    nbytes = count * _esize(fmt)
    _check(m.spad, f"scratchpad ({who})", start, nbytes, nbytes, 1)
    return _to_f32(m.spad[start:start + nbytes], fmt), _span("spad", start, nbytes)


def _sum_rows(x: np.ndarray, lanes: int, prev: np.ndarray | None,
              guard_bits: int) -> np.ndarray:
    """The vector unit's row sum (docs/isa.md): per-beat multi-add, interleaved slots, merge.

    Every multi-input add uses the engine's tree width ``EngineConfig.reduce_guard_bits``
    (docs/numerics.md §7), as the RTL adder tree does.
    """
    from unified_engine.numerics.reduce import multi_add

    slots: list[np.ndarray | None] = [None] * VECTOR_REDUCE_SLOTS
    for j in range(-(-x.shape[1] // lanes)):
        s = multi_add(x[:, j * lanes:(j + 1) * lanes], axis=1, guard_bits=guard_bits)
        q = j % VECTOR_REDUCE_SLOTS
        slots[q] = s if slots[q] is None else fp.f32_add(slots[q], s)
    parts = ([] if prev is None else [prev]) + [s for s in slots if s is not None]
    return multi_add(np.stack(parts, axis=1), axis=1, guard_bits=guard_bits)


_BINARY: dict[VecOp, Callable] = {
    VecOp.ADD: fp.f32_add,
    VecOp.SUB: fp.f32_sub,
    VecOp.MUL: fp.f32_mul,
    VecOp.MAX: fp.f32_max,
    VecOp.MIN: fp.f32_min,
}


def vector(m: Machine, f: dict[str, Any]) -> tuple[list[Span], list[Span]]:
    """Vector-unit operation (see docs/isa.md, "VECTOR")."""
    op, rows, length = f["op"], f["rows"], f["length"]
    if rows == 0 or length == 0:
        return [], []
    if f["accumulate"] and op not in (VecOp.RSUM, VecOp.RMAX, VecOp.RSUMSQ):
        raise Stop(ErrorCode.ILLEGAL_OPERAND, f"VECTOR {op.name} cannot accumulate")
    if op in (VecOp.QUANTIZE, VecOp.DEQUANTIZE):
        return _vector_quant(m, f)
    if op is VecOp.TRANSPOSE:
        return _vector_transpose(m, f)
    reads: list[Span] = []
    imm = fp.f32_from_bits(np.uint32(f["imm"]))
    sources: dict[str, Span | None] = {}  # what dst must not overlap
    if op is VecOp.FILL:
        x0 = None
    else:
        x0, span = _operand(m, f["src0"], f["src0_stride"], f["src0_fmt"], rows, length, "src0")
        reads.append(span)
        sources["src0"] = span
    dst_fmt = f["dst_fmt"]
    beat = m.config.axi_bytes

    if op in (VecOp.RSUM, VecOp.RMAX, VecOp.RSUMSQ, VecOp.ARGMAX4):
        per_row = 32 if op is VecOp.ARGMAX4 else _esize(dst_fmt)
        start = f["dst"] * beat
        _check(m.spad, "scratchpad (dst)", start, rows * per_row, 1, 1)
        dst_span = _span("spad", start, rows * per_row)
        _check_overlap(f"VECTOR {op.name} dst", dst_span, sources)
        if op is VecOp.ARGMAX4:
            from unified_engine.numerics.reduce import argmax_top4

            values, indices = argmax_top4(x0)
            out = np.empty((rows, 8), np.uint32)
            out[:, :4] = indices.astype(np.uint64).astype(np.uint32)
            out[:, 4:] = fp.f32_to_bits(values)
            m.spad[start:start + rows * 32] = out.view(np.uint8).reshape(-1)
            return reads, [dst_span]
        prev = None
        if f["accumulate"]:
            prev, span = _packed(m, f["dst"], rows, dst_fmt, "dst")
            reads.append(span)
        if op is VecOp.RMAX:
            from unified_engine.numerics.reduce import max_reduce

            result = max_reduce(x0, axis=1)
            if prev is not None:
                result = fp.f32_max(prev, result)
        else:
            terms = fp.f32_mul(x0, x0) if op is VecOp.RSUMSQ else x0
            result = _sum_rows(terms, m.config.lanes, prev, m.config.reduce_guard_bits)
        m.spad[start:start + rows * per_row] = _from_f32(result, dst_fmt)
        return reads, [dst_span]

    if op in _BINARY:
        bcast = f["bcast"]
        if bcast is VecBcast.SCALAR:
            x1 = imm
        elif bcast is VecBcast.TENSOR:
            x1, span = _operand(m, f["src1"], f["src1_stride"], f["src1_fmt"], rows, length,
                                "src1")
            reads.append(span)
            sources["src1"] = span
        elif bcast is VecBcast.ROW:
            x1, span = _packed(m, f["src1"], rows, f["src1_fmt"], "src1")
            x1 = x1[:, None]
            reads.append(span)
            sources["src1 (ROW)"] = span
        else:
            x1, span = _packed(m, f["src1"], length, f["src1_fmt"], "src1")
            x1 = x1[None, :]
            reads.append(span)
            sources["src1 (COL)"] = span
        y = _BINARY[op](x0, x1)
    elif op is VecOp.COPY:
        y = x0
    elif op is VecOp.FILL:
        y = np.full((rows, length), imm, np.float32)
    elif op is VecOp.ACTIVATE:
        y = _activation(m, f["epi"], x0)
    else:
        from unified_engine.numerics import transcendental as tr

        y = {VecOp.EXP: tr.exp, VecOp.RECIP: tr.reciprocal, VecOp.RSQRT: tr.rsqrt}[op](x0)
    return reads, [_store_rows(m, f, y, dst_fmt, sources, in_place=("src0", "src1"))]


def _store_rows(m: Machine, f: dict[str, Any], y: np.ndarray, fmt: ElemFormat,
                sources: dict[str, Span | None], in_place: tuple[str, ...] = (),
                distinct_rows: bool = False) -> Span:
    """Write ``y`` as dst rows after the range and overlap checks (``distinct_rows``: the
    rows must not overlap each other either)."""
    beat = m.config.axi_bytes
    rows, length = y.shape
    row_bytes = length * _esize(fmt)
    stride = (f["dst_stride"] or _rows_for(row_bytes, beat)) * beat
    start = f["dst"] * beat
    _check(m.spad, "scratchpad (dst)", start, row_bytes, stride, rows)
    dst = Span("spad", start, row_bytes, stride, rows)
    _check_dst_rows(f"VECTOR {f['op'].name}", dst, distinct_rows)
    _check_overlap(f"VECTOR {f['op'].name} dst", dst, sources, in_place)
    _write(m.spad, start, stride, _from_f32(y.reshape(-1), fmt).reshape(rows, row_bytes))
    return dst


def _check_dst_rows(who: str, dst: Span, distinct_rows: bool) -> None:
    """TRANSPOSE writes tile by tile, so its destination rows must not overlap each other."""
    if distinct_rows and dst.rows > 1 and dst.stride < dst.row_bytes:
        raise Stop(ErrorCode.ILLEGAL_OPERAND,
                   f"{who} dst rows of {dst.row_bytes} bytes overlap each other (stride "
                   f"{dst.stride} bytes)")


def _vector_transpose(m: Machine, f: dict[str, Any]) -> tuple[list[Span], list[Span]]:
    rows, length = f["rows"], f["length"]
    x0, span = _operand(m, f["src0"], f["src0_stride"], f["src0_fmt"], rows, length, "src0")
    if f["src0_fmt"] is f["dst_fmt"]:
        # a pure permutation: keep the bits (no FTZ/NaN canonicalisation)
        beat = m.config.axi_bytes
        e = _esize(f["src0_fmt"])
        raw = _read(m.spad, span.start, span.row_bytes, span.stride, rows)
        raw = raw.view(np.uint16 if e == 2 else np.uint32).reshape(rows, length)
        out = np.ascontiguousarray(raw.T)
        row_bytes = rows * e
        stride = (f["dst_stride"] or _rows_for(row_bytes, beat)) * beat
        start = f["dst"] * beat
        _check(m.spad, "scratchpad (dst)", start, row_bytes, stride, length)
        dst = Span("spad", start, row_bytes, stride, length)
        _check_dst_rows("VECTOR TRANSPOSE", dst, True)
        _check_overlap("VECTOR TRANSPOSE dst", dst, {"src0": span})
        _write(m.spad, start, stride, out.view(np.uint8).reshape(length, row_bytes))
        return [span], [dst]
    return [span], [_store_rows(m, f, np.ascontiguousarray(x0.T), f["dst_fmt"],
                                {"src0": span}, distinct_rows=True)]


def _vector_quant(m: Machine, f: dict[str, Any]) -> tuple[list[Span], list[Span]]:
    """QUANTIZE (bf16 rows → packed codes + scales) and DEQUANTIZE (the inverse)."""
    q = _quant()
    op, rows, length, fmt = f["op"], f["rows"], f["length"], f["qfmt"]
    if fmt is WeightFormat.BF16:
        raise Stop(ErrorCode.ILLEGAL_OPERAND, f"VECTOR {op.name} needs a quantized qfmt")
    _check_format(m, fmt, f"VECTOR {op.name}")
    block = _block(m, fmt)
    if length % block:
        raise Stop(ErrorCode.ILLEGAL_OPERAND,
                   f"VECTOR {op.name} length={length} is not a multiple of the {fmt.name} "
                   f"block ({block})")
    beat = m.config.axi_bytes
    bits = _elem_bits(fmt)
    code_bytes = length * bits // 8
    blocks = length // block
    n_scales = rows * blocks
    nv = fmt is WeightFormat.NVFP4
    scale_start = (f["qscale"] + (2 if nv else 0)) * 2
    scale_span = _span("scale", f["qscale"] * 2, 2 * (n_scales + (2 if nv else 0)))
    _check(m.scale, "scale", scale_span.start, scale_span.row_bytes, 1, 1)
    ts = fp.f32_from_bits(np.uint32(f["imm"]))
    if nv and not (np.isfinite(ts) and ts >= np.float32(2.0**-126)):
        raise Stop(ErrorCode.ILLEGAL_OPERAND,
                   f"NVFP4 tensor scale (imm) {float(ts)!r} is not a positive normal fp32")
    name = _FORMAT_NAMES[fmt]
    if op is VecOp.QUANTIZE:
        if f["src0_fmt"] is not ElemFormat.BF16:
            raise Stop(ErrorCode.ILLEGAL_OPERAND, "VECTOR QUANTIZE reads bf16 (src0_fmt=BF16)")
        row_bytes = length * 2
        stride = (f["src0_stride"] or _rows_for(row_bytes, beat)) * beat
        start = f["src0"] * beat
        _check(m.spad, "scratchpad (src0)", start, row_bytes, stride, rows)
        dst_stride = (f["dst_stride"] or _rows_for(code_bytes, beat)) * beat
        dst = f["dst"] * beat
        _check(m.spad, "scratchpad (dst)", dst, code_bytes, dst_stride, rows)
        _check_overlap("VECTOR QUANTIZE dst", Span("spad", dst, code_bytes, dst_stride, rows),
                       {"src0": Span("spad", start, row_bytes, stride, rows)})
        x = _read(m.spad, start, row_bytes, stride, rows).view(np.uint16)
        x = x.reshape(rows, blocks, block)
        if nv:
            codes, scales = q.encode_nvfp4(x, ts)
            entries = scales.astype(np.uint16)
        else:
            codes, entries = getattr(q, f"encode_{name}")(x)
        packed = q.pack_nibbles(codes.reshape(rows, length)) if bits == 4 else \
            codes.reshape(rows, length)
        _write(m.spad, dst, dst_stride, packed)
        m.scale[scale_start:scale_start + 2 * n_scales] = \
            entries.astype(np.uint16).reshape(-1).view(np.uint8)
        if nv:
            m.scale[f["qscale"] * 2:f["qscale"] * 2 + 4] = fp.f32_to_bits(ts).reshape(1) \
                .view(np.uint8)
        return ([Span("spad", start, row_bytes, stride, rows)],
                [Span("spad", dst, code_bytes, dst_stride, rows), scale_span])
    # DEQUANTIZE
    src_stride = (f["src0_stride"] or _rows_for(code_bytes, beat)) * beat
    src = f["src0"] * beat
    _check(m.spad, "scratchpad (src0)", src, code_bytes, src_stride, rows)
    raw = _read(m.spad, src, code_bytes, src_stride, rows)
    codes = q.unpack_nibbles(raw) if bits == 4 else raw
    codes = np.ascontiguousarray(codes.reshape(rows, blocks, block))
    entries = m.scale[scale_start:scale_start + 2 * n_scales].view(np.uint16)
    if nv:
        out = q.decode_nvfp4(codes, (entries & 0xFF).astype(np.uint8).reshape(rows, blocks), ts)
    else:
        out = getattr(q, f"decode_{name}")(codes, entries.reshape(rows, blocks).copy())
    y = fp.bf16_to_f32(out.reshape(rows, length))
    reads = [Span("spad", src, code_bytes, src_stride, rows), scale_span]
    return reads, [_store_rows(m, f, y, f["dst_fmt"], {"src0": reads[0]})]
