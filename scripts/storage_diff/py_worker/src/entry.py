"""The flarelet side of ``scripts/storage_diff.py``: runs the POSTed operations on env.KV/R2/DB.

Written as a Python Worker for Cloudflare is written; it encodes every result exactly as
``../worker.mjs`` (the Miniflare side) encodes what a Python Worker would receive through
Pyodide, so the two outputs compare field by field.
"""

import inspect
import json
import math

from workers import Response, WorkerEntrypoint

R2_FIELDS = (
    "key",
    "version",
    "size",
    "etag",
    "httpEtag",
    "uploaded",
    "httpMetadata",
    "customMetadata",
    "range",
    "storageClass",
    "ssecKeyMd5",
)


class _Headers:
    """Enough of ``Headers`` for ``writeHttpMetadata`` and ``onlyIf``/``range`` given as headers."""

    def __init__(self, items=None):
        self._items = {k.lower(): v for k, v in (items or {}).items()}

    def get(self, name, default=None):
        return self._items.get(name.lower(), default)

    def set(self, name, value):
        self._items[name.lower()] = value

    def items(self):
        return self._items.items()


def decode(value, saved):
    if isinstance(value, list):
        return [decode(v, saved) for v in value]
    if not isinstance(value, dict):
        return value
    if "$int" in value:
        return int(value["$int"])
    if "$float" in value:
        return float(value["$float"])
    if "$bytes" in value:
        return bytes.fromhex(value["$bytes"])
    if "$ref" in value:
        return saved[value["$ref"]]
    if "$none" in value:
        return None
    if "$stream" in value:
        data = bytes.fromhex(value["$stream"])

        async def chunks():
            yield data

        if value.get("known"):
            from flarelet.bindings.jsobject import ByteStream  # a body with a known length

            return ByteStream.from_bytes(data)
        return chunks()
    if "$stmt" in value:
        sql, *rest = value["$stmt"]
        stmt = saved["__env"].DB.prepare(sql)
        return stmt.bind(*decode(rest[0], saved)) if rest else stmt
    if "$headers" in value:
        return _Headers(value["$headers"])
    if "$date" in value:
        from datetime import UTC, datetime

        return datetime.fromtimestamp(value["$date"] / 1000, UTC).replace(tzinfo=None)
    return {k: decode(v, saved) for k, v in value.items()}


def number(n):
    if isinstance(n, float):
        if math.isnan(n):
            return {"t": "float", "v": "nan"}
        if math.isinf(n):
            return {"t": "float", "v": "inf" if n > 0 else "-inf"}
        return {"t": "float", "v": n}
    if abs(n) > 2**53:
        return {"t": "int", "v": str(n)}
    return {"t": "int", "v": n}


async def encode(value, read=None):
    if value is None:
        return {"t": "none"}
    if isinstance(value, bool):
        return {"t": "bool", "v": value}
    if isinstance(value, (int, float)):
        return number(value)
    if isinstance(value, str):
        return {"t": "str", "v": value}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"t": "bytes", "v": bytes(value).hex()}
    if hasattr(value, "timestamp") and hasattr(value, "isoformat"):
        return {"t": "date", "v": value.timestamp() * 1000}
    if isinstance(value, (list, tuple)):
        return {"t": "list", "v": [await encode(v, read) for v in value]}
    if hasattr(value, "etag") and hasattr(value, "key") and hasattr(value, "version"):
        out = {field: await encode(getattr(value, field, None), read) for field in R2_FIELDS}
        checksums = getattr(value, "checksums", None)
        out["checksums"] = await encode(checksums.toJSON() if checksums is not None else None)
        if hasattr(value, "arrayBuffer"):
            if read == "text":
                out["body"] = {"t": "str", "v": await value.text()}
            elif read == "json":
                out["body"] = await encode(await value.json())
            else:
                out["body"] = {"t": "bytes", "v": bytes(await value.arrayBuffer()).hex()}
        return {"t": "r2object", "v": out}
    if hasattr(value, "uploadId") and hasattr(value, "key"):
        return {"t": "multipart", "v": {"key": await encode(value.key), "uploadId": await encode(value.uploadId)}}
    if isinstance(value, dict):
        return {"t": "obj", "v": {str(k): await encode(v, read) for k, v in value.items()}}
    return {"t": "unknown", "v": repr(value)}


def encode_error(exc):
    name = getattr(exc, "name", None) or type(exc).__name__
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = str(exc)
    return {"t": "error", "name": name, "message": message}


async def run_op(op, env, saved):
    target = saved[op["b"][1:]] if op["b"].startswith("$") else getattr(env, op["b"])
    result = getattr(target, op["m"])(*decode(op.get("a", []), saved))
    for method, args in op.get("then", []):
        if inspect.isawaitable(result):
            result = await result
        result = getattr(result, method)(*decode(args or [], saved))
    if inspect.isawaitable(result):
        result = await result
    if op.get("save"):
        saved[op["save"]] = result
    if op.get("headers"):
        headers = _Headers()
        result.writeHttpMetadata(headers)
        return await encode(dict(headers.items()))
    return await encode(result, op.get("read"))


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        ops = json.loads(await request.text())
        saved = {"__env": self.env}
        out = []
        for op in ops:
            try:
                out.append({"id": op["id"], "r": await run_op(op, self.env, saved)})
            except Exception as exc:  # every failure is a result to compare
                out.append({"id": op["id"], "r": encode_error(exc)})
        return Response(json.dumps(out), headers={"content-type": "application/json"})
