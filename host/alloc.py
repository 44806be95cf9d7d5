"""Device-DRAM allocator: named regions, aligned first-fit blocks, coalescing frees."""

from __future__ import annotations

import dataclasses
import itertools

from .errors import OutOfDeviceMemory

__all__ = ["Allocation", "Allocator"]


@dataclasses.dataclass(frozen=True)
class Allocation:
    """A block of device DRAM: ``[addr, addr + nbytes)`` in ``region``."""

    addr: int
    nbytes: int
    region: str

    @property
    def end(self) -> int:
        return self.addr + self.nbytes


def _int(name: str, value, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int ≥ {low}, not {value!r}")
    return value


class Allocator:
    """First-fit allocator over disjoint named regions of device DRAM.

    Parameters
    ----------
    regions:
        ``{name: (base, size)}``; regions must not overlap.
    alignment:
        Default alignment of every block (a power of two).
    """

    def __init__(self, regions: dict[str, tuple[int, int]], alignment: int = 64) -> None:
        if not regions:
            raise ValueError("Allocator needs at least one region")
        self.alignment = self._check_align(alignment)
        self.regions: dict[str, tuple[int, int]] = {}
        self._free: dict[str, list[list[int]]] = {}
        self._live: dict[int, Allocation] = {}
        spans = []
        for name, (base, size) in regions.items():
            _int(f"region {name!r} base", base)
            _int(f"region {name!r} size", size, 1)
            self.regions[name] = (base, size)
            self._free[name] = [[base, base + size]]
            spans.append((base, base + size, name))
        spans.sort()
        for (_, end, a), (start, _, b) in itertools.pairwise(spans):
            if start < end:
                raise ValueError(f"regions {a!r} and {b!r} overlap")

    @staticmethod
    def _check_align(alignment) -> int:
        _int("alignment", alignment, 1)
        if alignment & (alignment - 1):
            raise ValueError(f"alignment must be a power of two, not {alignment}")
        return alignment

    def alloc(self, nbytes: int, region: str, alignment: int | None = None) -> Allocation:
        """A block of ``nbytes`` (≥ 1) in ``region``; ``OutOfDeviceMemory`` if none fits."""
        _int("nbytes", nbytes, 1)
        if region not in self.regions:
            raise ValueError(f"unknown region {region!r}; regions: {', '.join(self.regions)}")
        align = self.alignment if alignment is None else self._check_align(alignment)
        free = self._free[region]
        for i, (start, end) in enumerate(free):
            addr = -(-start // align) * align
            if addr + nbytes <= end:
                pieces = [[start, addr]] if addr > start else []
                if addr + nbytes < end:
                    pieces.append([addr + nbytes, end])
                free[i:i + 1] = pieces
                block = Allocation(addr, nbytes, region)
                self._live[addr] = block
                return block
        largest = max((e - s for s, e in free), default=0)
        raise OutOfDeviceMemory(
            f"region {region!r} cannot fit {nbytes} bytes (alignment {align}); "
            f"free {self.free_bytes(region)} bytes, largest block {largest} bytes")

    def free(self, block: Allocation) -> None:
        """Return ``block``; freeing twice or a foreign block raises ``ValueError``."""
        if self._live.get(getattr(block, "addr", None)) != block:
            raise ValueError(f"{block!r} is not a live allocation of this allocator")
        del self._live[block.addr]
        free = self._free[block.region]
        free.append([block.addr, block.end])
        free.sort()
        merged: list[list[int]] = []
        for start, end in free:
            if merged and merged[-1][1] == start:
                merged[-1][1] = end
            else:
                merged.append([start, end])
        self._free[block.region] = merged

    def free_bytes(self, region: str) -> int:
        """Total free bytes of ``region``."""
        return sum(e - s for s, e in self._free[region])

    def region_of(self, addr: int) -> str | None:
        """The region containing ``addr`` (or None)."""
        for name, (base, size) in self.regions.items():
            if base <= addr < base + size:
                return name
        return None
