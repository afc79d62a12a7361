"""Loading (and re-loading) the user's worker module and finding its handlers.

The worker's ``main`` file is imported as a top-level module named after the file, and its folder
(``src/`` in Cloudflare's layout) is importable, so ``from utils import x`` finds ``src/utils.py``.
That is done with a meta-path finder (:class:`_WorkerFinder`) rather than ``sys.path`` so that:

* modules of the worker are compiled from source on every load, never from a ``.pyc`` whose
  mtime happens to match (an edit within the same second would otherwise be missed on reload);
* a reload can drop exactly the worker's modules from ``sys.modules`` and import them again,
  leaving every library — and the AI binding's loaded models — in place.

Several workers run in one process (``flarelet dev -c a -c b``), and two of them often both
have ``src/entry.py``. Each load therefore has a *space* (the owning host's id): a module is
tagged with the space that imported it, a reload purges only its own space's modules, and while
a worker's modules execute, other spaces' worker modules are set aside so ``import utils`` finds
that worker's own ``utils.py``. Afterwards ``sys.modules`` keeps the most recently loaded module
for a clashing name; each :class:`WorkerModule` keeps references to its own modules, so code
imported at module level (the usual style) always sees its own worker's helpers.

Handlers follow workerd's rules for Python workers: a ``Default`` class (normally a
``WorkerEntrypoint``) is the default export and gets one instance per event; otherwise module
functions ``on_fetch``/``on_scheduled``/``on_queue`` are used; defining both is an error.
"""

from __future__ import annotations

import contextvars
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from . import workers_sdk
from .deps import isolation
from .errors import missing_name_line

HANDLER_NAMES = ("fetch", "scheduled", "queue")


class WorkerLoadError(Exception):
    """The worker module could not be imported or defines no usable handler."""

    def __init__(self, message: str, details: str = "", *, brief: bool = False) -> None:
        super().__init__(message)
        self.message = message
        #: a formatted traceback when the module itself raised
        self.details = details
        #: the message says all (a name flarelet does not provide): no traceback on the 500 page
        self.brief = brief


#: the space of the worker whose handler is running (set by the dispatcher): an ``import`` inside
#: a handler searches that worker's folder
active_space: contextvars.ContextVar[str | None] = contextvars.ContextVar("flarelet_worker_space", default=None)


class _FreshSourceLoader(importlib.machinery.SourceFileLoader):
    """Compile from source every time (see module docstring); writes no ``__pycache__``."""

    #: marks the worker's own modules for :mod:`.deps.isolation` (what they may import)
    flarelet_worker_code = True

    def __init__(self, fullname: str, path: str, space: str = "") -> None:
        super().__init__(fullname, path)
        #: which worker (host) imported this module; see the module docstring
        self.space = space

    def get_code(self, fullname: str) -> Any:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


class _WorkerFinder(importlib.abc.MetaPathFinder):
    """Finds the worker's modules in its root folder before anything else on ``sys.path``."""

    def __init__(self) -> None:
        #: the folder of the worker being imported now (searched first), and its space
        self.root: Path | None = None
        self.space = ""
        #: every loaded worker's folder by space, for imports made later (inside a handler)
        self.roots: dict[str, Path] = {}

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        candidates: list[tuple[str, Path]] = []
        if self.root is not None:
            candidates.append((self.space, self.root))
        else:
            space = active_space.get()
            if space is None and self.roots:
                space = next(reversed(self.roots))
            if space is not None and space in self.roots:
                candidates.append((space, self.roots[space]))
        name = fullname.rpartition(".")[2]
        for space, root in candidates:
            if path is None:
                search = [root]
            else:
                search = [Path(p) for p in path if _is_within(Path(p), root)]
            for folder in search:
                package_init = folder / name / "__init__.py"
                if package_init.is_file():
                    loader = _FreshSourceLoader(fullname, str(package_init), space)
                    return importlib.util.spec_from_file_location(
                        fullname, package_init, loader=loader, submodule_search_locations=[str(folder / name)]
                    )
                module_file = folder / f"{name}.py"
                if module_file.is_file():
                    return importlib.util.spec_from_file_location(
                        fullname, module_file, loader=_FreshSourceLoader(fullname, str(module_file), space)
                    )
        return None


_finder = _WorkerFinder()


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except ValueError:
        return False


def _space_of(module: Any) -> str | None:
    """The space of a worker module, ``None`` for any other module."""
    spec = getattr(module, "__spec__", None)
    loader = getattr(spec, "loader", None)
    return loader.space if isinstance(loader, _FreshSourceLoader) else None


def _purge_worker_modules(space: str = "") -> None:
    """Forget the modules previously loaded for ``space``."""
    for name, module in list(sys.modules.items()):
        if _space_of(module) == space:
            del sys.modules[name]


def _set_aside_other_spaces(space: str) -> dict[str, ModuleType]:
    """Remove other workers' modules from ``sys.modules`` while ``space`` imports (returned to restore)."""
    aside: dict[str, ModuleType] = {}
    for name, module in list(sys.modules.items()):
        owner = _space_of(module)
        if owner is not None and owner != space:
            aside[name] = module
            del sys.modules[name]
    return aside


