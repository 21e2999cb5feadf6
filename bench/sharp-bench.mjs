// The sharp side of `make bench`: the same work as imgpipe-bench, written to be as fast as sharp allows.
//
//   node sharp-bench.mjs --pipeline default|sharp-task|encode-avif|encode-webp --iterations N --threads T FILE...
//
// - libvips operation cache off, `sharp.concurrency(1)` (one libvips thread per image); the threads
//   figure runs T images at once on a libuv pool of T threads (set by run.py: UV_THREADPOOL_SIZE=T).
// - default: ONE decode with shrink-on-load (`resize` on JPEG input), auto-orient, ICC → sRGB, to the
//   largest output (1200 inside) as raw pixels; every output is then made from that raw buffer,
//   largest first (cascade), exactly the presets of functions/core/presets/default.toml.
// - sharp-task: sharp's own benchmark: JPEG → 720×588 Lanczos3 → JPEG q80.
// Prints one JSON object like imgpipe-bench.
import { readFileSync } from "node:fs";
import sharp from "sharp";

sharp.cache(false);
sharp.concurrency(1);

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const [value] = args.splice(i, 2).slice(1);
  return value;
};
const pipeline = opt("pipeline", "default");
const iterations = Number(opt("iterations", "10"));
const threads = Number(opt("threads", "1"));
const inputs = args.map((f) => readFileSync(f));

async function sharpTask(input) {
  const out = await sharp(input).resize(720, 588, { fit: "fill", kernel: "lanczos3" }).jpeg({ quality: 80 }).toBuffer();
  return out.length;
}

async function defaultSet(input) {
  const { data, info } = await sharp(input, { failOn: "error" })
    .rotate()
    .resize(1200, 1200, { fit: "inside", withoutEnlargement: true })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const from = () => sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } });
  const flat = (s) => (info.channels === 4 ? s.flatten({ background: "#ffffff" }) : s);
  const sizes = [];
  sizes.push((await flat(from()).jpeg({ quality: 85, progressive: true, mozjpeg: false }).toBuffer()).length); // preview
  sizes.push((await from().webp({ quality: 80, effort: 4 }).toBuffer()).length); // webp
  const lq = await flat(from().resize(800, 800, { fit: "inside", withoutEnlargement: true })).raw().toBuffer({ resolveWithObject: true });
  const fromLq = () => sharp(lq.data, { raw: { width: lq.info.width, height: lq.info.height, channels: lq.info.channels } });
  sizes.push((await fromLq().jpeg({ quality: 30 }).toBuffer()).length); // low-quality
  sizes.push((await flat(from().resize(200, 200, { fit: "cover" })).jpeg({ quality: 80 }).toBuffer()).length); // thumbnail
  sizes.push((await from().resize(32, null, { fit: "inside" }).blur(2.5).webp({ quality: 40 }).toBuffer()).length); // blur
  return sizes.reduce((a, b) => a + b, 0);
}

// Encoder-only comparison at 1200×900 (`make bench`'s AVIF vs WebP rows): each input is decoded to
// raw pixels once, outside the timing; only the encode is timed. AVIF q60 at libheif/aom's default
// effort 4, WebP q80 effort 4 (the default set's WebP).
const raw = new Map();
async function rawOf(input) {
  if (!raw.has(input)) raw.set(input, await sharp(input).raw().toBuffer({ resolveWithObject: true }));
  return raw.get(input);
}
async function encodeOnly(input, encode) {
  const { data, info } = await rawOf(input);
  const out = await encode(sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } })).toBuffer();
  return out.length;
}
const pipelines = {
  "sharp-task": sharpTask,
  default: defaultSet,
  "encode-avif": (input) => encodeOnly(input, (s) => s.avif({ quality: 60, effort: 4 })),
  "encode-webp": (input) => encodeOnly(input, (s) => s.webp({ quality: 80, effort: 4 })),
};
const run = pipelines[pipeline];
if (!run) throw new Error(`unknown pipeline ${pipeline}`);

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  const n = v.length;
  return n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

async function latency() {
  let outputBytes = 0;
  for (const input of inputs) outputBytes += await run(input); // warm-up
  const times = inputs.map(() => []);
  for (let it = 0; it < iterations; it++) {
    for (let i = 0; i < inputs.length; i++) {
      const t = process.hrtime.bigint();
      await run(inputs[i]);
      times[i].push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  }
  const perFile = times.map(median);
  const mean = perFile.reduce((a, b) => a + b, 0) / perFile.length;
  return { threads: 1, median_ms_per_file: perFile, median_ms: mean, images_per_s: 1000 / mean, output_bytes: outputBytes };
}

async function throughput() {
  const total = inputs.length * iterations;
  let next = 0;
  const t = process.hrtime.bigint();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= total) return;
      await run(inputs[i % inputs.length]);
    }
  };
  await Promise.all(Array.from({ length: threads }, worker));
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  return { threads, images: total, wall_s: seconds, images_per_s: total / seconds };
}

console.log(JSON.stringify(threads > 1 ? await throughput() : await latency()));
