//! Header probing: format, stored dimensions, colour facts, frame count and the embedded ICC profile,
//! without decoding pixels (so limits can be checked before anything large is allocated).

use std::io::Cursor;

use image::ImageDecoder;
use turbojpeg::{Colorspace, Subsamp};

use crate::colour::{ColourSpace, jpeg_icc_profile};
use crate::error::{PipelineError, Result};
use crate::format::{SourceFormat, sniff};

/// What the header says about a source, read without allocating pixel buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Format sniffed from magic bytes.
    pub format: SourceFormat,
    /// Stored width (before EXIF orientation).
    pub width: u32,
    /// Stored height (before EXIF orientation).
    pub height: u32,
    /// Progressive JPEG.
    pub progressive: bool,
    /// Lossless JPEG (SOF3): decoded at full scale only.
    pub lossless: bool,
    /// How colour is stored.
    pub colour_space: ColourSpace,
    /// Bits per channel as stored (1–16).
    pub bit_depth: u8,
    /// The source has an alpha channel (or PNG/GIF transparency).
    pub alpha: bool,
    /// Number of frames (1 for still images; GIF and WebP animations count theirs).
    pub frames: u32,
    /// Decoder working memory per full-size stored pixel beyond the 8-bit output: a progressive JPEG's
    /// coefficients, HEVC/AV1 sample planes, JPEG XL's f32 frame (0 for the rest).
    pub working_bytes_per_pixel: f64,
    /// Embedded ICC profile, when the file has one.
    pub icc_profile: Option<Vec<u8>>,
    /// Colour code points (HEIF/AVIF `nclx`) when they, not an ICC profile, describe the colour.
    pub cicp: Option<crate::heif::Cicp>,
    /// Orientation the container itself declares (HEIF `irot`/`imir`, JPEG XL's header), as the
    /// equivalent EXIF value. When set it is the one applied, and an EXIF Orientation tag in the
    /// same file is informational only (iPhones write both, describing the same turn).
    pub orientation: Option<u8>,
    /// An Ultra HDR / ISO 21496-1 gain map is present (JPEG); only the primary image is decoded.
    pub gain_map: bool,
}

/// Sniffs the format and reads the header only.
pub fn probe(bytes: &[u8]) -> Result<Header> {
    match sniff(bytes)? {
        SourceFormat::Jpeg => probe_jpeg(bytes),
        SourceFormat::Heic => crate::decode::heic::probe(bytes),
        SourceFormat::Avif => crate::decode::avif::probe(bytes),
        SourceFormat::Jxl => crate::decode::jxl::probe(bytes),
        raster => probe_raster(bytes, raster),
    }
}

fn probe_raster(bytes: &[u8], format: SourceFormat) -> Result<Header> {
    let image_format = image_format(format).ok_or_else(|| {
        PipelineError::internal(format!("{format:?} is not an image-crate format"))
    })?;
    let reader = image::ImageReader::with_format(Cursor::new(bytes), image_format);
    let mut decoder = reader.into_decoder().map_err(|e| image_error(format, e))?;
    let (width, height) = decoder.dimensions();
    let original = decoder.original_color_type();
    let channels = original.channel_count().max(1);
    let bit_depth = (original.bits_per_pixel() / u16::from(channels)).clamp(1, 16) as u8;
    let colour_space = match format {
        SourceFormat::Gif => ColourSpace::Indexed,
        _ if channels <= 2 => ColourSpace::Gray,
        _ => ColourSpace::Rgb,
    };
    let alpha = decoder.color_type().has_alpha();
    // A broken ICC chunk never fails an image: it is ignored like a missing one.
    let icc_profile = decoder.icc_profile().ok().flatten();
    let frames = match format {
        SourceFormat::Gif => gif_frame_count(bytes),
        SourceFormat::Webp => webp_frame_count(bytes),
        _ => 1,
    };
    Ok(Header {
        format,
        width,
        height,
        progressive: false,
        lossless: false,
        colour_space,
        bit_depth,
        alpha,
        frames,
        working_bytes_per_pixel: 0.0,
        icc_profile,
        cicp: None,
        orientation: None,
        gain_map: false,
    })
}

fn probe_jpeg(bytes: &[u8]) -> Result<Header> {
    let mut decompressor = turbojpeg::Decompressor::new()
        .map_err(|e| PipelineError::internal(format!("libjpeg-turbo init: {e}")))?;
    let header = decompressor
        .read_header(bytes)
        .map_err(|e| jpeg_error("read the JPEG header", e))?;
    let dim = |v: usize| {
        u32::try_from(v).map_err(|_| PipelineError::corrupt("JPEG header dimension overflows"))
    };
    let colour_space = match header.colorspace {
        Colorspace::Gray => ColourSpace::Gray,
        Colorspace::CMYK | Colorspace::YCCK => ColourSpace::Cmyk,
        _ => ColourSpace::Rgb,
    };
    let components = match colour_space {
        ColourSpace::Gray => 1.0,
        ColourSpace::Cmyk => 4.0,
        _ => 3.0,
    };
    // Progressive decoding keeps every DCT coefficient (2 bytes × 64 per 8×8 block) of every
    // component until the last scan. Chroma planes are smaller by the subsampling factor.
    let chroma_share = match header.subsamp {
        Subsamp::Sub2x2 => 0.25,
        Subsamp::Sub2x1 | Subsamp::Sub1x2 => 0.5,
        Subsamp::Sub4x1 | Subsamp::Sub1x4 => 0.25,
        _ => 1.0,
    };
    let working_bytes_per_pixel = if header.is_progressive {
        2.0 * (1.0 + (components - 1.0) * chroma_share)
    } else {
        0.0
    };
    Ok(Header {
        format: SourceFormat::Jpeg,
        width: dim(header.width)?,
        height: dim(header.height)?,
        progressive: header.is_progressive,
        lossless: header.is_lossless,
        colour_space,
        bit_depth: 8,
        alpha: false,
        frames: 1,
        working_bytes_per_pixel,
        icc_profile: jpeg_icc_profile(bytes),
        cicp: None,
        orientation: None,
        gain_map: crate::gain_map::has_gain_map(bytes),
    })
}

