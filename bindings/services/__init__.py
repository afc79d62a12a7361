"""Service bindings (``[[services]]``): ``env.OTHER.fetch(...)`` and RPC to another worker's entrypoints."""
