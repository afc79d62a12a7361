"""The text-generation engine: a causal LM from a Hugging Face folder, decoded token by token.

Why our own loop over ``model(...)`` with its key/value cache rather than ``model.generate``:
Workers AI streams each token as it is made, stops on stop strings that may span tokens, and
holds JSON mode to a schema at every step; one loop does all three, and :meth:`TextEngine.generate`
is a plain iterator, so the service can send a token before the next one is computed and stop
(cancellation, time limit) between any two steps.

Sampling follows Cloudflare's parameters: ``temperature`` (0 = greedy), ``top_k``, ``top_p``,
``repetition_penalty`` (the multiplicative CTRL form transformers uses), ``frequency_penalty`` and
``presence_penalty`` (OpenAI's additive form), ``seed`` (a private ``torch.Generator``: the same
seed gives the same tokens, whatever else runs in the process). JSON mode constrains the allowed
tokens with lm-format-enforcer's JSON-schema parser (see :mod:`.constrain`).

torch and transformers are imported when an engine is loaded, never at start-up.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import errors
from ..model_folders import mapped_folder, warn_stand_in_once
from . import tools as tool_format
from .schemas import GenerationRequest

log = logging.getLogger("flarelet.ai")


@dataclass
class Generation:
    """The running state of one request, readable while and after it generates."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    text: str = ""
    finish_reason: str = "stop"  # "stop" | "length"
    token_ids: list[int] = field(default_factory=list)


class TextEngine:
    """A loaded tokenizer + causal LM; safe to share between threads (one lock per forward pass
    is not needed: each request keeps its own cache)."""

    def __init__(self, folder: Path, label: str, threads: int = 2) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.folder = Path(folder)
        self.label = label
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
        self.threads = threads
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 4096) or 4096)
        eos = self.model.generation_config.eos_token_id if self.model.generation_config else None
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        self.stop_ids = frozenset(int(i) for i in ids)
        import inspect

        params = inspect.signature(self.model.forward).parameters
        #: transformers 5.2x names the key/value cache argument ``cache`` (``past_key_values`` before)
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._logits_arg = "logits_to_keep" if "logits_to_keep" in params else None
        self._constraint_data: Any = None
        self._constraint_lock = threading.Lock()

    # -- prompts ------------------------------------------------------------------------------

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        """The token ids the model continues: the chat template applied, unless ``raw``."""
        if request.prompt is not None and request.raw:
            return list(self.tokenizer(request.prompt, add_special_tokens=False)["input_ids"])
        messages: list[dict[str, Any]] = (
            request.messages if request.messages is not None else [{"role": "user", "content": request.prompt}]
        )
        messages = tool_format.render_history(messages)
        if request.tools:
            messages = tool_format.with_tools(messages, request.tools, self._template_has_tools())
        if request.json_schema is not None:
            messages = tool_format.with_json_instruction(messages, request.json_schema)
        kwargs: dict[str, Any] = {"add_generation_prompt": True, "tokenize": False}
        if request.tools and self._template_has_tools():
            kwargs["tools"] = request.tools
        text = self.tokenizer.apply_chat_template(messages, **kwargs)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _template_has_tools(self) -> bool:
        return "tools" in (self.tokenizer.chat_template or "")

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- decoding -----------------------------------------------------------------------------

    def begin(self, request: GenerationRequest, state: Generation) -> list[int]:
        """The prompt's token ids, checked against the context window (5021 when too long) --
        done before a request's first step, so a refusal comes before any streamed byte."""
        ids = self.prompt_ids(request)
        state.prompt_tokens = len(ids)
        if self.context_length - len(ids) <= 0:
            raise errors.AiError(
                5021,
                400,
                "AiError: AiError: The estimated number of input and maximum output tokens "
                f"({len(ids) + request.max_tokens}) exceeded this model context window limit ({self.context_length}).",
                "ContextWindowLimitExceeded",
            )
        return ids

    def generate(
        self,
        request: GenerationRequest,
        cancel: threading.Event | None = None,
        state: Generation | None = None,
        ids: list[int] | None = None,
    ) -> Iterator[str]:
        """Yield text pieces as tokens are generated; ``state`` holds counts and the whole text.

        Stops at an end-of-turn token, at a stop string (not included), at ``max_tokens`` (finish
        reason "length") or when ``cancel`` is set (raises 3008). ``ids``: :meth:`begin`'s result."""
        import torch

        state = state if state is not None else Generation()
        if ids is None:
            ids = self.begin(request, state)
        budget = self.context_length - len(ids)
        max_new = min(request.max_tokens, budget)
        generator = torch.Generator()
        generator.manual_seed(request.seed if request.seed is not None else secrets.randbits(63))
        constraint = self._constraint(request.json_schema) if request.json_schema is not None else None
        detok = _Detokenizer(self.tokenizer, request.stop)
        torch.set_num_threads(max(1, self.threads))
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        step_kwargs: dict[str, Any] = {self._cache_arg: cache, "use_cache": True}
        if self._logits_arg:
            step_kwargs[self._logits_arg] = 1  # only the last position's logits are needed
        input_ids = torch.tensor([ids])
        counts: dict[int, int] = {}
        prompt_set = torch.tensor(sorted(set(ids))) if request.repetition_penalty else None
        state.finish_reason = "length"
        with torch.inference_mode():
            for _ in range(max_new):
                if cancel is not None and cancel.is_set():
                    raise errors.aborted()
                out = self.model(input_ids=input_ids, **step_kwargs)
                logits = out.logits[0, -1].float()
                if constraint is not None:
                    allowed = constraint.allowed(ids + state.token_ids)
                    mask = torch.full_like(logits, float("-inf"))
                    mask[allowed] = 0
                    logits = logits + mask
                token = _sample(logits, request, counts, prompt_set, generator)
                if token in self.stop_ids:
                    state.finish_reason = "stop"
                    break
                state.token_ids.append(token)
                state.completion_tokens += 1
                counts[token] = counts.get(token, 0) + 1
                piece, stopped = detok.push(token)
                if piece:
                    state.text += piece
                    yield piece
                if stopped:
                    state.finish_reason = "stop"
                    break
                if constraint is not None and constraint.complete(detok.text):
                    state.finish_reason = "stop"
                    break
                input_ids = torch.tensor([[token]])
        rest = detok.flush()
        if rest:
            state.text += rest
            yield rest

    def _constraint(self, schema: dict) -> Any:
        from .constrain import JsonConstraint, tokenizer_data

        with self._constraint_lock:
            if self._constraint_data is None:
                self._constraint_data = tokenizer_data(self.tokenizer)
        return JsonConstraint(self._constraint_data, schema)


