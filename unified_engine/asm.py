"""Assembler and disassembler: build programs in Python, encode them, print them back.

::

    from unified_engine.asm import Program, Addr, gpr

    prog = Program(config)
    prog.ar_set(1, value=0x1000, inc=64)             # AR1 walks the source in 64-byte steps
    prog.ar_set(2, value=0x8000, inc=64)             # AR2 walks the destination
    prog.token("store", "load")                      # the scratchpad buffer starts free
    with prog.loop(4):                               # counted loop (counter in r{gprs-1})
        prog.load(dram=Addr(ar=1, inc=True), sram=0, row_bytes=64,
                  wait="store", signal="store")
        prog.store(dram=Addr(ar=2, inc=True), sram=0, row_bytes=64,
                   wait="load", signal="load")
    prog.halt()
    blob = prog.encode()                             # bytes, 32 per instruction
    print(disassemble(blob, config))

Every field is range-checked when the instruction is added (``ValueError``/``TypeError`` naming
the instruction index, the field, the value and the allowed range); label references are
resolved and checked by :meth:`Program.instructions`/:meth:`Program.encode`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import struct
from collections.abc import Iterable, Iterator
from typing import Any

from amaranth.lib import enum

from .config import EngineConfig
from .isa import (
    ActKind,
    AluOp,
    ArOp,
    Instruction,
    Isa,
    JumpCond,
    JumpMode,
    Opcode,
    Queue,
    SyncOp,
    f32_bits,
    isa_for,
)

__all__ = ["Addr", "Gpr", "Program", "decode", "disassemble", "gpr"]


@dataclasses.dataclass(frozen=True)
class Gpr:
    """A general-purpose register operand (``r0`` always reads 0)."""

    index: int

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise ValueError(f"a GPR index is a non-negative int, not {self.index!r}")

    def __repr__(self) -> str:
        return f"r{self.index}"


def gpr(index: int) -> Gpr:
    """GPR operand ``r<index>``."""
    return Gpr(index)


@dataclasses.dataclass(frozen=True)
class Addr:
    """An address operand: ``imm + AR[ar]``, post-incrementing ``AR[ar]`` when ``inc``."""

    imm: int = 0
    ar: int = 0
    inc: bool = False

    def __post_init__(self) -> None:
        if self.inc and self.ar == 0:
            raise ValueError("Addr(inc=True) needs an address register (ar ≥ 1) to increment")


_Target = str | int | Gpr
_Queues = Queue | str | int | Iterable[Queue | str]


@dataclasses.dataclass
class _Pending:
    opcode: Opcode
    values: dict[str, Any]
    label: str | None = None  # label whose position fills the jump/loop offset
    relative: bool = False


class Program:
    """An instruction sequence under construction for one :class:`EngineConfig`.

    Parameters
    ----------
    config:
        The engine the program is for (field widths, register counts); default
        ``EngineConfig()``.

    Methods add one instruction each and return its index.  Queue instructions (``load``,
    ``store``, ``matmul``, ``vector``) take ``wait``/``signal`` (a queue, a queue name such as
    ``"load"``, an iterable of them, or a 4-bit mask) and ``override=(field, gpr)`` to replace
    one field with a GPR value at run time.
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        if config is None:
            config = EngineConfig()
        if not isinstance(config, EngineConfig):
            raise TypeError(f"Program needs an EngineConfig, not {type(config).__name__}")
        self.config = config
        self.isa: Isa = isa_for(config)
        self._items: list[_Pending] = []
        self._labels: dict[str, int] = {}
        self._loop_regs: list[int] = []
        self._auto_labels = 0

    # ----- bookkeeping --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    @property
    def here(self) -> int:
        """Index of the next instruction."""
        return len(self._items)

    def label(self, name: str) -> int:
        """Bind ``name`` to the next instruction's index; each name is bound once."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a label is a non-empty string, not {name!r}")
        if name in self._labels:
            raise ValueError(f"label {name!r} is already bound to instruction {self._labels[name]}")
        self._labels[name] = self.here
        return self.here

    @property
    def labels(self) -> dict[str, int]:
        """Bound labels and their instruction indices."""
        return dict(self._labels)

    def _fresh_label(self, stem: str) -> str:
        self._auto_labels += 1
        return f".{stem}{self._auto_labels}"

    def _emit(self, opcode: Opcode, values: dict[str, Any], label: str | None = None,
              relative: bool = False) -> int:
        pc = self.here
        try:
            self.isa.make(opcode, **values)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"instruction {pc} ({opcode.name}): {exc}") from None
        self._items.append(_Pending(opcode, values, label, relative))
        return pc

    # ----- operand helpers ----------------------------------------------------------------

    def _reg(self, value: Any, what: str) -> int:
        if isinstance(value, Gpr):
            if value.index >= self.config.gprs:
                raise ValueError(
                    f"{what}: {value!r} does not exist; allowed r0…r{self.config.gprs - 1}"
                )
            return value.index
        raise TypeError(f"{what} must be a GPR (gpr(n)), not {value!r}")

    def _ar(self, value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{what} must be an address-register index (int), not {value!r}")
        if not 1 <= value < self.config.address_registers:
            raise ValueError(
                f"{what}={value} is out of range; allowed 1…{self.config.address_registers - 1}"
                " (ar0 is hard-wired to 0)"
            )
        return value

    @staticmethod
    def _addr(values: dict[str, Any], name: str, value: Any) -> None:
        if isinstance(value, Addr):
            values[f"{name}__imm"] = value.imm
            values[f"{name}__ar"] = value.ar
            values[f"{name}__inc"] = int(value.inc)
        else:
            values[f"{name}__imm"] = value

    @staticmethod
    def _mask(value: _Queues, what: str) -> int:
        if isinstance(value, int) and not isinstance(value, bool | enum.Enum):
            return value
        items = [value] if isinstance(value, Queue | str) else list(value)
        mask = 0
        for item in items:
            if isinstance(item, str):
                try:
                    item = Queue[item.upper()]
                except KeyError:
                    raise ValueError(
                        f"{what}: unknown queue {item!r}; allowed: "
                        + ", ".join(q.name.lower() for q in Queue)
                    ) from None
            if not isinstance(item, Queue):
                raise TypeError(f"{what}: expected a Queue or queue name, not {item!r}")
            mask |= 1 << item.value
        return mask

    def _queue_fields(self, opcode: Opcode, values: dict[str, Any], wait: _Queues,
                      signal: _Queues, override: tuple[str, Gpr] | None) -> dict[str, Any]:
        values["wait"] = self._mask(wait, "wait")
        values["signal"] = self._mask(signal, "signal")
        if override is not None:
            if not (isinstance(override, tuple) and len(override) == 2):
                raise TypeError(f"override must be a (field, gpr) pair, not {override!r}")
            path, reg = override
            paths = [f.path for f in self.isa.overridable(opcode)]
            path = path.replace("__", ".")
            if path in ("dram", "sram", "a", "b", "dst", "src0", "src1", "rmax"):
                path += ".imm"
            if path not in paths:
                raise ValueError(
                    f"{opcode.name} cannot override {path!r}; overridable: {', '.join(paths)}"
                )
            index = self._reg(reg, "override register")
            if index == 0:
                raise ValueError("override register must not be r0 (0 means 'no override')")
            values["ovr_field"] = paths.index(path) + 1
            values["ovr_gpr"] = index
        return values

    # ----- dispatcher instructions ----------------------------------------------------------

    def nop(self) -> int:
        """No operation (one dispatch cycle)."""
        return self._emit(Opcode.NOP, {})

    def halt(self, code: int = 0) -> int:
        """Wait for every queue to drain, report ``code`` in HALT_CODE and stop."""
        return self._emit(Opcode.HALT, {"code": code})

    def alu(self, op: AluOp | str, rd: Gpr, rs1: Gpr, src2: Gpr | int) -> int:
        """``rd ← rs1 op src2`` where ``src2`` is a GPR or a 32-bit immediate."""
        values = {"op": op, "rd": self._reg(rd, "rd"), "rs1": self._reg(rs1, "rs1")}
        if isinstance(src2, Gpr):
            values["rs2"] = self._reg(src2, "rs2")
        else:
            values["use_imm"] = 1
            values["imm"] = src2
        return self._emit(Opcode.ALU, values)

    def li(self, rd: Gpr, value: int) -> int:
        """Load a 32-bit immediate: ``rd ← value`` (``add rd, r0, value``)."""
        return self.alu(AluOp.ADD, rd, Gpr(0), value)

    def mov(self, rd: Gpr, rs: Gpr) -> int:
        """``rd ← rs``."""
        return self.alu(AluOp.ADD, rd, rs, 0)

    def add(self, rd: Gpr, rs1: Gpr, src2: Gpr | int) -> int:
        """``rd ← rs1 + src2``."""
        return self.alu(AluOp.ADD, rd, rs1, src2)

    def sub(self, rd: Gpr, rs1: Gpr, src2: Gpr | int) -> int:
        """``rd ← rs1 − src2``."""
        return self.alu(AluOp.SUB, rd, rs1, src2)

    def jump(self, target: _Target, cond: JumpCond | str = JumpCond.ALWAYS,
             rs: Gpr | None = None, link: Gpr | None = None, relative: bool = True) -> int:
        """Jump to ``target`` when ``cond`` holds for ``rs``.

        ``target`` is a label (encoded pc-relative unless ``relative=False``), an absolute
        instruction index, or a GPR (jump to the index it holds). ``link`` receives pc + 1.
        """
        if isinstance(cond, str):
            try:
                cond = JumpCond[cond.upper()]
            except KeyError:
                raise ValueError(f"jump cond={cond!r} is not allowed; allowed: "
                                 + ", ".join(c.name.lower() for c in JumpCond)) from None
        values: dict[str, Any] = {"cond": cond}
        if rs is not None:
            values["rs"] = self._reg(rs, "rs")
        elif cond is not JumpCond.ALWAYS:
            raise ValueError(f"jump cond={cond.name.lower()} needs the tested register rs")
        if link is not None:
            values["link"] = self._reg(link, "link")
        if isinstance(target, Gpr):
            values["mode"] = JumpMode.REG
            values["rt"] = self._reg(target, "target")
            return self._emit(Opcode.JUMP, values)
        if isinstance(target, str):
            values["mode"] = JumpMode.REL if relative else JumpMode.ABS
            return self._emit(Opcode.JUMP, values, label=target, relative=relative)
        if isinstance(target, bool) or not isinstance(target, int) or target < 0:
            raise TypeError(f"jump target must be a label, an index ≥ 0 or a GPR, not {target!r}")
        values["mode"] = JumpMode.ABS
        values["offset"] = target
        return self._emit(Opcode.JUMP, values)

    def beqz(self, rs: Gpr, target: _Target) -> int:
        """Jump if ``rs == 0``."""
        return self.jump(target, JumpCond.EQZ, rs)

    def bnez(self, rs: Gpr, target: _Target) -> int:
        """Jump if ``rs != 0``."""
        return self.jump(target, JumpCond.NEZ, rs)

    def call(self, target: _Target, link: Gpr) -> int:
        """Jump to ``target`` with the return index in ``link``; return with ``ret(link)``."""
        return self.jump(target, link=link)

    def ret(self, link: Gpr) -> int:
        """Jump to the index held in ``link``."""
        return self.jump(link)

    def loop_end(self, rc: Gpr, start: str | int) -> int:
        """``LOOP``: ``rc ← rc − 1``; jump to ``start`` (label or index) while ``rc ≠ 0``."""
        values = {"rc": self._reg(rc, "rc")}
        if isinstance(start, str):
            return self._emit(Opcode.LOOP, values, label=start, relative=True)
        values["offset"] = start - self.here
        return self._emit(Opcode.LOOP, values)

    @contextlib.contextmanager
    def loop(self, count: int | Gpr, counter: Gpr | None = None) -> Iterator[Gpr]:
        """Counted loop: the body runs ``count`` times (an int ≥ 1 or a GPR, which may be 0).

        The counter register (yielded) counts down from ``count`` to 1 inside the body; unless
        ``counter`` is given it is the highest GPR not used by an enclosing loop.
        """
        if counter is None:
            free = [i for i in range(self.config.gprs - 1, 0, -1) if i not in self._loop_regs]
            rc = Gpr(free[0])
        else:
            rc = Gpr(self._reg(counter, "loop counter"))
            if rc.index == 0:
                raise ValueError("the loop counter cannot be r0")
        end = None
        if isinstance(count, Gpr):
            self.mov(rc, count)
            end = self._fresh_label("loop_end")
            self.beqz(rc, end)
        else:
            if isinstance(count, bool) or not isinstance(count, int):
                raise TypeError(f"loop count must be an int or a GPR, not {count!r}")
            if not 1 <= count <= 0xFFFFFFFF:
                raise ValueError(f"loop count={count} is out of range; allowed 1…4294967295")
            self.li(rc, count)
        start = self._fresh_label("loop")
        self.label(start)
        self._loop_regs.append(rc.index)
        try:
            yield rc
        finally:
            self._loop_regs.remove(rc.index)
        self.loop_end(rc, start)
        if end is not None:
            self.label(end)

    def ar_set(self, ar: int, value: int, inc: int = 0) -> int:
        """``AR[ar] ← value`` with post-increment step ``inc`` (two's complement)."""
        return self._emit(Opcode.AREG, {"op": ArOp.SET, "ar": self._ar(ar, "ar"),
                                        "value": value, "inc": inc})

    def ar_set_gpr(self, ar: int, rs: Gpr, offset: int = 0) -> int:
        """``AR[ar] ← GPR[rs] + offset`` (runtime base address)."""
        return self._emit(Opcode.AREG, {"op": ArOp.SET_GPR, "ar": self._ar(ar, "ar"),
                                        "rs": self._reg(rs, "rs"), "value": offset})

    def ar_add_gpr(self, ar: int, rs: Gpr, offset: int = 0) -> int:
        """``AR[ar] ← AR[ar] + GPR[rs] + offset``."""
        return self._emit(Opcode.AREG, {"op": ArOp.ADD_GPR, "ar": self._ar(ar, "ar"),
                                        "rs": self._reg(rs, "rs"), "value": offset})

    def ar_inc_gpr(self, ar: int, rs: Gpr, offset: int = 0) -> int:
        """Increment step of ``AR[ar]`` ← sign-extended ``GPR[rs] + offset``."""
        return self._emit(Opcode.AREG, {"op": ArOp.INC_GPR, "ar": self._ar(ar, "ar"),
                                        "rs": self._reg(rs, "rs"), "inc": offset})

    def sync(self, op: SyncOp | str, mask: int, value: int = 0, timeout: int = 0) -> int:
        """Cross-engine flags: ``SET``/``CLEAR`` (after a fence), ``WAIT`` (with timeout)."""
        return self._emit(Opcode.SYNC, {"op": op, "mask": mask, "value": value,
                                        "timeout": timeout})

    def fence(self) -> int:
        """Wait until every queue is idle."""
        return self.sync(SyncOp.FENCE, 0)

    def trace(self, marker: int) -> int:
        """Write a timestamped marker to the trace buffer."""
        return self._emit(Opcode.TRACE, {"marker": marker})

    def epi(self, index: int, act: ActKind | str = ActKind.IDENTITY, scale: float = 1.0,
            a: float = 0.0, b: float = 0.0, c: float = 0.0, d: float = 0.0) -> int:
        """Write epilogue-table entry ``index`` (fences the array and vector queues).

        fp32 parameters are floats (rounded to fp32; overflow raises) or int bit patterns.
        """
        values: dict[str, Any] = {"index": index, "act": act}
        for name, v in (("scale", scale), ("a", a), ("b", b), ("c", c), ("d", d)):
            values[name] = f32_bits(v)
        kind = ActKind[act.upper()] if isinstance(act, str) and act.upper() in \
            ActKind.__members__ else act
        floats = {n: struct.unpack("<f", struct.pack("<I", values[n]))[0] for n in "abcd"}
        # The engine stops with ILLEGAL_OPERAND on these; say so at build time instead.
        if kind is ActKind.UNIFIED and not all(math.isfinite(v) for v in floats.values()):
            raise ValueError(f"instruction {self.here} (EPI): UNIFIED parameters must be "
                             f"finite, got {floats}")
        if kind is ActKind.CLAMP and (math.isnan(floats["a"]) or math.isnan(floats["b"]) or
                                      (floats["a"], math.copysign(1, floats["a"])) >
                                      (floats["b"], math.copysign(1, floats["b"]))):
            raise ValueError(f"instruction {self.here} (EPI): CLAMP needs a ≤ b (no NaN), "
                             f"got a={floats['a']} b={floats['b']}")
        return self._emit(Opcode.EPI, values)

    # ----- queue instructions -----------------------------------------------------------------

    def load(self, dram: int | Addr, sram: int | Addr, row_bytes: int, rows: int = 1,
             dram_stride: int | None = None, sram_stride: int = 0, mem: str = "scratchpad",
             wait: _Queues = (), signal: _Queues = (),
             override: tuple[str, Gpr] | None = None) -> int:
        """DMA ``rows`` × ``row_bytes`` from DRAM to on-chip memory ``mem`` (2-D strided).

        ``dram_stride`` defaults to ``row_bytes`` (consecutive rows; pass 0 explicitly to read
        one DRAM row repeatedly); ``sram_stride = 0`` packs the rows on chip.
        """
        return self._dma(Opcode.LOAD, dram, sram, row_bytes, rows, dram_stride, sram_stride,
                         mem, wait, signal, override)

    def store(self, dram: int | Addr, sram: int | Addr, row_bytes: int, rows: int = 1,
              dram_stride: int | None = None, sram_stride: int = 0, mem: str = "scratchpad",
              wait: _Queues = (), signal: _Queues = (),
              override: tuple[str, Gpr] | None = None) -> int:
        """DMA ``rows`` × ``row_bytes`` from on-chip memory ``mem`` to DRAM (2-D strided).

        Strides as in :meth:`load`.
        """
        return self._dma(Opcode.STORE, dram, sram, row_bytes, rows, dram_stride, sram_stride,
                         mem, wait, signal, override)

    def _dma(self, opcode, dram, sram, row_bytes, rows, dram_stride, sram_stride, mem, wait,
             signal, override) -> int:
        if dram_stride is None:
            dram_stride = row_bytes
        values: dict[str, Any] = {"mem": mem, "rows": rows, "row_bytes": row_bytes,
                                  "dram_stride": dram_stride, "sram_stride": sram_stride}
        self._addr(values, "dram", dram)
        self._addr(values, "sram", sram)
        return self._emit(opcode, self._queue_fields(opcode, values, wait, signal, override))

    def matmul(self, a: int | Addr, b: int | Addr, dst: int | Addr, k: int,
               m_tiles: int = 1, n_tiles: int = 1, *, acc: int = 0, acc_in: bool = False,
               acc_out: bool = False, wb: bool = True, b_fmt: str = "bf16", qscale: int = 0,
               bias_mode: str = "none", bias: int = 0, epi: int = 0, rowmax: str = "none",
               rmax: int | Addr = 0, out_fmt: str = "bf16", out_layout: str = "row_major",
               dst_pitch: int = 0, wait: _Queues = (), signal: _Queues = (),
               override: tuple[str, Gpr] | None = None) -> int:
        """Array matmul of ``m_tiles × n_tiles`` output tiles over ``k`` (see docs/isa.md)."""
        values: dict[str, Any] = {
            "m_tiles": m_tiles, "n_tiles": n_tiles, "k": k, "acc": acc, "acc_in": int(acc_in),
            "acc_out": int(acc_out), "wb": int(wb), "b_fmt": b_fmt, "qscale": qscale,
            "bias_mode": bias_mode, "bias": bias, "epi": epi, "rowmax": rowmax,
            "out_fmt": out_fmt, "out_layout": out_layout, "dst_pitch": dst_pitch,
        }
        for name, value in (("a", a), ("b", b), ("dst", dst), ("rmax", rmax)):
            self._addr(values, name, value)
        return self._emit(Opcode.MATMUL,
                          self._queue_fields(Opcode.MATMUL, values, wait, signal, override))

    def vector(self, op: str, dst: int | Addr, length: int, rows: int = 1, *,
               src0: int | Addr = 0, src1: int | Addr = 0, src0_stride: int = 0,
               src1_stride: int = 0, dst_stride: int = 0, src0_fmt: str = "bf16",
               src1_fmt: str = "bf16", dst_fmt: str = "bf16", bcast: str = "tensor",
               imm: float | int = 0, epi: int = 0, accumulate: bool = False,
               qfmt: str = "bf16", qscale: int = 0, wait: _Queues = (),
               signal: _Queues = (), override: tuple[str, Gpr] | None = None) -> int:
        """Vector-unit operation ``op`` over ``rows`` × ``length`` elements (docs/isa.md)."""
        values: dict[str, Any] = {
            "op": op, "length": length, "rows": rows, "src0_stride": src0_stride,
            "src1_stride": src1_stride, "dst_stride": dst_stride, "src0_fmt": src0_fmt,
            "src1_fmt": src1_fmt, "dst_fmt": dst_fmt, "bcast": bcast, "imm": f32_bits(imm),
            "epi": epi, "accumulate": int(accumulate), "qfmt": qfmt, "qscale": qscale,
        }
        for name, value in (("src0", src0), ("src1", src1), ("dst", dst)):
            self._addr(values, name, value)
        return self._emit(Opcode.VECTOR,
                          self._queue_fields(Opcode.VECTOR, values, wait, signal, override))

    def token(self, src: Queue | str, dst: Queue | str, wait: _Queues = ()) -> int:
        """Push one token from queue ``src`` to queue ``dst`` with a zero-size instruction.

        This is how a program seeds "buffer free" tokens before a pipelined loop (VTA's
        idiom): the instruction runs on ``src`` (after ``wait``), does nothing, and signals.
        """
        q = Queue[src.upper()] if isinstance(src, str) else src
        if not isinstance(q, Queue):
            raise TypeError(f"token source must be a Queue or queue name, not {src!r}")
        common = {"wait": wait, "signal": dst}
        if q is Queue.LOAD:
            return self.load(dram=0, sram=0, row_bytes=0, rows=0, **common)
        if q is Queue.STORE:
            return self.store(dram=0, sram=0, row_bytes=0, rows=0, **common)
        if q is Queue.ARRAY:
            return self.matmul(a=0, b=0, dst=0, k=0, m_tiles=0, n_tiles=0, **common)
        return self.vector("copy", dst=0, length=0, rows=0, **common)

    # ----- output ---------------------------------------------------------------------------

    def instructions(self) -> list[Instruction]:
        """The program with labels resolved, as validated :class:`Instruction` objects."""
        out = []
        for pc, item in enumerate(self._items):
            values = dict(item.values)
            if item.label is not None:
                if item.label not in self._labels:
                    raise ValueError(f"instruction {pc} ({item.opcode.name}): label "
                                     f"{item.label!r} is never bound")
                target = self._labels[item.label]
                values["offset"] = target - pc if item.relative else target
            try:
                out.append(self.isa.make(item.opcode, **values))
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"instruction {pc} ({item.opcode.name}): {exc}") from None
        return out

    def encode(self) -> bytes:
        """The program image: 32 little-endian bytes per instruction."""
        return self.isa.encode_bytes(self.instructions())

    def disassemble(self) -> str:
        """The program as text, with this program's labels."""
        return _listing(self.isa, self.instructions(), self._labels)


