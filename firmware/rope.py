"""Rotary position embedding, Hugging Face rotate-half convention.

``y = x·cos + rotate_half(x)·sin`` with ``rotate_half([x1, x2]) = [−x2, x1]`` (halves of the
last dimension D).  Per block of RB positions of one of the G leading slices of ``x[G, S, D]``:

    T1 = x1·c1;  T2 = x2·s1;  y1 = T1 − T2        (fp32 products are exact: bf16 × bf16)
    T1 = x2·c2;  T2 = x1·s2;  y2 = T1 + T2        (one fp32 rounding, then bf16)

six VECTOR instructions on half rows (so D/2 elements must fill whole beats).  x, cos and sin
blocks are LOADed per block (cos/sin are re-read for every slice: the three loads take as long
as the three vector passes).  Buffers double buffered as in ``firmware.rowwise``.  x and out
advance through the slices with post-incrementing address registers; after a partial last
block (S not a multiple of RB) they are stepped back by the rows that block did not have.
"""

from __future__ import annotations

import dataclasses

from unified_engine.asm import Addr, Gpr
from unified_engine.config import EngineConfig

from .common import Kernel, KernelError, RegAlloc, SpadPlan, ceil_div, new_program

__all__ = ["RopeSpec", "build_rope", "rope_spec"]


@dataclasses.dataclass(frozen=True)
class RopeSpec:
    """``g`` slices of ``[s, d]`` positions, blocks of ``rb`` positions."""

    g: int
    s: int
    d: int
    rb: int


def rope_spec(config: EngineConfig, g: int, s: int, d: int) -> RopeSpec:
    """Check the shape and choose the block size."""
    b = config.axi_bytes
    if d % 2 or (d // 2 * 2) % b:
        raise KernelError(f"rope needs head_dim/2·2 bytes = {d} to be a multiple of the AXI "
                          f"beat ({b} bytes) so both halves start on a scratchpad row")
    p16 = ceil_div(d * 2, b)
    pt = ceil_div(d // 2 * 4, b)
    rb = max(1, min(s, ceil_div(1024, ceil_div(d // 2, config.lanes)), 128))
    while rb > 1 and 2 * (4 * rb * p16) + 2 * rb * pt > config.scratchpad_rows:
        rb //= 2
    if 2 * (4 * rb * p16) + 2 * rb * pt > config.scratchpad_rows:
        raise KernelError(f"a rope row of {d} elements does not fit the scratchpad")
    return RopeSpec(g, s, d, rb)


def build_rope(config: EngineConfig, spec: RopeSpec) -> Kernel:
    """Generate the RoPE program (arguments ``x``, ``cos``, ``sin``, ``out``)."""
    b = config.axi_bytes
    g, s, d, rb = spec.g, spec.s, spec.d, spec.rb
    h = d // 2
    p16 = ceil_div(d * 2, b)
    pt = ceil_div(h * 4, b)
    hoff = h * 2 // b
    plan = SpadPlan(config)
    off_c, off_s, off_o = rb * p16, 2 * rb * p16, 3 * rb * p16
    bank = 4 * rb * p16
    bank0, bank1 = plan.alloc("bank0", bank), plan.alloc("bank1", bank)
    t1, t2 = plan.alloc("t1", rb * pt), plan.alloc("t2", rb * pt)
    ar_x, ar_c, ar_s, ar_o, ar_bank = 1, 2, 3, 4, 5
    p = new_program(config)
    reg = RegAlloc(config)
    r_x, r_cos, r_sin, r_out, r_bank = reg(), reg(), reg(), reg(), reg()
    for _ in range(2):
        p.token("vector", "load")
        p.token("store", "vector")
    p.li(r_bank, bank0)
    p.ar_set_gpr(ar_bank, r_bank)
    row = d * 2
    p.ar_set(ar_x, 0, rb * row)
    p.ar_set_gpr(ar_x, r_x)
    p.ar_set(ar_o, 0, rb * row)
    p.ar_set_gpr(ar_o, r_out)
    p.ar_set(ar_c, 0, rb * row)
    p.ar_set(ar_s, 0, rb * row)
    full, tail = divmod(s, rb)

    def block(rows: int) -> None:
        stride = p16 * b
        common = {"rows": rows, "row_bytes": row, "dram_stride": row, "sram_stride": stride}
        p.load(dram=Addr(0, ar_x, inc=True), sram=Addr(0, ar_bank), wait="vector", **common)
        p.load(dram=Addr(0, ar_c, inc=True), sram=Addr(off_c, ar_bank), **common)
        p.load(dram=Addr(0, ar_s, inc=True), sram=Addr(off_s, ar_bank), signal="vector",
               **common)

        def half(base: int, second: bool) -> dict:
            return {"src0": Addr(base + (hoff if second else 0), ar_bank),
                    "src0_stride": p16}

        def src1(base: int, second: bool) -> dict:
            return {"src1": Addr(base + (hoff if second else 0), ar_bank), "src1_stride": p16}

        vec = {"rows": rows, "length": h}
        tdst = {"dst_fmt": "fp32"}
        tsrc = {"src0_fmt": "fp32", "src1_fmt": "fp32", "src0_stride": pt, "src1_stride": pt}
        p.vector("mul", dst=t1, dst_stride=pt, **half(0, False), **src1(off_c, False), **vec,
                 **tdst, wait=("load", "store"))
        p.vector("mul", dst=t2, dst_stride=pt, **half(0, True), **src1(off_s, False), **vec,
                 **tdst)
        p.vector("sub", dst=Addr(off_o, ar_bank), dst_stride=p16, src0=t1, src1=t2, **vec,
                 **tsrc)
        p.vector("mul", dst=t1, dst_stride=pt, **half(0, True), **src1(off_c, True), **vec,
                 **tdst)
        p.vector("mul", dst=t2, dst_stride=pt, **half(0, False), **src1(off_s, True), **vec,
                 **tdst)
        p.vector("add", dst=Addr(off_o + hoff, ar_bank), dst_stride=p16, src0=t1, src1=t2,
                 **vec, **tsrc, signal=("load", "store"))
        p.store(dram=Addr(0, ar_o, inc=True), sram=Addr(off_o, ar_bank), wait="vector",
                signal="vector", **common)
        p.alu("xor", r_bank, r_bank, bank0 ^ bank1)
        p.ar_set_gpr(ar_bank, r_bank)

    with p.loop(g):
        p.ar_set_gpr(ar_c, r_cos)
        p.ar_set_gpr(ar_s, r_sin)
        if full:
            with p.loop(full):
                block(rb)
        if tail:
            block(tail)
        if tail and g > 1:
            # The partial block post-incremented x and out by a whole block (rb rows); step
            # them back so the next slice starts right after this one's last row.
            back = -(rb - tail) * row
            p.ar_add_gpr(ar_x, Gpr(0), back)
            p.ar_add_gpr(ar_o, Gpr(0), back)
    p.halt()
    return Kernel(f"rope(g={g}, s={s}, d={d}, rb={rb})", config, p.encode(),
                  {"x": r_x.index, "cos": r_cos.index, "sin": r_sin.index,
                   "out": r_out.index}, {"spec": spec})
