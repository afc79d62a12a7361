"""The local Workers AI service: one object both front doors (``env.AI`` and the REST API) call.

``AiService.run(model, inputs)`` does what Cloudflare's backend does for a Whisper call: validate
the inputs against the model's schema, decode the audio, transcribe it, and shape the output --
or raise :class:`~bindings.ai.errors.AiError` with Cloudflare's code and words.

Why a service object and a process-wide instance (:func:`get_service`):

* models are big and slow to load, so they are loaded once per process (and survive the dev
  server's code reloads, which re-import the user's worker but not this module);
* inference is CPU-bound and must not block the event loop: it runs on one dedicated worker
  thread, in front of which sits a bounded queue (``queue_size`` waiting requests; one more is
  refused with 3040/429, Cloudflare's "Out of capacity"), and each request has a wall-clock limit
  (``timeout_s``, then 3007/408). A timed-out request is also *cancelled* in the engine (checked
  between decoding steps), so the worker is free again soon after;
* the service may be called from several event loops (the dev server, tests), so admission uses a
  thread lock, not asyncio primitives bound to one loop.

torch/transformers are imported only inside the worker thread, when a model is first loaded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

from . import catalog, errors
from .settings import AiSettings

log = logging.getLogger("flarelet.ai")


@dataclass
class _Ticket:
    """One admitted request: lets a timed-out caller stop the engine's work."""

    cancel: threading.Event
    deadline: float


class AiService:
    """Runs Workers AI models locally; see the module docstring for the concurrency model."""

    def __init__(self, settings: AiSettings | None = None) -> None:
        self.settings = settings if settings is not None else AiSettings.from_options()
        # One inference thread: two CPU-bound inferences on a small machine only slow each other.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="flarelet-ai")
        self._lock = threading.Lock()
        self._in_flight = 0  # admitted requests: running + waiting
        self._closed = False
        #: what happened to requests (``flarelet`` status / benches / tests): counts by outcome
        self.stats = {"completed": 0, "failed": 0, "rejected": 0, "timed_out": 0, "aborted": 0}

    # -- public API ---------------------------------------------------------------------------

    async def run(self, model: str, inputs: Any) -> dict:
        """Run ``model`` on ``inputs`` (a JSON-like dict, or raw bytes = the REST binary body).

        Returns the model output in Cloudflare's shape; raises :class:`errors.AiError`.
        """
        if self._closed:
            raise errors.internal("the AI service is shut down")
        spec = catalog.resolve(model)
        loop = asyncio.get_running_loop()
        # Validation (a 5 MB file is a 5-million-item list) and decoding need no model: do them off
        # the event loop and before queueing, so bad or over-long input is refused at once, even
        # while the model is busy.
        try:
            request, samples = await loop.run_in_executor(None, self._prepare, spec, inputs)
        except errors.AiError:
            raise
        except Exception as exc:  # a bug or an odd input we did not foresee: Cloudflare's shape, logged
            log.exception("Workers AI input handling failed for %s", spec.id)
            raise errors.internal(type(exc).__name__) from None
        ticket = self._admit()
        try:
            future = self._executor.submit(self._run_sync, spec, samples, request, ticket)
        except RuntimeError:  # executor shut down between the check above and now
            self._release()
            raise errors.internal("the AI service is shut down") from None
        remaining = max(0.0, ticket.deadline - time.monotonic())
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future, loop=loop), remaining)
        except asyncio.TimeoutError:
            ticket.cancel.set()  # the engine stops at its next step; the slot frees when it does
            self.stats["timed_out"] += 1
            raise errors.timeout(f"inference took longer than {self.settings.timeout_s:g} s") from None
        except asyncio.CancelledError:
            ticket.cancel.set()  # the caller went away (client disconnect): stop working for it
            raise

    def models(self) -> list[dict]:
        """The catalog in Cloudflare's ``ai/models/search`` result shape."""
        out = []
        for spec in catalog.MODELS.values():
            local = self.settings.model_paths.get(spec.id)
            out.append(spec.search_entry(str(local) if local is not None else None))
        return out

    async def preload(self, models: Sequence[str]) -> None:
        """Load (converting on first use) the weights behind ``models`` now, off the event loop."""
        specs = [catalog.resolve(m) for m in models]
        loop = asyncio.get_running_loop()
        for spec in specs:
            await asyncio.wrap_future(self._executor.submit(self._load_sync, spec), loop=loop)

    async def aclose(self) -> None:
        """Stop accepting work and let the worker thread finish; loaded models stay cached."""
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)

    def _prepare(self, spec: catalog.ModelSpec, inputs: Any) -> tuple[Any, Any]:
        from . import audio, schemas  # pydantic and PyAV: cheap, but keep start-up import-free

        request = schemas.parse_inputs(spec, inputs, self.settings)
        return request, audio.decode_audio(request.audio, self.settings.max_audio_seconds)

    # -- capacity -----------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _admit(self) -> _Ticket:
        with self._lock:
            if self._in_flight >= 1 + self.settings.queue_size:
                self.stats["rejected"] += 1
                raise errors.out_of_capacity(
                    f"{self._in_flight} requests in flight, queue_size={self.settings.queue_size}"
                )
            self._in_flight += 1
        return _Ticket(threading.Event(), time.monotonic() + self.settings.timeout_s)

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    # -- worker thread ------------------------------------------------------------------------

    def _load_sync(self, spec: catalog.ModelSpec) -> Any:
        from . import engine

        return engine.get_engine(spec, self.settings)

    def _run_sync(self, spec: catalog.ModelSpec, samples: Any, request: Any, ticket: _Ticket) -> dict:
        try:
            if ticket.cancel.is_set() or time.monotonic() > ticket.deadline:
                raise errors.timeout("request expired while queued")
            from . import inference

            engine = self._load_sync(spec)
            result = inference.transcribe_request(spec, engine, samples, request, ticket.cancel)
            self.stats["completed"] += 1
            return result
        except errors.AiError as exc:
            self.stats["aborted" if exc.code == 3008 else "failed"] += 1
            raise
        except Exception as exc:  # never leak a traceback to the caller; keep it in the log
            self.stats["failed"] += 1
            log.exception("Workers AI inference failed for %s", spec.id)
            raise errors.internal(f"{type(exc).__name__}: {exc}") from None
        finally:
            self._release()


_services: dict[AiSettings, AiService] = {}
_services_lock = threading.Lock()


def get_service(settings: AiSettings | None = None) -> AiService:
    """The process-wide service for ``settings`` (default: from the environment).

    One service per distinct settings value; all share the process-wide model cache in
    :mod:`bindings.ai.engine`, so a dev-server reload never reloads a model.
    """
    settings = settings if settings is not None else AiSettings.from_options()
    with _services_lock:
        service = _services.get(settings)
        if service is None or service._closed:
            service = _services[settings] = AiService(settings)
        return service
