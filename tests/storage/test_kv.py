"""KV binding: values, metadata, expiry, listing, limits and Cloudflare's error texts."""

from __future__ import annotations

import pytest

from flarelet.bindings.jsobject import ByteStream, JsDict, JsException
from flarelet.bindings.kv import KvLimits, KVNamespace


async def test_put_get_text_and_types(kv: KVNamespace) -> None:
    await kv.put("greeting", "héllo")
    assert await kv.get("greeting") == "héllo"
    assert await kv.get("greeting", "text") == "héllo"
    assert await kv.get("greeting", type="arrayBuffer") == "héllo".encode()
    assert await kv.get("greeting", {"type": "arrayBuffer"}) == "héllo".encode()
    stream = await kv.get("greeting", "stream")
    assert isinstance(stream, ByteStream)
    assert await stream.bytes() == "héllo".encode()


async def test_json_values_are_jsdicts(kv: KVNamespace) -> None:
    await kv.put("cfg", '{"a": {"b": [1, 2]}, "n": null}')
    value = await kv.get("cfg", "json")
    assert value == {"a": {"b": [1, 2]}, "n": None}
    assert isinstance(value, JsDict) and value.a.b == [1, 2]
    await kv.put("bad", "{not json")
    with pytest.raises(JsException) as info:
        await kv.get("bad", "json")
    assert info.value.name == "SyntaxError"


async def test_missing_key_is_none(kv: KVNamespace) -> None:
    assert await kv.get("nope") is None
    assert await kv.get("nope", "json") is None
    missing = await kv.getWithMetadata("nope")
    assert missing == {"value": None, "metadata": None, "cacheStatus": None}
    assert missing.value is None


async def test_unknown_type_is_type_error(kv: KVNamespace) -> None:
    await kv.put("k", "v")
    with pytest.raises(TypeError, match='Unknown response type. Possible types are "text"'):
        await kv.get("k", "blob")


async def test_binary_values_and_streams(kv: KVNamespace) -> None:
    data = bytes(range(256)) * 10
    await kv.put("bin", data)
    assert await kv.get("bin", "arrayBuffer") == data
    await kv.put("mv", memoryview(data))
    assert await kv.get("mv", "arrayBuffer") == data

    async def chunks():
        yield b"ab"
        yield "cd"

    await kv.put("streamed", chunks())
    assert await kv.get("streamed") == "abcd"
    await kv.put("from-stream", ByteStream.from_bytes(b"xyz", chunk_size=1))
    assert await kv.get("from-stream") == "xyz"
    await kv.put("n", 42)
    assert await kv.get("n") == "42"


async def test_unsupported_values(kv: KVNamespace) -> None:
    with pytest.raises(TypeError, match="KV put\\(\\) accepts only strings"):
        await kv.put("k", {"a": 1})
    with pytest.raises(TypeError, match="cannot be sent over RPC"):
        await kv.put("k", bytearray(b"x"))


async def test_metadata_roundtrip(kv: KVNamespace) -> None:
    await kv.put("m", "v", metadata={"owner": "ann", "tags": ["x"]})
    result = await kv.getWithMetadata("m")
    assert result.value == "v"
    assert result.metadata == {"owner": "ann", "tags": ["x"]}
    assert result.metadata.owner == "ann"
    assert result.cacheStatus is None
    both = await kv.get_with_metadata("m", "arrayBuffer")
    assert both["value"] == b"v"


async def test_options_dict_kwargs_and_snake_case(kv: KVNamespace, clock) -> None:
    await kv.put("a", "1", {"expirationTtl": 120, "metadata": {"x": 1}})
    await kv.put("b", "2", expirationTtl=120)
    await kv.put("c", "3", expiration_ttl=120)
    listing = await kv.list()
    expected = int(clock.now) + 120
    assert [k.get("expiration") for k in listing["keys"]] == [expected] * 3


