"""GEMM: ``C[M, N] = act(A[M, K] · B[K, N] · scale + bias)``, optionally softmax over rows.

Data
    A is a row-major bf16 ``[M, K]`` activation in DRAM.  B is either a *panel* weight
    (``firmware.layout``: bf16 or block-quantized, the layout ``linear`` uses) or a row-major
    bf16 ``[K, N]`` device tensor (``b_mode="kn"``).  C is row-major ``[M, N]`` bf16 (or fp32).
    Bias is a bf16 vector ``[N]`` (``"col"``) or matrix ``[M, N]`` (``"full"``).

Tiling
    The output is cut into blocks of MB = mt·TR rows × NB = nt·C columns (mt·nt ≤ the
    accumulator's tiles), K into ``nk`` chunks of ``kc``.  One *step* is one K chunk of one
    block: LOAD the B chunk (and quant scales, bias), LOAD the A chunk (MB rows × kc) into a
    staging buffer, VECTOR TRANSPOSE it tile by tile into the A panel, and one MATMUL over
    mt × nt tiles that accumulates through the accumulator (``acc_in`` after the first chunk,
    ``acc_out`` before the last, epilogue and write-back on the last).  A block ends with a
    STORE of its rows.  M and N edges: the last block stores only the valid rows/columns; the
    rows of the staging buffer past M hold stale data and give rows that are never stored
    (each output row depends only on its own A row, so nothing leaks).

Double buffering and tokens
    Steps alternate between two scratchpad banks (staging, A panel, B panel) and blocks between
    two output buffers, selected at run time by XOR-toggled GPRs copied into address registers,
    so the loop bodies stay short whatever the step count.  Channels (VTA style; seeds in
    brackets):

    * ARRAY → LOAD [2]: MATMUL(t) frees bank t%2; the first LOAD of step t+2 pops it.
    * VECTOR → LOAD [2]: the TRANSPOSE of step t frees the staging buffer for the A LOAD of t+2.
    * LOAD → VECTOR: the A LOAD of step t (issued after the B LOADs of t) → TRANSPOSE t.
    * VECTOR → ARRAY: TRANSPOSE t → MATMUL t (transitively after every LOAD of step t).
    * ARRAY → STORE / STORE → ARRAY [2]: output buffer full / free.

    So the LOAD and VECTOR queues run up to two steps ahead of the array; their work per step
    (≈ 2·kc·mt + kc·nt/2 DMA beats at the default config) is far below the array's
    mt·nt·P·kc cycles, and the MATMULs run back to back.

Runtime sizes
    M and every DRAM address are GPR arguments (``m``, ``a``, ``b``, ``c``, ``bias``, ``qs``):
    the M-block loop count, the rows of the last block (``rows`` override of the A LOAD and the
    STORE) are computed by the scalar unit, so one program serves any M ≥ 1 (the tiling is
    chosen for an M *bucket*, see :func:`choose_tiling`).

Softmax (``softmax=True``)
    All N blocks of an M block are written (bf16, ROW_MAJOR with the padded row pitch) into a
    row buffer with the running row maximum (``rowmax`` INIT then UPDATE); pad columns of the
    last block get a −Inf bias so they never win the maximum.  Then the vector unit computes
    ``e = exp(x − max)`` (fp32), ``s = Σe`` (RSUM), ``r = 1/s`` and ``e·r`` (bf16) and the rows
    are stored; row buffers are double buffered so the array computes the next M block
    meanwhile.
"""

from __future__ import annotations

import dataclasses
import math

from unified_engine.asm import Addr, gpr
from unified_engine.config import EngineConfig
from unified_engine.numerics import quant

from .common import Kernel, KernelError, RegAlloc, SpadPlan, ceil_div, new_program, round_up
from .layout import EpiSpec

__all__ = ["GemmSpec", "GemmTiling", "build_gemm", "choose_tiling", "estimate_cycles"]

#: Epilogue-table entry the GEMM programs use.
EPI_ENTRY = 1


def _bits(fmt: str) -> int:
    return 16 if fmt == "bf16" else quant.element_bits(fmt)


def _block(config: EngineConfig, fmt: str) -> int:
    if fmt == "bf16":
        return 1
    return 16 if fmt == "nvfp4" else config.quant_block


