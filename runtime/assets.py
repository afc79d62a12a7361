"""Static assets (wrangler's ``assets = { directory = "./public", binding = "ASSETS" }``).

As on Cloudflare, a request whose path matches a file in the directory is answered with the file
before the worker runs (unless ``run_worker_first``); other requests go to the worker, or — for an
assets-only project — get ``not_found_handling`` (``none`` -> 404, ``404-page`` -> the nearest
``404.html``, ``single-page-application`` -> ``/index.html``). ``env.<binding>.fetch(request or
url)`` asks the asset server directly from worker code.

``html_handling`` follows the default ``auto-trailing-slash`` rules: ``/about`` serves
``about.html`` or redirects to ``/about/`` when only ``about/index.html`` exists, and
``/about.html`` redirects to ``/about``. Responses carry ``ETag`` and honour ``If-None-Match``.

Only files inside the directory are ever served: a URL path is resolved (symlinks followed) and
refused when the result lies outside it, so neither ``..`` nor a symlink to ``/etc/passwd`` or to
a parent folder can leave it; links between files inside the folder still work.
"""

from __future__ import annotations

import fnmatch
import mimetypes
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .headers import Headers
from .request import Request
from .response import Response


class AssetServer:
    def __init__(
        self,
        directory: Path,
        *,
        not_found_handling: str = "none",
        html_handling: str = "auto-trailing-slash",
        run_worker_first: bool | Sequence[str] = False,
    ) -> None:
        self.directory = directory.resolve()
        self.not_found_handling = not_found_handling
        self.html_handling = html_handling
        self.run_worker_first = run_worker_first

    def worker_first(self, path: str) -> bool:
        rwf = self.run_worker_first
        if isinstance(rwf, bool):
            return rwf
        included = any(fnmatch.fnmatchcase(path, p) for p in rwf if not p.startswith("!"))
        excluded = any(fnmatch.fnmatchcase(path, p[1:]) for p in rwf if p.startswith("!"))
        return included and not excluded

    def _file(self, url_path: str) -> Path | None:
        parts = [p for p in url_path.split("/") if p]
        if any(p in ("..", ".") or "\0" in p or "\\" in p for p in parts):
            return None
        candidate = self.directory.joinpath(*parts) if parts else self.directory
        try:
            real = candidate.resolve()
        except (OSError, RuntimeError):  # a symlink loop, a name the OS refuses
            return None
        if not real.is_relative_to(self.directory) or not real.is_file():
            return None
        return real

    def resolve(self, url_path: str) -> tuple[str, Path | str] | None:
        """``("file", path)``, ``("redirect", location)``, or ``None`` when nothing matches."""
        if self.html_handling == "none":
            found = self._file(url_path)
            return ("file", found) if found else None
        if url_path.endswith("/index.html") and self._file(url_path):
            return ("redirect", url_path[: -len("index.html")])
        if url_path.endswith(".html") and self._file(url_path):
            return ("redirect", url_path[: -len(".html")])
        if url_path.endswith("/"):
            found = self._file(url_path + "index.html")
            if found:
                return ("file", found)
            if url_path != "/" and self._file(url_path.rstrip("/") + ".html"):
                return ("redirect", url_path.rstrip("/"))
            return None
        found = self._file(url_path)
        if found:
            return ("file", found)
        found = self._file(url_path + ".html")
        if found:
            return ("file", found)
        if self._file(url_path + "/index.html"):
            return ("redirect", url_path + "/")
        return None

    def serve(self, url_path: str, method: str, if_none_match: str | None, query: str = "") -> Response | None:
        """The asset response for a GET/HEAD of ``url_path``, or ``None`` when no asset matches."""
        if method not in ("GET", "HEAD"):
            return None
        hit = self.resolve(url_path)
        if hit is None:
            return None
        kind, target = hit
        if kind == "redirect":
            location = str(target) + (f"?{query}" if query else "")
            return Response._from_parts(307, Headers({"location": location}), None)
        return self._file_response(Path(target), 200, if_none_match, method)

    def _file_response(self, path: Path, status: int, if_none_match: str | None, method: str) -> Response:
        stat = path.stat()
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
            ctype += "; charset=utf-8"
        headers = Headers({"content-type": ctype, "etag": etag, "cache-control": "public, max-age=0, must-revalidate"})
        if status == 200 and if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
            return Response._from_parts(304, headers, None)
        body = None if method == "HEAD" else path.read_bytes()
        if method == "HEAD":
            headers.set("content-length", str(stat.st_size))
        return Response._from_parts(status, headers, body)

    def not_found(self, url_path: str, method: str) -> Response:
        """What an unmatched path gets with no worker (and from ``env.ASSETS.fetch``)."""
        if self.not_found_handling == "single-page-application":
            index = self._file("/index.html")
            if index is not None:
                return self._file_response(index, 200, None, method)
        elif self.not_found_handling == "404-page":
            parts = [p for p in url_path.split("/") if p]
            while True:
                page = self._file("/".join(["", *parts, "404.html"]))
                if page is not None:
                    return self._file_response(page, 404, None, method)
                if not parts:
                    break
                parts.pop()
        return Response._from_parts(
            404, Headers({"content-type": "text/plain;charset=UTF-8"}), None if method == "HEAD" else b"Not Found"
        )


class AssetsBinding:
    """``env.ASSETS``: ``await env.ASSETS.fetch(request_or_url)`` serves from the assets directory."""

    def __init__(self, server: AssetServer) -> None:
        self._server = server

    async def fetch(self, resource: Any, **options: Any) -> Response:
        request = resource if isinstance(resource, Request) and not options else None
        if request is None:
            url = resource.url if isinstance(resource, Request) else str(resource)
            if "://" not in url:
                url = "http://assets.local" + ("" if url.startswith("/") else "/") + url
            request = Request(url, **options)
        parts = urlsplit(request.url)
        path = unquote(parts.path) or "/"
        method = request.method
        response = self._server.serve(path, method, request.headers.get("if-none-match"), parts.query)
        if response is None:
            if method not in ("GET", "HEAD"):
                return Response._from_parts(405, Headers({"allow": "GET, HEAD"}), b"Method Not Allowed")
            response = self._server.not_found(path, method)
        return response

    def __repr__(self) -> str:
        return f"AssetsBinding({os.fspath(self._server.directory)!r})"
