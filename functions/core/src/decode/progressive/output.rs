//! From kept coefficients to RGB rows:
//! - an N×N inverse DCT per block from the kept N×N coefficients: each output pixel is the mean of the
//!   8/N × 8/N full-scale pixels it stands for, as libjpeg-turbo's reduced IDCTs (`jidctred.c`)
//!   compute it, less the higher frequencies this decoder did not keep (which the next resize
//!   removes anyway: a derivative is at least 1.5× smaller than the decoded picture);
//! - triangle ("fancy") chroma upsampling, libjpeg's `h2v2_fancy_upsample` weights (9/3/3/1);
//! - JFIF YCbCr → RGB in libjpeg's 16-bit fixed point.
//!
//! Each component is transformed, then its coefficients are freed, before the RGB buffer is made.

use super::Refusal;
use super::scan::{Plane, Store};
use super::segments::{Component, Frame};

/// One component's samples at N/8 scale: whole blocks, `width` per row; `valid_*` hold image data.
struct Samples {
    data: Vec<u8>,
    width: usize,
    valid_w: usize,
    valid_h: usize,
}

/// Renders the stored coefficients as an 8-bit RGB image of `ceil(width·n/8)` × `ceil(height·n/8)`.
pub fn rgb(
    frame: &Frame,
    store: Store,
    quant: &[[u16; 64]],
) -> Result<(usize, usize, Vec<u8>), Refusal> {
    let n = store.n;
    let mut samples = Vec::with_capacity(frame.components.len());
    let mut factors = Vec::with_capacity(frame.components.len());
    for ((plane, component), table) in store.planes.into_iter().zip(&frame.components).zip(quant) {
        // What upsampling is left after the component's own IDCT size: 1 or 2 each way.
        factors.push((
            frame.h_max * n / (component.h * plane.n),
            frame.v_max * n / (component.v * plane.n),
        ));
        let s = match plane.n {
            1 => idct_plane::<1>(&plane, component, table),
            2 => idct_plane::<2>(&plane, component, table),
            4 => idct_plane::<4>(&plane, component, table),
            8 => idct_plane::<8>(&plane, component, table),
            _ => {
                return Err(Refusal::Unsupported(
                    "a scale other than 1, 2, 4 or 8 eighths",
                ));
            }
        }?;
        drop(plane);
        samples.push(s);
    }
    let (width, height) = (
        (frame.width * n).div_ceil(8),
        (frame.height * n).div_ceil(8),
    );
    // Filled row by row (appending, so 18 MB at 1/2 of a 24 MP photo are not zeroed first).
    let mut out = Vec::new();
    out.try_reserve_exact(width * height * 3)
        .map_err(|_| Refusal::Unsupported("no memory for the decoded image"))?;
    let mut rgb_row = vec![0u8; width * 3];
    if samples.len() == 1 {
        let y = &samples[0];
        for row in 0..height {
            let src = &y.data[row * y.width..row * y.width + width];
            for (px, &v) in rgb_row.chunks_exact_mut(3).zip(src) {
                px.fill(v);
            }
            out.extend_from_slice(&rgb_row);
        }
        return Ok((width, height, out));
    }
    let mut colsum = vec![0u16; width];
    let (mut cb, mut cr) = (vec![0u8; width], vec![0u8; width]);
    let mut planar = [vec![0u8; width], vec![0u8; width], vec![0u8; width]];
    for row in 0..height {
        let cb = chroma_row(&samples[1], factors[1], row, width, &mut colsum, &mut cb);
        let cr = chroma_row(&samples[2], factors[2], row, width, &mut colsum, &mut cr);
        let y = &samples[0].data[row * samples[0].width..row * samples[0].width + width];
        ycbcr_to_rgb(y, cb, cr, &mut planar, &mut rgb_row);
        out.extend_from_slice(&rgb_row);
    }
    Ok((width, height, out))
}

fn zeroed(len: usize) -> Result<Vec<u8>, Refusal> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| Refusal::Unsupported("no memory for the decoded image"))?;
    v.resize(len, 0);
    Ok(v)
}

/// `basis[x][u]`: the 1-D inverse of JPEG's 8-point DCT for frequency u, ½·C(u)·cos((2s+1)uπ/16) with
/// C(0) = 1/√2, averaged over the 8/N samples s that output pixel x covers.
fn basis<const N: usize>() -> [[f32; N]; N] {
    let m = 8 / N;
    let mut b = [[0f32; N]; N];
    for (x, row) in b.iter_mut().enumerate() {
        for (u, value) in row.iter_mut().enumerate() {
            let c = if u == 0 {
                std::f64::consts::FRAC_1_SQRT_2
            } else {
                1.0
            };
            let mean = (0..m)
                .map(|j| {
                    ((2 * (x * m + j) + 1) as f64 * u as f64 * std::f64::consts::PI / 16.0).cos()
                })
                .sum::<f64>()
                / m as f64;
            *value = (0.5 * c * mean) as f32;
        }
    }
    b
}

