"""Recording real ``env.AI`` outputs to a cassette (``RecordingAi``) and replaying them (``FakeAi``)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from flarelet.bindings.ai import errors
from flarelet.bindings.ai.binding import Ai, InferenceUpstreamError
from flarelet.bindings.ai.fake import RECORD_ENV, CassetteMiss, FakeAi, RecordingAi, cassette_binding, record_mode
from flarelet.testing import Worker

BASE = "@cf/openai/whisper"
TINY = "@cf/openai/whisper-tiny-en"
TURBO = "@cf/openai/whisper-large-v3-turbo"


def ai_project(project: Path) -> Path:
    config = project / "wrangler.toml"
    config.write_text(config.read_text() + '\n[ai]\nbinding = "AI"\n')
    return project


async def test_record_then_replay(tmp_path: Path, sample_wav: bytes) -> None:
    # The recorder's bookkeeping, with a FakeAi standing in for the real binding (fast);
    # test_real_model_record_and_replay below does the same with the real model.
    path = tmp_path / "cassettes" / "ai.json"
    source = FakeAi({TINY: {"text": "recorded words"}, BASE: errors.bad_input("Error: simulated")})
    recorder = RecordingAi(source, path)  # type: ignore[arg-type]
    recorded = await recorder.run(TINY, {"audio": list(sample_wav)})
    with pytest.raises(InferenceUpstreamError):
        await recorder.run(BASE, {"audio": list(sample_wav)})
    assert [c.model for c in recorder.calls] == [TINY, BASE]
    assert path.is_file()
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)  # the umask's, not 0600
    data = json.loads(path.read_text())
    assert data["flarelet_cassette"] == 1 and len(data["entries"]) == 2
    entry = next(e for e in data["entries"].values() if "output" in e)
    assert entry["input"]["model"] == TINY and entry["input"]["audio_bytes"] == len(sample_wav)

    replay = FakeAi.from_cassette(path)
    # the same audio in another form is the same call
    assert await replay.run(TINY, sample_wav) == recorded == {"text": "recorded words"}
    with pytest.raises(InferenceUpstreamError) as exc:
        await replay.run(BASE, {"audio": list(sample_wav)})
    assert exc.value.message == "5006: AiError: Bad input: Error: simulated"
    with pytest.raises(CassetteMiss, match=f"{RECORD_ENV}=1"):
        await replay.run(TINY, sample_wav[:200_000])  # other audio
    with pytest.raises(InferenceUpstreamError, match="5007"):  # inputs are still checked first
        await replay.run("@cf/nope", sample_wav)


async def test_options_are_part_of_the_key(tmp_path: Path, sample_wav: bytes) -> None:
    import base64

    path = tmp_path / "ai.json"
    recorder = RecordingAi(FakeAi(text="german"), path)  # type: ignore[arg-type]
    audio = base64.b64encode(sample_wav).decode()
    await recorder.run(TURBO, {"audio": audio, "language": "de"})
    replay = FakeAi.from_cassette(path)
    assert (await replay.run(TURBO, {"audio": audio, "language": "german"})).text == "german"  # same language
    with pytest.raises(CassetteMiss):
        await replay.run(TURBO, {"audio": audio, "language": "fr"})


async def test_recording_merges_into_an_existing_cassette(tmp_path: Path, sample_wav: bytes) -> None:
    path = tmp_path / "ai.json"
    await RecordingAi(FakeAi(text="first"), path).run(TINY, sample_wav)  # type: ignore[arg-type]
    await RecordingAi(FakeAi(text="second"), path).run(TINY, sample_wav[:300_000])  # type: ignore[arg-type]
    replay = FakeAi.from_cassette(path)
    assert (await replay.run(TINY, sample_wav)).text == "first"
    assert (await replay.run(TINY, sample_wav[:300_000])).text == "second"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_bad_cassettes_are_refused(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(FileNotFoundError, match=f"{RECORD_ENV}=1"):
        FakeAi.from_cassette(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        FakeAi.from_cassette(broken)
    other = tmp_path / "other.json"
    other.write_text('{"entries": {}}')
    with pytest.raises(ValueError, match="not a flarelet cassette"):
        FakeAi.from_cassette(other)
    edited = tmp_path / "edited.json"
    edited.write_text(
        json.dumps(
            {
                "flarelet_cassette": 1,
                "entries": {
                    "k": {"input": {"model": TINY}, "output": {"text": "ok", "words": [{"word": "ok", "start": "0"}]}}
                },
            }
        )
    )
    with pytest.raises(ValueError, match="words.0.start"):
        FakeAi.from_cassette(edited)


def test_record_mode_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ai.json"
    real = FakeAi()
    monkeypatch.setenv(RECORD_ENV, "1")
    assert record_mode() and isinstance(cassette_binding(real, path), RecordingAi)  # type: ignore[arg-type]
    for off in ("", "0", "no"):
        monkeypatch.setenv(RECORD_ENV, off)
        assert not record_mode()
    monkeypatch.delenv(RECORD_ENV)
    with pytest.raises(FileNotFoundError):
        cassette_binding(real, path)  # type: ignore[arg-type]
    path.write_text('{"flarelet_cassette": 1, "entries": {}}')
    assert isinstance(cassette_binding(real, path), FakeAi)  # type: ignore[arg-type]
    assert isinstance(cassette_binding(real, path, record=True), RecordingAi)  # type: ignore[arg-type]


async def test_worker_ai_cassette_replays(
    project: Path, tmp_path: Path, sample_wav: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(RECORD_ENV, raising=False)
    path = tmp_path / "ai.json"
    await RecordingAi(FakeAi(text="from the cassette"), path).run(TINY, {"audio": list(sample_wav)})  # type: ignore[arg-type]
    async with Worker.from_config(ai_project(project), ai_cassette=path) as worker:
        assert isinstance(worker.env.AI, FakeAi)
        resp = await worker.fetch("/ai", method="POST", body=sample_wav)
        assert (await resp.json())["text"] == "from the cassette"


@pytest.mark.slow
async def test_real_model_record_and_replay(
    project: Path, tmp_path: Path, sample_wav: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FLARELET_AI_RECORD=1: the worker's env.AI is the real model, and its answer lands in the cassette."""
    path = tmp_path / "ai.json"
    monkeypatch.setenv(RECORD_ENV, "1")
    async with Worker.from_config(ai_project(project), ai_cassette=path) as worker:
        assert isinstance(worker.env.AI, RecordingAi) and isinstance(worker.env.AI.real, Ai)
        live = await (await worker.fetch("/ai", method="POST", body=sample_wav)).json()
    assert live["text"].lower().startswith("hello, it is a good day")
    monkeypatch.delenv(RECORD_ENV)
    async with Worker.from_config(project, ai_cassette=path) as worker:
        replayed = await (await worker.fetch("/ai", method="POST", body=sample_wav)).json()
    assert replayed == live
