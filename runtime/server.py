"""The dev server: uvicorn (uvloop + httptools) serving a :class:`DevApp`, plus cron and reload.

Tuned for the request path: uvloop and the httptools parser when installed, uvicorn's access log
off (the app writes its own cheaper line), no ``server`` header, no proxy-headers middleware
(a local dev server has no trusted proxy in front of it), and each response written with one
syscall (:mod:`flarelet.runtime.http_protocol`). The listening socket is bound
here before uvicorn starts, so ``--port 0`` works and the printed ``Ready on`` URL is the real
one; connections that arrive before the loop accepts simply wait in the backlog.

:class:`DevServer` runs in the main thread (``flarelet dev``) or in a background thread with
its own loop (tests): :meth:`start_in_thread` returns once the server accepts requests.

SIGINT/SIGTERM stop the server even while a worker's handler is stuck on the event loop: the
signal handler raises :class:`~flarelet.runtime.cpu_limit.ShutdownInterrupt` inside the running
handler step (the request gets a 503), and if a step is still running 1.5 s later (a long call
into C, or code that swallows the interrupt) the process exits at once; acknowledged storage
writes are already on disk by then.
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, TextIO

from .app import DevApp, RequestLog, ResponseAborted
from .cpu_limit import ShutdownInterrupt, watchdog
from .cron import CronScheduler
from .host import WorkerHost
from .limits import ServerLimits
from .reload import Reloader
from .websocket import MAX_MESSAGE_BYTES

log = logging.getLogger("flarelet")


def uvicorn_config(app: Any, limits: ServerLimits | None = None) -> Any:
    """The uvicorn settings every flarelet server uses (module docstring: why each)."""
    import uvicorn

    limits = limits or ServerLimits()
    has_uvloop = importlib.util.find_spec("uvloop") is not None and sys.platform != "win32"
    http: Any = "h11"
    if importlib.util.find_spec("httptools") is not None:
        from .http_protocol import protocol_class

        http = protocol_class(limits)
    return uvicorn.Config(
        app,
        loop="uvloop" if has_uvloop else "asyncio",
        http=http,
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level="warning",
        server_header=False,
        timeout_keep_alive=int(limits.keep_alive_s),
        backlog=2048,
        ws="websockets-sansio",
        ws_max_size=MAX_MESSAGE_BYTES,
        proxy_headers=False,
    )


def serve_app(
    app: Any,
    sock: socket.socket,
    *,
    say: Callable[[str], None],
    log_requests: bool = True,
    on_ready: Callable[[], None] | None = None,
    log_stream: TextIO | None = None,
    limits: ServerLimits | None = None,
) -> bool:
    """Serve any ASGI app (``flarelet ai serve``) the way ``flarelet dev`` serves a worker: same
    server settings, request lines, disconnect cancellation and Ctrl-C handling, in the calling
    (main) thread until interrupted. Returns whether the server had started."""
    from .app import LoggedApp

    request_log = RequestLog(log_stream, enabled=log_requests)
    server = _make_uvicorn_server(
        uvicorn_config(LoggedApp(app, request_log=request_log, on_ready=on_ready), limits),
        say=say,
        flush=request_log.flush,
    )
    server.run(sockets=[sock])
    return bool(server.started)


class PortInUseError(OSError):
    pass


#: how long a stuck worker step may hold up a requested shutdown before the process just exits
STUCK_EXIT_S = 1.5


class _DropAbortedStreams(logging.Filter):
    """uvicorn logs an app exception with a traceback; an aborted stream is already logged by the app."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = record.exc_info
        return not (info and isinstance(info[1], ResponseAborted))


_DROP_ABORTED = _DropAbortedStreams()


def _make_uvicorn_server(config: Any, **graceful: Any) -> Any:
    """fresh's two-step Ctrl-C server, which also interrupts a worker step stuck on the loop."""
    from .shutdown import GracefulServer

    class _Server(GracefulServer):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            _stop_stuck_worker(sig)

    return _Server(config, **graceful)


def _stop_stuck_worker(sig: int) -> None:
    """Called in the signal handler: interrupt a worker step running on this thread, and make
    sure one that will not stop cannot hold the process past :data:`STUCK_EXIT_S`."""
    dog = watchdog()
    if not dog.active:
        return
    threading.Thread(target=_exit_if_still_stuck, args=(sig,), name="flarelet-stuck-exit", daemon=True).start()
    dog.interrupt_current_thread(ShutdownInterrupt)


def _exit_if_still_stuck(sig: int) -> None:
    dog = watchdog()
    time.sleep(STUCK_EXIT_S / 3)
    for meter in list(dog.active.values()):
        dog.interrupt(meter, ShutdownInterrupt)
    time.sleep(STUCK_EXIT_S * 2 / 3)
    if dog.active:
        log.error("a worker handler is still running and does not stop: exiting now")
        for handler in logging.getLogger("flarelet").handlers:
            handler.flush()
        os._exit(128 + sig if sig in (signal.SIGINT, signal.SIGTERM) else 1)


