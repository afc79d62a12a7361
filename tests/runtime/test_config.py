"""wrangler.toml / wrangler.json / wrangler.jsonc: parsing, environments, one-line errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import pytest

from flarelet.bindings.registry import BindingContext, ConfigSectionError
from flarelet.runtime.host import WorkerHost
from flarelet.wrangler_compat.config import ConfigError, find_config, load_config
from flarelet.wrangler_compat.jsonc import JsoncError, parse_jsonc

HELLO = "from workers import Response\nasync def on_fetch(request, env):\n    return Response(env.WHO)\n"


def project(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src/entry.py").write_text(HELLO)
    (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def test_jsonc_comments_trailing_commas_and_lines():
    value, lines = parse_jsonc(
        textwrap.dedent("""\
        // leading comment
        {
          "name": "x", /* inline */
          "vars": {
            "A": "http://not-a-comment", // trailing
          },
          "list": [1, 2.5, true, null,],
        }
    """)
    )
    assert value == {"name": "x", "vars": {"A": "http://not-a-comment"}, "list": [1, 2.5, True, None]}
    assert lines[("vars", "A")] == 5 and lines[("list",)] == 7
    with pytest.raises(JsoncError) as info:
        parse_jsonc('{\n  "a": 1\n  "b": 2\n}')
    assert info.value.line == 2


@pytest.mark.parametrize("name", ["wrangler.json", "wrangler.jsonc"])
def test_json_configs_serve(tmp_path, run_worker, name):
    root = project(
        tmp_path,
        name,
        """\
        {
          // JSONC is accepted in both files, as wrangler does
          "name": "json-worker",
          "main": "src/entry.py",
          "compatibility_date": "2025-11-02",
          "compatibility_flags": ["python_workers"],
          "vars": {"WHO": "json",},
        }
    """,
    )
    with run_worker(root) as server:
        assert httpx.get(server.url).text == "json"


def test_find_config_order_and_upward_search(tmp_path):
    project(tmp_path, "wrangler.toml", 'main = "src/entry.py"\n')
    (tmp_path / "wrangler.jsonc").write_text('{"main": "src/entry.py"}')
    assert find_config(tmp_path).name == "wrangler.jsonc"
    (tmp_path / "wrangler.json").write_text('{"main": "src/entry.py"}')
    assert find_config(tmp_path / "src").name == "wrangler.json"
    assert find_config(tmp_path / "wrangler.toml").name == "wrangler.toml"
    with pytest.raises(ConfigError, match="does not exist"):
        find_config(tmp_path / "nope")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'main = "src/entry.py"\n[triggers]\ncrons = [\n  "* * * * *",\n  "61 * * * *",\n]\n',
            'wrangler.toml:5: triggers.crons[1]: invalid cron expression "61 * * * *"',
        ),
        (
            'main = "src/entry.py"\ncompatibility_date = "2025/01/01"\n',
            "wrangler.toml:2: compatibility_date: must be a date written yyyy-mm-dd",
        ),
        (
            'main = "src/entry.py"\n\n[env.staging.vars]\nA = 1\n[env.staging]\ncompatibility_flags = "x"\n',
            "wrangler.toml:6: env.staging.compatibility_flags: must be an array",
        ),
        ('main = "src/entry.py"\nname = "x"\nname = "y"\n', "wrangler.toml:3: invalid TOML: Cannot overwrite a value"),
        ('main = "src/missing.py"\n', "wrangler.toml:1: main: the main module src/missing.py does not exist"),
    ],
)
def test_toml_errors_name_file_line_and_key(tmp_path, text, expected):
    root = project(tmp_path, "wrangler.toml", text)
    with pytest.raises(ConfigError) as info:
        WorkerHost.from_config(root)
    assert str(info.value).replace(str(root) + "/", "").startswith(expected)
    assert "\n" not in str(info.value)


def test_jsonc_error_lines(tmp_path):
    root = project(
        tmp_path,
        "wrangler.jsonc",
        '{\n  "main": "src/entry.py",\n  "triggers": {\n    "crons": [\n      "bad"\n    ]\n  }\n}\n',
    )
    with pytest.raises(ConfigError) as info:
        load_config(root)
    err = info.value
    assert (err.path.name, err.line, err.key) == ("wrangler.jsonc", 5, "triggers.crons[0]")


def test_plugin_section_errors_become_one_line(tmp_path):
    root = project(
        tmp_path,
        "wrangler.toml",
        'main = "src/entry.py"\n\n[env.prod]\n[[env.prod.kv_namespaces]]\nbinding = "KV"\nid = 3\n',
    )
    config = load_config(root, "prod")
    err = config.section_error("kv_namespaces", ConfigSectionError("kv_namespaces[0].id", "must be a string"))
    assert (err.line, err.key, err.message) == (6, "env.prod.kv_namespaces[0].id", "must be a string")
    err = config.section_error("kv_namespaces", ConfigSectionError("0.id", "must be a string"))
    assert err.key == "env.prod.kv_namespaces[0].id"


def test_flarelet_table_and_cli_options_reach_plugins(tmp_path, monkeypatch):
    """Plugins get ``options["flarelet"]`` (the [flarelet] table) and the CLI options."""
    import flarelet.bindings.registry as registry

    seen: dict[str, BindingContext] = {}

    class Probe:
        key = "probe"

        def create(self, section, ctx):
            seen["ctx"] = ctx
            return [registry.BindingInfo(section["binding"], "Probe", "", object())]

    import sys
    import types

    module = types.ModuleType("probe_plugin_for_test")
    module.plugin = Probe()
    monkeypatch.setitem(sys.modules, "probe_plugin_for_test", module)
    monkeypatch.setitem(registry.PLUGIN_PATHS, "probe", "probe_plugin_for_test:plugin")
    root = project(
        tmp_path,
        "wrangler.toml",
        'main = "src/entry.py"\n[probe]\nbinding = "P"\n[flarelet]\nmax_body_bytes = 10\n[flarelet.probe]\nlevel = 3\n',
    )
    host = WorkerHost.from_config(
        root, options={"api_token": "t", "account_id": "a", "preload": True}, persist_to=tmp_path / "state"
    )
    ctx = seen["ctx"]
    assert ctx.options["flarelet"]["probe"] == {"level": 3}
    assert (ctx.options["api_token"], ctx.options["account_id"], ctx.options["preload"]) == ("t", "a", True)
    assert ctx.persist_to == tmp_path / "state" and ctx.config_dir == root
    assert "P" in host.env and host.max_body_bytes == 10


def test_unknown_keys_warn_with_line_and_did_you_mean_as_wrangler_warns(tmp_path, monkeypatch):
    """wrangler warns ``Unexpected fields found in top-level field`` (no error); flarelet adds the line
    and the closest known key, so a typo is not silently read as "no compatibility_date"."""
    monkeypatch.chdir(tmp_path)
    root = project(
        tmp_path,
        "wrangler.toml",
        """\
        name = "t"
        main = "src/entry.py"
        compatibilty_date = "2025-11-02"
        compatibility_flags = ["python_workers"]
        frobnicate = 1

        [env.staging]
        varz = { WHO = "x" }
        """,
    )
    warnings = load_config(root, "staging").warnings
    assert (
        "wrangler.toml:3: Unexpected fields found in top-level field: 'compatibilty_date' "
        "(did you mean 'compatibility_date'?)"
    ) in warnings
    assert "wrangler.toml:5: Unexpected fields found in top-level field: 'frobnicate'" in warnings
    assert "wrangler.toml:8: Unexpected fields found in env.staging field: 'varz' (did you mean 'vars'?)" in warnings
    assert "No compatibility_date was specified. Using today's date." in warnings


def test_python_worker_without_python_workers_flag_warns_as_cloudflare_requires_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = 'name = "t"\nmain = "src/entry.py"\ncompatibility_date = "2025-11-02"\n'
    warnings = load_config(project(tmp_path, "wrangler.toml", text)).warnings
    assert warnings == [
        'wrangler.toml: main is a Python module (src/entry.py) but compatibility_flags lacks "python_workers": '
        'Cloudflare requires it to deploy a Python Worker (add compatibility_flags = ["python_workers"]); '
        "flarelet runs the worker anyway"
    ]
    flagged = text + 'compatibility_flags = ["python_workers"]\n'
    assert load_config(project(tmp_path, "wrangler.toml", flagged)).warnings == []
    other = text + 'compatibility_flags = ["nodejs_compat"]\n'
    assert (
        "wrangler.toml:4: main is a Python module" in load_config(project(tmp_path, "wrangler.toml", other)).warnings[0]
    )
