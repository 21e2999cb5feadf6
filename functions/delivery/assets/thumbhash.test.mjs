// The gallery's inline ThumbHash decoder against the Rust crate's decoding of the same hashes
// (thumbhash-vectors.json, written and checked by imgpipe-delivery's tests).
//   node --test functions/delivery/assets/thumbhash.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const dir = new URL(".", import.meta.url);
const context = vm.createContext({ Math, Uint8ClampedArray });
vm.runInContext(readFileSync(new URL("thumbhash.js", dir), "utf8"), context);
const vectors = JSON.parse(readFileSync(new URL("thumbhash-vectors.json", dir), "utf8"));

test("there are landscape, portrait and alpha vectors", () => assert.equal(vectors.length, 3));

for (const [i, v] of vectors.entries()) {
  test(`vector ${i}: ${v.w}x${v.h}`, () => {
    const out = context.thumbHashToRGBA(v.hash);
    assert.equal(out.w, v.w);
    assert.equal(out.h, v.h);
    assert.equal(out.rgba.length, v.rgba.length);
    let worst = 0;
    for (let k = 0; k < v.rgba.length; k++) worst = Math.max(worst, Math.abs(out.rgba[k] - v.rgba[k]));
    // The crate decodes in f32, JavaScript in f64: one step of rounding apart at most.
    assert.ok(worst <= 1, `largest channel difference ${worst}`);
  });
}
