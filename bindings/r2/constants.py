"""R2's names and limits (Miniflare's ``workers/r2/constants.ts``)."""

from __future__ import annotations

from dataclasses import dataclass

TYPE_LABEL = "R2 Bucket"
OBJECT_CLASS = "miniflare-R2BucketObject"
READ_CHUNK = 1024 * 1024
HASH_ALGORITHMS = (
    ("md5", "MD5", 16),
    ("sha1", "SHA-1", 20),
    ("sha256", "SHA-256", 32),
    ("sha384", "SHA-384", 48),
    ("sha512", "SHA-512", 64),
)

UNKNOWN_LENGTH_MESSAGE = (
    "Provided readable stream must have a known length (request/response body or readable half of FixedLengthStream)"
)


@dataclass(frozen=True)
class R2Limits:
    """R2's limits (developers.cloudflare.com/r2/platform/limits; Miniflare ``R2Limits``)."""

    max_key_bytes: int = 1024
    max_value_bytes: int = 5_368_709_120 - 5_242_880  # 5 GiB - 5 MiB for a single put
    max_metadata_bytes: int = 2048
    max_list_keys: int = 1000
    max_list_keys_with_metadata: int = 100
    min_part_bytes: int = 5 * 1024 * 1024
    max_part_number: int = 10_000
    #: R2's Workers API documents no limit on ``delete(keys)`` and Miniflare enforces none; set a
    #: number to reject longer lists with error 10029
    max_delete_keys: int | None = None


DEFAULT_LIMITS = R2Limits()