@dataclass
class WorkerModule:
    """A loaded worker: its module and the handlers it defines."""

    module: ModuleType
    main_path: Path
    #: the ``Default`` class (one instance per event), or ``None`` for module-level handlers
    entrypoint: type | None
    #: legacy ``on_<event>`` functions by event name
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)

    #: event -> number of positional arguments its handler takes (computed once per load)
    _arity: dict[str, int] = field(default_factory=dict)
    #: every module this worker imported from its folder (kept alive; see the module docstring)
    own_modules: dict[str, ModuleType] = field(default_factory=dict)

    def entrypoint_class(self, name: str | None) -> type | None:
        """The ``WorkerEntrypoint`` subclass exported as ``name`` (``None``: the default export).

        Named entrypoints are the module's public classes that subclass ``WorkerEntrypoint``, as
        workerd collects them (``__all__`` when the module has one).
        """
        if name is None or name == "default":
            return self.entrypoint
        module = self.module
        exported = getattr(module, "__all__", None)
        if exported is not None and name not in exported:
            return None
        if name.startswith("_"):
            return None
        value = getattr(module, name, None)
        base = workers_sdk.WorkerEntrypoint
        if inspect.isclass(value) and issubclass(value, base) and value is not base:
            return value
        return None

    def handler(self, event: str, ctx: Any, env: Any) -> Callable[..., Any] | None:
        """The callable for ``event`` (bound to a fresh entrypoint instance), or ``None``."""
        if self.entrypoint is not None:
            instance = self.entrypoint(ctx, env)
            return getattr(instance, event, None)
        return self.functions.get(event)

    def call(self, event: str, ctx: Any, env: Any, args: tuple[Any, ...]) -> Any:
        """Call the ``event`` handler with as many of ``args`` as it accepts (workerd's ``relaxed_call``).

        Raises ``LookupError`` when the worker has no such handler.
        """
        fn = self.handler(event, ctx, env)
        if fn is None:
            raise LookupError(event)
        count = self._arity.get(event)
        if count is None:
            count = self._arity[event] = positional_arity(fn, len(args))
        return fn(*args[:count])

    @property
    def handlers(self) -> list[str]:
        if self.entrypoint is not None:
            return [h for h in HANDLER_NAMES if callable(getattr(self.entrypoint, h, None))]
        return [h for h in HANDLER_NAMES if h in self.functions]


def load_worker(
    main_path: Path,
    space: str = "",
    deps_path: Path | None = None,
    declared: frozenset[str] = frozenset(),
    *,
    isolate: bool = True,
) -> WorkerModule:
    """Import ``main_path`` fresh (dropping ``space``'s earlier modules) and find its handlers.

    ``deps_path`` is the worker's installed dependency folder and ``declared`` the distribution
    names it declares: the worker imports those, the standard library and its own modules, not
    flarelet's third-party packages (:mod:`.deps.isolation`) unless ``isolate`` is false.
    """
    main_path = main_path.resolve()
    if not main_path.is_file():
        raise WorkerLoadError(f"main module {main_path} does not exist")
    if main_path.suffix != ".py":
        raise WorkerLoadError(f"main module {main_path.name} is not a Python file (flarelet runs Python Workers)")
    workers_sdk.install()
    isolation.activate(deps_path, declared, hide=isolate, space=space)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    _purge_worker_modules(space)
    importlib.invalidate_caches()
    aside = _set_aside_other_spaces(space)
    _finder.root = main_path.parent
    _finder.space = space
    _finder.roots.pop(space, None)
    _finder.roots[space] = main_path.parent  # last loaded last: the fallback for imports outside a handler
    name = main_path.stem
    spec = importlib.util.spec_from_file_location(
        name, main_path, loader=_FreshSourceLoader(name, str(main_path), space)
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # any failure of user code is reported, not fatal
        sys.modules.pop(name, None)
        details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        missing = missing_name_line(exc, main_path.parent)
        summary = missing if missing is not None else f"{type(exc).__name__}: {exc}"
        raise WorkerLoadError(
            f"importing {main_path.name} failed: {summary}", details, brief=missing is not None
        ) from exc
    finally:
        _finder.root = None
        _finder.space = ""
        for other_name, other in aside.items():
            sys.modules.setdefault(other_name, other)
    loaded = inspect_handlers(module, main_path)
    loaded.own_modules = {n: m for n, m in sys.modules.items() if _space_of(m) == space}
    return loaded


def inspect_handlers(module: ModuleType, main_path: Path) -> WorkerModule:
    default = getattr(module, "Default", None)
    entrypoint = default if inspect.isclass(default) else None
    functions = {h: fn for h in HANDLER_NAMES if callable(fn := getattr(module, f"on_{h}", None))}
    if entrypoint is not None and functions:
        raise WorkerLoadError(
            f"{main_path.name}: Cannot define multiple default entrypoints (class Default and "
            f"{', '.join('on_' + h for h in functions)})"
        )
    if entrypoint is None and not functions:
        raise WorkerLoadError(
            f"{main_path.name} defines no handler: expected `class Default(WorkerEntrypoint)` with "
            "`async def fetch(self, request)`, or a module-level `async def on_fetch(request, env)`"
        )
    return WorkerModule(module=module, main_path=main_path, entrypoint=entrypoint, functions=functions)


def positional_arity(fn: Callable[..., Any], most: int) -> int:
    """How many positional arguments ``fn`` takes, capped at ``most`` (all for ``*args``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return most
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return most
    return min(most, sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)))
