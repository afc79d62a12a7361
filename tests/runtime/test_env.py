"""``env``: vars (strings and JSON), .dev.vars/.env precedence, --var, --env environments."""

from __future__ import annotations

import httpx
import pytest

from flarelet.runtime.host import WorkerHost

ECHO_ENV = """
import json
from workers import WorkerEntrypoint, Response

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        name = request.url.rsplit("/", 1)[1]
        try:
            value = getattr(self.env, name)
        except AttributeError as exc:
            return Response(str(exc), status=404)
        if hasattr(value, "region"):
            return Response.json({"attr": value.region, "value": value})
        return Response.json({"value": value, "type": type(value).__name__})
"""

VARS_TOML = """
[vars]
API_HOST = "example.com"
PORT = 8080
DEBUG = true
CONFIG = { region = "eu", sizes = [1, 2] }
SHARED = "from-vars"

[env.staging]
name = "staging-worker"
[env.staging.vars]
API_HOST = "staging.example.com"

[env.bare]
"""


def _get(url: str, name: str) -> httpx.Response:
    return httpx.get(f"{url}/{name}")


def test_vars_strings_and_json_values(make_worker, run_worker):
    root = make_worker(ECHO_ENV, VARS_TOML)
    with run_worker(root) as server:
        assert _get(server.url, "API_HOST").json() == {"value": "example.com", "type": "str"}
        assert _get(server.url, "PORT").json() == {"value": 8080, "type": "int"}
        assert _get(server.url, "DEBUG").json() == {"value": True, "type": "bool"}
        assert _get(server.url, "CONFIG").json() == {"attr": "eu", "value": {"region": "eu", "sizes": [1, 2]}}
        missing = _get(server.url, "NOPE")
        assert missing.status_code == 404 and "NOPE" in missing.text and "API_HOST" in missing.text


def test_dev_vars_override_vars_and_hide_values(make_worker, run_worker):
    root = make_worker(
        ECHO_ENV,
        VARS_TOML,
        files={".dev.vars": 'SECRET_KEY="s3cret"\nSHARED=from-dev-vars\n', ".env": "FROM_DOTENV=ignored\n"},
    )
    with run_worker(root) as server:
        assert _get(server.url, "SECRET_KEY").json()["value"] == "s3cret"
        assert _get(server.url, "SHARED").json()["value"] == "from-dev-vars"
        assert _get(server.url, "FROM_DOTENV").status_code == 404  # .env is ignored when .dev.vars exists
        rows = {b.name: b for b in server.host.bindings}
        assert rows["SECRET_KEY"].resource == '"(hidden)"'
        assert rows["API_HOST"].resource == '"example.com"' and rows["API_HOST"].type_label == "Environment Variable"


def test_dev_vars_for_environment_replace_dev_vars(make_worker):
    root = make_worker(ECHO_ENV, VARS_TOML, files={".dev.vars": "A=base\nB=base\n", ".dev.vars.staging": "A=staging\n"})
    host = WorkerHost.from_config(root, env_name="staging")
    assert host.env.A == "staging" and "B" not in host.env
    assert WorkerHost.from_config(root).env.B == "base"


def test_dotenv_files_merge_in_wrangler_order(make_worker):
    root = make_worker(
        ECHO_ENV,
        "",
        files={
            ".env": "A=env\nB=env\nC=env\nD=env\n",
            ".env.staging": "B=env.staging\nC=env.staging\nD=env.staging\n",
            ".env.local": "C=env.local\nD=env.local\n",
            ".env.staging.local": "D=env.staging.local\n",
        },
    )
    host = WorkerHost.from_config(root, env_name="staging")
    assert [host.env.A, host.env.B, host.env.C, host.env.D] == ["env", "env.staging", "env.local", "env.staging.local"]
    plain = WorkerHost.from_config(root)
    assert [plain.env.B, plain.env.C, plain.env.D] == ["env", "env.local", "env.local"]


