"""``flarelet d1 execute`` / ``migrations list|apply|create``: wrangler's local mode, same files as the binding."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flarelet.bindings.d1 import D1Database
from flarelet.cli import main

CONFIG = """
name = "cli-test"
main = "src/entry.py"
compatibility_date = "2025-11-02"
compatibility_flags = ["python_workers"]

[[d1_databases]]
binding = "DB"
database_name = "quotes"
database_id = "5a1e0c2e-0000-4000-8000-000000000001"

[[d1_databases]]
binding = "OTHER"
database_name = "other"
database_id = "other-id"
migrations_dir = "db/changes"
migrations_table = "schema_history"
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "wrangler.toml").write_text(CONFIG)
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "0001_create.sql").write_text(
        "-- the quotes table\nCREATE TABLE quotes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);\n"
    )
    (tmp_path / "migrations" / "0002_seed.sql").write_text(
        "INSERT INTO quotes (text) VALUES ('Simplicity is prerequisite for reliability.');\n"
        "INSERT INTO quotes (text) VALUES ('Premature optimization is the root of all evil.');\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_migrations_apply_then_binding_sees_them(project: Path, capsys) -> None:
    code, out, _ = run(capsys, "d1", "migrations", "list", "DB", "--local")
    assert code == 0 and "0001_create.sql" in out and "0002_seed.sql" in out
    code, out, _ = run(capsys, "d1", "migrations", "apply", "quotes", "--local")
    assert code == 0 and out.count("✅") == 2
    code, out, _ = run(capsys, "d1", "migrations", "list", "DB")
    assert code == 0 and "No migrations to apply" in out
    code, out, _ = run(capsys, "d1", "migrations", "apply", "DB")
    assert code == 0 and "No migrations to apply" in out

    db = D1Database.open(project / ".wrangler" / "state", "5a1e0c2e-0000-4000-8000-000000000001")
    rows = await db.prepare("SELECT text FROM quotes ORDER BY id").raw()
    assert rows == [
        ["Simplicity is prerequisite for reliability."],
        ["Premature optimization is the root of all evil."],
    ]
    applied = await db.prepare("SELECT name FROM d1_migrations ORDER BY id").raw()
    assert applied == [["0001_create.sql"], ["0002_seed.sql"]]
    await db.aclose()


def test_execute_command_json(project: Path, capsys) -> None:
    run(capsys, "d1", "migrations", "apply", "DB")
    code, out, _ = run(
        capsys,
        "d1",
        "execute",
        "DB",
        "--local",
        "--json",
        "--command",
        "SELECT count(*) AS n FROM quotes; SELECT id FROM quotes WHERE id = 2",
    )
    assert code == 0
    results = json.loads(out)
    assert [r["results"] for r in results] == [[{"n": 2}], [{"id": 2}]]
    assert all(r["success"] is True and "duration" in r["meta"] for r in results)


def test_execute_file_and_table_output(project: Path, capsys) -> None:
    sql = project / "schema.sql"
    sql.write_text("CREATE TABLE t (a TEXT);\nINSERT INTO t VALUES ('x;y');\nSELECT a FROM t;\n")
    code, out, _ = run(capsys, "d1", "execute", "DB", "--file", str(sql))
    assert code == 0
    assert "3 commands executed successfully." in out
    assert "x;y" in out and "┌" in out


def test_execute_errors(project: Path, capsys) -> None:
    code, out, _ = run(capsys, "d1", "execute", "DB", "--command", "SELECT * FROM missing", "--json")
    assert code == 1 and json.loads(out) == {"error": {"text": "no such table: missing: SQLITE_ERROR"}}
    code, _, err = run(capsys, "d1", "execute", "DB", "--command", "SELECT * FROM missing")
    assert code == 1 and "✘ [ERROR] no such table: missing: SQLITE_ERROR" in err
    code, _, err = run(capsys, "d1", "execute", "NOPE", "--command", "SELECT 1")
    assert code == 1 and "Couldn't find a D1 DB with the name or binding 'NOPE' in your wrangler.toml file." in err
    code, _, err = run(capsys, "d1", "execute", "DB", "--remote", "--command", "SELECT 1")
    assert code == 1 and "--remote is not supported" in err
    code, _, err = run(capsys, "d1", "execute", "DB")
    assert code == 1 and "--command or --file" in err


def test_a_failing_migration_is_rolled_back(project: Path, capsys) -> None:
    (project / "migrations" / "0003_broken.sql").write_text("CREATE TABLE half (x);\nINSERT INTO nowhere VALUES (1);\n")
    code, out, err = run(capsys, "d1", "migrations", "apply", "DB")
    assert code == 1 and "0003_broken.sql" in err and "no such table: nowhere" in err
    code, out, _ = run(
        capsys, "d1", "execute", "DB", "--json", "--command", "SELECT name FROM sqlite_master WHERE name = 'half'"
    )
    assert json.loads(out)[0]["results"] == []  # the half-applied migration left nothing
    code, out, _ = run(capsys, "d1", "migrations", "list", "DB")
    assert "0003_broken.sql" in out and "0002_seed.sql" not in out


def test_custom_migrations_dir_and_table(project: Path, capsys) -> None:
    code, out, _ = run(capsys, "d1", "migrations", "create", "OTHER", "add authors")
    created = project / "db" / "changes" / "0001_add_authors.sql"
    assert code == 0 and created.is_file() and "0001_add_authors.sql" in out
    created.write_text(created.read_text() + "CREATE TABLE authors (name TEXT);\n")
    code, out, _ = run(capsys, "d1", "migrations", "apply", "other")
    assert code == 0
    code, out, _ = run(capsys, "d1", "execute", "OTHER", "--json", "--command", "SELECT name FROM schema_history")
    assert json.loads(out)[0]["results"] == [{"name": "0001_add_authors.sql"}]
    code, out, _ = run(capsys, "d1", "migrations", "create", "OTHER", "second")
    assert (project / "db" / "changes" / "0002_second.sql").is_file()


def test_persist_to_option(project: Path, capsys, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    code, _, _ = run(capsys, "d1", "execute", "DB", "--persist-to", str(elsewhere), "--command", "CREATE TABLE z (a)")
    assert code == 0
    assert list((elsewhere / "v3" / "d1" / "miniflare-D1DatabaseObject").glob("*.sqlite"))


def test_console_script(project: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "flarelet", "d1", "execute", "DB", "--json", "--command", "SELECT 40 + 2 AS answer"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=project,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["results"] == [{"answer": 42}]
