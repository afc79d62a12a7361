"""pytest plugin (entry point ``pytest11: flarelet``): the ``worker`` and ``env`` fixtures.

::

    # tests/test_worker.py, next to (or below) the project's wrangler.toml
    async def test_home(worker):
        resp = await worker.fetch("/")
        assert resp.status == 200

    async def test_bindings(env):
        await env.KV.put("k", "v")

``worker`` is a started :class:`flarelet.testing.Worker`, fresh for each test (in-memory storage,
the worker module imported anew) and closed after it; ``env`` is ``worker.env``.

Which worker, in order of precedence:

1. ``@pytest.mark.flarelet(config=..., env=..., vars=..., bindings=..., persist_to=...,
   ai_cassette=..., url=..., wait_until=..., outbound=..., options=...)`` on the test, its class
   or module (``pytestmark``); the closest marker wins key by key, and ``vars``/``bindings``/
   ``options`` dicts are merged. ``bindings`` may be a function returning the dict, called for
   each test (fresh ``FakeAi()`` per test). Relative paths are relative to the test file.
2. The ini options ``flarelet_config`` (relative to the ini file) and ``flarelet_env``.
3. The wrangler config found from the test file's folder upwards, as wrangler finds it.

A test can also ask for the ``flarelet_options`` fixture (the resolved keyword arguments of
:meth:`Worker.from_config`) or override it in a ``conftest.py``.

The fixtures are async: they need pytest-asyncio. With ``asyncio_mode = "auto"`` async tests
just work; in pytest-asyncio's default strict mode mark them ``@pytest.mark.asyncio``.
This module imports nothing of flarelet until a fixture is used, so it costs other test suites
nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only where pytest-asyncio is absent
    pytest_asyncio = None  # type: ignore[assignment]

MARKER = "flarelet"
#: keyword arguments of ``@pytest.mark.flarelet`` (those of ``Worker.from_config``)
MARKER_KEYS = (
    "config",
    "env",
    "vars",
    "bindings",
    "persist_to",
    "ai_cassette",
    "url",
    "wait_until",
    "wait_until_timeout",
    "outbound",
    "options",
    "workers",
    "clock",
)
_MERGED_KEYS = ("vars", "bindings", "options")
_PATH_KEYS = ("config", "persist_to", "ai_cassette")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "flarelet_config",
        "wrangler.toml / wrangler.json(c), or its folder, for flarelet's worker fixture (relative to the ini file)",
        default="",
    )
    parser.addini("flarelet_env", "wrangler environment (--env) for flarelet's worker fixture", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "flarelet(config=None, env=None, vars=None, bindings=None, persist_to=None, ai_cassette=None, url=None, "
        "wait_until=True, outbound=None, options=None, workers=(), clock=None): configure flarelet's "
        "`worker`/`env` fixtures (flarelet.testing.Worker.from_config arguments; paths relative to the test file)",
    )


@pytest.fixture
def flarelet_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The keyword arguments the ``worker`` fixture passes to ``Worker.from_config``."""
    test_dir = Path(str(request.path)).parent
    merged: dict[str, Any] = {}
    from_marker: set[str] = set()
    # iter_markers yields the closest first (function, class, module): apply the farthest first.
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        kwargs = dict(marker.kwargs)
        if marker.args:
            if len(marker.args) > 1 or "config" in kwargs:
                raise pytest.UsageError("@pytest.mark.flarelet takes at most one positional argument (config)")
            kwargs["config"] = marker.args[0]
        for key, value in kwargs.items():
            if key not in MARKER_KEYS:
                raise pytest.UsageError(
                    f"@pytest.mark.flarelet: unknown argument {key!r} (known: {', '.join(MARKER_KEYS)})"
                )
            if key == "bindings" and callable(value):
                value = value()
            if key == "clock" and callable(value) and not hasattr(value, "now"):
                value = value()  # a class or factory: a fresh clock per test
            elif key == "clock" and isinstance(value, type):
                value = value()
            if key in _MERGED_KEYS and isinstance(value, dict) and isinstance(merged.get(key), dict):
                value = {**merged[key], **value}
            merged[key] = value
            from_marker.add(key)
    for key in _PATH_KEYS:
        value = merged.get(key)
        if key in from_marker and value is not None and not isinstance(value, bool):
            merged[key] = _relative_to(test_dir, value)
    if "workers" in from_marker:
        merged["workers"] = [_relative_to(test_dir, value) for value in merged["workers"] or ()]
    if merged.get("config") is None:
        ini = request.config.getini("flarelet_config")
        if ini:
            base = (
                Path(str(request.config.inipath)).parent
                if request.config.inipath
                else Path(str(request.config.rootpath))
            )
            merged["config"] = _relative_to(base, ini)
        else:
            merged["config"] = test_dir
    if merged.get("env") is None:
        merged["env"] = request.config.getini("flarelet_env") or None
    if merged.get("url") is None:
        merged.pop("url", None)
    return merged


def _relative_to(base: Path, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


def _build(options: dict[str, Any]) -> Any:
    from flarelet.runtime.loader import WorkerLoadError
    from flarelet.testing import Worker
    from flarelet.wrangler_compat.config import ConfigError

    try:
        return Worker.from_config(**options)
    except WorkerLoadError as exc:
        pytest.fail(f"flarelet: the worker does not load: {exc.message}\n{exc.details}", pytrace=False)
    except ConfigError as exc:
        pytest.fail(f"flarelet: {exc}", pytrace=False)


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def worker(flarelet_options: dict[str, Any]) -> AsyncIterator[Any]:
        """A started ``flarelet.testing.Worker`` for this test (see the module docstring)."""
        built = _build(flarelet_options)
        async with built:
            yield built

else:  # pragma: no cover

    @pytest.fixture
    def worker(flarelet_options: dict[str, Any]) -> Any:
        pytest.fail(
            "flarelet's `worker` fixture is async and needs pytest-asyncio: pip install pytest-asyncio "
            "(then mark async tests @pytest.mark.asyncio, or set asyncio_mode = auto)",
            pytrace=False,
        )


@pytest.fixture
def env(worker: Any) -> Any:
    """The ``env`` of the ``worker`` fixture: its real bindings and vars."""
    return worker.env