async def test_expiry_is_honoured(kv: KVNamespace, clock) -> None:
    await kv.put("short", "v", expirationTtl=60)
    await kv.put("abs", "v", expiration=int(clock.now) + 90)
    await kv.put("forever", "v")
    assert await kv.get("short") == "v"
    clock.advance(61)
    assert await kv.get("short") is None
    assert (await kv.getWithMetadata("short")).value is None
    assert [k.name for k in (await kv.list())["keys"]] == ["abs", "forever"]
    clock.advance(30)
    assert await kv.get("abs") is None
    assert [k.name for k in (await kv.list())["keys"]] == ["forever"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"expirationTtl": 30}, "KV PUT failed: 400 Invalid expiration_ttl of 30. Expiration TTL must be at least 60."),
        (
            {"expirationTtl": 0},
            "KV PUT failed: 400 Invalid expiration_ttl of 0. Please specify integer greater than 0.",
        ),
        # workerd's option is an int: a non-numeric value arrives as ToInt32(NaN) == 0
        ({"expirationTtl": "soon"}, "Invalid expiration_ttl of 0. Please specify integer greater than 0."),
        ({"expirationTtl": 59.9}, "Invalid expiration_ttl of 59. Expiration TTL must be at least 60."),
    ],
)
async def test_expiration_ttl_validation(kv: KVNamespace, options, message) -> None:
    with pytest.raises(JsException) as info:
        await kv.put("k", "v", options)
    assert info.value.name == "Error"
    assert message in info.value.message


async def test_absolute_expiration_validation(kv: KVNamespace, clock) -> None:
    now = int(clock.now)
    with pytest.raises(JsException, match="Please specify integer greater than the current number of seconds"):
        await kv.put("k", "v", expiration=now - 10)
    with pytest.raises(JsException, match="Expiration times must be at least 60 seconds in the future"):
        await kv.put("k", "v", expiration=now + 30)
    await kv.put("k", "v", expiration=now + 60)


@pytest.mark.parametrize("bad", ["", ".", ".."])
async def test_illegal_key_names_are_type_errors(kv: KVNamespace, bad: str) -> None:
    for call in (kv.get(bad), kv.put(bad, "v"), kv.delete(bad), kv.getWithMetadata(bad)):
        with pytest.raises(TypeError) as info:
            await call
        assert isinstance(info.value, JsException) and info.value.name == "TypeError"
    with pytest.raises(
        TypeError, match="Key name cannot be empty." if bad == "" else f'"{bad}" is not allowed as a key name.'
    ):
        await kv.get(bad)


async def test_key_length_limit_is_in_utf8_bytes(kv: KVNamespace) -> None:
    await kv.put("k" * 512, "ok")
    assert await kv.get("k" * 512) == "ok"
    with pytest.raises(JsException) as info:
        await kv.put("k" * 513, "v")
    assert info.value.message == "KV PUT failed: 414 UTF-8 encoded length of 513 exceeds key length limit of 512."
    with pytest.raises(JsException, match="KV GET failed: 414 UTF-8 encoded length of 514"):
        await kv.get("é" * 257)
    with pytest.raises(JsException, match="KV DELETE failed: 414"):
        await kv.delete("x" * 600)


async def test_value_size_limit_default_25_mib() -> None:
    kv = KVNamespace.in_memory()
    limit = KvLimits().max_value_bytes
    assert limit == 25 * 1024 * 1024
    await kv.put("max", b"\0" * limit)
    assert len(await kv.get("max", "arrayBuffer")) == limit
    with pytest.raises(JsException) as info:
        await kv.put("over", b"\0" * (limit + 1))
    assert info.value.message == f"KV PUT failed: 413 Value length of {limit + 1} exceeds limit of {limit}."
    assert await kv.get("over") is None


async def test_limits_are_configurable() -> None:
    kv = KVNamespace.in_memory(limits=KvLimits(max_value_bytes=10, max_key_bytes=4, max_list_keys=3))
    await kv.put("abcd", "0123456789")
    with pytest.raises(JsException, match="Value length of 11 exceeds limit of 10"):
        await kv.put("abcd", "0123456789X")
    with pytest.raises(JsException, match="exceeds key length limit of 4"):
        await kv.put("abcde", "v")
    with pytest.raises(JsException, match="Invalid key_count_limit of 4"):
        await kv.list(limit=4)


async def test_metadata_size_limit(kv: KVNamespace) -> None:
    # {"a":"..."} is 8 bytes of JSON around the string
    await kv.put("ok", "v", metadata={"a": "x" * (1024 - 8)})
    with pytest.raises(JsException) as info:
        await kv.put("big", "v", metadata={"a": "x" * (1024 - 7)})
    assert info.value.message == "KV PUT failed: 413 Metadata length of 1025 exceeds limit of 1024."
    with pytest.raises(TypeError):
        await kv.put("bad", "v", metadata={"a": object()})


async def test_delete(kv: KVNamespace) -> None:
    await kv.put("k", "v")
    await kv.delete("k")
    assert await kv.get("k") is None
    await kv.delete("never-existed")


