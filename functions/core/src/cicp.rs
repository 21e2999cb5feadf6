//! Colour described by code points (HEIF/AVIF `nclx`, the AV1 sequence header, ITU-T H.273):
//! YCbCr → R'G'B', then primaries and transfer → 8-bit sRGB, with a tone-map for PQ and HLG.
//!
//! Conversions, documented in docs/presets-and-formats.md ("Formats and colour"):
//! - Primaries BT.709 (1), unspecified (2), BT.601 (5, 6, 7), Display P3 (12; DCI-P3 11 is taken
//!   with P3's D65 white) and BT.2020 (9) go to BT.709/sRGB through a linear 3×3 matrix built from
//!   the chromaticities; out-of-gamut colours are clipped. Others are taken as BT.709.
//! - Transfer sRGB (13), BT.709/601/2020 (1, 6, 14, 15) and unspecified (2) are decoded with the
//!   sRGB curve (what browsers show for SDR images), gamma 2.2 (4), 2.8 (5), linear (8), PQ (16)
//!   and HLG (18) with their own.
//! - **HDR tone-map** (PQ and HLG): light is taken relative to the HDR reference white of 203 cd/m²
//!   (ITU-R BT.2408), which maps to SDR white; HLG uses its reference OOTF (1000 cd/m² peak, system
//!   gamma 1.2), so a 75 % HLG grey lands on 203 cd/m² as well. Then, on the largest of R, G, B
//!   (hue kept): values up to the knee [`KNEE`] (0.8 linear, ≈ 162 cd/m², sRGB 231) are
//!   unchanged, brighter ones roll off exponentially towards 1.0 with slope 1 at the knee:
//!   `m' = K + (1 − K)(1 − exp(−(m − K)/(1 − K)))`. 203 cd/m² white becomes 0.926 (sRGB 247),
//!   twice that (406 cd/m²) 0.9995; nothing is clipped abruptly.
//!
//! Sample math is f32 with 64 K-entry lookup tables for the transfer curves, so 10- and 12-bit
//! sources keep their precision until the final 8-bit rounding.

use crate::heif::Cicp;

/// Knee of the HDR roll-off, in linear light relative to SDR white.
pub const KNEE: f32 = 0.8;

/// HDR reference white in cd/m² (ITU-R BT.2408).
pub const REFERENCE_WHITE_NITS: f32 = 203.0;

/// sRGB/BT.709 code points: what needs no conversion.
pub const SRGB: Cicp = Cicp {
    primaries: 1,
    transfer: 13,
    matrix: 6,
    full_range: true,
};

/// How the source transfer curve is decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transfer {
    Srgb,
    Gamma(f32),
    Linear,
    Pq,
    Hlg,
}

fn transfer(code: u16) -> Transfer {
    match code {
        4 => Transfer::Gamma(2.2),
        5 => Transfer::Gamma(2.8),
        8 => Transfer::Linear,
        16 => Transfer::Pq,
        18 => Transfer::Hlg,
        _ => Transfer::Srgb,
    }
}

/// xy chromaticities of R, G, B and white for a primaries code point.
fn chromaticities(code: u16) -> [[f64; 2]; 4] {
    const D65: [f64; 2] = [0.3127, 0.3290];
    match code {
        5 => [[0.64, 0.33], [0.29, 0.60], [0.15, 0.06], D65],
        6 | 7 => [[0.630, 0.340], [0.310, 0.595], [0.155, 0.070], D65],
        9 => [[0.708, 0.292], [0.170, 0.797], [0.131, 0.046], D65],
        11 | 12 => [[0.680, 0.320], [0.265, 0.690], [0.150, 0.060], D65],
        _ => [[0.64, 0.33], [0.30, 0.60], [0.15, 0.06], D65],
    }
}

fn is_bt709(code: u16) -> bool {
    !matches!(code, 5 | 6 | 7 | 9 | 11 | 12)
}

type Matrix = [[f64; 3]; 3];

