// The reference side of scripts/storage_diff.py: a JavaScript worker that runs a list of storage
// operations (POSTed as JSON) against env.KV, env.R2 and env.DB and answers every result, value
// type and error, encoded as py_worker/src/entry.py encodes the Python side's.
//
// Arguments are decoded the way Pyodide converts a Python Worker's arguments when it calls a
// binding: a Python int becomes a Number when |x| <= 2^53, a BigInt beyond; a float a Number.
// Results are encoded the way Pyodide hands JS values back to Python: a Number is an int when it
// is integral and |x| <= 2^53, otherwise a float.

const TWO_53 = 2 ** 53;

function decode(value, saved) {
  if (Array.isArray(value)) return value.map((v) => decode(v, saved));
  if (value === null || typeof value !== "object") return value;
  if ("$int" in value) {
    const big = BigInt(value.$int);
    return big >= -BigInt(TWO_53) && big <= BigInt(TWO_53) ? Number(big) : big;
  }
  if ("$float" in value) return Number(value.$float);
  if ("$bytes" in value) return hexToBytes(value.$bytes);
  if ("$ref" in value) return saved[value.$ref];
  if ("$none" in value) return null;
  if ("$stream" in value) {
    const data = hexToBytes(value.$stream);
    if (value.known) return new Response(data).body; // a body with a known length
    return new ReadableStream({
      start(controller) {
        controller.enqueue(data);
        controller.close();
      },
    });
  }
  if ("$stmt" in value) {
    const [sql, binds] = value.$stmt;
    const stmt = saved.__env.DB.prepare(sql);
    return binds === undefined ? stmt : stmt.bind(...decode(binds, saved));
  }
  if ("$headers" in value) return new Headers(value.$headers);
  if ("$date" in value) return new Date(value.$date);
  const out = {};
  for (const [k, v] of Object.entries(value)) out[k] = decode(v, saved);
  return out;
}

function hexToBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function number(n) {
  if (Number.isInteger(n) && Math.abs(n) <= TWO_53) return { t: "int", v: n };
  if (Number.isNaN(n)) return { t: "float", v: "nan" };
  if (!Number.isFinite(n)) return { t: "float", v: n > 0 ? "inf" : "-inf" };
  return { t: "float", v: n };
}

const R2_FIELDS = [
  "key", "version", "size", "etag", "httpEtag", "uploaded", "httpMetadata", "customMetadata",
  "range", "storageClass", "ssecKeyMd5",
];

async function encode(value, read) {
  if (value === null || value === undefined) return { t: "none" };
  if (typeof value === "boolean") return { t: "bool", v: value };
  if (typeof value === "number") return number(value);
  if (typeof value === "bigint") return { t: "int", v: value.toString() };
  if (typeof value === "string") return { t: "str", v: value };
  if (value instanceof ArrayBuffer) return { t: "bytes", v: bytesToHex(new Uint8Array(value)) };
  if (ArrayBuffer.isView(value)) return { t: "bytes", v: bytesToHex(new Uint8Array(value.buffer, value.byteOffset, value.byteLength)) };
  if (value instanceof Date) return { t: "date", v: value.getTime() };
  if (Array.isArray(value)) return { t: "list", v: await Promise.all(value.map((v) => encode(v, read))) };
  if (typeof value === "object" && "etag" in value && "key" in value && "version" in value) {
    const out = {};
    for (const field of R2_FIELDS) out[field] = await encode(value[field], read);
    out.checksums = await encode(value.checksums?.toJSON?.() ?? null, read);
    if ("body" in value) {
      if (read === "text") out.body = { t: "str", v: await value.text() };
      else if (read === "json") out.body = await encode(await value.json(), null);
      else out.body = { t: "bytes", v: bytesToHex(new Uint8Array(await value.arrayBuffer())) };
    }
    return { t: "r2object", v: out };
  }
  if (typeof value === "object" && "uploadId" in value && "key" in value) {
    return { t: "multipart", v: { key: await encode(value.key), uploadId: await encode(value.uploadId) } };
  }
  if (value instanceof Map) {
    const out = {};
    for (const [k, v] of value) out[k] = await encode(v, read);
    return { t: "obj", v: out };
  }
  if (value instanceof Headers) return { t: "obj", v: Object.fromEntries([...value].map(([k, v]) => [k, { t: "str", v }])) };
  const out = {};
  for (const [k, v] of Object.entries(value)) out[k] = await encode(v, read);
  return { t: "obj", v: out };
}

function encodeError(e) {
  return { t: "error", name: e?.name ?? typeof e, message: String(e?.message ?? e) };
}

async function runOp(op, env, saved) {
  let target = op.b.startsWith("$") ? saved[op.b.slice(1)] : env[op.b];
  let result = target[op.m](...decode(op.a ?? [], saved));
  for (const [method, args] of op.then ?? []) {
    result = await result;
    result = result[method](...decode(args ?? [], saved));
  }
  result = await result;
  if (op.save) saved[op.save] = result;
  if (op.headers) {
    const headers = new Headers();
    result.writeHttpMetadata(headers);
    return encode(headers, op.read);
  }
  return encode(result, op.read);
}

export default {
  async fetch(request, env) {
    const ops = await request.json();
    const saved = { __env: env };
    const out = [];
    for (const op of ops) {
      try {
        out.push({ id: op.id, r: await runOp(op, env, saved) });
      } catch (e) {
        out.push({ id: op.id, r: encodeError(e) });
      }
    }
    return Response.json(out);
  },
};
