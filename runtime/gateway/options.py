"""Options shared by the ASGI and WSGI adapters (the SDK's ``workers.gateway.BaseOptions``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EncodeBody = Literal["automatic", "manual"]


@dataclass(frozen=True, kw_only=True)
class Options:
    #: ``"manual"``: the app's body is already encoded for its ``Content-Encoding`` (sent as is)
    encode_body: EncodeBody = "automatic"

    def __post_init__(self) -> None:
        if self.encode_body not in ("automatic", "manual"):
            raise ValueError(f"encode_body must be one of ('automatic', 'manual'), got {self.encode_body!r}")


DEFAULT_OPTIONS = Options()
