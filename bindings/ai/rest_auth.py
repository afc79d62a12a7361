"""Who may call the local Workers AI REST API, and the v4 errors for those who may not.

Cloudflare's API accepts ``Authorization: Bearer <API token>`` (and, for the global API key,
``X-Auth-Email`` + ``X-Auth-Key``). flarelet checks the same headers against tokens the user
configured, or against one random token made at start, so that a local endpoint that transcribes
audio with this machine's CPU is never open to whoever can reach the port.

Where credentials come from, first match wins (most specific first):

1. the command line: ``--api-token`` / ``--account-id`` (``options["api_token"]``, ``options["account_id"]``)
2. the environment: ``FLARELET_API_TOKEN`` (comma-separated for several) / ``FLARELET_ACCOUNT_ID``
3. the config file: ``[flarelet.ai]`` ``api_tokens = [...]`` (or ``api_token = "..."``), ``account_id = "..."``
4. nothing set: a random 40-character token is made once per process and printed;
   any well-formed account id (32 lowercase hex digits, as Cloudflare's are) is accepted, so
   scripts that already carry their real ``CLOUDFLARE_ACCOUNT_ID`` work unchanged.

The error bodies and codes are the ones Cloudflare's API returns (research notes §2.3).
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Shown in examples when no account id is configured; any 32-hex id is accepted then.
DEFAULT_ACCOUNT_ID = "f1a7e1e7" + "0" * 24

ACCOUNT_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
#: what :func:`_single` returns for a header given more than once
_AMBIGUOUS: Any = object()
_BEARER = re.compile(r"^Bearer ([A-Za-z0-9._~+/=-]+)$", re.IGNORECASE)

ENV_TOKEN = "FLARELET_API_TOKEN"
ENV_ACCOUNT = "FLARELET_ACCOUNT_ID"

_generated_token: str | None = None


def generated_token() -> str:
    """The process-wide random token (made on first use), so a dev-server reload keeps it."""
    global _generated_token
    if _generated_token is None:
        _generated_token = secrets.token_urlsafe(30)  # 40 characters, like Cloudflare's tokens
    return _generated_token


class RestError(Exception):
    """A Cloudflare v4 API error that is not a Workers AI one (auth, routing, method)."""

    def __init__(self, status: int, errors: list[dict[str, Any]], headers: Mapping[str, str] | None = None) -> None:
        super().__init__("; ".join(f"{e['code']}: {e['message']}" for e in errors))
        self.status = status
        self.errors = errors
        self.headers = dict(headers or {})

    def to_envelope(self) -> dict[str, Any]:
        return {"result": None, "success": False, "errors": self.errors, "messages": []}


def missing_auth() -> RestError:
    return RestError(400, [{"code": 9106, "message": "Missing X-Auth-Key, X-Auth-Email or Authorization headers"}])


def malformed_auth() -> RestError:
    return invalid_headers((6111, "Authorization"))


def invalid_headers(*problems: tuple[int, str]) -> RestError:
    """Cloudflare's 6003 "Invalid request headers", its chain naming each header (6102 X-Auth-Email,
    6103 X-Auth-Key, 6111 Authorization)."""
    return RestError(
        400,
        [
            {
                "code": 6003,
                "message": "Invalid request headers",
                "error_chain": [
                    {"code": code, "message": f"Invalid format for {name} header"} for code, name in problems
                ],
            }
        ],
    )


def bad_token() -> RestError:
    return RestError(401, [{"code": 10000, "message": "Authentication error"}])


def no_route(path: str) -> RestError:
    return RestError(
        400,
        [
            {"code": 7003, "message": f"Could not route to {path}, perhaps your object identifier is invalid?"},
            {"code": 7000, "message": "No route for that URI"},
        ],
    )


def unknown_path() -> RestError:
    return RestError(400, [{"code": 7000, "message": "No route for that URI"}])


def method_not_allowed(method: str, allowed: Iterable[str]) -> RestError:
    allow = ", ".join(sorted(allowed))
    return RestError(
        405,
        [{"code": 7000, "message": f"No route for that URI: method {method} not allowed (allowed: {allow})"}],
        headers={"Allow": allow},
    )


def _single(headers: Mapping[str, str], name: str) -> str | None:
    """The one value of ``name``; ``None`` if absent; :data:`_AMBIGUOUS` if given more than once."""
    getlist = getattr(headers, "getlist", None)
    if getlist is not None:
        values = getlist(name)
        if len(values) > 1:
            return _AMBIGUOUS
        return values[0] if values else None
    return headers.get(name)


def _as_list(value: Any) -> list[str]:
    """Tokens may be given as one string, a comma-separated string, or a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for item in value:
            out.extend(_as_list(item))
        return out
    raise ValueError(f"api token must be a string or a list of strings, not {type(value).__name__}")


