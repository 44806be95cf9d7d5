"""Block transpose: ``transpose`` and the on-device packing of B panels.

The input is G matrices ``[R, W]`` (bf16, row-major, back to back).  It is cut into blocks of
RB rows × CB columns; each block is LOADed (the valid rows; pad rows of a tail block are
zero-filled on chip), turned by one VECTOR TRANSPOSE into CB rows of RB elements, and STOREd:

* ``mode="transpose"``: block (i, j) of matrix g goes to ``out[g][j·CB + c][i·RB + r]`` of the
  ``[W, R]`` transposed matrix (RB a multiple of the lanes so TRANSPOSE runs at full rate).
* ``mode="panel"``: RB = C (the array's columns), CB = W: block i becomes B-panel tile i,
  ``[W][C]`` contiguous (``firmware.layout``), with pad columns zero — what ``linear`` needs
  for a ``[N, K]`` device weight and attention for its keys.

Staging and output buffers are double buffered (one address register toggles both); tokens:
LOAD → VECTOR (block loaded), VECTOR → LOAD [2] (staging free), VECTOR → STORE (block turned),
STORE → VECTOR [2] (output buffer free).  All sizes are static (part of the cache key).
"""

from __future__ import annotations

import dataclasses

from unified_engine.asm import Addr
from unified_engine.config import EngineConfig

from .common import Kernel, KernelError, RegAlloc, SpadPlan, ceil_div, new_program

__all__ = ["TransposeSpec", "build_transpose", "transpose_spec"]


@dataclasses.dataclass(frozen=True)
class TransposeSpec:
    """``g`` matrices ``[r, w]`` → transposed (``mode="transpose"``) or B panels
    (``mode="panel"``), in blocks of ``rb`` × ``cb``."""

    mode: str
    g: int
    r: int
    w: int
    rb: int
    cb: int


def transpose_spec(config: EngineConfig, mode: str, g: int, r: int, w: int) -> TransposeSpec:
    """Choose the block size for ``g`` × ``[r, w]`` on ``config``."""
    b = config.axi_bytes
    if mode == "panel":
        rb, cb = config.cols, w
        need = 2 * (rb * ceil_div(w * 2, b) + w * ceil_div(rb * 2, b))
        if need > config.scratchpad_rows:
            raise KernelError(f"a panel tile of {w} elements per row does not fit on chip")
        return TransposeSpec(mode, g, r, w, rb, cb)
    lanes = config.lanes
    rb = min(r, 4 * lanes) if r >= lanes else r
    cb = w
    while cb > 1 and 2 * (rb * ceil_div(cb * 2, b) + cb * ceil_div(rb * 2, b)) > \
            config.scratchpad_rows // 2:
        cb = ceil_div(cb, 2)
    return TransposeSpec(mode, g, r, w, rb, cb)


def build_transpose(config: EngineConfig, spec: TransposeSpec) -> Kernel:
    """Generate the block-transpose program (see the module docstring)."""
    return _Transpose(config, spec).build()


