"""What a worker may import: its own modules, the standard library, its declared packages.

On Cloudflare a Python Worker sees Pyodide's standard library, the ``workers``/``js``/``pyodide``
modules, and the packages it declares -- nothing else. flarelet runs the worker inside its own
process, whose ``sys.path`` holds flarelet's third-party packages (starlette, httpx, torch...).
Two hooks keep the worker to its own:

* an ``__import__`` wrapper sees *who* imports: for code the worker loader loaded (its modules)
  or code inside the worker's dependency folder, an absolute import of a top-level name that
  resolves into flarelet's site-packages and is not declared raises ``ModuleNotFoundError``
  naming the distribution to declare. Everybody else (flarelet, its libraries, test files)
  imports as usual.
* a meta-path finder, active only during such an import, looks in the worker's dependency
  folder first, so a declared package comes from the worker's environment, not flarelet's.

Each worker of the process (a *space*, see :mod:`flarelet.runtime.loader`) has its own rules:
its folder, what it declares. Limits, honestly: one process has one ``sys.modules``. A package
both sides use (fastapi needs starlette and pydantic, which the dev server has already imported)
is loaded once and shared;
when the two environments hold different versions of it, flarelet says so at start, one line
per package, and whichever side imports it first decides the copy both use. Imports that do not
go through ``import`` statements (``importlib.import_module`` of a new top-level name) skip the
hooks. Two workers in one process with different versions of a package each get their own copy
for what they import at module level; an import inside a function finds the copy loaded last. A
worker whose dependencies must differ from flarelet's in a package both load needs a separate
process, which flarelet does not do.
"""

from __future__ import annotations

import builtins
import importlib.machinery
import importlib.metadata
import logging
import site
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .spec import normalise

log = logging.getLogger("flarelet")

_original_import = builtins.__import__
_local = threading.local()
#: the name-to-distribution map of flarelet's environment (~0.4-1 s to build: only when needed)
_dists: Mapping[str, list[str]] | None = None


def _distributions_of(top: str) -> list[str]:
    global _dists
    if _dists is None:
        _dists = importlib.metadata.packages_distributions()
    return _dists.get(top, [])


class _Space:
    """One worker's rules: its dependency folder and the distributions it declares."""

    def __init__(self) -> None:
        self.env_dir: str | None = None
        self.env_names: frozenset[str] = frozenset()
        self.declared: frozenset[str] = frozenset()
        #: some declared distribution is not installed in the worker's folder
        self.declared_missing = False
        self.verdicts: dict[str, str | None] = {}
        self.hide = True
        self.site_dirs: tuple[str, ...] = ()

    def refusal(self, top: str) -> str | None:
        """Why ``top`` is hidden from this worker (a message), or ``None`` when it may be imported."""
        if not self.hide:
            return None
        if top in self.verdicts:
            return self.verdicts[top]
        verdict: str | None = None
        if top not in sys.stdlib_module_names and top not in sys.builtin_module_names and top not in self.env_names:
            try:
                spec = importlib.machinery.PathFinder.find_spec(top)
            except (ImportError, ValueError):
                spec = None
            origin = None
            if spec is not None:
                locations = spec.submodule_search_locations or []
                origin = spec.origin if spec.origin not in (None, "namespace") else next(iter(locations), None)
            if (
                origin
                and str(Path(origin).resolve()).startswith(self.site_dirs)
                and normalise(top) not in self.declared
            ):
                # declared but not in the worker's folder (--no-install, a failed install): flarelet's copy is allowed
                dists = _distributions_of(top) if self.declared_missing else []
                if not any(normalise(d) in self.declared for d in dists):
                    dists = dists or [top]
                    verdict = (
                        f"No module named '{top}' (flarelet's own environment has it, but this worker does not "
                        f'declare it: add "{dists[0]}" to [project] dependencies in pyproject.toml, or to '
                        "requirements.txt)"
                    )
        self.verdicts[top] = verdict
        return verdict


#: space (the worker's host id) -> its rules
_spaces: dict[str, _Space] = {}


def _site_dirs() -> tuple[str, ...]:
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return tuple(str(Path(d).resolve()) + "/" for d in dirs if d)


def _space_of(globals_: dict[str, Any]) -> _Space | None:
    """The rules for the importing module: a worker's own module, or a module in a worker's folder."""
    loader = globals_.get("__loader__")
    if getattr(loader, "flarelet_worker_code", False):
        return _spaces.get(getattr(loader, "space", ""))
    file = globals_.get("__file__")
    if isinstance(file, str):
        for space in _spaces.values():
            if space.env_dir is not None and file.startswith(space.env_dir):
                return space
    return None


