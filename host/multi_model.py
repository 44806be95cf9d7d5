"""E model engines of one SoC: one DRAM image, one sync-flag word, stepped together in time.

:class:`MultiModelDevice` holds the shared DRAM image, :class:`FlagBus` (the SoC's 32-bit flag
word and the scheduler of the engines' :class:`~.isasim.Machine` s) and one
:class:`EngineModel` per engine: a :class:`~.model.ModelDevice` (the usual CSR map) whose
engine is stepped by the bus instead of alone.

Flag-bus semantics (``rtl/soc.py``, ``rtl/dispatch.py``)
    * Engine ``i``'s cycle ``t`` is the SoC cycle ``offset[i] + t``, where ``offset[i]`` is the
      SoC cycle of its START (0 for every engine of :meth:`MultiEngine.run_all`).
    * A SYNC SET / CLEAR pulses in the cycle its drain ends; the word changes one cycle later:
      ``flags ← (flags | OR of every engine's set) & ~(OR of every engine's clear)``, so a clear
      wins over a set of the same cycle, as in the RTL.
    * A SYNC WAIT dispatched at cycle ``t`` tests the word at cycles ``t … t + timeout`` and
      retires the cycle after the first match (``t + 1`` when it matches at once, exactly the
      single-engine model's cost), else stops with SYNC_TIMEOUT at ``t + timeout``.

Scheduling
    The bus always advances the engine whose next event is earliest: a running engine's key is
    its dispatcher clock (every SET/CLEAR it will issue happens at or after it), a parked WAIT's
    key is its decision cycle against the flag changes known so far (its first match, or its
    timeout).  A WAIT is decided only when its key is the smallest, so every flag change that
    could still come is visible after that cycle: the decision is final and cycle-consistent
    with the timing model.  If every engine waits and none matches, each one times out at its
    own deadline (a deadlock ends in SYNC_TIMEOUT on every waiting engine).

Host writes of SYNC_FLAGS / SYNC_SET / SYNC_CLEAR change the word "now" (as on the single
engine, flags a program waits for must be set before its START; a host write cannot race a
simulated engine).  The engines' DMA shares DRAM by the rule of ``host.multi``
(:func:`~.multi.shared_timing`, set per run by :meth:`MultiModelDevice.share_dram`), not by
arbitration cycle by cycle.
"""

from __future__ import annotations

import bisect
import time

import numpy as np

from unified_engine.config import EngineConfig
from unified_engine.isa import SYNC_FLAGS, Instruction, SyncOp

from .isasim import Machine, RunState
from .model import ModelDevice
from .timing import TimingParams

__all__ = ["EngineModel", "FlagBus", "MultiModelDevice"]

_WORD = (1 << SYNC_FLAGS) - 1
_SYNC_CSRS = ("SYNC_FLAGS", "SYNC_SET", "SYNC_CLEAR")


