"""flarelet: a local, offline emulator of Cloudflare Workers for Python.

The distribution's one import namespace. The repository keeps the product's top-level folders
(``runtime/``, ``bindings/``, ``wrangler_compat/``); the build maps them here as
``flarelet.runtime``, ``flarelet.bindings`` and ``flarelet.wrangler_compat`` (see ``setup.py``),
so nothing but ``flarelet`` lands at the top of site-packages. This package itself holds the layer
above them: the command line (:mod:`flarelet.cli`), the in-process test harness
(:mod:`flarelet.testing`) and the pytest plugin (:mod:`flarelet.pytest_plugin`).
ARCHITECTURE.md is the map.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("flarelet")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
