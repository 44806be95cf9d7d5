"""Cycles per token → tokens per second on the boards, and the anchor's published figures.

The engine's cycle counts come from the backend (the ISA simulator's timing model today, the
RTL later); a board runs them at its preset clock (``EngineConfig.preset(board).clock_mhz``).
Projections are for **one engine** (the presets' multi-engine SoCs are not used by a single
sequence) and take the cycle counts of the configuration that was measured.

The anchor (Apex Compute's closed-RTL "Unified Engine") publishes decode rates of its 1 B-class
models, single engine, IF4 weights (``shared/research/apex-unified-engine.md`` §5.3); scaled to
a smaller model by parameter count (decode streams every weight once per token, so time per
token is roughly proportional to the parameters) they give a comparison point — an estimate,
stated as such wherever it is shown.

**Several engines** (:func:`soc_tokens_per_second`): the presets put ``engines`` engines on a
board (``EngineConfig.preset(board).engines``).  One sequence uses one engine (the model code
does not shard a step), so the SoC figure is *throughput* — one independent sequence per
engine, ``engines ×`` the one-engine rate — capped by the board's DRAM bandwidth
(``unified_engine.platforms``: the board's ``memory.bandwidth``, a theoretical peak) divided
by the bytes one token streams (a decode step reads every weight it multiplies with once).
"""

from __future__ import annotations

import dataclasses

from unified_engine.config import EngineConfig

__all__ = ["ANCHOR", "BOARDS", "AnchorFigure", "anchor_scaled", "board_clock_mhz",
           "board_dram_bandwidth", "board_engines", "soc_tokens_per_second",
           "tokens_per_second"]

#: Board presets the CLI and the docs project to.
BOARDS = ("kintex7", "ku15p", "alveo_u50")


@dataclasses.dataclass(frozen=True)
class AnchorFigure:
    """A published decode rate of the anchor: ``tok_s`` for ``model`` (``params``) on
    ``board`` at ``clock_mhz`` with ``engines`` engines."""

    model: str
    params: int
    board: str
    clock_mhz: float
    tok_s: float
    engines: int = 1


#: Llama 3.2 1B (1.236 B parameters) and Gemma 3 1B (1.0 B) decode, IF4 (§5.3): one engine,
#: and Gemma 3 1B on the Alveo with 8 engines ("~85 tok/s with 8 cores", first token).
ANCHOR = (
    AnchorFigure("Llama 3.2 1B", 1_235_814_400, "kintex7", 198.33, 8.2),
    AnchorFigure("Gemma 3 1B", 999_885_952, "kintex7", 198.33, 10.3),
    AnchorFigure("Gemma 3 1B", 999_885_952, "ku15p", 333.0, 16.8),
    AnchorFigure("Gemma 3 1B", 999_885_952, "alveo_u50", 366.67, 18.6),
    AnchorFigure("Gemma 3 1B", 999_885_952, "alveo_u50", 366.67, 85.0, engines=8),
)


def board_clock_mhz(board: str) -> float:
    """The preset clock of ``board`` in MHz."""
    return EngineConfig.preset(board).clock_mhz


def tokens_per_second(cycles_per_token: float, board: str) -> float:
    """Tokens per second of one engine at ``board``'s preset clock."""
    if cycles_per_token <= 0:
        raise ValueError("cycles_per_token must be positive")
    return board_clock_mhz(board) * 1e6 / cycles_per_token


def board_engines(board: str) -> int:
    """Engines of ``board``'s preset SoC."""
    return EngineConfig.preset(board).engines


#: the platform class of each board (``unified_engine.platforms``)
_PLATFORMS = {"kintex7": ("kintex7", "Kintex7Platform"), "ku15p": ("ku15p", "Ku15pPlatform"),
              "alveo_u50": ("alveo_u50", "AlveoU50Platform")}


def board_dram_bandwidth(board: str) -> float:
    """Peak DRAM bandwidth of ``board`` in bytes/s (its platform's ``memory.bandwidth``)."""
    import importlib

    module, cls = _PLATFORMS[board]
    platform = getattr(importlib.import_module(f"unified_engine.platforms.{module}"), cls)
    return float(platform.memory.bandwidth)


def soc_tokens_per_second(cycles_per_token: float, board: str,
                          bytes_per_token: float) -> tuple[float, str]:
    """Throughput of ``board``'s preset SoC, one independent sequence per engine:
    ``(tok/s, bound)`` with ``bound`` ``"engines"`` (engines × the one-engine rate) or
    ``"dram"`` (the board's peak DRAM bandwidth / ``bytes_per_token``), whichever is lower."""
    compute = board_engines(board) * tokens_per_second(cycles_per_token, board)
    if bytes_per_token <= 0:
        raise ValueError("bytes_per_token must be positive")
    dram = board_dram_bandwidth(board) / bytes_per_token
    return (compute, "engines") if compute <= dram else (dram, "dram")


def anchor_scaled(params: int, engines: int = 1) -> dict[str, tuple[float, str]]:
    """Per board, the anchor's best published 1 B decode rate with ``engines`` engines,
    scaled by the parameter ratio: ``{board: (tok/s scaled to params, the source figure)}``."""
    out: dict[str, tuple[float, str]] = {}
    for fig in ANCHOR:
        if fig.engines != engines:
            continue
        scaled = fig.tok_s * fig.params / params
        if fig.board not in out or scaled > out[fig.board][0]:
            cores = f", {fig.engines} engines" if fig.engines > 1 else ""
            out[fig.board] = (scaled, f"{fig.model} {fig.tok_s} tok/s @ {fig.clock_mhz:g} MHz"
                                      f"{cores}")
    return out