def _sample(logits: Any, request: GenerationRequest, counts: dict[int, int], prompt_set: Any, generator: Any) -> int:
    import torch

    if request.repetition_penalty and request.repetition_penalty != 1.0:
        seen = torch.tensor(sorted(set(counts) | set(prompt_set.tolist())))
        picked = logits[seen]
        logits[seen] = torch.where(picked > 0, picked / request.repetition_penalty, picked * request.repetition_penalty)
    if counts and (request.frequency_penalty or request.presence_penalty):
        idx = torch.tensor(list(counts))
        freq = torch.tensor([float(c) for c in counts.values()])
        logits[idx] -= (request.frequency_penalty or 0.0) * freq + (request.presence_penalty or 0.0)
    if request.temperature <= 0:
        return int(torch.argmax(logits))
    logits = logits / request.temperature
    if request.top_k:
        k = min(request.top_k, logits.shape[-1])
        kth = torch.topk(logits, k).values[-1]
        logits = torch.where(logits < kth, torch.full_like(logits, float("-inf")), logits)
    if request.top_p is not None and request.top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cumulative - torch.softmax(sorted_logits, dim=-1) >= max(request.top_p, 1e-6)
        sorted_logits[drop] = float("-inf")
        logits = torch.full_like(logits, float("-inf")).scatter(0, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


class _Detokenizer:
    """Token ids -> text pieces, never splitting a UTF-8 character and never sending text that
    could be the start of a stop string."""

    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already given out
        self.text = ""

    def push(self, token: int) -> tuple[str, bool]:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return "", False  # a character split across tokens: wait for the rest
        self.text = text
        for s in self.stop:
            at = text.find(s, max(0, self.sent - len(s)))
            if at != -1:
                piece = text[self.sent : at] if at > self.sent else ""
                self.sent = len(text)
                self.text = text[:at]
                return piece, True
        hold = 0
        for s in self.stop:  # the longest tail that begins some stop string
            for n in range(min(len(s) - 1, len(text) - self.sent), 0, -1):
                if s.startswith(text[-n:]):
                    hold = max(hold, n)
                    break
        end = len(text) - hold
        piece = text[self.sent : end] if end > self.sent else ""
        self.sent = max(self.sent, end)
        return piece, False

    def flush(self) -> str:
        piece = self.text[self.sent :]
        self.sent = len(self.text)
        return piece


_engines: dict[tuple[str, int], TextEngine] = {}
_engines_lock = threading.Lock()


def get_engine(model_id: str, settings: Any) -> TextEngine:
    """The engine for ``model_id``: a user-mapped local folder, or the converted stand-in."""
    from .catalog import STAND_IN
    from .weights import WeightsError, ensure_weights

    local = settings.model_paths.get(model_id)
    if local is not None:
        folder, label = mapped_folder(model_id, local)
    else:
        try:
            folder = ensure_weights(settings.models_dir)
        except WeightsError as exc:
            raise errors.internal(str(exc)) from None
        label = STAND_IN
        warn_stand_in_once(model_id, STAND_IN)
    key = (str(folder), settings.threads)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            log.info("Loading text model %s from %s", label, folder)
            engine = _engines[key] = TextEngine(folder, label, settings.threads)
        return engine
