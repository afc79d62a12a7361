"""D1 (``d1_databases``): ``env.DB.prepare().bind().first/all/run/raw``, ``batch``, ``exec``.

:mod:`.database` (the binding: statements, batches, sessions), :mod:`.engine` (queries on one
SQLite connection), :mod:`.values` (Python <-> D1 values as a Python Worker sees them),
:mod:`.statements` (splitting SQL), :mod:`.errors`, :mod:`.constants` and :mod:`.plugin`.
"""

from flarelet.bindings.d1.constants import D1Limits
from flarelet.bindings.d1.database import D1Database, D1DatabaseSession, D1PreparedStatement
from flarelet.bindings.d1.engine import D1Engine, d1_database_path
from flarelet.bindings.d1.errors import D1Error
from flarelet.bindings.d1.plugin import D1DatabaseConfig, D1Plugin, local_database_id, open_connection, plugin
from flarelet.bindings.d1.statements import split_statements

__all__ = [
    "D1Database",
    "D1DatabaseConfig",
    "D1DatabaseSession",
    "D1Engine",
    "D1Error",
    "D1Limits",
    "D1Plugin",
    "D1PreparedStatement",
    "d1_database_path",
    "local_database_id",
    "open_connection",
    "plugin",
    "split_statements",
]
