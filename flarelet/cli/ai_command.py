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
import os
import socket
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flarelet.cli.help import examples

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
        help="accepted Bearer token (repeatable; default: FLARELET_API_TOKEN, [flarelet.ai] api_tokens, else a random one printed at start)",
    )
    serve.add_argument(
        "--account-id",
        default=None,
        help="the only account id answered (default: FLARELET_ACCOUNT_ID, [flarelet.ai] account_id, else any 32-hex id)",
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
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
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
    """Run the endpoint until Ctrl-C."""
    import uvicorn

    from flarelet.bindings.ai import catalog
    from flarelet.bindings.ai.rest import ai_settings_from_options, banner, create_app, url_host
    from flarelet.bindings.ai.rest_auth import RestCredentials
    from flarelet.bindings.ai.settings import SettingsError
    from flarelet.runtime.shutdown import GracefulServer

    options = build_options(args, load_ai_table(args.config))
    try:
        settings = ai_settings_from_options(options)
        credentials = RestCredentials.from_options(options)
    except (SettingsError, ValueError) as exc:
        print(f"flarelet ai serve: {exc}", file=sys.stderr)
        return 2
    preload = list(options["preload"])
    if "all" in preload:
        preload = list(catalog.MODELS)
    unknown = [m for m in preload if m not in catalog.MODELS]
    if unknown:
        print(
            f"flarelet ai serve: --preload: no such model {', '.join(unknown)} (known: {', '.join(catalog.MODELS)})",
            file=sys.stderr,
        )
        return 2

    host = options["ip"]
    try:
        sock = _bind(host, options["port"])
    except OSError as exc:
        print(f"flarelet ai serve: cannot listen on {host}:{options['port']}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    app = create_app(settings, credentials=credentials, preload=preload)
    print("\n".join(banner(credentials, f"http://{url_host(host)}:{port}")), file=sys.stderr, flush=True)
    if preload:
        print(f"Loading {', '.join(preload)} before accepting requests...", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level=args.log_level, lifespan="on")

    def say(message: str) -> None:
        print(f"[flarelet:info] {message}", file=sys.stderr, flush=True)

    # first Ctrl-C finishes the requests in flight (announced), the second exits at once with 130
    server = GracefulServer(config, say=say)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 1


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flarelet.cli.ai_command serve ...`` (same as ``flarelet ai serve ...``)."""
    parser = argparse.ArgumentParser(prog="flarelet")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ai", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
