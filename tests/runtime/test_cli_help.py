"""The command line as a new user meets it: ``flarelet --version`` and an example in every ``--help``."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from flarelet.cli import build_parser, main


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"flarelet {version('flarelet')}"


def test_every_command_help_ends_with_examples_of_that_command():
    commands = dict(_commands(build_parser()))
    # dev, ai, ai serve, d1, d1 execute, d1 migrations (list, apply, create), and the top level
    assert {(), ("dev",), ("ai", "serve"), ("d1", "execute"), ("d1", "migrations", "create")} <= set(commands)
    for path, parser in commands.items():
        text = parser.format_help()
        assert "\nExamples:\n" in text, path
        shown = [line.strip() for line in text.split("\nExamples:\n", 1)[1].splitlines() if line.strip()]
        assert shown and all(line.startswith(" ".join(("flarelet", *path))) for line in shown), (path, shown)


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
def test_version_from_the_installed_script():
    script = Path(sys.executable).with_name("flarelet")
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"flarelet {version('flarelet')}", out
