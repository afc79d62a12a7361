"""Routes for the soak (bench/soak.py): every write answers 201 only once it is stored.

PUT  /kv/<key>   body -> KV          GET /kv/<key>   the value (404 if absent)
PUT  /d1/<key>   body -> a D1 row    GET /d1/<key>   the row's value
PUT  /r2/<key>   body -> R2          GET /r2/<key>   the object
POST /ai         audio body -> env.AI.run("@cf/openai/whisper-tiny-en") -> {"text"}
GET  /           "ok"
"""

from workers import Response, WorkerEntrypoint

TABLE = "CREATE TABLE IF NOT EXISTS soak (k TEXT PRIMARY KEY, v BLOB NOT NULL)"


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]
        area, _, key = path.partition("/")
        env = self.env
        if area == "kv":
            if request.method == "PUT":
                await env.KV.put(key, await request.bytes())
                return Response("stored", status=201)
            value = await env.KV.get(key, "arrayBuffer")
            return Response("missing", status=404) if value is None else Response(value)
        if area == "d1":
            await env.DB.exec(TABLE)
            if request.method == "PUT":
                await env.DB.prepare("INSERT INTO soak (k, v) VALUES (?, ?)").bind(key, await request.text()).run()
                return Response("stored", status=201)
            row = await env.DB.prepare("SELECT v FROM soak WHERE k = ?").bind(key).first()
            return Response("missing", status=404) if row is None else Response(row["v"])
        if area == "r2":
            if request.method == "PUT":
                await env.BUCKET.put(key, await request.bytes())
                return Response("stored", status=201)
            obj = await env.BUCKET.get(key)
            return Response("missing", status=404) if obj is None else Response(await obj.bytes())
        if area == "ai":
            result = await env.AI.run("@cf/openai/whisper-tiny-en", {"audio": await request.bytes()})
            return Response.json({"text": result["text"]})
        if area == "spin":
            while True:
                pass
        return Response("ok")
