"""First start and cached start of a worker that declares ``dependencies = ["fastapi"]``.

    .venv/bin/python bench/worker_deps.py [--cold-uv-cache] [--project DIR]

Writes a FastAPI worker (pyproject ``[project] dependencies = ["fastapi"]``, as Cloudflare's
FastAPI example declares it) into a temporary folder, then runs ``flarelet dev`` on it twice
with an empty ``FLARELET_CACHE``: the first start installs the dependencies (from PyPI), the
second finds them cached. Each time: seconds from spawning the process to ``Ready on``, then
one request, whose answer must name the fastapi module from the worker's environment.
``--cold-uv-cache`` also empties uv's download cache (a first install on a fresh machine);
``--project DIR`` times that worker project instead (e.g. a checkout of Cloudflare's FastAPI
example), whose ``GET /`` must answer 200.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

WORKER = {
    "pyproject.toml": """
        [project]
        name = "fastapi-worker"
        version = "0.1.0"
        dependencies = ["fastapi"]
    """,
    "wrangler.toml": """
        name = "fastapi-worker"
        main = "src/worker.py"
        compatibility_date = "2025-11-02"
        compatibility_flags = ["python_workers"]
    """,
    "src/worker.py": """
        import fastapi
        from fastapi import FastAPI
        from workers import Response, WorkerEntrypoint

        app = FastAPI()


        @app.get("/")
        async def root():
            return {"message": "Hello from FastAPI"}


        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                return Response.json({"fastapi": fastapi.__version__, "file": fastapi.__file__, **await root()})
    """,
}


def start(folder: Path, env: dict[str, str]) -> tuple[float, httpx.Response, str]:
    flarelet = Path(sys.executable).with_name("flarelet")
    began = time.perf_counter()
    proc = subprocess.Popen(
        [str(flarelet), "dev", str(folder), "--port", "0", "--no-watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"Ready on (http://\S+)", line)
            if m:
                ready = time.perf_counter() - began
                answer = httpx.get(m.group(1) + "/", timeout=60)
                return ready, answer, "".join(lines)
        raise RuntimeError("flarelet dev exited:\n" + "".join(lines))
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-uv-cache", action="store_true", help="also start with an empty uv download cache")
    parser.add_argument("--project", type=Path, help="time this worker project instead of the built-in one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        worker = args.project
        if worker is None:
            worker = root / "worker"
            for name, text in WORKER.items():
                path = worker / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(textwrap.dedent(text).lstrip())
        env = {**os.environ, "FLARELET_CACHE": str(root / "cache"), "HF_HUB_OFFLINE": "1"}
        if args.cold_uv_cache:
            env["UV_CACHE_DIR"] = str(root / "uv-cache")
        for label in ("first start (installs)", "cached start"):
            seconds, answer, log = start(worker, env)
            if args.project is None:
                data = answer.json()
                inside = data["file"].startswith(str(root / "cache"))
                what = f"fastapi {data['fastapi']} from the worker env: {inside}"
            else:
                what = f"{answer.status_code} {answer.text[:80]}"
            print(f"{label}: Ready in {seconds:.2f} s; GET / -> {what}")
            if label.startswith("first"):
                print(textwrap.indent("".join(line for line in log.splitlines(True) if "flarelet" in line), "    "))


if __name__ == "__main__":
    main()
