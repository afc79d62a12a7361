"""Which packages a worker declares, and the key of the environment that holds them.

A Python Worker lists its packages the way pywrangler reads them: ``[project] dependencies`` in
the ``pyproject.toml`` next to its wrangler config, or (older projects) a ``requirements.txt``
there. Only that folder is read -- never a parent's ``pyproject.toml``, which may be some other
project's. An environment is keyed by a hash of the sorted requirements, the Python version and
platform, so two workers with the same set share one, and a change to any of them builds another.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import sysconfig
import tomllib
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class DependencySpecError(ValueError):
    """The worker's dependency file cannot be read (one line, naming the file)."""


@dataclass(frozen=True)
class DependencySpec:
    """The requirements of one worker and where they were declared."""

    requirements: tuple[str, ...]
    source: Path | None
    #: folder relative requirement paths (``./wheels/x.whl``) are resolved against
    base_dir: Path

    @property
    def key(self) -> str:
        """Stable hash of the sorted requirements + Python version + platform (the cache folder's name)."""
        tag = f"{sys.implementation.name}{sys.version_info[0]}.{sys.version_info[1]}-{sysconfig.get_platform()}"
        payload = json.dumps({"requirements": sorted(self.requirements), "python": tag}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    @property
    def names(self) -> frozenset[str]:
        """The declared distribution names, normalised (PEP 503)."""
        found = set()
        for req in self.requirements:
            m = _NAME.match(req)
            if m and not req.lstrip().startswith((".", "/")):
                found.add(normalise(m.group(1)))
        return frozenset(found)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements_txt(path: Path) -> list[str]:
    reqs = []
    for line in path.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise DependencySpecError(
                f"{path}: pip options ({line.split()[0]}) are not supported; list requirements only"
            )
        reqs.append(line)
    return reqs


def spec_files(project_dir: Path) -> list[Path]:
    """The files a worker declares its packages in (watched by the dev server)."""
    return [project_dir / "pyproject.toml", project_dir / "requirements.txt"]


def read_spec(project_dir: Path) -> DependencySpec:
    """The worker's declared requirements (empty when it declares none)."""
    pyproject = project_dir / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DependencySpecError(f"{pyproject}: {exc}") from None
        deps = (data.get("project") or {}).get("dependencies")
        if deps is not None:
            if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
                raise DependencySpecError(f"{pyproject}: [project] dependencies must be a list of strings")
            return DependencySpec(tuple(d.strip() for d in deps if d.strip()), pyproject, project_dir)
    requirements = project_dir / "requirements.txt"
    if requirements.is_file():
        return DependencySpec(tuple(_requirements_txt(requirements)), requirements, project_dir)
    return DependencySpec((), None, project_dir)
