"""Serving many transcriptions at once: one round advances every job by about one window.

Stage by stage -- encode, language, decode, align -- each stage's work from all jobs runs as one
batch on the engine, and a job that moves on to a later stage joins that stage in the same
round. On a CPU the decoder's per-token cost is mostly weight reads and framework overhead that
a batch shares, so N requests take far less than N times one (README "Speed"). The service
(:mod:`flarelet.bindings.ai.service`) calls :func:`run_round` through the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .options import TranscribeOptions
from .results import Transcription
from .work import STAGES, AlignWork, DecodeWork, EncodeWork, Job, LanguageWork


def transcribe(engine: Any, audio: np.ndarray, options: TranscribeOptions | None = None) -> Transcription:
    """One transcription start to finish on the calling thread."""
    job = Job(engine.transcribe_steps(audio, options or TranscribeOptions()))
    run_round(engine, [job])
    while not job.finished:
        run_round(engine, [job])
    return job.result()


def run_round(engine: Any, jobs: Sequence[Job], threads: int | None = None) -> None:
    """Advance every unfinished job by (about) one window, serving their work in batches.

    A job's error (cancellation, a bad option) finishes that job only. ``threads``: the
    encoder's threads for this round (default: the engine's). A batched long-form job
    (:class:`~flarelet.bindings.ai.asr.batched.BatchedJob`) takes part as its chunks' jobs.
    """
    jobs = [part for job in jobs for part in (job.active() if hasattr(job, "active") else (job,))]
    for job in jobs:
        if job.pending is None and not job.finished:
            job.advance(None)
    for stage in STAGES:
        group = [j for j in jobs if not j.finished and isinstance(j.pending, stage)]
        while group:
            results = serve(engine, stage, [j.pending for j in group], threads)
            for job, result in zip(group, results):
                job.advance(result)
            # temperature fallback asks for another decode of the same window: serve it now
            group = [j for j in group if not j.finished and isinstance(j.pending, stage)] if stage is DecodeWork else []


def serve(engine: Any, stage: type, works: list, threads: int | None = None) -> list:
    """One stage's work for many jobs, as batches; a failure is handed to each job it touches."""
    try:
        if stage is EncodeWork:
            return engine.encode_windows([w.mel for w in works], threads)
        if stage is LanguageWork:
            return engine.detect_languages([w.window for w in works])
        if stage is AlignWork:
            return engine.align_rows(works, threads)
        results: list = [None] * len(works)
        rows = [i for i, w in enumerate(works) if not (w.temperature == 0 and w.options.beam_size > 1)]
        for i, w in enumerate(works):
            if i not in rows:
                try:
                    results[i] = engine.beam_window(w)
                except BaseException as exc:  # noqa: BLE001 -- handed to that job only
                    results[i] = exc
        if rows:
            for i, r in zip(rows, engine.decode_rows([works[i] for i in rows], threads)):
                results[i] = r
        return results
    except Exception as exc:  # noqa: BLE001 -- a failed batch fails each of its jobs
        return [exc] * len(works)
