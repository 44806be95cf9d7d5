"""Device tensors: typed views of device DRAM with numpy and (optional) torch interop."""

from __future__ import annotations

import math
import typing
from typing import Any

import ml_dtypes
import numpy as np

from unified_engine.numerics import fp

from .alloc import Allocation

if typing.TYPE_CHECKING:
    from .engine import Engine

__all__ = ["DTYPES", "DeviceTensor", "to_numpy"]

#: Device dtypes and their host numpy dtype; bf16 travels as uint16 bit patterns.
DTYPES: dict[str, np.dtype] = {
    "bf16": np.dtype(ml_dtypes.bfloat16),
    "fp32": np.dtype(np.float32),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "int16": np.dtype(np.int16),
    "uint16": np.dtype(np.uint16),
    "int32": np.dtype(np.int32),
    "uint32": np.dtype(np.uint32),
}


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("torch interop needs PyTorch (pip install torch)") from None
    return torch


def to_numpy(data: Any, dtype: str | None) -> tuple[np.ndarray, str]:
    """Convert host data to ``(little-endian array of the device dtype, dtype name)``.

    numpy ``bfloat16`` and ``float32`` map to ``bf16``/``fp32``; ``float32`` data stored as
    ``bf16`` is rounded with the engine's rule (``numerics.fp.f32_to_bf16``: RNE, FTZ,
    canonical NaN).  float64 is refused (convert explicitly, to avoid double rounding).
    torch tensors (including ``torch.bfloat16``) are accepted when torch is installed.
    """
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"unknown device dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    if type(data).__module__.split(".")[0] == "torch":
        torch = _torch()
        t = data.detach().cpu().contiguous()
        data = t.view(torch.int16).numpy().view(ml_dtypes.bfloat16) \
            if t.dtype == torch.bfloat16 else t.numpy()
    arr = np.asarray(data)
    if arr.dtype == np.float64:
        raise TypeError("float64 data is ambiguous on the device: convert it to float32 or "
                        "ml_dtypes.bfloat16 first")
    if dtype is None:
        names = {v: k for k, v in DTYPES.items()}
        if arr.dtype not in names:
            raise TypeError(f"no device dtype for {arr.dtype}; pass dtype= (one of "
                            f"{', '.join(DTYPES)})")
        dtype = names[arr.dtype]
    if dtype == "bf16" and arr.dtype == np.float32:
        arr = fp.f32_to_bf16(arr).view(ml_dtypes.bfloat16)
    elif arr.dtype != DTYPES[dtype]:
        target = DTYPES[dtype]
        fits = np.can_cast(arr.dtype, target, casting="safe")
        if not fits and arr.dtype.kind in "iub" and target.kind in "iu":
            info = np.iinfo(target)
            fits = arr.size == 0 or (int(arr.min()) >= info.min and int(arr.max()) <= info.max)
        if not fits:
            raise TypeError(f"cannot store {arr.dtype} data as {dtype} without loss")
        arr = arr.astype(target)
    return np.ascontiguousarray(arr).astype(DTYPES[dtype].newbyteorder("<"), copy=False), dtype


class DeviceTensor:
    """A dense row-major tensor in device DRAM.

    Attributes
    ----------
    addr : int
        Device byte address of element 0.
    shape : tuple[int, ...]
    dtype : str
        One of :data:`DTYPES`.
    """

    def __init__(self, engine: Engine, block: Allocation, shape: tuple[int, ...],
                 dtype: str) -> None:
        self.engine = engine
        self.block = block
        self.shape = tuple(shape)
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"DeviceTensor(shape={self.shape}, dtype={self.dtype}, addr={self.addr:#x})"

    @property
    def addr(self) -> int:
        return self.block.addr

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPES[self.dtype].itemsize

    def numpy(self) -> np.ndarray:
        """A host copy (bf16 as ``ml_dtypes.bfloat16``)."""
        raw = self.engine.device.dram_read(self.addr, self.nbytes)
        return np.frombuffer(raw, DTYPES[self.dtype].newbyteorder("<")).reshape(self.shape) \
            .astype(DTYPES[self.dtype])

    def bits(self) -> np.ndarray:
        """A host copy of the raw bits (bf16 as ``uint16``, fp32 as ``uint32``)."""
        arr = self.numpy()
        view = {"bf16": np.uint16, "fp32": np.uint32}.get(self.dtype)
        return arr.view(view) if view else arr

    def torch(self):
        """A host copy as a torch tensor (bf16 as ``torch.bfloat16`` through a bit view)."""
        torch = _torch()
        arr = self.numpy()
        if self.dtype == "bf16":
            return torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
        return torch.from_numpy(arr.copy())

    def write(self, data: Any) -> None:
        """Overwrite the tensor with host data of the same shape (converted as on creation)."""
        arr, _ = to_numpy(data, self.dtype)
        if arr.shape != self.shape:
            raise ValueError(f"shape {arr.shape} does not match the tensor's {self.shape}")
        self.engine.device.dram_write(self.addr, arr.tobytes())

    def free(self) -> None:
        """Release the DRAM block."""
        self.engine.allocator.free(self.block)
