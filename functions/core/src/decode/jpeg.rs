//! JPEG through libjpeg-turbo, with DCT-domain shrink-on-load (1/2, 1/4, 1/8), a progressive-scan
//! limit and CMYK/YCCK converted to sRGB here (through the embedded profile or the naive fallback).

use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor};

use crate::colour::{self, Profile};
use crate::error::{PipelineError, Result};
use crate::pixels::Pixels;
use crate::probe::jpeg_error;

/// Most scans a progressive JPEG may have. Real encoders write about 10; thousands of tiny scans are
/// a CPU bomb (each scan re-walks the whole coefficient buffer). libjpeg-turbo enforces it.
pub const MAX_JPEG_SCANS: u32 = 500;

/// Decodes at 1/`denominator` scale (lossless JPEGs at full scale). A progressive JPEG decoded below
/// full scale goes to [`super::progressive`] first, which keeps a quarter of libjpeg-turbo's
/// coefficient store at 1/2 scale; what it refuses, libjpeg-turbo decodes.
pub(super) fn decode(
    bytes: &[u8],
    denominator: u32,
    progressive: bool,
    profile: Option<&Profile>,
) -> Result<Pixels> {
    if progressive
        && denominator > 1
        && let Ok(pixels) = super::progressive::decode(bytes, denominator)
    {
        return Ok(pixels);
    }
    decode_with_libjpeg(bytes, denominator, profile)
}

/// Decodes with libjpeg-turbo at 1/`denominator` scale.
pub(super) fn decode_with_libjpeg(
    bytes: &[u8],
    denominator: u32,
    profile: Option<&Profile>,
) -> Result<Pixels> {
    let mut decompressor = Decompressor::new()
        .map_err(|e| PipelineError::internal(format!("libjpeg-turbo init: {e}")))?;
    decompressor
        .set_scan_limit(MAX_JPEG_SCANS)
        .map_err(|e| jpeg_error("set the scan limit", e))?;
    let header = decompressor
        .read_header(bytes)
        .map_err(|e| jpeg_error("read the JPEG header", e))?;
    let scale = if header.is_lossless {
        ScalingFactor::ONE
    } else {
        ScalingFactor::new(1, denominator as usize)
    };
    decompressor
        .set_scaling_factor(scale)
        .map_err(|e| jpeg_error("set the decode scale", e))?;
    let scaled = header.scaled(scale);
    let (width, height) = (scaled.width, scaled.height);
    let cmyk = matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK);
    let format = if cmyk {
        PixelFormat::CMYK
    } else {
        PixelFormat::RGB
    };
    let channels = format.size();
    let mut data = vec![0u8; width * height * channels];
    let image = Image {
        pixels: data.as_mut_slice(),
        width,
        pitch: width * channels,
        height,
        format,
    };
    // TurboJPEG 3 finishes the decode and then reports libjpeg warnings as errors. Warnings that mean
    // lost image data (truncation, bad entropy codes) fail the image: no grey half-images. Cosmetic
    // ones (stray bytes between segments, odd JFIF/Adobe versions) keep the fully decoded pixels.
    match decompressor.decompress(bytes, image) {
        Ok(()) => {}
        Err(e) if is_cosmetic_warning(&e.to_string()) => {}
        Err(e) => return Err(jpeg_error("decode the JPEG", e)),
    }
    let (width, height) = (width as u32, height as u32);
    if cmyk {
        return Ok(colour::cmyk_to_srgb(
            data,
            width,
            height,
            has_adobe_marker(bytes),
            profile,
        ));
    }
    Ok(Pixels::new(width, height, 3, data))
}

/// libjpeg warnings after which every pixel was still decoded from real data (jerror.h: JWRN_EXTRANEOUS_DATA,
/// JWRN_JFIF_MAJOR, JWRN_ADOBE_XFORM, JWRN_BOGUS_PROGRESSION, JWRN_NOT_SEQUENTIAL).
fn is_cosmetic_warning(message: &str) -> bool {
    [
        "extraneous bytes before marker",
        "unknown JFIF revision",
        "Unknown Adobe color transform",
        "Inconsistent progression sequence",
        "Invalid SOS parameters for sequential JPEG",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// True when the JPEG has an Adobe APP14 segment (marks inverted CMYK).
fn has_adobe_marker(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(1 << 16)];
    head.windows(9)
        .any(|w| w[0] == 0xFF && w[1] == 0xEE && &w[4..9] == b"Adobe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_adobe_marker() {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xEE, 0, 14];
        jpeg.extend_from_slice(b"Adobe\0\x64\0\0\0\0\x02");
        assert!(has_adobe_marker(&jpeg));
        assert!(!has_adobe_marker(&[0xFF, 0xD8, 0xFF, 0xDA]));
    }

    #[test]
    fn data_loss_warnings_are_not_cosmetic() {
        assert!(is_cosmetic_warning(
            "Corrupt JPEG data: 1214 extraneous bytes before marker 0xd0"
        ));
        for lost in [
            "Premature end of JPEG file",
            "Corrupt JPEG data: premature end of data segment",
            "Corrupt JPEG data: bad Huffman code",
        ] {
            assert!(!is_cosmetic_warning(lost), "{lost}");
        }
    }
}
