"""Flash attention: ``O = softmax(Q·Kᵀ·scale + mask)·V`` with an online softmax.

The score matrix never leaves the chip.  Grouped-query heads: the g query heads that share a
KV head are stacked into one ``[g·Sq, D]`` query matrix (they are contiguous in a
``[B, Hq, Sq, D]`` tensor), so one K/V stream serves all of them and decode (Sq = 1) still
fills g rows of the array.  Keys come as B panels (``firmware.transpose`` packs them on the
device first: ``[Sk, D]`` rows → ``[Sk/C][D][C]`` tiles, zero padded).

Per query block of MB = mt·TR rows and key block j of NBk = ntk·C keys (a *step*):

==========  =====================================================================
LOAD        K panel tiles of block j, V (as ``[keys][C]`` B tiles), mask block
ARRAY   S   ``S = (Q·Kⱼᵀ)·scale (+ mask)`` → fp32 row-major; ``rowmax INIT`` → ``bm``
VECTOR  P   ``m' = max(m, bm)``; ``α = exp(m − m')``; ``S −= m'`` (ROW); ``P = exp(S)``
            → bf16 rows; ``l = l·α + RSUM P``; TRANSPOSE P → A panel (``[key][TR]``)
ARRAY  PV   ``PV = P·Vⱼ`` → fp32
VECTOR  O   ``O = O·α`` (ROW); ``O += PV``
==========  =====================================================================

and per query block: LOAD Q rows, TRANSPOSE them into the A panel, ``O = 0, m = −FLT_MAX,
l = 0`` before the first step; ``O·(1/l)`` → bf16 and STORE after the last.  ``m`` starts at
−FLT_MAX rather than −Inf so that a row whose keys so far are all masked gets ``P = 0`` instead
of ``exp(−Inf + Inf) = NaN`` (a row masked everywhere still ends as 0/0 = NaN, as in torch).

Pipelining: the array order is ``S₀ S₁ PV₀ S₂ PV₁ … PVₙ₋₁`` and the vector order
``P₀ P₁ O₀ P₂ O₁ … Oₙ₋₁`` (software-pipelined by one step), so the array computes Sⱼ₊₁ while the
vector unit turns Sⱼ into Pⱼ.  Tokens VECTOR → ARRAY are consumed one per S and PV in that
order (the two pushed by the block prologue start each query block); ARRAY → VECTOR likewise.
Every double buffer (K/V/mask, S, bm, α, m, P panel, PV) alternates by the step's parity within
its query block, so all addresses are immediates.  The LOAD order ``K₀ K₁ V₀ K₂ V₁ …`` mirrors
the array order; ARRAY → LOAD tokens (from every S and PV) are consumed two places later, so
Kⱼ₊₂ waits only for Sⱼ₊₁ and Vⱼ₊₁ for PVⱼ — both loads overlap the array's work.  At the end
of a query block the array waits for the vector unit (zero-size MATMULs pop the last tokens),
so query blocks do not overlap.

Static parameters (the cache key): groups G = B·Hkv, rows Mq = g·Sq, Sk, D, the tiling and, per
(query block, key block), whether the block is skipped (fully masked), unmasked, or loads its
mask block.
"""

from __future__ import annotations

import dataclasses

from unified_engine.asm import Addr
from unified_engine.config import EngineConfig
from unified_engine.isa import f32_bits

from .common import Kernel, KernelError, RegAlloc, SpadPlan, ceil_div, new_program

__all__ = ["AttentionSpec", "attention_tiling", "build_attention"]

EPI_ENTRY = 3
NEG_FLT_MAX = 0xFF7FFFFF


@dataclasses.dataclass(frozen=True)
class AttentionSpec:
    """Static parameters of an attention program.

    ``groups``: KV groups (batch × KV heads); ``mq``: stacked query rows per group; ``sk``:
    keys; ``d``: head dim; ``mt``/``ntk``: query tiles / key tiles per block; ``scale``: fp32
    bits; ``blocks``: per query block a tuple of per key block classes ``"skip"``, ``"none"``,
    ``"mask"``; ``skpad``: row pitch (elements) of the mask matrix.
    """

    groups: int
    mq: int
    sk: int
    d: int
    mt: int
    ntk: int
    scale: int
    blocks: tuple[tuple[str, ...], ...]
    skpad: int


