"""The ``ai`` config section: ``[ai] binding = "AI"`` puts a local Workers AI binding on ``env``.

Wrangler marks AI as remote-only ("will never have a local simulator"); flarelet runs it here.
``remote`` / ``staging`` keys, meaningful to wrangler, are accepted and ignored with a log line.
Settings (weights cache, limits, threads, model folders) come from ``[flarelet.ai]`` and the
environment (:mod:`flarelet.bindings.ai.settings`); ``--preload`` (``options["preload"]``) loads models
when the worker starts instead of on the first request.

Importing this module loads no model and imports neither torch nor transformers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flarelet.bindings.registry import BindingContext, BindingInfo, ConfigSectionError

from . import catalog
from .settings import AiSettings, SettingsError

if TYPE_CHECKING:
    from .service import AiService

log = logging.getLogger("flarelet.ai")

IGNORED_KEYS = ("remote", "staging", "experimental_remote")
#: What ``--preload`` with no model list loads: every bundled model (turbo shares base's weights).
DEFAULT_PRELOAD = ("@cf/openai/whisper-tiny-en", "@cf/openai/whisper")


class AiPlugin:
    key = "ai"

    def __init__(self) -> None:
        self._service: AiService | None = None
        self._preload: tuple[str, ...] = ()

    def settings(self, ctx: BindingContext) -> AiSettings:
        try:
            return AiSettings.from_options(ctx.options)
        except SettingsError as exc:
            raise ConfigSectionError(exc.key, exc.message) from None

    def create(self, section: Any, ctx: BindingContext) -> list[BindingInfo]:
        if not isinstance(section, Mapping):
            raise ConfigSectionError("ai", 'must be a table, e.g. [ai] binding = "AI"')
        name = section.get("binding")
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigSectionError("ai.binding", f"must be the name of the binding (an identifier), got {name!r}")
        for key in section:
            if key in IGNORED_KEYS:
                ctx.log.info("ai.%s is ignored: flarelet runs Workers AI locally, offline", key)
            elif key != "binding":
                raise ConfigSectionError(f"ai.{key}", "unknown key (expected binding, remote, staging)")
        from .binding import Ai
        from .service import get_service

        service = get_service(self.settings(ctx))
        self._service = service
        try:
            self._preload = self._preload_list(ctx.options.get("preload"))
        except Exception as exc:  # errors.AiError for an unknown model id
            raise ConfigSectionError("preload", str(getattr(exc, "description", exc))) from None
        return [BindingInfo(name=name, type_label="AI", resource="", value=Ai(service), mode="local")]

    async def start(self, ctx: BindingContext) -> None:
        """After the worker loads: load the ``--preload`` models (converting weights once)."""
        if self._preload and self._service is not None:
            ctx.log.info("Preloading %s", ", ".join(self._preload))
            await self._service.preload(self._preload)

    def routes(self, ctx: BindingContext) -> list:
        """The Workers AI REST API beside the worker (``/client/v4/accounts/{id}/ai/...``).

        Implemented in :mod:`flarelet.bindings.ai.rest`; it shares this process's service and models.
        """
        from .rest import routes

        return routes(ctx)

    async def aclose(self) -> None:
        # Models stay loaded in the process-wide cache: a dev-server reload reuses them.
        self._service = None

    @staticmethod
    def _preload_list(value: Any) -> tuple[str, ...]:
        if not value:
            return ()
        if value is True:
            return DEFAULT_PRELOAD
        models: Sequence[str] = (
            [m.strip() for m in value.split(",") if m.strip()] if isinstance(value, str) else list(value)
        )
        for model in models:
            catalog.resolve(model)  # unknown ids fail at start, not at the first request
        return tuple(models)


plugin = AiPlugin()
