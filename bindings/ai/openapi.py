"""The OpenAPI 3.1 document of flarelet's Workers AI REST API (served at ``/client/v4/openapi.json``).

Why publish one: client generators and API tools (and our own property-based test, which fuzzes
the live server from this document) need a machine-readable description of what the local
endpoint accepts and answers. It follows Cloudflare's own API schema in spirit: one ``run`` path
per model (``/accounts/{account_id}/ai/run/@cf/openai/whisper``) with that model's input schema,
Bearer-token security, and the v4 envelope around every answer.

Model input schemas come from the pydantic model each model's task validates with
(:meth:`Task.input_model <flarelet.bindings.ai.tasks.Task.input_model>`) when it offers one, else
from the published JSON Schema in the catalog entry; output schemas are Cloudflare's.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from . import catalog
from .rest_auth import ACCOUNT_ID_PATTERN

OPENAPI_VERSION = "3.1.0"

_ERROR_ITEM = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "integer", "description": "Cloudflare's internal error code (e.g. 5006 bad input)."},
        "message": {"type": "string"},
        "error_chain": {"type": "array", "items": {"$ref": "#/components/schemas/ErrorItem"}},
    },
}

_ERROR_ENVELOPE = {
    "type": "object",
    "description": "Cloudflare's v4 error envelope.",
    "required": ["result", "success", "errors", "messages"],
    "properties": {
        "result": {"type": "null"},
        "success": {"const": False},
        "errors": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/ErrorItem"}},
        "messages": {"type": "array"},
    },
}

_MODEL_ENTRY = {
    "type": "object",
    "description": "A model, as Cloudflare's models/search lists it.",
    "required": ["id", "name", "description", "task"],
    "properties": {
        "id": {"type": "string"},
        "source": {"type": "number"},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "task": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "description": {"type": "string"}},
        },
        "tags": {"type": "array", "items": {"type": "string"}},
        "properties": {
            "type": "array",
            "items": {"type": "object", "properties": {"property_id": {"type": "string"}, "value": {}}},
        },
    },
}

_RESULT_INFO = {
    "type": "object",
    "required": ["page", "per_page", "count", "total_count"],
    "properties": {
        "page": {"type": "integer", "minimum": 1},
        "per_page": {"type": "integer", "minimum": 1},
        "count": {"type": "integer", "minimum": 0},
        "total_count": {"type": "integer", "minimum": 0},
    },
}


def success_envelope(result_schema: dict[str, Any], **extra: dict[str, Any]) -> dict[str, Any]:
    """Cloudflare's v4 success envelope around ``result_schema``."""
    return {
        "type": "object",
        "required": ["result", "success", "errors", "messages", *extra],
        "properties": {
            "result": result_schema,
            "success": {"const": True},
            "errors": {"type": "array", "maxItems": 0},
            "messages": {"type": "array"},
            **extra,
        },
    }


def _error_responses() -> dict[str, Any]:
    ref = {"$ref": "#/components/responses/Error"}
    return {"4XX": ref}


def operation_id(model: str) -> str:
    return "run_" + re.sub(r"[^0-9A-Za-z]+", "_", model).strip("_")


