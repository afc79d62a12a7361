"""Queues (``queues``): producer bindings (``send``/``sendBatch``) and local consumers.

A producer binding puts messages on a queue; when the same config declares a consumer for that
queue, flarelet batches them like Miniflare's queue broker (``packages/miniflare/src/workers/
queues/broker.worker.ts``) and delivers each batch to the worker's ``queue(batch)`` handler
through :meth:`registry.WorkerHost.dispatch_queue`. The handler's decisions come back in
Miniflare's ``FetcherQueueResult`` shape (see ``runtime/queue_batch.py``, which builds the
``MessageBatch``/``Message`` objects the handler receives):

* a batch is sent when ``max_batch_size`` messages are waiting (Miniflare default 5) or
  ``max_batch_timeout`` seconds after the first one arrived (default 1);
* ``msg.retry()``/``batch.retryAll()`` or an exception re-deliver (after ``delaySeconds`` /
  ``retry_delay``) until ``max_retries`` (default 2) is spent, then the message goes to the
  ``dead_letter_queue`` if there is one, else it is dropped with a warning; ``msg.ack()``
  keeps a message from being retried even when the handler later throws;
* messages sent to a queue nobody consumes are dropped, as under ``wrangler dev``.

Like ``wrangler dev``, queued messages live in memory: they do not survive a restart.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as _dt
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flarelet.bindings import registry
from flarelet.bindings.jsobject import JsException, JsTypeError, check_rpc_value, merge_options, to_js_dict
from flarelet.bindings.storage.config import validate_entries, validate_model

__all__ = ["QueueLimits", "WorkerQueue", "QueueBroker", "QueuesHub", "QueuesPlugin", "plugin"]

TYPE_LABEL = "Queue"
CONTENT_TYPES = ("text", "json", "bytes", "v8")
#: Miniflare's defaults when the consumer config leaves them out
DEFAULT_BATCH_SIZE = 5
DEFAULT_BATCH_TIMEOUT_S = 1.0
DEFAULT_RETRIES = 2


@dataclass(frozen=True)
class QueueLimits:
    """Cloudflare Queues limits (developers.cloudflare.com/queues/platform/limits; Miniflare)."""

    max_message_bytes: int = 128_000
    max_batch_messages: int = 100
    max_batch_bytes: int = 256_000
    max_delay_s: int = 43_200


# -- message bodies ----------------------------------------------------------------------------


def _clone(value: Any, path: str = "body") -> Any:
    """A structured clone of plain data (what ``contentType: "v8"`` carries)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (bytes, memoryview)):
        return bytes(value)
    if isinstance(value, _dt.datetime):
        return value
    if isinstance(value, Mapping):
        return {str(k): _clone(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise JsException("DataCloneError", f"{type(value).__name__} object at {path} could not be cloned.")


def _v8_size(value: Any) -> int:
    """Approximate serialized size of a cloned value (V8's format is close to this)."""
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, (int, float)):
        return 9
    if isinstance(value, str):
        return 5 + len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bytes):
        return 5 + len(value)
    if isinstance(value, _dt.datetime):
        return 9
    if isinstance(value, dict):
        return 5 + sum(_v8_size(k) + _v8_size(v) for k, v in value.items())
    return 5 + sum(_v8_size(v) for v in value)


@dataclass
class _Body:
    content_type: str
    payload: Any  # str (text/json), bytes (bytes), cloned value (v8)
    size: int

    def deliver(self) -> Any:
        """A fresh copy for one delivery (a handler mutating it must not change retries)."""
        if self.content_type == "json":
            return to_js_dict(json.loads(self.payload))
        if self.content_type == "v8":
            return to_js_dict(copy.deepcopy(self.payload))
        return self.payload


def encode_body(body: Any, content_type: str | None, method: str) -> _Body:
    """Validate and copy a message body as ``send``/``sendBatch`` do."""
    content_type = "v8" if content_type is None else content_type
    if content_type not in CONTENT_TYPES:
        raise JsTypeError(f"Unknown content type \"{content_type}\": must be one of 'text', 'json', 'bytes' or 'v8'.")
    check_rpc_value(body)
    if content_type == "text":
        if not isinstance(body, str):
            raise JsTypeError(
                f'Content Type "text" requires a value of type string, but received: {type(body).__name__}'
            )
        return _Body("text", body, len(body.encode("utf-8", "surrogatepass")))
    if content_type == "json":
        try:
            text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise JsTypeError(f'Content Type "json" requires a JSON-serializable value: {exc}') from None
        return _Body("json", text, len(text.encode("utf-8", "surrogatepass")))
    if content_type == "bytes":
        if not isinstance(body, (bytes, memoryview)):
            raise JsTypeError(
                'Content Type "bytes" requires a value of type ArrayBuffer (bytes), '
                f"but received: {type(body).__name__}"
            )
        return _Body("bytes", bytes(body), len(body))
    cloned = _clone(body)
    return _Body("v8", cloned, _v8_size(cloned))