class _Transpose:
    AR_IN, AR_OUT, AR_BANK = 1, 2, 3

    def __init__(self, config: EngineConfig, spec: TransposeSpec) -> None:
        self.cfg, self.s = config, spec
        b = self.beat = config.axi_bytes
        if spec.mode not in ("transpose", "panel"):
            raise KernelError(f"unknown transpose mode {spec.mode!r}")
        self.in_pitch = ceil_div(spec.cb * 2, b)
        self.out_pitch = ceil_div(spec.rb * 2, b)
        plan = SpadPlan(config)
        self.off_out = spec.rb * self.in_pitch
        bank = self.off_out + spec.cb * self.out_pitch
        self.bank0 = plan.alloc("bank0", bank)
        self.bank1 = plan.alloc("bank1", bank)

    def build(self) -> Kernel:
        cfg, s = self.cfg, self.s
        p = self.p = new_program(cfg)
        reg = RegAlloc(cfg)
        r_x, r_out = reg(), reg()
        self.r_bank = reg()
        r_gin, r_gout, r_iin, r_iout = reg(), reg(), reg(), reg()
        for _ in range(2):
            p.token("vector", "load")
            p.token("store", "vector")
        p.li(self.r_bank, self.bank0)
        p.ar_set_gpr(self.AR_BANK, self.r_bank)
        nrb_full, r_tail = divmod(s.r, s.rb)
        ncb_full, c_tail = divmod(s.w, s.cb)
        panel = s.mode == "panel"
        tiles = ceil_div(s.r, s.rb)
        # DRAM steps
        in_row_step = s.rb * s.w * 2
        in_col_step = s.cb * 2
        if panel:
            out_row_step = s.w * s.rb * 2            # next tile
            out_col_step = 0
            g_out = tiles * s.w * s.rb * 2
        else:
            out_row_step = s.rb * 2                  # next block of output columns
            out_col_step = s.cb * s.r * 2            # next block of output rows
            g_out = s.w * s.r * 2
        p.ar_set(self.AR_IN, 0, in_col_step)
        p.ar_set(self.AR_OUT, 0, out_col_step)
        p.mov(r_gin, r_x)
        p.mov(r_gout, r_out)
        with p.loop(s.g):
            p.mov(r_iin, r_gin)
            p.mov(r_iout, r_gout)
            for rows, count in ((s.rb, nrb_full), (r_tail, 1 if r_tail else 0)):
                if not count:
                    continue
                with p.loop(count):
                    p.ar_set_gpr(self.AR_IN, r_iin)
                    p.ar_set_gpr(self.AR_OUT, r_iout)
                    if ncb_full:
                        if ncb_full > 1:
                            with p.loop(ncb_full):
                                self._block(rows, s.cb)
                        else:
                            self._block(rows, s.cb)
                    if c_tail:
                        self._block(rows, c_tail)
                    p.add(r_iin, r_iin, in_row_step)
                    p.add(r_iout, r_iout, out_row_step)
            p.add(r_gin, r_gin, s.r * s.w * 2)
            p.add(r_gout, r_gout, g_out)
        p.halt()
        name = f"{s.mode}(g={s.g}, r={s.r}, w={s.w}, rb={s.rb}, cb={s.cb})"
        return Kernel(name, cfg, p.encode(), {"x": r_x.index, "out": r_out.index},
                      {"spec": s})

    def _block(self, rows: int, cols: int) -> None:
        p, s, beat = self.p, self.s, self.beat
        stage = Addr(0, self.AR_BANK)
        out = Addr(self.off_out, self.AR_BANK)
        pad = s.rb - rows
        p.load(dram=Addr(0, self.AR_IN, inc=True), sram=stage, rows=rows, row_bytes=cols * 2,
               dram_stride=s.w * 2, sram_stride=self.in_pitch * beat, wait="vector",
               signal="vector")
        first_wait = ("load", "store")
        if pad and s.mode == "panel":
            # pad rows become zero pad columns of the panel tile
            p.vector("fill", dst=Addr(rows * self.in_pitch, self.AR_BANK), rows=pad,
                     length=cols, dst_stride=self.in_pitch, imm=0.0, wait=first_wait)
            first_wait = ()
        p.vector("transpose", src0=stage, dst=out, rows=s.rb if s.mode == "panel" else rows,
                 length=cols, src0_stride=self.in_pitch, dst_stride=self.out_pitch,
                 wait=first_wait, signal=("load", "store"))
        if s.mode == "panel":
            p.store(dram=Addr(0, self.AR_OUT, inc=True), sram=out, rows=cols,
                    row_bytes=s.rb * 2, dram_stride=s.rb * 2, sram_stride=self.out_pitch * beat,
                    wait="vector", signal="vector")
        else:
            p.store(dram=Addr(0, self.AR_OUT, inc=True), sram=out, rows=cols,
                    row_bytes=rows * 2, dram_stride=s.r * 2, sram_stride=self.out_pitch * beat,
                    wait="vector", signal="vector")
        p.alu("xor", self.r_bank, self.r_bank, self.bank0 ^ self.bank1)
        p.ar_set_gpr(self.AR_BANK, self.r_bank)
