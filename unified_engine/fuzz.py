"""Program fuzzing: random, mutated and garbage programs on the model backend vs another backend.

::

    python -m unified_engine.fuzz --seeds 20 --backend verilator

Each *case* is one program image (bytes) of one of three kinds:

``valid``
    A random mix of ALU / JUMP (forward) / LOOP / AREG / EPI / LOAD / STORE / MATMUL / VECTOR /
    SYNC / TRACE / NOP / HALT with fields drawn mostly in range (small shapes, addresses inside
    the scratchpad and the DRAM data area), a few deliberately out of range.  Queue
    instructions are grouped into straight-line *blocks*: inside a block consecutive queue
    instructions on different queues are chained by dependency tokens (each waits for the
    previous one), and blocks are separated by ``SYNC FENCE``; jumps land and loops wrap only
    on block boundaries.  So every conflicting pair is ordered by construction, except where
    the generator injects token noise on purpose (a dropped wait: a possible race; an extra
    wait: TOKEN_UNDERFLOW; extra signals: possibly TOKEN_OVERFLOW).
``mutated``
    A valid program with bit flips and whole-field rewrites.
``garbage``
    Random 256-bit words (half of them with a valid opcode in bits [5:0]).

:class:`Fuzzer` runs each case on two engines (the ISA simulator, through
:func:`audit_model_device`, and e.g. the Verilator backend) from the same state: the same DRAM
image, the same window, the same sync flags and GPRs, and on-chip memories, address registers,
EPI table and accumulator set by a fixed reset program.  Both must stop (HALT or an error)
within the cycle budget and the host timeout; then it compares halted vs error, the error code,
the error pc (not for CYCLE_BUDGET, whose pc depends on timing), the halt code, every GPR and
every DRAM byte.

Cases whose result the RTL does not promise to match are *discarded* (counted by reason,
never compared): races, operand overlaps, the NVFP4 tensor-scale check, self-modifying stores,
one-sided CYCLE_BUDGET.  :func:`~unified_engine.fuzz_audit.discard_reason` alone makes that
verdict; the overlap rule is the predicate :func:`~unified_engine.fuzz_audit.operand_overlap`,
switched by ``fuzz_audit.DISCARD_OPERAND_OVERLAP`` (see :mod:`unified_engine.fuzz_audit`).

Modules: :mod:`~unified_engine.fuzz_layout` (DRAM layout, reset program),
:mod:`~unified_engine.fuzz_gen` (the generator), :mod:`~unified_engine.fuzz_audit` (discard
rules), :mod:`~unified_engine.fuzz_run` (running both sides, comparing); this module re-exports
their public names and is the command line.
"""

from __future__ import annotations

import argparse
import sys
import time

from .asm import disassemble
from .config import EngineConfig
from .fuzz_audit import audit_model_device, discard_reason, operand_overlap
from .fuzz_gen import KINDS, Case, Generator, cases
from .fuzz_layout import ZERO_BYTES, Layout, layout_for, reset_program
from .fuzz_run import Fuzzer, Outcome, compare

__all__ = [
    "KINDS",
    "ZERO_BYTES",
    "Case",
    "Fuzzer",
    "Generator",
    "Layout",
    "Outcome",
    "audit_model_device",
    "cases",
    "compare",
    "disassemble_case",
    "discard_reason",
    "layout_for",
    "main",
    "operand_overlap",
    "reset_program",
]


def disassemble_case(case: Case, config: EngineConfig) -> str:
    """The case's program as text (``ValueError`` if a word does not decode)."""
    return disassemble(case.blob, config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unified_engine.fuzz",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds (3 cases each)")
    parser.add_argument("--first", type=int, default=0, help="first seed")
    parser.add_argument("--backend", default="verilator", choices=("verilator", "model"))
    parser.add_argument("--budget", type=int, default=200_000, help="CYCLE_BUDGET per case")
    parser.add_argument("--config", default="small",
                        help="'small' (tests/firmware golden.small_config) or a preset name")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.config == "small":
        import dataclasses as dc
        config = dc.replace(EngineConfig.preset("sim_small"), address_registers=16)
    else:
        config = EngineConfig.preset(args.config)
    t0 = time.monotonic()
    with Fuzzer(config, args.backend, cycle_budget=args.budget) as fz:
        seeds = range(args.first, args.first + args.seeds)
        for case in cases(config, fz.layout, seeds):
            verdict = fz.check(case)
            if args.verbose or verdict == "disagree":
                print(f"seed {case.seed} {case.kind}: {verdict}", flush=True)
        for case, diff in fz.disagreements:
            print(f"DISAGREE seed {case.seed} {case.kind}: {diff}")
            try:
                print(disassemble_case(case, config))
            except ValueError as exc:
                print(f"  (does not disassemble: {exc}); hex: {case.blob.hex()}")
        total = sum(v for k, v in fz.tally.items() if ":" not in k or k.startswith(
            ("discard:",)))
        print(f"{total} programs in {time.monotonic() - t0:.1f} s")
        for key in sorted(fz.tally):
            print(f"  {key}: {fz.tally[key]}")
        return 1 if fz.disagreements else 0


if __name__ == "__main__":
    sys.exit(main())