fn invert(m: &Matrix) -> Matrix {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    let c = |a: usize, b: usize, c: usize, d: usize| m[a][b] * m[c][d] - m[a][d] * m[c][b];
    [
        [
            c(1, 1, 2, 2) / det,
            -c(0, 1, 2, 2) / det,
            c(0, 1, 1, 2) / det,
        ],
        [
            -c(1, 0, 2, 2) / det,
            c(0, 0, 2, 2) / det,
            -c(0, 0, 1, 2) / det,
        ],
        [
            c(1, 0, 2, 1) / det,
            -c(0, 0, 2, 1) / det,
            c(0, 0, 1, 1) / det,
        ],
    ]
}

fn multiply(a: &Matrix, b: &Matrix) -> Matrix {
    let mut out = [[0.0; 3]; 3];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    out
}

/// Linear RGB → XYZ for a set of chromaticities (the standard derivation: scale the primaries'
/// XYZ so that RGB = 1 gives the white point).
fn rgb_to_xyz(c: [[f64; 2]; 4]) -> Matrix {
    let xyz = |[x, y]: [f64; 2]| [x / y, 1.0, (1.0 - x - y) / y];
    let (r, g, b, w) = (xyz(c[0]), xyz(c[1]), xyz(c[2]), xyz(c[3]));
    let m = [[r[0], g[0], b[0]], [r[1], g[1], b[1]], [r[2], g[2], b[2]]];
    let inv = invert(&m);
    let s: Vec<f64> = (0..3)
        .map(|i| inv[i][0] * w[0] + inv[i][1] * w[1] + inv[i][2] * w[2])
        .collect();
    [
        [m[0][0] * s[0], m[0][1] * s[1], m[0][2] * s[2]],
        [m[1][0] * s[0], m[1][1] * s[1], m[1][2] * s[2]],
        [m[2][0] * s[0], m[2][1] * s[1], m[2][2] * s[2]],
    ]
}

/// The linear matrix from `primaries` to BT.709/sRGB primaries.
fn to_bt709(primaries: u16) -> [[f32; 3]; 3] {
    let m = multiply(
        &invert(&rgb_to_xyz(chromaticities(1))),
        &rgb_to_xyz(chromaticities(primaries)),
    );
    m.map(|row| row.map(|v| v as f32))
}

/// PQ (SMPTE ST 2084) EOTF: signal → cd/m².
pub fn pq_to_nits(signal: f32) -> f32 {
    const M1: f64 = 2610.0 / 16384.0;
    const M2: f64 = 2523.0 / 4096.0 * 128.0;
    const C1: f64 = 3424.0 / 4096.0;
    const C2: f64 = 2413.0 / 4096.0 * 32.0;
    const C3: f64 = 2392.0 / 4096.0 * 32.0;
    let p = f64::from(signal.clamp(0.0, 1.0)).powf(1.0 / M2);
    (10_000.0 * ((p - C1).max(0.0) / (C2 - C3 * p)).powf(1.0 / M1)) as f32
}

/// HLG inverse OETF (ITU-R BT.2100): signal → scene light 0–1.
pub fn hlg_to_scene(signal: f32) -> f32 {
    const A: f32 = 0.178_832_77;
    const B: f32 = 0.284_668_92;
    const C: f32 = 0.559_910_7;
    let e = signal.clamp(0.0, 1.0);
    if e <= 0.5 {
        e * e / 3.0
    } else {
        (((e - C) / A).exp() + B) / 12.0
    }
}

/// sRGB decoding curve.
fn srgb_to_linear(v: f32) -> f32 {
    if v <= 0.04045 {
        v / 12.92
    } else {
        ((v + 0.055) / 1.055).powf(2.4)
    }
}

/// The documented roll-off applied to the largest channel (see the module doc).
pub fn roll_off(m: f32) -> f32 {
    if m <= KNEE {
        m
    } else {
        KNEE + (1.0 - KNEE) * (1.0 - (-(m - KNEE) / (1.0 - KNEE)).exp())
    }
}

