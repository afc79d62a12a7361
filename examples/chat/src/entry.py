"""A chat room per Durable Object, over the WebSocket Hibernation API.

``GET /api/room/<name>/websocket?user=<name>`` upgrades to a WebSocket served by the room's
object. The room accepts sockets with ``ctx.acceptWebSocket`` (so it may be evicted from memory
while clients stay connected), keeps each client's name in the socket's attachment, answers
``ping`` with ``pong`` without waking up (``setWebSocketAutoResponse``) and keeps the last
messages in SQL storage, so history survives hibernation and restarts.

Messages (JSON): the client sends ``{"text": "..."}``; the room sends ``{"type": "history",
"messages": [...]}`` on joining, then ``{"type": "message", "user", "text", "at"}``,
``{"type": "join" | "leave", "user", "online"}``.
"""

import json
import time
from urllib.parse import parse_qs, urlparse

from js import WebSocketPair, WebSocketRequestResponsePair
from workers import DurableObject, Response, WorkerEntrypoint

HISTORY = 50
MAX_TEXT = 1000


class ChatRoom(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sql = ctx.storage.sql
        self.sql.exec("CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, user TEXT, text TEXT, at INTEGER)")
        ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair("ping", "pong"))

    async def fetch(self, request):
        if (request.headers.get("Upgrade") or "").lower() != "websocket":
            return Response("Expected a WebSocket upgrade", status=426)
        query = parse_qs(urlparse(request.url).query)
        user = (query.get("user") or ["anonymous"])[0][:32] or "anonymous"
        client, server = WebSocketPair.new().object_values()
        self.ctx.acceptWebSocket(server, [user])
        server.serializeAttachment({"user": user})
        rows = self.sql.exec(
            "SELECT user, text, at FROM (SELECT * FROM messages ORDER BY id DESC LIMIT ?) ORDER BY id", HISTORY
        ).toArray()
        server.send(json.dumps({"type": "history", "messages": [dict(r) for r in rows]}))
        self.broadcast({"type": "join", "user": user, "online": len(self.ctx.getWebSockets())})
        return Response(None, status=101, web_socket=client)

    async def webSocketMessage(self, ws, message):
        user = (ws.deserializeAttachment() or {}).get("user", "anonymous")
        try:
            text = str(json.loads(message).get("text", ""))[:MAX_TEXT]
        except (ValueError, AttributeError):
            ws.send(json.dumps({"type": "error", "error": 'send JSON like {"text": "hi"}'}))
            return
        if not text:
            return
        at = int(time.time() * 1000)
        self.sql.exec("INSERT INTO messages (user, text, at) VALUES (?, ?, ?)", user, text, at)
        self.sql.exec("DELETE FROM messages WHERE id <= (SELECT max(id) FROM messages) - ?", HISTORY)
        self.broadcast({"type": "message", "user": user, "text": text, "at": at})

    async def webSocketClose(self, ws, code, reason, wasClean):
        user = (ws.deserializeAttachment() or {}).get("user", "anonymous")
        online = len([s for s in self.ctx.getWebSockets() if s is not ws])
        self.broadcast({"type": "leave", "user": user, "online": online}, skip=ws)

    async def webSocketError(self, ws, error):
        await self.webSocketClose(ws, 1011, str(error), False)

    def broadcast(self, payload, skip=None):
        data = json.dumps(payload)
        for ws in self.ctx.getWebSockets():
            if ws is skip:
                continue
            try:
                ws.send(data)
            except Exception:  # a socket closing right now: its close event follows
                pass


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts = urlparse(request.url).path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["api", "room"] and parts[3] == "websocket" and parts[2]:
            room = self.env.ROOMS.getByName(parts[2][:64])
            return await room.fetch(request)
        return Response("Not found. Open / for the chat page.", status=404)
