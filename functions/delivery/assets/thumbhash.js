// ThumbHash decoder (Evan Wallace's algorithm, MIT; ported from the `thumbhash` crate imgpipe encodes
// with). thumbHashToRGBA(bytes) -> {w, h, rgba}: a ≤32 px image to stretch under the real one.
// Tested against the crate's own decoding (functions/delivery/assets/thumbhash.test.mjs).
function thumbHashToRGBA(hash) {
  var PI = Math.PI, max = Math.max, min = Math.min, cos = Math.cos, round = Math.round;
  var header24 = hash[0] | (hash[1] << 8) | (hash[2] << 16);
  var header16 = hash[3] | (hash[4] << 8);
  var lDc = (header24 & 63) / 63, pDc = ((header24 >> 6) & 63) / 31.5 - 1, qDc = ((header24 >> 12) & 63) / 31.5 - 1;
  var lScale = ((header24 >> 18) & 31) / 31, hasAlpha = header24 >> 23;
  var pScale = ((header16 >> 3) & 63) / 63, qScale = ((header16 >> 9) & 63) / 63;
  var isLandscape = header16 >> 15, lMax = hasAlpha ? 5 : 7, lMin = header16 & 7;
  var lx = max(3, isLandscape ? lMax : lMin), ly = max(3, isLandscape ? lMin : lMax);
  var ratio = (isLandscape ? lMax : lMin) / (isLandscape ? lMin : lMax);
  var aDc = hasAlpha ? (hash[5] & 15) / 15 : 1, aScale = hasAlpha ? (hash[5] >> 4) / 15 : 1;
  var start = hasAlpha ? 6 : 5, index = 0;
  function channel(nx, ny, scale) {
    var ac = [];
    for (var cy = 0; cy < ny; cy++) {
      for (var cx = cy ? 0 : 1; cx * ny < nx * (ny - cy); cx++, index++) {
        ac.push((((hash[start + (index >> 1)] >> ((index & 1) << 2)) & 15) / 7.5 - 1) * scale);
      }
    }
    return ac;
  }
  var lAc = channel(lx, ly, lScale), pAc = channel(3, 3, pScale * 1.25), qAc = channel(3, 3, qScale * 1.25);
  var aAc = hasAlpha ? channel(5, 5, aScale) : [];
  var w = ratio > 1 ? 32 : round(32 * ratio), h = ratio > 1 ? round(32 / ratio) : 32;
  var rgba = new Uint8ClampedArray(w * h * 4), fx = [], fy = [];
  for (var y = 0, i = 0; y < h; y++) {
    for (var x = 0; x < w; x++, i += 4) {
      var l = lDc, p = pDc, q = qDc, a = aDc, cx, cy, j, f, fy2;
      for (cx = 0; cx < max(lx, hasAlpha ? 5 : 3); cx++) fx[cx] = cos(PI / w * (x + 0.5) * cx);
      for (cy = 0; cy < max(ly, hasAlpha ? 5 : 3); cy++) fy[cy] = cos(PI / h * (y + 0.5) * cy);
      for (cy = 0, j = 0; cy < ly; cy++) {
        for (cx = cy ? 0 : 1, fy2 = fy[cy] * 2; cx * ly < lx * (ly - cy); cx++, j++) l += lAc[j] * fx[cx] * fy2;
      }
      for (cy = 0, j = 0; cy < 3; cy++) {
        for (cx = cy ? 0 : 1, fy2 = fy[cy] * 2; cx < 3 - cy; cx++, j++) {
          f = fx[cx] * fy2;
          p += pAc[j] * f;
          q += qAc[j] * f;
        }
      }
      if (hasAlpha) {
        for (cy = 0, j = 0; cy < 5; cy++) {
          for (cx = cy ? 0 : 1, fy2 = fy[cy] * 2; cx < 5 - cy; cx++, j++) a += aAc[j] * fx[cx] * fy2;
        }
      }
      var b = l - 2 / 3 * p, r = (3 * l - b + q) / 2, g = r - q;
      rgba[i] = Math.floor(max(0, min(1, r)) * 255);
      rgba[i + 1] = Math.floor(max(0, min(1, g)) * 255);
      rgba[i + 2] = Math.floor(max(0, min(1, b)) * 255);
      rgba[i + 3] = Math.floor(max(0, min(1, a)) * 255);
    }
  }
  return { w: w, h: h, rgba: rgba };
}

// Paints the ThumbHash in canvas.dataset.thumbhash (base64) into the canvas and stamps the time, so
// a test can tell the placeholder was there before the image.
function paintThumbHash(canvas) {
  var binary = atob(canvas.dataset.thumbhash), bytes = [];
  for (var k = 0; k < binary.length; k++) bytes.push(binary.charCodeAt(k));
  var image = thumbHashToRGBA(bytes);
  canvas.width = image.w;
  canvas.height = image.h;
  var context = canvas.getContext('2d'), data = context.createImageData(image.w, image.h);
  data.data.set(image.rgba);
  context.putImageData(data, 0, 0);
  canvas.dataset.paintedAt = String(performance.now());
}
