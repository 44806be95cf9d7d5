"""Bit-exact golden model of the epilogue's activation block.

One fp32 datapath computes the **unified activation**

    y = (a + c·x) · σ(b·x) + d

with four fp32 parameters; the presets in :data:`ACTIVATIONS` give GELU (sigmoid form), SiLU,
sigmoid and tanh.  Three **bypass modes** share the block's output mux and do no arithmetic:
``identity`` (x itself), ``relu`` and ``clamp``.  Identity is a bypass rather than the block with
``b = 0, c = 2`` because ``2·x`` overflows for |x| >= 2**127, so the block would not be the
identity there.

Operation order (every step is an fp32 unit of :mod:`.fp` or :mod:`.transcendental`)::

    z = b ⊗ x          # f32 multiply (zero-dominant, see below)
    s = sigmoid(z)     # transcendental.sigmoid: reciprocal(1 + exp(-z))
    u = c ⊗ x          # f32 multiply (zero-dominant)
    g = a + u          # f32_add
    p = g ⊗ s          # f32 multiply (zero-dominant)
    y = p + d          # f32_add

**Zero-dominant multiply.** The block's three multipliers return a signed zero (sign = XOR of
the operand signs) when either operand is ±0, *even if the other is ±Inf*; a NaN operand still
gives NaN.  This differs from IEEE (0·Inf = NaN) only for infinite x, and it makes every preset
return its mathematical limit there: sigmoid(±Inf) = 1 / 0, tanh(±Inf) = ±1, GELU/SiLU(+Inf) =
+Inf and GELU/SiLU(-Inf) = +0 (IEEE order would give NaN for all four of those with a zero
coefficient or a zero sigmoid).  A NaN input gives the canonical NaN in every mode, the
bypass modes included.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from .fp import f32_add, f32_from_bits, f32_max, f32_min, f32_mul, f32_order_key, ftz32
from .transcendental import _as_f32, sigmoid

__all__ = [
    "ACTIVATIONS",
    "BYPASS_MODES",
    "MODES",
    "ActivationParams",
    "activate",
    "clamp",
    "relu",
    "unified_activation",
]


class ActivationParams(NamedTuple):
    """The four fp32 parameters of ``y = (a + c·x)·σ(b·x) + d``."""

    a: np.float32
    b: np.float32
    c: np.float32
    d: np.float32


def _params(a: float, b: float, c: float, d: float) -> ActivationParams:
    return ActivationParams(np.float32(a), np.float32(b), np.float32(c), np.float32(d))


#: Presets of the unified block.  GELU uses the sigmoid approximation x·σ(1.702x) with 1.702
#: rounded to fp32 (1.70200002193450927734375); tanh(x) = 2σ(2x) - 1.
ACTIVATIONS: Mapping[str, ActivationParams] = MappingProxyType(
    {
        "gelu": _params(0.0, 1.702, 1.0, 0.0),
        "silu": _params(0.0, 1.0, 1.0, 0.0),
        "sigmoid": _params(1.0, 1.0, 0.0, 0.0),
        "tanh": _params(2.0, 2.0, 0.0, -1.0),
    }
)

#: Modes that bypass the arithmetic through the output mux.
BYPASS_MODES: tuple[str, ...] = ("identity", "relu", "clamp")

#: Every mode :func:`activate` accepts: the presets, ``"unified"`` (explicit parameters) and
#: the bypass modes.
MODES: tuple[str, ...] = (*ACTIVATIONS, "unified", *BYPASS_MODES)


def _f32_scalar(value, name: str, *, allow_inf: bool = False) -> np.float32:
    """Validate one fp32 parameter: a real scalar, exactly representable, not NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a real number (an fp32 value), got {value!r}")
    v32 = np.float32(value)
    if np.isnan(v32):
        raise ValueError(f"{name} must not be NaN")
    if np.isinf(v32) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {value!r}")
    if not np.isinf(v32) and float(v32) != float(value):
        raise ValueError(
            f"{name}={value!r} is not exactly representable in fp32; pass numpy.float32({value!r})"
        )
    return ftz32(v32)[()]


