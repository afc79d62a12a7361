"""Reading ``wrangler.toml`` / ``wrangler.json`` / ``wrangler.jsonc`` the way wrangler does.

* :func:`find_config` looks for ``wrangler.json``, ``wrangler.jsonc`` then ``wrangler.toml`` in a
  folder and its parents (wrangler's order); a file path is used as given.
* :func:`load_config` parses, validates the top-level keys flarelet itself uses with a pydantic
  model, and resolves ``--env NAME``: inheritable keys (``main``, ``compatibility_date``,
  ``triggers``, ``assets``...) come from the top level unless the environment overrides them;
  bindings and ``vars`` are **not** inherited (Cloudflare's environments docs say so), exactly as wrangler.
* Every error is a :class:`ConfigError` that prints as one line with the file, the line and the
  dotted key: ``wrangler.toml:12: triggers.crons[0]: invalid cron expression "* *"``. Plugins'
  ``ConfigSectionError`` become the same through :meth:`WorkerConfig.section_error`.

Binding sections (``ai``, ``kv_namespaces``...) are not validated here: their plugins own them.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .jsonc import JsoncError, parse_jsonc
from .toml_lines import line_of, toml_key_lines

CONFIG_NAMES = ("wrangler.json", "wrangler.jsonc", "wrangler.toml")

#: keys an environment inherits from the top level when it does not set them (wrangler's list,
#: restricted to keys that mean something locally, plus flarelet's own table)
INHERITABLE_KEYS = frozenset(
    {
        "name",
        "main",
        "compatibility_date",
        "compatibility_flags",
        "triggers",
        "assets",
        "account_id",
        "workers_dev",
        "preview_urls",
        "routes",
        "route",
        "build",
        "rules",
        "observability",
        "python_modules",
        "placement",
        "limits",
        "minify",
        "no_bundle",
        "base_dir",
        "find_additional_modules",
        "preserve_file_names",
        "usage_model",
        "logpush",
        "upload_source_maps",
        "tsconfig",
        "jsx_factory",
        "jsx_fragment",
        "keep_names",
        "compliance_region",
        "first_party_worker",
        "logfwdr",
        "node_compat",
        "flarelet",
    }
)

#: keys that put something on ``env`` (each is handed to the plugin registered for it)
BINDING_KEYS = (
    "vars",
    "ai",
    "kv_namespaces",
    "d1_databases",
    "r2_buckets",
    "queues",
    "durable_objects",
    "services",
    "vectorize",
    "hyperdrive",
    "analytics_engine_datasets",
    "browser",
    "images",
    "dispatch_namespaces",
    "mtls_certificates",
    "send_email",
    "version_metadata",
    "workflows",
    "pipelines",
    "secrets_store_secrets",
    "ratelimits",
    "unsafe",
    "worker_loaders",
    "vpc_services",
    "media",
)

#: other keys wrangler knows that flarelet accepts and ignores
OTHER_KEYS = frozenset(
    {
        "$schema",
        "env",
        "dev",
        "secrets",
        "migrations",
        "define",
        "site",
        "send_metrics",
        "legacy_env",
        "keep_vars",
        "alias",
        "tail_consumers",
        "streaming_tail_consumers",
        "wasm_modules",
        "text_blobs",
        "data_blobs",
        "containers",
        "cloudchamber",
        "cf",
        "upload_source_maps",
    }
)

#: keys only meaningful at the top level (an environment cannot set them)
_TOP_LEVEL_ONLY = frozenset({"env", "dev", "legacy_env", "send_metrics", "keep_vars"})

#: the compatibility flag Cloudflare requires of every Python Worker
PYTHON_WORKERS_FLAG = "python_workers"

_CRON_FIELDS = 5


class ConfigError(Exception):
    """A problem with the config file; ``str()`` is the one line ``flarelet`` prints."""

    def __init__(self, path: Path | None, line: int | None, key: str | None, message: str) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = "" if self.path is None else f"{_shown_path(self.path)}" + (f":{self.line}" if self.line else "")
        what = f"{self.key}: {self.message}" if self.key else self.message
        return f"{where}: {what}" if where else what


def _shown_path(path: Path) -> str:
    """Relative to the working directory when inside it (as compilers print paths)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


