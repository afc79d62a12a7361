"""Durable Objects (``[[durable_objects.bindings]]``): namespaces, ids, stubs, per-object storage, alarms.

One room, Miniflare-style: :mod:`.ids` (64-hex ids), :mod:`.clone` (what may cross RPC and be
stored), :mod:`.storage` (key-value and SQL on one SQLite file per object), :mod:`.state` (the
``ctx`` an object sees), :mod:`.instance` (one live instance per id, its input/output gates and
alarms), :mod:`.namespace` (the ``env`` binding and stubs) and :mod:`.plugin` (config and
migrations). The worker's classes reach this package through the host protocol in
:mod:`flarelet.bindings.registry`; WebSockets are duck-typed (``runtime.websocket``).
"""
