// The Miniflare side of bench/services_bench.py: the same two workers, in JavaScript.
// usage: MINIFLARE_DIR=<folder holding node_modules/miniflare> node bench/services_mf.mjs RPC_CALLS FETCHES INSTANCES PERSIST_DIR
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.MINIFLARE_DIR ?? ".", "package.json"));
const { Miniflare, Log, LogLevel } = require("miniflare");
const [calls, fetches, instances, persist] = process.argv.slice(2);

const callee = `
import { WorkerEntrypoint } from "cloudflare:workers";
export default class extends WorkerEntrypoint {
  async fetch(request) { return new Response("pong"); }
  async add(a, b) { return a + b; }
}`;
const caller = `
import { WorkflowEntrypoint } from "cloudflare:workers";
export class Chain extends WorkflowEntrypoint {
  async run(event, step) {
    let total = 0;
    for (let i = 0; i < 3; i++) total += await step.do("s" + i, async () => i);
    return total;
  }
}
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const n = Number(url.searchParams.get("n") ?? 0);
    if (url.pathname === "/rpc") { let s = 0; for (let i = 0; i < n; i++) s += await env.B.add(i, 1); return new Response(String(s)); }
    if (url.pathname === "/fetch") { for (let i = 0; i < n; i++) await (await env.B.fetch("http://b/")).text(); return new Response("ok"); }
    if (url.pathname === "/create") { const ids = []; for (let i = 0; i < n; i++) ids.push((await env.WF.create()).id); return Response.json(ids); }
    if (url.pathname === "/status") { return Response.json(await (await env.WF.get(url.searchParams.get("id"))).status()); }
    return new Response("?", { status: 404 });
  },
};`;

const mf = new Miniflare({
  log: new Log(LogLevel.WARN),
  workflowsPersist: path.join(persist, "workflows"),
  durableObjectsPersist: path.join(persist, "do"),
  workers: [
    { name: "a", modules: true, script: caller, compatibilityDate: "2025-04-01", serviceBindings: { B: "b" },
      workflows: { WF: { name: "chain", className: "Chain" } } },
    { name: "b", modules: true, script: callee, compatibilityDate: "2025-04-01" },
  ],
});
await mf.ready;
async function timed(label, fn, count) {
  const t0 = performance.now();
  await fn();
  const s = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ engine: "miniflare", bench: label, count, seconds: +s.toFixed(3), per_s: +(count / s).toFixed(1) }));
}
await (await mf.dispatchFetch("http://a/rpc?n=100")).text(); // warm up
await timed("rpc calls", async () => { await (await mf.dispatchFetch(`http://a/rpc?n=${calls}`)).text(); }, Number(calls));
await timed("service fetches", async () => { await (await mf.dispatchFetch(`http://a/fetch?n=${fetches}`)).text(); }, Number(fetches));
await timed("workflow instances (3 steps)", async () => {
  const ids = await (await mf.dispatchFetch(`http://a/create?n=${instances}`)).json();
  for (const id of ids) {
    for (;;) {
      const st = await (await mf.dispatchFetch(`http://a/status?id=${id}`)).json();
      if (st.status === "complete") break;
      if (st.status === "errored") throw new Error(JSON.stringify(st));
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}, Number(instances));
await mf.dispose();
