// The JavaScript side of bench/durable_bench.py: the same Durable Object as python/src/entry.py,
// run by Miniflare (see mf_durable.mjs). Routes: /rpc?n=, /sql?n=, /sqlrpc?n=, /ws (echo).
import { DurableObject } from "cloudflare:workers";

export class Bench extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.n = 0;
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)");
  }
  inc() { return ++this.n; }
  sqlOps(n) {
    const sql = this.ctx.storage.sql;
    for (let i = 0; i < n; i++) {
      sql.exec("INSERT INTO t (v) VALUES (?)", "value-" + i);
      sql.exec("SELECT v FROM t WHERE id = ?", i + 1).toArray();
    }
    return 2 * n;
  }
  sqlOne(i) {
    this.ctx.storage.sql.exec("INSERT INTO t (v) VALUES (?)", "value-" + i);
    return 1;
  }
  async fetch(request) {
    const pair = new WebSocketPair();
    this.ctx.acceptWebSocket(pair[1]);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }
  webSocketMessage(ws, message) { ws.send(message); }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const n = Number(url.searchParams.get("n") ?? 1000);
    const stub = env.BENCH.getByName(url.searchParams.get("o") ?? "bench");
    const t0 = performance.now();
    if (url.pathname === "/rpc") { for (let i = 0; i < n; i++) await stub.inc(); }
    else if (url.pathname === "/sql") { await stub.sqlOps(n); }
    else if (url.pathname === "/sqlrpc") { for (let i = 0; i < n; i++) await stub.sqlOne(i); }
    else if (url.pathname === "/ws") { return stub.fetch(request); }
    else return new Response("not found", { status: 404 });
    return Response.json({ n, ms: performance.now() - t0 });
  },
};