/// True when samples with these code points are already sRGB for display purposes.
pub fn is_srgb(cicp: &Cicp) -> bool {
    is_bt709(cicp.primaries) && transfer(cicp.transfer) == Transfer::Srgb
}

/// True for PQ or HLG sources (tone-mapped).
pub fn is_hdr(cicp: &Cicp) -> bool {
    matches!(transfer(cicp.transfer), Transfer::Pq | Transfer::Hlg)
}

/// Converts 16-bit non-linear R'G'B' (0–65535) with the colour `cicp` describes to 8-bit sRGB.
pub struct ToSrgb {
    /// Signal (16-bit code) → linear light relative to SDR white (HLG: scene light).
    decode: Vec<f32>,
    matrix: Option<[[f32; 3]; 3]>,
    transfer: Transfer,
    /// Linear 0–1 in 1/65535 steps → sRGB 8-bit.
    encode: Vec<u8>,
}

impl ToSrgb {
    /// Builds the lookup tables for `cicp` (about 0.5 ms).
    pub fn new(cicp: &Cicp) -> Self {
        let transfer = transfer(cicp.transfer);
        let decode = (0..=u16::MAX)
            .map(|code| {
                let v = f32::from(code) / 65535.0;
                match transfer {
                    Transfer::Srgb => srgb_to_linear(v),
                    Transfer::Gamma(g) => v.powf(g),
                    Transfer::Linear => v,
                    Transfer::Pq => pq_to_nits(v) / REFERENCE_WHITE_NITS,
                    Transfer::Hlg => hlg_to_scene(v),
                }
            })
            .collect();
        let encode = (0..=u16::MAX)
            .map(|i| {
                let l = f32::from(i) / 65535.0;
                let v = if l <= 0.003_130_8 {
                    12.92 * l
                } else {
                    1.055 * l.powf(1.0 / 2.4) - 0.055
                };
                (v * 255.0).round().clamp(0.0, 255.0) as u8
            })
            .collect();
        Self {
            decode,
            matrix: (!is_bt709(cicp.primaries)).then(|| to_bt709(cicp.primaries)),
            transfer,
            encode,
        }
    }

    /// One pixel.
    #[inline]
    pub fn pixel(&self, rgb: [u16; 3]) -> [u8; 3] {
        let mut l = rgb.map(|c| self.decode[usize::from(c)]);
        if self.transfer == Transfer::Hlg {
            // Reference OOTF with its luminance in BT.2020 (HLG's primaries), 1000 cd/m² peak.
            let ys = 0.2627 * l[0] + 0.6780 * l[1] + 0.0593 * l[2];
            let gain = 1000.0 * ys.max(0.0).powf(0.2) / REFERENCE_WHITE_NITS;
            l = l.map(|c| c * gain);
        }
        if let Some(m) = &self.matrix {
            l = [
                m[0][0] * l[0] + m[0][1] * l[1] + m[0][2] * l[2],
                m[1][0] * l[0] + m[1][1] * l[1] + m[1][2] * l[2],
                m[2][0] * l[0] + m[2][1] * l[1] + m[2][2] * l[2],
            ];
        }
        if matches!(self.transfer, Transfer::Pq | Transfer::Hlg) {
            let peak = l[0].max(l[1]).max(l[2]);
            if peak > KNEE {
                let scale = roll_off(peak) / peak;
                l = l.map(|c| c * scale);
            }
        }
        l.map(|c| self.encode[(c.clamp(0.0, 1.0) * 65535.0 + 0.5) as usize])
    }

    /// Converts interleaved 16-bit RGB or RGBA (`channels` 3 or 4) to 8-bit sRGB; alpha is scaled.
    pub fn convert(&self, samples: &[u16], channels: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(samples.len());
        for px in samples.chunks_exact(channels) {
            out.extend_from_slice(&self.pixel([px[0], px[1], px[2]]));
            if channels == 4 {
                out.push(((u32::from(px[3]) * 255 + 32767) / 65535) as u8);
            }
        }
        out
    }
}

