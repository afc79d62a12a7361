"""Which line of a ``wrangler.toml`` holds a given key (``tomllib`` does not keep positions).

A line-based scan good enough for config files: it follows ``[table]`` and ``[[array.of.tables]]``
headers, dotted and quoted keys, multi-line strings, and the items of multi-line arrays (one
item per line, as people write ``crons`` and ``kv_namespaces``). :func:`line_of` falls back to the
nearest enclosing key when a path is not found exactly (e.g. a key inside an inline table).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

Path = tuple[Any, ...]

_BARE = r"[A-Za-z0-9_\-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY = rf"(?:{_BARE}|{_QUOTED})(?:\s*\.\s*(?:{_BARE}|{_QUOTED}))*"
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_KEY})\s*\]\]?")
_ASSIGN = re.compile(rf"^\s*({_KEY})\s*=\s*(.*)$")
_PART = re.compile(rf"{_BARE}|{_QUOTED}")


def _split_key(key: str) -> list[str]:
    parts = []
    for m in _PART.finditer(key):
        part = m.group()
        if part[0] in "\"'":
            part = part[1:-1]
        parts.append(part)
    return parts


def _bracket_balance(value: str) -> int:
    """Net ``[``/``{`` depth opened by ``value``, ignoring brackets inside strings and comments."""
    depth = 0
    quote = ""
    i = 0
    while i < len(value):
        ch = value[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        i += 1
    return depth


def toml_key_lines(text: str) -> dict[Path, int]:
    """Map each key path (and array item index) found in ``text`` to its 1-based line."""
    lines: dict[Path, int] = {}
    table: Path = ()
    aot_counts: dict[Path, int] = {}
    in_multiline = ""
    open_array: Path | None = None
    depth = 0
    item_index = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = ""
            continue
        stripped = line.strip()
        if open_array is not None:
            if depth == 1 and stripped and not stripped.startswith(("#", "]")):
                lines.setdefault(open_array + (item_index,), number)
                item_index += 1
            depth += _bracket_balance(stripped)
            if depth <= 0:
                open_array = None
            continue
        if not stripped or stripped.startswith("#"):
            continue
        header = _HEADER.match(line)
        if header and not _ASSIGN.match(line):
            path = tuple(_split_key(header.group(2)))
            if header.group(1) == "[[":
                index = aot_counts.get(path, 0)
                aot_counts[path] = index + 1
                lines.setdefault(path, number)
                table = path + (index,)
            else:
                table = path
            lines.setdefault(table, number)
            continue
        assign = _ASSIGN.match(line)
        if not assign:
            continue
        path = table + tuple(_split_key(assign.group(1)))
        lines.setdefault(path, number)
        value = assign.group(2)
        for marker in ('"""', "'''"):
            if value.startswith(marker) and value.count(marker) == 1:
                in_multiline = marker
        balance = _bracket_balance(value)
        if balance > 0 and value.lstrip().startswith("["):
            open_array, depth, item_index = path, balance, 0
    return lines


def line_of(lines: Mapping[Path, int], path: Sequence[Any]) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    key = tuple(path)
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return None
