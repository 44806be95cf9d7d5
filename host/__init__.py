"""Host runtime: ``Engine``, device transports and models (``unified_engine.host``).

``Engine.open("model")`` drives the bit-exact ISA simulator; the ``Device`` interface is what
the Verilator and XDMA backends will implement.
"""

from .alloc import Allocation, Allocator
from .device import Device
from .engine import BACKENDS, Engine, RunResult, TraceEntry, default_regions
from .errors import (
    BuildIdMismatch,
    DeviceBusy,
    DeviceError,
    DeviceTimeout,
    EngineError,
    NotAnEngine,
    OutOfDeviceMemory,
    RaceError,
)
from .ops import OpRun, UnsupportedOp
from .tensor import DTYPES, DeviceTensor
from .timing import TimingParams
from .weights import PackedWeight

__all__ = [
    "BACKENDS",
    "DTYPES",
    "Allocation",
    "Allocator",
    "BuildIdMismatch",
    "Device",
    "DeviceBusy",
    "DeviceError",
    "DeviceTensor",
    "DeviceTimeout",
    "Engine",
    "EngineError",
    "NotAnEngine",
    "OpRun",
    "OutOfDeviceMemory",
    "PackedWeight",
    "RaceError",
    "RunResult",
    "TimingParams",
    "TraceEntry",
    "UnsupportedOp",
    "default_regions",
]
