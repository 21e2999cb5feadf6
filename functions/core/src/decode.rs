//! Decoding to [`Pixels`]: JPEG through libjpeg-turbo with DCT-domain shrink-on-load, everything else
//! through the `image` crate with allocation limits.

use std::io::Cursor;

use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor};

use crate::error::{PipelineError, Result};
use crate::format::SourceFormat;
use crate::pixels::Pixels;
use crate::probe::{Header, image_error, image_format, jpeg_error};

/// Most bytes the `image` crate may allocate while decoding one non-JPEG source (1 GiB).
pub const MAX_DECODE_ALLOC: u64 = 1 << 30;

/// Decodes `bytes` (already probed as `header`) at 1/`denominator` scale (JPEG only; others ignore it).
pub fn decode(bytes: &[u8], header: &Header, denominator: u32) -> Result<Pixels> {
    match header.format {
        SourceFormat::Jpeg => decode_jpeg(bytes, denominator),
        other => decode_with_image(bytes, other, header),
    }
}

fn decode_jpeg(bytes: &[u8], denominator: u32) -> Result<Pixels> {
    let mut decompressor = Decompressor::new()
        .map_err(|e| PipelineError::internal(format!("libjpeg-turbo init: {e}")))?;
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
    // libjpeg-turbo reports warnings (e.g. "premature end of data") as errors through TurboJPEG 3:
    // a truncated upload fails instead of producing a half-grey image.
    decompressor
        .decompress(bytes, image)
        .map_err(|e| jpeg_error("decode the JPEG", e))?;
    let data = if cmyk {
        cmyk_to_rgb(&data, has_adobe_marker(bytes))
    } else {
        data
    };
    Ok(Pixels::new(width as u32, height as u32, 3, data))
}

/// Naive CMYK → RGB. Adobe (APP14) files store inverted CMYK, which libjpeg returns as stored.
/// Colour-managed conversion through the embedded profile is a later improvement (see README).
fn cmyk_to_rgb(cmyk: &[u8], adobe_inverted: bool) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        // Amount of "no ink" per channel: Adobe stores it directly, plain CMYK stores ink.
        let paper = |v: u8| u32::from(if adobe_inverted { v } else { 255 - v });
        let k = paper(px[3]);
        for &v in &px[..3] {
            rgb.push(((paper(v) * k + 127) / 255) as u8);
        }
    }
    rgb
}

/// True when the JPEG has an Adobe APP14 segment (marks inverted CMYK).
fn has_adobe_marker(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(1 << 16)];
    head.windows(9)
        .any(|w| w[0] == 0xFF && w[1] == 0xEE && &w[4..9] == b"Adobe")
}

fn decode_with_image(bytes: &[u8], format: SourceFormat, header: &Header) -> Result<Pixels> {
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format(format));
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(header.width);
    limits.max_image_height = Some(header.height);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| image_error(format, e))?;
    let (width, height) = (decoded.width(), decoded.height());
    let pixels = if decoded.color().has_alpha() {
        Pixels::new(width, height, 4, decoded.into_rgba8().into_raw()).drop_opaque_alpha()
    } else {
        Pixels::new(width, height, 3, decoded.into_rgb8().into_raw())
    };
    Ok(pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adobe_cmyk_is_not_a_negative() {
        // Adobe-inverted white paper: stored C=M=Y=255, K=255 (i.e. no ink) → white.
        assert_eq!(
            cmyk_to_rgb(&[255, 255, 255, 255], true),
            vec![255, 255, 255]
        );
        // Plain CMYK with no ink is 0,0,0,0 → white too.
        assert_eq!(cmyk_to_rgb(&[0, 0, 0, 0], false), vec![255, 255, 255]);
        // Full black ink.
        assert_eq!(cmyk_to_rgb(&[255, 255, 255, 0], true), vec![0, 0, 0]);
    }
}
