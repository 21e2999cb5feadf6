// Runs infra/cloudfront/negotiate.js, the file CloudFront runs, in a fresh VM context per case (as
// CloudFront does: no module system, a global `handler`), over every case in cases.json.
//   node --test infra/cloudfront/negotiate.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const dir = new URL(".", import.meta.url);
const source = readFileSync(new URL("negotiate.js", dir), "utf8");
const table = JSON.parse(readFileSync(new URL("cases.json", dir), "utf8"));

function run(uri, accept, groups) {
  const context = vm.createContext({});
  vm.runInContext(source, context, { filename: "negotiate.js" });
  if (groups) context.GROUPS = groups;
  const headers = accept === null ? {} : { accept: { value: accept } };
  const event = { version: "1.0", context: { eventType: "viewer-request" }, viewer: { ip: "192.0.2.1" },
    request: { method: "GET", uri, querystring: {}, headers, cookies: {} } };
  return context.handler(event);
}

test("the table has at least 15 cases", () => assert.ok(table.cases.length >= 15));

for (const c of table.cases) {
  test(c.name, () => {
    const groups = c.groups === "avif" ? table.avif_groups : undefined;
    const out = run(c.uri, c.accept, groups);
    if (c.expect.status) {
      assert.equal(out.statusCode, c.expect.status);
      assert.equal(out.headers["cache-control"].value, "no-store");
      return;
    }
    assert.equal(out.statusCode, undefined, "a request, not a response");
    assert.equal(out.uri, c.expect.uri);
    const accept = out.headers.accept ? out.headers.accept.value : null;
    assert.equal(accept, c.expect.accept);
  });
}

test("at most three Accept values reach the cache for any browser", () => {
  const seen = new Set();
  for (const c of table.cases) {
    const out = run(c.uri, c.accept, c.groups === "avif" ? table.avif_groups : undefined);
    if (!out.statusCode && /\/(preview|thumbnail|blur|low-quality)$/.test(c.uri)) seen.add(out.headers.accept.value);
  }
  assert.ok(seen.size <= 3, [...seen].join(", "));
});
