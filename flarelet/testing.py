"""Testing a worker in process: :class:`Worker`, Miniflare's ``dispatchFetch``/``getBindings`` for Python.

::

    from flarelet.testing import Worker

    async def test_hello():
        async with Worker.from_config("examples/hello") as worker:
            resp = await worker.fetch("/?name=Ada")
            assert await resp.text() == "Hello, Ada!"
            assert worker.env.GREETING == "Hello"

What runs is what ``flarelet dev`` runs, minus the socket: the config is read by the same code,
the bindings are the real ones (KV, D1, R2, queues, and ``env.AI`` running Whisper), and each
request goes through :meth:`flarelet.runtime.host.WorkerHost.serve` -- the method the dev server's ASGI
app calls -- so the test-scheduled paths, static assets and the worker's ``fetch`` handler answer
exactly as they do there. Events go through the same :class:`~flarelet.runtime.dispatch.WorkerDispatcher`.

Differences from the dev server, all on purpose:

* storage is in memory unless ``persist_to`` is given (``True`` = the dev server's
  ``.wrangler/state``), so every ``Worker`` starts empty;
* ``worker.fetch`` returns after the request's ``waitUntil`` work has finished (``wait_until=False``
  to return at once, then ``await worker.wait_until_done()``), so a test can check its effects;
* subrequests the worker makes to its own origin (``worker.url``, ``http://localhost:8787``) are
  answered in process, as the dev server answers them over its socket; ``outbound=`` may answer
  any other subrequest (Miniflare's ``outboundService``);
* edge concerns stay with the dev server: the request body limit (413) and the Workers AI REST
  routes are not part of ``worker.fetch``, as they are not part of Miniflare's ``dispatchFetch``;
* a worker module that fails to import raises :class:`~flarelet.runtime.loader.WorkerLoadError` at once
  instead of serving a 500 page.

Each ``Worker`` imports the worker module afresh, so module-level state does not leak between
tests. Worker modules share one import namespace per process: use one ``Worker`` at a time.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import inspect
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flarelet.runtime.app import DEFAULT_CF
from flarelet.runtime.context import ExecutionContext
from flarelet.runtime.env import Env
from flarelet.runtime.headers import Headers
from flarelet.runtime.host import WorkerHost
from flarelet.runtime.outbound import outbound_service
from flarelet.runtime.request import Request
from flarelet.runtime.response import Response, dumps_json
from flarelet.runtime.websocket import LocalClient, WebSocketClosed


class WebSocketUpgradeError(Exception):
    """The worker answered a WebSocket upgrade with something other than a 101 and a socket."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"the worker refused the WebSocket upgrade: {status} {body[:200]}")
        self.status = status
        self.body = body


__all__ = [
    "Worker",
    "ScheduledResult",
    "QueueResult",
    "DEFAULT_URL",
    "DEFAULT_WAIT_UNTIL_TIMEOUT_S",
    "LocalClient",
    "WebSocketClosed",
    "WebSocketUpgradeError",
]

#: The origin requests are addressed to when ``fetch`` gets a path (``wrangler dev``'s default).
DEFAULT_URL = "http://localhost:8787"
#: How long ``fetch`` waits for ``waitUntil`` work before failing the test: Cloudflare lets such
#: work run 30 s after the response.
DEFAULT_WAIT_UNTIL_TIMEOUT_S = 30.0

#: ``outbound=``: answers a subrequest (a ``Response``) or lets it through (``None``); may be async
OutboundHandler = Callable[[Request], "Response | None | Awaitable[Response | None]"]

_MISSING: Any = object()


@dataclass(frozen=True)
class ScheduledResult:
    """What a ``scheduled`` event did (Miniflare's ``FetcherScheduledResult``)."""

    #: ``"ok"``, or ``"exception"`` when the handler or its ``waitUntil`` work raised (see the log)
    outcome: str
    #: the handler called ``controller.noRetry()``
    no_retry: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def noRetry(self) -> bool:  # noqa: N802 - Miniflare's name
        return self.no_retry


