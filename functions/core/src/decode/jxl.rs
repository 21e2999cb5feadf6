//! JPEG XL through jxl-oxide (pure Rust): the first keyframe, rendered to sRGB by jxl-oxide with
//! moxcms (embedded ICC, enumerated colour, XYB and its HDR tone-mapping all handled there), every
//! allocation counted against the decode budget by jxl-oxide's allocation tracker.
//!
//! jxl-oxide renders upright; to keep "orientation is applied once, by the orient step" true for
//! every format, the rendered pixels are turned back to stored order here (only when the header's
//! orientation is not 1) and the header reports the orientation.

use std::io::Cursor;

use jxl_oxide::{AllocTracker, EnumColourEncoding, JxlImage, Moxcms, RenderingIntent};

use crate::colour::ColourSpace;
use crate::error::{PipelineError, Result};
use crate::format::SourceFormat;
use crate::orient::orient;
use crate::pixels::Pixels;
use crate::probe::Header;

/// Memory jxl-oxide may use to read headers and the table of contents when probing.
const PROBE_BUDGET: usize = 64 << 20;

fn jxl_error(action: &str, error: impl std::fmt::Display) -> PipelineError {
    let text = error.to_string();
    if text.to_ascii_lowercase().contains("memory") {
        PipelineError::over_limit(format!(
            "could not {action}: {text}; the JPEG XL image needs more memory than the decode budget"
        ))
    } else {
        PipelineError::corrupt(format!(
            "could not {action}: {text}; the JPEG XL file is truncated or corrupt, upload it again"
        ))
    }
}

fn open(bytes: &[u8], budget: usize) -> Result<JxlImage> {
    JxlImage::builder()
        .alloc_tracker(AllocTracker::with_limit(budget))
        .read(Cursor::new(bytes))
        .map_err(|e| jxl_error("read the JPEG XL header", e))
}

/// Reads size, depth, alpha and orientation from the headers.
pub fn probe(bytes: &[u8]) -> Result<Header> {
    let image = open(bytes, PROBE_BUDGET)?;
    let header = image.image_header();
    let format = image.pixel_format();
    Ok(Header {
        format: SourceFormat::Jxl,
        width: header.size.width,
        height: header.size.height,
        progressive: false,
        lossless: false,
        colour_space: if format.is_grayscale() {
            ColourSpace::Gray
        } else {
            ColourSpace::Rgb
        },
        bit_depth: u8::try_from(header.metadata.bit_depth.bits_per_sample()).unwrap_or(32),
        alpha: format.has_alpha(),
        frames: 1,
        // jxl-oxide works in f32: 4 bytes per channel of the frame, plus its output buffer.
        working_bytes_per_pixel: 32.0,
        icc_profile: None,
        cicp: None,
        orientation: Some(u8::try_from(header.metadata.orientation).unwrap_or(1)),
        gain_map: false,
    })
}

/// Decodes the first keyframe to sRGB, in stored (unturned) order.
pub fn decode(bytes: &[u8], header: &Header, max_alloc: u64) -> Result<Pixels> {
    let budget = usize::try_from(max_alloc).unwrap_or(usize::MAX);
    let mut image = open(bytes, budget)?;
    image.set_cms(Moxcms);
    image.request_color_encoding(EnumColourEncoding::srgb(RenderingIntent::Relative));
    let render = image
        .render_frame(0)
        .map_err(|e| jxl_error("decode the JPEG XL image", e))?;
    let buffer = render.image_all_channels();
    let (width, height, channels) = (buffer.width(), buffer.height(), buffer.channels());
    let alpha = header.alpha && (channels == 2 || channels >= 4);
    let grey = channels <= 2;
    let out_channels = if alpha { 4 } else { 3 };
    let to_u8 = |v: f32| (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
    let mut data = Vec::with_capacity(width * height * out_channels);
    for px in buffer.buf().chunks_exact(channels) {
        if grey {
            let g = to_u8(px[0]);
            data.extend_from_slice(&[g, g, g]);
            if alpha {
                data.push(to_u8(px[1]));
            }
        } else {
            data.extend(px[..3].iter().map(|&v| to_u8(v)));
            if alpha {
                data.push(to_u8(px[3]));
            }
        }
    }
    let pixels = Pixels::new(width as u32, height as u32, out_channels as u8, data);
    // Undo jxl-oxide's turn so the orient step applies it once (6 and 8 are each other's inverse,
    // the other orientations their own).
    let stored = match header.orientation.unwrap_or(1) {
        6 => orient(pixels, 8),
        8 => orient(pixels, 6),
        other => orient(pixels, other),
    };
    Ok(stored.drop_opaque_alpha())
}
