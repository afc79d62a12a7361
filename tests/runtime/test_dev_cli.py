"""End to end through the real ``flarelet dev`` command in a subprocess."""

from __future__ import annotations

import re
import shutil
import socket
import sys
import time
import types
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello"


@pytest.fixture
def hello_copy(tmp_path: Path) -> Path:
    target = tmp_path / "hello"
    shutil.copytree(HELLO, target, ignore=shutil.ignore_patterns(".wrangler", "__pycache__"))
    return target


def poll(fn, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_hello_example_end_to_end(serve_worker, hello_copy):
    # --no-crons: the */5 cron must not fire on its own in the middle of the tick count check
    with serve_worker(hello_copy, "--no-crons") as worker:
        output = worker.output
        assert "Your Worker has access to the following bindings:" in output
        assert 'env.GREETING ("Hello")' in output and "Environment Variable" in output
        assert "env.ASSETS" in output
        assert httpx.get(worker.url + "/", params={"name": "flarelet"}).text == "Hello, flarelet!"
        worker.wait_for_log(re.compile(r"^\[flarelet:info\] GET / 200 OK \(\d+ms\)$"))
        assert poll(lambda: httpx.get(worker.url + "/visits").json()["visits"] == 1)
        r = httpx.post(worker.url + "/echo", json={"x": 1})
        assert r.json() == {"received": {"x": 1}, "max_items": 3}
        assert httpx.get(worker.url + "/hello.txt").text == "Hello from a static file.\n"
        assert httpx.get(worker.url + "/about").text.startswith("flarelet serves this file")
        assert httpx.get(worker.url + "/__scheduled", params={"cron": "*/5 * * * *"}).text == "Ran scheduled event"
        assert httpx.get(worker.url + "/ticks").json() == {"ticks": 1, "last_cron": "*/5 * * * *"}
        worker.wait_for_log("cron */5 * * * * ran (tick 1)")
        worker.wait_for_log('scheduled "*/5 * * * *" ok')


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
def test_code_reload_keeps_bindings_and_config_reload_rebuilds_them(serve_worker, hello_copy):
    entry = hello_copy / "src" / "entry.py"
    with serve_worker(hello_copy) as worker:
        assert httpx.get(worker.url).text == "Hello, world!"
        entry.write_text(
            entry.read_text().replace('f"{self.env.GREETING}, {who}!"', 'f"{self.env.GREETING} again, {who}!"')
        )
        worker.wait_for_log("entry.py changed, reloading the worker")
        worker.wait_for_log("Reloaded")
        assert httpx.get(worker.url).text == "Hello again, world!"
        assert "rebuilding bindings" not in worker.output

        mark = len(worker.lines)
        config = hello_copy / "wrangler.toml"
        config.write_text(config.read_text().replace('GREETING = "Hello"', 'GREETING = "Howdy"'))
        worker.wait_for_log("wrangler.toml changed, rebuilding bindings", start=mark)
        worker.wait_for_log('env.GREETING ("Howdy")', start=mark)  # the table is printed again
        assert poll(lambda: httpx.get(worker.url).text == "Howdy again, world!")

        mark = len(worker.lines)
        (hello_copy / ".dev.vars").write_text("GREETING=Secret hello\n")
        worker.wait_for_log(".dev.vars changed", start=mark)
        assert poll(lambda: httpx.get(worker.url).text == "Secret hello again, world!")

        mark = len(worker.lines)
        entry.write_text("this is not python(\n")
        worker.wait_for_log("SyntaxError", start=mark)
        r = httpx.get(worker.url)
        assert r.status_code == 500 and "SyntaxError" in r.text


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
def test_var_env_and_log_level(serve_worker, hello_copy):
    config = hello_copy / "wrangler.toml"
    config.write_text(
        config.read_text()
        + '\n[env.staging]\nname = "hello-staging"\n[env.staging.vars]\n'
        + 'GREETING = "Hi staging"\nLIMITS = { max_items = 9 }\n'
    )
    with serve_worker(hello_copy, "--env", "staging", "--var", "EXTRA:1", "--log-level", "warn") as worker:
        assert httpx.get(worker.url).text == "Hi staging, world!"
        assert httpx.post(worker.url + "/echo", json=1).json()["max_items"] == 9
        assert "GET / 200" not in worker.output and "bindings" not in worker.output


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
def test_handler_exception_is_logged_with_traceback(serve_worker, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text(
        "from workers import WorkerEntrypoint\n\nclass Default(WorkerEntrypoint):\n"
        "    async def fetch(self, request):\n        return 1 / 0\n"
    )
    (tmp_path / "wrangler.jsonc").write_text('{"main": "src/entry.py", "compatibility_date": "2025-11-02"}')
    with serve_worker(tmp_path) as worker:
        assert httpx.get(worker.url).status_code == 500
        worker.wait_for_log("[flarelet:error] Uncaught exception in fetch handler")
        worker.wait_for_log("ZeroDivisionError: division by zero")
        worker.wait_for_log("GET / 500 Internal Server Error")
        assert httpx.get(worker.url).status_code == 500  # still serving


def test_bad_config_exits_1_with_one_line(serve_worker, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text("")
    (tmp_path / "wrangler.toml").write_text(
        'main = "src/entry.py"\n\n[vars]\nOK = "1"\n\n[triggers]\ncrons = ["not a cron"]\n'
    )
    with serve_worker(tmp_path, ready=False) as worker:
        assert worker.wait() == 1
    lines = [line for line in worker.lines if line.strip()]
    assert len(lines) == 1
    assert (
        lines[0].startswith("flarelet: error: ")
        and "wrangler.toml:7: triggers.crons[0]: invalid cron expression" in lines[0]
    )


def test_missing_main_is_named(serve_worker, tmp_path):
    (tmp_path / "wrangler.toml").write_text('name = "x"\nmain = "src/entry.py"\n')
    with serve_worker(tmp_path, ready=False) as worker:
        assert worker.wait() == 1
    assert "wrangler.toml:2: main: the main module src/entry.py does not exist" in worker.output


def test_explicit_port_in_use_is_an_error(serve_worker, hello_copy):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with serve_worker(hello_copy, "--port", str(port), ready=False) as worker:
            assert worker.wait() == 1
    assert f"port {port} on 127.0.0.1 is already in use" in worker.output


def test_cli_loads_extension_subcommands(monkeypatch):
    import flarelet.cli as cli

    calls = []

    def register(subparsers):
        parser = subparsers.add_parser("probe-cmd")
        parser.set_defaults(func=lambda args: calls.append("ran") or 7)

    fake = types.ModuleType("flarelet.cli.ai_command")
    fake.register = register
    monkeypatch.setitem(sys.modules, "flarelet.cli.ai_command", fake)
    assert cli.main(["probe-cmd"]) == 7 and calls == ["ran"]


def test_start_up_imports_no_heavy_modules(serve_worker, hello_copy):
    """Cold start stays small: flarelet dev serves a worker without importing httpx, torch or transformers."""
    with serve_worker(hello_copy, env={"PYTHONPROFILEIMPORTTIME": "1"}) as worker:
        assert httpx.get(worker.url).status_code == 200
        worker.wait_for_log("GET / 200 OK")
        imported = {line.rsplit("|", 1)[1].strip() for line in worker.lines if line.startswith("import time:")}
    assert "uvicorn" in imported  # the import log is really there
    assert not imported & {"httpx", "torch", "transformers", "numpy", "av"}