def _mul_zero_dominant(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """f32_mul, except that ±0 × ±Inf is a signed zero instead of NaN (NaN still wins)."""
    prod = f32_mul(p, q)
    p, q = np.broadcast_arrays(ftz32(p), ftz32(q))
    zero_times_inf = ((p == 0) & np.isinf(q)) | (np.isinf(p) & (q == 0))
    sign = (p.view(np.uint32) ^ q.view(np.uint32)) & np.uint32(0x80000000)
    return np.where(zero_times_inf, f32_from_bits(sign), prod).astype(np.float32)


def unified_activation(x, a, b, c, d) -> np.ndarray:
    """fp32 ``(a + c·x)·σ(b·x) + d`` in the block's fixed operation order (module docstring).

    Parameters
    ----------
    x:
        fp32 values (numpy float32, or a real array exactly representable in fp32).
    a, b, c, d:
        finite fp32 scalars (exactly representable; NaN/Inf rejected).

    Returns
    -------
    numpy.ndarray of float32 with the shape of ``x``.
    """
    x32 = _as_f32(x, "unified_activation")
    a32, b32, c32, d32 = (
        _f32_scalar(v, n) for v, n in ((a, "a"), (b, "b"), (c, "c"), (d, "d"))
    )
    z = _mul_zero_dominant(b32, x32)
    s = sigmoid(z)
    u = _mul_zero_dominant(c32, x32)
    g = f32_add(a32, u)
    p = _mul_zero_dominant(g, s)
    return f32_add(p, d32).reshape(x32.shape)


def relu(x) -> np.ndarray:
    """fp32 ``max(x, +0)`` with the ``f32_max`` rules: -0 → +0, NaN → canonical NaN."""
    x32 = _as_f32(x, "relu")
    return f32_max(x32, np.float32(0.0)).reshape(x32.shape)


def clamp(x, lo, hi) -> np.ndarray:
    """fp32 ``min(max(x, lo), hi)`` with the ``f32_max``/``f32_min`` rules (NaN x → NaN).

    ``lo`` and ``hi`` are fp32 scalars (±Inf allowed, NaN not) with ``lo <= hi`` in the total
    order where -0 < +0; so clamp(-0, +0, hi) = +0.
    """
    x32 = _as_f32(x, "clamp")
    lo32 = _f32_scalar(lo, "lo", allow_inf=True)
    hi32 = _f32_scalar(hi, "hi", allow_inf=True)
    if f32_order_key(lo32) > f32_order_key(hi32):
        raise ValueError(f"clamp needs lo <= hi, got lo={lo!r}, hi={hi!r}")
    return f32_min(f32_max(x32, lo32), hi32).reshape(x32.shape)


def activate(x, mode: str, params=None) -> np.ndarray:
    """The activation block's single entry point.

    Parameters
    ----------
    x:
        fp32 values.
    mode:
        one of :data:`MODES`: a preset name of :data:`ACTIVATIONS` (``params`` must be None),
        ``"unified"`` (``params = (a, b, c, d)``), ``"identity"`` / ``"relu"`` (``params`` must
        be None) or ``"clamp"`` (``params = (lo, hi)``).
    params:
        the mode's parameters, as above.

    Returns
    -------
    numpy.ndarray of float32 with the shape of ``x``.  ``identity`` returns x with the storage
    rule applied (subnormals → signed zero, NaN → canonical NaN).
    """
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"unknown activation mode {mode!r}; allowed: {', '.join(MODES)}")
    if mode in ACTIVATIONS or mode in ("identity", "relu"):
        if params is not None:
            raise ValueError(f"activation mode {mode!r} takes no params, got {params!r}")
        if mode == "identity":
            return _as_f32(x, "activate")  # the storage rule: FTZ, canonical NaN
        if mode == "relu":
            return relu(x)
        return unified_activation(x, *ACTIVATIONS[mode])
    expected = 4 if mode == "unified" else 2
    if not isinstance(params, tuple | list) or len(params) != expected:
        names = "(a, b, c, d)" if mode == "unified" else "(lo, hi)"
        raise ValueError(f"activation mode {mode!r} needs params={names}, got {params!r}")
    if mode == "unified":
        return unified_activation(x, *params)
    return clamp(x, *params)
