"""R2 binding: objects, metadata, ranges, conditions, checksums, listing, multipart and limits."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import string
from pathlib import Path

import pytest

from flarelet.bindings.jsobject import ByteStream
from flarelet.bindings.r2 import R2Bucket, R2Error, R2Limits, R2Object, R2ObjectBody


async def test_put_get_head_roundtrip(r2: R2Bucket) -> None:
    data = b"hello world"
    stored = await r2.put("docs/hello.txt", data)
    md5 = hashlib.md5(data).hexdigest()
    assert isinstance(stored, R2Object)
    assert stored.key == "docs/hello.txt" and stored.size == len(data)
    assert stored.etag == md5 and stored.httpEtag == f'"{md5}"'
    assert stored.checksums.md5 == bytes.fromhex(md5)
    assert stored.checksums.toJSON() == {"md5": md5}
    assert isinstance(stored.uploaded, dt.datetime) and stored.uploaded.tzinfo is None
    assert len(stored.version) == 32 and stored.storageClass == "Standard"
    assert stored.range is None

    got = await r2.get("docs/hello.txt")
    assert isinstance(got, R2ObjectBody)
    assert got.etag == md5 and got.version == stored.version
    assert got.range == {"offset": 0, "length": len(data)}
    assert await got.text() == "hello world"

    head = await r2.head("docs/hello.txt")
    assert type(head) is R2Object and head.size == len(data) and head.etag == md5
    assert await r2.get("missing") is None
    assert await r2.head("missing") is None


async def test_body_readers(r2: R2Bucket) -> None:
    await r2.put("j", '{"a": [1, {"b": 2}]}')
    assert (await (await r2.get("j")).json()).a[1].b == 2
    assert await (await r2.get("j")).arrayBuffer() == b'{"a": [1, {"b": 2}]}'
    assert await (await r2.get("j")).bytes() == b'{"a": [1, {"b": 2}]}'
    obj = await r2.get("j")
    assert isinstance(obj.body, ByteStream)
    assert b"".join([chunk async for chunk in obj.body]) == b'{"a": [1, {"b": 2}]}'
    assert obj.bodyUsed is True
    with pytest.raises(TypeError, match="Body has already been used"):
        await obj.text()
    again = await r2.get("j")
    await again.text()
    with pytest.raises(TypeError, match="Body has already been used"):
        await again.arrayBuffer()


async def test_large_body_streams_in_chunks(r2: R2Bucket) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    await r2.put("big", data)
    chunks = [chunk async for chunk in (await r2.get("big")).body]
    assert len(chunks) > 1 and b"".join(chunks) == data


async def test_put_accepts_str_bytes_streams_and_none(r2: R2Bucket) -> None:
    async def gen():
        yield b"ab"
        yield "cé"

    known = ByteStream(gen(), length=5)  # a stream that knows its length, as a request body does
    assert (await r2.put("s", known)).size == 5
    assert await (await r2.get("s")).text() == "abcé"
    # an R2 body stream knows its length too, so it can be copied to another key
    assert (await r2.put("copy", (await r2.get("s")).body)).size == 5
    await r2.put("mv", memoryview(b"xyz"))
    assert await (await r2.get("mv")).text() == "xyz"
    empty = await r2.put("empty", None)
    assert empty.size == 0 and empty.etag == hashlib.md5(b"").hexdigest()
    assert await (await r2.get("empty")).arrayBuffer() == b""
    with pytest.raises(TypeError):
        await r2.put("bad", {"not": "a body"})


async def test_http_and_custom_metadata(r2: R2Bucket) -> None:
    expiry = dt.datetime(2030, 1, 2, 3, 4, 5)
    put = await r2.put(
        "m",
        "x",
        httpMetadata={"contentType": "text/plain", "cacheControl": "max-age=60", "cacheExpiry": expiry},
        customMetadata={"owner": "ann", "n": 1},
    )
    assert put.httpMetadata == {"contentType": "text/plain", "cacheControl": "max-age=60", "cacheExpiry": expiry}
    assert put.customMetadata == {"owner": "ann", "n": "1"}
    got = await r2.get("m")
    assert got.httpMetadata.contentType == "text/plain"
    assert got.customMetadata.owner == "ann"
    headers: dict[str, str] = {}
    got.writeHttpMetadata(headers)
    assert headers == {
        "content-type": "text/plain",
        "cache-control": "max-age=60",
        "expires": "Wed, 02 Jan 2030 03:04:05 GMT",
    }


class _Headers:
    def __init__(self, values: dict[str, str]) -> None:
        self._values = {k.lower(): v for k, v in values.items()}

    def get(self, name: str) -> str | None:
        return self._values.get(name.lower())


async def test_http_metadata_from_headers(r2: R2Bucket) -> None:
    await r2.put("h", "x", httpMetadata=_Headers({"Content-Type": "image/png", "Content-Language": "fr"}))
    meta = (await r2.head("h")).httpMetadata
    assert meta == {"contentType": "image/png", "contentLanguage": "fr"}


@pytest.mark.parametrize(
    ("range_", "expected", "span"),
    [
        ({"offset": 2}, b"23456789", (2, 8)),
        ({"offset": 2, "length": 3}, b"234", (2, 3)),
        ({"length": 4}, b"0123", (0, 4)),
        ({"suffix": 3}, b"789", (7, 3)),
        ({"suffix": 50}, b"0123456789", (0, 10)),
        ({"offset": 8, "length": 50}, b"89", (8, 2)),
        (_Headers({"Range": "bytes=1-3"}), b"123", (1, 3)),
        (_Headers({"Range": "bytes=-2"}), b"89", (8, 2)),
        (_Headers({"Range": "bytes=5-"}), b"56789", (5, 5)),
    ],
)
async def test_range_reads(r2: R2Bucket, range_, expected: bytes, span) -> None:
    await r2.put("digits", b"0123456789")
    got = await r2.get("digits", range=range_)
    assert await got.arrayBuffer() == expected
    assert got.range == {"offset": span[0], "length": span[1]}
    assert got.size == 10


async def test_invalid_ranges(r2: R2Bucket) -> None:
    await r2.put("digits", b"0123456789")
    with pytest.raises(R2Error) as info:
        await r2.get("digits", range={"offset": 11})
    assert info.value.message == "get: The requested range is not satisfiable (10039)"
    assert info.value.code == 10039 and info.value.name == "Error"
    with pytest.raises(ValueError, match="Starting offset \\(-1\\) must be greater than or equal to 0"):
        await r2.get("digits", range={"offset": -1})
    with pytest.raises(TypeError, match="Suffix is incompatible with offset."):
        await r2.get("digits", range={"offset": 1, "suffix": 2})
    with pytest.raises(ValueError, match="must be an integer, not floating point"):
        await r2.get("digits", range={"length": 1.5})


async def test_conditional_get(r2: R2Bucket) -> None:
    stored = await r2.put("c", "v1")
    hit = await r2.get("c", onlyIf={"etagMatches": stored.etag})
    assert isinstance(hit, R2ObjectBody) and await hit.text() == "v1"
    miss = await r2.get("c", onlyIf={"etagMatches": "0" * 32})
    assert type(miss) is R2Object and not hasattr(miss, "text") and miss.etag == stored.etag
    assert type(await r2.get("c", onlyIf={"etagDoesNotMatch": stored.etag})) is R2Object
    assert isinstance(await r2.get("c", onlyIf={"etagMatches": "*"}), R2ObjectBody)
    assert isinstance(await r2.get("c", onlyIf={"etagMatches": [f'"{stored.etag}"']}), R2ObjectBody)
    earlier = stored.uploaded - dt.timedelta(seconds=10)
    assert isinstance(await r2.get("c", onlyIf={"uploadedAfter": earlier}), R2ObjectBody)
    assert type(await r2.get("c", onlyIf={"uploadedBefore": earlier})) is R2Object
    assert type(await r2.get("c", onlyIf=_Headers({"If-None-Match": f'"{stored.etag}"'}))) is R2Object


async def test_conditional_put(r2: R2Bucket) -> None:
    assert await r2.put("new", "x", onlyIf={"etagMatches": "abc"}) is None
    assert await r2.head("new") is None
    first = await r2.put("c", "v1")
    assert await r2.put("c", "v2", onlyIf={"etagMatches": "0" * 32}) is None
    assert await (await r2.get("c")).text() == "v1"
    second = await r2.put("c", "v2", onlyIf={"etagMatches": first.etag})
    assert second is not None and await (await r2.get("c")).text() == "v2"
    assert await r2.put("c", "v3", onlyIf={"etagDoesNotMatch": second.etag}) is None


async def test_checksums(r2: R2Bucket) -> None:
    data = b"checked"
    sha256 = hashlib.sha256(data).hexdigest()
    obj = await r2.put("ok", data, sha256=sha256)
    assert obj.checksums.toJSON() == {"md5": hashlib.md5(data).hexdigest(), "sha256": sha256}
    assert (await r2.head("ok")).checksums.sha256 == bytes.fromhex(sha256)
    await r2.put("ok-md5", data, md5=hashlib.md5(data).digest())
    with pytest.raises(R2Error) as info:
        await r2.put("bad", data, md5="0" * 32)
    assert info.value.code == 10037
    assert info.value.message.startswith("put: The MD5 checksum you specified did not match what we received.")
    assert await r2.head("bad") is None
    with pytest.raises(TypeError, match="You cannot specify multiple hashing algorithms."):
        await r2.put("two", data, md5=hashlib.md5(data).hexdigest(), sha1=hashlib.sha1(data).hexdigest())
    with pytest.raises(TypeError, match="SHA-1 is 40 hex characters, not 3"):
        await r2.put("short", data, sha1="abc")


async def test_list_prefix_delimiter_cursor(r2: R2Bucket) -> None:
    keys = ["a.txt", "img/1.png", "img/2.png", "img/raw/3.raw", "notes/x", "z"]
    for key in keys:
        await r2.put(key, key)
    top = await r2.list(delimiter="/")
    assert [o.key for o in top.objects] == ["a.txt", "z"]
    assert top.delimitedPrefixes == ["img/", "notes/"]
    assert top.truncated is False and "cursor" not in top
    img = await r2.list(prefix="img/", delimiter="/")
    assert [o.key for o in img.objects] == ["img/1.png", "img/2.png"]
    assert img.delimitedPrefixes == ["img/raw/"]
    # page through everything two entries at a time
    seen, cursor = [], None
    while True:
        page = await r2.list(limit=2, cursor=cursor) if cursor else await r2.list(limit=2)
        seen += [o.key for o in page.objects]
        if not page.truncated:
            break
        cursor = page.cursor
    assert seen == keys
    after = await r2.list(startAfter="img/2.png")
    assert [o.key for o in after.objects] == ["img/raw/3.raw", "notes/x", "z"]
    # a delimited page boundary skips the whole prefix
    first = await r2.list(delimiter="/", limit=2)
    assert [o.key for o in first.objects] == ["a.txt"] and first.delimitedPrefixes == ["img/"]
    rest = await r2.list(delimiter="/", limit=2, cursor=first.cursor)
    assert rest.delimitedPrefixes == ["notes/"] and [o.key for o in rest.objects] == ["z"]


async def test_list_include_metadata(r2: R2Bucket) -> None:
    await r2.put("k", "v", httpMetadata={"contentType": "text/plain"}, customMetadata={"a": "b"})
    bare = (await r2.list()).objects[0]
    assert bare.httpMetadata == {} and bare.customMetadata == {}
    full = (await r2.list(include=["httpMetadata", "customMetadata"])).objects[0]
    assert full.httpMetadata == {"contentType": "text/plain"} and full.customMetadata == {"a": "b"}
    with pytest.raises(ValueError, match="Unsupported include value etag"):
        await r2.list(include=["etag"])
    with pytest.raises(R2Error, match=r"list: MaxKeys params must be positive integer <= 1000. \(10022\)"):
        await r2.list(limit=1001)


async def test_delete_one_and_many(r2: R2Bucket) -> None:
    for key in ("a", "b", "c"):
        await r2.put(key, key)
    await r2.delete("a")
    await r2.delete(["b", "missing"])
    assert [o.key for o in (await r2.list()).objects] == ["c"]


async def test_key_and_metadata_limits(r2: R2Bucket) -> None:
    await r2.put("k" * 1024, "ok")
    assert await (await r2.get("k" * 1024)).text() == "ok"
    for call in (r2.put("k" * 1025, "x"), r2.get("k" * 1025), r2.head("k" * 1025), r2.delete("k" * 1025)):
        with pytest.raises(R2Error, match=r"The specified object name is not valid. \(10020\)"):
            await call
    await r2.put("meta-ok", "x", customMetadata={"k": "v" * 2047})
    with pytest.raises(R2Error) as info:
        await r2.put("meta-big", "x", customMetadata={"k": "v" * 2048})
    assert info.value.message == "put: Your metadata headers exceed the maximum allowed metadata size. (10012)"


async def test_value_size_limit_is_configurable(tmp_path: Path) -> None:
    assert R2Limits().max_value_bytes == 5 * 1024**3 - 5 * 1024**2
    bucket = R2Bucket.open(tmp_path, "small", limits=R2Limits(max_value_bytes=8))
    await bucket.put("fits", b"12345678")
    with pytest.raises(R2Error) as info:
        await bucket.put("too-big", b"123456789")
    assert info.value.code == 100100
    assert info.value.message == "put: Your proposed upload exceeds the maximum allowed object size. (100100)"
    # the rejected body left no file behind
    assert len(os.listdir(bucket._blobs.folder)) == 1
    await bucket.aclose()


async def test_overwrite_and_delete_remove_old_files(tmp_path: Path) -> None:
    bucket = R2Bucket.open(tmp_path, "files")
    await bucket.put("k", "one")
    await bucket.put("k", "two")
    assert len(os.listdir(bucket._blobs.folder)) == 1
    await bucket.delete("k")
    assert os.listdir(bucket._blobs.folder) == []
    await bucket.aclose()


@pytest.fixture
async def small_parts(backend):
    limits = R2Limits(min_part_bytes=4)
    bucket = R2Bucket.in_memory("mp", limits=limits) if backend is None else R2Bucket.open(backend, "mp", limits=limits)
    yield bucket
    await bucket.aclose()


async def test_multipart_upload(small_parts: R2Bucket) -> None:
    r2 = small_parts
    upload = await r2.createMultipartUpload(
        "video", httpMetadata={"contentType": "video/mp4"}, customMetadata={"x": "1"}
    )
    assert upload.key == "video" and upload.uploadId
    part2 = await upload.uploadPart(2, b"4567")
    part1 = await upload.uploadPart(1, b"0123")
    part3 = await upload.uploadPart(3, b"89")
    assert part1.partNumber == 1 and part1.etag
    assert await r2.head("video") is None  # in-progress uploads are invisible
    obj = await upload.complete([part1, part2, part3])
    expected_etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in (b"0123", b"4567", b"89"))).hexdigest() + "-3"
    assert obj.etag == expected_etag and obj.size == 10
    got = await r2.get("video")
    assert await got.text() == "0123456789"
    assert got.httpMetadata.contentType == "video/mp4" and got.customMetadata.x == "1"
    assert await (await r2.get("video", range={"offset": 3, "length": 3})).text() == "345"
    with pytest.raises(R2Error, match=r"uploadPart: The specified multipart upload does not exist. \(10024\)"):
        await upload.uploadPart(4, b"x")
    await upload.abort()  # aborting a completed upload is a no-op
    assert await (await r2.get("video")).text() == "0123456789"


async def test_multipart_resume_and_abort(small_parts: R2Bucket) -> None:
    r2 = small_parts
    upload = await r2.createMultipartUpload("f")
    part = await upload.uploadPart(1, b"abcd")
    resumed = r2.resumeMultipartUpload("f", upload.uploadId)
    last = await resumed.uploadPart(2, b"ef")
    done = await resumed.complete([part, last])
    assert done.size == 6 and await (await r2.get("f")).text() == "abcdef"
    other = await r2.createMultipartUpload("g")
    await other.uploadPart(1, b"abcd")
    await other.abort()
    with pytest.raises(R2Error, match="10024"):
        await other.complete([])
    with pytest.raises(R2Error, match="10024"):
        await r2.resumeMultipartUpload("g", "nonexistent").uploadPart(1, b"x")


async def test_multipart_validation(small_parts: R2Bucket) -> None:
    r2 = small_parts
    upload = await r2.createMultipartUpload("v")
    p1 = await upload.uploadPart(1, b"ab")  # below the minimum part size
    p2 = await upload.uploadPart(2, b"cdef")
    with pytest.raises(R2Error) as info:
        await upload.complete([p1, p2])
    assert info.value.code == 10011
    with pytest.raises(R2Error, match=r"One or more of the specified parts could not be found. \(10025\)"):
        await upload.complete([{"partNumber": 2, "etag": "wrong"}])
    p1 = await upload.uploadPart(1, b"abcdef")
    with pytest.raises(R2Error, match="10048"):  # parts must share one size
        await upload.complete([p1, p2, await upload.uploadPart(3, b"x")])
    with pytest.raises(TypeError, match="Part number must be between 1 and 10000"):
        await upload.uploadPart(0, b"x")


async def test_multipart_with_real_5_mib_minimum() -> None:
    r2 = R2Bucket.in_memory()
    assert r2.limits.min_part_bytes == 5 * 1024 * 1024
    upload = await r2.createMultipartUpload("big")
    small = await upload.uploadPart(1, b"x" * 1024)
    tail = await upload.uploadPart(2, b"y")
    with pytest.raises(R2Error, match="10011"):
        await upload.complete([small, tail])
    full = await upload.uploadPart(1, b"x" * (5 * 1024 * 1024))
    obj = await upload.complete([full, tail])
    assert obj.size == 5 * 1024 * 1024 + 1


# -- what Cloudflare does where Miniflare and flarelet used to differ (scripts/storage_diff.py) --


async def test_put_stream_of_unknown_length_is_a_type_error_as_workerd_r2_rpc(r2: R2Bucket) -> None:
    async def chunked():
        yield b"chunk"

    with pytest.raises(TypeError, match="Provided readable stream must have a known length"):
        await r2.put("s", chunked())
    assert await r2.head("s") is None
    upload = await r2.createMultipartUpload("mp")
    with pytest.raises(TypeError, match="must have a known length"):
        await upload.uploadPart(1, chunked())


async def test_list_without_include_gives_empty_metadata_objects_as_workerd_r2_object(r2: R2Bucket) -> None:
    await r2.put("k", "v", httpMetadata={"contentType": "text/plain"}, customMetadata={"a": "b"})
    bare = (await r2.list()).objects[0]
    assert bare.customMetadata.get("a") is None  # an empty object: .get works, as in production
    only_custom = (await r2.list(include=["customMetadata"])).objects[0]
    assert only_custom.customMetadata == {"a": "b"} and only_custom.httpMetadata == {}


async def test_custom_metadata_values_are_js_strings_as_workerd_dict_string(r2: R2Bucket) -> None:
    put = await r2.put("m", "x", customMetadata={"t": True, "f": False, "n": 5, "w": 5.0, "r": 2.5, "z": None})
    assert put.customMetadata == {"t": "true", "f": "false", "n": "5", "w": "5", "r": "2.5", "z": "null"}
    assert (await r2.head("m")).customMetadata == put.customMetadata


@pytest.mark.parametrize("header", ["bytes=9-2", "bytes=50-60", "bytes=0-1,3-4", "chars=1-2", "bytes=-0"])
async def test_unusable_range_header_returns_the_whole_object_as_miniflare(r2: R2Bucket, header: str) -> None:
    class Headers:  # what a Headers object offers R2
        def get(self, name: str) -> str | None:
            return header if name == "range" else None

    await r2.put("digits", b"0123456789")
    whole = await r2.get("digits", range=Headers())
    assert await whole.text() == "0123456789" and whole.range == {"offset": 0, "length": 10}


async def test_r2_errors_are_plain_errors_as_the_runtime_gives_them(r2: R2Bucket) -> None:
    with pytest.raises(R2Error) as info:
        await r2.put("k" * 1025, "x")
    assert str(info.value) == "Error: put: The specified object name is not valid. (10020)"
    assert (info.value.name, info.value.code) == ("Error", 10020)


async def test_complete_with_no_parts_makes_an_empty_object_as_miniflare(r2: R2Bucket) -> None:
    upload = await r2.createMultipartUpload("none", customMetadata={"m": "1"})
    obj = await upload.complete([])
    assert (obj.size, obj.etag) == (0, "d41d8cd98f00b204e9800998ecf8427e-0")
    got = await r2.get("none")
    assert await got.arrayBuffer() == b"" and got.customMetadata == {"m": "1"}


async def test_upload_ids_and_part_etags_are_opaque_171_char_base64url_as_miniflare(r2: R2Bucket) -> None:
    upload = await r2.createMultipartUpload("shape")
    part = await upload.uploadPart(1, b"x")
    for value in (upload.uploadId, part["etag"]):
        assert len(value) == 171 and set(value) <= set(string.ascii_letters + string.digits + "-_")


async def test_delete_has_no_key_count_limit_as_r2_workers_api_docs_unless_configured() -> None:
    r2 = R2Bucket.in_memory()
    await r2.put("x0", "v")
    await r2.delete([f"x{i}" for i in range(1001)])
    assert await r2.head("x0") is None
    limited = R2Bucket.in_memory(limits=R2Limits(max_delete_keys=2))
    with pytest.raises(R2Error, match="10029"):
        await limited.delete(["a", "b", "c"])
