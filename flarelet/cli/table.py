"""The bindings table ``flarelet dev`` prints at start, laid out as ``wrangler dev`` does::

Your Worker has access to the following bindings:
Binding                            Resource                  Mode
env.KV (0000...0001)               KV Namespace              local
env.AI                             AI                        local
env.GREETING ("hello")             Environment Variable      local
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO


def binding_label(row: Any) -> str:
    return f"env.{row.name} ({row.resource})" if row.resource else f"env.{row.name}"


def print_bindings(rows: Sequence[Any], file: TextIO | None = None) -> None:
    """Print ``BindingInfo`` rows with rich (nothing when there are none, as wrangler)."""
    if not rows:
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=file, highlight=False, soft_wrap=False)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("Binding", overflow="fold")
    table.add_column("Resource")
    table.add_column("Mode")
    for row in rows:
        mode_style = "yellow" if row.mode == "not supported" else ("magenta" if row.mode == "remote" else "")
        # Text(): a var's value may contain [brackets] that rich would read as markup
        table.add_row(Text(binding_label(row)), Text(row.type_label), Text(row.mode, style=mode_style))
    console.print("Your Worker has access to the following bindings:")
    console.print(table)