@dataclasses.dataclass(frozen=True)
class GemmTiling:
    """Block and chunk sizes: mt·TR × nt·C output blocks, K chunks of ``kc`` (``nk`` of them)."""

    mt: int
    nt: int
    kc: int
    nk: int


@dataclasses.dataclass(frozen=True)
class GemmSpec:
    """The static parameters of a GEMM program (the program-cache key).

    ``k``, ``n``: reduction and output width; ``b_mode``: ``"panel"`` or ``"kn"``;
    ``b_fmt``: ``"bf16"`` or a quantized format (panel only); ``bias``: ``"none"``, ``"col"``,
    ``"full"``; ``epi``: the epilogue entry; ``out_fmt``: ``"bf16"``/``"fp32"``;
    ``softmax``: fused row softmax; ``tiling``: from :func:`choose_tiling`.
    """

    k: int
    n: int
    b_mode: str
    b_fmt: str
    bias: str
    epi: EpiSpec
    out_fmt: str
    softmax: bool
    tiling: GemmTiling


# ----- tiling ------------------------------------------------------------------------------------


def _plan_rows(config: EngineConfig, spec_like: dict, mt: int, nt: int, kc: int) -> int:
    """Scratchpad rows a tiling needs (banks ×2, output / row buffers, softmax temporaries)."""
    b = config.axi_bytes
    tr, c = config.tile_rows, config.cols
    bits = _bits(spec_like["b_fmt"])
    mb, nb = mt * tr, nt * c
    stage = mb * ceil_div(kc * 2, b)
    apanel = mt * ceil_div(kc * tr * 2, b)
    bpanel = nt * ceil_div(ceil_div(kc * c * bits, 8), b)
    rows = 2 * (stage + apanel + bpanel)
    e = 4 if spec_like["out_fmt"] == "fp32" else 2
    if spec_like["softmax"]:
        npad = round_up(spec_like["n"], nb)
        xbuf = mb * npad * 2 // b + ceil_div(mb * 4, b)
        rows += 2 * xbuf + mb * ceil_div(spec_like["n"] * 4, b) + ceil_div(mb * 4, b)
    else:
        rows += 2 * ceil_div(mb * nb * e, b)
    return rows


def estimate_cycles(config: EngineConfig, m: int, k: int, n: int, t: GemmTiling,
                    bits: int = 16, dram_bpc: float | None = None) -> float:
    """A coarse cycle estimate of a tiling (used to choose one; the simulator measures)."""
    b = config.axi_bytes
    bpc = dram_bpc or b
    tr, c, p = config.tile_rows, config.cols, config.pe_interleave
    mb, nb = t.mt * tr, t.nt * c
    fill = config.rows + config.cols - 2 + 6 + tr + 40
    blocks = ceil_div(m, mb) * ceil_div(n, nb)
    total = 0.0
    for i in range(t.nk):
        kk = t.kc if i < t.nk - 1 else k - t.kc * (t.nk - 1)
        array = t.mt * t.nt * max(p * kk, tr) + fill
        dma = 3 * 64 + (mb * kk * 2 + nb * kk * bits / 8) / bpc
        vec = t.mt * (12 + kk * ceil_div(tr, config.lanes))
        total += max(array, dma, vec)
    store = 64 + mb * nb * 2 / bpc
    return blocks * total + store + 2 * (64 + mb * t.kc * 2 / bpc)


