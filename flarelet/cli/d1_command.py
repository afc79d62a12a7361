"""``flarelet d1``: query and migrate local D1 databases, as ``wrangler d1 ... --local`` does.

* ``flarelet d1 execute DB --command "SQL" | --file schema.sql [--json]``
* ``flarelet d1 migrations list DB`` / ``apply DB`` / ``create DB MESSAGE``

``DB`` is a binding or ``database_name`` from ``[[d1_databases]]``. The database is the file the
dev server uses (``<persist-to>/v3/d1/miniflare-D1DatabaseObject/<sha256(id)>.sqlite``, persist
folder default ``.wrangler/state`` next to the config), so a schema applied here is what
``flarelet dev`` sees -- even while it runs (SQLite WAL; writers wait for each other). Statements
run in one transaction through the same engine as the binding (same errors, same rules).
Migrations follow wrangler: ``*.sql`` files in ``migrations/`` (or ``migrations_dir``), applied
in name order, recorded in the ``d1_migrations`` table (or ``migrations_table``).
Everything is local: ``--remote`` is refused.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flarelet.cli.help import examples

MIGRATIONS_TABLE = "d1_migrations"
MIGRATIONS_DIR = "migrations"


class CommandError(Exception):
    """A failure reported as ``✘ [ERROR] <message>`` with exit code 1."""


def register(subparsers: Any) -> None:
    """Add ``d1`` (``execute``, ``migrations list/apply/create``) to the ``flarelet`` command line."""
    d1 = subparsers.add_parser(
        "d1",
        help="Query and migrate local D1 databases (like `wrangler d1 ... --local`)",
        description=__doc__.split("\n\n")[0],
        **examples(
            'flarelet d1 execute DB --command "SELECT * FROM notes"',
            "flarelet d1 migrations apply DB -c examples/storage",
        ),
    )
    d1.set_defaults(func=lambda args: (d1.print_help(), 2)[1])
    commands = d1.add_subparsers(dest="d1_command", metavar="COMMAND")

    execute = commands.add_parser(
        "execute",
        help="Execute a command or SQL file",
        description="Run SQL against the local database.",
        **examples(
            'flarelet d1 execute DB --command "SELECT * FROM notes" --json',
            "flarelet d1 execute DB --file schema.sql -c examples/storage",
        ),
    )
    _common(execute)
    execute.add_argument("--command", dest="sql", metavar="SQL", help="the SQL to execute")
    execute.add_argument("--file", type=Path, help="a .sql file to execute")
    execute.add_argument("--json", action="store_true", help="print the results as JSON")
    execute.add_argument("-y", "--yes", action="store_true", help="accepted for wrangler compatibility")
    execute.set_defaults(func=cmd_execute)

    migrations = commands.add_parser(
        "migrations",
        help="Interact with D1 migrations",
        **examples("flarelet d1 migrations list DB", "flarelet d1 migrations apply DB"),
    )
    migrations.set_defaults(func=lambda args: (migrations.print_help(), 2)[1])
    sub = migrations.add_subparsers(dest="migrations_command", metavar="COMMAND")
    listing = sub.add_parser(
        "list", help="List unapplied migrations", **examples("flarelet d1 migrations list DB -c examples/storage")
    )
    _common(listing)
    listing.set_defaults(func=cmd_migrations_list)
    apply = sub.add_parser(
        "apply",
        help="Apply unapplied migrations, in order, each in one transaction",
        **examples("flarelet d1 migrations apply DB", "flarelet d1 migrations apply DB --env staging"),
    )
    _common(apply)
    apply.add_argument("-y", "--yes", action="store_true", help="accepted for wrangler compatibility")
    apply.set_defaults(func=cmd_migrations_apply)
    create = sub.add_parser(
        "create",
        help="Create a new, empty migration file",
        **examples('flarelet d1 migrations create DB "add users table"'),
    )
    _common(create)
    create.add_argument("message", help="what the migration does (becomes part of the file name)")
    create.set_defaults(func=cmd_migrations_create)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("database", help="the binding or database_name of the database")
    parser.add_argument("-c", "--config", help="the wrangler config file or its folder (default: searched from .)")
    parser.add_argument("-e", "--env", dest="env_name", metavar="NAME", help="use the [env.NAME] section of the config")
    parser.add_argument(
        "--persist-to", type=Path, help="the local storage folder (default: .wrangler/state next to the config)"
    )
    parser.add_argument("--local", action="store_true", help="accepted for wrangler compatibility (always local)")
    parser.add_argument("--remote", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--preview", action="store_true", help=argparse.SUPPRESS)


# -- resolving the database --------------------------------------------------------------------


@dataclass
class LocalDatabase:
    name: str
    binding: str
    database_id: str
    persist_root: Path
    migrations_dir: Path
    migrations_table: str

    @property
    def path(self) -> Path:
        from flarelet.bindings.d1 import d1_database_path

        return d1_database_path(self.persist_root, self.database_id)


def resolve_database(args: argparse.Namespace) -> LocalDatabase:
    from flarelet.bindings import registry
    from flarelet.bindings.d1 import D1DatabaseConfig, local_database_id
    from flarelet.bindings.storage.config import validate_entries
    from flarelet.wrangler_compat.config import ConfigError, load_config

    if getattr(args, "remote", False):
        raise CommandError("--remote is not supported: flarelet only works with local databases (drop --remote)")
    try:
        config = load_config(args.config or ".", args.env_name)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    section = config.bindings.get("d1_databases") or []
    try:
        entries = validate_entries("d1_databases", section, D1DatabaseConfig)
    except registry.ConfigSectionError as exc:
        raise CommandError(str(config.section_error("d1_databases", exc))) from None
    for entry in entries:
        if args.database in (entry.binding, entry.database_name):
            table = entry.migrations_table or MIGRATIONS_TABLE
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
                raise CommandError(f"migrations_table {table!r} is not a valid table name")
            persist = args.persist_to if args.persist_to is not None else config.dir / ".wrangler" / "state"
            return LocalDatabase(
                name=entry.database_name or entry.binding,
                binding=entry.binding,
                database_id=local_database_id(entry),
                persist_root=Path(persist),
                migrations_dir=config.dir / (entry.migrations_dir or MIGRATIONS_DIR),
                migrations_table=table,
            )
    raise CommandError(
        f"Couldn't find a D1 DB with the name or binding '{args.database}' in your {config.path.name} file."
    )


def _connect(db: LocalDatabase) -> tuple[sqlite3.Connection, Any]:
    from flarelet.bindings.d1 import open_connection

    return open_connection(db.persist_root, db.database_id)


def _run(conn: sqlite3.Connection, engine: Any, queries: list[tuple[str, Sequence[Any]]]) -> list[dict]:
    from flarelet.bindings.d1 import D1Error

    try:
        return engine.transaction(conn, queries)
    except (sqlite3.Error, D1Error) as exc:
        raise CommandError(engine.error_message(exc)) from None


# -- output ------------------------------------------------------------------------------------


def _print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SQUARE, show_header=True, header_style="bold")
    for column in columns:
        table.add_column(Text(str(column)))
    for row in rows:
        table.add_row(*(Text("null" if v is None else json.dumps(v) if isinstance(v, list) else str(v)) for v in row))
    Console(highlight=False, soft_wrap=False).print(table)


def _result_json(result: dict) -> dict[str, Any]:
    columns = result["columns"]
    return {
        "results": [dict(zip(columns, row)) for row in result["rows"]],
        "success": True,
        "meta": result["meta"],
    }


def _fail(message: str, as_json: bool = False) -> int:
    if as_json:
        print(json.dumps({"error": {"text": message}}, indent=2))
    else:
        print(f"✘ [ERROR] {message}", file=sys.stderr, flush=True)
    return 1


# -- commands ----------------------------------------------------------------------------------


def cmd_execute(args: argparse.Namespace) -> int:
    from flarelet.bindings.d1 import split_statements

    as_json = bool(args.json)
    try:
        if (args.sql is None) == (args.file is None):
            raise CommandError("Error: must provide --command or --file (and not both).")
        db = resolve_database(args)
        if args.file is not None:
            try:
                sql = args.file.read_text(encoding="utf-8")
            except OSError as exc:
                raise CommandError(f'Unable to read SQL text file "{args.file}": {exc.strerror or exc}') from None
        else:
            sql = args.sql
        statements = split_statements(sql)
        if not statements:
            raise CommandError("No SQL statements detected.")
        if not as_json:
            print(
                f"🌀 Executing on local database {db.binding} ({db.database_id}) from {db.persist_root / 'v3' / 'd1'}:"
            )
            print("🌀 To execute on your remote database, add a --remote flag to your wrangler command.")
        conn, engine = _connect(db)
        try:
            results = _run(conn, engine, [(s, ()) for s in statements])
        finally:
            conn.close()
    except CommandError as exc:
        return _fail(str(exc), as_json)
    if as_json:
        print(json.dumps([_result_json(r) for r in results], indent=2))
        return 0
    count = len(statements)
    print(f"🚣 {count} command{'s' if count != 1 else ''} executed successfully.")
    for result in results:
        if result["columns"] and result["rows"]:
            _print_table(result["columns"], result["rows"])
    return 0


def _ensure_migrations_table(conn: sqlite3.Connection, engine: Any, table: str) -> None:
    _run(
        conn,
        engine,
        [
            (
                f'CREATE TABLE IF NOT EXISTS "{table}"(\n'
                "    id         INTEGER PRIMARY KEY AUTOINCREMENT,\n"
                "    name       TEXT UNIQUE,\n"
                "    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL\n"
                ");",
                (),
            )
        ],
    )


def _migration_files(db: LocalDatabase) -> list[Path]:
    if not db.migrations_dir.is_dir():
        return []
    return sorted((p for p in db.migrations_dir.iterdir() if p.suffix == ".sql" and p.is_file()), key=lambda p: p.name)


def _unapplied(conn: sqlite3.Connection, engine: Any, db: LocalDatabase) -> list[Path]:
    _ensure_migrations_table(conn, engine, db.migrations_table)
    applied = {row[0] for row in _run(conn, engine, [(f'SELECT name FROM "{db.migrations_table}"', ())])[0]["rows"]}
    return [p for p in _migration_files(db) if p.name not in applied]


def cmd_migrations_list(args: argparse.Namespace) -> int:
    try:
        db = resolve_database(args)
        conn, engine = _connect(db)
        try:
            pending = _unapplied(conn, engine, db)
        finally:
            conn.close()
    except CommandError as exc:
        return _fail(str(exc))
    if not pending:
        print("✅ No migrations to apply!")
        return 0
    print("Migrations to be applied:")
    _print_table(["Name"], [[p.name] for p in pending])
    return 0


def cmd_migrations_apply(args: argparse.Namespace) -> int:
    from flarelet.bindings.d1 import split_statements

    try:
        db = resolve_database(args)
        conn, engine = _connect(db)
    except CommandError as exc:
        return _fail(str(exc))
    try:
        try:
            pending = _unapplied(conn, engine, db)
        except CommandError as exc:
            return _fail(str(exc))
        if not pending:
            print("✅ No migrations to apply!")
            return 0
        print("Migrations to be applied:")
        _print_table(["Name"], [[p.name] for p in pending])
        print(f"🌀 Executing on local database {db.binding} ({db.database_id}) from {db.persist_root / 'v3' / 'd1'}:")
        status: list[list[str]] = []
        for migration in pending:
            sql = migration.read_text(encoding="utf-8")
            queries: list[tuple[str, Sequence[Any]]] = [(s, ()) for s in split_statements(sql)]
            queries.append((f'INSERT INTO "{db.migrations_table}" (name) VALUES (?);', (migration.name,)))
            try:
                _run(conn, engine, queries)
            except CommandError as exc:
                status.append([migration.name, "❌"])
                _print_table(["Name", "Status"], status)
                return _fail(f"Migration {migration.name} failed with the following errors: {exc}")
            status.append([migration.name, "✅"])
        _print_table(["Name", "Status"], status)
        return 0
    finally:
        conn.close()


def cmd_migrations_create(args: argparse.Namespace) -> int:
    try:
        db = resolve_database(args)
    except CommandError as exc:
        return _fail(str(exc))
    db.migrations_dir.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in db.migrations_dir.glob("*.sql") if (m := re.match(r"(\d+)", p.name))]
    number = f"{(max(numbers) + 1) if numbers else 1:04d}"
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", args.message.strip()).strip("_") or "migration"
    path = db.migrations_dir / f"{number}_{slug}.sql"
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    path.write_text(f"-- Migration number: {number} \t {stamp}\n", encoding="utf-8")
    print(f"✅ Successfully created Migration '{path.name}'!")
    print()
    print("The migration is available for editing here")
    print(path)
    return 0
