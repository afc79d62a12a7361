"""``env.AI`` and the ``ai`` plugin: config, errors as Python Workers see them, capacity and
timeouts, local model folders, preloading, and no torch at start-up."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import pytest

from flarelet.bindings.ai import catalog, errors
from flarelet.bindings.ai.asr import engine as engine_mod
from flarelet.bindings.ai.asr.weights import ensure_weights
from flarelet.bindings.ai.binding import Ai, InferenceUpstreamError
from flarelet.bindings.ai.plugin import DEFAULT_PRELOAD, AiPlugin
from flarelet.bindings.ai.service import AiService
from flarelet.bindings.ai.settings import AiSettings
from flarelet.bindings.jsobject import JsDict, JsException
from flarelet.bindings.registry import BindingContext, ConfigSectionError, load_plugin

from .conftest import BASE, TINY, TURBO, inputs_for, wer

REPO = Path(__file__).resolve().parents[2]


def ctx(tmp_path: Path, **options) -> BindingContext:
    return BindingContext(config_dir=tmp_path, persist_to=None, options=options, log=logging.getLogger("flarelet"))


# -- the plugin (no model) -------------------------------------------------------------------------


def test_plugin_is_registered_and_builds_the_binding(tmp_path, caplog):
    plugin = load_plugin("ai")
    assert isinstance(plugin, AiPlugin) and plugin.key == "ai"
    with caplog.at_level(logging.INFO, logger="flarelet"):
        rows = plugin.create({"binding": "AI", "remote": True, "staging": False}, ctx(tmp_path))
    assert len(rows) == 1
    row = rows[0]
    assert (row.name, row.type_label, row.mode) == ("AI", "AI", "local")
    assert isinstance(row.value, Ai)
    assert "ai.remote is ignored" in caplog.text and "ai.staging is ignored" in caplog.text


@pytest.mark.parametrize(
    "section, key",
    [
        ("AI", "ai"),
        ({}, "ai.binding"),
        ({"binding": "not an identifier"}, "ai.binding"),
        ({"binding": 3}, "ai.binding"),
        ({"binding": "AI", "model": "x"}, "ai.model"),
    ],
)
def test_plugin_rejects_bad_sections(tmp_path, section, key):
    with pytest.raises(ConfigSectionError) as info:
        AiPlugin().create(section, ctx(tmp_path))
    assert info.value.key == key


def test_plugin_reports_bad_settings_and_preload(tmp_path):
    with pytest.raises(ConfigSectionError) as info:
        AiPlugin().create({"binding": "AI"}, ctx(tmp_path, flarelet={"ai": {"threads": 0}}))
    assert info.value.key == "threads"
    with pytest.raises(ConfigSectionError) as info:
        AiPlugin().create({"binding": "AI"}, ctx(tmp_path, preload=["@cf/openai/whisper-huge"]))
    assert info.value.key == "preload" and "No such model" in info.value.message


def test_preload_option_forms():
    assert AiPlugin._preload_list(False) == ()
    assert AiPlugin._preload_list(True) == DEFAULT_PRELOAD
    assert AiPlugin._preload_list(f"{TINY}, {BASE}") == (TINY, BASE)
    assert AiPlugin._preload_list([TURBO]) == (TURBO,)


def test_plugin_settings_come_from_the_flarelet_ai_table(tmp_path, monkeypatch):
    # environment variables outrank the config table (CI sets FLARELET_CACHE), so clear it here
    monkeypatch.delenv("FLARELET_CACHE", raising=False)
    plugin = AiPlugin()
    row = plugin.create(
        {"binding": "AI"},
        ctx(tmp_path, flarelet={"ai": {"max_input_bytes": 1234, "cache_dir": str(tmp_path), "api_token": "x"}}),
    )[0]
    assert row.value._service.settings.max_input_bytes == 1234
    assert row.value._service.settings.cache_dir == tmp_path


# -- errors and models(), as a Python Worker sees them (no model) ---------------------------------


@pytest.fixture
def ai(tmp_path) -> Ai:
    return Ai(AiService(AiSettings(cache_dir=tmp_path, max_input_bytes=1000)))


async def test_bad_input_raises_inference_upstream_error(ai):
    with pytest.raises(InferenceUpstreamError) as info:
        await ai.run(TINY, {"audio": [1, 2, 999]})
    exc = info.value
    assert isinstance(exc, Exception) and isinstance(exc, JsException)
    assert exc.message == "5006: AiError: Bad input: Error: value 999 is not an integer between 0 and 255 at '/audio/2'"
    assert exc.code == 5006 and exc.name == "InvalidInput" and exc.httpCode == 400
    # the text is workerd's message, "<code>: <description>", without the backend name in front
    assert str(exc) == exc.message
    assert traceback.format_exception_only(exc)[-1].endswith("InferenceUpstreamError: " + exc.message + "\n")
    assert ai.lastRequestInternalStatusCode == 5006 and ai.lastRequestHttpStatusCode == 400
    assert ai.lastRequestId


async def test_other_errors_through_the_binding(ai):
    cases = [
        (
            (["@cf/meta/llama-99-unknown", {"prompt": "hi"}]),
            5007,
            "5007: No such model @cf/meta/llama-99-unknown or task",
        ),
        (([TINY, bytes(2000)]), 3006, "3006: Request is too large: audio is 2000 bytes"),
        (([TINY, b"not audio" * 10]), 5006, "5006: AiError: Bad input: Error: the request body could not be decoded"),
        (([TINY, {"audio": list(b"not audio" * 10)}]), 5006, "5006: AiError: Bad input: Error: '/audio' could not be"),
        (([TINY, {"audio": [1]}, "options"]), 5006, "5006: AiError: Bad input: Error: options must be an object"),
        (([TINY, {"audio": [1]}, {"returnRawResponse": True}]), 5019, "5019: the returnRawResponse option"),
    ]
    for args, code, start in cases:
        with pytest.raises(InferenceUpstreamError) as info:
            await ai.run(*args)
        assert info.value.code == code
        assert info.value.message.startswith(start), info.value.message
        assert "Traceback" not in info.value.message


async def test_models_lists_the_catalog(ai):
    models = await ai.models({"task": "Automatic Speech Recognition"})  # text and embedding ids follow
    assert [m.name for m in models] == [BASE, TINY, TURBO]
    for m in models:
        assert isinstance(m, JsDict)
        assert set(m) == {"id", "source", "name", "description", "task", "tags", "properties"}
        assert m.task.name == "Automatic Speech Recognition"
    turbo = models[2]
    assert "stand-in" in turbo.description
    assert any(p.property_id == "flarelet_weights" and "stand-in" in p.value for p in turbo.properties)
    assert [m.name for m in await ai.models({"search": "whisper-tiny"})] == [TINY]
    assert len(await ai.models({"task": "Automatic Speech Recognition"})) == 3


def test_importing_and_creating_the_binding_loads_no_torch(tmp_path):
    """Cold start without AI use must stay light: no torch, no transformers, no model."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys, logging
        from pathlib import Path
        from flarelet.bindings.registry import BindingContext, load_plugin
        plugin = load_plugin("ai")
        options = {{"flarelet": {{"ai": {{"cache_dir": {str(tmp_path)!r}}}}}}}
        ctx = BindingContext(config_dir=Path("."), persist_to=None, options=options)
        ai = plugin.create({{"binding": "AI"}}, ctx)[0].value
        async def main():
            await ai.models()
            try:
                await ai.run("@cf/openai/whisper", {{"audio": list(b"not audio at all")}})
            except Exception as exc:
                print(exc.code)
        asyncio.run(main())
        heavy = [m for m in ("torch", "transformers", "onnxruntime", "av") if m in sys.modules]
        print("heavy:", heavy)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "5006" in out
    assert "heavy: ['av']" in out  # PyAV decoded the junk; nothing else heavy was imported


