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

Limits, honestly: one process has one ``sys.modules``. A package both sides use (fastapi needs
starlette and pydantic, which the dev server has already imported) is loaded once and shared;
when the two environments hold different versions of it, flarelet says so at start, one line
per package, and whichever side imports it first decides the copy both use. Imports that do not
go through ``import`` statements (``importlib.import_module`` of a new top-level name) skip the
hooks. A worker whose dependencies must differ from flarelet's in a package both load needs a
separate process, which flarelet does not do.
"""

from __future__ import annotations

import builtins
import importlib.machinery
import importlib.metadata
import logging
import site
import sys
import threading
from pathlib import Path
from typing import Any

from .spec import normalise

log = logging.getLogger("flarelet")

_original_import = builtins.__import__
_local = threading.local()


class _State:
    def __init__(self) -> None:
        self.env_dir: str | None = None
        self.env_names: frozenset[str] = frozenset()
        self.declared: frozenset[str] = frozenset()
        #: some declared distribution is not installed in the worker's folder
        self.declared_missing = False
        self.verdicts: dict[str, str | None] = {}
        self.hide = True
        self.site_dirs: tuple[str, ...] = ()
        self._dists: dict[str, list[str]] | None = None

    def distributions_of(self, top: str) -> list[str]:
        if self._dists is None:  # ~1 s on a large environment: only computed when a name is refused
            self._dists = importlib.metadata.packages_distributions()
        return self._dists.get(top, [])


_state = _State()


def _site_dirs() -> tuple[str, ...]:
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return tuple(str(Path(d).resolve()) + "/" for d in dirs if d)


def _is_worker_code(globals_: dict[str, Any]) -> bool:
    if getattr(globals_.get("__loader__"), "flarelet_worker_code", False):
        return True
    env = _state.env_dir
    file = globals_.get("__file__")
    return env is not None and isinstance(file, str) and file.startswith(env)


def _refusal(top: str) -> str | None:
    """Why ``top`` is hidden from the worker (a message), or ``None`` when it may be imported."""
    if not _state.hide:
        return None
    if top in _state.verdicts:
        return _state.verdicts[top]
    verdict: str | None = None
    if top not in sys.stdlib_module_names and top not in sys.builtin_module_names and top not in _state.env_names:
        try:
            spec = importlib.machinery.PathFinder.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        origin = None
        if spec is not None:
            origin = (
                spec.origin
                if spec.origin not in (None, "namespace")
                else next(iter(spec.submodule_search_locations or []), None)
            )
        if (
            origin
            and str(Path(origin).resolve()).startswith(_state.site_dirs)
            and normalise(top) not in _state.declared
        ):
            # the name-to-distribution map costs ~0.4-1 s: only needed when a declared package is
            # not in the worker's folder (--no-install, a failed install), where flarelet's copy is allowed
            dists = _state.distributions_of(top) if _state.declared_missing else []
            if not any(normalise(d) in _state.declared for d in dists):
                dists = dists or [top]
                verdict = (
                    f"No module named '{top}' (flarelet's own environment has it, but this worker does not declare "
                    f'it: add "{dists[0]}" to [project] dependencies in pyproject.toml, or to requirements.txt)'
                )
    _state.verdicts[top] = verdict
    return verdict


def _import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:  # noqa: A002
    if level == 0 and globals is not None and _is_worker_code(globals):
        top = name.partition(".")[0]
        refusal = _refusal(top)
        if refusal is not None:
            raise ModuleNotFoundError(refusal, name=top)
        _local.depth = getattr(_local, "depth", 0) + 1
        try:
            return _original_import(name, globals, locals, fromlist, level)
        finally:
            _local.depth -= 1
    return _original_import(name, globals, locals, fromlist, level)


class _EnvFinder:
    """Finds top-level modules in the worker's dependency folder, during the worker's imports only."""

    @classmethod
    def find_spec(cls, fullname: str, path: Any = None, target: Any = None) -> Any:
        env = _state.env_dir
        if env is None or path is not None or not getattr(_local, "depth", 0):
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [env])

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


def activate(env_dir: Path | None, declared: frozenset[str], *, hide: bool = True) -> None:
    """Apply the rules above to worker code from now on (called on every (re)load of the worker).

    ``hide=False`` (``[flarelet.deps] isolate = false``) lets the worker import flarelet's packages too:
    for projects that share flarelet's environment on purpose; the dependency folder still comes first.
    """
    folder = Path(env_dir).resolve() if env_dir is not None else None
    previous = _state.env_dir
    _state.env_dir = str(folder) + "/" if folder is not None else None
    if previous is not None and previous != _state.env_dir:
        _forget_modules_under(previous)  # the dependency set changed: its modules load afresh from the new one
    _state.env_names = _top_level_names(folder) if folder is not None and folder.is_dir() else frozenset()
    _state.declared = frozenset(normalise(d) for d in declared)
    _state.verdicts = {}
    _state.hide = hide
    _state.site_dirs = _site_dirs()
    installed = (
        {normalise(d.metadata["Name"]) for d in importlib.metadata.distributions(path=[str(folder)])}
        if folder is not None and folder.is_dir()
        else set()
    )
    _state.declared_missing = not _state.declared <= installed
    if builtins.__import__ is not _import:
        builtins.__import__ = _import
    if _EnvFinder not in sys.meta_path:
        sys.meta_path.insert(0, _EnvFinder)
    if folder is not None and folder.is_dir() and previous != _state.env_dir:  # once per set, not per code reload
        _report_version_differences(folder)
