#!/usr/bin/env python3
"""Regenerate the tables in docs/isa.md and docs/registers.md from isa.py and regs.py.

Generated text sits between ``<!-- BEGIN GENERATED: name -->`` and ``<!-- END GENERATED: name
-->`` markers; everything else in the documents is hand-written and left alone.

    python tools/gen_docs.py            # rewrite the generated sections
    python tools/gen_docs.py --check    # exit 1 if a document is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from unified_engine.config import EngineConfig
from unified_engine.isa import (
    QUEUE_OPCODES,
    WIDTH_SYMBOLS,
    ActKind,
    AluOp,
    ArOp,
    BiasMode,
    ElemFormat,
    JumpCond,
    JumpMode,
    MemTarget,
    Opcode,
    OutLayout,
    Queue,
    RowMaxMode,
    SyncOp,
    VecBcast,
    VecOp,
    WeightFormat,
    isa_for,
)
from unified_engine.regs import ERROR_DOCS, REGISTERS, TRACE_ENTRY, ErrorCode, TraceKind

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ("kintex7", "ku15p", "alveo_u50", "sim_small")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def isa_sections() -> dict[str, str]:
    config = EngineConfig()
    isa = isa_for(config)
    first_op = {isa.body(op): op for op in reversed(Opcode)}

    def fields_of(i, body):
        return i.fields(first_op[body])

    out = {}
    out["opcodes"] = _table(
        ["opcode", "value", "layout", "runs on"],
        [[op.name, f"`{op.value:#04x}`", isa.body(op),
          QUEUE_OPCODES[op].name + " queue" if op in QUEUE_OPCODES else "dispatcher"]
         for op in Opcode])
    rows = []
    w = isa.widths
    for key, symbol in WIDTH_SYMBOLS.items():
        rows.append([symbol, key, getattr(w, key)] +
                    [getattr(isa_for(EngineConfig.preset(p)).widths, key) for p in PRESETS])
    out["widths"] = _table(["symbol", "meaning", "default", *PRESETS], [
        [r[0], {
            "spad": "scratchpad row address (`scratchpad_addr_bits`)",
            "acc": "accumulator tile index (tiles of tile_rows × cols fp32)",
            "bias": "bias-memory entry index",
            "scale": "scale-memory entry index",
            "sram": "DMA on-chip address: max(SA, BI, SC)",
            "gpr": "GPR index (`gpr_index_bits`)",
            "ar": "address-register index",
            "dram": "DRAM byte address = `axi_addr_width` (also the AR width)",
        }[r[1]], *r[2:]] for r in rows])
    used = []
    for body in isa.layouts:
        fields = fields_of(isa, body)
        per = [max(f.offset + f.width for f in fields_of(isa_for(EngineConfig.preset(p)), body))
               for p in PRESETS]
        used.append([body, max(f.offset + f.width for f in fields), *per])
    out["bits-used"] = _table(["layout", "bits used (default)", *PRESETS], used)
    for body in isa.layouts:
        rows = []
        for f in fields_of(isa, body):
            width = str(f.width)
            if f.width_key:
                width = f"{WIDTH_SYMBOLS[f.width_key]} = {f.width}"
            kind = f.enum.__name__ if f.enum else f.kind
            extra = " (GPR-overridable)" if f.override else ""
            limit = f"; < {f.limit}" if f.limit is not None and f.limit < 1 << f.width else ""
            bits = f"{f.offset + f.width - 1}:{f.offset}" if f.width > 1 else str(f.offset)
            rows.append([bits, f"`{f.path}`", width, kind,
                         f.unit, f.doc + limit + extra])
        reserved = 256 - max(f.offset + f.width for f in fields_of(isa, body))
        rows.append([f"255:{256 - reserved}", "`reserved`", reserved, "uint", "",
                     "must be zero"])
        out[f"layout-{body}"] = _table(["bits", "field", "width", "kind", "unit", "meaning"],
                                       rows)
    enum_rows = []
    for e in (Queue, AluOp, JumpCond, JumpMode, ArOp, SyncOp, ActKind, MemTarget, ElemFormat,
              WeightFormat, BiasMode, RowMaxMode, OutLayout, VecOp, VecBcast):
        enum_rows.append([f"`{e.__name__}`", e.__doc__.strip().splitlines()[0],
                          ", ".join(f"{m.name}={m.value}" for m in e)])
    out["enums"] = _table(["enum", "meaning", "values"], enum_rows)
    return out


def regs_sections() -> dict[str, str]:
    out = {}
    rows = []
    for r in REGISTERS:
        rows.append([f"`{r.offset:#05x}`", f"`{r.name}`", r.access.value, r.doc])
    out["registers"] = _table(["offset", "name", "access", "description"], rows)
    rows = []
    for r in REGISTERS:
        for f in r.fields:
            bits = f"{f.lsb + f.width - 1}:{f.lsb}" if f.width > 1 else str(f.lsb)
            values = f" ({', '.join(f'{m.name}={m.value}' for m in f.enum)})" if f.enum and \
                f.enum is not ErrorCode else ""
            rows.append([f"`{r.name}`", bits, f"`{f.name}`", (f.access or r.access).value,
                         f.doc + values])
    out["fields"] = _table(["register", "bits", "field", "access", "meaning"], rows)
    out["errors"] = _table(["code", "name", "meaning"],
                           [[e.value, f"`{e.name}`", ERROR_DOCS[e]] for e in ErrorCode])
    out["trace"] = _table(["bits", "field", "meaning"], [
        [f"{f.offset + f.width - 1}:{f.offset}", f"`{name}`", {
            "timestamp": "cycles since START (low 32 bits)",
            "payload": "marker id (MARKER) or instruction index (START, END, HALT, ERROR)",
            "kind": "TraceKind: " + ", ".join(f"{k.name}={k.value}" for k in TraceKind),
            "unit": "queue number (LOAD=0, ARRAY=1, VECTOR=2, STORE=3) or 15 = dispatcher",
        }[name]] for name, f in TRACE_ENTRY])
    return out


_MARK = re.compile(r"(<!-- BEGIN GENERATED: (?P<name>[\w-]+) -->\n)(.*?)"
                   r"(<!-- END GENERATED: (?P=name) -->)", re.S)


def render(text: str, sections: dict[str, str], path: Path) -> str:
    seen = set()

    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in sections:
            raise SystemExit(f"{path}: unknown generated section {name!r}")
        seen.add(name)
        return m.group(1) + sections[name] + "\n" + m.group(4)

    new = _MARK.sub(sub, text)
    missing = set(sections) - seen
    if missing:
        raise SystemExit(f"{path}: no markers for section(s) {sorted(missing)}")
    return new


def documents() -> dict[Path, dict[str, str]]:
    return {ROOT / "docs" / "isa.md": isa_sections(),
            ROOT / "docs" / "registers.md": regs_sections()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a document is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, sections in documents().items():
        text = path.read_text()
        new = render(text, sections, path)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print("out of date (run python tools/gen_docs.py): " +
              ", ".join(str(p.relative_to(ROOT)) for p in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
