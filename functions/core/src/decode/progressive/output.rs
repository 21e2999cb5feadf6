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
    let mut out = zeroed(width * height * 3)?;
    if samples.len() == 1 {
        let y = &samples[0];
        for (row, dst) in out.chunks_exact_mut(width * 3).enumerate() {
            let src = &y.data[row * y.width..row * y.width + width];
            for (px, &v) in dst.chunks_exact_mut(3).zip(src) {
                px.fill(v);
            }
        }
        return Ok((width, height, out));
    }
    let mut colsum = vec![0u16; width];
    let (mut cb, mut cr) = (vec![0u8; width], vec![0u8; width]);
    for (row, dst) in out.chunks_exact_mut(width * 3).enumerate() {
        chroma_row(&samples[1], factors[1], row, &mut colsum, &mut cb);
        chroma_row(&samples[2], factors[2], row, &mut colsum, &mut cr);
        let y = &samples[0].data[row * samples[0].width..row * samples[0].width + width];
        ycbcr_to_rgb(y, &cb, &cr, dst);
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
    let basis = basis::<N>();
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
            let mut block = [[0u8; N]; N];
            if plane.masks[index] & kept_ac == 0 {
                // No kept AC coefficient: a flat block at the DC level.
                let level = f32::from(coefs[0]) * q[0][0] / 8.0 + 128.5;
                block = [[level as u8; N]; N];
            } else {
                // Columns (vertical frequencies) first, then rows.
                let mut tmp = [[0f32; N]; N];
                for (y, t) in tmp.iter_mut().enumerate() {
                    for r in 0..N {
                        let weight = basis[y][r];
                        for c in 0..N {
                            t[c] += weight * f32::from(coefs[r * N + c]) * q[r][c];
                        }
                    }
                }
                for (y, out) in block.iter_mut().enumerate() {
                    for (x, value) in out.iter_mut().enumerate() {
                        let mut sum = 128.5;
                        for c in 0..N {
                            sum += tmp[y][c] * basis[x][c];
                        }
                        *value = sum as u8; // saturating: below 0 → 0, above 255 → 255
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

/// One output row of a chroma component, upsampled by `(fx, fy)` (1 or 2 each) with triangle weights:
/// the nearer source row/column 3/4, the farther 1/4, edges replicated.
fn chroma_row(
    s: &Samples,
    (fx, fy): (usize, usize),
    row: usize,
    colsum: &mut [u16],
    out: &mut [u8],
) {
    let (cw, ch) = (s.valid_w.max(1), s.valid_h.max(1));
    let src_row = (row / fy).min(ch - 1);
    let near = &s.data[src_row * s.width..src_row * s.width + cw];
    // Column sums, scaled by 4 in both cases.
    if fy == 2 {
        let far_row = if row % 2 == 0 {
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
            let far = if x % 2 == 0 {
                sums[j.saturating_sub(1)]
            } else {
                sums[(j + 1).min(sums.len() - 1)]
            };
            let bias = if x % 2 == 0 { 8 } else { 7 };
            *value = ((3 * u32::from(sums[j]) + u32::from(far) + bias) >> 4) as u8;
        }
    } else {
        for (x, value) in out.iter_mut().enumerate() {
            let j = x.min(sums.len() - 1);
            *value = ((4 * u32::from(sums[j]) + 8) >> 4) as u8;
        }
    }
}

/// JFIF YCbCr → RGB (libjpeg's `ycc_rgb_convert`, the same 16-bit constants and rounding).
fn ycbcr_to_rgb(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    const HALF: i32 = 1 << 15;
    for (((px, &y), &cb), &cr) in out.chunks_exact_mut(3).zip(y).zip(cb).zip(cr) {
        let (y, cb, cr) = (i32::from(y), i32::from(cb) - 128, i32::from(cr) - 128);
        let r = y + ((91_881 * cr + HALF) >> 16);
        let g = y + ((-22_554 * cb - 46_802 * cr + HALF) >> 16);
        let b = y + ((116_130 * cb + HALF) >> 16);
        px[0] = r.clamp(0, 255) as u8;
        px[1] = g.clamp(0, 255) as u8;
        px[2] = b.clamp(0, 255) as u8;
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
    fn grey_chroma_gives_grey_and_pure_red_stays_red() {
        let mut out = [0u8; 6];
        ycbcr_to_rgb(&[100, 76], &[128, 85], &[128, 255], &mut out);
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
        chroma_row(&s, (2, 2), 0, &mut sums, &mut out);
        // Columns: 0 and 160 (rows equal); horizontally 0, 40 (¾·0 + ¼·160), 120, 160.
        assert_eq!(out, [0, 40, 120, 160]);
    }
}
