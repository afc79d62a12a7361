"""Hello-world and JSON-echo routes, as the JavaScript peer worker serves them (parse, then re-serialise)."""

from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("/", 3)[3].split("?", 1)[0]
        if path == "":
            return Response("hello", headers={"content-type": "text/plain;charset=UTF-8"})
        if path == "json":
            try:
                body = await request.json()
            except ValueError as exc:
                return Response.json({"error": "invalid json", "detail": str(exc)}, status=400)
            return Response.json(body)
        return Response("not found", status=404)
