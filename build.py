#!/usr/bin/env python3
"""Build an engine for a board: ``python build.py --board kintex7`` (bootstraps ``.venv``).

A thin command line over ``unified_engine.build``; ``python build.py --help`` lists the options.
"""

import sys
from pathlib import Path


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
    from bootstrap import ensure_venv

    ensure_venv()
    from unified_engine.build import main as build_main

    return build_main()


if __name__ == "__main__":
    sys.exit(main())
