"""Worker dependencies: declared in pyproject.toml / requirements.txt, installed once per set into
the flarelet cache, on the worker's import path only, and flarelet's own packages hidden.

Installs use uv on small wheels built here (no network): a dependency set is what a worker
declares, so these tests write wheels into the worker's folder and declare them by path.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import textwrap
import zipfile
from pathlib import Path

import httpx
import pytest

from flarelet.cli import build_parser
from flarelet.runtime.deps import DepsOptions, ensure_deps, read_spec
from flarelet.runtime.host import WorkerHost
from flarelet.runtime.request import Request
from flarelet.wrangler_compat.config import ConfigError


def make_wheel(folder: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A minimal pure-Python wheel (what a build backend would produce for these files)."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    contents = {
        **files,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: flarelet-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for arc, text in contents.items():
            data = textwrap.dedent(text).encode()
            zf.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
        record.append(f"{dist}/RECORD,,")
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "flarelet-cache"
    monkeypatch.setenv("FLARELET_CACHE", str(folder))
    return folder


WORKER_CODE = """
    from workers import Response, WorkerEntrypoint


    class Default(WorkerEntrypoint):
        async def fetch(self, request):
            import greeting_dep

            return Response.json({"greeting": greeting_dep.greet(), "file": greeting_dep.__file__})
