"""Operand conversion for the op API: numpy / torch / DeviceTensor in, the same kind out.

Every op accepts host arrays (numpy ``float32`` or ``ml_dtypes.bfloat16``, torch ``float32``
or ``bfloat16``) and :class:`DeviceTensor` objects (bf16).  Host data is rounded to bf16 with
the engine's rule (``numerics.fp.f32_to_bf16``: RNE, FTZ, canonical NaN) and uploaded to a
temporary device buffer that the op frees again.  The result comes back as the kind of the
op's first tensor argument: numpy/torch with that argument's dtype (``float32`` results are the
exact widening of the engine's bf16 outputs), or a new bf16 :class:`DeviceTensor` that stays on
the device for the next op.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import ml_dtypes
import numpy as np

from unified_engine.numerics import fp

from .tensor import DeviceTensor

if typing.TYPE_CHECKING:
    from .engine import Engine

__all__ = ["Operand", "as_operand", "to_kind"]

_BF16 = np.dtype(ml_dtypes.bfloat16)


@dataclasses.dataclass
class Operand:
    """One op argument: bf16 bits on the host (``bits``) or a device tensor (``device``)."""

    name: str
    shape: tuple[int, ...]
    kind: str            # "numpy" | "torch" | "device"
    dtype: Any           # numpy / torch dtype of a host input
    bits: np.ndarray | None = None
    device: DeviceTensor | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def as_operand(x: Any, name: str) -> Operand:
    """Validate one tensor argument; raises ``TypeError`` for unsupported types/dtypes."""
    if isinstance(x, DeviceTensor):
        if x.dtype != "bf16":
            raise TypeError(f"{name}: device tensors must be bf16, got {x.dtype}")
        return Operand(name, x.shape, "device", None, device=x)
    if _is_torch(x):
        import torch

        if x.dtype not in (torch.float32, torch.bfloat16):
            raise TypeError(f"{name}: unsupported torch dtype {x.dtype}; allowed torch.float32 "
                            "and torch.bfloat16")
        t = x.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            bits = t.view(torch.int16).numpy().view(np.uint16).copy()
        else:
            bits = fp.f32_to_bf16(t.numpy())
        return Operand(name, tuple(t.shape), "torch", x.dtype, bits=bits)
    if isinstance(x, np.ndarray | np.generic | list | tuple):
        arr = np.asarray(x)
        if arr.dtype == _BF16:
            bits = arr.view(np.uint16).copy()
        elif arr.dtype == np.float32:
            bits = fp.f32_to_bf16(arr)
        elif isinstance(x, list | tuple):
            # A nested list becomes float64 (or int64) in numpy; say what was passed.
            raise TypeError(f"{name}: a Python {type(x).__name__} converts to numpy {arr.dtype}, "
                            "which the engine does not take; pass np.asarray(..., "
                            "dtype=np.float32)")
        else:
            raise TypeError(f"{name}: unsupported dtype {arr.dtype}; allowed numpy float32 and "
                            "ml_dtypes.bfloat16 (convert float64 explicitly)")
        return Operand(name, arr.shape, "numpy", arr.dtype, bits=np.ascontiguousarray(bits))
    raise TypeError(f"{name} must be a numpy array, a torch tensor or a DeviceTensor, not "
                    f"{type(x).__name__}")


def upload(engine: Engine, op: Operand, shape: tuple[int, ...] | None = None) -> DeviceTensor:
    """A device tensor holding the operand (the tensor itself for device operands)."""
    if op.device is not None:
        return op.device
    bits = op.bits if shape is None else op.bits.reshape(shape)
    return engine.tensor(bits.view(_BF16), dtype="bf16")


def to_kind(result: DeviceTensor, like: Operand, shape: tuple[int, ...]) -> Any:
    """Convert a bf16 device result to the kind/dtype of ``like`` (frees it unless device)."""
    if like.kind == "device":
        result.shape = tuple(shape)
        return result
    try:
        bits = result.bits().reshape(shape)
    finally:
        result.free()
    if like.kind == "torch":
        import torch

        t = torch.from_numpy(bits.view(np.int16).copy()).view(torch.bfloat16)
        return t if like.dtype == torch.bfloat16 else t.to(torch.float32)
    if like.dtype == _BF16:
        return bits.view(_BF16)
    return fp.bf16_to_f32(bits)