def _plan(config: EngineConfig, mq_rows: int, d: int, mt: int, ntk: int,
          plan: SpadPlan | None = None) -> dict[str, int]:
    b, tr, c = config.axi_bytes, config.tile_rows, config.cols
    mb, nbk = mt * tr, ntk * c
    nd = ceil_div(d, c)
    p16 = ceil_div(d * 2, b)
    sizes = {
        "qstage": mb * p16,
        "qpanel": mt * ceil_div(d * tr * 2, b),
        "kv0": ntk * ceil_div(d * c * 2, b) + nd * ceil_div(nbk * c * 2, b),
        "kv1": ntk * ceil_div(d * c * 2, b) + nd * ceil_div(nbk * c * 2, b),
        "s0": ceil_div(mb * nbk * 4, b), "s1": ceil_div(mb * nbk * 4, b),
        "prows": ceil_div(mb * nbk * 2, b),
        "pp0": mt * ceil_div(nbk * tr * 2, b), "pp1": mt * ceil_div(nbk * tr * 2, b),
        "pv0": ceil_div(mb * nd * c * 4, b), "pv1": ceil_div(mb * nd * c * 4, b),
        "o": ceil_div(mb * nd * c * 4, b),
        "out": mb * p16,
    }
    small = ceil_div(mb * 4, b)
    for name in ("bm0", "bm1", "m0", "m1", "a0", "a1", "l", "lblk", "r"):
        sizes[name] = small
    if plan is None:
        return {"rows": sum(sizes.values())}
    return {name: plan.alloc(name, rows) for name, rows in sizes.items()}


def attention_tiling(config: EngineConfig, mq: int, sk: int, d: int, masked: bool,
                     causal_sq: int | None = None) -> tuple[int, int]:
    """(mt, ntk) with the lowest estimated cycles that fits (scratchpad, bias memory);
    ``causal_sq``: the query length when the mask is causal (blocks past it are skipped)."""
    b, tr, c = config.axi_bytes, config.tile_rows, config.cols
    if (tr * 2) % b:
        raise KernelError("attention needs tile_rows·2 bytes to be a multiple of the AXI beat")
    best = None
    for mt in range(1, ceil_div(mq, tr) + 1):
        for ntk in range(1, ceil_div(sk, c) + 2):
            nbk = ntk * c
            if (nbk * 2) % b or (nbk * 4 * tr) % b:
                continue
            if ntk > ceil_div(sk, c) and ntk > b // (2 * c):
                continue
            if masked and 2 * mt * tr * nbk > config.bias_entries:
                continue
            if _plan(config, mq, d, mt, ntk)["rows"] > config.scratchpad_rows:
                continue
            cost = _estimate(config, mq, sk, d, mt, ntk, causal_sq)
            if best is None or cost < best[0]:
                best = (cost, (mt, ntk))
    if best is None:
        raise KernelError(f"no attention tiling fits this engine for head_dim={d}")
    return best[1]


def _estimate(config: EngineConfig, mq: int, sk: int, d: int, mt: int, ntk: int,
              sq: int | None = None) -> float:
    """Rough cycles of one KV group: per step max(array, vector), plus the per-query-block
    drain (the chooser compares tilings with it; the simulator measures)."""
    tr, c, lanes, p = config.tile_rows, config.cols, config.lanes, config.pe_interleave
    mb, nbk = mt * tr, ntk * c
    nd = ceil_div(d, c)
    fixed = config.rows + config.cols - 2 + 6 + tr + 40        # MATMUL fill + drain
    total = 0.0
    steps = []
    for qb in range(ceil_div(mq, mb)):
        for j in range(ceil_div(sk, nbk)):
            # causal (top-left): a key block is skipped if it starts after every query row
            # of the block (rows are g stacked heads of sq positions each)
            if sq is not None and mb < sq and j * nbk > min(mq - 1, (qb + 1) * mb - 1) % sq:
                continue
            steps.append(j)
    for j in steps:
        keys = min(nbk, sk - j * nbk)
        kt = ceil_div(keys, c)
        array = mt * kt * max(p * d, tr) + mt * nd * max(p * keys, tr) + 2 * fixed
        vector = 3 * (12 + mb * ceil_div(keys, lanes)) + mt * (12 + keys * ceil_div(tr, lanes)) \
            + 2 * (12 + mb * ceil_div(nd * c, lanes)) + 5 * (12 + ceil_div(mb, lanes))
        total += max(array, vector)
    drain = 3 * (12 + mb * ceil_div(nd * c, lanes)) + mt * (12 + d * ceil_div(tr, lanes)) + \
        64 + mb * d * 2 / config.axi_bytes
    return total + ceil_div(mq, mb) * drain


def build_attention(config: EngineConfig, spec: AttentionSpec) -> Kernel:
    """Generate the attention program (see the module docstring)."""
    return _Attention(config, spec).build()


