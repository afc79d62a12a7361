import { Miniflare, Log, LogLevel } from "miniflare";
import { readFileSync, writeFileSync } from "node:fs";
const ops = readFileSync(process.argv[2], "utf8");
const script = `export default { async fetch(req, env) {
  const ops = await req.json(); const out = [];
  for (const [sql, binds, method] of ops) {
    try {
      let s = env.DB.prepare(sql); if (binds.length) s = s.bind(...binds);
      if (method === "batch") { const rs = await env.DB.batch(sql.split("|||").map(q => env.DB.prepare(q))); out.push(rs.map(r => [r.meta.rows_read, r.meta.rows_written])); continue; }
      if (method === "exec") { const r = await env.DB.exec(sql); out.push(r); continue; }
      const r = method === "raw" ? await s.raw() : method === "first" ? await s.first() : await s[method]();
      out.push(r && r.meta ? [r.meta.rows_read, r.meta.rows_written, r.meta.changes, r.meta.last_row_id, r.meta.changed_db] : r);
    } catch (e) { out.push(String(e)); }
  }
  return Response.json(out);
}}`;
const mf = new Miniflare({ modules: true, script, compatibilityDate: "2025-11-02", d1Databases: ["DB"], log: new Log(LogLevel.WARN) });
try { const r = await mf.dispatchFetch("http://localhost/", { method: "POST", body: ops }); writeFileSync(process.argv[3], await r.text()); } finally { await mf.dispose(); }
