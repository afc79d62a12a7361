"""``onlyIf`` conditions and ranges, validated and evaluated as workerd and Miniflare's ``validator.ts`` do."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from flarelet.bindings.jsobject import (
    JsRangeError,
    JsTypeError,
    js_date_millis,
    merge_options,
)
from flarelet.bindings.r2.metadata import is_headers


@dataclass
class _Etag:
    kind: str  # "strong" | "weak" | "wildcard"
    value: str = ""


def _parse_etags(value: Any, *, split_commas: bool) -> list[_Etag]:
    items = value if isinstance(value, list) else [value]
    out: list[_Etag] = []
    for item in items:
        for part in str(item).split(",") if split_commas else [str(item)]:
            part = part.strip()
            if not part:
                continue
            if part == "*":
                out.append(_Etag("wildcard"))
            elif part.startswith("W/"):
                out.append(_Etag("weak", part[2:].strip('"')))
            else:
                out.append(_Etag("strong", part.strip('"')))
    return out


@dataclass
class _Conditional:
    etag_matches: list[_Etag] | None = None
    etag_does_not_match: list[_Etag] | None = None
    uploaded_before: float | None = None
    uploaded_after: float | None = None
    seconds_granularity: bool = False


def conditional_from(value: Any) -> _Conditional | None:
    if value is None:
        return None
    cond = _Conditional()
    if is_headers(value):
        if value.get("if-match") is not None:
            cond.etag_matches = _parse_etags(value.get("if-match"), split_commas=True)
        if value.get("if-none-match") is not None:
            cond.etag_does_not_match = _parse_etags(value.get("if-none-match"), split_commas=True)
        for header, attr in (("if-modified-since", "uploaded_after"), ("if-unmodified-since", "uploaded_before")):
            text = value.get(header)
            if text is not None:
                try:
                    setattr(cond, attr, parsedate_to_datetime(text).timestamp() * 1000)
                except (TypeError, ValueError):
                    pass
        cond.seconds_granularity = True
        return cond
    opts = merge_options(value, {})
    if opts.get("etagMatches") is not None:
        cond.etag_matches = _parse_etags(opts["etagMatches"], split_commas=False)
    if opts.get("etagDoesNotMatch") is not None:
        cond.etag_does_not_match = _parse_etags(opts["etagDoesNotMatch"], split_commas=False)
    if opts.get("uploadedBefore") is not None:
        cond.uploaded_before = js_date_millis(opts["uploadedBefore"])
    if opts.get("uploadedAfter") is not None:
        cond.uploaded_after = js_date_millis(opts["uploadedAfter"])
    cond.seconds_granularity = bool(opts.get("secondsGranularity"))
    return cond


def _includes_etag(conditions: list[_Etag], etag: str, comparison: str) -> bool:
    for cond in conditions:
        if cond.kind == "wildcard":
            return True
        if cond.value == etag and (cond.kind == "strong" or comparison == "weak"):
            return True
    return False


def condition_holds(cond: _Conditional, etag: str | None, uploaded: int | None) -> bool:
    """Miniflare's ``_testR2Conditional`` (after R2's gateway; RFC 7232 section 6)."""
    if etag is None or uploaded is None:
        return cond.etag_matches is None and cond.uploaded_after is None
    if_match = cond.etag_matches is None or _includes_etag(cond.etag_matches, etag, "strong")
    if_none_match = cond.etag_does_not_match is None or not _includes_etag(cond.etag_does_not_match, etag, "weak")

    def trunc(ms: float) -> float:
        return (ms // 1000) * 1000 if cond.seconds_granularity else ms

    last_modified = trunc(uploaded)
    if_modified_since = (
        cond.uploaded_after is None
        or trunc(cond.uploaded_after) < last_modified
        or (cond.etag_does_not_match is not None and if_none_match)
    )
    if_unmodified_since = (
        cond.uploaded_before is None
        or last_modified < trunc(cond.uploaded_before)
        or (cond.etag_matches is not None and if_match)
    )
    return if_match and if_none_match and if_modified_since and if_unmodified_since


_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


def _check_range_number(value: Any, label: str, suffix: bool = False) -> int:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise JsTypeError(f"Invalid range. {label} must be a number.")
    shown = int(value) if float(value).is_integer() else value
    if value < 0:
        what = "suffix. Suffix" if suffix else f"range. {label}"
        raise JsRangeError(f"Invalid {what} ({shown}) must be greater than or equal to 0.")
    if not float(value).is_integer():
        raise JsRangeError(f"Invalid range. {label} ({shown}) must be an integer, not floating point.")
    return int(value)


def parse_range(value: Any) -> tuple[str, Any] | None:
    """Validate ``range`` as workerd does; ``("header", text)`` or ``("range", dict)``."""
    if value is None:
        return None
    if is_headers(value):
        header = value.get("range")
        return None if header is None else ("header", str(header))
    opts = merge_options(value, {})
    out: dict[str, int] = {}
    if opts.get("offset") is not None:
        out["offset"] = _check_range_number(opts["offset"], "Starting offset")
    if opts.get("length") is not None:
        out["length"] = _check_range_number(opts["length"], "Length")
    if opts.get("suffix") is not None:
        if "offset" in out:
            raise JsTypeError("Suffix is incompatible with offset.")
        if "length" in out:
            raise JsTypeError("Suffix is incompatible with length.")
        out["suffix"] = _check_range_number(opts["suffix"], "Suffix", suffix=True)
    return ("range", out)


def resolve_range(request: tuple[str, Any] | None, size: int) -> tuple[int, int] | None:
    """``(start, length)`` to read, ``None`` for the whole object; ``ValueError`` if unsatisfiable."""
    if request is None:
        return None
    kind, value = request
    if kind == "header":
        # Miniflare (after R2's gateway) answers the whole object for a Range header it cannot
        # use: malformed, several ranges, reversed (``bytes=9-2``) or past the end.
        match = _RANGE_RE.match(value)
        if not match or (not match.group(1) and not match.group(2)):
            return None
        first, last = match.group(1), match.group(2)
        if not first:
            suffix = min(int(last), size)
            return None if suffix <= 0 else (size - suffix, suffix)
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if start >= size or end < start:
            return None
        return start, end - start + 1
    offset, length, suffix = value.get("offset"), value.get("length"), value.get("suffix")
    if suffix is not None:
        if suffix <= 0:
            raise ValueError("unsatisfiable")
        suffix = min(suffix, size)
        offset, length = size - suffix, suffix
    if offset is None:
        offset = 0
    if length is None:
        length = size - offset
    if offset < 0 or offset > size or length <= 0:
        raise ValueError("unsatisfiable")
    length = min(length, size - offset)
    return offset, length