/// Y'CbCr → R'G'B' coefficients (Kr, Kb) for a matrix code point; None for identity (GBR).
fn luma_coefficients(matrix: u16) -> Option<(f32, f32)> {
    match matrix {
        0 => None,
        1 => Some((0.2126, 0.0722)),
        4 => Some((0.30, 0.11)),
        7 => Some((0.212, 0.087)),
        9 | 10 => Some((0.2627, 0.0593)),
        _ => Some((0.299, 0.114)), // 5, 6 (BT.601) and unspecified, as libavif does
    }
}

/// Converts one Y'CbCr sample triple at `bit_depth` to 16-bit R'G'B', per the matrix and range.
pub struct YcbcrToRgb {
    coefficients: Option<(f32, f32)>,
    luma_offset: f32,
    luma_scale: f32,
    chroma_offset: f32,
    chroma_scale: f32,
}

impl YcbcrToRgb {
    /// For `cicp`'s matrix and range at `bit_depth` bits.
    pub fn new(cicp: &Cicp, bit_depth: u8) -> Self {
        let bit_depth = bit_depth.clamp(8, 15);
        let max = f32::from((1u16 << bit_depth) - 1);
        let unit = f32::from(1u16 << (bit_depth - 8));
        let (luma_offset, luma_scale, chroma_scale) = if cicp.full_range || cicp.matrix == 0 {
            (0.0, 1.0 / max, 1.0 / max)
        } else {
            (16.0 * unit, 1.0 / (219.0 * unit), 1.0 / (224.0 * unit))
        };
        Self {
            coefficients: luma_coefficients(cicp.matrix),
            luma_offset,
            luma_scale,
            chroma_offset: f32::from(1u16 << (bit_depth - 1)),
            chroma_scale,
        }
    }