async def test_list_prefix_limit_cursor(kv: KVNamespace) -> None:
    names = [f"user:{i:03d}" for i in range(25)] + ["other", "user"]
    for name in names:
        await kv.put(name, "v")
    first = await kv.list(prefix="user:", limit=10)
    assert first.list_complete is False and isinstance(first.cursor, str)
    assert [k.name for k in first["keys"]] == [f"user:{i:03d}" for i in range(10)]
    seen = [k.name for k in first["keys"]]
    cursor = first.cursor
    while cursor:
        page = await kv.list(prefix="user:", limit=10, cursor=cursor)
        seen += [k.name for k in page["keys"]]
        cursor = None if page.list_complete else page.cursor
        if page.list_complete:
            assert "cursor" not in page
    assert seen == [f"user:{i:03d}" for i in range(25)]
    everything = await kv.list()
    assert everything.list_complete is True
    assert [k.name for k in everything["keys"]] == sorted(names)
    assert everything.cacheStatus is None


async def test_list_orders_by_utf8_bytes(kv: KVNamespace) -> None:
    # UTF-16 order would put U+10000 (a surrogate pair) before U+FFFF; Cloudflare uses UTF-8 bytes
    keys = ["\U00010000", "\uffff", "é", "z", "a"]
    for key in keys:
        await kv.put(key, "v")
    listed = [k.name for k in (await kv.list())["keys"]]
    assert listed == ["a", "z", "é", "\uffff", "\U00010000"]


async def test_list_limit_validation(kv: KVNamespace) -> None:
    with pytest.raises(JsException) as info:
        await kv.list(limit=1001)
    assert info.value.message == (
        "KV GET failed: 400 Invalid key_count_limit of 1001. Please specify an integer less than 1000."
    )
    await kv.list(limit=1000)
    with pytest.raises(JsException, match="KV GET failed: 414"):
        await kv.list(prefix="p" * 513)


async def test_list_includes_metadata_and_expiration(kv: KVNamespace, clock) -> None:
    await kv.put("a", "1", metadata={"m": True}, expirationTtl=100)
    await kv.put("b", "2")
    keys = (await kv.list())["keys"]
    assert keys[0] == {"name": "a", "expiration": int(clock.now) + 100, "metadata": {"m": True}}
    assert keys[1] == {"name": "b"}


async def test_bulk_get(kv: KVNamespace) -> None:
    await kv.put("a", '{"x": 1}', metadata={"m": 1})
    await kv.put("b", "2")
    assert await kv.get(["a", "b", "c"]) == {"a": '{"x": 1}', "b": "2", "c": None}
    assert (await kv.get(["a"], "json"))["a"].x == 1
    with_meta = await kv.getWithMetadata(["a", "c"], "json")
    assert with_meta == {"a": {"value": {"x": 1}, "metadata": {"m": 1}}, "c": None}
    with pytest.raises(JsException, match="KV GET_BULK failed: 400 You can request a maximum of 100 keys"):
        await kv.get([str(i) for i in range(101)])
    with pytest.raises(JsException, match='"arrayBuffer" is not a valid type'):
        await kv.get(["a"], "arrayBuffer")


async def test_cache_ttl_validation(kv: KVNamespace) -> None:
    await kv.put("k", "v")
    assert await kv.get("k", cacheTtl=60) == "v"
    with pytest.raises(JsException, match="KV GET failed: 400 Invalid cache_ttl of 10. Cache TTL must be at least 30."):
        await kv.get("k", cacheTtl=10)


async def test_overwrite_replaces_value_and_metadata(kv: KVNamespace) -> None:
    await kv.put("k", "one", metadata={"v": 1}, expirationTtl=60)
    await kv.put("k", "two")
    result = await kv.getWithMetadata("k")
    assert result.value == "two" and result.metadata is None
    assert "expiration" not in (await kv.list())["keys"][0]


async def test_list_result_keys_needs_item_access_like_cloudflare(kv: KVNamespace) -> None:
    # Python Workers' JsDict cannot shadow dict methods: ``result.keys`` is dict.keys there too
    await kv.put("k", "v")
    result = await kv.list()
    assert callable(result.keys)
    assert result["keys"] == [{"name": "k"}]


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ("v1", "Unexpected token 'v', \"v1\" is not valid JSON"),
        ("", "Unexpected end of JSON input"),
        ('{"a": 1} x', "Unexpected non-whitespace character after JSON at position 9"),
        ("not json at all, this is prose", "Unexpected token 'n', \"not json a\"... is not valid JSON"),
    ],
)
async def test_get_json_of_invalid_json_is_v8s_syntax_error(kv: KVNamespace, stored: str, message: str) -> None:
    await kv.put("j", stored)
    with pytest.raises(JsException) as info:
        await kv.get("j", "json")
    assert (info.value.name, info.value.message) == ("SyntaxError", message)
