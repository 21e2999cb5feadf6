// Makes the benchmark inputs that are not fixtures, from the CC BY-SA 4.0 Olympus photo:
// a photo the size of sharp's benchmark image (2725×2225; sharp's own file has no stated licence) and
// a 24 MP progressive JPEG, a 12 MP AVIF (libaom through sharp's libheif), and a 1200×900 JPEG for the
// encoder-only rows.   node make-inputs.mjs <source.jpg> <out dir>
import sharp from "sharp";

const [source, out] = process.argv.slice(2);
await sharp(source).resize(2725, 2225, { fit: "cover" }).jpeg({ quality: 92 }).toFile(`${out}/photo_2725x2225.jpg`);
await sharp(source)
  .resize(6000, 4000, { fit: "fill" })
  .jpeg({ quality: 90, progressive: true })
  .toFile(`${out}/progressive_6000x4000_24mp.jpg`);
await sharp(source).resize(4032, 3024, { fit: "fill" }).avif({ quality: 70, effort: 4 }).toFile(`${out}/photo_4032x3024.avif`);
await sharp(source).resize(1200, 900, { fit: "fill" }).jpeg({ quality: 95 }).toFile(`${out}/photo_1200x900.jpg`);
