"""Building a ``Worker``: config lookup, environments, vars and binding overrides, storage, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from flarelet.bindings.ai.fake import FakeAi
from flarelet.bindings.kv import KVNamespace
from flarelet.runtime.loader import WorkerLoadError
from flarelet.testing import Worker
from flarelet.wrangler_compat.config import ConfigError


async def env_values(worker: Worker, *names: str) -> dict:
    return await (await worker.fetch(f"/env?names={','.join(names)}")).json()


async def test_config_file_folder_or_subfolder(project: Path) -> None:
    for target in (project / "wrangler.toml", project, project / "src"):
        async with Worker.from_config(target) as worker:
            assert await (await worker.fetch("/")).text() == "Hello from /"


async def test_env_holds_the_real_bindings(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        assert isinstance(worker.env.KV, KVNamespace)
        assert worker.env.GREETING == "Hello"
        await worker.env.KV.put("k", "written by the test")
        resp = await worker.fetch("/kv?key=k")
        assert await resp.text() == "written by the test"
        await worker.fetch("/kv?key=k2", method="PUT", body="written by the worker")
        assert await worker.env.KV.get("k2") == "written by the worker"


async def test_wrangler_environment(project: Path) -> None:
    async with Worker.from_config(project, env="staging") as worker:
        assert await (await worker.fetch("/")).text() == "Staging hello from /"


async def test_vars_strings_and_json_values(project: Path) -> None:
    (project / ".dev.vars").write_text('SECRET="from dev vars"\nGREETING="from dev vars"\n')
    async with Worker.from_config(
        project, vars={"GREETING": "Hi", "LIMITS": {"max": 2, "tags": ["a"]}, "N": 3}
    ) as worker:
        assert await env_values(worker, "GREETING", "LIMITS", "N", "SECRET") == {
            "GREETING": "Hi",
            "LIMITS": {"max": 2, "tags": ["a"]},
            "N": 3,
            "SECRET": "from dev vars",
        }
        assert worker.env.LIMITS.max == 2  # objects allow attribute access, as JSON [vars] do


async def test_bindings_replace_and_add(project: Path) -> None:
    fake = FakeAi()
    async with Worker.from_config(project, bindings={"KV": "not a KV any more", "AI": fake}) as worker:
        assert worker.env.KV == "not a KV any more"
        assert worker.env.AI is fake
        # the worker sees them too, and they survive a rebuild of the bindings (config reload)
        assert await worker.host.reload_config()
        assert worker.env.AI is fake and worker.env.KV == "not a KV any more"


async def test_override_restores_replaced_and_removes_added(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        with worker.override(GREETING="Overridden", EXTRA=1) as env:
            assert env is worker.env
            assert await (await worker.fetch("/")).text() == "Overridden from /"
            assert worker.env.EXTRA == 1
        assert await (await worker.fetch("/")).text() == "Hello from /"
        assert "EXTRA" not in worker.env


async def test_override_restores_after_an_exception(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        with pytest.raises(ZeroDivisionError):
            with worker.override(GREETING="x"):
                raise ZeroDivisionError
        assert worker.env.GREETING == "Hello"


async def test_storage_is_in_memory_and_per_worker_by_default(project: Path) -> None:
    async with Worker.from_config(project) as first:
        await first.env.KV.put("k", "v")
    async with Worker.from_config(project) as second:
        assert await second.env.KV.get("k") is None
    assert not (project / ".wrangler").exists()


async def test_persist_to_a_folder(project: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with Worker.from_config(project, persist_to=state) as first:
        await first.env.KV.put("k", "kept")
        assert await first.apply_d1_migrations("DB") == ["0001_items.sql"]
    async with Worker.from_config(project, persist_to=state) as second:
        assert await second.env.KV.get("k") == "kept"
        assert await second.apply_d1_migrations("DB") == []  # already applied, recorded in d1_migrations
        rows = (await second.env.DB.prepare("SELECT name FROM items").all()).results
        assert [r["name"] for r in rows] == ["first"]
    assert any(state.rglob("*"))


async def test_persist_to_true_is_the_dev_servers_state(project: Path) -> None:
    async with Worker.from_config(project, persist_to=True) as worker:
        await worker.env.KV.put("k", "v")
    assert (project / ".wrangler" / "state").is_dir()


async def test_apply_d1_migrations_unknown_binding(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        with pytest.raises(ValueError, match="NOPE"):
            await worker.apply_d1_migrations("NOPE")


async def test_each_worker_imports_its_module_afresh(project: Path) -> None:
    async with Worker.from_config(project) as first:
        await first.scheduled(cron="one")
        assert len(await (await first.fetch("/events")).json()) == 1
    async with Worker.from_config(project) as second:
        assert await (await second.fetch("/events")).json() == []


def test_a_broken_worker_module_raises_at_once(project: Path) -> None:
    (project / "src" / "entry.py").write_text("import nowhere_to_be_found\n")
    with pytest.raises(WorkerLoadError, match="nowhere_to_be_found"):
        Worker.from_config(project)


def test_config_errors_raise(project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no wrangler.toml"):
        Worker.from_config(empty)
    (project / "wrangler.toml").write_text('name = "x"\nmain = "src/missing.py"\n')
    with pytest.raises(ConfigError, match="does not exist"):
        Worker.from_config(project)


def test_ai_cassette_needs_an_ai_binding(project: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no \[ai\] binding"):
        Worker.from_config(project, ai_cassette=tmp_path / "c.json")
