"""The Cache API (``caches.default``, ``await caches.open(name)``) for Python Workers; see :mod:`.api`."""

from .api import Cache, CacheStorage, bind, caches, unbind

__all__ = ["Cache", "CacheStorage", "bind", "caches", "unbind"]
