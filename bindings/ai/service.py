"""The local Workers AI service: one object both front doors (``env.AI`` and the REST API) call.

``AiService.run(model, inputs)`` does what Cloudflare's backend does: validate the inputs against
the model's schema, run the model, and shape the output -- or raise
:class:`~flarelet.bindings.ai.errors.AiError` with Cloudflare's code and words. The service knows
no model task: it finds the model id's task in the catalog and calls it through the
:class:`~flarelet.bindings.ai.tasks.Task` protocol (Whisper's is :mod:`flarelet.bindings.ai.asr.task`).

Why a service object and a process-wide instance (:func:`get_service`):

* models are big and slow to load, so they are loaded once per process (and survive the dev
  server's code reloads, which re-import the user's worker but not this module);
* inference is CPU-bound and must not block the event loop: it runs on ``workers`` inference
  threads (default 1) sharing the loaded model;
* requests that are in flight together are served by **dynamic batching**: a worker that was idle
  waits ``batch_window_ms`` for companions, then runs up to ``max_batch`` requests at once, round
  by round (:meth:`Task.run_round`; for Whisper a round is one 30 s window of every request,
  decoded in one batched pass); a request that arrives meanwhile joins at the next round, a
  finished one leaves. On a CPU a model's per-token cost is mostly weight reads and framework
  overhead that a batch shares, so N requests take far less than N times one (README "Speed");
* admission is bounded: ``1 + queue_size`` requests in flight (running or waiting);
  one more is refused with 3040/429, Cloudflare's "Out of capacity", never queued without limit.
  Each request has a wall-clock limit (``timeout_s``, then 3007/408); a timed-out request is
  also *cancelled* in the model (its cancel event, checked between steps), so its slot frees soon;
* a task's model-free side work (:meth:`Task.side_work`, e.g. Whisper's ``vad_filter`` pass over
  the whole clip) runs on a thread of its own while the request queues;
* the service may be called from several event loops (the dev server, tests), so admission uses a
  thread lock, not asyncio primitives bound to one loop.

Tasks import their heavy modules (torch, transformers) only inside the worker threads, when a
model is first loaded.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from . import catalog, errors
from .settings import AiSettings
from .streaming import AiStream
from .tasks import StreamingTask, Task

log = logging.getLogger("flarelet.ai")


@dataclass
class _Ticket:
    """One admitted request: lets a timed-out caller stop the model's work."""

    cancel: threading.Event
    deadline: float
    admitted: float = 0.0
    client_gone: bool = False  # cancelled because the caller went away (not a timeout)


@dataclass
class Admission:
    """A held admission slot (:meth:`AiService.admission`)."""

    ticket: _Ticket
    handed_over: bool = False


@dataclass
class _Request:
    """An admitted request on its way through a worker."""

    spec: catalog.ModelSpec
    task: Task
    request: Any  # the task's parsed inputs
    ticket: _Ticket
    side: concurrent.futures.Future | None  # the task's side work, running
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    job: Any = None  # the task's job once a worker has started it
    model: Any = None
    #: the caller asked for server-sent events: each round's bytes go here (a task with ``drain``)
    stream: AiStream | None = None


