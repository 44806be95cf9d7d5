"""The ISA's enumerations and constants: opcodes, queues, operation and mode selectors.

Split out of :mod:`unified_engine.isa` (which re-exports everything here) so that the
instruction layouts and their codec stay readable; the enums are the shapes of layout fields,
and the RTL decoder, the assembler and the simulator all import them through ``isa``.
"""

from __future__ import annotations

import struct

from amaranth.lib import enum

__all__ = [
    "EPI_ENTRIES",
    "INSTRUCTION_BITS",
    "INSTRUCTION_BYTES",
    "ISA_VERSION",
    "QUEUE_OPCODES",
    "SYNC_FLAGS",
    "TOKEN_FIFO_DEPTH",
    "VECTOR_REDUCE_SLOTS",
    "ActKind",
    "AluOp",
    "ArOp",
    "BiasMode",
    "ElemFormat",
    "IllegalInstruction",
    "JumpCond",
    "JumpMode",
    "MemTarget",
    "Opcode",
    "OutLayout",
    "Queue",
    "RowMaxMode",
    "SyncOp",
    "VecBcast",
    "VecOp",
    "WeightFormat",
    "f32_bits",
]

ISA_VERSION = (0, 1)
INSTRUCTION_BITS = 256
INSTRUCTION_BYTES = INSTRUCTION_BITS // 8
#: Entries of the epilogue/activation parameter table written by ``EPI``.
EPI_ENTRIES = 16
#: Cross-engine sync flags (one shared 32-bit flag word per SoC).
SYNC_FLAGS = 32
#: Capacity of each dependency-token channel (queue q → queue p).  Tokens are counted at
#: dispatch: popping a channel whose pushes (by earlier instructions in program order) are all
#: consumed is TOKEN_UNDERFLOW, and more than this many unconsumed pushes is TOKEN_OVERFLOW.
TOKEN_FIFO_DEPTH = 32
#: Interleaved partial sums of a VECTOR sum reduction (RSUM, RSUMSQ); see docs/isa.md.
VECTOR_REDUCE_SLOTS = 4


# ----- opcodes and modes ----------------------------------------------------------------------


class Opcode(enum.Enum, shape=6):
    """Instruction class, bits ``[5:0]`` of every word.

    0 is not an opcode, so a program that runs into zeroed memory stops with
    ``ILLEGAL_INSTRUCTION`` instead of sliding through it.
    """

    NOP = 0x01
    HALT = 0x02
    ALU = 0x03
    JUMP = 0x04
    LOOP = 0x05
    AREG = 0x06
    SYNC = 0x07
    TRACE = 0x08
    EPI = 0x09
    LOAD = 0x10
    STORE = 0x11
    MATMUL = 0x12
    VECTOR = 0x13


class Queue(enum.Enum, shape=2):
    """The four execution queues; bit positions of the ``wait``/``signal`` token masks."""

    LOAD = 0
    ARRAY = 1
    VECTOR = 2
    STORE = 3


#: The queue each queue-class opcode is dispatched to.
QUEUE_OPCODES: dict[Opcode, Queue] = {
    Opcode.LOAD: Queue.LOAD,
    Opcode.MATMUL: Queue.ARRAY,
    Opcode.VECTOR: Queue.VECTOR,
    Opcode.STORE: Queue.STORE,
}


class AluOp(enum.Enum, shape=5):
    """Scalar ALU operation: ``rd ← rs1 OP src2`` (src2 = ``rs2`` or ``imm``), 32-bit wrap."""

    ADD = 0
    SUB = 1
    AND = 2
    OR = 3
    XOR = 4
    SHL = 5  #: shift left by src2 mod 32
    SHR = 6  #: logical shift right by src2 mod 32
    SRA = 7  #: arithmetic shift right by src2 mod 32
    MUL = 8  #: low 32 bits of the product
    MULHU = 9  #: high 32 bits of the unsigned product
    DIVU = 10  #: unsigned quotient; division by zero gives 0xFFFFFFFF
    REMU = 11  #: unsigned remainder; division by zero gives rs1
    MIN = 12  #: signed minimum
    MAX = 13  #: signed maximum
    MINU = 14  #: unsigned minimum
    MAXU = 15  #: unsigned maximum
    SLT = 16  #: 1 if rs1 < src2 (signed) else 0
    SLTU = 17  #: 1 if rs1 < src2 (unsigned) else 0
    SEQ = 18  #: 1 if rs1 == src2 else 0


class JumpCond(enum.Enum, shape=3):
    """Condition on GPR ``rs`` (as a signed 32-bit value) for ``JUMP``."""

    ALWAYS = 0
    EQZ = 1
    NEZ = 2
    LTZ = 3
    GEZ = 4
    GTZ = 5
    LEZ = 6


class JumpMode(enum.Enum, shape=2):
    """How ``JUMP`` forms its target (an instruction index from the program start)."""

    ABS = 0  #: target = offset (unsigned)
    REL = 1  #: target = pc + offset (signed)
    REG = 2  #: target = GPR[rt] + offset (signed)