#: friendlier wording for pydantic's most common complaints about config values
_MESSAGES = {
    "dict_type": "must be a table (an object)",
    "list_type": "must be an array",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}


def format_key(path: Sequence[Any]) -> str:
    """``("triggers", "crons", 0)`` -> ``triggers.crons[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def parse_key(dotted: str) -> tuple[Any, ...]:
    """Inverse of :func:`format_key` (``a.b[0].c`` or ``a.b.0.c``)."""
    parts: list[Any] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", dotted):
        if token.startswith("["):
            parts.append(int(token[1:-1]))
        elif token.isdigit():
            parts.append(int(token))
        else:
            parts.append(token)
    return tuple(parts)


# -- the parts of the schema flarelet uses ------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Triggers(_Strict):
    crons: list[str] = Field(default_factory=list)

    @field_validator("crons")
    @classmethod
    def _valid_crons(cls, crons: list[str]) -> list[str]:
        if not crons:
            return crons
        from croniter import croniter  # only when the worker has crons

        for index, expr in enumerate(crons):
            if len(expr.split()) != _CRON_FIELDS or not croniter.is_valid(expr):
                raise _CronError(index, expr)
        return crons


class _CronError(ValueError):
    def __init__(self, index: int, expr: str) -> None:
        super().__init__(
            f'invalid cron expression "{expr}" (expected 5 fields: minute hour day-of-month month day-of-week)'
        )
        self.index = index


class Assets(BaseModel):
    model_config = ConfigDict(extra="allow")

    directory: str | None = None
    binding: str | None = None
    not_found_handling: Literal["none", "404-page", "single-page-application"] = "none"
    html_handling: Literal["auto-trailing-slash", "force-trailing-slash", "drop-trailing-slash", "none"] = (
        "auto-trailing-slash"
    )
    run_worker_first: bool | list[str] = False


class Dev(BaseModel):
    model_config = ConfigDict(extra="allow")

    ip: str | None = None
    port: int | None = Field(default=None, ge=0, le=65535)
    local_protocol: Literal["http", "https"] = "http"


class Secrets(_Strict):
    required: list[str] | None = None


class Section(BaseModel):
    """Keys of the top level or of one ``[env.<name>]`` that flarelet reads itself."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    main: str | None = None
    compatibility_date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    compatibility_flags: list[str] = Field(default_factory=list)
    vars: dict[str, Any] | None = None
    triggers: Triggers | None = None
    assets: Assets | None = None
    secrets: Secrets | None = None
    flarelet: dict[str, Any] | None = None

    @field_validator("vars")
    @classmethod
    def _json_vars(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, item in (value or {}).items():
            _check_json(item, key)
        return value


class TopLevel(Section):
    env: dict[str, Section] = Field(default_factory=dict)
    dev: Dev | None = None


def _check_json(value: Any, key: str) -> None:
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, list):
        for item in value:
            _check_json(item, key)
        return
    if isinstance(value, dict):
        for item in value.values():
            _check_json(item, key)
        return
    raise ValueError(f"{key}: must be a string or a JSON value, got a {type(value).__name__}")


# -- files ----------------------------------------------------------------------------------------
def find_config(target: str | os.PathLike[str] | None = None) -> Path:
    """The config file for ``target`` (a config file, or a folder searched upwards)."""
    start = Path(target or ".").expanduser()
    if start.is_file():
        return start.resolve()
    if not start.exists():
        raise ConfigError(None, None, None, f"{start} does not exist")
    folder = start.resolve()
    for candidate_dir in (folder, *folder.parents):
        for name in CONFIG_NAMES:
            candidate = candidate_dir / name
            if candidate.is_file():
                return candidate
    raise ConfigError(None, None, None, f"no wrangler.toml, wrangler.json or wrangler.jsonc in {folder} or its parents")


@dataclass
class RawConfig:
    """A parsed config file and where its keys are."""

    path: Path
    data: dict[str, Any]
    lines: dict[tuple[Any, ...], int]

    def line_of(self, key_path: Sequence[Any]) -> int | None:
        return line_of(self.lines, key_path)

    def error(self, key_path: Sequence[Any], message: str) -> ConfigError:
        return ConfigError(self.path, self.line_of(key_path), format_key(key_path) or None, message)