def _strip_keywords(schema: Any) -> Any:
    """Drop Cloudflare's non-standard ``contentType`` keyword (not JSON Schema); a *property*
    named ``contentType`` (turbo's ``{body, contentType}``) stays."""
    if isinstance(schema, list):
        return [_strip_keywords(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "contentType":
            continue
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {name: _strip_keywords(sub) for name, sub in value.items()}
        else:
            out[key] = _strip_keywords(value)
    return out


def json_input_schema(spec: catalog.ModelSpec, components: dict[str, Any]) -> dict[str, Any]:
    """The JSON-object form of a model's inputs (the binary form is described separately)."""
    from_pydantic = _pydantic_input_schema(spec, components)
    if from_pydantic is not None:
        return from_pydantic
    schema = _strip_keywords(spec.input_schema)
    if "oneOf" in schema:  # classic whisper: [binary string, {audio: [...]}]; keep the object
        objects = [s for s in schema["oneOf"] if s.get("type") == "object"]
        schema = objects[0] if objects else {"type": "object"}
    return schema


def _pydantic_input_schema(spec: catalog.ModelSpec, components: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of the pydantic model the service validates ``spec``'s JSON inputs with.

    The pydantic models type ``audio`` loosely (``Any``: they also take Python bytes from the
    binding), so ``audio`` is described with Cloudflare's published schema instead, tightened to
    what is accepted (integers 0..255 for the classic array form).
    """
    model = catalog.task_of(spec).input_model(spec)
    if model is None:
        return None
    from pydantic.json_schema import models_json_schema

    mapping, defs = models_json_schema([(model, "validation")], ref_template="#/components/schemas/{model}")
    nested = dict(defs.get("$defs", {}))
    schema = copy.deepcopy(nested.pop(model.__name__, mapping[(model, "validation")]))
    components.update(nested)
    published = _strip_keywords(spec.input_schema)
    if "oneOf" in published:
        published = next((b for b in published["oneOf"] if b.get("type") == "object"), published)
    audio = copy.deepcopy(published.get("properties", {}).get("audio", {}))
    if audio.get("type") == "array":
        audio["items"] = {"type": "integer", "minimum": 0, "maximum": 255, "description": "A value between 0 and 255"}
    schema.setdefault("properties", {})["audio"] = audio
    schema["required"] = sorted(set(schema.get("required", [])) | {"audio"})
    schema["type"] = "object"
    return schema


def accepts_binary(spec: catalog.ModelSpec) -> bool:
    """Whether the model takes the raw file as the body (``format: binary`` in its schema)."""
    schema = spec.input_schema
    branches = schema.get("oneOf", []) if isinstance(schema, dict) else []
    return any(b.get("format") == "binary" for b in branches)


def build_openapi(server_url: str = "/client/v4", account_id: str | None = None) -> dict[str, Any]:
    """The document; ``account_id`` (when the server is bound to one) is given as the only value."""
    account_param: dict[str, Any] = {
        "name": "account_id",
        "in": "path",
        "required": True,
        "description": "The account id (any 32-hex id unless the server is configured with one).",
        "schema": {"type": "string", "pattern": ACCOUNT_ID_PATTERN.pattern},
    }
    if account_id is not None:
        account_param["schema"] = {"type": "string", "enum": [account_id]}

    components: dict[str, Any] = {
        "ErrorItem": _ERROR_ITEM,
        "ErrorEnvelope": _ERROR_ENVELOPE,
        "Model": _MODEL_ENTRY,
        "ResultInfo": _RESULT_INFO,
    }
    paths: dict[str, Any] = {}
    for spec in catalog.MODELS.values():
        json_schema = json_input_schema(spec, components)
        content: dict[str, Any] = {"application/json": {"schema": json_schema}}
        if accepts_binary(spec):
            content["application/octet-stream"] = {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "The audio file (mp3, wav, flac, ogg, webm...).",
                }
            }
        paths[f"/accounts/{{account_id}}/ai/run/{spec.id}"] = {
            "post": {
                "operationId": operation_id(spec.id),
                "summary": f"Run {spec.id}",
                "description": spec.description,
                "tags": ["Workers AI"],
                "parameters": [{"$ref": "#/components/parameters/account_id"}],
                "requestBody": {"required": True, "content": content},
                "responses": {
                    "200": {
                        "description": "The model output in the v4 envelope.",
                        "content": {
                            "application/json": {"schema": success_envelope(_strip_keywords(spec.output_schema))}
                        },
                    },
                    **_error_responses(),
                },
            }
        }

    paths["/accounts/{account_id}/ai/models/search"] = {
        "get": {
            "operationId": "models_search",
            "summary": "Search the model catalog",
            "tags": ["Workers AI"],
            "parameters": [
                {"$ref": "#/components/parameters/account_id"},
                {
                    "name": "search",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "Substring of name or description.",
                },
                {"name": "task", "in": "query", "schema": {"type": "string"}, "description": "Task name (or id)."},
                {"name": "author", "in": "query", "schema": {"type": "string"}},
                {"name": "source", "in": "query", "schema": {"type": "number"}},
                {"name": "hide_experimental", "in": "query", "schema": {"type": "boolean"}},
                {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
            ],
            "responses": {
                "200": {
                    "description": "One page of models.",
                    "content": {
                        "application/json": {
                            "schema": success_envelope(
                                {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
                                result_info={"$ref": "#/components/schemas/ResultInfo"},
                            )
                        }
                    },
                },
                **_error_responses(),
            },
        }
    }
    paths["/accounts/{account_id}/ai/models/schema"] = {
        "get": {
            "operationId": "models_schema",
            "summary": "A model's input and output JSON Schema",
            "tags": ["Workers AI"],
            "parameters": [
                {"$ref": "#/components/parameters/account_id"},
                {"name": "model", "in": "query", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "The schemas.",
                    "content": {
                        "application/json": {
                            "schema": success_envelope(
                                {
                                    "type": "object",
                                    "required": ["input", "output"],
                                    "properties": {"input": {"type": "object"}, "output": {"type": "object"}},
                                }
                            )
                        }
                    },
                },
                **_error_responses(),
            },
        }
    }

    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "flarelet Workers AI REST API",
            "version": "1.0.0",
            "description": (
                "Cloudflare's Workers AI REST API (`/client/v4/accounts/{account_id}/ai/...`), served "
                "locally by flarelet. Every answer is a v4 envelope "
                "`{result, success, errors, messages}`; failures carry Cloudflare's error codes."
            ),
        },
        "servers": [{"url": server_url}],
        "security": [{"api_token": []}, {"api_email": [], "api_key": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "api_token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <token>`; the token is printed at start unless configured.",
                },
                "api_email": {"type": "apiKey", "in": "header", "name": "X-Auth-Email"},
                "api_key": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Auth-Key",
                    "description": "Checked against the same token list (global-API-key style clients).",
                },
            },
            "parameters": {"account_id": account_param},
            "responses": {
                "Error": {
                    "description": "A v4 error envelope with Cloudflare's code(s).",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
                }
            },
            "schemas": copy.deepcopy(components),
        },
    }
