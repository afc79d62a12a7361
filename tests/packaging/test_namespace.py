"""One import namespace: everything installs under ``flarelet``; nothing else lands at the top of site-packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # -I: isolated mode, so neither the current folder nor PYTHONPATH is on sys.path; only the install counts
    return subprocess.run([sys.executable, "-I", "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_flarelet_imports_from_any_folder(tmp_path: Path) -> None:
    out = _run(
        "import flarelet, flarelet.runtime.host, flarelet.bindings.registry, flarelet.wrangler_compat.config, "
        "flarelet.cli, flarelet.testing; print(flarelet.__version__)",
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def test_the_product_folders_are_not_top_level_import_names(tmp_path: Path) -> None:
    for name in ("runtime", "bindings", "wrangler_compat"):
        out = _run(f"import {name}", tmp_path)
        assert out.returncode != 0 and "No module named" in out.stderr, (name, out.stdout, out.stderr)


def test_installed_top_level_names_are_flarelet_only(tmp_path: Path) -> None:
    code = (
        "from importlib.metadata import distribution; "
        "print(sorted({str(f).split('/')[0] for f in distribution('flarelet').files}))"
    )
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr
    names = set(eval(out.stdout))  # noqa: S307 -- our own subprocess's repr of a list of str
    names = {n for n in names if not n.startswith(("flarelet-", "..", "__pycache__"))}
    # an editable install adds its finder and .pth; a wheel install only the package
    assert names - {"__editable__.flarelet-0.1.0.pth", "__editable___flarelet_0_1_0_finder.py"} == {
        "flarelet"
    } or names <= {"__editable__.flarelet-0.1.0.pth", "__editable___flarelet_0_1_0_finder.py"}, names


def test_each_module_has_one_name() -> None:
    """A module reached under two names would run twice with two sets of globals (two registries, two caches)."""
    code = (
        "import sys, flarelet.testing, flarelet.cli, flarelet.bindings.ai.plugin; "
        "print([m for m in sys.modules if m.split('.')[0] in ('runtime', 'bindings', 'wrangler_compat')])"
    )
    out = _run(code, REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
