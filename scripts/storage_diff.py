"""Differential test of the storage bindings: the same KV, R2 and D1 operations on flarelet and Miniflare.

    cd scripts/storage_diff && npm install      # once: Miniflare from npm (node >= 20.3)
    .venv/bin/python scripts/storage_diff.py [--only kv|r2|d1] [--show-allowed] [--json out.json]

One list of operations (:data:`OPS`) runs through a Python Worker on flarelet
(``scripts/storage_diff/py_worker``, in process through :class:`flarelet.testing.Worker`) and
through a JavaScript worker on Miniflare (``scripts/storage_diff/worker.mjs``). Both encode every
value with its type as a Python Worker would receive it through Pyodide (a JS number is an
``int`` when integral and within 2^53, else a ``float``), every object field and every error
(name and message). The outputs are compared field by field; timestamps, random ids and
durations by shape only (type, and for ids length and alphabet).

A difference is *allowed* when :data:`ALLOWED` lists it with its reason: Cloudflare's production
behaviour (its docs, workerd's source) differs from Miniflare's there, and flarelet follows
production. Every other difference is printed, and the exit status is 1 when there is one.

Run on demand (it needs node and npm), not in CI's default run.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent / "storage_diff"

# -- the operations ------------------------------------------------------------------------------
# An operation: {"id", "b": binding or "$saved", "m": method, "a": args, "then": [[method, args]...],
# "save": name, "read": "text"|"json"|None (how to read an R2 body), "headers": True (writeHttpMetadata)}.
# Argument tags: {"$int": "123"} an int beyond JSON's exact range, {"$float": 5} a Python float,
# {"$bytes": hex}, {"$stream": hex, "known": bool}, {"$stmt": [sql, binds]}, {"$ref": name},
# {"$headers": {...}}, {"$date": ms}.


def _kv() -> Iterator[dict]:
    yield {"id": "kv.put", "b": "KV", "m": "put", "a": ["k1", "v1"]}
    yield {"id": "kv.get", "b": "KV", "m": "get", "a": ["k1"]}
    yield {"id": "kv.get.text", "b": "KV", "m": "get", "a": ["k1", "text"]}
    yield {"id": "kv.get.missing", "b": "KV", "m": "get", "a": ["nope"]}
    yield {"id": "kv.get.arrayBuffer", "b": "KV", "m": "get", "a": ["k1", {"type": "arrayBuffer"}]}
    yield {"id": "kv.put.json", "b": "KV", "m": "put", "a": ["j", '{"a": 1, "b": [1, 2.5]}']}
    yield {"id": "kv.get.json", "b": "KV", "m": "get", "a": ["j", "json"]}
    yield {"id": "kv.get.json.invalid", "b": "KV", "m": "get", "a": ["k1", "json"]}
    yield {"id": "kv.get.type.bad", "b": "KV", "m": "get", "a": ["k1", {"type": "xml"}]}
    yield {"id": "kv.get.cacheTtl.low", "b": "KV", "m": "get", "a": ["k1", {"cacheTtl": 10}]}
    yield {"id": "kv.put.metadata", "b": "KV", "m": "put", "a": ["m1", "v", {"metadata": {"x": 1, "y": [True]}}]}
    yield {"id": "kv.getWithMetadata", "b": "KV", "m": "getWithMetadata", "a": ["m1"]}
    yield {"id": "kv.getWithMetadata.missing", "b": "KV", "m": "getWithMetadata", "a": ["nope"]}
    yield {"id": "kv.getWithMetadata.nometa", "b": "KV", "m": "getWithMetadata", "a": ["k1"]}
    yield {"id": "kv.put.metadata.big", "b": "KV", "m": "put", "a": ["m2", "v", {"metadata": {"x": "a" * 1030}}]}
    yield {"id": "kv.put.ttl.low", "b": "KV", "m": "put", "a": ["t", "v", {"expirationTtl": 30}]}
    yield {"id": "kv.put.ttl.abc", "b": "KV", "m": "put", "a": ["t", "v", {"expirationTtl": "abc"}]}
    yield {"id": "kv.put.ttl.ok", "b": "KV", "m": "put", "a": ["t", "v", {"expirationTtl": 3600}]}
    yield {"id": "kv.put.expiration.past", "b": "KV", "m": "put", "a": ["t2", "v", {"expiration": 1000}]}
    yield {"id": "kv.put.key.empty", "b": "KV", "m": "put", "a": ["", "v"]}
    yield {"id": "kv.put.key.dot", "b": "KV", "m": "put", "a": [".", "v"]}
    yield {"id": "kv.put.key.dotdot", "b": "KV", "m": "put", "a": ["..", "v"]}
    yield {"id": "kv.put.key.long", "b": "KV", "m": "put", "a": ["k" * 513, "v"]}
    yield {"id": "kv.get.key.long", "b": "KV", "m": "get", "a": ["k" * 513]}
    yield {"id": "kv.put.unicode", "b": "KV", "m": "put", "a": ["ключ", "значение ✓"]}
    yield {"id": "kv.get.unicode", "b": "KV", "m": "get", "a": ["ключ"]}
    yield {"id": "kv.put.bytes", "b": "KV", "m": "put", "a": ["bin", {"$bytes": "00ff10"}]}
    yield {"id": "kv.get.bytes", "b": "KV", "m": "get", "a": ["bin", "arrayBuffer"]}
    yield {"id": "kv.get.bulk", "b": "KV", "m": "get", "a": [["k1", "nope", "ключ"]]}
    yield {"id": "kv.get.bulk.json", "b": "KV", "m": "get", "a": [["j"], "json"]}
    yield {"id": "kv.getWithMetadata.bulk", "b": "KV", "m": "getWithMetadata", "a": [["m1", "k1"]]}
    yield {"id": "kv.get.bulk.toomany", "b": "KV", "m": "get", "a": [[f"k{i}" for i in range(101)]]}
    for i in range(5):
        yield {"id": f"kv.put.p{i}", "b": "KV", "m": "put", "a": [f"p/{i}", str(i), {"metadata": {"i": i}}]}
    yield {"id": "kv.list", "b": "KV", "m": "list"}
    yield {"id": "kv.list.prefix", "b": "KV", "m": "list", "a": [{"prefix": "p/"}]}
    yield {"id": "kv.list.limit", "b": "KV", "m": "list", "a": [{"prefix": "p/", "limit": 2}], "save": "kvpage"}
    yield {"id": "kv.list.limit.zero", "b": "KV", "m": "list", "a": [{"limit": 0}]}
    yield {"id": "kv.list.limit.big", "b": "KV", "m": "list", "a": [{"limit": 1001}]}
    yield {"id": "kv.delete", "b": "KV", "m": "delete", "a": ["p/0"]}
    yield {"id": "kv.delete.missing", "b": "KV", "m": "delete", "a": ["nope"]}
    yield {"id": "kv.list.after.delete", "b": "KV", "m": "list", "a": [{"prefix": "p/"}]}
    yield {"id": "kv.put.overwrite", "b": "KV", "m": "put", "a": ["k1", "v2"]}
    yield {"id": "kv.get.overwrite", "b": "KV", "m": "get", "a": ["k1"]}
    yield {"id": "kv.put.number", "b": "KV", "m": "put", "a": ["n", 5]}
    yield {"id": "kv.get.number", "b": "KV", "m": "get", "a": ["n"]}


def _r2() -> Iterator[dict]:
    yield {"id": "r2.put.text", "b": "R2", "m": "put", "a": ["a.txt", "hello world"]}
    yield {"id": "r2.get.text", "b": "R2", "m": "get", "a": ["a.txt"], "read": "text"}
    yield {"id": "r2.head", "b": "R2", "m": "head", "a": ["a.txt"]}
    yield {"id": "r2.get.missing", "b": "R2", "m": "get", "a": ["nope"]}
    yield {"id": "r2.head.missing", "b": "R2", "m": "head", "a": ["nope"]}
    yield {"id": "r2.put.bytes", "b": "R2", "m": "put", "a": ["b.bin", {"$bytes": "000102ff"}]}
    yield {"id": "r2.get.bytes", "b": "R2", "m": "get", "a": ["b.bin"]}
    yield {"id": "r2.put.stream.known", "b": "R2", "m": "put", "a": ["s1", {"$stream": "6869", "known": True}]}
    yield {"id": "r2.put.stream.unknown", "b": "R2", "m": "put", "a": ["s2", {"$stream": "6869", "known": False}]}
    yield {"id": "r2.head.stream.unknown", "b": "R2", "m": "head", "a": ["s2"]}
    yield {"id": "r2.put.null", "b": "R2", "m": "put", "a": ["empty", None]}
    yield {"id": "r2.get.null", "b": "R2", "m": "get", "a": ["empty"], "read": "text"}
    http = {"contentType": "text/plain", "contentLanguage": "en", "cacheControl": "max-age=60"}
    yield {"id": "r2.put.httpMetadata", "b": "R2", "m": "put", "a": ["h.txt", "x", {"httpMetadata": http}]}
    yield {"id": "r2.head.httpMetadata", "b": "R2", "m": "head", "a": ["h.txt"]}
    yield {"id": "r2.writeHttpMetadata", "b": "R2", "m": "head", "a": ["h.txt"], "headers": True}
    yield {
        "id": "r2.put.httpMetadata.headers",
        "b": "R2",
        "m": "put",
        "a": ["h2.txt", "x", {"httpMetadata": {"$headers": {"content-type": "image/png", "content-encoding": "gzip"}}}],
    }
    yield {"id": "r2.head.httpMetadata.headers", "b": "R2", "m": "head", "a": ["h2.txt"]}
    custom = {"a": "1", "b": True, "c": 5, "d": {"$float": 2.5}}
    yield {
        "id": "r2.put.customMetadata.nonstring",
        "b": "R2",
        "m": "put",
        "a": ["c.txt", "x", {"customMetadata": custom}],
    }
    yield {"id": "r2.head.customMetadata.nonstring", "b": "R2", "m": "head", "a": ["c.txt"]}
    yield {
        "id": "r2.put.customMetadata.big",
        "b": "R2",
        "m": "put",
        "a": ["c2.txt", "x", {"customMetadata": {"k": "v" * 2100}}],
    }
    yield {
        "id": "r2.put.md5.ok",
        "b": "R2",
        "m": "put",
        "a": ["md5", "hello", {"md5": "5d41402abc4b2a76b9719d911017c592"}],
    }
    yield {"id": "r2.put.md5.bad", "b": "R2", "m": "put", "a": ["md5", "hello", {"md5": "0" * 32}]}
    yield {"id": "r2.put.md5.short", "b": "R2", "m": "put", "a": ["md5", "hello", {"md5": "abc"}]}
    sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    yield {"id": "r2.put.sha256", "b": "R2", "m": "put", "a": ["sha", "hello", {"sha256": sha}]}
    yield {"id": "r2.put.twohashes", "b": "R2", "m": "put", "a": ["sha", "hello", {"sha256": sha, "md5": "0" * 32}]}
    yield {"id": "r2.put.key.long", "b": "R2", "m": "put", "a": ["k" * 1025, "x"]}
    yield {"id": "r2.get.key.long", "b": "R2", "m": "get", "a": ["k" * 1025]}
    yield {"id": "r2.put.storageClass", "b": "R2", "m": "put", "a": ["ia", "x", {"storageClass": "InfrequentAccess"}]}
    for name, rng in [
        ("offset", {"offset": 2}),
        ("offset.length", {"offset": 2, "length": 3}),
        ("length", {"length": 4}),
        ("suffix", {"suffix": 3}),
        ("suffix.big", {"suffix": 100}),
        ("offset.past", {"offset": 50}),
        ("length.zero", {"length": 0}),
        ("offset.negative", {"offset": -1}),
        ("suffix.offset", {"suffix": 2, "offset": 1}),
        ("float", {"offset": 1.5}),
    ]:
        yield {"id": f"r2.get.range.{name}", "b": "R2", "m": "get", "a": ["a.txt", {"range": rng}], "read": "text"}
    for name, header in [
        ("header.ok", "bytes=0-4"),
        ("header.open", "bytes=6-"),
        ("header.suffix", "bytes=-5"),
        ("header.reversed", "bytes=9-2"),
        ("header.past", "bytes=50-60"),
        ("header.multi", "bytes=0-1,3-4"),
        ("header.garbage", "chars=1-2"),
    ]:
        yield {
            "id": f"r2.get.range.{name}",
            "b": "R2",
            "m": "get",
            "a": ["a.txt", {"range": {"$headers": {"range": header}}}],
            "read": "text",
        }
    yield {"id": "r2.head.for.etag", "b": "R2", "m": "head", "a": ["a.txt"], "save": "a_head"}
    yield {
        "id": "r2.get.onlyIf.etagMatches.wrong",
        "b": "R2",
        "m": "get",
        "a": ["a.txt", {"onlyIf": {"etagMatches": "abc"}}],
    }
    yield {
        "id": "r2.get.onlyIf.etagDoesNotMatch.same",
        "b": "R2",
        "m": "get",
        "a": ["a.txt", {"onlyIf": {"etagDoesNotMatch": "5eb63bbbe01eeed093cb22bb8f5acdc3"}}],
    }
    yield {
        "id": "r2.get.onlyIf.etagMatches.same",
        "b": "R2",
        "m": "get",
        "a": ["a.txt", {"onlyIf": {"etagMatches": "5eb63bbbe01eeed093cb22bb8f5acdc3"}}],
        "read": "text",
    }
    yield {
        "id": "r2.get.onlyIf.headers.ifNoneMatch",
        "b": "R2",
        "m": "get",
        "a": ["a.txt", {"onlyIf": {"$headers": {"if-none-match": '"5eb63bbbe01eeed093cb22bb8f5acdc3"'}}}],
    }
    yield {
        "id": "r2.put.onlyIf.fails",
        "b": "R2",
        "m": "put",
        "a": ["a.txt", "new", {"onlyIf": {"etagMatches": "abc"}}],
    }
    yield {
        "id": "r2.put.onlyIf.uploadedBefore.past",
        "b": "R2",
        "m": "put",
        "a": ["a.txt", "new", {"onlyIf": {"uploadedBefore": {"$date": 1000}}}],
    }
    yield {"id": "r2.get.json", "b": "R2", "m": "get", "a": ["j"], "read": "json"}
    yield {"id": "r2.put.json", "b": "R2", "m": "put", "a": ["j", '{"a": [1, 2.5, null]}']}
    yield {"id": "r2.get.json.after", "b": "R2", "m": "get", "a": ["j"], "read": "json"}
    for key in ["dir/a", "dir/b", "dir/sub/c", "dir/sub/d", "e"]:
        yield {
            "id": f"r2.put.list.{key}",
            "b": "R2",
            "m": "put",
            "a": [key, key, {"httpMetadata": {"contentType": "text/plain"}, "customMetadata": {"k": key}}],
        }
    yield {"id": "r2.list", "b": "R2", "m": "list"}
    yield {"id": "r2.list.noinclude.metadata", "b": "R2", "m": "list", "a": [{"prefix": "dir/"}]}
    yield {
        "id": "r2.list.include",
        "b": "R2",
        "m": "list",
        "a": [{"prefix": "dir/", "include": ["httpMetadata", "customMetadata"]}],
    }
    yield {
        "id": "r2.list.include.custom",
        "b": "R2",
        "m": "list",
        "a": [{"prefix": "dir/", "include": ["customMetadata"]}],
    }
    yield {"id": "r2.list.include.bad", "b": "R2", "m": "list", "a": [{"include": ["nope"]}]}
    yield {"id": "r2.list.delimiter", "b": "R2", "m": "list", "a": [{"prefix": "dir/", "delimiter": "/"}]}
    yield {"id": "r2.list.delimiter.root", "b": "R2", "m": "list", "a": [{"delimiter": "/"}]}
    yield {"id": "r2.list.startAfter", "b": "R2", "m": "list", "a": [{"prefix": "dir/", "startAfter": "dir/b"}]}
    yield {"id": "r2.list.limit", "b": "R2", "m": "list", "a": [{"prefix": "dir/", "limit": 2}]}
    yield {"id": "r2.list.limit.zero", "b": "R2", "m": "list", "a": [{"limit": 0}]}
    yield {"id": "r2.list.limit.big", "b": "R2", "m": "list", "a": [{"limit": 1001}]}
    yield {"id": "r2.delete.one", "b": "R2", "m": "delete", "a": ["e"]}
    yield {"id": "r2.delete.many", "b": "R2", "m": "delete", "a": [["dir/a", "dir/b", "nope"]]}
    yield {"id": "r2.list.after.delete", "b": "R2", "m": "list", "a": [{"prefix": "dir/"}]}
    yield {"id": "r2.delete.1001", "b": "R2", "m": "delete", "a": [[f"x{i}" for i in range(1001)]]}
    # multipart
    mp_http = {"httpMetadata": {"contentType": "application/octet-stream"}, "customMetadata": {"m": "1"}}
    yield {"id": "r2.mp.create", "b": "R2", "m": "createMultipartUpload", "a": ["mp", mp_http], "save": "mp"}
    part = "61" * (5 * 1024 * 1024)
    yield {"id": "r2.mp.part1", "b": "$mp", "m": "uploadPart", "a": [1, {"$bytes": part}], "save": "p1"}
    yield {"id": "r2.mp.part2", "b": "$mp", "m": "uploadPart", "a": [2, "tail"], "save": "p2"}
    yield {"id": "r2.mp.part0", "b": "$mp", "m": "uploadPart", "a": [0, "x"]}
    yield {"id": "r2.mp.part10001", "b": "$mp", "m": "uploadPart", "a": [10001, "x"]}
    yield {"id": "r2.mp.complete", "b": "$mp", "m": "complete", "a": [[{"$ref": "p1"}, {"$ref": "p2"}]]}
    yield {"id": "r2.mp.head", "b": "R2", "m": "head", "a": ["mp"]}
    yield {"id": "r2.mp.get.range", "b": "R2", "m": "get", "a": ["mp", {"range": {"suffix": 6}}], "read": "text"}
    yield {"id": "r2.mp.complete.again", "b": "$mp", "m": "complete", "a": [[{"$ref": "p1"}, {"$ref": "p2"}]]}
    yield {"id": "r2.mp.abort.after.complete", "b": "$mp", "m": "abort"}
    yield {"id": "r2.mp2.create", "b": "R2", "m": "createMultipartUpload", "a": ["mp2"], "save": "mp2"}
    yield {"id": "r2.mp2.complete.empty", "b": "$mp2", "m": "complete", "a": [[]]}
    yield {"id": "r2.mp2.get", "b": "R2", "m": "get", "a": ["mp2"], "read": "text"}
    yield {"id": "r2.mp3.create", "b": "R2", "m": "createMultipartUpload", "a": ["mp3"], "save": "mp3"}
    yield {"id": "r2.mp3.small1", "b": "$mp3", "m": "uploadPart", "a": [1, "small"], "save": "q1"}
    yield {"id": "r2.mp3.small2", "b": "$mp3", "m": "uploadPart", "a": [2, "small"], "save": "q2"}
    yield {"id": "r2.mp3.complete.small", "b": "$mp3", "m": "complete", "a": [[{"$ref": "q1"}, {"$ref": "q2"}]]}
    yield {"id": "r2.mp3.complete.wrongetag", "b": "$mp3", "m": "complete", "a": [[{"partNumber": 1, "etag": "x"}]]}
    yield {"id": "r2.mp3.abort", "b": "$mp3", "m": "abort"}
    yield {"id": "r2.mp3.abort.again", "b": "$mp3", "m": "abort"}
    yield {"id": "r2.mp3.part.after.abort", "b": "$mp3", "m": "uploadPart", "a": [1, "x"]}
    yield {"id": "r2.mp.resume.bogus", "b": "R2", "m": "resumeMultipartUpload", "a": ["mp4", "bogus"], "save": "mp4"}
    yield {"id": "r2.mp.resume.bogus.part", "b": "$mp4", "m": "uploadPart", "a": [1, "x"]}
    yield {"id": "r2.mp.resume.bogus.abort", "b": "$mp4", "m": "abort"}


def _d1() -> Iterator[dict]:
    def q(id_: str, sql: str, binds: list | None = None, method: str = "all", margs: list | None = None) -> dict:
        then = [["bind", binds]] if binds is not None else []
        return {"id": id_, "b": "DB", "m": "prepare", "a": [sql], "then": [*then, [method, margs or []]]}

    yield q("d1.create", "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, v)", None, "run")
    yield q("d1.insert", "INSERT INTO t (name, score, v) VALUES (?, ?, ?)", ["ada", 1.5, 42], "run")
    yield q("d1.insert.2", "INSERT INTO t (name, score, v) VALUES (?, ?, ?)", ["bob", 2, True], "run")
    yield q("d1.select.all", "SELECT * FROM t ORDER BY id")
    yield q("d1.select.typeof", "SELECT typeof(score) AS s, typeof(v) AS v FROM t ORDER BY id")
    yield q("d1.bind.int.divide", "SELECT ? / 2 AS x", [5], "first")
    yield q("d1.bind.int.typeof", "SELECT typeof(?) AS t", [42], "first")
    yield q("d1.bind.bool.typeof", "SELECT typeof(?) AS t, ? AS v", [True, True], "first")
    yield q("d1.bind.float.typeof", "SELECT typeof(?) AS t", [2.5], "first")
    yield q("d1.bind.float.whole.typeof", "SELECT typeof(?) AS t, ? AS v", [{"$float": 5}, {"$float": 5}], "first")
    yield q("d1.bind.string", "SELECT ? AS s, typeof(?) AS t", ["x", "x"], "first")
    yield q("d1.bind.null", "SELECT ? AS n", [{"$none": 1}], "first")
    yield q("d1.bind.bytes", "SELECT ? AS b, typeof(?) AS t", [{"$bytes": "00ff"}, {"$bytes": "00ff"}], "first")
    yield q("d1.bind.2pow53", "SELECT ? AS x, typeof(?) AS t", [2**53, 2**53], "first")
    yield q("d1.bind.bigint", "SELECT ? AS x", [{"$int": str(2**53 + 1)}], "first")
    yield q("d1.bind.int64max", "SELECT ? AS x", [{"$int": str(2**63 - 1)}], "first")
    yield q("d1.bind.object", "SELECT ? AS x", [{"a": 1}], "first")
    yield q("d1.result.bigint", "SELECT 9007199254740993 AS x", None, "first")
    yield q("d1.result.int64max", "SELECT 9223372036854775807 AS x, -9223372036854775808 AS y", None, "first")
    yield q("d1.result.2pow53", "SELECT 9007199254740992 AS x", None, "first")
    yield q("d1.result.real.whole", "SELECT 3.0 AS x, 2.5 AS y", None, "first")
    yield q("d1.result.inf", "SELECT 1e300*1e10 AS x", None, "first")
    yield q("d1.result.blob", "SELECT x'00ff10' AS b", None, "first")
    yield q("d1.untyped.column.stores", "INSERT INTO t (name, v) VALUES ('c', ?)", [7], "run")
    yield q("d1.untyped.column.typeof", "SELECT typeof(v) AS t FROM t WHERE name = 'c'", None, "first")
    yield q("d1.first.column", "SELECT name FROM t ORDER BY id", None, "first", ["name"])
    yield q("d1.first.column.missing", "SELECT name FROM t ORDER BY id", None, "first", ["nope"])
    yield q("d1.first.empty", "SELECT name FROM t WHERE id = -1", None, "first")
    yield q("d1.raw", "SELECT id, name FROM t ORDER BY id", None, "raw")
    yield q("d1.raw.columnNames", "SELECT id, name FROM t ORDER BY id", None, "raw", [{"columnNames": True}])
    yield q("d1.run.select", "SELECT id FROM t ORDER BY id", None, "run")
    yield q("d1.error.syntax", "SELEC 1")
    yield q("d1.error.syntax.offset", "SELECT * FROM t WHERE")
    yield q("d1.error.notable", "SELECT * FROM nope")
    yield q("d1.error.nocolumn", "SELECT nope FROM t")
    yield q("d1.error.syntax.second.statement", "SELECT 1;  SELEC 2")
    yield q("d1.error.syntax.repeated.token", "SELECT 1 + + FROM FROM t")
    yield q("d1.error.unrecognized.token", "SELECT 'abc")
    yield q("d1.error.syntax.leading.space", "   SELECT * FROM t WHERE id = = 1")
    yield q("d1.error.nofunction", "SELECT nofn(1)")
    yield q("d1.error.notnull", "INSERT INTO t (name) VALUES (NULL)", None, "run")
    yield q("d1.create.t5", "CREATE TABLE t5 (k TEXT PRIMARY KEY, v INTEGER UNIQUE)", None, "run")
    yield q("d1.insert.t5", "INSERT INTO t5 VALUES ('a', 1)", None, "run")
    yield q("d1.error.unique.pk", "INSERT INTO t5 VALUES ('a', 2)", None, "run")
    yield q("d1.error.unique.column", "INSERT INTO t5 VALUES ('b', 1)", None, "run")
    yield q("d1.create.fk", "CREATE TABLE c (id INTEGER PRIMARY KEY, t_id INTEGER REFERENCES t(id))", None, "run")
    yield q("d1.error.fk", "INSERT INTO c (t_id) VALUES (999)", None, "run")
    yield q("d1.error.check", "CREATE TABLE ck (x INTEGER CHECK (x > 0))", None, "run")
    yield q("d1.error.check.insert", "INSERT INTO ck VALUES (-1)", None, "run")
    yield q("d1.error.toolong", "SELECT '" + "a" * 100_001 + "'")
    yield q("d1.error.comment.only", "-- nothing here")
    yield q("d1.error.empty", "")
    yield q("d1.error.bindings.count", "SELECT ?, ?", [1])
    yield q("d1.error.begin", "BEGIN TRANSACTION", None, "run")
    yield q("d1.error.pragma.denied", "PRAGMA journal_mode", None, "all")
    yield q("d1.pragma.table_list", "PRAGMA table_list", None, "all")
    yield q("d1.pragma.table_info", "PRAGMA table_info(t5)", None, "all")
    yield q("d1.bind.long.string", "SELECT length(?) AS n", ["a" * 2_000_001], "first")
    yield q("d1.bind.max.string", "SELECT length(?) AS n", ["a" * 2_000_000], "first")
    yield q("d1.multi.statement", "SELECT 1 AS a; SELECT 2 AS b", None, "all")
    yield q("d1.multi.statement.bind", "SELECT ? AS a; SELECT ? AS b", [1, 2], "all")
    yield q("d1.create.cnt", "CREATE TABLE cnt (n INTEGER)", None, "run")
    yield {
        "id": "d1.exec.fill",
        "b": "DB",
        "m": "exec",
        "a": ["\n".join(f"INSERT INTO cnt VALUES ({i});" for i in range(10))],
    }
    yield q("d1.meta.count.rows_read", "SELECT count(*) AS c FROM cnt", None, "all")
    yield q("d1.meta.constant.rows_read", "SELECT 1 AS one", None, "all")
    yield q("d1.meta.update.rows", "UPDATE cnt SET n = n + 100 WHERE n < 2", None, "run")
    yield q("d1.meta.delete.rows", "DELETE FROM cnt WHERE n >= 108", None, "run")
    yield q("d1.meta.insert.textpk", "INSERT INTO t5 VALUES ('z', 99)", None, "run")
    yield q("d1.meta.insert.rowid", "INSERT INTO cnt VALUES (5)", None, "run")
    yield q("d1.meta.create.table", "CREATE TABLE m (x)", None, "run")
    yield q("d1.meta.select.where", "SELECT n FROM cnt WHERE n > 5 ORDER BY n", None, "all")
    yield q("d1.meta.insert.returning", "INSERT INTO cnt VALUES (1000) RETURNING n", None, "all")
    # rows_read / rows_written (D1's VM counters) across statement shapes
    yield q("d1.rows.create.u", "CREATE TABLE u (id INTEGER PRIMARY KEY, name TEXT, age INTEGER)", None, "run")
    yield q("d1.rows.insert.multi", "INSERT INTO u (name, age) VALUES ('a', 1), ('b', 2), ('c', 3), ('d', 4), ('e', 5)")
    yield q("d1.rows.create.index", "CREATE INDEX u_age ON u(age)", None, "run")
    yield q("d1.rows.insert.multi.textpk", "INSERT INTO t5 VALUES ('b', 2), ('c', 3), ('d', 4)", None, "run")
    yield q("d1.rows.rowid.hit", "SELECT * FROM u WHERE id = ?", [3])
    yield q("d1.rows.rowid.miss", "SELECT * FROM u WHERE id = ?", [99])
    yield q("d1.rows.index.eq", "SELECT * FROM u WHERE age = ?", [3])
    yield q("d1.rows.index.eq.last", "SELECT * FROM u WHERE age = ?", [5])
    yield q("d1.rows.index.eq.none", "SELECT * FROM u WHERE age = ?", [99])
    yield q("d1.rows.index.range.open", "SELECT * FROM u WHERE age > ?", [2])
    yield q("d1.rows.index.range", "SELECT name FROM u WHERE age BETWEEN 2 AND 3")
    yield q("d1.rows.index.count", "SELECT count(*) AS c FROM u WHERE age > 2")
    yield q("d1.rows.index.count.eq", "SELECT count(*) AS c FROM u WHERE age = ?", [3])
    yield q("d1.rows.full.scan", "SELECT * FROM u WHERE name = ?", ["c"])
    yield q("d1.rows.full.scan.limit", "SELECT * FROM cnt LIMIT 3")
    yield q("d1.rows.full.scan.filter.limit", "SELECT * FROM cnt WHERE n > 4 LIMIT 1")
    yield q("d1.rows.full.scan.filter.limit.late", "SELECT * FROM cnt WHERE n = 7 LIMIT 1")
    yield q("d1.rows.full.scan.filter.limit.unmet", "SELECT * FROM cnt WHERE n > 4 LIMIT 50")
    yield q("d1.rows.sort", "SELECT * FROM cnt ORDER BY n DESC")
    yield q("d1.rows.max.index", "SELECT max(age) AS m FROM u")
    yield q("d1.rows.join.rowid", "SELECT * FROM cnt JOIN u ON u.id = cnt.n")
    yield q("d1.rows.join.unique", "SELECT u.name, t5.k FROM u JOIN t5 ON t5.v = u.age")
    yield q("d1.rows.join.cross", "SELECT u.name FROM u, cnt")
    yield q("d1.rows.join.auto.index", "SELECT * FROM u JOIN cnt ON cnt.n = u.age")
    yield q("d1.rows.update.index", "UPDATE u SET age = age + 1 WHERE id = 2", None, "run")
    yield q("d1.rows.update.noindex", "UPDATE u SET name = 'z' WHERE id = 2", None, "run")
    yield q("d1.rows.delete.one", "DELETE FROM u WHERE id = 1", None, "run")
    yield q("d1.rows.insert.select", "INSERT INTO cnt SELECT n FROM cnt", None, "run")
    yield q("d1.rows.upsert", "INSERT INTO t5 VALUES ('b', 2) ON CONFLICT(k) DO UPDATE SET v = 20", None, "run")
    yield q("d1.rows.autoincrement.create", "CREATE TABLE ai (id INTEGER PRIMARY KEY AUTOINCREMENT, x)", None, "run")
    yield q("d1.rows.autoincrement.insert", "INSERT INTO ai (x) VALUES (1), (2)", None, "run")
    yield q("d1.rows.without.rowid", "CREATE TABLE wr (k TEXT PRIMARY KEY, v) WITHOUT ROWID", None, "run")
    yield q("d1.rows.without.rowid.insert", "INSERT INTO wr VALUES ('a', 1), ('b', 2)", None, "run")
    yield q("d1.rows.delete.all", "DELETE FROM u", None, "run")
    yield q("d1.rows.drop.table", "DROP TABLE wr", None, "run")
    yield q("d1.rows.multi.statement", "SELECT 1; SELECT count(*) AS c FROM cnt")
    yield {"id": "d1.exec.ok", "b": "DB", "m": "exec", "a": ["CREATE TABLE e (x);\nINSERT INTO e VALUES (1);"]}
    yield {"id": "d1.exec.error.line2", "b": "DB", "m": "exec", "a": ["INSERT INTO e VALUES (2);\nSELEC bad;"]}
    yield {"id": "d1.exec.empty", "b": "DB", "m": "exec", "a": ["   "]}
    yield {"id": "d1.exec.comment.only", "b": "DB", "m": "exec", "a": ["-- nothing"]}
    yield {
        "id": "d1.exec.blank.and.comment.lines",
        "b": "DB",
        "m": "exec",
        "a": ["INSERT INTO e VALUES (3);\n\n-- a comment\nINSERT INTO e VALUES (4); INSERT INTO e VALUES (5);"],
    }
    yield {"id": "d1.exec.error.line1", "b": "DB", "m": "exec", "a": ["SELEC 1;\nINSERT INTO e VALUES (6);"]}
    yield {
        "id": "d1.exec.check.rollback",
        "b": "DB",
        "m": "prepare",
        "a": ["SELECT count(*) AS c FROM e"],
        "then": [["first", ["c"]]],
    }
    yield {
        "id": "d1.batch.ok",
        "b": "DB",
        "m": "batch",
        "a": [[{"$stmt": ["INSERT INTO e VALUES (?)", [10]]}, {"$stmt": ["SELECT x FROM e ORDER BY x", []]}]],
    }
    yield {
        "id": "d1.batch.fail",
        "b": "DB",
        "m": "batch",
        "a": [[{"$stmt": ["INSERT INTO e VALUES (?)", [20]]}, {"$stmt": ["SELEC", []]}]],
    }
    yield {
        "id": "d1.batch.rolledback",
        "b": "DB",
        "m": "prepare",
        "a": ["SELECT count(*) AS c FROM e WHERE x = 20"],
        "then": [["first", ["c"]]],
    }
    yield {"id": "d1.batch.empty", "b": "DB", "m": "batch", "a": [[]]}
    yield {"id": "d1.dump", "b": "DB", "m": "dump"}
    yield {
        "id": "d1.session.bookmark",
        "b": "DB",
        "m": "withSession",
        "a": ["first-primary"],
        "then": [["getBookmark", []]],
    }
    yield {
        "id": "d1.session.query",
        "b": "DB",
        "m": "withSession",
        "a": ["first-primary"],
        "then": [["prepare", ["SELECT 1 AS x"]], ["first", []]],
    }


OPS: dict[str, list[dict]] = {"kv": list(_kv()), "r2": list(_r2()), "d1": list(_d1())}

# -- allowed differences ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Allowed:
    """A difference kept on purpose: op ids and result paths (fnmatch patterns) and the reason."""

    ids: tuple[str, ...]
    path: str
    reason: str


ALLOWED: list[Allowed] = [
    Allowed(
        ("r2.*",),
        "*storageClass",
        'R2 reports the storage class, "Standard" by default (R2\'s object docs); Miniflare leaves it ""',
    ),
    Allowed(
        ("r2.mp.resume.bogus.abort",),
        "<value>",
        "an uploadId R2 never issued is a missing upload (10024), as for any unknown id; Miniflare fails to "
        "decode the malformed id and reports an internal error (10001)",
    ),
    Allowed(
        ("d1.pragma.table_list",),
        "*",
        "Miniflare's Durable Object storage keeps its own _cf_METADATA table in the database file, not part "
        "of D1's documented schema",
    ),
    Allowed(
        ("d1.bind.long.string",),
        "<value>",
        "D1's documented limit: strings and BLOBs up to 2,000,000 bytes (D1 limits); Miniflare does not enforce it",
    ),
    Allowed(
        ("d1.rows.create.index",),
        "*rows_read",
        "CREATE INDEX on a table with rows: workerd's newer SQLite reads 2 rows more (1 for a one-row table) "
        "than the program flarelet's SQLite compiles; flarelet counts the table scan and the sort",
    ),
    Allowed(
        ("d1.rows.drop.table",),
        "*rows_read",
        "DROP TABLE scans sqlite_schema, where Miniflare's Durable Object storage keeps its own _cf_METADATA "
        "row (see d1.pragma.table_list)",
    ),
    Allowed(
        ("d1.rows.index.eq.last",),
        "*rows_read",
        "an index range that ends at the index's last entry: D1 has no entry to step past; flarelet estimates "
        "from the program, which cannot see where the range ends, and counts one",
    ),
    Allowed(
        ("d1.rows.full.scan.filter.limit.late", "d1.rows.join.auto.index"),
        "*rows_read",
        "Python's sqlite3 has no row counters (D1's come from a patch to SQLite's VM), so flarelet estimates "
        "from the statement's program: a filtered scan that stops at its LIMIT counts the rows returned (D1: "
        "the rows scanned until then), a join through an automatic index or Bloom filter its probes",
    ),
    Allowed(
        ("d1.rows.upsert",),
        "*",
        "an upsert: flarelet's estimate counts both the insert's and the update's writes",
    ),
    Allowed(
        ("d1.*",),
        "*duration",
        "production D1 reports fractional milliseconds (D1's return-object docs: 0.2552); Miniflare's clock "
        "gives whole ones",
    ),
    Allowed(
        (
            "d1.select.typeof",
            "d1.bind.int.divide",
            "d1.bind.int.typeof",
            "d1.bind.bool.typeof",
            "d1.bind.float.whole.typeof",
            "d1.bind.2pow53",
            "d1.untyped.column.typeof",
        ),
        "*",
        "D1 stores an integral JS Number (and a Boolean) as INTEGER (D1's type-conversion docs); Miniflare "
        "binds every Number as REAL",
    ),
]

#: result fields compared by shape only (type; for strings also length and alphabet), and so is
#: a part's ``etag`` (random, as uploadIds are)
VOLATILE = {"expiration", "uploaded", "version", "uploadId", "duration", "sql_duration_ms", "size_after", "cursor"}

# -- running ---------------------------------------------------------------------------------------


def run_flarelet(ops: list[dict]) -> list[dict]:
    from flarelet.testing import Worker

    async def main() -> list[dict]:
        async with Worker.from_config(HERE / "py_worker") as worker:
            response = await worker.fetch("/", method="POST", body=json.dumps(ops))
            return json.loads(await response.text())

    return asyncio.run(main())


def run_miniflare(ops: list[dict]) -> list[dict]:
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "miniflare").is_dir():
        sys.exit("Miniflare is not installed: cd scripts/storage_diff && npm install")
    with tempfile.TemporaryDirectory() as tmp:
        ops_path, out_path = Path(tmp, "ops.json"), Path(tmp, "out.json")
        ops_path.write_text(json.dumps(ops))
        proc = subprocess.run(
            [node, str(HERE / "miniflare.mjs"), str(ops_path), str(out_path)],
            capture_output=True,
            text=True,
            cwd=HERE,
            check=False,
        )
        if proc.returncode != 0:
            sys.exit(f"miniflare failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        text = out_path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        sys.exit(f"miniflare's worker did not answer JSON:\n{text[:4000]}")


# -- comparing -------------------------------------------------------------------------------------


def _shape(value: Any) -> Any:
    if isinstance(value, dict) and value.get("t") == "str":
        text = value["v"]
        alphabet = "hex" if all(c in "0123456789abcdef" for c in text) else "other"
        return ("str", len(text), alphabet)
    if isinstance(value, dict):
        return value.get("t")
    return type(value).__name__


def diff(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Differences between two encoded results: ``(path, flarelet, miniflare)``."""
    if (
        isinstance(a, dict)
        and isinstance(b, dict)
        and a.get("t") == b.get("t")
        and a.get("t") in ("obj", "r2object", "multipart")
    ):
        out = []
        for key in sorted(set(a["v"]) | set(b["v"])):
            sub = f"{path}.{key}" if path else key
            if key not in a["v"] or key not in b["v"]:
                out.append((sub, a["v"].get(key, "<absent>"), b["v"].get(key, "<absent>")))
            elif key in VOLATILE or (key == "etag" and "partNumber" in a["v"]):
                if _shape(a["v"][key]) != _shape(b["v"][key]):
                    out.append((sub, _shape(a["v"][key]), _shape(b["v"][key])))
            else:
                out.extend(diff(a["v"][key], b["v"][key], sub))
        return out
    if isinstance(a, dict) and isinstance(b, dict) and a.get("t") == b.get("t") == "list":
        if len(a["v"]) != len(b["v"]):
            return [(f"{path}.length", len(a["v"]), len(b["v"]))]
        out = []
        for i, (x, y) in enumerate(zip(a["v"], b["v"], strict=True)):
            out.extend(diff(x, y, f"{path}[{i}]"))
        return out
    if isinstance(a, dict) and isinstance(b, dict) and a.get("t") == b.get("t") == "float":
        a_v, b_v = a["v"], b["v"]
        same = a_v == b_v if isinstance(a_v, str) or isinstance(b_v, str) else float(a_v) == float(b_v)
        return [] if same else [(path or "<value>", a, b)]
    return [] if a == b else [(path or "<value>", a, b)]