class FlagBus:
    """The shared flag word of E :class:`Machine` s and their joint scheduler (module doc)."""

    def __init__(self, machines: list[Machine]) -> None:
        self.machines = machines
        self._index = {id(m): i for i, m in enumerate(machines)}
        self.base = 0  # the word before the first recorded change
        self._changes: dict[int, list[int]] = {}  # SoC cycle → [set mask, clear mask]
        self._cycles: list[int] = []  # sorted keys of _changes
        self.offset = [0] * len(machines)
        self.active: set[int] = set()  # engines started and not soft-reset
        self.parked: dict[int, tuple[int, int, int, int]] = {}  # i → (t0, value, mask, timeout)
        self._decided: dict[int, tuple[int, bool]] = {}

    # ----- Machine hooks ----------------------------------------------------------------------

    def park(self, machine: Machine, st: RunState, ins: Instruction) -> None:
        """A SYNC WAIT was dispatched at ``st.t``: hold it until it can be decided."""
        i = self._index[id(machine)]
        self.parked[i] = (self.offset[i] + st.t, ins["value"], ins["mask"], ins["timeout"])

    def pulse(self, machine: Machine, t: int, op: SyncOp, mask: int) -> None:
        """SYNC SET / CLEAR (FENCE: nothing) of ``machine`` in its cycle ``t``."""
        if op is SyncOp.FENCE or not mask:
            return
        c = self.offset[self._index[id(machine)]] + t
        change = self._changes.get(c)
        if change is None:
            change = self._changes[c] = [0, 0]
            bisect.insort(self._cycles, c)
        change[0 if op is SyncOp.SET else 1] |= mask
        self._decided.clear()

    # ----- the word -------------------------------------------------------------------------

    def word(self) -> int:
        """The word after every recorded change."""
        w = self.base
        for c in self._cycles:
            s, k = self._changes[c]
            w = (w | s) & ~k & _WORD
        return w

    def host_write(self, name: str, value: int) -> None:
        """A host write of SYNC_FLAGS (the word), SYNC_SET or SYNC_CLEAR (bits)."""
        w = self._collapse()
        if name == "SYNC_FLAGS":
            w = value
        elif name == "SYNC_SET":
            w |= value
        else:
            w &= ~value
        self.base = w & _WORD
        self._decided.clear()

    def _collapse(self) -> int:
        """Fold the recorded changes into ``base`` (their cycles no longer matter)."""
        self.base = self.word()
        self._changes.clear()
        self._cycles.clear()
        return self.base

    # ----- run control ----------------------------------------------------------------------

    def running(self) -> list[int]:
        """Engines with a run that has not stopped."""
        return [i for i in sorted(self.active)
                if self.machines[i].state is not None and not self.machines[i].state.stopped]

    def now(self) -> int:
        """The latest SoC cycle a running engine has reached (0 when none runs)."""
        return max((self.offset[i] + self.machines[i].state.t for i in self.running()),
                   default=0)

    def starting(self, i: int, offset: int | None = None) -> None:
        """Engine ``i`` is about to START at SoC cycle ``offset`` (default :meth:`now`).  With
        no engine running, time restarts at 0 and the recorded changes are folded."""
        if not self.running():
            self._collapse()
            offset = 0 if offset is None else offset
        self.offset[i] = self.now() if offset is None else offset
        self.parked.pop(i, None)
        self._decided.pop(i, None)
        self.active.add(i)

    def reset(self, i: int) -> None:
        """Engine ``i`` was soft-reset."""
        self.active.discard(i)
        self.parked.pop(i, None)
        self._decided.pop(i, None)

    def _decide(self, i: int) -> tuple[int, bool]:
        """(cycle, matched) of parked engine ``i`` against the changes known now."""
        cached = self._decided.get(i)
        if cached is not None:
            return cached
        t0, value, mask, timeout = self.parked[i]
        w = self.base
        k = 0
        while k < len(self._cycles) and self._cycles[k] < t0:
            s, c = self._changes[self._cycles[k]]
            w = (w | s) & ~c & _WORD
            k += 1
        out = (t0 + timeout, False)
        if not (w ^ value) & mask:
            out = (t0, True)
        else:
            for c in self._cycles[k:]:
                if c + 1 > t0 + timeout:
                    break
                s, cl = self._changes[c]
                w = (w | s) & ~cl & _WORD
                if not (w ^ value) & mask:
                    out = (c + 1, True)
                    break
        self._decided[i] = out
        return out

    def _key(self, i: int) -> int:
        if i in self.parked:
            return self._decide(i)[0]
        return self.offset[i] + self.machines[i].state.t

    def advance(self, deadline: float, target: int | None = None) -> None:
        """Step the engines in time order until none runs (or ``target`` has stopped), or the
        wall-clock ``deadline`` (``time.monotonic()``) passes."""
        while True:
            running = self.running()
            if not running or (target is not None and target not in running):
                return
            if time.monotonic() > deadline:
                return
            keys = sorted((self._key(i), i) for i in running)
            i = keys[0][1]
            limit = keys[1][0] if len(keys) > 1 else None
            machine = self.machines[i]
            if i in self.parked:
                at, matched = self._decide(i)
                del self.parked[i]
                self._decided.pop(i, None)
                machine.finish_wait(at - self.offset[i] if matched else None,
                                    self._word_at(at))
                continue
            # run this engine while it stays the earliest (a burst, checked every step)
            steps = 0
            while True:
                if machine.run(max_instructions=1) or i in self.parked:
                    break
                steps += 1
                if limit is not None and self.offset[i] + machine.state.t > limit:
                    break
                if steps % 256 == 0 and time.monotonic() > deadline:
                    return

    def _word_at(self, cycle: int) -> int:
        """The word engines see at SoC cycle ``cycle``."""
        w = self.base
        for c in self._cycles:
            if c >= cycle:
                break
            s, k = self._changes[c]
            w = (w | s) & ~k & _WORD
        return w


