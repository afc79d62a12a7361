// Runs the operations in the JSON file argv[2] on Miniflare (worker.mjs with KV, R2 and D1
// bindings, in memory) and writes the results as JSON to the file argv[3]. Used by scripts/storage_diff.py.
import { Miniflare, Log, LogLevel } from "miniflare";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const ops = readFileSync(process.argv[2], "utf8");
const mf = new Miniflare({
  modules: true,
  scriptPath: `${here}worker.mjs`,
  compatibilityDate: process.argv[4] ?? "2025-11-02",
  kvNamespaces: ["KV"],
  r2Buckets: ["R2"],
  d1Databases: ["DB"],
  log: new Log(LogLevel.WARN),
});
try {
  const response = await mf.dispatchFetch("http://localhost/", { method: "POST", body: ops });
  writeFileSync(process.argv[3], await response.text());
} finally {
  await mf.dispose();
}
