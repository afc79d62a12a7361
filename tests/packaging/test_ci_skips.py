"""The repository's CI guard (``conftest.py`` at the root): under ``CI`` a skip fails the run, except
for ``@pytest.mark.gpu`` tests; locally a skip stays a skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SUITE = """
import pytest

def test_runs():
    pass

@pytest.mark.gpu
def test_needs_a_gpu():
    pytest.skip("no GPU here")
{extra}
"""


def _pytest(folder: Path, ci: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": ci}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:flarelet", str(folder)]
    return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def _suite(tmp_path: Path, extra: str = "") -> Path:
    shutil.copy(REPO / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: gpu\n")
    (tmp_path / "test_suite.py").write_text(SUITE.format(extra=extra))
    return tmp_path


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
def test_a_skip_fails_the_run_under_ci_but_a_gpu_skip_does_not(tmp_path: Path) -> None:
    folder = _suite(tmp_path, 'def test_needs_a_tool():\n    pytest.skip("tool missing")\n')
    under_ci = _pytest(folder, "true")
    assert under_ci.returncode == 1, under_ci.stdout
    assert "test_suite.py::test_needs_a_tool: Skipped: tool missing" in under_ci.stdout
    assert "test_needs_a_gpu:" not in under_ci.stdout.split("only @pytest.mark.gpu tests may skip")[1]
    local = _pytest(folder, "")
    assert local.returncode == 0, local.stdout


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
def test_only_gpu_skips_pass_under_ci(tmp_path: Path) -> None:
    under_ci = _pytest(_suite(tmp_path), "true")
    assert under_ci.returncode == 0, under_ci.stdout
    assert "1 passed, 1 skipped" in under_ci.stdout


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
def test_a_module_skipped_while_importing_fails_the_run_under_ci(tmp_path: Path) -> None:
    folder = _suite(tmp_path)
    (folder / "test_tool.py").write_text('import pytest\n\npytest.importorskip("no_such_module_here")\n')
    under_ci = _pytest(folder, "true")
    assert under_ci.returncode == 1, under_ci.stdout
    assert "test_tool.py: Skipped: could not import 'no_such_module_here'" in under_ci.stdout


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
def test_external_tests_are_deselected_unless_their_variable_is_set(tmp_path: Path) -> None:
    folder = _suite(tmp_path)
    (folder / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: gpu\n    external(env): external\n")
    (folder / "test_ext.py").write_text(
        'import pytest\n\n@pytest.mark.external(env="FLARELET_TEST_EXTERNAL")\ndef test_ext():\n    pass\n'
    )
    out = _pytest(folder, "true")
    assert out.returncode == 0 and "1 passed, 1 skipped, 1 deselected" in out.stdout, out.stdout
    os.environ["FLARELET_TEST_EXTERNAL"] = "1"
    try:
        out = _pytest(folder, "true")
    finally:
        del os.environ["FLARELET_TEST_EXTERNAL"]
    assert out.returncode == 0 and "2 passed, 1 skipped" in out.stdout, out.stdout