def bind_socket(ip: str, port: int) -> socket.socket:
    """Bind and listen on ``ip:port`` (``port`` 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((ip, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(exc.errno, f"{ip}:{port} is already in use") from exc
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class DevServer:
    def __init__(
        self,
        host: WorkerHost,
        sock: socket.socket,
        *,
        log_requests: bool = True,
        log_stream: TextIO | None = None,
        watch: bool = True,
        run_crons: bool = True,
        cron_clock: Callable[[], float] | None = None,
        on_ready: Callable[[str], None] | None = None,
        on_config_reloaded: Callable[[], None] | None = None,
        say: Callable[[str], None] | None = None,
        peers: Sequence[WorkerHost] = (),
    ) -> None:
        self.host = host
        #: the other workers of ``flarelet dev -c a -c b`` (started, watched and closed with this one)
        self.peers = list(peers)
        self.peer_reloaders: list[Reloader] = []
        self.sock = sock
        addr = sock.getsockname()
        shown_ip = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
        self.url = f"http://{shown_ip}:{addr[1]}"
        self.port: int = addr[1]
        self.watch = watch
        self.run_crons = run_crons
        self.on_ready = on_ready
        self.on_config_reloaded = on_config_reloaded
        #: where shutdown notices go (``flarelet dev`` prints them unless ``--log-level none``)
        self.say = say or (lambda message: log.info("%s", message))
        self.cron: CronScheduler | None = None
        if host.config.crons and run_crons:
            kwargs = {"clock": cron_clock} if cron_clock else {}
            self.cron = CronScheduler(host.config.crons, host.scheduled, **kwargs)
        self.reloader: Reloader | None = None
        self.app = DevApp(
            host,
            request_log=RequestLog(log_stream, enabled=log_requests),
            on_startup=self._startup,
            on_shutdown=self._shutdown,
        )
        self.ready = threading.Event()
        logging.getLogger("uvicorn.error").addFilter(_DROP_ABORTED)
        self._uvicorn: Any = None
        self._thread: threading.Thread | None = None

    # -- lifecycle hooks (called from the app's lifespan) -----------------------------------------
    async def _startup(self) -> None:
        for peer in self.peers:
            if not peer.started:
                await peer.start()
        if self.watch:
            for peer in self.peers:
                reloader = Reloader(peer)
                reloader.start()
                self.peer_reloaders.append(reloader)
            self.reloader = Reloader(self.host, self._config_reloaded)
            self.reloader.start()
            # let the watch tasks register their watches before "Ready": an edit made right after
            # start-up is then seen (importing watchfiles costs the same before or after)
            await asyncio.sleep(0)
        if self.cron is not None:
            self.cron.start()
        self.ready.set()
        if self.on_ready is not None:
            self.on_ready(self.url)

    def _config_reloaded(self) -> None:
        if self.cron is not None and self.cron.crons != self.host.config.crons:
            asyncio.get_running_loop().create_task(self._restart_cron())
        if self.on_config_reloaded is not None:
            self.on_config_reloaded()

    async def _restart_cron(self) -> None:
        if self.cron is not None:
            await self.cron.stop()
        self.cron = CronScheduler(self.host.config.crons, self.host.scheduled) if self.host.config.crons else None
        if self.cron is not None:
            self.cron.start()

    async def _shutdown(self) -> None:
        if self.reloader is not None:
            await self.reloader.stop()
        for reloader in self.peer_reloaders:
            await reloader.stop()
        if self.cron is not None:
            await self.cron.stop()
        for peer in self.peers:
            if peer.started:
                await peer.aclose()

    # -- running ----------------------------------------------------------------------------------
    def _config(self) -> Any:
        return uvicorn_config(self.app, self.host.limits)

    def run(self) -> None:
        """Serve until interrupted, in the calling (main) thread: the first Ctrl-C (or SIGTERM)
        finishes the requests in flight, the second exits at once (:mod:`.shutdown`); either
        interrupts a worker step stuck on the event loop (module docstring)."""
        request_log = self.app.request_log
        self._uvicorn = _make_uvicorn_server(
            self._config(), say=self.say, flush=request_log.flush if request_log is not None else None
        )
        self._uvicorn.run(sockets=[self.sock])

    def start_in_thread(self, timeout: float = 30.0) -> DevServer:
        """Serve from a daemon thread with its own event loop; returns once ready."""
        from .shutdown import PromptServer

        config = self._config()
        self._uvicorn = PromptServer(config)

        def target() -> None:
            if config.loop == "uvloop":
                import uvloop

                runner: Any = uvloop.run
            else:
                runner = asyncio.run
            runner(self._uvicorn.serve(sockets=[self.sock]))

        self._thread = threading.Thread(target=target, name="flarelet-dev-server", daemon=True)
        self._thread.start()
        if not self.ready.wait(timeout):
            raise TimeoutError("the dev server did not start")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._uvicorn is not None:
            self._uvicorn.request_exit()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        try:
            self.sock.close()
        except OSError:
            pass
