"""A model folder's tensors, read one at a time: loading without a resident copy of the file.

Why not ``safetensors.safe_open`` (or transformers' loader): both map the file, and every page of
a mapped file that has been read stays in the process's resident memory until the mapping goes --
for tiny.en's fp32 ``model.safetensors`` 151 MB beside the weights being built from it. Loading
then peaks at the mapped file + the float tensors + their converted (int8 / fp16) forms. Here each
tensor is read with plain ``pread`` calls into a tensor of its own, when the module that converts
it asks (:class:`LazyState`, a mutable mapping whose ``pop`` is how modules take their weights),
so loading holds only the weights converted so far and the one tensor being converted. Large
tensors can be read a block of rows at a time (:meth:`LazyState.rows`): the decoder's token
embedding (vocab x d, 80 MB in fp32 for tiny.en) is quantized block by block.

The format (safetensors): an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the data. A sharded folder
(``model.safetensors.index.json``) is read the same way, shard by shard.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import weakref
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path

import torch

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
#: the most a header may be (the format's own limit: 100 MB); a larger value is a damaged file
MAX_HEADER_BYTES = 100_000_000


class StateFileError(ValueError):
    """The file is not a safetensors file this reader understands."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies: its file, dtype, shape and absolute byte offset."""

    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int

    @property
    def row_bytes(self) -> int:
        return self.nbytes // self.shape[0] if self.shape and self.shape[0] else 0


def read_header(path: Path) -> dict[str, TensorEntry]:
    """The tensors of one safetensors file (checked: known dtypes, byte ranges inside the file
    that match their shapes)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise StateFileError(f"{path}: not a safetensors file (shorter than its header)")
        n = int.from_bytes(raw, "little")
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise StateFileError(f"{path}: not a safetensors file (header of {n} bytes)")
        header = json.loads(fh.read(n))
    base = 8 + n
    out: dict[str, TensorEntry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise StateFileError(f"{path}: {name} has dtype {info.get('dtype')!r}, which this reader does not know")
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(x) for x in info["data_offsets"])
        count = 1
        for s in shape:
            count *= s
        if not 0 <= begin <= end <= size - base or end - begin != count * dtype.itemsize:
            raise StateFileError(f"{path}: {name}'s byte range {begin}..{end} does not fit its shape {shape}")
        out[name] = TensorEntry(Path(path), dtype, shape, base + begin, end - begin)
    return out


def read_into(fd: int, buf: torch.Tensor, offset: int) -> None:
    """Fill the contiguous tensor ``buf`` with the bytes at ``offset`` (``pread``: no shared file
    position, so threads may read at once)."""
    array = buf.reshape(-1).view(torch.uint8).numpy()  # reshape: 0-d tensors too
    view = memoryview(array.data).cast("B")
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise StateFileError(f"file ended {len(view) - done} bytes early at offset {offset + done}")
        done += got


class LazyState(MutableMapping[str, torch.Tensor]):
    """A folder's state dict whose tensors are read from disk when asked for (each read gives a
    new tensor; nothing is cached). ``pop`` reads and forgets the entry, ``__setitem__`` holds a
    tensor in memory (for tensors built by the caller)."""

    def __init__(self, files: list[Path]) -> None:
        if sys.byteorder != "little":  # safetensors is little-endian; reading it raw needs the same
            raise StateFileError("reading safetensors directly needs a little-endian machine")
        self.entries: dict[str, TensorEntry] = {}
        for path in files:
            self.entries.update(read_header(path))
        self._held: dict[str, torch.Tensor] = {}
        self._fds: dict[Path, int] = {}
        self._lock = threading.Lock()

    def _fd(self, path: Path) -> int:
        with self._lock:
            fd = self._fds.get(path)
            if fd is None:
                fd = self._fds[path] = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            return fd

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def __enter__(self) -> LazyState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getitem__(self, key: str) -> torch.Tensor:
        if key in self._held:
            return self._held[key]
        entry = self.entries[key]
        out = torch.empty(entry.shape, dtype=entry.dtype)
        read_into(self._fd(entry.path), out, entry.offset)
        return out

    def rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of a tensor (its first dimension), read alone."""
        if key in self._held:
            return self._held[key][start:stop].clone()
        entry = self.entries[key]
        stop = min(stop, entry.shape[0])
        out = torch.empty((max(0, stop - start), *entry.shape[1:]), dtype=entry.dtype)
        read_into(self._fd(entry.path), out, entry.offset + start * entry.row_bytes)
        return out

    def entry(self, key: str) -> TensorEntry | None:
        """Where ``key`` lies in the file (None for a tensor held in memory)."""
        return None if key in self._held else self.entries.get(key)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._held[key].shape) if key in self._held else self.entries[key].shape

    def dtype(self, key: str) -> torch.dtype:
        return self._held[key].dtype if key in self._held else self.entries[key].dtype

    def __setitem__(self, key: str, value: torch.Tensor) -> None:
        self._held[key] = value

    def __delitem__(self, key: str) -> None:
        found = self._held.pop(key, None) is not None
        found = self.entries.pop(key, None) is not None or found
        if not found:
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from dict.fromkeys([*self.entries, *self._held])

    def __len__(self) -> int:
        return len(set(self.entries) | set(self._held))

    def __contains__(self, key: object) -> bool:
        return key in self._held or key in self.entries


def safetensors_files(folder: Path) -> list[Path] | None:
    """The folder's safetensors file(s) (one, or the shards its index names); None when it has none."""
    folder = Path(folder)
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        shards = json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()
        return [folder / name for name in dict.fromkeys(shards)]
    return None


class RowFile:
    """Rows of one 2-D tensor read from its file on demand: ``rows(ids)`` is
    ``table[ids]`` as float32, like an ``nn.Embedding`` lookup, without the table in memory.

    Why: the decoder looks up one token embedding row per sequence and step, while the table is
    vocab x d (tiny.en: 51864 x 384, 40 MB even in fp16) and a transcription uses a few hundred
    distinct rows. Each row is a ``pread`` (a microsecond or two from the page cache, which keeps
    the rows in use warm and is the kernel's to reclaim). The file stays open; a replaced or
    deleted cache file keeps being read through that descriptor, as it was when loaded.
    """

    def __init__(self, entry: TensorEntry) -> None:
        if len(entry.shape) != 2:
            raise StateFileError(f"{entry.path}: a row table must be 2-D, not {entry.shape}")
        self.entry = entry
        self.rows, self.width = entry.shape
        self._fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._finalizer = weakref.finalize(self, os.close, self._fd)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1).tolist()
        out = torch.empty((len(flat), self.width), dtype=self.entry.dtype)
        for i, token in enumerate(flat):
            if not 0 <= token < self.rows:
                raise IndexError(f"index {token} is out of range for a table of {self.rows} rows")
            read_into(self._fd, out[i], self.entry.offset + token * self.entry.row_bytes)
        return out.float().view(*ids.shape, self.width)

    def close(self) -> None:
        self._finalizer()
