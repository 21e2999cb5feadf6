// The sharp side of the rate–distortion harness (bench/rd.py): encodes the harness's reference PNGs
// (the pixels imgpipe's encoders get) with sharp's encoders over the same quality ladder.
//
//   node rd-sharp.mjs DIR Q1,Q2,...
//
// Reads DIR/refs.json and DIR/refs/<name>.png; writes DIR/sharp/<encoder>/<name>-q<Q>.<ext> and
// DIR/sharp/index.json ([{encoder, reference, quality, file, ms}]). Each reference is decoded to raw
// pixels once; only the encode is timed (best of three; one for AVIF), one libvips thread, cache off.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";

sharp.cache(false);
sharp.concurrency(1);

const [dir, ladderArg] = process.argv.slice(2);
const ladder = ladderArg.split(",").map(Number);
const refs = JSON.parse(readFileSync(join(dir, "refs.json"), "utf8"));

// sharp's defaults, stated: JPEG 4:2:0, optimizeCoding on, baseline; mozjpeg: true adds trellis
// quantisation, optimised progressive scans and its quantisation tables; WebP effort 4, no smart
// subsampling.
const ENCODERS = [
  ["sharp jpeg (libjpeg-turbo)", "jpg", (s, q) => s.jpeg({ quality: q })],
  ["sharp jpeg mozjpeg", "jpg", (s, q) => s.jpeg({ quality: q, mozjpeg: true })],
  ["sharp webp", "webp", (s, q) => s.webp({ quality: q })],
  // libaom through libheif, effort 4 (its default), 4:2:0: AWS's image handler's AVIF.
  ["sharp avif", "avif", (s, q) => s.avif({ quality: q })],
];
// Timed encodes: the best of three, one for AVIF (seconds each at 1200 px).
const runs = (ext) => (ext === "avif" ? 1 : 3);

const index = [];
for (const ref of refs) {
  const { data, info } = await sharp(join(dir, "refs", `${ref.name}.png`))
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const raw = { raw: { width: info.width, height: info.height, channels: info.channels } };
  for (const [label, ext, encode] of ENCODERS) {
    const folder = join("sharp", label.replace(/[^a-z0-9]+/g, "-"));
    mkdirSync(join(dir, folder), { recursive: true });
    for (const quality of ladder) {
      let best = Infinity;
      let out;
      for (let i = 0; i < runs(ext); i++) {
        const started = process.hrtime.bigint();
        out = await encode(sharp(data, raw), quality).toBuffer();
        best = Math.min(best, Number(process.hrtime.bigint() - started) / 1e6);
      }
      const file = join(folder, `${ref.name}-q${quality}.${ext}`);
      writeFileSync(join(dir, file), out);
      index.push({ encoder: label, reference: ref.name, quality, file, ms: best });
    }
  }
  console.error(`rd-sharp: ${ref.name}`);
}
writeFileSync(join(dir, "sharp", "index.json"), JSON.stringify(index));