fn idct_plane<const N: usize>(
    plane: &Plane,
    component: &Component,
    quant: &[u16; 64],
) -> Result<Samples, Refusal> {
    let kept_ac = plane.kept_ac();
    // basis_t[u][x]: frequency-major, so the inner loops run over the N output positions.
    let basis = basis::<N>();
    let mut basis_t = [[0f32; N]; N];
    for (x, row) in basis.iter().enumerate() {
        for (u, &value) in row.iter().enumerate() {
            basis_t[u][x] = value;
        }
    }
    let mut q = [[0f32; N]; N];
    for (r, row) in q.iter_mut().enumerate() {
        for (c, value) in row.iter_mut().enumerate() {
            *value = f32::from(quant[r * 8 + c]);
        }
    }
    let width = component.blocks_w * N;
    let mut data = zeroed(width * component.blocks_h * N)?;
    for by in 0..component.blocks_h {
        let rows = &mut data[by * N * width..(by + 1) * N * width];
        for bx in 0..component.blocks_w {
            let index = by * plane.stride + bx;
            let coefs = &plane.coefs[index * N * N..(index + 1) * N * N];
            let nonzero = plane.masks[index] & kept_ac;
            let dc = f32::from(plane.dc[index]) * q[0][0];
            let mut block = [[0u8; N]; N];
            if nonzero == 0 {
                // No kept AC coefficient: a flat block at the DC level.
                block = [[to_u8(dc / 8.0 + 128.0); N]; N];
            } else {
                // Separable, over the nonzero coefficients only (most blocks have a handful):
                // vertical frequencies into `columns[c][y]`, then horizontal into the pixels.
                let mut columns = [[0f32; N]; N];
                for (column, &weight) in columns[0].iter_mut().zip(&basis_t[0]) {
                    *column = weight * dc;
                }
                let mut used = 1u32;
                let mut pending = nonzero;
                while pending != 0 {
                    let k = pending.trailing_zeros() as usize;
                    pending &= pending - 1;
                    let at = usize::from(plane.slot[k]);
                    let (r, c) = (at / N, at % N);
                    let value = f32::from(coefs[at]) * q[r][c];
                    for (column, &weight) in columns[c].iter_mut().zip(&basis_t[r]) {
                        *column += weight * value;
                    }
                    used |= 1 << c;
                }
                let mut pixels = [[128f32; N]; N];
                while used != 0 {
                    let c = used.trailing_zeros() as usize;
                    used &= used - 1;
                    for (row, &t) in pixels.iter_mut().zip(&columns[c]) {
                        for (pixel, &weight) in row.iter_mut().zip(&basis_t[c]) {
                            *pixel += t * weight;
                        }
                    }
                }
                for (out, values) in block.iter_mut().zip(&pixels) {
                    for (o, &v) in out.iter_mut().zip(values) {
                        *o = to_u8(v);
                    }
                }
            }
            for (y, values) in block.iter().enumerate() {
                rows[y * width + bx * N..y * width + bx * N + N].copy_from_slice(values);
            }
        }
    }
    Ok(Samples {
        data,
        width,
        valid_w: (component.width * N).div_ceil(8),
        valid_h: (component.height * N).div_ceil(8),
    })
}

/// Rounds and clamps to 0–255 without a float-to-int conversion (which does not vectorise): adding
/// 2²³ to a value in 0–255 leaves it, rounded to nearest, in the low bits of the float's mantissa.
#[inline(always)]
fn to_u8(value: f32) -> u8 {
    (value.clamp(0.0, 255.0) + 8_388_608.0).to_bits() as u8
}