@dataclass
class _Queued:
    id: str
    timestamp_ms: float
    body: _Body
    failed_attempts: int = 0

    def for_handler(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "timestamp": self.timestamp_ms,
            "body": self.body.deliver(),
            "attempts": self.failed_attempts + 1,
        }


# -- consumers ---------------------------------------------------------------------------------


class QueueConsumerConfig(BaseModel):
    """One ``[[queues.consumers]]`` entry."""

    model_config = ConfigDict(extra="allow")

    queue: str = Field(min_length=1)
    max_batch_size: int | None = Field(default=None, ge=0, le=100)
    max_batch_timeout: float | None = Field(default=None, ge=0, le=60)
    max_retries: int | None = Field(default=None, ge=0, le=100)
    dead_letter_queue: str | None = None
    retry_delay: int | None = Field(default=None, ge=0, le=43_200)
    max_concurrency: int | None = Field(default=None, ge=1)
    type: str | None = None


class QueueProducerConfig(BaseModel):
    """One ``[[queues.producers]]`` entry."""

    model_config = ConfigDict(extra="allow")

    binding: str
    queue: str = Field(min_length=1)
    delivery_delay: int | None = Field(default=None, ge=0, le=43_200)
    remote: bool | None = None


def _as_delay(value: Any) -> float | None:
    """A retry delay in seconds from a handler's outcome (``5``, ``{"delaySeconds": 5}``), else ``None``."""
    if isinstance(value, Mapping):
        value = value.get("delaySeconds", value.get("delay_seconds"))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    return float(value)


