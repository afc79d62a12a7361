"""The pytest plugin, as a user gets it: a fresh project and the plugin loaded through its
``pytest11`` entry point (no conftest, no ``-p``). One run is a real ``pytest`` subprocess; the
others run in this process (the same entry-point loading, without 3 s of interpreter start-up)."""

from __future__ import annotations

import textwrap

import pytest

import flarelet.testing  # noqa: F401 - imported before the in-process runs, which restore sys.modules after each
from flarelet.runtime import workers_sdk

pytest_plugins = ["pytester"]
workers_sdk.install()

WORKER = """
from workers import Response, WorkerEntrypoint

import state


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        state.hits += 1
        return Response(f"{self.env.GREETING} #{state.hits}")
"""


def make_project(pytester: pytest.Pytester, folder: str = "app", greeting: str = "Hello") -> None:
    pytester.makefile(
        ".toml",
        **{
            f"{folder}/wrangler": textwrap.dedent(f'''
        name = "{folder}"
        main = "src/entry.py"
        compatibility_date = "2025-11-02"

        [vars]
        GREETING = "{greeting}"

        [env.staging.vars]
        GREETING = "{greeting} from staging"
    ''')
        },
    )
    pytester.makepyfile(**{f"{folder}/src/entry": WORKER, f"{folder}/src/state": "hits = 0\n"})


def run(pytester: pytest.Pytester, *args: str, subprocess: bool = False) -> pytest.RunResult:
    if subprocess:
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)


@pytest.mark.slow  # a real pytest process: ~5 s of start-up with this venv's plugins
def test_fixtures_in_auto_mode_with_config_discovery(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        **{
            "app/tests/test_app": """
        import pytest

        async def test_fetch(worker):
            assert await (await worker.fetch("/")).text() == "Hello #1"

        async def test_fresh_worker_per_test(worker):
            assert await (await worker.fetch("/")).text() == "Hello #1"

        def test_env_is_sync_usable(env):
            assert env.GREETING == "Hello"

        @pytest.mark.flarelet(env="staging", vars={"OTHER": "x"})
        async def test_marker_env(worker, env):
            assert env.OTHER == "x"
            assert await (await worker.fetch("/")).text() == "Hello from staging #1"
    """
        }
    )
    result = run(pytester, subprocess=True)
    result.assert_outcomes(passed=4)


def test_strict_mode_with_asyncio_markers(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        **{
            "app/tests/test_strict": """
        import pytest

        @pytest.mark.asyncio
        async def test_fetch(worker):
            assert await (await worker.fetch("/")).text() == "Hello #1"

        @pytest.mark.asyncio
        async def test_env(env):
            assert env.GREETING == "Hello"
    """
        }
    )
    run(pytester).assert_outcomes(passed=2)


def test_ini_options(pytester: pytest.Pytester) -> None:
    make_project(pytester, "one", greeting="One")
    make_project(pytester, "two", greeting="Two")
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "flarelet_config = two/wrangler.toml\nflarelet_env = staging\n"
    )
    pytester.makepyfile(
        **{
            "one/tests/test_ini": """
        import pytest

        async def test_ini_wins_over_discovery(worker):
            assert await (await worker.fetch("/")).text() == "Two from staging #1"

        @pytest.mark.flarelet(config="..", env=None)
        async def test_marker_wins_over_ini(worker):
            # env=None in the marker falls back to the ini's environment
            assert await (await worker.fetch("/")).text() == "One from staging #1"
    """
        }
    )
    run(pytester).assert_outcomes(passed=2)


def test_marker_merging_and_binding_factories(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        **{
            "app/tests/test_markers": """
        import pytest

        made = []

        def bindings():
            made.append(object())
            return {"TOKEN": made[-1]}

        pytestmark = pytest.mark.flarelet(vars={"A": "module", "B": "module"}, bindings=bindings)

        class TestClass:
            pytestmark = pytest.mark.flarelet(vars={"B": "class"})

            @pytest.mark.flarelet(vars={"C": "function"})
            async def test_merged(self, env):
                assert (env.A, env.B, env.C) == ("module", "class", "function")

        async def test_factory_per_test_first(env):
            assert env.TOKEN is made[-1]

        async def test_factory_per_test_second(env):
            assert env.TOKEN is made[-1] and len(made) == 3

        def test_options_fixture(flarelet_options):
            assert flarelet_options["vars"] == {"A": "module", "B": "module"}
            assert flarelet_options["config"].name == "tests"  # searched upwards from here
    """
        }
    )
    run(pytester, "-p", "no:randomly").assert_outcomes(passed=4)


def test_override_the_options_fixture_in_conftest(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest("""
        import pytest

        @pytest.fixture
        def flarelet_options(flarelet_options):
            return {**flarelet_options, "vars": {"GREETING": "From conftest"}}
    """)
    pytester.makepyfile(
        **{
            "app/tests/test_conf": """
        async def test_fetch(worker):
            assert await (await worker.fetch("/")).text() == "From conftest #1"
    """
        }
    )
    run(pytester).assert_outcomes(passed=1)


def test_errors_are_clear(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makepyfile(**{"broken/src/entry": "import not_a_module_anywhere\n"})
    pytester.makefile(".toml", **{"broken/wrangler": 'name = "b"\nmain = "src/entry.py"\n'})
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        **{
            "app/tests/test_errors": """
        import pytest

        @pytest.mark.flarelet(config="../../broken")
        async def test_broken_module(worker):
            pass

        @pytest.mark.flarelet(config="../../nowhere")
        async def test_missing_config(worker):
            pass

        @pytest.mark.flarelet(confg="..")
        async def test_typo(worker):
            pass
    """
        }
    )
    result = run(pytester)
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "*flarelet: the worker does not load: importing entry.py failed: "
            "ModuleNotFoundError*not_a_module_anywhere*",
        ]
    )
    result.stdout.fnmatch_lines(["*flarelet: *nowhere does not exist*"])
    result.stdout.fnmatch_lines(["*unknown argument 'confg'*"])


def test_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    make_project(pytester)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        **{
            "app/tests/test_off": """
        def test_needs_worker(worker):
            pass
    """
        }
    )
    result = run(pytester, "-p", "no:flarelet")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'worker' not found*"])
