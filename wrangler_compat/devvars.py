"""Local secrets from ``.dev.vars`` / ``.env`` files, with wrangler's precedence.

From Cloudflare's docs on local development secrets, for the files next to the config file:

* ``.dev.vars.<env>`` (with ``--env``) replaces ``.dev.vars`` entirely;
* if any ``.dev.vars`` file is used, ``.env`` files are ignored;
* otherwise ``.env``, ``.env.<env>``, ``.env.local``, ``.env.<env>.local`` are merged, later ones
  winning (``CLOUDFLARE_LOAD_DEV_VARS_FROM_DOT_ENV=false`` turns ``.env`` loading off);
* ``secrets.required`` in the config restricts the loaded keys to that list.

The files use dotenv syntax (``KEY="value"``), parsed with python-dotenv.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DevVars:
    values: dict[str, str] = field(default_factory=dict)
    #: the files read, in the order they were merged
    files: list[Path] = field(default_factory=list)
    #: ``secrets.required`` keys that no file defines
    missing: list[str] = field(default_factory=list)


def candidate_files(config_dir: Path, env_name: str | None) -> list[Path]:
    """Every file that could matter (the watcher reloads when one of them appears or changes)."""
    names = [".dev.vars", ".env", ".env.local"]
    if env_name:
        names += [f".dev.vars.{env_name}", f".env.{env_name}", f".env.{env_name}.local"]
    return [config_dir / n for n in names]


def load_dev_vars(config_dir: Path, env_name: str | None = None, required: Sequence[str] | None = None) -> DevVars:
    """Read the secrets for ``env_name`` from ``config_dir``."""
    dev_vars = [config_dir / f".dev.vars.{env_name}"] if env_name else []
    dev_vars.append(config_dir / ".dev.vars")
    files: list[Path] = []
    for candidate in dev_vars:
        if candidate.is_file():
            files = [candidate]
            break
    if not files and os.environ.get("CLOUDFLARE_LOAD_DEV_VARS_FROM_DOT_ENV", "true").lower() != "false":
        order = [".env"] + ([f".env.{env_name}"] if env_name else []) + [".env.local"]
        order += [f".env.{env_name}.local"] if env_name else []
        files = [config_dir / n for n in order if (config_dir / n).is_file()]
    values: dict[str, str] = {}
    if files:
        from dotenv import dotenv_values  # only when a file exists

        for path in files:
            for key, value in dotenv_values(path).items():
                values[key] = "" if value is None else value
    missing: list[str] = []
    if required is not None:
        values = {k: v for k, v in values.items() if k in required}
        missing = [k for k in required if k not in values]
    return DevVars(values=values, files=files, missing=missing)
