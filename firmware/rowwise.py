"""Row-wise vector kernels: softmax, RMSNorm, LayerNorm, element-wise ops, activations.

All share one pipeline over blocks of RB rows of an ``[M, N]`` bf16 tensor (M is a runtime
GPR argument, N static): LOAD the block (and the second operand), run a chain of VECTOR
instructions, STORE the result.  Input and output buffers are double buffered (one address
register toggles both banks per block) with these token channels (seeds in brackets):

* LOAD → VECTOR: block loaded; VECTOR → LOAD [2]: input bank free again;
* VECTOR → STORE: result ready; STORE → VECTOR [2]: output bank free again.

So DMA in, vector work and DMA out of consecutive blocks overlap.  Per-row scalars (sums,
maxima, 1/σ) live in small fp32 buffers and are processed as one ``rows = 1, length = RB``
vector, so they cost ⌈RB/L⌉ beats, not RB.  Rows of the last block past M are computed from
stale data and never stored.  A row must fit on chip (``UnsupportedOp`` otherwise).

Chains (x is the bf16 block, T an fp32 block, s/r per-row fp32 scalars; every step is one
VECTOR instruction and its golden model is the ISA's):

* softmax: ``m = RMAX x; T = x − m; T = exp T; s = RSUM T; r = 1/s; y = T·r``
* rmsnorm: ``s = RSUMSQ x; s = s·(1/N); s = s + eps; r = rsqrt s; T = x·r; y = T·γ``
* layernorm: ``s = RSUM x; s = s·(1/N); T = x − s; v = RSUMSQ T; v = v·(1/N); v = v + eps;
  r = rsqrt v; T = T·r; T = T·γ; y = T + β`` (γ, β optional)
* argmax4: ``ARGMAX4 x`` (per row 4 uint32 indices and 4 fp32 values, best first)
* eltwise: ``y = x ∘ z`` with ∘ ∈ {add, sub, mul} and z a tensor, a per-row value, a row
  vector or a scalar; activation: ``y = act(x)`` (ACTIVATE with an epilogue entry).

``1/N`` is the fp32 constant RNE(1/N) (exact for powers of two); ``eps`` is rounded to fp32.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from unified_engine.asm import Addr
from unified_engine.config import EngineConfig
from unified_engine.isa import f32_bits

from .common import Kernel, KernelError, RegAlloc, SpadPlan, ceil_div, new_program
from .layout import EpiSpec

__all__ = ["RowwiseSpec", "build_rowwise", "choose_rows", "rowwise_rows_budget"]

EPI_ENTRY = 2
_OPS = ("softmax", "rmsnorm", "layernorm", "eltwise", "activation", "argmax4")
#: Bytes ARGMAX4 writes per row: 4 uint32 indices, then 4 fp32 values.
TOP4_BYTES = 32


@dataclasses.dataclass(frozen=True)
class RowwiseSpec:
    """Static parameters of a row-wise kernel.

    ``op``: one of softmax, rmsnorm, layernorm, eltwise, activation; ``n``: row length;
    ``rb``: rows per block; ``eps``: fp32 bits (norms); ``gamma``/``beta``: whether those
    vectors are given; ``binop``: add/sub/mul (eltwise); ``bcast``: tensor/row/col/scalar
    (eltwise); ``scalar``: fp32 bits (eltwise scalar); ``epi``: the activation.
    """

    op: str
    n: int
    rb: int
    eps: int = 0
    gamma: bool = False
    beta: bool = False
    binop: str = "add"
    bcast: str = "tensor"
    scalar: int = 0
    epi: EpiSpec | None = None


def _needs(spec: RowwiseSpec) -> dict[str, bool]:
    y_block = spec.op == "eltwise" and spec.bcast in ("tensor", "row")
    return {
        "y": y_block,
        "y_rowwise": spec.op == "eltwise" and spec.bcast == "row",
        "col": spec.op == "eltwise" and spec.bcast == "col",
        "t": spec.op in ("softmax", "rmsnorm", "layernorm"),
        "gamma": spec.gamma,
        "beta": spec.beta,
    }


def _rows_needed(config: EngineConfig, spec: RowwiseSpec) -> int:
    b = config.axi_bytes
    pitch16 = ceil_div(spec.n * 2, b)
    pitch32 = ceil_div(spec.n * 4, b)
    need = _needs(spec)
    out = ceil_div(spec.rb * TOP4_BYTES, b) if spec.op == "argmax4" else spec.rb * pitch16
    bank = spec.rb * pitch16 + out             # x in, y out
    if need["y"]:
        bank += ceil_div(spec.rb * 2, b) if need["y_rowwise"] else spec.rb * pitch16
    rows = 2 * bank
    if need["t"]:
        rows += spec.rb * pitch32 + 3 * ceil_div(spec.rb * 4, b)
    rows += pitch16 * (int(need["col"]) + int(need["gamma"]) + int(need["beta"]))
    return rows


def rowwise_rows_budget(config: EngineConfig, spec: RowwiseSpec) -> int:
    """Scratchpad rows the kernel needs."""
    return _rows_needed(config, spec)


def choose_rows(config: EngineConfig, spec: RowwiseSpec, m_bucket: int) -> int:
    """Rows per block: enough beats per VECTOR instruction to hide its latency (≥ ~1024
    beats), at most the M bucket, and what the scratchpad holds."""
    beats = ceil_div(spec.n, config.lanes)
    want = max(1, min(m_bucket, ceil_div(1024, beats), 256))
    rb = want
    while rb >= 1:
        if _rows_needed(config, dataclasses.replace(spec, rb=rb)) <= config.scratchpad_rows:
            return rb
        rb //= 2
    raise KernelError(f"a row of {spec.n} elements does not fit the scratchpad "
                      f"({config.scratchpad_bytes} bytes) for {spec.op}")


def build_rowwise(config: EngineConfig, spec: RowwiseSpec) -> Kernel:
    """Generate the row-wise kernel for ``spec`` (see the module docstring)."""
    if spec.op not in _OPS:
        raise KernelError(f"unknown row-wise op {spec.op!r}")
    return _Rowwise(config, spec).build()


class _Rowwise:
    AR_X, AR_Y, AR_O, AR_BANK = 1, 2, 3, 4

    def __init__(self, config: EngineConfig, spec: RowwiseSpec) -> None:
        self.cfg, self.spec = config, spec
        b = self.beat = config.axi_bytes
        n, rb = spec.n, spec.rb
        self.need = need = _needs(spec)
        plan = SpadPlan(config)
        self.p16 = ceil_div(n * 2, b)
        self.p32 = ceil_div(n * 4, b)
        # bank: [x | y | out]
        self.off_x = 0
        self.off_y = rb * self.p16
        ysize = (ceil_div(rb * 2, b) if need["y_rowwise"] else rb * self.p16) if need["y"] \
            else 0
        self.off_out = self.off_y + ysize
        self.top4 = spec.op == "argmax4"
        bank = self.off_out + (ceil_div(rb * TOP4_BYTES, b) if self.top4 else rb * self.p16)
        self.bank0 = plan.alloc("bank0", bank)
        self.bank1 = plan.alloc("bank1", bank)
        if need["t"]:
            self.t = plan.alloc("t", rb * self.p32)
            self.s = plan.alloc("s", ceil_div(rb * 4, b))
            self.r = plan.alloc("r", ceil_div(rb * 4, b))
            self.v = plan.alloc("v", ceil_div(rb * 4, b))
        self.col = plan.alloc("col", self.p16) if need["col"] else None
        self.gamma = plan.alloc("gamma", self.p16) if need["gamma"] else None
        self.beta = plan.alloc("beta", self.p16) if need["beta"] else None
        self.spad_rows = plan.used

    def build(self) -> Kernel:
        cfg, spec, need = self.cfg, self.spec, self.need
        p = self.p = new_program(cfg)
        reg = RegAlloc(cfg, loops=1)
        r_m, r_x, r_out = reg(), reg(), reg()
        args = {"m": r_m.index, "x": r_x.index, "out": r_out.index}
        r_y = r_g = r_b = None
        if need["y"] or need["col"]:
            r_y = reg()
            args["y"] = r_y.index
        if need["gamma"]:
            r_g = reg()
            args["gamma"] = r_g.index
        if need["beta"]:
            r_b = reg()
            args["beta"] = r_b.index
        r_rows, r_rem, r_bank = reg(), reg(), reg()
        n, rb = spec.n, spec.rb
        if spec.op == "activation" and spec.epi is not None:
            e = spec.epi
            p.epi(EPI_ENTRY, e.act, e.scale, e.a, e.b, e.c, e.d)
        for _ in range(2):
            p.token("vector", "load")
            p.token("store", "vector")
        # constants: loaded once, ordered before every chain through the LOAD queue
        for buf, r in ((self.col, r_y), (self.gamma, r_g), (self.beta, r_b)):
            if buf is not None:
                p.ar_set(self.AR_Y, 0, 0)
                p.ar_set_gpr(self.AR_Y, r)
                p.load(dram=Addr(0, self.AR_Y), sram=buf, row_bytes=n * 2)
        p.ar_set(self.AR_X, 0, rb * n * 2)
        p.ar_set_gpr(self.AR_X, r_x)
        out_row = TOP4_BYTES if self.top4 else n * 2
        p.ar_set(self.AR_O, 0, rb * out_row)
        p.ar_set_gpr(self.AR_O, r_out)
        if need["y"]:
            p.ar_set(self.AR_Y, 0, rb * 2 if need["y_rowwise"] else rb * n * 2)
            p.ar_set_gpr(self.AR_Y, r_y)
        p.li(r_bank, self.bank0)
        p.ar_set_gpr(self.AR_BANK, r_bank)
        p.mov(r_rem, r_m)
        p.add(r_rows, r_m, rb - 1)
        p.alu("divu", r_rows, r_rows, rb)
        with p.loop(r_rows):
            p.alu("minu", r_rows, r_rem, rb)
            stride = self.p16 * self.beat
            p.load(dram=Addr(0, self.AR_X, inc=True), sram=Addr(self.off_x, self.AR_BANK),
                   rows=rb, row_bytes=n * 2, dram_stride=n * 2, sram_stride=stride,
                   wait="vector", signal=() if need["y"] else "vector",
                   override=("rows", r_rows))
            if need["y_rowwise"]:
                p.load(dram=Addr(0, self.AR_Y, inc=True), sram=Addr(self.off_y, self.AR_BANK),
                       rows=1, row_bytes=rb * 2, signal="vector")
            elif need["y"]:
                p.load(dram=Addr(0, self.AR_Y, inc=True), sram=Addr(self.off_y, self.AR_BANK),
                       rows=rb, row_bytes=n * 2, dram_stride=n * 2, sram_stride=stride,
                       signal="vector", override=("rows", r_rows))
            self._chain()
            p.store(dram=Addr(0, self.AR_O, inc=True), sram=Addr(self.off_out, self.AR_BANK),
                    rows=rb, row_bytes=out_row, dram_stride=out_row,
                    sram_stride=out_row if self.top4 else stride, wait="vector",
                    signal="vector", override=("rows", r_rows))
            p.alu("xor", r_bank, r_bank, self.bank0 ^ self.bank1)
            p.ar_set_gpr(self.AR_BANK, r_bank)
            p.sub(r_rem, r_rem, rb)
        p.halt()
        name = f"{spec.op}(n={n}, rb={rb})"
        return Kernel(name, cfg, p.encode(), args, {"rb": rb, "spad_rows": self.spad_rows})

    # ---- chains ----------------------------------------------------------------------------

    def _ops(self) -> list[dict]:
        """The chain as a list of ``Program.vector`` keyword dicts."""
        spec, n, rb = self.spec, self.spec.n, self.spec.rb
        x = Addr(self.off_x, self.AR_BANK)
        y = Addr(self.off_out, self.AR_BANK)
        f32 = "fp32"
        inv_n = f32_bits(float(np.float32(1.0 / n)))      # RNE(1/N) in fp32
        full = {"rows": rb, "length": n}
        x16 = {"src0": x, "src0_stride": self.p16}
        out16 = {"dst": y, "dst_stride": self.p16}
        if spec.op in ("softmax", "rmsnorm", "layernorm"):
            t = self.t
            t_src = {"src0": t, "src0_stride": self.p32, "src0_fmt": f32}
            t_dst = {"dst": t, "dst_stride": self.p32, "dst_fmt": f32}
            per_row = {"rows": 1, "length": rb, "src0_fmt": f32, "dst_fmt": f32}
        if spec.op == "softmax":
            return [
                dict(op="rmax", dst=self.s, dst_fmt=f32, **full, **x16),
                dict(op="sub", **full, **x16, src1=self.s, src1_fmt=f32, bcast="row", **t_dst),
                dict(op="exp", **full, **t_src, **t_dst),
                dict(op="rsum", dst=self.s, dst_fmt=f32, **full, **t_src),
                dict(op="recip", src0=self.s, dst=self.r, **per_row),
                dict(op="mul", **full, **t_src, src1=self.r, src1_fmt=f32, bcast="row",
                     **out16),
            ]
        if spec.op == "rmsnorm":
            last = dict(op="mul", **full, **t_src, src1=self.gamma, bcast="col", **out16) \
                if spec.gamma else None
            ops = [
                dict(op="rsumsq", dst=self.s, dst_fmt=f32, **full, **x16),
                dict(op="mul", src0=self.s, dst=self.s, bcast="scalar", imm=inv_n, **per_row),
                dict(op="add", src0=self.s, dst=self.s, bcast="scalar", imm=spec.eps,
                     **per_row),
                dict(op="rsqrt", src0=self.s, dst=self.r, **per_row),
                dict(op="mul", **full, **x16, src1=self.r, src1_fmt=f32, bcast="row",
                     **(t_dst if last else out16)),
            ]
            return ops + ([last] if last else [])
        if spec.op == "layernorm":
            ops = [
                dict(op="rsum", dst=self.s, dst_fmt=f32, **full, **x16),
                dict(op="mul", src0=self.s, dst=self.s, bcast="scalar", imm=inv_n, **per_row),
                dict(op="sub", **full, **x16, src1=self.s, src1_fmt=f32, bcast="row", **t_dst),
                dict(op="rsumsq", dst=self.v, dst_fmt=f32, **full, **t_src),
                dict(op="mul", src0=self.v, dst=self.v, bcast="scalar", imm=inv_n, **per_row),
                dict(op="add", src0=self.v, dst=self.v, bcast="scalar", imm=spec.eps,
                     **per_row),
                dict(op="rsqrt", src0=self.v, dst=self.r, **per_row),
            ]
            tail = [("row", self.r, f32)]
            if spec.gamma:
                tail.append(("col", self.gamma, "bf16"))
            if spec.beta:
                tail.append(("col", self.beta, "bf16"))
            for i, (bcast, src1, fmt1) in enumerate(tail):
                op = "add" if src1 is self.beta else "mul"
                dst = out16 if i == len(tail) - 1 else t_dst
                ops.append(dict(op=op, **full, **t_src, src1=src1, src1_fmt=fmt1, bcast=bcast,
                                **dst))
            return ops
        if spec.op == "eltwise":
            src1: dict = {}
            if spec.bcast == "scalar":
                src1 = {"imm": spec.scalar}
            elif spec.bcast == "col":
                src1 = {"src1": self.col}
            else:
                src1 = {"src1": Addr(self.off_y, self.AR_BANK), "src1_stride": self.p16}
            return [dict(op=spec.binop, **full, **x16, bcast=spec.bcast, **src1, **out16)]
        if spec.op == "argmax4":
            return [dict(op="argmax4", **full, **x16, dst=y)]
        # activation
        return [dict(op="activate", **full, **x16, epi=EPI_ENTRY if spec.epi is not None
                     else 0, **out16)]

    def _chain(self) -> None:
        ops = self._ops()
        for i, kw in enumerate(ops):
            if i == 0:
                kw["wait"] = ("load", "store")
            if i == len(ops) - 1:
                kw["signal"] = ("load", "store")
            self.p.vector(kw.pop("op"), **kw)

