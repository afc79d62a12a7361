"""KV, D1, R2 and Queues from one Python Worker (runs unchanged on Cloudflare and under flarelet).

Routes:
  PUT    /kv/<key>            store the body (?ttl=seconds to expire it)
  GET    /kv/<key>            the value (404 if absent), metadata in x-metadata
  GET    /kv?prefix=p         list keys
  DELETE /kv/<key>
  POST   /notes               {"text": ...} -> a row in D1
  GET    /notes               all notes
  PUT    /files/<key>         store the body in R2 (content-type kept)
  GET    /files/<key>         stream it back (Range: bytes=a-b supported)
  GET    /files?prefix=p&delimiter=/
  DELETE /files/<key>
  POST   /jobs                {"id": ..., "task": "upper"|"fail", "text": ...} -> the JOBS queue
  GET    /jobs/<id>           what the queue consumer did with it (D1), or where it died (KV)
"""

import json
from urllib.parse import parse_qs, unquote, urlparse

from workers import Response, WorkerEntrypoint


def error(message, status=400):
    return Response.json({"error": message}, status=status)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/", 1)
        area, key = parts[0], unquote(parts[1]) if len(parts) > 1 else None
        try:
            if area == "kv":
                return await self.kv(request, key, query)
            if area == "notes":
                return await self.notes(request)
            if area == "files":
                return await self.files(request, key, query)
            if area == "jobs":
                return await self.jobs(request, key)
        except Exception as exc:  # a binding's error (bad key, bad SQL...) becomes a 400
            return error(str(exc))
        return error("not found", 404)

    async def kv(self, request, key, query):
        kv = self.env.KV
        if key is None:
            listing = await kv.list(prefix=query.get("prefix"))
            return Response.json({"keys": [k["name"] for k in listing["keys"]], "complete": listing["list_complete"]})
        if request.method == "PUT":
            options = {"metadata": {"length": len(await request.clone().text())}}
            if "ttl" in query:
                options["expirationTtl"] = int(query["ttl"])
            await kv.put(key, await request.text(), options)
            return Response("stored", status=201)
        if request.method == "DELETE":
            await kv.delete(key)
            return Response("deleted")
        found = await kv.getWithMetadata(key)
        if found["value"] is None:
            return error("no such key", 404)
        return Response(found["value"], headers={"x-metadata": json.dumps(found["metadata"])})

    async def notes(self, request):
        db = self.env.DB
        if request.method == "POST":
            text = (await request.json())["text"]
            result = await db.prepare("INSERT INTO notes (text) VALUES (?)").bind(text).run()
            return Response.json({"id": result.meta.last_row_id}, status=201)
        rows = await db.prepare("SELECT id, text FROM notes ORDER BY id").all()
        return Response.json(rows.results)

    async def files(self, request, key, query):
        bucket = self.env.FILES
        if key is None:
            listing = await bucket.list(prefix=query.get("prefix"), delimiter=query.get("delimiter"))
            return Response.json(
                {
                    "objects": [{"key": o.key, "size": o.size, "etag": o.etag} for o in listing.objects],
                    "prefixes": listing.delimitedPrefixes,
                    "truncated": listing.truncated,
                }
            )
        if request.method == "PUT":
            content_type = request.headers.get("content-type") or "application/octet-stream"
            stored = await bucket.put(key, await request.bytes(), httpMetadata={"contentType": content_type})
            return Response.json({"key": stored.key, "size": stored.size, "etag": stored.etag}, status=201)
        if request.method == "DELETE":
            await bucket.delete(key)
            return Response("deleted")
        obj = await bucket.get(key, range=request.headers if request.headers.get("range") else None)
        if obj is None:
            return error("no such file", 404)
        headers = {
            "etag": obj.httpEtag,
            "content-type": obj.httpMetadata.get("contentType", "application/octet-stream"),
        }
        status = 200
        if request.headers.get("range"):
            start, length = obj.range["offset"], obj.range["length"]
            headers["content-range"] = f"bytes {start}-{start + length - 1}/{obj.size}"
            status = 206
        return Response(obj.body, status=status, headers=headers)

    async def jobs(self, request, job_id):
        if request.method == "POST":
            job = await request.json()
            await self.env.JOBS.send(job)
            return Response.json({"queued": job["id"]}, status=202)
        row = await self.env.DB.prepare("SELECT task, result, attempts FROM jobs WHERE id = ?").bind(job_id).first()
        if row is not None:
            return Response.json({"status": "done", **row})
        dead = await self.env.KV.get(f"dead:{job_id}", "json")
        if dead is not None:
            return Response.json({"status": "dead", **dead})
        return Response.json({"status": "pending"})

    async def queue(self, batch, env, ctx):
        for message in batch.messages:
            job = message.body
            if batch.queue == "jobs-dlq":
                # retries exhausted: remember where the job ended up
                await self.env.KV.put(
                    f"dead:{job['id']}", json.dumps({"task": job["task"], "attempts": message.attempts})
                )
                message.ack()
            elif job["task"] == "fail":
                message.retry()
            else:
                await (
                    self.env.DB.prepare("INSERT OR REPLACE INTO jobs (id, task, result, attempts) VALUES (?, ?, ?, ?)")
                    .bind(job["id"], job["task"], job["text"].upper(), message.attempts)
                    .run()
                )
                message.ack()