class EngineModel(ModelDevice):
    """Engine ``index`` of a :class:`MultiModelDevice`: a :class:`ModelDevice` on the shared
    DRAM whose SYNC registers are the SoC's flag word and whose engine the bus steps."""

    def __init__(self, bus: FlagBus | None, config: EngineConfig, index: int, dram: np.ndarray,
                 timing: TimingParams | None, build_id: int | None) -> None:
        super().__init__(config, dram_bytes=dram.size, timing=timing, engine_index=index,
                         build_id=build_id, dram=dram)
        self.bus = bus
        self.index = index

    def csr_write(self, offset: int, value: int) -> None:
        r = self._register(offset)
        if r.name in _SYNC_CSRS:
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not 0 <= value < 1 << 32:
                raise ValueError(f"CSR value must be a 32-bit unsigned int, not {value!r}")
            self.bus.host_write(r.name, value)
            return
        super().csr_write(offset, value)

    def _read(self, name: str) -> int:
        if name == "SYNC_FLAGS":
            return self.bus.word()
        return super()._read(name)

    def _start(self) -> None:
        if self._busy:
            return
        self.bus.starting(self.index)
        super()._start()

    def _soft_reset(self) -> None:
        super()._soft_reset()
        self.bus.reset(self.index)

    def _advance(self, deadline: float) -> None:
        self.bus.advance(deadline, target=self.index)
        st = self.machine.state
        self._busy = st is not None and not st.stopped


class MultiModelDevice:
    """E model engines sharing one DRAM image of ``dram_bytes`` and one flag word.

    ``timing`` applies to every engine, its DRAM bandwidth divided by :meth:`share_dram`
    under the ``dram_share`` rule (:func:`~.multi.shared_timing`); ``build_id`` overrides the
    BUILD_ID they report.
    """

    def __init__(self, config: EngineConfig, engines: int, *, dram_bytes: int = 1 << 30,
                 timing: TimingParams | None = None, dram_share: str = "fair",
                 build_id: int | None = None) -> None:
        from .multi import shared_timing

        shared_timing(config, 1, dram_share)  # validates dram_share
        if isinstance(dram_bytes, bool) or not isinstance(dram_bytes, int) or \
                not 4096 <= dram_bytes <= 1 << config.axi_addr_width:
            raise ValueError(f"dram_bytes={dram_bytes!r} must be an int in 4096…2**"
                             f"{config.axi_addr_width} (axi_addr_width)")
        self.config = config
        self.dram = np.zeros(dram_bytes, np.uint8)
        self.views = [EngineModel(None, config, i, self.dram, timing, build_id)
                      for i in range(engines)]
        self.bus = FlagBus([v.machine for v in self.views])
        for v in self.views:
            v.bus = v.machine.flag_bus = self.bus
        self.timing = timing or TimingParams.for_config(config)
        self.dram_share = dram_share

    def share_dram(self, engines: int) -> None:
        """The next runs share DRAM among ``engines`` engines (``host.multi.shared_timing``;
        1: the whole bandwidth, as a lone engine has)."""
        from .multi import shared_timing

        timing = shared_timing(self.config, engines, self.dram_share, self.timing)
        for v in self.views:
            v.machine.timing = timing

    @property
    def dram_size(self) -> int:
        return self.dram.size

    def engine(self, index: int) -> EngineModel:
        """The ``Device`` of engine ``index``."""
        return self.views[index]

    def wait_all(self, timeout: float) -> bool:
        """Step every running engine until all stopped (True) or ``timeout`` seconds."""
        self.bus.advance(time.monotonic() + max(0.0, timeout))
        for v in self.views:
            st = v.machine.state
            v._busy = st is not None and not st.stopped and v._busy
        return not self.bus.running()

    def close(self) -> None:
        """Nothing to release (the image is garbage-collected)."""
