"""The ``flarelet`` command (argparse with subcommands), starting with ``flarelet dev``.

``flarelet dev [DIR_OR_CONFIG]`` mirrors ``wrangler dev``: it reads the wrangler config, prints the
bindings table, serves the worker on ``--ip``/``--port`` (default 127.0.0.1:8787, or ``[dev]`` of
the config), logs each request, reloads on file changes and runs cron triggers. Everything runs
locally; ``--remote`` is refused.

Other modules add subcommands: if ``flarelet.cli.ai_command`` or ``flarelet.cli.d1_command``
exist, their ``register(subparsers)`` is called (each sets ``func`` on its parser; ``func(args)``
returns the exit code). A bad config prints one line (file:line: key: message) and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flarelet.cli.help import examples
from flarelet.runtime.logs import LOG_LEVELS

EXTENSION_MODULES = ("flarelet.cli.ai_command", "flarelet.cli.d1_command")
DEFAULT_PORT = 8787
DEFAULT_IP = "127.0.0.1"


def parse_size(text: str) -> int:
    """``100MB``, ``512k``, ``1048576`` -> bytes (binary multiples, as Cloudflare's ``100 MB`` is)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?i?b?)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 1048576, 512KB, 100MB)")
    unit = (m.group(2) or "").lower().rstrip("b").rstrip("i")
    factor = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]
    value = int(float(m.group(1)) * factor)
    if value <= 0:
        raise argparse.ArgumentTypeError("the size must be positive")
    return value


def parse_var(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--var expects KEY:VALUE, got {text!r}")
    return name, value


def _add_dev(subparsers: Any) -> None:
    dev = subparsers.add_parser(
        "dev",
        help="Start a local server for developing your Worker (like `wrangler dev`)",
        description="Serve a Cloudflare Python Worker locally, offline, with its bindings.",
        **examples(
            "flarelet dev                                  # the wrangler config in . (or a folder above)",
            "flarelet dev examples/whisper --preload       # load the AI models at start",
            "flarelet dev --port 0 --var GREETING:Hi --env staging --log-level warn",
        ),
    )
    dev.add_argument(
        "target",
        nargs="?",
        metavar="DIR_OR_CONFIG",
        help="project folder (searched upwards for wrangler.json/.jsonc/.toml) or config file; default: .",
    )
    dev.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        help="config file (same as DIR_OR_CONFIG); repeat it to run several workers in one process, "
        "as wrangler dev does: the first is served, the others are reachable through bindings",
    )
    dev.add_argument(
        "--port", type=int, help=f"port to listen on (default: [dev] port or {DEFAULT_PORT}; 0 = any free port)"
    )
    dev.add_argument("--ip", help=f"IP address to listen on (default: [dev] ip or {DEFAULT_IP})")
    dev.add_argument("-e", "--env", dest="env_name", metavar="NAME", help="use the [env.NAME] section of the config")
    dev.add_argument(
        "--var",
        dest="vars",
        action="extend",
        nargs="+",
        type=parse_var,
        default=[],
        metavar="KEY:VALUE",
        help="inject a variable (a string), overriding [vars] and .dev.vars",
    )
    dev.add_argument("--persist-to", type=Path, help="folder for local binding storage (default: .wrangler/state)")
    dev.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="log level (default: info)")
    dev.add_argument(
        "--max-body-size",
        type=parse_size,
        metavar="SIZE",
        help="largest request body accepted before 413 (default: 100MB, Cloudflare's limit)",
    )
    dev.add_argument(
        "--upstream",
        "--local-upstream",
        dest="upstream",
        metavar="URL",
        help="origin server behind the worker: subrequests to the worker's own URL go there "
        "(wrangler's --local-upstream; a bare host means https; or [flarelet] upstream)",
    )
    dev.add_argument("--api-token", help="API token accepted by the local Workers AI REST API")
    dev.add_argument("--account-id", help="account id of the local Workers AI REST API")
    dev.add_argument("--preload", action="store_true", help="load the AI binding's models at start, not on first use")
    dev.add_argument(
        "--no-install",
        dest="install_deps",
        action="store_false",
        help="do not install the worker's declared dependencies (pyproject.toml / requirements.txt)",
    )
    dev.add_argument("--no-watch", dest="watch", action="store_false", help="do not reload when files change")
    dev.add_argument("--no-crons", dest="crons", action="store_false", help="do not run cron triggers on schedule")
    dev.add_argument("--test-scheduled", action="store_true", help="accepted for wrangler compatibility (always on)")
    dev.add_argument("--local", action="store_true", help="accepted for wrangler compatibility (always local)")
    dev.add_argument("--remote", action="store_true", help=argparse.SUPPRESS)
    dev.set_defaults(func=cmd_dev)


