"""The ``r2_buckets`` plugin: one :class:`R2Bucket` per ``[[r2_buckets]]`` entry."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from flarelet.bindings import registry
from flarelet.bindings.r2.bucket import R2Bucket
from flarelet.bindings.r2.constants import TYPE_LABEL, R2Limits
from flarelet.bindings.storage.config import StoragePlugin


class R2BucketConfig(BaseModel):
    """One ``[[r2_buckets]]`` entry."""

    model_config = ConfigDict(extra="allow")

    binding: str
    bucket_name: str | None = None
    preview_bucket_name: str | None = None
    jurisdiction: str | None = None
    remote: bool | None = None


class R2Plugin(StoragePlugin):
    """Owns ``r2_buckets``: builds one :class:`R2Bucket` per entry."""

    key = "r2_buckets"
    type_label = TYPE_LABEL
    entry_model = R2BucketConfig

    def open_store(self, entry: R2BucketConfig, ctx: registry.BindingContext) -> tuple[R2Bucket, str]:
        limits = replace(R2Limits(), **dict(ctx.options.get("r2_limits") or {}))
        name = entry.preview_bucket_name or entry.bucket_name or entry.binding
        if ctx.persist_to is None:
            return R2Bucket.in_memory(name, limits=limits), name
        synchronous = ctx.options.get("sqlite_synchronous")
        return R2Bucket.open(Path(ctx.persist_to), name, synchronous=synchronous, limits=limits), name


plugin = R2Plugin()
