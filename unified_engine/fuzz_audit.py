"""The discard rules of the fuzzer: which runs the RTL does not promise to match the ISA
simulator (part of :mod:`unified_engine.fuzz`).

A case is *discarded* (counted by reason, never compared) when:

``race``
    the model's race detector found an unordered memory conflict (token noise on purpose);
``overlap``
    a MATMUL or VECTOR writes bytes its own operands read, or two of its outputs overlap
    (:func:`operand_overlap`; only while :data:`DISCARD_OPERAND_OVERLAP` is on);
``tensor_scale``
    the model stopped on the NVFP4 tensor-scale check, which depends on memory contents and is
    not made at dispatch (``docs/engine.md``);
``self_modifying``
    a STORE wrote into the running program (which of its words the RTL had already fetched
    into its instruction cache depends on timing);
``budget``
    one side stopped on CYCLE_BUDGET and the other did not (the backends' cycle counts differ;
    only a program that needs about the budget lands here).

:func:`discard_reason` applies them in that order; it is the only place the verdict
"discard" is made.
"""

from __future__ import annotations

from typing import Any

from .config import EngineConfig
from .isa import Opcode, VecOp
from .regs import ErrorCode

__all__ = [
    "DISCARD_OPERAND_OVERLAP",
    "audit_model_device",
    "discard_reason",
    "operand_overlap",
]

#: Discard runs with a MATMUL / VECTOR whose outputs overlap its operands.  Off: model and
#: RTL both refuse partially overlapping operands with ILLEGAL_OPERAND (docs/isa.md "Operand
#: overlap"), so such programs stop identically on both sides and are compared like any other
#: (600 programs, seeds 1000–1199, 0 disagreements with it off).  Kept as a switch for
#: bisecting a future disagreement.
DISCARD_OPERAND_OVERLAP = False


def _self_overlap(s) -> bool:
    """Rows of the span ``s`` overlap each other (stride below the row length)."""
    return s.rows > 1 and s.stride < s.row_bytes


def operand_overlap(op: Opcode, fields: dict[str, Any], reads: list, writes: list) -> str:
    """Why the RTL may legitimately differ on this MATMUL / VECTOR because of overlapping
    operands ("" if it may not).

    Allowed (compared): the exact in-place element-wise VECTOR and read-modify-write of the
    same span (accumulator, rmax UPDATE, ``accumulate``).  Reported: a MATMUL or TRANSPOSE
    destination whose rows overlap each other, an output over an operand it does not
    exactly equal (or any operand of TRANSPOSE / QUANTIZE / DEQUANTIZE), two overlapping
    outputs.  See ``rtl/matmul_unit.py``, ``rtl/vector_exec.py``,
    ``rtl/vector_move_transpose.py``.
    """
    if op is Opcode.MATMUL:
        if any(_self_overlap(w) for w in writes if w.space == "spad"):
            return "MATMUL output rows overlap each other"
    elif fields["op"] is VecOp.TRANSPOSE and any(_self_overlap(w) for w in writes):
        return "TRANSPOSE destination rows overlap each other"
    inplace_ok = op is Opcode.MATMUL or fields["op"] not in (VecOp.TRANSPOSE, VecOp.QUANTIZE,
                                                             VecOp.DEQUANTIZE)
    for i, w in enumerate(writes):
        for r in reads:
            if w.overlaps(r) and not (inplace_ok and w == r and not _self_overlap(w)):
                return f"{op.name} writes {w} over its operand {r}"
        for w2 in writes[i + 1:]:
            if w.overlaps(w2):
                return f"{op.name} outputs {w} and {w2} overlap"
    return ""


def discard_reason(hazards: list, unsupported: list[str], model_code: ErrorCode,
                   backend_code: ErrorCode) -> str:
    """The reason to discard a run ("" to compare it): ``hazards`` are the model's races,
    ``unsupported`` the audit machine's findings (``"<reason>: <detail>"``), the codes are
    how each side stopped."""
    if hazards:
        return "race"
    if unsupported:
        return unsupported[0].split(":")[0]
    budget = ErrorCode.CYCLE_BUDGET
    if (model_code is budget) != (backend_code is budget):
        return "budget"
    return ""


def _audit_machine_class():
    from .host.isasim import Machine
    from .host.units import Stop

    class AuditMachine(Machine):
        """The ISA simulator, recording what makes a run incomparable (module docstring)."""

        def __init__(self, *args, **kw) -> None:
            super().__init__(*args, **kw)
            self.unsupported: list[str] = []
            #: DRAM bytes of the running program (set by the harness before START)
            self.program_span = (0, 0)

        def start(self, *args, **kw) -> None:
            super().start(*args, **kw)
            self.unsupported = []

        def _dispatch_queue(self, st, ins) -> None:
            try:
                super()._dispatch_queue(st, ins)
            except Stop as stop:
                if stop.code is ErrorCode.ILLEGAL_OPERAND and "tensor scale" in stop.detail:
                    self.unsupported.append(f"tensor_scale: {stop.detail}")
                raise

        def _check_races(self, st, new) -> None:
            ins = self._decoded[new.pc]
            if DISCARD_OPERAND_OVERLAP and ins.opcode in (Opcode.MATMUL, Opcode.VECTOR):
                why = operand_overlap(ins.opcode, ins.fields, new.reads, new.writes)
                if why:
                    self.unsupported.append(f"overlap: pc {new.pc}: {why}")
            lo, hi = self.program_span
            for w in new.writes:
                if w.space == "dram" and w.rows and \
                        w.start < hi and w.start + (w.rows - 1) * w.stride + w.row_bytes > lo:
                    self.unsupported.append(f"self_modifying: pc {new.pc} stores into the "
                                            "program")
            super()._check_races(st, new)

    return AuditMachine


def audit_model_device(config: EngineConfig, **options: Any):
    """A ``ModelDevice`` whose simulator records incomparable runs in
    ``device.machine.unsupported`` (reasons prefixed ``overlap:``, ``tensor_scale:``,
    ``self_modifying:``; the program's DRAM span is ``device.machine.program_span``, which the
    caller sets before START)."""
    from .host.model import ModelDevice

    device = ModelDevice(config, **options)
    machine = _audit_machine_class()(config, device.machine.dram, device.machine.timing)
    device.machine = machine
    return device