@dataclass(frozen=True)
class QueueResult:
    """What a ``queue`` handler decided about a batch (Miniflare's ``FetcherQueueResult``)."""

    outcome: str
    ack_all: bool = False
    #: ``{"retry": bool}`` plus ``"delaySeconds"`` when ``retryAll(delaySeconds=...)`` gave one
    retry_batch: dict[str, Any] = field(default_factory=lambda: {"retry": False})
    #: ids of the messages acknowledged with ``message.ack()``
    explicit_acks: list[str] = field(default_factory=list)
    #: ``[{"msgId": id, "delaySeconds"?: n}]`` for ``message.retry(...)``
    retry_messages: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> QueueResult:
        return cls(
            outcome=str(raw.get("outcome", "ok")),
            ack_all=bool(raw.get("ackAll", False)),
            retry_batch=dict(raw.get("retryBatch") or {"retry": False}),
            explicit_acks=list(raw.get("explicitAcks") or []),
            retry_messages=list(raw.get("retryMessages") or []),
        )

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def retried(self, message_id: str) -> bool:
        """Whether the message will be delivered again (its own ``retry()`` or ``retryAll()``)."""
        return bool(self.retry_batch.get("retry")) or any(r.get("msgId") == message_id for r in self.retry_messages)

    def acked(self, message_id: str) -> bool:
        """Whether the message is done with: acknowledged (one by one or ``ackAll``) and not retried."""
        return (self.ack_all or message_id in self.explicit_acks) and not self.retried(message_id)

    # Miniflare's names
    @property
    def ackAll(self) -> bool:  # noqa: N802
        return self.ack_all

    @property
    def retryBatch(self) -> dict[str, Any]:  # noqa: N802
        return self.retry_batch

    @property
    def explicitAcks(self) -> list[str]:  # noqa: N802
        return self.explicit_acks

    @property
    def retryMessages(self) -> list[dict[str, Any]]:  # noqa: N802
        return self.retry_messages