# -- with the real model ----------------------------------------------------------------------------


@pytest.mark.slow
async def test_run_returns_a_dict_with_attribute_access(service, clip, manifest):
    ai = Ai(service)
    resp = await ai.run(TINY, {"audio": list(clip("jfk.flac"))})
    assert isinstance(resp, dict) and isinstance(resp, JsDict)
    assert resp.text == resp["text"]
    assert wer(manifest["jfk.flac"]["reference"], resp.text) <= 0.10
    assert resp.words[0].word == resp["words"][0]["word"]
    assert resp.word_count == len(resp.words)
    assert ai.lastRequestHttpStatusCode == 200


@pytest.mark.slow
async def test_full_queue_is_3040(ai_settings, clip):
    svc = AiService(ai_settings.replace(queue_size=0))
    long = inputs_for(TINY, clip("librivox_sonnet001.mp3"))
    first = asyncio.create_task(svc.run(TINY, long))
    while svc.in_flight == 0:
        await asyncio.sleep(0.01)
    with pytest.raises(errors.AiError) as info:
        await svc.run(TINY, inputs_for(TINY, clip("whatstheweatherlike.mp3")))
    assert info.value.code == 3040 and info.value.status == 429
    assert (await first)["text"]
    assert svc.in_flight == 0 and svc.stats["rejected"] == 1
    # capacity is back
    assert (await svc.run(TINY, inputs_for(TINY, clip("whatstheweatherlike.mp3"))))["text"]