class _Attention:
    AR_QG, AR_KG, AR_VG, AR_OG, AR_M = range(1, 6)

    def __init__(self, config: EngineConfig, spec: AttentionSpec) -> None:
        self.cfg, self.s = config, spec
        b = self.beat = config.axi_bytes
        self.tr, self.c = config.tile_rows, config.cols
        self.mb, self.nbk = spec.mt * self.tr, spec.ntk * self.c
        self.nd = ceil_div(spec.d, self.c)
        self.p16 = ceil_div(spec.d * 2, b)
        plan = SpadPlan(config)
        self.a = _plan(config, spec.mq, spec.d, spec.mt, spec.ntk, plan)
        self.ktile = ceil_div(spec.d * self.c * 2, b)
        self.voff = spec.ntk * self.ktile              # V tiles after the K tiles in a bank
        self.s_pitch = self.nbk * 4                    # bytes per S row
        self.p_pitch = self.nbk * 2 // b               # scratchpad rows per P row
        self.pv_pitch = self.nd * self.c * 4
        if self.pv_pitch % b:
            raise KernelError(f"attention needs head_dim rounded up to {self.c} columns "
                              f"(×4 bytes) to fill whole AXI beats of {b} bytes")
        self.bias_bank = self.mb * self.nbk
        self.spad_rows = plan.used

    def build(self) -> Kernel:
        cfg, s = self.cfg, self.s
        p = self.p = new_program(cfg)
        reg = RegAlloc(cfg, loops=1)
        self.r_q, self.r_kp, self.r_v, self.r_o = reg(), reg(), reg(), reg()
        self.r_mask = reg()
        args = {"q": self.r_q.index, "kp": self.r_kp.index, "v": self.r_v.index,
                "o": self.r_o.index, "mask": self.r_mask.index}
        p.epi(EPI_ENTRY, "identity", s.scale)
        p.token("array", "load")
        p.token("array", "load")
        p.token("vector", "load")      # Q staging free
        p.token("store", "vector")     # output buffer free
        p.ar_set(self.AR_M, 0, 0)
        p.ar_set_gpr(self.AR_M, self.r_mask)
        for ar in (self.AR_QG, self.AR_KG, self.AR_VG, self.AR_OG):
            p.ar_set(ar, 0, 0)
        q_group = s.mq * s.d * 2
        k_group = ceil_div(s.sk, self.c) * s.d * self.c * 2
        v_group = s.sk * s.d * 2
        with p.loop(s.groups):
            p.ar_set_gpr(self.AR_QG, self.r_q)
            p.ar_set_gpr(self.AR_KG, self.r_kp)
            p.ar_set_gpr(self.AR_VG, self.r_v)
            p.ar_set_gpr(self.AR_OG, self.r_o)
            for qb, classes in enumerate(s.blocks):
                self._query_block(qb, classes)
            p.add(self.r_q, self.r_q, q_group)
            p.add(self.r_o, self.r_o, q_group)
            p.add(self.r_kp, self.r_kp, k_group)
            p.add(self.r_v, self.r_v, v_group)
        p.halt()
        name = (f"attention(groups={s.groups}, mq={s.mq}, sk={s.sk}, d={s.d}, mt={s.mt}, "
                f"ntk={s.ntk})")
        return Kernel(name, cfg, p.encode(), args, {"spec": s, "spad_rows": self.spad_rows})

    # ---- one query block -------------------------------------------------------------------

    def _query_block(self, qb: int, classes: tuple[str, ...]) -> None:
        p, s, a, beat = self.p, self.s, self.a, self.beat
        rows = min(self.mb, s.mq - qb * self.mb)
        d = s.d
        # prologue: Q rows → staging → A panel; O = 0, m = −FLT_MAX, l = 0
        p.load(dram=Addr(qb * self.mb * d * 2, self.AR_QG), sram=a["qstage"], rows=rows,
               row_bytes=d * 2, dram_stride=d * 2, sram_stride=self.p16 * beat,
               wait="vector", signal="vector")
        for i in range(s.mt):
            p.vector("transpose", src0=a["qstage"] + i * self.tr * self.p16,
                     dst=a["qpanel"] + i * ceil_div(d * self.tr * 2, beat), rows=self.tr,
                     length=d, src0_stride=self.p16, wait="load" if i == 0 else (),
                     signal=("load", "array") if i == s.mt - 1 else ())
        p.vector("fill", dst=a["o"], rows=1, length=self.mb * self.nd * self.c, dst_fmt="fp32",
                 imm=0.0)
        p.vector("fill", dst=a["l"], rows=1, length=self.mb, dst_fmt="fp32", imm=0.0)
        p.vector("fill", dst=a["m1"], rows=1, length=self.mb, dst_fmt="fp32", imm=NEG_FLT_MAX,
                 signal="array")
        steps = [j for j, cls in enumerate(classes) if cls != "skip"]
        n = len(steps)
        if n == 0:
            raise KernelError(f"query block {qb} attends to no key")
        # array order S0 S1 PV0 S2 PV1 …, vector order P0 P1 O0 P2 O1 …, LOAD order
        # K0 K1 V0 K2 V1 … (K/mask for S, V for PV: each LOAD waits for the ARRAY token of
        # the instruction two places earlier in that order, i.e. the last reader of its bank)
        self._load_k(0, qb, steps[0], classes[steps[0]])
        self._s(0, steps[0], classes[steps[0]])
        if n == 1:
            p.matmul(a=0, b=0, dst=0, k=0, m_tiles=0, n_tiles=0, wait="vector")
        else:
            self._load_k(1, qb, steps[1], classes[steps[1]])
            self._s(1, steps[1], classes[steps[1]])
        self._p(0, steps[0])
        if n > 1:
            self._p(1, steps[1])
        self._load_v(0, steps[0])
        self._pv(0, steps[0])
        for t in range(n):
            if t + 2 < n:
                self._load_k(t + 2, qb, steps[t + 2], classes[steps[t + 2]])
                self._s(t + 2, steps[t + 2], classes[steps[t + 2]])
            if t + 1 < n:
                self._load_v(t + 1, steps[t + 1])
            self._o(t)
            # PV(t+1) pops the token O(t) pushes (tokens are counted in program order), and
            # goes before the next P chain: the dispatcher is in order, and a chain longer
            # than the VECTOR queue would hold it back until that chain starts
            if t + 1 < n:
                self._pv(t + 1, steps[t + 1])
            if t + 2 < n:
                self._p(t + 2, steps[t + 2])
        # drain: the array waits for the last vector tokens of this block
        for _ in range(2 if n > 1 else 1):
            p.matmul(a=0, b=0, dst=0, k=0, m_tiles=0, n_tiles=0, wait="vector")
        # epilogue: O / l → bf16, STORE
        pv = ceil_div
        p.vector("recip", dst=a["r"], src0=a["l"], rows=1, length=self.mb, src0_fmt="fp32",
                 dst_fmt="fp32")
        p.vector("mul", dst=a["out"], src0=a["o"], src1=a["r"], rows=self.mb, length=d,
                 src0_fmt="fp32", src1_fmt="fp32", bcast="row",
                 src0_stride=pv(self.pv_pitch, beat), dst_stride=self.p16,
                 wait="store", signal="store")
        p.store(dram=Addr(qb * self.mb * d * 2, self.AR_OG), sram=a["out"], rows=rows,
                row_bytes=d * 2, dram_stride=d * 2, sram_stride=self.p16 * beat,
                wait="vector", signal="vector")

    def _keys(self, j: int) -> int:
        return min(self.nbk, self.s.sk - j * self.nbk)

    def _load_k(self, t: int, qb: int, j: int, cls: str) -> None:
        p, s, beat, c = self.p, self.s, self.beat, self.c
        keys = self._keys(j)
        ntk = ceil_div(keys, c)
        mask = cls == "mask"
        p.load(dram=Addr(j * s.ntk * s.d * c * 2, self.AR_KG), sram=self.a[f"kv{t % 2}"],
               rows=ntk, row_bytes=s.d * c * 2, dram_stride=s.d * c * 2,
               sram_stride=self.ktile * beat, wait="array", signal=() if mask else "array")
        if mask:
            rows = min(self.mb, s.mq - qb * self.mb)
            p.load(dram=Addr((qb * self.mb * s.skpad + j * self.nbk) * 2, self.AR_M),
                   sram=(t % 2) * self.bias_bank, rows=rows, row_bytes=ntk * c * 2,
                   dram_stride=s.skpad * 2, sram_stride=ntk * c * 2, mem="bias",
                   signal="array")

    def _load_v(self, t: int, j: int) -> None:
        p, s, beat, c = self.p, self.s, self.beat, self.c
        keys = self._keys(j)
        vtile = ceil_div(keys * c * 2, beat)          # the B-panel tile stride for k = keys
        base = self.a[f"kv{t % 2}"] + self.voff
        for dt in range(self.nd):
            cols = min(c, s.d - dt * c)
            p.load(dram=Addr(j * self.nbk * s.d * 2 + dt * c * 2, self.AR_VG),
                   sram=base + dt * vtile, rows=keys, row_bytes=cols * 2,
                   dram_stride=s.d * 2, sram_stride=c * 2, wait="array" if dt == 0 else (),
                   signal="array" if dt == self.nd - 1 else ())

    def _s(self, t: int, j: int, cls: str) -> None:
        p, s, a = self.p, self.s, self.a
        ntk = ceil_div(self._keys(j), self.c)
        kw = {}
        if cls == "mask":
            kw = {"bias_mode": "full", "bias": (t % 2) * self.bias_bank}
        p.matmul(a=a["qpanel"], b=a[f"kv{t % 2}"], dst=a[f"s{t % 2}"], k=s.d,
                 m_tiles=s.mt, n_tiles=ntk, epi=EPI_ENTRY, out_fmt="fp32",
                 dst_pitch=self.s_pitch, rowmax="init", rmax=a[f"bm{t % 2}"],
                 wait=("load", "vector"), signal=("vector", "load"), **kw)

    def _p(self, t: int, j: int) -> None:
        p, a, beat, tr = self.p, self.a, self.beat, self.tr
        q = t % 2
        keys = self._keys(j)
        mb = self.mb
        small = {"rows": 1, "length": mb, "src0_fmt": "fp32", "src1_fmt": "fp32",
                 "dst_fmt": "fp32"}
        m_old, m_new, alpha, sbuf = a[f"m{1 - q}"], a[f"m{q}"], a[f"a{q}"], a[f"s{q}"]
        p.vector("max", dst=m_new, src0=m_old, src1=a[f"bm{q}"], **small, wait="array")
        p.vector("sub", dst=alpha, src0=m_old, src1=m_new, **small)
        p.vector("exp", dst=alpha, src0=alpha, rows=1, length=mb, src0_fmt="fp32",
                 dst_fmt="fp32")
        spitch = self.s_pitch // beat
        p.vector("sub", dst=sbuf, src0=sbuf, src1=m_new, rows=mb, length=keys,
                 src0_stride=spitch, dst_stride=spitch, src0_fmt="fp32", src1_fmt="fp32",
                 dst_fmt="fp32", bcast="row")
        p.vector("exp", dst=a["prows"], src0=sbuf, rows=mb, length=keys, src0_stride=spitch,
                 dst_stride=self.p_pitch, src0_fmt="fp32")
        p.vector("rsum", dst=a["lblk"], src0=a["prows"], rows=mb, length=keys,
                 src0_stride=self.p_pitch, dst_fmt="fp32")
        p.vector("mul", dst=a["l"], src0=a["l"], src1=alpha, **small)
        p.vector("add", dst=a["l"], src0=a["l"], src1=a["lblk"], **small)
        atile = ceil_div(keys * tr * 2, beat)
        for i in range(self.s.mt):
            p.vector("transpose", src0=a["prows"] + i * tr * self.p_pitch,
                     dst=a[f"pp{q}"] + i * atile, rows=tr, length=keys,
                     src0_stride=self.p_pitch, signal="array" if i == self.s.mt - 1 else ())

    def _pv(self, t: int, j: int) -> None:
        p, a = self.p, self.a
        q = t % 2
        p.matmul(a=a[f"pp{q}"], b=a[f"kv{q}"] + self.voff, dst=a[f"pv{q}"],
                 k=self._keys(j), m_tiles=self.s.mt, n_tiles=self.nd, out_fmt="fp32",
                 wait=("vector", "load"), signal=("vector", "load"))

    def _o(self, t: int) -> None:
        p, a, beat = self.p, self.a, self.beat
        q = t % 2
        pitch = ceil_div(self.pv_pitch, beat)
        common = {"rows": self.mb, "length": self.nd * self.c, "src0_stride": pitch,
                  "dst_stride": pitch, "src0_fmt": "fp32", "src1_fmt": "fp32",
                  "dst_fmt": "fp32"}
        p.vector("mul", dst=a["o"], src0=a["o"], src1=a[f"a{q}"], bcast="row", wait="array",
                 **common)
        p.vector("add", dst=a["o"], src0=a["o"], src1=a[f"pv{q}"], src1_stride=pitch,
                 signal="array", **common)


def scale_bits(d: int, scale: float | None) -> int:
    """fp32 bits of the softmax scale (default 1/√d)."""
    import numpy as np

    value = float(np.float32(1.0 / np.sqrt(d))) if scale is None else float(np.float32(scale))
    return f32_bits(value)
