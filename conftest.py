"""Repository-wide pytest hooks (tests/ and examples/).

Under CI (``CI`` set and not ``0``/``false``, as ``.ci/run`` and most CI services set it) a skipped
test fails the run, unless it carries ``@pytest.mark.gpu``: those depend on whether this machine has a
GPU, so one of each pair always skips. Why: a green summary with "97 skipped" once hid that every
real-audio test had not run; a test that cannot run under CI is a broken set-up, not a pass.

``@pytest.mark.external(env="NAME")`` (or ``env=("A", "B")``) marks tests of code that is not in this
repository (a checkout of Cloudflare's examples named by ``$NAME``): they are deselected -- counted as
such in the summary, not skipped -- unless one of the variables is set, and then they must pass like
any other.

The fast subset (``-m "not slow"``, and nothing else chosen) runs on :data:`FAST_SUBSET_WORKERS`
processes when pytest-xdist is installed and no ``-n`` was given: its ~1100 tests are many short ones,
and on two cores they finish in ~30 s instead of ~50 s. ``-n 0`` (or ``-p no:xdist``) runs them in one.

Every httpx client builds an SSL context by parsing the CA bundle (~26 ms), and ``httpx.get`` makes a
client per call: about 350 of them in the fast subset, 9 s of its ~60, although the tests speak plain
HTTP to loopback. :func:`_share_default_ssl_context` makes the default context once per process and
hands the same one to every client (an ``SSLContext`` may be shared by clients and threads).
"""

from __future__ import annotations

import os

import pytest

_unexpected: list[str] = []
#: processes for the fast subset (module docstring); at most the machine's CPUs
FAST_SUBSET_WORKERS = 2


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which turns -n into workers
def pytest_cmdline_main(config: pytest.Config) -> None:
    if getattr(config.option, "numprocesses", "no xdist") is not None:  # -n given, or no pytest-xdist
        return
    if " ".join(str(config.option.markexpr).split()) != "not slow" or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    if config.getoption("usepdb", False) or config.getvalue("collectonly"):
        return
    workers = min(FAST_SUBSET_WORKERS, os.cpu_count() or 1)
    if workers > 1:
        config.option.numprocesses = workers


def _share_default_ssl_context() -> None:
    """httpx's default-verification SSL context, built once per process (module docstring)."""
    try:
        from httpx._transports import default as transports
    except ImportError:  # no httpx, or one laid out differently: nothing to speed up
        return
    make = getattr(transports, "create_ssl_context", None)
    if make is None:
        return
    made: dict[tuple, object] = {}

    def create_ssl_context(verify=True, cert=None, trust_env=True):  # httpx's signature
        if verify is not True or cert is not None:
            return make(verify=verify, cert=cert, trust_env=trust_env)
        key = (trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        if key not in made:
            made[key] = make(verify=verify, cert=cert, trust_env=trust_env)
        return made[key]

    transports.create_ssl_context = create_ssl_context


_share_default_ssl_context()


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
