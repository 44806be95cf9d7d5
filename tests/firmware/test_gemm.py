"""GEMM kernel generator: forced tilings (many K chunks, M/N tails), runtime M through a GPR,
every engine preset, program size; runs on the model backend in strict (race-checking) mode."""

import dataclasses

import numpy as np
import pytest

from unified_engine import EngineConfig
from unified_engine.firmware.common import KernelError
from unified_engine.firmware.gemm import GemmSpec, GemmTiling, build_gemm, choose_tiling
from unified_engine.firmware.layout import epi_spec, pack_bf16_panel
from unified_engine.host import Engine
from unified_engine.numerics import fp

from . import golden as G

SMALL = G.small_config()


def run_gemm(eng, spec, a_bits, b_bits, m, bias_bits=None):
    cfg = eng.config
    kernel = build_gemm(cfg, spec)
    a = eng.tensor(a_bits.view(np.uint16), dtype="uint16")
    b = eng.tensor(pack_bf16_panel(b_bits, cfg.cols).reshape(-1), dtype="uint16")
    c = eng.empty((m, spec.n), "uint16")
    args = {"m": m, "a": a.addr, "b": b.addr, "c": c.addr}
    if bias_bits is not None:
        bias = eng.tensor(bias_bits, dtype="uint16")
        args["bias"] = bias.addr
    result = eng.run(kernel.blob, args=kernel.gprs(**args))
    return c.numpy(), result, kernel


@pytest.mark.parametrize("tiling", [GemmTiling(1, 1, 8, 5), GemmTiling(2, 3, 16, 3),
                                    GemmTiling(3, 2, 40, 1), GemmTiling(1, 5, 24, 2)])
def test_forced_tilings_bit_exact(tiling):
    eng = Engine.open("model", SMALL, dram_bytes=1 << 22)
    rng = np.random.default_rng(tiling.kc)
    k = tiling.kc * (tiling.nk - 1) + 3 if tiling.nk > 1 else 37
    m, n = 23, 13                                   # tails in M and N for every tiling
    a, b = G.b16(rng.standard_normal((m, k))), G.b16(rng.standard_normal((k, n)))
    c = G.b16(rng.standard_normal(n))
    spec = GemmSpec(k=k, n=n, b_mode="panel", b_fmt="bf16", bias="col",
                    epi=epi_spec("silu", 0.5), out_fmt="bf16", softmax=False, tiling=tiling)
    out, _, _ = run_gemm(eng, spec, a, b, m, c)
    G.assert_bits_equal(out, G.gemm(a, b, c, "silu", 0.5), str(tiling))


def test_runtime_m_one_program():
    """One program image, M only in a GPR: every M from 1 to 3 blocks is bit-exact."""
    eng = Engine.open("model", SMALL, dram_bytes=1 << 22)
    rng = np.random.default_rng(1)
    k, n = 19, 9
    spec = GemmSpec(k=k, n=n, b_mode="panel", b_fmt="bf16", bias="none", epi=epi_spec(),
                    out_fmt="bf16", softmax=False, tiling=GemmTiling(2, 2, 8, 3))
    blob = build_gemm(SMALL, spec).blob
    b = G.b16(rng.standard_normal((k, n)))
    for m in (1, 7, 8, 9, 24):
        a = G.b16(rng.standard_normal((m, k)))
        out, _, kernel = run_gemm(eng, spec, a, b, m)
        assert kernel.blob == blob
        G.assert_bits_equal(out, fp.pe_matmul(a, b), f"m={m}")


PRESETS = ["kintex7", "ku15p", "alveo_u50"]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize(("m", "k", "n", "kw"), [
    (1, 4096, 4096, {}), (4096, 64, 11008, {"bias": "col"}), (512, 2048, 49152, {}),
    (256, 1024, 1024, {"softmax": True}), (300, 4096, 1024, {"b_fmt": "int4", "bias": "col"}),
    (64, 512, 512, {"bias": "full"})])
def test_tilings_build_for_model_shapes(preset, m, k, n, kw):
    """The chooser's tiling always generates (memory plans fit) and the program stays small:
    loops, not unrolled tiles."""
    cfg = EngineConfig.preset(preset)
    t = choose_tiling(cfg, m, k, n, **kw)
    spec = GemmSpec(k=k, n=n, b_mode="panel", b_fmt=kw.get("b_fmt", "bf16"),
                    bias=kw.get("bias", "none") if not kw.get("softmax") else "col",
                    epi=epi_spec("gelu"), out_fmt="bf16", softmax=kw.get("softmax", False),
                    tiling=t)
    kernel = build_gemm(cfg, spec)
    assert kernel.meta["spad_rows"] <= cfg.scratchpad_rows
    assert kernel.instructions < 40 * t.nk + 80 * (2 if spec.softmax else 1)


def test_generator_rejects_what_cannot_work():
    with pytest.raises(KernelError, match="address_registers"):
        build_gemm(EngineConfig.preset("sim_small"),
                   GemmSpec(k=8, n=8, b_mode="panel", b_fmt="bf16", bias="none",
                            epi=epi_spec(), out_fmt="bf16", softmax=False,
                            tiling=GemmTiling(1, 1, 8, 1)))
    with pytest.raises(KernelError, match="multiple of the int4 block"):
        build_gemm(SMALL, GemmSpec(k=40, n=8, b_mode="panel", b_fmt="int4", bias="none",
                                   epi=epi_spec(), out_fmt="bf16", softmax=False,
                                   tiling=GemmTiling(1, 1, 40, 1)))
    odd = dataclasses.replace(EngineConfig(), rows=5, pe_interleave=1)   # TR·2 = 10 bytes
    with pytest.raises(KernelError, match="tile_rows"):
        build_gemm(odd, GemmSpec(k=8, n=8, b_mode="panel", b_fmt="bf16", bias="none",
                                 epi=epi_spec(), out_fmt="bf16", softmax=False,
                                 tiling=GemmTiling(1, 1, 8, 1)))
