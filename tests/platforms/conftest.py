"""The shell-adapter tests reuse the RTL test helpers (``tests/rtl`` is not a package)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "rtl"))