def read_config(path: Path) -> RawConfig:
    """Parse a config file (TOML or JSONC) without validating it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, None, None, f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, None, f"not UTF-8 text: {exc}") from exc
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
            message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
            line = int(m.group(1)) if m else (text.count("\n") + (0 if text.endswith("\n") else 1))
            raise ConfigError(path, line, None, f"invalid TOML: {message}") from exc
        lines = toml_key_lines(text)
    else:
        try:
            data, lines = parse_jsonc(text)
        except JsoncError as exc:
            raise ConfigError(path, exc.line, None, f"invalid JSON: {exc.message}") from exc
        if not isinstance(data, dict):
            raise ConfigError(path, 1, None, "the top level must be an object")
    return RawConfig(path=path, data=data, lines=lines)


# -- resolution -----------------------------------------------------------------------------------
@dataclass
class WorkerConfig:
    """The effective configuration for one run (one environment)."""

    raw: RawConfig
    env_name: str | None
    name: str | None
    main: Path | None
    compatibility_date: str | None
    compatibility_flags: list[str]
    crons: list[str]
    assets: Assets | None
    dev: Dev
    secrets_required: list[str] | None
    #: the ``[flarelet]`` table (flarelet-only settings; plugins read ``flarelet.<their key>``)
    flarelet: dict[str, Any]
    #: binding config key -> its section, in file order (``vars`` included when present)
    bindings: dict[str, Any]
    #: binding config key -> key path prefix of where it was defined (for error lines)
    binding_origin: dict[str, tuple[Any, ...]]
    warnings: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.raw.path

    @property
    def dir(self) -> Path:
        return self.raw.path.parent

    @property
    def vars(self) -> dict[str, Any]:
        return dict(self.bindings.get("vars") or {})

    def error(self, key_path: Sequence[Any], message: str) -> ConfigError:
        return self.raw.error(key_path, message)

    def origin_of(self, key: str) -> tuple[Any, ...]:
        """Key path where the effective value of an inheritable ``key`` is written."""
        if self.env_name:
            section = (self.raw.data.get("env") or {}).get(self.env_name)
            if isinstance(section, Mapping) and key in section:
                return ("env", self.env_name, key)
        return (key,)

    def raw_value(self, key: str) -> Any:
        """The value of ``key`` as written in the file (at :meth:`origin_of`)."""
        node: Any = self.raw.data
        for part in self.origin_of(key):
            node = node.get(part) if isinstance(node, Mapping) else None
        return node

    def section_error(self, config_key: str, exc: Exception) -> ConfigError:
        """One-line :class:`ConfigError` for a plugin's ``ConfigSectionError`` (or any error) on ``config_key``."""
        prefix = self.binding_origin.get(config_key, (config_key,))
        key = getattr(exc, "key", None)
        message = getattr(exc, "message", None) or str(exc)
        if not key:
            return self.raw.error(prefix, message)
        parts = parse_key(str(key))
        if parts and parts[0] == "flarelet" and config_key != "flarelet":
            # a plugin's settings in the [flarelet] table: point at that table, not the binding section
            return self.raw.error(self.origin_of("flarelet")[:-1] + parts, message)
        if parts and parts[0] == config_key:
            parts = parts[1:]
        return self.raw.error(prefix + parts, message)


def _validation_error(raw: RawConfig, exc: ValidationError, prefix: tuple[Any, ...] = ()) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = prefix + tuple(err["loc"])
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, _CronError):
        loc = loc + (cause.index,)
        message = str(cause)
    elif isinstance(cause, ValueError):
        message = str(cause)
        if ": " in message and loc and loc[-1] == "vars":
            name, _, message = message.partition(": ")
            loc = loc + (name,)
    else:
        kind = err["type"]
        message = _MESSAGES.get(kind, err["msg"])
        if kind == "extra_forbidden":
            message = "unexpected field"
        elif kind == "string_pattern_mismatch" and loc and loc[-1] == "compatibility_date":
            message = "must be a date written yyyy-mm-dd"
        if "input" in err and kind not in ("missing", "extra_forbidden"):
            message += f" (got {err['input']!r})"
    return raw.error(loc, message)