def _error(message: str) -> int:
    print(f"flarelet: error: {message}", file=sys.stderr, flush=True)
    return 1


def cmd_dev(args: argparse.Namespace) -> int:
    """``flarelet dev``."""
    if args.remote:
        return _error("--remote is not supported: flarelet runs every binding locally")
    from flarelet.runtime.logs import setup_logging
    from flarelet.wrangler_compat.config import ConfigError, find_config

    setup_logging(args.log_level)
    import logging

    log = logging.getLogger("flarelet")
    targets = list(args.config)
    if args.target is not None:
        targets.insert(0, args.target)
    if not targets:
        targets = [None]
    try:
        config_paths = [find_config(target) for target in targets]
    except ConfigError as exc:
        return _error(str(exc))
    config_path = config_paths[0]
    persist_to = args.persist_to or (config_path.parent / ".wrangler" / "state")
    options: dict[str, Any] = {"preload": bool(args.preload), "install_deps": bool(args.install_deps)}
    if args.api_token is not None:
        options["api_token"] = args.api_token
    if args.account_id is not None:
        options["account_id"] = args.account_id

    from flarelet.runtime.workerset import WorkerSet

    try:
        workers = WorkerSet.from_configs(
            config_paths,
            args.env_name,
            vars=dict(args.vars),
            persist_to=persist_to,
            options=options,
            max_body_bytes=args.max_body_size,
            upstream=args.upstream,
        )
    except ConfigError as exc:
        return _error(str(exc))
    except ValueError as exc:
        return _error(str(exc))
    host = workers.primary
    for member in workers:
        for warning in member.config.warnings:
            log.warning("%s", warning)

    from flarelet.cli.table import print_bindings
    from flarelet.runtime.server import DevServer, PortInUseError, bind_socket

    verbose = args.log_level in ("debug", "info", "log")
    if verbose:
        print_bindings(host.bindings)
        for other in workers.others:
            print(f"Also running worker {other.name} ({other.config.path}), reachable through bindings", flush=True)
            print_bindings(other.bindings)
    ip = args.ip or host.config.dev.ip or DEFAULT_IP
    explicit_port = args.port is not None or host.config.dev.port is not None
    port = (
        args.port
        if args.port is not None
        else (host.config.dev.port if host.config.dev.port is not None else DEFAULT_PORT)
    )
    try:
        sock = bind_socket(ip, port)
    except PortInUseError:
        if explicit_port:
            return _error(f"port {port} on {ip} is already in use (choose another with --port)")
        sock = bind_socket(ip, 0)
        log.warning("port %d is in use; using port %d instead", port, sock.getsockname()[1])
    except OSError as exc:
        return _error(f"cannot listen on {ip}:{port}: {exc.strerror or exc}")

    def say(message: str) -> None:
        # printed at every level but "none": scripts and tests read the URL from "Ready on", and
        # the shutdown notices tell a person at the keyboard what Ctrl-C is doing
        if args.log_level != "none":
            print(f"[flarelet:info] {message}", flush=True)

    def ready(url: str) -> None:
        say(f"Ready on {url}")
        if "ai" in host.config.bindings and verbose:  # the Workers AI REST API: token + curl line
            from flarelet.bindings.ai.rest import announce

            announce(host.ctx, url)

    def reprint() -> None:
        if verbose:
            print_bindings(host.bindings)

    server = DevServer(
        host,
        sock,
        log_requests=verbose,
        watch=args.watch,
        run_crons=args.crons,
        on_ready=ready,
        on_config_reloaded=reprint,
        say=say,
        peers=workers.others,
    )
    server.run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    from flarelet import __version__

    parser = argparse.ArgumentParser(
        prog="flarelet",
        description="Local, offline emulator of Cloudflare Python Workers.",
        **examples(
            "flarelet dev examples/hello",
            "flarelet ai serve --preload @cf/openai/whisper-tiny-en",
            'flarelet d1 execute DB --command "SELECT 1"',
            "flarelet COMMAND --help",
        ),
    )
    parser.add_argument("-v", "--version", action="version", version=f"flarelet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    _add_dev(subparsers)
    for name in EXTENSION_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:  # Ctrl-C before a server took over the signal (loading, building): quiet
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
