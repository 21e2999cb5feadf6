import { createHmac } from "node:crypto";

// Signs a parametric variant of the source stored at `dir` ("derived/<key>/").
function signedSegment(key, dir, options, ext) {
  const canonical = `_${options}.${ext}`;          // e.g. "_w640-cover-q70.webp"
  const tag = createHmac("sha256", key).update(dir + canonical).digest().subarray(0, 16);
  const sig = tag.toString("base64url");           // 22 characters, no padding
  return `_${options}.${sig}.${ext}`;
}

console.log(signedSegment("k".repeat(32), "derived/photos/cat.jpg/", "w640-cover-q70", "webp"));
