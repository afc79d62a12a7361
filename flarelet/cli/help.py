"""Help text helpers: every ``flarelet`` (sub)command's ``--help`` ends with worked examples.

``examples(...)`` returns the ``add_parser`` keyword arguments that add an "Examples:" epilog,
kept verbatim (argparse would otherwise re-wrap the lines into one paragraph).
"""

from __future__ import annotations

import argparse
from typing import Any


def examples(*lines: str) -> dict[str, Any]:
    """``add_parser(..., **examples("flarelet dev", "flarelet dev --port 0"))``."""
    return {
        "epilog": "Examples:\n" + "\n".join(f"  {line}" for line in lines),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
