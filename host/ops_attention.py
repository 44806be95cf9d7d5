"""``Engine.attention``: flash attention with grouped-query heads (``firmware.attention``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from unified_engine.firmware.attention import (
    AttentionSpec,
    attention_tiling,
    build_attention,
    scale_bits,
)
from unified_engine.firmware.common import KernelError, ceil_div

from .ops_io import Operand, as_operand, to_kind

__all__ = ["AttentionOps"]

_NEG_INF = 0xFF80  # bf16 −Inf


def _bhsd(op: Operand) -> tuple[int, int, int, int]:
    if op.ndim not in (2, 3, 4) or 0 in op.shape:
        raise ValueError(f"{op.name} must be [S, D], [H, S, D] or [B, H, S, D] with non-empty "
                         f"dimensions, got {op.shape}")
    shape = (1,) * (4 - op.ndim) + tuple(op.shape)
    return shape  # type: ignore[return-value]


def _mask_bits(mask: Any, sq: int, sk: int) -> np.ndarray:
    """An additive bf16 mask ``[Sq, Sk]`` from a float (additive) or bool (True = attend) mask."""
    if type(mask).__module__.split(".")[0] == "torch":
        t = mask.detach().cpu()
        mask = t.numpy() if not t.dtype.is_floating_point else t.float().numpy()
    arr = np.asarray(mask)
    if arr.shape != (sq, sk):
        raise ValueError(f"mask must be [Sq, Sk] = [{sq}, {sk}], got {arr.shape}")
    if arr.dtype == np.bool_:
        return np.where(arr, np.uint16(0), np.uint16(_NEG_INF)).astype(np.uint16)
    op = as_operand(arr.astype(np.float32) if arr.dtype == np.float64 else arr, "mask")
    bits = op.bits.reshape(sq, sk)
    if ((bits & 0x7FFF) > 0x7F80).any():
        raise ValueError("mask must not contain NaN")
    return bits


class AttentionOps:
    """Mixin; see the module docstring."""

    def attention(self, q: Any, k: Any, v: Any, mask: Any = None, causal: bool = False,
                  scale: float | None = None) -> Any:
        """``softmax(q·kᵀ·scale + mask)·v`` per head, never writing the scores to DRAM.

        Parameters
        ----------
        q : [B, Hq, Sq, D] (or [Hq, Sq, D], [Sq, D])
        k, v : [B, Hkv, Sk, D] with Hq a multiple of Hkv (grouped-query heads; query head h
            uses KV head h // (Hq / Hkv))
        mask : None, an additive float mask [Sq, Sk] (−Inf blocks a key) or a bool mask
            [Sq, Sk] (True = attend), shared by all heads (torch SDPA conventions)
        causal : query i attends keys j ≤ i (torch ``is_causal``, top-left aligned); cannot
            be combined with ``mask`` (as in torch)
        scale : default 1/√D (rounded to fp32)

        Returns the kind of ``q``, shaped like ``q``.  A row whose keys are all masked gives
        NaN, as in torch.
        """
        from .ops import UnsupportedOp

        qo, ko, vo = as_operand(q, "q"), as_operand(k, "k"), as_operand(v, "v")
        bq, hq, sq, d = _bhsd(qo)
        bk, hk, sk, dk = _bhsd(ko)
        if vo.shape != ko.shape:
            raise ValueError(f"k and v must have the same shape, got {ko.shape} and {vo.shape}")
        if dk != d or bk != bq:
            raise ValueError(f"q {qo.shape} and k {ko.shape} disagree in batch or head_dim")
        if hq % hk:
            raise ValueError(f"query heads ({hq}) must be a multiple of KV heads ({hk})")
        if not isinstance(causal, bool):
            raise TypeError(f"causal must be a bool, not {causal!r}")
        if causal and mask is not None:
            raise ValueError("pass either mask or causal=True, not both (as torch SDPA)")
        if scale is not None and (isinstance(scale, bool) or not isinstance(
                scale, int | float | np.floating) or not math.isfinite(float(scale))):
            raise ValueError(f"scale must be a finite number, not {scale!r}")
        g = hq // hk
        mq = g * sq
        cfg = self.config
        base = None
        if mask is not None:
            base = _mask_bits(mask, sq, sk)
        elif causal:
            base = np.where(np.tril(np.ones((sq, sk), bool)), np.uint16(0),
                            np.uint16(_NEG_INF)).astype(np.uint16)
        masked = base is not None or sk % cfg.cols != 0
        try:
            mt, ntk = attention_tiling(cfg, mq, sk, d, masked, sq if causal else None)
        except KernelError as exc:
            raise UnsupportedOp(str(exc)) from None
        mb, nbk = mt * cfg.tile_rows, ntk * cfg.cols
        nkb = ceil_div(sk, nbk)
        skpad = nkb * nbk
        full = np.full((mq, skpad), _NEG_INF, np.uint16)
        full[:, :sk] = 0 if base is None else np.tile(base, (g, 1))
        blocks = []
        for qb in range(ceil_div(mq, mb)):
            rows = full[qb * mb:(qb + 1) * mb]
            classes = []
            for j in range(nkb):
                width = ceil_div(min(nbk, sk - j * nbk), cfg.cols) * cfg.cols
                blk = rows[:, j * nbk:j * nbk + width]
                real = blk[:, :min(nbk, sk - j * nbk)]
                if (real == _NEG_INF).all():
                    classes.append("skip")
                elif not blk.any():
                    classes.append("none")
                else:
                    classes.append("mask")
            if all(c == "skip" for c in classes):
                classes[0] = "mask"   # fully masked rows: compute them (NaN, as torch)
            blocks.append(tuple(classes))
        spec = AttentionSpec(groups=bq * hk, mq=mq, sk=sk, d=d, mt=mt, ntk=ntk,
                             scale=scale_bits(d, scale), blocks=tuple(blocks), skpad=skpad)
        kernel = self._kernel("attention", spec, lambda: build_attention(cfg, spec))
        runs: list = []
        names: list[str] = []
        with self._temps() as temps:
            k_dev = self._upload(ko, temps, (bk * hk * sk, d))
            kp = self._pack_on_device(k_dev, bk * hk, sk, d, runs, names)
            temps.append(kp)
            q_dev = self._upload(qo, temps, (bq * hq * sq, d))
            v_dev = self._upload(vo, temps, (bk * hk * sk, d))
            args = {"q": q_dev.addr, "kp": kp.addr, "v": v_dev.addr, "mask": 0}
            if any(c == "mask" for row in blocks for c in row):
                m_dev = self.tensor(full.view(np.uint8).reshape(-1), dtype="uint8")
                temps.append(m_dev)
                args["mask"] = m_dev.addr
            out = self.empty((bq * hq * sq, d), "bf16")
            try:
                args["o"] = out.addr
                runs.append(self.run(kernel.blob, args=kernel.gprs(**args)))
                names.append(kernel.name)
            except BaseException:
                out.free()
                raise
        allowed = int((full[:, :sk] != _NEG_INF).sum()) * bq * hk
        self._record("attention", runs, names, 2 * allowed * d / cfg.macs_per_cycle)
        return to_kind(out, qo, qo.shape)

