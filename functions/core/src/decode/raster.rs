//! PNG, WebP, GIF, TIFF and BMP through the `image` crate, with its allocation limits set from the
//! probed header and the decode budget.

use std::io::Cursor;

use crate::error::{PipelineError, Result};
use crate::format::SourceFormat;
use crate::pixels::Pixels;
use crate::probe::{Header, image_error, image_format};

/// `image` crate limits for one decode of a source with `header`.
pub(crate) fn image_limits(header: &Header, max_alloc: u64) -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(header.width);
    limits.max_image_height = Some(header.height);
    limits.max_alloc = Some(max_alloc);
    limits
}

/// Decodes the first frame at full size.
pub(super) fn decode(
    bytes: &[u8],
    format: SourceFormat,
    header: &Header,
    max_alloc: u64,
) -> Result<Pixels> {
    let image_format = image_format(format).ok_or_else(|| {
        PipelineError::internal(format!("{format:?} is not an image-crate format"))
    })?;
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format);
    reader.limits(image_limits(header, max_alloc));
    let decoded = reader.decode().map_err(|e| image_error(format, e))?;
    Ok(from_dynamic(decoded))
}

/// 8-bit RGB or RGBA from any decoded image (16-bit samples are rounded to 8 bits; gray is expanded).
fn from_dynamic(decoded: image::DynamicImage) -> Pixels {
    let (width, height) = (decoded.width(), decoded.height());
    if decoded.color().has_alpha() {
        Pixels::new(width, height, 4, decoded.into_rgba8().into_raw()).drop_opaque_alpha()
    } else {
        Pixels::new(width, height, 3, decoded.into_rgb8().into_raw())
    }
}
