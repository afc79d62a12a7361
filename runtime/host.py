"""``WorkerHost``: a worker with its config, bindings and dispatcher, built from a config path.

This is the object everything else drives — the dev server, the cron scheduler, the file
watcher, and the in-process test harness::

    host = WorkerHost.from_config("examples/hello", vars={"GREETING": "hi"})
    await host.start()
    response = await host.serve(Request("http://localhost/"))
    await host.aclose()

Building it (synchronous, once per process) reads the config and ``.dev.vars``/``.env``, hands
each binding section to its plugin (``flarelet.bindings.registry.load_plugin``), puts the results on
``env``, sets up static assets, and imports the worker module. A binding kind without a plugin
is listed with mode ``not supported`` and its ``env`` entry raises a clear error when used.

Reloading is split the way wrangler dev behaves: :meth:`reload_code` re-imports only the
worker's own modules (bindings, their storage and the AI binding's loaded models stay);
:meth:`reload_config` rebuilds the bindings when the config or the secrets files change.
It implements :class:`flarelet.bindings.registry.WorkerHost` (``dispatch_queue``,
``lookup_worker``, ``service_fetch``, ``call_entrypoint``) for plugins.

**Several workers in one process.** A host may belong to a
:class:`~flarelet.runtime.workerset.WorkerSet` (``flarelet dev -c a/wrangler.toml -c
b/wrangler.toml``, ``Worker.from_config(..., workers=[...])``); :attr:`WorkerHost.peers` is that
set. To reach another worker by its config ``name``, call ``host.lookup_worker(name)`` (from a
plugin: ``ctx.host.lookup_worker(name)``): it returns that worker's ``WorkerHost`` (this host for
its own name) or ``None`` when no such worker runs here. Its ``dispatcher`` runs its handlers and
entrypoint classes (``dispatcher.entrypoint_class(name)``, ``dispatcher.call_entrypoint(...)``),
its ``env`` holds its bindings, and ``worker_module()`` gives its loaded module (classes by name).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from flarelet.bindings.registry import BindingContext, BindingInfo, ConfigSectionError, load_plugin
from flarelet.wrangler_compat.config import ConfigError, WorkerConfig, load_config
from flarelet.wrangler_compat.devvars import DevVars, load_dev_vars

from . import cache as cache_api
from . import deps, outbound, workers_sdk
from .assets import AssetsBinding, AssetServer
from .context import ExecutionContext, env_scope
from .dispatch import WorkerDispatcher
from .env import Env
from .errors import error_response
from .headers import Headers
from .loader import WorkerLoadError, load_worker
from .request import Request
from .response import Response, dumps_json

log = logging.getLogger("flarelet")

#: Cloudflare's request body limit on the Free and Pro plans; configurable with
#: ``--max-body-size`` or ``[flarelet] max_body_bytes``.
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024

SCHEDULED_PATHS = ("/cdn-cgi/handler/scheduled", "/__scheduled", "/cdn-cgi/mf/scheduled")

#: config key -> wrangler's label for the bindings table (used for kinds without a plugin)
FRIENDLY_NAMES: dict[str, str] = {
    "ai": "AI",
    "kv_namespaces": "KV Namespace",
    "d1_databases": "D1 Database",
    "r2_buckets": "R2 Bucket",
    "queues": "Queue",
    "durable_objects": "Durable Object",
    "services": "Worker",
    "vectorize": "Vectorize Index",
    "hyperdrive": "Hyperdrive Config",
    "analytics_engine_datasets": "Analytics Engine Dataset",
    "browser": "Browser",
    "images": "Images",
    "dispatch_namespaces": "Dispatch Namespace",
    "mtls_certificates": "mTLS Certificate",
    "send_email": "Send Email",
    "version_metadata": "Worker Version Metadata",
    "workflows": "Workflow",
    "pipelines": "Pipeline",
    "secrets_store_secrets": "Secrets Store Secret",
    "ratelimits": "Rate Limit",
    "unsafe": "Unsafe Binding",
    "worker_loaders": "Worker Loader",
    "vpc_services": "VPC Service",
    "media": "Media",
}
_RESOURCE_KEYS = (
    "id",
    "database_name",
    "bucket_name",
    "queue",
    "class_name",
    "service",
    "index_name",
    "dataset",
    "namespace",
    "certificate_id",
    "pipeline",
    "name",
    "secret_name",
)


def normalize_upstream(value: Any) -> str | None:
    """``--upstream``: a URL, or a bare host (https, as wrangler's ``upstream_protocol`` default)."""
    if not value:
        return None
    text = str(value).strip().rstrip("/")
    if "://" not in text:
        text = "https://" + text
    scheme = text.split("://", 1)[0].lower()
    if scheme not in ("http", "https") or not text.split("://", 1)[1]:
        raise ValueError(f"--upstream must be an http(s) URL or a host name, got {value!r}")
    return text


#: ``request.cf`` without configuration: Miniflare's offline fallback values
FALLBACK_CF: dict[str, Any] = {
    "asOrganization": "",
    "asn": 395747,
    "colo": "DFW",
    "city": "Austin",
    "region": "Texas",
    "regionCode": "TX",
    "metroCode": "635",
    "postalCode": "78701",
    "country": "US",
    "continent": "NA",
    "timezone": "America/Chicago",
    "latitude": "30.27130",
    "longitude": "-97.74260",
    "clientTcpRtt": 0,
    "httpProtocol": "HTTP/1.1",
    "requestPriority": "weight=192;exclusive=0",
    "tlsCipher": "AEAD-AES128-GCM-SHA256",
    "tlsVersion": "TLSv1.3",
    "tlsClientAuth": {
        "certPresented": "0",
        "certVerified": "NONE",
        "certRevoked": "0",
        "certIssuerDN": "",
        "certSubjectDN": "",
        "certIssuerDNRFC2253": "",
        "certSubjectDNRFC2253": "",
        "certIssuerDNLegacy": "",
        "certSubjectDNLegacy": "",
        "certSerial": "",
        "certIssuerSerial": "",
        "certSKI": "",
        "certIssuerSKI": "",
        "certFingerprintSHA1": "",
        "certFingerprintSHA256": "",
        "certNotBefore": "",
        "certNotAfter": "",
    },
    "edgeRequestKeepAliveStatus": 0,
    "clientTrustScore": 99,
    "botManagement": {
        "corporateProxy": False,
        "verifiedBot": False,
        "ja3Hash": "25b4882c2bcb50cd6b469ff28c596742",
        "staticResource": False,
        "detectionIds": [],
        "score": 99,
    },
}


def load_cf(config: WorkerConfig) -> dict[str, Any] | None:
    """``[flarelet] cf``: a table is the cf object itself; a string is a JSON file (relative to the
    config); ``false`` or absent gives :data:`FALLBACK_CF` (Miniflare's ``cf`` option, offline)."""
    value = config.flarelet.get("cf")
    if value is None or value is False or value is True:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        path = (config.dir / value).resolve()
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise config.error(("flarelet", "cf"), f"cannot read the cf JSON file {value} ({exc})") from None
        if not isinstance(loaded, dict):
            raise config.error(("flarelet", "cf"), f"the cf JSON file {value} must hold an object")
        return loaded
    raise config.error(("flarelet", "cf"), f"must be a table or a JSON file path, got {type(value).__name__}")


_HOP_HEADER_RAW = outbound.HOP_HEADER.encode()


def _hop_count(request: Request) -> int:
    if request._headers is None:  # still the raw ASGI list: scan it rather than parse every header
        raw: Any = next((v.decode("latin-1") for k, v in request._raw_headers or () if k == _HOP_HEADER_RAW), None)
    else:
        raw = request._headers.get(outbound.HOP_HEADER)
    if not raw:
        return 0
    try:
        return int(str(raw).split(",")[-1].strip())
    except ValueError:
        return 0


class UnsupportedBinding:
    """What ``env.X`` holds for a binding kind flarelet cannot run: every use explains why."""

    def __init__(self, name: str, kind: str) -> None:
        self._name = name
        self._kind = kind

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise RuntimeError(
            f"env.{self._name}: {self._kind} bindings are not supported by flarelet "
            f"(binding {self._name} cannot be used locally)"
        )

    def __repr__(self) -> str:
        return f"<unsupported {self._kind} binding {self._name}>"


def unsupported_rows(key: str, section: Any) -> list[BindingInfo]:
    """Table rows (and ``env`` placeholders) for a binding kind that has no plugin here."""
    kind = FRIENDLY_NAMES.get(key, key)
    items: list[Any]
    if key == "queues" and isinstance(section, Mapping):
        items = list(section.get("producers") or [])
    elif key == "durable_objects" and isinstance(section, Mapping):
        items = list(section.get("bindings") or [])
    elif isinstance(section, list):
        items = section
    else:
        items = [section]
    rows = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        name = item.get("binding") or item.get("name")
        if not isinstance(name, str):
            continue
        resource = next((str(item[k]) for k in _RESOURCE_KEYS if k in item and item[k] != name), "")
        rows.append(BindingInfo(name, kind, resource, UnsupportedBinding(name, kind), mode="not supported"))
    return rows


def _takes_argument(fn: Any) -> bool:
    import inspect

    try:
        return len(inspect.signature(fn).parameters) >= 1
    except (TypeError, ValueError):
        return False


class ServiceNotFoundError(LookupError):
    """A service binding names a worker that is not running in this process."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.message = (
            f'Couldn\'t find a local dev session for the "default" entrypoint of service "{service}" to proxy to '
            f"(start it in the same flarelet dev: flarelet dev -c this/wrangler.toml -c {service}/wrangler.toml)"
        )
        super().__init__(self.message)


@dataclass
class _Plugin:
    key: str
    plugin: Any


class WorkerHost:
    """One worker, ready to serve (see module docstring)."""

    def __init__(
        self,
        config: WorkerConfig,
        *,
        env_name: str | None = None,
        cli_vars: Mapping[str, str] | None = None,
        persist_to: Path | None = None,
        options: Mapping[str, Any] | None = None,
        max_body_bytes: int | None = None,
        bindings: Mapping[str, Any] | None = None,
        upstream: str | None = None,
    ) -> None:
        self.config = config
        self.env_name = env_name
        self.cli_vars = dict(cli_vars or {})
        self.persist_to = persist_to
        self.user_options = dict(options or {})
        #: ``env`` entries that replace (or add to) what the config builds, re-applied on every
        #: rebuild: the test harness's ``bindings={"AI": FakeAi()}``
        self.binding_overrides: dict[str, Any] = dict(bindings or {})
        configured = config.flarelet.get("max_body_bytes")
        self.max_body_bytes = int(max_body_bytes or configured or DEFAULT_MAX_BODY_BYTES)
        self._cli_upstream = upstream
        self._apply_flarelet_options()
        self.bindings: list[BindingInfo] = []
        self.plugins: list[_Plugin] = []
        self.assets: AssetServer | None = None
        self.dev_vars = DevVars()
        self.env = Env()
        self.ctx = self._binding_context()
        self.dispatcher = WorkerDispatcher(None, self.env, log=log, space=str(config.path))
        #: the set of workers this one runs with (``None``: alone); see the module docstring
        self.peers: Any = None
        try:
            #: the Cache API's storage (``caches``), under ``persist_to`` or in memory
            self.caches = cache_api.CacheStorage.from_config(persist_to, config.flarelet.get("cache"))
        except ValueError as exc:
            raise config.error(("flarelet", "cache"), str(exc)) from None
        self.started = False
        #: the worker's installed dependency folder (set by :meth:`_prepare_deps`)
        self.deps = deps.DepsResult(None, "none")
        self.deps_declared: frozenset[str] = frozenset()
        self.deps_isolated = True
        #: bumped whenever plugin routes may have changed (the app re-reads :meth:`routes`)
        self.generation = 0

    def _apply_flarelet_options(self) -> None:
        """``[flarelet]`` settings read per config load (``--upstream`` wins over ``upstream``)."""
        config = self.config
        #: where subrequests to the worker's own origin go (``--upstream``; see ``runtime.outbound``)
        self.upstream = normalize_upstream(self._cli_upstream or config.flarelet.get("upstream"))
        self.max_subrequest_depth = int(
            config.flarelet.get("max_subrequest_depth") or outbound.DEFAULT_MAX_SUBREQUEST_DEPTH
        )
        #: the ``request.cf`` object of incoming requests (``[flarelet] cf``, as Miniflare's ``cf`` option)
        self.cf = load_cf(config)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        path: Path | str | None = None,
        env_name: str | None = None,
        vars: Mapping[str, str] | None = None,  # noqa: A002 - wrangler's name (--var)
        persist_to: Path | str | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        max_body_bytes: int | None = None,
        bindings: Mapping[str, Any] | None = None,
        upstream: str | None = None,
        load_code: bool = True,
        raise_on_load_error: bool = False,
    ) -> WorkerHost:
        """Build the host for the config at ``path`` (a file or folder); raises :class:`ConfigError`.

        ``persist_to=None`` keeps binding storage in memory (tests); the CLI passes
        ``.wrangler/state``. A worker module that fails to import is reported by the 500 page
        (and fixed by editing), unless ``raise_on_load_error``.
        """
        config = load_config(path, env_name)
        host = cls(
            config,
            env_name=env_name,
            cli_vars=vars,
            persist_to=Path(persist_to) if persist_to else None,
            options=options,
            max_body_bytes=max_body_bytes,
            bindings=bindings,
            upstream=upstream,
        )
        host._check_main()
        host._build_bindings()
        host._prepare_deps()
        if load_code:
            host.reload_code(raise_errors=raise_on_load_error)
        return host

    def _binding_context(self) -> BindingContext:
        options = dict(self.user_options)
        options["flarelet"] = dict(self.config.flarelet)
        options["dev_vars"] = dict(self.dev_vars.values)
        options["cli_vars"] = dict(self.cli_vars)
        options.setdefault("env_name", self.env_name)
        options["worker_name"] = self.config.name or "worker"
        raw = self.config.raw.data
        env_section = (raw.get("env") or {}).get(self.env_name) if self.env_name else None
        migrations = env_section.get("migrations") if isinstance(env_section, dict) else None
        options["migrations"] = migrations if migrations is not None else raw.get("migrations")
        return BindingContext(config_dir=self.config.dir, persist_to=self.persist_to, options=options, log=log)

    def _check_main(self) -> None:
        config = self.config
        if config.main is None:
            if config.assets is None or not config.assets.directory:
                raise ConfigError(
                    config.path,
                    None,
                    "main",
                    'missing: set `main` to the worker\'s Python module (e.g. main = "src/entry.py")',
                )
            return
        if not config.main.is_file():
            raise config.error(
                config.origin_of("main"), f"the main module {config.raw_value('main')} does not exist ({config.main})"
            )
        if config.main.suffix != ".py":
            raise config.error(
                config.origin_of("main"), f"{config.main.name} is not a Python module (flarelet runs Python Workers)"
            )

    def _build_bindings(self) -> None:
        config = self.config
        self.dev_vars = load_dev_vars(config.dir, self.env_name, config.secrets_required)
        for missing in self.dev_vars.missing:
            log.warning("secrets.required lists %s but no .dev.vars/.env file defines it", missing)
        self.ctx = self._binding_context()
        sections = dict(config.bindings)
        if "vars" not in sections:
            sections = {"vars": None, **sections}
        rows: list[BindingInfo] = []
        plugins: list[_Plugin] = []
        for key, section in sections.items():
            plugin = load_plugin(key)
            if plugin is None:
                rows.extend(unsupported_rows(key, section))
                continue
            try:
                created = plugin.create(section, self.ctx)
            except ConfigSectionError as exc:
                raise config.section_error(key, exc) from None
            except (TypeError, ValueError) as exc:
                raise config.section_error(key, exc) from None
            plugins.append(_Plugin(key, plugin))
            rows.extend(created)
        assets = config.assets
        self.assets = None
        if assets is not None and assets.directory:
            directory = (config.dir / assets.directory).resolve()
            if not directory.is_dir():
                raise config.error(
                    config.origin_of("assets") + ("directory",),
                    f"the assets directory {assets.directory} does not exist ({directory})",
                )
            self.assets = AssetServer(
                directory,
                not_found_handling=assets.not_found_handling,
                html_handling=assets.html_handling,
                run_worker_first=assets.run_worker_first,
            )
            if assets.binding:
                rows.append(BindingInfo(assets.binding, "Assets", "", AssetsBinding(self.assets)))
        values: dict[str, Any] = {}
        for row in rows:
            if row.name in values:
                log.warning("binding name %s is defined twice; the %s one is used", row.name, row.type_label)
            values[row.name] = row.value
        values.update(self.binding_overrides)
        self.bindings = rows
        self.plugins = plugins
        cache_api.unbind(self.env)
        self.env = Env(values)
        cache_api.bind(self.env, self.caches)
        self.dispatcher.env = self.env
        workers_sdk.set_default_env(self.env)
        self.generation += 1

    def _prepare_deps(self) -> None:
        """Install (or find cached) the packages the worker declares; ``options["install_deps"]=False`` skips it."""
        section = self.config.flarelet.get("deps") or {}
        try:
            if not isinstance(section, Mapping):
                raise ValueError("must be a table")
            unknown = set(section) - {"installer", "install_timeout_s", "isolate"}
            if unknown:
                raise ValueError(
                    f"unknown key(s) {', '.join(sorted(unknown))} (known: installer, install_timeout_s, isolate)"
                )
            options = deps.DepsOptions(install=bool(self.user_options.get("install_deps", True)), **section)
        except (ValueError, TypeError) as exc:
            raise self.config.error(("flarelet", "deps"), str(exc)) from None
        try:
            spec = deps.read_spec(self.config.dir)
        except deps.DependencySpecError as exc:
            raise ConfigError(self.config.path, None, None, str(exc)) from None
        self.deps = deps.ensure_deps(spec, options)
        self.deps_isolated = options.isolate
        self.deps_declared = spec.names

    # -- code ---------------------------------------------------------------------------------
    def reload_code(self, raise_errors: bool = False) -> bool:
        """(Re-)import the worker module. On failure requests get the import error as a 500 page until
        the code is fixed (wrangler dev likewise reports a broken build rather than running stale code)."""
        main = self.config.main
        if main is None:
            self.dispatcher.worker = None
            self.dispatcher.load_error = None
            return True
        workers_sdk.set_default_env(self.env)
        try:
            worker = load_worker(
                main, self.dispatcher.space, self.deps.path, self.deps_declared, isolate=self.deps_isolated
            )
        except WorkerLoadError as exc:
            if raise_errors:
                raise
            self.dispatcher.worker = None
            self.dispatcher.load_error = exc
            log.error("%s%s", exc.message, "\n" + exc.details if exc.details and not exc.brief else "")
            return False
        self.dispatcher.worker = worker
        self.dispatcher.load_error = None
        for item in self.plugins:
            hook = getattr(item.plugin, "code_reloaded", None)
            if hook is not None:
                hook(self.ctx)
        return True

    async def reload_config(self) -> bool:
        """Re-read the config and secrets, rebuild the bindings and re-import the code.

        On a config error the old config stays in use and the error is logged.
        """
        try:
            config = load_config(self.config.path, self.env_name)
        except ConfigError as exc:
            log.error("%s (keeping the previous configuration)", exc)
            return False
        old_plugins, old_config = self.plugins, self.config
        self.config = config
        try:
            self._check_main()
            self._apply_flarelet_options()
            await self._close_plugins(old_plugins)
            self._build_bindings()
        except (ConfigError, ValueError) as exc:
            log.error("%s", exc)
            self.config = old_config
            self._apply_flarelet_options()
            return False
        if self.started:
            await self._start_plugins()
        try:  # a changed pyproject.toml / requirements.txt: install off the event loop
            await asyncio.to_thread(self._prepare_deps)
        except ConfigError as exc:
            log.error("%s (keeping the previous dependencies)", exc)
        self.reload_code()
        return True

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Run plugins' ``start`` hooks (after the worker is loaded; ``ctx.host`` is this host)."""
        self.started = True
        await self._start_plugins()

    async def _start_plugins(self) -> None:
        self.ctx.host = self
        for item in self.plugins:
            start = getattr(item.plugin, "start", None)
            if start is not None:
                await start(self.ctx)

    async def _close_plugins(self, plugins: Sequence[_Plugin]) -> None:
        for item in plugins:
            close = getattr(item.plugin, "aclose", None)
            if close is None:
                continue
            try:
                # a plugin object serves every worker of the process: one whose ``aclose`` takes the
                # binding context closes only what this worker built
                if _takes_argument(close):
                    await close(self.ctx)
                else:
                    await close()
            except Exception:  # noqa: BLE001 - one plugin failing to close must not stop the others
                log.exception("closing the %s binding failed", item.key)

    async def aclose(self) -> None:
        """Finish ``waitUntil`` work, close plugins and the outbound HTTP client."""
        await self.dispatcher.aclose()
        await self._close_plugins(self.plugins)
        await self.caches.aclose()
        cache_api.unbind(self.env)
        deps.isolation.deactivate(self.dispatcher.space)
        await outbound.aclose_client()
        self.started = False

    def routes(self) -> list[Any]:
        """Extra dev-server routes from the plugins (e.g. the Workers AI REST API)."""
        found: list[Any] = []
        for item in self.plugins:
            hook = getattr(item.plugin, "routes", None)
            if hook is not None:
                found.extend(hook(self.ctx) or [])
        return found

    def env_scope(self) -> Any:
        """``flarelet.bindings.registry.WorkerHost``: ``workers.env`` is this worker's env inside."""
        return env_scope(self.env)

    # -- other workers ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The worker's ``name`` from its config (else the folder name): how bindings address it."""
        return self.config.name or self.config.dir.name

    def lookup_worker(self, name: str) -> WorkerHost | None:
        """``flarelet.bindings.registry.WorkerHost``: the worker named ``name`` in this process, or ``None``."""
        if self.peers is not None:
            return self.peers.get(name)
        return self if name == self.name else None

    def worker_module(self) -> Any:
        """The loaded worker module (``None`` while it fails to import)."""
        worker = self.dispatcher.worker
        return worker.module if worker is not None else None

    def _target(self, service: str) -> WorkerHost:
        target = self.lookup_worker(service)
        if target is None:
            raise ServiceNotFoundError(service)
        return target

    async def service_fetch(
        self, service: str, entrypoint: str | None, request: Any, *, props: Mapping[str, Any] | None = None
    ) -> Response:
        """``flarelet.bindings.registry.WorkerHost``: ``env.SVC.fetch(...)``: a ``Request`` answered by ``service``.

        The request goes to the target's handler directly (not through its assets or test routes),
        as a service binding's does; a worker that is not running answers 503 as wrangler dev does.
        """
        target = self.lookup_worker(service)
        if target is None:
            return Response(ServiceNotFoundError(service).message, status=503)
        if not isinstance(request, Request):
            request = Request(request)
        return await target.dispatcher.fetch_entrypoint(entrypoint, request, props)

    async def call_entrypoint(
        self,
        service: str,
        entrypoint: str | None,
        method: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        props: Mapping[str, Any] | None = None,
    ) -> Any:
        """``flarelet.bindings.registry.WorkerHost``: RPC ``await env.SVC.method(*args)``.

        Arguments and the result cross as :mod:`flarelet.runtime.rpc` says (copied, or refused
        with Cloudflare's errors); the callee's exception comes back as ``RpcError``.
        """
        from .rpc import RpcError, call_across

        target = self.lookup_worker(service)
        if target is None:
            raise RpcError("Error", ServiceNotFoundError(service).message)

        async def invoke(*sent_args: Any, **sent_kwargs: Any) -> Any:
            return await target.dispatcher.call_entrypoint(entrypoint, method, sent_args, sent_kwargs, props)

        return await call_across(invoke, args, kwargs)

    def make_request(self, input: Any, init: Mapping[str, Any]) -> Request:  # noqa: A002 - Fetch API name
        """``flarelet.bindings.registry.WorkerHost``: a ``Request`` from ``fetch(input, **init)`` arguments."""
        if isinstance(input, Request) and not init:
            return input
        return Request(input, **dict(init))

    async def run_workflow(self, script_name: str | None, class_name: str, event: Any, step: Any) -> Any:
        """``flarelet.bindings.registry.WorkerHost``: ``class_name(ctx, env).run(event, step)`` of a worker.

        ``script_name`` picks another worker of this process (``[[workflows]] script_name``).
        The class must be a ``WorkflowEntrypoint`` exported by the worker's main module.
        """
        target = self._target(script_name) if script_name and script_name != self.name else self
        return await target.dispatcher.run_workflow(class_name, event, step)

    # -- events -------------------------------------------------------------------------------
    async def dispatch_queue(self, queue: str, messages: Sequence[Any]) -> Any:
        """``flarelet.bindings.registry.WorkerHost``: run the worker's ``queue`` handler on a batch."""
        return await self.dispatcher.queue(queue, messages)

    async def scheduled(self, cron: str = "", scheduled_time: float | None = None) -> dict[str, Any]:
        return await self.dispatcher.scheduled(cron, scheduled_time)

    async def serve(
        self,
        request: Request,
        ctx: ExecutionContext | None = None,
        *,
        path: str | None = None,
        query: str | None = None,
    ) -> Response:
        """Answer a request the way ``wrangler dev`` does: test-scheduled paths, assets, then the worker."""
        if path is None or query is None:
            rest = request.url.split("://", 1)[-1]
            slash = rest.find("/")
            target = rest[slash:] if slash >= 0 else "/"
            raw_path, _, query = target.partition("?")
            path = unquote(raw_path)
        if path in SCHEDULED_PATHS:
            return await self._scheduled_endpoint(path, query, request)
        hops = _hop_count(request)
        if hops > self.max_subrequest_depth:
            log.error(
                "%s %s refused: subrequest loop (%s: %d hops, limit %d)",
                request.method,
                request.url,
                outbound.HOP_HEADER,
                hops,
                self.max_subrequest_depth,
            )
            return Response._from_parts(
                508,
                Headers({"content-type": "text/plain;charset=UTF-8"}),
                f"Loop detected: this request passed through the worker {hops} times as a subrequest "
                f"(CF-EW-Via), above the limit of {self.max_subrequest_depth} "
                "([flarelet] max_subrequest_depth)\n".encode(),
            )
        token = outbound.subrequest_scope.set(outbound.SubrequestScope(request.url, hops, self.upstream, self.assets))
        try:
            return await self._serve_worker(request, ctx, path, query)
        finally:
            outbound.subrequest_scope.reset(token)

    async def _serve_worker(self, request: Request, ctx: ExecutionContext | None, path: str, query: str) -> Response:
        assets = self.assets
        if assets is not None:
            worker_first = self.dispatcher.worker is not None and assets.worker_first(path)
            if not worker_first:
                found = assets.serve(path, request.method, request.headers.get("if-none-match"), query)
                if found is not None:
                    return found
            if self.config.main is None:
                if request.method not in ("GET", "HEAD"):
                    return Response._from_parts(405, Headers({"allow": "GET, HEAD"}), b"Method Not Allowed")
                return assets.not_found(path, request.method)
        return await self.dispatcher.fetch(request, ctx)

    async def _scheduled_endpoint(self, path: str, query: str, request: Request) -> Response:
        params = parse_qs(query)
        cron = params.get("cron", [""])[0]
        raw_time = params.get("time", [None])[0]
        try:
            when = float(raw_time) if raw_time else None
        except ValueError:
            return Response(f"invalid time parameter {raw_time!r} (expected milliseconds since the epoch)", status=400)
        started = time.perf_counter()
        result = await self.dispatcher.scheduled(cron, when)
        log.info('scheduled "%s" %s (%dms)', cron, result["outcome"], (time.perf_counter() - started) * 1000)
        ok = result["outcome"] == "ok"
        if path == "/__scheduled":
            if ok:
                return Response("Ran scheduled event")
            return error_response(
                RuntimeError("the scheduled handler failed (see the log)"), request.headers.get("accept"), ""
            )
        if params.get("format", [""])[0] == "json":
            return Response._from_parts(
                200 if ok else 500, Headers({"content-type": "application/json"}), dumps_json(result)
            )
        return Response(result["outcome"], status=200 if ok else 500)

    # -- description --------------------------------------------------------------------------
    @property
    def watch_paths(self) -> list[Path]:
        """Files whose change should rebuild bindings (the config and secrets files)."""
        from flarelet.wrangler_compat.devvars import candidate_files

        return [self.config.path, *candidate_files(self.config.dir, self.env_name), *deps.spec_files(self.config.dir)]