def _import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:  # noqa: A002
    space = _space_of(globals) if level == 0 and globals is not None and _spaces else None
    if space is None:
        return _original_import(name, globals, locals, fromlist, level)
    top = name.partition(".")[0]
    refusal = space.refusal(top)
    if refusal is not None:
        raise ModuleNotFoundError(refusal, name=top)
    stack = _local.__dict__.setdefault("stack", [])
    stack.append(space)
    try:
        return _original_import(name, globals, locals, fromlist, level)
    finally:
        stack.pop()


class _EnvFinder:
    """Finds top-level modules in the importing worker's dependency folder, during its imports only."""

    @classmethod
    def find_spec(cls, fullname: str, path: Any = None, target: Any = None) -> Any:
        stack = getattr(_local, "stack", None)
        if path is not None or not stack or stack[-1].env_dir is None:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [stack[-1].env_dir])

    @classmethod
    def invalidate_caches(cls) -> None:
        pass


def _top_level_names(folder: Path) -> frozenset[str]:
    names = set()
    for entry in folder.iterdir():
        if entry.name.endswith((".dist-info", ".egg-info", ".pth")) or entry.name in ("bin", "__pycache__"):
            continue
        if entry.is_dir():
            names.add(entry.name)
        elif entry.suffix in (".py", ".so", ".pyd"):
            names.add(entry.name.split(".", 1)[0])
    return frozenset(names)


def _report_version_differences(folder: Path) -> None:
    for dist in importlib.metadata.distributions(path=[str(folder)]):
        name = dist.metadata["Name"]
        try:
            ours = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if ours != dist.version:
            log.warning(
                "worker dependency %s %s differs from flarelet's %s %s: one process holds one copy, and the first "
                "to import it decides which both use",
                name,
                dist.version,
                name,
                ours,
            )


def _forget_modules_under(folder: str) -> None:
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.startswith(folder):
            del sys.modules[name]


def _drop_other_workers_copies(rules: _Space) -> None:
    """Modules this worker's folder provides that were loaded from somewhere else but flarelet's own
    site-packages (another worker's folder) leave ``sys.modules`` -- that worker keeps its references --
    so this worker imports its own copy. flarelet's copies stay shared (see the module docstring)."""
    if rules.env_dir is None:
        return
    keep = (rules.env_dir, *_site_dirs())
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if name.partition(".")[0] in rules.env_names and isinstance(file, str) and not file.startswith(keep):
            del sys.modules[name]


def activate(env_dir: Path | None, declared: frozenset[str], *, hide: bool = True, space: str = "") -> None:
    """Apply the rules above to the code of worker ``space`` from now on (on every (re)load of it).

    ``hide=False`` (``[flarelet.deps] isolate = false``) lets the worker import flarelet's packages too:
    for projects that share flarelet's environment on purpose; the dependency folder still comes first.
    """
    folder = Path(env_dir).resolve() if env_dir is not None else None
    rules = _spaces.setdefault(space, _Space())
    previous = rules.env_dir
    rules.env_dir = str(folder) + "/" if folder is not None else None
    in_use = {s.env_dir for s in _spaces.values()}
    if previous is not None and previous not in in_use:
        _forget_modules_under(previous)  # the dependency set changed: its modules load afresh from the new one
    rules.env_names = _top_level_names(folder) if folder is not None and folder.is_dir() else frozenset()
    _drop_other_workers_copies(rules)
    rules.declared = frozenset(normalise(d) for d in declared)
    rules.verdicts = {}
    rules.hide = hide
    rules.site_dirs = _site_dirs()
    installed = (
        {normalise(d.metadata["Name"]) for d in importlib.metadata.distributions(path=[str(folder)])}
        if folder is not None and folder.is_dir()
        else set()
    )
    rules.declared_missing = not rules.declared <= installed
    if builtins.__import__ is not _import:
        builtins.__import__ = _import
    if _EnvFinder not in sys.meta_path:
        sys.meta_path.insert(0, _EnvFinder)
    if folder is not None and folder.is_dir() and previous != rules.env_dir:  # once per set, not per code reload
        _report_version_differences(folder)


def deactivate(space: str) -> None:
    """Forget worker ``space``'s rules (its host closed)."""
    _spaces.pop(space, None)
