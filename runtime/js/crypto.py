"""``crypto``: ``getRandomValues``, ``randomUUID`` and ``crypto.subtle`` for SHA digests and HMAC.

What workerd offers and worker code uses most: ``digest`` (SHA-1/256/384/512 and workerd's MD5),
``importKey``/``exportKey``/``generateKey`` for HMAC (``raw`` and ``jwk``), ``sign``/``verify``, and
Cloudflare's ``timingSafeEqual`` extension. The ``subtle`` methods are coroutines (JS promises);
``timingSafeEqual`` is synchronous, as in workerd. Other algorithms (AES, RSA, ECDSA, Ed25519)
throw ``NotSupportedError`` naming the algorithm rather than doing something different.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

from .buffers import ArrayBuffer, Uint8Array, as_bytes
from .errors import JsProxy, dom_exception, type_error
from .objects import JsArray, JsObject

#: Web Crypto's cap on one getRandomValues call (a QuotaExceededError above it)
MAX_RANDOM_BYTES = 65536

_HASHES = {"SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512", "MD5": "md5"}
_JWK_HMAC_ALG = {"SHA-1": "HS1", "SHA-256": "HS256", "SHA-384": "HS384", "SHA-512": "HS512"}


def _name(algorithm: Any) -> str:
    if isinstance(algorithm, str):
        return algorithm
    if isinstance(algorithm, Mapping) and "name" in algorithm:
        return str(algorithm["name"])
    name = getattr(algorithm, "name", None)
    if isinstance(name, str):
        return name
    raise type_error("Algorithm: name is missing.")


def _hash_name(algorithm: Any) -> str:
    name = _name(algorithm).upper()
    if name not in _HASHES:
        raise dom_exception(
            "NotSupportedError", f'Unrecognized or unimplemented digest algorithm requested: "{_name(algorithm)}"'
        )
    return name


class CryptoKey(JsProxy):
    """A key from ``importKey``/``generateKey`` (HMAC only)."""

    __slots__ = ("type", "extractable", "algorithm", "usages", "_secret")

    def __init__(self, secret: bytes, hash_name: str, extractable: bool, usages: list[str]) -> None:
        self.type = "secret"
        self.extractable = bool(extractable)
        self.algorithm = JsObject(name="HMAC", hash=JsObject(name=hash_name), length=len(secret) * 8)
        self.usages = JsArray(usages)
        self._secret = secret

    def __repr__(self) -> str:
        return f"CryptoKey(HMAC {self.algorithm['hash']['name']}, usages={list(self.usages)})"


def _hmac_params(algorithm: Any) -> str:
    name = _name(algorithm).upper()
    if name != "HMAC":
        raise dom_exception(
            "NotSupportedError",
            f'Unrecognized or unimplemented algorithm "{_name(algorithm)}" (flarelet supports HMAC, SHA digests)',
        )
    hash_alg = algorithm.get("hash") if isinstance(algorithm, Mapping) else getattr(algorithm, "hash", None)
    if hash_alg is None:
        raise type_error("HmacImportParams: hash is missing.")
    hash_name = _hash_name(hash_alg)
    if hash_name == "MD5":
        raise dom_exception("NotSupportedError", "HMAC with MD5 is not supported")
    return hash_name


def _check_usages(usages: Any) -> list[str]:
    found = [str(u) for u in (usages or [])]
    bad = [u for u in found if u not in ("sign", "verify")]
    if bad:
        raise dom_exception("SyntaxError", f"Attempt to create an HMAC key with invalid usages: {', '.join(bad)}")
    return found


def _require(key: Any, usage: str) -> CryptoKey:
    if not isinstance(key, CryptoKey):
        raise type_error("Failed to execute: parameter 2 is not of type 'CryptoKey'.")
    if usage not in key.usages:
        raise dom_exception(
            "InvalidAccessError", f'Requested operation "{usage}" is not permitted by the key\'s usages.'
        )
    return key


class SubtleCrypto(JsProxy):
    __slots__ = ()

    async def digest(self, algorithm: Any, data: Any) -> ArrayBuffer:
        hash_name = _hash_name(algorithm)
        return ArrayBuffer(hashlib.new(_HASHES[hash_name], as_bytes(data, "data")).digest())

    async def importKey(  # noqa: N802 - JS name
        self, fmt: str, key_data: Any, algorithm: Any, extractable: bool, usages: Any
    ) -> CryptoKey:
        hash_name = _hmac_params(algorithm)
        if fmt == "raw":
            secret = as_bytes(key_data, "keyData")
        elif fmt == "jwk":
            jwk = dict(key_data)
            if jwk.get("kty") != "oct" or "k" not in jwk:
                raise dom_exception("DataError", "HMAC JWK must have kty 'oct' and a 'k' member.")
            text = str(jwk["k"])
            secret = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        else:
            raise dom_exception("NotSupportedError", f"Unsupported key format {fmt!r} for HMAC (use 'raw' or 'jwk').")
        if not secret:
            raise dom_exception("DataError", "HMAC key data must not be empty.")
        return CryptoKey(secret, hash_name, extractable, _check_usages(usages))

    async def generateKey(self, algorithm: Any, extractable: bool, usages: Any) -> CryptoKey:  # noqa: N802
        hash_name = _hmac_params(algorithm)
        length = algorithm.get("length") if isinstance(algorithm, Mapping) else None
        size = int(length) // 8 if length else hashlib.new(_HASHES[hash_name]).block_size
        return CryptoKey(secrets.token_bytes(size), hash_name, extractable, _check_usages(usages))

    async def exportKey(self, fmt: str, key: Any) -> Any:  # noqa: N802 - JS name
        if not isinstance(key, CryptoKey):
            raise type_error("Failed to execute 'exportKey': parameter 2 is not of type 'CryptoKey'.")
        if not key.extractable:
            raise dom_exception("InvalidAccessError", "Attempt to export a key which is not extractable.")
        if fmt == "raw":
            return ArrayBuffer(key._secret)
        if fmt == "jwk":
            hash_name = key.algorithm["hash"]["name"]
            k = base64.urlsafe_b64encode(key._secret).rstrip(b"=").decode()
            return JsObject(kty="oct", k=k, alg=_JWK_HMAC_ALG[hash_name], key_ops=JsArray(key.usages), ext=True)
        raise dom_exception("NotSupportedError", f"Unsupported export format {fmt!r}.")

    async def sign(self, algorithm: Any, key: Any, data: Any) -> ArrayBuffer:
        if _name(algorithm).upper() != "HMAC":
            raise dom_exception("NotSupportedError", f'Unrecognized or unimplemented algorithm "{_name(algorithm)}"')
        k = _require(key, "sign")
        digest = _HASHES[k.algorithm["hash"]["name"]]
        return ArrayBuffer(hmac.new(k._secret, as_bytes(data, "data"), digest).digest())

    async def verify(self, algorithm: Any, key: Any, signature: Any, data: Any) -> bool:
        if _name(algorithm).upper() != "HMAC":
            raise dom_exception("NotSupportedError", f'Unrecognized or unimplemented algorithm "{_name(algorithm)}"')
        k = _require(key, "verify")
        digest = _HASHES[k.algorithm["hash"]["name"]]
        expected = hmac.new(k._secret, as_bytes(data, "data"), digest).digest()
        return hmac.compare_digest(expected, as_bytes(signature, "signature"))

    def timingSafeEqual(self, a: Any, b: Any) -> bool:  # noqa: N802 - Cloudflare's extension
        left, right = as_bytes(a, "a"), as_bytes(b, "b")
        if len(left) != len(right):
            raise type_error("Input buffers must have the same byte length.")
        return hmac.compare_digest(left, right)


class Crypto(JsProxy):
    __slots__ = ("subtle",)

    def __init__(self) -> None:
        self.subtle = SubtleCrypto()

    def getRandomValues(self, array: Any) -> Any:  # noqa: N802 - JS name
        if not isinstance(array, (bytearray, memoryview)):
            raise dom_exception(
                "TypeMismatchError", "getRandomValues() expects an integer typed array (e.g. Uint8Array)."
            )
        if len(array) > MAX_RANDOM_BYTES:
            raise dom_exception(
                "QuotaExceededError",
                f"getRandomValues() only accepts buffers of size <= {MAX_RANDOM_BYTES} (got {len(array)}).",
            )
        array[:] = secrets.token_bytes(len(array))
        return array

    def randomUUID(self) -> str:  # noqa: N802 - JS name
        return str(uuid.uuid4())


crypto = Crypto()

__all__ = ["Crypto", "CryptoKey", "SubtleCrypto", "Uint8Array", "crypto"]
