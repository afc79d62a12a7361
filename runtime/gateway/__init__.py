"""Running Python web frameworks inside a worker: ``asgi.fetch`` (FastAPI, Starlette, ...) and
``workers.wsgi.fetch`` (Flask, Django, ...), as Cloudflare's Python Workers SDK provides them."""
