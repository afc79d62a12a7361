"""Object metadata: ``httpMetadata`` (dict or Headers), ``customMetadata``, checksums."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from flarelet.bindings.jsobject import (
    JsDict,
    JsTypeError,
    js_date,
    js_date_millis,
    js_string,
    merge_options,
)
from flarelet.bindings.r2.constants import HASH_ALGORITHMS

HTTP_FIELDS = (
    "contentType",
    "contentLanguage",
    "contentDisposition",
    "contentEncoding",
    "cacheControl",
    "cacheExpiry",
)
HEADER_FOR_FIELD = {
    "contentType": "content-type",
    "contentLanguage": "content-language",
    "contentDisposition": "content-disposition",
    "contentEncoding": "content-encoding",
    "cacheControl": "cache-control",
    "cacheExpiry": "expires",
}


def is_headers(value: Any) -> bool:
    return not isinstance(value, Mapping) and callable(getattr(value, "get", None))


def http_metadata_from(value: Any) -> dict[str, Any]:
    """``httpMetadata`` (a dict of R2HTTPMetadata fields, or Headers) as stored JSON fields."""
    if value is None:
        return {}
    out: dict[str, Any] = {}
    if is_headers(value):
        for field_name, header in HEADER_FOR_FIELD.items():
            text = value.get(header)
            if text is None:
                continue
            if field_name == "cacheExpiry":
                try:
                    out[field_name] = int(parsedate_to_datetime(text).timestamp() * 1000)
                except (TypeError, ValueError):
                    continue
            else:
                out[field_name] = str(text)
        return out
    opts = merge_options(value, {})
    for field_name in HTTP_FIELDS:
        item = opts.get(field_name)
        if item is None:
            continue
        out[field_name] = int(js_date_millis(item)) if field_name == "cacheExpiry" else str(item)
    return out


def http_metadata_to_py(stored: Mapping[str, Any]) -> JsDict:
    out = JsDict()
    for field_name in HTTP_FIELDS:
        if field_name in stored:
            out[field_name] = js_date(stored[field_name]) if field_name == "cacheExpiry" else stored[field_name]
    return out


def custom_metadata_from(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise JsTypeError("customMetadata must be an object of strings")
    # values become strings as JS's String() makes them (True -> "true"), as workerd's Dict<String>
    return {str(k): v if isinstance(v, str) else js_string(v) for k, v in value.items()}


def serialised_length(text: str) -> int:
    # Miniflare (after R2's gateway): Latin-1 strings count once, others twice per UTF-16 unit
    units = len(text.encode("utf-16-le", "surrogatepass")) // 2
    return units * 2 if any(ord(c) >= 256 for c in text) else units


class R2Checksums:
    """``object.checksums``: digests as ``bytes`` (``None`` if not computed); ``toJSON()`` gives hex."""

    def __init__(self, hexes: Mapping[str, str]) -> None:
        self.md5 = self.sha1 = self.sha256 = self.sha384 = self.sha512 = None
        for name, _, _ in HASH_ALGORITHMS:
            if hexes.get(name):
                setattr(self, name, bytes.fromhex(hexes[name]))

    def toJSON(self) -> JsDict:
        return JsDict((name, getattr(self, name).hex()) for name, _, _ in HASH_ALGORITHMS if getattr(self, name))

    to_json = toJSON

    def __repr__(self) -> str:
        return f"R2Checksums({dict(self.toJSON())})"
