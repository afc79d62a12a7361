"""``flarelet ai serve``: a local Workers AI REST endpoint, without a worker.

For people who only want ``POST /client/v4/accounts/{id}/ai/run/{model}`` on their machine (a
script, a notebook, a CI job that must not call Cloudflare): the same routes ``flarelet dev``
mounts beside a worker, served alone with uvicorn.

``flarelet.cli`` calls :func:`register` when this module is present. Importing it is cheap:
the AI modules are imported only when the command runs, and models load on first use (or at
start with ``--preload``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flarelet.cli.help import examples
from flarelet.runtime.logs import LOG_LEVELS

DEFAULT_PORT = 8787
DEFAULT_IP = "127.0.0.1"
CONFIG_NAMES = ("wrangler.toml", "wrangler.json", "wrangler.jsonc")


def register(subparsers: Any) -> None:
    """Add ``ai`` (with ``serve``) to the ``flarelet`` command line."""
    ai = subparsers.add_parser(
        "ai",
        help="Workers AI tools (a local REST endpoint)",
        description=__doc__.split("\n\n")[0],
        **examples("flarelet ai serve", "flarelet ai serve --help"),
    )
    commands = ai.add_subparsers(dest="ai_command", metavar="COMMAND")
    ai.set_defaults(func=lambda args: (ai.print_help(), 2)[1])

    serve = commands.add_parser(
        "serve",
        help="serve the Workers AI REST API (/client/v4/accounts/{id}/ai/run/{model}) on this machine",
        description=(
            "Serve Cloudflare's Workers AI REST API locally. Point any client's base URL at "
            "http://IP:PORT/client/v4 (the official SDK, curl, requests) and it runs unchanged. "
            "Settings come from --options, then FLARELET_* environment variables, then the "
            "[flarelet.ai] table of the config file."
        ),
        **examples(
            "flarelet ai serve                                         # http://127.0.0.1:8787/client/v4",
            "flarelet ai serve --preload @cf/openai/whisper-tiny-en --port 0",
            "flarelet ai serve --api-token my-token --account-id f1a7e1e7000000000000000000000000",
        ),
    )
    serve.add_argument(
        "--port", type=int, default=None, help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)"
    )
    serve.add_argument("--ip", default=None, help=f"address to listen on (default {DEFAULT_IP}, loopback only)")
    serve.add_argument(
        "--api-token",
        action="append",
        default=None,
        metavar="TOKEN",
        help=(
            "accepted Bearer token (repeatable; default: FLARELET_API_TOKEN, [flarelet.ai] api_tokens, else a "
            "random one printed at start)"
        ),
    )
    serve.add_argument(
        "--account-id",
        default=None,
        help=(
            "the only account id answered (default: FLARELET_ACCOUNT_ID, [flarelet.ai] account_id, else any 32-hex id)"
        ),
    )
    serve.add_argument(
        "--preload",
        action="append",
        default=None,
        metavar="MODEL",
        help="load this model at start, e.g. @cf/openai/whisper-tiny-en (repeatable; 'all' for every model)",
    )
    serve.add_argument(
        "--config",
        "-c",
        type=Path,
        default=None,
        help="wrangler config whose [flarelet.ai] table to read (default: wrangler.toml/json/jsonc here, if any)",
    )
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="log level (default: info)")
    serve.set_defaults(func=serve_command)


def load_ai_table(config: Path | None, cwd: Path | None = None) -> dict[str, Any]:
    """The ``[flarelet.ai]`` table of the config file (``{}`` when there is no file or table)."""
    if config is None:
        base = cwd or Path.cwd()
        config = next((base / n for n in CONFIG_NAMES if (base / n).is_file()), None)
        if config is None:
            return {}
    elif not config.is_file():
        raise SystemExit(f"flarelet ai serve: config file not found: {config}")
    text = config.read_text(encoding="utf-8")
    from flarelet.wrangler_compat.jsonc import JsoncError, parse_jsonc

    try:
        data = tomllib.loads(text) if config.suffix == ".toml" else parse_jsonc(text)[0]
    except (tomllib.TOMLDecodeError, JsoncError) as exc:
        raise SystemExit(f"flarelet ai serve: cannot parse {config}: {exc}") from None
    table = (data.get("flarelet") or {}).get("ai") or {}
    if not isinstance(table, dict):
        raise SystemExit(f"flarelet ai serve: {config}: [flarelet.ai] must be a table")
    return table


def build_options(args: argparse.Namespace, table: Mapping[str, Any]) -> dict[str, Any]:
    """Command-line values and the config table, in the shape plugins receive (``ctx.options``)."""
    return {
        "flarelet": {"ai": dict(table)},
        "api_token": args.api_token,
        "account_id": args.account_id,
        "preload": args.preload or [],
        "ip": args.ip or DEFAULT_IP,
        "port": DEFAULT_PORT if args.port is None else args.port,
    }


def serve_command(args: argparse.Namespace) -> int:
    """Run the endpoint until Ctrl-C, speaking as ``flarelet dev`` does: ``[flarelet:<level>]``
    lines, ``Ready on URL``, the model lines, one line per request, the same ``--log-level``s."""
    from flarelet.bindings.ai import catalog
    from flarelet.bindings.ai.rest import ai_settings_from_options, banner, create_app, url_host
    from flarelet.bindings.ai.rest_auth import RestCredentials
    from flarelet.bindings.ai.settings import SettingsError
    from flarelet.runtime.limits import ServerLimits
    from flarelet.runtime.logs import setup_logging
    from flarelet.runtime.server import bind_socket, serve_app

    setup_logging(args.log_level)
    options = build_options(args, load_ai_table(args.config))
    try:
        settings = ai_settings_from_options(options)
        credentials = RestCredentials.from_options(options)
    except (SettingsError, ValueError) as exc:
        return _error(str(exc), 2)
    preload = list(options["preload"])
    if "all" in preload:
        preload = list(catalog.MODELS)
    unknown = [m for m in preload if m not in catalog.MODELS]
    if unknown:
        return _error(f"--preload: no such model {', '.join(unknown)} (known: {', '.join(catalog.MODELS)})", 2)

    host = options["ip"]
    try:
        sock = bind_socket(host, options["port"])
    except OSError as exc:
        return _error(f"cannot listen on {host}:{options['port']}: {exc.strerror or exc}", 1)
    url = f"http://{url_host(host)}:{sock.getsockname()[1]}"
    verbose = args.log_level in ("debug", "info", "log")

    def say(message: str) -> None:
        # as in flarelet dev: printed at every level but "none" (scripts read the URL from "Ready on")
        if args.log_level != "none":
            print(f"[flarelet:info] {message}", flush=True)

    def ready() -> None:
        say(f"Ready on {url}")
        if verbose:
            print("\n".join(banner(credentials, url)), file=sys.stderr, flush=True)

    if preload:
        logging.getLogger("flarelet").info("Preloading %s", ", ".join(preload))
    app = create_app(settings, credentials=credentials, preload=preload)
    try:
        # the dev server's header sizes and timeouts (431/414/408), Cloudflare's values
        started = serve_app(app, sock, say=say, log_requests=verbose, on_ready=ready, limits=ServerLimits())
    finally:
        sock.close()
    return 0 if started else 1


def _error(message: str, code: int) -> int:
    print(f"flarelet: error: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flarelet.cli.ai_command serve ...`` (same as ``flarelet ai serve ...``)."""
    parser = argparse.ArgumentParser(prog="flarelet")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ai", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