class Worker:
    """A worker running in this process for tests; build it with :meth:`from_config`."""

    def __init__(
        self,
        host: WorkerHost,
        *,
        url: str = DEFAULT_URL,
        wait_until: bool = True,
        wait_until_timeout: float | None = DEFAULT_WAIT_UNTIL_TIMEOUT_S,
        outbound: OutboundHandler | None = None,
    ) -> None:
        self.host = host
        self.url = url.rstrip("/")
        #: default for ``fetch(wait_until=...)``
        self.wait_until = wait_until
        self.wait_until_timeout = wait_until_timeout
        self.outbound = outbound
        self._origin = _origin(self.url)
        #: the workflows' clock when the test gave one (``from_config(clock=...)``)
        self.clock: Any = None
        self._started = False
        self._closed = False

    @classmethod
    def from_config(
        cls,
        config: str | os.PathLike[str] | None = None,
        *,
        env: str | None = None,
        vars: Mapping[str, Any] | None = None,  # noqa: A002 - wrangler's name
        bindings: Mapping[str, Any] | None = None,
        persist_to: str | os.PathLike[str] | bool | None = None,
        ai_cassette: str | os.PathLike[str] | None = None,
        url: str = DEFAULT_URL,
        wait_until: bool = True,
        wait_until_timeout: float | None = DEFAULT_WAIT_UNTIL_TIMEOUT_S,
        outbound: OutboundHandler | None = None,
        options: Mapping[str, Any] | None = None,
        workers: Sequence[str | os.PathLike[str]] = (),
        clock: Any = None,
    ) -> Worker:
        """Build a worker from a wrangler config file, or the folder holding one (searched upwards).

        * ``env``: the wrangler environment (``--env``; ``[env.<name>]`` sections).
        * ``vars``: variables set on top of ``[vars]`` and ``.dev.vars``. Strings behave as
          ``--var NAME:value``; other values (dicts, lists, numbers) appear as given, as JSON
          ``[vars]`` do.
        * ``bindings``: ``env`` entries to replace or add, by name: ``{"AI": FakeAi()}``, a
          hand-made KV... Applied after the config's bindings are built.
        * ``persist_to``: ``None`` (default) keeps KV/D1/R2/queues in memory; a folder keeps
          them on disk there; ``True`` uses the dev server's ``<config dir>/.wrangler/state``.
        * ``ai_cassette``: a JSON file for the ``[ai]`` binding: replayed by
          :class:`~flarelet.bindings.ai.fake.FakeAi`, or recorded from the real model when
          ``FLARELET_AI_RECORD=1``.
        * ``url``: the origin of requests given as a path.
        * ``wait_until``, ``wait_until_timeout``: see :meth:`fetch`.
        * ``outbound``: ``handler(request)`` answering subrequests (return ``None`` to let one through).
        * ``options``: harness options for the plugins (``preload``, ``queue_limits``...).
        * ``workers``: more wrangler configs (or folders) to run beside this one, reachable only
          through bindings -- ``flarelet dev -c this -c other`` (Miniflare's ``workers: [...]``).
          They share ``persist_to`` and ``options``; ``worker.peer("name")`` reaches one.
        * ``clock``: a :class:`~flarelet.bindings.workflows.clock.ManualClock` for Workflows (sleeps,
          retry back-off, timeouts wait on it): move it with ``await worker.advance_time(s)``, or let
          ``await worker.run_workflow(binding, id)`` move it until the instance finishes.

        Raises :class:`~flarelet.wrangler_compat.config.ConfigError` for a bad config and
        :class:`~flarelet.runtime.loader.WorkerLoadError` when the worker module does not import.
        """
        from flarelet.wrangler_compat.config import find_config

        if clock is not None:
            options = {**dict(options or {}), "workflow_clock": clock}
        config_path = find_config(config)
        cli_vars: dict[str, str] = {}
        overrides: dict[str, Any] = {}
        for name, value in (vars or {}).items():
            if isinstance(value, str):
                cli_vars[name] = value
            else:
                overrides[name] = _var_value(value)
        overrides.update(bindings or {})
        if persist_to is True:
            persist: Path | None = config_path.parent / ".wrangler" / "state"
        elif persist_to is None or persist_to is False:
            persist = None
        else:
            persist = Path(persist_to)
        host = WorkerHost.from_config(
            config_path,
            env,
            vars=cli_vars,
            persist_to=persist,
            options=options,
            bindings=overrides,
            raise_on_load_error=True,
        )
        if ai_cassette is not None:
            _use_cassette(host, Path(ai_cassette))
        if workers:
            from flarelet.runtime.workerset import WorkerSet

            peers = [
                WorkerHost.from_config(
                    find_config(other), env, persist_to=persist, options=options, raise_on_load_error=True
                )
                for other in workers
            ]
            WorkerSet([host, *peers])
        worker = cls(host, url=url, wait_until=wait_until, wait_until_timeout=wait_until_timeout, outbound=outbound)
        worker.clock = clock
        return worker

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> Worker:
        """Run the plugins' start hooks (queue consumers, AI ``preload``); ``fetch`` does it if needed."""
        if self._closed:
            raise RuntimeError("this Worker is closed; build a new one")
        if not self._started:
            self._started = True
            token = outbound_service.set(self._outbound)
            try:
                if self.host.peers is not None:
                    await self.host.peers.start()
                else:
                    await self.host.start()
            finally:
                outbound_service.reset(token)
        return self

    async def aclose(self, timeout: float = 5.0) -> None:
        """Give pending ``waitUntil`` work ``timeout`` seconds (then cancel it) and close the bindings."""
        if self._started and not self._closed:
            self._closed = True
            await self.host.dispatcher.aclose(timeout)
            await self.host.aclose()
            for peer in self.host.peers or ():
                if peer is not self.host and peer.started:
                    await peer.dispatcher.aclose(timeout)
                    await peer.aclose()
        self._closed = True

    async def __aenter__(self) -> Worker:
        return await self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    def peer(self, name: str) -> WorkerHost:
        """Another worker of this test (``workers=[...]``) by its config name: its ``env``, ``dispatcher``..."""
        found = self.host.lookup_worker(name)
        if found is None:
            raise LookupError(f"no worker named {name!r} runs beside {self.host.name!r} (pass workers=[...])")
        return found

    # -- what the worker sees ---------------------------------------------------------------------
    @property
    def env(self) -> Env:
        """The worker's ``env``: the real bindings and vars (``worker.env.KV``, ``worker.env.AI``)."""
        return self.host.env

    @contextlib.contextmanager
    def override(self, **values: Any) -> Iterator[Env]:
        """Replace ``env`` entries (bindings or vars) inside a ``with`` block, then restore them::

        with worker.override(AI=FakeAi(text="hi"), GREETING="Hey"):
            resp = await worker.fetch("/")
        """
        env = self.host.env
        saved = {name: (env[name] if name in env else _MISSING) for name in values}
        for name, value in values.items():
            setattr(env, name, value)
        try:
            yield env
        finally:
            for name, old in saved.items():
                if old is _MISSING:
                    if name in env:
                        delattr(env, name)
                else:
                    setattr(env, name, old)

    # -- events -----------------------------------------------------------------------------------
    async def fetch(
        self,
        input: str | Request = "/",  # noqa: A002 - Fetch API name
        *,
        method: str | None = None,
        headers: Any = None,
        body: Any = None,
        json: Any = _MISSING,
        cf: Mapping[str, Any] | None = None,
        wait_until: bool | None = None,
    ) -> Response:
        """Send a request to the worker, in process; returns its :class:`~flarelet.runtime.response.Response`.

        ``input`` is a path (``"/notes?limit=2"``, sent to :attr:`url`), a full URL, or a
        :class:`~flarelet.runtime.request.Request`. ``json=`` sends a JSON body with its content type;
        ``body=`` takes str, bytes, FormData, or an (async) iterator of chunks. Failures of the
        worker come back as the dev server's 500 page, not as exceptions.

        With ``wait_until`` (default: the worker's setting, ``True``) the call returns once the
        ``waitUntil`` work of the request has finished -- raising ``TimeoutError`` after
        ``wait_until_timeout`` seconds; exceptions in that work are logged, as on Cloudflare.
        """
        request = self._request(input, method=method, headers=headers, body=body, json=json, cf=cf)
        await self._ensure_started()
        host = self.host
        token = outbound_service.set(self._outbound)
        try:
            ctx = host.dispatcher.new_context()
            try:
                response = await host.serve(request, ctx)
            finally:
                ctx.flush()  # as the dev server does once the response is sent
            if self.wait_until if wait_until is None else wait_until:
                await self.wait_until_done()
        finally:
            outbound_service.reset(token)
        return response

    async def websocket(self, input: str | Request = "/", *, headers: Any = None) -> LocalClient:  # noqa: A002
        """Open a WebSocket to the worker, in process: the upgrade request goes through
        :meth:`fetch`'s path; a 101 with a ``web_socket`` gives a client (``send``, ``await
        receive()``, ``close``), anything else raises :class:`WebSocketUpgradeError` with the response."""
        merged = Headers(headers)
        merged.set("upgrade", "websocket")
        merged.set("connection", "Upgrade")
        if not merged.has("sec-websocket-version"):
            merged.set("sec-websocket-version", "13")
        response = await self.fetch(input, headers=merged, wait_until=False)
        end = response.web_socket if response.status == 101 else None
        if end is None:
            raise WebSocketUpgradeError(response.status, await response.text())
        return LocalClient(end, response)

    def durable_object(self, binding: str, name: str | None = None, *, id: str | None = None) -> Any:  # noqa: A002
        """A stub of ``env.<binding>``'s object named ``name`` (``idFromName``) or with hex ``id``."""
        namespace = self.env[binding]
        if name is not None:
            return namespace.getByName(name)
        if id is not None:
            return namespace.get(namespace.idFromString(id))
        raise TypeError("durable_object() needs a name or an id")

    async def run_in_durable_object(self, stub: Any, callback: Callable[[Any, Any], Any]) -> Any:
        """``cloudflare:test``'s ``runInDurableObject``: ``callback(instance, ctx)`` runs as an event
        of that object (its gates apply); returns what the callback returns."""
        await self._ensure_started()
        slot = stub._namespace.slot(stub.id)
        return await slot.deliver(lambda obj: callback(obj, slot.state))

    async def run_durable_object_alarm(self, stub: Any) -> bool:
        """``cloudflare:test``'s ``runDurableObjectAlarm``: run the object's alarm now if one is set."""
        await self._ensure_started()
        slot = stub._namespace.slot(stub.id)
        when = slot.storage.alarm_time()
        if when is None:
            return False
        slot.schedule_alarm(None, 0)
        await slot._run_alarm(when, 0)
        return True

    def list_durable_object_ids(self, binding: str) -> list[str]:
        """``cloudflare:test``'s ``listDurableObjectIds``: ids with storage or a live instance."""
        namespace = self.env[binding]
        found = set(namespace.persisted_ids()) | {slot.id.toString() for slot in namespace.slots()}
        return sorted(found)

    async def scheduled(self, cron: str = "", scheduled_time: float | _dt.datetime | None = None) -> ScheduledResult:
        """Run the ``scheduled`` handler (and its ``waitUntil`` work) as the cron trigger ``cron`` would.

        ``scheduled_time`` is a ``datetime`` or milliseconds since the epoch (default: now).
        """
        if isinstance(scheduled_time, _dt.datetime):
            when: float | None = scheduled_time.timestamp() * 1000.0
        else:
            when = None if scheduled_time is None else float(scheduled_time)
        await self._ensure_started()
        token = outbound_service.set(self._outbound)
        try:
            raw = await self.host.scheduled(cron, when)
        finally:
            outbound_service.reset(token)
        return ScheduledResult(str(raw["outcome"]), bool(raw.get("noRetry", False)))

    async def queue(
        self, queue_name: str, messages: Sequence[Any] | None = None, *, bodies: Sequence[Any] | None = None
    ) -> QueueResult:
        """Deliver one batch to the ``queue`` handler, as the consumer of ``queue_name`` would.

        ``messages`` are mappings with a ``body`` (and optionally ``id``, ``timestamp`` in ms or
        a ``datetime``, ``attempts``), like Miniflare's ``ServiceBindingQueueMessage``; or pass
        just ``bodies=[...]``. Messages without an ``id`` get ``"message-<index>"``. The result
        says what the handler acknowledged and retried; nothing is redelivered here.
        """
        if (messages is None) == (bodies is None):
            raise TypeError("queue() takes either messages=[{'body': ...}, ...] or bodies=[...]")
        batch: list[Any] = []
        if bodies is not None:
            batch = [{"id": f"message-{i}", "body": b} for i, b in enumerate(bodies)]
        else:
            for i, message in enumerate(messages or ()):
                if isinstance(message, Mapping):
                    if "body" not in message:
                        raise TypeError(
                            f"queue message {i} has no 'body' key: pass {{'body': ...}} or use bodies=[...]"
                        )
                    message = {"id": f"message-{i}", **message}
                batch.append(message)
        await self._ensure_started()
        token = outbound_service.set(self._outbound)
        try:
            raw = await self.host.dispatch_queue(queue_name, batch)
        finally:
            outbound_service.reset(token)
        return QueueResult.from_dict(raw)

    # -- storage ----------------------------------------------------------------------------------
    async def apply_d1_migrations(self, binding: str) -> list[str]:
        """Apply the D1 migrations of ``binding`` (``applyD1Migrations`` of ``cloudflare:test``).

        Reads ``migrations_dir`` (default ``migrations``) of its ``[[d1_databases]]`` entry, runs
        each ``.sql`` file not yet listed in ``migrations_table`` (default ``d1_migrations``) in
        one transaction with its bookkeeping row -- the table ``flarelet d1 migrations apply``
        and wrangler keep. Returns the names applied.
        """
        from flarelet.bindings.d1 import split_statements

        entry = next(
            (
                e
                for e in self.host.config.bindings.get("d1_databases") or []
                if isinstance(e, Mapping) and e.get("binding") == binding
            ),
            None,
        )
        if entry is None:
            raise ValueError(f"{self.host.config.path.name} has no [[d1_databases]] entry with binding = {binding!r}")
        table = str(entry.get("migrations_table") or "d1_migrations")
        if not table.replace("_", "a").isalnum() or table[0].isdigit():
            raise ValueError(f"migrations_table {table!r} is not a valid table name")
        folder = self.host.config.dir / str(entry.get("migrations_dir") or "migrations")
        db = self.host.env[binding]
        await db.prepare(
            f'CREATE TABLE IF NOT EXISTS "{table}"(id INTEGER PRIMARY KEY AUTOINCREMENT, '
            "name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)"
        ).run()
        applied = {row["name"] for row in (await db.prepare(f'SELECT name FROM "{table}"').all()).results}
        files = sorted(folder.glob("*.sql")) if folder.is_dir() else []
        done: list[str] = []
        for migration in files:
            if migration.name in applied:
                continue
            statements = [db.prepare(s) for s in split_statements(migration.read_text(encoding="utf-8"))]
            statements.append(db.prepare(f'INSERT INTO "{table}" (name) VALUES (?)').bind(migration.name))
            await db.batch(statements)
            done.append(migration.name)
        return done

    # -- workflows --------------------------------------------------------------------------------
    async def advance_time(self, seconds: float) -> None:
        """Move the workflows' ``ManualClock`` on (``clock=`` of :meth:`from_config`); sleepers wake in order."""
        if self.clock is None:
            raise RuntimeError("advance_time() needs Worker.from_config(..., clock=ManualClock())")
        await self._ensure_started()
        await self.clock.advance(seconds)

    async def run_workflow(self, binding: str, instance_id: str, *, timeout: float = 60.0) -> Any:
        """Let a workflow instance run until it is complete, errored, terminated or paused; its ``status()``.

        With a ``ManualClock`` time jumps to each next wake-up (sleeps, retry back-off, timeouts)
        as soon as every instance is blocked, so an hour of ``step.sleep`` takes milliseconds; a
        ``wait_for_event`` with no event sent reaches its timeout the same way. With the real
        clock it waits, up to ``timeout`` real seconds.
        """
        import asyncio
        import time

        await self._ensure_started()
        instance = await self.host.env[binding].get(instance_id)
        deadline = time.monotonic() + timeout
        while True:
            if self.clock is not None:
                await self.clock.settle()
            status = await instance.status()
            if status["status"] in ("complete", "errored", "terminated", "paused"):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"workflow instance {instance_id} is still {status['status']} after {timeout}s")
            wake = self.clock.next_wake() if self.clock is not None else None
            if wake is not None:
                await self.clock.advance_to(max(wake, self.clock.now()))
            else:
                await asyncio.sleep(0.01)

    # -- waitUntil --------------------------------------------------------------------------------
    async def wait_until_done(self, timeout: float | None = _MISSING) -> None:
        """Wait for every pending ``waitUntil`` task (``waitOnExecutionContext`` for all requests)."""
        limit = self.wait_until_timeout if timeout is _MISSING else timeout
        await self.host.dispatcher.wait_for_background(limit)

    @property
    def pending_wait_until(self) -> int:
        """How many ``waitUntil`` tasks are still running."""
        return self.host.dispatcher.background.pending

    def create_execution_context(self) -> ExecutionContext:
        """A ``ctx`` for calling a handler yourself (``createExecutionContext`` of ``cloudflare:test``)."""
        return self.host.dispatcher.new_context()

    async def wait_on_execution_context(self, ctx: ExecutionContext) -> list[BaseException]:
        """Run and wait for ``ctx``'s ``waitUntil`` work; returns the exceptions it raised."""
        return await ctx.settle()

    # -- internals --------------------------------------------------------------------------------
    async def _ensure_started(self) -> None:
        if self._closed:
            raise RuntimeError("this Worker is closed; build a new one")
        if not self._started:
            await self.start()

    def _request(
        self,
        input: str | Request,
        *,
        method: str | None,
        headers: Any,
        body: Any,  # noqa: A002
        json: Any,
        cf: Mapping[str, Any] | None,
    ) -> Request:
        if json is not _MISSING:
            if body is not None:
                raise TypeError("fetch() takes body= or json=, not both")
            body = dumps_json(json)
        if isinstance(input, Request):
            request = (
                Request(input, method=method, headers=headers, body=body, cf=cf)
                if any(v is not None for v in (method, headers, body, cf))
                else input
            )
        else:
            target = str(input)
            if target.startswith("/"):
                target = self.url + target
            elif "://" not in target:
                raise ValueError(f"fetch() takes a path starting with '/' or a full URL, got {target!r}")
            request = Request(
                target, method=method, headers=headers, body=body, cf={**(self.host.cf or DEFAULT_CF), **dict(cf or {})}
            )
        if json is not _MISSING and not request.headers.has("content-type"):
            request.headers.set("content-type", "application/json")
        if not request.headers.has("host"):
            request.headers.set("host", request.url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0])
        return request

    async def _outbound(self, request: Request) -> Response | None:
        """The ``outbound_service`` while this worker runs: the test's handler, then our own origin."""
        if self.outbound is not None:
            answered = self.outbound(request)
            if inspect.isawaitable(answered):
                answered = await answered
            if answered is not None:
                return answered
        if _origin(request.url) != self._origin:
            return None
        ctx = self.host.dispatcher.new_context()
        try:
            return await self.host.serve(request, ctx)
        finally:
            ctx.flush()

    def __repr__(self) -> str:
        name = self.host.config.name or self.host.config.path.parent.name
        return f"<Worker {name} at {self.url}>"