@pytest.mark.slow
async def test_timeout_is_3007_and_stops_the_work(ai_settings, clip, service):
    await service.preload([TINY])  # loading is not what this test times out on
    svc = AiService(ai_settings.replace(timeout_s=0.5))
    with pytest.raises(errors.AiError) as info:
        await svc.run(TINY, inputs_for(TINY, clip("librivox_sonnet001.mp3")))
    assert info.value.code == 3007 and info.value.status == 408
    for _ in range(600):  # the engine notices the cancel between decoding steps
        if svc.in_flight == 0:
            break
        await asyncio.sleep(0.1)
    assert svc.in_flight == 0
    assert svc.stats["timed_out"] == 1 and svc.stats["aborted"] == 1 and svc.stats["completed"] == 0


@pytest.mark.slow
async def test_model_id_mapped_to_a_local_folder(ai_settings, clip, manifest, tmp_path):
    tiny_folder = ensure_weights("tiny.en", ai_settings.models_dir)
    svc = AiService(ai_settings.replace(model_paths={TURBO: tiny_folder}))
    result = await svc.run(TURBO, inputs_for(TURBO, clip("jfk.flac")))
    assert set(result) >= {"transcription_info", "segments"}
    assert result["transcription_info"]["language"] == "en"
    assert wer(manifest["jfk.flac"]["reference"], result["text"]) <= 0.10
    entry = next(m for m in svc.models() if m["name"] == TURBO)
    assert "stand-in" not in entry["description"]
    assert any(p["value"] == f"local folder {tiny_folder}" for p in entry["properties"])
    # an English-only folder refuses another language, clearly
    with pytest.raises(errors.AiError) as info:
        await svc.run(TURBO, inputs_for(TURBO, clip("jfk.flac"), language="de"))
    assert info.value.code == 5006 and "English-only" in info.value.description
    # a folder that is not a model
    broken = AiService(ai_settings.replace(model_paths={TURBO: tmp_path}))
    with pytest.raises(errors.AiError) as info:
        await broken.run(TURBO, inputs_for(TURBO, clip("jfk.flac")))
    assert info.value.code == 3000 and "not a Hugging Face Whisper model folder" in info.value.description


@pytest.mark.slow
async def test_preload_and_process_wide_model_cache(ai_settings, tmp_path):
    plugin = AiPlugin()
    context = ctx(tmp_path, preload=[TINY])
    plugin.create({"binding": "AI"}, context)
    await plugin.start(context)
    folder = ensure_weights("tiny.en", ai_settings.models_dir)
    key = (str(folder.resolve()), ai_settings.device, ai_settings.threads, ai_settings.quantize, ai_settings.engine)
    loaded = engine_mod._engines[key]
    # a second service (a dev-server reload builds new bindings) reuses the loaded model
    again = await asyncio.get_running_loop().run_in_executor(
        None, engine_mod.get_engine, catalog.MODELS[TINY], ai_settings
    )
    assert again is loaded
