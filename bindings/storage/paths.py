"""Where each binding keeps its files under the persist root, and the guard that keeps them there."""

from __future__ import annotations

import hashlib
from pathlib import Path

#: wrangler's miniflare persists everything under ``<persist-to>/v3``.
PERSIST_VERSION_DIR = "v3"


def hashed_name(resource_id: str) -> str:
    """A file-system-safe, stable name for a namespace id / bucket name / database id.

    Hashing (as miniflare names its Durable Object files) means no configured name, however
    odd (``../x``, ``/etc``, NUL bytes, 10 kB long), can leave its folder.
    """
    return hashlib.sha256(resource_id.encode("utf-8", "surrogatepass")).hexdigest()


def ensure_inside(root: Path, path: Path) -> Path:
    """``path`` resolved, or ``ValueError`` if it is not inside ``root`` (defence in depth)."""
    root_resolved = root.resolve()
    resolved = path.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise ValueError(f"refusing to use {path}: outside the persist folder {root}")
    return resolved


def kind_root(persist_root: Path, kind: str) -> Path:
    """``<root>/v3/<kind>`` (kind is ``kv``, ``d1``, ``r2``)."""
    return Path(persist_root) / PERSIST_VERSION_DIR / kind


def object_db_path(persist_root: Path, kind: str, object_class: str, resource_id: str) -> Path:
    """``<root>/v3/<kind>/<object_class>/<sha256(resource_id)>.sqlite`` (created folders)."""
    folder = kind_root(persist_root, kind) / object_class
    path = folder / f"{hashed_name(resource_id)}.sqlite"
    ensure_inside(Path(persist_root), path)
    folder.mkdir(parents=True, exist_ok=True)
    return path


def blob_dir(persist_root: Path, kind: str, resource_id: str) -> Path:
    """``<root>/v3/<kind>/<sha256(resource_id)>/blobs`` (created)."""
    folder = kind_root(persist_root, kind) / hashed_name(resource_id) / "blobs"
    ensure_inside(Path(persist_root), folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