class QueueBroker:
    """One queue: holds messages, batches them for its consumer, applies retries and DLQ."""

    def __init__(self, hub: QueuesHub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.consumer: QueueConsumerConfig | None = None
        self.delivery_delay = 0
        self._pending: deque[_Queued] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._closed = False
        #: counters for tests and the dev-server log
        self.delivered = 0
        self.acked = 0
        self.dead_lettered = 0
        self.dropped = 0

    @property
    def batch_size(self) -> int:
        size = self.consumer.max_batch_size if self.consumer else None
        return size if size else DEFAULT_BATCH_SIZE

    @property
    def batch_timeout(self) -> float:
        timeout = self.consumer.max_batch_timeout if self.consumer else None
        return DEFAULT_BATCH_TIMEOUT_S if timeout is None else timeout

    @property
    def max_attempts(self) -> int:
        retries = self.consumer.max_retries if self.consumer else None
        return (DEFAULT_RETRIES if retries is None else retries) + 1

    @property
    def pending(self) -> int:
        return len(self._pending)

    def enqueue(self, messages: Sequence[_Queued], delay_s: float) -> None:
        if self.consumer is None:
            self.dropped += len(messages)
            return  # nobody consumes this queue: dropped, as in Miniflare
        for message in messages:
            self._later(delay_s, message)

    def _later(self, delay_s: float, message: _Queued) -> None:
        if self._closed:
            return
        if delay_s <= 0:
            self._push(message)
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self._push(message)

        handle = loop.call_later(delay_s, fire)
        self._timers.add(handle)

    def _push(self, message: _Queued) -> None:
        if self._closed:
            return
        self._pending.append(message)
        self._arrived.set()
        self.hub._ensure_started(self)

    def start(self) -> None:
        if self._task is None and self.consumer is not None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._consume(), name=f"queue-consumer:{self.name}")

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            deadline = loop.time() + self.batch_timeout
            while len(self._pending) < self.batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch = [self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))]
            try:
                await self._deliver(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the consumer loop must survive anything
                self.hub.log.exception("queue %s: delivering a batch failed", self.name)

    async def _deliver(self, batch: list[_Queued]) -> None:
        host = self.hub.host
        started = time.perf_counter()
        try:
            if host is None:
                raise RuntimeError("no worker is running to consume the queue")
            result = await host.dispatch_queue(self.name, [m.for_handler() for m in batch])
        except Exception as exc:  # noqa: BLE001 - a failed dispatch retries the batch
            self.hub.log.error("queue %s: %s", self.name, exc)
            result = {
                "outcome": "exception",
                "retryBatch": {"retry": False},
                "ackAll": False,
                "retryMessages": [],
                "explicitAcks": [],
            }
        elapsed_ms = int((time.perf_counter() - started) * 1000)
        self.delivered += len(batch)
        result = result if isinstance(result, Mapping) else {"outcome": "ok"}
        failed = result.get("outcome", "ok") != "ok"
        retry_batch = result.get("retryBatch") or {}
        retry_all = bool(retry_batch.get("retry")) or failed
        ack_all = bool(result.get("ackAll"))
        explicit_acks = set(result.get("explicitAcks") or [])
        retry_messages = {r.get("msgId"): _as_delay(r.get("delaySeconds")) for r in result.get("retryMessages") or []}
        default_delay = _as_delay(retry_batch.get("delaySeconds"))
        if default_delay is None and self.consumer is not None:
            default_delay = self.consumer.retry_delay
        to_dlq: list[_Queued] = []
        acked = 0
        for message in batch:
            if message.id in retry_messages:
                retry = True
            elif message.id in explicit_acks or ack_all:
                retry = False
            else:
                retry = retry_all
            if not retry:
                acked += 1
                continue
            message.failed_attempts += 1
            if message.failed_attempts < self.max_attempts:
                delay = retry_messages.get(message.id)
                if delay is None:
                    delay = default_delay or 0
                self.hub.log.debug('Retrying message "%s" on queue "%s"...', message.id, self.name)
                self._later(float(delay), message)
            elif self.consumer is not None and self.consumer.dead_letter_queue:
                plural = "" if self.max_attempts == 1 else "s"
                self.hub.log.warning(
                    'Moving message "%s" on queue "%s" to dead letter queue "%s" after %d failed attempt%s...',
                    message.id,
                    self.name,
                    self.consumer.dead_letter_queue,
                    self.max_attempts,
                    plural,
                )
                to_dlq.append(message)
            else:
                plural = "" if self.max_attempts == 1 else "s"
                self.hub.log.warning(
                    'Dropped message "%s" on queue "%s" after %d failed attempt%s!',
                    message.id,
                    self.name,
                    self.max_attempts,
                    plural,
                )
                self.dropped += 1
        self.acked += acked
        self.hub.log.info("QUEUE %s %d/%d (%dms)", self.name, acked, len(batch), elapsed_ms)
        if to_dlq and self.consumer is not None and self.consumer.dead_letter_queue:
            self.dead_lettered += len(to_dlq)
            dlq = self.hub.broker(self.consumer.dead_letter_queue)
            dlq.enqueue([_Queued(m.id, m.timestamp_ms, m.body) for m in to_dlq], 0)

    async def aclose(self) -> None:
        self._closed = True
        for handle in list(self._timers):
            handle.cancel()
        self._timers.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._pending:
            self.hub.log.warning(
                "queue %s: %d undelivered message(s) dropped at shutdown", self.name, len(self._pending)
            )
            self._pending.clear()


class QueuesHub:
    """All queues of one worker config, and the host whose ``queue`` handler consumes them."""

    def __init__(
        self,
        limits: QueueLimits = QueueLimits(),
        log: logging.Logger | None = None,
        ctx: registry.BindingContext | None = None,
    ) -> None:
        self.limits = limits
        self.log = log or logging.getLogger("flarelet")
        self._ctx = ctx
        self._host: registry.WorkerHost | None = None
        self._brokers: dict[str, QueueBroker] = {}

    @property
    def host(self) -> registry.WorkerHost | None:
        if self._host is not None:
            return self._host
        return self._ctx.host if self._ctx is not None else None

    def broker(self, name: str) -> QueueBroker:
        found = self._brokers.get(name)
        if found is None:
            found = self._brokers[name] = QueueBroker(self, name)
        return found

    def add_consumer(self, config: QueueConsumerConfig) -> None:
        self.broker(config.queue).consumer = config

    def start(self, host: registry.WorkerHost | None = None) -> None:
        """Start delivering to ``host`` (or the context's host)."""
        if host is not None:
            self._host = host
        for broker in self._brokers.values():
            broker.start()

    def _ensure_started(self, broker: QueueBroker) -> None:
        if self.host is not None:
            broker.start()

    async def aclose(self) -> None:
        for broker in list(self._brokers.values()):
            await broker.aclose()


# -- producers ---------------------------------------------------------------------------------


class WorkerQueue:
    """The object on ``env`` for one ``[[queues.producers]]`` entry: ``send``, ``sendBatch``."""

    def __init__(self, hub: QueuesHub, queue_name: str, delivery_delay: int = 0) -> None:
        self._hub = hub
        self.queue_name = queue_name
        self._delivery_delay = delivery_delay

    def __repr__(self) -> str:
        return f"WorkerQueue({self.queue_name!r})"

    def _delay(self, method: str, value: Any) -> int:
        if value is None:
            return self._delivery_delay
        limit = self._hub.limits.max_delay_s
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise JsException("Error", f"Queue {method} failed: message delay {value} is invalid: Expected integer")
        if not 0 <= value <= limit:
            raise JsException(
                "Error",
                f"Queue {method} failed: message delay {int(value)} is invalid: "
                f"Number must be {'greater than or equal to 0' if value < 0 else f'less than or equal to {limit}'}",
            )
        return int(value)

    def _message(self, body: _Body) -> _Queued:
        return _Queued(secrets.token_hex(16), time.time() * 1000, body)

    async def send(self, body: Any, options: Any = None, **kwargs: Any) -> None:
        """Queue one message (``contentType``: ``v8`` default, ``json``, ``text``, ``bytes``)."""
        opts = merge_options(options, kwargs)
        delay = self._delay("send", opts.get("delaySeconds"))
        encoded = encode_body(body, opts.get("contentType"), "send")
        limit = self._hub.limits.max_message_bytes
        if encoded.size > limit:
            raise JsException(
                "Error", f"Queue send failed: message length of {encoded.size} bytes exceeds limit of {limit}"
            )
        self._hub.broker(self.queue_name).enqueue([self._message(encoded)], delay)

    async def sendBatch(self, messages: Sequence[Any], options: Any = None, **kwargs: Any) -> None:
        """Queue up to 100 messages (``[{body, contentType?, delaySeconds?}]``) at once."""
        opts = merge_options(options, kwargs)
        limits = self._hub.limits
        if not isinstance(messages, (list, tuple)):
            raise JsTypeError("sendBatch() requires an array of messages")
        if not messages:
            raise JsTypeError("sendBatch() requires at least one message")
        if len(messages) > limits.max_batch_messages:
            raise JsException(
                "Error",
                f"Queue sendBatch failed: batch message count of {len(messages)} "
                f"exceeds limit of {limits.max_batch_messages}",
            )
        batch_delay = self._delay("sendBatch", opts.get("delaySeconds"))
        prepared: list[tuple[_Queued, int]] = []
        total = 0
        for item in messages:
            entry = merge_options(item, {})
            if "body" not in entry:
                raise JsTypeError("sendBatch() requires every message to have a body")
            encoded = encode_body(entry["body"], entry.get("contentType"), "sendBatch")
            if encoded.size > limits.max_message_bytes:
                raise JsException(
                    "Error",
                    f"Queue sendBatch failed: message in batch has length {encoded.size} bytes which exceeds "
                    f"single message size limit of {limits.max_message_bytes}",
                )
            total += encoded.size
            delay = (
                self._delay("sendBatch", entry.get("delaySeconds"))
                if entry.get("delaySeconds") is not None
                else batch_delay
            )
            prepared.append((self._message(encoded), delay))
        if total > limits.max_batch_bytes:
            raise JsException(
                "Error",
                f"Queue sendBatch failed: batch size of {total} bytes exceeds limit of {limits.max_batch_bytes}",
            )
        broker = self._hub.broker(self.queue_name)
        for message, delay in prepared:
            broker.enqueue([message], delay)

    send_batch = sendBatch


# -- plugin ------------------------------------------------------------------------------------


class QueuesConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    producers: list[Any] = Field(default_factory=list)
    consumers: list[Any] = Field(default_factory=list)


@dataclass
class QueuesPlugin:
    """Owns ``queues``: producer bindings on ``env``, consumers fed to the worker's ``queue``."""

    key: str = "queues"
    hubs: list[QueuesHub] = field(default_factory=list)

    def create(self, section: Any, ctx: registry.BindingContext) -> list[registry.BindingInfo]:
        config = validate_model(self.key, section, QueuesConfig)
        producers = validate_entries(f"{self.key}.producers", config.producers, QueueProducerConfig)
        consumers = []
        seen: set[str] = set()
        for index, item in enumerate(config.consumers):
            consumer = validate_model(f"{self.key}.consumers[{index}]", item, QueueConsumerConfig)
            if consumer.type not in (None, "worker"):
                ctx.log.warning("queue %s: consumer type %r is not run locally", consumer.queue, consumer.type)
                continue
            if consumer.queue in seen:
                raise registry.ConfigSectionError(
                    f"{self.key}.consumers[{index}].queue", f"queue {consumer.queue!r} has two consumers"
                )
            seen.add(consumer.queue)
            consumers.append(consumer)
        limits = QueueLimits(**dict(ctx.options.get("queue_limits") or {}))
        hub = QueuesHub(limits, ctx.log, ctx)
        for consumer in consumers:
            hub.add_consumer(consumer)
        self.hubs.append(hub)
        infos = []
        for producer in producers:
            queue = WorkerQueue(hub, producer.queue, producer.delivery_delay or 0)
            infos.append(registry.BindingInfo(producer.binding, TYPE_LABEL, producer.queue, queue))
        return infos

    async def start(self, ctx: registry.BindingContext) -> None:
        for hub in self.hubs:
            if hub._ctx is ctx or hub._ctx is None:
                hub.start(ctx.host)

    async def aclose(self) -> None:
        hubs, self.hubs = self.hubs, []
        for hub in hubs:
            await hub.aclose()


plugin = QueuesPlugin()