class ArOp(enum.Enum, shape=2):
    """Address-register update performed by ``AREG`` (all arithmetic modulo 2**W)."""

    SET = 0  #: value ← value_imm; inc ← inc_imm
    SET_GPR = 1  #: value ← GPR[rs] + value_imm (runtime base from a GPR)
    ADD_GPR = 2  #: value ← value + GPR[rs] + value_imm
    INC_GPR = 3  #: inc ← sign-extended GPR[rs] + inc_imm (runtime stride from a GPR)


class SyncOp(enum.Enum, shape=2):
    """Cross-engine flag operation (``SYNC``)."""

    SET = 0  #: wait until every queue is idle, then flags |= mask
    CLEAR = 1  #: wait until every queue is idle, then flags &= ~mask
    WAIT = 2  #: wait until (flags & mask) == (value & mask), at most ``timeout`` cycles
    FENCE = 3  #: wait until every queue is idle


class ActKind(enum.Enum, shape=2):
    """Activation of an epilogue-table entry."""

    IDENTITY = 0  #: y = x
    UNIFIED = 1  #: y = (a + c·x)·σ(b·x) + d  (GELU, SiLU, sigmoid, tanh, …)
    CLAMP = 2  #: y = min(max(x, a), b)  (ReLU is a = 0, b = +Inf)


class MemTarget(enum.Enum, shape=2):
    """On-chip memory a DMA transfer reads or writes, and the unit of its address."""

    SCRATCHPAD = 0  #: address in scratchpad rows (one AXI beat each)
    BIAS = 1  #: address in bias-memory entries (bf16, 2 bytes each)
    SCALE = 2  #: address in scale-memory entries (bf16, 2 bytes each)


class ElemFormat(enum.Enum, shape=1):
    """Element format of a scratchpad operand."""

    BF16 = 0
    FP32 = 1


class WeightFormat(enum.Enum, shape=3):
    """Format of the MATMUL B operand and of QUANTIZE/DEQUANTIZE data (``numerics.quant``)."""

    BF16 = 0
    INT4 = 1
    FP4 = 2
    IF4 = 3
    NVFP4 = 4
    INT8 = 5
    FP8 = 6
    IF8 = 7


class BiasMode(enum.Enum, shape=2):
    """Epilogue bias: none, one per output row, one per output column, or a full matrix."""

    NONE = 0
    ROW = 1
    COL = 2
    FULL = 3


class RowMaxMode(enum.Enum, shape=2):
    """Epilogue running row maximum (for softmax): off, start a new maximum, or update it."""

    NONE = 0
    INIT = 1
    UPDATE = 2


class OutLayout(enum.Enum, shape=2):
    """How MATMUL writes its output block to the scratchpad (see ``docs/isa.md``)."""

    ROW_MAJOR = 0  #: element (m, n) at m·pitch + n·e
    A_PANEL = 1  #: transposed tile panels: ready to be the A operand of a next MATMUL
    B_PANEL = 2  #: column tile panels: ready to be the B operand of a next MATMUL


class VecOp(enum.Enum, shape=5):
    """Vector-unit operation (``VECTOR``); fp32 inside, see ``docs/isa.md`` for each."""

    COPY = 0
    FILL = 1
    ADD = 2
    SUB = 3
    MUL = 4
    MAX = 5
    MIN = 6
    EXP = 7
    RECIP = 8
    RSQRT = 9
    ACTIVATE = 10
    RSUM = 11
    RMAX = 12
    RSUMSQ = 13
    ARGMAX4 = 14
    QUANTIZE = 15
    DEQUANTIZE = 16
    TRANSPOSE = 17


class VecBcast(enum.Enum, shape=2):
    """Second operand of a binary VECTOR op: a tensor, one value per row, a row vector, imm."""

    TENSOR = 0
    ROW = 1
    COL = 2
    SCALAR = 3


class IllegalInstruction(ValueError):
    """An instruction word that does not decode (bad opcode, enum value or reserved bits)."""


def f32_bits(value: float | int) -> int:
    """The fp32 bit pattern of ``value`` (a Python float) as an int; ints are bit patterns.

    Raises ``ValueError`` for a float that overflows fp32 and ``TypeError`` for other types.
    """
    if isinstance(value, bool):
        raise TypeError(f"an fp32 immediate must be a float or a bit pattern, not {value!r}")
    if isinstance(value, int):
        if not 0 <= value < 1 << 32:
            raise ValueError(f"fp32 bit pattern {value:#x} is out of range; allowed 0…0xFFFFFFFF")
        return value
    if isinstance(value, float):
        try:
            return struct.unpack("<I", struct.pack("<f", value))[0]
        except OverflowError:
            raise ValueError(f"{value!r} overflows fp32") from None
    raise TypeError(f"an fp32 immediate must be a float or an int bit pattern, not {value!r}")