def test_secrets_required_restricts_loaded_keys(make_worker):
    root = make_worker(
        ECHO_ENV, '[secrets]\nrequired = ["TOKEN", "OTHER"]\n', files={".dev.vars": "TOKEN=t\nEXTRA=x\n"}
    )
    host = WorkerHost.from_config(root)
    assert host.env.TOKEN == "t" and "EXTRA" not in host.env and host.dev_vars.missing == ["OTHER"]


def test_cli_var_wins(make_worker, run_worker):
    root = make_worker(ECHO_ENV, VARS_TOML, files={".dev.vars": "SHARED=dev\n"})
    with run_worker(root, vars={"SHARED": "cli", "NEW": "42"}) as server:
        assert _get(server.url, "SHARED").json()["value"] == "cli"
        assert _get(server.url, "NEW").json() == {"value": "42", "type": "str"}


def test_environments_do_not_inherit_vars_or_bindings(make_worker, run_worker):
    root = make_worker(ECHO_ENV, VARS_TOML)
    with run_worker(root, env_name="staging") as server:
        assert _get(server.url, "API_HOST").json()["value"] == "staging.example.com"
        assert _get(server.url, "PORT").status_code == 404  # not inherited
    assert server.host.config.name == "staging-worker"
    bare = WorkerHost.from_config(root, env_name="bare")
    assert "API_HOST" not in bare.env and bare.config.name == "test-worker-bare"
    assert bare.config.main == (root / "src/entry.py").resolve()  # main is inherited


def test_unknown_environment_warns_and_uses_top_level(make_worker):
    host = WorkerHost.from_config(make_worker(ECHO_ENV, VARS_TOML), env_name="nope")
    assert any('No environment found in configuration with name "nope"' in w for w in host.config.warnings)
    assert host.env.API_HOST == "example.com"


def test_compatibility_settings_are_accepted(make_worker):
    host = WorkerHost.from_config(make_worker(ECHO_ENV, ""))
    assert host.config.compatibility_date == "2025-11-02" and host.config.compatibility_flags == ["python_workers"]


def test_unsupported_binding_kinds_are_listed_and_explain_themselves(make_worker, run_worker):
    code = """
        from workers import WorkerEntrypoint, Response

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                try:
                    await self.env.SEARCH.query([1, 2])
                except RuntimeError as exc:
                    return Response(str(exc), status=501)
                return Response("unreachable")
    """
    toml = '[[vectorize]]\nbinding = "SEARCH"\nindex_name = "my-index"\n'
    with run_worker(make_worker(code, toml)) as server:
        r = httpx.get(server.url)
        row = next(b for b in server.host.bindings if b.name == "SEARCH")
    assert r.status_code == 501 and "Vectorize Index bindings are not supported" in r.text
    assert (row.type_label, row.resource, row.mode) == ("Vectorize Index", "my-index", "not supported")


async def test_workers_env_module_level(make_worker):
    root = make_worker(
        """
        from workers import WorkerEntrypoint, Response, env, patch_env

        AT_IMPORT = env.WHO

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                with patch_env(WHO="patched"):
                    patched = env.WHO
                return Response(f"{AT_IMPORT} {env.WHO} {patched}")
    """,
        '[vars]\nWHO = "me"\n',
    )
    from flarelet.runtime.request import Request

    host = WorkerHost.from_config(root, raise_on_load_error=True)
    response = await host.dispatcher.fetch(Request("http://localhost/"))
    assert await response.text() == "me me patched"


@pytest.mark.parametrize("bad", ["vars = 3", "[vars]\nWHEN = 1979-05-27T07:32:00Z"])
def test_bad_vars_are_config_errors(make_worker, bad):
    from flarelet.wrangler_compat.config import ConfigError

    with pytest.raises(ConfigError) as info:
        WorkerHost.from_config(make_worker(ECHO_ENV, bad))
    assert "vars" in str(info.value) and "wrangler.toml:" in str(info.value)
