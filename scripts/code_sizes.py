#!/usr/bin/env python3
"""The largest classes and functions under some folders, in lines (issue 12's "no class over ~300
lines, no function over ~80" aim): ``scripts/code_sizes.py bindings/ai [--top 10] [--over-class 300
--over-function 80]``. A method counts as a function; a class's size includes its methods."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def sizes(root: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    classes: list[tuple[int, str]] = []
    functions: list[tuple[int, str]] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                size = (node.end_lineno or node.lineno) - start + 1
                where = f"{path}:{node.lineno} {node.name}"
                (classes if isinstance(node, ast.ClassDef) else functions).append((size, where))
    return sorted(classes, reverse=True), sorted(functions, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--over-class", type=int, default=300)
    parser.add_argument("--over-function", type=int, default=80)
    args = parser.parse_args()
    classes: list[tuple[int, str]] = []
    functions: list[tuple[int, str]] = []
    for folder in args.folders:
        c, f = sizes(folder)
        classes += c
        functions += f
    classes.sort(reverse=True)
    functions.sort(reverse=True)
    for title, items, limit in (("classes", classes, args.over_class), ("functions", functions, args.over_function)):
        over = sum(1 for size, _ in items if size > limit)
        print(f"largest {title} ({over} over {limit} lines):")
        for size, where in items[: args.top]:
            print(f"  {size:5d}  {where}")


if __name__ == "__main__":
    main()