    /// 16-bit R'G'B' for one sample triple.
    #[inline]
    pub fn pixel(&self, y: u16, cb: u16, cr: u16) -> [u16; 3] {
        let q = |v: f32| (v.clamp(0.0, 1.0) * 65535.0 + 0.5) as u16;
        let Some((kr, kb)) = self.coefficients else {
            // Identity: Y is G, Cb is B, Cr is R.
            let s = |v: u16| q((f32::from(v) - self.luma_offset) * self.luma_scale);
            return [s(cr), s(y), s(cb)];
        };
        let y = (f32::from(y) - self.luma_offset) * self.luma_scale;
        let cb = (f32::from(cb) - self.chroma_offset) * self.chroma_scale;
        let cr = (f32::from(cr) - self.chroma_offset) * self.chroma_scale;
        let r = y + 2.0 * (1.0 - kr) * cr;
        let b = y + 2.0 * (1.0 - kb) * cb;
        let g = (y - kr * r - kb * b) / (1.0 - kr - kb);
        [q(r), q(g), q(b)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cicp(primaries: u16, transfer: u16) -> Cicp {
        Cicp {
            primaries,
            transfer,
            matrix: 6,
            full_range: true,
        }
    }

    #[test]
    fn primaries_matrices_match_published_values() {
        // BT.2020 → BT.709 (ITU-R BT.2087 Table 1, rounded to 4 places).
        let m = to_bt709(9);
        let want = [
            [1.6605, -0.5876, -0.0728],
            [-0.1246, 1.1329, -0.0083],
            [-0.0182, -0.1006, 1.1187],
        ];
        for (row, want_row) in m.iter().zip(want) {
            for (v, w) in row.iter().zip(want_row) {
                assert!((v - w).abs() < 2e-4, "{m:?}");
            }
        }
        // White stays white whatever the primaries.
        for p in [5, 6, 9, 12] {
            let m = to_bt709(p);
            for row in m {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{p}");
            }
        }
    }

    #[test]
    fn pq_and_hlg_reference_points() {
        // PQ: 0.5806 ≈ 203 cd/m² (BT.2408), 1.0 = 10 000 cd/m².
        assert!(
            (pq_to_nits(0.5806) - 203.0).abs() < 1.0,
            "{}",
            pq_to_nits(0.5806)
        );
        assert!((pq_to_nits(1.0) - 10_000.0).abs() < 1.0);
        assert_eq!(pq_to_nits(0.0), 0.0);
        // HLG: signal 0.5 is scene light 1/12; 1.0 is 1.0.
        assert!((hlg_to_scene(0.5) - 1.0 / 12.0).abs() < 1e-6);
        assert!((hlg_to_scene(1.0) - 1.0).abs() < 1e-3);
    }

    #[test]
    fn tone_map_keeps_sdr_range_and_rolls_off_highlights() {
        assert_eq!(roll_off(0.5), 0.5);
        assert_eq!(roll_off(KNEE), KNEE);
        assert!((roll_off(1.0) - 0.9264).abs() < 1e-3);
        assert!(roll_off(2.0) < 1.0 && roll_off(2.0) > 0.999);
        assert!(roll_off(50.0) <= 1.0);
        // Monotonic.
        let mut last = 0.0;
        for i in 0..1000 {
            let v = roll_off(i as f32 / 100.0);
            assert!(v >= last);
            last = v;
        }
        // PQ reference white (203 cd/m²) grey → sRGB 247; 100 cd/m² grey stays mid-tone.
        let pq = ToSrgb::new(&cicp(9, 16));
        let code = |signal: f32| (signal * 65535.0).round() as u16;
        let white = pq.pixel([code(0.5806); 3]);
        assert!((246..=248).contains(&white[0]), "{white:?}");
        assert_eq!(white[0], white[1]);
        // HLG 75 % grey is reference white too.
        let hlg = ToSrgb::new(&cicp(9, 18));
        let grey = hlg.pixel([code(0.75); 3]);
        assert!((246..=248).contains(&grey[0]), "{grey:?}");
    }

    #[test]
    fn srgb_is_identity_and_p3_red_is_clipped_red() {
        let srgb = ToSrgb::new(&SRGB);
        for v in [0u16, 257, 128 * 257, 65535] {
            let out = srgb.pixel([v; 3]);
            assert_eq!(out[0], (u32::from(v) * 255 / 65535) as u8, "{v}");
        }
        let p3 = ToSrgb::new(&cicp(12, 13));
        assert_eq!(p3.pixel([65535, 0, 0]), [255, 0, 0]);
        // P3 mid grey stays grey.
        let g = p3.pixel([32768; 3]);
        assert!(g[0] == g[1] && g[1] == g[2], "{g:?}");
        assert!(is_srgb(&SRGB) && !is_srgb(&cicp(12, 13)) && is_hdr(&cicp(9, 16)));
    }

    #[test]
    fn ycbcr_ranges_and_matrices() {
        let full = YcbcrToRgb::new(&cicp(1, 13), 8);
        assert_eq!(full.pixel(255, 128, 128), [65535; 3]);
        assert_eq!(full.pixel(0, 128, 128), [0; 3]);
        let limited = YcbcrToRgb::new(
            &Cicp {
                full_range: false,
                ..cicp(1, 13)
            },
            10,
        );
        assert_eq!(limited.pixel(940, 512, 512), [65535; 3]);
        assert_eq!(limited.pixel(64, 512, 512), [0; 3]);
        // BT.601 red: Y 76, Cb 85, Cr 255 (full range) is about pure red.
        let red = full.pixel(76, 85, 255);
        assert!(red[0] > 65000 && red[1] < 600 && red[2] < 600, "{red:?}");
        let identity = YcbcrToRgb::new(
            &Cicp {
                matrix: 0,
                ..cicp(1, 13)
            },
            8,
        );
        assert_eq!(identity.pixel(255, 0, 128), [32896, 65535, 0]);
    }
}