def decode(blob: bytes, config: EngineConfig | None = None) -> list[Instruction]:
    """Decode a program image for ``config`` (default ``EngineConfig()``)."""
    return isa_for(config or EngineConfig()).decode_bytes(bytes(blob))


def disassemble(blob: bytes, config: EngineConfig | None = None) -> str:
    """A program image as text: one ``index: mnemonic fields`` line per instruction."""
    isa = isa_for(config or EngineConfig())
    return _listing(isa, isa.decode_bytes(bytes(blob)), {})


# ----- text formatting ----------------------------------------------------------------------


def _f32_text(bits: int) -> str:
    value = struct.unpack("<f", struct.pack("<I", bits))[0]
    if value != value:  # NaN: show the payload
        return f"nan({bits:#010x})"
    return repr(value)


def _target(ins: Instruction, pc: int) -> int | None:
    if ins.opcode is Opcode.LOOP:
        return pc + ins["offset"]
    if ins.opcode is Opcode.JUMP:
        offset = ins["offset"]
        if ins["mode"] is JumpMode.ABS:
            return offset
        if ins["mode"] is JumpMode.REL:
            return pc + (offset - (1 << 32) if offset >> 31 else offset)
    return None


def _listing(isa: Isa, instructions: list[Instruction], labels: dict[str, int]) -> str:
    names: dict[int, list[str]] = {}
    for name, pc in labels.items():
        names.setdefault(pc, []).append(name)
    lines = []
    for pc, ins in enumerate(instructions):
        for name in names.get(pc, []):
            lines.append(f"{name}:")
        lines.append(f"{pc:6d}: {format_instruction(isa, ins, pc)}")
    for name in names.get(len(instructions), []):
        lines.append(f"{name}:")
    return "\n".join(lines) + ("\n" if lines else "")


