//! Colour: every decoded image leaves the decode step as sRGB.
//!
//! Embedded ICC profiles (Display P3, Adobe RGB, ProPhoto, gray, CMYK print profiles) are converted to
//! sRGB with [moxcms](https://github.com/awxkee/moxcms) (pure Rust, SIMD, ICC v2/v4 matrix-shaper and
//! LUT profiles, CMYK; the same crate the `image` crate uses, so no second colour engine is linked).
//! Rendering intent: relative colorimetric for matrix-shaper profiles (what browsers and libvips do),
//! perceptual for LUT profiles (print CMYK).
//!
//! Fallbacks, documented in docs/presets-and-formats.md ("Formats and colour"):
//! - no profile: RGB/gray data is taken as sRGB (the web's rule for untagged images);
//! - CMYK/YCCK without a profile: naive conversion `channel × black`, Adobe-inverted data un-inverted;
//! - a profile that cannot be parsed or transformed: ignored (data taken as sRGB), never a failure.

use std::sync::Arc;

use moxcms::{
    ColorProfile, DataColorSpace, Layout, ProfileText, RenderingIntent, TransformOptions,
};

use crate::pixels::Pixels;

/// How the source stores colour, as reported in metadata (`source.color_space`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColourSpace {
    /// RGB or YCbCr-coded RGB.
    #[default]
    Rgb,
    /// One gray channel.
    Gray,
    /// Palette (indexed) colour.
    Indexed,
    /// CMYK (including Adobe YCCK-coded CMYK).
    Cmyk,
}

impl ColourSpace {
    /// Lower-case name as written in metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            ColourSpace::Rgb => "rgb",
            ColourSpace::Gray => "gray",
            ColourSpace::Indexed => "indexed",
            ColourSpace::Cmyk => "cmyk",
        }
    }
}

/// A parsed embedded profile.
#[derive(Debug, Clone)]
pub struct Profile {
    parsed: Arc<ColorProfile>,
    /// The profile's description tag, e.g. `Display P3`.
    pub description: Option<String>,
}

impl Profile {
    /// Parses an ICC profile; None when it is not a profile moxcms can read.
    pub fn parse(icc: &[u8]) -> Option<Profile> {
        let parsed = ColorProfile::new_from_slice(icc).ok()?;
        let description = parsed.description.as_ref().and_then(profile_text);
        Some(Profile {
            parsed: Arc::new(parsed),
            description,
        })
    }

    /// The colour space the profile describes.
    pub fn space(&self) -> DataColorSpace {
        self.parsed.color_space
    }

    /// True for profiles whose conversion to sRGB would be the identity (described as sRGB).
    pub fn is_srgb(&self) -> bool {
        self.parsed.color_space == DataColorSpace::Rgb
            && self
                .description
                .as_deref()
                .is_some_and(|d| d.to_ascii_lowercase().contains("srgb"))
    }
}

fn profile_text(text: &ProfileText) -> Option<String> {
    let value = match text {
        ProfileText::PlainString(s) => s.clone(),
        ProfileText::Localizable(list) => list
            .iter()
            .find(|l| l.language == "en")
            .or(list.first())?
            .value
            .clone(),
        ProfileText::Description(d) => d.ascii_string.clone(),
    };
    let value = value.trim_matches(char::from(0)).trim().to_string();
    (!value.is_empty()).then_some(value)
}

/// Reassembles the ICC profile stored in a JPEG's APP2 `ICC_PROFILE` segments (in sequence order).
pub fn jpeg_icc_profile(bytes: &[u8]) -> Option<Vec<u8>> {
    const TAG: &[u8] = b"ICC_PROFILE\0";
    let mut chunks: Vec<(u8, &[u8])> = Vec::new();
    let mut pos = 2;
    while pos + 4 <= bytes.len() && bytes[pos] == 0xFF {
        let marker = bytes[pos + 1];
        if marker == 0xFF {
            pos += 1;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break; // start of scan: no more header segments
        }
        let length = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        let end = pos + 2 + length;
        if length < 2 || end > bytes.len() {
            break;
        }
        let body = &bytes[pos + 4..end];
        if marker == 0xE2 && body.len() > TAG.len() + 2 && body.starts_with(TAG) {
            chunks.push((body[TAG.len()], &body[TAG.len() + 2..]));
        }
        pos = end;
    }
    if chunks.is_empty() {
        return None;
    }
    chunks.sort_by_key(|(sequence, _)| *sequence);
    Some(
        chunks
            .into_iter()
            .flat_map(|(_, data)| data)
            .copied()
            .collect(),
    )
}

