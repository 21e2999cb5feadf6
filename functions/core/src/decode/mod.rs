//! Decoding to [`Pixels`], one file per format family:
//! - [`jpeg`]: libjpeg-turbo with DCT-domain shrink-on-load, and below full scale a progressive
//!   JPEG through `progressive`, which keeps only the coefficients the smaller picture needs;
//! - [`raster`]: PNG, WebP, GIF, TIFF, BMP through the `image` crate with allocation limits;
//! - [`heic`]: HEIC/HEIF through heic-decoder (pure Rust HEVC);
//! - [`avif`]: AVIF through the HEIF container reader and [`av1`] (rav1d);
//! - [`jxl`]: JPEG XL through jxl-oxide.
//!
//! Every decoder returns pixels as stored (before orientation): the pipeline's orient step applies
//! EXIF orientation, or HEIF's `irot`/`imir`, exactly once. Colour leaves a decoder either in the
//! source's ICC space (converted by [`crate::colour`]) or, for sources described by code points
//! (`nclx`), already in sRGB ([`crate::cicp`]).

pub mod av1;
pub mod avif;
pub mod heic;
pub mod jpeg;
pub mod jxl;
mod progressive;
pub mod raster;

use crate::colour::Profile;
use crate::error::Result;
use crate::format::SourceFormat;
use crate::pixels::Pixels;
use crate::probe::Header;

pub use jpeg::MAX_JPEG_SCANS;
pub(crate) use raster::image_limits;

/// Whether a device JPEG decoder (nvJPEG, hardware or GPU backend) may take this source: baseline or
/// extended sequential 8-bit YCbCr only. Progressive (the hardware engine refuses it), lossless, CMYK
/// and grey sources (whose CPU decode and profile handling differ) stay on the CPU decoder.
pub fn suits_device_decode(header: &Header) -> bool {
    header.format == SourceFormat::Jpeg
        && !header.progressive
        && !header.lossless
        && header.bit_depth == 8
        && header.colour_space == crate::colour::ColourSpace::Rgb
}

/// Decodes `bytes` (already probed as `header`) at 1/`denominator` scale (JPEG only; others ignore it).
/// CMYK JPEGs and `nclx`-described HEIC/AVIF come out as sRGB; every other source comes out as
/// stored, for [`crate::colour::rgb_to_srgb`] with `profile`. `max_alloc` caps what a decoder may
/// allocate.
pub fn decode(
    bytes: &[u8],
    header: &Header,
    denominator: u32,
    profile: Option<&Profile>,
    max_alloc: u64,
) -> Result<Pixels> {
    match header.format {
        SourceFormat::Jpeg => jpeg::decode(bytes, denominator, header.progressive, profile),
        SourceFormat::Heic => heic::decode(bytes, header),
        SourceFormat::Avif => avif::decode(bytes, header),
        SourceFormat::Jxl => jxl::decode(bytes, header, max_alloc),
        other => raster::decode(bytes, other, header, max_alloc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_header(name: &str) -> Header {
        crate::probe::probe(&crate::testing::fixture(name)).unwrap()
    }

    #[test]
    fn only_sequential_8_bit_ycbcr_jpegs_suit_a_device_decoder() {
        assert!(suits_device_decode(&fixture_header(
            "large_olympus-e-p3_12mp.jpg"
        )));
        assert!(suits_device_decode(&fixture_header(
            "crafted_icc_adobergb.jpg"
        )));
        for stays_on_cpu in [
            "progressive_nikon-d300_exif.jpeg",
            "crafted_cmyk_fogra39-icc_adobe.jpg",
            "gray_concert_gamma22-icc.jpg",
            "png_rgba_blackbug_2048x1536.png",
        ] {
            assert!(
                !suits_device_decode(&fixture_header(stays_on_cpu)),
                "{stays_on_cpu}"
            );
        }
    }
}
