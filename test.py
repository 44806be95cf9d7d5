#!/usr/bin/env python3
"""Run the default test suite: ``python test.py`` (bootstraps ``.venv`` on first use).

Extra arguments go to pytest, e.g. ``python test.py -m slow`` or ``python test.py tests/rtl``.
Without ``-m`` the default tier runs: everything not marked ``slow``, ``synth``, ``hw`` or
``formal``.
"""

import sys
from pathlib import Path

DEFAULT_TIER = "not slow and not synth and not hw and not formal"


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
    from bootstrap import ensure_venv

    ensure_venv()
    import pytest

    args = sys.argv[1:]
    if "-m" not in args:
        args = ["-m", DEFAULT_TIER, *args]
    return pytest.main(args)


if __name__ == "__main__":
    sys.exit(main())
