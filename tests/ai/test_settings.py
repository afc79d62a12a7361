"""AiSettings: defaults, the [flarelet.ai] table, environment variables, and bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from flarelet.bindings.ai import settings as s
from flarelet.bindings.ai.settings import AiSettings, SettingsError


def test_defaults_are_the_named_constants(monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    cfg = AiSettings.from_options({}, environ={})
    assert cfg.max_input_bytes == s.DEFAULT_MAX_INPUT_BYTES
    assert cfg.max_audio_seconds == s.DEFAULT_MAX_AUDIO_SECONDS
    assert cfg.threads == s.DEFAULT_THREADS
    assert cfg.queue_size == s.DEFAULT_QUEUE_SIZE
    assert cfg.timeout_s == s.DEFAULT_TIMEOUT_S
    assert cfg.device == "auto"
    assert cfg.cache_dir == Path.home() / ".cache" / "flarelet"
    assert cfg.models_dir == cfg.cache_dir / "models"
    assert cfg.model_paths == {}


def test_table_from_wrangler_options(tmp_path):
    options = {
        "preload": True,
        "flarelet": {
            "ai": {
                "max_input_bytes": 1000,
                "max_audio_seconds": 12.5,
                "threads": 2,
                "queue_size": 0,
                "timeout_s": 3,
                "device": "CPU",
                "cache_dir": str(tmp_path),
                "models": {"@cf/openai/whisper-large-v3-turbo": str(tmp_path / "turbo")},
                "api_token": "belongs-to-the-rest-api",
            }
        },
    }
    cfg = AiSettings.from_options(options, environ={})
    assert (cfg.max_input_bytes, cfg.max_audio_seconds, cfg.threads, cfg.queue_size, cfg.timeout_s) == (
        1000,
        12.5,
        2,
        0,
        3.0,
    )
    assert cfg.device == "cpu"
    assert cfg.cache_dir == tmp_path
    assert cfg.model_paths == {"@cf/openai/whisper-large-v3-turbo": tmp_path / "turbo"}


def test_environment_overrides_the_table(tmp_path):
    environ = {
        "FLARELET_CACHE": str(tmp_path / "cache"),
        "FLARELET_AI_MAX_INPUT_BYTES": "2_000",
        "FLARELET_AI_MAX_AUDIO_SECONDS": "60",
        "FLARELET_AI_THREADS": "2",
        "FLARELET_AI_QUEUE_SIZE": "3",
        "FLARELET_AI_TIMEOUT": "9.5",
        "FLARELET_AI_DEVICE": "cpu",
        "FLARELET_AI_MODELS": '{"@cf/openai/whisper": "/models/a"}',
        "FLARELET_AI_MODEL__CF_OPENAI_WHISPER_LARGE_V3_TURBO": "/models/turbo",
    }
    cfg = AiSettings.from_options(
        {"flarelet": {"ai": {"max_input_bytes": 5, "models": {"@cf/openai/whisper-tiny-en": "/t"}}}}, environ=environ
    )
    assert cfg.cache_dir == tmp_path / "cache"
    assert cfg.max_input_bytes == 2000
    assert cfg.max_audio_seconds == 60.0
    assert (cfg.threads, cfg.queue_size, cfg.timeout_s) == (2, 3, 9.5)
    assert cfg.model_paths == {
        "@cf/openai/whisper-tiny-en": Path("/t"),
        "@cf/openai/whisper": Path("/models/a"),
        "@cf/openai/whisper-large-v3-turbo": Path("/models/turbo"),
    }


def test_model_env_name():
    assert (
        s.model_env_name("@cf/openai/whisper-large-v3-turbo") == "FLARELET_AI_MODEL__CF_OPENAI_WHISPER_LARGE_V3_TURBO"
    )
    assert s.model_env_name("@cf/openai/whisper-tiny-en") == "FLARELET_AI_MODEL__CF_OPENAI_WHISPER_TINY_EN"


@pytest.mark.parametrize(
    "table, key",
    [
        ({"max_input_bytes": -1}, "max_input_bytes"),
        ({"max_input_bytes": "lots"}, "flarelet.ai.max_input_bytes"),
        ({"max_audio_seconds": 0}, "max_audio_seconds"),
        ({"threads": 0}, "threads"),
        ({"threads": 1.5}, "flarelet.ai.threads"),
        ({"queue_size": -1}, "queue_size"),
        ({"timeout_s": True}, "flarelet.ai.timeout_s"),
        ({"device": "tpu"}, "device"),
        ({"models": ["not", "a", "table"]}, "flarelet.ai.models"),
        ({"colour": "blue"}, "flarelet.ai.colour"),
    ],
)
def test_bad_values_name_the_key(table, key):
    with pytest.raises(SettingsError) as info:
        AiSettings.from_options({"flarelet": {"ai": table}}, environ={})
    assert info.value.key == key


def test_bad_environment_values_name_the_variable():
    with pytest.raises(SettingsError) as info:
        AiSettings.from_options({}, environ={"FLARELET_AI_THREADS": "many"})
    assert info.value.key == "FLARELET_AI_THREADS"
    with pytest.raises(SettingsError) as info:
        AiSettings.from_options({}, environ={"FLARELET_AI_MODELS": "{not json"})
    assert info.value.key == "FLARELET_AI_MODELS"
    with pytest.raises(SettingsError) as info:
        AiSettings.from_options({}, environ={"FLARELET_AI_MODEL__CF_NOPE": "/x"})
    assert info.value.key == "FLARELET_AI_MODEL__CF_NOPE"


def test_settings_are_hashable_and_compare_by_value(tmp_path):
    a = AiSettings(cache_dir=tmp_path, model_paths={"x": "/a"})
    b = AiSettings(cache_dir=str(tmp_path), model_paths={"x": Path("/a")})
    assert a == b and hash(a) == hash(b)
    assert a.replace(threads=a.threads + 1) != a


def test_engine_setting_from_the_table_the_environment_and_bad_values():
    assert AiSettings.from_options({}, environ={}).engine == s.DEFAULT_ENGINE == "lean"
    table = {"flarelet": {"ai": {"engine": "Transformers"}}}
    assert AiSettings.from_options(table, environ={}).engine == "transformers"
    assert AiSettings.from_options(table, environ={"FLARELET_AI_ENGINE": "lean"}).engine == "lean"  # env wins
    with pytest.raises(SettingsError) as info:
        AiSettings.from_options({}, environ={"FLARELET_AI_ENGINE": "ctranslate2"})
    assert info.value.key == "engine" and "lean, transformers" in info.value.message
    # services are keyed by settings: the engine is part of their identity
    assert hash(AiSettings(engine="lean")) != hash(AiSettings(engine="transformers"))