/// Converts 8-bit RGB/RGBA pixels described by `profile` to sRGB. Pixels that are sRGB already, or whose
/// profile cannot be applied, are returned unchanged.
pub fn rgb_to_srgb(pixels: Pixels, profile: Option<&Profile>) -> Pixels {
    let Some(profile) = profile.filter(|p| !p.is_srgb()) else {
        return pixels;
    };
    let layout = if pixels.has_alpha() {
        Layout::Rgba
    } else {
        Layout::Rgb
    };
    let srgb = ColorProfile::new_srgb();
    match profile.space() {
        DataColorSpace::Rgb => {
            let Ok(transform) = profile.parsed.create_transform_8bit(
                layout,
                &srgb,
                layout,
                options(&profile.parsed),
            ) else {
                return pixels;
            };
            let mut out = vec![0u8; pixels.data.len()];
            match transform.transform(&pixels.data, &mut out) {
                Ok(()) => Pixels::new(pixels.width, pixels.height, pixels.channels, out),
                Err(_) => pixels,
            }
        }
        DataColorSpace::Gray => gray_to_srgb(pixels, profile),
        _ => pixels,
    }
}

/// Gray data (decoded as R=G=B) through a gray profile's tone curve.
fn gray_to_srgb(pixels: Pixels, profile: &Profile) -> Pixels {
    let channels = usize::from(pixels.channels);
    let srgb = ColorProfile::new_srgb();
    let Ok(transform) = profile.parsed.create_transform_8bit(
        Layout::Gray,
        &srgb,
        Layout::Rgb,
        options(&profile.parsed),
    ) else {
        return pixels;
    };
    let gray: Vec<u8> = pixels.data.chunks_exact(channels).map(|px| px[0]).collect();
    let mut rgb = vec![0u8; gray.len() * 3];
    if transform.transform(&gray, &mut rgb).is_err() {
        return pixels;
    }
    if channels == 4 {
        let mut rgba = Vec::with_capacity(pixels.data.len());
        for (px, src) in rgb.chunks_exact(3).zip(pixels.data.chunks_exact(4)) {
            rgba.extend_from_slice(px);
            rgba.push(src[3]);
        }
        return Pixels::new(pixels.width, pixels.height, 4, rgba);
    }
    Pixels::new(pixels.width, pixels.height, 3, rgb)
}

/// Converts interleaved CMYK as stored in a JPEG to sRGB. `adobe_inverted`: the file has an Adobe APP14
/// marker, so its values are stored inverted (Photoshop's convention). With a CMYK profile the
/// conversion goes through it; otherwise the naive fallback is used.
pub fn cmyk_to_srgb(
    mut cmyk: Vec<u8>,
    width: u32,
    height: u32,
    adobe_inverted: bool,
    profile: Option<&Profile>,
) -> Pixels {
    if adobe_inverted {
        cmyk.iter_mut().for_each(|v| *v = 255 - *v);
    }
    if let Some(profile) = profile.filter(|p| p.space() == DataColorSpace::Cmyk) {
        let srgb = ColorProfile::new_srgb();
        if let Ok(transform) = profile.parsed.create_transform_8bit(
            Layout::Rgba,
            &srgb,
            Layout::Rgb,
            options(&profile.parsed),
        ) {
            let mut rgb = vec![0u8; cmyk.len() / 4 * 3];
            if transform.transform(&cmyk, &mut rgb).is_ok() {
                return Pixels::new(width, height, 3, rgb);
            }
        }
    }
    Pixels::new(width, height, 3, naive_cmyk_to_rgb(&cmyk))
}

/// The documented no-profile fallback: `R = (1 − C)(1 − K)` and so on, on ink amounts (0 = no ink).
fn naive_cmyk_to_rgb(ink: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(ink.len() / 4 * 3);
    for px in ink.chunks_exact(4) {
        let paper = |v: u8| u32::from(255 - v);
        let k = paper(px[3]);
        for &v in &px[..3] {
            rgb.push(((paper(v) * k + 127) / 255) as u8);
        }
    }
    rgb
}