/// One output row of a chroma component, upsampled by `(fx, fy)` (1 or 2 each) with triangle weights:
/// the nearer source row/column 3/4, the farther 1/4, edges replicated.
fn chroma_row<'a>(
    s: &'a Samples,
    (fx, fy): (usize, usize),
    row: usize,
    width: usize,
    colsum: &mut [u16],
    out: &'a mut [u8],
) -> &'a [u8] {
    let (cw, ch) = (s.valid_w.max(1), s.valid_h.max(1));
    let src_row = (row / fy).min(ch - 1);
    if (fx, fy) == (1, 1) && s.width >= width {
        // Already at the output's resolution (4:4:4, or 4:2:0 chroma scaled up by its IDCT).
        return &s.data[src_row * s.width..src_row * s.width + width];
    }
    let near = &s.data[src_row * s.width..src_row * s.width + cw];
    // Column sums, scaled by 4 in both cases.
    if fy == 2 {
        let far_row = if row.is_multiple_of(2) {
            src_row.saturating_sub(1)
        } else {
            (src_row + 1).min(ch - 1)
        };
        let far = &s.data[far_row * s.width..far_row * s.width + cw];
        for ((sum, &a), &b) in colsum.iter_mut().zip(near).zip(far) {
            *sum = 3 * u16::from(a) + u16::from(b);
        }
    } else {
        for (sum, &a) in colsum.iter_mut().zip(near) {
            *sum = 4 * u16::from(a);
        }
    }
    let sums = &colsum[..cw.min(colsum.len())];
    if fx == 2 {
        for (x, value) in out.iter_mut().enumerate() {
            let j = (x / 2).min(sums.len() - 1);
            let far = if x.is_multiple_of(2) {
                sums[j.saturating_sub(1)]
            } else {
                sums[(j + 1).min(sums.len() - 1)]
            };
            let bias = if x.is_multiple_of(2) { 8 } else { 7 };
            *value = ((3 * u32::from(sums[j]) + u32::from(far) + bias) >> 4) as u8;
        }
    } else {
        for (x, value) in out.iter_mut().enumerate() {
            let j = x.min(sums.len() - 1);
            *value = ((4 * u32::from(sums[j]) + 8) >> 4) as u8;
        }
    }
    out
}

/// JFIF YCbCr → RGB (libjpeg's `ycc_rgb_convert`, the same 16-bit constants and rounding), into
/// three planar rows first (a loop the compiler vectorises), then interleaved.
fn ycbcr_to_rgb(y: &[u8], cb: &[u8], cr: &[u8], planar: &mut [Vec<u8>; 3], out: &mut [u8]) {
    const HALF: i32 = 1 << 15;
    let n = y.len();
    let (cb, cr, out) = (&cb[..n], &cr[..n], &mut out[..3 * n]);
    let [r, g, b] = planar;
    let (r, g, b) = (&mut r[..n], &mut g[..n], &mut b[..n]);
    for i in 0..n {
        let (y, cb, cr) = (
            i32::from(y[i]),
            i32::from(cb[i]) - 128,
            i32::from(cr[i]) - 128,
        );
        r[i] = (y + ((91_881 * cr + HALF) >> 16)).clamp(0, 255) as u8;
        g[i] = (y + ((-22_554 * cb - 46_802 * cr + HALF) >> 16)).clamp(0, 255) as u8;
        b[i] = (y + ((116_130 * cb + HALF) >> 16)).clamp(0, 255) as u8;
    }
    for i in 0..n {
        out[3 * i] = r[i];
        out[3 * i + 1] = g[i];
        out[3 * i + 2] = b[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_basis_keeps_a_flat_block_flat_at_every_scale() {
        // DC alone: ¼·C(0)²·F = F/8 at every pixel, whatever N.
        fn dc_gain<const N: usize>() -> f32 {
            let b = basis::<N>();
            b[0][0] * b[N - 1][0]
        }
        for gain in [
            dc_gain::<1>(),
            dc_gain::<2>(),
            dc_gain::<4>(),
            dc_gain::<8>(),
        ] {
            assert!((gain - 1.0 / 8.0).abs() < 1e-6, "{gain}");
        }
    }

    #[test]
    fn to_u8_rounds_to_nearest_and_clamps() {
        for (value, expected) in [
            (-3.0, 0),
            (0.4, 0),
            (0.6, 1),
            (127.5, 128),
            (254.6, 255),
            (300.0, 255),
        ] {
            assert_eq!(to_u8(value), expected, "{value}");
        }
    }

    #[test]
    fn grey_chroma_gives_grey_and_pure_red_stays_red() {
        let mut out = [0u8; 6];
        let mut planar = [vec![0; 2], vec![0; 2], vec![0; 2]];
        ycbcr_to_rgb(&[100, 76], &[128, 85], &[128, 255], &mut planar, &mut out);
        assert_eq!(&out[..3], &[100, 100, 100]);
        // Y 76, Cb 85, Cr 255 is JFIF's pure red (255, 0, 0) to within rounding.
        assert!(out[3] >= 253 && out[4] <= 1 && out[5] <= 2, "{out:?}");
    }

    #[test]
    fn upsampling_weights_the_nearer_sample_three_quarters() {
        let s = Samples {
            data: vec![0, 160, 0, 160],
            width: 2,
            valid_w: 2,
            valid_h: 2,
        };
        let (mut sums, mut out) = ([0u16; 4], [0u8; 4]);
        let row = chroma_row(&s, (2, 2), 0, 4, &mut sums, &mut out);
        // Columns: 0 and 160 (rows equal); horizontally 0, 40 (¾·0 + ¼·160), 120, 160.
        assert_eq!(row, [0, 40, 120, 160]);
    }
}
