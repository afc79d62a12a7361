// Prints {route: rewritten page} for every route of worker.mjs, run by workerd through Miniflare.
//   node miniflare.mjs PAGE.html ROUTE...
import { Miniflare } from "miniflare";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const [page, ...routes] = process.argv.slice(2);
const mf = new Miniflare({
  modules: true,
  script: readFileSync(join(here, "worker.mjs"), "utf8"),
  compatibilityDate: "2025-04-01",
  bindings: { PAGE: readFileSync(page, "utf8") },
});
const out = {};
for (const route of routes) out[route] = await (await mf.dispatchFetch("http://localhost/" + route)).text();
console.log(JSON.stringify(out));
await mf.dispose();