/// Bins of [`MatrixShaper::gamma`] in use (moxcms's own 8-bit output table size).
pub const GAMMA_BINS: usize = 4092;

/// An RGB matrix-shaper profile's conversion to sRGB (relative colorimetric) as two tables and a
/// matrix: what the GPU worker's `to_srgb` kernel applies, built from moxcms's own tables so the
/// result stays within a level of [`rgb_to_srgb`]. [`MatrixShaper::apply`] is the kernel's CPU
/// reference, operation for operation.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixShaper {
    /// Source value → linear light, 256 entries per channel (R, then G, then B).
    pub linearize: Vec<f32>,
    /// Linear source RGB → linear sRGB, row-major 3×3.
    pub matrix: [f32; 9],
    /// Linear sRGB in 0..=1, at `round(v × (GAMMA_BINS − 1))` → 8-bit sRGB.
    pub gamma: Vec<u16>,
}

impl MatrixShaper {
    /// The tables for `profile`; `None` for sRGB (nothing to do), gray, CMYK and LUT-based
    /// profiles (those stay with moxcms on the CPU).
    pub fn for_profile(profile: &Profile) -> Option<MatrixShaper> {
        let source = &profile.parsed;
        if profile.is_srgb() || !source.is_matrix_shaper() {
            return None;
        }
        let srgb = ColorProfile::new_srgb();
        let mut linearize = Vec::with_capacity(768);
        for trc in [&source.red_trc, &source.green_trc, &source.blue_trc] {
            linearize.extend_from_slice(&source.build_8bit_lin_table(trc).ok()?[..]);
        }
        let m = source.transform_matrix(&srgb).v;
        let matrix = [
            m[0][0], m[0][1], m[0][2], m[1][0], m[1][1], m[1][2], m[2][0], m[2][1], m[2][2],
        ]
        .map(|v| v as f32);
        let gamma = srgb.build_8bit_gamma_table(&srgb.red_trc, false).ok()?[..GAMMA_BINS].to_vec();
        Some(MatrixShaper {
            linearize,
            matrix,
            gamma,
        })
    }

    /// Converts RGB/RGBA `pixels` (alpha kept) on the CPU with exactly the kernel's arithmetic:
    /// table lookups, each matrix row as three products summed left to right, clamp to 0..=1,
    /// `floor(v × 4091 + 0.5)` into the gamma table.
    pub fn apply(&self, pixels: &Pixels) -> Pixels {
        let c = usize::from(pixels.channels);
        let scale = (GAMMA_BINS - 1) as f32;
        let mut out = pixels.data.clone();
        for px in out.chunks_exact_mut(c) {
            let r = self.linearize[usize::from(px[0])];
            let g = self.linearize[256 + usize::from(px[1])];
            let b = self.linearize[512 + usize::from(px[2])];
            for (i, value) in px[..3].iter_mut().enumerate() {
                let row = &self.matrix[i * 3..i * 3 + 3];
                let (p0, p1, p2) = (row[0] * r, row[1] * g, row[2] * b);
                let v = (p0 + p1 + p2).clamp(0.0, 1.0);
                let index = (v * scale + 0.5).floor() as usize;
                *value = self.gamma[index] as u8;
            }
        }
        Pixels::new(pixels.width, pixels.height, pixels.channels, out)
    }
}

