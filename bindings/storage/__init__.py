"""Local persistence shared by the storage bindings (KV, D1, R2): SQLite stores and blob files.

Layout under the persist root (``--persist-to``, default ``.wrangler/state``), mirroring
wrangler's ``v3`` folders::

    <root>/v3/kv/miniflare-KVNamespaceObject/<sha256(namespace id)>.sqlite
    <root>/v3/d1/miniflare-D1DatabaseObject/<sha256(database id)>.sqlite
    <root>/v3/r2/miniflare-R2BucketObject/<sha256(bucket name)>.sqlite
    <root>/v3/r2/<sha256(bucket name)>/blobs/<random id>

File names never derive from user keys: object bodies live under random ids, names of
namespaces/buckets/databases are hashed, so no key or name can point outside the root.
"""
