"""Object bodies for R2: files named by random ids, written atomically; or memory for tests.

A body is written to ``.tmp-<id>`` in the blob folder, fsynced, renamed to ``<id>`` and the
folder fsynced -- only then does the caller commit the metadata row that points at it. So a
crash (even SIGKILL or power loss) leaves either no row, or a row whose file is complete.
What a crash can leave is an unreferenced file (written, row not yet committed; or row deleted,
file not yet unlinked): :meth:`FileBlobStore.collect_garbage` removes those at open.

Ids are 32 lowercase hex characters and are checked on every access, so even a corrupted
database cannot make us open a path outside the folder.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

_BLOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_TMP_PREFIX = ".tmp-"
#: unreferenced files younger than this are left alone: another process may be about to
#: commit the row that references them.
GC_MIN_AGE_S = 600.0


def new_blob_id() -> str:
    return secrets.token_hex(16)


def check_blob_id(blob_id: str) -> str:
    if not isinstance(blob_id, str) or not _BLOB_ID_RE.match(blob_id):
        raise ValueError(f"invalid blob id {blob_id!r}")
    return blob_id


class BlobWriter(Protocol):
    blob_id: str

    def write(self, chunk: bytes) -> None: ...

    def finish(self) -> str: ...

    def abort(self) -> None: ...


class BlobReader(Protocol):
    def read(self, size: int) -> bytes: ...

    def seek(self, offset: int) -> object: ...  # (file objects return the new position)

    def close(self) -> None: ...


class BlobStore(Protocol):
    def writer(self) -> BlobWriter: ...

    def open(self, blob_id: str) -> BlobReader: ...

    def delete(self, blob_id: str) -> None: ...

    def collect_garbage(self, referenced: Iterable[str]) -> int: ...


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileWriter:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.blob_id = new_blob_id()
        self._tmp = folder / f"{_TMP_PREFIX}{self.blob_id}"
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        assert self._file is not None
        self._file.write(chunk)

    def finish(self) -> str:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self._tmp, self.folder / self.blob_id)
        _fsync_dir(self.folder)
        return self.blob_id

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)


class FileBlobStore:
    """Blob files in one folder (``<root>/v3/r2/<bucket hash>/blobs``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def writer(self) -> _FileWriter:
        return _FileWriter(self.folder)

    def open(self, blob_id: str) -> BinaryIO:
        return open(self.folder / check_blob_id(blob_id), "rb")

    def delete(self, blob_id: str) -> None:
        (self.folder / check_blob_id(blob_id)).unlink(missing_ok=True)

    def collect_garbage(self, referenced: Iterable[str], min_age_s: float = GC_MIN_AGE_S) -> int:
        """Remove leftover temp files and unreferenced blobs older than ``min_age_s``."""
        keep = set(referenced)
        cutoff = time.time() - min_age_s
        removed = 0
        for entry in os.scandir(self.folder):
            name = entry.name
            is_tmp = name.startswith(_TMP_PREFIX)
            if not is_tmp and (name in keep or not _BLOB_ID_RE.match(name)):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                    continue
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                continue
        return removed


class _MemoryWriter:
    def __init__(self, store: MemoryBlobStore) -> None:
        self._store = store
        self.blob_id = new_blob_id()
        self._chunks: list[bytes] = []

    def write(self, chunk: bytes) -> None:
        self._chunks.append(bytes(chunk))

    def finish(self) -> str:
        self._store.blobs[self.blob_id] = b"".join(self._chunks)
        self._chunks = []
        return self.blob_id

    def abort(self) -> None:
        self._chunks = []


class _MemoryReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def seek(self, offset: int) -> None:
        self._pos = offset

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = self._data[self._pos : end].tobytes()
        self._pos += len(chunk)
        return chunk

    def close(self) -> None:
        pass


class MemoryBlobStore:
    """Blobs in a dict (``persist_to=None``: tests)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def writer(self) -> _MemoryWriter:
        return _MemoryWriter(self)

    def open(self, blob_id: str) -> _MemoryReader:
        try:
            return _MemoryReader(self.blobs[check_blob_id(blob_id)])
        except KeyError:
            raise FileNotFoundError(blob_id) from None

    def delete(self, blob_id: str) -> None:
        self.blobs.pop(blob_id, None)

    def collect_garbage(self, referenced: Iterable[str], min_age_s: float = 0.0) -> int:
        keep = set(referenced)
        stale = [b for b in self.blobs if b not in keep]
        for blob_id in stale:
            del self.blobs[blob_id]
        return len(stale)
