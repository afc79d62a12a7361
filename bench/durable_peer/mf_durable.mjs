// Serve worker.mjs with Miniflare on 127.0.0.1 (port from PORT, 0 = any), Durable Objects on SQLite
// persisted under PERSIST; prints {"url": ...} once ready. Run from a folder with miniflare installed.
import { Miniflare, Log, LogLevel } from "miniflare";
import { readFileSync } from "node:fs";

const script = readFileSync(process.env.SCRIPT, "utf8");
const mf = new Miniflare({
  modules: true,
  script,
  compatibilityDate: "2025-11-02",
  durableObjects: { BENCH: { className: "Bench", useSQLite: true } },
  durableObjectsPersist: process.env.PERSIST,
  host: "127.0.0.1",
  port: Number(process.env.PORT ?? 0),
  cf: false, // offline: the placeholder request.cf, no fetch from workers.cloudflare.com
  log: new Log(LogLevel.WARN),
});
const url = await mf.ready;
console.log(JSON.stringify({ url: String(url) }));
const stop = async () => { await mf.dispose(); process.exit(0); };
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