def choose_tiling(config: EngineConfig, m: int, k: int, n: int, *, b_fmt: str = "bf16",
                  bias: str = "none", softmax: bool = False, out_fmt: str = "bf16",
                  b_mode: str = "panel") -> GemmTiling:
    """The tiling with the lowest :func:`estimate_cycles` that fits the on-chip memories.

    ``m`` should be the M *bucket* (the op API rounds M up to a power of two of tiles) so
    that calls with similar M share one compiled program.
    """
    tr, c, b = config.tile_rows, config.cols, config.axi_bytes
    acc_tiles = config.accumulator_bytes // (tr * c * 4)
    bits = _bits(b_fmt)
    align = max(_block(config, b_fmt), max(1, b // 2) if k >= b // 2 else 1)
    like = {"b_fmt": b_fmt, "out_fmt": out_fmt, "softmax": softmax, "n": n}
    best: tuple[float, GemmTiling] | None = None
    for mt in range(1, min(ceil_div(m, tr), acc_tiles) + 1):
        # softmax writes whole blocks into a row buffer: NB·2 bytes must fill whole beats
        nt_align = b // math.gcd(b, 2 * c) if softmax else 1
        for nt in range(1, min(max(ceil_div(n, c), nt_align), acc_tiles // mt) + 1):
            if softmax and (nt * c * 2) % b:
                continue
            mb, nb = mt * tr, nt * c
            if bias == "full" and 2 * mb * nb > config.bias_entries:
                continue
            if bias == "col" and 2 * nb > config.bias_entries:
                continue
            if b_fmt != "bf16":
                blk = _block(config, b_fmt)
                extra = 2 if b_fmt == "nvfp4" else 0
                # two scale banks of nt·(kc/blk)·C entries (+ the tensor scale)
                max_kc_scale = ((config.scale_entries // 2 - extra) // (nt * c)) * blk
                if max_kc_scale < blk:
                    continue
            else:
                max_kc_scale = k
            # largest kc (multiple of align) that fits: bisect on the multiple
            lo, hi = 0, ceil_div(k, align)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if _plan_rows(config, like, mt, nt, mid * align) <= config.scratchpad_rows:
                    lo = mid
                else:
                    hi = mid - 1
            kc_max = min(lo * align, max_kc_scale, round_up(k, align))
            if kc_max <= 0:
                continue
            nk = ceil_div(k, kc_max)
            if b_fmt != "bf16" and bias != "none" and nk == 1 and k >= 2 * align:
                nk = 2  # single-buffered bias (quant): a second chunk hides its reload
            kc = min(round_up(ceil_div(k, nk), align), kc_max)
            nk = ceil_div(k, kc)
            t = GemmTiling(mt, nt, kc, nk)
            cost = estimate_cycles(config, m, k, n, t, bits)
            key = (cost, -(mt * nt))
            if best is None or key < (best[0], -(best[1].mt * best[1].nt)):
                best = (cost, t)
    if best is None:
        raise KernelError(f"no GEMM tiling fits this engine for K={k}, N={n} "
                          f"(b_fmt={b_fmt}, bias={bias}, softmax={softmax}); the scratchpad "
                          f"has {config.scratchpad_bytes} bytes")
    return best[1]


# ----- program --------------------------------------------------------------------------------


def build_gemm(config: EngineConfig, spec: GemmSpec) -> Kernel:
    """Generate the GEMM program for ``spec`` (see the module docstring)."""
    return _Gemm(config, spec).build()


class _Gemm:
    # address registers
    AR_A, AR_B, AR_C, AR_BANK, AR_OUT, AR_XD, AR_BIASD, AR_BIASM, AR_QD, AR_QS = range(1, 11)

    def __init__(self, config: EngineConfig, spec: GemmSpec) -> None:
        self.cfg = config
        self.spec = spec
        t = spec.tiling
        tr, c, b = config.tile_rows, config.cols, config.axi_bytes
        if (tr * 2) % b:
            raise KernelError(f"GEMM needs tile_rows·2 = {tr * 2} bytes to be a multiple of the "
                              f"AXI beat ({b} bytes) for its on-chip transpose")
        if spec.b_fmt != "bf16" and spec.b_mode != "panel":
            raise KernelError("quantized B must be a packed panel")
        if spec.b_fmt != "bf16" and spec.k % _block(config, spec.b_fmt):
            raise KernelError(f"K={spec.k} is not a multiple of the {spec.b_fmt} block")
        self.tr, self.c, self.beat = tr, c, b
        self.mt, self.nt, self.kc, self.nk = t.mt, t.nt, t.kc, t.nk
        self.mb, self.nbw = t.mt * tr, t.nt * c
        self.k, self.n = spec.k, spec.n
        self.klast = self.k - self.kc * (self.nk - 1)
        if not 0 < self.klast <= self.kc:
            raise KernelError(f"bad K chunking: K={self.k}, kc={self.kc}, nk={self.nk}")
        self.bits = _bits(spec.b_fmt)
        self.quant = spec.b_fmt != "bf16"
        self.nv = spec.b_fmt == "nvfp4"
        self.blk = _block(config, spec.b_fmt)
        self.out_e = 4 if spec.out_fmt == "fp32" else 2
        self.nfull = self.n // self.nbw
        self.tail_cols = self.n - self.nfull * self.nbw
        self.nblocks = self.nfull + (1 if self.tail_cols else 0)
        self.npad = self.nblocks * self.nbw
        self.bias = spec.bias
        self.bias_double = self.bias != "none" and not self.quant
        if spec.softmax:
            if spec.out_fmt != "bf16":
                raise KernelError("softmax output is bf16")
            # the pad columns of the last block must get −Inf from a bias
            if self.bias == "none":
                raise KernelError("softmax needs a bias (zeros and −Inf on pad columns)")
            if (self.nbw * 2) % b:
                raise KernelError(f"softmax needs nt·C·2 = {self.nbw * 2} bytes to fill whole "
                                  f"AXI beats ({b} bytes)")
        self._plan()

    # ---- memory plan -----------------------------------------------------------------------

    def _tile_bytes(self, k: int) -> int:
        return ceil_div(k * self.c * self.bits, 8)

    def _btile_rows(self, k: int) -> int:
        return ceil_div(self._tile_bytes(k), self.beat)

    def _atile_rows(self, k: int) -> int:
        return ceil_div(k * self.tr * 2, self.beat)

    def _plan(self) -> None:
        cfg, b = self.cfg, self.beat
        plan = SpadPlan(cfg)
        self.stage_pitch = ceil_div(self.kc * 2, b)
        self.off_stage = 0
        self.off_a = self.mb * self.stage_pitch
        self.off_b = self.off_a + self.mt * self._atile_rows(self.kc)
        bank_rows = self.off_b + self.nt * self._btile_rows(self.kc)
        self.bank0 = plan.alloc("bank0", bank_rows)
        self.bank1 = plan.alloc("bank1", bank_rows)
        if self.spec.softmax:
            self.x_pitch = self.npad * 2 // b          # rows per X row
            self.off_rmax = self.mb * self.x_pitch
            xrows = self.off_rmax + ceil_div(self.mb * 4, b)
            self.out0 = plan.alloc("x0", xrows)
            self.out1 = plan.alloc("x1", xrows)
            self.t_pitch = ceil_div(self.n * 4, b)
            self.tbuf = plan.alloc("t", self.mb * self.t_pitch)
            self.sums = plan.alloc("sums", ceil_div(self.mb * 4, b))
        else:
            orows = ceil_div(self.mb * self.nbw * self.out_e, b)
            self.out0 = plan.alloc("out0", orows)
            self.out1 = plan.alloc("out1", orows)
        self.spad_rows = plan.used
        # bias memory: one block's bias (twice when double buffered)
        per = {"none": 0, "col": self.nbw, "full": self.mb * self.nbw}[self.bias]
        self.bias_per = per
        if per * (2 if self.bias_double else 1) > cfg.bias_entries:
            raise KernelError(f"bias block of {per} entries does not fit the bias memory")
        # scale memory: two banks of one step's scales (+ NVFP4 tensor scale)
        self.qs_extra = 2 if self.nv else 0
        self.qs_bank = self.qs_extra + self.nt * (self.kc // self.blk) * self.c if self.quant \
            else 0
        if 2 * self.qs_bank > cfg.scale_entries:
            raise KernelError("quantization scales of one step do not fit the scale memory")

    # ---- generation ------------------------------------------------------------------------

    def build(self) -> Kernel:
        cfg, spec = self.cfg, self.spec
        p = self.p = new_program(cfg)
        reg = RegAlloc(cfg, loops=2)
        self.r_m, self.r_a, self.r_b, self.r_c = reg(), reg(), reg(), reg()
        args = {"m": self.r_m.index, "a": self.r_a.index, "b": self.r_b.index,
                "c": self.r_c.index}
        self.r_bias = self.r_qs_addr = None
        if self.bias != "none":
            self.r_bias = reg()
            args["bias"] = self.r_bias.index
        if self.quant:
            self.r_qs_addr = reg()
            args["qs"] = self.r_qs_addr.index
        self.r_rows, self.r_rem = reg(), reg()
        self.r_nmb = self.r_rows        # the loop copies the count before r_rows is set
        self.r_bank, self.r_out, self.r_crow = reg(), reg(), reg()
        self.r_brow = reg() if self.bias == "full" else None
        self.r_qs = reg() if self.quant else None
        self.r_bm = reg() if self.bias_double else None

        if not spec.epi.is_identity:
            e = spec.epi
            p.epi(EPI_ENTRY, e.act, e.scale, e.a, e.b, e.c, e.d)
        # token seeds
        for _ in range(2):
            p.token("array", "load")
            p.token("vector", "load")
            p.token("store", "array")
        if self.quant and self.bias != "none" and self.nk == 1:
            p.token("array", "load")  # the single-buffered bias starts free
        # walking address registers (increments persist across runs: set them every time)
        a_step = self.mb * self.k * 2
        p.ar_set(self.AR_A, 0, 0)
        p.ar_set_gpr(self.AR_A, self.r_a)
        b_inc = self.nt * self.k * self.c * self.bits // 8 if spec.b_mode == "panel" \
            else self.nbw * 2
        p.ar_set(self.AR_B, 0, b_inc)
        out_inc = self.nbw * self.out_e
        p.ar_set(self.AR_C, 0, out_inc)
        if spec.softmax:
            p.ar_set(self.AR_XD, 0, self.nbw * 2 // self.beat)
        if self.bias != "none":
            p.ar_set(self.AR_BIASD, 0, self.nbw * 2)
            p.ar_set(self.AR_BIASM, 0, 0)
        if self.quant:
            p.ar_set(self.AR_QD, 0, self.nt * (self.k // self.blk) * self.c * 2)
            # NVFP4 tensor scale into both scale banks
            if self.nv:
                p.ar_set_gpr(self.AR_QD, self.r_qs_addr)
                for bank in (0, self.qs_bank):
                    p.load(dram=Addr(0, self.AR_QD), sram=bank, row_bytes=4, mem="scale")
        # toggles
        p.li(self.r_bank, self.bank0)
        p.ar_set_gpr(self.AR_BANK, self.r_bank)
        p.li(self.r_out, self.out0)
        p.ar_set_gpr(self.AR_OUT, self.r_out)
        if self.quant:
            p.li(self.r_qs, 0)
            p.ar_set(self.AR_QS, 0, 0)
        if self.bias_double:
            p.li(self.r_bm, 0)
            p.ar_set_gpr(self.AR_BIASM, self.r_bm)
        # M blocks
        p.mov(self.r_rem, self.r_m)
        p.add(self.r_nmb, self.r_m, self.mb - 1)
        p.alu("divu", self.r_nmb, self.r_nmb, self.mb)
        p.mov(self.r_crow, self.r_c)
        if self.bias == "full":
            p.mov(self.r_brow, self.r_bias)
        with p.loop(self.r_nmb):
            p.alu("minu", self.r_rows, self.r_rem, self.mb)
            p.ar_set_gpr(self.AR_B, self.r_b)
            p.ar_set_gpr(self.AR_C, self.r_crow)
            if self.bias == "col":
                p.ar_set_gpr(self.AR_BIASD, self.r_bias)
            elif self.bias == "full":
                p.ar_set_gpr(self.AR_BIASD, self.r_brow)
            if self.quant:
                p.ar_set_gpr(self.AR_QD, self.r_qs_addr)
            if spec.softmax:
                p.ar_set_gpr(self.AR_XD, self.r_out)
            self._n_blocks()
            if spec.softmax:
                self._softmax_rows()
                self._toggle(self.r_out, self.out0 ^ self.out1, self.AR_OUT)
            p.sub(self.r_rem, self.r_rem, self.mb)
            p.ar_add_gpr(self.AR_A, gpr(0), a_step)
            p.add(self.r_crow, self.r_crow, self.mb * self.n * self.out_e)
            if self.bias == "full":
                p.add(self.r_brow, self.r_brow, self.mb * self.npad * 2
                      if spec.softmax else self.mb * self.n * 2)
        p.halt()
        blob = p.encode()
        t = spec.tiling
        meta = {"tiling": t, "spad_rows": self.spad_rows, "mb": self.mb, "nb": self.nbw,
                "instructions": len(p)}
        name = (f"gemm(k={self.k}, n={self.n}, {spec.b_mode}/{spec.b_fmt}, bias={self.bias}, "
                f"softmax={spec.softmax}, mt={t.mt}, nt={t.nt}, kc={t.kc})")
        return Kernel(name, cfg, blob, args, meta)

    def _toggle(self, r, xor: int, ar: int | None) -> None:
        self.p.alu("xor", r, r, xor)
        if ar is not None:
            self.p.ar_set_gpr(ar, r)

    def _n_blocks(self) -> None:
        p = self.p
        if self.spec.softmax:
            # the first block starts the running row maximum; peel it off the loop
            if self.nfull:
                self._block(self.nt, self.nbw, first_n=True)
                if self.nfull > 1:
                    with p.loop(self.nfull - 1):
                        self._block(self.nt, self.nbw, first_n=False)
                if self.tail_cols:
                    self._block(ceil_div(self.tail_cols, self.c), self.tail_cols, False)
            else:
                self._block(ceil_div(self.tail_cols, self.c), self.tail_cols, True)
            return
        if self.nfull:
            with p.loop(self.nfull):
                self._block(self.nt, self.nbw, first_n=False)
        if self.tail_cols:
            self._block(ceil_div(self.tail_cols, self.c), self.tail_cols, first_n=False)

    def _block(self, ntb: int, cols: int, first_n: bool) -> None:
        p, spec = self.p, self.spec
        for ci in range(self.nk):
            self._step(ci, ntb, cols, first_n)
        if not spec.softmax:
            p.store(dram=Addr(0, self.AR_C, inc=True), sram=Addr(0, self.AR_OUT),
                    rows=self.mb, row_bytes=cols * self.out_e, dram_stride=self.n * self.out_e,
                    sram_stride=ntb * self.c * self.out_e, wait="array", signal="array",
                    override=("rows", self.r_rows))
            self._toggle(self.r_out, self.out0 ^ self.out1, self.AR_OUT)
        if self.bias_double:
            self._toggle(self.r_bm, self.bias_per, self.AR_BIASM)

    def _step(self, ci: int, ntb: int, cols: int, first_n: bool) -> None:
        p, spec, c, beat = self.p, self.spec, self.c, self.beat
        k = self.kc if ci < self.nk - 1 else self.klast
        first, last = ci == 0, ci == self.nk - 1
        bank = Addr(self.off_b, self.AR_BANK)
        # --- LOAD B (first LOAD of the step pops "bank free")
        if spec.b_mode == "panel":
            tile_b = self._tile_bytes(self.k)
            p.load(dram=Addr(ci * self.kc * c * self.bits // 8, self.AR_B, inc=last),
                   sram=bank, rows=ntb, row_bytes=self._tile_bytes(k), dram_stride=tile_b,
                   sram_stride=self._btile_rows(k) * beat, wait="array")
        else:  # "kn": one strided LOAD per C-column tile
            for j in range(ntb):
                cj = min(c, cols - j * c)
                p.load(dram=Addr(ci * self.kc * self.n * 2 + j * c * 2, self.AR_B,
                                 inc=last and j == ntb - 1),
                       sram=Addr(self.off_b + j * self._btile_rows(k), self.AR_BANK),
                       rows=k, row_bytes=cj * 2, dram_stride=self.n * 2, sram_stride=c * 2,
                       wait="array" if j == 0 else ())
        if self.quant:
            per = (self.k // self.blk) * c * 2
            p.load(dram=Addr(4 + ci * (self.kc // self.blk) * c * 2, self.AR_QD, inc=last),
                   sram=Addr(self.qs_extra, self.AR_QS), rows=ntb,
                   row_bytes=(k // self.blk) * c * 2, dram_stride=per, mem="scale")
        if self.bias != "none" and last:
            wait = "array" if (self.quant and self.nk == 1) else ()
            if self.bias == "col":
                p.load(dram=Addr(0, self.AR_BIASD, inc=True), sram=Addr(0, self.AR_BIASM),
                       rows=1, row_bytes=cols * 2, mem="bias", wait=wait)
            else:
                pitch = self.npad * 2 if spec.softmax else self.n * 2
                p.load(dram=Addr(0, self.AR_BIASD, inc=True), sram=Addr(0, self.AR_BIASM),
                       rows=self.mb, row_bytes=cols * 2, dram_stride=pitch,
                       sram_stride=ntb * c * 2, mem="bias", wait=wait,
                       override=("rows", self.r_rows))
        # --- LOAD A chunk into staging (pops "staging free", tells the vector unit)
        p.load(dram=Addr(ci * self.kc * 2, self.AR_A), sram=Addr(self.off_stage, self.AR_BANK),
               rows=self.mb, row_bytes=k * 2, dram_stride=self.k * 2,
               sram_stride=self.stage_pitch * beat, wait="vector", signal="vector",
               override=("rows", self.r_rows))
        # --- TRANSPOSE each TR-row tile into the A panel
        for i in range(self.mt):
            p.vector("transpose", src0=Addr(self.off_stage + i * self.tr * self.stage_pitch,
                                            self.AR_BANK),
                     dst=Addr(self.off_a + i * self._atile_rows(k), self.AR_BANK),
                     rows=self.tr, length=k, src0_stride=self.stage_pitch,
                     wait="load" if i == 0 else (),
                     signal=("load", "array") if i == self.mt - 1 else ())
        # --- MATMUL
        wait = ["vector"]
        signal = ["load"]
        kw: dict = {}
        if last:
            if spec.softmax:
                if first_n:
                    wait.append("store")
                kw.update(dst=Addr(0, self.AR_XD, inc=True), rowmax="init" if first_n
                          else "update", rmax=Addr(self.off_rmax, self.AR_OUT),
                          dst_pitch=self.npad * 2)
            else:
                wait.append("store")
                signal.append("store")
                kw.update(dst=Addr(0, self.AR_OUT))
            if self.bias != "none":
                kw["bias_mode"] = self.bias
        else:
            kw["dst"] = 0
        override = None
        if self.quant:
            override = ("qscale", self.r_qs)
        elif self.bias_double and last:
            override = ("bias", self.r_bm)
        p.matmul(a=Addr(self.off_a, self.AR_BANK), b=Addr(self.off_b, self.AR_BANK), k=k,
                 m_tiles=self.mt, n_tiles=ntb, acc=0, acc_in=not first, acc_out=not last,
                 wb=last, b_fmt=spec.b_fmt, epi=EPI_ENTRY if last and not spec.epi.is_identity
                 else 0, out_fmt=spec.out_fmt, wait=wait, signal=signal, override=override,
                 **kw)
        if last and self.quant and self.bias != "none" and self.nk == 1:
            p.token("array", "load")
        self._toggle(self.r_bank, self.bank0 ^ self.bank1, self.AR_BANK)
        if self.quant:
            self._toggle(self.r_qs, self.qs_bank, self.AR_QS)

    def _softmax_rows(self) -> None:
        p = self.p
        n, mb = self.n, self.mb
        # the last MATMUL of the row block tells the vector unit the row buffer is complete
        # (its signal was added in _step via the "softmax_done" token below)
        p.token("array", "vector")
        x = Addr(0, self.AR_OUT)
        p.vector("sub", dst=self.tbuf, src0=x, src1=Addr(self.off_rmax, self.AR_OUT),
                 rows=mb, length=n, src0_stride=self.x_pitch, dst_stride=self.t_pitch,
                 src1_fmt="fp32", dst_fmt="fp32", bcast="row", wait="array")
        p.vector("exp", dst=self.tbuf, src0=self.tbuf, rows=mb, length=n,
                 src0_stride=self.t_pitch, dst_stride=self.t_pitch, src0_fmt="fp32",
                 dst_fmt="fp32")
        p.vector("rsum", dst=self.sums, src0=self.tbuf, rows=mb, length=n,
                 src0_stride=self.t_pitch, src0_fmt="fp32", dst_fmt="fp32")
        p.vector("recip", dst=self.sums, src0=self.sums, rows=1, length=mb, src0_fmt="fp32",
                 dst_fmt="fp32")
        p.vector("mul", dst=x, src0=self.tbuf, src1=self.sums, rows=mb, length=n,
                 src0_stride=self.t_pitch, dst_stride=self.x_pitch, src0_fmt="fp32",
                 src1_fmt="fp32", bcast="row", signal="store")
        p.store(dram=Addr(0, self.AR_C), sram=x, rows=mb, row_bytes=n * 2,
                dram_stride=n * 2, sram_stride=self.x_pitch * self.beat, wait="vector",
                signal="array", override=("rows", self.r_rows))

