"""Where a task's model comes from: a folder (or Hugging Face repo id) the user mapped to a model id, or
the task's bundled stand-in, said once in the log.

Shared by the tasks that load a transformers model folder (text generation, embeddings), so a mapping is
checked and reported the same way for each; each task keeps its own engine cache.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from . import errors

log = logging.getLogger("flarelet.ai")

_stand_in_logged: set[str] = set()
_stand_in_lock = threading.Lock()


def is_hub_id(value: object) -> bool:
    """``org/name`` that is not a folder here: a Hugging Face repo id, fetched by transformers on
    first use where the network (and ``HF_HUB_OFFLINE``) allows, else its own clear error."""
    text = str(value)
    return not Path(text).exists() and text.count("/") == 1 and not text.startswith((".", "/", "~"))


def mapped_folder(model_id: str, local: object) -> tuple[Path, str]:
    """The folder (or repo id, as a path) the user mapped ``model_id`` to, and its label for the log;
    a folder without ``config.json`` is refused with Cloudflare's internal-error shape."""
    folder = Path(str(local))
    if not (folder / "config.json").is_file() and not is_hub_id(local):
        raise errors.internal(
            f"the folder {folder} configured for {model_id} is not a Hugging Face model folder (no config.json)"
        )
    return folder, f"{model_id} ({'local folder' if folder.is_dir() else 'Hugging Face repo'} {local})"


def warn_stand_in_once(model_id: str, stand_in: str) -> None:
    """Say (once per model id and process) that ``model_id`` runs on a stand-in model."""
    with _stand_in_lock:
        if model_id in _stand_in_logged:
            return
        _stand_in_logged.add(model_id)
    log.warning(
        "%s is served by %s as a stand-in (no weights for it offline); map it to a local folder "
        "with [flarelet.ai] models or FLARELET_AI_MODELS for the real model",
        model_id,
        stand_in,
    )
