"""R2 (``r2_buckets``): ``env.BUCKET.put/get/head/delete/list`` and multipart uploads, locally.

One module per concern, as Miniflare splits ``workers/r2``: :mod:`.bucket` (the binding and its
storage), :mod:`.object` (``R2Object``/``R2ObjectBody``), :mod:`.metadata`, :mod:`.validation`
(``onlyIf`` and ranges), :mod:`.errors`, :mod:`.statements` (the SQLite schema),
:mod:`.multipart` and :mod:`.plugin` (the ``r2_buckets`` config section).
"""

from flarelet.bindings.r2.bucket import R2Bucket, r2_database_path
from flarelet.bindings.r2.constants import R2Limits
from flarelet.bindings.r2.errors import R2Error
from flarelet.bindings.r2.metadata import R2Checksums
from flarelet.bindings.r2.multipart import R2MultipartUpload
from flarelet.bindings.r2.object import R2Object, R2ObjectBody
from flarelet.bindings.r2.plugin import R2BucketConfig, R2Plugin, plugin

__all__ = [
    "R2Bucket",
    "R2BucketConfig",
    "R2Checksums",
    "R2Error",
    "R2Limits",
    "R2MultipartUpload",
    "R2Object",
    "R2ObjectBody",
    "R2Plugin",
    "plugin",
    "r2_database_path",
]