fn options(profile: &ColorProfile) -> TransformOptions {
    let rendering_intent = if profile.is_matrix_shaper() {
        RenderingIntent::RelativeColorimetric
    } else {
        RenderingIntent::Perceptual
    };
    TransformOptions {
        rendering_intent,
        ..TransformOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    /// The device's table-and-matrix form of Adobe RGB → sRGB stays within one level of moxcms on a
    /// real photo and on every extreme of the cube; sRGB and gray profiles have no such form.
    #[test]
    fn matrix_shaper_tables_match_moxcms_within_a_level() {
        let bytes = fixture("crafted_icc_adobergb.jpg");
        let header = crate::probe::probe(&bytes).unwrap();
        let profile = Profile::parse(header.icc_profile.as_deref().unwrap()).unwrap();
        let shaper = MatrixShaper::for_profile(&profile).expect("Adobe RGB is a matrix-shaper");
        let photo = crate::decode::decode(&bytes, &header, 1, Some(&profile), 1 << 30).unwrap();
        let mut cube = Vec::new();
        for r in (0..=255).step_by(15) {
            for g in (0..=255).step_by(15) {
                for b in (0..=255).step_by(15) {
                    cube.extend([r as u8, g as u8, b as u8, 200]);
                }
            }
        }
        let cube = Pixels::new(18 * 18, 18, 4, cube);
        for pixels in [photo, cube] {
            let reference = shaper.apply(&pixels);
            let moxcms = rgb_to_srgb(pixels.clone(), Some(&profile));
            let max = crate::kernel::max_difference(&reference, &moxcms);
            assert!(max <= 1, "differs from moxcms by {max} levels");
            let moved = crate::kernel::max_difference(&pixels, &moxcms);
            assert!(moved > 10, "the conversion should change colours ({moved})");
            if pixels.channels == 4 {
                assert!(
                    reference.data.chunks(4).all(|px| px[3] == 200),
                    "alpha kept"
                );
            }
        }
        let gray = fixture("gray_concert_gamma22-icc.jpg");
        let gray_profile = Profile::parse(
            crate::probe::probe(&gray)
                .unwrap()
                .icc_profile
                .as_deref()
                .unwrap(),
        )
        .unwrap();
        assert!(MatrixShaper::for_profile(&gray_profile).is_none());
    }

    #[test]
    fn naive_cmyk_is_not_a_negative() {
        assert_eq!(naive_cmyk_to_rgb(&[0, 0, 0, 0]), vec![255, 255, 255]);
        assert_eq!(naive_cmyk_to_rgb(&[0, 0, 0, 255]), vec![0, 0, 0]);
        assert_eq!(naive_cmyk_to_rgb(&[255, 0, 0, 0]), vec![0, 255, 255]);
        // Adobe-inverted paper white (stored 255,255,255,255) un-inverts to no ink → white.
        let white = cmyk_to_srgb(vec![255; 4], 1, 1, true, None);
        assert_eq!(white.data, vec![255, 255, 255]);
    }

    #[test]
    fn reassembles_jpeg_icc_segments_in_sequence_order() {
        let segment = |seq: u8, data: &[u8]| {
            let mut body = b"ICC_PROFILE\0".to_vec();
            body.extend([seq, 2]);
            body.extend_from_slice(data);
            let mut s = vec![0xFF, 0xE2];
            s.extend(((body.len() + 2) as u16).to_be_bytes());
            s.extend(body);
            s
        };
        let mut jpeg = vec![0xFF, 0xD8];
        jpeg.extend(segment(2, b"world"));
        jpeg.extend(segment(1, b"hello "));
        jpeg.extend([0xFF, 0xDA, 0, 2]);
        assert_eq!(jpeg_icc_profile(&jpeg).unwrap(), b"hello world");
        assert_eq!(jpeg_icc_profile(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]), None);
    }

    #[test]
    fn wide_gamut_red_becomes_more_saturated_than_srgb_allows() {
        let p3 = ColorProfile::new_display_p3().encode().unwrap();
        let profile = Profile::parse(&p3).unwrap();
        assert!(!profile.is_srgb());
        // A mid P3 red is a more saturated red in sRGB: green and blue drop (clipped), red rises.
        let out = rgb_to_srgb(Pixels::new(1, 1, 3, vec![200, 60, 60]), Some(&profile));
        assert!(
            out.data[0] > 200 && out.data[1] < 60 && out.data[2] < 60,
            "{:?}",
            out.data
        );
    }

    #[test]
    fn srgb_and_unparseable_profiles_change_nothing() {
        let srgb = Profile::parse(&ColorProfile::new_srgb().encode().unwrap()).unwrap();
        let px = Pixels::new(1, 1, 3, vec![10, 20, 30]);
        assert_eq!(rgb_to_srgb(px.clone(), Some(&srgb)), px);
        assert!(Profile::parse(b"not a profile").is_none());
    }
}
