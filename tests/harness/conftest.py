"""Fixtures for the harness tests (flarelet.testing, the pytest plugin, FakeAi and cassettes).

``project``: a copy of ``tests/harness/project`` (a worker with vars, KV, D1, assets, an
``[env.staging]``, and one route per behaviour under test) in a temp folder, so a test may write
``.wrangler/state`` or edit it. ``sample_wav``: the real speech file of the Whisper example.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PROJECT = HERE / "project"
SAMPLE_WAV = REPO / "examples" / "whisper" / "public" / "enrollment_audio_katie.wav"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(PROJECT, target, ignore=shutil.ignore_patterns(".wrangler", "__pycache__"))
    return target


@pytest.fixture(scope="session")
def sample_wav() -> bytes:
    return SAMPLE_WAV.read_bytes()
