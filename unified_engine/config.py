"""``EngineConfig``: the one description of an engine that every part of the project reads.

The RTL generator, the ISA field widths, the register map's config descriptor, the ISA
simulator, the kernel library and the board builds all take an ``EngineConfig``; nothing else
defines an engine parameter.  The dataclass is frozen and keyword-only, and validates itself in
``__post_init__`` so that ``dataclasses.replace`` validates as well.  Invalid values raise
``ValueError`` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

__all__ = ["FORMATS", "PRESETS", "EngineConfig"]

#: Every number format the datapath can be built with. ``bf16`` is the storage format and
#: is always enabled; the others are block-quantized weight formats (see docs/numerics.md).
FORMATS: tuple[str, ...] = ("bf16", "int4", "fp4", "if4", "nvfp4", "int8", "fp8", "if8")


def _is_pow2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """Parameters of one engine (and of the SoC's engine count and clock).

    Parameters
    ----------
    rows, cols:
        Systolic-array size R×C (2…32 each). Peak MACs per cycle are ``rows * cols``.
    pe_interleave:
        P, the fp32 adder's pipeline depth inside each PE (1…8). Each PE interleaves P
        independent outputs, so an array tile is ``(P·R) × C`` outputs (DESIGN.md §3).
    lanes:
        Vector-unit lanes, a power of two (2…64); fp32 inside, bf16 at the ports.
    axi_data_width, axi_addr_width:
        AXI4 master data width in bits (64…1024, power of two) and address width (32…64).
    scratchpad_bytes, accumulator_bytes, bias_bytes, scale_bytes:
        On-chip SRAM sizes in bytes (powers of two; see ``_SRAM_LIMITS`` for the ranges).
    icache_instructions:
        Instruction-cache capacity in 256-bit instructions (power of two, 16…16384).
    gprs, address_registers:
        Scalar general-purpose registers (power of two, 4…256) and auto-incrementing address
        registers (power of two, 2…64).
    trace_depth:
        Entries in the hardware trace buffer (power of two, 16…65536).
    engines:
        Engines in the SoC (1…16); all engines share this configuration.
    clock_mhz:
        Engine clock target in MHz (10…1000).
    quant_block:
        Block size along K of the bf16-scaled INT4/FP4/IF4/INT8/FP8/IF8 formats (power of two,
        16…256). NVFP4's block of 16 is fixed by its definition.
    formats:
        Enabled number formats, a subset of ``FORMATS`` that contains ``"bf16"``; stored as a
        tuple in ``FORMATS`` order whatever order it was given in.
    """

    rows: int = 8
    cols: int = 8
    pe_interleave: int = 4
    lanes: int = 16
    axi_data_width: int = 256
    axi_addr_width: int = 34
    scratchpad_bytes: int = 512 * 1024
    accumulator_bytes: int = 64 * 1024
    bias_bytes: int = 16 * 1024
    scale_bytes: int = 16 * 1024
    icache_instructions: int = 1024
    gprs: int = 32
    address_registers: int = 16
    trace_depth: int = 8192
    engines: int = 1
    clock_mhz: float = 200.0
    quant_block: int = 64
    formats: tuple[str, ...] = FORMATS

    # (field, minimum, maximum, must be a power of two)
    _INT_LIMITS: ClassVar[tuple[tuple[str, int, int, bool], ...]] = (
        ("rows", 2, 32, False),
        ("cols", 2, 32, False),
        ("pe_interleave", 1, 8, False),
        ("lanes", 2, 64, True),
        ("axi_data_width", 64, 1024, True),
        ("axi_addr_width", 32, 64, False),
        ("scratchpad_bytes", 4 * 1024, 64 * 1024 * 1024, True),
        ("accumulator_bytes", 1024, 16 * 1024 * 1024, True),
        ("bias_bytes", 256, 1024 * 1024, True),
        ("scale_bytes", 256, 1024 * 1024, True),
        ("icache_instructions", 16, 16384, True),
        ("gprs", 4, 256, True),
        ("address_registers", 2, 64, True),
        ("trace_depth", 16, 65536, True),
        ("engines", 1, 16, False),
        ("quant_block", 16, 256, True),
    )

    def __post_init__(self) -> None:
        for name, low, high, pow2 in self._INT_LIMITS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(
                    f"EngineConfig.{name} must be an int, got {value!r} ({type(value).__name__})"
                )
            if not low <= value <= high:
                raise ValueError(
                    f"EngineConfig.{name}={value} is out of range; allowed {low}…{high}"
                    + (" (a power of two)" if pow2 else "")
                )
            if pow2 and not _is_pow2(value):
                raise ValueError(
                    f"EngineConfig.{name}={value} must be a power of two in {low}…{high}"
                )
        self._validate_clock()
        self._validate_formats()
        self._validate_relations()

    def _validate_clock(self) -> None:
        clock = self.clock_mhz
        if isinstance(clock, bool) or not isinstance(clock, int | float):
            raise ValueError(f"EngineConfig.clock_mhz must be a number, got {clock!r}")
        if not 10.0 <= float(clock) <= 1000.0:
            raise ValueError(f"EngineConfig.clock_mhz={clock} is out of range; allowed 10…1000")
        object.__setattr__(self, "clock_mhz", float(clock))

    def _validate_formats(self) -> None:
        given = self.formats
        if isinstance(given, str) or not isinstance(given, Iterable):
            raise ValueError(
                f"EngineConfig.formats must be a collection of format names, got {given!r}; "
                f"allowed names: {', '.join(FORMATS)}"
            )
        names = list(given)
        unknown = [n for n in names if n not in FORMATS]
        if unknown:
            raise ValueError(
                f"EngineConfig.formats has unknown format(s) {unknown}; "
                f"allowed: {', '.join(FORMATS)}"
            )
        if "bf16" not in names:
            raise ValueError("EngineConfig.formats must include 'bf16' (the storage format)")
        if "if4" in names and not {"int4", "fp4"} <= set(names):
            raise ValueError("EngineConfig.formats: 'if4' needs both 'int4' and 'fp4' enabled")
        if "if8" in names and not {"int8", "fp8"} <= set(names):
            raise ValueError("EngineConfig.formats: 'if8' needs both 'int8' and 'fp8' enabled")
        object.__setattr__(self, "formats", tuple(f for f in FORMATS if f in names))

    def _validate_relations(self) -> None:
        beat = self.axi_bytes
        for name in ("scratchpad_bytes", "accumulator_bytes", "bias_bytes", "scale_bytes"):
            if getattr(self, name) < 16 * beat:
                raise ValueError(
                    f"EngineConfig.{name}={getattr(self, name)} must hold at least 16 AXI beats "
                    f"({16 * beat} bytes at axi_data_width={self.axi_data_width})"
                )
        if self.lanes * 16 > self.axi_data_width:
            raise ValueError(
                f"EngineConfig.lanes={self.lanes} needs {self.lanes * 16}-bit beats but "
                f"axi_data_width={self.axi_data_width}; allowed lanes ≤ {self.axi_data_width // 16}"
            )
        tile_bytes = self.tile_rows * self.cols * 4
        if tile_bytes > self.accumulator_bytes:
            raise ValueError(
                f"EngineConfig.accumulator_bytes={self.accumulator_bytes} cannot hold one fp32 "
                f"output tile of {self.tile_rows}×{self.cols} ({tile_bytes} bytes)"
            )

    # ----- derived sizes -------------------------------------------------------------------

    @property
    def macs_per_cycle(self) -> int:
        """Multiply-accumulates the array retires per cycle at full utilization."""
        return self.rows * self.cols

    @property
    def peak_gflops(self) -> float:
        """Peak GFLOP/s of one engine at ``clock_mhz`` (one MAC = 2 FLOP)."""
        return 2 * self.macs_per_cycle * self.clock_mhz / 1000.0

    @property
    def soc_peak_gflops(self) -> float:
        """Peak GFLOP/s of all ``engines`` together."""
        return self.peak_gflops * self.engines

    @property
    def tile_rows(self) -> int:
        """Output rows of one array tile: P interleaved outputs per PE row."""
        return self.pe_interleave * self.rows

    @property
    def axi_bytes(self) -> int:
        """Bytes per AXI data beat."""
        return self.axi_data_width // 8

    @property
    def bf16_per_beat(self) -> int:
        """bf16 elements per AXI beat (= one scratchpad row)."""
        return self.axi_data_width // 16

    @property
    def scratchpad_rows(self) -> int:
        """Scratchpad depth in beat-wide rows."""
        return self.scratchpad_bytes // self.axi_bytes

    @property
    def accumulator_entries(self) -> int:
        """fp32 words the accumulator SRAM holds."""
        return self.accumulator_bytes // 4

    @property
    def bias_entries(self) -> int:
        """bf16 values the bias SRAM holds."""
        return self.bias_bytes // 2

    @property
    def scale_entries(self) -> int:
        """bf16 block scales the scale SRAM holds."""
        return self.scale_bytes // 2

    @property
    def trace_bytes(self) -> int:
        """Trace-buffer size, at 64 bits (timestamp + event) per entry."""
        return self.trace_depth * 8

    @property
    def sram_bytes(self) -> int:
        """All on-chip data SRAM of one engine (scratchpad, accumulator, bias, scale)."""
        return self.scratchpad_bytes + self.accumulator_bytes + self.bias_bytes + self.scale_bytes

    @property
    def scratchpad_addr_bits(self) -> int:
        """Bits of a scratchpad row address."""
        return (self.scratchpad_rows - 1).bit_length()

    @property
    def gpr_index_bits(self) -> int:
        """Bits of a GPR index in an instruction."""
        return (self.gprs - 1).bit_length()

    @property
    def address_register_index_bits(self) -> int:
        """Bits of an address-register index in an instruction."""
        return (self.address_registers - 1).bit_length()

    @property
    def reduce_guard_bits(self) -> int:
        """Guard bits G of the vector unit's ``lanes``-input adder tree (``numerics.multi_add``).

        3 + ceil(log2 lanes): the per-addend sticky jams then cost at most about 1/8 ulp, so the
        tree's result stays within ~0.6 ulp of the exact sum (docs/numerics.md §4).
        """
        return 3 + (self.lanes - 1).bit_length()

    @property
    def icache_bytes(self) -> int:
        """Instruction-cache size in bytes (32 bytes per instruction)."""
        return self.icache_instructions * 32

    # ----- presets and (de)serialization ----------------------------------------------------

    @classmethod
    def preset(cls, name: str) -> EngineConfig:
        """The configuration a board (or the fast-test setup) uses by default.

        ``"kintex7"``, ``"ku15p"``, ``"alveo_u50"`` or ``"sim_small"``.
        """
        try:
            fields = PRESETS[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown EngineConfig preset {name!r}; allowed: {', '.join(sorted(PRESETS))}"
            ) from None
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict of every field (``formats`` as a list)."""
        out = dataclasses.asdict(self)
        out["formats"] = list(self.formats)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineConfig:
        """Rebuild a configuration from ``to_dict`` output; unknown keys raise ``ValueError``."""
        if not isinstance(data, Mapping):
            raise ValueError(f"EngineConfig.from_dict needs a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"EngineConfig.from_dict: unknown field(s) {unknown}; allowed: {sorted(known)}"
            )
        return cls(**data)

    def canonical_json(self) -> str:
        """The canonical text the fingerprint hashes: sorted keys, no whitespace."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def fingerprint(self) -> int:
        """Stable 64-bit hash of the configuration (first 8 bytes of SHA-256, big-endian).

        It depends only on the field values, never on Python's hash seed or dict order; it
        is the configuration part of the engine's BUILD_ID.
        """
        digest = hashlib.sha256(self.canonical_json().encode()).digest()
        return int.from_bytes(digest[:8], "big")

    def summary(self) -> str:
        """Human-readable multi-line summary (what ``build.py`` prints)."""
        kib = 1024
        lines = [
            f"array           {self.rows}×{self.cols} PEs, P={self.pe_interleave} "
            f"(tile {self.tile_rows}×{self.cols}), {self.macs_per_cycle} MAC/cycle",
            f"vector unit     {self.lanes} lanes fp32",
            f"AXI             {self.axi_data_width}-bit data, {self.axi_addr_width}-bit address",
            f"SRAM            scratchpad {self.scratchpad_bytes // kib} KiB, accumulator "
            f"{self.accumulator_bytes // kib} KiB, bias {self.bias_bytes // kib} KiB, "
            f"scale {self.scale_bytes // kib} KiB (total {self.sram_bytes / kib:.0f} KiB)",
            f"control         {self.icache_instructions}-instruction cache, {self.gprs} GPRs, "
            f"{self.address_registers} address registers, trace depth {self.trace_depth}",
            f"formats         {', '.join(self.formats)} (block {self.quant_block})",
            f"clock / engines {self.clock_mhz:g} MHz × {self.engines}",
            f"peak            {self.peak_gflops:.1f} GFLOP/s per engine, "
            f"{self.soc_peak_gflops:.1f} GFLOP/s SoC",
            f"fingerprint     {self.fingerprint():016x}",
        ]
        return "\n".join(lines)


#: Board presets. Engine counts and clocks follow the anchor's measured boards (DESIGN.md §3 and
#: research/apex-unified-engine.md §1.1); the board issue may refine them.
PRESETS: dict[str, dict[str, Any]] = {
    # Kintex-7 PCIe card: 2 engines near the anchor's 198 MHz; BRAM-only, so 512 KiB pad.
    "kintex7": dict(engines=2, clock_mhz=200.0),
    # Kintex UltraScale+ KU15P: URAM allows a 1 MiB scratchpad; 333 MHz like the anchor's KU+.
    "ku15p": dict(engines=2, clock_mhz=333.0, scratchpad_bytes=1024 * 1024),
    # Alveo U50: 8 engines, one HBM pseudo-channel each, ~300 MHz.
    "alveo_u50": dict(engines=8, clock_mhz=300.0, scratchpad_bytes=1024 * 1024),
    # Tiny engine for fast simulation tests: 2×2 array, 4 lanes, 64-bit AXI.
    "sim_small": dict(
        rows=2,
        cols=2,
        pe_interleave=2,
        lanes=4,
        axi_data_width=64,
        axi_addr_width=32,
        scratchpad_bytes=16 * 1024,
        accumulator_bytes=4 * 1024,
        bias_bytes=1024,
        scale_bytes=1024,
        icache_instructions=64,
        gprs=16,
        address_registers=8,
        trace_depth=256,
        engines=1,
        clock_mhz=100.0,
    ),
}
