"""Queues: producers, batching, ack/retry, retries exhausted -> dead-letter queue, limits.

The consumer side runs against a small fake ``WorkerHost`` whose ``dispatch_queue`` behaves as the
runtime's does: build a batch, call the handler, report Miniflare's ``FetcherQueueResult``.
(``test_e2e.py`` drives a real worker through ``flarelet dev``.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from flarelet.bindings import registry
from flarelet.bindings.jsobject import JsDict, JsException
from flarelet.bindings.queues import QueueConsumerConfig, QueueLimits, QueuesHub, QueuesPlugin, WorkerQueue


class FakeMessage:
    def __init__(self, batch: FakeBatch, raw: dict) -> None:
        self._batch = batch
        self.id = raw["id"]
        self.timestamp = raw["timestamp"]
        self.body = raw["body"]
        self.attempts = raw["attempts"]

    def ack(self) -> None:
        self._batch.acks.append(self.id)

    def retry(self, delaySeconds: int | None = None) -> None:
        self._batch.retries.append(
            {"msgId": self.id, **({"delaySeconds": delaySeconds} if delaySeconds is not None else {})}
        )


class FakeBatch:
    def __init__(self, queue: str, messages: list[dict]) -> None:
        self.queue = queue
        self.acks: list[str] = []
        self.retries: list[dict] = []
        self.ack_all = False
        self.retry_all = False
        self.messages = [FakeMessage(self, m) for m in messages]

    def ackAll(self) -> None:
        self.ack_all = True

    def retryAll(self) -> None:
        self.retry_all = True


Handler = Callable[[FakeBatch], Awaitable[None]]


class FakeHost:
    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.batches: list[tuple[str, list[dict]]] = []

    async def dispatch_queue(self, queue: str, messages: list[dict]) -> dict[str, Any]:
        self.batches.append((queue, list(messages)))
        batch = FakeBatch(queue, list(messages))
        outcome = "ok"
        try:
            if self.handler is not None:
                await self.handler(batch)
        except Exception:  # noqa: BLE001
            outcome = "exception"
        return {
            "outcome": outcome,
            "ackAll": batch.ack_all,
            "retryBatch": {"retry": batch.retry_all},
            "explicitAcks": batch.acks,
            "retryMessages": batch.retries,
        }

    def bodies(self, queue: str | None = None) -> list[Any]:
        return [m["body"] for q, msgs in self.batches if queue in (None, q) for m in msgs]


def make_hub(
    *consumers: QueueConsumerConfig, host: FakeHost | None = None, limits: QueueLimits | None = None
) -> QueuesHub:
    hub = QueuesHub(limits or QueueLimits())
    for consumer in consumers:
        hub.add_consumer(consumer)
    hub.start(host)
    return hub


async def test_send_delivers_bodies_by_content_type(until) -> None:
    host = FakeHost()
    hub = make_hub(QueueConsumerConfig(queue="q", max_batch_size=10, max_batch_timeout=0.05), host=host)
    queue = WorkerQueue(hub, "q")
    await queue.send({"hello": "world", "n": [1, 2]})
    await queue.send("plain", contentType="text")
    await queue.send({"j": True}, {"contentType": "json"})
    await queue.send(b"\x00\x01", content_type="bytes")
    await until(lambda: len(host.bodies()) == 4)
    bodies = host.bodies()
    assert bodies[0] == {"hello": "world", "n": [1, 2]} and isinstance(bodies[0], JsDict) and bodies[0].hello == "world"
    assert bodies[1:] == ["plain", {"j": True}, b"\x00\x01"]
    message = host.batches[0][1][0]
    assert len(message["id"]) == 32 and message["attempts"] == 1
    assert abs(message["timestamp"] / 1000 - dt.datetime.now().timestamp()) < 60
    await hub.aclose()


async def test_bodies_are_copies(until) -> None:
    host = FakeHost()
    hub = make_hub(QueueConsumerConfig(queue="q", max_batch_timeout=0.01), host=host)
    body = {"list": [1]}
    await WorkerQueue(hub, "q").send(body)
    body["list"].append(2)  # mutating after send must not change the message
    await until(lambda: host.bodies())
    assert host.bodies() == [{"list": [1]}]
    await hub.aclose()


async def test_batches_by_max_batch_size(until) -> None:
    host = FakeHost()
    hub = make_hub(QueueConsumerConfig(queue="q", max_batch_size=2, max_batch_timeout=0.05), host=host)
    await WorkerQueue(hub, "q").sendBatch([{"body": i} for i in range(5)])
    await until(lambda: len(host.bodies()) == 5)
    assert [len(msgs) for _, msgs in host.batches] == [2, 2, 1]
    assert host.bodies() == [0, 1, 2, 3, 4]
    await hub.aclose()


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
async def test_send_batch_options(until) -> None:
    host = FakeHost()
    hub = make_hub(QueueConsumerConfig(queue="q", max_batch_size=10, max_batch_timeout=0.05), host=host)
    queue = WorkerQueue(hub, "q")
    await queue.sendBatch(
        [
            {"body": "late", "contentType": "text", "delaySeconds": 1},
            {"body": "early", "contentType": "text"},
        ]
    )
    await until(lambda: len(host.bodies()) == 2)
    assert host.bodies() == ["early", "late"]  # the delayed message comes in a later batch
    await hub.aclose()


async def test_retry_until_dead_letter_queue(until) -> None:
    async def failing(batch: FakeBatch) -> None:
        raise RuntimeError("boom")

    host = FakeHost()

    async def route(batch: FakeBatch) -> None:
        if batch.queue == "work":
            await failing(batch)

    host.handler = route
    hub = make_hub(
        QueueConsumerConfig(queue="work", max_batch_timeout=0.01, max_retries=2, dead_letter_queue="dead"),
        QueueConsumerConfig(queue="dead", max_batch_timeout=0.01),
        host=host,
    )
    await WorkerQueue(hub, "work").send("job", contentType="text")
    await until(lambda: host.bodies("dead"))
    attempts = [m["attempts"] for q, msgs in host.batches if q == "work" for m in msgs]
    assert attempts == [1, 2, 3]  # max_retries=2 -> three deliveries
    dead = [m for q, msgs in host.batches if q == "dead" for m in msgs]
    work_ids = {m["id"] for q, msgs in host.batches if q == "work" for m in msgs}
    assert dead[0]["body"] == "job" and dead[0]["attempts"] == 1 and dead[0]["id"] in work_ids
    assert hub.broker("work").dead_lettered == 1
    await hub.aclose()


async def test_exhausted_retries_without_dlq_are_dropped(until) -> None:
    async def handler(batch: FakeBatch) -> None:
        batch.retryAll()

    host = FakeHost(handler)
    hub = make_hub(QueueConsumerConfig(queue="q", max_batch_timeout=0.01, max_retries=0), host=host)
    await WorkerQueue(hub, "q").send("x")
    await until(lambda: hub.broker("q").dropped == 1)
    assert len(host.batches) == 1
    await hub.aclose()


async def test_ack_and_retry_per_message(until) -> None:
    async def handler(batch: FakeBatch) -> None:
        for message in batch.messages:
            if message.body == "again" and message.attempts == 1:
                message.retry()
            else:
                message.ack()

    host = FakeHost(handler)
    hub = make_hub(QueueConsumerConfig(queue="q", max_batch_size=5, max_batch_timeout=0.01), host=host)
    await WorkerQueue(hub, "q").sendBatch([{"body": "once"}, {"body": "again"}])
    await until(lambda: len(host.bodies()) == 3)
    assert host.bodies() == ["once", "again", "again"]
    assert hub.broker("q").acked == 2
    await hub.aclose()


async def test_explicit_ack_survives_a_throwing_handler(until) -> None:
    async def handler(batch: FakeBatch) -> None:
        batch.messages[0].ack()
        raise RuntimeError("after acking the first message")

    host = FakeHost(handler)
    hub = make_hub(QueueConsumerConfig(queue="q", max_batch_size=5, max_batch_timeout=0.01, max_retries=1), host=host)
    await WorkerQueue(hub, "q").sendBatch([{"body": "acked"}, {"body": "retried"}])
    await until(lambda: len(host.bodies()) == 3)
    assert host.bodies() == ["acked", "retried", "retried"]
    await hub.aclose()


async def test_returning_normally_acks_everything(until) -> None:
    host = FakeHost()  # no handler: returning normally acks everything
    hub = make_hub(QueueConsumerConfig(queue="q", max_batch_timeout=0.01, retry_delay=1), host=host)
    await WorkerQueue(hub, "q").send("fine")
    await until(lambda: hub.broker("q").acked == 1)
    assert hub.broker("q").pending == 0
    await hub.aclose()


async def test_messages_wait_for_the_worker(until) -> None:
    hub = QueuesHub()
    hub.add_consumer(QueueConsumerConfig(queue="q", max_batch_timeout=0.01))
    await WorkerQueue(hub, "q").send("queued before start")
    assert hub.broker("q").pending == 1
    host = FakeHost()
    hub.start(host)
    await until(lambda: host.bodies() == ["queued before start"])
    await hub.aclose()


async def test_no_consumer_drops_messages() -> None:
    hub = make_hub(host=FakeHost())
    await WorkerQueue(hub, "nobody").send("lost")
    assert hub.broker("nobody").dropped == 1 and hub.broker("nobody").pending == 0
    await hub.aclose()


async def test_limits() -> None:
    hub = make_hub(QueueConsumerConfig(queue="q", max_batch_timeout=60), host=FakeHost())
    queue = WorkerQueue(hub, "q")
    limits = QueueLimits()
    await queue.send("x" * limits.max_message_bytes, contentType="text")
    with pytest.raises(JsException) as info:
        await queue.send("x" * (limits.max_message_bytes + 1), contentType="text")
    assert info.value.message == "Queue send failed: message length of 128001 bytes exceeds limit of 128000"
    with pytest.raises(JsException, match="batch message count of 101 exceeds limit of 100"):
        await queue.sendBatch([{"body": i} for i in range(101)])
    with pytest.raises(JsException, match="batch size of 300000 bytes exceeds limit of 256000"):
        await queue.sendBatch([{"body": "x" * 100_000, "contentType": "text"}] * 3)
    with pytest.raises(JsException, match="message delay 43201 is invalid"):
        await queue.send("x", delaySeconds=43201)
    with pytest.raises(JsException, match="message delay -1 is invalid"):
        await queue.send("x", delaySeconds=-1)
    with pytest.raises(TypeError, match='Content Type "text" requires a value of type string'):
        await queue.send(1, contentType="text")
    with pytest.raises(TypeError, match="Unknown content type"):
        await queue.send(1, contentType="xml")
    with pytest.raises(JsException, match="could not be cloned"):
        await queue.send({"f": object()})
    with pytest.raises(TypeError, match="at least one message"):
        await queue.sendBatch([])
    await hub.aclose()


async def test_limits_are_configurable() -> None:
    hub = make_hub(
        QueueConsumerConfig(queue="q", max_batch_timeout=60),
        host=FakeHost(),
        limits=QueueLimits(max_message_bytes=4, max_batch_messages=2),
    )
    queue = WorkerQueue(hub, "q")
    await queue.send("abcd", contentType="text")
    with pytest.raises(JsException, match="exceeds limit of 4"):
        await queue.send("abcde", contentType="text")
    with pytest.raises(JsException, match="exceeds limit of 2"):
        await queue.sendBatch([{"body": 1}] * 3)
    await hub.aclose()


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
async def test_plugin_config_and_lifecycle(until) -> None:
    plugin = QueuesPlugin()
    ctx = registry.BindingContext(config_dir=".", persist_to=None)
    section = {
        "producers": [{"binding": "JOBS", "queue": "jobs"}, {"binding": "LATER", "queue": "jobs", "delivery_delay": 1}],
        "consumers": [{"queue": "jobs", "max_batch_size": 3, "max_batch_timeout": 0.01}],
    }
    infos = plugin.create(section, ctx)
    assert [(i.name, i.type_label, i.resource) for i in infos] == [
        ("JOBS", "Queue", "jobs"),
        ("LATER", "Queue", "jobs"),
    ]
    host = FakeHost()
    ctx.host = host
    await plugin.start(ctx)
    await infos[0].value.send("now", contentType="text")
    await infos[1].value.send("later", contentType="text")
    await until(lambda: host.bodies() == ["now", "later"])
    await plugin.aclose()


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"consumers": [{"queue": "q", "max_batch_size": 101}]}, "queues.consumers[0].max_batch_size"),
        ({"consumers": [{"queue": "q", "max_batch_timeout": 61}]}, "queues.consumers[0].max_batch_timeout"),
        ({"consumers": [{"queue": "q", "max_retries": -1}]}, "queues.consumers[0].max_retries"),
        ({"producers": [{"queue": "q"}]}, "queues.producers[0].binding"),
        (
            {"producers": [{"binding": "A", "queue": "q", "delivery_delay": 50000}]},
            "queues.producers[0].delivery_delay",
        ),
        ({"consumers": [{"queue": "q"}, {"queue": "q"}]}, "queues.consumers[1].queue"),
        ([], "queues"),
    ],
)
def test_plugin_rejects_bad_config(section, key) -> None:
    ctx = registry.BindingContext(config_dir=".", persist_to=None)
    with pytest.raises(registry.ConfigSectionError) as info:
        QueuesPlugin().create(section, ctx)
    assert info.value.key == key


async def test_odd_retry_delays_do_not_lose_messages(until) -> None:
    # e.g. retry({"delaySeconds": 0}) passed positionally, or garbage: treated as the default delay
    seen: list[int] = []

    async def handler(batch: FakeBatch) -> None:
        for message in batch.messages:
            seen.append(message.attempts)
            if message.attempts == 1:
                batch.retries.append({"msgId": message.id, "delaySeconds": {"delaySeconds": 0}})
            elif message.attempts == 2:
                batch.retries.append({"msgId": message.id, "delaySeconds": "soon"})

    host = FakeHost(handler)
    hub = make_hub(QueueConsumerConfig(queue="q", max_batch_timeout=0.01, max_retries=5), host=host)
    await WorkerQueue(hub, "q").send("x")
    await until(lambda: seen == [1, 2, 3])
    await until(lambda: hub.broker("q").acked == 1)
    await hub.aclose()
