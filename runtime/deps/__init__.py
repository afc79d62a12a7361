"""A worker's declared packages: read (:mod:`.spec`), installed and cached (:mod:`.install`), and
kept apart from flarelet's own (:mod:`.isolation`)."""

from .install import DepsOptions, DepsResult, ensure_deps
from .isolation import activate
from .spec import DependencySpec, DependencySpecError, read_spec, spec_files

__all__ = [
    "DependencySpec",
    "DependencySpecError",
    "DepsOptions",
    "DepsResult",
    "activate",
    "ensure_deps",
    "read_spec",
    "spec_files",
]
