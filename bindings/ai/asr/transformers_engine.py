"""The ``transformers`` Whisper backend: transformers' own ``WhisperForConditionalGeneration`` and its
``generate``, behind the same interface as the lean engine (:mod:`flarelet.bindings.ai.asr.engine`).

Chosen with ``engine = "transformers"`` in ``[flarelet.ai]`` or ``FLARELET_AI_ENGINE=transformers``.
It runs any Hugging Face Whisper checkpoint transformers runs (distil-whisper's 2-layer decoder,
large-v3's 128 mel bins, fine-tunes), at transformers' speed, with transformers doing the work
wherever it gives what Cloudflare's output needs:

* ``generate`` does the long-form loop (sequential 30 s windows), the timestamp rules, temperature
  fallback on ``compression_ratio_threshold`` / ``logprob_threshold``, no-speech skipping,
  ``condition_on_prev_tokens``, ``initial_prompt`` (``prompt_ids``) and beam search
  (``num_beams``); ``return_segments`` gives the segments and ``return_token_timestamps`` each
  token's time (cross-attention + DTW), from which words are cut (:meth:`Vocabulary.split_words`).

Our code only adds what ``generate`` does not report: each segment's ``temperature``,
``avg_logprob`` and ``no_speech_prob`` (recorded as ``generate`` judges each attempt, by
overriding its ``_need_fallback`` hook), ``compression_ratio`` (openai's, on the text),
``language_probability`` (one decoder step over the language tokens) and the silence gate.

Not available on this backend (refused with 5006, so nobody is silently served something else):
``prefix`` and ``hallucination_silence_threshold``. Requests run one at a time (no batching
across requests), as ``generate`` runs them.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import errors
from .fallback import compression_ratio
from .options import SAMPLE_RATE, TranscribeOptions, check_cancel
from .results import Segment, Transcription, Word
from .transcribe import language_and_task, speech_test

log = logging.getLogger("flarelet.ai")


class GenerateJob:
    """One transcription for :meth:`TransformersEngine.run_round` (finished after one round)."""

    __slots__ = ("audio", "options", "finished", "_result", "_error")

    def __init__(self, audio: np.ndarray, options: TranscribeOptions) -> None:
        self.audio: np.ndarray | None = audio
        self.options = options
        self.finished = False
        self._result: Transcription | None = None
        self._error: BaseException | None = None

    def result(self) -> Transcription:
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


@functools.cache
def _recording_model_class() -> type[Any]:
    """``WhisperForConditionalGeneration`` that writes down, for each decoding attempt ``generate``
    judges, the temperature, average log-probability and no-speech probability it judged."""
    from transformers import WhisperForConditionalGeneration
    from transformers.models.whisper import generation_whisper as gw

    class RecordingWhisper(WhisperForConditionalGeneration):
        def _need_fallback(self, seek_sequence, seek_outputs, index, logits_processor, generation_config, *rest):
            verdict = super()._need_fallback(
                seek_sequence, seek_outputs, index, logits_processor, generation_config, *rest
            )
            temperature = rest[-1] if rest else None
            out = seek_outputs[index] if isinstance(seek_outputs, (list, tuple)) else None
            if not isinstance(out, dict):  # plain token output (no return_dict_in_generate): nothing to note
                return verdict
            out["flarelet_temperature"] = float(temperature or 0.0)
            if "sequences_scores" in out:
                out["flarelet_avg_logprob"] = float(out["sequences_scores"])
            elif out.get("scores") is not None:
                logprob = self._retrieve_avg_logprobs(out["scores"], seek_sequence, float(temperature or 0.0))
                out["flarelet_avg_logprob"] = float(logprob)
            no_speech = gw._get_attr_from_logit_processors(
                logits_processor, gw.WhisperNoSpeechDetection, "no_speech_prob"
            )
            if no_speech is not None:
                out["flarelet_no_speech_prob"] = float(no_speech[index])
            return verdict

    return RecordingWhisper


class TransformersEngine:
    """One Whisper checkpoint run by transformers (the backend interface: ``start``,
    ``run_round``, ``transcribe``; ``vocab``, ``label``, ``device``, ``quantize``)."""

    def __init__(
        self, folder: Path, device: str = "auto", threads: int = 1, label: str = "", quantize: str = "none"
    ) -> None:
        import torch
        import transformers
        from transformers import WhisperFeatureExtractor, WhisperTokenizer

        from .engine import _device
        from .vocabulary import Vocabulary

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        self.torch = torch
        self.folder = Path(folder)
        self.label = label or self.folder.name
        self.device = _device(torch, device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.quantize = "none"  # transformers' own arithmetic: the weights as the checkpoint has them
        self.threads = threads
        model = _recording_model_class().from_pretrained(self.folder, dtype=self.dtype, local_files_only=True)
        self.model = model.to(self.device).eval()
        self.config = self.model.config
        self.generation_config = self.model.generation_config
        self.features = WhisperFeatureExtractor.from_pretrained(self.folder, local_files_only=True)
        self.vocab = Vocabulary(
            WhisperTokenizer.from_pretrained(self.folder, local_files_only=True), self.generation_config, self.config
        )
        self._lock = threading.Lock()  # generate keeps per-call state on the model's logits processors

    # -- the backend interface -------------------------------------------------------------------

    def start(self, audio: np.ndarray, options: TranscribeOptions) -> GenerateJob:
        return GenerateJob(audio, options)

    def run_round(self, jobs: Sequence[GenerateJob], threads: int | None = None) -> None:
        """Run each unfinished job to the end (``generate`` has no step-wise interface)."""
        for job in jobs:
            if job.finished:
                continue
            try:
                assert job.audio is not None
                job._result = self.transcribe(job.audio, job.options, threads)
            except BaseException as exc:  # noqa: BLE001 -- the job's own failure, re-raised by result()
                job._error = exc
            job.finished, job.audio = True, None

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions | None = None, threads: int | None = None
    ) -> Transcription:
        """Transcribe (or translate) 16 kHz mono float32 ``audio`` of any length."""
        options = options or TranscribeOptions()
        check_cancel(options)
        if options.prefix:
            raise errors.bad_input("Error: 'prefix' is not supported by the transformers engine at '/prefix'")
        if options.hallucination_silence_threshold is not None:
            raise errors.bad_input(
                "Error: 'hallucination_silence_threshold' is not supported by the transformers engine "
                "at '/hallucination_silence_threshold'"
            )
        language, task = language_and_task(self.vocab, options)
        duration = audio.shape[0] / SAMPLE_RATE
        has_speech = speech_test(options.speech_spans)
        if audio.shape[0] == 0 or (has_speech is not None and not has_speech(0.0, duration)):
            return Transcription([], language or "en", 1.0 if language else 0.0, duration)
        torch = self.torch
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, threads or self.threads))
        features, mask = self._features(audio)
        with self._lock, torch.inference_mode():
            probability = 1.0
            if language is None:
                language, probability = self._detect_language(features[:, :, :3000])
            torch.manual_seed(options.seed)
            out = self.model.generate(features, attention_mask=mask, **self._generate_kwargs(options, language, task))
        raw = out["segments"][0]
        segments = [self._segment(i, s, options.word_timestamps, language or "en") for i, s in enumerate(raw)]
        segments = [s for s in segments if s.start != s.end and s.text.strip()]
        for i, seg in enumerate(segments):
            seg.id = i
        return Transcription(segments, language or "en", probability, duration)

    # -- the parts ---------------------------------------------------------------------------------

    def _features(self, audio: np.ndarray) -> tuple[Any, Any]:
        """Log-mel of the whole clip (long-form: ``generate`` walks it), at least one 30 s window."""
        long_form = audio.shape[0] > 30 * SAMPLE_RATE
        whole: dict[str, Any] = {"truncation": False, "padding": "longest"} if long_form else {}
        extracted = self.features(
            audio,
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
            return_attention_mask=True,
            **whole,
        )
        return extracted.input_features.to(self.device, self.dtype), extracted.attention_mask.to(self.device)

    def _detect_language(self, window: Any) -> tuple[str, float]:
        """The most likely language of the first window and its probability (``generate`` detects
        the language too, but does not say how sure it is)."""
        torch = self.torch
        ids = list(self.vocab.lang_to_id.values())
        enc = self.model.model.encoder(window).last_hidden_state
        start = torch.tensor([[self.vocab.sot]], device=self.device)
        hidden = self.model.model.decoder(input_ids=start, encoder_hidden_states=enc).last_hidden_state
        logits = self.model.proj_out(hidden)[0, -1].float()
        probs = torch.softmax(logits[ids], dim=-1)
        best = int(torch.argmax(probs))
        return list(self.vocab.lang_to_id)[best], float(probs[best])

    def _generate_kwargs(self, options: TranscribeOptions, language: str | None, task: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "return_timestamps": True,
            "return_segments": True,
            "return_dict_in_generate": True,
            "output_scores": True,
            "return_token_timestamps": options.word_timestamps,
            "temperature": tuple(float(t) for t in options.temperatures),
            "compression_ratio_threshold": options.compression_ratio_threshold,
            "logprob_threshold": options.log_prob_threshold,
            "no_speech_threshold": options.no_speech_threshold,
            "condition_on_prev_tokens": options.condition_on_previous_text,
            "num_beams": options.beam_size,
        }
        if self.vocab.multilingual:
            kwargs.update(language=language, task=task)
        if options.initial_prompt:
            kwargs["prompt_ids"] = self.torch.tensor(
                self.vocab.tokenizer.get_prompt_ids(options.initial_prompt.strip()), device=self.device
            )
        return kwargs

    def _segment(self, index: int, raw: dict[str, Any], with_words: bool, language: str) -> Segment:
        tokens = [int(t) for t in raw["tokens"]]
        text = self.vocab.decode_text(tokens)
        result = raw.get("result") or {}
        start, end = float(raw["start"]), float(raw["end"])
        segment = Segment(
            id=index,
            seek=0,
            start=round(start, 2),
            end=round(end, 2),
            text=text,
            tokens=tokens,
            temperature=float(result.get("flarelet_temperature", 0.0)),
            avg_logprob=float(result.get("flarelet_avg_logprob", 0.0)),
            compression_ratio=compression_ratio(text),
            no_speech_prob=float(result.get("flarelet_no_speech_prob", 0.0)),
        )
        times = raw.get("token_timestamps")
        if with_words and times is not None:
            segment.words = self._words(tokens, [float(t) for t in times], end, language)
        return segment

    def _words(self, tokens: list[int], times: list[float], end: float, language: str) -> list[Word]:
        """Words of a segment from its tokens' times (token ``i`` spans ``times[i]..times[i+1]``),
        punctuation merged into its word as openai-whisper does."""
        from .alignment import Timing, merge_punctuations

        eot = self.vocab.eot
        text_at = [i for i, t in enumerate(tokens) if t < eot]
        if not text_at:
            return []
        words, groups = self.vocab.split_words([tokens[i] for i in text_at] + [eot], language)
        timings: list[Timing] = []
        k = 0
        for word, group in zip(words[:-1], groups[:-1]):
            first, last = text_at[k], text_at[k + len(group) - 1]
            k += len(group)
            stop = times[last + 1] if last + 1 < len(times) else end
            timings.append(Timing(word, group, times[first], max(stop, times[first]), None))
        merge_punctuations(timings)
        return [Word(t.word, round(t.start, 2), round(t.end, 2), None) for t in timings if t.word]