@dataclass(frozen=True)
class RestCredentials:
    """The accepted tokens and account id, and where they came from (for the start-up banner)."""

    tokens: tuple[str, ...]
    #: ``None``: any well-formed (32 lowercase hex) account id is accepted.
    account_id: str | None
    #: "command line", "environment", "config", or "generated".
    token_source: str

    @classmethod
    def from_options(cls, options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> RestCredentials:
        """Resolve credentials from command-line options, the environment, then ``[flarelet.ai]``."""
        env = os.environ if environ is None else environ
        table = (options.get("flarelet") or {}).get("ai") or {}
        if not isinstance(table, Mapping):
            raise ValueError("[flarelet.ai] must be a table")

        tokens: list[str] = []
        source = "generated"
        for src, value in (
            ("command line", options.get("api_token") or options.get("api_tokens")),
            ("environment", env.get(ENV_TOKEN)),
            ("config", table.get("api_tokens", table.get("api_token"))),
        ):
            tokens = _as_list(value)
            if tokens:
                source = src
                break
        for token in tokens:
            if not _BEARER.match(f"Bearer {token}"):
                raise ValueError(
                    f"API token from the {source} contains characters an Authorization header cannot carry"
                )
        if not tokens:
            tokens = [generated_token()]

        account = options.get("account_id") or env.get(ENV_ACCOUNT) or table.get("account_id") or None
        if account is not None:
            account = str(account).strip() or None
        return cls(tokens=tuple(tokens), account_id=account, token_source=source)

    @property
    def example_account_id(self) -> str:
        return self.account_id or DEFAULT_ACCOUNT_ID

    def authenticate(self, headers: Mapping[str, str]) -> None:
        """Raise the Cloudflare error for a request whose credentials are missing, malformed or wrong.

        ``headers`` may repeat a name (Starlette's ``Headers``): a credential header given twice is
        ambiguous and refused as malformed, never settled by taking the first. The global-key style
        needs both ``X-Auth-Email`` and ``X-Auth-Key``; either alone is 6003 naming the other.
        """
        authorization = _single(headers, "authorization")
        if authorization is None:
            key = _single(headers, "x-auth-key")
            email = _single(headers, "x-auth-email")
            if key is None and email is None:
                raise missing_auth()
            problems = []
            if email is _AMBIGUOUS or email is None or not _EMAIL.match(email.strip()):
                problems.append((6102, "X-Auth-Email"))
            if key is _AMBIGUOUS or key is None or not key.strip():
                problems.append((6103, "X-Auth-Key"))
            if problems:
                raise invalid_headers(*problems)
            # Global-API-key style: the key is checked against the same token list.
            if not self._known(key.strip()):  # type: ignore[union-attr]
                raise bad_token()
            return
        if authorization is _AMBIGUOUS:
            raise malformed_auth()
        match = _BEARER.match(authorization.strip())
        if match is None:
            raise malformed_auth()
        if not self._known(match.group(1)):
            raise bad_token()

    def check_account(self, account_id: str, path: str) -> None:
        """Raise 7003/7000 for an account id this server does not answer for."""
        if self.account_id is not None:
            ok = hmac.compare_digest(account_id.encode(), self.account_id.encode())
        else:
            ok = ACCOUNT_ID_PATTERN.match(account_id) is not None
        if not ok:
            raise no_route(path)

    def _known(self, token: str) -> bool:
        """Constant-time comparison against every token (no early exit reveals which matched)."""
        given = token.encode()
        found = False
        for candidate in self.tokens:
            found |= hmac.compare_digest(given, candidate.encode())
        return found
