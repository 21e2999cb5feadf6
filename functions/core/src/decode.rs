//! Decoding to [`Pixels`]: JPEG through libjpeg-turbo with DCT-domain shrink-on-load, everything else
//! through the `image` crate with allocation limits. Colour is converted to sRGB in [`crate::colour`].

use std::io::Cursor;

use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor};

use crate::colour::{self, Profile};
use crate::error::{PipelineError, Result};
use crate::format::SourceFormat;
use crate::pixels::Pixels;
use crate::probe::{Header, image_error, image_format, jpeg_error};

/// Most scans a progressive JPEG may have. Real encoders write about 10; thousands of tiny scans are
/// a CPU bomb (each scan re-walks the whole coefficient buffer). libjpeg-turbo enforces it.
pub const MAX_JPEG_SCANS: u32 = 500;

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
/// CMYK JPEGs come out as sRGB through `profile` (or the naive fallback); every other source comes
/// out as stored, for [`colour::rgb_to_srgb`]. `max_alloc` caps what the `image` crate may allocate.
pub fn decode(
    bytes: &[u8],
    header: &Header,
    denominator: u32,
    profile: Option<&Profile>,
    max_alloc: u64,
) -> Result<Pixels> {
    match header.format {
        SourceFormat::Jpeg => decode_jpeg(bytes, denominator, profile),
        other => decode_with_image(bytes, other, header, max_alloc),
    }
}

fn decode_jpeg(bytes: &[u8], denominator: u32, profile: Option<&Profile>) -> Result<Pixels> {
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

/// `image` crate limits for one decode of a source with `header`.
pub(crate) fn image_limits(header: &Header, max_alloc: u64) -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(header.width);
    limits.max_image_height = Some(header.height);
    limits.max_alloc = Some(max_alloc);
    limits
}

fn decode_with_image(
    bytes: &[u8],
    format: SourceFormat,
    header: &Header,
    max_alloc: u64,
) -> Result<Pixels> {
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format(format));
    reader.limits(image_limits(header, max_alloc));
    let decoded = reader.decode().map_err(|e| image_error(format, e))?;
    Ok(from_dynamic(decoded))
}

/// 8-bit RGB or RGBA from any decoded image (16-bit samples are rounded to 8 bits; gray is expanded).
pub(crate) fn from_dynamic(decoded: image::DynamicImage) -> Pixels {
    let (width, height) = (decoded.width(), decoded.height());
    if decoded.color().has_alpha() {
        Pixels::new(width, height, 4, decoded.into_rgba8().into_raw()).drop_opaque_alpha()
    } else {
        Pixels::new(width, height, 3, decoded.into_rgb8().into_raw())
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