"""


def greeting_project(make_worker, tmp_path, extra_requirements=()):
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "greeting_dep", "1.0", {"greeting_dep/__init__.py": "def greet():\n    return 'hi from dep'\n"})
    requirements = ["../wheels/greeting_dep-1.0-py3-none-any.whl", *extra_requirements]
    deps = ", ".join(f'"{r}"' for r in requirements)
    return make_worker(WORKER_CODE, files={"pyproject.toml": f'[project]\nname = "w"\ndependencies = [{deps}]\n'})


def test_spec_reads_pyproject_project_dependencies_the_way_pywrangler_does(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "w"\ndependencies = ["fastapi", "Jinja2>=3"]\n[dependency-groups]\ndev = ["workers-py"]\n'
    )
    (tmp_path / "requirements.txt").write_text("flask\n")
    spec = read_spec(tmp_path)
    assert spec.requirements == ("fastapi", "Jinja2>=3")  # pyproject wins; dev groups are not installed
    assert spec.names == {"fastapi", "jinja2"}


def test_spec_falls_back_to_requirements_txt_and_never_reads_a_parent_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "parent"\ndependencies = ["torch"]\n')
    worker = tmp_path / "worker"
    worker.mkdir()
    assert read_spec(worker).requirements == ()
    (worker / "requirements.txt").write_text("# comment\nflask==3.0  # pinned\n\nrequests\n")
    assert read_spec(worker).requirements == ("flask==3.0", "requests")


def test_environment_key_is_the_sorted_set_and_python_version(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "requirements.txt").write_text("b\na\n")
    (b / "requirements.txt").write_text("a\nb\n")
    assert read_spec(a).key == read_spec(b).key
    (b / "requirements.txt").write_text("a\nb\nc\n")
    assert read_spec(a).key != read_spec(b).key


def test_bad_pyproject_is_one_config_error_line(make_worker):
    root = make_worker(WORKER_CODE, files={"pyproject.toml": "[project\n"})
    with pytest.raises(ConfigError, match="pyproject.toml"):
        WorkerHost.from_config(root)


@pytest.mark.slow
def test_declared_wheel_is_installed_once_then_reused_from_the_cache(make_worker, tmp_path, cache, run_worker, caplog):
    root = greeting_project(make_worker, tmp_path)
    caplog.set_level(logging.INFO, logger="flarelet")
    with run_worker(root) as server:
        answer = httpx.get(server.url + "/", timeout=30).json()
        assert server.host.deps.status == "installed"
    assert answer["greeting"] == "hi from dep"
    assert answer["file"].startswith(str(cache / "worker-deps"))
    assert any("Installing 1 worker dependency" in r.message for r in caplog.records)  # progress is shown
    assert any("Installed 1 package" in r.message for r in caplog.records)  # the installer's own lines
    with run_worker(root) as server:
        assert server.host.deps.status == "cached"
        assert httpx.get(server.url + "/", timeout=30).json()["greeting"] == "hi from dep"


@pytest.mark.slow
def test_a_package_that_cannot_be_installed_gets_one_line_and_the_rest_is_installed(
    make_worker, tmp_path, cache, caplog
):
    root = greeting_project(make_worker, tmp_path, ["../wheels/missing_dep-1.0-py3-none-any.whl"])
    caplog.set_level(logging.INFO, logger="flarelet")
    host = WorkerHost.from_config(root, raise_on_load_error=True)
    assert host.deps.status == "partial"
    errors = [r.message for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("cannot install ../wheels/missing_dep-1.0-py3-none-any.whl: ")
    assert "\n" not in errors[0] and "missing_dep-1.0-py3-none-any.whl" in errors[0].split(": ", 1)[1]
    assert (host.deps.path / "greeting_dep" / "__init__.py").is_file()


@pytest.mark.slow
def test_install_timeout_is_a_named_limit(tmp_path, cache, caplog):
    (tmp_path / "requirements.txt").write_text(str(make_wheel(tmp_path / "w", "slow_dep", "1.0", {"slow_dep.py": ""})))
    caplog.set_level(logging.INFO, logger="flarelet")
    result = ensure_deps(read_spec(tmp_path), DepsOptions(install_timeout_s=0.001))
    assert result.status == "failed"
    assert any("timed out after 0.001 s (install_timeout_s)" in r.message for r in caplog.records)
    with pytest.raises(ValueError, match="install_timeout_s"):
        DepsOptions(install_timeout_s=0)
    with pytest.raises(ValueError, match="installer"):
        DepsOptions(installer="conda")


def test_no_install_skips_the_step_and_a_declared_package_comes_from_flarelets_environment(
    make_worker, cache, run_worker
):
    code = """
        from workers import Response, WorkerEntrypoint
        import httpx

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                return Response(httpx.__name__)
    """
    root = make_worker(code, files={"requirements.txt": "httpx\n"})
    with run_worker(root, options={"install_deps": False}) as server:
        assert server.host.deps.status == "skipped"
        assert httpx.get(server.url + "/", timeout=30).text == "httpx"
    assert not (cache / "worker-deps").exists()
    assert build_parser().parse_args(["dev", "--no-install"]).install_deps is False


def test_a_worker_never_sees_flarelets_own_packages_it_does_not_declare(make_worker, run_worker):
    code = """
        import json, sqlite3  # the standard library is there, as in Pyodide
        from workers import Response, WorkerEntrypoint
        from helpers import shout  # the worker's own modules too


        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                try:
                    import httpx  # flarelet's dependency, not the worker's
                except ModuleNotFoundError as exc:
                    return Response(shout(str(exc)) + "|" + str(exc.name))
                return Response("httpx leaked into the worker")
    """
    root = make_worker(code, files={"src/helpers.py": "def shout(s):\n    return s.upper()\n"})
    with run_worker(root) as server:
        text = httpx.get(server.url + "/", timeout=30).text
    message, name = text.split("|")
    assert name == "httpx"
    assert message.startswith("NO MODULE NAMED 'HTTPX'") and 'ADD "HTTPX" TO [PROJECT] DEPENDENCIES' in message


@pytest.mark.slow
def test_code_inside_the_worker_environment_does_not_see_flarelets_packages_either(make_worker, tmp_path, cache):
    wheels = tmp_path / "wheels"
    make_wheel(
        wheels,
        "leaky_dep",
        "1.0",
        {
            "leaky_dep.py": "try:\n    import starlette\n    SEEN = True\n"
            "except ModuleNotFoundError:\n    SEEN = False\n"
        },
    )
    code = """
        from workers import Response, WorkerEntrypoint
        import leaky_dep

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                return Response(str(leaky_dep.SEEN))
    """
    root = make_worker(code, files={"requirements.txt": "../wheels/leaky_dep-1.0-py3-none-any.whl\n"})
    host = WorkerHost.from_config(root, raise_on_load_error=True)
    assert host.dispatcher.worker.module.leaky_dep.SEEN is False


@pytest.mark.slow
async def test_editing_pyproject_installs_the_new_set_on_reload(make_worker, tmp_path, cache):
    root = make_worker(WORKER_CODE)
    host = WorkerHost.from_config(root)
    assert host.deps.status == "none" and host.dispatcher.worker is not None
    make_wheel(
        tmp_path / "wheels", "greeting_dep", "1.0", {"greeting_dep/__init__.py": "def greet():\n    return 'hi'\n"}
    )
    (root / "pyproject.toml").write_text(
        '[project]\nname = "w"\ndependencies = ["../wheels/greeting_dep-1.0-py3-none-any.whl"]\n'
    )
    assert any(p.name == "pyproject.toml" for p in host.watch_paths)
    assert await host.reload_config()
    assert host.deps.status == "installed"
    resp = await host.serve(Request("http://localhost/"))
    assert (await resp.json())["greeting"] == "hi"
    await host.aclose()


def test_bad_deps_settings_are_one_config_error_line(make_worker):
    root = make_worker(WORKER_CODE, toml='[flarelet.deps]\ninstaller = "conda"\n')
    with pytest.raises(ConfigError, match="installer must be one of auto, uv, pip") as info:
        WorkerHost.from_config(root)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_a_package_both_use_in_different_versions_is_reported_once(make_worker, tmp_path, cache, caplog):
    import importlib.metadata

    make_wheel(tmp_path / "wheels", "idna", "0.0.1", {"idna/__init__.py": "FAKE = True\n"})
    root = make_worker(WORKER_CODE, files={"requirements.txt": "../wheels/idna-0.0.1-py3-none-any.whl\n"})
    caplog.set_level(logging.INFO, logger="flarelet")
    host = WorkerHost.from_config(root)
    host.reload_code()  # a code reload does not repeat the report
    lines = [r.message for r in caplog.records if r.levelno == logging.WARNING and "idna" in r.message]
    ours = importlib.metadata.version("idna")
    assert lines == [
        f"worker dependency idna 0.0.1 differs from flarelet's idna {ours}: one process holds one copy, "
        "and the first to import it decides which both use"
    ]


def test_isolate_false_lets_a_worker_share_flarelets_environment(make_worker, run_worker):
    code = """
        from workers import Response, WorkerEntrypoint
        import httpx

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                return Response(httpx.__name__)
    """
    root = make_worker(code, toml="[flarelet.deps]\nisolate = false\n")
    with run_worker(root) as server:
        assert httpx.get(server.url + "/", timeout=30).text == "httpx"


@pytest.mark.slow
async def test_two_workers_in_one_process_each_get_their_own_version(make_worker, tmp_path, cache):
    code = """
        import greeting_dep
        from workers import Response, WorkerEntrypoint

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                return Response(greeting_dep.greet())
    """
    hosts = []
    for version in ("1.0", "2.0"):
        wheels = tmp_path / f"wheels{version}"
        body = f"def greet():\n    return 'v{version}'\n"
        make_wheel(wheels, "greeting_dep", version, {"greeting_dep/__init__.py": body})
        wheel = f"../wheels{version}/greeting_dep-{version}-py3-none-any.whl"
        root = make_worker(code, files={"requirements.txt": wheel + "\n"})
        hosts.append(WorkerHost.from_config(root, raise_on_load_error=True))
    answers = [await (await host.serve(Request("http://localhost/"))).text() for host in hosts]
    assert answers == ["v1.0", "v2.0"]
    for host in hosts:
        await host.aclose()