/// Counts the image descriptors of a GIF by walking its blocks (no LZW decoding). Stops at the
/// trailer or at the first malformed block; returns at least 1.
pub fn gif_frame_count(bytes: &[u8]) -> u32 {
    let mut frames = 0u32;
    let table_len = |flags: u8| {
        if flags & 0x80 != 0 {
            3 * (1usize << ((flags & 0x07) + 1))
        } else {
            0
        }
    };
    let skip_sub_blocks = |mut pos: usize| -> Option<usize> {
        loop {
            let len = usize::from(*bytes.get(pos)?);
            pos += 1 + len;
            if len == 0 {
                return Some(pos);
            }
        }
    };
    let Some(&flags) = bytes.get(10) else {
        return 1;
    };
    let mut pos = 13 + table_len(flags);
    while let Some(&block) = bytes.get(pos) {
        let next = match block {
            0x21 => skip_sub_blocks(pos + 2),
            0x2C => {
                frames += 1;
                bytes
                    .get(pos + 9)
                    .and_then(|&f| skip_sub_blocks(pos + 10 + table_len(f) + 1))
            }
            _ => None, // 0x3B trailer or garbage
        };
        match next {
            Some(p) => pos = p,
            None => break,
        }
    }
    frames.max(1)
}

/// Counts the `ANMF` chunks of an animated WebP (1 for a still image).
pub fn webp_frame_count(bytes: &[u8]) -> u32 {
    let mut frames = 0u32;
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let size = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        if &bytes[pos..pos + 4] == b"ANMF" {
            frames += 1;
        }
        pos = pos.saturating_add(8 + size + (size & 1));
    }
    frames.max(1)
}

/// The `image` crate's format for a source it decodes (None for those with their own decoder).
pub(crate) fn image_format(format: SourceFormat) -> Option<image::ImageFormat> {
    match format {
        SourceFormat::Png => Some(image::ImageFormat::Png),
        SourceFormat::Webp => Some(image::ImageFormat::WebP),
        SourceFormat::Gif => Some(image::ImageFormat::Gif),
        SourceFormat::Tiff => Some(image::ImageFormat::Tiff),
        SourceFormat::Bmp => Some(image::ImageFormat::Bmp),
        SourceFormat::Jpeg | SourceFormat::Heic | SourceFormat::Avif | SourceFormat::Jxl => None,
    }
}

/// Maps a libjpeg-turbo error to a pipeline error: "unsupported" processes stay unsupported, the rest is corrupt data.
pub(crate) fn jpeg_error(action: &str, error: turbojpeg::Error) -> PipelineError {
    let text = error.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("unsupported") || lower.contains("not supported") {
        PipelineError::unsupported(format!(
            "could not {action}: {text} (the JPEG uses a coding process imgpipe cannot read)"
        ))
    } else if lower.contains("scan") && lower.contains("limit") {
        PipelineError::over_limit(format!(
            "could not {action}: {text}; the progressive JPEG has more scans than imgpipe decodes \
             (a decoding-time bomb); re-save it as a normal JPEG"
        ))
    } else {
        PipelineError::corrupt(format!(
            "could not {action}: {text}; the file is truncated or corrupt, upload it again"
        ))
    }
}

/// Maps an `image` crate error to a pipeline error.
pub(crate) fn image_error(format: SourceFormat, error: image::ImageError) -> PipelineError {
    use image::ImageError as E;
    let name = format.as_str().to_uppercase();
    match error {
        E::Unsupported(e) => {
            PipelineError::unsupported(format!("{name} feature not supported: {e}"))
        }
        E::Limits(e) => {
            PipelineError::over_limit(format!("{name} decoding exceeds a memory limit: {e}"))
        }
        E::IoError(e) => PipelineError::corrupt(format!(
            "{name} data ends early or cannot be read ({e}); the file is truncated, upload it again"
        )),
        other => PipelineError::corrupt(format!("{name} data is corrupt: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gif_frames_without_decoding() {
        use image::codecs::gif::GifEncoder;
        use image::{Frame, RgbaImage};
        let mut gif = Vec::new();
        {
            let mut encoder = GifEncoder::new(&mut gif);
            for i in 0..7u8 {
                let frame = RgbaImage::from_pixel(4, 3, image::Rgba([i * 30, 0, 0, 255]));
                encoder.encode_frame(Frame::new(frame)).unwrap();
            }
        }
        assert_eq!(gif_frame_count(&gif), 7);
        let header = probe(&gif).unwrap();
        assert_eq!((header.frames, header.width, header.height), (7, 4, 3));
        assert_eq!(header.colour_space, ColourSpace::Indexed);
        // Truncated in the middle: counts what it saw, never panics.
        assert!(gif_frame_count(&gif[..gif.len() / 2]) >= 1);
        assert_eq!(gif_frame_count(b"GIF89a"), 1);
    }

    #[test]
    fn webp_frame_count_survives_garbage() {
        assert_eq!(webp_frame_count(b"RIFF\0\0\0\0WEBP"), 1);
        let mut fake = b"RIFF\0\0\0\0WEBPANMF\x02\0\0\0xxANMF\xff\xff\xff\xff".to_vec();
        fake.extend([0; 4]);
        assert_eq!(webp_frame_count(&fake), 2);
    }
}
