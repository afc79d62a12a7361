"""Repository-wide pytest hooks (tests/ and examples/).

Under CI (``CI`` set and not ``0``/``false``, as ``.ci/run`` and most CI services set it) a skipped
test fails the run, unless it carries ``@pytest.mark.gpu``: those depend on whether this machine has a
GPU, so one of each pair always skips. Why: a green summary with "97 skipped" once hid that every
real-audio test had not run; a test that cannot run under CI is a broken set-up, not a pass.

``@pytest.mark.external(env="NAME")`` (or ``env=("A", "B")``) marks tests of code that is not in this
repository (a checkout of Cloudflare's examples named by ``$NAME``): they are deselected -- counted as
such in the summary, not skipped -- unless one of the variables is set, and then they must pass like
any other.
"""

from __future__ import annotations

import os

import pytest

_unexpected: list[str] = []


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, external = [], []
    for item in items:
        mark = item.get_closest_marker("external")
        names = mark.kwargs.get("env", ()) if mark is not None else ()
        names = (names,) if isinstance(names, str) else tuple(names)
        (external if mark is not None and not any(os.environ.get(n) for n in names) else keep).append(item)
    if external:
        config.hook.pytest_deselected(items=external)
        items[:] = keep


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:  # a whole module skipped while importing (pytest.importorskip, pytest.skip)
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _unexpected.append(f"{report.nodeid}: {reason}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and "gpu" not in report.keywords:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _unexpected.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _under_ci() and _unexpected and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _under_ci() and _unexpected:
        terminalreporter.section("skips are failures under CI (only @pytest.mark.gpu tests may skip)", red=True)
        for line in _unexpected:
            terminalreporter.line(line, red=True)
