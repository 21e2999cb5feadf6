//! Header probing: format, stored dimensions and JPEG coding facts, without decoding pixels.

use std::io::Cursor;

use crate::error::{PipelineError, Result};
use crate::format::{SourceFormat, sniff};

/// What the header says about a source, read without allocating pixel buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// Sniffs the format and reads the dimensions from the header only.
pub fn probe(bytes: &[u8]) -> Result<Header> {
    let format = sniff(bytes)?;
    if format == SourceFormat::Jpeg {
        let mut decompressor = turbojpeg::Decompressor::new()
            .map_err(|e| PipelineError::internal(format!("libjpeg-turbo init: {e}")))?;
        let header = decompressor
            .read_header(bytes)
            .map_err(|e| jpeg_error("read the JPEG header", e))?;
        let dim = |v: usize| {
            u32::try_from(v).map_err(|_| PipelineError::corrupt("JPEG header dimension overflows"))
        };
        return Ok(Header {
            format,
            width: dim(header.width)?,
            height: dim(header.height)?,
            progressive: header.is_progressive,
            lossless: header.is_lossless,
        });
    }
    let reader = image::ImageReader::with_format(Cursor::new(bytes), image_format(format));
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| image_error(format, e))?;
    Ok(Header {
        format,
        width,
        height,
        progressive: false,
        lossless: false,
    })
}

/// The `image` crate's format for a non-JPEG source.
pub(crate) fn image_format(format: SourceFormat) -> image::ImageFormat {
    match format {
        SourceFormat::Jpeg => image::ImageFormat::Jpeg,
        SourceFormat::Png => image::ImageFormat::Png,
        SourceFormat::Webp => image::ImageFormat::WebP,
        SourceFormat::Gif => image::ImageFormat::Gif,
        SourceFormat::Tiff => image::ImageFormat::Tiff,
        SourceFormat::Bmp => image::ImageFormat::Bmp,
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
