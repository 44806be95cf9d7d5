"""The kernel library: programs for each op, written with the ISA assembler
(``unified_engine.firmware``).

Each op has a generator that builds a :class:`~.common.Kernel` (program image + GPR argument
map) from static parameters; :class:`~.cache.ProgramCache` keeps compiled kernels.  The host op
API (``unified_engine.host.Engine.matmul`` …) is the user-facing layer on top.
"""

from .cache import ProgramCache
from .common import Kernel, KernelError

__all__ = ["Kernel", "KernelError", "ProgramCache"]