def load_config(target: Path | str | None = None, env_name: str | None = None) -> WorkerConfig:
    """Find, parse, validate and resolve the config for ``env_name`` (``None`` = top level)."""
    raw = read_config(find_config(target))
    try:
        top = TopLevel.model_validate(raw.data)
    except ValidationError as exc:
        raise _validation_error(raw, exc) from None
    warnings: list[str] = []
    known = INHERITABLE_KEYS | OTHER_KEYS | frozenset(BINDING_KEYS) | _plugin_keys()
    warnings += _unknown_keys(raw, (), known)
    for env, env_data in (raw.data.get("env") or {}).items():
        if isinstance(env_data, Mapping):
            warnings += _unknown_keys(raw, ("env", env), known - _TOP_LEVEL_ONLY)

    section_data: Mapping[str, Any] = raw.data
    section: Section = top
    origin: tuple[Any, ...] = ()
    if env_name:
        if env_name in top.env:
            section = top.env[env_name]
            section_data = raw.data["env"][env_name]
            origin = ("env", env_name)
        else:
            warnings.append(
                f'No environment found in configuration with name "{env_name}". Before using `--env={env_name}` '
                f"there should be an equivalent environment section in the configuration: the top level is used."
            )

    def pick(key: str) -> Any:
        if origin and key in section.model_fields_set:
            return getattr(section, key)
        return getattr(top, key)

    name = section.name if origin and section.name else (f"{top.name}-{env_name}" if origin and top.name else top.name)
    main_value = pick("main")
    main = (raw.path.parent / main_value).resolve() if main_value else None
    triggers = pick("triggers")
    bindings: dict[str, Any] = {}
    binding_origin: dict[str, tuple[Any, ...]] = {}
    plugin_keys = _plugin_keys()
    for key, value in section_data.items():
        if key in BINDING_KEYS or (key in plugin_keys and key not in INHERITABLE_KEYS and key not in OTHER_KEYS):
            bindings[key] = value
            binding_origin[key] = origin + (key,)
    flarelet = dict(top.flarelet or {})
    if origin and section.flarelet:
        flarelet.update(section.flarelet)
    compat_date = pick("compatibility_date")
    if compat_date is None:
        warnings.append("No compatibility_date was specified. Using today's date.")
    compat_flags = list(pick("compatibility_flags") or [])
    if main is not None and main.suffix == ".py" and PYTHON_WORKERS_FLAG not in compat_flags:
        line = raw.line_of((*origin, "compatibility_flags")) if "compatibility_flags" in section_data else None
        where = f"{_shown_path(raw.path)}:{line}" if line else _shown_path(raw.path)
        warnings.append(
            f'{where}: main is a Python module ({main_value}) but compatibility_flags lacks "{PYTHON_WORKERS_FLAG}": '
            f'Cloudflare requires it to deploy a Python Worker (add compatibility_flags = ["{PYTHON_WORKERS_FLAG}"]); '
            "flarelet runs the worker anyway"
        )
    secrets = pick("secrets") if origin and "secrets" in section.model_fields_set else top.secrets
    return WorkerConfig(
        raw=raw,
        env_name=env_name,
        name=name,
        main=main,
        compatibility_date=compat_date,
        compatibility_flags=compat_flags,
        crons=list(triggers.crons) if triggers else [],
        assets=pick("assets"),
        dev=top.dev or Dev(),
        secrets_required=secrets.required if secrets else None,
        flarelet=flarelet,
        bindings=bindings,
        binding_origin=binding_origin,
        warnings=warnings,
    )


def _unknown_keys(raw: RawConfig, where: tuple[Any, ...], known: frozenset[str]) -> list[str]:
    """wrangler's warning for each key nobody reads, with the line and the closest known key: a
    typo such as ``compatibilty_date`` would otherwise pass as "no compatibility_date"."""
    table = raw.data
    for part in where:
        table = table[part]
    label = format_key(where) if where else "top-level"
    out = []
    for key in table:
        if key in known:
            continue
        line = raw.line_of((*where, key))
        text = f"{_shown_path(raw.path)}:{line}" if line else _shown_path(raw.path)
        text += f": Unexpected fields found in {label} field: {key!r}"
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
        if close:
            text += f" (did you mean {close[0]!r}?)"
        out.append(text)
    return out


def _plugin_keys() -> frozenset[str]:
    from flarelet.bindings.registry import PLUGIN_PATHS  # a plain dict; importing it loads no plugin

    return frozenset(PLUGIN_PATHS)
