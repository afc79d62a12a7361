"""What a worker's ``queue`` handler receives (``MessageBatch``/``Message``) and what it decided.

The queues binding (``bindings/queues``) delivers batches through
``WorkerHost.dispatch_queue(queue, messages)``. Each message may be a mapping or an object with
``id``, ``timestamp`` (``datetime`` or epoch ms), ``body`` and ``attempts``; missing fields get
defaults. The outcome is a plain dict in Miniflare's ``FetcherQueueResult`` shape so that the
binding (which must not import ``runtime``) can act on it::

    {"outcome": "ok" | "exception", "ackAll": bool,
     "retryBatch": {"retry": bool, "delaySeconds"?: int},
     "explicitAcks": [message ids], "retryMessages": [{"msgId": id, "delaySeconds"?: int}]}
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any


class Message:
    """One queue message (``id``, ``timestamp``, ``body``, ``attempts``, ``ack()``, ``retry()``)."""

    def __init__(self, batch: MessageBatch, id: str, timestamp: datetime, body: Any, attempts: int) -> None:  # noqa: A002
        self._batch = batch
        self.id = id
        self.timestamp = timestamp
        self.body = body
        self.attempts = attempts

    def ack(self) -> None:
        self._batch._acks.add(self.id)

    def retry(self, delaySeconds: int | None = None, *, delay_seconds: int | None = None) -> None:  # noqa: N803
        delay = delaySeconds if delaySeconds is not None else delay_seconds
        self._batch._retries[self.id] = delay

    def __repr__(self) -> str:
        return f"Message(id={self.id!r}, attempts={self.attempts}, body={self.body!r})"


class MessageBatch:
    """``batch``: ``queue``, ``messages``, ``ackAll()``, ``retryAll()``."""

    def __init__(self, queue: str, messages: Sequence[Any]) -> None:
        self.queue = queue
        self._acks: set[str] = set()
        self._retries: dict[str, int | None] = {}
        self._ack_all = False
        self._retry_all: tuple[bool, int | None] = (False, None)
        self.messages = [self._message(m) for m in messages]

    def _message(self, raw: Any) -> Message:
        get = raw.get if isinstance(raw, Mapping) else (lambda k, d=None: getattr(raw, k, d))
        ts = get("timestamp", None)
        if ts is None:
            ts = datetime.now(UTC)
        elif isinstance(ts, (int, float)):
            ts = datetime.fromtimestamp(ts / 1000.0, UTC)
        return Message(
            self, str(get("id", None) or uuid.uuid4().hex), ts, get("body", None), int(get("attempts", 1) or 1)
        )

    def ackAll(self) -> None:  # noqa: N802 - Cloudflare's name
        self._ack_all = True

    def retryAll(self, delaySeconds: int | None = None, *, delay_seconds: int | None = None) -> None:  # noqa: N802,N803
        self._retry_all = (True, delaySeconds if delaySeconds is not None else delay_seconds)

    ack_all = ackAll
    retry_all = retryAll

    def result(self, outcome: str) -> dict[str, Any]:
        retry, delay = self._retry_all
        retry_batch: dict[str, Any] = {"retry": retry}
        if delay is not None:
            retry_batch["delaySeconds"] = delay
        retries = []
        for msg_id, d in self._retries.items():
            entry: dict[str, Any] = {"msgId": msg_id}
            if d is not None:
                entry["delaySeconds"] = d
            retries.append(entry)
        return {
            "outcome": outcome,
            "ackAll": self._ack_all,
            "retryBatch": retry_batch,
            "explicitAcks": sorted(self._acks),
            "retryMessages": retries,
        }
