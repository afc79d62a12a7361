"""A JSONC reader (JSON with ``//`` and ``/* */`` comments and trailing commas) that remembers lines.

``wrangler.jsonc`` is JSONC, and ``wrangler.json`` is parsed the same way by wrangler. Besides the
value, :func:`parse_jsonc` returns the line of every key and array item (by path, e.g.
``("env", "staging", "vars")``), so a config error can name the line it is on.
"""

from __future__ import annotations

import bisect
import json
import re
from typing import Any

_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]

Path = tuple[Any, ...]


class JsoncError(ValueError):
    """Malformed JSONC; ``line``/``column`` are 1-based."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"{message} (line {line}, column {column})")
        self.message = message
        self.line = line
        self.column = column


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lines: dict[Path, int] = {}
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_col(self, pos: int) -> tuple[int, int]:
        index = bisect.bisect_right(self._line_starts, pos) - 1
        return index + 1, pos - self._line_starts[index] + 1

    def fail(self, message: str, pos: int | None = None) -> JsoncError:
        line, col = self.line_col(self.pos if pos is None else pos)
        return JsoncError(message, line, col)

    def skip(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            ch = text[self.pos]
            if ch in " \t\r\n\ufeff":
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end + 1
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.fail("unterminated /* comment")
                self.pos = end + 2
            else:
                return

    def value(self, path: Path) -> Any:
        self.skip()
        if self.pos >= len(self.text):
            raise self.fail("unexpected end of file, expected a value")
        self.lines.setdefault(path, self.line_col(self.pos)[0])
        ch = self.text[self.pos]
        if ch == "{":
            return self.obj(path)
        if ch == "[":
            return self.arr(path)
        if ch == '"':
            return self.string()
        for word, val in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return val
        m = _NUMBER.match(self.text, self.pos)
        if m:
            self.pos = m.end()
            s = m.group()
            return float(s) if any(c in s for c in ".eE") else int(s)
        raise self.fail(f"unexpected character {ch!r}")

    def string(self) -> str:
        try:
            value, end = _scanstring(self.text, self.pos + 1, True)
        except json.JSONDecodeError as exc:
            raise self.fail(f"invalid string: {exc.msg}", exc.pos) from None
        self.pos = end
        return value

    def obj(self, path: Path) -> dict[str, Any]:
        self.pos += 1
        result: dict[str, Any] = {}
        while True:
            self.skip()
            if self.pos >= len(self.text):
                raise self.fail("unexpected end of file inside an object")
            if self.text[self.pos] == "}":
                self.pos += 1
                return result
            if self.text[self.pos] != '"':
                raise self.fail("expected a double-quoted property name")
            key_line = self.line_col(self.pos)[0]
            key = self.string()
            self.skip()
            if self.pos >= len(self.text) or self.text[self.pos] != ":":
                raise self.fail(f"expected ':' after property name {key!r}")
            self.pos += 1
            self.lines[path + (key,)] = key_line
            result[key] = self.value(path + (key,))
            end = self.pos
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
                continue
            if self.pos < len(self.text) and self.text[self.pos] == "}":
                continue
            raise self.fail("expected ',' or '}' after a property value", end)

    def arr(self, path: Path) -> list[Any]:
        self.pos += 1
        result: list[Any] = []
        while True:
            self.skip()
            if self.pos >= len(self.text):
                raise self.fail("unexpected end of file inside an array")
            if self.text[self.pos] == "]":
                self.pos += 1
                return result
            result.append(self.value(path + (len(result),)))
            end = self.pos
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
                continue
            if self.pos < len(self.text) and self.text[self.pos] == "]":
                continue
            raise self.fail("expected ',' or ']' after an array item", end)


def parse_jsonc(text: str) -> tuple[Any, dict[Path, int]]:
    """Parse JSONC; returns ``(value, {path: line})``. Raises :class:`JsoncError`."""
    parser = _Parser(text)
    value = parser.value(())
    parser.skip()
    if parser.pos != len(text):
        raise parser.fail("unexpected content after the top-level value")
    return value, parser.lines
