"""Device-side plumbing of the models: tensor views, scoped frees, a row-copy kernel, cycles.

* :func:`view` — a :class:`DeviceTensor` over part of another one (a row of the hidden state,
  one position's RoPE table rows, a head-major reinterpretation); views never free memory.
* :class:`Scope` — frees the intermediate tensors of a block when it ends (also on errors), so
  a failed step leaves no device memory behind.
* :func:`copy_rows` — a LOAD/STORE program that copies ``groups × rows`` rows between device
  buffers with different group pitches: this is how new keys/values are appended to the KV
  cache without leaving the device.  Addresses are GPR arguments, so one compiled program per
  ``(groups, rows, row_bytes, pitches)`` serves every decode position (``Engine.kernel_cache``).
* :class:`CycleLog` — device cycles per op name of everything a model ran, so a forward pass
  can be split into prefill and decode and into attention, MLP, LM head, …
* :func:`run_timeout` — a longer host timeout for the programs the ops run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from unified_engine.asm import Addr
from unified_engine.config import EngineConfig
from unified_engine.firmware.common import Kernel, RegAlloc, SpadPlan, ceil_div, new_program
from unified_engine.host.alloc import Allocation
from unified_engine.host.tensor import DTYPES, DeviceTensor

__all__ = ["CopySpec", "CycleLog", "Scope", "TensorView", "build_copy", "copy_rows",
           "run_timeout", "view"]


class TensorView(DeviceTensor):
    """A tensor over memory owned by another tensor; :meth:`free` does nothing."""

    def free(self) -> None:  # the owner frees the block
        pass


def view(t: DeviceTensor, shape: tuple[int, ...], offset: int = 0) -> TensorView:
    """``shape`` elements of ``t`` starting ``offset`` elements in (row-major, same dtype)."""
    item = DTYPES[t.dtype].itemsize
    nbytes = math.prod(shape) * item
    if offset < 0 or (offset * item) + nbytes > t.nbytes:
        raise ValueError(f"view of {shape} at element {offset} exceeds the tensor {t.shape}")
    block = Allocation(t.addr + offset * item, nbytes, t.block.region)
    return TensorView(t.engine, block, tuple(shape), t.dtype)


class Scope:
    """Collects device tensors and frees them at the end of a ``with`` block."""

    def __init__(self) -> None:
        self._owned: list[DeviceTensor] = []

    def __enter__(self) -> Scope:
        return self

    def __exit__(self, *exc: Any) -> None:
        for t in reversed(self._owned):
            t.free()
        self._owned.clear()

    def __call__(self, t: Any) -> Any:
        """Own ``t`` (freed on exit); returns it."""
        if isinstance(t, DeviceTensor):
            self._owned.append(t)
        return t

    def release(self, t: DeviceTensor) -> DeviceTensor:
        """Stop owning ``t`` (the caller keeps it alive)."""
        self._owned = [o for o in self._owned if o is not t]
        return t


@dataclasses.dataclass(frozen=True)
class CopySpec:
    """Static parameters of :func:`build_copy`: ``groups`` groups of ``rows`` rows of
    ``row_bytes``; rows are contiguous inside a group; groups start ``src_pitch`` /
    ``dst_pitch`` bytes apart."""

    groups: int
    rows: int
    row_bytes: int
    src_pitch: int
    dst_pitch: int


def build_copy(config: EngineConfig, spec: CopySpec) -> Kernel:
    """Copy program: per group, blocks of rows LOADed into one of two scratchpad buffers and
    STOREd (tokens LOAD → STORE and STORE → LOAD double-buffer them, so reads overlap writes).
    Arguments: ``src``, ``dst`` (byte addresses).  DRAM-bound: each byte is read and written
    once."""
    b = config.axi_bytes
    pitch = ceil_div(spec.row_bytes, b)            # scratchpad rows per copied row
    half = config.scratchpad_rows // 2
    if pitch > half:
        raise ValueError(f"a row of {spec.row_bytes} bytes does not fit half the scratchpad")
    rb = max(1, min(spec.rows, half // pitch, 1 << 12))
    plan = SpadPlan(config)
    banks = (plan.alloc("bank0", rb * pitch), plan.alloc("bank1", rb * pitch))
    p = new_program(config)
    reg = RegAlloc(config, loops=0)
    r_src, r_dst = reg(), reg()
    p.ar_set_gpr(1, r_src)
    p.ar_set_gpr(2, r_dst)
    p.token("store", "load")
    p.token("store", "load")
    step = 0
    for g in range(spec.groups):
        for start in range(0, spec.rows, rb):
            n = min(rb, spec.rows - start)
            bank = banks[step % 2]
            step += 1
            off_src = g * spec.src_pitch + start * spec.row_bytes
            off_dst = g * spec.dst_pitch + start * spec.row_bytes
            p.load(dram=Addr(off_src, 1), sram=bank, rows=n, row_bytes=spec.row_bytes,
                   dram_stride=spec.row_bytes, sram_stride=pitch * b, wait="store",
                   signal="store")
            p.store(dram=Addr(off_dst, 2), sram=bank, rows=n, row_bytes=spec.row_bytes,
                    dram_stride=spec.row_bytes, sram_stride=pitch * b, wait="load",
                    signal="load")
    p.halt()
    name = (f"copy(groups={spec.groups}, rows={spec.rows}, row_bytes={spec.row_bytes}, "
            f"pitches={spec.src_pitch}/{spec.dst_pitch})")
    return Kernel(name, config, p.encode(), {"src": r_src.index, "dst": r_dst.index},
                  {"rb": rb})


def copy_rows(engine: Any, src: int, dst: int, spec: CopySpec) -> Any:
    """Run the (cached) copy program of ``spec`` from byte address ``src`` to ``dst``;
    returns the :class:`~unified_engine.host.RunResult`."""
    kernel = engine.kernel_cache.get("models.copy", engine.config, spec,
                                     lambda: build_copy(engine.config, spec))
    return engine.run(kernel.blob, args=kernel.gprs(src=src, dst=dst))


class CycleLog:
    """Device cycles and op counts by name, summed since the last :meth:`reset`."""

    def __init__(self) -> None:
        self.cycles: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def add(self, name: str, cycles: int) -> None:
        self.cycles[name] = self.cycles.get(name, 0) + int(cycles)
        self.calls[name] = self.calls.get(name, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.cycles.values())

    def reset(self) -> None:
        self.cycles.clear()
        self.calls.clear()

    @contextmanager
    def section(self) -> Iterator[dict[str, int]]:
        """Yields a dict that is filled, on exit, with the cycles logged inside the block."""
        before = dict(self.cycles)
        out: dict[str, int] = {}
        try:
            yield out
        finally:
            for k, v in self.cycles.items():
                if v != before.get(k, 0):
                    out[k] = v - before.get(k, 0)


@contextmanager
def run_timeout(engine: Any, seconds: float | None) -> Iterator[None]:
    """Inside the block, programs that ``engine``'s ops start wait up to ``seconds`` of host
    time (``None``: unchanged).

    The op API calls ``Engine.run`` with its default timeout (60 s), which is host time: on
    the ISA simulator a 49 152-column quantized LM head over 139 rows simulates for longer
    than that on a loaded machine, and a Verilator run of a whole model would too.  The op
    API has no timeout parameter, so the engine's bound ``run`` is shadowed for the block.
    """
    if seconds is None or "run" in engine.__dict__:
        yield
        return
    engine.run = functools.partial(type(engine).run, engine, timeout=seconds)
    try:
        yield
    finally:
        del engine.run