class AiService:
    """Runs Workers AI models locally; see the module docstring for the concurrency model."""

    def __init__(self, settings: AiSettings | None = None) -> None:
        self.settings = settings if settings is not None else AiSettings.from_options()
        self._lock = threading.Lock()
        self._in_flight = 0  # admitted requests: running + waiting
        self._busy = 0  # workers inside a round now
        self._closed = False
        self._queue: collections.deque[_Request] = collections.deque()
        self._wake = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._loader = threading.Lock()  # one model load at a time, whichever worker asks
        # tasks' side work (Whisper's VAD): sequential and light, beside the model's threads.
        self._side = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="flarelet-ai-side")
        #: what happened to requests (``flarelet`` status / benches / tests): counts by outcome
        #: (``cancelled``: aborted because the caller went away -- a client disconnect)
        self.stats = {"completed": 0, "failed": 0, "rejected": 0, "timed_out": 0, "aborted": 0, "cancelled": 0}

    # -- public API ---------------------------------------------------------------------------

    async def run(self, model: str, inputs: Any, admission: Admission | None = None) -> dict[str, Any] | AiStream:
        """Run ``model`` on ``inputs`` (a JSON-like dict, or raw bytes = the REST binary body).

        Returns the model output in Cloudflare's shape; raises :class:`errors.AiError`.
        ``admission``: a slot the caller already holds (:meth:`admission`); it passes to the queue.
        """
        if self._closed:
            raise errors.internal("the AI service is shut down")
        spec = catalog.resolve(model)
        task = catalog.task_of(spec)
        loop = asyncio.get_running_loop()
        # Validation (a 5 MB file is a 5-million-item list) and decoding need no model: do them off
        # the event loop and before queueing, so bad or over-long input is refused at once, even
        # while the model is busy.
        started = time.monotonic()
        try:
            request = await loop.run_in_executor(None, task.parse_inputs, spec, inputs, self.settings)
        except asyncio.CancelledError:  # the caller went away while its input was being decoded
            self._count_cancelled(spec.id, "while decoding its input", started)
            raise
        except errors.AiError:
            raise
        except Exception as exc:  # a bug or an odd input we did not foresee: Cloudflare's shape, logged
            log.exception("Workers AI input handling failed for %s", spec.id)
            raise errors.internal(type(exc).__name__) from None
        if admission is not None:
            ticket, admission.handed_over = admission.ticket, True
        else:
            ticket = self._admit()
        try:
            work = task.side_work(request)  # e.g. the whole clip's speech spans, found while queued
            side = self._side.submit(work) if work is not None else None
        except RuntimeError:  # shut down between the check above and now
            self._release()
            raise errors.internal("the AI service is shut down") from None
        item = _Request(spec, task, request, ticket, side)
        streams = getattr(task, "streams", None)
        if streams is not None and streams(request):
            item.stream = AiStream(loop, ticket.cancel, ticket.deadline)
        if not self._enqueue(item):
            self._release()
            raise errors.internal("the AI service is shut down")
        if item.stream is not None:
            # Answer once the first bytes exist: a refusal before them (a too-long prompt, a load
            # failure, the time limit) is then an ordinary error, not a broken stream.
            try:
                return await item.stream.start()
            except asyncio.CancelledError:
                ticket.cancel.set()
                raise
            except errors.AiError as exc:
                if exc.code == 3007:
                    self.stats["timed_out"] += 1
                raise
        remaining = max(0.0, ticket.deadline - time.monotonic())
        try:
            return await asyncio.wait_for(asyncio.wrap_future(item.future, loop=loop), remaining)
        except TimeoutError:
            ticket.cancel.set()  # the model stops at its next step; the slot frees when it does
            self.stats["timed_out"] += 1
            raise errors.timeout(f"inference took longer than {self.settings.timeout_s:g} s") from None
        except asyncio.CancelledError:
            ticket.client_gone = True  # the caller went away (client disconnect): stop working for it
            ticket.cancel.set()  # running: the engine stops at its next step
            self._drop_if_queued(item)  # queued: leaves the queue now, not when a worker reaches it
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
            await loop.run_in_executor(None, self._load_sync, spec)

    async def aclose(self) -> None:
        """Stop accepting work and let the workers finish what they hold; models stay cached."""
        self._closed = True
        with self._wake:
            self._wake.notify_all()
        workers = list(self._workers)

        def join() -> None:
            for worker in workers:
                worker.join()
            self._side.shutdown(wait=True)

        await asyncio.get_running_loop().run_in_executor(None, join)

    # -- capacity -----------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @contextlib.contextmanager
    def admission(self) -> Iterator[Admission]:
        """Hold one of the ``1 + queue_size`` slots while a request is read and parsed (the REST
        API's bodies), so that work is bounded too; raises 3040 when none is free. The slot is
        released on leaving unless :meth:`run` took it over for the inference queue."""
        slot = Admission(self._admit())
        try:
            yield slot
        finally:
            if not slot.handed_over:
                self._release()

    def _admit(self) -> _Ticket:
        with self._lock:
            if self._in_flight >= 1 + self.settings.queue_size:
                self.stats["rejected"] += 1
                raise errors.out_of_capacity(
                    f"{self._in_flight} requests in flight, queue_size={self.settings.queue_size}"
                )
            self._in_flight += 1
        now = time.monotonic()
        return _Ticket(threading.Event(), now + self.settings.timeout_s, now)

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    # -- the workers --------------------------------------------------------------------------

    def _enqueue(self, item: _Request) -> bool:
        with self._wake:
            if self._closed:
                return False
            self._queue.append(item)
            self._workers = [w for w in self._workers if w.is_alive()]
            if len(self._workers) < self.settings.workers:
                worker = threading.Thread(target=self._work, name=f"flarelet-ai-{len(self._workers)}", daemon=True)
                self._workers.append(worker)
                worker.start()
            self._wake.notify()
            return True

    def _take(self, active: int) -> list[_Request] | None:
        """Requests for a worker holding ``active`` ones: waits while it has none (then the batch
        window, for companions); None when the service is closed and nothing is left."""
        room = self.settings.max_batch - active
        if room <= 0:
            return []
        with self._wake:
            if active == 0:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if not self._queue:
                    return None
                window = self.settings.batch_window_ms / 1000.0
                deadline = time.monotonic() + window
                while len(self._queue) < room and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
                taken: list[_Request] = []
                while self._queue and len(taken) < room:
                    taken.append(self._queue.popleft())
                return taken
            # Joining a running batch: only requests that can start at once, so that no one's
            # run waits for another's side work (an idle worker takes them anyway).
            taken = [item for item in self._queue if item.side is None or item.side.done()][:room]
            for item in taken:
                self._queue.remove(item)
            return taken

    def _work(self) -> None:
        """A worker: take requests, advance all it holds by one window per round, answer each
        as soon as its job is done."""
        active: list[_Request] = []
        turn = 0
        while True:
            new = self._take(len(active))
            if new is None:
                return
            for item in new:
                if self._start(item):
                    active.append(item)
            if not active:
                continue
            # One model per round (a batch shares one model); several models take turns.
            models: dict[int, list[_Request]] = {}
            for item in active:
                models.setdefault(id(item.model), []).append(item)
            group = list(models.values())[turn % len(models)]
            turn += 1
            with self._lock:
                self._busy += 1
                # the encoder's threads, shared out between the workers busy now
                threads = max(1, self.settings.threads // self._busy)
            try:
                group[0].task.run_round(group[0].model, [item.job for item in group], threads)
            except Exception as exc:  # a bug: fail this round's requests, keep serving
                log.exception("Workers AI batch failed")
                for item in group:
                    self._fail(item, errors.internal(f"{type(exc).__name__}: {exc}"))
                active = [item for item in active if item not in group]
                continue
            finally:
                with self._lock:
                    self._busy -= 1
            for item in group:  # streamed requests: this round's bytes leave now
                if item.stream is not None and item.job is not None:
                    item.stream.push(cast(StreamingTask, item.task).drain(item.job))
            still = []
            for item in active:
                if item.job.finished:
                    self._complete(item)
                else:
                    still.append(item)
            active = still
            if not active:
                _release_free_memory()

    def _start(self, item: _Request) -> bool:
        """Load the model and start the request's job; False if the request is already answered."""
        try:
            if item.ticket.cancel.is_set():  # timed out or the caller went away while queued
                raise errors.aborted()
            if time.monotonic() > item.ticket.deadline:
                raise errors.timeout("request expired while queued")
            item.model = self._load_sync(item.spec)
            item.job = item.task.start(item.model, item.spec, item.request, item.ticket.cancel, item.side)
            log.debug("Workers AI: started %s", item.spec.id)
        except Exception as exc:  # noqa: BLE001 -- answered with Cloudflare's shape
            self._fail(item, exc)
            return False
        if item.job.finished:  # nothing to run (Whisper: silence)
            self._complete(item)
            return False
        return True

    def _complete(self, item: _Request) -> None:
        try:
            if item.stream is not None:
                item.stream.push(cast(StreamingTask, item.task).drain(item.job))
            result = item.task.finish(item.job)
        except Exception as exc:  # noqa: BLE001
            self._fail(item, exc)
            return
        self.stats["completed"] += 1
        self._answer(item, result=result)

    def _fail(self, item: _Request, exc: BaseException) -> None:
        if isinstance(exc, errors.AiError):
            self.stats["aborted" if exc.code == 3008 else "failed"] += 1
            if exc.code == 3008 and item.ticket.client_gone:
                stage = "while running" if item.job is not None else "while queued"
                self._count_cancelled(item.spec.id, stage, item.ticket.admitted)
        else:  # never leak a traceback to the caller; keep it in the log
            self.stats["failed"] += 1
            log.error("Workers AI inference failed for %s", item.spec.id, exc_info=exc)
            exc = errors.internal(f"{type(exc).__name__}: {exc}")
        self._answer(item, error=exc)

    def _drop_if_queued(self, item: _Request) -> None:
        with self._wake:
            try:
                self._queue.remove(item)
            except ValueError:  # a worker holds it already
                return
        self._fail(item, errors.aborted())

    def _count_cancelled(self, model: str, stage: str, since: float) -> None:
        """Work stopped for a caller that went away: counted, and said in the log."""
        with self._lock:
            self.stats["cancelled"] += 1
            count = self.stats["cancelled"]
        log.info(
            "Workers AI: cancelled %s %s (its client went away after %.1f s); %d cancelled so far",
            model,
            stage,
            time.monotonic() - since,
            count,
        )

    def _answer(self, item: _Request, result: Any = None, error: BaseException | None = None) -> None:
        item.request = item.job = None  # let the inputs (audio: MBs) go before the caller wakes
        self._release()
        if item.stream is not None:
            item.stream.close(error)
        if not item.future.done():
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(result)

    def _load_sync(self, spec: catalog.ModelSpec) -> Any:
        with self._loader:
            return catalog.task_of(spec).load(spec, self.settings)


def _release_free_memory() -> None:
    """Give freed heap back to the OS when a worker goes idle (glibc keeps it otherwise: a 60 s
    transcription leaves ~100 MB of freed activations resident)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


_trim_fn: Any = False


def _malloc_trim() -> Any:
    global _trim_fn
    if _trim_fn is False:
        _trim_fn = None
        name = ctypes.util.find_library("c")
        try:
            _trim_fn = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
        except OSError:
            pass
    return _trim_fn


_services: dict[AiSettings, AiService] = {}
_services_lock = threading.Lock()


def get_service(settings: AiSettings | None = None) -> AiService:
    """The process-wide service for ``settings`` (default: from the environment).

    One service per distinct settings value; all share the tasks' process-wide model caches, so a
    dev-server reload never reloads a model.
    """
    settings = settings if settings is not None else AiSettings.from_options()
    with _services_lock:
        service = _services.get(settings)
        if service is None or service._closed:
            service = _services[settings] = AiService(settings)
        return service