def format_instruction(isa: Isa, ins: Instruction, pc: int = 0) -> str:
    """One instruction as text: mnemonic, then the fields that are not zero."""
    op = ins.opcode
    f = ins.fields
    if op is Opcode.ALU:
        src2 = f"{f['imm']:#x}" if f["use_imm"] else f"r{f['rs2']}"
        return f"alu.{f['op'].name.lower()} r{f['rd']}, r{f['rs1']}, {src2}"
    if op is Opcode.JUMP:
        text = f"jump.{f['cond'].name.lower()}"
        if f["cond"] is not JumpCond.ALWAYS:
            text += f" r{f['rs']},"
        if f["mode"] is JumpMode.REG:
            offset = f["offset"] - (1 << 32) if f["offset"] >> 31 else f["offset"]
            text += f" [r{f['rt']}{offset:+d}]"
        else:
            text += f" -> {_target(ins, pc)}" + (" (abs)" if f["mode"] is JumpMode.ABS else "")
        if f["link"]:
            text += f" link=r{f['link']}"
        return text
    if op is Opcode.LOOP:
        return f"loop r{f['rc']} -> {_target(ins, pc)}"
    override = isa.overridable(op)[f["ovr_field"] - 1].path if f["ovr_field"] else None
    parts = []
    done_groups: set[str] = set()
    for info in isa.fields(op):
        path = info.path
        if path in ("opcode", "ovr_field", "ovr_gpr"):
            continue
        value = f[path]
        if "." in path:
            group = path.split(".")[0]
            if group in done_groups:
                continue
            done_groups.add(group)
            imm = f"r{f['ovr_gpr']}" if override == f"{group}.imm" else f"{f[group + '.imm']:#x}"
            ar = f[group + ".ar"]
            text = f"ar{ar}+{imm}" + ("++" if f[group + ".inc"] else "") if ar else imm
            parts.append(f"{group}={text}")
        elif path == override:
            parts.append(f"{path}=r{f['ovr_gpr']}")
        elif path in ("wait", "signal"):
            if value:
                queues = [q.name.lower() for q in Queue if value >> q.value & 1]
                parts.append(f"{path}={','.join(queues)}")
        elif info.kind == "enum":
            if value.value:
                parts.append(f"{path}={value.name.lower()}")
        elif info.kind == "f32":
            if value:
                parts.append(f"{path}={_f32_text(value)}")
        elif value:
            parts.append(f"{path}={value:#x}" if info.kind in ("word", "mask") else
                         f"{path}={value}")
    mnemonic = op.name.lower()
    if op is Opcode.VECTOR:
        mnemonic += "." + f["op"].name.lower()
        parts = [p for p in parts if not p.startswith("op=")]
    if op in (Opcode.AREG, Opcode.SYNC):
        mnemonic += "." + f["op"].name.lower()
        parts = [p for p in parts if not p.startswith("op=")]
    return " ".join([mnemonic, *parts])
