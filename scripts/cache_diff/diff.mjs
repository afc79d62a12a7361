// The same Cache API operations on Miniflare (workerd's Cache API over Miniflare's cache service, JS worker
// ./worker.mjs) and on `flarelet dev` (Python worker tests/runtime/data/cache_worker); prints every difference.
//   cd scripts/cache_diff && npm install && node diff.mjs
// Known differences (README, Cache API): responses without a freshness directive get Cloudflare's default
// Edge TTL here (Miniflare never stores them), and a multipart/byteranges hit's Content-Length is its own length.
import { Miniflare } from "miniflare";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");
const flarelet = spawn(
  join(repo, ".venv", "bin", "flarelet"),
  ["dev", join(repo, "tests/runtime/data/cache_worker"), "--port", "0", "--no-watch", "--persist-to", mkdtempSync(join(tmpdir(), "cache-diff-"))],
  { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, HF_HUB_OFFLINE: "1" } },
);
const FLARELET = await new Promise((resolve, reject) => {
  let seen = "";
  flarelet.stdout.on("data", (d) => {
    seen += d;
    const m = /Ready on (http:\/\/\S+)/.exec(seen);
    if (m) resolve(m[1]);
  });
  flarelet.on("exit", (code) => reject(new Error(`flarelet dev exited (${code}): ${seen}`)));
});
const U = "https://example.com/item";
const later = new Date(Date.now() + 3600e3).toUTCString();
const S = [
  ["put", { url: U + "/1", headers: { "cache-control": "max-age=300", "x-a": "1" }, body: "payload" }],
  ["match", { url: U + "/1" }],
  ["match", { url: U + "/other" }],
  ["put", { url: U + "/post", method: "POST", headers: { "cache-control": "max-age=60" } }],
  ["put", { url: U + "/206", status: 206, headers: { "content-range": "bytes 0-1/10" } }],
  ["put", { url: U + "/vs", headers: { vary: "*", "cache-control": "max-age=60" } }],
  ...[
    { "cache-control": "no-store" }, { "cache-control": "private" }, { "cache-control": "no-cache" },
    { "cache-control": "max-age=0" }, { "cache-control": "max-age=60", "set-cookie": "id=1" },
    { expires: "Thu, 01 Jan 1970 00:00:00 GMT" }, { expires: "not a date" }, { "cache-control": "max-age=60", age: "120" },
  ].flatMap((h, i) => [["put", { url: U + "/ns" + i, headers: h }], ["match", { url: U + "/ns" + i }]]),
  ["put", { url: U + "/cookie", headers: { "cache-control": "max-age=60, private=Set-Cookie", "set-cookie": "id=1" } }],
  ["match", { url: U + "/cookie" }],
  ["put", { url: U + "/exp", headers: { expires: later } }],
  ["match", { url: U + "/exp" }],
  ["put", { url: U + "/range", headers: { "cache-control": "max-age=60", "content-type": "text/plain" }, body: "0123456789" }],
  ...["bytes=2-5", "bytes=-3", "bytes=7-", "bytes=50-60", "lines=1-2", "bytes=5-2", "bytes=0-0,8-9"].map((r) => ["match", { url: U + "/range", request_headers: { range: r } }]),
  ["put", { url: U + "/cond", headers: { "cache-control": "max-age=60", etag: 'W/"v1"', "last-modified": "Tue, 01 Dec 2026 10:00:00 GMT" } }],
  ["match", { url: U + "/cond", request_headers: { "if-none-match": '"v0", "v1"' } }],
  ["match", { url: U + "/cond", request_headers: { "if-none-match": '"v2"' } }],
  ["match", { url: U + "/cond", request_headers: { "if-modified-since": "Tue, 01 Dec 2026 11:00:00 GMT" } }],
  ["match", { url: U + "/cond", request_headers: { "if-modified-since": "Tue, 01 Dec 2026 09:00:00 GMT" } }],
  ["put", { url: U + "/vary", headers: { "cache-control": "max-age=60", vary: "Accept-Language" }, body: "en", request_headers: { "accept-language": "en" } }],
  ["put", { url: U + "/vary", headers: { "cache-control": "max-age=60", vary: "Accept-Language" }, body: "fr", request_headers: { "accept-language": "fr" } }],
  ["match", { url: U + "/vary", request_headers: { "accept-language": "en" } }],
  ["match", { url: U + "/vary", request_headers: { "accept-language": "de" } }],
  ["put", { url: U + "/im", headers: { "cache-control": "max-age=60" } }],
  ["match", { url: U + "/im", method: "POST" }],
  ["match", { url: U + "/im", method: "POST", ignoreMethod: true }],
  ["match", { url: U + "/im", method: "HEAD" }],
  ["delete", { url: U + "/im", method: "POST" }],
  ["delete", { url: U + "/im", method: "POST", ignoreMethod: true }],
  ["delete", { url: U + "/im" }],
  ["put", { url: U + "/named", cache: "a", headers: { "cache-control": "max-age=60" }, body: "in a" }],
  ["match", { url: U + "/named", cache: "a" }],
  ["match", { url: U + "/named", cache: "b" }],
  ["match", { url: U + "/named" }],
  ["put", { url: U + "/404", status: 404, body: "missing" }],
  ["match", { url: U + "/404" }],
  ["put", { url: U + "/200nocc", body: "plain" }],
  ["match", { url: U + "/200nocc" }],
  ["put", { url: U + "/500", status: 500, body: "err" }],
  ["match", { url: U + "/500" }],
  ["put", { url: U + "/frag#x", headers: { "cache-control": "max-age=60" }, body: "frag" }],
  ["match", { url: U + "/frag" }],
];
const mf = new Miniflare({ modules: true, script: readFileSync(join(here, "worker.mjs"), "utf8"), compatibilityDate: "2025-04-01" });
const norm = (r) => {
  if (r && r.response) {
    const h = r.response.headers; const keep = {};
    for (const k of ["content-range", "cf-cache-status", "set-cookie", "content-length"]) if (k in h) keep[k] = h[k];
    if (h["content-type"]) keep["content-type"] = h["content-type"].replace(/boundary=.*/, "boundary=*");
    r.response.headers = keep;
    if (keep["content-type"]?.startsWith("multipart")) r.response.body = r.response.body.replace(/[0-9a-f]{16,}/g, "*");
  }
  return r;
};
let same = 0, diff = 0;
for (const [op, body] of S) {
  const a = norm(await (await mf.dispatchFetch("http://localhost/" + op, { method: "POST", body: JSON.stringify(body) })).json());
  const b = norm(await (await fetch(FLARELET + "/" + op, { method: "POST", body: JSON.stringify(body) })).json());
  const eq = JSON.stringify(a) === JSON.stringify(b);
  eq ? same++ : diff++;
  if (!eq) console.log("DIFF", op, JSON.stringify(body).slice(0, 140), "\n   miniflare:", JSON.stringify(a).slice(0, 300), "\n   flarelet :", JSON.stringify(b).slice(0, 300));
}
console.log({ same, diff });
await mf.dispose();
flarelet.kill("SIGTERM");