def allowed_reason(op_id: str, path: str) -> str | None:
    for rule in ALLOWED:
        if any(fnmatch.fnmatchcase(op_id, ids) for ids in rule.ids) and fnmatch.fnmatchcase(path, rule.path):
            return rule.reason
    return None


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 160 else text[:157] + "..."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(OPS), action="append")
    parser.add_argument("--show-allowed", action="store_true", help="print the allowed differences too")
    parser.add_argument("--json", type=Path, help="write both sides' raw results here")
    args = parser.parse_args()
    kinds = args.only or list(OPS)
    ops = [op for kind in kinds for op in OPS[kind]]
    ours = {r["id"]: r["r"] for r in run_flarelet(ops)}
    theirs = {r["id"]: r["r"] for r in run_miniflare(ops)}
    if args.json:
        args.json.write_text(json.dumps({"flarelet": ours, "miniflare": theirs}, indent=1))
    rows = []
    unexpected = 0
    for kind in kinds:
        same = allowed_only = differing = 0
        for op in OPS[kind]:
            found = diff(ours.get(op["id"]), theirs.get(op["id"]))
            if not found:
                same += 1
                continue
            bad = [(p, a, b) for p, a, b in found if allowed_reason(op["id"], p) is None]
            if bad:
                differing += 1
            else:
                allowed_only += 1
            for p, a, b in found:
                reason = allowed_reason(op["id"], p)
                if reason is None or args.show_allowed:
                    tag = "DIFF" if reason is None else f"allowed ({reason})"
                    print(f"{tag} {op['id']} {p}\n    flarelet:  {_short(a)}\n    miniflare: {_short(b)}")
        unexpected += differing
        rows.append((kind, len(OPS[kind]), same, allowed_only, differing))
    print()
    print("| binding | operations | identical | identical but for allowed differences | differing |")
    print("|---|---|---|---|---|")
    for kind, total, same, allowed_only, differing in rows:
        print(f"| {kind.upper()} | {total} | {same} | {allowed_only} | {differing} |")
    if args.show_allowed or unexpected == 0:
        print("\nAllowed differences:")
        for rule in ALLOWED:
            print(f"- {', '.join(rule.ids)} {rule.path}: {rule.reason}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
