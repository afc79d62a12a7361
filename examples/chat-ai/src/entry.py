"""An LLM chat app: the page (public/) posts the conversation to /api/chat, which streams the
model's answer back as server-sent events, exactly as Workers AI sends them.

On Cloudflare, and under ``flarelet dev`` offline (the model id then runs a small stand-in model;
``[flarelet.ai] models`` maps it to real weights).
"""

import json

from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = "/" + request.url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        if path == "/api/chat":
            if request.method != "POST":
                return Response("Method not allowed", status=405)
            return await self.chat(request)
        return await self.env.ASSETS.fetch(request)

    async def chat(self, request):
        try:
            body = await request.json()
            messages = list(body.get("messages") or [])
        except (ValueError, AttributeError):
            return Response.json({"error": "expected {messages: [...]}"}, status=400)
        if not any(m.get("role") == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": self.env.SYSTEM_PROMPT})
        max_tokens = int(body.get("max_tokens") or 1024)
        stream = await self.env.AI.run(
            self.env.MODEL_ID, {"messages": messages, "max_tokens": max_tokens, "stream": True}
        )
        return Response(
            stream,
            headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"},
        )


def parse_events(text):
    """The ``data:`` payloads of an SSE body (used by the tests)."""
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out