def _origin(url: str) -> str:
    """``scheme://host[:port]`` in lower case, with the scheme's default port spelled out."""
    scheme, _, rest = url.partition("://")
    netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1].lower()
    scheme = scheme.lower()
    if ":" not in netloc.rsplit("]", 1)[-1]:
        netloc += ":443" if scheme == "https" else ":80"
    return f"{scheme}://{netloc}"


def _var_value(value: Any) -> Any:
    """A non-string var as a JSON ``[vars]`` entry appears: objects also allow ``obj.key``."""
    from flarelet.bindings.vars import JsonObject

    if isinstance(value, Mapping):
        return JsonObject({str(k): _var_value(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return [_var_value(v) for v in value]
    return value


def _use_cassette(host: WorkerHost, path: Path) -> None:
    """Put a cassette (replay, or recording when ``FLARELET_AI_RECORD=1``) in place of each AI binding."""
    from flarelet.bindings.ai.fake import cassette_binding

    rows = [row for row in host.bindings if row.type_label == "AI" and row.name not in host.binding_overrides]
    if not rows:
        raise ValueError(
            f"ai_cassette={str(path)!r} was given, but {host.config.path.name} has no [ai] binding "
            "(or it is replaced by bindings=)"
        )
    for row in rows:
        binding = cassette_binding(row.value, path)
        host.binding_overrides[row.name] = binding
        setattr(host.env, row.name, binding)
